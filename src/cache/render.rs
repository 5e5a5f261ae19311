//! Render: a stored answer written as a fresh answer in the client's format, plain or streamed.

use super::answer::{Answer, Call};
use crate::api::Operation;
use crate::codec::sse;
use crate::http::LocalResponse;
use crate::providers::mock::Clock;
use crate::providers::toolkit::usage_chunk_json;
use serde_json::{json, Value};

/// The id of a rendered answer, made from the clock (the other formats' ids derive from it).
pub fn answer_id(clock: Clock) -> String {
    format!("chatcmpl-cache{:x}-{:x}", clock.unix_secs, clock.seq)
}

/// The stored answer `pivot` as the answer to a request of `op` (`stream`: as its stream;
/// `include_usage`: a chat stream ends with the usage chunk, as `stream_options.include_usage` asks)
/// naming `model`, with a fresh id and `created` from `clock`. `client_body` is the client's request
/// (a Responses object echoes it). `None` when the stored bytes are no readable answer or `op` is not
/// cached: the caller treats that as a miss.
pub fn render(
    pivot: &[u8],
    op: Operation,
    stream: bool,
    include_usage: bool,
    model: &str,
    clock: Clock,
    client_body: &[u8],
) -> Option<LocalResponse> {
    let answer = Answer::from_stored(pivot)?;
    let id = answer_id(clock);
    let body = if stream {
        // The other formats' streams always carry the usage (Anthropic's message_delta, Responses' final
        // response); only a chat client chooses.
        let with_usage = include_usage || op != Operation::ChatCompletions;
        chat_stream(&answer, &id, clock.unix_secs, model, with_usage)
    } else {
        answer.chat_json(&id, clock.unix_secs, model)
    };
    crate::api::pivot::local_answer(op, &body, stream, model, clock, client_body).ok()
}

/// The answer as chat completion chunks, as OpenAI streams them: per choice a role chunk, the content,
/// the refusal, each tool call (a first chunk with its id, type, name and empty arguments, then the
/// arguments), the finish chunk; then, `with_usage`, the usage chunk (every chunk before it carrying
/// `"usage": null`) when the answer has usage; then `data: [DONE]`.
pub(crate) fn chat_stream(a: &Answer, id: &str, created: u64, model: &str, with_usage: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut chunk = |index: usize, delta: Value, finish: Option<&str>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if let (true, Some(o)) = (with_usage, c.as_object_mut()) {
            o.insert("usage".into(), Value::Null);
        }
        sse::write_event(&mut out, None, &c.to_string());
    };
    for (i, c) in a.choices.iter().enumerate() {
        chunk(i, json!({"role": "assistant", "content": "", "refusal": null}), None);
        if !c.content.is_empty() {
            chunk(i, json!({"content": c.content}), None);
        }
        if let Some(r) = &c.refusal {
            chunk(i, json!({"refusal": r}), None);
        }
        for (k, Call { id, name, arguments }) in c.calls.iter().enumerate() {
            let first = json!({"index": k, "id": id, "type": "function", "function": {"name": name, "arguments": ""}});
            chunk(i, json!({"tool_calls": [first]}), None);
            if !arguments.is_empty() {
                chunk(i, json!({"tool_calls": [{"index": k, "function": {"arguments": arguments}}]}), None);
            }
        }
        chunk(i, json!({}), Some(c.finish.as_str()));
    }
    if let (true, Some(u)) = (with_usage, a.usage) {
        sse::write_event(&mut out, None, &usage_chunk_json(id, created, model, u.json()));
    }
    sse::write_event(&mut out, None, "[DONE]");
    out
}
