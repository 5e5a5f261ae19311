//! The client streams read back into an [`Answer`]: chat chunks ([`ChatStream`]), Anthropic events
//! ([`AnthropicStream`]) and Responses events ([`ResponsesStream`], which keeps only the final response).
//! Each takes SSE bytes split anywhere and says at the end whether the answer was complete.

use super::answer::{Answer, Call, Choice, Finish, Tokens, MAX_CHOICES, MAX_TOOL_CALLS};
use crate::codec::sse;
use crate::providers::anthropic::RawUsage;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// One choice of a chat stream, as far as it came.
#[derive(Default)]
struct Partial {
    content: String,
    refusal: String,
    /// (chat tool call index, the call so far), in order of appearance.
    calls: Vec<(u64, Call)>,
    finish: Option<String>,
}

/// Chat completion chunks → one completion: content and refusal concatenated, tool calls by `index` (id
/// and name from their first chunk, arguments concatenated), finish reasons, usage from the usage chunk.
/// Complete when `[DONE]` came after every choice finished (`stop` or `tool_calls`), with no error event,
/// no data that is not a chunk, and nothing the stored form cannot hold (log probabilities, audio).
#[derive(Default)]
pub(crate) struct ChatStream {
    decoder: sse::Decoder,
    id: String,
    created: u64,
    model: String,
    started: bool,
    choices: Vec<Partial>,
    usage: Option<Tokens>,
    done: bool,
    failed: bool,
}

