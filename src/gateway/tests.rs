use super::yaml::to_string;
use super::*;
use serde_json::{json, Value};

fn base() -> Value {
    json!({
        "providers": {
            "local": {"kind": "mock"},
            "openai": {"kind": "openai", "api_key": {"env": "OPENAI_API_KEY", "optional": true}},
            "anthropic": {"kind": "anthropic", "api_key": {"env": "ANTHROPIC_API_KEY"}},
            "ollama": {"kind": "openai_compatible", "url": "http://127.0.0.1:11434"}
        },
        "models": {
            "echo": {"provider": "local"},
            "gpt": {"provider": "openai", "model": "gpt-4o-mini", "timeout": "60s"},
            "smart": {"targets": [
                {"provider": "openai", "model": "gpt-4.1"},
                {"provider": "anthropic", "model": "claude-sonnet-4-5"}]},
            "canary": {"strategy": "split", "targets": [
                {"provider": "openai", "model": "a", "weight": 90},
                {"provider": "ollama", "model": "b", "weight": 10}]}
        },
        "keys": [{"id": "demo", "models": ["*"], "sha256": "37cbfc183c342e976476530bb738059047143238dbbee2003f91b27a3d546483"}]
    })
}

/// `base()` with the value at a `/`-separated pointer replaced (`None`: removed).
fn with(pointer: &str, v: Option<Value>) -> Value {
    let mut root = base();
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let target = if parent.is_empty() { Some(&mut root) } else { root.pointer_mut(parent) };
    match (target, v) {
        (Some(Value::Object(o)), Some(v)) => {
            o.insert(last.to_string(), v);
        }
        (Some(Value::Object(o)), None) => {
            o.remove(last);
        }
        (Some(Value::Array(a)), Some(v)) => {
            let i: usize = last.parse().unwrap_or(0);
            a[i] = v;
        }
        _ => {}
    }
    root
}

#[test]
fn a_good_file_gives_routes_clusters_and_the_plugin_config() {
    let g = parse(&base()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.listener, SocketAddr { address: "127.0.0.1".into(), port: 10000 });
    // The plugin config has no gateway-only field, and models with targets got their cluster.
    let p = &g.plugin;
    assert!(p["providers"]["ollama"].get("url").is_none());
    assert!(p["models"]["gpt"].get("timeout").is_none());
    assert!(p["models"]["canary"].get("strategy").is_none());
    assert!(p["models"]["canary"]["targets"][0].get("weight").is_none());
    assert_eq!(p["models"]["smart"]["cluster"], "smart");
    assert!(crate::config::Config::parse(g.plugin_json().as_bytes(), &EveryVar).is_ok());

    let names: Vec<_> = g.upstreams.iter().map(|u| (u.name.as_str(), u.url.tls, u.url.port)).collect();
    assert_eq!(names, [("anthropic", true, 443), ("ollama", false, 11434), ("openai", true, 443)]);
    let gpt = g.models.iter().find(|m| m.name == "gpt").unwrap();
    assert_eq!((gpt.cluster.as_str(), gpt.own_cluster, gpt.timeout_ms, gpt.retries), ("openai", false, 60_000, 0));
    let smart = g.models.iter().find(|m| m.name == "smart").unwrap();
    assert_eq!((smart.own_cluster, smart.strategy, smart.retries), (true, Strategy::Fallback, 1));
    let canary = g.models.iter().find(|m| m.name == "canary").unwrap();
    assert_eq!(canary.targets.iter().map(|t| t.weight).collect::<Vec<_>>(), [90, 10]);
    let env: Vec<_> = g.env_vars.iter().map(|e| (e.name.as_str(), e.optional)).collect();
    assert_eq!(env, [("ANTHROPIC_API_KEY", false), ("OPENAI_API_KEY", true)]);
}

