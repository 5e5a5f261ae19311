//! Cache: exact-match response caching for models with a `cache` section (`crate::cache` holds the key,
//! the capture of an answer into its stored form, the rendering of a stored answer in any client format,
//! and the process tier in Envoy's shared data). Three stages, in the pipeline only when some model is
//! cached:
//!
//! - [`CacheLookup`], a request stage after the limits (so that a hit counts as a request, as the
//!   limits count it) and before dispatch: `Cache-Control: no-store` bypasses the cache, `no-cache` skips
//!   the lookup but stores the answer; a hit is answered here, rendered for the client's API and mode.
//!   With `cache.fleet`, a miss in the process tier asks the fleet tier (a gRPC `Get` to
//!   `fleet_limits.cluster`, within `fleet_limits.timeout_ms`): an entry found there fills the process
//!   tier and is answered as a local hit is. The fleet tier failing, slow, or holding an unreadable or
//!   expired entry is a miss, never an error to the client, whatever `fleet_limits.failure_mode` says
//!   (one log line per failure episode and worker).
//! - [`CacheCapture`], a response stage before the usage stage (which may drop the usage chunk a chat
//!   client did not ask for; the stored answer keeps its usage): names the outcome in
//!   `x-switchyard-cache` (`hit`, `miss`, `bypass`; hits also get `Age`), and keeps a complete,
//!   successful answer no larger than the model's `max_entry_bytes`; with `cache.fleet` the answer is also
//!   queued for the fleet tier (`Exchange::cache_put`, a `Put` the host sends from its tick).
//! - [`CacheCharge`], a response stage after the usage stage and before settle: a hit is charged no
//!   tokens and no cost (the tokens and cost it saved are recorded), unless the model says `charge: true`.
//!
//! Never cached: embeddings, and Responses requests that depend on or create state at the provider
//! (`previous_response_id`, `conversation`, or a target that answers the Responses API itself without
//! `store: false`: OpenAI stores those answers by default, and a cached copy's id would be unknown there).

use super::{Callout, CalloutKind, CalloutOutcome, Chunk, Ctx, Exchange, Flow, Parsed, Request, ResponseHead, Stage};
use crate::api::openai::Operation;
use crate::cache::fleet::{self, Refused};
use crate::cache::store::Times;
use crate::cache::{self, Capture, Format};
use crate::config::{CacheScope, ModelCache};
use crate::http::{Headers, LocalResponse};
use crate::identity::Verified;
use crate::limits::fleet::FleetService;
use crate::providers::Usage;
use std::cell::Cell;

thread_local! {
    /// The fleet tier is failing (this VM saw it last): one log line per episode, not per request.
    static FLEET_FAILING: Cell<bool> = const { Cell::new(false) };
}

/// What the cache did for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    Bypass,
}

impl CacheOutcome {
    pub fn name(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Bypass => "bypass",
        }
    }
}

/// Which tier served a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// This Envoy's shared data.
    Process,
    /// Redis through switchyard-limits (`cache.fleet`).
    Fleet,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Process => "process",
            Tier::Fleet => "fleet",
        }
    }
}

/// What the fleet tier said of a lookup: the tags of `switchyard.cache_fleet.outcome.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetOutcome {
    /// Found, readable, in time: served (and put in the process tier).
    Hit,
    /// Not there.
    Miss,
    /// There, but past its expiry (Redis keeps keys up to a second longer; Envoys' clocks differ).
    Expired,
    /// There, but not a readable entry for this key: a miss.
    Corrupt,
    /// No answer (the service or its Redis down, slower than the timeout, an error status): a miss.
    Unavailable,
}

impl FleetOutcome {
    pub fn name(self) -> &'static str {
        match self {
            FleetOutcome::Hit => "hit",
            FleetOutcome::Miss => "miss",
            FleetOutcome::Expired => "expired",
            FleetOutcome::Corrupt => "corrupt",
            FleetOutcome::Unavailable => "unavailable",
        }
    }
}

/// The cache's facts about one request (lookup, capture, charge, telemetry).
#[derive(Debug, Clone)]
pub struct CacheState {
    pub outcome: CacheOutcome,
    /// The tier that served a hit.
    pub tier: Option<Tier>,
    /// What the fleet tier said, when it was asked.
    pub fleet: Option<FleetOutcome>,
    /// The model's `cache` section.
    pub config: ModelCache,
    /// The entry's key (`None`: the request has no key, e.g. bypassed before it was made).
    pub hash: Option<[u8; 32]>,
    /// The answer may be stored.
    pub store: bool,
    /// A hit's age in seconds.
    pub age_secs: u64,
    /// Tokens and cost a hit saved (usage as the stored answer reports it).
    pub saved: Option<(Usage, u64)>,
    /// The answer was stored, and what that did to the process tier: (entries evicted, bytes delta).
    pub stored: Option<(u32, i64)>,
}

