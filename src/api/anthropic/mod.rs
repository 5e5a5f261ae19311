//! Anthropic Messages API input (`POST /v1/messages`): clients speak Anthropic, the gateway converts the
//! request to the OpenAI Chat Completions pivot, serves it from any provider, and converts the answer,
//! error or stream back. Pure functions; no host calls.
//!
//! Request rules (Anthropic → OpenAI):
//! - `system` (string or text blocks, joined with `\n`) → a leading `system` message; a `system`-role
//!   message inside `messages` (allowed by the current SDK) → a `system` message at that place.
//! - User turns: `text` → text parts, `image` (base64 → `data:` URL, url → URL) → `image_url` parts,
//!   `document` (base64 PDF → `file` part with `file_data`; plain-text source → text part; other sources
//!   → 400). `tool_result` blocks → `tool` messages (`tool_call_id` = `tool_use_id`, text joined with `\n`,
//!   `is_error: true` → content prefixed with `"Error: "` since OpenAI has no error flag), emitted before
//!   the rest of the turn, which follows as one `user` message. Images inside a `tool_result` move to that
//!   user message (OpenAI tool messages carry text only). String content stays a string; block arrays
//!   stay part arrays.
//! - Assistant turns: text blocks concatenated into `content`, `tool_use` → `tool_calls` (arguments = JSON
//!   text of `input`). `thinking` / `redacted_thinking` blocks are dropped (no OpenAI input form); an
//!   assistant turn left empty is dropped. A final assistant turn (prefill) is passed on as is.
//! - `tools`: custom tools → function tools (`input_schema` → `parameters`; `strict`, `cache_control`,
//!   `input_examples` dropped). Anthropic server tools (any other `type`) → 400 `tools[i].type`.
//! - `tool_choice`: auto / any / tool / none → "auto" / "required" / named function / "none";
//!   `disable_parallel_tool_use: true` → `parallel_tool_calls: false`. Both only sent when tools are.
//! - `max_tokens` (required) → `max_tokens`; `temperature`, `top_p` copied; `stop_sequences` → `stop`;
//!   `metadata.user_id` → `user`; `stream: true` → `stream` + `stream_options.include_usage`;
//!   `output_config.format` (json_schema) → `response_format` json_schema named "output".
//! - Dropped without error (no OpenAI equivalent): `top_k`, `thinking`, `output_config.effort`,
//!   `cache_control` anywhere, `citations`, `service_tier`, `container`, `inference_geo`, `speed`,
//!   `diagnostics`, and unknown fields. Other block types (server tool results, search results, files
//!   by id, ...) → 400 naming the block.
//!
//! Response rules: see [`response_from_openai`], [`error_from_openai`] and [`StreamToAnthropic`].

pub mod upstream;

use crate::api::error::ApiError;
use crate::api::openai::{kind, wrong_type};
use crate::codec::sse;
use serde_json::{json, Map, Value};

/// What the gateway needs to route an Anthropic Messages request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagesRequest {
    pub model: String,
    pub stream: bool,
    pub max_tokens: u64,
}

/// Validates the request shape: model, max_tokens, messages (roles, content string or blocks), stream.
pub fn parse(body: &[u8]) -> Result<MessagesRequest, ApiError> {
    let v = parse_value(body)?;
    let Some(o) = v.as_object() else {
        return Err(ApiError::invalid_request(
            format!("The request body must be a JSON object, got {}.", kind(&v)),
            None,
        ));
    };
    check(o)
}

