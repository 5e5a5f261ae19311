//! OpenAI chat and embeddings requests → Gemini `generateContent` and `batchEmbedContents` bodies.

use super::{present, SKIP_SIGNATURE};
use crate::api::error::{quote, ApiError};
use crate::config::ProviderKind;
use crate::providers::schema;
use crate::providers::toolkit::bad;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The Gemini `contents` being built: turns merged by role, and the tool call names seen so far.
#[derive(Default)]
struct Turns {
    system: Vec<Value>,
    contents: Vec<Value>,
    call_names: HashMap<String, String>,
}

impl Turns {
    fn push(&mut self, role: &'static str, parts: Vec<Value>) {
        if parts.is_empty() {
            return;
        }
        if let Some(last) = self.contents.last_mut() {
            if last.get("role").and_then(Value::as_str) == Some(role) {
                if let Some(Value::Array(p)) = last.get_mut("parts") {
                    p.extend(parts);
                    return;
                }
            }
        }
        self.contents.push(json!({"role": role, "parts": parts}));
    }
}

pub(super) fn chat_request(req: &Value, kind: &ProviderKind) -> Result<Value, ApiError> {
    let gemini = matches!(kind, ProviderKind::Gemini { .. });
    let json_schema = !matches!(kind, ProviderKind::Gemini { api_version } if api_version == "v1");
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("'messages' must be a non-empty array.", "messages"))?;
    let mut t = Turns::default();
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                let parts = text_parts(content, &at, false)?;
                t.system.extend(parts);
            }
            "user" => {
                let parts = user_parts(content, &at, gemini)?;
                t.push("user", parts);
            }
            "assistant" => {
                let mut parts = text_parts(content, &at, true)?;
                parts.extend(assistant_calls(m, &at, &mut t.call_names)?);
                t.push("model", parts);
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                let name = t.call_names.get(id).cloned().ok_or_else(|| {
                    bad(
                        format!("No earlier assistant tool call has the id {}.", quote(id)),
                        &format!("{at}.tool_call_id"),
                    )
                })?;
                t.push("user", vec![function_response(&name, content, &at)?]);
            }
            "function" => {
                let name = m.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
                let name = name.ok_or_else(|| bad("A function message needs a 'name'.", &format!("{at}.name")))?;
                t.push("user", vec![function_response(name, content, &at)?]);
            }
            other => return Err(bad(format!("Unsupported role {}.", quote(other)), &format!("{at}.role"))),
        }
    }
    if t.contents.is_empty() {
        return Err(bad("At least one user or assistant message with content is required.", "messages"));
    }
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(t.contents));
    if !t.system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": t.system}));
    }
    if let Some(tools) = tools(req, json_schema)? {
        body.insert("tools".into(), tools);
    }
    if let Some(mode) = tool_config(req)? {
        body.insert("toolConfig".into(), json!({"functionCallingConfig": mode}));
    }
    let g = generation_config(req, json_schema)?;
    if !g.is_empty() {
        body.insert("generationConfig".into(), Value::Object(g));
    }
    Ok(Value::Object(body))
}

/// Text parts of a system, developer or assistant message (string or array of text parts).
fn text_parts(content: &Value, at: &str, assistant: bool) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    match content {
        Value::Null => {}
        Value::String(s) => push_text(&mut out, s),
        Value::Array(items) => {
            for (j, p) in items.iter().enumerate() {
                let ty = p.get("type").and_then(Value::as_str).unwrap_or("");
                let key = match ty {
                    "text" => "text",
                    "refusal" if assistant => "refusal",
                    _ => {
                        return Err(bad(
                            format!("Content part type {} is not supported in this message.", quote(ty)),
                            &format!("{at}.content[{j}].type"),
                        ))
                    }
                };
                push_text(&mut out, p.get(key).and_then(Value::as_str).unwrap_or(""));
            }
        }
        _ => return Err(bad("'content' must be a string or an array of parts.", &format!("{at}.content"))),
    }
    Ok(out)
}

fn push_text(out: &mut Vec<Value>, s: &str) {
    if !s.is_empty() {
        out.push(json!({"text": s}));
    }
}