impl CacheState {
    fn new(config: ModelCache, outcome: CacheOutcome, hash: Option<[u8; 32]>, store: bool) -> Self {
        CacheState { outcome, tier: None, fleet: None, config, hash, store, age_secs: 0, saved: None, stored: None }
    }
}

/// What the client's `Cache-Control` asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Directive {
    #[default]
    Normal,
    /// Do not look up; store the answer.
    NoCache,
    /// Neither look up nor store.
    NoStore,
}

fn directive(h: &dyn Headers) -> Directive {
    let Some(v) = h.get("cache-control") else { return Directive::Normal };
    let mut d = Directive::Normal;
    for part in v.split(',') {
        let token = part.trim();
        if token.eq_ignore_ascii_case("no-store") {
            return Directive::NoStore;
        }
        if token.eq_ignore_ascii_case("no-cache") {
            d = Directive::NoCache;
        }
    }
    d
}

/// Who shares the request's cached answer: `shared`; `team:<name>` (a key's team, a user's attributed
/// team); else the caller alone, `key:<id>` or `user:<id>`.
fn scope(x: &Exchange, scope: CacheScope) -> Option<String> {
    let team = match (x.key(), &x.user) {
        (Some(key), _) => key.team.as_deref(),
        (None, Some(_)) => x.team().map(|t| t.name.as_str()),
        (None, None) => return None,
    };
    Some(match (scope, team, x.key(), &x.user) {
        (CacheScope::Shared, ..) => "shared".to_string(),
        (CacheScope::Team, Some(team), ..) => format!("team:{team}"),
        (_, _, Some(key), _) => format!("key:{}", key.id),
        (_, _, None, Some(user)) => format!("user:{}", user.id),
        (_, _, None, None) => return None,
    })
}

/// The request stage: looks the answer up, answers a hit.
#[derive(Default)]
pub struct CacheLookup {
    directive: Directive,
}

impl Stage for CacheLookup {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn on_request_headers(&mut self, _x: &mut Exchange, h: &dyn Headers, _v: &dyn Verified, _eos: bool) -> Flow {
        self.directive = directive(h);
        Flow::Next
    }

    fn on_request_body(&mut self, x: &mut Exchange, req: &Request, ctx: &Ctx) -> Flow {
        let (Some(ask), Some(op), true) = (x.ask.as_ref(), x.op, x.authenticated()) else { return Flow::Next };
        let cfg = x.cfg.clone();
        let Some(model) = cfg.models.get(&ask.alias) else { return Flow::Next };
        let Some(mc) = model.cache else { return Flow::Next };
        if !matches!(op, Operation::ChatCompletions | Operation::Messages | Operation::Responses) {
            return Flow::Next;
        }
        if let Parsed::Responses(r) = &req.parsed {
            let native =
                model.targets.iter().any(|t| cfg.provider(t.provider).is_some_and(|p| p.kind.answers_responses()));
            if r.previous_response_id.is_some() || r.conversation || (native && r.store != Some(false)) {
                x.cache = Some(CacheState::new(mc, CacheOutcome::Bypass, None, false));
                return Flow::Next;
            }
        }
        if self.directive == Directive::NoStore {
            x.cache = Some(CacheState::new(mc, CacheOutcome::Bypass, None, false));
            return Flow::Next;
        }
        let Some(scope) = scope(x, mc.scope) else { return Flow::Next };
        let Ok(hash) = cache::key::key_of(op, &scope, &model.name, req.bytes) else {
            x.cache = Some(CacheState::new(mc, CacheOutcome::Bypass, None, false));
            return Flow::Next;
        };
        if self.directive == Directive::NoCache {
            x.cache = Some(CacheState::new(mc, CacheOutcome::Bypass, Some(hash), true));
            return Flow::Next;
        }
        let hit = cfg.cache.layout().get(ctx.store, &hash, ctx.now_ns);
        let answer = hit.as_ref().and_then(|h| render(x, &h.bytes, req, ctx));
        match (hit, answer) {
            (Some(h), Some(answer)) => {
                let mut state = CacheState::new(mc, CacheOutcome::Hit, Some(hash), false);
                state.age_secs = h.age_secs(ctx.now_ns);
                state.tier = Some(Tier::Process);
                x.cache = Some(state);
                // Answered for the model, as the mock is: the response stages measure and settle it.
                x.forwarded = true;
                Flow::Answer(answer)
            }
            // Not there, expired, or unreadable (a corrupt entry): a miss, stored anew; with the fleet
            // tier on, asked there first.
            _ => {
                x.cache = Some(CacheState::new(mc, CacheOutcome::Miss, Some(hash), true));
                match cfg.fleet.as_ref().filter(|_| cfg.cache.fleet) {
                    Some(svc) => Flow::Callout(fleet_get(svc, &hash)),
                    None => Flow::Next,
                }
            }
        }
    }

