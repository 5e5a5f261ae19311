//! Anthropic Messages request → OpenAI Chat Completions pivot (rules in the folder's doc comment).

use crate::api::error::{empty_model, invalid_role, no_messages, not_an_object, quote, required, wrong_type, ApiError};
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
    let Some(o) = v.as_object() else { return Err(not_an_object(&v)) };
    check(o)
}

/// Converts an Anthropic Messages request to an OpenAI chat completion request (rules at the top).
pub fn to_openai(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let v = parse_value(body)?;
    let Some(o) = v.as_object() else { return Err(not_an_object(&v)) };
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

const ROLES: &[&str] = &["user", "assistant", "system"];

fn check(o: &Map<String, Value>) -> Result<MessagesRequest, ApiError> {
    let model = match o.get("model") {
        None => return Err(required("model")),
        Some(Value::String(m)) if m.is_empty() => return Err(empty_model()),
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
        return Err(no_messages());
    }
    for (i, m) in messages.iter().enumerate() {
        let field = format!("messages[{i}]");
        let Some(mo) = m.as_object() else { return Err(wrong_type(&field, "an object", m)) };
        match mo.get("role") {
            None => return Err(required(&format!("{field}.role"))),
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => {}
            Some(Value::String(r)) => return Err(invalid_role(r, i, ROLES)),
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
        format!("Content blocks of type {} are not supported in {role} messages by this gateway.", quote(t)),
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
                    format!("Tool type {} (an Anthropic server tool) is not supported by this gateway.", quote(s)),
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
