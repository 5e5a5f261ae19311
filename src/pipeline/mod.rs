//! The route-level role as a pipeline of stages. It runs in the listener's HTTP filter chain, once per
//! client request: the client API's front door classifies the request, then the request stages run in
//! order (authenticate, resolve the model, authorize, policy stages, local limits, dispatch), and the
//! response stages run over the answer (translate, provider errors, usage, settle, telemetry).
//!
//! Sans-IO, in the quinn-proto style: the host hands in events (headers, body, a callout's outcome, the
//! end of the stream) with the time, and gets back a [`Decision`] (header edits, a new body, answer
//! locally, call another service, go on). Stages never call the host; what they need of it comes in
//! [`Ctx`] (clock, shared store).
//!
//! A stage is a module with a type implementing [`Stage`] and, when configurable, its config section;
//! [`request_stages`] and [`response_stages`] list them. Stages hand facts on through the [`Exchange`]
//! (who the caller is, which model, the reservation, the translator) and keep their own state in
//! themselves. A stage may return [`Flow::Callout`] from its body hook: the request pauses, the host
//! makes the call, and the same stage is resumed through [`Stage::on_callout`] with the answer, a
//! failure or a timeout; a client that goes away meanwhile frees what the request holds ([`Pipeline::on_done`]).

pub mod authenticate;
pub mod authorize;
pub mod cache;
pub mod callout;
pub mod dispatch;
mod exchange;
pub mod fleet_limits;
pub mod framing;
pub mod limits;
pub mod provider_errors;
pub mod registry;
pub mod resolve;
pub mod settle;
mod stage;
pub mod telemetry;
pub mod translate;
pub mod usage;

#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod tests;

use crate::api::error::ApiError;
use crate::api::openai as request;
pub use crate::api::ClientApi;
use crate::config::Config;
use crate::http::{Decision, Headers, LocalResponse, Step, CREDENTIAL_HEADERS, INTERNAL_HEADERS};
use crate::identity::{NoMetadata, Verified};
use crate::limits::SharedStore;
use crate::observe::Record;
use crate::providers::mock;
pub use callout::{Callout, CalloutKind, CalloutOutcome};
pub use exchange::{Ask, Exchange, Parsed, Request, Sent, Settled};
pub use framing::Framing;
pub use stage::{BodyNeeds, Chunk, Flow, ResponseHead, Stage};
use std::rc::Rc;

/// The filter state object (`wasm.` + this) a `/v1/messages` request carries from its request headers
/// on: Envoy's `local_reply_config` reads it to answer that client in Anthropic's error shape (the
/// request's `:path` is no guide: the roles rewrite it for the provider).
pub const API_PROPERTY: &str = "switchyard_api";

/// Host facts a callback needs: the time (passed in, never read by the core) and the shared store.
pub struct Ctx<'a> {
    pub clock: mock::Clock,
    pub now_ns: u64,
    pub store: &'a dyn SharedStore,
}

/// The request stages, in order. Policy stages (guardrails) go between authorize and the local limits;
/// the fleet-wide limits come after the local ones (a request the local tier refuses costs no round
/// trip), and only when the config has a rate-limit service; the cache lookup after the limits (a hit
/// counts as a request), only when some model is cached.
pub fn request_stages(cfg: &Config) -> Vec<Box<dyn Stage>> {
    let mut stages: Vec<Box<dyn Stage>> = Vec::with_capacity(6);
    stages.push(Box::new(authenticate::Authenticate));
    stages.push(Box::new(resolve::Resolve));
    stages.push(Box::new(authorize::Authorize));
    stages.push(Box::new(limits::LocalLimits));
    if cfg.fleet.is_some() {
        stages.push(Box::new(fleet_limits::FleetLimits::default()));
    }
    if cfg.caches {
        stages.push(Box::new(cache::CacheLookup::default()));
    }
    stages.push(Box::new(dispatch::Dispatch));
    stages
}

/// The response stages, in order.
pub fn response_stages(cfg: &Config) -> Vec<Box<dyn Stage>> {
    let mut stages: Vec<Box<dyn Stage>> = Vec::with_capacity(6);
    stages.push(Box::new(translate::Translate));
    stages.push(Box::new(provider_errors::ProviderErrors::default()));
    if cfg.caches {
        stages.push(Box::new(cache::CacheCapture::default()));
    }
    stages.push(Box::new(usage::UsageStage::default()));
    if cfg.caches {
        stages.push(Box::new(cache::CacheCharge));
    }
    stages.push(Box::new(settle::Settle));
    if cfg.fleet.is_some() {
        stages.push(Box::new(fleet_limits::FleetSettle));
    }
    stages.push(Box::new(telemetry::Telemetry));
    stages
}