    /// The fleet tier's answer to a process-tier miss: a hit is put in the process tier and answered;
    /// everything else goes on as the miss it is.
    fn on_callout(&mut self, x: &mut Exchange, req: &Request, outcome: CalloutOutcome, ctx: &Ctx) -> Flow {
        let Some(hash) = x.cache.as_ref().and_then(|s| s.hash) else { return Flow::Next };
        let found = match outcome {
            CalloutOutcome::Answer { body, .. } => fleet::get_response(&body),
            CalloutOutcome::Failed(why) => Err(why),
            CalloutOutcome::TimedOut => Err("no answer in time".to_string()),
        };
        let said = match found {
            Err(why) => {
                if !FLEET_FAILING.with(|f| f.replace(true)) {
                    log::warn!(
                        "response cache: the fleet tier failed ({why}); lookups there are misses until it answers"
                    );
                }
                FleetOutcome::Unavailable
            }
            Ok(found) => {
                if FLEET_FAILING.with(|f| f.replace(false)) {
                    log::warn!("response cache: the fleet tier answers again");
                }
                match found.map(|bytes| fleet::decode_entry(bytes, &hash, ctx.now_ns)) {
                    None => FleetOutcome::Miss,
                    Some(Err(Refused::Expired)) => FleetOutcome::Expired,
                    Some(Err(Refused::Corrupt)) => FleetOutcome::Corrupt,
                    Some(Ok(entry)) => match render(x, &entry.answer, req, ctx) {
                        Some(answer) => return serve_fleet_hit(x, &hash, &entry, answer, ctx),
                        None => FleetOutcome::Corrupt,
                    },
                }
            }
        };
        if let Some(state) = x.cache.as_mut() {
            state.fleet = Some(said);
        }
        Flow::Next
    }
}

/// A stored answer rendered for the request (`None`: unreadable, a miss).
fn render(x: &Exchange, stored: &[u8], req: &Request, ctx: &Ctx) -> Option<LocalResponse> {
    let (ask, op) = (x.ask.as_ref()?, x.op?);
    let model = x.cfg.models.get(&ask.alias)?;
    cache::render(stored, op, ask.stream, ask.client_wants_usage, &model.name, ctx.clock, req.bytes)
}

/// The `Get` of the fleet tier for `hash`.
fn fleet_get(svc: &FleetService, hash: &[u8; 32]) -> Callout {
    Callout {
        cluster: svc.cluster.clone(),
        timeout_ms: svc.timeout_ms,
        kind: CalloutKind::Grpc {
            service: fleet::SERVICE.to_string(),
            method: fleet::GET.to_string(),
            metadata: Vec::new(),
            message: fleet::get_request(hash),
        },
    }
}

/// A fleet hit: put in the process tier with its own stored and expiry times (so its `Age` goes on from
/// the first store), then answered as a local hit is.
fn serve_fleet_hit(x: &mut Exchange, hash: &[u8; 32], e: &fleet::Entry, answer: LocalResponse, ctx: &Ctx) -> Flow {
    let at = Times { now_ns: ctx.now_ns, stored_at_ns: e.stored_at_ns, expires_at_ns: e.expires_at_ns };
    let put = x.cfg.cache.layout().put_at(ctx.store, hash, &e.answer, at);
    let Some(state) = x.cache.as_mut() else { return Flow::Next };
    state.outcome = CacheOutcome::Hit;
    state.tier = Some(Tier::Fleet);
    state.fleet = Some(FleetOutcome::Hit);
    state.store = false;
    state.age_secs = e.age_secs(ctx.now_ns);
    if put.stored {
        state.stored = Some((put.evicted, put.bytes_delta));
    }
    x.forwarded = true;
    Flow::Answer(answer)
}

