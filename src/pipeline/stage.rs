//! The stage interface: the hooks a stage may implement, and what it answers ([`Flow`]).

use super::{Callout, CalloutOutcome, Ctx, Exchange, Request};
use crate::api::error::ApiError;
use crate::http::{Decision, Headers, LocalResponse};
use crate::identity::Verified;

/// A stage's answer to an event.
// `Forward` carries the whole decision: a few hundred bytes moved once per stage beat an allocation per
// request.
#[allow(clippy::large_enum_variant)]
pub enum Flow {
    /// Go on with the next stage.
    Next,
    /// Refuse the request with this error, in the client's shape.
    Fail(ApiError),
    /// Answer with this as it is; the response stages do not see it (model lists).
    Respond(LocalResponse),
    /// A complete answer made by the gateway (the mock provider; later a cache hit): it goes through the
    /// response stages like a provider's.
    Answer(LocalResponse),
    /// Send the request upstream with these edits (the last request stage).
    Forward(Decision),
    /// Call another service and resume this stage with the outcome (body hook only).
    Callout(Callout),
}

/// The response head as the response stages see and change it.
pub struct ResponseHead<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    /// What the upstream role said served (its `x-switchyard-provider` / `-model` headers).
    pub served: Option<(&'a str, &'a str)>,
    /// The answer is the provider's, not one Envoy made.
    pub from_provider: bool,
    /// Headers to set.
    pub set: Vec<(&'static str, String)>,
}

/// A piece of the response body on its way to the client.
pub struct Chunk {
    pub bytes: Vec<u8>,
    /// Whether `bytes` differ from what came in.
    pub changed: bool,
    pub end: bool,
    pub now_ns: u64,
}

/// One step of the pipeline. Every hook has a default that does nothing, so a stage implements only
/// the events it cares about.
pub trait Stage {
    fn name(&self) -> &'static str;

    /// The request headers (`end_of_stream`: there is no body), and the request's metadata from Envoy's
    /// filters before this one (read from the host only if a stage asks).
    fn on_request_headers(
        &mut self,
        _x: &mut Exchange,
        _h: &dyn Headers,
        _verified: &dyn Verified,
        _end_of_stream: bool,
    ) -> Flow {
        Flow::Next
    }

    /// The whole request body.
    fn on_request_body(&mut self, _x: &mut Exchange, _req: &Request, _ctx: &Ctx) -> Flow {
        Flow::Next
    }

    /// The outcome of the callout this stage asked for.
    fn on_callout(&mut self, _x: &mut Exchange, _req: &Request, _outcome: CalloutOutcome, _ctx: &Ctx) -> Flow {
        Flow::Next
    }

    /// The response headers.
    fn on_response_headers(&mut self, _x: &mut Exchange, _head: &mut ResponseHead) {}

    /// A piece of the response body.
    fn on_response_body(&mut self, _x: &mut Exchange, _chunk: &mut Chunk) {}

    /// The whole answer is known (its last bytes are on their way): settle what it used.
    fn on_response_end(&mut self, _x: &mut Exchange, _ctx: &Ctx) {}

    /// The request is over however it ended (answered, refused, failed, client gone): free what is held.
    fn on_done(&mut self, _x: &mut Exchange, _ctx: &Ctx) {}

    /// What this stage needs of the response body (see [`BodyNeeds`]).
    fn body_needs(&self, _x: &Exchange) -> BodyNeeds {
        BodyNeeds::default()
    }
}

/// What the response stages need of the response body, together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyNeeds {
    /// See the bytes (else the host only reports their size).
    pub watch: bool,
    /// The bytes may change (then the response's `content-length` must go, or be set anew).
    pub rewrite: bool,
    /// Hold the body until it is complete, then show it whole.
    pub buffer: bool,
}

impl BodyNeeds {
    pub(super) fn or(self, o: BodyNeeds) -> BodyNeeds {
        BodyNeeds { watch: self.watch || o.watch, rewrite: self.rewrite || o.rewrite, buffer: self.buffer || o.buffer }
    }
}
