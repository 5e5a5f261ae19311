//! Anthropic Messages API (`POST /v1/messages`): OpenAI chat requests become Messages requests; responses,
//! streams and errors come back in the OpenAI format.
//!
//! Request rules:
//! - `system` and `developer` messages, wherever they stand, are joined in order into the top-level
//!   `system` (a string for a single text, else text blocks).
//! - Consecutive turns of one role are merged (Anthropic wants user/assistant alternation); `tool` results
//!   become `tool_result` blocks of a user turn. Empty assistant text is left out, and an assistant message
//!   with neither text nor tool calls is dropped. A final assistant message is sent as a prefill.
//! - `max_tokens` = `max_completion_tokens`, else `max_tokens`, else the provider's `default_max_tokens`.
//! - Passed on: `temperature` and `top_p` (Anthropic's own range checks apply), `stop` → `stop_sequences`,
//!   `stream`, `tools` (with `strict`), `tool_choice` (auto / required → any / none / named → tool),
//!   `parallel_tool_calls: false` → `disable_parallel_tool_use`, `response_format` json_schema →
//!   `output_config.format` (structured outputs), `user` → `metadata.user_id` as its SHA-256 hex (Anthropic
//!   asks for an opaque id there).
//! - Dropped (no Anthropic equivalent): `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias`,
//!   `top_logprobs`, `service_tier`, `store`, `metadata`, `reasoning_effort`, `prediction`, `modalities`,
//!   image `detail`, file `filename`, message `name`, json_schema `name` / `strict`; `tool_choice` none or
//!   auto when there are no tools.
//! - Rejected with 400: `n` > 1, `logprobs: true`, `audio`, `response_format` json_object (Anthropic has no
//!   JSON mode; json_schema works), the `function` role and `function_call`, content parts other than text,
//!   image_url and PDF `file_data`, data URLs that are not base64 or not jpeg/png/gif/webp images, tool call
//!   arguments that are not a JSON object, `tool_choice` required or named without tools.
//!
//! Response rules: text blocks are concatenated; `tool_use` blocks become `tool_calls` (arguments are the
//! provider's JSON text); thinking and server-tool blocks are left out. stop_reason end_turn, stop_sequence
//! and pause_turn → stop; max_tokens and model_context_window_exceeded → length; tool_use → tool_calls;
//! refusal → content_filter. Prompt tokens = input + cache read + cache creation; cached = cache read.
//! Streams: an `error` event, or the end of the stream before `message_stop`, ends the client stream with
//! an OpenAI error event and `[DONE]`; `ping` and thinking deltas are skipped.

use super::usage_json;
use super::{client_status_for_provider_error, provider_error_body, Attempt, BodyMode, Outgoing};
use super::{ResponseTranslator, Usage};
use crate::api::error::{quote, ApiError};
use crate::api::openai::{self as request, ChatRequest, Operation};
use crate::codec::{sha256, sse};
use crate::config::ProviderKind;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether the config may accept this provider kind.
pub const READY: bool = true;

const PATH: &str = "/v1/messages";
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];
/// Longest piece of a non-JSON error body quoted back to the client.
const ERROR_PREFIX_CHARS: usize = 200;
/// Tool blocks open at once in a stream (they normally close one by one); older ones are forgotten.
const MAX_OPEN_TOOLS: usize = 64;

pub fn prepare(a: &Attempt, body: &[u8]) -> Result<Outgoing, ApiError> {
    let ProviderKind::Anthropic { version, default_max_tokens } = &a.provider.kind else {
        return Err(ApiError::gateway(format!("provider '{}' is not of kind anthropic", a.provider.name)));
    };
    match a.op {
        Operation::ChatCompletions => {}
        Operation::Embeddings => {
            return Err(ApiError::invalid_request("provider kind anthropic does not serve embeddings", Some("model")))
        }
        _ => return Err(ApiError::gateway("this operation has no Anthropic chat translation")),
    }
    let mut headers = Vec::with_capacity(3);
    headers.extend(super::credential(a.provider));
    headers.push(("anthropic-version", version.clone()));
    headers.push(("content-type", "application/json".to_string()));
    let parsed;
    let chat = match a.chat {
        Some(c) => Some(c),
        None => {
            parsed = request::parse_chat(body).ok();
            parsed.as_ref()
        }
    };
    if let Some(simple) = chat.and_then(|c| translate_simple(c, a.model, *default_max_tokens)) {
        return Ok(Outgoing {
            path: PATH.to_string(),
            headers,
            body: Some(simple.body),
            response: Some(Box::new(Translator::new(a, simple.stream, a.usage_chunk || simple.include_usage))),
        });
    }
    let req: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
    let Some(req) = req.as_object() else {
        return Err(ApiError::invalid_request("The request body must be a JSON object.", None));
    };
    let out = translate_request(req, a.model, *default_max_tokens)?;
    let body = serde_json::to_vec(&out).map_err(|e| ApiError::gateway(e.to_string()))?;

    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = a.usage_chunk
        || req.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true);
    Ok(Outgoing {
        path: PATH.to_string(),
        headers,
        body: Some(body),
        response: Some(Box::new(Translator::new(a, stream, include_usage))),
    })
}

// ---------------------------------------------------------------------------------------------------------
// Request

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid_request(message, Some(param))
}

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

struct SimpleOut {
    body: Vec<u8>,
    stream: bool,
    include_usage: bool,
}