/// The response stage that names the outcome and keeps the answer to store.
#[derive(Default)]
pub struct CacheCapture {
    capture: Option<Capture>,
}

impl Stage for CacheCapture {
    fn name(&self) -> &'static str {
        "cache_capture"
    }

    fn on_response_headers(&mut self, x: &mut Exchange, head: &mut ResponseHead) {
        let Some(state) = x.cache.as_ref() else { return };
        head.set.push(("x-switchyard-cache", state.outcome.name().to_string()));
        if state.outcome == CacheOutcome::Hit {
            head.set.push(("age", state.age_secs.to_string()));
        }
        let format = x.op.zip(x.ask.as_ref()).and_then(|(op, a)| Format::of(op, a.stream));
        if let (true, true, Some(format)) = (state.store, (200..300).contains(&head.status), format) {
            let max = usize::try_from(state.config.max_entry_bytes).unwrap_or(usize::MAX);
            self.capture = Some(Capture::new(format, max));
        }
    }

    fn on_response_body(&mut self, _x: &mut Exchange, chunk: &mut Chunk) {
        if let Some(c) = self.capture.as_mut() {
            c.push(&chunk.bytes);
        }
    }

    fn on_response_end(&mut self, x: &mut Exchange, ctx: &Ctx) {
        let Some(capture) = self.capture.take() else { return };
        // The status the client got (an unreadable answer becomes a 502 on the way).
        if !(200..300).contains(&x.status) {
            return;
        }
        let (Some(entry), Some(state)) = (capture.finish(), x.cache.as_mut()) else { return };
        let Some(hash) = state.hash else { return };
        let put = x.cfg.cache.layout().put(ctx.store, &hash, &entry, state.config.ttl_ns, ctx.now_ns);
        if put.stored {
            state.stored = Some((put.evicted, put.bytes_delta));
        }
        // The fleet tier gets it too (whether or not the process tier took it: contention there is local).
        if x.cfg.cache.fleet {
            let expires_at_ns = ctx.now_ns.saturating_add(state.config.ttl_ns);
            x.cache_put = Some(fleet::put_request(&hash, &entry, ctx.now_ns, expires_at_ns));
        }
    }

    fn body_needs(&self, _x: &Exchange) -> super::BodyNeeds {
        super::BodyNeeds { watch: self.capture.is_some(), rewrite: false, buffer: false }
    }
}

/// The response stage that keeps a hit free of tokens and cost (unless the model charges hits).
pub struct CacheCharge;

