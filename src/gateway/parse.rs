//! Reading a gateway file: the gateway-only fields are taken out and checked, the rest goes through the
//! filter's own parser, then the checks that need both.

use super::{
    Ejection, EnvVar, Gateway, ModelRoute, Protocol, RouteTarget, Service, SocketAddr, Strategy, Upstream, Url,
    DEFAULT_WASM,
};
use crate::config::fields::{as_obj, err, join, type_name, R};
use crate::config::{Config, Env, ProviderKind};
use serde_json::{Map, Value};

/// Top-level fields only the renderer reads.
const TOP: &[&str] = &["listener", "admin", "wasm", "services", "istio", "jwt_providers"];
/// Provider fields only the renderer reads.
const PROVIDER: &[&str] = &["url"];
/// Model fields only the renderer reads.
const MODEL: &[&str] = &["strategy", "timeout", "idle_timeout", "retries", "max_retry_wait", "outlier_detection"];
/// Target fields only the renderer reads.
const TARGET: &[&str] = &["weight"];

const DEFAULT_TIMEOUT_MS: u64 = 300_000;
const DEFAULT_IDLE_TIMEOUT_MS: u64 = 120_000;
const DEFAULT_MAX_RETRY_WAIT_MS: u64 = 2_000;
/// A target failing 3 times in a row (5xx, reset, connect failure) is left out for 30 s.
const DEFAULT_EJECTION: Ejection = Ejection { consecutive_errors: 3, ejection_time_ms: 30_000 };
/// Retries of a one-target model (5xx, resets, connect failures; never a 429) at most.
const MAX_SINGLE_RETRIES: u32 = 3;

/// A model's name, its gateway-only fields, and each target's.
type ModelExtra = (String, Map<String, Value>, Vec<Map<String, Value>>);

/// Every credential counts as set: the file is checked for what Envoy's environment will hold.
struct AllSet;

impl Env for AllSet {
    fn var(&self, _name: &str) -> Option<String> {
        Some("set".to_string())
    }
}

