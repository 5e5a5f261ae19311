//! The route-level role: runs in the listener's HTTP filter chain, once per client request. It checks the
//! method and path, the caller's virtual key, the content type and size, reads the body, resolves the
//! model, answers what it can itself (model lists, the mock provider, every error), and otherwise names the
//! Envoy cluster that serves the model in a routing header the route matches on.

use crate::api::anthropic as anthropic_input;
use crate::api::error::ApiError;
use crate::api::openai::{self as request, Operation};
use crate::config::{Config, Key, Price, ProviderKind};
use crate::http::{
    Decision, Headers, LocalResponse, RequestInfo, Step, Translated, CREDENTIAL_HEADERS, H_CLUSTER, H_SERVED_MODEL,
    H_SERVED_PROVIDER, INTERNAL_HEADERS,
};
use crate::limits::{Reservation, SharedStore};
use crate::observe::Record;
use crate::providers::{self, mock, Attempt, BodyMode, ResponseTranslator, Usage};
use crate::usage::{Format, Sniffer};
use serde_json::json;
use std::rc::Rc;

pub struct RouteFilter {
    cfg: Rc<Config>,
    op: Option<Operation>,
    key: Option<usize>,
    /// The client speaks the Anthropic Messages API: errors go in Anthropic's shape.
    anthropic_client: bool,
    /// What was forwarded, for the response side.
    forwarded: Option<Forwarded>,
    reservation: Option<Reservation>,
    sniffer: Option<Sniffer>,
    status: u16,
    response_bytes: u64,
    served_price: Option<Price>,
    served: Option<(String, String)>,
    started_ns: u64,
    first_byte_ns: Option<u64>,
    /// The client's `:path`.
    path: String,
    done: bool,
    /// Opt-in body logging: the start of the response, kept up to the configured size.
    response_sample: Vec<u8>,
    /// The translator of a request this filter translated for its model's only target: the provider's
    /// answer comes back untouched by the upstream role and is translated here.
    solo: Option<Box<dyn ResponseTranslator>>,
    /// How `solo` takes the response body, once the provider's headers are in.
    solo_mode: Option<BodyMode>,
    /// The status the client gets instead of the provider's.
    status_change: Option<u16>,
}

/// Host facts a request-body decision needs.
pub struct Ctx<'a> {
    pub clock: mock::Clock,
    pub now_ns: u64,
    pub store: &'a dyn SharedStore,
}

/// What the route role knows of a request it is about to dispatch.
struct Ask<'a> {
    alias: &'a str,
    /// The parsed chat request (its `model` position lets the body be rewritten without a second parse).
    chat: Option<&'a request::ChatRequest<'a>>,
    stream: bool,
    client_wants_usage: bool,
    max_output: Option<u64>,
    body_len: usize,
}

struct Forwarded {
    alias: String,
    stream: bool,
    client_wants_usage: bool,
    prompt_estimate: u64,
    output_reserved: u64,
}

/// The presented virtual key: `Authorization: Bearer KEY`, else `x-api-key: KEY`.
fn presented_key(h: &dyn Headers) -> Option<String> {
    if let Some(auth) = h.get("authorization") {
        let auth = auth.trim();
        if let Some((scheme, rest)) = auth.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
                return Some(rest.trim().to_string());
            }
        }
    }
    h.get("x-api-key").map(|k| k.trim().to_string()).filter(|k| !k.is_empty())
}

impl RouteFilter {
    pub fn new(cfg: Rc<Config>) -> Self {
        RouteFilter {
            cfg,
            op: None,
            key: None,
            anthropic_client: false,
            forwarded: None,
            reservation: None,
            sniffer: None,
            status: 0,
            response_bytes: 0,
            served_price: None,
            served: None,
            started_ns: 0,
            first_byte_ns: None,
            path: String::new(),
            done: false,
            response_sample: Vec::new(),
            solo: None,
            solo_mode: None,
            status_change: None,
        }
    }

    fn key(&self) -> Option<&Key> {
        self.key.and_then(|i| self.cfg.keys.get(i))
    }

    /// An error answer in the shape the client's API uses.
    fn fail(&self, e: ApiError) -> Decision {
        if self.anthropic_client {
            Decision::respond(anthropic_error(e))
        } else {
            Decision::respond(e)
        }
    }

