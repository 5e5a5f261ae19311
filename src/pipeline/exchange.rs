//! What the stages of one request share: the parsed request, the facts one stage hands to the next
//! ([`Exchange`]), and what the answer used once settled.

use super::ClientApi;
use crate::api::anthropic as anthropic_input;
use crate::api::error::ApiError;
use crate::api::openai::{self as request, ChatRequest, EmbeddingsRequest, Operation};
use crate::api::responses::{self, ResponsesRequest};
use crate::config::identity::{subject_team, subject_user};
use crate::config::{Config, Key, Price, Team, TeamId};
use crate::http::Decision;
use crate::identity::User;
use crate::limits::fleet::FleetLimits;
use crate::limits::fleet::{Descriptor, Hold};
use crate::limits::Reservation;
use crate::limits::Subject;
use crate::observe::Record;
use crate::providers::{BodyMode, ResponseTranslator, Usage};
use std::borrow::Cow;
use std::rc::Rc;

/// The request body as the client API's front door parsed it (borrowing the body's bytes).
pub enum Parsed<'a> {
    Chat(ChatRequest<'a>),
    Embeddings(EmbeddingsRequest<'a>),
    Messages(anthropic_input::MessagesRequest),
    Responses(ResponsesRequest),
}

/// The whole request body, parsed.
pub struct Request<'a> {
    pub bytes: &'a [u8],
    pub parsed: Parsed<'a>,
}