fn user_parts(content: &Value, at: &str, gemini: bool) -> Result<Vec<Value>, ApiError> {
    let Value::Array(items) = content else { return text_parts(content, at, false) };
    let mut out = Vec::new();
    for (j, p) in items.iter().enumerate() {
        let pat = format!("{at}.content[{j}]");
        match p.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => push_text(&mut out, p.get("text").and_then(Value::as_str).unwrap_or("")),
            "image_url" => {
                let url = match p.get("image_url") {
                    Some(Value::String(s)) => Some(s.as_str()),
                    Some(o) => o.get("url").and_then(Value::as_str),
                    None => None,
                };
                let url =
                    url.ok_or_else(|| bad("An image_url part needs a 'url'.", &format!("{pat}.image_url.url")))?;
                out.push(image_part(url, &format!("{pat}.image_url.url"), gemini)?);
            }
            "input_audio" => {
                let a = p.get("input_audio");
                let data = a.and_then(|a| a.get("data")).and_then(Value::as_str).unwrap_or("");
                let format = a.and_then(|a| a.get("format")).and_then(Value::as_str).unwrap_or("");
                if data.is_empty() || format.is_empty() {
                    return Err(bad("An input_audio part needs 'data' and 'format'.", &format!("{pat}.input_audio")));
                }
                out.push(json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": data}}));
            }
            "file" => {
                let f = p.get("file");
                let data = f.and_then(|f| f.get("file_data")).and_then(Value::as_str);
                let name = f.and_then(|f| f.get("filename")).and_then(Value::as_str).unwrap_or("");
                let fat = format!("{pat}.file.file_data");
                match data {
                    Some(d) if d.starts_with("data:") => out.push(inline_data_url(d, &fat)?),
                    Some(d) if !d.is_empty() => {
                        out.push(json!({"inlineData": {"mimeType": guess_mime(name, "application/pdf"), "data": d}}))
                    }
                    _ => {
                        return Err(bad(
                            "Only files sent inline as 'file_data' are supported; this provider cannot read OpenAI file ids.",
                            &fat,
                        ))
                    }
                }
            }
            other => {
                return Err(bad(
                    format!("Content part type {} is not supported.", quote(other)),
                    &format!("{pat}.type"),
                ))
            }
        }
    }
    Ok(out)
}

fn image_part(url: &str, at: &str, gemini: bool) -> Result<Value, ApiError> {
    if url.starts_with("data:") {
        return inline_data_url(url, at);
    }
    if url.starts_with("gs://") || (gemini && url.starts_with("https://generativelanguage.googleapis.com/")) {
        return Ok(json!({"fileData": {"mimeType": guess_mime(url, "image/jpeg"), "fileUri": url}}));
    }
    let accepted = if gemini { "a gs:// URI or a Gemini File API URI" } else { "a gs:// URI" };
    Err(bad(
        format!(
            "This provider cannot fetch image URLs: send the image inline as a base64 data: URL, or as {accepted}."
        ),
        at,
    ))
}

/// `data:<mime>[;params];base64,<data>` → `inlineData`.
fn inline_data_url(url: &str, at: &str) -> Result<Value, ApiError> {
    let parsed = url.strip_prefix("data:").and_then(|rest| rest.split_once(',')).and_then(|(head, data)| {
        let params = head.strip_suffix(";base64")?;
        let mime = params.split(';').next().unwrap_or("").trim();
        (!mime.is_empty() && !data.is_empty()).then_some((mime, data))
    });
    let (mime, data) = parsed.ok_or_else(|| bad("A data URL must look like data:<mime type>;base64,<data>.", at))?;
    Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
}

fn guess_mime(url: &str, default: &'static str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    let ext = match name.rsplit_once('.') {
        Some((_, e)) => e.to_ascii_lowercase(),
        None => return default,
    };
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => default,
    }
}

/// `functionCall` parts of an assistant message (`tool_calls`, or the legacy `function_call`).
fn assistant_calls(m: &Value, at: &str, names: &mut HashMap<String, String>) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    if let Some(f) = present(m, "function_call") {
        let (name, args) = call_fields(f, &format!("{at}.function_call"))?;
        out.push(json!({"functionCall": {"name": name, "args": args}, "thoughtSignature": SKIP_SIGNATURE}));
        return Ok(out);
    }
    let Some(calls) = present(m, "tool_calls") else { return Ok(out) };
    let calls = calls.as_array().ok_or_else(|| bad("'tool_calls' must be an array.", &format!("{at}.tool_calls")))?;
    for (j, tc) in calls.iter().enumerate() {
        let cat = format!("{at}.tool_calls[{j}]");
        let ty = tc.get("type").and_then(Value::as_str).unwrap_or("function");
        if ty != "function" {
            return Err(bad(format!("Tool call type {} is not supported.", quote(ty)), &format!("{cat}.type")));
        }
        let f = tc.get("function").unwrap_or(&Value::Null);
        let (name, args) = call_fields(f, &format!("{cat}.function"))?;
        let mut part = Map::new();
        part.insert("functionCall".into(), json!({"name": name, "args": args}));
        let signature = tc.pointer("/extra_content/google/thought_signature").and_then(Value::as_str);
        match signature {
            Some(s) => {
                part.insert("thoughtSignature".into(), Value::String(s.to_string()));
            }
            None if j == 0 => {
                part.insert("thoughtSignature".into(), Value::String(SKIP_SIGNATURE.into()));
            }
            None => {}
        }
        if let Some(id) = tc.get("id").and_then(Value::as_str) {
            names.insert(id.to_string(), name.clone());
        }
        out.push(Value::Object(part));
    }
    Ok(out)
}

