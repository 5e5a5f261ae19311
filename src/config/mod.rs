//! Plugin configuration: parsed once when Envoy loads the filter, validated completely, and turned into
//! lookup structures the request path only reads. Every rejection names the field that is wrong.

use crate::codec::sha256;
use crate::limits::{Period, Rate};
use hashbrown::{HashMap, HashSet};
use serde_json::{Map, Value};
use std::fmt;

/// Default cap on request bodies.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// Answered by the filter itself, in the OpenAI format.
    Mock,
    OpenAi,
    AzureOpenAi {
        api_version: String,
    },
    OpenAiCompatible {
        base_path: String,
    },
    /// Anthropic Messages API: `x-api-key`, `anthropic-version`; `max_tokens` is required there, so
    /// requests without one get `default_max_tokens`.
    Anthropic {
        version: String,
        default_max_tokens: u32,
    },
    /// Gemini API (`generativelanguage`): `x-goog-api-key`.
    Gemini {
        api_version: String,
    },
    /// Vertex AI publisher models: bearer access token, project and location in the path.
    Vertex {
        project: String,
        location: String,
    },
    /// Bedrock Converse / ConverseStream, SigV4-signed in the filter.
    Bedrock {
        region: String,
        access_key_id: Secret,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
}

impl ProviderKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderKind::Mock => "mock",
            ProviderKind::OpenAi => "openai",
            ProviderKind::AzureOpenAi { .. } => "azure_openai",
            ProviderKind::OpenAiCompatible { .. } => "openai_compatible",
            ProviderKind::Anthropic { .. } => "anthropic",
            ProviderKind::Gemini { .. } => "gemini",
            ProviderKind::Vertex { .. } => "vertex",
            ProviderKind::Bedrock { .. } => "bedrock",
        }
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
}

impl KeyLimits {
    pub fn is_empty(&self) -> bool {
        self.requests.is_none()
            && self.tokens.is_none()
            && self.concurrent.is_none()
            && self.budget.is_none()
            && self.per_model.is_empty()
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
    pub models: HashMap<String, Model>,
    pub keys: Vec<Key>,
    keys_by_digest: HashMap<[u8; 32], usize>,
    /// Providers left out because an optional credential was not set (for the load-time log line).
    pub disabled: Vec<String>,
    /// Models left out with their provider, so that a request for one says why it is not served.
    pub unavailable: HashMap<String, String>,
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

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), reason: reason.into() }
}

type R<T> = Result<T, ConfigError>;

/// One target's JSON path and object, while a model is parsed.
type TargetEntry<'a> = (String, &'a Map<String, Value>);

fn as_obj<'a>(v: &'a Value, path: &str) -> R<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| err(path, format!("must be an object, got {}", type_name(v))))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_fields(o: &Map<String, Value>, path: &str, known: &[&str]) -> R<()> {
    for k in o.keys() {
        if !known.contains(&k.as_str()) {
            return Err(err(join(path, k), format!("unknown field (expected one of: {})", known.join(", "))));
        }
    }
    Ok(())
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn opt_str<'a>(o: &'a Map<String, Value>, path: &str, k: &str) -> R<Option<&'a str>> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(Value::String(_)) => Err(err(join(path, k), "must not be empty")),
        Some(v) => Err(err(join(path, k), format!("must be a string, got {}", type_name(v)))),
    }
}

fn req_str<'a>(o: &'a Map<String, Value>, path: &str, k: &str) -> R<&'a str> {
    opt_str(o, path, k)?.ok_or_else(|| err(join(path, k), "is required"))
}

fn is_header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn parse_credential(v: &Value, path: &str, env: &dyn Env) -> R<Option<Secret>> {
    match v {
        Value::String(s) if s.is_empty() => Err(err(path, "must not be empty")),
        Value::String(s) => {
            if !is_header_safe(s) {
                return Err(err(path, "must be printable ASCII"));
            }
            Ok(Some(Secret(s.clone())))
        }
        Value::Object(o) => {
            check_fields(o, path, &["env", "optional"])?;
            let name = req_str(o, path, "env")?;
            let optional = match o.get("optional") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => return Err(err(join(path, "optional"), format!("must be a boolean, got {}", type_name(v)))),
            };
            match env.var(name).filter(|s| !s.is_empty()) {
                Some(s) if is_header_safe(&s) => Ok(Some(Secret(s))),
                // The value is never quoted: it is a secret.
                Some(_) => Err(err(join(path, "env"), format!("environment variable {name} holds characters a header cannot carry"))),
                None if optional => Ok(None),
                None => Err(err(
                    join(path, "env"),
                    format!("environment variable {name} is not set in the VM (add it to vm_config.environment_variables.host_env_keys, or mark the credential optional)"),
                )),
            }
        }
        v => Err(err(path, format!("must be a string or {{\"env\": NAME}}, got {}", type_name(v)))),
    }
}