/// Converts an Anthropic Messages request to an OpenAI chat completion request (rules at the top).
pub fn to_openai(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let v = parse_value(body)?;
    let Some(o) = v.as_object() else {
        return Err(ApiError::invalid_request(
            format!("The request body must be a JSON object, got {}.", kind(&v)),
            None,
        ));
    };
    let req = check(o)?;
    let mut out = Map::new();
    out.insert("model".into(), Value::String(req.model));

    let mut messages = Vec::new();
    if let Some(sys) = o.get("system").filter(|s| !s.is_null()) {
        let text = joined_text(sys, "system", "\n")?;
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, m) in o.get("messages").and_then(Value::as_array).into_iter().flatten().enumerate() {
        convert_message(i, m, &mut messages)?;
    }
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), json!(req.max_tokens));

    for field in ["temperature", "top_p"] {
        match o.get(field) {
            None | Some(Value::Null) => {}
            Some(n @ Value::Number(_)) => {
                out.insert(field.into(), n.clone());
            }
            Some(other) => return Err(wrong_type(field, "a number", other)),
        }
    }
    match o.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(seqs)) => {
            for (k, s) in seqs.iter().enumerate() {
                if !s.is_string() {
                    return Err(wrong_type(&format!("stop_sequences[{k}]"), "a string", s));
                }
            }
            if !seqs.is_empty() {
                out.insert("stop".into(), Value::Array(seqs.clone()));
            }
        }
        Some(other) => return Err(wrong_type("stop_sequences", "an array of strings", other)),
    }
    if req.stream {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    match o.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) => match meta.get("user_id") {
            None | Some(Value::Null) => {}
            Some(Value::String(u)) => {
                out.insert("user".into(), Value::String(u.clone()));
            }
            Some(other) => return Err(wrong_type("metadata.user_id", "a string", other)),
        },
        Some(other) => return Err(wrong_type("metadata", "an object", other)),
    }
    let tools = convert_tools(o.get("tools"))?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = o.get("tool_choice").filter(|c| !c.is_null()) {
            let (choice, parallel) = convert_tool_choice(choice)?;
            out.insert("tool_choice".into(), choice);
            if parallel == Some(false) {
                out.insert("parallel_tool_calls".into(), Value::Bool(false));
            }
        }
    }
    if let Some(format) = o.get("output_config").and_then(|c| c.get("format")).filter(|f| !f.is_null()) {
        if format.get("type").and_then(Value::as_str) != Some("json_schema") {
            return Err(ApiError::invalid_request(
                "'output_config.format.type' must be 'json_schema'.",
                Some("output_config.format.type"),
            ));
        }
        let Some(schema) = format.get("schema").filter(|s| s.is_object()) else {
            return Err(ApiError::invalid_request(
                "'output_config.format.schema' must be an object.",
                Some("output_config.format.schema"),
            ));
        };
        out.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}),
        );
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| ApiError::gateway(e.to_string()))
}

fn parse_value(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e.to_string()))
}

fn required(field: &str) -> ApiError {
    ApiError::invalid_request(format!("'{field}' is a required property."), Some(field))
}

const ROLES: &[&str] = &["user", "assistant", "system"];

fn check(o: &Map<String, Value>) -> Result<MessagesRequest, ApiError> {
    let model = match o.get("model") {
        None => return Err(required("model")),
        Some(Value::String(m)) if m.is_empty() => {
            return Err(ApiError::invalid_request("'model' must not be empty.", Some("model")))
        }
        Some(Value::String(m)) => m.clone(),
        Some(other) => return Err(wrong_type("model", "a string", other)),
    };
    let max_tokens = match o.get("max_tokens") {
        None | Some(Value::Null) => return Err(required("max_tokens")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(t) => t,
            None => return Err(wrong_type("max_tokens", "a non-negative integer", &Value::Number(n.clone()))),
        },
        Some(other) => return Err(wrong_type("max_tokens", "a non-negative integer", other)),
    };
    let messages = match o.get("messages") {
        None => return Err(required("messages")),
        Some(Value::Array(m)) => m,
        Some(other) => return Err(wrong_type("messages", "an array", other)),
    };
    if messages.is_empty() {
        return Err(ApiError::invalid_request("'messages' must hold at least one message.", Some("messages")));
    }
    for (i, m) in messages.iter().enumerate() {
        let field = format!("messages[{i}]");
        let Some(mo) = m.as_object() else { return Err(wrong_type(&field, "an object", m)) };
        match mo.get("role") {
            None => return Err(required(&format!("{field}.role"))),
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => {}
            Some(Value::String(r)) => {
                return Err(ApiError::invalid_request(
                    format!(
                        "Invalid role {} in {field}; expected one of {}.",
                        crate::api::error::quote(r),
                        ROLES.join(", ")
                    ),
                    Some(&format!("{field}.role")),
                ))
            }
            Some(r) => return Err(wrong_type(&format!("{field}.role"), "a string", r)),
        }
        match mo.get("content") {
            None => return Err(required(&format!("{field}.content"))),
            Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) => {
                for (j, b) in blocks.iter().enumerate() {
                    let bf = format!("{field}.content[{j}]");
                    let Some(bo) = b.as_object() else { return Err(wrong_type(&bf, "an object", b)) };
                    match bo.get("type") {
                        None => return Err(required(&format!("{bf}.type"))),
                        Some(Value::String(_)) => {}
                        Some(t) => return Err(wrong_type(&format!("{bf}.type"), "a string", t)),
                    }
                }
            }
            Some(other) => return Err(wrong_type(&format!("{field}.content"), "a string or an array", other)),
        }
    }
    let stream = match o.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(wrong_type("stream", "a boolean", other)),
    };
    Ok(MessagesRequest { model, stream, max_tokens })
}

