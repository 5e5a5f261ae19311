//! The stored answer: a chat completion read into [`Answer`] (what every client format can say) and
//! written back in one normalized JSON form, so an answer captured in any format, rendered in any other
//! and captured again is the same bytes (ids aside).

use serde_json::{json, Map, Value};

/// Most choices one stored answer may hold (OpenAI's own limit on `n`).
pub(crate) const MAX_CHOICES: usize = 128;
/// Most tool calls one choice may hold (the stream converters' own bound).
pub(crate) const MAX_TOOL_CALLS: usize = 1024;

/// Why a choice ended, for an answer worth storing (length and content_filter are not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    ToolCalls,
}

impl Finish {
    /// A chat `finish_reason` of a complete answer; anything else is `None`.
    pub(crate) fn from_chat(reason: &str) -> Option<Finish> {
        match reason {
            "stop" => Some(Finish::Stop),
            "tool_calls" => Some(Finish::ToolCalls),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::ToolCalls => "tool_calls",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Call {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choice {
    pub content: String,
    pub refusal: Option<String>,
    pub calls: Vec<Call>,
    pub finish: Finish,
}

/// Token counts; `total` is always prompt + completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub reasoning: u64,
}

impl Tokens {
    /// A chat `usage` object (missing counts are 0); `None` when it is no object.
    pub(crate) fn from_chat(u: &Value) -> Option<Tokens> {
        let o = u.as_object()?;
        let num = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        Some(Tokens {
            prompt: num(o.get("prompt_tokens")),
            completion: num(o.get("completion_tokens")),
            cached: num(o.get("prompt_tokens_details").and_then(|d| d.get("cached_tokens"))),
            reasoning: num(o.get("completion_tokens_details").and_then(|d| d.get("reasoning_tokens"))),
        })
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt.saturating_add(self.completion),
            "prompt_tokens_details": {"cached_tokens": self.cached},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        })
    }
}

/// A complete, successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// At least one.
    pub choices: Vec<Choice>,
    pub usage: Option<Tokens>,
}

/// Text of a chat message `content`: a string, or text parts concatenated (other parts: `None`).
fn content_text(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for p in parts {
                if p.get("type").and_then(Value::as_str) != Some("text") {
                    return None;
                }
                text.push_str(p.get("text").and_then(Value::as_str)?);
            }
            Some(text)
        }
        Some(_) => None,
    }
}

fn absent(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

fn read_choice(c: &Value) -> Option<Choice> {
    let finish = Finish::from_chat(c.get("finish_reason")?.as_str()?)?;
    // Log probabilities, audio and the legacy function call have no place in the stored form.
    if !absent(c.get("logprobs")) {
        return None;
    }
    let m = c.get("message")?.as_object()?;
    if !absent(m.get("audio")) || !absent(m.get("function_call")) {
        return None;
    }
    if m.get("role").is_some_and(|r| r.as_str() != Some("assistant")) {
        return None;
    }
    let refusal = match m.get("refusal") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return None,
    };
    let mut calls = Vec::new();
    match m.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) if list.len() <= MAX_TOOL_CALLS => {
            for call in list {
                if call.get("type").is_some_and(|t| t.as_str() != Some("function")) {
                    return None;
                }
                let f = call.get("function")?;
                let text = |v: Option<&Value>| match v {
                    None | Some(Value::Null) => Some(String::new()),
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => None,
                };
                calls.push(Call {
                    id: text(call.get("id"))?,
                    name: text(f.get("name"))?,
                    arguments: text(f.get("arguments"))?,
                });
            }
        }
        Some(_) => return None,
    }
    Some(Choice { content: content_text(m.get("content"))?, refusal, calls, finish })
}

impl Answer {
    /// A chat completion's answer, when it is complete and successful: at least one choice (at most
    /// [`MAX_CHOICES`]), every one finished with `stop` or `tool_calls`, and nothing the stored form cannot
    /// hold (log probabilities, audio, a legacy `function_call`, content parts other than text).
    pub(crate) fn from_chat(v: &Value) -> Option<Answer> {
        let o = v.as_object()?;
        if o.get("object").is_some_and(|t| t.as_str() != Some("chat.completion")) || !absent(o.get("error")) {
            return None;
        }
        let list = o.get("choices")?.as_array()?;
        if list.is_empty() || list.len() > MAX_CHOICES {
            return None;
        }
        let choices = list.iter().map(read_choice).collect::<Option<Vec<_>>>()?;
        Some(Answer {
            id: o.get("id").and_then(Value::as_str).unwrap_or("").to_string(),
            created: o.get("created").and_then(Value::as_u64).unwrap_or(0),
            model: o.get("model").and_then(Value::as_str).unwrap_or("").to_string(),
            choices,
            usage: o.get("usage").and_then(Tokens::from_chat),
        })
    }

    /// [`Answer::from_chat`] of JSON bytes.
    pub(crate) fn from_chat_bytes(bytes: &[u8]) -> Option<Answer> {
        Answer::from_chat(&serde_json::from_slice(bytes).ok()?)
    }

    /// The normalized chat completion, under the given id, `created` and model.
    pub(crate) fn chat_json(&self, id: &str, created: u64, model: &str) -> Vec<u8> {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut m = Map::new();
                m.insert("role".into(), json!("assistant"));
                let content = if c.content.is_empty() && !c.calls.is_empty() { Value::Null } else { json!(c.content) };
                m.insert("content".into(), content);
                m.insert("refusal".into(), c.refusal.as_ref().map_or(Value::Null, |r| json!(r)));
                if !c.calls.is_empty() {
                    let calls: Vec<Value> = c.calls.iter().map(call_json).collect();
                    m.insert("tool_calls".into(), Value::Array(calls));
                }
                json!({"index": i, "message": m, "logprobs": null, "finish_reason": c.finish.as_str()})
            })
            .collect();
        let mut out = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
        });
        if let (Some(u), Some(o)) = (self.usage, out.as_object_mut()) {
            o.insert("usage".into(), u.json());
        }
        serde_json::to_vec(&out).unwrap_or_default()
    }

    /// [`Answer::chat_json`] under the answer's own id, `created` and model: the stored form.
    pub(crate) fn stored(&self) -> Vec<u8> {
        self.chat_json(&self.id, self.created, &self.model)
    }
}

fn call_json(c: &Call) -> Value {
    json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
}
