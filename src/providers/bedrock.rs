//! Amazon Bedrock through the Converse API: `POST /model/{modelId}/converse` and, for `stream: true`,
//! `/model/{modelId}/converse-stream` (answered in the AWS binary event stream). Requests are SigV4-signed
//! here (service `bedrock`, host = `bedrock-runtime.<region>.amazonaws.com`, also set as `:authority`) with the provider's credentials. Shapes follow
//! botocore's `bedrock-runtime` service model.
//!
//! Request rules (OpenAI → Converse):
//! - `system` and `developer` messages, wherever they appear, become `system` text blocks, in order.
//! - Consecutive turns of the same role are merged into one; `tool` results go in a user turn as
//!   `toolResult` blocks (text content); messages left with no content are omitted; empty text is dropped.
//! - Images: `data:` URLs of png, jpeg, gif or webp become inline base64 `image` blocks. http(s) URLs and
//!   other image types are rejected (400, param naming the part): Converse takes image bytes only.
//! - `max_completion_tokens` (else `max_tokens`), `temperature`, `top_p`, `stop` → `inferenceConfig`.
//! - `tool_choice`: `auto` → `{auto}`, `required` → `{any}`, a named function → `{tool}`, absent → no
//!   `toolChoice` (the model's default, auto). `none` → `toolConfig` is omitted so no tool can be called,
//!   except when the history holds tool calls or results (Converse then requires `toolConfig`): the tools
//!   are sent without a `toolChoice`, as Converse cannot forbid calling them.
//! - `response_format`: `json_schema` → `outputConfig.textFormat` (structured output; models without it
//!   answer a 400 of their own); `json_object` is rejected (400): Converse has no schema-less JSON mode.
//! - Rejected (400): `n` > 1, `logprobs: true`, `function` role messages and legacy `function_call`, tool
//!   types other than `function`, content parts other than text and image_url.
//! - Dropped: `seed`, `presence_penalty`, `frequency_penalty`, `logit_bias`, `top_logprobs`, `user`,
//!   `parallel_tool_calls`, a tool's `strict`, `service_tier`, `store`, `metadata`, `reasoning_effort` and
//!   any other field Converse has no place for.
//!
//! Response rules: the reply has no id, so it is `chatcmpl-bedrock-<now>`. Text blocks are concatenated;
//! reasoning blocks are not returned. `stopReason` end_turn / stop_sequence → stop, max_tokens /
//! model_context_window_exceeded → length, tool_use → tool_calls, guardrail_intervened / content_filtered
//! → content_filter, anything else → stop. `inputTokens` excludes cached tokens on Bedrock, so
//! prompt_tokens = inputTokens + cacheReadInputTokens + cacheWriteInputTokens, cached_tokens =
//! cacheReadInputTokens.

use super::usage_json;
use super::{
    client_status_for_provider_error, provider_error_body, Attempt, BodyMode, Outgoing, ResponseTranslator, Usage,
};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::codec::eventstream::{self, DecodeError, Message};
use crate::codec::sse;
use crate::codec::{percent, sigv4};
use crate::config::{Provider, ProviderKind};
use serde_json::{json, Map, Value};

/// Whether the config may accept this provider kind.
pub const READY: bool = true;

type Obj = Map<String, Value>;

