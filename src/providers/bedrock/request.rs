//! OpenAI chat request → Converse request.

use super::Obj;
use crate::api::error::ApiError;
use crate::providers::schema;
use crate::providers::toolkit::bad;
use serde_json::{json, Value};

/// The Converse request body for an OpenAI chat request.
pub(super) fn converse_request(req: &Obj) -> Result<Value, ApiError> {
    check_unsupported(req)?;
    let msgs =
        req.get("messages").and_then(Value::as_array).ok_or_else(|| bad("'messages' must be an array.", "messages"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut tool_history = false;
    for (i, m) in msgs.iter().enumerate() {
        let p = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content");
        match role {
            "system" | "developer" => system.extend(text_blocks(content, &p)?),
            "user" => push_turn(&mut turns, "user", user_blocks(content, &p)?),
            "assistant" => {
                if m.get("function_call").is_some_and(|f| !f.is_null()) {
                    return Err(bad(
                        "Legacy 'function_call' is not supported for Bedrock; use 'tool_calls'.",
                        &format!("{p}.function_call"),
                    ));
                }
                let mut blocks = text_blocks(content, &p)?;
                let calls = tool_use_blocks(m.get("tool_calls"), &p)?;
                tool_history |= !calls.is_empty();
                blocks.extend(calls);
                push_turn(&mut turns, "assistant", blocks);
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("A tool message needs a 'tool_call_id'.", &format!("{p}.tool_call_id")))?;
                let result = json!({"toolResult": {"toolUseId": id, "content": tool_result_content(content, &p)?}});
                tool_history = true;
                push_turn(&mut turns, "user", vec![result]);
            }
            _ => {
                return Err(bad(
                    format!("Messages of role '{role}' are not supported for Bedrock; use 'tool' messages."),
                    &format!("{p}.role"),
                ))
            }
        }
    }

    let mut out = Obj::new();
    out.insert(
        "messages".into(),
        Value::Array(turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect()),
    );
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let inference = inference_config(req)?;
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(tc) = tool_config(req, tool_history)? {
        out.insert("toolConfig".into(), tc);
    }
    if let Some(oc) = output_config(req)? {
        out.insert("outputConfig".into(), oc);
    }
    Ok(Value::Object(out))
}

fn push_turn(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((r, content)) if *r == role => content.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

fn text_block(s: &str) -> Option<Value> {
    (!s.is_empty()).then(|| json!({"text": s}))
}

/// Text-only content (system, developer, assistant): a string or `text` (and `refusal`) parts.
fn text_blocks(content: Option<&Value>, p: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(text_block(s).into_iter().collect()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                let field = match kind {
                    "text" => "text",
                    "refusal" => "refusal",
                    _ => {
                        return Err(bad(
                            format!("Content parts of type '{kind}' are not supported in this message for Bedrock."),
                            &format!("{p}.content[{j}].type"),
                        ))
                    }
                };
                out.extend(part.get(field).and_then(Value::as_str).and_then(text_block));
            }
            Ok(out)
        }
        Some(_) => Err(bad("'content' must be a string or an array of parts.", &format!("{p}.content"))),
    }
}

fn user_blocks(content: Option<&Value>, p: &str) -> Result<Vec<Value>, ApiError> {
    let Some(Value::Array(parts)) = content else { return text_blocks(content, p) };
    let mut out = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{p}.content[{j}]");
        match part.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => out.extend(part.get("text").and_then(Value::as_str).and_then(text_block)),
            "image_url" => out.push(image_block(part.get("image_url"), &pp)?),
            kind => {
                return Err(bad(
                    format!("Content parts of type '{kind}' are not supported for Bedrock (text and image_url are)."),
                    &format!("{pp}.type"),
                ))
            }
        }
    }
    Ok(out)
}

/// A `data:` URL → an inline image block.
fn image_block(image: Option<&Value>, pp: &str) -> Result<Value, ApiError> {
    let param = format!("{pp}.image_url.url");
    let url = match image {
        Some(Value::String(s)) => s.as_str(),
        Some(v) => v.get("url").and_then(Value::as_str).unwrap_or(""),
        None => "",
    };
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err(bad("Bedrock takes images as inline bytes only: send the image as a base64 data: URL.", &param));
    }
    let Some((head, data)) = url.strip_prefix("data:").and_then(|r| r.split_once(',')) else {
        return Err(bad("'image_url.url' must be a base64 data: URL.", &param));
    };
    let mut params = head.split(';');
    let mime = params.next().unwrap_or("").trim().to_ascii_lowercase();
    if !params.any(|x| x.trim().eq_ignore_ascii_case("base64")) {
        return Err(bad("The image data: URL must be base64-encoded.", &param));
    }
    let format = match mime.as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => {
            return Err(bad(
                format!("Image type '{mime}' is not supported by Bedrock (png, jpeg, gif, webp are)."),
                &param,
            ))
        }
    };
    if data.is_empty() {
        return Err(bad("The image data: URL holds no data.", &param));
    }
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

fn tool_use_blocks(calls: Option<&Value>, p: &str) -> Result<Vec<Value>, ApiError> {
    let Some(Value::Array(calls)) = calls else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (k, c) in calls.iter().enumerate() {
        let cp = format!("{p}.tool_calls[{k}]");
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("A tool call needs an 'id'.", &format!("{cp}.id")))?;
        let f = c.get("function");
        let name = f
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("A tool call needs a function name.", &format!("{cp}.function.name")))?;
        let args = f.and_then(|f| f.get("arguments")).and_then(Value::as_str).unwrap_or("");
        let input: Value = if args.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(args).map_err(|_| {
                bad("Tool call arguments must be a JSON document for Bedrock.", &format!("{cp}.function.arguments"))
            })?
        };
        out.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
    }
    Ok(out)
}

