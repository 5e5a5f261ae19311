//! Anthropic answers and errors → OpenAI chat completions and OpenAI-shaped errors.

use super::Translator;
use crate::providers::Usage;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::io::Write;

/// Longest piece of a non-JSON error body quoted back to the client.
const ERROR_PREFIX_CHARS: usize = 200;

// ---------------------------------------------------------------------------------------------------------
// Response

/// Anthropic's `usage` (also read by the route filter's usage sniffer for `/v1/messages` answers).
#[derive(Deserialize, Default, Clone, Copy)]
pub(crate) struct RawUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

impl RawUsage {
    /// Stream usage is cumulative: later values replace earlier ones.
    pub(crate) fn merge(&mut self, o: &RawUsage) {
        self.input_tokens = o.input_tokens.or(self.input_tokens);
        self.output_tokens = o.output_tokens.or(self.output_tokens);
        self.cache_read_input_tokens = o.cache_read_input_tokens.or(self.cache_read_input_tokens);
        self.cache_creation_input_tokens = o.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
    }

    /// Prompt tokens count cache reads and writes; cached tokens are the reads.
    pub(crate) fn usage(&self) -> Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        let prompt = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(cached)
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0));
        Usage { prompt_tokens: prompt, completion_tokens: self.output_tokens.unwrap_or(0), cached_tokens: cached }
    }
}

#[derive(Deserialize)]
pub(super) struct Block<'a> {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default, borrow)]
    pub(super) input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MessageBody<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, borrow)]
    content: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
pub(super) struct ErrorObject {
    #[serde(default, rename = "type")]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ErrorObject>,
}

pub(super) fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// The provider's error message and type; a non-JSON body gives a short prefix of its text.
pub(super) fn error_parts(body: &[u8]) -> (String, Option<String>) {
    if let Ok(ErrorBody { error: Some(e) }) = serde_json::from_slice::<ErrorBody>(body) {
        if let Some(m) = e.message {
            return (m, e.kind);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return ("(empty error body)".to_string(), None);
    }
    let mut prefix: String = text.chars().take(ERROR_PREFIX_CHARS).collect();
    if text.chars().nth(ERROR_PREFIX_CHARS).is_some() {
        prefix.push('…');
    }
    (prefix, None)
}

/// Valid JSON text without the whitespace between tokens (keeps the provider's key order).
pub(super) fn compact_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

impl Translator {
    pub(super) fn completion(&mut self, body: &[u8]) -> Vec<u8> {
        let msg: MessageBody = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => {
                return self.prologue.unreadable(&self.provider, &format!("unreadable response: {e}"));
            }
        };
        let Some(content) = msg.content.or_else(|| msg.stop_reason.as_ref().map(|_| Vec::new())) else {
            return self.prologue.unreadable(&self.provider, "the response holds neither content nor a stop_reason");
        };
        let mut text = String::new();
        let mut calls = Vec::new();
        for raw in content {
            let Ok(b) = serde_json::from_str::<Block>(raw.get()) else { continue };
            match b.kind.as_str() {
                "text" => text.push_str(b.text.as_deref().unwrap_or("")),
                "tool_use" => calls.push(json!({
                    "id": b.id.unwrap_or_default(),
                    "type": "function",
                    "function": {
                        "name": b.name.unwrap_or_default(),
                        "arguments": b.input.map_or_else(|| "{}".to_string(), |r| compact_json(r.get())),
                    },
                })),
                _ => {}
            }
        }
        // Written field by field (a tree of values first would cost more than the translation).
        let mut out = Vec::with_capacity(body.len() + 256);
        if msg.id.is_none() {
            self.ensure_id();
        }
        let id = msg.id.as_deref().unwrap_or(&self.id);
        out.extend_from_slice(br#"{"id":"#);
        let _ = serde_json::to_writer(&mut out, id);
        let _ = write!(out, r#","object":"chat.completion","created":{},"model":"#, self.created);
        let _ = serde_json::to_writer(&mut out, &self.model);
        out.extend_from_slice(br#","choices":[{"index":0,"message":{"role":"assistant","content":"#);
        if !text.is_empty() || calls.is_empty() {
            let _ = serde_json::to_writer(&mut out, &text);
        } else {
            out.extend_from_slice(b"null");
        }
        if !calls.is_empty() {
            out.extend_from_slice(br#","tool_calls":"#);
            let _ = serde_json::to_writer(&mut out, &calls);
        }
        let _ = write!(out, r#"}},"logprobs":null,"finish_reason":"{}"}}]"#, finish_reason(msg.stop_reason.as_deref()));
        if let Some(u) = msg.usage {
            self.usage = Some(u);
            out.extend_from_slice(br#","usage":"#);
            crate::providers::write_usage(&mut out, &u.usage());
        }
        out.push(b'}');
        out
    }
}