    /// When the request arrived (for the latency measurements).
    pub fn set_start(&mut self, now_ns: u64) {
        self.started_ns = now_ns;
    }

    pub fn started_ns(&self) -> u64 {
        self.started_ns
    }

    /// Whether [`RouteFilter::on_done`] has run.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn on_request_headers(&mut self, h: &dyn Headers, end_of_stream: bool) -> Decision {
        let method = h.get(":method").unwrap_or_default();
        let path = h.get(":path").unwrap_or_default();
        self.anthropic_client = path.split(['?', '#']).next() == Some("/v1/messages");
        let op = match request::classify(&method, &path) {
            Ok(op) => op,
            Err(e) => return self.fail(e),
        };
        self.op = Some(op);
        self.path = path;

        let Some(secret) = presented_key(h) else { return self.fail(ApiError::missing_key()) };
        let Some(key_index) = self.cfg.key_index(&secret) else {
            return self.fail(ApiError::invalid_key());
        };
        self.key = Some(key_index);
        let Some(key) = self.key() else { return self.fail(ApiError::invalid_key()) };

        match op {
            Operation::ListModels => {
                let body = if method == "HEAD" { Vec::new() } else { key.models_json.as_bytes().to_vec() };
                return Decision::respond(LocalResponse::json(200, body));
            }
            Operation::RetrieveModel => {
                let id = request::retrieve_model_id(&self.path);
                let found = self.cfg.models.get(&id).filter(|_| key.may_use(&id));
                return match found {
                    Some(m) => {
                        let owner = m
                            .targets
                            .first()
                            .and_then(|t| self.cfg.provider(t.provider))
                            .map_or("switchyard", |p| p.name.as_str());
                        let body = json!({"id": m.name, "object": "model", "created": 0, "owned_by": owner});
                        Decision::respond(LocalResponse::json(200, body.to_string()))
                    }
                    None => self.fail(ApiError::model_not_found(&id)),
                };
            }
            Operation::ChatCompletions | Operation::Embeddings | Operation::Messages => {}
        }

