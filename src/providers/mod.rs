//! Provider translators, one file per provider kind. Each says where a request goes on its provider (path
//! and credential header) and how the body changes on the way.

pub mod azure_openai;
pub mod mock;
pub mod openai;
pub mod openai_compatible;

use crate::config::{Provider, ProviderKind};
use crate::error::ApiError;
use crate::request::Operation;

/// Where and how one attempt reaches its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCall {
    pub path: String,
    /// The credential header to set, if the provider takes one.
    pub auth: Option<(&'static str, String)>,
}

/// Plans the upstream request for `op` against `provider`, for the provider's model name `model`.
pub fn plan(provider: &Provider, op: Operation, model: &str) -> Result<UpstreamCall, ApiError> {
    match &provider.kind {
        ProviderKind::OpenAi => openai::plan(provider, op),
        ProviderKind::AzureOpenAi { api_version } => azure_openai::plan(provider, api_version, op, model),
        ProviderKind::OpenAiCompatible { base_path } => openai_compatible::plan(provider, base_path, op),
        ProviderKind::Mock => Err(ApiError::gateway(format!(
            "provider '{}' is a mock; it answers in the route-level filter and has no upstream",
            provider.name
        ))),
    }
}

/// Rewrites the client's body for the provider. `Ok(None)` leaves it as it is.
pub fn rewrite_body(provider: &Provider, op: Operation, body: &[u8], model: &str) -> Result<Option<Vec<u8>>, ApiError> {
    match &provider.kind {
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi { .. } | ProviderKind::OpenAiCompatible { .. } => {
            let _ = op;
            openai::replace_model(body, model).map(Some)
        }
        ProviderKind::Mock => Ok(None),
    }
}

/// The last path segment of an operation on the OpenAI-style APIs.
pub(crate) fn openai_suffix(op: Operation) -> Result<&'static str, ApiError> {
    match op {
        Operation::ChatCompletions => Ok("/chat/completions"),
        Operation::Embeddings => Ok("/embeddings"),
        Operation::ListModels | Operation::RetrieveModel => {
            Err(ApiError::gateway("model listing is answered by the gateway, not forwarded"))
        }
    }
}

pub(crate) fn bearer(provider: &Provider) -> Option<(&'static str, String)> {
    provider.credential.as_ref().map(|c| ("authorization", format!("Bearer {}", c.expose())))
}