/// What parsing a provider entry gives: the provider, or None when an optional credential is missing.
fn parse_provider(name: &str, v: &Value, env: &dyn Env) -> R<Option<Provider>> {
    let path = format!("providers.{name}");
    let o = as_obj(v, &path)?;
    let kind_name = req_str(o, &path, "kind")?;
    let (kind, known): (ProviderKind, &[&str]) = match kind_name {
        "mock" => (ProviderKind::Mock, &["kind"]),
        "openai" => (ProviderKind::OpenAi, &["kind", "cluster", "api_key"]),
        "azure_openai" => {
            let v = req_str(o, &path, "api_version")?;
            if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
                return Err(err(join(&path, "api_version"), "may hold only letters, digits, '-' and '.'"));
            }
            (ProviderKind::AzureOpenAi { api_version: v.to_string() }, &["kind", "cluster", "api_key", "api_version"])
        }
        "openai_compatible" => {
            let base = opt_str(o, &path, "base_path")?.unwrap_or("/v1");
            if !base.starts_with('/')
                || base.contains('?')
                || base.contains('#')
                || !is_header_safe(base)
                || base.contains(' ')
            {
                return Err(err(join(&path, "base_path"), "must be a path starting with '/', without query or spaces"));
            }
            let base = base.trim_end_matches('/').to_string();
            (ProviderKind::OpenAiCompatible { base_path: base }, &["kind", "cluster", "api_key", "base_path"])
        }
        "anthropic" => {
            let version = opt_str(o, &path, "version")?.unwrap_or("2023-06-01");
            if !is_header_safe(version) {
                return Err(err(join(&path, "version"), "must be printable ASCII"));
            }
            let default_max_tokens = match o.get("default_max_tokens") {
                None => 4096,
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=1_000_000).contains(&n) => n as u32,
                    _ => return Err(err(join(&path, "default_max_tokens"), "must be an integer from 1 to 1000000")),
                },
            };
            (
                ProviderKind::Anthropic { version: version.to_string(), default_max_tokens },
                &["kind", "cluster", "api_key", "version", "default_max_tokens"],
            )
        }
        "gemini" => {
            let v = opt_str(o, &path, "api_version")?.unwrap_or("v1beta");
            if v != "v1" && v != "v1beta" {
                return Err(err(join(&path, "api_version"), "must be v1 or v1beta"));
            }
            (ProviderKind::Gemini { api_version: v.to_string() }, &["kind", "cluster", "api_key", "api_version"])
        }
        "vertex" => {
            let project = req_str(o, &path, "project")?;
            let location = req_str(o, &path, "location")?;
            for (k, v) in [("project", project), ("location", location)] {
                if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    return Err(err(join(&path, k), "may hold only letters, digits, '-' and '_'"));
                }
            }
            (
                ProviderKind::Vertex { project: project.to_string(), location: location.to_string() },
                &["kind", "cluster", "api_key", "project", "location"],
            )
        }
        "bedrock" => {
            let region = req_str(o, &path, "region")?;
            if !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
                return Err(err(join(&path, "region"), "must look like us-east-1"));
            }
            let mut secrets = Vec::new();
            for k in ["access_key_id", "secret_access_key", "session_token"] {
                let s = match o.get(k) {
                    None if k == "session_token" => None,
                    None => return Err(err(join(&path, k), "is required for kind bedrock")),
                    Some(v) => match parse_credential(v, &join(&path, k), env)? {
                        Some(s) => Some(s),
                        None if k == "session_token" => None,
                        None => return Ok(None),
                    },
                };
                secrets.push(s);
            }
            let mut it = secrets.into_iter();
            let (Some(Some(access_key_id)), Some(Some(secret_access_key)), Some(session_token)) = (it.next(), it.next(), it.next())
            else {
                return Err(err(&path, "bedrock credentials are incomplete"));
            };
            (
                ProviderKind::Bedrock { region: region.to_string(), access_key_id, secret_access_key, session_token },
                &["kind", "cluster", "region", "access_key_id", "secret_access_key", "session_token"],
            )
        }
        other => {
            return Err(err(
                join(&path, "kind"),
                format!("unknown provider kind '{other}' (expected mock, openai, azure_openai, openai_compatible, anthropic, gemini, vertex or bedrock)"),
            ))
        }
    };
    let ready = match kind {
        ProviderKind::Anthropic { .. } => crate::providers::anthropic::READY,
        ProviderKind::Gemini { .. } | ProviderKind::Vertex { .. } => crate::providers::gemini::READY,
        ProviderKind::Bedrock { .. } => crate::providers::bedrock::READY,
        _ => true,
    };
    if !ready {
        return Err(err(
            join(&path, "kind"),
            format!("provider kind '{kind_name}' is not supported by this build yet"),
        ));
    }
    check_fields(o, &path, known)?;
    let cluster = opt_str(o, &path, "cluster")?.unwrap_or(name).to_string();
    if !is_header_safe(&cluster) {
        return Err(err(join(&path, "cluster"), "must be printable ASCII"));
    }
    let credential = match o.get("api_key") {
        None => None,
        Some(v) => {
            let c = parse_credential(v, &join(&path, "api_key"), env)?;
            if c.is_none() {
                return Ok(None);
            }
            c
        }
    };
    let needs_key = matches!(
        kind,
        ProviderKind::OpenAi
            | ProviderKind::AzureOpenAi { .. }
            | ProviderKind::Anthropic { .. }
            | ProviderKind::Gemini { .. }
            | ProviderKind::Vertex { .. }
    );
    if needs_key && credential.is_none() {
        return Err(err(join(&path, "api_key"), format!("is required for kind {kind_name}")));
    }
    Ok(Some(Provider { name: name.to_string(), kind, cluster, credential }))
}

