//! `switchyard render --istio`: the Istio resources for an ingress gateway from the same gateway file:
//! the WasmPlugin (route-level role), an EnvoyFilter that lets it hold headers and reloads a failed VM,
//! per provider a ServiceEntry, a DestinationRule (TLS for https URLs) and an EnvoyFilter adding the
//! upstream role to its cluster, and a VirtualService with one route per model. The plugin configuration
//! is the same value in the WasmPlugin and in every upstream filter.
//!
//! With `jwt_providers`, an EnvoyFilter puts Envoy's `jwt_authn` first in the gateway's HTTP filters (before
//! the WasmPlugin), configured as for plain Envoy, with a ServiceEntry and DestinationRule per JWKS host.
//! Istio's own RequestAuthentication is not used: it writes the claims under a key of its own (the
//! issuer), records no failure reason, and rejects a bad token itself with Envoy's plain-text 401.
//!
//! Istio routes a model to one destination host, so a model with several targets (fallback across
//! providers in one Envoy cluster) is refused here; the plain Envoy rendering has them.

use super::yaml::{flow, int, list, map, s, to_string, Y};
use super::{Gateway, Upstream};
use crate::config::fields::{err, R};
use crate::http::H_ROUTE;
use serde_json::Value;

/// The `istio` section (all optional).
struct IstioSettings {
    namespace: String,
    selector: Vec<(String, String)>,
    gateways: Vec<String>,
    hosts: Vec<String>,
    wasm_url: String,
    upstream_wasm_uri: String,
    upstream_wasm_sha256: String,
    upstream_wasm_cluster: String,
}

fn settings(root: &Value) -> R<IstioSettings> {
    let i = root.get("istio");
    let str_of = |k: &str, default: &str| -> R<String> {
        match i.and_then(|i| i.get(k)) {
            None => Ok(default.to_string()),
            Some(Value::String(v)) if !v.is_empty() => Ok(v.clone()),
            Some(_) => Err(err(format!("istio.{k}"), "must be a non-empty string")),
        }
    };
    let list_of = |k: &str, default: &[&str]| -> R<Vec<String>> {
        match i.and_then(|i| i.get(k)) {
            None => Ok(default.iter().map(|d| d.to_string()).collect()),
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| err(format!("istio.{k}"), "must be a list of strings"))
                })
                .collect(),
            Some(_) => Err(err(format!("istio.{k}"), "must be a non-empty list of strings")),
        }
    };
    if let Some(o) = i {
        let o = crate::config::fields::as_obj(o, "istio")?;
        crate::config::fields::check_fields(
            o,
            "istio",
            &["namespace", "selector", "gateways", "hosts", "wasm_url", "upstream_wasm"],
        )?;
    }
    let selector = match i.and_then(|i| i.get("selector")) {
        None => vec![("istio".to_string(), "ingressgateway".to_string())],
        Some(Value::Object(o)) if !o.is_empty() => o
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_string()))
                    .ok_or_else(|| err("istio.selector", "must map label names to strings"))
            })
            .collect::<R<_>>()?,
        Some(_) => return Err(err("istio.selector", "must map label names to strings")),
    };
    let wasm_url = settings_wasm_url(root, str_of("wasm_url", "")?)?;
    let up = i.and_then(|i| i.get("upstream_wasm"));
    if let Some(u) = up {
        let o = crate::config::fields::as_obj(u, "istio.upstream_wasm")?;
        crate::config::fields::check_fields(o, "istio.upstream_wasm", &["uri", "cluster", "sha256"])?;
    }
    let up_str = |k: &str, default: &str| -> R<String> {
        match up.and_then(|u| u.get(k)) {
            None => Ok(default.to_string()),
            Some(Value::String(v)) if !v.is_empty() => Ok(v.clone()),
            Some(_) => Err(err(format!("istio.upstream_wasm.{k}"), "must be a non-empty string")),
        }
    };
    Ok(IstioSettings {
        namespace: str_of("namespace", "istio-system")?,
        selector,
        gateways: list_of("gateways", &["istio-system/ingressgateway"])?,
        hosts: list_of("hosts", &["*"])?,
        wasm_url,
        upstream_wasm_uri: up_str("uri", "https://YOUR-HOST/switchyard.wasm")?,
        upstream_wasm_sha256: up_str("sha256", "YOUR-SHA256-OF-THE-WASM")?,
        upstream_wasm_cluster: up_str("cluster", "YOUR-CLUSTER-FOR-THAT-HOST")?,
    })
}