/// A string, or an array of text blocks joined with `sep`.
fn joined_text(v: &Value, field: &str, sep: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (k, b) in blocks.iter().enumerate() {
                let bf = format!("{field}[{k}]");
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(ApiError::invalid_request(format!("'{bf}' must be a text block."), Some(&bf)));
                }
                texts.push(block_text(b, &bf)?);
            }
            Ok(texts.join(sep))
        }
        other => Err(wrong_type(field, "a string or an array of text blocks", other)),
    }
}

fn block_text<'a>(b: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    match b.get("text") {
        Some(Value::String(t)) => Ok(t),
        None => Err(required(&format!("{field}.text"))),
        Some(other) => Err(wrong_type(&format!("{field}.text"), "a string", other)),
    }
}

fn str_field<'a>(b: &'a Value, key: &str, field: &str) -> Result<&'a str, ApiError> {
    match b.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(required(&format!("{field}.{key}"))),
        Some(other) => Err(wrong_type(&format!("{field}.{key}"), "a string", other)),
    }
}

fn unsupported_block(t: &str, role: &str, field: &str) -> ApiError {
    ApiError::invalid_request(
        format!(
            "Content blocks of type {} are not supported in {role} messages by this gateway.",
            crate::api::error::quote(t)
        ),
        Some(field),
    )
}

fn convert_message(i: usize, m: &Value, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
    let field = format!("messages[{i}].content");
    let content = m.get("content").unwrap_or(&Value::Null);
    match role {
        "system" => {
            out.push(json!({"role": "system", "content": joined_text(content, &field, "\n")?}));
            Ok(())
        }
        "assistant" => convert_assistant(content, &field, out),
        _ => convert_user(content, &field, out),
    }
}

fn convert_user(content: &Value, field: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let blocks = match content {
        Value::Array(blocks) => blocks,
        other => {
            out.push(json!({"role": "user", "content": other}));
            return Ok(());
        }
    };
    let mut tool_msgs = Vec::new();
    let mut moved = Vec::new();
    let mut parts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bf = format!("{field}[{j}]");
        match b.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => parts.push(json!({"type": "text", "text": block_text(b, &bf)?})),
            "image" => parts.push(image_part(b, &bf)?),
            "document" => parts.push(document_part(b, &bf)?),
            "tool_result" => tool_msgs.push(tool_result(b, &bf, &mut moved)?),
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(other, "user", &format!("{bf}.type"))),
        }
    }
    if tool_msgs.is_empty() && moved.is_empty() && parts.is_empty() {
        return Err(ApiError::invalid_request(format!("'{field}' must not be empty."), Some(field)));
    }
    out.append(&mut tool_msgs);
    moved.append(&mut parts);
    if !moved.is_empty() {
        out.push(json!({"role": "user", "content": moved}));
    }
    Ok(())
}

fn convert_assistant(content: &Value, field: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let blocks = match content {
        Value::Array(blocks) => blocks,
        other => {
            out.push(json!({"role": "assistant", "content": other}));
            return Ok(());
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bf = format!("{field}[{j}]");
        match b.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => text.push_str(block_text(b, &bf)?),
            "tool_use" => {
                let id = str_field(b, "id", &bf)?;
                let name = str_field(b, "name", &bf)?;
                let input = match b.get("input") {
                    None => return Err(required(&format!("{bf}.input"))),
                    Some(v) => v,
                };
                let arguments = serde_json::to_string(input).map_err(|e| ApiError::gateway(e.to_string()))?;
                calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}));
            }
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(other, "assistant", &format!("{bf}.type"))),
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let mut msg = Map::new();
    msg.insert("role".into(), json!("assistant"));
    msg.insert("content".into(), if text.is_empty() { Value::Null } else { Value::String(text) });
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    out.push(Value::Object(msg));
    Ok(())
}