/// A request paused on a callout.
struct Pending {
    /// The request stage that asked.
    stage: usize,
    /// The body, kept for the stages after it (freed if the client goes away).
    body: Vec<u8>,
    /// When the callout's time is up.
    deadline_ns: u64,
}

/// How many times `max_body_bytes` a refused request's body may be read and dropped before its answer
/// goes out anyway (see [`Pipeline::on_body_progress`]).
pub const DRAIN_FACTOR: usize = 4;

/// An answer made before the request's body was in (a refusal at header time, or 413 while the body
/// streams in), held until the body has ended. Envoy resets an HTTP/2 stream whose answer is complete
/// before its request (`RST_STREAM` `NO_ERROR`), and clients still uploading (curl among them) then drop
/// the answer; answering after the body has ended avoids the reset. The body is dropped as it comes.
struct Held {
    answer: Decision,
    /// Body bytes read and dropped so far.
    drained: usize,
}

/// The route-level role for one request.
pub struct Pipeline {
    x: Exchange,
    request: Vec<Box<dyn Stage>>,
    response: Vec<Box<dyn Stage>>,
    pending: Option<Pending>,
    held: Option<Held>,
    ended: bool,
    done: bool,
}

impl Pipeline {
    pub fn new(cfg: Rc<Config>) -> Self {
        let request = request_stages(&cfg);
        let response = response_stages(&cfg);
        Pipeline::with_stages(cfg, request, response)
    }

    /// A pipeline of the given stages (tests; a future config-driven list).
    pub fn with_stages(cfg: Rc<Config>, request: Vec<Box<dyn Stage>>, response: Vec<Box<dyn Stage>>) -> Self {
        Pipeline {
            x: Exchange {
                cfg,
                api: ClientApi::OpenAi,
                op: None,
                path: String::new(),
                started_ns: 0,
                key: None,
                user: None,
                team: None,
                team_asked: None,
                ask: None,
                steering: Vec::new(),
                forwarded: false,
                reservation: None,
                fleet_hold: None,
                fleet_outcome: None,
                fleet_settle: Vec::new(),
                cache: None,
                cache_put: None,
                translator: None,
                translator_mode: None,
                status: 0,
                status_change: None,
                late_set: Vec::new(),
                response_bytes: 0,
                first_byte_ns: None,
                served: None,
                served_price: None,
                reported: None,
                settled: None,
                attempts: 0,
                sent: None,
                record: None,
            },
            request,
            response,
            pending: None,
            held: None,
            ended: false,
            done: false,
        }
    }

    /// What the stages know (tests and the host's reads).
    pub fn exchange(&self) -> &Exchange {
        &self.x
    }

    /// When the request arrived (for the latency measurements).
    pub fn set_start(&mut self, now_ns: u64) {
        self.x.started_ns = now_ns;
    }

    pub fn started_ns(&self) -> u64 {
        self.x.started_ns
    }

    /// The client API, known once the request headers are in.
    pub fn client_api(&self) -> ClientApi {
        self.x.api
    }

    /// The fleet-wide settlement of a request that is over, for the host to send (batched) to the
    /// rate-limit service.
    pub fn take_fleet_settlement(&mut self) -> Vec<crate::limits::fleet::Descriptor> {
        std::mem::take(&mut self.x.fleet_settle)
    }

    /// The fleet tier's `Put` of the answer this request stored (`cache.fleet`), for the host to queue.
    pub fn take_cache_put(&mut self) -> Option<Vec<u8>> {
        self.x.cache_put.take()
    }

    /// Whether [`Pipeline::on_done`] has run.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The request headers: the client API's front door, then each request stage's header hook. An answer
    /// made here for a request that has a body is held until that body has ended (it is read and
    /// dropped, up to [`Pipeline::drain_limit`] bytes; a larger declared `content-length` is answered at
    /// once): the host sees `NeedBody`, then [`Pipeline::is_draining`].
    pub fn on_request_headers(&mut self, h: &dyn Headers, end_of_stream: bool) -> Decision {
        self.on_request_headers_with(h, &NoMetadata, end_of_stream)
    }

