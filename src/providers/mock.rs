//! The built-in `mock` provider: answers in the route-level filter, in the exact OpenAI format, with no
//! upstream at all. Chat echoes the last user message; embeddings are deterministic unit vectors derived
//! from the input. Usage is estimated the documented way (`request::estimate_tokens`).

use crate::api::error::ApiError;
use crate::api::openai::{content_text, estimate_tokens, ChatRequest, EmbeddingsRequest};
use crate::codec::sha256;
use crate::config::provider_kinds::{read, KindResult};
use crate::config::{Env, ProviderKind};
use crate::http::LocalResponse;
use base64::Engine;
use serde_json::{json, Map, Value};

/// The settings of kind `mock`: nothing but the kind (no cluster, no key).
pub(crate) fn settings(_o: &Map<String, Value>, _path: &str, _env: &dyn Env) -> KindResult {
    read(ProviderKind::Mock, &["kind"])
}

/// Facts of the moment a mock answer is made: they make ids unique and `created` right.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub unix_secs: u64,
    /// Distinguishes answers made in the same second.
    pub seq: u64,
}

fn completion_id(clock: Clock) -> String {
    format!("chatcmpl-mock{:x}{:06x}", clock.unix_secs, clock.seq & 0xff_ffff)
}

struct Echo {
    reply: String,
    prompt_tokens: u64,
    completion_tokens: u64,
}

fn echo(req: &ChatRequest) -> Echo {
    let reply =
        req.messages.iter().rev().find(|m| m.role == "user").map(|m| content_text(m.content)).unwrap_or_default();
    let prompt_len: usize = req.messages.iter().map(|m| m.content.map_or(0, |c| c.get().len())).sum();
    Echo { prompt_tokens: estimate_tokens(prompt_len).max(1), completion_tokens: estimate_tokens(reply.len()), reply }
}

fn usage(e: &Echo) -> Value {
    json!({
        "prompt_tokens": e.prompt_tokens,
        "completion_tokens": e.completion_tokens,
        "total_tokens": e.prompt_tokens + e.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
    })
}

/// The whole answer to a chat completion request: JSON, or an SSE stream when the request asks for one.
pub fn chat(req: &ChatRequest, alias: &str, clock: Clock) -> LocalResponse {
    let e = echo(req);
    let id = completion_id(clock);
    if !req.is_stream() {
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": clock.unix_secs,
            "model": alias,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": e.reply, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": usage(&e),
            "system_fingerprint": "switchyard-mock"
        });
        return LocalResponse::json(200, body.to_string());
    }
    let with_usage = req.include_usage();
    let mut out = String::with_capacity(256 + e.reply.len() * 4);
    let mut push = |delta: Value, finish: Value| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": clock.unix_secs,
            "model": alias,
            "system_fingerprint": "switchyard-mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        if with_usage {
            chunk["usage"] = Value::Null;
        }
        out.push_str("data: ");
        out.push_str(&chunk.to_string());
        out.push_str("\n\n");
    };
    push(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null);
    for piece in pieces(&e.reply, MAX_STREAM_PIECES) {
        push(json!({"content": piece}), Value::Null);
    }
    push(json!({}), json!("stop"));
    if with_usage {
        let last = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": clock.unix_secs,
            "model": alias,
            "system_fingerprint": "switchyard-mock",
            "choices": [],
            "usage": usage(&e)
        });
        out.push_str("data: ");
        out.push_str(&last.to_string());
        out.push_str("\n\n");
    }
    out.push_str("data: [DONE]\n\n");
    LocalResponse::event_stream(out)
}

/// At most this many content chunks in a streamed mock answer: its size stays the reply's plus a bounded
/// overhead, whatever the reply's words (one chunk per word of a 2 MB reply of one-letter words was a
/// 238 MB answer).
pub const MAX_STREAM_PIECES: usize = 256;

/// The reply in at most `max` pieces: word pieces, neighbours joined when there are more words than that.
fn pieces(s: &str, max: usize) -> Vec<&str> {
    let words = split_words(s);
    if words.len() <= max {
        return words;
    }
    let per = words.len().div_ceil(max.max(1));
    let mut out = Vec::with_capacity(max);
    let mut start = 0;
    for group in words.chunks(per) {
        let len: usize = group.iter().map(|w| w.len()).sum();
        if let Some(p) = s.get(start..start + len) {
            out.push(p);
        }
        start += len;
    }
    out
}