pub fn prepare(a: &Attempt, body: &[u8]) -> Result<Outgoing, ApiError> {
    let ProviderKind::Bedrock { region, access_key_id, secret_access_key, session_token } = &a.provider.kind else {
        return Err(ApiError::gateway(format!("provider '{}' is not of kind bedrock", a.provider.name)));
    };
    match a.op {
        Operation::ChatCompletions => {}
        Operation::Embeddings => {
            return Err(ApiError::invalid_request("provider kind bedrock does not serve embeddings", Some("model")))
        }
        Operation::ListModels | Operation::RetrieveModel | Operation::Messages => {
            return Err(ApiError::gateway("this operation is not translated by the bedrock provider"))
        }
    }
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("Invalid request body: {e}."), None))?;
    let obj =
        req.as_object().ok_or_else(|| ApiError::invalid_request("The request body must be a JSON object.", None))?;
    let stream = obj.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = a.usage_chunk
        || obj.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true);
    let payload = serde_json::to_vec(&converse_request(obj)?).map_err(|e| ApiError::gateway(e.to_string()))?;

    let path = format!(
        "/model/{}/{}",
        percent::encode(a.model.as_bytes()),
        if stream { "converse-stream" } else { "converse" }
    );
    // The signed host is the regional endpoint, set as the attempt's `:authority` too: the host Envoy's
    // upstream filters see is still the client's (`auto_host_rewrite` applies later), so it cannot be used.
    let host = format!("bedrock-runtime.{region}.amazonaws.com");
    let signed_headers = [("content-type", "application/json"), ("host", host.as_str())];
    let request =
        sigv4::Request { method: "POST", path: &path, query: "", headers: &signed_headers, payload: &payload };
    let creds = sigv4::Credentials {
        access_key_id: access_key_id.expose(),
        secret_access_key: secret_access_key.expose(),
        session_token: session_token.as_ref().map(|t| t.expose()),
    };
    let mut headers = vec![
        (":authority", host.clone()),
        ("content-type", "application/json".to_string()),
        // The translator reads the body: it must not arrive compressed.
        ("accept-encoding", "identity".to_string()),
    ];
    headers.extend(sigv4::sign(&request, &creds, region, "bedrock", a.now_unix));
    let translator = Translator::new(a, stream, include_usage);
    Ok(Outgoing { path, headers, body: Some(payload), response: Some(Box::new(translator)) })
}

// ---------------------------------------------------------------- request

fn bad(msg: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid_request(msg, Some(param))
}

/// The Converse request body for an OpenAI chat request.
fn converse_request(req: &Obj) -> Result<Value, ApiError> {
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
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
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

// ---------------------------------------------------------------- response

struct Translator {
    provider: Provider,
    model: String,
    id: String,
    created: u64,
    stream: bool,
    include_usage: bool,
    status: u16,
    usage: Option<Usage>,
    decoder: eventstream::Decoder,
    started: bool,
    /// `contentBlockIndex` → OpenAI tool call index.
    tool_blocks: Vec<(u64, usize)>,
    finished: bool,
    closed: bool,
}

fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("guardrail_intervened") | Some("content_filtered") => "content_filter",
        _ => "stop",
    }
}

fn usage_of(u: &Value) -> Option<Usage> {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    if n("inputTokens").is_none() && n("outputTokens").is_none() {
        return None;
    }
    let cached = n("cacheReadInputTokens").unwrap_or(0);
    Some(Usage {
        prompt_tokens: n("inputTokens").unwrap_or(0) + cached + n("cacheWriteInputTokens").unwrap_or(0),
        completion_tokens: n("outputTokens").unwrap_or(0),
        cached_tokens: cached,
    })
}

/// Sets a field of a JSON object (no-op on anything else).
fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_string(), value);
    }
}

/// A short, char-safe prefix of a non-JSON body.
fn text_prefix(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let cut: String = text.chars().take(200).collect();
    if cut.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        cut.trim().to_string()
    }
}

impl Translator {
    fn new(a: &Attempt, stream: bool, include_usage: bool) -> Self {
        Translator {
            provider: a.provider.clone(),
            model: a.model.to_string(),
            id: format!("chatcmpl-bedrock-{}", a.now_unix),
            created: a.now_unix,
            stream,
            include_usage,
            status: 200,
            usage: None,
            decoder: eventstream::Decoder::new(),
            started: false,
            tool_blocks: Vec::new(),
            finished: false,
            closed: false,
        }
    }

