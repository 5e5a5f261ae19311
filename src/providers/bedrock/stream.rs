//! Converse event streams (the AWS binary event stream) → OpenAI chat completion chunks.

use super::{finish_reason, text_prefix, usage_of, Translator};
use crate::codec::eventstream::Message;
use crate::codec::sse;
use crate::providers::{toolkit, usage_json};
use serde_json::{json, Value};

impl Translator {
    pub(super) fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.chunk(out, json!({"role": "assistant", "content": ""}), None);
        }
    }

    /// Ends the client stream with an error event.
    pub(super) fn fail(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        if self.closed {
            return;
        }
        self.closed = true;
        let (etype, code) = match kind {
            "throttlingException" => ("rate_limit_error", "rate_limit_exceeded"),
            "serviceUnavailableException" => ("server_error", "provider_overloaded"),
            "validationException" => ("invalid_request_error", "validationException"),
            _ => ("server_error", "provider_error"),
        };
        let err = json!({"error": {
            "message": format!("{} ({kind}): {message}", self.provider.name),
            "type": etype,
            "param": null,
            "code": code,
        }});
        toolkit::write_stream_error(out, &err.to_string());
    }

    pub(super) fn on_message(&mut self, m: Message, out: &mut Vec<u8>) {
        let payload: Option<Value> = serde_json::from_slice(&m.payload).ok();
        match m.message_type.as_deref() {
            Some("exception") => {
                let kind = m.exception_type.as_deref().unwrap_or("exception");
                let msg = payload.as_ref().and_then(|p| p.get("message")).and_then(Value::as_str);
                let msg = msg.map(str::to_string).unwrap_or_else(|| text_prefix(&m.payload));
                self.fail(out, kind, &msg);
                return;
            }
            Some("error") => {
                let kind = m.error_code.clone().unwrap_or_else(|| "error".to_string());
                let msg = m.error_message.clone().unwrap_or_else(|| text_prefix(&m.payload));
                self.fail(out, &kind, &msg);
                return;
            }
            _ => {}
        }
        let Some(p) = payload else {
            let what = m.event_type.unwrap_or_default();
            self.fail(out, "streamError", &format!("unreadable '{what}' event payload"));
            return;
        };
        match m.event_type.as_deref() {
            Some("messageStart") => self.start(out),
            Some("contentBlockStart") => {
                let Some(tu) = p.pointer("/start/toolUse") else { return };
                self.start(out);
                let index = self.next_tool;
                self.next_tool += 1;
                let block = p.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(u64::MAX);
                if self.tool_blocks.len() >= super::MAX_OPEN_TOOLS {
                    self.tool_blocks.remove(0);
                }
                self.tool_blocks.push((block, index));
                let delta = json!({"tool_calls": [{
                    "index": index,
                    "id": tu.get("toolUseId").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {"name": tu.get("name").and_then(Value::as_str).unwrap_or(""), "arguments": ""},
                }]});
                self.chunk(out, delta, None);
            }
            Some("contentBlockDelta") => {
                let Some(d) = p.get("delta") else { return };
                if let Some(t) = d.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    self.start(out);
                    self.chunk(out, json!({"content": t}), None);
                } else if let Some(piece) =
                    d.pointer("/toolUse/input").and_then(Value::as_str).filter(|t| !t.is_empty())
                {
                    let block = p.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(u64::MAX);
                    if let Some(&(_, index)) = self.tool_blocks.iter().rev().find(|(b, _)| *b == block) {
                        self.chunk(
                            out,
                            json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                            None,
                        );
                    }
                }
            }
            Some("contentBlockStop") => {
                let block = p.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(u64::MAX);
                self.tool_blocks.retain(|(b, _)| *b != block);
            }
            Some("messageStop") if !self.finished => {
                self.start(out);
                self.finished = true;
                let reason = finish_reason(p.get("stopReason").and_then(Value::as_str));
                self.chunk(out, json!({}), Some(reason));
            }
            Some("metadata") => {
                if let Some(u) = p.get("usage").and_then(usage_of) {
                    self.usage = Some(u);
                }
            }
            _ => {}
        }
    }

    pub(super) fn end(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        if !self.finished {
            let why = if self.decoder.has_partial() {
                "the stream was cut inside a message"
            } else {
                "the stream ended before messageStop"
            };
            self.fail(out, "streamError", why);
            return;
        }
        self.closed = true;
        if self.include_usage {
            if let Some(u) = &self.usage {
                let c = toolkit::usage_chunk_json(&self.id, self.created, &self.model, usage_json(u));
                sse::write_event(out, None, &c);
            }
        }
        sse::write_event(out, None, "[DONE]");
    }
}