/// The WasmPlugin's module: `istio.wasm_url`, else `wasm` when it is a URL.
fn settings_wasm_url(root: &Value, given: String) -> R<String> {
    if !given.is_empty() {
        if !(given.starts_with("oci://") || given.starts_with("https://") || given.starts_with("http://")) {
            return Err(err("istio.wasm_url", "must be an oci://, https:// or http:// URL"));
        }
        return Ok(given);
    }
    match root.get("wasm").and_then(Value::as_str) {
        Some(w) if w.starts_with("oci://") || w.starts_with("https://") => Ok(w.to_string()),
        _ => Ok("oci://YOUR-REGISTRY/switchyard:0.1.0".to_string()),
    }
}

/// The Istio resources, as one multi-document YAML text.
pub fn render(g: &Gateway, root: &Value) -> R<String> {
    let st = settings(root)?;
    let g = &in_mesh(g);
    for m in &g.models {
        if m.own_cluster {
            return Err(err(
                format!("models.{}", m.name),
                "a model with several targets or a cluster of its own is not rendered for Istio in this version (Istio routes a model to one host); render it for Envoy, or give it one target",
            ));
        }
    }
    let mut docs = vec![wasm_plugin(g, &st), hold_headers(&st)];
    for u in &g.upstreams {
        docs.push(service_entry(u, &st));
        docs.push(destination_rule(u, &st));
    }
    for svc in g.services.iter().filter(|s| !is_cluster_local(&s.url.host)) {
        docs.push(service_entry_for_service(svc, &st));
    }
    docs.extend(jwt_resources(g, &st)?);
    docs.push(virtual_service(g, &st));
    for u in &g.upstreams {
        docs.push(upstream_filter(g, u, &st));
    }
    let mut out = String::from(
        "# Rendered by `switchyard render --istio` from the gateway file: edit that file, not this one.\n\
         # Istio 1.24+ (Envoy 1.35+ proxies). Values written YOUR-... come from the file's `istio` section.\n",
    );
    for d in docs {
        out.push_str("---\n");
        out.push_str(&to_string(&d));
    }
    Ok(out)
}

/// Istio names a cluster `outbound|PORT||HOST`: the services a stage calls (`fleet_limits.cluster`) are
/// named so in the plugin configuration rendered for the mesh.
fn in_mesh(g: &Gateway) -> Gateway {
    let mut g = g.clone();
    let named = g.plugin.get("fleet_limits").and_then(|f| f.get("cluster")).and_then(Value::as_str).map(str::to_string);
    if let Some(svc) = named.and_then(|n| g.services.iter().find(|s| s.name == n)) {
        let cluster = format!("outbound|{}||{}", svc.url.port, svc.url.address());
        if let Some(f) = g.plugin.get_mut("fleet_limits").and_then(Value::as_object_mut) {
            f.insert("cluster".into(), Value::String(cluster));
        }
    }
    g
}

/// A Kubernetes Service's name in the mesh (no ServiceEntry needed).
fn is_cluster_local(host: &str) -> bool {
    host.ends_with(".svc.cluster.local") || host.ends_with(".svc")
}

/// A service outside the mesh (a rate-limit service on a VM, say): a ServiceEntry so the gateway's Envoy
/// has its cluster.
fn service_entry_for_service(svc: &super::Service, st: &IstioSettings) -> Y {
    let (name, protocol) = match svc.protocol {
        super::Protocol::Grpc => ("grpc", "GRPC"),
        super::Protocol::Http2 => ("http2", "HTTP2"),
        super::Protocol::Http1 => ("http", "HTTP"),
    };
    let port = map([("number", int(svc.url.port)), ("name", s(name)), ("protocol", s(protocol))]);
    external_service_entry(&format!("service-{}", k8s_name(&svc.name)), &svc.url, port, st)
}

/// A MESH_EXTERNAL ServiceEntry for `url` on `port` (resolved by DNS, or a static endpoint for an IP).
fn external_service_entry(name: &str, url: &super::Url, port: Y, st: &IstioSettings) -> Y {
    let mut spec = map([
        ("hosts", flow(list([s(url.address())]))),
        ("location", s("MESH_EXTERNAL")),
        ("resolution", s(if url.is_ip() { "STATIC" } else { "DNS" })),
        ("ports", list([port])),
    ]);
    if url.is_ip() {
        spec.push("endpoints", list([flow(map([("address", s(url.address()))]))]));
    }
    map([
        ("apiVersion", s("networking.istio.io/v1")),
        ("kind", s("ServiceEntry")),
        ("metadata", meta(name, st)),
        ("spec", spec),
    ])
}