/// Reads and checks a gateway file (already read from YAML or JSON).
pub fn parse(root: &Value) -> R<Gateway> {
    let o = as_obj(root, "(root)")?;
    let mut plugin = o.clone();
    for k in TOP {
        plugin.remove(*k);
    }
    let mut provider_extra: Vec<(String, Map<String, Value>)> = Vec::new();
    if let Some(Value::Object(ps)) = plugin.get_mut("providers") {
        for (name, pv) in ps.iter_mut() {
            if let Value::Object(po) = pv {
                provider_extra.push((name.clone(), take(po, PROVIDER)));
            }
        }
    }
    let mut model_extra: Vec<ModelExtra> = Vec::new();
    if let Some(Value::Object(ms)) = plugin.get_mut("models") {
        for (name, mv) in ms.iter_mut() {
            let Value::Object(mo) = mv else { continue };
            let extra = take(mo, MODEL);
            let mut target_extra = Vec::new();
            if let Some(Value::Array(ts)) = mo.get_mut("targets") {
                for t in ts.iter_mut() {
                    if let Value::Object(to) = t {
                        target_extra.push(take(to, TARGET));
                    }
                }
                // A model with several targets has a cluster of its own, named after it unless told.
                if !mo.contains_key("cluster") {
                    mo.insert("cluster".into(), Value::String(name.clone()));
                }
            }
            model_extra.push((name.clone(), extra, target_extra));
        }
    }
    let plugin = Value::Object(plugin);
    let text = serde_json::to_vec(&plugin).map_err(|e| err("(root)", e.to_string()))?;
    let cfg = Config::parse(&text, &AllSet).map_err(with_gateway_fields)?;

    let listener = addr(o.get("listener"), "listener", SocketAddr { address: "127.0.0.1".into(), port: 10000 }, false)?;
    let admin = addr(o.get("admin"), "admin", SocketAddr { address: "127.0.0.1".into(), port: 9901 }, true)?;
    let wasm = match o.get("wasm") {
        None => DEFAULT_WASM.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => {
            return Err(err("wasm", "must be a non-empty string: the module's path, or an oci:// or https:// URL"))
        }
    };
    let plugin_providers = plugin.get("providers").and_then(Value::as_object);
    let mut upstreams = Vec::new();
    let mut env_vars = Vec::new();
    let mut clusters: Vec<(String, String)> = Vec::new(); // (cluster, the field that named it)
    for (name, extra) in &provider_extra {
        let path = format!("providers.{name}");
        let Some(po) = plugin_providers.and_then(|p| p.get(name)).and_then(Value::as_object) else { continue };
        let Some((_, p)) = cfg.provider_by_name(name) else { continue };
        collect_env(po, name, &mut env_vars);
        if p.kind.answers_locally() {
            if extra.contains_key("url") {
                return Err(err(join(&path, "url"), "the mock provider answers inside the filter: it has no url"));
            }
            continue;
        }
        let url = provider_url(&p.kind, extra.get("url"), &path)?;
        let cluster_field = if po.contains_key("cluster") { join(&path, "cluster") } else { path.clone() };
        claim(&mut clusters, &p.cluster, &cluster_field)?;
        let optional_env =
            env_vars.iter().filter(|v| v.provider == *name && v.optional).map(|v| v.name.clone()).collect();
        upstreams.push(Upstream {
            name: name.clone(),
            kind: p.kind.clone(),
            cluster: p.cluster.clone(),
            url,
            optional_env,
        });
    }

    let mut models = Vec::new();
    for (name, extra, target_extra) in &model_extra {
        let path = format!("models.{name}");
        let Some(m) = cfg.models.get(name) else { continue };
        let several = plugin_model_has_targets(&plugin, name);
        let strategy = match extra.get("strategy") {
            None => Strategy::Fallback,
            Some(Value::String(s)) if s == "fallback" => Strategy::Fallback,
            Some(Value::String(s)) if s == "split" => Strategy::Split,
            Some(_) => {
                return Err(err(
                    join(&path, "strategy"),
                    "must be \"fallback\" (targets in order) or \"split\" (by weight)",
                ))
            }
        };
        if !several && extra.contains_key("strategy") {
            return Err(err(join(&path, "strategy"), "needs targets: a model with one provider has nothing to choose"));
        }
        let mut targets = Vec::new();
        for (i, t) in m.targets.iter().enumerate() {
            let tpath = if several { format!("{path}.targets[{i}]") } else { path.clone() };
            let provider = cfg.provider(t.provider).map(|p| p.name.clone()).unwrap_or_default();
            let upstream = upstreams.iter().position(|u| u.name == provider);
            if upstream.is_none() && m.targets.len() > 1 {
                return Err(err(
                    join(&tpath, "provider"),
                    "the mock provider answers inside the filter: it can only be a model's one target",
                ));
            }
            let weight = match (strategy, target_extra.get(i).and_then(|e| e.get("weight"))) {
                (Strategy::Split, Some(v)) => match v.as_u64() {
                    Some(w) if (1..=1000).contains(&w) => w as u32,
                    _ => return Err(err(join(&tpath, "weight"), "must be an integer from 1 to 1000")),
                },
                (Strategy::Split, None) => return Err(err(join(&tpath, "weight"), "is required with strategy split")),
                (Strategy::Fallback, Some(_)) => {
                    return Err(err(join(&tpath, "weight"), "needs strategy: split (fallback tries targets in order)"))
                }
                (Strategy::Fallback, None) => 1,
            };
            targets.push(RouteTarget { upstream, provider, model: t.model.clone(), weight });
        }
        let own_cluster =
            several || targets.first().and_then(|t| t.upstream).is_some_and(|u| upstreams[u].cluster != m.cluster);
        if own_cluster {
            let field = if o_model_has(o, name, "cluster") { join(&path, "cluster") } else { path.clone() };
            claim(&mut clusters, &m.cluster, &field)?;
        }
        let timeout_ms = duration(extra.get("timeout"), &join(&path, "timeout"), DEFAULT_TIMEOUT_MS)?;
        let idle_timeout_ms =
            duration(extra.get("idle_timeout"), &join(&path, "idle_timeout"), DEFAULT_IDLE_TIMEOUT_MS)?;
        let max_retry_wait_ms =
            duration(extra.get("max_retry_wait"), &join(&path, "max_retry_wait"), DEFAULT_MAX_RETRY_WAIT_MS)?;
        let ejection = match extra.get("outlier_detection") {
            _ if !own_cluster && extra.contains_key("outlier_detection") => {
                return Err(err(
                    join(&path, "outlier_detection"),
                    "needs targets: it ejects a failing target of the model's own cluster",
                ))
            }
            None => own_cluster.then_some(DEFAULT_EJECTION),
            Some(v) => ejection(v, &join(&path, "outlier_detection"))?,
        };
        let others = targets.len().saturating_sub(1) as u32;
        let retries = match extra.get("retries") {
            None if several => others,
            None => 0,
            Some(v) => match v.as_u64() {
                Some(n) if several && n <= u64::from(others) => n as u32,
                Some(n) if !several && n <= u64::from(MAX_SINGLE_RETRIES) => n as u32,
                _ if several => {
                    return Err(err(
                        join(&path, "retries"),
                        format!("must be an integer from 0 to {others}: one attempt per other target, so that no target (and no 429) is tried twice"),
                    ))
                }
                _ => {
                    return Err(err(
                        join(&path, "retries"),
                        format!("must be an integer from 0 to {MAX_SINGLE_RETRIES} (5xx, resets and connect failures are retried on the same provider; a 429 never is)"),
                    ))
                }
            },
        };
        models.push(ModelRoute {
            name: name.clone(),
            cluster: m.cluster.clone(),
            own_cluster,
            strategy,
            targets,
            timeout_ms,
            idle_timeout_ms,
            retries,
            max_retry_wait_ms,
            ejection,
        });
    }

    let services = match o.get("services") {
        None => Vec::new(),
        Some(v) => services(v, &mut clusters)?,
    };
    // The rate-limit service is called over gRPC: its cluster must be one of `services`, speaking gRPC.
    if let Some(c) = plugin.get("fleet_limits").and_then(|f| f.get("cluster")).and_then(Value::as_str) {
        match services.iter().find(|s| s.name == c) {
            None => {
                return Err(err(
                    "fleet_limits.cluster",
                    format!("names no entry of services ('{c}'): add services.{c} with the rate-limit service's url"),
                ))
            }
            Some(s) if s.protocol != Protocol::Grpc => {
                return Err(err(format!("services.{c}.protocol"), "must be \"grpc\" for the rate-limit service"))
            }
            Some(_) => {}
        }
    }
    let jwt_providers = super::jwt::parse(o.get("jwt_providers"), &mut clusters)?;
    super::jwt::check_accept(o, &jwt_providers)?;
    Ok(Gateway { listener, admin, wasm, plugin, upstreams, models, services, env_vars, jwt_providers })
}

