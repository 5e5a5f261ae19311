//! OpenAI chat completion SSE → Anthropic Messages SSE.

use super::error::error_value;
use super::response::{message_id, stop_reason, usage_fields};
use crate::codec::sse;
use serde_json::{json, Map, Value};

/// Most tool calls one stream may open (garbage input must not grow memory without bound).
pub(super) const MAX_TOOL_CALLS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text(u64),
    Tool(u64),
}

/// OpenAI `chat.completion.chunk` SSE → Anthropic SSE. Rules: `message_start` on the first chunk (usage
/// 0 as OpenAI reports it only at the end); text deltas and each tool call (by OpenAI `index`) become
/// content blocks in order of appearance, a new block closing the open one; an argument piece for a tool
/// call whose block was already closed is still sent as a delta at that block's index (the SDK
/// accumulates by index); the finish chunk closes the open block; `message_delta` (stop reason, usage)
/// and `message_stop` follow when the usage chunk (`choices: []`) or `[DONE]` arrives, or the input
/// ends. Only choice 0 is read; `reasoning_content` deltas are dropped. An error event becomes an
/// Anthropic `error` event and ends the stream.
#[derive(Debug)]
pub struct StreamToAnthropic {
    model: String,
    decoder: sse::Decoder,
    started: bool,
    finished: bool,
    open: Open,
    next_index: u64,
    /// (OpenAI tool call index, Anthropic block index).
    pub(super) tools: Vec<(u64, u64)>,
    finish: Option<String>,
    usage: Option<Value>,
}

impl StreamToAnthropic {
    pub fn new(model: &str) -> Self {
        StreamToAnthropic {
            model: model.to_string(),
            decoder: sse::Decoder::new(),
            started: false,
            finished: false,
            open: Open::None,
            next_index: 0,
            tools: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    /// Feeds OpenAI SSE bytes (split anywhere); appends Anthropic SSE bytes to `out`. `end` closes the
    /// stream well-formed.
    pub fn push(&mut self, openai_sse_bytes: &[u8], end: bool, out: &mut Vec<u8>) {
        for e in self.decoder.events(openai_sse_bytes, end) {
            self.on_event(&e.data, out);
        }
        if end {
            self.close(out);
        }
    }

    fn on_event(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let data = data.trim();
        if data == "[DONE]" {
            self.close(out);
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else { return };
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            self.fail(err, out);
            return;
        }
        self.start(v.get("id").and_then(Value::as_str), data.as_bytes(), out);
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let choices = v.get("choices").and_then(Value::as_array);
        let choice = choices.into_iter().flatten().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0);
        if let Some(choice) = choice {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            for key in ["content", "refusal"] {
                if let Some(t) = delta.get(key).and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    self.text(t, out);
                }
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                self.tool_delta(call, out);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(reason.to_string());
                self.close_block(out);
            }
        } else if choices.is_some_and(|c| c.is_empty()) && self.usage.is_some() && self.finish.is_some() {
            self.close(out);
        }
    }

    fn emit(out: &mut Vec<u8>, kind: &str, v: &Value) {
        let data = serde_json::to_string(v).unwrap_or_default();
        sse::write_event(out, Some(kind), &data);
    }

    fn start(&mut self, id: Option<&str>, seed: &[u8], out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": message_id(id, seed),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        Self::emit(out, "message_start", &json!({"type": "message_start", "message": message}));
    }

    fn open_block(&mut self, block: Value, out: &mut Vec<u8>) -> u64 {
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        Self::emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Open::Text(i) | Open::Tool(i) = self.open {
            Self::emit(out, "content_block_stop", &json!({"type": "content_block_stop", "index": i}));
        }
        self.open = Open::None;
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Open::Text(i) => i,
            _ => {
                let i = self.open_block(json!({"type": "text", "text": ""}), out);
                self.open = Open::Text(i);
                i
            }
        };
        let delta = json!({"type": "text_delta", "text": text});
        Self::emit(out, "content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": delta}));
    }

    fn tool_delta(&mut self, call: &Value, out: &mut Vec<u8>) {
        let oi = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = call.get("function").unwrap_or(&Value::Null);
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
        let block = match self.tools.iter().find(|(i, _)| *i == oi) {
            Some(&(_, b)) => b,
            None => {
                if self.tools.len() >= MAX_TOOL_CALLS {
                    return;
                }
                let id = match call.get("id").and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => id.to_string(),
                    _ => format!("toolu_{oi}"),
                };
                let name = f.get("name").and_then(Value::as_str).unwrap_or("");
                let b = self.open_block(json!({"type": "tool_use", "id": id, "name": name, "input": {}}), out);
                self.open = Open::Tool(b);
                self.tools.push((oi, b));
                b
            }
        };
        if !args.is_empty() {
            let delta = json!({"type": "input_json_delta", "partial_json": args});
            Self::emit(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": block, "delta": delta}),
            );
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.start(None, self.model.clone().as_bytes(), out);
        self.close_block(out);
        let mut usage = Map::new();
        match &self.usage {
            Some(u) => usage_fields(u, &mut usage),
            None => {
                usage.insert("output_tokens".into(), json!(0));
            }
        }
        let reason = stop_reason(self.finish.as_deref(), !self.tools.is_empty());
        let delta = json!({"stop_reason": reason, "stop_sequence": null});
        Self::emit(out, "message_delta", &json!({"type": "message_delta", "delta": delta, "usage": usage}));
        Self::emit(out, "message_stop", &json!({"type": "message_stop"}));
        self.finished = true;
    }

    fn fail(&mut self, err: &Value, out: &mut Vec<u8>) {
        let message = match err {
            Value::String(s) => s.as_str(),
            e => e.get("message").and_then(Value::as_str).unwrap_or("The upstream stream failed."),
        };
        Self::emit(out, "error", &error_value("api_error", message));
        self.finished = true;
    }
}
