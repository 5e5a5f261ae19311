//! OpenAI Responses request → OpenAI Chat Completions pivot (rules in the folder's doc comment).

use crate::api::error::{empty_model, not_an_object, quote, required, wrong_type, ApiError};
use serde_json::{json, Map, Value};

/// What the gateway needs to route a Responses request, and what only OpenAI's own Responses endpoint
/// can serve (see [`check_pivot`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponsesRequest {
    pub model: String,
    pub stream: bool,
    pub max_output_tokens: Option<u64>,
    /// As given (`None` when absent or null).
    pub store: Option<bool>,
    pub previous_response_id: Option<String>,
    /// Tools other than `function`: (index in `tools`, `type`).
    pub hosted_tools: Vec<(usize, String)>,
    /// As given (`None` when absent or null).
    pub background: Option<bool>,
    /// A `conversation` is named (not null).
    pub conversation: bool,
    /// A stored `prompt` is named (not null).
    pub prompt: bool,
}

/// Validates the request shape: model, input (a string or an array of items; message roles and content
/// part types), stream, max_output_tokens, store, background, previous_response_id, tools' types.
pub fn parse(body: &[u8]) -> Result<ResponsesRequest, ApiError> {
    let v = parse_value(body)?;
    let Some(o) = v.as_object() else { return Err(not_an_object(&v)) };
    check(o)
}

/// Refuses what only OpenAI's own Responses endpoint can do when the request is to be served by
/// `provider` through the Chat Completions pivot: stored state (`previous_response_id`, `conversation`,
/// `prompt`, `store: true`), `background: true`, and hosted tools (any tool type but `function`). A 400
/// naming the param and the provider. An absent `store` is fine.
pub fn check_pivot(req: &ResponsesRequest, provider: &str) -> Result<(), ApiError> {
    refuse(req, Some(provider))
}

/// Converts a Responses request to a chat completion request (rules at the top of the folder). Whatever
/// [`check_pivot`] refuses is refused here too.
pub fn to_openai(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let v = parse_value(body)?;
    let Some(o) = v.as_object() else { return Err(not_an_object(&v)) };
    let req = check(o)?;
    refuse(&req, None)?;
    let mut out = Map::new();
    out.insert("model".into(), Value::String(req.model));

    let mut messages = Vec::new();
    let has_instructions = matches!(o.get("instructions"), Some(Value::String(s)) if !s.is_empty());
    match o.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(other) => return Err(wrong_type("instructions", "a string", other)),
    }
    match o.get("input") {
        None | Some(Value::Null) => return Err(required("input")),
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                convert_item(item, &format!("input[{i}]"), &mut messages)?;
            }
        }
        Some(other) => return Err(wrong_type("input", "a string or an array", other)),
    }
    if messages.len() <= usize::from(has_instructions) {
        return Err(ApiError::invalid_request("'input' must hold at least one message or item.", Some("input")));
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(max) = req.max_output_tokens {
        out.insert("max_tokens".into(), json!(max));
    }
    for field in ["temperature", "top_p"] {
        copy(o.get(field), &mut out, field, field, NUMBER)?;
    }
    let user = optional_str(o, "user")?.or(optional_str(o, "safety_identifier")?);
    if let Some(u) = user {
        out.insert("user".into(), json!(u));
    }
    if req.stream {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let tools = convert_tools(o.get("tools"))?;
    if !tools.is_empty() {
        let (choice, allowed) = convert_tool_choice(o.get("tool_choice"))?;
        let tools = match allowed {
            Some(names) => {
                tools.into_iter().filter(|t| names.iter().any(|n| Some(n.as_str()) == tool_name(t))).collect()
            }
            None => tools,
        };
        out.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            out.insert("tool_choice".into(), c);
        }
        copy(o.get("parallel_tool_calls"), &mut out, "parallel_tool_calls", "parallel_tool_calls", BOOL)?;
    }
    if let Some(format) = convert_text(o.get("text"))? {
        out.insert("response_format".into(), format);
    }
    match o.get("reasoning") {
        None | Some(Value::Null) => {}
        Some(Value::Object(r)) => copy(r.get("effort"), &mut out, "reasoning_effort", "reasoning.effort", STRING)?,
        Some(other) => return Err(wrong_type("reasoning", "an object", other)),
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| ApiError::gateway(e.to_string()))
}

