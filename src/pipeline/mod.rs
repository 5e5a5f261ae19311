//! The route-level role as a pipeline of stages. It runs in the listener's HTTP filter chain, once per
//! client request: the client API's front door classifies the request, then the request stages run in
//! order (authenticate, resolve the model, authorize, policy stages, local limits, dispatch), and the
//! response stages run over the answer (translate, usage, settle, telemetry).
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
pub mod callout;
pub mod dispatch;
pub mod framing;
pub mod limits;
pub mod registry;
pub mod resolve;
pub mod settle;
pub mod telemetry;
pub mod translate;
pub mod usage;

#[cfg(test)]
mod tests;

use crate::api::anthropic as anthropic_input;
use crate::api::error::ApiError;
use crate::api::openai::{self as request, ChatRequest, EmbeddingsRequest, Operation};
pub use crate::api::ClientApi;
use crate::config::{Config, Key, Price};
use crate::http::{Decision, Headers, LocalResponse, Step, CREDENTIAL_HEADERS, INTERNAL_HEADERS};
use crate::limits::{Reservation, SharedStore};
use crate::observe::Record;
use crate::providers::{mock, BodyMode, ResponseTranslator, Usage};
pub use callout::{Callout, CalloutKind, CalloutOutcome};
pub use framing::Framing;
use std::rc::Rc;

/// Host facts a callback needs: the time (passed in, never read by the core) and the shared store.
pub struct Ctx<'a> {
    pub clock: mock::Clock,
    pub now_ns: u64,
    pub store: &'a dyn SharedStore,
}

/// The request body as the client API's front door parsed it (borrowing the body's bytes).
pub enum Parsed<'a> {
    Chat(ChatRequest<'a>),
    Embeddings(EmbeddingsRequest<'a>),
    Messages(anthropic_input::MessagesRequest),
}

/// The whole request body, parsed.
pub struct Request<'a> {
    pub bytes: &'a [u8],
    pub parsed: Parsed<'a>,
}

impl<'a> Request<'a> {
    /// Parses `bytes` for `op` (`None` for operations that have no body).
    pub fn parse(op: Operation, bytes: &'a [u8]) -> Option<Result<Request<'a>, ApiError>> {
        let parsed = match op {
            Operation::ChatCompletions => request::parse_chat(bytes).map(Parsed::Chat),
            Operation::Embeddings => request::parse_embeddings(bytes).map(Parsed::Embeddings),
            Operation::Messages => anthropic_input::parse(bytes).map(Parsed::Messages),
            Operation::ListModels | Operation::RetrieveModel => return None,
        };
        Some(parsed.map(|parsed| Request { bytes, parsed }))
    }

    /// The model the client asked for.
    pub fn model(&self) -> &str {
        match &self.parsed {
            Parsed::Chat(c) => &c.model,
            Parsed::Embeddings(e) => &e.model,
            Parsed::Messages(m) => &m.model,
        }
    }

    pub fn chat(&self) -> Option<&ChatRequest<'a>> {
        match &self.parsed {
            Parsed::Chat(c) => Some(c),
            _ => None,
        }
    }

    pub fn stream(&self) -> bool {
        match &self.parsed {
            Parsed::Chat(c) => c.is_stream(),
            Parsed::Embeddings(_) => false,
            Parsed::Messages(m) => m.stream,
        }
    }

    /// Whether the client asked for the usage (a streaming chat client must ask; others always get it).
    pub fn client_wants_usage(&self) -> bool {
        match &self.parsed {
            Parsed::Chat(c) => c.include_usage(),
            _ => true,
        }
    }

    /// The most output tokens the request allows, when it says.
    pub fn max_output(&self) -> Option<u64> {
        match &self.parsed {
            Parsed::Chat(c) => c.max_completion_tokens.or(c.max_tokens),
            Parsed::Embeddings(_) => Some(0),
            Parsed::Messages(m) => Some(m.max_tokens),
        }
    }
}

/// What the resolve stage learned of the request: the model and the sizes a reservation assumes.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The configured model's name.
    pub alias: String,
    pub stream: bool,
    pub client_wants_usage: bool,
    /// Documented estimate: request bytes / 4.
    pub prompt_estimate: u64,
    /// The request's max output tokens, or the configured default.
    pub output_reserved: u64,
}

/// The usage and cost of an answer, once settled.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settled {
    pub usage: Option<Usage>,
    pub cost_micros: u64,
    /// The provider reported the usage (else it is the documented estimate).
    pub reported: bool,
}

