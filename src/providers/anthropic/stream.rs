//! Anthropic SSE streams → OpenAI chat completion chunks.

use super::response::{finish_reason, Block, ErrorObject, RawUsage};
use super::Translator;
use crate::codec::sse;
use crate::providers::{provider_error_body, toolkit, usage_json};
use serde::Deserialize;
use serde_json::json;

/// Tool blocks open at once in a stream (they normally close one by one); older ones are forgotten.
pub(super) const MAX_OPEN_TOOLS: usize = 64;

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

/// A stream event's `delta` (`content_block_delta`, `message_delta`); the cache's capture reads it too.
#[derive(Deserialize)]
pub(crate) struct Delta {
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) partial_json: Option<String>,
    #[serde(default)]
    pub(crate) stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct StreamEvent<'a> {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<StartMessage>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    content_block: Option<Block<'a>>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

impl Translator {
    pub(super) fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            // No `message_start` named the message: an id of our own, as with no id in an answer.
            self.ensure_id();
            self.emit(out, json!({"role": "assistant", "content": ""}));
        }
    }

    pub(super) fn merge_usage(&mut self, u: Option<RawUsage>) {
        if let Some(u) = u {
            self.usage.get_or_insert_with(RawUsage::default).merge(&u);
        }
    }

    pub(super) fn finish_stream(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        let finish = finish_reason(self.stop_reason.as_deref());
        sse::write_event(out, None, &self.chunk(json!({}), Some(finish)));
        if self.include_usage {
            let u = self.usage.unwrap_or_default().usage();
            let c = toolkit::usage_chunk_json(&self.id, self.created, &self.model, usage_json(&u));
            sse::write_event(out, None, &c);
        }
        sse::write_event(out, None, "[DONE]");
        self.done = true;
    }

    pub(super) fn fail(&mut self, out: &mut Vec<u8>, error_json: &str) {
        toolkit::write_stream_error(out, error_json);
        self.done = true;
    }

    pub(super) fn handle(&mut self, event: sse::Event, out: &mut Vec<u8>) {
        let Ok(ev) = serde_json::from_str::<StreamEvent>(&event.data) else { return };
        let kind = ev.kind.as_deref().or(event.event.as_deref()).unwrap_or("");
        match kind {
            "message_start" => {
                if let Some(m) = ev.message {
                    if let Some(id) = m.id {
                        self.id = id;
                    }
                    self.merge_usage(m.usage);
                }
                self.start(out);
            }
            "content_block_start" => {
                self.start(out);
                let Some(b) = ev.content_block else { return };
                match b.kind.as_str() {
                    "text" => {
                        if let Some(t) = b.text.filter(|t| !t.is_empty()) {
                            self.emit(out, json!({"content": t}));
                        }
                    }
                    "tool_use" => {
                        let i = self.next_tool;
                        self.next_tool += 1;
                        if self.open_tools.len() >= MAX_OPEN_TOOLS {
                            self.open_tools.remove(0);
                        }
                        self.open_tools.push((ev.index.unwrap_or(u64::MAX), i));
                        let call = json!({
                            "index": i,
                            "id": b.id.unwrap_or_default(),
                            "type": "function",
                            "function": {"name": b.name.unwrap_or_default(), "arguments": ""},
                        });
                        self.emit(out, json!({"tool_calls": [call]}));
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let Some(d) = ev.delta else { return };
                match d.kind.as_deref() {
                    Some("text_delta") => {
                        if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                            self.start(out);
                            self.emit(out, json!({"content": t}));
                        }
                    }
                    Some("input_json_delta") => {
                        let tool = self.open_tools.iter().find(|(b, _)| Some(*b) == ev.index).map(|(_, i)| *i);
                        if let (Some(i), Some(piece)) = (tool, d.partial_json.filter(|p| !p.is_empty())) {
                            self.emit(out, json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => self.open_tools.retain(|(b, _)| Some(*b) != ev.index),
            "message_delta" => {
                if let Some(r) = ev.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(r);
                }
                self.merge_usage(ev.usage);
            }
            "message_stop" => self.finish_stream(out),
            "error" => {
                let e = ev.error.unwrap_or(ErrorObject { kind: None, message: None });
                let status = crate::api::anthropic::status_for_type(e.kind.as_deref().unwrap_or(""));
                let message = e.message.unwrap_or_else(|| "stream error".to_string());
                let (_, body) = provider_error_body(&self.provider, status, &message, e.kind.as_deref());
                self.fail(out, &String::from_utf8_lossy(&body));
            }
            _ => {}
        }
    }
}