fn meta(name: &str, st: &IstioSettings) -> Y {
    map([("name", s(name)), ("namespace", s(&st.namespace))])
}

fn selector(st: &IstioSettings) -> Y {
    Y::Map(st.selector.iter().map(|(k, v)| (k.clone(), s(v))).collect())
}

/// A Kubernetes name from a provider name.
fn k8s_name(name: &str) -> String {
    let n: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    n.trim_matches('-').to_string()
}

fn json_to_y(v: &Value) -> Y {
    match v {
        Value::Null => Y::Null,
        Value::Bool(b) => Y::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Y::Int(i),
            None => Y::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(x) => s(x),
        Value::Array(a) => Y::List(a.iter().map(json_to_y).collect()),
        Value::Object(o) => Y::Map(o.iter().map(|(k, v)| (k.clone(), json_to_y(v))).collect()),
    }
}

fn wasm_plugin(g: &Gateway, st: &IstioSettings) -> Y {
    let mut spec = map([
        ("selector", map([("matchLabels", selector(st))])),
        ("url", s(&st.wasm_url)),
        ("imagePullPolicy", s("IfNotPresent")),
        ("pluginName", s("switchyard")),
        ("phase", s("AUTHN")),
        ("type", s("HTTP")),
    ]);
    spec.note("Istio 1.27+: a failed VM is reloaded (older versions: the EnvoyFilter below does it).");
    spec.push("failStrategy", s("FAIL_RELOAD"));
    if !g.env_vars.is_empty() {
        spec.note("The credentials' variables, read from the gateway pod's environment (a Secret via its env).");
        let env = g.env_vars.iter().map(|e| flow(map([("name", s(&e.name)), ("valueFrom", s("HOST"))])));
        spec.push("vmConfig", map([("env", list(env))]));
    }
    spec.push("pluginConfig", json_to_y(&g.plugin));
    map([
        ("apiVersion", s("extensions.istio.io/v1alpha1")),
        ("kind", s("WasmPlugin")),
        ("metadata", meta("switchyard", st)),
        ("spec", spec),
    ])
}

fn hold_headers(st: &IstioSettings) -> Y {
    let cfg = map([
        ("allow_on_headers_stop_iteration", Y::Bool(true)),
        ("failure_policy", s("FAIL_RELOAD")),
        ("reload_config", flow(map([("backoff", map([("base_interval", s("1s"))]))]))),
    ]);
    let mut patch = map([("applyTo", s("EXTENSION_CONFIG"))]);
    patch
        .note("WasmPlugin filters are named <namespace>.<name>; the filter holds the headers while it reads the body.");
    patch.push("match", map([("name", s(format!("{}.switchyard", st.namespace)))]));
    patch.push(
        "patch",
        map([
            ("operation", s("MERGE")),
            (
                "value",
                map([(
                    "typed_config",
                    map([
                        ("@type", s("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")),
                        ("config", cfg),
                    ]),
                )]),
            ),
        ]),
    );
    map([
        ("apiVersion", s("networking.istio.io/v1alpha3")),
        ("kind", s("EnvoyFilter")),
        ("metadata", meta("switchyard-hold-headers", st)),
        ("spec", map([("configPatches", list([patch]))])),
    ])
}

/// The port Istio's cluster for the provider uses (TLS is originated by the DestinationRule).
fn mesh_port(u: &Upstream) -> u16 {
    url_mesh_port(&u.url)
}

/// The port of Istio's cluster for a URL: 80 for `https` (the DestinationRule originates TLS to the
/// URL's port), else the URL's.
fn url_mesh_port(url: &super::Url) -> u16 {
    if url.tls {
        80
    } else {
        url.port
    }
}

/// Istio's name for the cluster that reaches a URL's host.
fn mesh_cluster(url: &super::Url) -> String {
    format!("outbound|{}||{}", url_mesh_port(url), url.address())
}

