//! `jwt_providers`: the identity providers whose tokens Envoy verifies. Gateway-only (taken out before
//! the filter's parser sees the file): `render` writes Envoy's `envoy.filters.http.jwt_authn` filter
//! before the route-level role, and a cluster for each provider's JWKS. Envoy checks issuer, audiences,
//! expiry and signature; it never rejects a request itself (`allow_missing_or_failed`): it leaves the
//! verified claims (`payload`) or the reason it could not verify them (`failure`) in the request's
//! metadata under `envoy.filters.http.jwt_authn`, and the filter decides, answering in the client's
//! error shape.

use super::envoy::{cluster_head, secs};
use super::parse::{claim, duration, parse_url};
use super::yaml::{flow, int, list, map, s, Y};
use super::{Gateway, Url};
use crate::config::fields::{as_obj, check_fields, err, join, type_name, R};
use serde_json::{Map, Value};

/// The metadata namespace jwt_authn writes (fixed by Envoy, whatever the filter is named).
pub const METADATA_NAMESPACE: &str = "envoy.filters.http.jwt_authn";
/// The keys under it the filter reads: the verified claims, or why verification failed.
pub const PAYLOAD_KEY: &str = "payload";
pub const FAILURE_KEY: &str = "failure";

const FIELDS: &[&str] = &["issuer", "audiences", "jwks", "jwks_cache", "clock_skew"];
/// How long Envoy keeps a fetched key set: a rotated key is picked up within this.
const DEFAULT_JWKS_CACHE_MS: u64 = 300_000;
/// Envoy's own default tolerance on `exp` and `nbf`.
const DEFAULT_CLOCK_SKEW_S: u64 = 60;
const MAX_CLOCK_SKEW_S: u64 = 600;
/// One JWKS fetch, and the cluster's connect timeout.
const JWKS_TIMEOUT: &str = "5s";

/// `jwt_providers.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtProvider {
    pub name: String,
    /// The `iss` a token must carry.
    pub issuer: String,
    /// One of these must be in the token's `aud`.
    pub audiences: Vec<String>,
    /// The JWKS URL as written (what Envoy fetches).
    pub jwks_uri: String,
    /// Its scheme, host and port (the cluster's endpoint).
    pub jwks: Url,
    /// The Envoy cluster that reaches the JWKS host: `jwks_<name>`.
    pub cluster: String,
    pub jwks_cache_ms: u64,
    pub clock_skew_s: u64,
}

/// Reads the `jwt_providers` section (absent: none). Each JWKS cluster name is claimed in `clusters`.
pub(super) fn parse(v: Option<&Value>, clusters: &mut Vec<(String, String)>) -> R<Vec<JwtProvider>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (name, pv) in as_obj(v, "jwt_providers")? {
        let path = format!("jwt_providers.{name}");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(err(path, "provider names may hold only letters, digits and - _ ."));
        }
        let o = as_obj(pv, &path)?;
        check_fields(o, &path, FIELDS)?;
        let issuer = match o.get("issuer") {
            Some(Value::String(i)) if !i.trim().is_empty() && i.trim() == i => i.clone(),
            Some(Value::String(_)) => {
                return Err(err(join(&path, "issuer"), "must be the provider's issuer (`iss`), not empty or padded"))
            }
            Some(v) => return Err(err(join(&path, "issuer"), format!("must be a string, got {}", type_name(v)))),
            None => {
                return Err(err(
                    join(&path, "issuer"),
                    "is required: the `iss` of the provider's tokens, such as https://login.microsoftonline.com/{tenant}/v2.0",
                ))
            }
        };
        let audiences = audiences(o.get("audiences"), &join(&path, "audiences"))?;
        let (jwks_uri, jwks) = jwks_url(o.get("jwks"), &join(&path, "jwks"))?;
        let jwks_cache_ms = duration(o.get("jwks_cache"), &join(&path, "jwks_cache"), DEFAULT_JWKS_CACHE_MS)?;
        if jwks_cache_ms < 1000 {
            return Err(err(join(&path, "jwks_cache"), "must be at least 1s (Envoy refetches the key set that often)"));
        }
        let clock_skew_s = clock_skew(o.get("clock_skew"), &join(&path, "clock_skew"))?;
        let cluster = format!("jwks_{name}");
        claim(clusters, &cluster, &join(&path, "jwks"))?;
        out.push(JwtProvider {
            name: name.clone(),
            issuer,
            audiences,
            jwks_uri,
            jwks,
            cluster,
            jwks_cache_ms,
            clock_skew_s,
        });
    }
    Ok(out)
}

