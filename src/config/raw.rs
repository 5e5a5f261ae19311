//! Stage 1: the configuration file read into raw types that mirror it. Everything one field or one
//! entry says on its own is checked here (types, ranges, unknown fields, environment variables behind
//! credentials), each rejection naming the field's JSON path. What needs the whole file (references
//! between sections, duplicates, defaults taken from elsewhere) is stage 2, `compile.rs`.
//!
//! A new top-level section is one raw type with its parser here (a name in `SECTIONS`, a field of
//! `RawConfig`, a line in `parse_raw`) and one compile step in `compile.rs`.

use super::cache::{cache_bounds, model_cache, team, RawCacheBounds, RawModelCache};
use super::fields::{as_obj, check_fields, credential, err, is_header_safe, join, opt_str, req_str, type_name, R};
use super::identity::{RawIdentity, RawTeam};
use super::provider_kinds;
use super::{Budget, Env, Price, ProviderKind, Secret};
use crate::codec::sha256;
use crate::limits::{Period, Rate};
use serde_json::{Map, Value};

/// The configuration file as written, checked field by field but not yet cross-checked.
#[derive(Debug, Clone)]
pub struct RawConfig {
    pub max_body_bytes: Option<usize>,
    pub default_max_output_tokens: Option<u64>,
    pub log_bodies: Option<RawLogBodies>,
    /// In the file's order (by name).
    pub providers: Vec<RawProvider>,
    /// In the file's order (by name).
    pub models: Vec<RawModel>,
    pub keys: Vec<RawKey>,
    /// `fleet_limits`: the rate-limit service behind fleet-wide limits.
    pub fleet: Option<crate::limits::fleet::FleetService>,
    /// `cache`: bounds of the response cache's process tier.
    pub cache: Option<RawCacheBounds>,
    /// `identity`: which credentials are accepted, how JWT users are read.
    pub identity: Option<RawIdentity>,
    /// `teams`, in the file's order (by name).
    pub teams: Option<Vec<RawTeam>>,
}

/// `log_bodies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLogBodies {
    pub max_bytes: usize,
}

/// `providers.<name>`.
#[derive(Debug, Clone)]
pub struct RawProvider {
    pub name: String,
    /// `None` when an optional credential is not set in the VM: the provider is left out (and its
    /// models are unavailable).
    pub settings: Option<RawProviderSettings>,
}

#[derive(Debug, Clone)]
pub struct RawProviderSettings {
    /// The kind and its own settings (with their defaults).
    pub kind: ProviderKind,
    /// `cluster` as written; the provider's name when left out.
    pub cluster: Option<String>,
    /// `api_key`, resolved.
    pub credential: Option<Secret>,
    /// `forward_headers`: client headers beyond the allow-list this provider gets.
    pub forward_headers: Vec<String>,
}

/// `models.<name>`.
#[derive(Debug, Clone)]
pub struct RawModel {
    pub name: String,
    /// `models.<name>`.
    pub path: String,
    /// `cluster` as written.
    pub cluster: Option<String>,
    /// The entries of `targets`; a model written without `targets` is its own single target (whose
    /// path is the model's).
    pub targets: Vec<RawTarget>,
    /// `cache`: the model's answers are cached.
    pub cache: Option<RawModelCache>,
}

/// One target of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTarget {
    /// `models.<name>` or `models.<name>.targets[i]`.
    pub path: String,
    /// The provider's name, not yet looked up.
    pub provider: String,
    /// `model` as written; the model's own name when left out.
    pub model: Option<String>,
    pub price: Option<Price>,
}

/// `keys[i]`.
#[derive(Debug, Clone)]
pub struct RawKey {
    /// `keys[i]`.
    pub path: String,
    pub id: String,
    pub sha256: [u8; 32],
    /// Model names as written (`"*"` for all), not yet looked up.
    pub models: Vec<String>,
    pub limits: Option<RawLimits>,
    /// `team`: whom `scope: team` caches share answers between.
    pub team: Option<String>,
}

