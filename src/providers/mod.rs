//! Provider translators, one file per provider kind, or one folder for the kinds with a format of their
//! own (`anthropic/`, `gemini/`, `bedrock/`: entry point and translator state in `mod.rs`, then
//! `request.rs`, `response.rs`, `settings.rs`, `stream.rs` and `tests.rs`). Each kind's module also reads
//! and checks that kind's configuration settings (`settings`); `kind` holds the `ProviderKind` enum and
//! what differs between kinds. The pivot format is OpenAI Chat Completions: every translator turns an
//! OpenAI-format request into its provider's request (path, headers, body) and the provider's response,
//! error or stream back into the OpenAI format. `toolkit` holds what those translators share; `fixtures`
//! (tests only) runs the `tests/fixtures/<provider>/<case>/` cases.

pub mod anthropic;
pub mod azure_openai;
pub mod bedrock;
pub mod gemini;
pub mod kind;
pub mod mock;
pub mod openai;
pub mod openai_compatible;
pub(crate) mod schema;
pub(crate) mod toolkit;

#[cfg(test)]
pub(crate) mod fixtures;

/// Most inputs in one embeddings request that the gateway itself expands (the mock's answer, Gemini's
/// `batchEmbedContents` request): OpenAI's own limit. Each input costs a fixed overhead in the expanded
/// form, so an array of empty strings would otherwise grow many times its size.
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::config::{Provider, ProviderKind, WireFormat};

/// One upstream attempt, as the upstream role knows it when the request body is complete.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub op: Operation,
    pub provider: &'a Provider,
    /// The provider's model name (Azure: deployment; Bedrock: model id or inference profile).
    pub model: &'a str,
    /// The public model name the client asked for.
    pub alias: &'a str,
    /// Seconds since the Unix epoch (SigV4 dates, `created` fields).
    pub now_unix: u64,
    /// Nanoseconds since the Unix epoch when the attempt is made (the upstream role knows only the
    /// second: `now_unix` × 10⁹ there). Ids of our own, for answers the provider sent none for, are made
    /// from it.
    pub now_ns: u64,
    /// Streams end with the usage chunk whatever the client asked: the gateway reads usage from the
    /// stream (limits, accounting) and the route-level filter drops the chunk for clients that did not
    /// ask for it.
    pub usage_chunk: bool,
    /// The client's chat request as the route role parsed it, when this attempt is prepared there (one
    /// parse per request); translators parse the body themselves when it is `None`.
    pub chat: Option<&'a crate::api::openai::ChatRequest<'a>>,
}

/// Token counts as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the provider's cache (included in `prompt_tokens`).
    pub cached_tokens: u64,
}

/// How the upstream role handles a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Translate chunk by chunk as bytes arrive (SSE or binary event streams).
    Stream,
    /// Buffer the whole body, then translate it (JSON responses and all errors).
    Buffer,
}

/// Translates one attempt's response back to the OpenAI format.
pub trait ResponseTranslator {
    /// The upstream status and content type are known. Returns the status the client gets and how the
    /// body is to be handled.
    fn on_headers(&mut self, status: u16, content_type: Option<&str>) -> (u16, BodyMode);
    /// `BodyMode::Buffer`: the whole upstream body in, the client's body out (an OpenAI response, or an
    /// OpenAI-shaped error for error statuses, keeping the provider's message).
    fn on_body(&mut self, body: &[u8]) -> Vec<u8>;
    /// `BodyMode::Stream`: upstream bytes as they arrive, split anywhere; appends OpenAI SSE bytes to
    /// `out`. `end` is true on the last call, which must close the stream well-formed (ending with a
    /// usage chunk when asked for and `data: [DONE]`), or with an error event if the upstream failed.
    fn on_stream(&mut self, bytes: &[u8], end: bool, out: &mut Vec<u8>);
    /// Usage seen so far.
    fn usage(&self) -> Option<Usage>;
    /// The content type of what this translator produces for the client.
    fn content_type(&self) -> &'static str;
    /// After [`ResponseTranslator::on_body`]: the status the client gets when the body changed it (a 2xx
    /// the translator could not read, or that lacks what the translation needs, is a 502). `None`: the
    /// status `on_headers` returned stands.
    fn body_status(&self) -> Option<u16> {
        None
    }
}

