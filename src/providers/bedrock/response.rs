//! Converse answers and errors → OpenAI chat completions and OpenAI-shaped errors.

use super::{finish_reason, text_prefix, usage_of, Translator};
use crate::providers::usage_json;
use serde_json::{json, Value};

/// Sets a field of a JSON object (no-op on anything else).
fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_string(), value);
    }
}

/// The message and error type of a Converse error answer.
pub(super) fn error_parts(status: u16, body: &[u8]) -> (String, Option<String>) {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let msg = v
        .as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("Message")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| text_prefix(body));
    // The error type travels in `x-amzn-errortype`; some bodies repeat it as `__type`. The statuses
    // below are each used by one error type only (service model).
    let from_body = v
        .as_ref()
        .and_then(|v| v.get("__type"))
        .and_then(Value::as_str)
        .map(|t| t.rsplit('#').next().unwrap_or(t).split(':').next().unwrap_or(t).to_string());
    let kind = from_body.or_else(|| {
        match status {
            400 => Some("ValidationException"),
            404 => Some("ResourceNotFoundException"),
            _ => None,
        }
        .map(str::to_string)
    });
    (msg, kind)
}

impl Translator {
    pub(super) fn completion(&mut self, body: &[u8]) -> Vec<u8> {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return self.prologue.unreadable(&self.provider.name, "the Converse response is not JSON");
        };
        if v.pointer("/output/message").is_none() && v.get("stopReason").is_none() {
            return self.prologue.unreadable(&self.provider.name, "the Converse response holds no output message");
        }
        let mut text = String::new();
        let mut calls = Vec::new();
        let blocks = v.pointer("/output/message/content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for b in blocks {
            if let Some(t) = b.get("text").and_then(Value::as_str) {
                text.push_str(t);
            } else if let Some(u) = b.get("toolUse") {
                let input = u.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": u.get("toolUseId").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {
                        "name": u.get("name").and_then(Value::as_str).unwrap_or(""),
                        "arguments": input.to_string(),
                    },
                }));
            }
        }
        let mut message =
            json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
        if !calls.is_empty() {
            set(&mut message, "tool_calls", Value::Array(calls));
        }
        self.usage = v.get("usage").and_then(usage_of);
        let mut out = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": finish_reason(v.get("stopReason").and_then(Value::as_str)),
            }],
        });
        if let Some(u) = &self.usage {
            set(&mut out, "usage", usage_json(u));
        }
        out.to_string().into_bytes()
    }
}