/// With `jwt_providers`: the EnvoyFilter that puts `jwt_authn` first in the gateway's HTTP filters, and
/// for each JWKS host outside the cluster a ServiceEntry (and a DestinationRule originating TLS for
/// `https`), as for providers.
fn jwt_resources(g: &Gateway, st: &IstioSettings) -> R<Vec<Y>> {
    if g.jwt_providers.is_empty() {
        return Ok(Vec::new());
    }
    let mut docs = Vec::new();
    let mut hosts: Vec<&str> = Vec::new();
    for p in &g.jwt_providers {
        let url = &p.jwks;
        if is_cluster_local(&url.host) && url.tls {
            return Err(err(
                format!("jwt_providers.{}.jwks", p.name),
                "an identity provider inside the cluster is reached over http:// for Istio (the mesh secures the connection)",
            ));
        }
        if is_cluster_local(&url.host) || hosts.contains(&url.address()) {
            continue;
        }
        hosts.push(url.address());
        let name = format!("jwks-{}", k8s_name(&p.name));
        let port = map([
            ("number", int(url_mesh_port(url))),
            ("name", s("http")),
            ("protocol", s("HTTP")),
            ("targetPort", int(url.port)),
        ]);
        docs.push(external_service_entry(&name, url, port, st));
        if url.tls {
            let tp = map([(
                "portLevelSettings",
                list([map([
                    ("port", flow(map([("number", int(url_mesh_port(url)))]))),
                    ("tls", map([("mode", s("SIMPLE")), ("sni", s(url.address()))])),
                ])]),
            )]);
            docs.push(map([
                ("apiVersion", s("networking.istio.io/v1")),
                ("kind", s("DestinationRule")),
                ("metadata", meta(&name, st)),
                ("spec", map([("host", s(url.address())), ("trafficPolicy", tp)])),
            ]));
        }
    }
    let config = super::jwt::authn_config(&g.jwt_providers, |p| mesh_cluster(&p.jwks));
    let mut patch = map([("applyTo", s("HTTP_FILTER"))]);
    patch.note("First in the gateway's HTTP filters, so before the WasmPlugin: it verifies, never rejects.");
    patch.push(
        "match",
        map([
            ("context", s("GATEWAY")),
            (
                "listener",
                map([(
                    "filterChain",
                    map([("filter", map([("name", s("envoy.filters.network.http_connection_manager"))]))]),
                )]),
            ),
        ]),
    );
    patch.push(
        "patch",
        map([
            ("operation", s("INSERT_FIRST")),
            ("value", map([("name", s("switchyard.jwt_authn")), ("typed_config", config)])),
        ]),
    );
    docs.push(map([
        ("apiVersion", s("networking.istio.io/v1alpha3")),
        ("kind", s("EnvoyFilter")),
        ("metadata", meta("switchyard-jwt", st)),
        ("spec", map([("workloadSelector", map([("labels", selector(st))])), ("configPatches", list([patch]))])),
    ]));
    Ok(docs)
}

fn service_entry(u: &Upstream, st: &IstioSettings) -> Y {
    let port = map([
        ("number", int(mesh_port(u))),
        ("name", s("http")),
        ("protocol", s("HTTP")),
        ("targetPort", int(u.url.port)),
    ]);
    external_service_entry(&k8s_name(&u.name), &u.url, port, st)
}

fn destination_rule(u: &Upstream, st: &IstioSettings) -> Y {
    let mut tp = map([]);
    if u.url.tls {
        tp.push(
            "portLevelSettings",
            list([map([
                ("port", flow(map([("number", int(mesh_port(u)))]))),
                ("tls", map([("mode", s("SIMPLE")), ("sni", s(u.url.address()))])),
            ])]),
        );
    }
    tp.push(
        "outlierDetection",
        map([
            ("consecutive5xxErrors", int(3)),
            ("interval", s("10s")),
            ("baseEjectionTime", s("30s")),
            ("maxEjectionPercent", int(100)),
        ]),
    );
    map([
        ("apiVersion", s("networking.istio.io/v1")),
        ("kind", s("DestinationRule")),
        ("metadata", meta(&k8s_name(&u.name), st)),
        ("spec", map([("host", s(u.url.address())), ("trafficPolicy", tp)])),
    ])
}

