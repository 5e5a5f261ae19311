//! Azure OpenAI: the OpenAI wire format, with the deployment in the path, `api-version` as a query
//! parameter and the key in the `api-key` header. `api_version: "v1"` selects Azure's v1 API
//! (`/openai/v1/...`, model in the body, no `api-version` parameter).

use super::{openai_suffix, UpstreamCall};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::codec::percent;
use crate::config::fields::{err, join, req_str};
use crate::config::provider_kinds::{read, KindResult};
use crate::config::{Env, Provider, ProviderKind};
use serde_json::{Map, Value};

/// The settings of kind `azure_openai`: a required `api_version` (a date like `2024-10-21`, or `v1`).
pub(crate) fn settings(o: &Map<String, Value>, path: &str, _env: &dyn Env) -> KindResult {
    let v = req_str(o, path, "api_version")?;
    if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(err(join(path, "api_version"), "may hold only letters, digits, '-' and '.'"));
    }
    let kind = ProviderKind::AzureOpenAi { api_version: v.to_string() };
    read(kind, &["kind", "cluster", "api_key", "api_version"])
}

pub fn plan(provider: &Provider, api_version: &str, op: Operation, deployment: &str) -> Result<UpstreamCall, ApiError> {
    let suffix = openai_suffix(op)?;
    let path = if api_version == "v1" {
        format!("/openai/v1{suffix}")
    } else if op == Operation::Responses {
        // Azure's Responses API names the deployment in the body's `model`, not in the path.
        format!("/openai{suffix}?api-version={api_version}")
    } else {
        format!("/openai/deployments/{}{suffix}?api-version={api_version}", percent::encode(deployment.as_bytes()))
    };
    let auth = super::credential(provider);
    Ok(UpstreamCall { path, auth })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MapEnv;
    use crate::config::Secret;
    use serde_json::json;

    #[test]
    fn settings_need_a_plain_api_version() {
        let env = MapEnv(vec![]);
        let o = json!({"kind": "azure_openai", "api_version": "2024-10-21"});
        let s = settings(o.as_object().unwrap(), "providers.az", &env).unwrap().unwrap();
        assert_eq!(s.kind, ProviderKind::AzureOpenAi { api_version: "2024-10-21".into() });
        assert_eq!(s.fields, &["kind", "cluster", "api_key", "api_version"][..]);
        assert!(s.kind.requires_key());
        let e = settings(json!({}).as_object().unwrap(), "providers.az", &env).err().unwrap();
        assert_eq!((e.field.as_str(), e.reason.as_str()), ("providers.az.api_version", "is required"));
        let bad = json!({"api_version": "2024?x=1"});
        let e = settings(bad.as_object().unwrap(), "providers.az", &env).err().unwrap();
        assert_eq!(e.field, "providers.az.api_version");
        assert_eq!(e.reason, "may hold only letters, digits, '-' and '.'");
    }

    fn azure() -> Provider {
        Provider {
            name: "az".into(),
            kind: ProviderKind::AzureOpenAi { api_version: "2024-10-21".into() },
            cluster: "az".into(),
            credential: Some(Secret::for_tests("az-key")),
        }
    }

    #[test]
    fn deployment_path_and_key_header() {
        let table = [
            (Operation::ChatCompletions, "prod", "/openai/deployments/prod/chat/completions?api-version=2024-10-21"),
            (Operation::Embeddings, "emb 1/x", "/openai/deployments/emb%201%2Fx/embeddings?api-version=2024-10-21"),
            // The Responses API names the deployment in the body.
            (Operation::Responses, "prod", "/openai/responses?api-version=2024-10-21"),
        ];
        for (op, dep, want) in table {
            let c = plan(&azure(), "2024-10-21", op, dep).unwrap();
            assert_eq!(c.path, want);
            assert_eq!(c.auth, Some(("api-key", "az-key".to_string())));
        }
        assert_eq!(plan(&azure(), "v1", Operation::ChatCompletions, "d").unwrap().path, "/openai/v1/chat/completions");
        assert_eq!(plan(&azure(), "v1", Operation::Responses, "d").unwrap().path, "/openai/v1/responses");
    }
}