fn parse_value(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e.to_string()))
}

const ROLES: &[&str] = &["user", "assistant", "system", "developer"];

fn check(o: &Map<String, Value>) -> Result<ResponsesRequest, ApiError> {
    let model = match o.get("model") {
        None | Some(Value::Null) => return Err(required("model")),
        Some(Value::String(m)) if m.is_empty() => return Err(empty_model()),
        Some(Value::String(m)) => m.clone(),
        Some(other) => return Err(wrong_type("model", "a string", other)),
    };
    match o.get("input") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_item(item, &format!("input[{i}]"))?;
            }
        }
        Some(other) => return Err(wrong_type("input", "a string or an array", other)),
    }
    let stream = optional_bool(o, "stream")?.unwrap_or(false);
    let max_output_tokens = match o.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(other) => return Err(wrong_type("max_output_tokens", "a non-negative integer", other)),
    };
    let store = optional_bool(o, "store")?;
    let background = optional_bool(o, "background")?;
    let previous_response_id = optional_str(o, "previous_response_id")?.map(str::to_string);
    let mut hosted_tools = Vec::new();
    match o.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) => {
            for (k, t) in tools.iter().enumerate() {
                let tf = format!("tools[{k}]");
                if !t.is_object() {
                    return Err(wrong_type(&tf, "an object", t));
                }
                match t.get("type") {
                    None | Some(Value::Null) => return Err(required(&format!("{tf}.type"))),
                    Some(Value::String(s)) if s == "function" => {}
                    Some(Value::String(s)) => hosted_tools.push((k, s.clone())),
                    Some(other) => return Err(wrong_type(&format!("{tf}.type"), "a string", other)),
                }
            }
        }
        Some(other) => return Err(wrong_type("tools", "an array", other)),
    }
    let named = |k: &str| o.get(k).is_some_and(|v| !v.is_null());
    Ok(ResponsesRequest {
        model,
        stream,
        max_output_tokens,
        store,
        previous_response_id,
        hosted_tools,
        background,
        conversation: named("conversation"),
        prompt: named("prompt"),
    })
}

/// An input item's shape: an object; a message (no `type`, or `message`) has a known role and content
/// that is a string or an array of parts, each an object with a string `type`.
fn check_item(item: &Value, field: &str) -> Result<(), ApiError> {
    let Some(io) = item.as_object() else { return Err(wrong_type(field, "an object", item)) };
    let kind = match io.get("type") {
        None | Some(Value::Null) => "message",
        Some(Value::String(t)) => t.as_str(),
        Some(other) => return Err(wrong_type(&format!("{field}.type"), "a string", other)),
    };
    if kind != "message" {
        return Ok(());
    }
    match io.get("role") {
        None | Some(Value::Null) => return Err(required(&format!("{field}.role"))),
        Some(Value::String(r)) if ROLES.contains(&r.as_str()) => {}
        Some(Value::String(r)) => {
            return Err(ApiError::invalid_request(
                format!("Invalid role {} in {field}; expected one of {}.", quote(r), ROLES.join(", ")),
                Some(&format!("{field}.role")),
            ))
        }
        Some(other) => return Err(wrong_type(&format!("{field}.role"), "a string", other)),
    }
    match io.get("content") {
        None | Some(Value::Null) => Err(required(&format!("{field}.content"))),
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                let pf = format!("{field}.content[{j}]");
                let Some(po) = p.as_object() else { return Err(wrong_type(&pf, "an object", p)) };
                match po.get("type") {
                    None | Some(Value::Null) => return Err(required(&format!("{pf}.type"))),
                    Some(Value::String(_)) => {}
                    Some(t) => return Err(wrong_type(&format!("{pf}.type"), "a string", t)),
                }
            }
            Ok(())
        }
        Some(other) => Err(wrong_type(&format!("{field}.content"), "a string or an array", other)),
    }
}