/// Takes `fields` out of `o`.
fn take(o: &mut Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    fields.iter().filter_map(|k| o.remove(*k).map(|v| (k.to_string(), v))).collect()
}

fn plugin_model_has_targets(plugin: &Value, model: &str) -> bool {
    plugin.get("models").and_then(|m| m.get(model)).and_then(|m| m.get("targets")).is_some()
}

fn o_model_has(o: &Map<String, Value>, model: &str, field: &str) -> bool {
    o.get("models").and_then(|m| m.get(model)).and_then(|m| m.get(field)).is_some()
}

/// The filter's "unknown field" message lists the filter's fields; a gateway file also has its own.
fn with_gateway_fields(mut e: crate::config::ConfigError) -> crate::config::ConfigError {
    let parts: Vec<&str> = e.field.split('.').collect();
    let extra: &[&str] = match parts.as_slice() {
        [_] => TOP,
        ["providers", _, _] => PROVIDER,
        ["models", _, _] => MODEL,
        ["models", _, t, _] if t.starts_with("targets[") => TARGET,
        _ => &[],
    };
    if let Some(list) = e.reason.strip_prefix("unknown field (expected one of: ").and_then(|r| r.strip_suffix(')')) {
        if !extra.is_empty() {
            e.reason = format!("unknown field (expected one of: {list}, {})", extra.join(", "));
        }
    }
    e
}

