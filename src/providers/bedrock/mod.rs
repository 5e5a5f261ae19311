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
//!
//! Layout: this file has the entry point ([`prepare`], which signs) and the response translator's
//! state; `request.rs` translates OpenAI requests into Converse requests, `response.rs` answers and
//! errors, `stream.rs` event streams.

mod request;
mod response;
mod settings;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use settings::settings;

use super::toolkit::Prologue;
use super::{Attempt, BodyMode, Outgoing, ResponseTranslator, Usage};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::codec::eventstream::{self, DecodeError};
use crate::codec::sse;
use crate::codec::{percent, sigv4};
use crate::config::{Provider, ProviderKind};
use serde_json::{Map, Value};

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
        Operation::ListModels | Operation::RetrieveModel | Operation::Messages | Operation::Responses => {
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
    let payload = serde_json::to_vec(&request::converse_request(obj)?).map_err(|e| ApiError::gateway(e.to_string()))?;

    let path = format!(
        "/model/{}/{}",
        percent::encode(a.model.as_bytes()),
        if stream { "converse-stream" } else { "converse" }
    );
    // The signed host is the regional endpoint, set as the attempt's `:authority` too: the host Envoy's
    // upstream filters see is still the client's (`auto_host_rewrite` applies later), so it cannot be used.
    let host = host(region);
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

/// The regional endpoint's host name, which every request is signed for (and carries as its host).
pub fn host(region: &str) -> String {
    format!("bedrock-runtime.{region}.amazonaws.com")
}

// ---------------------------------------------------------------- response

struct Translator {
    provider: Provider,
    model: String,
    id: String,
    created: u64,
    include_usage: bool,
    prologue: Prologue,
    usage: Option<Usage>,
    decoder: eventstream::Decoder,
    started: bool,
    /// Open tool blocks: `contentBlockIndex` → OpenAI tool call index, at most `MAX_OPEN_TOOLS` (a block's
    /// deltas follow its start; the oldest open one is dropped past that, so a hostile stream of many
    /// blocks cannot make each argument piece search a long list).
    tool_blocks: Vec<(u64, usize)>,
    /// The next OpenAI tool call index.
    next_tool: usize,
    finished: bool,
    closed: bool,
}

/// Tool blocks open at once in a translated stream (see `Translator::tool_blocks`).
pub(crate) const MAX_OPEN_TOOLS: usize = 64;

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
            include_usage,
            prologue: Prologue::new(stream),
            usage: None,
            decoder: eventstream::Decoder::new(),
            started: false,
            tool_blocks: Vec::new(),
            next_tool: 0,
            finished: false,
            closed: false,
        }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let c = super::chunk_json(&self.id, self.created, &self.model, delta, finish, self.include_usage);
        sse::write_event(out, None, &c);
    }
}

impl ResponseTranslator for Translator {
    fn on_headers(&mut self, status: u16, _content_type: Option<&str>) -> (u16, BodyMode) {
        self.prologue.on_headers(status)
    }

    fn on_body(&mut self, body: &[u8]) -> Vec<u8> {
        match self.prologue.error_body(&self.provider.name, body, response::error_parts) {
            Some(error) => error,
            None => self.completion(body),
        }
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
        self.prologue.content_type()
    }

    fn body_status(&self) -> Option<u16> {
        self.prologue.body_status()
    }
}