/// `keys[i].limits`.
#[derive(Debug, Clone, Default)]
pub struct RawLimits {
    pub requests: Option<Rate>,
    pub tokens: Option<Rate>,
    pub concurrent: Option<u64>,
    pub budget: Option<Budget>,
    /// `models`, in the file's order; the names are not yet looked up.
    pub models: Vec<RawModelLimits>,
    /// `fleet`: limits held for the whole fleet (no `concurrent`, no `fleet` inside).
    pub fleet: Option<Box<RawLimits>>,
    /// `fleet`'s path, for messages.
    pub fleet_path: String,
}

/// `keys[i].limits.models.<name>`.
#[derive(Debug, Clone)]
pub struct RawModelLimits {
    /// `keys[i].limits.models.<name>`.
    pub path: String,
    pub model: String,
    pub requests: Option<Rate>,
    pub tokens: Option<Rate>,
}

/// The top-level fields (an unknown one is rejected with this list).
const SECTIONS: &[&str] = &[
    "max_body_bytes",
    "default_max_output_tokens",
    "log_bodies",
    "providers",
    "models",
    "keys",
    "fleet_limits",
    "cache",
    "identity",
    "teams",
];

/// Stage 1: reads the file into raw types, rejecting what is wrong in any single field.
pub fn parse_raw(bytes: &[u8], env: &dyn Env) -> R<RawConfig> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| err("(root)", format!("not valid JSON: {e}")))?;
    let o = as_obj(&root, "(root)")?;
    check_fields(o, "", SECTIONS)?;
    let log_bodies = optional(o, "log_bodies", log_bodies)?;
    let default_max_output_tokens = optional(o, "default_max_output_tokens", |v, path| match v.as_u64() {
        Some(n) if (1..=10_000_000).contains(&n) => Ok(n),
        _ => Err(err(path, "must be an integer from 1 to 10000000")),
    })?;
    let max_body_bytes = optional(o, "max_body_bytes", |v, path| match v.as_u64() {
        Some(n) if (1024..=1 << 30).contains(&n) => Ok(n as usize),
        _ => Err(err(path, "must be an integer from 1024 to 1073741824")),
    })?;
    let providers = required(o, "providers", "is required", |v, path| providers(v, path, env))?;
    let models = required(o, "models", "is required", models)?;
    let keys = required(o, "keys", "is required (a list of virtual keys)", keys)?;
    let fleet = optional(o, "fleet_limits", fleet_service)?;
    let cache = optional(o, "cache", cache_bounds)?;
    let identity = optional(o, "identity", super::identity::identity)?;
    let teams = optional(o, "teams", super::identity::teams)?;
    Ok(RawConfig {
        max_body_bytes,
        default_max_output_tokens,
        log_bodies,
        providers,
        models,
        keys,
        fleet,
        cache,
        identity,
        teams,
    })
}

/// A top-level section that may be left out.
fn optional<T>(o: &Map<String, Value>, name: &str, parse: impl FnOnce(&Value, &str) -> R<T>) -> R<Option<T>> {
    o.get(name).map(|v| parse(v, name)).transpose()
}

/// A top-level section that must be given (`missing` says so).
fn required<T>(o: &Map<String, Value>, name: &str, missing: &str, parse: impl FnOnce(&Value, &str) -> R<T>) -> R<T> {
    parse(o.get(name).ok_or_else(|| err(name, missing))?, name)
}

fn log_bodies(v: &Value, path: &str) -> R<RawLogBodies> {
    let o = as_obj(v, path)?;
    check_fields(o, path, &["max_bytes"])?;
    match o.get("max_bytes").and_then(Value::as_u64) {
        Some(n) if (1..=65_536).contains(&n) => Ok(RawLogBodies { max_bytes: n as usize }),
        _ => Err(err(join(path, "max_bytes"), "must be an integer from 1 to 65536")),
    }
}

fn providers(v: &Value, path: &str, env: &dyn Env) -> R<Vec<RawProvider>> {
    let mut out = Vec::new();
    for (name, v) in as_obj(v, path)? {
        if name.is_empty() {
            return Err(err(path, "provider names must not be empty"));
        }
        out.push(provider(name, v, env)?);
    }
    Ok(out)
}

