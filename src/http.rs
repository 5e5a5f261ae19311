//! Small HTTP vocabulary shared by the core: header access, header edits and local responses.

use crate::error::ApiError;
use crate::request::Operation;

/// What the route-level filter decided for a forwarded request, kept by the host for the upstream role's
/// attempts: Envoy hands every retry the request headers as the previous attempt left them (rewritten
/// for its provider, internal headers removed), so they cannot carry this past the first attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub op: Operation,
    pub alias: String,
    /// The route-level filter already wrote the body for the model's only target (an OpenAI-format
    /// provider): an attempt then needs just its path and credential, not the body again.
    pub body_ready: bool,
}

/// Read access to the request or response headers the host holds.
pub trait Headers {
    fn get(&self, name: &str) -> Option<String>;
}

/// A response the filter answers with itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl LocalResponse {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        LocalResponse { status, headers: vec![("content-type", "application/json".into())], body: body.into() }
    }

    pub fn event_stream(body: impl Into<Vec<u8>>) -> Self {
        LocalResponse {
            status: 200,
            headers: vec![("content-type", "text/event-stream".into()), ("cache-control", "no-cache".into())],
            body: body.into(),
        }
    }
}

impl From<ApiError> for LocalResponse {
    fn from(e: ApiError) -> Self {
        let mut r = LocalResponse::json(e.status, e.body());
        r.headers.extend(e.headers);
        r
    }
}

/// What the host should do with the stream after a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Let the stream go on.
    Continue,
    /// Hold the headers and buffer the body until it is complete.
    NeedBody,
    /// Answer locally and stop the stream.
    Respond(LocalResponse),
}

/// A callback's outcome: header edits to apply, then the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub step: Step,
    pub remove: Vec<&'static str>,
    pub set: Vec<(&'static str, String)>,
    /// Keep this for the upstream role's attempts.
    pub register: Option<RequestInfo>,
    /// Replace the request body with this.
    pub body: Option<Vec<u8>>,
}

impl Decision {
    pub fn new(step: Step) -> Self {
        Decision { step, remove: Vec::new(), set: Vec::new(), register: None, body: None }
    }

    pub fn respond(r: impl Into<LocalResponse>) -> Self {
        Decision::new(Step::Respond(r.into()))
    }

    pub fn set(&self, name: &str) -> Option<&str> {
        self.set.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// Headers that carry a caller's or a provider's credential. Stripped from what the client sent.
pub const CREDENTIAL_HEADERS: &[&str] =
    &["authorization", "x-api-key", "api-key", "x-goog-api-key", "proxy-authorization"];

/// Headers the route-level filter uses to talk to the upstream filter; never taken from clients and never
/// sent to providers.
pub const H_CLUSTER: &str = "x-switchyard-cluster";
pub const H_MODEL: &str = "x-switchyard-model";
pub const H_KEY: &str = "x-switchyard-key-id";
pub const INTERNAL_HEADERS: &[&str] = &[H_CLUSTER, H_MODEL, H_KEY];

/// Response headers that tell the client what served the request.
pub const H_SERVED_PROVIDER: &str = "x-switchyard-provider";
pub const H_SERVED_MODEL: &str = "x-switchyard-model";

#[cfg(test)]
pub mod testing {
    use super::Headers;

    /// A header map for tests.
    pub struct MapHeaders(pub Vec<(String, String)>);

    impl MapHeaders {
        pub fn new(pairs: &[(&str, &str)]) -> Self {
            MapHeaders(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        }
    }

    impl Headers for MapHeaders {
        fn get(&self, name: &str) -> Option<String> {
            self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
        }
    }
}
