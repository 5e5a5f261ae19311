//! Anthropic Messages API (`POST /v1/messages`): OpenAI chat requests become Messages requests; responses,
//! streams and errors come back in the OpenAI format.
//!
//! Request rules:
//! - `system` and `developer` messages, wherever they stand, are joined in order into the top-level
//!   `system` (a string for a single text, else text blocks).
//! - Consecutive turns of one role are merged (Anthropic wants user/assistant alternation); `tool` results
//!   become `tool_result` blocks of a user turn. Empty assistant text is left out, and an assistant message
//!   with neither text nor tool calls is dropped. A final assistant message is sent as a prefill.
//! - `max_tokens` = `max_completion_tokens`, else `max_tokens`, else the provider's `default_max_tokens`.
//! - Passed on: `temperature` and `top_p` (Anthropic's own range checks apply), `stop` → `stop_sequences`,
//!   `stream`, `tools` (with `strict`), `tool_choice` (auto / required → any / none / named → tool),
//!   `parallel_tool_calls: false` → `disable_parallel_tool_use`, `response_format` json_schema →
//!   `output_config.format` (structured outputs), `user` → `metadata.user_id` as its SHA-256 hex (Anthropic
//!   asks for an opaque id there).
//! - Dropped (no Anthropic equivalent): `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias`,
//!   `top_logprobs`, `service_tier`, `store`, `metadata`, `reasoning_effort`, `prediction`, `modalities`,
//!   image `detail`, file `filename`, message `name`, json_schema `name` / `strict`; `tool_choice` none or
//!   auto when there are no tools.
//! - Rejected with 400: `n` > 1, `logprobs: true`, `audio`, `response_format` json_object (Anthropic has no
//!   JSON mode; json_schema works), the `function` role and `function_call`, content parts other than text,
//!   image_url and PDF `file_data`, data URLs that are not base64 or not jpeg/png/gif/webp images, tool call
//!   arguments that are not a JSON object, `tool_choice` required or named without tools.
//!
//! Response rules: text blocks are concatenated; `tool_use` blocks become `tool_calls` (arguments are the
//! provider's JSON text); thinking and server-tool blocks are left out. stop_reason end_turn, stop_sequence
//! and pause_turn → stop; max_tokens and model_context_window_exceeded → length; tool_use → tool_calls;
//! refusal → content_filter. Prompt tokens = input + cache read + cache creation; cached = cache read.
//! Streams: an `error` event, or the end of the stream before `message_stop`, ends the client stream with
//! an OpenAI error event and `[DONE]`; `ping` and thinking deltas are skipped.
//!
//! Layout: this file has the entry point ([`prepare`]) and the response translator's state;
//! `request.rs` translates OpenAI requests (`simple.rs`: the fast path for plain text requests),
//! `response.rs` answers and errors, `stream.rs` streams.

mod request;
mod response;
mod settings;
mod simple;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use settings::settings;

pub(crate) use response::RawUsage;
pub(crate) use stream::Delta;

use super::toolkit::{self, Prologue};
use super::{Attempt, BodyMode, Outgoing};
use super::{ResponseTranslator, Usage};
use crate::api::error::ApiError;
use crate::api::openai::{self, Operation};
use crate::codec::sse;
use crate::config::ProviderKind;
use serde_json::{json, Value};

const PATH: &str = "/v1/messages";