/// The request to send for one attempt.
pub struct Outgoing {
    pub path: String,
    /// Headers to set (credentials, versions, signatures); the caller's credentials are already removed.
    pub headers: Vec<(&'static str, String)>,
    /// The new body; `None` sends the client's body unchanged.
    pub body: Option<Vec<u8>>,
    /// `None`: the response passes through untouched.
    pub response: Option<Box<dyn ResponseTranslator>>,
}

/// Where and how one attempt reaches its provider (OpenAI-family kinds, decided at header time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCall {
    pub path: String,
    /// The credential header to set, if the provider takes one.
    pub auth: Option<(&'static str, String)>,
}

/// Prepares an attempt from the OpenAI-format request body.
pub fn prepare(a: &Attempt, body: &[u8]) -> Result<Outgoing, ApiError> {
    match a.op {
        Operation::Messages => return crate::api::anthropic::upstream::prepare(a, body),
        Operation::Responses => return crate::api::responses::upstream::prepare(a, body),
        _ => {}
    }
    match a.provider.kind.wire_format() {
        WireFormat::OpenAi => {
            let call = plan(a.provider, a.op, a.model)?;
            Ok(Outgoing {
                path: call.path,
                headers: call.auth.into_iter().collect(),
                body: Some(openai::rewrite(body, a.model, a.usage_chunk && a.op == Operation::ChatCompletions)?),
                response: None,
            })
        }
        WireFormat::Anthropic => anthropic::prepare(a, body),
        WireFormat::Gemini => gemini::prepare(a, body),
        WireFormat::Bedrock => bedrock::prepare(a, body),
        WireFormat::Local => Err(mock_has_no_upstream(a.provider)),
    }
}

/// Path and credential of the OpenAI-family kinds.
pub fn plan(provider: &Provider, op: Operation, model: &str) -> Result<UpstreamCall, ApiError> {
    match &provider.kind {
        ProviderKind::OpenAi => openai::plan(provider, op),
        ProviderKind::AzureOpenAi { api_version } => azure_openai::plan(provider, api_version, op, model),
        ProviderKind::OpenAiCompatible { base_path, .. } => openai_compatible::plan(provider, base_path, op),
        ProviderKind::Mock
        | ProviderKind::Anthropic { .. }
        | ProviderKind::Gemini { .. }
        | ProviderKind::Vertex { .. }
        | ProviderKind::Bedrock { .. } => {
            Err(ApiError::gateway(format!("provider '{}' is not of an OpenAI-format kind", provider.name)))
        }
    }
}

/// A provider's credential header (all kinds but Bedrock, which signs instead, and the mock): the kind
/// names the header (`ProviderKind::credential_header`); `authorization` carries the key as a bearer
/// token, every other header as it is. Every `prepare` and `plan` sets it from here, and so does the
/// upstream role for a body the route-level filter prepared without it (the route-level filter never
/// sets credentials: Envoy's router would log them).
pub fn credential(p: &Provider) -> Option<(&'static str, String)> {
    let header = p.kind.credential_header()?;
    let key = p.credential.as_ref()?.expose();
    let value = if header == "authorization" { format!("Bearer {key}") } else { key.to_string() };
    Some((header, value))
}

fn mock_has_no_upstream(p: &Provider) -> ApiError {
    ApiError::gateway(format!(
        "provider '{}' is a mock; it answers in the route-level filter and has no upstream",
        p.name
    ))
}

/// The last path segment of an operation on the OpenAI-style APIs.
pub(crate) fn openai_suffix(op: Operation) -> Result<&'static str, ApiError> {
    match op {
        Operation::ChatCompletions => Ok("/chat/completions"),
        Operation::Embeddings => Ok("/embeddings"),
        Operation::Responses => Ok("/responses"),
        Operation::ListModels | Operation::RetrieveModel | Operation::Messages => {
            Err(ApiError::gateway("this operation has no OpenAI-format upstream path"))
        }
    }
}

/// The OpenAI `usage` object of translated responses and usage chunks.
pub(crate) fn usage_json(u: &Usage) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// [`usage_json`] written straight into `out` (same fields, same order).
pub(crate) fn write_usage(out: &mut Vec<u8>, u: &Usage) {
    use std::io::Write;
    let _ = write!(
        out,
        r#"{{"completion_tokens":{},"prompt_tokens":{},"prompt_tokens_details":{{"cached_tokens":{}}},"total_tokens":{}}}"#,
        u.completion_tokens,
        u.prompt_tokens,
        u.cached_tokens,
        u.prompt_tokens.saturating_add(u.completion_tokens)
    );
}

/// One OpenAI `chat.completion.chunk` (choice 0), as translated streams write them. With `usage_null`
/// (the stream will end with a usage chunk) it carries `"usage": null`, as OpenAI's do.
pub(crate) fn chunk_json(
    id: &str,
    created: u64,
    model: &str,
    delta: serde_json::Value,
    finish: Option<&str>,
    usage_null: bool,
) -> String {
    let mut c = serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    if usage_null {
        if let Some(o) = c.as_object_mut() {
            o.insert("usage".into(), serde_json::Value::Null);
        }
    }
    c.to_string()
}

/// The status a client gets for a provider's error status. Provider-side credential failures are the
/// gateway's problem (502), not the caller's; overload and server errors stay retriable (5xx).
pub fn client_status_for_provider_error(status: u16) -> u16 {
    match status {
        400 | 404 | 409 | 413 | 415 | 422 | 429 => status,
        401 | 403 => 502,
        408 | 504 => 504,
        529 | 503 => 503,
        s if s >= 500 => 502,
        s if s >= 400 => 400,
        s => s,
    }
}

/// The message for a provider that refused the gateway's credential (401/403) when the provider's own
/// message is not passed on (OpenAI-format providers quote part of the key they were sent).
pub const REFUSED_CREDENTIAL: &str = "the provider refused the gateway's credential for it (the caller's key is fine)";

/// An OpenAI-shaped error body for a provider's error, keeping the provider's message.
pub fn provider_error_body(
    provider: &str,
    provider_status: u16,
    message: &str,
    provider_type: Option<&str>,
) -> (u16, Vec<u8>) {
    let status = client_status_for_provider_error(provider_status);
    let (kind, code) = match status {
        429 => ("rate_limit_error", Some("rate_limit_exceeded")),
        400 | 404 | 409 | 413 | 415 | 422 => ("invalid_request_error", provider_type),
        503 => ("server_error", Some("provider_overloaded")),
        504 => ("server_error", Some("upstream_timeout")),
        502 if provider_status == 401 || provider_status == 403 => ("upstream_error", Some("provider_auth_error")),
        _ => ("server_error", Some("provider_error")),
    };
    let text = format!("{provider} ({provider_status}): {message}");
    let body = serde_json::json!({"error": {"message": text, "type": kind, "param": null, "code": code}});
    (status, body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_written_as_its_json() {
        let u = super::Usage { prompt_tokens: 7, completion_tokens: 5, cached_tokens: 2 };
        let mut out = Vec::new();
        super::write_usage(&mut out, &u);
        assert_eq!(out, serde_json::to_vec(&super::usage_json(&u)).unwrap());
    }
}
