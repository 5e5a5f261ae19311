//! Response caching settings: a model's `cache` section, the top-level `cache` bounds of the process tier,
//! and a key's `team` (whom `scope: team` shares answers between). Parsed field by field here (stage 1),
//! checked against each other in `compile` (stage 2): a model's `max_entry_bytes` must fit the process
//! tier's per-set budget, `cache.fleet` needs `fleet_limits` with the `switchyard` protocol.

use super::fields::{as_obj, check_fields, err, join, type_name, R};
use crate::cache::store::Layout;
use crate::limits::fleet::FleetService;
use serde_json::{Map, Value};

/// Default bytes of answers the process tier holds.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 64 << 20;
/// Default entries the process tier holds.
pub const DEFAULT_CACHE_MAX_ENTRIES: u32 = 10_000;
/// Default largest answer a model stores (or the per-set budget when that is smaller).
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 1 << 20;
const MAX_CACHE_BYTES: u64 = 1 << 30;
const MAX_CACHE_ENTRIES: u64 = 1_000_000;
const MAX_ENTRY_BYTES: u64 = 16 << 20;
/// The smallest per-set budget a caching model is served with.
const MIN_SET_BUDGET: u64 = 1024;
const NS: u64 = 1_000_000_000;
const MAX_TTL_NS: u64 = 30 * 86_400 * NS;

/// Who shares a model's cached answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// No answer is shared between virtual keys (the default).
    Key,
    /// Keys of the same `team` share; a key without a team behaves as `Key`.
    Team,
    /// Every caller allowed on the model shares.
    Shared,
}

/// `models.<name>.cache`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelCache {
    pub ttl_ns: u64,
    /// The largest answer stored (at most the process tier's per-set budget).
    pub max_entry_bytes: u64,
    pub scope: CacheScope,
    /// A hit is charged the stored usage and cost as if served (`true`), or only counts as a request.
    pub charge: bool,
}

/// The top-level `cache`: bounds of the process tier (and whether the fleet tier is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBounds {
    pub max_bytes: u64,
    pub max_entries: u32,
    /// `cache.fleet`: answers also kept fleet-wide (Redis, through switchyard-limits' cache service).
    pub fleet: bool,
}

impl Default for CacheBounds {
    fn default() -> CacheBounds {
        CacheBounds { max_bytes: DEFAULT_CACHE_MAX_BYTES, max_entries: DEFAULT_CACHE_MAX_ENTRIES, fleet: false }
    }
}

impl CacheBounds {
    /// How the process tier is cut into sets for these bounds.
    pub fn layout(&self) -> Layout {
        Layout::new(self.max_bytes, self.max_entries)
    }
}

/// `models.<name>.cache` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawModelCache {
    /// `models.<name>.cache`.
    pub path: String,
    pub ttl_ns: u64,
    /// `max_entry_bytes` as written.
    pub max_entry_bytes: Option<u64>,
    pub scope: CacheScope,
    pub charge: bool,
}

/// The top-level `cache` as written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawCacheBounds {
    pub max_bytes: Option<u64>,
    pub max_entries: Option<u32>,
    pub fleet: bool,
}

fn integer(o: &Map<String, Value>, path: &str, k: &str, min: u64, max: u64) -> R<Option<u64>> {
    match o.get(k) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(err(join(path, k), format!("must be an integer from {min} to {max}"))),
        },
    }
}

fn boolean(o: &Map<String, Value>, path: &str, k: &str) -> R<bool> {
    match o.get(k) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(err(join(path, k), format!("must be true or false, got {}", type_name(v)))),
    }
}

/// `models.<name>.cache`: `{ttl, max_entry_bytes, scope, charge}`.
pub fn model_cache(v: &Value, path: &str) -> R<RawModelCache> {
    let o = as_obj(v, path)?;
    check_fields(o, path, &["ttl", "max_entry_bytes", "scope", "charge"])?;
    let ttl_path = join(path, "ttl");
    let ttl_ns =
        ttl(o.get("ttl").ok_or_else(|| err(&ttl_path, "is required (how long an answer is kept)"))?, &ttl_path)?;
    let max_entry_bytes = integer(o, path, "max_entry_bytes", 1, MAX_ENTRY_BYTES)?;
    let scope = match o.get("scope") {
        None => CacheScope::Key,
        Some(Value::String(s)) if s == "key" => CacheScope::Key,
        Some(Value::String(s)) if s == "team" => CacheScope::Team,
        Some(Value::String(s)) if s == "shared" => CacheScope::Shared,
        Some(_) => {
            return Err(err(
                join(path, "scope"),
                "must be \"key\" (no answer shared between keys), \"team\" (keys of one team share) or \"shared\" (every caller of the model shares)",
            ))
        }
    };
    let charge = boolean(o, path, "charge")?;
    Ok(RawModelCache { path: path.to_string(), ttl_ns, max_entry_bytes, scope, charge })
}