fn image_part(b: &Value, field: &str) -> Result<Value, ApiError> {
    let sf = format!("{field}.source");
    let Some(source) = b.get("source").filter(|s| s.is_object()) else {
        return Err(ApiError::invalid_request(format!("'{sf}' must be an object."), Some(&sf)));
    };
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            format!("data:{};base64,{}", str_field(source, "media_type", &sf)?, str_field(source, "data", &sf)?)
        }
        Some("url") => str_field(source, "url", &sf)?.to_string(),
        _ => {
            return Err(ApiError::invalid_request(
                format!("'{sf}.type' must be 'base64' or 'url' (file sources are not served by this gateway)."),
                Some(&format!("{sf}.type")),
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn document_part(b: &Value, field: &str) -> Result<Value, ApiError> {
    let sf = format!("{field}.source");
    let Some(source) = b.get("source").filter(|s| s.is_object()) else {
        return Err(ApiError::invalid_request(format!("'{sf}' must be an object."), Some(&sf)));
    };
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = str_field(source, "media_type", &sf)?;
            let data = str_field(source, "data", &sf)?;
            let name = b.get("title").and_then(Value::as_str).unwrap_or("document.pdf");
            Ok(json!({"type": "file", "file": {"filename": name, "file_data": format!("data:{media};base64,{data}")}}))
        }
        Some("text") => Ok(json!({"type": "text", "text": str_field(source, "data", &sf)?})),
        _ => Err(ApiError::invalid_request(
            format!("'{sf}.type' must be 'base64' or 'text' for documents on this gateway."),
            Some(&format!("{sf}.type")),
        )),
    }
}

/// A `tool_result` block as an OpenAI `tool` message. `is_error: true` prefixes the content with
/// `"Error: "` (OpenAI tool messages have no error flag). Images go to `moved` (the user message after).
fn tool_result(b: &Value, field: &str, moved: &mut Vec<Value>) -> Result<Value, ApiError> {
    let id = str_field(b, "tool_use_id", field)?;
    let cf = format!("{field}.content");
    let mut text = match b.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => {
            let mut texts = Vec::new();
            for (k, item) in items.iter().enumerate() {
                let itf = format!("{cf}[{k}]");
                match item.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text" => texts.push(block_text(item, &itf)?),
                    "image" => moved.push(image_part(item, &itf)?),
                    other => return Err(unsupported_block(other, "tool_result", &format!("{itf}.type"))),
                }
            }
            texts.join("\n")
        }
        Some(other) => return Err(wrong_type(&cf, "a string or an array", other)),
    };
    if b.get("is_error").and_then(Value::as_bool) == Some(true) {
        text.insert_str(0, "Error: ");
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

fn convert_tools(tools: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let list = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(wrong_type("tools", "an array", other)),
    };
    let mut out = Vec::with_capacity(list.len());
    for (k, t) in list.iter().enumerate() {
        let tf = format!("tools[{k}]");
        if !t.is_object() {
            return Err(wrong_type(&tf, "an object", t));
        }
        match t.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "custom" => {}
            Some(Value::String(s)) => {
                return Err(ApiError::invalid_request(
                    format!(
                        "Tool type {} (an Anthropic server tool) is not supported by this gateway.",
                        crate::api::error::quote(s)
                    ),
                    Some(&format!("{tf}.type")),
                ))
            }
            Some(other) => return Err(wrong_type(&format!("{tf}.type"), "a string", other)),
        }
        let name = str_field(t, "name", &tf)?;
        let Some(schema) = t.get("input_schema").filter(|s| s.is_object()) else {
            return Err(ApiError::invalid_request(
                format!("'{tf}.input_schema' must be an object."),
                Some(&format!("{tf}.input_schema")),
            ));
        };
        let mut function = Map::new();
        function.insert("name".into(), json!(name));
        match t.get("description") {
            None | Some(Value::Null) => {}
            Some(d @ Value::String(_)) => {
                function.insert("description".into(), d.clone());
            }
            Some(other) => return Err(wrong_type(&format!("{tf}.description"), "a string", other)),
        }
        function.insert("parameters".into(), schema.clone());
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// The OpenAI `tool_choice` and, when set, the `parallel_tool_calls` value.
fn convert_tool_choice(choice: &Value) -> Result<(Value, Option<bool>), ApiError> {
    if !choice.is_object() {
        return Err(wrong_type("tool_choice", "an object", choice));
    }
    let parallel = match choice.get("disable_parallel_tool_use") {
        Some(Value::Bool(true)) => Some(false),
        _ => None,
    };
    let value = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            json!({"type": "function", "function": {"name": str_field(choice, "name", "tool_choice")?}})
        }
        _ => {
            return Err(ApiError::invalid_request(
                "'tool_choice.type' must be one of auto, any, tool, none.",
                Some("tool_choice.type"),
            ))
        }
    };
    Ok((value, parallel))
}

// ---------------------------------------------------------------------------------------------------
// Responses

/// `msg_` + the OpenAI id without its `chatcmpl-` prefix, or + a digest of `seed` when there is none.
fn message_id(openai_id: Option<&str>, seed: &[u8]) -> String {
    match openai_id.filter(|s| !s.is_empty()) {
        Some(id) => format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id)),
        None => {
            let hex = crate::codec::sha256::to_hex(&crate::codec::sha256::digest(seed));
            format!("msg_{}", hex.get(..24).unwrap_or(&hex))
        }
    }
}

