//! What the translators of the non-OpenAI kinds (Anthropic, Gemini, Bedrock) share: the 2xx/error
//! prologue of every response, the error for an answer that cannot be read, ids of our own for answers
//! that carry none, and the last events of a translated stream.

use super::{client_status_for_provider_error, provider_error_body, BodyMode};
use crate::api::error::ApiError;
use crate::codec::sse;
use serde_json::{json, Value};

/// A 400 for a request field the provider cannot take, naming the field.
pub(crate) fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid_request(message, Some(param))
}

/// The upstream status as a translator's `on_headers` saw it, and what follows from it. Until the status
/// is known the answer counts as a success.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prologue {
    status: u16,
    /// The client asked for a stream: a success is translated chunk by chunk.
    stream: bool,
    /// The 2xx body could not be read ([`Prologue::unreadable`]): the client gets a 502.
    unreadable: bool,
}

impl Prologue {
    pub(crate) fn new(stream: bool) -> Self {
        Prologue { status: 200, stream, unreadable: false }
    }

    /// The client's body for a 2xx answer that cannot be read (not JSON, compressed, or lacking what the
    /// translation needs): [`unreadable_answer`], and the client's status becomes 502
    /// ([`Prologue::body_status`]).
    pub(crate) fn unreadable(&mut self, provider: &str, why: &str) -> Vec<u8> {
        self.unreadable = true;
        unreadable_answer(provider, why)
    }

    /// `ResponseTranslator::body_status`: 502 once the body proved unreadable.
    pub(crate) fn body_status(&self) -> Option<u16> {
        self.unreadable.then_some(502)
    }

    /// `ResponseTranslator::on_headers`: a 2xx is the client's 200, streamed when the client asked for a
    /// stream; an error status becomes the client's status for it, its body buffered (to be made an
    /// OpenAI-shaped error by [`Prologue::error_body`]).
    pub(crate) fn on_headers(&mut self, status: u16) -> (u16, BodyMode) {
        self.status = status;
        if self.success() {
            (200, if self.stream { BodyMode::Stream } else { BodyMode::Buffer })
        } else {
            (client_status_for_provider_error(status), BodyMode::Buffer)
        }
    }

    /// The provider answered 2xx (or has not answered yet).
    pub(crate) fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The start of `ResponseTranslator::on_body`: for an error status, the OpenAI-shaped error with the
    /// provider's message and error type, as `parts` reads them from the status and body; `None` for a
    /// success, whose body the translator translates.
    pub(crate) fn error_body(
        &self,
        provider: &str,
        body: &[u8],
        parts: impl FnOnce(u16, &[u8]) -> (String, Option<String>),
    ) -> Option<Vec<u8>> {
        if self.success() {
            return None;
        }
        let (message, kind) = parts(self.status, body);
        Some(provider_error_body(provider, self.status, &message, kind.as_deref()).1)
    }

    /// `ResponseTranslator::content_type`: SSE for a streamed success, JSON for everything else.
    pub(crate) fn content_type(&self) -> &'static str {
        if self.stream && self.success() {
            "text/event-stream"
        } else {
            "application/json"
        }
    }
}

/// The client's body for a 2xx answer the translator cannot read (not JSON, or not the expected shape):
/// an OpenAI-shaped provider error saying why.
pub(crate) fn unreadable_answer(provider: &str, why: &str) -> Vec<u8> {
    provider_error_body(provider, 502, why, None).1
}

/// An id of our own for an answer or stream the provider sent none for, made from the attempt's clock
/// (nanoseconds since the Unix epoch): attempts made at different times get different ids, and the same
/// attempt always the same one.
pub(crate) fn fallback_id(now_ns: u64) -> String {
    const NS: u64 = 1_000_000_000;
    format!("chatcmpl-{:x}{:08x}", now_ns / NS, now_ns % NS)
}

/// The chunk that ends a stream with the usage (no choices), as OpenAI sends it.
pub(crate) fn usage_chunk_json(id: &str, created: u64, model: &str, usage: Value) -> String {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    })
    .to_string()
}

/// Ends a client stream that failed: the OpenAI-shaped error as one event, then `[DONE]`.
pub(crate) fn write_stream_error(out: &mut Vec<u8>, error_json: &str) {
    sse::write_event(out, None, error_json);
    sse::write_event(out, None, "[DONE]");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prologue_success_and_errors() {
        for (stream, mode, ct) in
            [(true, BodyMode::Stream, "text/event-stream"), (false, BodyMode::Buffer, "application/json")]
        {
            let mut p = Prologue::new(stream);
            assert_eq!(p.on_headers(201), (200, mode));
            assert_eq!(p.content_type(), ct);
            assert_eq!(p.error_body("x", b"{}", |_, _| unreachable!()), None);
            assert_eq!(p.on_headers(403), (502, BodyMode::Buffer));
            assert_eq!(p.content_type(), "application/json");
            let e = p.error_body("prov", b"body", |status, body| {
                assert_eq!((status, body), (403, &b"body"[..]));
                ("denied".to_string(), Some("auth".to_string()))
            });
            assert_eq!(e, Some(provider_error_body("prov", 403, "denied", Some("auth")).1));
        }
    }

    #[test]
    fn unreadable_answers_are_provider_errors() {
        let v: Value = serde_json::from_slice(&unreadable_answer("p", "not JSON")).unwrap();
        assert_eq!(v["error"]["message"], "p (502): not JSON");
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "provider_error");
    }

    #[test]
    fn fallback_ids_follow_the_clock() {
        let t = 1_700_000_000_123_456_789;
        assert_eq!(fallback_id(t), "chatcmpl-6553f100075bcd15");
        assert_eq!(fallback_id(t), fallback_id(t));
        assert_ne!(fallback_id(t), fallback_id(t + 1));
        assert_ne!(fallback_id(t), fallback_id(t + 1_000_000_000));
        assert_eq!(fallback_id(0), "chatcmpl-000000000");
    }

    #[test]
    fn stream_error_then_done() {
        let mut out = Vec::new();
        write_stream_error(&mut out, r#"{"error":{}}"#);
        assert_eq!(out, b"data: {\"error\":{}}\n\ndata: [DONE]\n\n");
    }
}