fn tool_result_content(content: Option<&Value>, p: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        Some(Value::String(s)) => Ok(vec![json!({"text": s})]),
        Some(Value::Array(_)) => text_blocks(content, p),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => Err(bad("'content' must be a string or an array of parts.", &format!("{p}.content"))),
    }
}

fn number(req: &Obj, key: &str) -> Result<Option<Value>, ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(_)) => Ok(Some(v.clone())),
        Some(_) => Err(bad(format!("'{key}' must be a number."), key)),
    }
}

fn inference_config(req: &Obj) -> Result<Obj, ApiError> {
    let mut c = Obj::new();
    for key in ["max_completion_tokens", "max_tokens"] {
        match req.get(key) {
            None | Some(Value::Null) => continue,
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => {
                    c.insert("maxTokens".into(), json!(n));
                    break;
                }
                _ => return Err(bad(format!("'{key}' must be a positive integer."), key)),
            },
        }
    }
    if let Some(t) = number(req, "temperature")? {
        c.insert("temperature".into(), t);
    }
    if let Some(t) = number(req, "top_p")? {
        c.insert("topP".into(), t);
    }
    let stops: Vec<Value> = match req.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => text_stop(s),
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for s in a {
                out.extend(text_stop(
                    s.as_str().ok_or_else(|| bad("'stop' must be a string or an array of strings.", "stop"))?,
                ));
            }
            out
        }
        Some(_) => return Err(bad("'stop' must be a string or an array of strings.", "stop")),
    };
    if !stops.is_empty() {
        c.insert("stopSequences".into(), Value::Array(stops));
    }
    Ok(c)
}

fn text_stop(s: &str) -> Vec<Value> {
    if s.is_empty() {
        Vec::new()
    } else {
        vec![Value::String(s.to_string())]
    }
}

fn tool_config(req: &Obj, tool_history: bool) -> Result<Option<Value>, ApiError> {
    let tools = match req.get("tools") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(t)) if t.is_empty() => return Ok(None),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(bad("'tools' must be an array.", "tools")),
    };
    let mut specs = Vec::new();
    for (k, t) in tools.iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "function" {
            return Err(bad(
                format!("Tools of type '{kind}' are not supported for Bedrock."),
                &format!("tools[{k}].type"),
            ));
        }
        let f = t.get("function");
        let name = f
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("A tool needs a function name.", &format!("tools[{k}].function.name")))?;
        let mut spec = Obj::new();
        spec.insert("name".into(), json!(name));
        if let Some(d) = f.and_then(|f| f.get("description")).and_then(Value::as_str).filter(|d| !d.is_empty()) {
            spec.insert("description".into(), json!(d));
        }
        let schema = match f.and_then(|f| f.get("parameters")) {
            None | Some(Value::Null) => schema::no_parameters(),
            Some(Value::Object(s)) => schema::with_object_type(s),
            Some(s) => s.clone(),
        };
        spec.insert("inputSchema".into(), json!({"json": schema}));
        specs.push(json!({"toolSpec": spec}));
    }
    let choice = match req.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "required" => Some(json!({"any": {}})),
            "none" if tool_history => None,
            "none" => return Ok(None),
            _ => return Err(bad(format!("Unknown tool_choice '{s}'."), "tool_choice")),
        },
        Some(v) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| {
                    bad(
                        "'tool_choice' must name a function: {\"type\":\"function\",\"function\":{\"name\":…}}.",
                        "tool_choice",
                    )
                })?;
            Some(json!({"tool": {"name": name}}))
        }
    };
    let mut tc = json!({"tools": specs});
    if let (Some(c), Some(o)) = (choice, tc.as_object_mut()) {
        o.insert("toolChoice".into(), c);
    }
    Ok(Some(tc))
}

fn output_config(req: &Obj) -> Result<Option<Value>, ApiError> {
    let Some(rf) = req.get("response_format").filter(|v| !v.is_null()) else { return Ok(None) };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_schema") => {
            let js = rf.get("json_schema");
            let schema = js.and_then(|j| j.get("schema")).ok_or_else(|| {
                bad("'response_format.json_schema.schema' is required.", "response_format.json_schema.schema")
            })?;
            let mut def = Obj::new();
            def.insert("schema".into(), Value::String(schema.to_string()));
            for key in ["name", "description"] {
                if let Some(s) = js.and_then(|j| j.get(key)).and_then(Value::as_str) {
                    def.insert(key.into(), json!(s));
                }
            }
            Ok(Some(json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": def}}})))
        }
        Some("json_object") => Err(bad(
            "response_format 'json_object' is not supported for Bedrock; use 'json_schema'.",
            "response_format",
        )),
        _ => Err(bad("Unknown response_format type.", "response_format.type")),
    }
}

fn check_unsupported(req: &Obj) -> Result<(), ApiError> {
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(bad("Bedrock returns one choice per request: 'n' must be 1.", "n"));
    }
    if req.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(bad("Bedrock does not return log probabilities.", "logprobs"));
    }
    Ok(())
}