/// One provider: its kind's own settings (read by its provider module, see `provider_kinds.rs`), then the fields every kind shares.
fn provider(name: &str, v: &Value, env: &dyn Env) -> R<RawProvider> {
    let path = format!("providers.{name}");
    let left_out = RawProvider { name: name.to_string(), settings: None };
    let o = as_obj(v, &path)?;
    let kind_name = req_str(o, &path, "kind")?;
    let Some(kind) = provider_kinds::settings(kind_name, o, &path, env)? else {
        return Ok(left_out);
    };
    // Fields every kind that calls a provider shares, beyond the kind's own.
    let shared: &[&str] = if kind.kind.answers_locally() { &[] } else { &["forward_headers"] };
    let known: Vec<&str> = kind.fields.iter().chain(shared).copied().collect();
    check_fields(o, &path, &known)?;
    let forward_headers = forward_headers(o.get("forward_headers"), &join(&path, "forward_headers"))?;
    let cluster = opt_str(o, &path, "cluster")?;
    if !is_header_safe(cluster.unwrap_or(name)) {
        return Err(err(join(&path, "cluster"), "must be printable ASCII"));
    }
    let credential = match o.get("api_key") {
        None => None,
        Some(v) => match credential(v, &join(&path, "api_key"), env)? {
            None => return Ok(left_out),
            some => some,
        },
    };
    if kind.kind.requires_key() && credential.is_none() {
        return Err(err(join(&path, "api_key"), format!("is required for kind {kind_name}")));
    }
    let settings =
        RawProviderSettings { kind: kind.kind, cluster: cluster.map(str::to_string), credential, forward_headers };
    Ok(RawProvider { name: name.to_string(), settings: Some(settings) })
}

/// `forward_headers`: a list of header names (see `crate::forwarding::refused` for what may not be
/// listed), each once.
fn forward_headers(v: Option<&Value>, path: &str) -> R<Vec<String>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Value::Array(items) = v else {
        return Err(err(path, format!("must be an array of header names, got {}", type_name(v))));
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Value::String(name) = item else {
            return Err(err(at, format!("must be a header name, got {}", type_name(item))));
        };
        if let Some(reason) = crate::forwarding::refused(name) {
            return Err(err(at, format!("'{name}' {reason}")));
        }
        if out.contains(name) {
            return Err(err(at, format!("'{name}' is listed twice")));
        }
        out.push(name.clone());
    }
    Ok(out)
}

fn models(v: &Value, path: &str) -> R<Vec<RawModel>> {
    as_obj(v, path)?.iter().map(|(name, v)| model(name, v)).collect()
}

fn model(name: &str, v: &Value) -> R<RawModel> {
    let path = format!("models.{name}");
    if name.is_empty() || !is_header_safe(name) {
        return Err(err(path, "model names must be non-empty printable ASCII"));
    }
    let mo = as_obj(v, &path)?;
    check_fields(mo, &path, &["provider", "model", "price", "cluster", "targets", "cache"])?;
    let cache = mo.get("cache").map(|v| model_cache(v, &join(&path, "cache"))).transpose()?;
    // One target inline, or a list of targets behind one cluster (fallback and splits).
    let Some(t) = mo.get("targets") else {
        let cluster = opt_str(mo, &path, "cluster")?.map(str::to_string);
        let targets = vec![target(&path, mo)?];
        return Ok(RawModel { name: name.to_string(), path, cluster, targets, cache });
    };
    for k in ["provider", "model", "price"] {
        if mo.contains_key(k) {
            return Err(err(join(&path, k), "goes inside each entry of targets when targets is given"));
        }
    }
    let cluster = opt_str(mo, &path, "cluster")?.ok_or_else(|| {
        err(join(&path, "cluster"), "is required with targets: the Envoy cluster holding every target's endpoints")
    })?;
    let list = match t {
        Value::Array(a) if !a.is_empty() => a,
        _ => return Err(err(join(&path, "targets"), "must be a non-empty array")),
    };
    let mut entries = Vec::new();
    for (i, tv) in list.iter().enumerate() {
        let tpath = format!("{path}.targets[{i}]");
        let to = as_obj(tv, &tpath)?;
        check_fields(to, &tpath, &["provider", "model", "price"])?;
        entries.push((tpath, to));
    }
    let targets = entries.iter().map(|(tpath, to)| target(tpath, to)).collect::<R<Vec<_>>>()?;
    Ok(RawModel { name: name.to_string(), path, cluster: Some(cluster.to_string()), targets, cache })
}

