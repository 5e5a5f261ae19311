//! Errors returned to clients, always in the OpenAI error shape:
//! `{"error":{"message":…,"type":…,"param":…,"code":…}}`.

use serde::Serialize;
use serde_json::Value;

/// An error the gateway answers with itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// OpenAI's `type` field.
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<String>,
    pub message: String,
    /// Extra response headers (for example `allow` on a 405).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// Client-supplied text quoted in an error message is cut to this many characters.
const QUOTE_MAX: usize = 120;

/// Quotes client input in a message without letting it grow the response without bound.
pub fn quote(s: &str) -> String {
    if s.chars().count() <= QUOTE_MAX {
        return format!("'{s}'");
    }
    let cut: String = s.chars().take(QUOTE_MAX).collect();
    format!("'{cut}…'")
}

/// The JSON type of a value, as error messages name it.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A 400 for a field of the wrong JSON type, naming it.
pub(crate) fn wrong_type(field: &str, want: &str, got: &Value) -> ApiError {
    ApiError::invalid_request(format!("'{field}' must be {want}, got {}.", kind(got)), Some(field))
}

/// A 400 for a missing field, naming it.
pub(crate) fn required(field: &str) -> ApiError {
    ApiError::invalid_request(format!("'{field}' is a required property."), Some(field))
}

/// A 400 for an empty `model`.
pub(crate) fn empty_model() -> ApiError {
    ApiError::invalid_request("'model' must not be empty.", Some("model"))
}

/// A 400 for an empty `messages` array.
pub(crate) fn no_messages() -> ApiError {
    ApiError::invalid_request("'messages' must hold at least one message.", Some("messages"))
}

/// A 400 for a request body that is JSON but not an object.
pub(crate) fn not_an_object(got: &Value) -> ApiError {
    ApiError::invalid_request(format!("The request body must be a JSON object, got {}.", kind(got)), None)
}

