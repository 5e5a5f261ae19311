//! Gemini API (kind `gemini`, `x-goog-api-key`) and Vertex AI publisher models (kind `vertex`, bearer
//! token): OpenAI chat completions ⇄ `generateContent` / `streamGenerateContent?alt=sse`, and, for kind
//! `gemini` only, OpenAI embeddings ⇄ `batchEmbedContents`.
//!
//! Rules for what Gemini cannot take as sent:
//! - system and developer messages, wherever they stand, become `systemInstruction` parts, in order.
//!   Consecutive turns of one role are merged; empty text parts and messages left without parts are
//!   skipped; a request left with no user or assistant content is a 400.
//! - Images: `data:` URLs → `inlineData`; `gs://` URIs (and, for kind gemini, File API URIs under
//!   `https://generativelanguage.googleapis.com/`) → `fileData`, MIME type guessed from the extension
//!   (default image/jpeg); other URLs → 400 (Gemini does not fetch web URLs). `detail` is dropped.
//!   `input_audio` and `file` parts with `file_data` go inline; `file_id` → 400.
//! - Tool parameters go to `parametersJsonSchema` and json_schema response formats to
//!   `responseJsonSchema`: full JSON Schema as OpenAI clients write it (`additionalProperties`, `$defs`,
//!   type arrays), which needs Gemini 2.5 or later. With `api_version: v1` they go to `parameters` /
//!   `responseSchema` (Gemini's OpenAPI subset), unchanged: keys outside that subset are refused upstream.
//!   `strict` is dropped.
//! - Tool results: the function name comes from the earlier assistant tool call with that id (unknown id →
//!   400); content that is a JSON object is the `response`, anything else becomes `{"content": text}`.
//! - Thought signatures (Gemini 3 wants them back with function calls) ride on tool calls as
//!   `extra_content.google.thought_signature`, the shape of Google's own OpenAI endpoint. A replayed
//!   assistant turn whose first tool call has none gets Google's documented placeholder
//!   `skip_thought_signature_validator`. Tool call ids are Gemini's `functionCall.id` when it sends one,
//!   else `call_<tag>_<n>` (tag from the response id, so ids differ between turns).
//! - `n` > 1 and `logprobs: true` → 400. `presence_penalty` / `frequency_penalty` are sent only when
//!   non-zero (several Gemini models refuse them). Dropped: `parallel_tool_calls`, `logit_bias`,
//!   `reasoning_effort`, `user`, `store`, `metadata`, `service_tier` and every other unnamed field.
//! - Finish reasons: any function call → tool_calls; MAX_TOKENS → length; SAFETY, RECITATION, BLOCKLIST,
//!   PROHIBITED_CONTENT, SPII, MODEL_ARMOR and the IMAGE_* filters → content_filter; a prompt blocked by
//!   `promptFeedback.blockReason` → content_filter with empty content; everything else → stop. Thought
//!   parts are not shown; their tokens count as completion (and reasoning) tokens.
//! - Embeddings: input is a string or an array of strings (token arrays → 400); `dimensions` →
//!   `outputDimensionality`; usage is 0 when Gemini reports none.

use super::{
    client_status_for_provider_error, provider_error_body, Attempt, BodyMode, Outgoing, ResponseTranslator, Usage,
};
use crate::api::error::{quote, ApiError};
use crate::api::openai::Operation;
use crate::codec::{percent, sha256, sse};
use crate::config::{Provider, ProviderKind};
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Whether the config may accept this provider kind.
pub const READY: bool = true;

/// Google's documented stand-in for a thought signature the history does not have.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