impl Stage for CacheCharge {
    fn name(&self) -> &'static str {
        "cache_charge"
    }

    fn on_response_end(&mut self, x: &mut Exchange, _ctx: &Ctx) {
        // A charged hit (`charge: true`) keeps the usage it reports, as a served answer would.
        let Some(state) = x.cache.as_mut().filter(|s| s.outcome == CacheOutcome::Hit && !s.config.charge) else {
            return;
        };
        let saved = x.reported.unwrap_or_default();
        let cost = x
            .served_price
            .map_or(0, |p| p.cost_micros(saved.prompt_tokens, saved.cached_tokens, saved.completion_tokens));
        state.saved = Some((saved, cost));
        x.reported = Some(Usage::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::testing::MapHeaders;

    #[test]
    fn cache_control_directives() {
        let table = [
            (None, Directive::Normal),
            (Some("max-age=0"), Directive::Normal),
            (Some("no-cache"), Directive::NoCache),
            (Some("max-age=0, No-Cache"), Directive::NoCache),
            (Some("no-store"), Directive::NoStore),
            (Some("no-cache, no-store"), Directive::NoStore),
            (Some("no-store , no-cache"), Directive::NoStore),
            (Some("no-cache-please"), Directive::Normal),
        ];
        for (value, want) in table {
            let h = match value {
                Some(v) => MapHeaders::new(&[("cache-control", v)]),
                None => MapHeaders::new(&[]),
            };
            assert_eq!(directive(&h), want, "{value:?}");
        }
    }

    #[test]
    fn outcome_names_are_the_metric_tags() {
        let names: Vec<_> =
            [CacheOutcome::Hit, CacheOutcome::Miss, CacheOutcome::Bypass].map(CacheOutcome::name).into();
        assert_eq!(names, crate::observe::CACHE_OUTCOMES);
        let fleet: Vec<_> = [
            FleetOutcome::Hit,
            FleetOutcome::Miss,
            FleetOutcome::Expired,
            FleetOutcome::Corrupt,
            FleetOutcome::Unavailable,
        ]
        .map(FleetOutcome::name)
        .into();
        assert_eq!(fleet, crate::observe::CACHE_FLEET_OUTCOMES);
    }
}

#[cfg(test)]
#[path = "cache_fleet_tests.rs"]
mod fleet_tests;

#[cfg(test)]
mod pipeline_tests {
    use crate::config::tests::MapEnv;
    use crate::config::Config;
    use crate::http::testing::MapHeaders;
    use crate::http::Step;
    use crate::pipeline::{Ctx, Pipeline};
    use crate::providers::mock::Clock;
    use std::rc::Rc;

    const CONFIG: &str = r#"{"providers":{"local":{"kind":"mock"}},
        "models":{"echo":{"provider":"local","cache":{"ttl":60}},"plain":{"provider":"local"}},
        "keys":[{"id":"k","sha256":"a1a2a3","models":["*"]}]}"#;

    /// What one request got: status, headers, body, and the record's cache field.
    type Got = (u16, Vec<(&'static str, String)>, Vec<u8>, Option<&'static str>);

    /// One request through the pipeline, as the host drives it.
    fn ask(
        cfg: &Rc<Config>,
        store: &crate::limits::tests::MemStore,
        now_ns: u64,
        body: &str,
        extra: &[(&str, &str)],
    ) -> Got {
        let mut h = vec![(":method", "POST"), (":path", "/v1/chat/completions"), ("authorization", "Bearer sk-test")];
        h.extend_from_slice(extra);
        let mut p = Pipeline::new(cfg.clone());
        let ctx = Ctx { clock: Clock { unix_secs: now_ns / 1_000_000_000, seq: now_ns }, now_ns, store };
        assert_eq!(p.on_request_headers(&MapHeaders::new(&h), false).step, Step::NeedBody);
        assert_eq!(p.on_body_progress(body.len(), true), None);
        let d = p.on_request_body(body.as_bytes(), &ctx);
        let Step::Respond(r) = d.step else { panic!("the mock answers: {d:?}") };
        let record = p.on_done(&ctx, 0).expect("a record");
        (r.status, r.headers, r.body, record.cache)
    }

    fn config() -> Rc<Config> {
        let digest = crate::codec::sha256::to_hex(&crate::codec::sha256::digest(b"sk-test"));
        Rc::new(Config::parse(CONFIG.replace("a1a2a3", &digest).as_bytes(), &MapEnv(vec![])).unwrap())
    }

    fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_mock_answer_is_stored_then_served_until_its_ttl() {
        let cfg = config();
        assert!(cfg.caches);
        let store = crate::limits::tests::MemStore::default();
        let body = r#"{"model":"echo","messages":[{"role":"user","content":"hello cache"}]}"#;
        let t0 = 1_700_000_000_000_000_000;
        let (status, h, first, cache) = ask(&cfg, &store, t0, body, &[]);
        assert_eq!((status, header(&h, "x-switchyard-cache"), cache), (200, Some("miss"), Some("miss")));
        let (status, h, second, cache) = ask(&cfg, &store, t0 + 5_000_000_000, body, &[]);
        assert_eq!((status, header(&h, "x-switchyard-cache"), cache), (200, Some("hit"), Some("hit")));
        assert_eq!(header(&h, "age"), Some("5"));
        let text = |b: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(b).unwrap()["choices"][0]["message"]["content"].clone()
        };
        assert_eq!(text(&first), text(&second));
        // The same request with other spacing and a `user` is the same entry; past the TTL it is not.
        let spaced = r#"{ "model" : "echo", "user": "x", "messages" : [ {"content":"hello cache","role":"user"} ] }"#;
        assert_eq!(ask(&cfg, &store, t0 + 6_000_000_000, spaced, &[]).3, Some("hit"));
        assert_eq!(ask(&cfg, &store, t0 + 61_000_000_000, body, &[]).3, Some("miss"));
        // no-store: neither looked up nor stored; a model without cache says nothing.
        assert_eq!(ask(&cfg, &store, t0 + 62_000_000_000, body, &[("cache-control", "no-store")]).3, Some("bypass"));
        let plain = r#"{"model":"plain","messages":[{"role":"user","content":"hello cache"}]}"#;
        let (_, h, _, cache) = ask(&cfg, &store, t0, plain, &[]);
        assert_eq!((header(&h, "x-switchyard-cache"), cache), (None, None));
    }
}
