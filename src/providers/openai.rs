//! OpenAI: the unified API is OpenAI's own, so requests pass through with the model name replaced and the
//! gateway's credential in place of the caller's. Responses and streams pass through untouched.

use super::{credential, openai_suffix, UpstreamCall};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::config::provider_kinds::{read, KindResult};
use crate::config::{Env, Provider, ProviderKind};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The settings of kind `openai`: a cluster and a required key, nothing of its own.
pub(crate) fn settings(_o: &Map<String, Value>, _path: &str, _env: &dyn Env) -> KindResult {
    read(ProviderKind::OpenAi, &["kind", "cluster", "api_key"])
}

pub fn plan(provider: &Provider, op: Operation) -> Result<UpstreamCall, ApiError> {
    Ok(UpstreamCall { path: format!("/v1{}", openai_suffix(op)?), auth: credential(provider) })
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    model: &'a RawValue,
    #[serde(default)]
    stream: Option<bool>,
    /// `Some(raw)` whenever the key is present, `null` included.
    #[serde(borrow, default, deserialize_with = "present")]
    stream_options: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn span(body: &[u8], raw: &RawValue) -> (usize, usize) {
    let start = (raw.get().as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    (start, start + raw.get().len())
}

/// Replaces the top-level `model` value of a JSON object, leaving every other byte as it was (no
/// re-serialisation of fields the gateway does not change).
pub fn replace_model(body: &[u8], model: &str) -> Result<Vec<u8>, ApiError> {
    rewrite(body, model, false)
}

/// Replaces `model` and, when `ask_usage` is set and the request streams, makes sure it asks for the usage
/// chunk (`stream_options.include_usage: true`): the gateway needs usage for limits and accounting, and
/// the route-level filter drops that chunk again when the client did not ask for it. Only the changed
/// values are re-written; every other byte is copied as it was.
pub fn rewrite(body: &[u8], model: &str, ask_usage: bool) -> Result<Vec<u8>, ApiError> {
    let f: Fields = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("Invalid request body: {e}."), Some("model")))?;
    splice(body, f.model, f.stream == Some(true), f.stream_options, model, ask_usage)
}

/// [`rewrite`] for a body already parsed: `model_raw` and `stream_options_raw` are values inside `body`.
pub fn splice(
    body: &[u8],
    model_raw: &RawValue,
    stream: bool,
    stream_options_raw: Option<&RawValue>,
    model: &str,
    ask_usage: bool,
) -> Result<Vec<u8>, ApiError> {
    let quoted = serde_json::to_string(model).map_err(|e| ApiError::gateway(e.to_string()))?;
    let mut edits: Vec<(usize, usize, String)> = vec![{
        let (s, e) = span(body, model_raw);
        (s, e, quoted)
    }];
    if ask_usage && stream {
        let wanted = r#"{"include_usage":true}"#;
        match stream_options_raw {
            Some(raw) => {
                let mut opts =
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get()).unwrap_or_default();
                if opts.get("include_usage") != Some(&serde_json::Value::Bool(true)) {
                    opts.insert("include_usage".into(), serde_json::Value::Bool(true));
                    let (s, e) = span(body, raw);
                    edits.push((s, e, serde_json::Value::Object(opts).to_string()));
                }
            }
            None => {
                let open =
                    body.iter().position(|b| *b == b'{').ok_or_else(|| ApiError::gateway("body is not an object"))?;
                edits.push((open + 1, open + 1, format!(r#""stream_options":{wanted},"#)));
            }
        }
    }
    edits.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut at = 0;
    for (s, e, text) in edits {
        let head = body.get(at..s).ok_or_else(|| ApiError::gateway("could not locate a field"))?;
        out.extend_from_slice(head);
        out.extend_from_slice(text.as_bytes());
        at = e;
    }
    out.extend_from_slice(body.get(at..).unwrap_or_default());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn settings_take_no_fields_of_their_own() {
        let env = crate::config::tests::MapEnv(vec![]);
        let o = serde_json::json!({"kind": "openai"});
        let s = settings(o.as_object().unwrap(), "providers.o", &env).unwrap().unwrap();
        assert_eq!((s.kind, s.fields), (ProviderKind::OpenAi, &["kind", "cluster", "api_key"][..]));
        assert!(ProviderKind::OpenAi.requires_key());
    }

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
    fn asks_for_usage_on_streams_only() {
        let table: &[(&str, &str)] = &[
            (r#"{"model":"a","stream":false}"#, r#"{"model":"m","stream":false}"#),
            (
                r#"{"model":"a","stream":true}"#,
                r#"{"stream_options":{"include_usage":true},"model":"m","stream":true}"#,
            ),
            (
                r#" {"stream":true,"model":"a"}"#,
                r#" {"stream_options":{"include_usage":true},"stream":true,"model":"m"}"#,
            ),
            (
                r#"{"model":"a","stream":true,"stream_options":{"include_usage":true}}"#,
                r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
            ),
            (
                r#"{"stream_options":{"include_usage":false,"x":1},"model":"a","stream":true}"#,
                r#"{"stream_options":{"include_usage":true,"x":1},"model":"m","stream":true}"#,
            ),
            (
                r#"{"model":"a","stream":true,"stream_options":null}"#,
                r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
            ),
        ];
        for (body, want) in table {
            let out = rewrite(body.as_bytes(), "m", true).unwrap();
            assert_eq!(std::str::from_utf8(&out).unwrap(), *want);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["model"], "m");
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