/// A JSON type a copied field must have: its name for errors, and the test.
type Want = (&'static str, fn(&Value) -> bool);
const NUMBER: Want = ("a number", Value::is_number);
const BOOL: Want = ("a boolean", Value::is_boolean);
const STRING: Want = ("a string", Value::is_string);
const OBJECT: Want = ("an object", Value::is_object);

/// Copies a field's value to `to[key]` when present and not null; another type is a 400 naming `param`.
fn copy(v: Option<&Value>, to: &mut Map<String, Value>, key: &str, param: &str, want: Want) -> Result<(), ApiError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(v) if (want.1)(v) => {
            to.insert(key.into(), v.clone());
            Ok(())
        }
        Some(other) => Err(wrong_type(param, want.0, other)),
    }
}

fn optional_bool(o: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(field, "a boolean", other)),
    }
}

fn optional_str<'a>(o: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

/// The 400 for what the pivot cannot serve; `provider` named when known.
fn refuse(req: &ResponsesRequest, provider: Option<&str>) -> Result<(), ApiError> {
    let served = match provider {
        Some(p) => format!("the provider {} is served through the Chat Completions format", quote(p)),
        None => "this model is served through the Chat Completions format".to_string(),
    };
    let stateful = |param: &str, what: &str| {
        unsupported(
            format!(
                "{what} needs state kept by OpenAI's Responses API, but {served} and the gateway keeps no state. \
                 Send the whole conversation in 'input' instead."
            ),
            param,
        )
    };
    if req.previous_response_id.is_some() {
        return Err(stateful("previous_response_id", "'previous_response_id'"));
    }
    if req.conversation {
        return Err(stateful("conversation", "'conversation'"));
    }
    if req.prompt {
        return Err(unsupported(
            format!("Stored prompts ('prompt') live in OpenAI's Responses API, but {served}."),
            "prompt",
        ));
    }
    if req.store == Some(true) {
        return Err(unsupported(
            format!("'store: true' asks OpenAI to keep the response, but {served} and the gateway keeps no state."),
            "store",
        ));
    }
    if req.background == Some(true) {
        return Err(unsupported(
            format!("Background responses ('background: true') are not available: {served}."),
            "background",
        ));
    }
    if let Some((k, t)) = req.hosted_tools.first() {
        return Err(unsupported(
            format!("Tool type {} is hosted by OpenAI's Responses API and not available: {served}; only 'function' tools are.", quote(t)),
            &format!("tools[{k}].type"),
        ));
    }
    Ok(())
}

fn unsupported(message: String, param: &str) -> ApiError {
    let mut e = ApiError::invalid_request(message, Some(param));
    e.code = Some("unsupported_parameter");
    e
}

fn unsupported_type(kind: &str, what: &str, field: &str) -> ApiError {
    ApiError::invalid_request(
        format!("{what} of type {} are not supported by this gateway.", quote(kind)),
        Some(&format!("{field}.type")),
    )
}

fn str_field<'a>(v: &'a Value, key: &str, field: &str) -> Result<&'a str, ApiError> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(required(&format!("{field}.{key}"))),
        Some(other) => Err(wrong_type(&format!("{field}.{key}"), "a string", other)),
    }
}

fn convert_item(item: &Value, field: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    match item.get("type").and_then(Value::as_str).unwrap_or("message") {
        "message" => convert_message(item, field, out),
        "function_call" => {
            let call_id = str_field(item, "call_id", field)?;
            let name = str_field(item, "name", field)?;
            let arguments = str_field(item, "arguments", field)?;
            let call = json!({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}});
            // Calls join the assistant message right before them (its text, or the calls before).
            let last = out.last_mut().filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
            match last.and_then(Value::as_object_mut) {
                Some(m) => match m.get_mut("tool_calls") {
                    Some(Value::Array(calls)) => calls.push(call),
                    _ => {
                        m.insert("tool_calls".into(), json!([call]));
                    }
                },
                None => out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
            Ok(())
        }
        "function_call_output" => {
            let call_id = str_field(item, "call_id", field)?;
            let of = format!("{field}.output");
            let content = match item.get("output") {
                None | Some(Value::Null) => return Err(required(&of)),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => {
                    let mut texts = Vec::with_capacity(parts.len());
                    for (j, p) in parts.iter().enumerate() {
                        let pf = format!("{of}[{j}]");
                        match p.get("type").and_then(Value::as_str) {
                            Some("input_text") => texts.push(str_field(p, "text", &pf)?),
                            Some(other) => return Err(unsupported_type(other, "Function call outputs", &pf)),
                            None => return Err(required(&format!("{pf}.type"))),
                        }
                    }
                    texts.join("\n")
                }
                Some(other) => return Err(wrong_type(&of, "a string or an array", other)),
            };
            out.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
            Ok(())
        }
        "reasoning" => Ok(()),
        other => Err(unsupported_type(other, "Input items", field)),
    }
}