pub fn prepare(a: &Attempt, body: &[u8]) -> Result<Outgoing, ApiError> {
    let req: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
    let fallback_id = fallback_id(body, a.now_unix);
    match a.op {
        Operation::ChatCompletions => {
            let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
            let include_usage = stream
                && (a.usage_chunk
                    || req.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true));
            let out = chat_request(&req, &a.provider.kind)?;
            let method = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
            Ok(Outgoing {
                path: model_path(&a.provider.kind, a.model, method)?,
                headers: super::credential(a.provider).into_iter().collect(),
                body: Some(to_bytes(&out)?),
                response: Some(Box::new(Translator::new(a, Mode::Chat { stream, include_usage }, fallback_id))),
            })
        }
        Operation::Embeddings => {
            if !matches!(a.provider.kind, ProviderKind::Gemini { .. }) {
                return Err(ApiError::invalid_request(
                    format!("provider kind {} does not serve embeddings", a.provider.kind.name()),
                    Some("model"),
                ));
            }
            let (out, base64) = embeddings_request(&req, a.model)?;
            Ok(Outgoing {
                path: model_path(&a.provider.kind, a.model, "batchEmbedContents")?,
                headers: super::credential(a.provider).into_iter().collect(),
                body: Some(to_bytes(&out)?),
                response: Some(Box::new(Translator::new(a, Mode::Embeddings { base64 }, fallback_id))),
            })
        }
        // Model listing (and any other operation) is answered elsewhere, never by a Gemini upstream.
        _ => Err(ApiError::gateway("this operation has no Gemini upstream path")),
    }
}

fn to_bytes(v: &Value) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(v).map_err(|e| ApiError::gateway(e.to_string()))
}

/// `chatcmpl-` and a digest of the request and the time, for responses without a `responseId`.
fn fallback_id(body: &[u8], now: u64) -> String {
    let mut seed = body.to_vec();
    seed.extend_from_slice(&now.to_le_bytes());
    let hex = sha256::to_hex(&sha256::digest(&seed));
    format!("chatcmpl-{}", hex.get(..24).unwrap_or(&hex))
}

fn model_path(kind: &ProviderKind, model: &str, method: &str) -> Result<String, ApiError> {
    let m = percent::encode(model.strip_prefix("models/").unwrap_or(model).as_bytes());
    match kind {
        ProviderKind::Gemini { api_version } => Ok(format!("/{api_version}/models/{m}:{method}")),
        ProviderKind::Vertex { project, location } => {
            Ok(format!("/v1/projects/{project}/locations/{location}/publishers/google/models/{m}:{method}"))
        }
        other => Err(ApiError::gateway(format!("provider kind {} is not a Gemini kind", other.name()))),
    }
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid_request(message, Some(param))
}

fn present<'a>(req: &'a Value, key: &str) -> Option<&'a Value> {
    req.get(key).filter(|v| !v.is_null())
}

// ---------------------------------------------------------------------------------------------------------
// Chat request

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