    fn error_body(&self, body: &[u8]) -> Vec<u8> {
        let v: Option<Value> = serde_json::from_slice(body).ok();
        let msg = v
            .as_ref()
            .and_then(|v| v.get("message").or_else(|| v.get("Message")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| text_prefix(body));
        // The error type travels in `x-amzn-errortype`; some bodies repeat it as `__type`. The statuses
        // below are each used by one error type only (service model).
        let from_body = v
            .as_ref()
            .and_then(|v| v.get("__type"))
            .and_then(Value::as_str)
            .map(|t| t.rsplit('#').next().unwrap_or(t).split(':').next().unwrap_or(t).to_string());
        let kind = from_body.or_else(|| {
            match self.status {
                400 => Some("ValidationException"),
                404 => Some("ResourceNotFoundException"),
                _ => None,
            }
            .map(str::to_string)
        });
        provider_error_body(&self.provider.name, self.status, &msg, kind.as_deref()).1
    }

    fn completion(&mut self, body: &[u8]) -> Vec<u8> {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            let (_, b) = provider_error_body(&self.provider.name, 502, "the Converse response is not JSON", None);
            return b;
        };
        let mut text = String::new();
        let mut calls = Vec::new();
        let blocks = v.pointer("/output/message/content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for b in blocks {
            if let Some(t) = b.get("text").and_then(Value::as_str) {
                text.push_str(t);
            } else if let Some(u) = b.get("toolUse") {
                let input = u.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": u.get("toolUseId").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {
                        "name": u.get("name").and_then(Value::as_str).unwrap_or(""),
                        "arguments": input.to_string(),
                    },
                }));
            }
        }
        let mut message =
            json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
        if !calls.is_empty() {
            set(&mut message, "tool_calls", Value::Array(calls));
        }
        self.usage = v.get("usage").and_then(usage_of);
        let mut out = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": finish_reason(v.get("stopReason").and_then(Value::as_str)),
            }],
        });
        if let Some(u) = &self.usage {
            set(&mut out, "usage", usage_json(u));
        }
        out.to_string().into_bytes()
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let c = super::chunk_json(&self.id, self.created, &self.model, delta, finish, self.include_usage);
        sse::write_event(out, None, &c);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.chunk(out, json!({"role": "assistant", "content": ""}), None);
        }
    }

    /// Ends the client stream with an error event.
    fn fail(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        if self.closed {
            return;
        }
        self.closed = true;
        let (etype, code) = match kind {
            "throttlingException" => ("rate_limit_error", "rate_limit_exceeded"),
            "serviceUnavailableException" => ("server_error", "provider_overloaded"),
            "validationException" => ("invalid_request_error", "validationException"),
            _ => ("server_error", "provider_error"),
        };
        let err = json!({"error": {
            "message": format!("{} ({kind}): {message}", self.provider.name),
            "type": etype,
            "param": null,
            "code": code,
        }});
        sse::write_event(out, None, &err.to_string());
        sse::write_event(out, None, "[DONE]");
    }

    fn on_message(&mut self, m: Message, out: &mut Vec<u8>) {
        let payload: Option<Value> = serde_json::from_slice(&m.payload).ok();
        match m.message_type.as_deref() {
            Some("exception") => {
                let kind = m.exception_type.as_deref().unwrap_or("exception");
                let msg = payload.as_ref().and_then(|p| p.get("message")).and_then(Value::as_str);
                let msg = msg.map(str::to_string).unwrap_or_else(|| text_prefix(&m.payload));
                self.fail(out, kind, &msg);
                return;
            }
            Some("error") => {
                let kind = m.error_code.clone().unwrap_or_else(|| "error".to_string());
                let msg = m.error_message.clone().unwrap_or_else(|| text_prefix(&m.payload));
                self.fail(out, &kind, &msg);
                return;
            }
            _ => {}
        }
        let Some(p) = payload else {
            let what = m.event_type.unwrap_or_default();
            self.fail(out, "streamError", &format!("unreadable '{what}' event payload"));
            return;
        };
        match m.event_type.as_deref() {
            Some("messageStart") => self.start(out),
            Some("contentBlockStart") => {
                let Some(tu) = p.pointer("/start/toolUse") else { return };
                self.start(out);
                let index = self.tool_blocks.len();
                let block = p.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(u64::MAX);
                self.tool_blocks.push((block, index));
                let delta = json!({"tool_calls": [{
                    "index": index,
                    "id": tu.get("toolUseId").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {"name": tu.get("name").and_then(Value::as_str).unwrap_or(""), "arguments": ""},
                }]});
                self.chunk(out, delta, None);
            }
            Some("contentBlockDelta") => {
                let Some(d) = p.get("delta") else { return };
                if let Some(t) = d.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    self.start(out);
                    self.chunk(out, json!({"content": t}), None);
                } else if let Some(piece) =
                    d.pointer("/toolUse/input").and_then(Value::as_str).filter(|t| !t.is_empty())
                {
                    let block = p.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(u64::MAX);
                    if let Some(&(_, index)) = self.tool_blocks.iter().find(|(b, _)| *b == block) {
                        self.chunk(
                            out,
                            json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                            None,
                        );
                    }
                }
            }
            Some("messageStop") if !self.finished => {
                self.start(out);
                self.finished = true;
                let reason = finish_reason(p.get("stopReason").and_then(Value::as_str));
                self.chunk(out, json!({}), Some(reason));
            }
            Some("metadata") => {
                if let Some(u) = p.get("usage").and_then(usage_of) {
                    self.usage = Some(u);
                }
            }
            _ => {}
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        if !self.finished {
            let why = if self.decoder.has_partial() {
                "the stream was cut inside a message"
            } else {
                "the stream ended before messageStop"
            };
            self.fail(out, "streamError", why);
            return;
        }
        self.closed = true;
        if self.include_usage {
            if let Some(u) = &self.usage {
                let c = json!({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage_json(u),
                });
                sse::write_event(out, None, &c.to_string());
            }
        }
        sse::write_event(out, None, "[DONE]");
    }
}

