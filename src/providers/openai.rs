//! OpenAI: the unified API is OpenAI's own, so requests pass through with the model name replaced and the
//! gateway's credential in place of the caller's. Responses and streams pass through untouched.

use super::{bearer, openai_suffix, UpstreamCall};
use crate::config::Provider;
use crate::error::ApiError;
use crate::request::Operation;
use serde::Deserialize;
use serde_json::value::RawValue;

pub fn plan(provider: &Provider, op: Operation) -> Result<UpstreamCall, ApiError> {
    Ok(UpstreamCall { path: format!("/v1{}", openai_suffix(op)?), auth: bearer(provider) })
}

#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow)]
    model: &'a RawValue,
}

/// Replaces the top-level `model` value of a JSON object, leaving every other byte as it was (no
/// re-serialisation of fields the gateway does not change).
pub fn replace_model(body: &[u8], model: &str) -> Result<Vec<u8>, ApiError> {
    let field: ModelField = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("Invalid request body: {e}."), Some("model")))?;
    let raw = field.model.get();
    let start = (raw.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let end = start + raw.len();
    let (Some(head), Some(tail)) = (body.get(..start), body.get(end..)) else {
        return Err(ApiError::gateway("could not locate the model field"));
    };
    let quoted = serde_json::to_string(model).map_err(|e| ApiError::gateway(e.to_string()))?;
    let mut out = Vec::with_capacity(body.len() + quoted.len());
    out.extend_from_slice(head);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(tail);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProviderKind, Secret};

    #[test]
    fn replaces_only_the_model() {
        let table: &[(&str, &str, &str)] = &[
            (r#"{"model":"alias","messages":[]}"#, "gpt-4o", r#"{"model":"gpt-4o","messages":[]}"#),
            (
                r#"{ "messages":[{"role":"user","content":"model: \"x\""}], "model" : "a" , "n":1}"#,
                "b\"q",
                r#"{ "messages":[{"role":"user","content":"model: \"x\""}], "model" : "b\"q" , "n":1}"#,
            ),
            (r#"{"nested":{"model":"keep"},"model":"alias"}"#, "m", r#"{"nested":{"model":"keep"},"model":"m"}"#),
            (r#"{"model":"caf\u00e9"}"#, "é", r#"{"model":"é"}"#),
        ];
        for (body, model, want) in table {
            let out = replace_model(body.as_bytes(), model).unwrap();
            assert_eq!(std::str::from_utf8(&out).unwrap(), *want);
        }
    }

    #[test]
    fn plan_uses_bearer() {
        let p = Provider {
            name: "openai".into(),
            kind: ProviderKind::OpenAi,
            cluster: "openai".into(),
            credential: Some(Secret::for_tests("sk-x")),
        };
        let c = plan(&p, Operation::Embeddings).unwrap();
        assert_eq!(c.path, "/v1/embeddings");
        assert_eq!(c.auth, Some(("authorization", "Bearer sk-x".to_string())));
    }
}
