//! The provider kinds and what differs between them. Every fact is a method with one arm per kind (no
//! catch-all arm), so a new kind does not compile until each fact is decided for it. A kind's settings
//! are read by its own module (`settings` in `openai.rs`, `anthropic/settings.rs`, ...); the config
//! (`config/provider_kinds.rs`) only maps the `kind` string to that function.

use crate::config::Secret;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// Answered by the filter itself, in the OpenAI format.
    Mock,
    OpenAi,
    AzureOpenAi {
        api_version: String,
    },
    OpenAiCompatible {
        base_path: String,
        /// `responses: native`: the server has its own `/responses` endpoint (else Responses requests go
        /// through the chat pivot; most self-hosted servers have none).
        native_responses: bool,
    },
    /// Anthropic Messages API: `x-api-key`, `anthropic-version`; `max_tokens` is required there, so
    /// requests without one get `default_max_tokens`.
    Anthropic {
        version: String,
        default_max_tokens: u32,
    },
    /// Gemini API (`generativelanguage`): `x-goog-api-key`.
    Gemini {
        api_version: String,
    },
    /// Vertex AI publisher models: bearer access token, project and location in the path.
    Vertex {
        project: String,
        location: String,
    },
    /// Bedrock Converse / ConverseStream, SigV4-signed in the filter.
    Bedrock {
        region: String,
        access_key_id: Secret,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
}

/// The request and response format a kind's upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// OpenAI Chat Completions / Embeddings (the pivot format): only the model name and path change.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini `generateContent` (Gemini API and Vertex AI).
    Gemini,
    /// Bedrock Converse.
    Bedrock,
    /// No upstream: the filter answers itself.
    Local,
}

