//! Plugin configuration: parsed once when Envoy loads the filter, validated completely, and turned into
//! lookup structures the request path only reads. Every rejection names the field that is wrong.
//!
//! Two stages: `parse_raw` (`raw.rs`; each provider kind's settings are read by its provider module) reads
//! the file into raw types that mirror it, rejecting wrong types, bad values and unknown fields; then
//! `compile` (`compile.rs`) cross-checks the whole file and builds the lookup tables below.
//! `Config::parse` is both. A new top-level section is one raw type (`raw.rs`) and one compile step
//! (`compile.rs`) filling a field of `Config`.

mod cache;
#[cfg(test)]
mod cache_tests;
mod compile;
pub(crate) mod fields;
pub mod identity;
#[cfg(test)]
pub mod identity_tests;
pub(crate) mod provider_kinds;
mod raw;
#[cfg(test)]
pub mod tests;

pub use cache::{CacheBounds, CacheScope, ModelCache, RawCacheBounds, RawModelCache};
pub use compile::compile;
pub use identity::{Identity, LogUser, RawIdentity, RawTeam, Team, TeamId};
pub use raw::{
    parse_raw, RawConfig, RawKey, RawLimits, RawLogBodies, RawModel, RawModelLimits, RawProvider, RawProviderSettings,
    RawTarget,
};

pub use crate::providers::kind::{ProviderKind, WireFormat};

use crate::codec::sha256;
use crate::limits::{Period, Rate};
use hashbrown::{HashMap, HashSet};
use std::fmt;

/// Default cap on request bodies.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Default output tokens reserved for a request that names no `max_tokens`.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

/// Where the filter looks up environment variables (the VM's environment in Envoy).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// A provider credential. Its `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub fn for_tests(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// The Envoy cluster that reaches this provider.
    pub cluster: String,
    pub credential: Option<Secret>,
}

pub type ProviderId = usize;

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub provider: ProviderId,
    /// The model name the provider knows (Azure: the deployment name).
    pub model: String,
    pub price: Option<Price>,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub targets: Vec<Target>,
    /// The cluster the route-level filter sends this model's requests to.
    pub cluster: String,
    /// `cache`: its answers are cached (none: never).
    pub cache: Option<ModelCache>,
}

impl Model {
    /// The highest price among the targets (what a reservation assumes: any of them may serve).
    pub fn max_price(&self) -> Option<Price> {
        self.targets.iter().filter_map(|t| t.price).reduce(|a, b| Price {
            input: a.input.max(b.input),
            output: a.output.max(b.output),
            cached_input: a.cached_input.max(b.cached_input),
        })
    }

    /// The target a provider (and its model name) stands for.
    pub fn target(&self, provider: ProviderId, model: Option<&str>) -> Option<&Target> {
        self.targets.iter().find(|t| t.provider == provider && model.is_none_or(|m| m == t.model))
    }
}

/// Prices in US dollars per million tokens, which is the same number as micro-dollars per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Prompt tokens served from the provider's cache; default: the input price.
    pub cached_input: f64,
}

impl Price {
    /// Cost in micro-dollars, rounded up.
    pub fn cost_micros(&self, prompt: u64, cached: u64, completion: u64) -> u64 {
        let cached = cached.min(prompt);
        let c =
            (prompt - cached) as f64 * self.input + cached as f64 * self.cached_input + completion as f64 * self.output;
        c.max(0.0).ceil() as u64
    }
}

/// Limits on one virtual key (and optionally on the key with one model).
#[derive(Debug, Clone, Default)]
pub struct KeyLimits {
    pub requests: Option<Rate>,
    pub tokens: Option<Rate>,
    pub concurrent: Option<u64>,
    pub budget: Option<Budget>,
    pub per_model: HashMap<String, ModelLimits>,
    /// The shared-data record of the key's own limits (named once, at load).
    pub record: std::rc::Rc<str>,
    /// Limits held for the whole fleet by the rate-limit service (`limits.fleet`).
    pub fleet: Option<crate::limits::fleet::FleetLimits>,
}

impl KeyLimits {
    /// Limits of the subject's own record (beyond those with one model).
    pub fn has_own(&self) -> bool {
        self.concurrent.is_some() || self.requests.is_some() || self.tokens.is_some() || self.budget.is_some()
    }

