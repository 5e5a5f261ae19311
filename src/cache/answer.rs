//! The stored answer: a chat completion read into [`Answer`] (what every client format can say) and
//! written back in one normalized JSON form, so an answer captured in any format, rendered in any other
//! and captured again is the same bytes (ids aside).

use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::io::Write;

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

    /// A stored form (what [`Answer::stored`] wrote), read typed: what a hit does per request. Anything
    /// else, a corrupt entry say, is `None` (or, if it still reads, an answer in the stored form's terms;
    /// it is never more than what the bytes say).
    pub(crate) fn from_stored(bytes: &[u8]) -> Option<Answer> {
        let s: StoredIn = serde_json::from_slice(bytes).ok()?;
        if s.choices.is_empty() || s.choices.len() > MAX_CHOICES {
            return None;
        }
        let mut choices = Vec::with_capacity(s.choices.len());
        for c in s.choices {
            if c.message.tool_calls.len() > MAX_TOOL_CALLS {
                return None;
            }
            choices.push(Choice {
                content: c.message.content.map(Cow::into_owned).unwrap_or_default(),
                refusal: c.message.refusal.map(Cow::into_owned).filter(|r| !r.is_empty()),
                calls: c
                    .message
                    .tool_calls
                    .into_iter()
                    .map(|t| Call {
                        id: t.id.into_owned(),
                        name: t.function.name.into_owned(),
                        arguments: t.function.arguments.into_owned(),
                    })
                    .collect(),
                finish: Finish::from_chat(&c.finish_reason)?,
            });
        }
        let usage = s.usage.map(|u| Tokens {
            prompt: u.prompt_tokens,
            completion: u.completion_tokens,
            cached: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            reasoning: u.completion_tokens_details.map_or(0, |d| d.reasoning_tokens),
        });
        Some(Answer { id: s.id.into_owned(), created: s.created, model: s.model.into_owned(), choices, usage })
    }

    /// [`Answer::from_chat`] of JSON bytes.
    pub(crate) fn from_chat_bytes(bytes: &[u8]) -> Option<Answer> {
        Answer::from_chat(&serde_json::from_slice(bytes).ok()?)
    }

    /// The normalized chat completion, under the given id, `created` and model: written straight out
    /// (a hit renders one per request), keys in byte order as serde_json writes a `Value`.
    pub(crate) fn chat_json(&self, id: &str, created: u64, model: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.choices.iter().map(|c| c.content.len()).sum::<usize>());
        out.extend_from_slice(b"{\"choices\":[");
        for (i, c) in self.choices.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"finish_reason\":");
            string(&mut out, c.finish.as_str());
            let _ = write!(out, ",\"index\":{i},\"logprobs\":null,\"message\":{{\"content\":");
            if c.content.is_empty() && !c.calls.is_empty() {
                out.extend_from_slice(b"null");
            } else {
                string(&mut out, &c.content);
            }
            out.extend_from_slice(b",\"refusal\":");
            match &c.refusal {
                Some(r) => string(&mut out, r),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"role\":\"assistant\"");
            if !c.calls.is_empty() {
                out.extend_from_slice(b",\"tool_calls\":[");
                for (k, call) in c.calls.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"function\":{\"arguments\":");
                    string(&mut out, &call.arguments);
                    out.extend_from_slice(b",\"name\":");
                    string(&mut out, &call.name);
                    out.extend_from_slice(b"},\"id\":");
                    string(&mut out, &call.id);
                    out.extend_from_slice(b",\"type\":\"function\"}");
                }
                out.push(b']');
            }
            out.extend_from_slice(b"}}");
        }
        let _ = write!(out, "],\"created\":{created},\"id\":");
        string(&mut out, id);
        out.extend_from_slice(b",\"model\":");
        string(&mut out, model);
        out.extend_from_slice(b",\"object\":\"chat.completion\"");
        if let Some(u) = self.usage {
            let _ = write!(
                out,
                ",\"usage\":{{\"completion_tokens\":{},\"completion_tokens_details\":{{\"reasoning_tokens\":{}}},\
                 \"prompt_tokens\":{},\"prompt_tokens_details\":{{\"cached_tokens\":{}}},\"total_tokens\":{}}}",
                u.completion,
                u.reasoning,
                u.prompt,
                u.cached,
                u.prompt.saturating_add(u.completion)
            );
        }
        out.push(b'}');
        out
    }

    /// [`Answer::chat_json`] under the answer's own id, `created` and model: the stored form.
    pub(crate) fn stored(&self) -> Vec<u8> {
        self.chat_json(&self.id, self.created, &self.model)
    }
}

/// A JSON string as serde_json escapes it.
fn string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The stored form, as [`Answer::from_stored`] reads it (other fields are the fixed ones it writes).
#[derive(Deserialize)]
struct StoredIn<'a> {
    #[serde(borrow)]
    choices: Vec<StoredChoice<'a>>,
    #[serde(default)]
    created: u64,
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(default)]
    usage: Option<StoredUsage>,
}

#[derive(Deserialize)]
struct StoredChoice<'a> {
    #[serde(borrow)]
    finish_reason: Cow<'a, str>,
    #[serde(borrow)]
    message: StoredMessage<'a>,
}

#[derive(Deserialize)]
struct StoredMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Vec<StoredCall<'a>>,
}

#[derive(Deserialize)]
struct StoredCall<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    function: StoredFunction<'a>,
}

#[derive(Deserialize)]
struct StoredFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: Cow<'a, str>,
}

#[derive(Deserialize)]
struct StoredUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<CachedDetails>,
    #[serde(default)]
    completion_tokens_details: Option<ReasoningDetails>,
}

#[derive(Deserialize)]
struct CachedDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct ReasoningDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}