/// A cluster name is used once; `field` is where this use was written.
pub(super) fn claim(clusters: &mut Vec<(String, String)>, name: &str, field: &str) -> R<()> {
    if let Some((_, first)) = clusters.iter().find(|(c, _)| c == name) {
        return Err(err(field, format!("Envoy cluster '{name}' is already {first}'s: each provider, model with targets and service has a cluster of its own")));
    }
    clusters.push((name.to_string(), field.to_string()));
    Ok(())
}

/// Every `{"env": NAME}` credential of a provider, in field order.
fn collect_env(po: &Map<String, Value>, provider: &str, out: &mut Vec<EnvVar>) {
    for v in po.values() {
        let Some(c) = v.as_object() else { continue };
        let Some(name) = c.get("env").and_then(Value::as_str) else { continue };
        if out.iter().any(|e| e.name == name) {
            continue;
        }
        let optional = c.get("optional").and_then(Value::as_bool).unwrap_or(false);
        out.push(EnvVar { name: name.to_string(), provider: provider.to_string(), optional });
    }
}

/// The provider's `url`, or its kind's public endpoint.
fn provider_url(kind: &ProviderKind, given: Option<&Value>, path: &str) -> R<Url> {
    let field = join(path, "url");
    let default = match kind {
        ProviderKind::OpenAi => Some("https://api.openai.com".to_string()),
        ProviderKind::Anthropic { .. } => Some("https://api.anthropic.com".to_string()),
        ProviderKind::Gemini { .. } => Some("https://generativelanguage.googleapis.com".to_string()),
        ProviderKind::Vertex { location, .. } => Some(match location.as_str() {
            "global" => "https://aiplatform.googleapis.com".to_string(),
            loc => format!("https://{loc}-aiplatform.googleapis.com"),
        }),
        ProviderKind::Bedrock { region, .. } => Some(format!("https://{}", crate::providers::bedrock::host(region))),
        ProviderKind::AzureOpenAi { .. } | ProviderKind::OpenAiCompatible { .. } | ProviderKind::Mock => None,
    };
    let url = match (given, default) {
        (Some(Value::String(u)), _) => parse_url(u, &field)?,
        (Some(v), _) => return Err(err(field, format!("must be a URL string, got {}", type_name(v)))),
        (None, Some(d)) => parse_url(&d, &field)?,
        (None, None) => {
            return Err(err(
                field,
                "is required for this kind (the provider's base URL, such as https://my-resource.openai.azure.com)",
            ))
        }
    };
    if !(url.path.is_empty() || url.path == "/") {
        let reason = if matches!(kind, ProviderKind::OpenAiCompatible { .. }) {
            "must not have a path: give the path in base_path"
        } else {
            "must not have a path (the filter writes each provider's paths itself)"
        };
        return Err(err(field, reason));
    }
    Ok(url)
}

/// `scheme://host[:port][/path]`, `scheme` being `http` or `https`.
pub(crate) fn parse_url(s: &str, field: &str) -> R<Url> {
    let bad = |why: &str| err(field, format!("'{s}' is not a usable URL: {why}"));
    let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("it must start with http:// or https://"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.contains(['?', '#', ' ']) || authority.contains('@') {
        return Err(bad("no user, query or fragment"));
    }
    let (host, port) = if let Some(end) = authority.strip_prefix('[').and_then(|a| a.find(']')) {
        let host = &authority[..end + 2];
        (host, authority[end + 2..].strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let valid_host = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
        && !host.starts_with('-');
    if !valid_host {
        return Err(bad("the host must be a DNS name or an IP address"));
    }
    let port = match port {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("the port must be from 1 to 65535")),
        },
    };
    Ok(Url { tls, host: host.to_ascii_lowercase(), port, path: path.to_string() })
}

/// `listener` / `admin`: `{address, port}`.
fn addr(v: Option<&Value>, path: &str, default: SocketAddr, loopback_only: bool) -> R<SocketAddr> {
    let Some(v) = v else { return Ok(default) };
    let o = as_obj(v, path)?;
    crate::config::fields::check_fields(o, path, &["address", "port"])?;
    let address = match o.get("address") {
        None => default.address,
        Some(Value::String(a)) if a.parse::<std::net::IpAddr>().is_ok() => a.clone(),
        Some(_) => return Err(err(join(path, "address"), "must be an IP address such as 127.0.0.1 or 0.0.0.0")),
    };
    if loopback_only && !address.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return Err(err(
            join(path, "address"),
            "must be a loopback address (127.0.0.1 or ::1): Envoy's admin interface can change and stop the proxy",
        ));
    }
    let port = match o.get("port") {
        None => default.port,
        Some(p) => match p.as_u64() {
            Some(n) if (1..=65_535).contains(&n) => n as u16,
            _ => return Err(err(join(path, "port"), "must be an integer from 1 to 65535")),
        },
    };
    Ok(SocketAddr { address, port })
}