    /// [`Pipeline::on_request_headers`] with the request's metadata from Envoy's filters before this one
    /// (where `jwt_authn` leaves a verified token's claims), read only if a stage asks.
    pub fn on_request_headers_with(
        &mut self,
        h: &dyn Headers,
        verified: &dyn Verified,
        end_of_stream: bool,
    ) -> Decision {
        let d = self.headers_decision(h, verified, end_of_stream);
        if end_of_stream || !matches!(d.step, Step::Respond(_)) {
            return d;
        }
        let declared = h.get("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.drain_limit() as u64) {
            return d;
        }
        self.held = Some(Held { answer: d, drained: 0 });
        Decision::new(Step::NeedBody)
    }

    /// The most body bytes a request whose answer is held may send before the answer goes out anyway
    /// (then Envoy resets an HTTP/2 stream after it, and the client may miss it).
    pub fn drain_limit(&self) -> usize {
        self.x.cfg.max_body_bytes.saturating_mul(DRAIN_FACTOR)
    }

    /// Whether the request's answer is held while its body is read and dropped: the host then drops each
    /// piece of the body it reports to [`Pipeline::on_body_progress`].
    pub fn is_draining(&self) -> bool {
        self.held.is_some()
    }

    fn headers_decision(&mut self, h: &dyn Headers, verified: &dyn Verified, end_of_stream: bool) -> Decision {
        let method = h.get(":method").unwrap_or_default();
        let path = h.get(":path").unwrap_or_default();
        self.x.api = ClientApi::for_path(&path);
        match request::classify(&method, &path) {
            Ok(op) => self.x.op = Some(op),
            Err(e) => return self.x.fail(e),
        }
        self.x.path = path;
        for stage in self.request.iter_mut() {
            match stage.on_request_headers(&mut self.x, h, verified, end_of_stream) {
                Flow::Next => {}
                Flow::Fail(e) => return self.x.fail(e),
                Flow::Respond(r) | Flow::Answer(r) => return Decision::respond(r),
                Flow::Forward(d) => return d,
                Flow::Callout(_) => {
                    return self.x.fail(ApiError::gateway("a stage asked for a callout before the body"));
                }
            }
        }
        let mut d = Decision::new(Step::NeedBody);
        d.remove.extend_from_slice(CREDENTIAL_HEADERS);
        d.remove.extend_from_slice(INTERNAL_HEADERS);
        // Every other header the client sent that is not forwarded (the allow-list).
        self.x.cfg.forwarding.sort(h, &mut d.drop, &mut self.x.steering);
        // `content-length` stays until the body is in: then it is set to the length of the body written
        // here, or left for the upstream role to drop when it rewrites an attempt's body. A request with a
        // length goes upstream with one, not chunked.
        d
    }

    /// Called as the body comes in, with the size buffered so far (while draining: the size of the piece
    /// the host drops). Returns `None` once the whole body is in and within the limit: then the host
    /// hands it to [`Pipeline::on_request_body`]. A body over `max_body_bytes` is refused with 413, held
    /// like the header-time answers until the body ends or passes [`Pipeline::drain_limit`].
    pub fn on_body_progress(&mut self, buffered: usize, end_of_stream: bool) -> Option<Decision> {
        let limit = self.drain_limit();
        if let Some(held) = &mut self.held {
            held.drained = held.drained.saturating_add(buffered);
            if end_of_stream || held.drained > limit {
                return self.held.take().map(|h| h.answer);
            }
            return Some(Decision::new(Step::NeedBody));
        }
        if buffered > self.x.cfg.max_body_bytes {
            let answer = self.x.fail(ApiError::too_large(self.x.cfg.max_body_bytes));
            if end_of_stream {
                return Some(answer);
            }
            self.held = Some(Held { answer, drained: buffered });
            return Some(Decision::new(Step::NeedBody));
        }
        if !end_of_stream {
            return Some(Decision::new(Step::NeedBody));
        }
        None
    }

    /// The whole request body.
    pub fn on_request_body(&mut self, bytes: &[u8], ctx: &Ctx) -> Decision {
        self.run_body(bytes, 0, None, ctx)
    }