fn audiences(v: Option<&Value>, path: &str) -> R<Vec<String>> {
    let why = "must be a non-empty list of strings: the `aud` values a token may carry (without one, a token the \
               provider issued for any other application would be accepted)";
    let Some(Value::Array(items)) = v else {
        return Err(err(path, if v.is_none() { format!("is required; it {why}") } else { why.to_string() }));
    };
    if items.is_empty() {
        return Err(err(path, why));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, a) in items.iter().enumerate() {
        match a {
            Value::String(a) if !a.is_empty() && !out.contains(a) => out.push(a.clone()),
            Value::String(a) if !a.is_empty() => return Err(err(format!("{path}[{i}]"), "is given twice")),
            _ => return Err(err(format!("{path}[{i}]"), "must be a non-empty string")),
        }
    }
    Ok(out)
}

/// The JWKS URL: `https://host[:port]/path` (or `http://` for a server inside the network), a query
/// allowed (Entra ID's `?appid=` key sets).
fn jwks_url(v: Option<&Value>, path: &str) -> R<(String, Url)> {
    let u = match v {
        Some(Value::String(u)) => u,
        Some(v) => return Err(err(path, format!("must be a URL string, got {}", type_name(v)))),
        None => {
            return Err(err(
                path,
                "is required: the provider's key set URL (the `jwks_uri` of its /.well-known/openid-configuration)",
            ))
        }
    };
    let (base, query) = u.split_once('?').unwrap_or((u, ""));
    if query.contains(['#', ' ']) {
        return Err(err(path, format!("'{u}' is not a usable URL: no fragment or spaces")));
    }
    let url = parse_url(base, path)?;
    Ok((u.clone(), url))
}

/// `clock_skew`: a duration in whole seconds, 0 to 10 minutes.
fn clock_skew(v: Option<&Value>, path: &str) -> R<u64> {
    let why = "must be whole seconds from 0s to 600s, such as \"60s\" (the tolerance on `exp` and `nbf`)";
    match v {
        None => Ok(DEFAULT_CLOCK_SKEW_S),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(0),
        Some(Value::String(z)) if ["0", "0s", "0ms", "0m"].contains(&z.as_str()) => Ok(0),
        Some(v) => match duration(Some(v), path, 0) {
            Ok(ms) if ms % 1000 == 0 && ms / 1000 <= MAX_CLOCK_SKEW_S => Ok(ms / 1000),
            _ => Err(err(path, why)),
        },
    }
}

/// Whether the file's `identity.accept` lists `jwt` (read from the file as written: the filter's parser
/// checks the section itself).
fn jwt_accepted(root: &Map<String, Value>) -> bool {
    root.get("identity")
        .and_then(|i| i.get("accept"))
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("jwt")))
}

/// `identity.accept` and `jwt_providers` agree: tokens are accepted exactly when some provider verifies
/// them.
pub(super) fn check_accept(root: &Map<String, Value>, providers: &[JwtProvider]) -> R<()> {
    match (jwt_accepted(root), providers.is_empty()) {
        (true, true) => Err(err(
            "identity.accept",
            "lists \"jwt\" but jwt_providers names no identity provider: add one (issuer, audiences, jwks) so that Envoy verifies the tokens",
        )),
        (false, false) => Err(err(
            "jwt_providers",
            "needs identity.accept to list \"jwt\": without it the filter ignores every token Envoy verifies",
        )),
        _ => Ok(()),
    }
}

/// The `jwt_authn` filter's configuration; `cluster` names the cluster that reaches a provider's JWKS.
pub(super) fn authn_config(providers: &[JwtProvider], cluster: impl Fn(&JwtProvider) -> String) -> Y {
    let mut ps = Y::Map(Vec::new());
    for p in providers {
        ps.push(&p.name, provider(p, &cluster(p)));
    }
    let mut requirements: Vec<Y> = providers.iter().map(|p| flow(map([("provider_name", s(&p.name))]))).collect();
    requirements.push(flow(map([("allow_missing_or_failed", Y::Map(Vec::new()))])));
    let mut rule = map([("match", flow(map([("prefix", s("/"))])))]);
    rule.note("Any provider may verify the token; none, or a failure, is left for the filter to answer.");
    rule.push("requires", map([("requires_any", map([("requirements", Y::List(requirements))]))]));
    let mut c = map([("@type", s("type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"))]);
    c.push("providers", ps);
    c.push("rules", list([rule]));
    c
}