/// The body of a common request, written straight from the client's bytes as the route role parsed them:
/// text-only turns and no fields beyond those [`ChatRequest`] reads (`plain`). No tree of values, no
/// string decoded and encoded again. `None`: not that kind of request; the general way,
/// [`translate_request`], gives the same body for these.
fn translate_simple(req: &ChatRequest, model: &str, default_max_tokens: u32) -> Option<SimpleOut> {
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

/// The request body Anthropic gets.
fn translate_request(req: &Map<String, Value>, model: &str, default_max_tokens: u32) -> Result<Value, ApiError> {
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_string()));

    let (system, messages) = translate_messages(req.get("messages"))?;
    if let Some(s) = system {
        out.insert("system".into(), s);
    }
    out.insert("messages".into(), Value::Array(messages));

    let mut max_tokens = u64::from(default_max_tokens);
    for field in ["max_tokens", "max_completion_tokens"] {
        match req.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) => max_tokens = n,
                None => return Err(bad(format!("'{field}' must be a non-negative integer."), field)),
            },
        }
    }
    out.insert("max_tokens".into(), Value::from(max_tokens));

    for field in ["temperature", "top_p"] {
        match req.get(field) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                out.insert(field.into(), v.clone());
            }
            Some(_) => return Err(bad(format!("'{field}' must be a number."), field)),
        }
    }

    let stops = match req.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.clone(),
        Some(_) => return Err(bad("'stop' must be a string or an array of strings.", "stop")),
    };
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), Value::Array(stops));
    }

    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), Value::Bool(true));
    }

    if let Some(n) = req.get("n").and_then(Value::as_u64) {
        if n > 1 {
            return Err(bad("Anthropic returns one choice per request; 'n' must be 1.", "n"));
        }
    }
    if req.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(bad("Anthropic does not return log probabilities; 'logprobs' is not supported.", "logprobs"));
    }
    if req.get("audio").is_some_and(|v| !v.is_null()) {
        return Err(bad("Anthropic does not produce audio; 'audio' is not supported.", "audio"));
    }

    if let Some(format) = response_format(req.get("response_format"))? {
        out.insert("output_config".into(), json!({ "format": format }));
    }

    let tools = translate_tools(req.get("tools"))?;
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools".into(), Value::Array(tools));
    }
    let parallel_off = req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    if let Some(choice) = tool_choice(req.get("tool_choice"), has_tools, parallel_off)? {
        out.insert("tool_choice".into(), choice);
    }

    if let Some(user) = req.get("user").and_then(Value::as_str).filter(|u| !u.is_empty()) {
        let id = sha256::to_hex(&sha256::digest(user.as_bytes()));
        out.insert("metadata".into(), json!({ "user_id": id }));
    }
    Ok(Value::Object(out))
}

struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// Appends blocks to the conversation, merging into the last turn when it has the same role.
fn push_turn(turns: &mut Vec<Turn>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(t) if t.role == role => t.blocks.extend(blocks),
        _ => turns.push(Turn { role, blocks }),
    }
}

fn turn_json(t: Turn) -> Value {
    let single_text = match t.blocks.as_slice() {
        [b] if b.as_object().is_some_and(|o| o.len() == 2) => {
            b.get("type").and_then(Value::as_str) == Some("text") && b.get("text").is_some_and(Value::is_string)
        }
        _ => false,
    };
    let content = if single_text {
        t.blocks.into_iter().next().and_then(|b| b.get("text").cloned()).unwrap_or_default()
    } else {
        Value::Array(t.blocks)
    };
    json!({"role": t.role, "content": content})
}

/// The top-level `system` and the alternating messages.
fn translate_messages(messages: Option<&Value>) -> Result<(Option<Value>, Vec<Value>), ApiError> {
    let Some(Value::Array(messages)) = messages else {
        return Err(bad("'messages' must be an array.", "messages"));
    };
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let Some(m) = m.as_object() else {
            return Err(bad(format!("'messages[{i}]' must be an object."), &format!("messages[{i}]")));
        };
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        match role {
            "system" | "developer" => system_texts(m.get("content"), i, &mut system)?,
            "user" => push_turn(&mut turns, "user", user_blocks(m.get("content"), i)?),
            "assistant" => push_turn(&mut turns, "assistant", assistant_blocks(m, i)?),
            "tool" => push_turn(&mut turns, "user", vec![tool_result(m, i)?]),
            "function" => {
                return Err(bad(
                    "The deprecated 'function' role is not supported for Anthropic; send 'tool' messages.",
                    &format!("messages[{i}].role"),
                ))
            }
            other => {
                return Err(bad(
                    format!("Invalid role {} in messages[{i}].", quote(other)),
                    &format!("messages[{i}].role"),
                ))
            }
        }
    }
    if turns.is_empty() {
        return Err(bad("Anthropic needs at least one user or assistant message.", "messages"));
    }
    let system = match system.len() {
        0 => None,
        1 => system.pop().map(Value::String),
        _ => Some(Value::Array(system.iter().map(|s| text_block(s)).collect())),
    };
    Ok((system, turns.into_iter().map(turn_json).collect()))
}

fn system_texts(content: Option<&Value>, i: usize, out: &mut Vec<String>) -> Result<(), ApiError> {
    match content {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                out.push(s.clone());
            }
        }
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                let param = format!("messages[{i}].content[{j}]");
                if p.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(bad(
                        "System and developer messages may only hold text parts.",
                        &format!("{param}.type"),
                    ));
                }
                let text = str_field(p, "text", &param)?;
                if !text.is_empty() {
                    out.push(text.to_string());
                }
            }
        }
        Some(_) => return Err(content_type_error(i)),
    }
    Ok(())
}