impl ResponseTranslator for Translator {
    fn on_headers(&mut self, status: u16, _content_type: Option<&str>) -> (u16, BodyMode) {
        self.status = status;
        if !(200..300).contains(&status) {
            return (client_status_for_provider_error(status), BodyMode::Buffer);
        }
        (200, if self.stream { BodyMode::Stream } else { BodyMode::Buffer })
    }

    fn on_body(&mut self, body: &[u8]) -> Vec<u8> {
        if !(200..300).contains(&self.status) {
            return self.error_body(body);
        }
        self.completion(body)
    }

    fn on_stream(&mut self, bytes: &[u8], end: bool, out: &mut Vec<u8>) {
        if !self.closed {
            let mut items = Vec::new();
            self.decoder.push(bytes, &mut |m| items.push(m));
            for item in items {
                if self.closed {
                    break;
                }
                match item {
                    Ok(m) => self.on_message(m, out),
                    Err(e) => {
                        let msg = e.to_string();
                        let kind = match e {
                            DecodeError::PreludeCrc | DecodeError::MessageCrc => "checksumError",
                            DecodeError::Length { .. } | DecodeError::Header(_) => "framingError",
                        };
                        self.fail(out, kind, &msg);
                    }
                }
            }
        }
        if end {
            self.end(out);
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn content_type(&self) -> &'static str {
        if self.stream && (200..300).contains(&self.status) {
            "text/event-stream"
        } else {
            "application/json"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::path::{Path, PathBuf};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bedrock");
    const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
    const NOW: u64 = 1_718_897_445;
    const HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";

    fn provider(token: Option<&str>) -> Provider {
        Provider {
            name: "bedrock".into(),
            kind: ProviderKind::Bedrock {
                region: "us-east-1".into(),
                access_key_id: Secret::for_tests("AKIAIOSFODNN7EXAMPLE"),
                secret_access_key: Secret::for_tests("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                session_token: token.map(Secret::for_tests),
            },
            cluster: "bedrock".into(),
            credential: None,
        }
    }

    fn attempt(p: &Provider, op: Operation) -> Attempt<'_> {
        Attempt { op, provider: p, model: MODEL, alias: "claude", now_unix: NOW, usage_chunk: false, chat: None }
    }

    fn run(body: &str) -> Result<Outgoing, ApiError> {
        let p = provider(None);
        prepare(&attempt(&p, Operation::ChatCompletions), body.as_bytes())
    }

    fn read(dir: &Path, name: &str) -> Option<Vec<u8>> {
        std::fs::read(dir.join(name)).ok()
    }

    fn json_file(dir: &Path, name: &str) -> Value {
        serde_json::from_slice(&read(dir, name).unwrap_or_else(|| panic!("{}: missing {name}", dir.display())))
            .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
    }

    fn without_created(mut v: Value) -> Value {
        if let Some(o) = v.as_object_mut() {
            o.remove("created");
        }
        v
    }

    /// Compares SSE streams event by event: `[DONE]` literally, JSON parsed and without `created`.
    fn assert_same_stream(got: &[u8], want: &[u8], what: &str) {
        let (g, w) = (sse::decode_all(got), sse::decode_all(want));
        let gd: Vec<&str> = g.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(g.len(), w.len(), "{what}: event count\n got: {gd:#?}");
        for (i, (ge, we)) in g.iter().zip(&w).enumerate() {
            assert_eq!(ge.event, None, "{what}: event {i} is named");
            if we.data == "[DONE]" {
                assert_eq!(ge.data, "[DONE]", "{what}: event {i}");
                continue;
            }
            let gv: Value = serde_json::from_str(&ge.data).unwrap_or_else(|e| panic!("{what}: event {i}: {e}"));
            let wv: Value = serde_json::from_str(&we.data).unwrap();
            assert_eq!(without_created(gv), without_created(wv), "{what}: event {i}");
        }
    }

    fn replay(t: &mut dyn ResponseTranslator, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            t.on_stream(p, false, &mut out);
        }
        t.on_stream(&[], true, &mut out);
        out
    }

    fn fresh(dir: &Path) -> Box<dyn ResponseTranslator> {
        let body = read(dir, "client_request.json").unwrap();
        let mut t = run(std::str::from_utf8(&body).unwrap()).unwrap().response.unwrap();
        assert_eq!(t.on_headers(200, Some("application/vnd.amazon.eventstream")), (200, BodyMode::Stream));
        t
    }

    fn check_case(dir: &Path) -> &'static str {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let client = read(dir, "client_request.json").expect("client_request.json");
        let out = run(std::str::from_utf8(&client).unwrap()).unwrap_or_else(|e| panic!("{name}: {}", e.message));
        let want_path = String::from_utf8(read(dir, "expected_path.txt").expect("expected_path.txt")).unwrap();
        assert_eq!(out.path, want_path.trim(), "{name}: path");
        let sent: Value = serde_json::from_slice(out.body.as_deref().unwrap()).unwrap();
        assert_eq!(sent, json_file(dir, "provider_request.json"), "{name}: provider request");
        let mut t = out.response.unwrap();

        if let Some(stream) = read(dir, "provider_stream.bin") {
            let want = read(dir, "client_stream.txt").expect("client_stream.txt");
            assert_eq!(t.on_headers(200, Some("application/vnd.amazon.eventstream")), (200, BodyMode::Stream));
            assert_eq!(t.content_type(), "text/event-stream");
            let whole = replay(t.as_mut(), &[&stream]);
            assert_same_stream(&whole, &want, &format!("{name} whole"));
            let usage = t.usage();
            for cut in 0..=stream.len() {
                let mut t = fresh(dir);
                let got = replay(t.as_mut(), &[&stream[..cut], &stream[cut..]]);
                assert_eq!(got, whole, "{name}: split at {cut}");
                assert_eq!(t.usage(), usage, "{name}: usage, split at {cut}");
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            assert_eq!(replay(fresh(dir).as_mut(), &bytes), whole, "{name}: byte by byte");
            return "stream";
        }

        let status: u16 = read(dir, "provider_status.txt")
            .map(|s| String::from_utf8(s).unwrap().trim().parse().unwrap())
            .unwrap_or(200);
        let want_status: u16 = read(dir, "client_status.txt")
            .map(|s| String::from_utf8(s).unwrap().trim().parse().unwrap())
            .unwrap_or(200);
        assert_eq!(t.on_headers(status, Some("application/json")), (want_status, BodyMode::Buffer), "{name}");
        assert_eq!(t.content_type(), "application/json");
        let body = read(dir, "provider_response.json").expect("provider_response.json");
        let got: Value = serde_json::from_slice(&t.on_body(&body)).unwrap();
        assert_eq!(without_created(got.clone()), without_created(json_file(dir, "client_response.json")), "{name}");
        if status == 200 {
            assert_eq!(got["created"], NOW);
            let u = &got["usage"];
            assert_eq!(
                t.usage(),
                Some(Usage {
                    prompt_tokens: u["prompt_tokens"].as_u64().unwrap(),
                    completion_tokens: u["completion_tokens"].as_u64().unwrap(),
                    cached_tokens: u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap(),
                })
            );
        }
        "response"
    }

    #[test]
    fn fixtures() {
        let mut dirs: Vec<PathBuf> =
            std::fs::read_dir(FIXTURES).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        let mut streams = 0;
        for d in &dirs {
            if check_case(d) == "stream" {
                streams += 1;
            }
        }
        assert!(dirs.len() >= 12 && streams >= 3, "{} cases, {streams} streams", dirs.len());
    }

    #[test]
    fn signs_what_it_sends() {
        for token in [None, Some("session-token")] {
            let p = provider(token);
            let body = r#"{"model":"claude","messages":[{"role":"user","content":"Hello"}],"stream":true}"#;
            let out = prepare(&attempt(&p, Operation::ChatCompletions), body.as_bytes()).unwrap();
            let payload = out.body.clone().unwrap();
            let headers = [("content-type", "application/json"), ("host", HOST)];
            let req =
                sigv4::Request { method: "POST", path: &out.path, query: "", headers: &headers, payload: &payload };
            let creds = sigv4::Credentials {
                access_key_id: "AKIAIOSFODNN7EXAMPLE",
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                session_token: token,
            };
            let mut want = vec![
                (":authority", HOST.to_string()),
                ("content-type", "application/json".to_string()),
                ("accept-encoding", "identity".to_string()),
            ];
            want.extend(sigv4::sign(&req, &creds, "us-east-1", "bedrock", NOW));
            assert_eq!(out.headers, want);
            let auth = &out.headers.iter().find(|(k, _)| *k == "authorization").unwrap().1;
            assert!(auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240620/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date"
            ));
            assert_eq!(auth.contains("x-amz-security-token"), token.is_some());
            assert!(!auth.contains("wJalr"), "the secret never appears");
        }
    }

    #[test]
    fn model_ids_are_percent_encoded() {
        let p = provider(None);
        let body = br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
        for (model, path) in [
            ("meta.llama3-70b-instruct-v1:0", "/model/meta.llama3-70b-instruct-v1%3A0/converse"),
            (
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
                "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc/converse",
            ),
            ("us.amazon.nova-pro-v1:0", "/model/us.amazon.nova-pro-v1%3A0/converse"),
        ] {
            let a = Attempt { model, ..attempt(&p, Operation::ChatCompletions) };
            let out = prepare(&a, body).unwrap();
            assert_eq!(out.path, path);
        }
    }

    #[test]
    fn rejections_name_the_param() {
        let table: &[(&str, &str)] = &[
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x.test/a.png"}}]}]}"#,
                "messages[0].content[0].image_url.url",
            ),
            (
                r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/bmp;base64,Qk0="}}]}]}"#,
                "messages[1].content[1].image_url.url",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,rawbytes"}}]}]}"#,
                "messages[0].content[0].image_url.url",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#,
                "messages[0].content[0].type",
            ),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#, "n"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}"#, "logprobs"),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#,
                "response_format",
            ),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, "max_tokens"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#, "temperature"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}"#, "stop"),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search"}]}"#,
                "tools[0].type",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}"#,
                "tool_choice",
            ),
            (r#"{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}"#, "messages[0].role"),
            (r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#, "messages[0].tool_call_id"),
            (
                r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}"#,
                "messages[0].tool_calls[0].function.arguments",
            ),
        ];
        for (body, param) in table {
            let e = run(body).err().unwrap_or_else(|| panic!("accepted: {body}"));
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(*param), "{body}: {}", e.message);
        }
        let p = provider(None);
        let e = prepare(&attempt(&p, Operation::Embeddings), br#"{"model":"m","input":"x"}"#).err().unwrap();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("model")));
        assert!(e.message.contains("does not serve embeddings"));
    }

    #[test]
    fn tool_choice_none_with_tool_history_keeps_tools() {
        let body = r#"{"model":"m","tool_choice":"none",
            "tools":[{"type":"function","function":{"name":"f","description":"","parameters":null}}],
            "messages":[{"role":"user","content":"x"},
              {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":""}}]},
              {"role":"tool","tool_call_id":"c1","content":""}]}"#;
        let v: Value = serde_json::from_slice(&run(body).unwrap().body.unwrap()).unwrap();
        assert_eq!(
            v["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]})
        );
        assert_eq!(v["messages"][1]["content"][0]["toolUse"]["input"], json!({}));
        assert_eq!(v["messages"][2]["content"][0]["toolResult"]["content"], json!([{"text": ""}]));
    }

    #[test]
    fn non_json_errors_keep_a_prefix() {
        let mut t = run(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).unwrap().response.unwrap();
        assert_eq!(t.on_headers(500, Some("text/html")), (502, BodyMode::Buffer));
        let body = format!("<html>upstream exploded{}</html>", "!".repeat(5000));
        let v: Value = serde_json::from_slice(&t.on_body(body.as_bytes())).unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with("bedrock (500): <html>upstream exploded"), "{msg}");
        assert!(msg.len() < 300);
        assert_eq!(v["error"]["code"], "provider_error");
        assert_eq!(t.usage(), None);
    }

    #[test]
    fn garbage_stream_ends_well_formed() {
        let req = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#;
        let good = eventstream::encode(
            &[(":event-type", "messageStart"), (":message-type", "event")],
            br#"{"role":"assistant"}"#,
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                {
                    let mut b = good.clone();
                    b[20] ^= 1;
                    b
                },
                "checksumError",
            ),
            (vec![0xff; 64], "checksumError"),
            (good[..good.len() - 3].to_vec(), "cut inside a message"),
            (
                eventstream::encode(&[(":event-type", "messageStart"), (":message-type", "event")], b"not json"),
                "unreadable 'messageStart'",
            ),
            (
                eventstream::encode(
                    &[(":message-type", "error"), (":error-code", "InternalFailure"), (":error-message", "boom")],
                    b"",
                ),
                "bedrock (InternalFailure): boom",
            ),
        ];
        for (bytes, want) in cases {
            let mut t = run(req).unwrap().response.unwrap();
            t.on_headers(200, None);
            let mut out = Vec::new();
            t.on_stream(&good, false, &mut out);
            t.on_stream(&bytes, false, &mut out);
            t.on_stream(&[], true, &mut out);
            t.on_stream(&good, true, &mut out);
            let events = sse::decode_all(&out);
            let last = events.last().unwrap();
            assert_eq!(last.data, "[DONE]", "{want}");
            let err: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
            let msg = err["error"]["message"].as_str().unwrap();
            assert!(msg.contains(want), "{want}: {msg}");
            assert_eq!(events.iter().filter(|e| e.data == "[DONE]").count(), 1);
        }
    }

    #[test]
    fn stream_request_with_error_status_is_buffered_json() {
        let mut t =
            run(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#).unwrap().response.unwrap();
        assert_eq!(t.on_headers(429, Some("application/json")), (429, BodyMode::Buffer));
        assert_eq!(t.content_type(), "application/json");
        let v: Value = serde_json::from_slice(&t.on_body(br#"{"message":"slow down"}"#)).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "bedrock (429): slow down");
    }
}