/// Splits text into word pieces, each piece keeping the white space before it.
fn split_words(s: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut seen_word = false;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() && seen_word {
            if let Some(p) = s.get(start..i) {
                pieces.push(p);
            }
            start = i;
            seen_word = false;
        } else if !c.is_whitespace() {
            seen_word = true;
        }
    }
    if let Some(p) = s.get(start..) {
        if !p.is_empty() {
            pieces.push(p);
        }
    }
    pieces
}

/// Default vector size of mock embeddings when the request names no `dimensions`.
pub const DEFAULT_DIMENSIONS: u32 = 8;
const MAX_DIMENSIONS: u32 = 4096;
/// At most this many inputs in one embeddings request (OpenAI's own limit).
pub const MAX_INPUTS: usize = super::MAX_EMBEDDING_INPUTS;
/// At most this many numbers in one mock embeddings answer (inputs x dimensions): about 5 MB of JSON.
pub const MAX_FLOATS: usize = 256 * 1024;

fn vector(text: &str, dims: u32) -> Vec<f32> {
    let mut v = Vec::with_capacity(dims as usize);
    let mut block = 0u32;
    // The text is hashed once; each block of 16 numbers hashes that digest and the block number (hashing
    // the whole text per block made one 8 MB input at 4096 dimensions hash 2 GB).
    let mut seed = sha256::digest(text.as_bytes()).to_vec();
    while v.len() < dims as usize {
        seed.truncate(32);
        seed.extend_from_slice(&block.to_le_bytes());
        for pair in sha256::digest(&seed).chunks_exact(2) {
            if v.len() == dims as usize {
                break;
            }
            let x = u16::from_le_bytes([pair[0], pair[1]]) as f32 / 32767.5 - 1.0;
            v.push(x);
        }
        block += 1;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// The answer to an embeddings request (`encoding_format` float or base64, as the OpenAI API).
pub fn embeddings(req: &EmbeddingsRequest, alias: &str) -> LocalResponse {
    let inputs: Vec<String> = match serde_json::from_str::<Value>(req.input.get()) {
        Ok(Value::String(s)) => vec![s],
        Ok(Value::Array(items)) => {
            let all_ints = !items.is_empty() && items.iter().all(Value::is_number);
            if all_ints {
                vec![Value::Array(items).to_string()]
            } else {
                items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string)).collect()
            }
        }
        _ => Vec::new(),
    };
    let dims = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS).clamp(1, MAX_DIMENSIONS);
    if inputs.len() > MAX_INPUTS {
        let m = format!("The mock provider takes at most {MAX_INPUTS} inputs per request; got {}.", inputs.len());
        return ApiError::invalid_request(m, Some("input")).into();
    }
    if inputs.len().saturating_mul(dims as usize) > MAX_FLOATS {
        let m = format!(
            "The mock provider answers at most {MAX_FLOATS} numbers per request (inputs x dimensions); {} x {dims} is more.",
            inputs.len()
        );
        return ApiError::invalid_request(m, Some("dimensions")).into();
    }
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let mut tokens = 0u64;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tokens += estimate_tokens(text.len()).max(1);
            let v = vector(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": alias,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    });
    LocalResponse::json(200, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{parse_chat, parse_embeddings};

    const CLOCK: Clock = Clock { unix_secs: 1_700_000_000, seq: 7 };

    #[test]
    fn settings_are_the_kind_alone() {
        let env = crate::config::tests::MapEnv(vec![]);
        let s = settings(json!({"kind": "mock"}).as_object().unwrap(), "providers.m", &env).unwrap().unwrap();
        assert_eq!((s.kind, s.fields), (ProviderKind::Mock, &["kind"][..]));
        assert!(!ProviderKind::Mock.requires_key());
    }

    #[test]
    fn chat_echoes_last_user_message() {
        let body = br#"{"model":"demo","messages":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"Hello there"}]}]}"#;
        let r = chat(&parse_chat(body).unwrap(), "demo", CLOCK);
        assert_eq!(r.status, 200);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "demo");
        assert_eq!(v["created"], 1_700_000_000u64);
        assert_eq!(v["choices"][0]["message"]["content"], "Hello there");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let u = &v["usage"];
        assert_eq!(u["completion_tokens"], 3);
        assert_eq!(u["total_tokens"].as_u64(), Some(u["prompt_tokens"].as_u64().unwrap() + 3));
    }

    fn events(body: &[u8]) -> Vec<String> {
        let s = std::str::from_utf8(body).unwrap();
        assert!(s.ends_with("data: [DONE]\n\n"));
        s.split("\n\n").filter(|e| !e.is_empty()).map(|e| e.strip_prefix("data: ").unwrap().to_string()).collect()
    }

    #[test]
    fn stream_pieces_rebuild_the_reply() {
        for usage in [false, true] {
            let body = format!(
                r#"{{"model":"demo","stream":true,"stream_options":{{"include_usage":{usage}}},"messages":[{{"role":"user","content":"one two  three"}}]}}"#
            );
            let r = chat(&parse_chat(body.as_bytes()).unwrap(), "demo", CLOCK);
            assert_eq!(r.headers[0], ("content-type", "text/event-stream".to_string()));
            let ev = events(&r.body);
            assert_eq!(ev.last().unwrap(), "[DONE]");
            let chunks: Vec<Value> = ev[..ev.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"].get(0).and_then(|ch| ch["delta"]["content"].as_str()).map(str::to_string))
                .collect();
            assert_eq!(text, "one two  three");
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            let last = chunks.last().unwrap();
            if usage {
                assert_eq!(last["choices"].as_array().unwrap().len(), 0);
                assert_eq!(last["usage"]["completion_tokens"], 4);
            } else {
                assert_eq!(last["choices"][0]["finish_reason"], "stop");
                assert!(chunks.iter().all(|c| c.get("usage").is_none()));
            }
        }
    }

    #[test]
    fn split_words_keeps_spaces() {
        assert_eq!(split_words(" a bb  c"), vec![" a", " bb", "  c"]);
        assert_eq!(split_words(""), Vec::<&str>::new());
        assert_eq!(split_words("héllo wörld"), vec!["héllo", " wörld"]);
    }

    #[test]
    fn embeddings_float_and_base64_agree() {
        let f = embeddings(&parse_embeddings(br#"{"model":"e","input":["a","b"],"dimensions":5}"#).unwrap(), "e");
        let v: Value = serde_json::from_slice(&f.body).unwrap();
        let a: Vec<f32> = serde_json::from_value(v["data"][0]["embedding"].clone()).unwrap();
        assert_eq!(a.len(), 5);
        assert!((a.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        assert_ne!(v["data"][0]["embedding"], v["data"][1]["embedding"]);
        let b = embeddings(
            &parse_embeddings(br#"{"model":"e","input":"a","dimensions":5,"encoding_format":"base64"}"#).unwrap(),
            "e",
        );
        let vb: Value = serde_json::from_slice(&b.body).unwrap();
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(vb["data"][0]["embedding"].as_str().unwrap()).unwrap();
        let decoded: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(decoded, a);
        assert_eq!(vb["usage"]["prompt_tokens"], 1);
    }

    #[test]
    fn answers_stay_bounded() {
        // One-letter words: one chunk each would make the answer ~100x the request.
        let text = "a ".repeat(100_000);
        let body =
            serde_json::json!({"model":"m","stream":true,"messages":[{"role":"user","content":text}]}).to_string();
        let r = chat(&crate::api::openai::parse_chat(body.as_bytes()).unwrap(), "m", Clock { unix_secs: 1, seq: 1 });
        assert!(r.body.len() < body.len() + 256 * 400, "{} bytes for a {} byte request", r.body.len(), body.len());
        let rebuilt: String = String::from_utf8(r.body)
            .unwrap()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect();
        assert_eq!(rebuilt, text, "the pieces still make the reply");
        assert_eq!(pieces("a b c d e", 2), vec!["a b c", " d e"]);
        assert_eq!(pieces("a b", 5), vec!["a", " b"]);

        let many = format!(r#"{{"model":"e","input":[{}],"dimensions":4096}}"#, vec!["\"\""; 4000].join(","));
        let r = embeddings(&parse_embeddings(many.as_bytes()).unwrap(), "e");
        assert_eq!(r.status, 400);
        let big = format!(r#"{{"model":"e","input":[{}],"dimensions":4096}}"#, vec!["\"x\""; 100].join(","));
        let r = embeddings(&parse_embeddings(big.as_bytes()).unwrap(), "e");
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("dimensions"));
        let ok = format!(r#"{{"model":"e","input":[{}],"dimensions":1024}}"#, vec!["\"x\""; 100].join(","));
        assert_eq!(embeddings(&parse_embeddings(ok.as_bytes()).unwrap(), "e").status, 200);
    }

    #[test]
    fn a_long_input_is_hashed_once() {
        // 2 MB of text at 4096 dimensions: one pass over the text, not one per block of 16 numbers.
        let text = "w".repeat(2 << 20);
        let body = format!(r#"{{"model":"e","input":"{text}","dimensions":4096}}"#);
        let started = std::time::Instant::now();
        let r = embeddings(&parse_embeddings(body.as_bytes()).unwrap(), "e");
        assert_eq!(r.status, 200);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