fn convert_message(item: &Value, field: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
    let cf = format!("{field}.content");
    let content = item.get("content").unwrap_or(&Value::Null);
    let parts = match content {
        Value::String(s) => {
            if role != "assistant" || !s.is_empty() {
                out.push(json!({"role": chat_role(role), "content": s}));
            }
            return Ok(());
        }
        Value::Array(parts) => parts,
        other => return Err(wrong_type(&cf, "a string or an array", other)),
    };
    match role {
        "assistant" => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                let pf = format!("{cf}[{j}]");
                match p.get("type").and_then(Value::as_str).unwrap_or("") {
                    "output_text" | "input_text" => text.push_str(str_field(p, "text", &pf)?),
                    "refusal" => text.push_str(str_field(p, "refusal", &pf)?),
                    other => return Err(unsupported_type(other, "Content parts in assistant messages", &pf)),
                }
            }
            if !text.is_empty() {
                out.push(json!({"role": "assistant", "content": text}));
            }
        }
        "system" | "developer" => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let pf = format!("{cf}[{j}]");
                match p.get("type").and_then(Value::as_str).unwrap_or("") {
                    "input_text" => texts.push(str_field(p, "text", &pf)?),
                    other => return Err(unsupported_type(other, &format!("Content parts in {role} messages"), &pf)),
                }
            }
            out.push(json!({"role": "system", "content": texts.join("\n")}));
        }
        _ => {
            if parts.is_empty() {
                return Err(ApiError::invalid_request(format!("'{cf}' must not be empty."), Some(&cf)));
            }
            let mut chat_parts = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                chat_parts.push(user_part(p, &format!("{cf}[{j}]"))?);
            }
            out.push(json!({"role": "user", "content": chat_parts}));
        }
    }
    Ok(())
}

fn chat_role(role: &str) -> &str {
    if role == "developer" {
        "system"
    } else {
        role
    }
}