/// The base file with several top-level fields set.
fn with_all(fields: &[(&str, Value)]) -> Value {
    let mut root = base();
    for (pointer, v) in fields {
        if let Value::Object(o) = &mut root {
            o.insert(pointer.trim_start_matches('/').to_string(), v.clone());
        }
    }
    root
}

struct EveryVar;
impl crate::config::Env for EveryVar {
    fn var(&self, _: &str) -> Option<String> {
        Some("x".into())
    }
}

#[test]
fn bad_files_are_refused_naming_the_field() {
    let table: Vec<(&str, Value, &str, &str)> = vec![
        (
            "target's provider unknown",
            with("/models/smart/targets/1", Some(json!({"provider": "nope"}))),
            "models.smart.targets[1].provider",
            "names no provider 'nope'",
        ),
        ("key names an unknown model", with("/keys/0/models", Some(json!(["ghost"]))), "keys[0].models[0]", "ghost"),
        (
            "url without scheme",
            with("/providers/ollama/url", Some(json!("127.0.0.1:11434"))),
            "providers.ollama.url",
            "http:// or https://",
        ),
        (
            "url with a bad port",
            with("/providers/ollama/url", Some(json!("http://h:99999"))),
            "providers.ollama.url",
            "port",
        ),
        ("url on the mock", with("/providers/local/url", Some(json!("http://x"))), "providers.local.url", "no url"),
        (
            "url path on openai",
            with("/providers/openai/url", Some(json!("https://api.openai.com/v1"))),
            "providers.openai.url",
            "must not have a path",
        ),
        ("compatible without url", with("/providers/ollama/url", None), "providers.ollama.url", "is required"),
        (
            "unknown provider field names url too",
            with("/providers/openai/urll", Some(json!("x"))),
            "providers.openai.urll",
            "url",
        ),
        (
            "weight without split",
            with("/models/smart/targets/0/weight", Some(json!(3))),
            "models.smart.targets[0].weight",
            "strategy: split",
        ),
        (
            "split without weight",
            with("/models/canary/targets/1", Some(json!({"provider": "ollama", "model": "b"}))),
            "models.canary.targets[1].weight",
            "required",
        ),
        (
            "weight out of range",
            with("/models/canary/targets/1/weight", Some(json!(0))),
            "models.canary.targets[1].weight",
            "1 to 1000",
        ),
        ("bad strategy", with("/models/smart/strategy", Some(json!("random"))), "models.smart.strategy", "fallback"),
        (
            "strategy on one target",
            with("/models/gpt/strategy", Some(json!("split"))),
            "models.gpt.strategy",
            "needs targets",
        ),
        (
            "too many retries for the targets",
            with("/models/smart/retries", Some(json!(2))),
            "models.smart.retries",
            "0 to 1",
        ),
        (
            "too many single retries",
            with("/models/gpt/retries", Some(json!(9))),
            "models.gpt.retries",
            "a 429 never is",
        ),
        ("bad timeout", with("/models/gpt/timeout", Some(json!("soon"))), "models.gpt.timeout", "duration"),
        ("zero timeout", with("/models/gpt/timeout", Some(json!("0s"))), "models.gpt.timeout", "duration"),
        (
            "mock among targets",
            with("/models/smart/targets/1", Some(json!({"provider": "local"}))),
            "models.smart.targets[1].provider",
            "several targets",
        ),
        (
            "model cluster taken by a provider",
            with("/models/smart/cluster", Some(json!("openai"))),
            "models.smart.cluster",
            "already providers.openai's",
        ),
        (
            "model named like a provider cluster",
            with("/models/openai", Some(json!({"targets": [{"provider": "openai"}, {"provider": "anthropic"}]}))),
            "models.openai",
            "already providers.openai's",
        ),
        ("admin off loopback", with("/admin", Some(json!({"address": "0.0.0.0"}))), "admin.address", "loopback"),
        ("listener port", with("/listener", Some(json!({"port": 0}))), "listener.port", "1 to 65535"),
        ("unknown top-level field lists the gateway's", with("/listenr", Some(json!({}))), "listenr", "listener"),
        (
            "service url",
            with("/services", Some(json!({"ratelimit": {"url": "grpc://x"}}))),
            "services.ratelimit.url",
            "http",
        ),
        (
            "service protocol",
            with("/services", Some(json!({"ratelimit": {"url": "http://x:1", "protocol": "udp"}}))),
            "services.ratelimit.protocol",
            "grpc",
        ),
        (
            "service named like a provider",
            with("/services", Some(json!({"openai": {"url": "http://x:1"}}))),
            "services.openai",
            "already",
        ),
        ("filter's own message", with("/max_body_bytes", Some(json!(5))), "max_body_bytes", "1024"),
        (
            "rate-limit service not among services",
            with("/fleet_limits", Some(json!({"cluster": "rls"}))),
            "fleet_limits.cluster",
            "services.rls",
        ),
        (
            "rate-limit service not on gRPC",
            with_all(&[
                ("/fleet_limits", json!({"cluster": "rls"})),
                ("/services", json!({"rls": {"url": "http://127.0.0.1:8081", "protocol": "http1"}})),
            ]),
            "services.rls.protocol",
            "grpc",
        ),
        (
            "fleet limits without the service",
            with("/keys/0/limits", Some(json!({"fleet": {"requests": {"limit": 5}}}))),
            "keys[0].limits.fleet",
            "fleet_limits",
        ),
    ];
    for (what, file, field, needle) in table {
        match parse(&file) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => {
                assert_eq!(e.field, field, "{what}: {e}");
                assert!(e.reason.contains(needle), "{what}: '{}' lacks '{needle}'", e.reason);
            }
        }
    }
}