fn chat_request(req: &Value, kind: &ProviderKind) -> Result<Value, ApiError> {
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
        if let Some(p) = present(f, "parameters") {
            let key = if json_schema { "parametersJsonSchema" } else { "parameters" };
            d.insert(key.into(), p.clone());
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
fn embeddings_request(req: &Value, model: &str) -> Result<(Value, bool), ApiError> {
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

// ---------------------------------------------------------------------------------------------------------
// Responses

#[derive(Debug, Clone, Copy)]
enum Mode {
    Chat { stream: bool, include_usage: bool },
    Embeddings { base64: bool },
}

struct Translator {
    provider: Provider,
    model: String,
    created: u64,
    /// The fallback id until the provider's `responseId` is seen.
    id: String,
    mode: Mode,
    /// The provider's status when it is an error.
    failed: Option<u16>,
    usage: Option<Usage>,
    reasoning: u64,
    decoder: sse::Decoder,
    started: bool,
    tool_calls: usize,
    finish: Option<&'static str>,
    done: bool,
}

impl Translator {
    fn new(a: &Attempt, mode: Mode, id: String) -> Self {
        Translator {
            provider: a.provider.clone(),
            model: a.model.to_string(),
            created: a.now_unix,
            id,
            mode,
            failed: None,
            usage: None,
            reasoning: 0,
            decoder: sse::Decoder::new(),
            started: false,
            tool_calls: 0,
            finish: None,
            done: false,
        }
    }

    fn include_usage(&self) -> bool {
        matches!(self.mode, Mode::Chat { include_usage: true, .. })
    }

    fn take_id(&mut self, v: &Value) {
        if let Some(id) = v.get("responseId").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            self.id = id.to_string();
        }
    }

    fn read_usage(&mut self, v: &Value) {
        let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) else { return };
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        let thoughts = n("thoughtsTokenCount");
        self.usage = Some(Usage {
            prompt_tokens: n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount")),
            completion_tokens: n("candidatesTokenCount").saturating_add(thoughts),
            cached_tokens: n("cachedContentTokenCount"),
        });
        self.reasoning = thoughts;
    }

    fn usage_json(&self) -> Value {
        let mut u = super::usage_json(&self.usage.unwrap_or_default());
        if let Some(o) = u.as_object_mut() {
            o.insert("completion_tokens_details".into(), json!({"reasoning_tokens": self.reasoning}));
        }
        u
    }

    /// An OpenAI tool call for a Gemini `functionCall` part; `n` counts calls in this response.
    fn tool_call(&self, part: &Value, n: usize, stream: bool) -> Value {
        let fc = part.get("functionCall").unwrap_or(&Value::Null);
        let id = match fc.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(id) => id.to_string(),
            None => {
                let tag = sha256::to_hex(&sha256::digest(self.id.as_bytes()));
                format!("call_{}_{n}", tag.get(..8).unwrap_or(""))
            }
        };
        let name = fc.get("name").and_then(Value::as_str).unwrap_or("");
        let args = fc.get("args").filter(|a| !a.is_null()).cloned().unwrap_or_else(|| json!({}));
        let mut call = Map::new();
        if stream {
            call.insert("index".into(), n.into());
        }
        call.insert("id".into(), Value::String(id));
        call.insert("type".into(), "function".into());
        call.insert("function".into(), json!({"name": name, "arguments": args.to_string()}));
        if let Some(sig) = part.get("thoughtSignature").and_then(Value::as_str) {
            call.insert("extra_content".into(), json!({"google": {"thought_signature": sig}}));
        }
        Value::Object(call)
    }

    fn completion(&mut self, v: &Value) -> Value {
        self.take_id(v);
        self.read_usage(v);
        let cand = v.get("candidates").and_then(|c| c.get(0));
        let mut text = String::new();
        let mut calls = Vec::new();
        for p in parts(cand) {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                text.push_str(t);
            }
            if p.get("functionCall").is_some() {
                calls.push(self.tool_call(p, calls.len(), false));
            }
        }
        let finish = match cand {
            _ if !calls.is_empty() => "tool_calls",
            Some(c) => map_finish(c.get("finishReason").and_then(Value::as_str).unwrap_or("STOP")),
            None if v.pointer("/promptFeedback/blockReason").is_some() => "content_filter",
            None => "stop",
        };
        let mut message = Map::new();
        message.insert("role".into(), "assistant".into());
        let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) };
        message.insert("content".into(), content);
        message.insert("refusal".into(), Value::Null);
        if !calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let mut out = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        });
        if self.usage.is_some() {
            if let Some(o) = out.as_object_mut() {
                o.insert("usage".into(), self.usage_json());
            }
        }
        out
    }

    fn embeddings(&mut self, v: &Value, base64: bool) -> Value {
        let list = v.get("embeddings").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let data: Vec<Value> = list
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let values = e.get("values").cloned().unwrap_or_else(|| json!([]));
                let embedding = if base64 {
                    let mut bytes = Vec::new();
                    for x in values.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                        bytes.extend_from_slice(&(x.as_f64().unwrap_or(0.0) as f32).to_le_bytes());
                    }
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    values
                };
                json!({"object": "embedding", "index": i, "embedding": embedding})
            })
            .collect();
        let tokens = v.pointer("/usageMetadata/promptTokenCount").and_then(Value::as_u64);
        if let Some(t) = tokens {
            self.usage = Some(Usage { prompt_tokens: t, completion_tokens: 0, cached_tokens: 0 });
        }
        let t = tokens.unwrap_or(0);
        json!({
            "object": "list",
            "data": data,
            "model": self.model,
            "usage": {"prompt_tokens": t, "total_tokens": t}
        })
    }

    fn error_body(&self, status: u16, body: &[u8]) -> Vec<u8> {
        let (message, kind) = provider_message(body);
        provider_error_body(&self.provider.name, status, &message, kind.as_deref()).1
    }

    /// An error of the gateway's own about the provider's answer (not a provider error object).
    fn own_error(&self, message: &str) -> String {
        json!({"error": {
            "message": format!("{}: {message}", self.provider.name),
            "type": "server_error",
            "param": null,
            "code": "provider_error"
        }})
        .to_string()
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        super::chunk_json(&self.id, self.created, &self.model, delta, finish, self.include_usage())
    }

    /// Ends the client stream with an error event.
    fn fail(&mut self, out: &mut Vec<u8>, error_json: &str) {
        sse::write_event(out, None, error_json);
        sse::write_event(out, None, "[DONE]");
        self.done = true;
    }

    fn on_event(&mut self, data: &str, out: &mut Vec<u8>) {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) => {
                let e = self.own_error("the provider sent a stream event that is not JSON");
                return self.fail(out, &e);
            }
        };
        if let Some(err) = v.get("error") {
            let status = err.get("code").and_then(Value::as_u64).filter(|c| (400..600).contains(c)).unwrap_or(500);
            let (message, kind) = error_fields(err);
            let body = provider_error_body(&self.provider.name, status as u16, &message, kind.as_deref()).1;
            return self.fail(out, &String::from_utf8_lossy(&body));
        }
        if !self.started {
            self.take_id(&v);
            self.started = true;
            let c = self.chunk(json!({"role": "assistant", "content": ""}), None);
            sse::write_event(out, None, &c);
        }
        self.read_usage(&v);
        let cand = v.get("candidates").and_then(|c| c.get(0));
        for p in parts(cand) {
            if let Some(t) = p.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                let c = self.chunk(json!({"content": t}), None);
                sse::write_event(out, None, &c);
            }
            if p.get("functionCall").is_some() {
                let call = self.tool_call(p, self.tool_calls, true);
                self.tool_calls += 1;
                let c = self.chunk(json!({"tool_calls": [call]}), None);
                sse::write_event(out, None, &c);
            }
        }
        match cand {
            Some(c) => {
                if let Some(r) = c.get("finishReason").and_then(Value::as_str) {
                    self.finish = Some(map_finish(r));
                }
            }
            None if v.pointer("/promptFeedback/blockReason").is_some() => self.finish = Some("content_filter"),
            None => {}
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(finish) = self.finish else {
            let e = self.own_error("the stream ended before the provider finished the response");
            return self.fail(out, &e);
        };
        let finish = if self.tool_calls > 0 { "tool_calls" } else { finish };
        let c = self.chunk(json!({}), Some(finish));
        sse::write_event(out, None, &c);
        if self.include_usage() {
            let u = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage_json(),
            });
            sse::write_event(out, None, &u.to_string());
        }
        sse::write_event(out, None, "[DONE]");
        self.done = true;
    }
}

