//! OpenAI `chat.completion` → Anthropic `message`, and the pieces the stream conversion shares.

use super::error::anthropic_error;
use serde_json::{json, Map, Value};

/// `msg_` + the OpenAI id without its `chatcmpl-` prefix, or + a digest of `seed` when there is none.
pub(super) fn message_id(openai_id: Option<&str>, seed: &[u8]) -> String {
    match openai_id.filter(|s| !s.is_empty()) {
        Some(id) => format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id)),
        None => {
            let hex = crate::codec::sha256::to_hex(&crate::codec::sha256::digest(seed));
            format!("msg_{}", hex.get(..24).unwrap_or(&hex))
        }
    }
}

pub(super) fn stop_reason(finish: Option<&str>, saw_tool: bool) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if saw_tool => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic usage fields from an OpenAI `usage` object. Anthropic's `input_tokens` excludes cache
/// reads, so cached tokens are taken out of `prompt_tokens` and reported as `cache_read_input_tokens`.
pub(super) fn usage_fields(usage: &Value, out: &mut Map<String, Value>) {
    let num = |v: Option<&Value>| v.and_then(Value::as_u64);
    let prompt = num(usage.get("prompt_tokens")).unwrap_or(0);
    let cached = num(usage.get("prompt_tokens_details").and_then(|d| d.get("cached_tokens")));
    out.insert("input_tokens".into(), json!(prompt.saturating_sub(cached.unwrap_or(0))));
    if let Some(c) = cached {
        out.insert("cache_read_input_tokens".into(), json!(c));
    }
    out.insert("output_tokens".into(), json!(num(usage.get("completion_tokens")).unwrap_or(0)));
}

/// Text of an OpenAI message `content` (string, or text parts concatenated).
fn content_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

/// Parsed tool arguments. Anthropic's `input` must be an object: arguments that are empty, not JSON or
/// not a JSON object become `{}` (the raw text is not kept, as tools validate `input` by schema).
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

/// OpenAI `chat.completion` → Anthropic `message`. Only the first choice is used. `finish_reason` maps
/// stop → end_turn, length → max_tokens, tool_calls → tool_use, content_filter → refusal (a `stop` with
/// tool calls → tool_use); `stop_sequence` is always null (OpenAI does not say which one matched). A
/// body that is not a chat completion gives an Anthropic `api_error` body.
pub fn response_from_openai(openai_body: &[u8], model: &str) -> Vec<u8> {
    try_response_from_openai(openai_body, model).unwrap_or_else(|why| anthropic_error("api_error", why))
}

/// [`response_from_openai`], or why the body is no chat completion.
pub fn try_response_from_openai(openai_body: &[u8], model: &str) -> Result<Vec<u8>, &'static str> {
    let Ok(v) = serde_json::from_slice::<Value>(openai_body) else {
        return Err("The upstream response was not valid JSON.");
    };
    let Some(choice) = v.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
        return Err("The upstream response held no choices.");
    };
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let text = content_string(message.get("content"));
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        content.push(json!({"type": "text", "text": refusal}));
    }
    let mut saw_tool = false;
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let f = call.get("function").unwrap_or(&Value::Null);
        saw_tool = true;
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
            "name": f.get("name").and_then(Value::as_str).unwrap_or(""),
            "input": tool_input(f.get("arguments").and_then(Value::as_str).unwrap_or("")),
        }));
    }
    let mut usage = Map::new();
    usage_fields(v.get("usage").unwrap_or(&Value::Null), &mut usage);
    let out = json!({
        "id": message_id(v.get("id").and_then(Value::as_str), openai_body),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str), saw_tool),
        "stop_sequence": null,
        "usage": usage,
    });
    Ok(serde_json::to_vec(&out).unwrap_or_default())
}