/// A duration: `"30s"`, `"500ms"`, `"5m"`, or a number of seconds; from 1 ms to 24 h.
pub(crate) fn duration(v: Option<&Value>, path: &str, default_ms: u64) -> R<u64> {
    let Some(v) = v else { return Ok(default_ms) };
    let ms = match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| (f * 1000.0).round() as u64),
        Value::String(s) => {
            let (num, unit) = if let Some(n) = s.strip_suffix("ms") {
                (n, 1.0)
            } else if let Some(n) = s.strip_suffix('s') {
                (n, 1000.0)
            } else if let Some(n) = s.strip_suffix('m') {
                (n, 60_000.0)
            } else if let Some(n) = s.strip_suffix('h') {
                (n, 3_600_000.0)
            } else {
                ("", 0.0)
            };
            num.parse::<f64>().ok().filter(|f| f.is_finite() && *f >= 0.0).map(|f| (f * unit).round() as u64)
        }
        _ => None,
    };
    match ms {
        Some(ms) if (1..=86_400_000).contains(&ms) => Ok(ms),
        _ => Err(err(path, "must be a duration from 1ms to 24h, such as \"30s\", \"500ms\" or \"5m\"")),
    }
}

fn services(v: &Value, clusters: &mut Vec<(String, String)>) -> R<Vec<Service>> {
    let mut out = Vec::new();
    for (name, sv) in as_obj(v, "services")? {
        let path = format!("services.{name}");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(err(path, "service names may hold only letters, digits and - _ ."));
        }
        let so = as_obj(sv, &path)?;
        crate::config::fields::check_fields(so, &path, &["url", "protocol", "connect_timeout"])?;
        let url = match so.get("url") {
            Some(Value::String(u)) => parse_url(u, &join(&path, "url"))?,
            Some(v) => return Err(err(join(&path, "url"), format!("must be a URL string, got {}", type_name(v)))),
            None => return Err(err(join(&path, "url"), "is required")),
        };
        let protocol = match so.get("protocol").map(|p| p.as_str()) {
            None | Some(Some("grpc")) => Protocol::Grpc,
            Some(Some("http2")) => Protocol::Http2,
            Some(Some("http1")) => Protocol::Http1,
            Some(_) => return Err(err(join(&path, "protocol"), "must be \"grpc\", \"http2\" or \"http1\"")),
        };
        let connect_timeout_ms = duration(so.get("connect_timeout"), &join(&path, "connect_timeout"), 1_000)?;
        claim(clusters, name, &path)?;
        out.push(Service { name: name.clone(), url, protocol, connect_timeout_ms });
    }
    Ok(out)
}

/// `outlier_detection`: `false`, or `{consecutive_errors, ejection_time}`.
fn ejection(v: &Value, path: &str) -> R<Option<Ejection>> {
    match v {
        Value::Bool(false) => Ok(None),
        Value::Object(o) => {
            crate::config::fields::check_fields(o, path, &["consecutive_errors", "ejection_time"])?;
            let consecutive_errors = match o.get("consecutive_errors") {
                None => DEFAULT_EJECTION.consecutive_errors,
                Some(n) => match n.as_u64() {
                    Some(n) if (1..=1000).contains(&n) => n as u32,
                    _ => return Err(err(join(path, "consecutive_errors"), "must be an integer from 1 to 1000")),
                },
            };
            let ejection_time_ms =
                duration(o.get("ejection_time"), &join(path, "ejection_time"), DEFAULT_EJECTION.ejection_time_ms)?;
            Ok(Some(Ejection { consecutive_errors, ejection_time_ms }))
        }
        _ => Err(err(path, "must be false (off) or {consecutive_errors, ejection_time}")),
    }
}