fn absent(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

impl ChatStream {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        for e in self.decoder.events(bytes, false) {
            self.on_event(&e.data);
        }
    }

    fn on_event(&mut self, data: &str) {
        if self.done || self.failed {
            // Nothing may follow `[DONE]`; nothing counts after a failure.
            self.failed = true;
            return;
        }
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        let ok = serde_json::from_str::<Value>(data).ok().is_some_and(|v| self.chunk(&v));
        if !ok {
            self.failed = true;
        }
    }

    /// Reads one chunk; `false` when it spoils the answer.
    fn chunk(&mut self, v: &Value) -> bool {
        let Some(o) = v.as_object() else { return false };
        if !absent(o.get("error")) {
            return false;
        }
        if !self.started {
            self.started = true;
            self.id = o.get("id").and_then(Value::as_str).unwrap_or("").to_string();
            self.created = o.get("created").and_then(Value::as_u64).unwrap_or(0);
            self.model = o.get("model").and_then(Value::as_str).unwrap_or("").to_string();
        }
        if let Some(u) = o.get("usage").and_then(Tokens::from_chat) {
            self.usage = Some(u);
        }
        let choices = match o.get("choices") {
            None | Some(Value::Null) => return true,
            Some(Value::Array(c)) => c,
            Some(_) => return false,
        };
        choices.iter().all(|c| self.choice(c))
    }

    fn choice(&mut self, c: &Value) -> bool {
        let index = c.get("index").and_then(Value::as_u64).map_or(0, |i| usize::try_from(i).unwrap_or(usize::MAX));
        if index >= MAX_CHOICES || !absent(c.get("logprobs")) {
            return false;
        }
        if self.choices.len() <= index {
            self.choices.resize_with(index + 1, Partial::default);
        }
        let Some(p) = self.choices.get_mut(index) else { return false };
        if p.finish.is_some() {
            return false;
        }
        let delta = c.get("delta").unwrap_or(&Value::Null);
        if !absent(delta.get("audio")) || !absent(delta.get("function_call")) {
            return false;
        }
        if let Some(t) = delta.get("content").and_then(Value::as_str) {
            p.content.push_str(t);
        }
        if let Some(t) = delta.get("refusal").and_then(Value::as_str) {
            p.refusal.push_str(t);
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let ci = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let slot = match p.calls.iter().position(|(i, _)| *i == ci) {
                Some(s) => s,
                None if p.calls.len() < MAX_TOOL_CALLS => {
                    p.calls.push((ci, Call::default()));
                    p.calls.len() - 1
                }
                None => return false,
            };
            let Some((_, known)) = p.calls.get_mut(slot) else { return false };
            let f = call.get("function").unwrap_or(&Value::Null);
            fn text(v: Option<&Value>) -> &str {
                v.and_then(Value::as_str).unwrap_or("")
            }
            if known.id.is_empty() {
                known.id = text(call.get("id")).to_string();
            }
            if known.name.is_empty() {
                known.name = text(f.get("name")).to_string();
            }
            known.arguments.push_str(text(f.get("arguments")));
        }
        if let Some(r) = c.get("finish_reason").and_then(Value::as_str) {
            p.finish = Some(r.to_string());
        }
        true
    }

    /// The answer, when it is complete.
    pub(crate) fn finish(mut self) -> Option<Answer> {
        for e in self.decoder.events(&[], true) {
            self.on_event(&e.data);
        }
        if !self.done || self.failed || self.choices.is_empty() {
            return None;
        }
        let choices = self
            .choices
            .into_iter()
            .map(|p| {
                Some(Choice {
                    finish: Finish::from_chat(p.finish.as_deref()?)?,
                    content: p.content,
                    refusal: Some(p.refusal).filter(|r| !r.is_empty()),
                    calls: p.calls.into_iter().map(|(_, c)| c).collect(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Answer { id: self.id, created: self.created, model: self.model, choices, usage: self.usage })
    }
}

#[derive(Deserialize)]
struct AnthropicBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Deserialize)]
struct AnthropicMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct AnthropicEvent {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<AnthropicMessage>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    content_block: Option<AnthropicBlock>,
    #[serde(default)]
    delta: Option<crate::providers::anthropic::Delta>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

/// The chat finish reason of an Anthropic `stop_reason`, for an answer worth storing: end_turn and
/// stop_sequence → stop, tool_use → tool_calls; max_tokens, refusal, pause_turn and the rest → `None`.
pub(crate) fn anthropic_finish(stop_reason: Option<&str>) -> Option<Finish> {
    match stop_reason? {
        "end_turn" | "stop_sequence" => Some(Finish::Stop),
        "tool_use" => Some(Finish::ToolCalls),
        _ => None,
    }
}

/// Anthropic Messages events → one answer, as the anthropic provider's translator reads them (text
/// concatenated, `tool_use` blocks as tool calls with their `input_json_delta` pieces as arguments, usage
/// merged from `message_start` and `message_delta`). Complete when `message_stop` came with a stop reason
/// [`anthropic_finish`] accepts and no `error` event; a block the stored form cannot hold (thinking,
/// server tools) spoils the answer.
#[derive(Default)]
pub(crate) struct AnthropicStream {
    decoder: sse::Decoder,
    id: String,
    model: String,
    text: String,
    calls: Vec<Call>,
    /// (Anthropic block index, call index).
    blocks: Vec<(u64, usize)>,
    stop_reason: Option<String>,
    usage: Option<RawUsage>,
    stopped: bool,
    failed: bool,
}

impl AnthropicStream {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        for e in self.decoder.events(bytes, false) {
            self.on_event(e);
        }
    }

    fn on_event(&mut self, e: sse::Event) {
        if self.failed {
            return;
        }
        let Ok(ev) = serde_json::from_str::<AnthropicEvent>(&e.data) else {
            self.failed = true;
            return;
        };
        let kind = ev.kind.as_deref().or(e.event.as_deref()).unwrap_or("");
        if self.stopped && kind != "ping" {
            self.failed = true;
            return;
        }
        match kind {
            "message_start" => {
                if let Some(m) = ev.message {
                    self.id = m.id.unwrap_or_default();
                    self.model = m.model.unwrap_or_default();
                    self.merge(m.usage);
                }
            }
            "content_block_start" => match ev.content_block {
                Some(b) if b.kind == "text" => self.text.push_str(b.text.as_deref().unwrap_or("")),
                Some(b) if b.kind == "tool_use" && self.calls.len() < MAX_TOOL_CALLS => {
                    let arguments = match b.input {
                        Some(Value::Object(o)) if !o.is_empty() => Value::Object(o).to_string(),
                        _ => String::new(),
                    };
                    let call = Call { id: b.id.unwrap_or_default(), name: b.name.unwrap_or_default(), arguments };
                    self.blocks.push((ev.index.unwrap_or(u64::MAX), self.calls.len()));
                    self.calls.push(call);
                }
                _ => self.failed = true,
            },
            "content_block_delta" => {
                let Some(d) = ev.delta else { return };
                match d.kind.as_deref() {
                    Some("text_delta") => self.text.push_str(d.text.as_deref().unwrap_or("")),
                    Some("input_json_delta") => {
                        let call = self.blocks.iter().find(|(b, _)| Some(*b) == ev.index).map(|(_, c)| *c);
                        match call.and_then(|c| self.calls.get_mut(c)) {
                            Some(c) => c.arguments.push_str(d.partial_json.as_deref().unwrap_or("")),
                            None => self.failed = true,
                        }
                    }
                    _ => self.failed = true,
                }
            }
            "message_delta" => {
                if let Some(r) = ev.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(r);
                }
                self.merge(ev.usage);
            }
            "message_stop" => self.stopped = true,
            "error" => self.failed = true,
            _ => {}
        }
    }

    fn merge(&mut self, u: Option<RawUsage>) {
        if let Some(u) = u {
            self.usage.get_or_insert_with(RawUsage::default).merge(&u);
        }
    }

    /// The answer, when it is complete.
    pub(crate) fn finish(mut self) -> Option<Answer> {
        for e in self.decoder.events(&[], true) {
            self.on_event(e);
        }
        if !self.stopped || self.failed {
            return None;
        }
        let finish = anthropic_finish(self.stop_reason.as_deref())?;
        let calls = self
            .calls
            .into_iter()
            .map(|mut c| {
                // A tool called without arguments: `{}`, as the plain answer's `input` gives.
                if c.arguments.is_empty() {
                    c.arguments = "{}".to_string();
                }
                c
            })
            .collect();
        let usage = self.usage.map(|u| {
            let u = u.usage();
            Tokens { prompt: u.prompt_tokens, completion: u.completion_tokens, cached: u.cached_tokens, reasoning: 0 }
        });
        let choice = Choice { content: self.text, refusal: None, calls, finish };
        Some(Answer { id: self.id, created: 0, model: self.model, choices: vec![choice], usage })
    }
}

#[derive(Deserialize)]
struct ResponsesEvent<'a> {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default, borrow)]
    response: Option<&'a RawValue>,
}

