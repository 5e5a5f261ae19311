//! Any OpenAI-style server (Mistral, Groq, DeepSeek, Together, Ollama, vLLM, ...): the OpenAI wire format
//! under a configurable base path, with an optional bearer key.

use super::{credential, openai_suffix, UpstreamCall};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::config::Provider;

pub fn plan(provider: &Provider, base_path: &str, op: Operation) -> Result<UpstreamCall, ApiError> {
    Ok(UpstreamCall { path: format!("{base_path}{}", openai_suffix(op)?), auth: credential(provider) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;

    #[test]
    fn base_path_and_optional_key() {
        let p = Provider {
            name: "groq".into(),
            kind: ProviderKind::OpenAiCompatible { base_path: "/openai/v1".into() },
            cluster: "groq".into(),
            credential: None,
        };
        let c = plan(&p, "/openai/v1", Operation::ChatCompletions).unwrap();
        assert_eq!(c.path, "/openai/v1/chat/completions");
        assert_eq!(c.auth, None);
        assert!(plan(&p, "", Operation::ListModels).is_err());
    }
}
