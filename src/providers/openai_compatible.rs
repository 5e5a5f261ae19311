//! Any OpenAI-style server (Mistral, Groq, DeepSeek, Together, Ollama, vLLM, ...): the OpenAI wire format
//! under a configurable base path, with an optional bearer key.

use super::{credential, openai_suffix, UpstreamCall};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::config::fields::{err, is_header_safe, join, opt_str};
use crate::config::provider_kinds::{read, KindResult};
use crate::config::{Env, Provider, ProviderKind};
use serde_json::{Map, Value};

/// The settings of kind `openai_compatible`: an optional `base_path` (default `/v1`, kept without its
/// trailing `/`); the key is optional (local servers take none); `responses` says whether the server
/// answers the Responses API itself (`native`) or takes it through the chat pivot (`chat`, the default:
/// most self-hosted servers have no `/responses`).
pub(crate) fn settings(o: &Map<String, Value>, path: &str, _env: &dyn Env) -> KindResult {
    let base = opt_str(o, path, "base_path")?.unwrap_or("/v1");
    if !base.starts_with('/') || base.contains('?') || base.contains('#') || !is_header_safe(base) || base.contains(' ')
    {
        return Err(err(join(path, "base_path"), "must be a path starting with '/', without query or spaces"));
    }
    let native_responses = match opt_str(o, path, "responses")?.unwrap_or("chat") {
        "chat" => false,
        "native" => true,
        _ => return Err(err(join(path, "responses"), "must be 'chat' or 'native'")),
    };
    let kind = ProviderKind::OpenAiCompatible { base_path: base.trim_end_matches('/').to_string(), native_responses };
    read(kind, &["kind", "cluster", "api_key", "base_path", "responses"])
}

pub fn plan(provider: &Provider, base_path: &str, op: Operation) -> Result<UpstreamCall, ApiError> {
    Ok(UpstreamCall { path: format!("{base_path}{}", openai_suffix(op)?), auth: credential(provider) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MapEnv;
    use serde_json::json;

    fn base_path(o: Value) -> Result<String, (String, String)> {
        let env = MapEnv(vec![]);
        match settings(o.as_object().unwrap(), "providers.c", &env) {
            Ok(Some(s)) => match s.kind {
                ProviderKind::OpenAiCompatible { base_path, .. } => Ok(base_path),
                other => panic!("{other:?}"),
            },
            Ok(None) => panic!("left out"),
            Err(e) => Err((e.field, e.reason)),
        }
    }

    #[test]
    fn settings_default_and_trim_the_base_path() {
        assert_eq!(base_path(json!({})), Ok("/v1".into()));
        assert_eq!(base_path(json!({"base_path": "/openai/v1/"})), Ok("/openai/v1".into()));
        let want = "must be a path starting with '/', without query or spaces";
        for bad in ["v1", "/v1?x=1", "/v 1", "/a#b"] {
            assert_eq!(
                base_path(json!({"base_path": bad})),
                Err(("providers.c.base_path".into(), want.into())),
                "{bad}"
            );
        }
        let env = MapEnv(vec![]);
        let s = settings(json!({}).as_object().unwrap(), "providers.c", &env).unwrap().unwrap();
        assert_eq!(s.fields, &["kind", "cluster", "api_key", "base_path", "responses"][..]);
        assert!(!s.kind.requires_key());
    }

    #[test]
    fn responses_are_native_only_when_configured() {
        let env = MapEnv(vec![]);
        let native = |o: Value| match settings(o.as_object().unwrap(), "providers.c", &env) {
            Ok(Some(s)) => Ok(s.kind.answers_responses()),
            Ok(None) => panic!("left out"),
            Err(e) => Err((e.field, e.reason)),
        };
        assert_eq!(native(json!({})), Ok(false));
        assert_eq!(native(json!({"responses": "chat"})), Ok(false));
        assert_eq!(native(json!({"responses": "native"})), Ok(true));
        let want = Err(("providers.c.responses".to_string(), "must be 'chat' or 'native'".to_string()));
        assert_eq!(native(json!({"responses": "yes"})), want);
        let p = Provider {
            name: "vllm".into(),
            kind: ProviderKind::OpenAiCompatible { base_path: "/v1".into(), native_responses: true },
            cluster: "vllm".into(),
            credential: None,
        };
        assert_eq!(plan(&p, "/v1", Operation::Responses).unwrap().path, "/v1/responses");
    }

    #[test]
    fn base_path_and_optional_key() {
        let p = Provider {
            name: "groq".into(),
            kind: ProviderKind::OpenAiCompatible { base_path: "/openai/v1".into(), native_responses: false },
            cluster: "groq".into(),
            credential: None,
        };
        let c = plan(&p, "/openai/v1", Operation::ChatCompletions).unwrap();
        assert_eq!(c.path, "/openai/v1/chat/completions");
        assert_eq!(c.auth, None);
        assert!(plan(&p, "", Operation::ListModels).is_err());
    }
}