/// The visible (non-thought) parts of a candidate.
fn parts(cand: Option<&Value>) -> impl Iterator<Item = &Value> {
    cand.and_then(|c| c.pointer("/content/parts"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
}

fn map_finish(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "MODEL_ARMOR"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ => "stop",
    }
}

/// Message and status name of a Gemini error object.
fn error_fields(err: &Value) -> (String, Option<String>) {
    let message = match err.get("message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => "no error message".to_string(),
    };
    (message, err.get("status").and_then(Value::as_str).map(str::to_string))
}

/// The provider's message from an error body (`{"error":…}`, or a one-element array of it), else a
/// short prefix of the body.
fn provider_message(body: &[u8]) -> (String, Option<String>) {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let err = match &v {
            Value::Array(a) => a.first().and_then(|x| x.get("error")),
            _ => v.get("error"),
        };
        if let Some(e) = err.filter(|e| e.is_object()) {
            return error_fields(e);
        }
    }
    let text = String::from_utf8_lossy(body);
    let short: String = text.trim().chars().take(200).collect();
    (if short.is_empty() { "no error details".to_string() } else { short }, None)
}

impl ResponseTranslator for Translator {
    fn on_headers(&mut self, status: u16, _content_type: Option<&str>) -> (u16, BodyMode) {
        if !(200..300).contains(&status) {
            self.failed = Some(status);
            return (client_status_for_provider_error(status), BodyMode::Buffer);
        }
        self.failed = None;
        match self.mode {
            Mode::Chat { stream: true, .. } => (200, BodyMode::Stream),
            _ => (200, BodyMode::Buffer),
        }
    }

