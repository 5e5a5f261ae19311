//! OpenAI chat request → Anthropic Messages request (the general path, for every request shape).

use crate::api::error::{quote, ApiError};
use crate::codec::sha256;
use crate::providers::schema;
use crate::providers::toolkit::bad;
use serde_json::{json, Map, Value};

const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// The request body Anthropic gets.
pub(super) fn translate_request(
    req: &Map<String, Value>,
    model: &str,
    default_max_tokens: u32,
) -> Result<Value, ApiError> {
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
            None | Some(Value::Null) => schema::no_parameters(),
            Some(Value::Object(p)) => schema::with_object_type(p),
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