impl Config {
    /// Parses and validates the plugin configuration.
    pub fn parse(bytes: &[u8], env: &dyn Env) -> R<Config> {
        let root: Value = serde_json::from_slice(bytes).map_err(|e| err("(root)", format!("not valid JSON: {e}")))?;
        let o = as_obj(&root, "(root)")?;
        check_fields(
            o,
            "",
            &["max_body_bytes", "default_max_output_tokens", "log_bodies", "providers", "models", "keys"],
        )?;
        let log_bodies_max_bytes = match o.get("log_bodies") {
            None => None,
            Some(v) => {
                let lo = as_obj(v, "log_bodies")?;
                check_fields(lo, "log_bodies", &["max_bytes"])?;
                match lo.get("max_bytes").and_then(Value::as_u64) {
                    Some(n) if (1..=65_536).contains(&n) => Some(n as usize),
                    _ => return Err(err("log_bodies.max_bytes", "must be an integer from 1 to 65536")),
                }
            }
        };
        let default_max_output_tokens = match o.get("default_max_output_tokens") {
            None => 4096,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=10_000_000).contains(&n) => n,
                _ => return Err(err("default_max_output_tokens", "must be an integer from 1 to 10000000")),
            },
        };

        let max_body_bytes = match o.get("max_body_bytes") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => match v.as_u64() {
                Some(n) if (1024..=1 << 30).contains(&n) => n as usize,
                _ => return Err(err("max_body_bytes", "must be an integer from 1024 to 1073741824")),
            },
        };

        let providers_v = as_obj(o.get("providers").ok_or_else(|| err("providers", "is required"))?, "providers")?;
        let mut providers = Vec::new();
        let mut provider_ids: HashMap<&str, ProviderId> = HashMap::new();
        let mut disabled = Vec::new();
        for (name, v) in providers_v {
            if name.is_empty() {
                return Err(err("providers", "provider names must not be empty"));
            }
            match parse_provider(name, v, env)? {
                Some(p) => {
                    provider_ids.insert(name.as_str(), providers.len());
                    providers.push(p);
                }
                None => disabled.push(name.clone()),
            }
        }

        let models_v = as_obj(o.get("models").ok_or_else(|| err("models", "is required"))?, "models")?;
        let mut models = HashMap::new();
        let mut unavailable = HashMap::new();
        for (name, v) in models_v {
            let path = format!("models.{name}");
            if name.is_empty() || !is_header_safe(name) {
                return Err(err(path, "model names must be non-empty printable ASCII"));
            }
            let mo = as_obj(v, &path)?;
            check_fields(mo, &path, &["provider", "model", "price", "cluster", "targets"])?;
            // One target inline, or a list of targets behind one cluster (fallback and splits).
            let (entries, explicit_cluster): (Vec<TargetEntry>, Option<&str>) = match mo.get("targets") {
                None => (vec![(path.clone(), mo)], opt_str(mo, &path, "cluster")?),
                Some(t) => {
                    for k in ["provider", "model", "price"] {
                        if mo.contains_key(k) {
                            return Err(err(join(&path, k), "goes inside each entry of targets when targets is given"));
                        }
                    }
                    let cluster = opt_str(mo, &path, "cluster")?.ok_or_else(|| {
                        err(
                            join(&path, "cluster"),
                            "is required with targets: the Envoy cluster holding every target's endpoints",
                        )
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
                    (entries, Some(cluster))
                }
            };
            let mut targets: Vec<Target> = Vec::new();
            let mut disabled_provider = None;
            for (tpath, to) in &entries {
                let price = match to.get("price") {
                    None => None,
                    Some(v) => Some(parse_price(v, &join(tpath, "price"))?),
                };
                let pname = req_str(to, tpath, "provider")?;
                let upstream = opt_str(to, tpath, "model")?.unwrap_or(name).to_string();
                let pid = match provider_ids.get(pname) {
                    Some(id) => *id,
                    None if disabled.iter().any(|d| d == pname) => {
                        disabled_provider.get_or_insert_with(|| pname.to_string());
                        continue;
                    }
                    None => {
                        return Err(err(join(tpath, "provider"), format!("names no provider '{pname}' in providers")));
                    }
                };
                if entries.len() > 1 && providers.get(pid).is_some_and(|p| p.kind == ProviderKind::Mock) {
                    return Err(err(
                        join(tpath, "provider"),
                        "a mock provider answers locally and cannot be one of several targets",
                    ));
                }
                if targets.iter().any(|t| t.provider == pid && t.model == upstream) {
                    return Err(err(tpath.clone(), format!("target {pname}/{upstream} is listed twice")));
                }
                targets.push(Target { provider: pid, model: upstream, price });
            }
            let Some(first) = targets.first() else {
                unavailable.insert(name.clone(), disabled_provider.unwrap_or_default());
                continue;
            };
            let cluster = match explicit_cluster {
                Some(c) if is_header_safe(c) => c.to_string(),
                Some(_) => return Err(err(join(&path, "cluster"), "must be printable ASCII")),
                None => providers.get(first.provider).map(|p| p.cluster.clone()).unwrap_or_default(),
            };
            models.insert(name.clone(), Model { name: name.clone(), targets, cluster });
        }
        let mut all_names: Vec<&str> = models.keys().map(|s| s.as_str()).collect();
        all_names.sort_unstable();

        let keys_v = match o.get("keys") {
            None => return Err(err("keys", "is required (a list of virtual keys)")),
            Some(Value::Array(a)) => a,
            Some(v) => return Err(err("keys", format!("must be an array, got {}", type_name(v)))),
        };
        let mut keys = Vec::new();
        let mut keys_by_digest = HashMap::new();
        let mut ids = HashSet::new();
        for (i, v) in keys_v.iter().enumerate() {
            let path = format!("keys[{i}]");
            let ko = as_obj(v, &path)?;
            check_fields(ko, &path, &["id", "sha256", "models", "limits"])?;
            let id = req_str(ko, &path, "id")?;
            if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
                return Err(err(join(&path, "id"), "may hold only letters, digits and - _ . :"));
            }
            if !ids.insert(id.to_string()) {
                return Err(err(join(&path, "id"), format!("duplicate key id '{id}'")));
            }
            let digest = sha256::parse_hex(req_str(ko, &path, "sha256")?)
                .ok_or_else(|| err(join(&path, "sha256"), "must be 64 hex digits (the SHA-256 of the key)"))?;
            if keys_by_digest.insert(digest, keys.len()).is_some() {
                return Err(err(join(&path, "sha256"), "the same key digest appears twice"));
            }
            let list = match ko.get("models") {
                Some(Value::Array(a)) => a,
                Some(v) => return Err(err(join(&path, "models"), format!("must be an array, got {}", type_name(v)))),
                None => return Err(err(join(&path, "models"), "is required (model names, or [\"*\"] for all)")),
            };
            let mut allowed_set = HashSet::new();
            let mut all = false;
            for (j, m) in list.iter().enumerate() {
                let mpath = format!("{path}.models[{j}]");
                let m = m.as_str().ok_or_else(|| err(&mpath, "must be a string"))?;
                if m == "*" {
                    all = true;
                } else if models_v.contains_key(m) {
                    allowed_set.insert(m.to_string());
                } else {
                    return Err(err(mpath, format!("names no model '{m}' in models")));
                }
            }
            let allowed = if all { Allowed::All } else { Allowed::Only(allowed_set) };
            let visible: Vec<&str> = all_names
                .iter()
                .copied()
                .filter(|n| match &allowed {
                    Allowed::All => true,
                    Allowed::Only(s) => s.contains(*n),
                })
                .collect();
            let models_json = models_list_json(&visible, &models, &providers);
            let mut limits = match ko.get("limits") {
                None => KeyLimits::default(),
                Some(v) => parse_limits(v, &join(&path, "limits"), models_v)?,
            };
            crate::limits::name_records(id, &mut limits);
            keys.push(Key { id: id.to_string(), allowed, limits, models_json });
        }

        Ok(Config {
            max_body_bytes,
            default_max_output_tokens,
            log_bodies_max_bytes,
            providers,
            models,
            keys,
            keys_by_digest,
            disabled,
            unavailable,
        })
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
}