    fn on_body(&mut self, body: &[u8]) -> Vec<u8> {
        if let Some(status) = self.failed {
            return self.error_body(status, body);
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return self.own_error("the provider's response is not JSON").into_bytes();
        };
        let out = match self.mode {
            Mode::Chat { stream: false, .. } => self.completion(&v),
            Mode::Embeddings { base64 } => self.embeddings(&v, base64),
            Mode::Chat { stream: true, .. } => {
                return self.own_error("a streamed response arrived as one body").into_bytes();
            }
        };
        out.to_string().into_bytes()
    }

    fn on_stream(&mut self, bytes: &[u8], end: bool, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        for e in self.decoder.events(bytes, end) {
            if self.done {
                return;
            }
            self.on_event(&e.data, out);
        }
        if end && !self.done {
            self.close(out);
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn content_type(&self) -> &'static str {
        match self.mode {
            Mode::Chat { stream: true, .. } if self.failed.is_none() => "text/event-stream",
            _ => "application/json",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::path::{Path, PathBuf};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gemini");
    const NOW: u64 = 1_700_000_000;

    fn provider(kind: ProviderKind) -> Provider {
        Provider {
            name: "gemini".into(),
            kind,
            cluster: "gemini".into(),
            credential: Some(Secret::for_tests("gk-secret")),
        }
    }

    fn gemini() -> Provider {
        provider(ProviderKind::Gemini { api_version: "v1beta".into() })
    }

    fn vertex() -> Provider {
        provider(ProviderKind::Vertex { project: "my-proj".into(), location: "us-central1".into() })
    }

    fn attempt<'a>(p: &'a Provider, op: Operation, model: &'a str) -> Attempt<'a> {
        Attempt { op, provider: p, model, alias: "alias", now_unix: NOW, usage_chunk: false, chat: None }
    }

    fn read(dir: &Path, name: &str) -> Option<Vec<u8>> {
        std::fs::read(dir.join(name)).ok()
    }

    fn json_file(dir: &Path, name: &str) -> Value {
        let bytes = read(dir, name).unwrap_or_else(|| panic!("{}: missing {name}", dir.display()));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
    }

    /// Drops `created` (time-dependent) and checks a fallback id's shape before dropping it too.
    fn normalise(mut v: Value) -> Value {
        if let Some(o) = v.as_object_mut() {
            o.remove("created");
            if let Some(Value::String(id)) = o.get("id") {
                if id.starts_with("chatcmpl-") && id.len() == "chatcmpl-".len() + 24 || id == "chatcmpl-FALLBACK" {
                    o.insert("id".into(), "chatcmpl-FALLBACK".into());
                }
            }
        }
        v
    }

    fn sse_values(bytes: &[u8]) -> Vec<Value> {
        sse::decode_all(bytes)
            .into_iter()
            .map(|e| match serde_json::from_str::<Value>(&e.data) {
                Ok(v) => normalise(v),
                Err(_) => Value::String(e.data),
            })
            .collect()
    }

    fn case_dirs() -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> =
            std::fs::read_dir(FIXTURES).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        dirs
    }

    fn prepare_case(dir: &Path) -> (Provider, Operation, String, Vec<u8>) {
        let opts = read(dir, "attempt.json").map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap_or(json!({}));
        let p = match opts.get("kind").and_then(Value::as_str) {
            Some("vertex") => vertex(),
            _ => provider(ProviderKind::Gemini {
                api_version: opts.get("api_version").and_then(Value::as_str).unwrap_or("v1beta").into(),
            }),
        };
        let op = match opts.get("op").and_then(Value::as_str) {
            Some("embeddings") => Operation::Embeddings,
            _ => Operation::ChatCompletions,
        };
        let model = opts.get("model").and_then(Value::as_str).unwrap_or("gemini-2.5-flash").to_string();
        (p, op, model, read(dir, "client_request.json").unwrap())
    }

    fn run(t: &mut Box<dyn ResponseTranslator>, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            t.on_stream(piece, i + 1 == pieces.len(), &mut out);
        }
        out
    }

    #[test]
    fn fixtures() {
        let dirs = case_dirs();
        assert!(dirs.len() >= 12, "too few fixture cases");
        let mut saw_crlf = false;
        for dir in dirs {
            let name = dir.display().to_string();
            let (p, op, model, body) = prepare_case(&dir);
            let a = attempt(&p, op, &model);
            let out = prepare(&a, &body).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let want_path = String::from_utf8(read(&dir, "expected_path.txt").unwrap()).unwrap();
            assert_eq!(out.path, want_path.trim(), "{name}: path");
            let want_auth = match p.kind {
                ProviderKind::Vertex { .. } => ("authorization", "Bearer gk-secret".to_string()),
                _ => ("x-goog-api-key", "gk-secret".to_string()),
            };
            assert_eq!(out.headers, vec![want_auth], "{name}: headers");
            let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
            assert_eq!(sent, json_file(&dir, "provider_request.json"), "{name}: provider request");

            if read(&dir, "provider_response.json").is_some() {
                let status: u16 = read(&dir, "provider_status.txt")
                    .map(|b| String::from_utf8(b).unwrap().trim().parse().unwrap())
                    .unwrap_or(200);
                let mut t = out.response.unwrap();
                let (client_status, mode) = t.on_headers(status, Some("application/json"));
                assert_eq!(client_status, client_status_for_provider_error(status), "{name}");
                assert_eq!(mode, BodyMode::Buffer, "{name}");
                assert_eq!(t.content_type(), "application/json", "{name}");
                let got: Value = serde_json::from_slice(&t.on_body(&read(&dir, "provider_response.json").unwrap()))
                    .unwrap_or_else(|e| panic!("{name}: client body is not JSON: {e}"));
                assert_eq!(normalise(got), normalise(json_file(&dir, "client_response.json")), "{name}: response");
            } else {
                let stream = read(&dir, "provider_stream.txt")
                    .or_else(|| read(&dir, "provider_stream.bin"))
                    .unwrap_or_else(|| panic!("{name}: no provider response or stream"));
                saw_crlf |= stream.windows(4).any(|w| w == b"\r\n\r\n");
                let want = sse_values(&read(&dir, "client_stream.txt").unwrap());
                let fresh = || prepare(&a, &body).unwrap().response.unwrap();
                let mut t = fresh();
                assert_eq!(t.on_headers(200, Some("text/event-stream")), (200, BodyMode::Stream), "{name}");
                assert_eq!(t.content_type(), "text/event-stream", "{name}");
                let whole = run(&mut t, &[&stream]);
                assert_eq!(sse_values(&whole), want, "{name}: whole stream");
                let usage = t.usage();
                for cut in 0..=stream.len() {
                    let mut t = fresh();
                    t.on_headers(200, Some("text/event-stream"));
                    let got = run(&mut t, &[&stream[..cut], &stream[cut..]]);
                    assert_eq!(got, whole, "{name}: split at {cut}");
                    assert_eq!(t.usage(), usage, "{name}: usage, split at {cut}");
                }
                let mut t = fresh();
                t.on_headers(200, Some("text/event-stream"));
                let bytes: Vec<&[u8]> = stream.chunks(1).collect();
                assert_eq!(run(&mut t, &bytes), whole, "{name}: byte by byte");
            }
        }
        assert!(saw_crlf, "stream fixtures must keep Gemini's CRLF framing");
    }

    fn chat(p: &Provider, body: &Value) -> Result<Outgoing, ApiError> {
        prepare(&attempt(p, Operation::ChatCompletions, "gemini-2.5-flash"), body.to_string().as_bytes())
    }

    fn sent(out: Outgoing) -> Value {
        serde_json::from_slice(&out.body.unwrap()).unwrap()
    }

    #[test]
    fn rejects_what_gemini_cannot_take() {
        let user = |content: Value| json!({"model": "m", "messages": [{"role": "user", "content": content}]});
        let table: Vec<(Provider, Operation, Value, &str)> = vec![
            (
                gemini(),
                Operation::ChatCompletions,
                user(json!([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])),
                "messages[0].content[0].image_url.url",
            ),
            (
                vertex(),
                Operation::ChatCompletions,
                user(
                    json!([{"type": "image_url", "image_url": {"url": "https://generativelanguage.googleapis.com/v1beta/files/x"}}]),
                ),
                "messages[0].content[0].image_url.url",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                user(
                    json!([{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]),
                ),
                "messages[0].content[1].image_url.url",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                user(json!([{"type": "file", "file": {"file_id": "file-123"}}])),
                "messages[0].content[0].file.file_data",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                user(json!([{"type": "video", "video": {}}])),
                "messages[0].content[0].type",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}),
                "n",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                json!({"model": "m", "logprobs": true, "messages": [{"role": "user", "content": "x"}]}),
                "logprobs",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                json!({"model": "m", "stop": [1], "messages": [{"role": "user", "content": "x"}]}),
                "stop",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                json!({"model": "m", "tool_choice": "sometimes", "messages": [{"role": "user", "content": "x"}]}),
                "tool_choice",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                json!({"model": "m", "tools": [{"type": "web_search"}], "messages": [{"role": "user", "content": "x"}]}),
                "tools[0].type",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                json!({"model": "m", "response_format": {"type": "xml"}, "messages": [{"role": "user", "content": "x"}]}),
                "response_format.type",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "1"}]}),
                "messages[1].tool_call_id",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                gemini(),
                Operation::ChatCompletions,
                json!({"model": "m", "messages": [{"role": "system", "content": "only a system prompt"}]}),
                "messages",
            ),
            (vertex(), Operation::Embeddings, json!({"model": "e", "input": "x"}), "model"),
            (gemini(), Operation::Embeddings, json!({"model": "e", "input": [[1, 2, 3]]}), "input"),
            (gemini(), Operation::Embeddings, json!({"model": "e", "input": []}), "input"),
            (
                gemini(),
                Operation::Embeddings,
                json!({"model": "e", "input": "x", "encoding_format": "int8"}),
                "encoding_format",
            ),
        ];
        for (p, op, body, param) in table {
            let err = match prepare(&attempt(&p, op, "m"), body.to_string().as_bytes()) {
                Ok(_) => panic!("{body} was accepted"),
                Err(e) => e,
            };
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
        }
        let e =
            prepare(&attempt(&vertex(), Operation::Embeddings, "m"), br#"{"model":"e","input":"x"}"#).err().unwrap();
        assert_eq!(e.message, "provider kind vertex does not serve embeddings");
        let e = chat(&gemini(), &user(json!([{"type": "image_url", "image_url": {"url": "http://x/a.png"}}])))
            .err()
            .unwrap();
        assert!(e.message.contains("data: URL"), "{}", e.message);
    }

    #[test]
    fn model_segment_is_percent_encoded() {
        let p = gemini();
        let out = prepare(
            &attempt(&p, Operation::ChatCompletions, "tuned/ä b:c~x"),
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(out.path, "/v1beta/models/tuned%2F%C3%A4%20b%3Ac~x:generateContent");
        let out = prepare(
            &attempt(&p, Operation::ChatCompletions, "models/gemini-2.0-flash"),
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(out.path, "/v1beta/models/gemini-2.0-flash:generateContent");
        let v = vertex();
        let out = prepare(
            &attempt(&v, Operation::ChatCompletions, "gemini-2.5-pro"),
            br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(
            out.path,
            "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn other_parts_and_legacy_function_messages() {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
                {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "b.PDF"}},
                {"type": "image_url", "image_url": "data:image/jpeg;base64,/9j/"},
                {"type": "image_url", "image_url": {"url": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
                {"type": "text", "text": ""}
            ]},
            {"role": "assistant", "content": "", "function_call": {"name": "lookup", "arguments": "{\"q\":1}"}},
            {"role": "function", "name": "lookup", "content": "not json"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]}
        ]});
        let v = sent(chat(&gemini(), &body).unwrap());
        assert_eq!(
            v["contents"],
            json!([
                {"role": "user", "parts": [
                    {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                    {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                    {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}}
                ]},
                {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": 1}}, "thoughtSignature": SKIP_SIGNATURE}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"content": "not json"}}}]},
                {"role": "model", "parts": [{"text": "I can't."}]}
            ])
        );
    }

    fn translator(stream: bool, include_usage: bool) -> Box<dyn ResponseTranslator> {
        let p = gemini();
        let body = json!({"model": "m", "stream": stream, "stream_options": {"include_usage": include_usage},
            "messages": [{"role": "user", "content": "x"}]});
        chat(&p, &body).unwrap().response.unwrap()
    }

    #[test]
    fn usage_is_reported_without_being_asked() {
        let mut t = translator(true, false);
        t.on_headers(200, Some("text/event-stream"));
        let mut out = Vec::new();
        t.on_stream(
            b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":7,\"candidatesTokenCount\":3,\"thoughtsTokenCount\":2,\"cachedContentTokenCount\":4}}\r\n\r\n",
            true,
            &mut out,
        );
        assert_eq!(t.usage(), Some(Usage { prompt_tokens: 7, completion_tokens: 5, cached_tokens: 4 }));
        let events = sse_values(&out);
        assert!(events.iter().all(|e| e.get("usage").is_none()), "{events:?}");
        assert_eq!(events.last(), Some(&Value::String("[DONE]".into())));
        assert!(events.iter().any(|e| e["choices"][0]["finish_reason"] == "stop"));
    }

    #[test]
    fn auth_errors_become_gateway_errors() {
        let mut t = translator(true, true);
        assert_eq!(t.on_headers(403, Some("application/json")), (502, BodyMode::Buffer));
        assert_eq!(t.content_type(), "application/json");
        let body = br#"{"error":{"code":403,"message":"API key not valid. Please pass a valid API key.","status":"PERMISSION_DENIED"}}"#;
        let v: Value = serde_json::from_slice(&t.on_body(body)).unwrap();
        assert_eq!(v["error"]["code"], "provider_auth_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("API key not valid"));
        let mut t = translator(false, false);
        assert_eq!(t.on_headers(500, None), (502, BodyMode::Buffer));
        let v: Value = serde_json::from_slice(&t.on_body(b"")).unwrap();
        assert_eq!(v["error"]["message"], "gemini (500): no error details");
    }

    #[test]
    fn garbage_streams_end_well_formed() {
        let inputs: Vec<Vec<u8>> = vec![
            b"data: not json\r\n\r\ndata: {\"candidates\":[]}\r\n\r\n".to_vec(),
            vec![0xff, 0xfe, b'\n', b'\n', 0x00],
            b"event: x\ndata: [1,2]\n\n".to_vec(),
            b"data: {\"error\":\"flat\"}\n\n".to_vec(),
            b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":null}}]},\"finishReason\":\"MALFORMED_FUNCTION_CALL\"}]}\n\n".to_vec(),
            Vec::new(),
        ];
        for input in inputs {
            let mut t = translator(true, true);
            t.on_headers(200, Some("text/event-stream"));
            let mut out = Vec::new();
            t.on_stream(&input, false, &mut out);
            t.on_stream(b"", true, &mut out);
            t.on_stream(b"data: {}\n\n", true, &mut out);
            let events = sse_values(&out);
            assert_eq!(events.last(), Some(&Value::String("[DONE]".into())), "{input:?}");
            assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1, "{input:?}");
            let finished =
                events.iter().any(|e| e.get("error").is_some() || !e["choices"][0]["finish_reason"].is_null());
            assert!(finished, "{input:?}: {events:?}");
        }
    }

    #[test]
    fn non_stream_without_candidates_or_usage() {
        let mut t = translator(false, false);
        t.on_headers(200, Some("application/json"));
        let v: Value = serde_json::from_slice(
            &t.on_body(br#"{"candidates":[{"content":{"parts":[{"text":"thinking","thought":true},{"text":"ok"}]}}]}"#),
        )
        .unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "ok");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert!(v.get("usage").is_none());
        assert_eq!(t.usage(), None);
        let v: Value = serde_json::from_slice(&t.on_body(b"<html>")).unwrap();
        assert_eq!(v["error"]["type"], "server_error");
    }
}
