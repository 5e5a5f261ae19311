//! The fast path for plain text requests: the Messages body written straight from the client's bytes.

use crate::api::openai::ChatRequest;
use serde_json::value::RawValue;
use std::io::Write;

pub(super) struct SimpleOut {
    pub(super) body: Vec<u8>,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
}

/// The body of a common request, written straight from the client's bytes as the route role parsed them:
/// text-only turns and no fields beyond those [`ChatRequest`] reads (`plain`). No tree of values, no
/// string decoded and encoded again. `None`: not that kind of request; the general way,
/// [`translate_request`], gives the same body for these.
pub(super) fn translate_simple(req: &ChatRequest, model: &str, default_max_tokens: u32) -> Option<SimpleOut> {
    if !req.plain {
        return None;
    }
    let string = |r: &RawValue| r.get().starts_with('"');
    let empty = |r: &RawValue| r.get() == "\"\"";
    let (temperature, top_p) = (raw_number(req.temperature)?, raw_number(req.top_p)?);
    let mut system: Vec<&str> = Vec::new();
    // Turns as (role, number of texts), the texts in order in `texts`; consecutive messages of one role
    // make one turn.
    let mut turns: Vec<(&str, usize)> = Vec::new();
    let mut texts: Vec<&str> = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let content = m.content?;
        if !string(content) {
            return None;
        }
        let role = match m.role.as_ref() {
            "system" | "developer" => {
                if !empty(content) {
                    system.push(content.get());
                }
                continue;
            }
            "user" => "user",
            // An empty assistant text is no block at all.
            "assistant" if empty(content) => continue,
            "assistant" => "assistant",
            _ => return None,
        };
        match turns.last_mut() {
            Some((r, n)) if *r == role => *n += 1,
            _ => turns.push((role, 1)),
        }
        texts.push(content.get());
    }
    if turns.is_empty() {
        return None;
    }
    let max_tokens = req.max_completion_tokens.or(req.max_tokens).unwrap_or(u64::from(default_max_tokens));
    let size: usize = system.iter().chain(&texts).map(|t| t.len() + 32).sum();
    let mut out = Vec::with_capacity(size + model.len() + 160);
    out.extend_from_slice(b"{\"model\":");
    serde_json::to_writer(&mut out, model).ok()?;
    let text_blocks = |out: &mut Vec<u8>, texts: &[&str]| {
        out.push(b'[');
        for (i, t) in texts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
            out.extend_from_slice(t.as_bytes());
            out.push(b'}');
        }
        out.push(b']');
    };
    match system.as_slice() {
        [] => {}
        [one] => {
            out.extend_from_slice(b",\"system\":");
            out.extend_from_slice(one.as_bytes());
        }
        many => {
            out.extend_from_slice(b",\"system\":");
            text_blocks(&mut out, many);
        }
    }
    out.extend_from_slice(b",\"messages\":[");
    let mut rest = texts.as_slice();
    for (i, (role, n)) in turns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"role\":\"");
        out.extend_from_slice(role.as_bytes());
        out.extend_from_slice(b"\",\"content\":");
        let (turn, after) = rest.split_at(*n);
        rest = after;
        match turn {
            [one] => out.extend_from_slice(one.as_bytes()),
            many => text_blocks(&mut out, many),
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"max_tokens\":");
    write!(out, "{max_tokens}").ok()?;
    for (name, value) in [(&b",\"temperature\":"[..], temperature), (&b",\"top_p\":"[..], top_p)] {
        if let Some(v) = value {
            out.extend_from_slice(name);
            out.extend_from_slice(v.as_bytes());
        }
    }
    let stream = req.is_stream();
    if stream {
        out.extend_from_slice(b",\"stream\":true");
    }
    out.push(b'}');
    let include_usage = req.include_usage();
    Some(SimpleOut { body: out, stream, include_usage })
}

/// A number as written (`Some(Some)`), or absent / `null` (`Some(None)`); `None` for anything else.
fn raw_number(r: Option<&RawValue>) -> Option<Option<&str>> {
    match r.map(RawValue::get) {
        None | Some("null") => Some(None),
        Some(t) if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => Some(Some(t)),
        Some(_) => None,
    }
}