fn stop_reason(finish: Option<&str>, saw_tool: bool) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if saw_tool => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic usage fields from an OpenAI `usage` object. Anthropic's `input_tokens` excludes cache
/// reads, so cached tokens are taken out of `prompt_tokens` and reported as `cache_read_input_tokens`.
fn usage_fields(usage: &Value, out: &mut Map<String, Value>) {
    let num = |v: Option<&Value>| v.and_then(Value::as_u64);
    let prompt = num(usage.get("prompt_tokens")).unwrap_or(0);
    let cached = num(usage.get("prompt_tokens_details").and_then(|d| d.get("cached_tokens")));
    out.insert("input_tokens".into(), json!(prompt.saturating_sub(cached.unwrap_or(0))));
    if let Some(c) = cached {
        out.insert("cache_read_input_tokens".into(), json!(c));
    }
    out.insert("output_tokens".into(), json!(num(usage.get("completion_tokens")).unwrap_or(0)));
}

/// Text of an OpenAI message `content` (string, or text parts concatenated).
fn content_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

/// Parsed tool arguments. Anthropic's `input` must be an object: arguments that are empty, not JSON or
/// not a JSON object become `{}` (the raw text is not kept, as tools validate `input` by schema).
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

/// OpenAI `chat.completion` → Anthropic `message`. Only the first choice is used. `finish_reason` maps
/// stop → end_turn, length → max_tokens, tool_calls → tool_use, content_filter → refusal (a `stop` with
/// tool calls → tool_use); `stop_sequence` is always null (OpenAI does not say which one matched). A
/// body that is not a chat completion gives an Anthropic `api_error` body.
pub fn response_from_openai(openai_body: &[u8], model: &str) -> Vec<u8> {
    let Ok(v) = serde_json::from_slice::<Value>(openai_body) else {
        return anthropic_error("api_error", "The upstream response was not valid JSON.");
    };
    let Some(choice) = v.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
        return anthropic_error("api_error", "The upstream response held no choices.");
    };
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let text = content_string(message.get("content"));
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        content.push(json!({"type": "text", "text": refusal}));
    }
    let mut saw_tool = false;
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let f = call.get("function").unwrap_or(&Value::Null);
        saw_tool = true;
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
            "name": f.get("name").and_then(Value::as_str).unwrap_or(""),
            "input": tool_input(f.get("arguments").and_then(Value::as_str).unwrap_or("")),
        }));
    }
    let mut usage = Map::new();
    usage_fields(v.get("usage").unwrap_or(&Value::Null), &mut usage);
    let out = json!({
        "id": message_id(v.get("id").and_then(Value::as_str), openai_body),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str), saw_tool),
        "stop_sequence": null,
        "usage": usage,
    });
    serde_json::to_vec(&out).unwrap_or_default()
}

fn anthropic_error(kind: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&error_value(kind, message)).unwrap_or_default()
}

fn error_value(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// The Anthropic error type for an HTTP status, as Anthropic's API documents them (402 billing_error
/// and 504 timeout_error are in the SDK's error types).
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// Longest piece of a non-JSON error body quoted in the message.
const ERROR_TEXT_MAX: usize = 300;

/// OpenAI error body → Anthropic error body, the type chosen by `status` and the message kept. A body
/// that is not OpenAI-shaped JSON is quoted (first 300 characters). Works for the gateway's own
/// [`ApiError`] too: `error_from_openai(e.status, e.body().as_bytes())`.
pub fn error_from_openai(status: u16, openai_error_body: &[u8]) -> Vec<u8> {
    let parsed = serde_json::from_slice::<Value>(openai_error_body).ok();
    let from_json = parsed.as_ref().and_then(|v| match v.get("error") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(e) => e.get("message").and_then(Value::as_str).map(str::to_string),
        None => v.get("message").and_then(Value::as_str).map(str::to_string),
    });
    let message = from_json.unwrap_or_else(|| {
        let text: String = String::from_utf8_lossy(openai_error_body).chars().take(ERROR_TEXT_MAX).collect();
        let text = text.trim();
        if text.is_empty() {
            format!("The upstream answered with status {status}.")
        } else {
            text.to_string()
        }
    });
    anthropic_error(error_type(status), &message)
}

/// The gateway's own error as an Anthropic error body.
pub fn error_from_api(e: &ApiError) -> Vec<u8> {
    anthropic_error(error_type(e.status), &e.message)
}

// ---------------------------------------------------------------------------------------------------
// Streams

