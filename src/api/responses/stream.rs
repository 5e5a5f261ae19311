//! OpenAI chat completion SSE → Responses event stream.

use super::response::{
    call_item, id_suffix, incomplete_reason, message_item, refusal_part, text_part, unique_call_id, usage_value, Echo,
    Parts,
};
use crate::codec::sse;
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// Most function calls one stream may open (garbage input must not grow memory without bound); later
/// ones are dropped.
pub(super) const MAX_TOOL_CALLS: usize = 1024;

#[derive(Debug)]
struct Part {
    refusal: bool,
    text: String,
}

#[derive(Debug)]
enum Kind {
    Message { parts: Vec<Part> },
    Call { call_id: String, name: String, arguments: String },
}

#[derive(Debug)]
struct Item {
    id: String,
    /// `None` while open, then the status it was closed with.
    status: Option<&'static str>,
    kind: Kind,
}

impl Item {
    fn json(&self) -> Value {
        let status = self.status.unwrap_or("in_progress");
        match &self.kind {
            Kind::Message { parts } => message_item(&self.id, status, parts.iter().map(Part::json).collect()),
            Kind::Call { call_id, name, arguments } => call_item(&self.id, status, call_id, name, arguments),
        }
    }
}

impl Part {
    fn json(&self) -> Value {
        if self.refusal {
            refusal_part(&self.text)
        } else {
            text_part(&self.text)
        }
    }
}

/// OpenAI `chat.completion.chunk` SSE → the Responses event stream (`event: <type>` + `data: <json>`,
/// each payload with `type` and a `sequence_number` counting from 0; no `[DONE]`). Rules:
/// - The first upstream event sends `response.created` and `response.in_progress` (status
///   `in_progress`, no output). Ids as [`super::response_from_openai`] makes them, from the first
///   chunk's `id` (or the seed).
/// - Output items in order of appearance (`output_index`): text (`content`) and refusal (`refusal`)
///   deltas go to the open `message` item, opened on the first one (`output_item.added`), each kind in
///   its content part (`content_part.added`, then `output_text.delta` / `refusal.delta`); each chat tool
///   call (by its `index`) is a `function_call` item (`output_item.added` with empty `arguments`, then
///   `function_call_arguments.delta`). A tool call closes the open message item; text after it opens a
///   new one. Function call items stay open until the finish chunk (chat calls may interleave).
/// - Closing an item sends, per content part, `output_text.done` / `refusal.done` and
///   `content_part.done`, or `function_call_arguments.done`, then `output_item.done` with the whole item.
///   The finish chunk closes every open item (status `incomplete` for length / content_filter).
/// - The final event waits for the usage chunk (or `[DONE]`, or the end of input): `response.completed`,
///   or `response.incomplete` (`incomplete_details.reason` max_output_tokens / content_filter), carrying
///   the whole response (`usage` null when the upstream sent none). An answer with no item at all gets
///   one empty message item first.
/// - An upstream error event, or an input that ends with neither a finish chunk nor `[DONE]`, closes the
///   open items as `incomplete` and sends an `error` event then `response.failed` (with `error` set).
/// - Only choice 0 is read; `reasoning_content` is dropped; at most [`MAX_TOOL_CALLS`] calls.
#[derive(Debug)]
pub struct StreamToResponses {
    echo: Echo,
    seed: u64,
    decoder: sse::Decoder,
    seq: u64,
    started: bool,
    finished: bool,
    suffix: String,
    created_at: u64,
    items: Vec<Item>,
    open_message: Option<usize>,
    /// (chat tool call index, item index).
    calls: Vec<(u64, usize)>,
    call_ids: HashSet<String>,
    finish: Option<String>,
    usage: Option<Value>,
}

impl StreamToResponses {
    /// `id_seed` makes the ids when the upstream chunks carry none.
    pub fn new(echo: Echo, id_seed: u64) -> Self {
        StreamToResponses {
            created_at: echo.created_at,
            echo,
            seed: id_seed,
            decoder: sse::Decoder::new(),
            seq: 0,
            started: false,
            finished: false,
            suffix: String::new(),
            items: Vec::new(),
            open_message: None,
            calls: Vec::new(),
            call_ids: HashSet::new(),
            finish: None,
            usage: None,
        }
    }

    /// Feeds OpenAI SSE bytes (split anywhere); appends Responses SSE bytes to `out`. `end` closes the
    /// stream well-formed.
    pub fn push(&mut self, openai_sse_bytes: &[u8], end: bool, out: &mut Vec<u8>) {
        for e in self.decoder.events(openai_sse_bytes, end) {
            self.on_event(&e.data, out);
        }
        if end {
            self.close(false, out);
        }
    }

