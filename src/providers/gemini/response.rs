//! Gemini answers and errors → OpenAI chat completions, embeddings and OpenAI-shaped errors.

use super::{map_finish, parts, Translator};
use crate::providers::Usage;
use base64::Engine;
use serde_json::{json, Map, Value};

impl Translator {
    pub(super) fn completion(&mut self, v: &Value) -> Value {
        self.take_id(v);
        self.read_usage(v);
        let cand = v.get("candidates").and_then(|c| c.get(0));
        let mut text = String::new();
        let mut calls = Vec::new();
        for p in parts(cand) {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                text.push_str(t);
            }
            if p.get("functionCall").is_some() {
                calls.push(self.tool_call(p, calls.len(), false));
            }
        }
        let finish = match cand {
            _ if !calls.is_empty() => "tool_calls",
            Some(c) => map_finish(c.get("finishReason").and_then(Value::as_str).unwrap_or("STOP")),
            None if v.pointer("/promptFeedback/blockReason").is_some() => "content_filter",
            None => "stop",
        };
        let mut message = Map::new();
        message.insert("role".into(), "assistant".into());
        let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) };
        message.insert("content".into(), content);
        message.insert("refusal".into(), Value::Null);
        if !calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let mut out = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        });
        if self.usage.is_some() {
            if let Some(o) = out.as_object_mut() {
                o.insert("usage".into(), self.usage_json());
            }
        }
        out
    }

    pub(super) fn embeddings(&mut self, v: &Value, base64: bool) -> Value {
        let list = v.get("embeddings").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let data: Vec<Value> = list
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let values = e.get("values").cloned().unwrap_or_else(|| json!([]));
                let embedding = if base64 {
                    let mut bytes = Vec::new();
                    for x in values.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                        bytes.extend_from_slice(&(x.as_f64().unwrap_or(0.0) as f32).to_le_bytes());
                    }
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    values
                };
                json!({"object": "embedding", "index": i, "embedding": embedding})
            })
            .collect();
        let tokens = v.pointer("/usageMetadata/promptTokenCount").and_then(Value::as_u64);
        if let Some(t) = tokens {
            self.usage = Some(Usage { prompt_tokens: t, completion_tokens: 0, cached_tokens: 0 });
        }
        let t = tokens.unwrap_or(0);
        json!({
            "object": "list",
            "data": data,
            "model": self.model,
            "usage": {"prompt_tokens": t, "total_tokens": t}
        })
    }
}

/// Message and status name of a Gemini error object.
pub(super) fn error_fields(err: &Value) -> (String, Option<String>) {
    let message = match err.get("message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => "no error message".to_string(),
    };
    (message, err.get("status").and_then(Value::as_str).map(str::to_string))
}

/// The provider's message from an error body (`{"error":…}`, or a one-element array of it), else a
/// short prefix of the body.
pub(super) fn provider_message(body: &[u8]) -> (String, Option<String>) {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let err = match &v {
            Value::Array(a) => a.first().and_then(|x| x.get("error")),
            _ => v.get("error"),
        };
        if let Some(e) = err.filter(|e| e.is_object()) {
            return error_fields(e);
        }
    }
    let text = String::from_utf8_lossy(body);
    let short: String = text.trim().chars().take(200).collect();
    (if short.is_empty() { "no error details".to_string() } else { short }, None)
}
