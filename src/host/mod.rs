//! The proxy-wasm host adapter (wasm32 only): moves headers and bodies between Envoy and the core, and
//! turns the core's decisions into host calls. No gateway logic lives here.

mod cache_fleet;
mod fleet;
mod route;
mod upstream;

use crate::config::{Config, Env};
use crate::http::{Decision, Pairs, Step};
use crate::limits::SharedStore;
use crate::observe::{self, Telemetry};
use crate::pipeline::registry::Registry;
use crate::pipeline::Pipeline;
use crate::role::Role;
use crate::upstream::UpstreamFilter;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::MetricType;
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, Status};
use route::RouteHttp;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::UNIX_EPOCH;
use upstream::UpstreamHttp;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    cfg: Option<Rc<Config>>,
    role: Role,
    seq: Rc<Cell<u64>>,
    /// Sends fleet-wide settlements (route role with `fleet_limits`).
    settler: Option<fleet::Settler>,
    /// Sends the fleet tier's cache puts (route role with `cache.fleet`).
    puts: Option<cache_fleet::PutSender>,
}

struct VmEnv;

impl Env for VmEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Context for Root {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, _size: usize) {
        if self.puts.as_mut().is_some_and(|p| p.on_response(token, status)) {
            return;
        }
        if let Some(s) = &mut self.settler {
            s.on_response(token, status);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let root_id =
            self.get_property(vec!["plugin_root_id"]).and_then(|b| String::from_utf8(b).ok()).unwrap_or_default();
        self.role = match Role::from_root_id(&root_id) {
            Ok(role) => role,
            Err(e) => {
                log::error!("{e}");
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
                    // Shared data outlives a config reload: a process tier laid out for other bounds is
                    // emptied first (a no-op when they are the same, as for every worker after the first).
                    if cfg.caches && cfg.cache.layout().prepare(&HostStore) {
                        log::info!("response cache: its bounds changed; the entries of the old layout were dropped");
                    }
                    if cfg.fleet.is_some() {
                        self.settler = Some(fleet::Settler::new());
                    }
                    if cfg.fleet.is_some() && cfg.caches && cfg.cache.fleet {
                        self.puts = Some(cache_fleet::PutSender::new());
                    }
                    // The tick sends what the requests queued for the service: settlements and puts.
                    if self.settler.is_some() || self.puts.is_some() {
                        self.set_tick_period(fleet::TICK);
                    }
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

    fn on_tick(&mut self) {
        let Some(svc) = self.cfg.as_ref().and_then(|c| c.fleet.as_ref()) else { return };
        if let Some(s) = &mut self.settler {
            s.on_tick(svc);
        }
        if let Some(p) = &mut self.puts {
            p.on_tick(svc);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let cfg = self.cfg.clone()?;
        Some(match self.role {
            Role::Route => Box::new(RouteHttp::new(Pipeline::new(cfg), self.seq.clone())),
            Role::Upstream => Box::new(UpstreamHttp { core: UpstreamFilter::new(cfg), held_headers: false }),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

thread_local! {
    /// What the route-level role decided per forwarded request, for the upstream role's attempts (both
    /// roles of one worker thread run in this VM: same vm_id, code and VM config).
    static REQUESTS: RefCell<Registry> = RefCell::new(Registry::default());
    /// Metric ids by series (names come from the config, so this stays small).
    static METRICS: RefCell<observe::MetricIds> = RefCell::new(observe::MetricIds::default());
}

/// A counter of the host's own (the root contexts' senders), `None` when Envoy refuses it.
fn counter(name: &str) -> Option<u32> {
    proxy_wasm::hostcalls::define_metric(MetricType::Counter, name).ok()
}

/// Adds `n` to a counter made by [`counter`].
fn add(id: Option<u32>, n: u64) {
    if let Some(id) = id {
        let _ = proxy_wasm::hostcalls::increment_metric(id, n.min(i64::MAX as u64) as i64);
    }
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
            observe::Kind::Gauge => MetricType::Gauge,
        };
        proxy_wasm::hostcalls::define_metric(kind, name).ok()
    }

    fn add(&self, kind: observe::Kind, id: u32, value: u64) {
        let _ = match kind {
            observe::Kind::Counter => proxy_wasm::hostcalls::increment_metric(id, value.min(i64::MAX as u64) as i64),
            observe::Kind::Histogram => proxy_wasm::hostcalls::record_metric(id, value),
            observe::Kind::Gauge => proxy_wasm::hostcalls::increment_metric(id, value.min(i64::MAX as u64) as i64),
        };
    }

    fn shift(&self, id: u32, delta: i64) {
        let _ = proxy_wasm::hostcalls::increment_metric(id, delta);
    }

    fn log_record(&self, record: &[u8]) {
        let _ = proxy_wasm::hostcalls::set_property(vec![observe::LOG_PROPERTY], Some(record));
    }
}

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

pub(crate) fn now_ns(ctx: &dyn Context) -> u64 {
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
    let written = match present {
        Some(h) if !d.drop.is_empty() => remove_request_headers(ctx, h, &d),
        _ => {
            for name in &d.remove {
                if present.is_none_or(|h| h.has(name)) {
                    ctx.set_http_request_header(name, None);
                }
            }
            false
        }
    };
    if !written {
        for (name, value) in &d.set {
            ctx.set_http_request_header(name, Some(value));
        }
    }
    for (name, value) in &d.steer {
        ctx.set_http_request_header(name, value.as_deref());
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
        // Only the route role's body stages ask for callouts; it handles them before coming here.
        Step::Callout(_) => Action::Pause,
    }
}

/// Removes the request headers a decision drops (by position in `present`, and `remove` by name): one
/// host call each when they and the headers to set are two at most, else the whole map, with the
/// headers to set, in one call (an SDK's request has a dozen headers not forwarded). Returns whether
/// the headers to set were written.
fn remove_request_headers(ctx: &dyn HttpContext, present: &Pairs, d: &Decision) -> bool {
    let removed = |at: usize, name: &str| d.drop.binary_search(&(at as u32)).is_ok() || d.remove.contains(&name);
    let count = present.entries().enumerate().filter(|(at, (k, _))| removed(*at, k)).count();
    if count + d.set.len() <= 2 {
        for (at, (name, _)) in present.entries().enumerate() {
            if removed(at, name) {
                ctx.set_http_request_header(name, None);
            }
        }
        return false;
    }
    let mut all: Vec<(&str, &[u8])> = Vec::with_capacity(present.len() + d.set.len());
    all.extend(
        present
            .entries()
            .enumerate()
            .filter(|(at, (k, _))| !removed(*at, k) && !d.set.iter().any(|(n, _)| n == k))
            .map(|(_, e)| e),
    );
    all.extend(d.set.iter().map(|(k, v)| (*k, v.as_bytes())));
    ctx.set_http_request_headers_bytes(all);
    true
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