fn user_part(p: &Value, field: &str) -> Result<Value, ApiError> {
    match p.get("type").and_then(Value::as_str).unwrap_or("") {
        "input_text" => Ok(json!({"type": "text", "text": str_field(p, "text", field)?})),
        "input_image" => {
            if p.get("file_id").is_some_and(|f| !f.is_null()) {
                return Err(ApiError::invalid_request(
                    format!("'{field}.file_id': files by id need OpenAI's file storage; send 'image_url' (a URL or a data URL) instead."),
                    Some(&format!("{field}.file_id")),
                ));
            }
            let mut image = Map::new();
            image.insert("url".into(), json!(str_field(p, "image_url", field)?));
            if let Some(d) = p.get("detail").and_then(Value::as_str).filter(|d| ["auto", "low", "high"].contains(d)) {
                image.insert("detail".into(), json!(d));
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        "input_file" => {
            for key in ["file_id", "file_url"] {
                if p.get(key).is_some_and(|f| !f.is_null()) {
                    return Err(ApiError::invalid_request(
                        format!(
                            "'{field}.{key}' is not supported by this gateway; send the file inline in 'file_data'."
                        ),
                        Some(&format!("{field}.{key}")),
                    ));
                }
            }
            let mut file = Map::new();
            file.insert("file_data".into(), json!(str_field(p, "file_data", field)?));
            if let Some(name) = p.get("filename").and_then(Value::as_str) {
                file.insert("filename".into(), json!(name));
            }
            Ok(json!({"type": "file", "file": file}))
        }
        other => Err(unsupported_type(other, "Content parts in user messages", field)),
    }
}

fn tool_name(t: &Value) -> Option<&str> {
    t.get("function").and_then(|f| f.get("name")).and_then(Value::as_str)
}

/// Function tools (flat in Responses) → chat function tools. Hosted tools were refused before.
fn convert_tools(tools: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let Some(Value::Array(list)) = tools else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(list.len());
    for (k, t) in list.iter().enumerate() {
        let tf = format!("tools[{k}]");
        let mut function = Map::new();
        function.insert("name".into(), json!(str_field(t, "name", &tf)?));
        for (key, want) in [("description", STRING), ("parameters", OBJECT), ("strict", BOOL)] {
            copy(t.get(key), &mut function, key, &format!("{tf}.{key}"), want)?;
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// The chat `tool_choice`, and for `allowed_tools` the names of the tools to keep.
fn convert_tool_choice(choice: Option<&Value>) -> Result<(Option<Value>, Option<Vec<String>>), ApiError> {
    const MODES: &[&str] = &["auto", "none", "required"];
    let choice = match choice {
        None | Some(Value::Null) => return Ok((None, None)),
        Some(Value::String(s)) if MODES.contains(&s.as_str()) => return Ok((Some(json!(s)), None)),
        Some(Value::String(s)) => {
            return Err(ApiError::invalid_request(
                format!("'tool_choice' {} must be one of auto, none, required or an object.", quote(s)),
                Some("tool_choice"),
            ))
        }
        Some(c @ Value::Object(_)) => c,
        Some(other) => return Err(wrong_type("tool_choice", "a string or an object", other)),
    };
    match choice.get("type").and_then(Value::as_str) {
        Some("function") => {
            let name = str_field(choice, "name", "tool_choice")?;
            Ok((Some(json!({"type": "function", "function": {"name": name}})), None))
        }
        Some("allowed_tools") => {
            let mode = str_field(choice, "mode", "tool_choice")?;
            if mode != "auto" && mode != "required" {
                return Err(ApiError::invalid_request(
                    "'tool_choice.mode' must be 'auto' or 'required'.",
                    Some("tool_choice.mode"),
                ));
            }
            let Some(Value::Array(tools)) = choice.get("tools") else {
                return Err(required("tool_choice.tools"));
            };
            let mut names = Vec::with_capacity(tools.len());
            for (k, t) in tools.iter().enumerate() {
                let tf = format!("tool_choice.tools[{k}]");
                if t.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(unsupported(
                        format!("'{tf}.type': only function tools can be allowed on this gateway."),
                        &format!("{tf}.type"),
                    ));
                }
                names.push(str_field(t, "name", &tf)?.to_string());
            }
            Ok((Some(json!(mode)), Some(names)))
        }
        Some(other) => Err(unsupported(
            format!("'tool_choice' of type {} names a tool hosted by OpenAI's Responses API; only function tools are available here.", quote(other)),
            "tool_choice.type",
        )),
        None => Err(required("tool_choice.type")),
    }
}

/// `text.format` → chat `response_format` (`None` for plain text).
fn convert_text(text: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let format = match text {
        None | Some(Value::Null) => return Ok(None),
        Some(t @ Value::Object(_)) => match t.get("format") {
            None | Some(Value::Null) => return Ok(None),
            Some(f @ Value::Object(_)) => f,
            Some(other) => return Err(wrong_type("text.format", "an object", other)),
        },
        Some(other) => return Err(wrong_type("text", "an object", other)),
    };
    match str_field(format, "type", "text.format")? {
        "text" => Ok(None),
        "json_object" => Ok(Some(json!({"type": "json_object"}))),
        "json_schema" => {
            let mut schema = Map::new();
            schema.insert("name".into(), json!(str_field(format, "name", "text.format")?));
            match format.get("schema") {
                Some(s @ Value::Object(_)) => {
                    schema.insert("schema".into(), s.clone());
                }
                None | Some(Value::Null) => return Err(required("text.format.schema")),
                Some(other) => return Err(wrong_type("text.format.schema", "an object", other)),
            }
            copy(format.get("strict"), &mut schema, "strict", "text.format.strict", BOOL)?;
            copy(format.get("description"), &mut schema, "description", "text.format.description", STRING)?;
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        other => Err(ApiError::invalid_request(
            format!("'text.format.type' {} must be one of text, json_object, json_schema.", quote(other)),
            Some("text.format.type"),
        )),
    }
}
