//! The gateway file: one file in the user's terms (providers by URL, models with their targets,
//! timeouts and retries, keys, limits) from which the `switchyard` CLI renders the Envoy bootstrap and
//! the Istio resources. Native only (the filter never reads it).
//!
//! The file is the filter's own configuration plus the fields only Envoy needs (listener, admin, each
//! provider's `url`, each model's `timeout`, `retries`, `strategy` and its targets' `weight`, `services`,
//! `jwt_providers`).
//! `Gateway::parse` takes those out, checks them, and runs the filter's own parser (`Config::parse`) on
//! the rest, so a message about a filter field is the one the filter would give at load, naming the same
//! path. What only the whole file can tell (cluster names, weights against the strategy) is checked here.

pub mod envoy;
pub mod istio;
pub mod jwt;
#[cfg(test)]
mod jwt_tests;
mod parse;
#[cfg(test)]
mod tests;
pub mod yaml;

pub use parse::parse;

use crate::config::{ConfigError, ProviderKind};
use serde_json::Value;

/// Where the rendered Envoy loads the module from by default (relative to its working directory).
pub const DEFAULT_WASM: &str = "dist/switchyard.wasm";

/// A checked gateway file.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub listener: SocketAddr,
    pub admin: SocketAddr,
    /// The module: a path for Envoy, `oci://` or `https://` for Istio.
    pub wasm: String,
    /// The filter's configuration, gateway-only fields taken out (what both roles load).
    pub plugin: Value,
    /// Providers that Envoy reaches over the network (not `mock`), in the file's order.
    pub upstreams: Vec<Upstream>,
    /// Every model, in the file's order.
    pub models: Vec<ModelRoute>,
    /// Other services the gateway calls (rate-limit service, identity provider), in the file's order.
    pub services: Vec<Service>,
    /// Environment variables the credentials name, each once, in the file's order.
    pub env_vars: Vec<EnvVar>,
    /// Identity providers whose JWTs Envoy verifies (`jwt_providers`), by name.
    pub jwt_providers: Vec<jwt::JwtProvider>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketAddr {
    pub address: String,
    pub port: u16,
}

/// A parsed `scheme://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    /// The host as an address Envoy can dial (brackets of an IPv6 literal removed).
    pub fn address(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// An IP literal (a STATIC cluster) rather than a name to resolve.
    pub fn is_ip(&self) -> bool {
        self.address().parse::<std::net::IpAddr>().is_ok()
    }
}

/// A provider Envoy connects to.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub kind: ProviderKind,
    /// The Envoy cluster of the provider (its `cluster`, else its name).
    pub cluster: String,
    pub url: Url,
    /// The credential's variable is optional: the provider is off when it is not set.
    pub optional_env: Vec<String>,
}

impl Upstream {
    /// The host name its requests carry (the endpoint's `hostname`, which Envoy's `auto_host_rewrite`
    /// writes as `:authority` and `auto_sni` sends): the URL's, except for Bedrock, whose requests the
    /// filter signs for the regional endpoint whatever address they go to (a signature over another host
    /// than the one sent is refused).
    pub fn hostname(&self) -> String {
        match &self.kind {
            ProviderKind::Bedrock { region, .. } => crate::providers::bedrock::host(region),
            _ => self.url.address().to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Targets in order: each is tried when the one before failed.
    Fallback,
    /// Requests spread over the targets by weight.
    Split,
}

/// What Envoy needs to know about one model.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    pub name: String,
    /// The cluster its requests go to: the provider's for one target, the model's own for several.
    pub cluster: String,
    /// Several targets: the model has a cluster of its own, rendered from `targets`.
    pub own_cluster: bool,
    pub strategy: Strategy,
    pub targets: Vec<RouteTarget>,
    /// Whole request, streams included (ms).
    pub timeout_ms: u64,
    /// No byte from the provider for this long ends an attempt (ms).
    pub idle_timeout_ms: u64,
    /// Attempts after the first.
    pub retries: u32,
    /// The longest wait a provider's `Retry-After` can impose before the next attempt (ms).
    pub max_retry_wait_ms: u64,
    /// Outlier detection of the model's own cluster; `None`: off.
    pub ejection: Option<Ejection>,
}

/// `outlier_detection`: a target failing this many times in a row is left out for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    pub consecutive_errors: u32,
    pub ejection_time_ms: u64,
}

#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// Index into `Gateway::upstreams`; `None` for the mock.
    pub upstream: Option<usize>,
    pub provider: String,
    /// The provider's model name.
    pub model: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    Grpc,
}

/// `services.<name>`: a cluster for a service a later stage calls.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub url: Url,
    pub protocol: Protocol,
    pub connect_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    /// The provider it belongs to.
    pub provider: String,
    pub optional: bool,
}

impl Gateway {
    /// The plugin configuration as the JSON text both roles load.
    pub fn plugin_json(&self) -> String {
        serde_json::to_string(&self.plugin).unwrap_or_default()
    }

    /// The plugin configuration for a readable block in the rendered file: one line per provider, model
    /// and key.
    pub fn plugin_json_pretty(&self) -> String {
        let line = |v: &Value| serde_json::to_string(v).unwrap_or_default();
        let Value::Object(top) = &self.plugin else { return line(&self.plugin) };
        let mut out = String::from("{\n");
        for (i, (section, v)) in top.iter().enumerate() {
            out.push_str(&format!("  {}: ", line(&Value::String(section.clone()))));
            match v {
                Value::Object(entries) if !entries.is_empty() => {
                    out.push_str("{\n");
                    for (j, (k, e)) in entries.iter().enumerate() {
                        let comma = if j + 1 < entries.len() { "," } else { "" };
                        out.push_str(&format!("    {}: {}{comma}\n", line(&Value::String(k.clone())), line(e)));
                    }
                    out.push_str("  }");
                }
                Value::Array(items) if !items.is_empty() => {
                    out.push_str("[\n");
                    for (j, e) in items.iter().enumerate() {
                        let comma = if j + 1 < items.len() { "," } else { "" };
                        out.push_str(&format!("    {}{comma}\n", line(e)));
                    }
                    out.push_str("  ]");
                }
                other => out.push_str(&line(other)),
            }
            out.push_str(if i + 1 < top.len() { ",\n" } else { "\n" });
        }
        out.push('}');
        out
    }

    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

/// A gateway file error: the same shape and wording as the filter's configuration errors.
pub type Error = ConfigError;