/// A TTL: an integer number of seconds, or a string `<integer><unit>` with unit `ms`, `s`, `m`, `h` or
/// `d`; more than zero, at most 30 days. In nanoseconds.
pub fn ttl(v: &Value, path: &str) -> R<u64> {
    let ns = match v {
        Value::Number(n) => n.as_u64().and_then(|s| s.checked_mul(NS)),
        Value::String(s) => {
            let digits = s.bytes().take_while(u8::is_ascii_digit).count();
            let (num, unit) = s.split_at(digits);
            let scale = match unit {
                "ms" => Some(NS / 1000),
                "s" => Some(NS),
                "m" => Some(60 * NS),
                "h" => Some(3600 * NS),
                "d" => Some(86_400 * NS),
                _ => None,
            };
            match (num.parse::<u64>().ok(), scale) {
                (Some(n), Some(scale)) if digits <= 12 => n.checked_mul(scale),
                _ => None,
            }
        }
        _ => None,
    };
    match ns {
        Some(ns) if (1..=MAX_TTL_NS).contains(&ns) => Ok(ns),
        _ => Err(err(
            path,
            "must be a duration above zero and at most 30 days: an integer number of seconds, or a string such as \"30s\", \"5m\", \"1h\" or \"7d\"",
        )),
    }
}

/// The top-level `cache`: `{max_bytes, max_entries, fleet}`.
pub fn cache_bounds(v: &Value, path: &str) -> R<RawCacheBounds> {
    let o = as_obj(v, path)?;
    check_fields(o, path, &["max_bytes", "max_entries", "fleet"])?;
    Ok(RawCacheBounds {
        max_bytes: integer(o, path, "max_bytes", 1024, MAX_CACHE_BYTES)?,
        max_entries: integer(o, path, "max_entries", 1, MAX_CACHE_ENTRIES)?.map(|n| n as u32),
        fleet: boolean(o, path, "fleet")?,
    })
}

/// `keys[i].team`: a name (letters, digits, `-_.:`).
pub fn team(o: &Map<String, Value>, path: &str) -> R<Option<String>> {
    match o.get("team") {
        None => Ok(None),
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= 128
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(err(join(path, "team"), "must be a name of 1 to 128 letters, digits and - _ . :")),
    }
}

/// Stage 2 for the top level: the bounds with their defaults; `cache.fleet` needs the fleet service, and
/// that it be `switchyard-limits` (a standard rate-limit service has no cache).
pub fn compile_bounds(raw: Option<RawCacheBounds>, fleet_service: Option<&FleetService>) -> R<CacheBounds> {
    let raw = raw.unwrap_or_default();
    match fleet_service {
        _ if !raw.fleet => {}
        None => {
            return Err(err(
                "cache.fleet",
                "needs the top-level fleet_limits section (the fleet tier is reached through the rate-limit service's cluster)",
            ))
        }
        Some(f) if f.standard => {
            return Err(err(
                "cache.fleet",
                "needs protocol \"switchyard\" in fleet_limits (the fleet tier is switchyard-limits' cache service; a standard rate-limit service has none)",
            ))
        }
        Some(_) => {}
    }
    let d = CacheBounds::default();
    Ok(CacheBounds {
        max_bytes: raw.max_bytes.unwrap_or(d.max_bytes),
        max_entries: raw.max_entries.unwrap_or(d.max_entries),
        fleet: raw.fleet,
    })
}

/// Stage 2 for a model: `max_entry_bytes` must fit the per-set budget of the process tier (an entry
/// larger than one set's bytes could never be stored); left out, it is 1 MiB or that budget if smaller.
pub fn compile_model(raw: RawModelCache, bounds: &CacheBounds) -> R<ModelCache> {
    let layout = bounds.layout();
    let budget = layout.set_budget();
    let explain = || {
        format!(
            "the process cache's per-set budget of {budget} bytes (cache.max_bytes {} / {} sets of {} entries from cache.max_entries {})",
            bounds.max_bytes,
            layout.sets(),
            layout.ways(),
            bounds.max_entries
        )
    };
    if budget < MIN_SET_BUDGET {
        return Err(err(
            "cache.max_bytes",
            format!("{} caches answers, but {} is below {MIN_SET_BUDGET} bytes; raise cache.max_bytes or lower cache.max_entries", raw.path, explain()),
        ));
    }
    let max_entry_bytes = match raw.max_entry_bytes {
        None => DEFAULT_MAX_ENTRY_BYTES.min(budget),
        Some(n) if n <= budget => n,
        Some(n) => {
            return Err(err(
                join(&raw.path, "max_entry_bytes"),
                format!(
                    "{n} is above {}; lower max_entry_bytes, raise cache.max_bytes or lower cache.max_entries",
                    explain()
                ),
            ))
        }
    };
    Ok(ModelCache { ttl_ns: raw.ttl_ns, max_entry_bytes, scope: raw.scope, charge: raw.charge })
}