/// Name and parsed arguments of an OpenAI `function` object.
fn call_fields(f: &Value, at: &str) -> Result<(String, Value), ApiError> {
    let name = f.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
    let name = name.ok_or_else(|| bad("A tool call needs a function name.", &format!("{at}.name")))?;
    let args = match f.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Err(bad("Tool call arguments must be a JSON object.", &format!("{at}.arguments"))),
        },
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(bad("Tool call arguments must be a JSON object.", &format!("{at}.arguments"))),
    };
    Ok((name.to_string(), args))
}

fn function_response(name: &str, content: &Value, at: &str) -> Result<Value, ApiError> {
    let text: String = text_parts(content, at, false)?
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("");
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"content": text}),
    };
    Ok(json!({"functionResponse": {"name": name, "response": response}}))
}

fn tools(req: &Value, json_schema: bool) -> Result<Option<Value>, ApiError> {
    let Some(list) = present(req, "tools") else { return Ok(None) };
    let list = list.as_array().ok_or_else(|| bad("'tools' must be an array.", "tools"))?;
    let mut decls = Vec::new();
    for (k, t) in list.iter().enumerate() {
        let ty = t.get("type").and_then(Value::as_str).unwrap_or("");
        if ty != "function" {
            return Err(bad(format!("Tool type {} is not supported.", quote(ty)), &format!("tools[{k}].type")));
        }
        let f = t.get("function").unwrap_or(&Value::Null);
        let name = f.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
        let name = name.ok_or_else(|| bad("A tool needs a function name.", &format!("tools[{k}].function.name")))?;
        let mut d = Map::new();
        d.insert("name".into(), Value::String(name.to_string()));
        if let Some(desc) = f.get("description").and_then(Value::as_str) {
            d.insert("description".into(), Value::String(desc.to_string()));
        }
        // An empty schema is a function without parameters (Gemini refuses `{}`); one that names no
        // type is an object's.
        match present(f, "parameters") {
            Some(Value::Object(p)) if p.is_empty() => {}
            Some(p) => {
                let key = if json_schema { "parametersJsonSchema" } else { "parameters" };
                let p = match p {
                    Value::Object(o) => schema::with_object_type(o),
                    other => other.clone(),
                };
                d.insert(key.into(), p);
            }
            None => {}
        }
        decls.push(Value::Object(d));
    }
    Ok((!decls.is_empty()).then(|| json!([{"functionDeclarations": decls}])))
}