fn content_type_error(i: usize) -> ApiError {
    bad(
        format!("'messages[{i}].content' must be a string or an array of content parts."),
        &format!("messages[{i}].content"),
    )
}

fn str_field<'v>(v: &'v Value, field: &str, param: &str) -> Result<&'v str, ApiError> {
    v.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("'{param}.{field}' must be a string."), &format!("{param}.{field}")))
}

fn user_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, ApiError> {
    match content {
        Some(Value::String(s)) => Ok(vec![text_block(s)]),
        Some(Value::Array(parts)) => {
            parts.iter().enumerate().map(|(j, p)| user_part(p, &format!("messages[{i}].content[{j}]"))).collect()
        }
        _ => Err(content_type_error(i)),
    }
}

fn user_part(p: &Value, param: &str) -> Result<Value, ApiError> {
    match p.get("type").and_then(Value::as_str) {
        Some("text") => Ok(text_block(str_field(p, "text", param)?)),
        Some("image_url") => {
            let url_param = format!("{param}.image_url.url");
            let image = p.get("image_url");
            let url = image.and_then(|u| u.get("url")).or(image).and_then(Value::as_str);
            let Some(url) = url else {
                return Err(bad(format!("'{url_param}' must be a string."), &url_param));
            };
            image_block(url, &url_param)
        }
        Some("file") => file_block(p, param),
        Some(other) => Err(bad(
            format!("Content part type {} is not supported by Anthropic.", quote(other)),
            &format!("{param}.type"),
        )),
        None => Err(bad(format!("'{param}.type' is required."), &format!("{param}.type"))),
    }
}

fn strip_prefix_ci<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// `data:<media type>[;params];base64,<data>` → (media type, base64 data).
fn parse_data_url(url: &str) -> Option<(String, &str)> {
    let rest = strip_prefix_ci(url, "data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mut params = meta.split(';');
    let media = params.next()?.trim().to_ascii_lowercase();
    if !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return None;
    }
    Some((media, data))
}

fn image_block(url: &str, param: &str) -> Result<Value, ApiError> {
    if strip_prefix_ci(url, "data:").is_some() {
        let Some((media, data)) = parse_data_url(url) else {
            return Err(bad("Image data URLs must be base64 (data:image/png;base64,...).", param));
        };
        let media = if media == "image/jpg" { "image/jpeg".to_string() } else { media };
        if !IMAGE_TYPES.contains(&media.as_str()) {
            return Err(bad(
                format!("Image type {} is not supported by Anthropic; use {}.", quote(&media), IMAGE_TYPES.join(", ")),
                param,
            ));
        }
        return Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}));
    }
    if strip_prefix_ci(url, "https://").is_some() || strip_prefix_ci(url, "http://").is_some() {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(bad("Image URLs must be http(s) URLs or base64 data URLs.", param))
}

/// OpenAI `file` parts: only inline PDF data has an Anthropic form (a base64 document block).
fn file_block(p: &Value, param: &str) -> Result<Value, ApiError> {
    let data_param = format!("{param}.file.file_data");
    let Some(data) = p.get("file").and_then(|f| f.get("file_data")).and_then(Value::as_str) else {
        return Err(bad("Anthropic takes files as inline PDF data; send 'file.file_data'.", &data_param));
    };
    match parse_data_url(data) {
        Some((media, b64)) if media == "application/pdf" => {
            Ok(json!({"type": "document", "source": {"type": "base64", "media_type": media, "data": b64}}))
        }
        _ => Err(bad("'file_data' must be a PDF data URL (data:application/pdf;base64,...).", &data_param)),
    }
}

fn assistant_blocks(m: &Map<String, Value>, i: usize) -> Result<Vec<Value>, ApiError> {
    let mut blocks = Vec::new();
    match m.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                blocks.push(text_block(s));
            }
        }
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                let param = format!("messages[{i}].content[{j}]");
                let text = match p.get("type").and_then(Value::as_str) {
                    Some("text") => str_field(p, "text", &param)?,
                    Some("refusal") => str_field(p, "refusal", &param)?,
                    _ => {
                        return Err(bad(
                            "Assistant messages may only hold text and refusal parts.",
                            &format!("{param}.type"),
                        ))
                    }
                };
                if !text.is_empty() {
                    blocks.push(text_block(text));
                }
            }
        }
        Some(_) => return Err(content_type_error(i)),
    }
    if m.get("function_call").is_some_and(|v| !v.is_null()) {
        return Err(bad(
            "The deprecated 'function_call' is not supported for Anthropic; send 'tool_calls'.",
            &format!("messages[{i}].function_call"),
        ));
    }
    match m.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (j, c) in calls.iter().enumerate() {
                let param = format!("messages[{i}].tool_calls[{j}]");
                let id = str_field(c, "id", &param)?;
                let f = c.get("function").unwrap_or(&Value::Null);
                let fparam = format!("{param}.function");
                let name = str_field(f, "name", &fparam)?;
                let input = tool_input(f.get("arguments"), &format!("{fparam}.arguments"))?;
                blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
            }
        }
        Some(_) => {
            return Err(bad(
                format!("'messages[{i}].tool_calls' must be an array."),
                &format!("messages[{i}].tool_calls"),
            ))
        }
    }
    Ok(blocks)
}