    pub fn is_empty(&self) -> bool {
        !self.has_own() && self.per_model.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ModelLimits {
    pub requests: Option<Rate>,
    pub tokens: Option<Rate>,
    /// The shared-data record of this key × model (named once, at load).
    pub record: std::rc::Rc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub micros: u64,
    pub period: Period,
}

#[derive(Debug, Clone)]
pub enum Allowed {
    All,
    Only(HashSet<String>),
}

#[derive(Debug, Clone)]
pub struct Key {
    pub id: String,
    pub allowed: Allowed,
    pub limits: KeyLimits,
    /// The `GET /v1/models` answer for this key, built once at load.
    pub models_json: String,
    /// `team`: keys of one team share the answers of models cached with `scope: team`.
    pub team: Option<String>,
    /// The team in `teams` that `team` names (with a `teams` section): the key's requests count against
    /// the team's limits too.
    pub team_id: Option<TeamId>,
}

impl Key {
    pub fn may_use(&self, model: &str) -> bool {
        match &self.allowed {
            Allowed::All => true,
            Allowed::Only(set) => set.contains(model),
        }
    }
}

#[derive(Debug)]
pub struct Config {
    pub max_body_bytes: usize,
    /// Output tokens reserved for a request that names no `max_tokens`.
    pub default_max_output_tokens: u64,
    /// Opt-in: log request and response bodies, cut to this many bytes each.
    pub log_bodies_max_bytes: Option<usize>,
    pub providers: Vec<Provider>,
    /// Which provider forwards which client headers beyond the allow-list (`forward_headers`).
    pub forwarding: crate::forwarding::Forwarding,
    pub models: HashMap<String, Model>,
    pub keys: Vec<Key>,
    keys_by_digest: HashMap<[u8; 32], usize>,
    /// Providers left out because an optional credential was not set (for the load-time log line).
    pub disabled: Vec<String>,
    /// Models left out with their provider, so that a request for one says why it is not served.
    pub unavailable: HashMap<String, String>,
    /// `fleet_limits`: the rate-limit service behind fleet-wide limits.
    pub fleet: Option<crate::limits::fleet::FleetService>,
    /// `cache`: bounds of the response cache's process tier (the defaults when left out).
    pub cache: CacheBounds,
    /// Some model is cached (the cache stages are in the pipeline).
    pub caches: bool,
    /// `identity`: which credentials are accepted and how JWT users are read (none: virtual keys only).
    pub identity: Option<Identity>,
    /// `teams`, sorted by name (a [`TeamId`] indexes this).
    pub teams: Vec<Team>,
    teams_by_name: HashMap<String, TeamId>,
    /// Claim value → the teams it makes a user a member of.
    teams_by_claim: HashMap<String, Vec<TeamId>>,
}

/// A configuration error: the JSON path of the bad field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid switchyard config at '{}': {}", self.field, self.reason)
    }
}

impl Config {
    /// Parses and validates the plugin configuration: `compile(parse_raw(bytes, env)?)`.
    pub fn parse(bytes: &[u8], env: &dyn Env) -> Result<Config, ConfigError> {
        compile(parse_raw(bytes, env)?)
    }

    /// The index in `keys` of the virtual key whose SHA-256 matches the presented secret.
    pub fn key_index(&self, presented: &str) -> Option<usize> {
        self.keys_by_digest.get(&sha256::digest(presented.as_bytes())).copied()
    }

    pub fn key_by_secret(&self, presented: &str) -> Option<&Key> {
        self.key_index(presented).and_then(|i| self.keys.get(i))
    }

    pub fn provider(&self, id: ProviderId) -> Option<&Provider> {
        self.providers.get(id)
    }

    pub fn provider_by_name(&self, name: &str) -> Option<(ProviderId, &Provider)> {
        self.providers.iter().enumerate().find(|(_, p)| p.name == name)
    }

    /// Virtual keys are accepted (true without an `identity` section).
    pub fn accepts_keys(&self) -> bool {
        self.identity.as_ref().is_none_or(|i| i.accept_keys)
    }

    /// Users with a JWT verified by Envoy are accepted.
    pub fn accepts_jwt(&self) -> bool {
        self.identity.as_ref().is_some_and(|i| i.accept_jwt)
    }

    /// The config has an `identity` or a `teams` section: stats carry a `team` tag and the access log
    /// `user` and `team` fields.
    pub fn has_identity(&self) -> bool {
        self.identity.is_some() || !self.teams_by_name.is_empty()
    }

    pub fn team(&self, id: TeamId) -> Option<&Team> {
        self.teams.get(id)
    }

    pub fn team_id(&self, name: &str) -> Option<TeamId> {
        self.teams_by_name.get(name).copied()
    }

    /// The teams a claim value makes a user a member of.
    pub fn teams_for_claim(&self, value: &str) -> &[TeamId] {
        self.teams_by_claim.get(value).map_or(&[], Vec::as_slice)
    }

    /// A `GET /v1/models` answer listing `names` (served model names, in that order).
    pub fn models_json(&self, names: &[&str]) -> String {
        compile::models_list_json(names, &self.models, &self.providers)
    }
}