/// A 400 for `messages[index].role` not among `roles`.
pub(crate) fn invalid_role(role: &str, index: usize, roles: &[&str]) -> ApiError {
    ApiError::invalid_request(
        format!("Invalid role {} in messages[{index}]; expected one of {}.", quote(role), roles.join(", ")),
        Some(&format!("messages[{index}].role")),
    )
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, code: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError { status, kind, code, param: None, message: message.into(), headers: Vec::new() }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        let body = Body {
            error: Inner { message: &self.message, kind: self.kind, param: self.param.as_deref(), code: self.code },
        };
        serde_json::to_string(&body).unwrap_or_else(|_| {
            String::from(r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#)
        })
    }

    /// The body for clients of the Anthropic Messages API (`/v1/messages`): Anthropic's error shape
    /// (`type: "error"`, `error.type` from the status by Anthropic's table,
    /// [`crate::api::anthropic::type_for_status`]) that also keeps the OpenAI fields (`param`, `code`),
    /// so either kind of client reads it.
    pub fn anthropic_body(&self) -> String {
        crate::api::anthropic::api_error_body(self)
    }

    pub fn invalid_request(message: impl Into<String>, param: Option<&str>) -> Self {
        let e = ApiError::new(400, "invalid_request_error", None, message);
        match param {
            Some(p) => e.with_param(p),
            None => e,
        }
    }

    pub fn invalid_json(detail: &str) -> Self {
        ApiError::new(
            400,
            "invalid_request_error",
            Some("invalid_json"),
            format!("The request body is not valid JSON: {detail}."),
        )
    }

    pub fn missing_key() -> Self {
        ApiError::new(
            401,
            "invalid_request_error",
            Some("missing_api_key"),
            "You didn't provide an API key. Send your Switchyard key as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.",
        )
    }

    pub fn invalid_key() -> Self {
        ApiError::new(401, "invalid_request_error", Some("invalid_api_key"), "Incorrect API key provided.")
    }

    /// A JWT Envoy did not verify (or whose claims name no user): `reason` is Envoy's ("Jwt is expired")
    /// or the gateway's. RFC 6750's `WWW-Authenticate` says which kind of credential failed.
    pub fn invalid_token(reason: &str) -> Self {
        let mut e = ApiError::new(
            401,
            "invalid_request_error",
            Some("invalid_token"),
            format!("The token was not accepted: {reason}."),
        );
        e.headers.push(("www-authenticate", "Bearer error=\"invalid_token\"".to_string()));
        e
    }

    /// A user may not use `model`: `why` says (no team of theirs grants it, or the team they named).
    pub fn model_not_granted(model: &str, why: &str) -> Self {
        ApiError::new(
            403,
            "permission_error",
            Some("model_not_allowed"),
            format!("You are not allowed to use the model {}: {why}.", quote(model)),
        )
        .with_param("model")
    }

    /// `x-switchyard-team` names a team the user is not a member of (or no team at all).
    pub fn team_not_allowed(team: &str) -> Self {
        ApiError::new(
            403,
            "permission_error",
            Some("team_not_allowed"),
            format!("You are not a member of the team {} (x-switchyard-team).", quote(team)),
        )
    }

    pub fn model_not_allowed(model: &str) -> Self {
        ApiError::new(
            403,
            "permission_error",
            Some("model_not_allowed"),
            format!("This key is not allowed to use the model {}.", quote(model)),
        )
        .with_param("model")
    }

    pub fn model_not_found(model: &str) -> Self {
        ApiError::new(
            404,
            "invalid_request_error",
            Some("model_not_found"),
            format!("The model {} does not exist.", quote(model)),
        )
        .with_param("model")
    }

    pub fn model_unavailable(model: &str, provider: &str) -> Self {
        ApiError::new(
            404,
            "invalid_request_error",
            Some("model_not_found"),
            format!(
                "The model {} is not available: its provider {} has no credential configured.",
                quote(model),
                quote(provider)
            ),
        )
        .with_param("model")
    }

    pub fn unknown_path(method: &str, path: &str) -> Self {
        ApiError::new(
            404,
            "invalid_request_error",
            Some("unknown_url"),
            format!("Invalid URL ({} {}).", quote_plain(method), quote_plain(path)),
        )
    }

    pub fn method_not_allowed(method: &str, allow: &'static str) -> Self {
        let mut e = ApiError::new(
            405,
            "invalid_request_error",
            Some("method_not_allowed"),
            format!("Method {} is not allowed here; use {allow}.", quote(method)),
        );
        e.headers.push(("allow", allow.to_string()));
        e
    }

    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            413,
            "invalid_request_error",
            Some("request_too_large"),
            format!("The request body is larger than the gateway's limit of {limit} bytes."),
        )
    }

    pub fn unsupported_media_type(got: &str) -> Self {
        ApiError::new(
            415,
            "invalid_request_error",
            Some("unsupported_media_type"),
            format!("Content-Type must be application/json, got {}.", quote(got)),
        )
    }

    pub fn gateway(message: impl Into<String>) -> Self {
        ApiError::new(502, "server_error", Some("gateway_error"), message)
    }
}

fn quote_plain(s: &str) -> String {
    let q = quote(s);
    q.trim_matches('\'').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_openai_shape() {
        let e = ApiError::model_not_found("gpt-\"x\"");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        let err = &v["error"];
        assert_eq!(err["type"], "invalid_request_error");
        assert_eq!(err["code"], "model_not_found");
        assert_eq!(err["param"], "model");
        assert_eq!(err["message"], "The model 'gpt-\"x\"' does not exist.");
        assert_eq!(e.status, 404);
    }

    #[test]
    fn null_fields_are_present() {
        let v: serde_json::Value = serde_json::from_str(&ApiError::gateway("x").body()).unwrap();
        assert!(v["error"].as_object().unwrap().contains_key("param"));
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn anthropic_shape_keeps_openai_fields() {
        let v: serde_json::Value = serde_json::from_str(&ApiError::model_not_found("x").anthropic_body()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "not_found_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("'x'"));
    }

    #[test]
    fn quotes_are_bounded() {
        let long = "m".repeat(10_000);
        let e = ApiError::model_not_found(&long);
        assert!(e.message.len() < 300, "{}", e.message.len());
    }

    #[test]
    fn method_not_allowed_sets_allow() {
        let e = ApiError::method_not_allowed("GET", "POST");
        assert_eq!(e.status, 405);
        assert_eq!(e.headers, vec![("allow", "POST".to_string())]);
    }
}