impl<'a> Request<'a> {
    /// Checks ([`crate::api::json::check`]) and parses `bytes` for `op` (`None` for operations that have
    /// no body).
    pub fn parse(op: Operation, bytes: &'a [u8]) -> Option<Result<Request<'a>, ApiError>> {
        if matches!(op, Operation::ListModels | Operation::RetrieveModel) {
            return None;
        }
        // One validation for every body, whatever path its model takes afterwards.
        if let Err(e) = crate::api::json::check(bytes) {
            return Some(Err(e));
        }
        let parsed = match op {
            Operation::ChatCompletions => request::parse_chat(bytes).map(Parsed::Chat),
            Operation::Embeddings => request::parse_embeddings(bytes).map(Parsed::Embeddings),
            Operation::Messages => anthropic_input::parse(bytes).map(Parsed::Messages),
            Operation::Responses => responses::parse(bytes).map(Parsed::Responses),
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
            Parsed::Responses(r) => &r.model,
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
            Parsed::Responses(r) => r.stream,
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
            Parsed::Responses(r) => r.max_output_tokens,
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

/// What Envoy reports of the response when the stream is over (its `response.code` and
/// `response.code_details`), as facts for the request's record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// The status the client got (0: none was sent).
    pub status: u16,
    /// The provider's answer broke off after it had started (Envoy's details
    /// `upstream_reset_after_response_started{...}`).
    pub broke_off: bool,
}

impl Sent {
    /// From Envoy's `response.code` and `response.code_details`.
    pub fn from_envoy(code: u16, details: &str) -> Sent {
        Sent { status: code, broke_off: details.starts_with("upstream_reset_after_response_started") }
    }
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
    /// Or the caller: a user with a JWT Envoy verified (authenticate).
    pub user: Option<User>,
    /// The team the request is attributed to: a key's team (authenticate), a user's for the model
    /// (authorize). Its limits count the request; `cache.scope: team` shares within it.
    pub team: Option<TeamId>,
    /// `x-switchyard-team` as a user sent it: the team to attribute the request to (authorize checks).
    pub team_asked: Option<String>,
    /// The model and sizes (resolve).
    pub ask: Option<Ask>,
    /// Provider-steering headers the client sent that some provider forwards (header time; dispatch
    /// decides per target).
    pub steering: Vec<crate::forwarding::Noted>,
    /// The request was admitted and answered or sent on (dispatch).
    pub forwarded: bool,
    /// What the local limits hold until the answer is settled (limits, settle).
    pub reservation: Option<Reservation>,
    /// What the fleet-wide limits hold until the answer is settled (fleet_limits, fleet_settle).
    pub fleet_hold: Option<Hold>,
    /// What the rate-limit service said of the request: `ok`, `over_limit` or `unavailable`.
    pub fleet_outcome: Option<&'static str>,
    /// The settlement the host sends the rate-limit service after the response (fleet_settle).
    pub fleet_settle: Vec<Descriptor>,
    /// What the response cache did (cache stages).
    pub cache: Option<super::cache::CacheState>,
    /// The fleet tier's `Put` of a stored answer, for the host to queue (cache capture, `cache.fleet`).
    pub cache_put: Option<Vec<u8>>,
    /// The translator of a request the route role translated for its model's only target (dispatch,
    /// translate): the provider's answer comes back untouched by the upstream role and is translated here.
    pub translator: Option<Box<dyn ResponseTranslator>>,
    /// How `translator` takes the response body, once the provider's headers are in.
    pub translator_mode: Option<BodyMode>,
    /// The status the client gets.
    pub status: u16,
    /// The status the client gets instead of the one the response headers carry.
    pub status_change: Option<u16>,
    /// Headers a held response head gets once the body is complete (set by body hooks that decide
    /// them only then, e.g. the content type of an error made from the body).
    pub late_set: Vec<(&'static str, String)>,
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
    /// What Envoy says the client got, when the request ended without this filter seeing the response
    /// through (Envoy answered after the head had passed here, or the answer broke off).
    pub sent: Option<Sent>,
    /// The request's record, made when it is over (telemetry).
    pub record: Option<Record>,
}

impl Exchange {
    pub fn key(&self) -> Option<&Key> {
        self.key.and_then(|i| self.cfg.keys.get(i))
    }

    /// A caller is known (a key or a user).
    pub fn authenticated(&self) -> bool {
        self.key.is_some() || self.user.is_some()
    }

    /// Whether the caller may use `model` (a key by its list, a user by their teams' grants).
    pub fn may_use(&self, model: &str) -> bool {
        match (self.key(), &self.user) {
            (Some(k), _) => k.may_use(model),
            (None, Some(u)) => u.may_use(&self.cfg, model),
            (None, None) => false,
        }
    }

    /// The attributed team.
    pub fn team(&self) -> Option<&Team> {
        self.team.and_then(|t| self.cfg.team(t))
    }

    /// Whose local limits a request for `model` counts against: its key or user, then its team (those
    /// with limits only).
    pub fn subjects(&self, model: &str) -> [Option<Subject<'_>>; 2] {
        let principal = match (self.key(), &self.user) {
            (Some(k), _) => Some(&k.limits).filter(|l| !l.is_empty()).map(|_| Subject::key(k, model)),
            (None, Some(u)) => self
                .cfg
                .identity
                .as_ref()
                .map(|i| &i.user_limits)
                .filter(|l| !l.is_empty())
                .map(|l| Subject::user(&u.id, l, model)),
            (None, None) => None,
        };
        let team = self.team().filter(|t| !t.limits.is_empty()).map(|t| Subject::team(t, model));
        [principal, team]
    }

    /// Whose fleet-wide limits the request counts against: (subject id, its `limits.fleet`) of its key
    /// (the key's id) or user (`user:<id>`), then of its team (`team:<name>`).
    pub fn fleet_subjects(&self) -> [Option<(Cow<'_, str>, &FleetLimits)>; 2] {
        let principal = match (self.key(), &self.user) {
            (Some(k), _) => k.limits.fleet.as_ref().map(|f| (Cow::Borrowed(k.id.as_str()), f)),
            (None, Some(u)) => self
                .cfg
                .identity
                .as_ref()
                .and_then(|i| i.user_limits.fleet.as_ref())
                .map(|f| (Cow::Owned(subject_user(&u.id)), f)),
            (None, None) => None,
        };
        let team = self.team().and_then(|t| t.limits.fleet.as_ref().map(|f| (Cow::Owned(subject_team(&t.name)), f)));
        [principal, team]
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