#[test]
fn urls_parse() {
    let u = parse::parse_url("https://API.example.com", "f").unwrap();
    assert_eq!((u.tls, u.host.as_str(), u.port, u.path.as_str()), (true, "api.example.com", 443, ""));
    let u = parse::parse_url("http://[::1]:8080/v1", "f").unwrap();
    assert_eq!((u.address(), u.port, u.path.as_str(), u.is_ip()), ("::1", 8080, "/v1", true));
    for bad in ["ftp://x", "http://", "http://a b", "http://u@h", "http://h:0", "http://h/?q"] {
        assert!(parse::parse_url(bad, "f").is_err(), "{bad}");
    }
}

#[test]
fn durations() {
    let d = |v: Value| parse::duration(Some(&v), "f", 1);
    assert_eq!(d(json!("30s")).unwrap(), 30_000);
    assert_eq!(d(json!("250ms")).unwrap(), 250);
    assert_eq!(d(json!("2m")).unwrap(), 120_000);
    assert_eq!(d(json!(1.5)).unwrap(), 1_500);
    assert!(d(json!("25h")).is_err());
    assert!(d(json!("-1s")).is_err());
    assert!(d(json!(true)).is_err());
}

#[test]
fn the_envoy_rendering_has_a_route_per_model_and_clusters_from_the_targets() {
    let g = parse(&base()).unwrap();
    let text = to_string(&envoy::render(&g));
    // The plugin configuration is written once and referred to by the upstream role.
    assert_eq!(text.matches("configuration: &switchyard_config").count(), 1, "{text}");
    assert_eq!(text.matches("configuration: *switchyard_config").count(), 1);
    assert!(text.contains("host_env_keys: [ANTHROPIC_API_KEY, OPENAI_API_KEY]"));
    // One route per routed model (the mock's is answered in the filter), then the catch-all.
    for m in ["gpt", "smart", "canary"] {
        assert!(text.contains(&format!("string_match: {{ exact: {m} }}")), "{m}");
    }
    assert!(!text.contains("exact: echo"));
    // Fallback: priorities; the 429 goes to another target only; a one-target model never retries a 429.
    assert!(text.contains("- priority: 1"));
    assert_eq!(text.matches("retriable_status_codes: [429]").count(), 2);
    assert!(text.contains("load_balancing_weight: 90"));
    // A plain-HTTP provider has no TLS; a split mixing TLS and plain matches the socket per endpoint.
    assert!(text.contains("transport_socket_matches"));
    assert!(text.contains("envoy.transport_socket_match: { tls: true }"));
}