pub fn prepare(a: &Attempt, body: &[u8]) -> Result<Outgoing, ApiError> {
    let ProviderKind::Anthropic { version, default_max_tokens } = &a.provider.kind else {
        return Err(ApiError::gateway(format!("provider '{}' is not of kind anthropic", a.provider.name)));
    };
    match a.op {
        Operation::ChatCompletions => {}
        Operation::Embeddings => {
            return Err(ApiError::invalid_request("provider kind anthropic does not serve embeddings", Some("model")))
        }
        _ => return Err(ApiError::gateway("this operation has no Anthropic chat translation")),
    }
    let mut headers = Vec::with_capacity(3);
    headers.extend(super::credential(a.provider));
    headers.push(("anthropic-version", version.clone()));
    headers.push(("content-type", "application/json".to_string()));
    let parsed;
    let chat = match a.chat {
        Some(c) => Some(c),
        None => {
            parsed = openai::parse_chat(body).ok();
            parsed.as_ref()
        }
    };
    if let Some(simple) = chat.and_then(|c| simple::translate_simple(c, a.model, *default_max_tokens)) {
        return Ok(Outgoing {
            path: PATH.to_string(),
            headers,
            body: Some(simple.body),
            response: Some(Box::new(Translator::new(a, simple.stream, a.usage_chunk || simple.include_usage))),
        });
    }
    let req: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
    let Some(req) = req.as_object() else {
        return Err(ApiError::invalid_request("The request body must be a JSON object.", None));
    };
    let out = request::translate_request(req, a.model, *default_max_tokens)?;
    let body = serde_json::to_vec(&out).map_err(|e| ApiError::gateway(e.to_string()))?;

    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = a.usage_chunk
        || req.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true);
    Ok(Outgoing {
        path: PATH.to_string(),
        headers,
        body: Some(body),
        response: Some(Box::new(Translator::new(a, stream, include_usage))),
    })
}

/// Response and stream translation for one attempt (the response cache reads Anthropic answers with it).
pub(crate) struct Translator {
    /// The provider's name, for error messages.
    provider: String,
    model: String,
    created: u64,
    /// The attempt's clock, for an id of our own.
    now_ns: u64,
    include_usage: bool,
    prologue: Prologue,
    usage: Option<RawUsage>,
    decoder: sse::Decoder,
    id: String,
    /// The role chunk was sent.
    started: bool,
    /// Open `tool_use` blocks: (Anthropic block index, OpenAI tool call index).
    open_tools: Vec<(u64, usize)>,
    next_tool: usize,
    stop_reason: Option<String>,
    /// `[DONE]` was written; later bytes are ignored.
    done: bool,
}

impl Translator {
    pub(crate) fn new(a: &Attempt, stream: bool, include_usage: bool) -> Self {
        Translator {
            provider: a.provider.name.clone(),
            model: a.model.to_string(),
            created: a.now_unix,
            now_ns: a.now_ns,
            include_usage,
            prologue: Prologue::new(stream),
            usage: None,
            decoder: sse::Decoder::new(),
            // Made when first needed (providers send their own id).
            id: String::new(),
            started: false,
            open_tools: Vec::new(),
            next_tool: 0,
            stop_reason: None,
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        super::chunk_json(&self.id, self.created, &self.model, delta, finish, self.include_usage)
    }

    fn emit(&self, out: &mut Vec<u8>, delta: Value) {
        sse::write_event(out, None, &self.chunk(delta, None));
    }

    /// An id of our own, for answers and streams the provider sent none for (made only then).
    fn ensure_id(&mut self) {
        if self.id.is_empty() {
            self.id = toolkit::fallback_id(self.now_ns);
        }
    }
}

impl ResponseTranslator for Translator {
    fn on_headers(&mut self, status: u16, _content_type: Option<&str>) -> (u16, BodyMode) {
        self.prologue.on_headers(status)
    }

    fn on_body(&mut self, body: &[u8]) -> Vec<u8> {
        match self.prologue.error_body(&self.provider, body, |_, body| response::error_parts(body)) {
            Some(error) => error,
            None => self.completion(body),
        }
    }

    fn on_stream(&mut self, bytes: &[u8], end: bool, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        for e in self.decoder.events(bytes, end) {
            if self.done {
                return;
            }
            self.handle(e, out);
        }
        if end && !self.done {
            let body = json!({"error": {
                "message": format!("{}: the stream ended before message_stop", self.provider),
                "type": "server_error",
                "param": null,
                "code": "provider_stream_incomplete",
            }});
            self.fail(out, &body.to_string());
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage.map(|u| u.usage())
    }

    fn content_type(&self) -> &'static str {
        self.prologue.content_type()
    }

    fn body_status(&self) -> Option<u16> {
        self.prologue.body_status()
    }
}