/// A tool call's arguments (a JSON string) as the JSON object Anthropic wants for `input`.
fn tool_input(args: Option<&Value>, param: &str) -> Result<Value, ApiError> {
    let parsed = match args {
        None | Some(Value::Null) => return Ok(json!({})),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(json!({})),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|e| bad(format!("Tool call arguments are not valid JSON: {e}."), param))?,
        Some(v) => v.clone(),
    };
    if !parsed.is_object() {
        return Err(bad("Tool call arguments must be a JSON object.", param));
    }
    Ok(parsed)
}

fn tool_result(m: &Map<String, Value>, i: usize) -> Result<Value, ApiError> {
    let Some(id) = m.get("tool_call_id").and_then(Value::as_str) else {
        return Err(bad(
            format!("'messages[{i}].tool_call_id' is required for tool messages."),
            &format!("messages[{i}].tool_call_id"),
        ));
    };
    let mut block = Map::new();
    block.insert("type".into(), Value::String("tool_result".into()));
    block.insert("tool_use_id".into(), Value::String(id.to_string()));
    match m.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                block.insert("content".into(), Value::String(s.clone()));
            }
        }
        Some(Value::Array(_)) => {
            let parts = user_blocks(m.get("content"), i)?;
            if !parts.is_empty() {
                block.insert("content".into(), Value::Array(parts));
            }
        }
        Some(_) => return Err(content_type_error(i)),
    }
    Ok(Value::Object(block))
}

fn translate_tools(tools: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(bad("'tools' must be an array.", "tools")),
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
        if kind != "function" {
            return Err(bad(
                format!("Tool type {} is not supported by Anthropic; use function tools.", quote(kind)),
                &format!("{param}.type"),
            ));
        }
        let f = t.get("function").unwrap_or(&Value::Null);
        let fparam = format!("{param}.function");
        let name = str_field(f, "name", &fparam)?;
        let mut tool = Map::new();
        tool.insert("name".into(), Value::String(name.to_string()));
        if let Some(d) = f.get("description").and_then(Value::as_str) {
            tool.insert("description".into(), Value::String(d.to_string()));
        }
        let schema = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(bad("Tool parameters must be a JSON schema object.", &format!("{fparam}.parameters")))
            }
        };
        tool.insert("input_schema".into(), schema);
        if let Some(strict) = f.get("strict").and_then(Value::as_bool) {
            tool.insert("strict".into(), Value::Bool(strict));
        }
        out.push(Value::Object(tool));
    }
    Ok(out)
}

fn tool_choice(choice: Option<&Value>, has_tools: bool, parallel_off: bool) -> Result<Option<Value>, ApiError> {
    let mut out = match choice {
        None | Some(Value::Null) => {
            if !has_tools {
                return Ok(None);
            }
            json!({"type": "auto"})
        }
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            other => {
                return Err(bad(
                    format!("Invalid tool_choice {}; expected auto, none, required or a function.", quote(other)),
                    "tool_choice",
                ))
            }
        },
        Some(v @ Value::Object(_)) => {
            let name = v.get("function").and_then(|f| f.get("name")).and_then(Value::as_str);
            match (v.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) => json!({"type": "tool", "name": name}),
                _ => return Err(bad(
                    "tool_choice must be auto, none, required or {\"type\":\"function\",\"function\":{\"name\":…}}.",
                    "tool_choice",
                )),
            }
        }
        Some(_) => return Err(bad("'tool_choice' must be a string or an object.", "tool_choice")),
    };
    let kind = out.get("type").and_then(Value::as_str).unwrap_or("");
    if !has_tools {
        if kind == "auto" || kind == "none" {
            return Ok(None);
        }
        return Err(bad("tool_choice names a tool use but the request defines no tools.", "tool_choice"));
    }
    if kind == "auto" && choice.is_none_or(Value::is_null) && !parallel_off {
        // Anthropic's default: leave it out.
        return Ok(None);
    }
    if parallel_off && kind != "none" {
        if let Some(o) = out.as_object_mut() {
            o.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    Ok(Some(out))
}

fn response_format(format: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let Some(format) = format.filter(|f| !f.is_null()) else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_schema") => match format.get("json_schema").and_then(|s| s.get("schema")) {
            Some(schema @ Value::Object(_)) => Ok(Some(json!({"type": "json_schema", "schema": schema}))),
            _ => Err(bad("'response_format.json_schema.schema' must be a JSON schema object.", "response_format")),
        },
        Some("json_object") => Err(bad(
            "Anthropic has no JSON mode; use response_format type 'json_schema' with a schema.",
            "response_format",
        )),
        _ => Err(bad("'response_format.type' must be text or json_schema.", "response_format")),
    }
}

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
struct Block<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MessageBody<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, borrow)]
    content: Vec<&'a RawValue>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
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

fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// The HTTP status Anthropic uses for an error type (for errors that arrive inside a stream).
fn status_for_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// The provider's error message and type; a non-JSON body gives a short prefix of its text.
fn error_parts(body: &[u8]) -> (String, Option<String>) {
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
fn compact_json(raw: &str) -> String {
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

static SEQ: AtomicU64 = AtomicU64::new(0);

fn fallback_id(now: u64) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("chatcmpl-{now:x}{n:06x}")
}

/// Response and stream translation for one attempt.
struct Translator {
    /// The provider's name, for error messages.
    provider: String,
    model: String,
    created: u64,
    stream: bool,
    include_usage: bool,
    status: u16,
    /// A 2xx answer to a streaming request: the body is translated as SSE.
    streaming: bool,
    usage: Option<RawUsage>,
    decoder: sse::Decoder,
    id: String,
    /// The role chunk was sent.
    started: bool,
    /// Open `tool_use` blocks: (Anthropic block index, OpenAI tool call index).
    open_tools: Vec<(u64, usize)>,
    next_tool: usize,
    stop_reason: Option<String>,
    /// `[DONE]` was written; later bytes are ignored.
    done: bool,
}

impl Translator {
    fn new(a: &Attempt, stream: bool, include_usage: bool) -> Self {
        Translator {
            provider: a.provider.name.clone(),
            model: a.model.to_string(),
            created: a.now_unix,
            stream,
            include_usage,
            status: 0,
            streaming: false,
            usage: None,
            decoder: sse::Decoder::new(),
            // Made when first needed (providers send their own id).
            id: String::new(),
            started: false,
            open_tools: Vec::new(),
            next_tool: 0,
            stop_reason: None,
            done: false,
        }
    }

    fn error_body(&self, status: u16, body: &[u8]) -> Vec<u8> {
        let (message, kind) = error_parts(body);
        provider_error_body(&self.provider, status, &message, kind.as_deref()).1
    }

    fn completion(&mut self, body: &[u8]) -> Vec<u8> {
        let msg: MessageBody = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => {
                let message = format!("unreadable response: {e}");
                return provider_error_body(&self.provider, 502, &message, None).1;
            }
        };
        let mut text = String::new();
        let mut calls = Vec::new();
        for raw in msg.content {
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
            super::write_usage(&mut out, &u.usage());
        }
        out.push(b'}');
        out
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        super::chunk_json(&self.id, self.created, &self.model, delta, finish, self.include_usage)
    }

    fn emit(&self, out: &mut Vec<u8>, delta: Value) {
        sse::write_event(out, None, &self.chunk(delta, None));
    }

    /// An id of our own, for answers and streams the provider sent none for (made only then).
    fn ensure_id(&mut self) {
        if self.id.is_empty() {
            self.id = fallback_id(self.created);
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            // No `message_start` named the message: an id of our own, as with no id in an answer.
            self.ensure_id();
            self.emit(out, json!({"role": "assistant", "content": ""}));
        }
    }

    fn merge_usage(&mut self, u: Option<RawUsage>) {
        if let Some(u) = u {
            self.usage.get_or_insert_with(RawUsage::default).merge(&u);
        }
    }

    fn finish_stream(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        let finish = finish_reason(self.stop_reason.as_deref());
        sse::write_event(out, None, &self.chunk(json!({}), Some(finish)));
        if self.include_usage {
            let u = self.usage.unwrap_or_default().usage();
            let c = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage_json(&u),
            });
            sse::write_event(out, None, &c.to_string());
        }
        sse::write_event(out, None, "[DONE]");
        self.done = true;
    }

    fn fail(&mut self, out: &mut Vec<u8>, error_json: &[u8]) {
        sse::write_event(out, None, &String::from_utf8_lossy(error_json));
        sse::write_event(out, None, "[DONE]");
        self.done = true;
    }

    fn handle(&mut self, event: sse::Event, out: &mut Vec<u8>) {
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
                let status = status_for_error_type(e.kind.as_deref().unwrap_or(""));
                let message = e.message.unwrap_or_else(|| "stream error".to_string());
                let (_, body) = provider_error_body(&self.provider, status, &message, e.kind.as_deref());
                self.fail(out, &body);
            }
            _ => {}
        }
    }
}

impl ResponseTranslator for Translator {
    fn on_headers(&mut self, status: u16, _content_type: Option<&str>) -> (u16, BodyMode) {
        self.status = status;
        if (200..300).contains(&status) {
            self.streaming = self.stream;
            (200, if self.stream { BodyMode::Stream } else { BodyMode::Buffer })
        } else {
            (client_status_for_provider_error(status), BodyMode::Buffer)
        }
    }

    fn on_body(&mut self, body: &[u8]) -> Vec<u8> {
        if (200..300).contains(&self.status) {
            self.completion(body)
        } else {
            self.error_body(self.status, body)
        }
    }

    fn on_stream(&mut self, bytes: &[u8], end: bool, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        for e in self.decoder.events(bytes, end) {
            if self.done {
                return;
            }
            self.handle(e, out);
        }
        if end && !self.done {
            let body = json!({"error": {
                "message": format!("{}: the stream ended before message_stop", self.provider),
                "type": "server_error",
                "param": null,
                "code": "provider_stream_incomplete",
            }});
            self.fail(out, body.to_string().as_bytes());
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage.map(|u| u.usage())
    }

    fn content_type(&self) -> &'static str {
        if self.streaming {
            "text/event-stream"
        } else {
            "application/json"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Provider, Secret};
    use std::path::Path;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/anthropic");
    const NOW: u64 = 1_700_000_000;

    fn provider() -> Provider {
        Provider {
            name: "anthropic".into(),
            kind: ProviderKind::Anthropic { version: "2023-06-01".into(), default_max_tokens: 1024 },
            cluster: "anthropic".into(),
            credential: Some(Secret::for_tests("sk-ant-test")),
        }
    }

    fn attempt(p: &Provider, op: Operation) -> Attempt<'_> {
        Attempt {
            op,
            provider: p,
            model: "claude-sonnet-4-5",
            alias: "claude",
            now_unix: NOW,
            usage_chunk: false,
            chat: None,
        }
    }