#[test]
fn bedrock_requests_keep_the_signed_host_whatever_url_they_go_to() {
    // The filter signs every Bedrock request for the regional host name: sent to another address (a
    // sidecar, a mock), the request must still carry that host, or the signature is refused.
    let mut file = base();
    file["providers"]["bedrock"] = json!({"kind": "bedrock", "region": "eu-west-1", "access_key_id": "AKID",
                                          "secret_access_key": "secret", "url": "http://127.0.0.1:9000"});
    file["models"]["nova"] = json!({"provider": "bedrock", "model": "us.amazon.nova-lite-v1:0"});
    file["models"]["both"] =
        json!({"targets": [{"provider": "bedrock", "model": "m"}, {"provider": "ollama", "model": "b"}]});
    let g = parse(&file).unwrap();
    assert_eq!(g.upstream("bedrock").unwrap().hostname(), "bedrock-runtime.eu-west-1.amazonaws.com");
    assert_eq!(g.upstream("ollama").unwrap().hostname(), "127.0.0.1");
    let text = to_string(&envoy::render(&g));
    let bedrock_endpoint = "{ address: { socket_address: { address: 127.0.0.1, port_value: 9000 } }, hostname: bedrock-runtime.eu-west-1.amazonaws.com }";
    // The provider's own cluster and the model cluster it is a target in.
    assert_eq!(text.matches(bedrock_endpoint).count(), 2, "{text}");
    assert!(text.contains("port_value: 11434 } }, hostname: 127.0.0.1 }"), "{text}");
    // Istio: the route sets the same host.
    let models = file["models"].as_object_mut().unwrap();
    for m in ["smart", "canary", "both"] {
        models.remove(m);
    }
    let g = parse(&file).unwrap();
    let text = istio::render(&g, &file).unwrap();
    assert!(text.contains("set: { host: bedrock-runtime.eu-west-1.amazonaws.com }"), "{text}");
}

#[test]
fn the_istio_rendering_carries_the_same_plugin_config_and_refuses_multi_target_models() {
    let mut file = base();
    let g = parse(&file).unwrap();
    let e = istio::render(&g, &file).unwrap_err();
    assert_eq!(e.field, "models.canary");
    let models = file["models"].as_object_mut().unwrap();
    models.remove("smart");
    models.remove("canary");
    let g = parse(&file).unwrap();
    let text = istio::render(&g, &file).unwrap();
    for kind in ["WasmPlugin", "EnvoyFilter", "ServiceEntry", "DestinationRule", "VirtualService"] {
        assert!(text.contains(&format!("kind: {kind}\n")), "{kind}");
    }
    assert!(text.contains(&g.plugin_json_pretty().lines().nth(1).unwrap().trim().to_string()));
}

#[test]
fn the_istio_rendering_names_the_rate_limit_service_as_istio_does() {
    let mut file = base();
    let models = file["models"].as_object_mut().unwrap();
    models.remove("smart");
    models.remove("canary");
    file["fleet_limits"] = json!({"cluster": "ratelimit"});
    for (url, entry) in [
        ("http://switchyard-limits.switchyard.svc.cluster.local:8081", false),
        ("http://limits.example.com:8081", true),
    ] {
        file["services"] = json!({"ratelimit": {"url": url}});
        let g = parse(&file).unwrap();
        assert_eq!(g.plugin["fleet_limits"]["cluster"], "ratelimit", "plain Envoy: the service's own cluster");
        let text = istio::render(&g, &file).unwrap();
        let host = url.trim_start_matches("http://").trim_end_matches(":8081");
        let cluster = format!("outbound|8081||{host}");
        // In the WasmPlugin and in every upstream filter.
        assert_eq!(text.matches(&format!("\"{cluster}\"")).count(), 1 + g.upstreams.len(), "{text}");
        assert_eq!(text.contains("name: service-ratelimit"), entry, "{url}");
    }
}