/// What the stages of one request know and hand on to each other.
pub struct Exchange {
    pub cfg: Rc<Config>,
    pub api: ClientApi,
    pub op: Option<Operation>,
    /// The client's `:path`.
    pub path: String,
    pub started_ns: u64,
    /// The caller: an index into `cfg.keys` (authenticate).
    pub key: Option<usize>,
    /// The model and sizes (resolve).
    pub ask: Option<Ask>,
    /// The request was admitted and answered or sent on (dispatch).
    pub forwarded: bool,
    /// What the local limits hold until the answer is settled (limits, settle).
    pub reservation: Option<Reservation>,
    /// The translator of a request the route role translated for its model's only target (dispatch,
    /// translate): the provider's answer comes back untouched by the upstream role and is translated here.
    pub translator: Option<Box<dyn ResponseTranslator>>,
    /// How `translator` takes the response body, once the provider's headers are in.
    pub translator_mode: Option<BodyMode>,
    /// The status the client gets.
    pub status: u16,
    /// The status the client gets instead of the one the response headers carry.
    pub status_change: Option<u16>,
    pub response_bytes: u64,
    pub first_byte_ns: Option<u64>,
    /// (provider, model) that served.
    pub served: Option<(String, String)>,
    pub served_price: Option<Price>,
    /// Usage read from the answer (usage stage).
    pub reported: Option<Usage>,
    pub settled: Option<Settled>,
    /// How many upstream attempts the request made (known when it is over).
    pub attempts: u32,
    /// The request's record, made when it is over (telemetry).
    pub record: Option<Record>,
}

impl Exchange {
    pub fn key(&self) -> Option<&Key> {
        self.key.and_then(|i| self.cfg.keys.get(i))
    }

    /// An error answer in the client's shape.
    pub fn fail(&self, e: ApiError) -> Decision {
        Decision::respond(self.api.error_response(e))
    }

    /// Counts response bytes as the client gets them (and the time of the first ones).
    pub fn count(&mut self, n: usize, now_ns: u64) {
        if n > 0 && self.first_byte_ns.is_none() {
            self.first_byte_ns = Some(now_ns);
        }
        self.response_bytes += n as u64;
    }
}

/// A stage's answer to an event.
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

    /// The request headers (`end_of_stream`: there is no body).
    fn on_request_headers(&mut self, _x: &mut Exchange, _h: &dyn Headers, _end_of_stream: bool) -> Flow {
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
    fn or(self, o: BodyNeeds) -> BodyNeeds {
        BodyNeeds { watch: self.watch || o.watch, rewrite: self.rewrite || o.rewrite, buffer: self.buffer || o.buffer }
    }
}

/// The request stages, in order. Policy stages (cache lookup, guardrails, fleet-wide limits) go between
/// authorize and the local limits.
pub fn request_stages(_cfg: &Config) -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(authenticate::Authenticate),
        Box::new(resolve::Resolve),
        Box::new(authorize::Authorize),
        Box::new(limits::LocalLimits),
        Box::new(dispatch::Dispatch),
    ]
}

/// The response stages, in order.
pub fn response_stages(_cfg: &Config) -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(translate::Translate),
        Box::new(usage::UsageStage::default()),
        Box::new(settle::Settle),
        Box::new(telemetry::Telemetry),
    ]
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

/// The route-level role for one request.
pub struct Pipeline {
    x: Exchange,
    request: Vec<Box<dyn Stage>>,
    response: Vec<Box<dyn Stage>>,
    pending: Option<Pending>,
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
                ask: None,
                forwarded: false,
                reservation: None,
                translator: None,
                translator_mode: None,
                status: 0,
                status_change: None,
                response_bytes: 0,
                first_byte_ns: None,
                served: None,
                served_price: None,
                reported: None,
                settled: None,
                attempts: 0,
                record: None,
            },
            request,
            response,
            pending: None,
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

    /// Whether [`Pipeline::on_done`] has run.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The request headers: the client API's front door, then each request stage's header hook.
    pub fn on_request_headers(&mut self, h: &dyn Headers, end_of_stream: bool) -> Decision {
        let method = h.get(":method").unwrap_or_default();
        let path = h.get(":path").unwrap_or_default();
        self.x.api = ClientApi::for_path(&path);
        match request::classify(&method, &path) {
            Ok(op) => self.x.op = Some(op),
            Err(e) => return self.x.fail(e),
        }
        self.x.path = path;
        for stage in self.request.iter_mut() {
            match stage.on_request_headers(&mut self.x, h, end_of_stream) {
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
        // `content-length` stays until the body is in: then it is set to the length of the body written
        // here, or left for the upstream role to drop when it rewrites an attempt's body. A request with a
        // length goes upstream with one, not chunked.
        d
    }

    /// Called as the body comes in, with the size buffered so far. Returns `None` once the whole body is
    /// in and within the limit: then the host hands it to [`Pipeline::on_request_body`].
    pub fn on_body_progress(&self, buffered: usize, end_of_stream: bool) -> Option<Decision> {
        if buffered > self.x.cfg.max_body_bytes {
            return Some(self.x.fail(ApiError::too_large(self.x.cfg.max_body_bytes)));
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
    /// (`from_provider` of [`Pipeline::on_response_headers`]): only when this filter translates it.
    pub fn translates_response(&self) -> bool {
        self.x.translator.is_some()
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
        if self.done {
            return None;
        }
        self.done = true;
        self.pending = None;
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