    fn on_event(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let data = data.trim();
        if data == "[DONE]" {
            self.close(true, out);
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else { return };
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            self.fail(err, out);
            return;
        }
        self.start(v.get("id").and_then(Value::as_str), v.get("created").and_then(Value::as_u64), out);
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let choices = v.get("choices").and_then(Value::as_array);
        let choice = choices.into_iter().flatten().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0);
        if let Some(choice) = choice.filter(|_| self.finish.is_none()) {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            for (key, refusal) in [("content", false), ("refusal", true)] {
                if let Some(t) = delta.get(key).and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    self.text(t, refusal, out);
                }
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                self.tool_delta(call, out);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(reason.to_string());
                self.close_all(out);
            }
        }
        if self.finish.is_some() && self.usage.is_some() {
            self.close(true, out);
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut payload: Map<String, Value>) {
        payload.insert("type".into(), json!(kind));
        payload.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        let data = serde_json::to_string(&payload).unwrap_or_default();
        sse::write_event(out, Some(kind), &data);
    }

    fn emit_value(&mut self, out: &mut Vec<u8>, kind: &str, payload: Value) {
        match payload {
            Value::Object(o) => self.emit(out, kind, o),
            _ => self.emit(out, kind, Map::new()),
        }
    }

    fn response(&self, in_progress: bool, error: Option<Value>) -> Value {
        let output = if in_progress { Vec::new() } else { self.items.iter().map(Item::json).collect() };
        self.echo.response(Parts {
            id: format!("resp_{}", self.suffix),
            created_at: self.created_at,
            in_progress,
            output,
            usage: if in_progress { None } else { self.usage.as_ref().map(usage_value) },
            error,
            incomplete: if in_progress { None } else { incomplete_reason(self.finish.as_deref()) },
        })
    }

    fn start(&mut self, id: Option<&str>, created: Option<u64>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.suffix = id_suffix(id, self.seed);
        if let Some(c) = created {
            self.created_at = c;
        }
        let response = self.response(true, None);
        self.emit_value(out, "response.created", json!({"response": response}));
        let response = self.response(true, None);
        self.emit_value(out, "response.in_progress", json!({"response": response}));
    }

    fn add_item(&mut self, id: String, kind: Kind, out: &mut Vec<u8>) -> usize {
        let index = self.items.len();
        self.items.push(Item { id, status: None, kind });
        let item = self.items.get(index).map(Item::json).unwrap_or(Value::Null);
        self.emit_value(out, "response.output_item.added", json!({"output_index": index, "item": item}));
        index
    }

    fn text(&mut self, text: &str, refusal: bool, out: &mut Vec<u8>) {
        let index = match self.open_message {
            Some(i) => i,
            None => {
                let id = match self.items.len() {
                    0 => format!("msg_{}", self.suffix),
                    n => format!("msg_{}_{n}", self.suffix),
                };
                let i = self.add_item(id, Kind::Message { parts: Vec::new() }, out);
                self.open_message = Some(i);
                i
            }
        };
        let Some(item) = self.items.get_mut(index) else { return };
        let item_id = item.id.clone();
        let Kind::Message { parts } = &mut item.kind else { return };
        let (content_index, added) = match parts.iter().position(|p| p.refusal == refusal) {
            Some(ci) => (ci, false),
            None => {
                parts.push(Part { refusal, text: String::new() });
                (parts.len() - 1, true)
            }
        };
        if let Some(p) = parts.get_mut(content_index) {
            p.text.push_str(text);
        }
        let place = json!({"item_id": item_id, "output_index": index, "content_index": content_index});
        if added {
            let part = if refusal { refusal_part("") } else { text_part("") };
            let mut payload = place.clone();
            payload["part"] = part;
            self.emit_value(out, "response.content_part.added", payload);
        }
        let mut payload = place;
        payload["delta"] = json!(text);
        if refusal {
            self.emit_value(out, "response.refusal.delta", payload);
        } else {
            payload["logprobs"] = json!([]);
            self.emit_value(out, "response.output_text.delta", payload);
        }
    }

    fn tool_delta(&mut self, call: &Value, out: &mut Vec<u8>) {
        let chat_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = call.get("function").unwrap_or(&Value::Null);
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        let index = match self.calls.iter().find(|(c, _)| *c == chat_index) {
            Some(&(_, i)) => i,
            None => {
                if self.calls.len() >= MAX_TOOL_CALLS {
                    return;
                }
                if let Some(m) = self.open_message {
                    self.close_item(m, "completed", out);
                }
                let n = self.calls.len();
                let call_id = unique_call_id(call.get("id").and_then(Value::as_str), &self.suffix, n, &self.call_ids);
                self.call_ids.insert(call_id.clone());
                let kind = Kind::Call { call_id, name: name.to_string(), arguments: String::new() };
                let i = self.add_item(format!("fc_{}_{n}", self.suffix), kind, out);
                self.calls.push((chat_index, i));
                i
            }
        };
        let Some(item) = self.items.get_mut(index).filter(|it| it.status.is_none()) else { return };
        let item_id = item.id.clone();
        let Kind::Call { name: known, arguments, .. } = &mut item.kind else { return };
        if known.is_empty() && !name.is_empty() {
            *known = name.to_string();
        }
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
        if args.is_empty() {
            return;
        }
        arguments.push_str(args);
        let payload = json!({"item_id": item_id, "output_index": index, "delta": args});
        self.emit_value(out, "response.function_call_arguments.delta", payload);
    }

    fn close_item(&mut self, index: usize, status: &'static str, out: &mut Vec<u8>) {
        if self.open_message == Some(index) {
            self.open_message = None;
        }
        let Some(item) = self.items.get_mut(index).filter(|it| it.status.is_none()) else { return };
        item.status = Some(status);
        let item_id = item.id.clone();
        let mut events = Vec::new();
        match &item.kind {
            Kind::Message { parts } => {
                for (ci, p) in parts.iter().enumerate() {
                    let mut done = json!({"item_id": item_id, "output_index": index, "content_index": ci});
                    if p.refusal {
                        done["refusal"] = json!(p.text);
                        events.push(("response.refusal.done", done.clone()));
                    } else {
                        done["text"] = json!(p.text);
                        done["logprobs"] = json!([]);
                        events.push(("response.output_text.done", done.clone()));
                    }
                    let part =
                        json!({"item_id": item_id, "output_index": index, "content_index": ci, "part": p.json()});
                    events.push(("response.content_part.done", part));
                }
            }
            Kind::Call { arguments, .. } => {
                let done = json!({"item_id": item_id, "output_index": index, "arguments": arguments});
                events.push(("response.function_call_arguments.done", done));
            }
        }
        events.push(("response.output_item.done", json!({"output_index": index, "item": item.json()})));
        for (kind, payload) in events {
            self.emit_value(out, kind, payload);
        }
    }

    /// Closes every open item, with the status the finish reason gives.
    fn close_all(&mut self, out: &mut Vec<u8>) {
        let status = if incomplete_reason(self.finish.as_deref()).is_some() { "incomplete" } else { "completed" };
        for i in 0..self.items.len() {
            self.close_item(i, status, out);
        }
    }

    /// The end of the answer: `[DONE]` or the usage chunk (`upstream_done`), or the end of input.
    fn close(&mut self, upstream_done: bool, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        if self.finish.is_none() && !upstream_done {
            let err =
                json!({"message": "The upstream stream ended before the answer was complete.", "type": "server_error"});
            self.fail(&err, out);
            return;
        }
        self.start(None, None, out);
        if self.items.is_empty() {
            let id = format!("msg_{}", self.suffix);
            let i = self.add_item(id.clone(), Kind::Message { parts: Vec::new() }, out);
            if let Some(Item { kind: Kind::Message { parts }, .. }) = self.items.get_mut(i) {
                parts.push(Part { refusal: false, text: String::new() });
            }
            let part = json!({"item_id": id, "output_index": i, "content_index": 0, "part": text_part("")});
            self.emit_value(out, "response.content_part.added", part);
        }
        self.close_all(out);
        let kind = if incomplete_reason(self.finish.as_deref()).is_some() {
            "response.incomplete"
        } else {
            "response.completed"
        };
        let response = self.response(false, None);
        self.emit_value(out, kind, json!({"response": response}));
        self.finished = true;
    }

    fn fail(&mut self, err: &Value, out: &mut Vec<u8>) {
        self.start(None, None, out);
        for i in 0..self.items.len() {
            self.close_item(i, "incomplete", out);
        }
        let text = |k: &str| err.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let message = match err {
            Value::String(s) => s.as_str(),
            _ => text("message").unwrap_or("The upstream stream failed."),
        };
        let code = text("code").or(text("type")).unwrap_or("server_error");
        let param = text("param");
        let response_code = if code.contains("rate_limit") { "rate_limit_exceeded" } else { "server_error" };
        self.emit_value(out, "error", json!({"code": code, "message": message, "param": param}));
        let error = json!({"code": response_code, "message": message});
        let response = self.response(false, Some(error));
        self.emit_value(out, "response.failed", json!({"response": response}));
        self.finished = true;
    }
}
