//! `switchyard render`: the Envoy bootstrap for a gateway file. Everything that must agree is written
//! from one source: the plugin configuration once (both roles refer to it), each provider's cluster
//! from its URL, each model's route (timeout, retries) and cluster (fallback priorities or split
//! weights) from its targets, the endpoint metadata the upstream role reads from the same names.

use super::yaml::{flow, int, list, map, s, Y};
use super::{Gateway, ModelRoute, Protocol, Strategy, Upstream, Url};
use crate::http::{H_CLUSTER, H_ROUTE};

/// Client connections at once, for the whole Envoy.
const MAX_CONNECTIONS: i64 = 50_000;
/// The listener's per-connection buffer; the local reply for a translated answer over it names 32 MiB.
const BUFFER_LIMIT: i64 = 32 * 1024 * 1024;
/// Every answer Envoy makes itself, in the client's error shape (kept as YAML: it is read more than written).
const LOCAL_REPLY: &str = include_str!("assets/local_reply.yaml");

/// Which shared blocks were written already: the first use carries the anchor, later ones refer to it.
#[derive(Default)]
struct Anchors(Vec<&'static str>);

impl Anchors {
    fn once(&mut self, name: &'static str, make: impl FnOnce() -> Y) -> Y {
        if self.0.contains(&name) {
            Y::Alias(name.to_string())
        } else {
            self.0.push(name);
            Y::Anchor(name.to_string(), Box::new(make()))
        }
    }
}

/// The complete Envoy bootstrap.
pub fn render(g: &Gateway) -> Y {
    let mut a = Anchors::default();
    let mut doc = Y::Map(Vec::new());
    doc.note(&format!(
        "Rendered by `switchyard render` from the gateway file: edit that file, not this one.\n\n  listener  http://{}:{}/v1   (OpenAI and Anthropic APIs)\n  admin     http://{}:{}\n\nThe same module is loaded twice: as the listener's HTTP filter (route-level role: keys, models,\nlimits, routing) and as an upstream HTTP filter in every provider cluster (upstream role: per-attempt\npath, credential and body). Both read the one configuration anchored as &switchyard_config.",
        g.listener.address, g.listener.port, g.admin.address, g.admin.port
    ));
    let listener = listener(g, &mut a);
    let mut clusters = Vec::new();
    for u in &g.upstreams {
        clusters.push(provider_cluster(g, u, &mut a));
    }
    for m in g.models.iter().filter(|m| m.own_cluster) {
        clusters.push(model_cluster(g, m, &mut a));
    }
    for svc in &g.services {
        clusters.push(service_cluster(svc.name.as_str(), &svc.url, svc.protocol, svc.connect_timeout_ms, &mut a));
    }
    clusters.extend(super::jwt::clusters(g));
    doc.push("static_resources", map([("listeners", list([listener])), ("clusters", Y::List(clusters))]));
    doc.note("The filter's stats are named wasmcustom.switchyard.<metric>.model.<m>.provider.<p>.key.<k>[.team.<t>][.outcome.<o>]\n(team with identity or teams configured); these tag extractors turn the segments into Prometheus labels.");
    doc.push("stats_config", stats_config());
    doc.note("Envoy's cap on client connections at once (past it, new connections are refused).");
    doc.push(
        "overload_manager",
        map([(
            "resource_monitors",
            list([map([
                ("name", s("envoy.resource_monitors.global_downstream_max_connections")),
                (
                    "typed_config",
                    map([
                        (
                            "@type",
                            s("type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"),
                        ),
                        ("max_active_downstream_connections", int(MAX_CONNECTIONS)),
                    ]),
                ),
            ])]),
        )]),
    );
    doc.push(
        "admin",
        map([(
            "address",
            map([("socket_address", flow(map([("address", s(&g.admin.address)), ("port_value", int(g.admin.port))])))]),
        )]),
    );
    doc
}

fn listener(g: &Gateway, a: &mut Anchors) -> Y {
    let mut hcm = map([
        (
            "@type",
            s("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"),
        ),
        ("stat_prefix", s("switchyard")),
        ("codec_type", s("AUTO")),
    ]);
    hcm.note("One JSON line per request: Envoy's own fields plus what the filter decided and measured (the\nfilter state object wasm.switchyard; names follow the OpenTelemetry GenAI conventions).");
    hcm.push("access_log", access_log());
    hcm.note("Every answer Envoy makes itself reaches the client in its API's error shape (OpenAI's, or Anthropic's\non /v1/messages). Mappers apply to Envoy's local replies only; the first that matches wins. What\nEnvoy answers before any filter or stream exists (a refused HTTP/2 connection) never comes here.");
    hcm.push("local_reply_config", Y::Raw(LOCAL_REPLY));
    hcm.push("route_config", route_config(g));
    let filters = super::jwt::http_filter(g).into_iter().chain([route_filter(g, a), router()]);
    hcm.push("http_filters", list(filters));
    let mut l = map([
        ("name", s("switchyard")),
        (
            "address",
            map([(
                "socket_address",
                flow(map([("address", s(&g.listener.address)), ("port_value", int(g.listener.port))])),
            )]),
        ),
    ]);
    l.note(
        "Above the filter's max_body_bytes, so that the filter's own 413 (in the client's error shape) comes first.",
    );
    l.push("per_connection_buffer_limit_bytes", int(BUFFER_LIMIT));
    l.push(
        "filter_chains",
        list([map([(
            "filters",
            list([map([("name", s("envoy.filters.network.http_connection_manager")), ("typed_config", hcm)])]),
        )])]),
    );
    l
}

fn access_log() -> Y {
    let fields = [
        ("time", "%START_TIME%"),
        ("request_id", "%REQ(X-REQUEST-ID)%"),
        ("method", "%REQ(:METHOD)%"),
        ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
        ("status", "%RESPONSE_CODE%"),
        ("response_flags", "%RESPONSE_FLAGS%"),
        ("duration_ms", "%DURATION%"),
        ("upstream_attempts", "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"),
        ("upstream_host", "%UPSTREAM_HOST%"),
        ("switchyard", "%FILTER_STATE(wasm.switchyard:TYPED)%"),
    ];
    let json = Y::Map(fields.iter().map(|(k, v)| (k.to_string(), s(*v))).collect());
    list([map([
        ("name", s("envoy.access_loggers.file")),
        (
            "typed_config",
            map([
                ("@type", s("type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog")),
                ("path", s("/dev/stdout")),
                ("log_format", map([("json_format", json)])),
            ]),
        ),
    ])])
}

fn route_config(g: &Gateway) -> Y {
    let mut routes = Vec::new();
    for m in &g.models {
        if m.targets.iter().all(|t| t.upstream.is_none()) {
            continue; // the mock answers inside the filter: nothing is routed
        }
        routes.push(model_route(m));
    }
    let mut last = Y::Map(Vec::new());
    last.note("Anything else the filter forwards goes to the cluster it names (the filter answers every path it does not forward).");
    last.push("match", flow(map([("prefix", s("/"))])));
    last.push(
        "route",
        map([("cluster_header", s(H_CLUSTER)), ("auto_host_rewrite", Y::Bool(true)), ("timeout", s("300s"))]),
    );
    routes.push(last);
    let mut vh = map([("name", s("models")), ("domains", flow(list([s("*")])))]);
    vh.note(&format!(
        "One route per model, on the {H_ROUTE} header the route-level filter sets: the model's timeout and retries.\nA model with one target never retries a 429 (the same provider would refuse again: the client gets\nit, Retry-After included); a model with several moves a 429 to another target only."
    ));
    vh.push("routes", Y::List(routes));
    map([("name", s("switchyard")), ("virtual_hosts", list([vh]))])
}

fn model_route(m: &ModelRoute) -> Y {
    let mut r = Y::Map(Vec::new());
    let what = match (m.own_cluster, m.strategy) {
        (false, _) => format!("model {}: provider {}", m.name, m.targets.first().map_or("", |t| t.provider.as_str())),
        (true, Strategy::Fallback) => format!(
            "model {}: fallback {}",
            m.name,
            m.targets.iter().map(|t| t.provider.as_str()).collect::<Vec<_>>().join(" -> ")
        ),
        (true, Strategy::Split) => format!(
            "model {}: split {}",
            m.name,
            m.targets.iter().map(|t| format!("{} {}", t.provider, t.weight)).collect::<Vec<_>>().join(" / ")
        ),
    };
    r.note(&what);
    r.push(
        "match",
        flow(map([
            ("prefix", s("/")),
            ("headers", list([map([("name", s(H_ROUTE)), ("string_match", map([("exact", s(&m.name))]))])])),
        ])),
    );
    let mut route =
        map([("cluster", s(&m.cluster)), ("auto_host_rewrite", Y::Bool(true)), ("timeout", s(secs(m.timeout_ms)))]);
    route.push("retry_policy", retry_policy(m));
    r.push("route", route);
    r
}

/// Retries: a 429 only onto another target (never the same one), 5xx, resets and connect failures onto
/// the next target (or, for one target, the same provider up to `retries` times). Envoy never retries once
/// the answer has started to reach the client, so a stream is never retried after its first byte.
fn retry_policy(m: &ModelRoute) -> Y {
    let several = m.own_cluster && m.targets.len() > 1;
    let mut p = Y::Map(Vec::new());
    if several {
        p.push("retry_on", s("5xx,reset,connect-failure,retriable-status-codes"));
        p.push("retriable_status_codes", flow(list([int(429)])));
    } else {
        p.push("retry_on", s("5xx,reset,connect-failure"));
    }
    p.push("num_retries", int(m.retries));
    p.push("per_try_idle_timeout", s(secs(m.idle_timeout_ms)));
    if several {
        p.note("A provider's Retry-After is waited for (up to max_interval) before the next attempt.");
        p.push(
            "rate_limited_retry_back_off",
            map([
                ("reset_headers", list([flow(map([("name", s("retry-after")), ("format", s("SECONDS"))]))])),
                ("max_interval", s(secs(m.max_retry_wait_ms))),
            ]),
        );
        if m.strategy == Strategy::Fallback {
            p.push(
                "retry_priority",
                map([
                    ("name", s("envoy.retry_priorities.previous_priorities")),
                    (
                        "typed_config",
                        map([
                            (
                                "@type",
                                s("type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig"),
                            ),
                            ("update_frequency", int(1)),
                        ]),
                    ),
                ]),
            );
        }
        p.push(
            "retry_host_predicate",
            list([map([
                ("name", s("envoy.retry_host_predicates.previous_hosts")),
                (
                    "typed_config",
                    map([(
                        "@type",
                        s("type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"),
                    )]),
                ),
            ])]),
        );
        p.push("host_selection_retry_max_attempts", int(25));
    }
    p
}

/// A duration as Envoy writes it.
pub(super) fn secs(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

fn wasm_config(name: &str, g: &Gateway, a: &mut Anchors) -> Y {
    let mut c = map([("name", s(name)), ("root_id", s(name))]);
    c.note("A failed Wasm VM (an abort, out of memory) is reloaded, not left answering 503s until Envoy\nrestarts; requests meanwhile fail closed (503 in the client's error shape).");
    c.push("failure_policy", s("FAIL_RELOAD"));
    c.push("reload_config", flow(map([("backoff", map([("base_interval", s("1s"))]))])));
    c.note("Let the filter hold the headers while it reads the body (it routes on the body's model).");
    c.push("allow_on_headers_stop_iteration", Y::Bool(true));
    let vm = a.once("switchyard_vm", || {
        let mut vm = map([
            ("vm_id", s("switchyard")),
            ("runtime", s("envoy.wasm.runtime.v8")),
            ("code", flow(map([("local", map([("filename", s(&g.wasm))]))]))),
        ]);
        if !g.env_vars.is_empty() {
            let names = g.env_vars.iter().map(|e| s(&e.name));
            let mut env = Y::Map(Vec::new());
            env.note("The credentials' variables; a missing optional one turns its provider off.");
            env.push("host_env_keys", flow(list(names)));
            vm.push("environment_variables", env);
        }
        vm
    });
    c.push("vm_config", vm);
    let cfg = a.once("switchyard_config", || {
        map([
            ("@type", s("type.googleapis.com/google.protobuf.StringValue")),
            ("value", Y::Text(g.plugin_json_pretty() + "\n")),
        ])
    });
    c.push("configuration", cfg);
    c
}

fn route_filter(g: &Gateway, a: &mut Anchors) -> Y {
    map([
        ("name", s("switchyard")),
        (
            "typed_config",
            map([
                ("@type", s("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")),
                ("config", wasm_config("switchyard", g, a)),
            ]),
        ),
    ])
}

fn router() -> Y {
    let mut r = map([("@type", s("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"))]);
    r.note("Envoy's x-envoy-* request headers are not for model providers.");
    r.push("suppress_envoy_headers", Y::Bool(true));
    map([("name", s("envoy.filters.http.router")), ("typed_config", r)])
}

/// How a cluster speaks to its endpoints.
#[derive(Clone, Copy, PartialEq)]
enum Wire {
    /// TLS, HTTP/2 or 1.1 by ALPN.
    Tls,
    /// Plain HTTP/1.1.
    Plain,
    /// Some endpoints TLS, some plain: HTTP/1.1 on both.
    Mixed,
}

fn upstream_filters(g: &Gateway, a: &mut Anchors) -> Y {
    if a.0.contains(&"provider_filters") {
        return Y::Alias("provider_filters".into());
    }
    a.0.push("provider_filters");
    let wasm = map([
        ("name", s("switchyard-upstream")),
        (
            "typed_config",
            map([
                ("@type", s("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")),
                ("config", wasm_config("switchyard-upstream", g, a)),
            ]),
        ),
    ]);
    let codec = map([
        ("name", s("envoy.filters.http.upstream_codec")),
        (
            "typed_config",
            map([("@type", s("type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"))]),
        ),
    ]);
    Y::Anchor("provider_filters".into(), Box::new(list([wasm, codec])))
}

fn protocol_options(wire: Wire, g: &Gateway, a: &mut Anchors) -> Y {
    let (name, make): (&'static str, fn() -> Y) = match wire {
        Wire::Tls => ("tls_protocol", || {
            map([
                ("@type", s("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions")),
                (
                    "upstream_http_protocol_options",
                    flow(map([("auto_sni", Y::Bool(true)), ("auto_san_validation", Y::Bool(true))])),
                ),
                (
                    "auto_config",
                    flow(map([("http2_protocol_options", Y::Map(vec![])), ("http_protocol_options", Y::Map(vec![]))])),
                ),
            ])
        }),
        Wire::Plain => ("plain_protocol", || {
            map([
                ("@type", s("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions")),
                ("explicit_http_config", flow(map([("http_protocol_options", Y::Map(vec![]))]))),
            ])
        }),
        Wire::Mixed => ("mixed_protocol", || {
            map([
                ("@type", s("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions")),
                (
                    "upstream_http_protocol_options",
                    flow(map([("auto_sni", Y::Bool(true)), ("auto_san_validation", Y::Bool(true))])),
                ),
                ("explicit_http_config", flow(map([("http_protocol_options", Y::Map(vec![]))]))),
            ])
        }),
    };
    if a.0.contains(&name) {
        return Y::Alias(name.to_string());
    }
    a.0.push(name);
    let mut opts = make();
    opts.push("http_filters", upstream_filters(g, a));
    Y::Anchor(name.to_string(), Box::new(opts))
}

fn tls_socket(alpn: &[&str]) -> Y {
    map([
        ("name", s("envoy.transport_sockets.tls")),
        (
            "typed_config",
            map([
                ("@type", s("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext")),
                (
                    "common_tls_context",
                    map([
                        ("alpn_protocols", flow(list(alpn.iter().map(|p| s(*p))))),
                        (
                            "validation_context",
                            flow(map([("trusted_ca", map([("filename", s("/etc/ssl/certs/ca-certificates.crt"))]))])),
                        ),
                    ]),
                ),
            ]),
        ),
    ])
}

/// The first lines of every cluster: name, discovery, connect timeout.
pub(super) fn cluster_head(name: &str, urls: &[&Url], connect_timeout_ms: u64) -> Y {
    let mut c = map([("name", s(name))]);
    if urls.iter().all(|u| u.is_ip()) {
        c.push("type", s("STATIC"));
    } else {
        c.push("type", s("STRICT_DNS"));
        c.push("dns_lookup_family", s("V4_PREFERRED"));
    }
    c.push("connect_timeout", s(secs(connect_timeout_ms)));
    c
}

fn endpoint(u: &Upstream, meta: Y, weight: Option<u32>) -> Y {
    let url = &u.url;
    let mut e = map([(
        "endpoint",
        flow(map([
            ("address", map([("socket_address", map([("address", s(url.address())), ("port_value", int(url.port))]))])),
            ("hostname", s(u.hostname())),
        ])),
    )]);
    if let Some(w) = weight {
        e.push("load_balancing_weight", int(w));
    }
    e.push("metadata", meta);
    e
}

fn provider_cluster(g: &Gateway, u: &Upstream, a: &mut Anchors) -> Y {
    let wire = if u.url.tls { Wire::Tls } else { Wire::Plain };
    let mut c = cluster_head(&u.cluster, &[&u.url], 5_000);
    c.push(
        "typed_extension_protocol_options",
        map([("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", protocol_options(wire, g, a))]),
    );
    if u.url.tls {
        c.push("transport_socket", a.once("provider_tls", || tls_socket(&["h2", "http/1.1"])));
    }
    let meta = flow(map([("filter_metadata", map([("switchyard", map([("provider", s(&u.name))]))]))]));
    c.push(
        "load_assignment",
        map([
            ("cluster_name", s(&u.cluster)),
            ("endpoints", list([map([("lb_endpoints", list([endpoint(u, meta, None)]))])])),
        ]),
    );
    c
}

fn model_cluster(g: &Gateway, m: &ModelRoute, a: &mut Anchors) -> Y {
    let ups: Vec<&Upstream> = m.targets.iter().filter_map(|t| t.upstream).filter_map(|i| g.upstreams.get(i)).collect();
    let urls: Vec<&Url> = ups.iter().map(|u| &u.url).collect();
    let wire = if urls.iter().all(|u| u.tls) {
        Wire::Tls
    } else if urls.iter().all(|u| !u.tls) {
        Wire::Plain
    } else {
        Wire::Mixed
    };
    let mut c = cluster_head(&m.cluster, &urls, 5_000);
    c.push(
        "typed_extension_protocol_options",
        map([("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", protocol_options(wire, g, a))]),
    );
    match wire {
        Wire::Tls => c.push("transport_socket", a.once("provider_tls", || tls_socket(&["h2", "http/1.1"]))),
        Wire::Mixed => c.push(
            "transport_socket_matches",
            list([map([
                ("name", s("tls")),
                ("match", flow(map([("tls", Y::Bool(true))]))),
                ("transport_socket", a.once("provider_tls_http1", || tls_socket(&["http/1.1"]))),
            ])]),
        ),
        Wire::Plain => {}
    }
    if let Some(e) = m.ejection {
        c.note("A failing endpoint is ejected for a while instead of being tried on every request.");
        c.push(
            "outlier_detection",
            map([
                ("consecutive_5xx", int(e.consecutive_errors)),
                ("consecutive_gateway_failure", int(e.consecutive_errors)),
                ("interval", s("10s")),
                ("base_ejection_time", s(secs(e.ejection_time_ms))),
                ("max_ejection_percent", int(100)),
            ]),
        );
    }
    let mut groups: Vec<Y> = Vec::new();
    let mut split = Vec::new();
    for t in &m.targets {
        let Some(u) = t.upstream.and_then(|i| g.upstreams.get(i)) else { continue };
        let mut meta = map([("switchyard", map([("provider", s(&t.provider)), ("model", s(&t.model))]))]);
        if wire == Wire::Mixed && u.url.tls {
            meta.push("envoy.transport_socket_match", map([("tls", Y::Bool(true))]));
        }
        let meta = flow(map([("filter_metadata", meta)]));
        match m.strategy {
            Strategy::Fallback => {
                let p = groups.len();
                groups.push(map([("priority", int(p as i64)), ("lb_endpoints", list([endpoint(u, meta, None)]))]));
            }
            Strategy::Split => split.push(endpoint(u, meta, Some(t.weight))),
        }
    }
    if m.strategy == Strategy::Split {
        groups.push(map([("lb_endpoints", Y::List(split))]));
    }
    c.push("load_assignment", map([("cluster_name", s(&m.cluster)), ("endpoints", Y::List(groups))]));
    c
}

fn service_cluster(name: &str, url: &Url, protocol: Protocol, connect_timeout_ms: u64, a: &mut Anchors) -> Y {
    let mut c = cluster_head(name, &[url], connect_timeout_ms);
    let opts = match protocol {
        Protocol::Http1 => map([
            ("@type", s("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions")),
            ("explicit_http_config", flow(map([("http_protocol_options", Y::Map(vec![]))]))),
        ]),
        Protocol::Http2 | Protocol::Grpc => map([
            ("@type", s("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions")),
            ("explicit_http_config", flow(map([("http2_protocol_options", Y::Map(vec![]))]))),
        ]),
    };
    c.push("typed_extension_protocol_options", map([("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", opts)]));
    if url.tls {
        let alpn: &[&str] = if protocol == Protocol::Http1 { &["http/1.1"] } else { &["h2"] };
        let _ = a;
        // Named explicitly: a gRPC call's authority is the cluster's name, so auto_sni would not do.
        c.push("transport_socket", super::jwt::tls(url, alpn));
    }
    c.push("load_assignment", one_endpoint(name, url));
    c
}

/// The `load_assignment` of a cluster with the one endpoint `url` (its host name for TLS and `Host`).
pub(super) fn one_endpoint(cluster: &str, url: &Url) -> Y {
    let ep = map([(
        "endpoint",
        flow(map([
            ("address", map([("socket_address", map([("address", s(url.address())), ("port_value", int(url.port))]))])),
            ("hostname", s(url.address())),
        ])),
    )]);
    map([("cluster_name", s(cluster)), ("endpoints", list([map([("lb_endpoints", list([ep]))])]))])
}

fn stats_config() -> Y {
    let tags = [
        ("model", "^wasmcustom\\.switchyard\\.[a-z_]+(\\.model\\.([^.]+))"),
        ("provider", "^wasmcustom\\.switchyard\\.[a-z_]+(?:\\.model\\.[^.]+)?(\\.provider\\.([^.]+))"),
        ("key", "^wasmcustom\\.switchyard\\.[a-z_]+(?:\\.model\\.[^.]+)?(?:\\.provider\\.[^.]+)?(\\.key\\.([^.]+))"),
        (
            "team",
            "^wasmcustom\\.switchyard\\.[a-z_]+(?:\\.model\\.[^.]+)?(?:\\.provider\\.[^.]+)?(?:\\.key\\.[^.]+)?(\\.team\\.([^.]+))",
        ),
        ("outcome", "^wasmcustom\\.switchyard\\.(?:requests|fleet_limits|cache).*(\\.outcome\\.([^.]+))$"),
    ];
    map([("stats_tags", Y::List(tags.iter().map(|(n, r)| map([("tag_name", s(*n)), ("regex", s(*r))])).collect()))])
}