    /// The outcome of the callout the request is paused on. `None` when no callout is pending (a late
    /// answer for a request that is over): nothing to do.
    pub fn on_callout(&mut self, outcome: CalloutOutcome, ctx: &Ctx) -> Option<Decision> {
        let p = self.pending.take()?;
        if self.done {
            return None;
        }
        let outcome = outcome.by_deadline(ctx.now_ns, p.deadline_ns);
        Some(self.run_body(&p.body, p.stage, Some(outcome), ctx))
    }

    /// Whether the request waits for a callout.
    pub fn is_paused(&self) -> bool {
        self.pending.is_some()
    }

    /// Runs the body stages from `from` (resuming that one with `outcome` when given).
    fn run_body(&mut self, bytes: &[u8], from: usize, mut outcome: Option<CalloutOutcome>, ctx: &Ctx) -> Decision {
        let Some(op) = self.x.op else { return Decision::new(Step::Continue) };
        let req = match Request::parse(op, bytes) {
            None => return Decision::new(Step::Continue),
            Some(Err(e)) => return self.x.fail(e),
            Some(Ok(r)) => r,
        };
        for (i, stage) in self.request.iter_mut().enumerate().skip(from) {
            let flow = match outcome.take() {
                Some(o) => stage.on_callout(&mut self.x, &req, o, ctx),
                None => stage.on_request_body(&mut self.x, &req, ctx),
            };
            match flow {
                Flow::Next => {}
                Flow::Fail(e) => return self.x.fail(e),
                Flow::Respond(r) => return Decision::respond(r),
                Flow::Forward(d) => return d,
                Flow::Answer(r) => return Decision::respond(self.answer(r, ctx)),
                Flow::Callout(c) => {
                    self.pending =
                        Some(Pending { stage: i, body: bytes.to_vec(), deadline_ns: ctx.now_ns + c.timeout_ns() });
                    return Decision::new(Step::Callout(c));
                }
            }
        }
        Decision::new(Step::Continue)
    }

    /// An answer the gateway made in full: through the response stages, and settled now.
    fn answer(&mut self, mut r: LocalResponse, ctx: &Ctx) -> LocalResponse {
        let content_type = r.headers.iter().find(|(k, _)| *k == "content-type").map(|(_, v)| v.clone());
        r.headers.extend(self.on_response_headers(r.status, content_type.as_deref(), None, true));
        let body = std::mem::take(&mut r.body);
        r.body = self.pass_body(body, true, ctx.now_ns).bytes;
        self.end_response(ctx);
        r
    }

    /// Whether a response that is not a success must be told apart as the provider's own or Envoy's
    /// (`from_provider` of [`Pipeline::on_response_headers`]): for every forwarded request (a provider's
    /// errors are translated or reshaped, Envoy's are not).
    pub fn tells_errors_apart(&self) -> bool {
        self.x.forwarded
    }

    /// The response headers (from the provider, Envoy or this filter), with what the upstream role said
    /// served the request and whether the response is the provider's (not one Envoy made): returns the
    /// headers to set. See also [`Pipeline::status_change`].
    pub fn on_response_headers(
        &mut self,
        status: u16,
        content_type: Option<&str>,
        served: Option<(&str, &str)>,
        from_provider: bool,
    ) -> Vec<(&'static str, String)> {
        let mut head = ResponseHead { status, content_type, served, from_provider, set: Vec::new() };
        for stage in self.response.iter_mut() {
            stage.on_response_headers(&mut self.x, &mut head);
        }
        head.set
    }

