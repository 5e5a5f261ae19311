//! Client APIs: what the gateway accepts from clients, one folder per API (parse, pivot, streams,
//! errors), and the error type every API renders in its own shape. This module is the front door: which
//! operation a method and path name ([`classify`]) and which client API answers ([`ClientApi`]).

pub mod anthropic;
pub mod error;
pub mod json;
pub mod openai;
pub mod responses;

use crate::http::LocalResponse;
use error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Embeddings,
    /// Anthropic Messages API input (`POST /v1/messages`).
    Messages,
    ListModels,
    /// `GET /v1/models/{id}`: the id starts at this byte offset of the path.
    RetrieveModel,
}

/// Maps method and path (query string allowed) to an operation, or the 404/405 to answer.
pub fn classify(method: &str, path: &str) -> Result<Operation, ApiError> {
    let bare = bare_path(path);
    let (op, allow) = match bare {
        "/v1/chat/completions" => (Operation::ChatCompletions, "POST"),
        "/v1/embeddings" => (Operation::Embeddings, "POST"),
        anthropic::PATH => (Operation::Messages, "POST"),
        "/v1/models" => (Operation::ListModels, "GET"),
        p if p.starts_with("/v1/models/") && p.len() > "/v1/models/".len() => (Operation::RetrieveModel, "GET"),
        _ => return Err(ApiError::unknown_path(method, bare)),
    };
    if method == allow || (allow == "GET" && method == "HEAD") {
        Ok(op)
    } else {
        Err(ApiError::method_not_allowed(method, allow))
    }
}

/// The model id of a `GET /v1/models/{id}` path, percent-decoded.
pub fn retrieve_model_id(path: &str) -> String {
    percent_decode(bare_path(path).strip_prefix("/v1/models/").unwrap_or(""))
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&crate::codec::percent::decode(s)).into_owned()
}

/// True for `application/json`, with or without parameters, any case.
pub fn is_json_content_type(ct: &str) -> bool {
    let media = ct.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
}

/// A path without its query string or fragment.
fn bare_path(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or("")
}

/// The API a client speaks, by the path it calls: errors are answered in its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    /// The OpenAI API (chat completions, embeddings, models) and any path the gateway does not know.
    OpenAi,
    /// The Anthropic Messages API (`/v1/messages`).
    Anthropic,
}

impl ClientApi {
    /// The API of a `:path` (query string allowed).
    pub fn for_path(path: &str) -> ClientApi {
        if bare_path(path) == anthropic::PATH {
            ClientApi::Anthropic
        } else {
            ClientApi::OpenAi
        }
    }

    /// An error answer in this API's shape, the error's headers kept.
    pub fn error_response(self, e: ApiError) -> LocalResponse {
        match self {
            ClientApi::OpenAi => openai::error_response(e),
            ClientApi::Anthropic => anthropic::error_response(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_paths() {
        let table: &[(&str, &str, Result<Operation, u16>)] = &[
            ("POST", "/v1/chat/completions", Ok(Operation::ChatCompletions)),
            ("POST", "/v1/chat/completions?x=1", Ok(Operation::ChatCompletions)),
            ("POST", "/v1/embeddings", Ok(Operation::Embeddings)),
            ("POST", "/v1/messages", Ok(Operation::Messages)),
            ("GET", "/v1/messages", Err(405)),
            ("GET", "/v1/models", Ok(Operation::ListModels)),
            ("GET", "/v1/models/gpt-4o", Ok(Operation::RetrieveModel)),
            ("GET", "/v1/chat/completions", Err(405)),
            ("DELETE", "/v1/models", Err(405)),
            ("POST", "/v1/completions", Err(404)),
            ("POST", "/v2/chat/completions", Err(404)),
            ("GET", "/", Err(404)),
            ("GET", "/v1/models/", Err(404)),
        ];
        for (m, p, want) in table {
            let got = classify(m, p).map_err(|e| e.status);
            assert_eq!(&got, want, "{m} {p}");
        }
        assert_eq!(classify("PUT", "/v1/embeddings").unwrap_err().headers, vec![("allow", "POST".to_string())]);
    }

    #[test]
    fn model_id_is_decoded() {
        assert_eq!(retrieve_model_id("/v1/models/org%2Fmodel?x"), "org/model");
        assert_eq!(retrieve_model_id("/v1/models/bad%zz"), "bad%zz");
    }

    #[test]
    fn content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/jsonx"));
    }

    #[test]
    fn client_api_by_path() {
        for (path, want) in [
            ("/v1/messages", ClientApi::Anthropic),
            ("/v1/messages?beta=true", ClientApi::Anthropic),
            ("/v1/messages#x", ClientApi::Anthropic),
            ("/v1/messages/count_tokens", ClientApi::OpenAi),
            ("/v1/chat/completions", ClientApi::OpenAi),
            ("/v1/embeddings?x=/v1/messages", ClientApi::OpenAi),
            ("/", ClientApi::OpenAi),
            ("", ClientApi::OpenAi),
        ] {
            assert_eq!(ClientApi::for_path(path), want, "{path}");
        }
    }

    #[test]
    fn client_api_error_shapes() {
        let e = ApiError::method_not_allowed("GET", "POST");
        let openai = ClientApi::OpenAi.error_response(e.clone());
        assert_eq!(openai, LocalResponse::from(e.clone()));
        let v: serde_json::Value = serde_json::from_slice(&openai.body).unwrap();
        assert!(v.get("type").is_none());
        assert_eq!(v["error"]["type"], "invalid_request_error");

        let anthropic = ClientApi::Anthropic.error_response(e.clone());
        assert_eq!(anthropic, anthropic::error_response(e));
        assert_eq!(anthropic.status, 405);
        assert!(anthropic.headers.contains(&("allow", "POST".to_string())));
        let v: serde_json::Value = serde_json::from_slice(&anthropic.body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["code"], "method_not_allowed");
    }
}