fn tool_config(req: &Value) -> Result<Option<Value>, ApiError> {
    let Some(choice) = present(req, "tool_choice") else { return Ok(None) };
    let mode = match choice {
        Value::String(s) if s == "auto" => json!({"mode": "AUTO"}),
        Value::String(s) if s == "none" => json!({"mode": "NONE"}),
        Value::String(s) if s == "required" => json!({"mode": "ANY"}),
        Value::Object(_) if choice.get("type").and_then(Value::as_str) == Some("function") => {
            let name = choice.pointer("/function/name").and_then(Value::as_str).filter(|n| !n.is_empty());
            let name = name.ok_or_else(|| bad("A named tool_choice needs a function name.", "tool_choice"))?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
        _ => return Err(bad("tool_choice must be auto, none, required or a named function.", "tool_choice")),
    };
    Ok(Some(mode))
}

/// `reasoning_effort` → Gemini's thinking budget in tokens, the figures Google's own OpenAI-compatible
/// endpoint uses (`none` turns thinking off where the model allows it; `minimal` is `low`'s budget).
fn thinking_budget(effort: &Value) -> Result<u64, ApiError> {
    match effort.as_str() {
        Some("none") => Ok(0),
        Some("minimal" | "low") => Ok(1024),
        Some("medium") => Ok(8192),
        Some("high") => Ok(24576),
        _ => Err(bad("'reasoning_effort' must be one of none, minimal, low, medium, high.", "reasoning_effort")),
    }
}

fn generation_config(req: &Value, json_schema: bool) -> Result<Map<String, Value>, ApiError> {
    let mut g = Map::new();
    let max = present(req, "max_completion_tokens").map(|v| ("max_completion_tokens", v));
    if let Some((key, v)) = max.or_else(|| present(req, "max_tokens").map(|v| ("max_tokens", v))) {
        let n =
            v.as_u64().filter(|n| *n >= 1).ok_or_else(|| bad(format!("'{key}' must be a positive integer."), key))?;
        g.insert("maxOutputTokens".into(), n.into());
    }
    for (key, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = present(req, key) {
            if !v.is_number() {
                return Err(bad(format!("'{key}' must be a number."), key));
            }
            g.insert(to.into(), v.clone());
        }
    }
    for (key, to) in [("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")] {
        if let Some(v) = present(req, key) {
            let x = v.as_f64().ok_or_else(|| bad(format!("'{key}' must be a number."), key))?;
            if x != 0.0 {
                g.insert(to.into(), v.clone());
            }
        }
    }
    match present(req, "stop") {
        None => {}
        Some(Value::String(s)) => {
            g.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            g.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        Some(_) => return Err(bad("'stop' must be a string or an array of strings.", "stop")),
    }
    if let Some(v) = present(req, "seed") {
        if v.as_i64().is_none() {
            return Err(bad("'seed' must be an integer.", "seed"));
        }
        g.insert("seed".into(), v.clone());
    }
    if let Some(v) = present(req, "reasoning_effort") {
        g.insert("thinkingConfig".into(), json!({"thinkingBudget": thinking_budget(v)?}));
    }
    if let Some(v) = present(req, "n") {
        if v.as_u64() != Some(1) {
            return Err(bad("This provider returns one choice per request; 'n' must be 1.", "n"));
        }
    }
    if present(req, "logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(bad("'logprobs' is not supported by this provider.", "logprobs"));
    }
    if let Some(rf) = present(req, "response_format") {
        match rf.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => {}
            "json_object" => {
                g.insert("responseMimeType".into(), "application/json".into());
            }
            "json_schema" => {
                g.insert("responseMimeType".into(), "application/json".into());
                if let Some(schema) = rf.pointer("/json_schema/schema").filter(|s| !s.is_null()) {
                    let key = if json_schema { "responseJsonSchema" } else { "responseSchema" };
                    g.insert(key.into(), schema.clone());
                }
            }
            other => {
                return Err(bad(
                    format!("response_format type {} is not supported.", quote(other)),
                    "response_format.type",
                ))
            }
        }
    }
    Ok(g)
}

// ---------------------------------------------------------------------------------------------------------
// Embeddings request

/// The `batchEmbedContents` body, and whether the client asked for base64 vectors.
pub(super) fn embeddings_request(req: &Value, model: &str) -> Result<(Value, bool), ApiError> {
    let texts: Vec<&str> =
        match req.get("input") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(Value::as_str)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("'input' must be a string or an array of strings (no token arrays).", "input"))?,
            _ => return Err(bad("'input' must be a string or a non-empty array of strings.", "input")),
        };
    if texts.len() > crate::providers::MAX_EMBEDDING_INPUTS {
        let max = crate::providers::MAX_EMBEDDING_INPUTS;
        return Err(bad(
            format!("'input' has {} items; at most {max} are accepted in one request.", texts.len()),
            "input",
        ));
    }
    let dims = match present(req, "dimensions") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|d| *d >= 1)
                .ok_or_else(|| bad("'dimensions' must be a positive integer.", "dimensions"))?,
        ),
    };
    let base64 = match present(req, "encoding_format").map(Value::as_str) {
        None | Some(Some("float")) => false,
        Some(Some("base64")) => true,
        Some(_) => return Err(bad("'encoding_format' must be float or base64.", "encoding_format")),
    };
    let name = format!("models/{}", model.strip_prefix("models/").unwrap_or(model));
    let requests: Vec<Value> = texts
        .iter()
        .map(|t| {
            let mut r = Map::new();
            r.insert("model".into(), Value::String(name.clone()));
            r.insert("content".into(), json!({"parts": [{"text": t}]}));
            if let Some(d) = dims {
                r.insert("outputDimensionality".into(), d.into());
            }
            Value::Object(r)
        })
        .collect();
    Ok((json!({"requests": requests}), base64))
}