        if let Some(ct) = h.get("content-type") {
            if !request::is_json_content_type(&ct) {
                return self.fail(ApiError::unsupported_media_type(&ct));
            }
        }
        if let Some(len) = h.get("content-length").and_then(|l| l.trim().parse::<u64>().ok()) {
            if len > self.cfg.max_body_bytes as u64 {
                return self.fail(ApiError::too_large(self.cfg.max_body_bytes));
            }
        }
        if end_of_stream {
            return self.fail(ApiError::invalid_request("The request has no body; send a JSON object.", None));
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
    /// in and within the limit: then the host hands it to [`RouteFilter::on_request_body`].
    pub fn on_body_progress(&self, buffered: usize, end_of_stream: bool) -> Option<Decision> {
        if buffered > self.cfg.max_body_bytes {
            return Some(self.fail(ApiError::too_large(self.cfg.max_body_bytes)));
        }
        if !end_of_stream {
            return Some(Decision::new(Step::NeedBody));
        }
        None
    }

    /// The whole request body.
    pub fn on_request_body(&mut self, bytes: &[u8], ctx: &Ctx) -> Decision {
        let clock = ctx.clock;
        let Some(op) = self.op else { return Decision::new(Step::Continue) };
        match op {
            Operation::ChatCompletions => match request::parse_chat(bytes) {
                Ok(req) => {
                    let ask = Ask {
                        alias: &req.model,
                        chat: Some(&req),
                        stream: req.is_stream(),
                        client_wants_usage: req.include_usage(),
                        max_output: req.max_completion_tokens.or(req.max_tokens),
                        body_len: bytes.len(),
                    };
                    self.dispatch(&ask, bytes, ctx, |alias| mock::chat(&req, alias, clock))
                }
                Err(e) => self.fail(e),
            },
            Operation::Embeddings => match request::parse_embeddings(bytes) {
                Ok(req) => {
                    let ask = Ask {
                        alias: &req.model,
                        chat: None,
                        stream: false,
                        client_wants_usage: true,
                        max_output: Some(0),
                        body_len: bytes.len(),
                    };
                    self.dispatch(&ask, bytes, ctx, |alias| mock::embeddings(&req, alias))
                }
                Err(e) => self.fail(e),
            },
            Operation::Messages => match anthropic_input::parse(bytes) {
                Ok(req) => {
                    let ask = Ask {
                        alias: &req.model,
                        chat: None,
                        stream: req.stream,
                        client_wants_usage: true,
                        max_output: Some(req.max_tokens),
                        body_len: bytes.len(),
                    };
                    self.dispatch(&ask, bytes, ctx, |alias| mock_messages(bytes, alias, clock))
                }
                Err(e) => self.fail(e),
            },
            Operation::ListModels | Operation::RetrieveModel => Decision::new(Step::Continue),
        }
    }

    fn dispatch(
        &mut self,
        ask: &Ask,
        bytes: &[u8],
        ctx: &Ctx,
        mock_answer: impl FnOnce(&str) -> LocalResponse,
    ) -> Decision {
        let alias = ask.alias;
        let cfg = self.cfg.clone();
        let Some(model) = cfg.models.get(alias) else {
            return self.fail(match cfg.unavailable.get(alias) {
                Some(provider) => ApiError::model_unavailable(alias, provider),
                None => ApiError::model_not_found(alias),
            });
        };
        let Some(key) = self.key.and_then(|i| cfg.keys.get(i)) else {
            return self.fail(ApiError::invalid_key());
        };
        if !key.may_use(alias) {
            return self.fail(ApiError::model_not_allowed(alias));
        }

        // Reserve before anything is answered or forwarded (documented estimate: request bytes / 4 for
        // the prompt, plus the request's max output tokens or the configured default).
        let prompt_estimate = request::estimate_tokens(ask.body_len);
        let output_reserved = ask.max_output.unwrap_or(cfg.default_max_output_tokens);
        if !key.limits.is_empty() {
            let cost = model.max_price().map_or(0, |p| p.cost_micros(prompt_estimate, 0, output_reserved));
            match Reservation::reserve(ctx.store, key, alias, prompt_estimate + output_reserved, cost, ctx.now_ns) {
                Ok(r) => self.reservation = Some(r),
                Err(e) => return self.fail(e),
            }
        }
        if let Some(max) = cfg.log_bodies_max_bytes {
            // Opt-in only: prompts can hold anything. Keys never do (they travel in headers).
            log::info!("request body (key {}, model {}): {}", key.id, alias, cut(bytes, max));
        }
        self.forwarded = Some(Forwarded {
            alias: model.name.clone(),
            stream: ask.stream,
            client_wants_usage: ask.client_wants_usage,
            prompt_estimate,
            output_reserved,
        });

        let primary = model.targets.first().and_then(|t| cfg.provider(t.provider));
        if primary.is_some_and(|p| p.kind == ProviderKind::Mock) {
            let mut r = mock_answer(&model.name);
            // The whole answer is known: settle now.
            let content_type = r.headers.iter().find(|(k, _)| *k == "content-type").map(|(_, v)| v.clone());
            r.headers.extend(self.on_response_headers(r.status, content_type.as_deref(), None, true));
            if let Some(b) = self.on_response_body(&r.body, true, ctx.now_ns) {
                r.body = b;
            }
            // The whole answer is known: settle now (the record is made when the stream ends).
            self.settle(ctx.store, ctx.now_ns);
            return Decision::respond(r);
        }
        let mut d = Decision::new(Step::Continue);
        d.set.push((H_CLUSTER, model.cluster.clone()));
        // One OpenAI-format target: write its body here, where the body is already in hand, so that the
        // upstream role only sets the path and the credential (no second buffering and parse).
        let single = match (model.targets.as_slice(), self.op) {
            ([t], Some(op @ (Operation::ChatCompletions | Operation::Embeddings))) => cfg
                .provider(t.provider)
                .filter(|p| {
                    matches!(
                        p.kind,
                        ProviderKind::OpenAi | ProviderKind::AzureOpenAi { .. } | ProviderKind::OpenAiCompatible { .. }
                    )
                })
                .map(|_| (t, op)),
            _ => None,
        };
        if let Some((t, op)) = single {
            let written = match (op, ask.chat) {
                (Operation::ChatCompletions, Some(c)) => crate::providers::openai::splice(
                    bytes,
                    c.model_raw,
                    c.is_stream(),
                    c.stream_options_raw,
                    &t.model,
                    true,
                ),
                _ => crate::providers::openai::rewrite(bytes, &t.model, false),
            };
            match written {
                Ok(b) => d.body = Some(b),
                Err(e) => return self.fail(e),
            }
        }
        // One target of a provider with its own format: translate here too, keep the response translator
        // for the answer, and leave the upstream role only the path and the credential to set.
        let mut translated = None;
        if let (None, [t], Some(op)) = (single, model.targets.as_slice(), self.op) {
            if let Some(p) = cfg.provider(t.provider).filter(|p| providers::translates_at_route(p)) {
                let attempt = Attempt {
                    op,
                    provider: p,
                    model: &t.model,
                    alias: &model.name,
                    now_unix: ctx.clock.unix_secs,
                    now_ns: ctx.now_ns,
                    usage_chunk: true,
                    chat: ask.chat,
                };
                match providers::prepare(&attempt, bytes) {
                    Ok(out) => {
                        // Credentials are set by the upstream role only (after the router logs headers).
                        d.set.extend(out.headers.into_iter().filter(|(name, _)| !CREDENTIAL_HEADERS.contains(name)));
                        d.body = Some(out.body.unwrap_or_else(|| bytes.to_vec()));
                        self.solo = out.response;
                        translated = Some(Rc::new(Translated { path: out.path, client_body: bytes.to_vec() }));
                    }
                    Err(e) => return self.fail(e),
                }
            }
        }
        if let Some(b) = &d.body {
            d.set.push(("content-length", b.len().to_string()));
        }
        d.register = self.op.map(|op| RequestInfo {
            op,
            alias: model.name.clone(),
            body_ready: d.body.is_some(),
            path: self.path.clone(),
            translated,
        });
        d
    }

    /// Whether a response that is not a success must be told apart as the provider's own or Envoy's
    /// (`from_provider` of [`RouteFilter::on_response_headers`]): only when this filter translates it.
    pub fn translates_response(&self) -> bool {
        self.solo.is_some()
    }

    /// The response headers (from the provider, Envoy or this filter), with what the upstream role said
    /// served the request (`x-switchyard-provider`, `x-switchyard-model`) and whether the response is the
    /// provider's (not one Envoy made): returns headers to set. See also
    /// [`RouteFilter::status_change`].
    pub fn on_response_headers(
        &mut self,
        status: u16,
        content_type: Option<&str>,
        served: Option<(&str, &str)>,
        from_provider: bool,
    ) -> Vec<(&'static str, String)> {
        let mut named = Vec::with_capacity(3 + self.reservation.as_ref().map_or(0, |r| r.headers.len()));
        // The upstream role named what served: it prepared that attempt and translated its answer.
        if served.is_some() || !from_provider {
            self.solo = None;
        }
        let (status, content_type) = match self.solo.as_mut() {
            Some(t) => {
                let (client_status, mode) = t.on_headers(status, content_type);
                self.solo_mode = Some(mode);
                if client_status != status {
                    self.status_change = Some(client_status);
                }
                named.push(("content-type", t.content_type().to_string()));
                (client_status, Some(t.content_type()))
            }
            None => (status, content_type),
        };
        self.status = status;
        self.served_price = self.price_of(served);
        self.served = served.map(|(p, m)| (p.to_string(), m.to_string()));
        // The upstream role names what served only when it had a choice to make or a response to
        // translate; a model's only target is known here.
        if self.served.is_none() {
            self.served = self.only_target();
            if let Some((p, m)) = &self.served {
                named.push((H_SERVED_PROVIDER, p.clone()));
                named.push((H_SERVED_MODEL, m.clone()));
            }
        }
        let Some(f) = &self.forwarded else { return named };
        let sse = content_type.is_some_and(|c| c.starts_with("text/event-stream"));
        let json = content_type.is_some_and(|c| c.starts_with("application/json"));
        let anthropic = self.op == Some(Operation::Messages);
        if (200..300).contains(&status) && (sse || json) {
            let format = match (anthropic, sse) {
                (false, true) => Format::OpenAiSse,
                (false, false) => Format::OpenAiJson,
                (true, true) => Format::AnthropicSse,
                (true, false) => Format::AnthropicJson,
            };
            // The upstream role asks every streaming provider for usage; drop it where the client did not.
            let strip = sse && !anthropic && f.stream && !f.client_wants_usage;
            self.sniffer = Some(Sniffer::new(format, strip));
        }
        // The response's only use of them: moved, not copied.
        if let Some(r) = self.reservation.as_mut() {
            named.append(&mut r.headers);
        }
        named
    }

    /// (provider, model) of the forwarded model's only target, unless that is the mock provider.
    fn only_target(&self) -> Option<(String, String)> {
        let model = self.cfg.models.get(&self.forwarded.as_ref()?.alias)?;
        let [t] = model.targets.as_slice() else { return None };
        let p = self.cfg.provider(t.provider).filter(|p| p.kind != ProviderKind::Mock)?;
        Some((p.name.clone(), t.model.clone()))
    }

    /// The price of the target that served: the one the upstream role named, else the only one.
    fn price_of(&self, served: Option<(&str, &str)>) -> Option<Price> {
        let model = self.cfg.models.get(&self.forwarded.as_ref()?.alias)?;
        match served {
            Some((provider, upstream_model)) => {
                let (pid, _) = self.cfg.provider_by_name(provider)?;
                model.target(pid, Some(upstream_model)).or_else(|| model.target(pid, None))?.price
            }
            None if model.targets.len() == 1 => model.targets.first()?.price,
            None => model.max_price(),
        }
    }

    /// The status the client gets instead of the one the response headers carry.
    pub fn status_change(&self) -> Option<u16> {
        self.status_change
    }

    /// Whether the response body may change on its way (then its `content-length` must go).
    pub fn rewrites_body(&self) -> bool {
        self.solo_mode.is_some()
            || self.forwarded.as_ref().is_some_and(|f| f.stream && !f.client_wants_usage)
                && self.sniffer.is_some()
                && self.op != Some(Operation::Messages)
    }

    /// Whether the response body must be shown to [`RouteFilter::on_response_body`]; when not, the host
    /// only reports its size to [`RouteFilter::count_response_bytes`].
    pub fn watches_body(&self) -> bool {
        self.solo_mode.is_some() || self.sniffer.is_some() || self.cfg.log_bodies_max_bytes.is_some()
    }

    /// Whether the response body must be held until it is complete, then shown whole.
    pub fn buffers_response(&self) -> bool {
        self.solo_mode == Some(BodyMode::Buffer)
    }

    /// Whether the next response bytes need the time (only the first ones do: time to first token).
    pub fn wants_time(&self) -> bool {
        self.first_byte_ns.is_none()
    }

    pub fn count_response_bytes(&mut self, n: usize, now_ns: u64) {
        if n > 0 && self.first_byte_ns.is_none() {
            self.first_byte_ns = Some(now_ns);
        }
        self.response_bytes += n as u64;
    }

    /// A piece of the response body: returns the bytes to send instead when they change.
    pub fn on_response_body(&mut self, bytes: &[u8], end: bool, now_ns: u64) -> Option<Vec<u8>> {
        let translated = match (self.solo.as_mut(), self.solo_mode) {
            (Some(t), Some(BodyMode::Buffer)) => Some(t.on_body(bytes)),
            (Some(t), Some(BodyMode::Stream)) => {
                let mut out = Vec::with_capacity(bytes.len() + 64);
                t.on_stream(bytes, end, &mut out);
                Some(out)
            }
            _ => None,
        };
        let Some(out) = translated else { return self.on_client_body(bytes, end, now_ns) };
        // A whole answer whose translator read the usage needs no second read of it.
        if self.solo_mode == Some(BodyMode::Buffer) && self.solo.as_ref().is_some_and(|t| t.usage().is_some()) {
            self.sniffer = None;
        }
        Some(self.on_client_body(&out, end, now_ns).unwrap_or(out))
    }

    /// The response body as the client gets it: counted, sampled and sniffed for usage.
    fn on_client_body(&mut self, bytes: &[u8], end: bool, now_ns: u64) -> Option<Vec<u8>> {
        self.count_response_bytes(bytes.len(), now_ns);
        if let Some(max) = self.cfg.log_bodies_max_bytes {
            let room = max.saturating_sub(self.response_sample.len());
            self.response_sample.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
        }
        self.sniffer.as_mut()?.on_chunk(bytes, end)
    }

    /// The usage and cost of the answer (reported, or the documented estimate), settling the reservation
    /// if one is held. Returns (usage, cost in micro-dollars, whether the provider reported the usage).
    fn settle(&mut self, store: &dyn SharedStore, now_ns: u64) -> (Option<Usage>, u64, bool) {
        let ok = (200..300).contains(&self.status);
        let reported =
            self.solo.as_ref().and_then(|t| t.usage()).or_else(|| self.sniffer.as_ref().and_then(Sniffer::usage));
        let usage = match (&self.forwarded, ok) {
            (Some(f), true) => Some(reported.unwrap_or(Usage {
                // Documented estimate when the provider reports no usage: the prompt estimate plus a
                // quarter of the response bytes, at most the output reserved.
                prompt_tokens: f.prompt_estimate,
                completion_tokens: request::estimate_tokens(self.response_bytes as usize).min(f.output_reserved),
                cached_tokens: 0,
            })),
            _ => None,
        };
        let cost = match (usage, self.served_price) {
            (Some(u), Some(p)) => p.cost_micros(u.prompt_tokens, u.cached_tokens, u.completion_tokens),
            _ => 0,
        };
        if let Some(mut r) = self.reservation.take() {
            r.settle(store, usage.map(|u| (u.prompt_tokens + u.completion_tokens, cost)), now_ns);
        }
        (usage, cost, reported.is_some())
    }

    /// The stream is over (answered, failed or abandoned): settles or releases the reservation, and returns
    /// the request's record, once. `attempts` is how many upstream attempts the request made.
    pub fn on_done(&mut self, store: &dyn SharedStore, now_ns: u64, attempts: u32) -> Option<Record> {
        if self.done {
            return None;
        }
        self.done = true;
        let (usage, cost, reported) = self.settle(store, now_ns);
        if let Some(max) = self.cfg.log_bodies_max_bytes.filter(|_| self.forwarded.is_some()) {
            log::info!("response body (status {}): {}", self.status, cut(&self.response_sample, max));
        }
        let key_id = self.key.and_then(|i| self.cfg.keys.get(i)).map(|k| k.id.clone());
        let requested_model = self.forwarded.as_ref().map(|f| f.alias.clone());
        let mock_provider = requested_model
            .as_ref()
            .and_then(|m| self.cfg.models.get(m))
            .and_then(|m| m.targets.first())
            .and_then(|t| self.cfg.provider(t.provider))
            .filter(|p| p.kind == ProviderKind::Mock);
        let (provider, served_model) = match (&self.served, mock_provider) {
            (Some((p, m)), _) => (Some(p.clone()), Some(m.clone())),
            (None, Some(p)) if self.status != 0 => (Some(p.name.clone()), requested_model.clone()),
            _ => (None, None),
        };
        Some(Record {
            key_id,
            requested_model,
            served_model,
            provider,
            operation: match self.op {
                Some(Operation::ChatCompletions) => "chat",
                Some(Operation::Embeddings) => "embeddings",
                Some(Operation::Messages) => "messages",
                Some(Operation::ListModels) | Some(Operation::RetrieveModel) => "models",
                None => "none",
            },
            status: self.status,
            usage,
            usage_estimated: usage.is_some() && !reported,
            cost_micros: cost,
            ttft_ms: self.first_byte_ns.map(|t| t.saturating_sub(self.started_ns) / 1_000_000),
            duration_ms: now_ns.saturating_sub(self.started_ns) / 1_000_000,
            attempts,
            stream: self.forwarded.as_ref().is_some_and(|f| f.stream),
        })
    }
}

/// A body cut to `max` bytes for the log (lossy UTF-8, marked when cut).
fn cut(bytes: &[u8], max: usize) -> String {
    let head = bytes.get(..max.min(bytes.len())).unwrap_or_default();
    let mut s = String::from_utf8_lossy(head).into_owned();
    if bytes.len() > max {
        s.push_str(" [...]");
    }
    s
}

/// An error answer for a client of the Anthropic Messages API (Anthropic's shape, OpenAI's fields kept).
fn anthropic_error(e: ApiError) -> LocalResponse {
    let mut r = LocalResponse::json(e.status, e.anthropic_body());
    r.headers.extend(e.headers);
    r
}

/// The mock provider's answer to an Anthropic Messages request: the OpenAI mock answer, converted.
fn mock_messages(body: &[u8], alias: &str, clock: mock::Clock) -> LocalResponse {
    let pivot = match anthropic_input::to_openai(body) {
        Ok(p) => p,
        Err(e) => return anthropic_error(e),
    };
    let chat = match request::parse_chat(&pivot) {
        Ok(c) => c,
        Err(e) => return anthropic_error(e),
    };
    let r = mock::chat(&chat, alias, clock);
    if chat.is_stream() {
        let mut out = Vec::with_capacity(r.body.len());
        anthropic_input::StreamToAnthropic::new(alias).push(&r.body, true, &mut out);
        LocalResponse::event_stream(out)
    } else {
        LocalResponse::json(200, anthropic_input::response_from_openai(&r.body, alias))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{sample, MapEnv};
    use crate::http::testing::MapHeaders;

    fn filter() -> RouteFilter {
        let cfg = Config::parse(sample().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "sk-openai-secret")])).unwrap();
        RouteFilter::new(Rc::new(cfg))
    }

    const CLOCK: mock::Clock = mock::Clock { unix_secs: 1, seq: 1 };

    fn run(headers: &[(&str, &str)], body: &str) -> Decision {
        let mut f = filter();
        let d = f.on_request_headers(&MapHeaders::new(headers), body.is_empty());
        if d.step != Step::NeedBody {
            return d;
        }
        assert_eq!(f.on_body_progress(body.len(), true), None);
        let store = crate::limits::tests::MemStore::default();
        f.on_request_body(body.as_bytes(), &Ctx { clock: CLOCK, now_ns: 1, store: &store })
    }

    fn status(d: &Decision) -> Option<u16> {
        match &d.step {
            Step::Respond(r) => Some(r.status),
            _ => None,
        }
    }

    fn error_code(d: &Decision) -> String {
        let Step::Respond(r) = &d.step else { panic!("no response: {d:?}") };
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["error"]["code"].as_str().unwrap_or("").to_string()
    }

    const CHAT: &[(&str, &str)] =
        &[(":method", "POST"), (":path", "/v1/chat/completions"), ("content-type", "application/json")];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut h = CHAT.to_vec();
        h.extend_from_slice(extra);
        h
    }

    #[test]
    fn routes_to_the_models_cluster() {
        let d = run(
            &with(&[("authorization", "Bearer sk-all")]),
            r#"{"model":"gpt-prod","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(d.step, Step::Continue);
        assert_eq!(d.set(H_CLUSTER), Some("azure_cluster"));
        assert_eq!(d.set(crate::http::H_MODEL), None, "the model travels in the registry, not in a header");
        assert_eq!(
            d.register,
            Some(RequestInfo {
                op: Operation::ChatCompletions,
                alias: "gpt-prod".into(),
                body_ready: true,
                path: "/v1/chat/completions".into(),
                translated: None
            })
        );
        let body = d.body.clone().unwrap();
        assert_eq!(d.set("content-length"), Some(body.len().to_string().as_str()), "the written body's length");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["model"], "prod-deployment", "a single OpenAI-format target gets its body here");
    }

    #[test]
    fn strips_client_credentials_and_internal_headers() {
        let mut f = filter();
        let d = f.on_request_headers(&MapHeaders::new(&with(&[("x-api-key", "sk-all")])), false);
        assert_eq!(d.step, Step::NeedBody);
        for h in ["authorization", "x-api-key", "api-key", H_CLUSTER, crate::http::H_MODEL, crate::http::H_KEY] {
            assert!(d.remove.contains(&h), "{h}");
        }
        assert!(!d.remove.contains(&"content-length"), "kept until the body is in (then set to its length)");
    }

    #[test]
    fn mock_answers_locally() {
        let d = run(
            &with(&[("authorization", "bearer sk-all")]),
            r#"{"model":"demo","messages":[{"role":"user","content":"ping"}]}"#,
        );
        let Step::Respond(r) = d.step else { panic!() };
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "ping");
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn error_table() {
        let ok_body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}"#;
        let table: Vec<(Vec<(&str, &str)>, &str, u16, &str)> = vec![
            (with(&[]), ok_body, 401, "missing_api_key"),
            (with(&[("authorization", "Bearer sk-wrong")]), ok_body, 401, "invalid_api_key"),
            (with(&[("authorization", "Basic abc")]), ok_body, 401, "missing_api_key"),
            (
                with(&[("authorization", "Bearer sk-mini")]),
                r#"{"model":"demo","messages":[{"role":"user"}]}"#,
                403,
                "model_not_allowed",
            ),
            (
                with(&[("authorization", "Bearer sk-all")]),
                r#"{"model":"gpt-9","messages":[{"role":"user"}]}"#,
                404,
                "model_not_found",
            ),
            (
                with(&[("authorization", "Bearer sk-all")]),
                r#"{"model":"llama","messages":[{"role":"user"}]}"#,
                404,
                "model_not_found",
            ),
            (with(&[("authorization", "Bearer sk-all")]), "{nope", 400, "invalid_json"),
            (with(&[("authorization", "Bearer sk-all")]), "", 400, ""),
            (
                vec![
                    (":method", "POST"),
                    (":path", "/v1/chat/completions"),
                    ("content-type", "text/plain"),
                    ("authorization", "Bearer sk-all"),
                ],
                ok_body,
                415,
                "unsupported_media_type",
            ),
            (
                with(&[("authorization", "Bearer sk-all"), ("content-length", "999999999")]),
                ok_body,
                413,
                "request_too_large",
            ),
            (vec![(":method", "GET"), (":path", "/v1/chat/completions")], "", 405, "method_not_allowed"),
            (vec![(":method", "POST"), (":path", "/v1/nope")], "", 404, "unknown_url"),
        ];
        for (headers, body, want_status, want_code) in table {
            let d = run(&headers, body);
            assert_eq!(status(&d), Some(want_status), "{headers:?} {body}");
            assert_eq!(error_code(&d), want_code, "{headers:?} {body}");
        }
    }

    #[test]
    fn anthropic_messages_on_the_mock_and_anthropic_errors() {
        let h = [
            (":method", "POST"),
            (":path", "/v1/messages"),
            ("content-type", "application/json"),
            ("x-api-key", "sk-all"),
        ];
        let d = run(&h, r#"{"model":"demo","max_tokens":10,"messages":[{"role":"user","content":"hey there"}]}"#);
        let Step::Respond(r) = d.step else { panic!() };
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["content"][0]["text"], "hey there");
        assert_eq!(v["stop_reason"], "end_turn");
        let d =
            run(&h, r#"{"model":"demo","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"a b"}]}"#);
        let Step::Respond(r) = d.step else { panic!() };
        let text = String::from_utf8(r.body).unwrap();
        assert!(text.starts_with("event: message_start") && text.contains("message_stop"), "{text}");
        // Errors keep both shapes.
        for (headers, body, status, kind) in [
            (
                &h[..3],
                r#"{"model":"demo","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
                401,
                "authentication_error",
            ),
            (
                &h[..],
                r#"{"model":"nope","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
                404,
                "not_found_error",
            ),
            (&h[..], r#"{"model":"demo","messages":[{"role":"user","content":"x"}]}"#, 400, "invalid_request_error"),
        ] {
            let d = run(headers, body);
            let Step::Respond(r) = d.step else { panic!() };
            assert_eq!(r.status, status);
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error"]["type"], kind, "{v}");
            assert!(v["error"]["message"].as_str().unwrap().len() > 5);
            assert!(v["error"].get("code").is_some() && v["error"].get("param").is_some());
        }
    }

    #[test]
    fn body_over_limit_while_streaming_in() {
        let mut f = filter();
        assert_eq!(
            f.on_request_headers(&MapHeaders::new(&with(&[("authorization", "Bearer sk-all")])), false).step,
            Step::NeedBody
        );
        assert_eq!(f.on_body_progress(1000, false).unwrap().step, Step::NeedBody);
        let d = f.on_body_progress(crate::config::DEFAULT_MAX_BODY_BYTES + 1, false).unwrap();
        assert_eq!(status(&d), Some(413));
    }

    #[test]
    fn model_lists_follow_the_key() {
        let list = |key: &str| {
            let d = run(&[(":method", "GET"), (":path", "/v1/models"), ("authorization", key)], "");
            let Step::Respond(r) = d.step else { panic!() };
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(list("Bearer sk-mini"), vec!["gpt-4o-mini"]);
        assert_eq!(list("Bearer sk-all"), vec!["demo", "gpt-4o-mini", "gpt-prod", "qwen"]);
        let one = run(&[(":method", "GET"), (":path", "/v1/models/demo"), ("authorization", "Bearer sk-mini")], "");
        assert_eq!(status(&one), Some(404));
        let one = run(&[(":method", "GET"), (":path", "/v1/models/demo"), ("authorization", "Bearer sk-all")], "");
        assert_eq!(status(&one), Some(200));
    }
}
