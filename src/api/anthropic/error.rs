//! Errors for clients of the Anthropic Messages API: the one table between HTTP statuses and Anthropic
//! error types, and Anthropic's error body (`{"type":"error","error":{"type":…,"message":…}}`).

use crate::api::error::ApiError;
use crate::http::LocalResponse;
use serde_json::{json, Value};

/// HTTP status ↔ Anthropic error type, as Anthropic's API reference documents them (the "Errors" page
/// and the SDKs' `ErrorType`): each row holds both ways.
const TABLE: &[(u16, &str)] = &[
    (400, "invalid_request_error"),
    (401, "authentication_error"),
    (402, "billing_error"),
    (403, "permission_error"),
    (404, "not_found_error"),
    (413, "request_too_large"),
    (429, "rate_limit_error"),
    (500, "api_error"),
    (504, "timeout_error"),
    (529, "overloaded_error"),
];

/// Statuses Anthropic does not document that still name a type (status → type only; the type maps back
/// to its row in [`TABLE`]): 503 Service Unavailable is the standard status for what Anthropic calls
/// 529 overloaded, and the gateway answers 503 when its limit counters are busy (retry).
const STATUS_ONLY: &[(u16, &str)] = &[(503, "overloaded_error")];

/// Any other 4xx (405, 408, 409, 415, 422, ...): Anthropic documents that it "may also use this error
/// type for other 4XX status codes". 408 is not timeout_error: that type is Anthropic's 504, a
/// timeout on the server's side, not the client's.
const OTHER_4XX: &str = "invalid_request_error";

/// Any other status (other 5xx, and anything below 400 that reaches here).
const OTHER: &str = "api_error";

/// A type not in [`TABLE`] (an unknown or future type) is a server error.
const OTHER_TYPE_STATUS: u16 = 500;

/// The Anthropic error type for an HTTP status.
pub fn type_for_status(status: u16) -> &'static str {
    let row = TABLE.iter().chain(STATUS_ONLY).find(|(s, _)| *s == status);
    match row {
        Some((_, kind)) => kind,
        None if (400..500).contains(&status) => OTHER_4XX,
        None => OTHER,
    }
}

/// The HTTP status Anthropic uses for an error type (for errors that arrive inside a stream, where the
/// status line was already 200).
pub fn status_for_type(kind: &str) -> u16 {
    TABLE.iter().find(|(_, k)| *k == kind).map_or(OTHER_TYPE_STATUS, |(s, _)| *s)
}

/// Anthropic's error body as a JSON value.
pub(super) fn error_value(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// Anthropic's error body.
pub(super) fn anthropic_error(kind: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&error_value(kind, message)).unwrap_or_default()
}

/// The gateway's own error in Anthropic's shape (`type: "error"`, `error.type` from [`type_for_status`])
/// that also keeps the OpenAI fields (`param`, `code`), so either kind of client reads it. This is
/// [`ApiError::anthropic_body`].
pub(crate) fn api_error_body(e: &ApiError) -> String {
    let mut v = error_value(type_for_status(e.status), &e.message);
    if let Some(inner) = v.get_mut("error").and_then(Value::as_object_mut) {
        inner.insert("param".into(), json!(e.param));
        inner.insert("code".into(), json!(e.code));
    }
    v.to_string()
}

/// An error answer for a client of the Anthropic Messages API: [`api_error_body`], with the error's own
/// headers (for example `allow` on a 405).
pub fn error_response(e: ApiError) -> LocalResponse {
    let mut r = LocalResponse::json(e.status, api_error_body(&e));
    r.headers.extend(e.headers);
    r
}

/// Longest piece of a non-JSON error body quoted in the message.
const ERROR_TEXT_MAX: usize = 300;

/// OpenAI error body → Anthropic error body, the type chosen by `status` and the message kept. A body
/// that is not OpenAI-shaped JSON is quoted (first 300 characters). Works for the gateway's own
/// [`ApiError`] too: `error_from_openai(e.status, e.body().as_bytes())`.
pub fn error_from_openai(status: u16, openai_error_body: &[u8]) -> Vec<u8> {
    let parsed = serde_json::from_slice::<Value>(openai_error_body).ok();
    let from_json = parsed.as_ref().and_then(|v| match v.get("error") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(e) => e.get("message").and_then(Value::as_str).map(str::to_string),
        None => v.get("message").and_then(Value::as_str).map(str::to_string),
    });
    let message = from_json.unwrap_or_else(|| {
        let text: String = String::from_utf8_lossy(openai_error_body).chars().take(ERROR_TEXT_MAX).collect();
        let text = text.trim();
        if text.is_empty() {
            format!("The upstream answered with status {status}.")
        } else {
            text.to_string()
        }
    });
    anthropic_error(type_for_status(status), &message)
}

/// The gateway's own error as an Anthropic error body (type and message only).
pub fn error_from_api(e: &ApiError) -> Vec<u8> {
    anthropic_error(type_for_status(e.status), &e.message)
}
