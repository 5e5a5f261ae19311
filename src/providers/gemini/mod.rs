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
//!   non-zero (several Gemini models refuse them). `reasoning_effort` → `thinkingConfig.thinkingBudget`
//!   (none 0, minimal/low 1024, medium 8192, high 24576: Google's own OpenAI-compatible mapping; other
//!   values → 400). Dropped: `parallel_tool_calls`, `logit_bias`, `user`, `store`, `metadata`,
//!   `service_tier` and every other unnamed field.
//! - Finish reasons: any function call → tool_calls; MAX_TOKENS → length; SAFETY, RECITATION, BLOCKLIST,
//!   PROHIBITED_CONTENT, SPII, MODEL_ARMOR and the IMAGE_* filters → content_filter; a prompt blocked by
//!   `promptFeedback.blockReason` → content_filter with empty content; everything else → stop. Thought
//!   parts are not shown; their tokens count as completion (and reasoning) tokens.
//! - Embeddings: input is a string or an array of strings (token arrays → 400); `dimensions` →
//!   `outputDimensionality`; usage is 0 when Gemini reports none.
//!
//! Layout: this file has the entry point ([`prepare`]), paths and the response translator's state;
//! `request.rs` translates OpenAI chat and embeddings requests, `response.rs` answers and errors,
//! `stream.rs` streams.

mod request;
mod response;
mod settings;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use settings::{settings, vertex_settings};

use super::toolkit::Prologue;
use super::{Attempt, BodyMode, Outgoing, ResponseTranslator, Usage};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::codec::{percent, sha256, sse};
use crate::config::{Provider, ProviderKind};
use serde_json::{json, Map, Value};

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
            let out = request::chat_request(&req, &a.provider.kind)?;
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
            let (out, base64) = request::embeddings_request(&req, a.model)?;
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

fn present<'a>(req: &'a Value, key: &str) -> Option<&'a Value> {
    req.get(key).filter(|v| !v.is_null())
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
    prologue: Prologue,
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
            prologue: Prologue::new(matches!(mode, Mode::Chat { stream: true, .. })),
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

impl ResponseTranslator for Translator {
    fn on_headers(&mut self, status: u16, _content_type: Option<&str>) -> (u16, BodyMode) {
        self.prologue.on_headers(status)
    }

    fn on_body(&mut self, body: &[u8]) -> Vec<u8> {
        if let Some(error) =
            self.prologue.error_body(&self.provider.name, body, |_, body| response::provider_message(body))
        {
            return error;
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return self.prologue.unreadable(&self.provider.name, "the provider's response is not JSON");
        };
        let out = match self.mode {
            // Neither candidates nor the prompt's feedback: nothing to translate.
            Mode::Chat { stream: false, .. } if v.get("candidates").is_none() && v.get("promptFeedback").is_none() => {
                return self.prologue.unreadable(&self.provider.name, "the response holds no candidates");
            }
            Mode::Chat { stream: false, .. } => self.completion(&v),
            Mode::Embeddings { .. } if v.get("embeddings").is_none() => {
                return self.prologue.unreadable(&self.provider.name, "the response holds no embeddings");
            }
            Mode::Embeddings { base64 } => self.embeddings(&v, base64),
            Mode::Chat { stream: true, .. } => {
                return self.prologue.unreadable(&self.provider.name, "a streamed response arrived as one body");
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
        self.prologue.content_type()
    }

    fn body_status(&self) -> Option<u16> {
        self.prologue.body_status()
    }
}