fn target(path: &str, o: &Map<String, Value>) -> R<RawTarget> {
    let price = match o.get("price") {
        None => None,
        Some(v) => Some(price(v, &join(path, "price"))?),
    };
    let provider = req_str(o, path, "provider")?.to_string();
    let model = opt_str(o, path, "model")?.map(str::to_string);
    Ok(RawTarget { path: path.to_string(), provider, model, price })
}

fn price(v: &Value, path: &str) -> R<Price> {
    let o = as_obj(v, path)?;
    check_fields(o, path, &["input", "output", "cached_input"])?;
    let num = |k: &str, required: bool| -> R<Option<f64>> {
        match o.get(k) {
            None if required => Err(err(join(path, k), "is required (US dollars per million tokens)")),
            None => Ok(None),
            Some(x) => match x.as_f64() {
                Some(f) if f.is_finite() && (0.0..=1.0e6).contains(&f) => Ok(Some(f)),
                _ => Err(err(join(path, k), "must be a number from 0 to 1000000 (US dollars per million tokens)")),
            },
        }
    };
    let input = num("input", true)?.unwrap_or(0.0);
    let output = num("output", true)?.unwrap_or(0.0);
    let cached_input = num("cached_input", false)?.unwrap_or(input);
    Ok(Price { input, output, cached_input })
}

fn keys(v: &Value, path: &str) -> R<Vec<RawKey>> {
    match v {
        Value::Array(a) => a.iter().enumerate().map(|(i, v)| key(&format!("{path}[{i}]"), v)).collect(),
        v => Err(err(path, format!("must be an array, got {}", type_name(v)))),
    }
}

fn key(path: &str, v: &Value) -> R<RawKey> {
    let ko = as_obj(v, path)?;
    check_fields(ko, path, &["id", "sha256", "models", "limits", "team"])?;
    let id = req_str(ko, path, "id")?;
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
        return Err(err(join(path, "id"), "may hold only letters, digits and - _ . :"));
    }
    let sha256 = sha256::parse_hex(req_str(ko, path, "sha256")?)
        .ok_or_else(|| err(join(path, "sha256"), "must be 64 hex digits (the SHA-256 of the key)"))?;
    let list = match ko.get("models") {
        Some(Value::Array(a)) => a,
        Some(v) => return Err(err(join(path, "models"), format!("must be an array, got {}", type_name(v)))),
        None => return Err(err(join(path, "models"), "is required (model names, or [\"*\"] for all)")),
    };
    let mut models = Vec::with_capacity(list.len());
    for (j, m) in list.iter().enumerate() {
        let m = m.as_str().ok_or_else(|| err(format!("{path}.models[{j}]"), "must be a string"))?;
        models.push(m.to_string());
    }
    let limits = match ko.get("limits") {
        None => None,
        Some(v) => Some(limits(v, &join(path, "limits"))?),
    };
    let team = team(ko, path)?;
    Ok(RawKey { path: path.to_string(), id: id.to_string(), sha256, models, limits, team })
}

/// `fleet_limits`: `{cluster, domain, timeout_ms, failure_mode, protocol}`.
fn fleet_service(v: &Value, path: &str) -> R<crate::limits::fleet::FleetService> {
    let o = as_obj(v, path)?;
    check_fields(o, path, &["cluster", "domain", "timeout_ms", "failure_mode", "protocol"])?;
    let cluster = req_str(o, path, "cluster")?;
    if !is_header_safe(cluster) {
        return Err(err(join(path, "cluster"), "must be printable ASCII"));
    }
    let domain = opt_str(o, path, "domain")?.unwrap_or("switchyard");
    let timeout_ms = match o.get("timeout_ms") {
        None => 50,
        Some(t) => match t.as_u64() {
            Some(n) if (1..=10_000).contains(&n) => n,
            _ => return Err(err(join(path, "timeout_ms"), "must be an integer from 1 to 10000 (milliseconds)")),
        },
    };
    let fail_open = match opt_str(o, path, "failure_mode")? {
        None | Some("open") => true,
        Some("closed") => false,
        Some(_) => {
            return Err(err(
                join(path, "failure_mode"),
                "must be \"open\" (admit on the local limits alone) or \"closed\" (refuse with 503)",
            ))
        }
    };
    let standard = match opt_str(o, path, "protocol")? {
        None | Some("switchyard") => false,
        Some("standard") => true,
        Some(_) => return Err(err(
            join(path, "protocol"),
            "must be \"switchyard\" (switchyard-limits: reserve, then settle) or \"standard\" (any rate-limit service)",
        )),
    };
    Ok(crate::limits::fleet::FleetService {
        cluster: cluster.to_string(),
        domain: domain.to_string(),
        timeout_ms,
        fail_open,
        standard,
    })
}