    /// The response head as the host applies it: the headers to set (`:status` included when it
    /// changes) and what becomes of `content-length` ([`framing::policy`]).
    pub fn response_head(
        &mut self,
        status: u16,
        content_type: Option<&str>,
        served: Option<(&str, &str)>,
        from_provider: bool,
        has_content_length: bool,
        end_of_stream: bool,
    ) -> (Vec<(&'static str, String)>, Framing) {
        let mut set = self.on_response_headers(status, content_type, served, from_provider);
        if let Some(s) = self.status_change() {
            set.push((":status", s.to_string()));
        }
        let needs = self.body_needs();
        (set, framing::policy(needs.rewrite, needs.buffer, has_content_length, end_of_stream))
    }

    /// The status the client gets instead of the one the response headers carry.
    pub fn status_change(&self) -> Option<u16> {
        self.x.status_change
    }

    /// What a held response head ([`Framing::HoldForLength`]) gets once the whole body has passed: the
    /// status when the body changed it, and the headers the body stages decided at the end (the host
    /// adds the new `content-length`).
    pub fn held_head(&mut self) -> Vec<(&'static str, String)> {
        let mut set = std::mem::take(&mut self.x.late_set);
        if let Some(s) = self.x.status_change {
            set.push((":status", s.to_string()));
        }
        set
    }

    fn body_needs(&self) -> BodyNeeds {
        self.response.iter().fold(BodyNeeds::default(), |n, s| n.or(s.body_needs(&self.x)))
    }

    /// Whether the response body may change on its way (then its `content-length` must go).
    pub fn rewrites_body(&self) -> bool {
        self.body_needs().rewrite
    }

    /// Whether the response body must be shown to [`Pipeline::on_response_body`]; when not, the host
    /// only reports its size to [`Pipeline::count_response_bytes`].
    pub fn watches_body(&self) -> bool {
        self.body_needs().watch
    }

    /// Whether the response body must be held until it is complete, then shown whole.
    pub fn buffers_response(&self) -> bool {
        self.body_needs().buffer
    }

    /// Whether the next response bytes need the time (only the first ones do: time to first token).
    pub fn wants_time(&self) -> bool {
        self.x.first_byte_ns.is_none()
    }

    pub fn count_response_bytes(&mut self, n: usize, now_ns: u64) {
        self.x.count(n, now_ns);
    }

    /// A piece of the response body: returns the bytes to send instead when they change.
    pub fn on_response_body(&mut self, bytes: Vec<u8>, end: bool, now_ns: u64) -> Option<Vec<u8>> {
        let chunk = self.pass_body(bytes, end, now_ns);
        chunk.changed.then_some(chunk.bytes)
    }

    fn pass_body(&mut self, bytes: Vec<u8>, end: bool, now_ns: u64) -> Chunk {
        let mut chunk = Chunk { bytes, changed: false, end, now_ns };
        for stage in self.response.iter_mut() {
            stage.on_response_body(&mut self.x, &mut chunk);
        }
        chunk
    }

    /// The answer is complete: the response stages settle it (once).
    fn end_response(&mut self, ctx: &Ctx) {
        if self.ended {
            return;
        }
        self.ended = true;
        for stage in self.response.iter_mut() {
            stage.on_response_end(&mut self.x, ctx);
        }
    }

    /// The stream is over (answered, failed or abandoned): settles or releases what is held, frees a
    /// pending callout's body, and returns the request's record, once. `attempts` is how many upstream
    /// attempts the request made.
    pub fn on_done(&mut self, ctx: &Ctx, attempts: u32) -> Option<Record> {
        self.finish(ctx, attempts, None)
    }

    /// [`Pipeline::on_done`] when the stream ended before this filter saw the whole response (Envoy's
    /// access-log time), with what Envoy says the client got: the record follows that status (a local
    /// reply Envoy made after the head passed here, e.g. its buffer limit) and counts an answer that
    /// broke off as an upstream error.
    pub fn on_done_with(&mut self, ctx: &Ctx, attempts: u32, sent: Sent) -> Option<Record> {
        self.finish(ctx, attempts, Some(sent))
    }

    fn finish(&mut self, ctx: &Ctx, attempts: u32, sent: Option<Sent>) -> Option<Record> {
        if self.done {
            return None;
        }
        self.done = true;
        if let Some(s) = sent {
            if s.status != 0 && s.status != self.x.status {
                self.x.status = s.status;
            }
            self.x.sent = Some(s);
        }
        self.pending = None;
        self.held = None;
        self.x.attempts = attempts;
        self.end_response(ctx);
        for stage in self.request.iter_mut().chain(self.response.iter_mut()) {
            stage.on_done(&mut self.x, ctx);
        }
        self.x.record.take()
    }
}

/// A body cut to `max` bytes for the log (lossy UTF-8, marked when cut).
pub(crate) fn cut(bytes: &[u8], max: usize) -> String {
    let head = bytes.get(..max.min(bytes.len())).unwrap_or_default();
    let mut s = String::from_utf8_lossy(head).into_owned();
    if bytes.len() > max {
        s.push_str(" [...]");
    }
    s
}