fn virtual_service(g: &Gateway, st: &IstioSettings) -> Y {
    let mut routes = Vec::new();
    for m in &g.models {
        let Some(u) = m.targets.first().and_then(|t| t.upstream).and_then(|i| g.upstreams.get(i)) else { continue };
        let mut r = Y::Map(Vec::new());
        r.note(&format!("model {}: provider {}", m.name, u.name));
        r.push("match", list([map([("headers", map([(H_ROUTE, flow(map([("exact", s(&m.name))])))]))])]));
        r.push(
            "route",
            list([map([(
                "destination",
                flow(map([("host", s(u.url.address())), ("port", map([("number", int(mesh_port(u)))]))])),
            )])]),
        );
        r.push("timeout", s(format!("{}ms", m.timeout_ms)));
        r.note(
            "A 429 is never retried onto the same provider; 5xx, resets and connect failures up to `retries` times.",
        );
        r.push("retries", map([("attempts", int(m.retries)), ("retryOn", s("5xx,reset,connect-failure"))]));
        r.push("headers", map([("request", map([("set", flow(map([("host", s(u.hostname()))])))]))]));
        routes.push(r);
    }
    let mut spec =
        map([("hosts", flow(list(st.hosts.iter().map(s)))), ("gateways", flow(list(st.gateways.iter().map(s))))]);
    spec.note(&format!(
        "One route per model on the {H_ROUTE} header the filter sets; everything else the filter answers."
    ));
    spec.push("http", Y::List(routes));
    map([
        ("apiVersion", s("networking.istio.io/v1")),
        ("kind", s("VirtualService")),
        ("metadata", meta("switchyard", st)),
        ("spec", spec),
    ])
}

fn upstream_filter(g: &Gateway, u: &Upstream, st: &IstioSettings) -> Y {
    let mut vm = map([("vm_id", s("switchyard")), ("runtime", s("envoy.wasm.runtime.v8"))]);
    if !g.env_vars.is_empty() {
        vm.push("environment_variables", flow(map([("host_env_keys", list(g.env_vars.iter().map(|e| s(&e.name))))])));
    }
    vm.push(
        "code",
        map([(
            "remote",
            map([
                (
                    "http_uri",
                    flow(map([
                        ("uri", s(&st.upstream_wasm_uri)),
                        ("cluster", s(&st.upstream_wasm_cluster)),
                        ("timeout", s("10s")),
                    ])),
                ),
                ("sha256", s(&st.upstream_wasm_sha256)),
            ]),
        )]),
    );
    let mut cfg = map([
        ("name", s("switchyard-upstream")),
        ("root_id", s("switchyard-upstream")),
        ("failure_policy", s("FAIL_RELOAD")),
        ("reload_config", flow(map([("backoff", map([("base_interval", s("1s"))]))]))),
        ("allow_on_headers_stop_iteration", Y::Bool(true)),
        ("vm_config", vm),
    ]);
    cfg.note("The WasmPlugin's pluginConfig, as JSON (rendered from the same file).");
    cfg.push(
        "configuration",
        map([
            ("@type", s("type.googleapis.com/google.protobuf.StringValue")),
            ("value", Y::Text(g.plugin_json_pretty() + "\n")),
        ]),
    );
    let filters = list([
        map([
            ("name", s("switchyard-upstream")),
            (
                "typed_config",
                map([("@type", s("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")), ("config", cfg)]),
            ),
        ]),
        map([
            ("name", s("envoy.filters.http.upstream_codec")),
            (
                "typed_config",
                map([(
                    "@type",
                    s("type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"),
                )]),
            ),
        ]),
    ]);
    let patch = map([
        ("applyTo", s("CLUSTER")),
        (
            "match",
            map([
                ("context", s("GATEWAY")),
                ("cluster", flow(map([("service", s(u.url.address())), ("portNumber", int(mesh_port(u)))]))),
            ]),
        ),
        (
            "patch",
            map([
                ("operation", s("MERGE")),
                (
                    "value",
                    map([(
                        "typed_extension_protocol_options",
                        map([(
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            map([
                                (
                                    "@type",
                                    s("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
                                ),
                                ("explicit_http_config", flow(map([("http_protocol_options", Y::Map(vec![]))]))),
                                ("http_filters", filters),
                            ]),
                        )]),
                    )]),
                ),
            ]),
        ),
    ]);
    map([
        ("apiVersion", s("networking.istio.io/v1alpha3")),
        ("kind", s("EnvoyFilter")),
        ("metadata", meta(&format!("switchyard-upstream-{}", k8s_name(&u.name)), st)),
        ("spec", map([("workloadSelector", map([("labels", selector(st))])), ("configPatches", list([patch]))])),
    ])
}