/// `keys[i].limits` (also `teams.<name>.limits` and `identity.user_limits`).
pub(super) fn limits(v: &Value, path: &str) -> R<RawLimits> {
    limits_of(v, path, false)
}

fn limits_of(v: &Value, path: &str, fleet: bool) -> R<RawLimits> {
    let o = as_obj(v, path)?;
    let fields: &[&str] = if fleet {
        &["requests", "tokens", "budget", "models"]
    } else {
        &["requests", "tokens", "concurrent", "budget", "models", "fleet"]
    };
    if fleet && o.contains_key("concurrent") {
        return Err(err(
            join(path, "concurrent"),
            "is local only in this version (a fleet-wide count of requests in flight needs leases)",
        ));
    }
    check_fields(o, path, fields)?;
    let mut l = RawLimits::default();
    if let Some(x) = o.get("fleet") {
        l.fleet_path = join(path, "fleet");
        l.fleet = Some(Box::new(limits_of(x, &l.fleet_path, true)?));
    }
    if let Some(x) = o.get("requests") {
        l.requests = Some(rate(x, &join(path, "requests"))?);
    }
    if let Some(x) = o.get("tokens") {
        l.tokens = Some(rate(x, &join(path, "tokens"))?);
    }
    if let Some(x) = o.get("concurrent") {
        match x.as_u64() {
            Some(n) if n >= 1 => l.concurrent = Some(n),
            _ => return Err(err(join(path, "concurrent"), "must be a positive integer")),
        }
    }
    if let Some(x) = o.get("budget") {
        l.budget = Some(budget(x, &join(path, "budget"))?);
    }
    if let Some(x) = o.get("models") {
        let mpath = join(path, "models");
        for (name, mv) in as_obj(x, &mpath)? {
            let p = join(&mpath, name);
            let mo = as_obj(mv, &p)?;
            check_fields(mo, &p, &["requests", "tokens"])?;
            let requests = mo.get("requests").map(|r| rate(r, &join(&p, "requests"))).transpose()?;
            let tokens = mo.get("tokens").map(|t| rate(t, &join(&p, "tokens"))).transpose()?;
            l.models.push(RawModelLimits { path: p, model: name.clone(), requests, tokens });
        }
    }
    Ok(l)
}

fn budget(v: &Value, path: &str) -> R<Budget> {
    let b = as_obj(v, path)?;
    check_fields(b, path, &["usd", "period"])?;
    let usd = match b.get("usd").and_then(Value::as_f64) {
        Some(f) if f.is_finite() && (0.0..=1.0e9).contains(&f) => f,
        _ => return Err(err(join(path, "usd"), "is required: a number of US dollars from 0 to 1e9")),
    };
    let period = match b.get("period").and_then(Value::as_str) {
        Some("day") => Period::Day,
        Some("month") => Period::Month,
        _ => return Err(err(join(path, "period"), "must be \"day\" or \"month\" (UTC calendar periods)")),
    };
    Ok(Budget { micros: (usd * 1.0e6).round() as u64, period })
}

fn rate(v: &Value, path: &str) -> R<Rate> {
    let o = as_obj(v, path)?;
    check_fields(o, path, &["limit", "window_secs"])?;
    let limit = match o.get("limit").map(Value::as_u64) {
        Some(Some(n)) if n >= 1 => n,
        None => return Err(err(join(path, "limit"), "is required")),
        _ => return Err(err(join(path, "limit"), "must be a positive integer")),
    };
    let window_secs = match o.get("window_secs").map(Value::as_u64) {
        None => 60,
        Some(Some(n)) if (1..=31 * 86_400).contains(&n) => n,
        _ => return Err(err(join(path, "window_secs"), "must be an integer from 1 to 2678400")),
    };
    Ok(Rate { max: limit, window_secs })
}
