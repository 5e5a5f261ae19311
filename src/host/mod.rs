//! The proxy-wasm host adapter (wasm32 only): moves headers and bodies between Envoy and the core, and
//! turns the core's decisions into host calls. No gateway logic lives here.

use crate::config::{Config, Env};
use crate::http::RequestInfo;
use crate::http::{Decision, Pairs, Step};
use crate::limits::SharedStore;
use crate::observe::{self, Telemetry};
use crate::providers::mock::Clock;
use crate::providers::BodyMode;
use crate::route::{Ctx, RouteFilter};
use crate::upstream::{EndpointMeta, UpstreamFilter};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::MetricType;
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, Status};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Which of its two places in Envoy a plugin instance runs in, from the plugin's `root_id`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum Role {
    #[default]
    Route,
    Upstream,
}

#[derive(Default)]
struct Root {
    cfg: Option<Rc<Config>>,
    role: Role,
    seq: Rc<Cell<u64>>,
}

struct VmEnv;

impl Env for VmEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let root_id =
            self.get_property(vec!["plugin_root_id"]).and_then(|b| String::from_utf8(b).ok()).unwrap_or_default();
        self.role = match root_id.as_str() {
            "" | "switchyard" | "switchyard-route" => Role::Route,
            "switchyard-upstream" => Role::Upstream,
            other => {
                log::error!("invalid switchyard config: root_id '{other}' is neither 'switchyard' (route-level) nor 'switchyard-upstream'");
                return false;
            }
        };
        let Some(bytes) = self.get_plugin_configuration() else {
            log::error!("invalid switchyard config at '(root)': the plugin has no configuration");
            return false;
        };
        match Config::parse(&bytes, &VmEnv) {
            Ok(cfg) => {
                for p in &cfg.disabled {
                    log::info!("provider '{p}' disabled: its optional credential is not set");
                }
                log::info!(
                    "switchyard {:?} role loaded: {} providers, {} models, {} keys",
                    self.role,
                    cfg.providers.len(),
                    cfg.models.len(),
                    cfg.keys.len()
                );
                if self.role == Role::Route {
                    let args = observe::declare_record_args();
                    if proxy_wasm::hostcalls::call_foreign_function("declare_property", Some(&args)).is_err() {
                        log::warn!("Envoy refused to declare the access-log record type: the log fields stay empty");
                    }
                    crate::limits::create_missing(&HostStore, &crate::limits::shared_keys(&cfg));
                }
                self.cfg = Some(Rc::new(cfg));
                true
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let cfg = self.cfg.clone()?;
        Some(match self.role {
            Role::Route => Box::new(RouteHttp {
                core: RouteFilter::new(cfg),
                seq: self.seq.clone(),
                registered: None,
                request_id: None,
                held_headers: false,
            }),
            Role::Upstream => Box::new(UpstreamHttp { core: UpstreamFilter::new(cfg) }),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

thread_local! {
    /// What the route-level role decided per forwarded request, by `x-request-id`, for the upstream role's
    /// attempts (both roles of one worker thread run in this VM: same vm_id, code and VM config), with the
    /// number of attempts made so far.
    static REQUESTS: RefCell<hashbrown::HashMap<String, (RequestInfo, u32)>> = RefCell::new(hashbrown::HashMap::new());
    /// Metric ids by series (names come from the config, so this stays small).
    static METRICS: RefCell<observe::MetricIds> = RefCell::new(observe::MetricIds::default());
}

/// Envoy's stats (`define_metric` once per name) and the request's log record. Envoy lets a Wasm filter
/// write filter state, not dynamic metadata: the record is the filter state object `wasm.switchyard`, a
/// `google.protobuf.Struct` (declared so at configure time), printed by the access log with
/// `%FILTER_STATE(wasm.switchyard:TYPED)%`.
struct HostTelemetry;

impl Telemetry for HostTelemetry {
    fn define(&self, kind: observe::Kind, name: &str) -> Option<u32> {
        let kind = match kind {
            observe::Kind::Counter => MetricType::Counter,
            observe::Kind::Histogram => MetricType::Histogram,
        };
        proxy_wasm::hostcalls::define_metric(kind, name).ok()
    }

    fn add(&self, kind: observe::Kind, id: u32, value: u64) {
        let _ = match kind {
            observe::Kind::Counter => proxy_wasm::hostcalls::increment_metric(id, value.min(i64::MAX as u64) as i64),
            observe::Kind::Histogram => proxy_wasm::hostcalls::record_metric(id, value),
        };
    }

    fn log_record(&self, record: &[u8]) {
        let _ = proxy_wasm::hostcalls::set_property(vec![observe::LOG_PROPERTY], Some(record));
    }
}

/// Requests remembered at once; past this the upstream role falls back to the headers (first attempt only).
const MAX_REQUESTS: usize = 65_536;

/// Envoy's shared data: one store for all worker VMs, written with compare-and-swap.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        proxy_wasm::hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
        // A key that does not exist yet has no CAS token: Envoy then creates it (a racing creator makes
        // the second write fail on the next round's token).
        proxy_wasm::hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| ())
    }
}

fn now_ns(ctx: &dyn Context) -> u64 {
    ctx.get_current_time().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

extern "C" {
    // The proxy-wasm ABI call behind `hostcalls::get_map`, here so that the map is read in place
    // (`Pairs`) instead of as one String pair per header.
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// A header map, read from the host in one call (each host call costs far more than a scan of a few
/// dozen pairs). Envoy keeps header names in lower case.
fn read_map(map: MapType) -> Pairs {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: on success the host hands over a buffer of `size` bytes it got from this module's
    // allocator (`proxy_on_memory_allocate`, a `Vec<u8>` of that capacity), which is ours to own and free.
    unsafe {
        match proxy_get_header_map_pairs(map, &mut data, &mut size) {
            Status::Ok if !data.is_null() && size > 0 => Pairs::parse(Vec::from_raw_parts(data, size, size)),
            _ => Pairs::default(),
        }
    }
}

/// Applies a decision's header edits and step to the request (`present`: the headers as they are, so
/// that only headers that exist are removed).
fn apply(ctx: &dyn HttpContext, d: Decision, present: Option<&Pairs>) -> Action {
    for name in &d.remove {
        if present.is_none_or(|h| h.has(name)) {
            ctx.set_http_request_header(name, None);
        }
    }
    for (name, value) in &d.set {
        ctx.set_http_request_header(name, Some(value));
    }
    // No explicit `clear_route_cache`: Envoy clears the route cache itself when a Wasm filter changes
    // request headers (ABI 0.2.1), as setting the routing header does; the e2e tests route on it.
    match d.step {
        Step::Continue => Action::Continue,
        Step::NeedBody => Action::Pause,
        Step::Respond(r) => {
            let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ctx.send_http_response(r.status as u32, headers, Some(&r.body));
            Action::Pause
        }
    }
}

/// Writes a response's header edits (`present`: the headers as they are): one host call each when they
/// are few, else the whole map in one call. Each call crosses into the host; past two edits one map
/// write costs less (measured), although Envoy then rebuilds the map.
fn write_response_headers(ctx: &dyn HttpContext, present: &Pairs, set: &[(&'static str, String)], drop: &[&str]) {
    if set.len() + drop.len() <= 2 || present.is_empty() {
        for name in drop {
            ctx.set_http_response_header(name, None);
        }
        for (name, value) in set {
            ctx.set_http_response_header(name, Some(value));
        }
        return;
    }
    let mut all: Vec<(&str, &[u8])> = Vec::with_capacity(present.len() + set.len());
    all.extend(present.entries().filter(|(k, _)| !drop.contains(k) && !set.iter().any(|(n, _)| n == k)));
    all.extend(set.iter().map(|(k, v)| (*k, v.as_bytes())));
    ctx.set_http_response_headers_bytes(all);
}

struct RouteHttp {
    core: RouteFilter,
    seq: Rc<Cell<u64>>,
    registered: Option<String>,
    /// The request's `x-request-id` as the client's headers had it.
    request_id: Option<String>,
    /// The response headers wait for the rewritten body (whose length they then get).
    held_headers: bool,
}

impl RouteHttp {
    /// Ends the request once: settles limits, emits its metrics and access-log fields.
    fn finish(&mut self) {
        if self.core.is_done() {
            return;
        }
        let now = now_ns(self);
        let attempts =
            self.registered.as_ref().and_then(|id| REQUESTS.with(|m| m.borrow().get(id).map(|(_, n)| *n))).unwrap_or(0);
        if let Some(record) = self.core.on_done(&HostStore, now, attempts) {
            METRICS.with(|ids| observe::emit(&record, &mut ids.borrow_mut(), &HostTelemetry));
        }
    }

    /// Remembers the decision under this request's id (a fresh id when the client's is already in use).
    fn register(&mut self, info: RequestInfo, now: u64, seq: u64) {
        let id = self.request_id.take().filter(|id| !id.is_empty());
        let taken = |id: &str| REQUESTS.with(|m| m.borrow().contains_key(id));
        let id = match id {
            Some(id) if !taken(&id) => id,
            _ => {
                let fresh = format!("sy-{now:x}-{seq:x}");
                self.set_http_request_header("x-request-id", Some(&fresh));
                fresh
            }
        };
        let kept = REQUESTS.with(|m| {
            let mut m = m.borrow_mut();
            let room = m.len() < MAX_REQUESTS;
            if room {
                m.insert(id.clone(), (info.clone(), 0));
            }
            room
        });
        if !kept {
            // No room: the first attempt can still read the model from this header (retries cannot).
            self.set_http_request_header(crate::http::H_MODEL, Some(&info.alias));
        }
        self.registered = Some(id);
    }
}

impl Context for RouteHttp {}

impl HttpContext for RouteHttp {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        self.core.set_start(now_ns(self));
        let headers = read_map(MapType::HttpRequestHeaders);
        self.request_id = headers.value("x-request-id").map(str::to_string);
        let d = self.core.on_request_headers(&headers, end_of_stream);
        apply(self, d, Some(&headers))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(d) = self.core.on_body_progress(body_size, end_of_stream) {
            return apply(self, d, None);
        }
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        // Limits and the mock's timestamps use the request's arrival time (one host call less).
        let now = self.core.started_ns();
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let ctx = Ctx { clock: Clock { unix_secs: now / 1_000_000_000, seq }, now_ns: now, store: &HostStore };
        let mut d = self.core.on_request_body(&body, &ctx);
        if let Some(info) = d.register.take() {
            self.register(info, now, seq);
        }
        if let Some(new_body) = d.body.take() {
            self.set_http_request_body(0, body_size, &new_body);
        }
        apply(self, d, None)
    }

    fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let headers = read_map(MapType::HttpResponseHeaders);
        let status = headers.status();
        let served = headers.value(crate::http::H_SERVED_PROVIDER).zip(headers.value(crate::http::H_SERVED_MODEL));
        // Envoy's own error answers (no upstream, timeouts) are not the provider's to translate.
        let from_provider = (200..300).contains(&status)
            || !self.core.translates_response()
            || self.get_property(vec!["response", "code_details"]).as_deref() == Some(b"via_upstream".as_slice());
        let mut set = self.core.on_response_headers(status, headers.value("content-type"), served, from_provider);
        if let Some(s) = self.core.status_change() {
            set.push((":status", s.to_string()));
        }
        let mut drop: &[&str] = &[];
        if self.core.rewrites_body() && headers.has("content-length") {
            if self.core.buffers_response() && !end_of_stream {
                // The whole answer is rewritten at its end: hold the headers until then and give the
                // client the new body's length (not a chunked answer).
                self.held_headers = true;
            } else {
                drop = &["content-length"];
            }
        }
        write_response_headers(self, &headers, &set, drop);
        if self.held_headers {
            return Action::Pause;
        }
        if end_of_stream {
            self.finish();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream && self.core.buffers_response() {
            return Action::Pause;
        }
        let now = if body_size > 0 && self.core.wants_time() { now_ns(self) } else { 0 };
        if !self.core.watches_body() {
            self.core.count_response_bytes(body_size, now);
        } else {
            let chunk =
                if body_size > 0 { self.get_http_response_body(0, body_size).unwrap_or_default() } else { Vec::new() };
            if let Some(out) = self.core.on_response_body(&chunk, end_of_stream, now) {
                self.set_http_response_body(0, body_size, &out);
                if self.held_headers {
                    self.set_http_response_header("content-length", Some(&out.len().to_string()));
                }
            }
        }
        // Settle before the last bytes reach the client, so its next request sees the real usage.
        if end_of_stream {
            self.finish();
        }
        Action::Continue
    }

    /// The stream is over however it ended (also a reset or a client gone mid-stream): release what is
    /// still held.
    fn on_log(&mut self) {
        self.finish();
        if let Some(id) = self.registered.take() {
            REQUESTS.with(|m| m.borrow_mut().remove(&id));
        }
    }
}

struct UpstreamHttp {
    core: UpstreamFilter,
}

impl UpstreamHttp {
    /// The picked endpoint's `filter_metadata.switchyard`, in one host call (Envoy serialises a map
    /// property like a header map).
    fn endpoint_meta(&self) -> EndpointMeta {
        let bytes = self.get_property(vec!["xds", "upstream_host_metadata", "filter_metadata", "switchyard"]);
        let meta = Pairs::parse(bytes.unwrap_or_default());
        let text = |k: &str| meta.value(k).filter(|v| !v.is_empty()).map(str::to_string);
        EndpointMeta { provider: text("provider"), model: text("model") }
    }
}

impl Context for UpstreamHttp {}

impl HttpContext for UpstreamHttp {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let info = self.get_http_request_header("x-request-id").and_then(|id| {
            REQUESTS.with(|m| {
                m.borrow_mut().get_mut(&id).map(|(info, attempts)| {
                    *attempts += 1;
                    info.clone()
                })
            })
        });
        let meta = self.endpoint_meta();
        if let Some(d) = info.as_ref().and_then(|i| self.core.on_ready_request(&meta, i)) {
            return apply(self, d, None);
        }
        let headers = read_map(MapType::HttpRequestHeaders);
        let d = self.core.on_request_headers(&headers, &meta, info.as_ref());
        apply(self, d, Some(&headers))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.core.wants_body() {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let now = self.get_current_time().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        match self.core.on_request_body(&body, now) {
            Ok(edit) => {
                for (name, value) in &edit.set {
                    self.set_http_request_header(name, Some(value));
                }
                if let Some(new_body) = edit.body {
                    self.set_http_request_body(0, body_size, &new_body);
                }
                Action::Continue
            }
            Err(e) => apply(self, Decision::respond(e), None),
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        if self.core.passes_response() {
            return Action::Continue;
        }
        let headers = read_map(MapType::HttpResponseHeaders);
        let status = headers.status();
        let mut edit = self.core.on_response_headers(status, headers.value("content-type"));
        if let Some(s) = edit.status {
            edit.set.push((":status", s.to_string()));
        }
        edit.remove.retain(|name| headers.has(name));
        write_response_headers(self, &headers, &edit.set, &edit.remove);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.core.mode() {
            None => Action::Continue,
            Some(BodyMode::Buffer) => {
                if !end_of_stream {
                    return Action::Pause;
                }
                let body = self.get_http_response_body(0, body_size).unwrap_or_default();
                if let Some(out) = self.core.on_response_body(&body) {
                    self.set_http_response_body(0, body_size, &out);
                }
                Action::Continue
            }
            Some(BodyMode::Stream) => {
                let chunk = self.get_http_response_body(0, body_size).unwrap_or_default();
                if let Some(out) = self.core.on_response_chunk(&chunk, end_of_stream) {
                    self.set_http_response_body(0, body_size, &out);
                }
                Action::Continue
            }
        }
    }
}