/// Responses events → the final `response.completed` event's response (the events before it are only
/// checked for failure). `response.incomplete`, `response.failed` and `error` spoil the answer.
#[derive(Default)]
pub(crate) struct ResponsesStream {
    decoder: sse::Decoder,
    completed: Option<String>,
    failed: bool,
}

impl ResponsesStream {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        for e in self.decoder.events(bytes, false) {
            self.on_event(e);
        }
    }

    fn on_event(&mut self, e: sse::Event) {
        if self.failed {
            return;
        }
        let Ok(ev) = serde_json::from_str::<ResponsesEvent>(&e.data) else {
            self.failed = true;
            return;
        };
        let kind = ev.kind.as_deref().or(e.event.as_deref()).unwrap_or("");
        if self.completed.is_some() {
            // The final event ends the stream.
            self.failed = true;
            return;
        }
        match kind {
            "response.completed" => match ev.response {
                Some(r) => self.completed = Some(r.get().to_string()),
                None => self.failed = true,
            },
            "response.incomplete" | "response.failed" | "error" => self.failed = true,
            _ => {}
        }
    }

    /// The answer, when it is complete.
    pub(crate) fn finish(mut self) -> Option<Answer> {
        for e in self.decoder.events(&[], true) {
            self.on_event(e);
        }
        if self.failed {
            return None;
        }
        from_responses(&serde_json::from_str(self.completed.as_deref()?).ok()?)
    }
}

/// A Responses `response` object → the answer, when its status is `completed`: `message` items' text
/// (`output_text`) and refusals concatenated, `function_call` items as tool calls (`call_id` as the id),
/// finish `tool_calls` when there are calls, else `stop`; usage input / output / cached / reasoning →
/// prompt / completion / cached / reasoning tokens. `reasoning` items are left out (the pivot has no
/// place for them; their tokens stay in the usage); any other item or part type, and text with
/// annotations or log probabilities, spoil the answer.
pub(crate) fn from_responses(v: &Value) -> Option<Answer> {
    if v.get("status").and_then(Value::as_str) != Some("completed") || !absent(v.get("error")) {
        return None;
    }
    let (mut content, mut refusal, mut calls) = (String::new(), String::new(), Vec::new());
    for item in v.get("output")?.as_array()? {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                if item.get("role").is_some_and(|r| r.as_str() != Some("assistant")) {
                    return None;
                }
                for part in item.get("content")?.as_array()? {
                    let empty =
                        |k: &str| part.get(k).is_none_or(|x| x.is_null() || x.as_array().is_some_and(Vec::is_empty));
                    match part.get("type").and_then(Value::as_str) {
                        Some("output_text") if empty("annotations") && empty("logprobs") => {
                            content.push_str(part.get("text")?.as_str()?)
                        }
                        Some("refusal") => refusal.push_str(part.get("refusal")?.as_str()?),
                        _ => return None,
                    }
                }
            }
            Some("function_call") if calls.len() < MAX_TOOL_CALLS => {
                let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                calls.push(Call { id: text("call_id"), name: text("name"), arguments: text("arguments") });
            }
            Some("reasoning") => {}
            _ => return None,
        }
    }
    let usage = v.get("usage").filter(|u| u.is_object()).map(|u| {
        let num = |x: Option<&Value>| x.and_then(Value::as_u64).unwrap_or(0);
        Tokens {
            prompt: num(u.get("input_tokens")),
            completion: num(u.get("output_tokens")),
            cached: num(u.get("input_tokens_details").and_then(|d| d.get("cached_tokens"))),
            reasoning: num(u.get("output_tokens_details").and_then(|d| d.get("reasoning_tokens"))),
        }
    });
    let finish = if calls.is_empty() { Finish::Stop } else { Finish::ToolCalls };
    let choice = Choice { content, refusal: Some(refusal).filter(|r| !r.is_empty()), calls, finish };
    Some(Answer {
        id: v.get("id").and_then(Value::as_str).unwrap_or("").to_string(),
        created: v.get("created_at").and_then(Value::as_u64).unwrap_or(0),
        model: v.get("model").and_then(Value::as_str).unwrap_or("").to_string(),
        choices: vec![choice],
        usage,
    })
}