/// Most tool calls one stream may open (garbage input must not grow memory without bound).
const MAX_TOOL_CALLS: usize = 1024;

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
    tools: Vec<(u64, u64)>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/anthropic_input");

    fn cases() -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> =
            std::fs::read_dir(FIXTURES).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        assert!(dirs.len() >= 10, "fixture cases missing");
        dirs
    }

    fn read(dir: &Path, name: &str) -> Option<Vec<u8>> {
        std::fs::read(dir.join(name)).ok()
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
    }

    /// Events as (name, parsed data).
    fn events(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
        sse::decode_all(bytes).into_iter().map(|e| (e.event, json(e.data.as_bytes()))).collect()
    }

    fn replay(input: &[u8], cuts: &[usize], model: &str) -> Vec<u8> {
        let mut s = StreamToAnthropic::new(model);
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts {
            s.push(&input[start..cut], false, &mut out);
            start = cut;
        }
        s.push(&input[start..], true, &mut out);
        out
    }

    #[test]
    fn fixtures() {
        for dir in cases() {
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            let req = read(&dir, "anthropic_request.json").unwrap();
            let parsed = parse(&req).unwrap_or_else(|e| panic!("{name}: {}", e.body()));
            let got = to_openai(&req).unwrap_or_else(|e| panic!("{name}: {}", e.body()));
            assert_eq!(json(&got), json(&read(&dir, "openai_request.json").unwrap()), "{name}: request");

            if let Some(stream) = read(&dir, "openai_stream.txt") {
                assert!(parsed.stream, "{name}: stream flag");
                let want = events(&read(&dir, "anthropic_stream.txt").unwrap());
                let whole = replay(&stream, &[], &parsed.model);
                assert_eq!(events(&whole), want, "{name}: stream\n{}", String::from_utf8_lossy(&whole));
                for cut in 0..=stream.len() {
                    assert_eq!(replay(&stream, &[cut], &parsed.model), whole, "{name}: split at {cut}");
                }
                let every: Vec<usize> = (1..stream.len()).collect();
                assert_eq!(replay(&stream, &every, &parsed.model), whole, "{name}: byte by byte");
                continue;
            }
            let body = read(&dir, "openai_response.json").or_else(|| read(&dir, "openai_response.txt")).unwrap();
            let status: u16 = read(&dir, "openai_status.txt")
                .map(|s| String::from_utf8(s).unwrap().trim().parse().unwrap())
                .unwrap_or(200);
            let got = if status < 300 {
                response_from_openai(&body, &parsed.model)
            } else {
                error_from_openai(status, &body)
            };
            assert_eq!(json(&got), json(&read(&dir, "anthropic_response.json").unwrap()), "{name}: response");
        }
    }

    #[test]
    fn invalid_requests_name_the_param() {
        let table: &[(&str, &str)] = &[
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
            (r#"{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
            (r#"{"model":"m","max_tokens":1.5,"messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
            (r#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#, "model"),
            (r#"{"model":7,"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#, "model"),
            (r#"{"model":"","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#, "model"),
            (r#"{"model":"m","max_tokens":1}"#, "messages"),
            (r#"{"model":"m","max_tokens":1,"messages":{}}"#, "messages"),
            (r#"{"model":"m","max_tokens":1,"messages":[]}"#, "messages"),
            (r#"{"model":"m","max_tokens":1,"messages":["x"]}"#, "messages[0]"),
            (
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"tool","content":"c"}]}"#,
                "messages[2].role",
            ),
            (r#"{"model":"m","max_tokens":1,"messages":[{"content":"a"}]}"#, "messages[0].role"),
            (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user"}]}"#, "messages[0].content"),
            (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":5}]}"#, "messages[0].content"),
            (
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"text":"a"}]}]}"#,
                "messages[0].content[0].type",
            ),
            (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#, "stream"),
        ];
        for (body, param) in table {
            let e = parse(body.as_bytes()).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(*param)), "{body}: {}", e.message);
            let e2 = to_openai(body.as_bytes()).unwrap_err();
            assert_eq!(e2.param, e.param);
        }
        assert_eq!(parse(b"{").unwrap_err().code, Some("invalid_json"));
        assert_eq!(parse(b"[]").unwrap_err().status, 400);
    }

    #[test]
    fn invalid_blocks_name_the_param() {
        let base =
            |messages: &str, extra: &str| format!(r#"{{"model":"m","max_tokens":1,"messages":{messages}{extra}}}"#);
        let table: Vec<(String, &str)> = vec![
            (base(r#"[{"role":"user","content":[{"type":"text"}]}]"#, ""), "messages[0].content[0].text"),
            (
                base(r#"[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]"#, ""),
                "messages[0].content[0].source.type",
            ),
            (
                base(r#"[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"x"}}]}]"#, ""),
                "messages[0].content[0].source.media_type",
            ),
            (
                base(r#"[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]"#, ""),
                "messages[0].content[0].tool_use_id",
            ),
            (
                base(
                    r#"[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"document","source":{}}]}]}]"#,
                    "",
                ),
                "messages[0].content[0].content[0].type",
            ),
            (base(r#"[{"role":"user","content":[{"type":"search_result"}]}]"#, ""), "messages[0].content[0].type"),
            (
                base(r#"[{"role":"user","content":[{"type":"tool_use","id":"a","name":"n","input":{}}]}]"#, ""),
                "messages[0].content[0].type",
            ),
            (base(r#"[{"role":"user","content":[]}]"#, ""), "messages[0].content"),
            (
                base(
                    r#"[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"a","input":{}}]}]"#,
                    "",
                ),
                "messages[1].content[0].name",
            ),
            (
                base(
                    r#"[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"image","source":{}}]}]"#,
                    "",
                ),
                "messages[1].content[0].type",
            ),
            (
                base(r#"[{"role":"system","content":[{"type":"image"}]},{"role":"user","content":"x"}]"#, ""),
                "messages[0].content[0]",
            ),
            (base(r#"[{"role":"user","content":"x"}]"#, r#","system":5"#), "system"),
            (base(r#"[{"role":"user","content":"x"}]"#, r#","system":[{"type":"text","text":1}]"#), "system[0].text"),
            (
                base(
                    r#"[{"role":"user","content":"x"}]"#,
                    r#","tools":[{"type":"web_search_20250305","name":"web_search"}]"#,
                ),
                "tools[0].type",
            ),
            (base(r#"[{"role":"user","content":"x"}]"#, r#","tools":[{"name":"a"}]"#), "tools[0].input_schema"),
            (base(r#"[{"role":"user","content":"x"}]"#, r#","tools":[{"input_schema":{}}]"#), "tools[0].name"),
            (
                base(
                    r#"[{"role":"user","content":"x"}]"#,
                    r#","tools":[{"name":"a","input_schema":{}}],"tool_choice":{"type":"maybe"}"#,
                ),
                "tool_choice.type",
            ),
            (
                base(
                    r#"[{"role":"user","content":"x"}]"#,
                    r#","tools":[{"name":"a","input_schema":{}}],"tool_choice":{"type":"tool"}"#,
                ),
                "tool_choice.name",
            ),
            (base(r#"[{"role":"user","content":"x"}]"#, r#","temperature":"hot""#), "temperature"),
            (base(r#"[{"role":"user","content":"x"}]"#, r#","stop_sequences":"END""#), "stop_sequences"),
            (base(r#"[{"role":"user","content":"x"}]"#, r#","stop_sequences":["a",1]"#), "stop_sequences[1]"),
            (base(r#"[{"role":"user","content":"x"}]"#, r#","metadata":{"user_id":3}"#), "metadata.user_id"),
            (
                base(r#"[{"role":"user","content":"x"}]"#, r#","output_config":{"format":{"type":"json_schema"}}"#),
                "output_config.format.schema",
            ),
        ];
        for (body, param) in &table {
            assert!(parse(body.as_bytes()).is_ok(), "{body}");
            let e = to_openai(body.as_bytes()).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(*param)), "{body}: {}", e.message);
        }
    }

    #[test]
    fn tool_choice_without_tools_is_not_sent() {
        let body = br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"auto","disable_parallel_tool_use":true},"tools":[]}"#;
        let v = json(&to_openai(body).unwrap());
        assert!(v.get("tool_choice").is_none() && v.get("parallel_tool_calls").is_none() && v.get("tools").is_none());
    }

    #[test]
    fn empty_assistant_turn_is_dropped() {
        let body = br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"redacted_thinking","data":"abc"}]},{"role":"user","content":"y"}]}"#;
        let v = json(&to_openai(body).unwrap());
        assert_eq!(v["messages"], serde_json::json!([{"role":"user","content":"x"},{"role":"user","content":"y"}]));
    }

    #[test]
    fn response_edge_cases() {
        // No id: a digest-based id; stop with tool calls is tool_use; no usage gives zeros.
        let body = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"tool_calls":[{"id":"c","function":{"name":"f","arguments":"[1]"}}]},"finish_reason":"stop"}]}"#;
        let v = json(&response_from_openai(body, "m"));
        let id = v["id"].as_str().unwrap();
        assert!(id.starts_with("msg_") && id.len() == 28, "{id}");
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["content"][0], serde_json::json!({"type":"text","text":"ab"}));
        assert_eq!(v["content"][1]["input"], serde_json::json!({}));
        assert_eq!(v["usage"], serde_json::json!({"input_tokens":0,"output_tokens":0}));
        let v = json(&response_from_openai(
            br#"{"choices":[{"message":{"content":null,"refusal":"No."},"finish_reason":"content_filter"}]}"#,
            "m",
        ));
        assert_eq!(v["stop_reason"], "refusal");
        assert_eq!(v["content"][0]["text"], "No.");
        for bad in [&b"not json"[..], b"{}", b"{\"choices\":[]}"] {
            let v = json(&response_from_openai(bad, "m"));
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "api_error");
        }
    }

    #[test]
    fn error_types_by_status() {
        let body = br#"{"error":{"message":"boom","type":"x","param":null,"code":null}}"#;
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (402, "billing_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ] {
            let v = json(&error_from_openai(status, body));
            assert_eq!(v, serde_json::json!({"type":"error","error":{"type":kind,"message":"boom"}}), "{status}");
        }
        assert_eq!(json(&error_from_openai(400, br#"{"error":"plain"}"#))["error"]["message"], "plain");
        assert_eq!(json(&error_from_openai(500, b""))["error"]["message"], "The upstream answered with status 500.");
        let long = "x".repeat(5000);
        assert_eq!(json(&error_from_openai(500, long.as_bytes()))["error"]["message"].as_str().unwrap().len(), 300);
        let e = ApiError::invalid_request("'max_tokens' is a required property.", Some("max_tokens"));
        assert_eq!(json(&error_from_openai(e.status, e.body().as_bytes())), json(&error_from_api(&e)));
        assert_eq!(json(&error_from_api(&e))["error"]["type"], "invalid_request_error");
    }

    fn chunk(delta: &str, finish: &str) -> String {
        format!("data: {{\"id\":\"chatcmpl-x\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n")
    }

    fn names(out: &[u8]) -> Vec<String> {
        sse::decode_all(out).into_iter().map(|e| e.event.unwrap_or_default()).collect()
    }

    #[test]
    fn stream_truncated_mid_tool_call_still_ends_well_formed() {
        let input = chunk(
            r#"{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":"{\"a"}}]}"#,
            "null",
        );
        let out = replay(input.as_bytes(), &[], "m");
        assert_eq!(
            names(&out),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let ev = events(&out);
        assert_eq!(ev[4].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn stream_empty_input_and_error_first() {
        assert_eq!(names(&replay(b"", &[], "m")), ["message_start", "message_delta", "message_stop"]);
        let out = replay(b"data: {\"error\":{\"message\":\"nope\"}}\n\ndata: [DONE]\n\n", &[], "m");
        assert_eq!(
            events(&out),
            vec![(
                Some("error".into()),
                serde_json::json!({"type":"error","error":{"type":"api_error","message":"nope"}})
            )]
        );
    }

    #[test]
    fn stream_text_after_tool_and_late_argument_piece() {
        let input = [
            chunk(r#"{"tool_calls":[{"index":0,"id":"c0","function":{"name":"f","arguments":""}}]}"#, "null"),
            chunk(r#"{"tool_calls":[{"index":1,"id":"c1","function":{"name":"g","arguments":"{}"}}]}"#, "null"),
            chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}"#, "null"),
            chunk(r#"{"content":"done"}"#, "null"),
            chunk("{}", "\"stop\""),
            "data: [DONE]\n\n".to_string(),
            "data: {\"choices\":[{\"delta\":{\"content\":\"ignored\"}}]}\n\n".to_string(),
        ]
        .concat();
        let ev = events(&replay(input.as_bytes(), &[], "m"));
        let kinds: Vec<(String, Value)> =
            ev.iter().map(|(n, d)| (n.clone().unwrap(), d.get("index").cloned().unwrap_or(Value::Null))).collect();
        let want = [
            ("message_start", Value::Null),
            ("content_block_start", json!(0)),
            ("content_block_stop", json!(0)),
            ("content_block_start", json!(1)),
            ("content_block_delta", json!(1)),
            ("content_block_delta", json!(0)),
            ("content_block_stop", json!(1)),
            ("content_block_start", json!(2)),
            ("content_block_delta", json!(2)),
            ("content_block_stop", json!(2)),
            ("message_delta", Value::Null),
            ("message_stop", Value::Null),
        ];
        let want: Vec<(String, Value)> = want.iter().map(|(n, i)| (n.to_string(), i.clone())).collect();
        assert_eq!(kinds, want);
        assert_eq!(ev[10].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn stream_garbage_is_bounded() {
        let mut s = StreamToAnthropic::new("m");
        let mut out = Vec::new();
        for i in 0..3000 {
            let c = chunk(&format!(r#"{{"tool_calls":[{{"index":{i},"id":"c","function":{{"name":"f"}}}}]}}"#), "null");
            s.push(c.as_bytes(), false, &mut out);
            s.push(b"data: not json\n\n:comment\n\n", false, &mut out);
        }
        s.push(b"", true, &mut out);
        assert_eq!(s.tools.len(), MAX_TOOL_CALLS);
        assert_eq!(names(&out).last().map(String::as_str), Some("message_stop"));
    }
}
