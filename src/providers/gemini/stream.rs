//! Gemini SSE streams (`streamGenerateContent?alt=sse`) → OpenAI chat completion chunks.

use super::response::error_fields;
use super::{map_finish, parts, Translator};
use crate::codec::sse;
use crate::providers::{provider_error_body, toolkit};
use serde_json::{json, Value};

impl Translator {
    /// Ends the client stream with an error event.
    pub(super) fn fail(&mut self, out: &mut Vec<u8>, error_json: &str) {
        toolkit::write_stream_error(out, error_json);
        self.done = true;
    }

    pub(super) fn on_event(&mut self, data: &str, out: &mut Vec<u8>) {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) => {
                let e = self.own_error("the provider sent a stream event that is not JSON");
                return self.fail(out, &e);
            }
        };
        if let Some(err) = v.get("error") {
            let status = err.get("code").and_then(Value::as_u64).filter(|c| (400..600).contains(c)).unwrap_or(500);
            let (message, kind) = error_fields(err);
            let body = provider_error_body(&self.provider.name, status as u16, &message, kind.as_deref()).1;
            return self.fail(out, &String::from_utf8_lossy(&body));
        }
        if !self.started {
            self.take_id(&v);
            self.started = true;
            let c = self.chunk(json!({"role": "assistant", "content": ""}), None);
            sse::write_event(out, None, &c);
        }
        self.read_usage(&v);
        let cand = v.get("candidates").and_then(|c| c.get(0));
        for p in parts(cand) {
            if let Some(t) = p.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                let c = self.chunk(json!({"content": t}), None);
                sse::write_event(out, None, &c);
            }
            if p.get("functionCall").is_some() {
                let call = self.tool_call(p, self.tool_calls, true);
                self.tool_calls += 1;
                let c = self.chunk(json!({"tool_calls": [call]}), None);
                sse::write_event(out, None, &c);
            }
        }
        match cand {
            Some(c) => {
                if let Some(r) = c.get("finishReason").and_then(Value::as_str) {
                    self.finish = Some(map_finish(r));
                }
            }
            None if v.pointer("/promptFeedback/blockReason").is_some() => self.finish = Some("content_filter"),
            None => {}
        }
    }

    pub(super) fn close(&mut self, out: &mut Vec<u8>) {
        let Some(finish) = self.finish else {
            let e = self.own_error("the stream ended before the provider finished the response");
            return self.fail(out, &e);
        };
        let finish = if self.tool_calls > 0 { "tool_calls" } else { finish };
        let c = self.chunk(json!({}), Some(finish));
        sse::write_event(out, None, &c);
        if self.include_usage() {
            let u = toolkit::usage_chunk_json(&self.id, self.created, &self.model, self.usage_json());
            sse::write_event(out, None, &u);
        }
        sse::write_event(out, None, "[DONE]");
        self.done = true;
    }
}