fn parse_price(v: &Value, path: &str) -> R<Price> {
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

fn parse_rate(v: &Value, path: &str) -> R<Rate> {
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

fn parse_limits(v: &Value, path: &str, models: &Map<String, Value>) -> R<KeyLimits> {
    let o = as_obj(v, path)?;
    check_fields(o, path, &["requests", "tokens", "concurrent", "budget", "models"])?;
    let mut l = KeyLimits::default();
    if let Some(x) = o.get("requests") {
        l.requests = Some(parse_rate(x, &join(path, "requests"))?);
    }
    if let Some(x) = o.get("tokens") {
        l.tokens = Some(parse_rate(x, &join(path, "tokens"))?);
    }
    if let Some(x) = o.get("concurrent") {
        match x.as_u64() {
            Some(n) if n >= 1 => l.concurrent = Some(n),
            _ => return Err(err(join(path, "concurrent"), "must be a positive integer")),
        }
    }
    if let Some(x) = o.get("budget") {
        let bpath = join(path, "budget");
        let b = as_obj(x, &bpath)?;
        check_fields(b, &bpath, &["usd", "period"])?;
        let usd = match b.get("usd").and_then(Value::as_f64) {
            Some(f) if f.is_finite() && (0.0..=1.0e9).contains(&f) => f,
            _ => return Err(err(join(&bpath, "usd"), "is required: a number of US dollars from 0 to 1e9")),
        };
        let period = match b.get("period").and_then(Value::as_str) {
            Some("day") => Period::Day,
            Some("month") => Period::Month,
            _ => return Err(err(join(&bpath, "period"), "must be \"day\" or \"month\" (UTC calendar periods)")),
        };
        l.budget = Some(Budget { micros: (usd * 1.0e6).round() as u64, period });
    }
    if let Some(x) = o.get("models") {
        let mpath = join(path, "models");
        for (name, mv) in as_obj(x, &mpath)? {
            let p = join(&mpath, name);
            if !models.contains_key(name) {
                return Err(err(p, format!("names no model '{name}' in models")));
            }
            let mo = as_obj(mv, &p)?;
            check_fields(mo, &p, &["requests", "tokens"])?;
            let mut ml = ModelLimits::default();
            if let Some(r) = mo.get("requests") {
                ml.requests = Some(parse_rate(r, &join(&p, "requests"))?);
            }
            if let Some(t) = mo.get("tokens") {
                ml.tokens = Some(parse_rate(t, &join(&p, "tokens"))?);
            }
            l.per_model.insert(name.clone(), ml);
        }
    }
    Ok(l)
}

fn models_list_json(names: &[&str], models: &HashMap<String, Model>, providers: &[Provider]) -> String {
    let data: Vec<Value> = names
        .iter()
        .map(|n| {
            let owner = models
                .get(*n)
                .and_then(|m| m.targets.first())
                .and_then(|t| providers.get(t.provider))
                .map(|p| p.name.as_str())
                .unwrap_or("switchyard");
            serde_json::json!({"id": n, "object": "model", "created": 0, "owned_by": owner})
        })
        .collect();
    serde_json::json!({"object": "list", "data": data}).to_string()
}

#[cfg(test)]
pub mod tests;