impl ProviderKind {
    /// The kind's name in the configuration (`providers.<name>.kind`).
    pub fn name(&self) -> &'static str {
        match self {
            ProviderKind::Mock => "mock",
            ProviderKind::OpenAi => "openai",
            ProviderKind::AzureOpenAi { .. } => "azure_openai",
            ProviderKind::OpenAiCompatible { .. } => "openai_compatible",
            ProviderKind::Anthropic { .. } => "anthropic",
            ProviderKind::Gemini { .. } => "gemini",
            ProviderKind::Vertex { .. } => "vertex",
            ProviderKind::Bedrock { .. } => "bedrock",
        }
    }

    /// The format the kind's upstream speaks.
    pub fn wire_format(&self) -> WireFormat {
        match self {
            ProviderKind::Mock => WireFormat::Local,
            ProviderKind::OpenAi | ProviderKind::AzureOpenAi { .. } | ProviderKind::OpenAiCompatible { .. } => {
                WireFormat::OpenAi
            }
            ProviderKind::Anthropic { .. } => WireFormat::Anthropic,
            ProviderKind::Gemini { .. } | ProviderKind::Vertex { .. } => WireFormat::Gemini,
            ProviderKind::Bedrock { .. } => WireFormat::Bedrock,
        }
    }

    /// The header that carries the provider's `api_key`: `authorization` carries it as a bearer token,
    /// the others as it is. `None` for the kinds that take no `api_key` header (Bedrock signs the request
    /// with its key pair; the mock has no upstream).
    pub fn credential_header(&self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible { .. } | ProviderKind::Vertex { .. } => {
                Some("authorization")
            }
            ProviderKind::AzureOpenAi { .. } => Some("api-key"),
            ProviderKind::Anthropic { .. } => Some("x-api-key"),
            ProviderKind::Gemini { .. } => Some("x-goog-api-key"),
            ProviderKind::Bedrock { .. } | ProviderKind::Mock => None,
        }
    }

    /// Whether the kind's OpenAI-format streams may hold chunks with no choices beyond the usage chunk
    /// (Azure opens with `prompt_filter_results` in a chunk whose `choices` is empty; OpenAI-compatible
    /// servers send extras of their own). The route role drops those for chat clients. The translated
    /// kinds' chunks are the gateway's own, and OpenAI sends none.
    pub fn sends_choiceless_chunks(&self) -> bool {
        match self {
            ProviderKind::AzureOpenAi { .. } | ProviderKind::OpenAiCompatible { .. } => true,
            ProviderKind::Mock
            | ProviderKind::OpenAi
            | ProviderKind::Anthropic { .. }
            | ProviderKind::Gemini { .. }
            | ProviderKind::Vertex { .. }
            | ProviderKind::Bedrock { .. } => false,
        }
    }

    /// Whether the configuration must give `api_key` (an OpenAI-compatible server may need none; the
    /// mock and Bedrock take none).
    pub fn requires_key(&self) -> bool {
        match self {
            ProviderKind::OpenAi
            | ProviderKind::AzureOpenAi { .. }
            | ProviderKind::Anthropic { .. }
            | ProviderKind::Gemini { .. }
            | ProviderKind::Vertex { .. } => true,
            ProviderKind::Mock | ProviderKind::OpenAiCompatible { .. } | ProviderKind::Bedrock { .. } => false,
        }
    }

    /// Whether a model's only target of this kind can have its request translated by the route-level
    /// filter (the upstream role then sets only the path and the credential). Bedrock signs the final body
    /// with the credential, so its attempts are prepared where the credential is set; the mock answers
    /// in the route-level filter and has nothing to translate.
    pub fn translates_at_route(&self) -> bool {
        match self {
            ProviderKind::OpenAi
            | ProviderKind::AzureOpenAi { .. }
            | ProviderKind::OpenAiCompatible { .. }
            | ProviderKind::Anthropic { .. }
            | ProviderKind::Gemini { .. }
            | ProviderKind::Vertex { .. } => true,
            ProviderKind::Bedrock { .. } | ProviderKind::Mock => false,
        }
    }

    /// Whether the kind's upstream takes OpenAI-format requests as they are (only the model name and
    /// path change).
    pub fn speaks_openai(&self) -> bool {
        match self.wire_format() {
            WireFormat::OpenAi => true,
            WireFormat::Anthropic | WireFormat::Gemini | WireFormat::Bedrock | WireFormat::Local => false,
        }
    }

    /// Whether the kind's upstream answers the OpenAI Responses API itself (`POST .../responses`): the
    /// request passes with only the model name changed. Every other kind is served through the chat
    /// pivot, which refuses what needs OpenAI's own state or hosted tools.
    pub fn answers_responses(&self) -> bool {
        match self {
            ProviderKind::OpenAi | ProviderKind::AzureOpenAi { .. } => true,
            ProviderKind::OpenAiCompatible { native_responses, .. } => *native_responses,
            ProviderKind::Mock
            | ProviderKind::Anthropic { .. }
            | ProviderKind::Gemini { .. }
            | ProviderKind::Vertex { .. }
            | ProviderKind::Bedrock { .. } => false,
        }
    }

    /// Whether the filter answers requests for this kind itself, with no upstream (the mock).
    pub fn answers_locally(&self) -> bool {
        match self.wire_format() {
            WireFormat::Local => true,
            WireFormat::OpenAi | WireFormat::Anthropic | WireFormat::Gemini | WireFormat::Bedrock => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MapEnv;
    use crate::config::{provider_kinds, Provider};
    use crate::http::CREDENTIAL_HEADERS;

    fn every_kind() -> Vec<ProviderKind> {
        let s = Secret::for_tests;
        vec![
            ProviderKind::Mock,
            ProviderKind::OpenAi,
            ProviderKind::AzureOpenAi { api_version: "2024-10-21".into() },
            ProviderKind::OpenAiCompatible { base_path: "/v1".into(), native_responses: false },
            ProviderKind::Anthropic { version: "2023-06-01".into(), default_max_tokens: 4096 },
            ProviderKind::Gemini { api_version: "v1beta".into() },
            ProviderKind::Vertex { project: "p".into(), location: "us-central1".into() },
            ProviderKind::Bedrock {
                region: "us-east-1".into(),
                access_key_id: s("AKID"),
                secret_access_key: s("secret"),
                session_token: None,
            },
        ]
    }

    /// The row of `kind` in `every_kind` and `FACTS`: a new kind does not compile here until it has one.
    fn row(kind: &ProviderKind) -> usize {
        match kind {
            ProviderKind::Mock => 0,
            ProviderKind::OpenAi => 1,
            ProviderKind::AzureOpenAi { .. } => 2,
            ProviderKind::OpenAiCompatible { .. } => 3,
            ProviderKind::Anthropic { .. } => 4,
            ProviderKind::Gemini { .. } => 5,
            ProviderKind::Vertex { .. } => 6,
            ProviderKind::Bedrock { .. } => 7,
        }
    }

    struct Facts {
        name: &'static str,
        wire: WireFormat,
        header: Option<&'static str>,
        requires_key: bool,
        translates_at_route: bool,
        speaks_openai: bool,
        answers_locally: bool,
        answers_responses: bool,
    }

    #[rustfmt::skip]
    const FACTS: &[Facts] = &[
        Facts { name: "mock", wire: WireFormat::Local, header: None, requires_key: false, translates_at_route: false, speaks_openai: false, answers_locally: true, answers_responses: false },
        Facts { name: "openai", wire: WireFormat::OpenAi, header: Some("authorization"), requires_key: true, translates_at_route: true, speaks_openai: true, answers_locally: false, answers_responses: true },
        Facts { name: "azure_openai", wire: WireFormat::OpenAi, header: Some("api-key"), requires_key: true, translates_at_route: true, speaks_openai: true, answers_locally: false, answers_responses: true },
        Facts { name: "openai_compatible", wire: WireFormat::OpenAi, header: Some("authorization"), requires_key: false, translates_at_route: true, speaks_openai: true, answers_locally: false, answers_responses: false },
        Facts { name: "anthropic", wire: WireFormat::Anthropic, header: Some("x-api-key"), requires_key: true, translates_at_route: true, speaks_openai: false, answers_locally: false, answers_responses: false },
        Facts { name: "gemini", wire: WireFormat::Gemini, header: Some("x-goog-api-key"), requires_key: true, translates_at_route: true, speaks_openai: false, answers_locally: false, answers_responses: false },
        Facts { name: "vertex", wire: WireFormat::Gemini, header: Some("authorization"), requires_key: true, translates_at_route: true, speaks_openai: false, answers_locally: false, answers_responses: false },
        Facts { name: "bedrock", wire: WireFormat::Bedrock, header: None, requires_key: false, translates_at_route: false, speaks_openai: false, answers_locally: false, answers_responses: false },
    ];

    #[test]
    fn every_kind_has_its_facts() {
        let kinds = every_kind();
        assert_eq!(kinds.len(), FACTS.len());
        for (i, (k, f)) in kinds.iter().zip(FACTS).enumerate() {
            assert_eq!(row(k), i, "{}", f.name);
            assert_eq!(k.name(), f.name);
            assert_eq!(k.wire_format(), f.wire, "{}", f.name);
            assert_eq!(k.credential_header(), f.header, "{}", f.name);
            assert_eq!(k.requires_key(), f.requires_key, "{}", f.name);
            assert_eq!(k.translates_at_route(), f.translates_at_route, "{}", f.name);
            assert_eq!(k.speaks_openai(), f.speaks_openai, "{}", f.name);
            assert_eq!(k.answers_locally(), f.answers_locally, "{}", f.name);
            assert_eq!(k.answers_responses(), f.answers_responses, "{}", f.name);
        }
        // An OpenAI-compatible server answers the Responses API itself only when configured so.
        let native = ProviderKind::OpenAiCompatible { base_path: "/v1".into(), native_responses: true };
        assert!(native.answers_responses());
    }

    #[test]
    fn credential_headers_are_the_ones_stripped_from_clients() {
        for k in every_kind() {
            if let Some(h) = k.credential_header() {
                assert!(CREDENTIAL_HEADERS.contains(&h), "{}: {h}", k.name());
            }
        }
    }

    #[test]
    fn credential_value_is_bearer_only_on_authorization() {
        for k in every_kind() {
            let name = k.name();
            let header = k.credential_header();
            let p =
                Provider { name: "p".into(), kind: k, cluster: "c".into(), credential: Some(Secret::for_tests("k1")) };
            let want = header.map(|h| (h, if h == "authorization" { "Bearer k1" } else { "k1" }.to_string()));
            assert_eq!(crate::providers::credential(&p), want, "{name}");
            let none = Provider { credential: None, ..p };
            assert_eq!(crate::providers::credential(&none), None, "{name}");
        }
    }

    #[test]
    fn every_kind_name_is_a_config_kind() {
        let env = MapEnv(vec![]);
        for k in every_kind() {
            let o = serde_json::json!({
                "kind": k.name(), "api_version": "v1", "region": "us-east-1", "project": "p", "location": "l",
                "access_key_id": "a", "secret_access_key": "s",
            });
            let o = o.as_object().unwrap();
            let parsed = provider_kinds::settings(k.name(), o, "providers.p", &env);
            let got = parsed.ok().flatten().map(|s| s.kind.name());
            assert_eq!(got, Some(k.name()));
        }
    }
}