fn provider(p: &JwtProvider, cluster: &str) -> Y {
    let mut y = map([("issuer", s(&p.issuer)), ("audiences", flow(list(p.audiences.iter().map(s))))]);
    y.note("As the OpenAI SDKs send a key (Authorization: Bearer) and as the Anthropic SDK does (x-api-key).");
    y.push(
        "from_headers",
        list([
            flow(map([("name", s("authorization")), ("value_prefix", s("Bearer "))])),
            flow(map([("name", s("x-api-key"))])),
        ]),
    );
    y.note("A verified token is not sent on (the provider gets the gateway's own credential).");
    y.push("forward", Y::Bool(false));
    y.note(&format!(
        "What the filter reads, in the metadata namespace {METADATA_NAMESPACE}:\nthe verified claims, or why verification failed."
    ));
    y.push("payload_in_metadata", s(PAYLOAD_KEY));
    y.push("failed_status_in_metadata", s(FAILURE_KEY));
    y.push("require_expiration", Y::Bool(true));
    y.push("clock_skew_seconds", int(p.clock_skew_s as i64));
    let mut jwks = map([(
        "http_uri",
        flow(map([("uri", s(&p.jwks_uri)), ("cluster", s(cluster)), ("timeout", s(JWKS_TIMEOUT))])),
    )]);
    jwks.note("Refetched this often: a key the provider rotates in is accepted within it (an unknown kid\ndoes not trigger a fetch).");
    jwks.push("cache_duration", s(secs(p.jwks_cache_ms)));
    jwks.note("Fetched at startup and on expiry in the background, not on a request's path.");
    jwks.push("async_fetch", Y::Map(Vec::new()));
    jwks.push(
        "retry_policy",
        map([
            ("num_retries", int(3)),
            ("retry_back_off", flow(map([("base_interval", s("0.5s")), ("max_interval", s("5s"))]))),
        ]),
    );
    y.push("remote_jwks", jwks);
    y
}

/// The listener's `envoy.filters.http.jwt_authn` filter, when the file has providers.
pub(super) fn http_filter(g: &Gateway) -> Option<Y> {
    if g.jwt_providers.is_empty() {
        return None;
    }
    let mut f = map([("name", s(METADATA_NAMESPACE))]);
    f.note("Verifies the caller's JWT, never rejects: the filter after it reads the outcome and answers.");
    f.push("typed_config", authn_config(&g.jwt_providers, |p| p.cluster.clone()));
    Some(f)
}

/// One cluster per provider's JWKS host: TLS with SNI and a certificate check for `https`, plain HTTP/1.1
/// for `http`.
pub(super) fn clusters(g: &Gateway) -> Vec<Y> {
    g.jwt_providers.iter().map(jwks_cluster).collect()
}

fn jwks_cluster(p: &JwtProvider) -> Y {
    let url = &p.jwks;
    let mut c = cluster_head(&p.cluster, &[url], 5_000);
    c.note(&format!("The key set of identity provider {}.", p.name));
    if url.tls {
        c.push("transport_socket", tls(url, &["http/1.1"]));
    }
    c.push("load_assignment", super::envoy::one_endpoint(&p.cluster, url));
    c
}

/// TLS to a host the filter calls (a JWKS host, a service): its name as SNI, its certificate checked
/// against the system CAs and the name.
pub(super) fn tls(url: &Url, alpn: &[&str]) -> Y {
    let san_type = if url.is_ip() { "IP_ADDRESS" } else { "DNS" };
    let validation = map([
        ("trusted_ca", flow(map([("filename", s("/etc/ssl/certs/ca-certificates.crt"))]))),
        (
            "match_typed_subject_alt_names",
            list([flow(map([("san_type", s(san_type)), ("matcher", flow(map([("exact", s(url.address()))])))]))]),
        ),
    ]);
    let mut ctx =
        map([("@type", s("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"))]);
    if !url.is_ip() {
        ctx.push("sni", s(url.address()));
    }
    ctx.push(
        "common_tls_context",
        map([("alpn_protocols", flow(list(alpn.iter().map(|p| s(*p))))), ("validation_context", validation)]),
    );
    map([("name", s("envoy.transport_sockets.tls")), ("typed_config", ctx)])
}
