//! Azure OpenAI: the OpenAI wire format, with the deployment in the path, `api-version` as a query
//! parameter and the key in the `api-key` header. `api_version: "v1"` selects Azure's v1 API
//! (`/openai/v1/...`, model in the body, no `api-version` parameter).

use super::{openai_suffix, UpstreamCall};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::codec::percent;
use crate::config::Provider;

pub fn plan(provider: &Provider, api_version: &str, op: Operation, deployment: &str) -> Result<UpstreamCall, ApiError> {
    let suffix = openai_suffix(op)?;
    let path = if api_version == "v1" {
        format!("/openai/v1{suffix}")
    } else {
        format!("/openai/deployments/{}{suffix}?api-version={api_version}", percent::encode(deployment.as_bytes()))
    };
    let auth = super::credential(provider);
    Ok(UpstreamCall { path, auth })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProviderKind, Secret};

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
        ];
        for (op, dep, want) in table {
            let c = plan(&azure(), "2024-10-21", op, dep).unwrap();
            assert_eq!(c.path, want);
            assert_eq!(c.auth, Some(("api-key", "az-key".to_string())));
        }
        assert_eq!(plan(&azure(), "v1", Operation::ChatCompletions, "d").unwrap().path, "/openai/v1/chat/completions");
    }
}