    /// The fast path writes what the general path writes (compared as JSON), and leaves everything else
    /// to it.
    #[test]
    fn simple_requests_translate_as_the_general_path_does() {
        let same = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"a \"quoted\" \u00e9 line\nbreak"}],"max_tokens":50,"temperature":0.70,"top_p":1}"#,
            r#"{"model":"m","messages":[{"role":"developer","content":"one"},{"role":"system","content":""},{"role":"system","content":"two"},{"role":"user","content":"x"},{"role":"user","content":""},{"role":"assistant","content":""},{"role":"assistant","content":"y"},{"role":"assistant","content":"z"},{"role":"user","content":"w"}],"max_completion_tokens":7,"max_tokens":9,"temperature":null}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"s"}],"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"s"}],"stream":false,"stream_options":null,"top_p":-0.5e0}"#,
        ];
        for body in same {
            let chat = request::parse_chat(body.as_bytes()).expect(body);
            let fast = translate_simple(&chat, "claude-x", 1024).expect(body);
            let req: Value = serde_json::from_str(body).unwrap();
            let general = translate_request(req.as_object().unwrap(), "claude-x", 1024).unwrap();
            assert_eq!(json_of(&fast.body, body), general, "{body}");
            assert_eq!(fast.stream, req["stream"] == true);
        }
        let general_only = [
            // Other fields, other content shapes, other roles, invalid values, no turns.
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":"END"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi","name":"bob"}]}"#,
            r#"{"model":"m","messages":[{"role":"tool","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"assistant","content":null}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":-1}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"only"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[]}"#,
            r#"[1]"#,
        ];
        for body in general_only {
            let chat = request::parse_chat(body.as_bytes());
            assert!(chat.is_err() || translate_simple(&chat.unwrap(), "claude-x", 1024).is_none(), "{body}");
        }
        // Through `prepare`: the same request either way.
        let p = provider();
        let out = prepare(&attempt(&p, Operation::ChatCompletions), same[1].as_bytes()).unwrap();
        let v = json_of(out.body.as_deref().unwrap(), "body");
        assert_eq!(v["system"], "Be brief.");
        assert_eq!(v["messages"][0]["content"], "a \"quoted\" \u{e9} line\nbreak");
    }

    fn prep(body: &[u8]) -> Result<Outgoing, ApiError> {
        let p = provider();
        prepare(&attempt(&p, Operation::ChatCompletions), body)
    }

    fn json_of(bytes: &[u8], what: &str) -> Value {
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(bytes)))
    }

    fn read(dir: &Path, name: &str) -> Option<Vec<u8>> {
        std::fs::read(dir.join(name)).ok()
    }

    fn read_num<T: std::str::FromStr>(dir: &Path, name: &str) -> Option<T> {
        read(dir, name).map(|b| String::from_utf8(b).unwrap().trim().parse().ok().unwrap())
    }

    /// SSE events as JSON (or the literal `[DONE]`), `created` removed.
    fn events(bytes: &[u8]) -> Vec<Value> {
        sse::decode_all(bytes)
            .into_iter()
            .map(|e| {
                if e.data == "[DONE]" {
                    return Value::String(e.data);
                }
                let mut v: Value = serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("{err}: {}", e.data));
                if let Some(o) = v.as_object_mut() {
                    o.remove("created");
                }
                v
            })
            .collect()
    }

    fn stream_translator(client: &[u8]) -> Box<dyn ResponseTranslator> {
        let mut t = prep(client).unwrap().response.unwrap();
        assert_eq!(t.on_headers(200, Some("text/event-stream")), (200, BodyMode::Stream));
        assert_eq!(t.content_type(), "text/event-stream");
        t
    }

    /// Replays a stream whole, split in two at every byte, and byte by byte; all must agree.
    fn replay(client: &[u8], stream: &[u8], name: &str) -> (Vec<u8>, Option<Usage>) {
        let mut t = stream_translator(client);
        let mut whole = Vec::new();
        t.on_stream(stream, false, &mut whole);
        t.on_stream(&[], true, &mut whole);
        let usage = t.usage();
        for cut in 0..=stream.len() {
            let mut t = stream_translator(client);
            let mut out = Vec::new();
            t.on_stream(&stream[..cut], false, &mut out);
            t.on_stream(&stream[cut..], true, &mut out);
            assert_eq!(out, whole, "{name}: split at {cut}");
            assert_eq!(t.usage(), usage, "{name}: usage, split at {cut}");
        }
        let mut t = stream_translator(client);
        let mut out = Vec::new();
        for b in stream {
            t.on_stream(std::slice::from_ref(b), false, &mut out);
        }
        t.on_stream(&[], true, &mut out);
        assert_eq!(out, whole, "{name}: byte by byte");
        (whole, usage)
    }

    fn run_case(dir: &Path) {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let client = read(dir, "client_request.json").unwrap();
        let out = prep(&client).unwrap_or_else(|e| panic!("{name}: {}", e.message));
        let want_req = json_of(&read(dir, "provider_request.json").unwrap(), &name);
        assert_eq!(json_of(out.body.as_deref().unwrap(), &name), want_req, "{name}: provider request");
        let path = String::from_utf8(read(dir, "expected_path.txt").unwrap()).unwrap();
        assert_eq!(out.path, path.trim(), "{name}: path");
        let mut t = out.response.unwrap();

        let usage = if let Some(resp) = read(dir, "provider_response.json") {
            let status = read_num(dir, "provider_status.txt").unwrap_or(200u16);
            let (client_status, mode) = t.on_headers(status, Some("application/json"));
            assert_eq!(mode, BodyMode::Buffer, "{name}");
            assert_eq!(client_status, read_num(dir, "client_status.txt").unwrap_or(200u16), "{name}: status");
            assert_eq!(t.content_type(), "application/json", "{name}");
            let got = t.on_body(&resp);
            let want = json_of(&read(dir, "client_response.json").unwrap(), &name);
            assert_eq!(json_of(&got, &name), want, "{name}: client response");
            t.usage()
        } else {
            let stream =
                read(dir, "provider_stream.txt").or_else(|| read(dir, "provider_stream.bin")).expect("stream fixture");
            let (got, usage) = replay(&client, &stream, &name);
            let want = read(dir, "client_stream.txt").unwrap();
            assert_eq!(events(&got), events(&want), "{name}: client stream\n{}", String::from_utf8_lossy(&got));
            usage
        };
        if let Some(u) = read(dir, "expected_usage.json") {
            let u = json_of(&u, &name);
            let want = Usage {
                prompt_tokens: u["prompt_tokens"].as_u64().unwrap(),
                completion_tokens: u["completion_tokens"].as_u64().unwrap(),
                cached_tokens: u["cached_tokens"].as_u64().unwrap(),
            };
            assert_eq!(usage, Some(want), "{name}: usage");
        }
    }

    #[test]
    fn fixtures() {
        let mut dirs: Vec<_> = std::fs::read_dir(FIXTURES).unwrap().map(|e| e.unwrap().path()).collect();
        dirs.sort();
        assert!(dirs.len() >= 12, "{} fixture cases", dirs.len());
        for d in &dirs {
            run_case(d);
        }
    }

    #[test]
    fn headers_and_path() {
        let out = prep(br#"{"model":"claude","messages":[{"role":"user","content":"x"}]}"#).unwrap();
        assert_eq!(out.path, "/v1/messages");
        assert_eq!(
            out.headers,
            vec![
                ("x-api-key", "sk-ant-test".to_string()),
                ("anthropic-version", "2023-06-01".to_string()),
                ("content-type", "application/json".to_string()),
            ]
        );
    }

    #[test]
    fn embeddings_are_refused() {
        let p = provider();
        let e = prepare(&attempt(&p, Operation::Embeddings), br#"{"model":"m","input":"x"}"#).err().unwrap();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("model")));
        assert!(e.message.contains("does not serve embeddings"), "{}", e.message);
    }

    #[test]
    fn rejections_name_the_param() {
        let table: &[(&str, &str)] = &[
            (
                r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}"#,
                "messages[1].tool_calls[0].function.arguments",
            ),
            (
                r#"{"messages":[{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"[1]"}}]}]}"#,
                "messages[0].tool_calls[0].function.arguments",
            ),
            (r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#, "n"),
            (r#"{"messages":[{"role":"user","content":"x"}],"logprobs":true}"#, "logprobs"),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#,
                "response_format",
            ),
            (r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#, "max_tokens"),
            (r#"{"messages":[{"role":"user","content":"x"}],"stop":[1]}"#, "stop"),
            (r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"required"}"#, "tool_choice"),
            (r#"{"messages":[{"role":"system","content":"only system"}]}"#, "messages"),
            (r#"{"messages":[{"role":"function","name":"f","content":"x"}]}"#, "messages[0].role"),
            (r#"{"messages":[{"role":"tool","content":"x"}]}"#, "messages[0].tool_call_id"),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]}"#,
                "messages[0].content[0].type",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/bmp;base64,AA=="}}]}]}"#,
                "messages[0].content[0].image_url.url",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,rawbytes"}}]}]}"#,
                "messages[0].content[0].image_url.url",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}"#,
                "messages[0].content[0].image_url.url",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}"#,
                "messages[0].content[0].file.file_data",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","custom":{}}]}"#,
                "tools[0].type",
            ),
        ];
        for (body, param) in table {
            let e = prep(body.as_bytes()).err().unwrap_or_else(|| panic!("accepted: {body}"));
            assert_eq!((e.status, e.param.as_deref()), (400, Some(*param)), "{body}: {}", e.message);
        }
    }

    fn translated(body: &str) -> Value {
        json_of(&prep(body.as_bytes()).unwrap().body.unwrap(), body)
    }

    #[test]
    fn request_details() {
        // Empty arguments mean no arguments; PDF files become documents; image/jpg is image/jpeg.
        let v = translated(
            r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBE"}},{"type":"image_url","image_url":{"url":"DATA:image/JPG;base64,/9j/"}}]},{"role":"assistant","content":"","tool_calls":[{"id":"t1","type":"function","function":{"name":"now","arguments":""}}]}]}"#,
        );
        assert_eq!(v["messages"][0]["content"][0]["source"]["media_type"], "application/pdf");
        assert_eq!(v["messages"][0]["content"][1]["source"]["media_type"], "image/jpeg");
        assert_eq!(v["messages"][1]["content"], json!([{"type":"tool_use","id":"t1","name":"now","input":{}}]));
        // parallel_tool_calls false without tool_choice; tool_choice none without tools is a no-op.
        let v = translated(
            r#"{"messages":[{"role":"user","content":"x"}],"parallel_tool_calls":false,"tools":[{"type":"function","function":{"name":"f","strict":true}}]}"#,
        );
        assert_eq!(v["tool_choice"], json!({"type":"auto","disable_parallel_tool_use":true}));
        assert_eq!(v["tools"][0]["strict"], true);
        let v = translated(r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"none","seed":1}"#);
        assert!(v.get("tool_choice").is_none() && v.get("seed").is_none());
        let v = translated(
            r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"none","parallel_tool_calls":false,"tools":[{"type":"function","function":{"name":"f"}}]}"#,
        );
        assert_eq!(v["tool_choice"], json!({"type":"none"}));
    }

    #[test]
    fn garbage_streams_end_well_formed() {
        let client = br#"{"model":"claude","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
        let inputs: &[&[u8]] = &[
            b"",
            b"\xff\xfe\x00garbage\n\n",
            b"data: {not json}\n\ndata: [1,2]\n\nevent: message_start\ndata: {\"type\":\"message_start\",\"message\":7}\n\n",
            b"data: {\"type\":\"content_block_delta\",\"index\":5,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"x\"}}\n\n",
        ];
        for input in inputs {
            let (out, _) = replay(client, input, "garbage");
            let ev = events(&out);
            assert_eq!(ev.last(), Some(&Value::String("[DONE]".into())), "{}", String::from_utf8_lossy(&out));
            assert!(ev[ev.len() - 2].get("error").is_some(), "{}", String::from_utf8_lossy(&out));
        }
        // A huge unterminated line is not kept whole, and bytes after [DONE] are ignored.
        let mut t = stream_translator(client);
        let mut out = Vec::new();
        let big = vec![b'a'; 1 << 20];
        for _ in 0..20 {
            t.on_stream(&big, false, &mut out);
        }
        t.on_stream(b"\n\n", true, &mut out);
        let n = out.len();
        t.on_stream(b"data: {\"type\":\"message_stop\"}\n\n", true, &mut out);
        assert_eq!(out.len(), n);
    }

    #[test]
    fn many_tool_blocks_stay_bounded() {
        let mut t = Translator::new(&attempt(&provider(), Operation::ChatCompletions), true, false);
        t.on_headers(200, None);
        let mut out = Vec::new();
        for i in 0..1000 {
            let ev = format!(
                "data: {{\"type\":\"content_block_start\",\"index\":{i},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"t{i}\",\"name\":\"f\",\"input\":{{}}}}}}\n\n"
            );
            t.on_stream(ev.as_bytes(), false, &mut out);
        }
        assert!(t.open_tools.len() <= MAX_OPEN_TOOLS);
        assert_eq!(t.next_tool, 1000);
    }

    #[test]
    fn compacts_tool_input() {
        assert_eq!(compact_json("{ \"b\" : [1, 2],\n \"a\": \"x \\\" y\" }"), r#"{"b":[1,2],"a":"x \" y"}"#);
    }

    #[test]
    fn unreadable_success_body_is_an_error() {
        let mut t = prep(br#"{"model":"c","messages":[{"role":"user","content":"x"}]}"#).unwrap().response.unwrap();
        t.on_headers(200, Some("application/json"));
        let v = json_of(&t.on_body(b"not json"), "body");
        assert_eq!(v["error"]["code"], "provider_error");
        assert_eq!(t.usage(), None);
    }

    /// The provider's message id is the answer's; one of our own only when it sent none, in answers and
    /// in streams alike.
    #[test]
    fn ids_are_the_providers_or_made_when_missing() {
        let client = br#"{"model":"c","messages":[{"role":"user","content":"x"}]}"#;
        let answer = |body: &[u8]| {
            let mut t = prep(client).unwrap().response.unwrap();
            t.on_headers(200, Some("application/json"));
            json_of(&t.on_body(body), "answer")["id"].as_str().unwrap_or("").to_string()
        };
        let text = r#""type":"message","role":"assistant","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}"#;
        assert_eq!(answer(format!("{{\"id\":\"msg_1\",{text}}}").as_bytes()), "msg_1");
        let made = answer(format!("{{{text}}}").as_bytes());
        assert!(made.starts_with("chatcmpl-") && made.len() > "chatcmpl-".len(), "{made}");

        let stream_ids = |stream: &str| {
            let mut t = stream_translator(br#"{"model":"c","messages":[{"role":"user","content":"x"}],"stream":true}"#);
            let mut out = Vec::new();
            t.on_stream(stream.as_bytes(), true, &mut out);
            let ids: Vec<String> = sse::Decoder::new()
                .events(&out, true)
                .into_iter()
                .filter(|e| e.data != "[DONE]")
                .map(|e| json_of(e.data.as_bytes(), "chunk")["id"].as_str().unwrap_or("").to_string())
                .collect();
            ids
        };
        let delta = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_s\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":0}}}\n\n";
        let named = stream_ids(&format!("{start}{delta}"));
        assert!(named.len() > 1 && named.iter().all(|id| id == "msg_s"), "{named:?}");
        let unnamed = stream_ids(delta);
        assert!(unnamed.len() > 1 && unnamed[0].starts_with("chatcmpl-"), "{unnamed:?}");
        assert!(unnamed.iter().all(|id| *id == unnamed[0]), "{unnamed:?}");
    }
}