#[test]
fn cache_settings_and_teams_pass_through_to_the_plugin_config() {
    let mut file = base();
    file["models"]["gpt"]["cache"] = json!({"ttl": "5m", "scope": "team", "charge": true, "max_entry_bytes": 65536});
    file["models"]["smart"]["cache"] = json!({"ttl": 3600});
    file["keys"][0]["team"] = json!("research");
    file["cache"] = json!({"max_bytes": 268435456, "max_entries": 20000, "fleet": true});
    file["fleet_limits"] = json!({"cluster": "ratelimit"});
    file["services"] = json!({"ratelimit": {"url": "http://127.0.0.1:8081"}});
    let g = parse(&file).unwrap_or_else(|e| panic!("{e}"));
    // Unchanged in the plugin config, next to the gateway-only fields taken out.
    assert_eq!(g.plugin["models"]["gpt"]["cache"], file["models"]["gpt"]["cache"]);
    assert!(g.plugin["models"]["gpt"].get("timeout").is_none());
    assert_eq!(g.plugin["models"]["smart"]["cache"], file["models"]["smart"]["cache"]);
    assert_eq!(g.plugin["keys"][0]["team"], "research");
    assert_eq!(g.plugin["cache"], file["cache"]);
    let cfg = crate::config::Config::parse(g.plugin_json().as_bytes(), &EveryVar).unwrap();
    let gpt = cfg.models["gpt"].cache.unwrap();
    assert_eq!((gpt.ttl_ns, gpt.max_entry_bytes, gpt.charge), (300_000_000_000, 65536, true));
    assert_eq!(gpt.scope, crate::config::CacheScope::Team);
    assert_eq!(cfg.keys[0].team.as_deref(), Some("research"));
    assert_eq!((cfg.cache.max_bytes, cfg.cache.max_entries, cfg.cache.fleet), (268_435_456, 20_000, true));
    // The filter's refusals reach `check` with their field.
    file["cache"] = json!({"fleet": true});
    file.as_object_mut().unwrap().remove("fleet_limits");
    let e = parse(&file).unwrap_err();
    assert_eq!(e.field, "cache.fleet");
    file["cache"] = json!({});
    file["models"]["gpt"]["cache"]["max_entry_bytes"] = json!(1 << 20);
    let e = parse(&file).unwrap_err();
    assert_eq!(e.field, "models.gpt.cache.max_entry_bytes");
    // The unknown-field message of a model's own section lists the filter's fields only.
    file["models"]["gpt"]["cache"] = json!({"ttl": 5, "timeout": "1s"});
    let e = parse(&file).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("models.gpt.cache.timeout", "unknown field (expected one of: ttl, max_entry_bytes, scope, charge)")
    );
}

#[test]
fn an_https_service_is_reached_with_its_name_as_sni_and_its_certificate_checked() {
    let mut file = base();
    file["fleet_limits"] = json!({"cluster": "ratelimit"});
    file["services"] = json!({"ratelimit": {"url": "https://limits.example.com:8443"}});
    let g = parse(&file).unwrap_or_else(|e| panic!("{e}"));
    let text = to_string(&envoy::render(&g));
    let cluster =
        text.split("- name: ratelimit").nth(1).expect("the service's cluster").split("\n  - name:").next().unwrap();
    assert!(cluster.contains("sni: limits.example.com"), "{cluster}");
    assert!(cluster.contains("exact: limits.example.com"), "{cluster}");
    assert!(cluster.contains("alpn_protocols: [h2]"), "{cluster}");
}
