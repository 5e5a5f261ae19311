//! `jwt_providers`: reading and checking the section, its agreement with `identity.accept`, and what
//! `render` and `render --istio` make of it. The filter's own `identity` section is not needed here: the
//! rendering tests put the providers on a gateway parsed without it.

use super::jwt::{self, JwtProvider};
use super::yaml::{to_string, Y};
use super::*;
use serde_json::{json, Map, Value};

fn base() -> Value {
    json!({
        "providers": {
            "local": {"kind": "mock"},
            "openai": {"kind": "openai", "api_key": "sk-upstream"}
        },
        "models": {"echo": {"provider": "local"}, "gpt": {"provider": "openai", "model": "gpt-4o-mini"}},
        "keys": [{"id": "demo", "models": ["*"], "sha256": "37cbfc183c342e976476530bb738059047143238dbbee2003f91b27a3d546483"}]
    })
}

fn providers_section() -> Value {
    json!({
        "okta": {
            "issuer": "https://dev-123456.okta.com/oauth2/default",
            "audiences": ["api://switchyard"],
            "jwks": "https://dev-123456.okta.com/oauth2/default/v1/keys",
            "jwks_cache": "5m",
            "clock_skew": "30s"
        },
        "local": {
            "issuer": "https://idp.test",
            "audiences": ["switchyard", "other"],
            "jwks": "http://127.0.0.1:18080/jwks.json"
        },
        "entra": {
            "issuer": "https://login.microsoftonline.com/tid/v2.0",
            "audiences": ["api://switchyard"],
            "jwks": "https://login.microsoftonline.com/tid/discovery/v2.0/keys?appid=abc"
        }
    })
}

fn providers() -> Vec<JwtProvider> {
    jwt::parse(Some(&providers_section()), &mut Vec::new()).unwrap_or_else(|e| panic!("{e}"))
}

/// The base gateway with the providers set (as a file with `identity.accept: [jwt]` would have them).
fn gateway() -> Gateway {
    let mut g = parse(&base()).unwrap_or_else(|e| panic!("{e}"));
    g.jwt_providers = providers();
    g
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn a_good_section_reads_with_defaults() {
    let ps = providers();
    let names: Vec<_> = ps.iter().map(|p| (p.name.as_str(), p.cluster.as_str())).collect();
    assert_eq!(names, [("entra", "jwks_entra"), ("local", "jwks_local"), ("okta", "jwks_okta")]);
    let okta = &ps[2];
    assert_eq!((okta.jwks_cache_ms, okta.clock_skew_s), (300_000, 30));
    assert_eq!((okta.jwks.tls, okta.jwks.host.as_str(), okta.jwks.port), (true, "dev-123456.okta.com", 443));
    assert_eq!(okta.audiences, ["api://switchyard"]);
    let local = &ps[1];
    assert_eq!((local.jwks_cache_ms, local.clock_skew_s), (300_000, 60), "Envoy's skew, a 5-minute cache");
    assert_eq!((local.jwks.tls, local.jwks.port, local.jwks.is_ip()), (false, 18080, true));
    // The URL goes to Envoy as written, query included.
    assert_eq!(ps[0].jwks_uri, "https://login.microsoftonline.com/tid/discovery/v2.0/keys?appid=abc");
    assert_eq!(jwt::parse(None, &mut Vec::new()).unwrap(), vec![]);
    for (skew, s) in [(json!("0s"), 0), (json!(0), 0), (json!("2m"), 120), (json!(45), 45)] {
        let mut sec = providers_section();
        sec["okta"]["clock_skew"] = skew.clone();
        let ps = jwt::parse(Some(&sec), &mut Vec::new()).unwrap_or_else(|e| panic!("{skew}: {e}"));
        assert_eq!(ps[2].clock_skew_s, s, "{skew}");
    }
}

#[test]
fn bad_sections_are_refused_naming_the_field() {
    let set = |field: &str, v: Option<Value>| {
        let mut file = base();
        let mut sec = providers_section();
        match v {
            Some(v) => sec["okta"][field] = v,
            None => {
                sec["okta"].as_object_mut().unwrap().remove(field);
            }
        }
        file["jwt_providers"] = sec;
        file
    };
    let whole = |sec: Value| {
        let mut file = base();
        file["jwt_providers"] = sec;
        file
    };
    let table: Vec<(&str, Value, &str, &str)> = vec![
        ("not an object", whole(json!(["okta"])), "jwt_providers", "must be an object"),
        ("bad name", whole(json!({"ok ta": {}})), "jwt_providers.ok ta", "letters, digits"),
        ("provider not an object", whole(json!({"okta": "x"})), "jwt_providers.okta", "must be an object"),
        ("unknown field", set("issuers", Some(json!("x"))), "jwt_providers.okta.issuers", "expected one of: issuer"),
        ("issuer missing", set("issuer", None), "jwt_providers.okta.issuer", "is required"),
        ("issuer empty", set("issuer", Some(json!(""))), "jwt_providers.okta.issuer", "not empty"),
        ("issuer padded", set("issuer", Some(json!(" https://x "))), "jwt_providers.okta.issuer", "padded"),
        ("issuer not a string", set("issuer", Some(json!(1))), "jwt_providers.okta.issuer", "must be a string"),
        ("audiences missing", set("audiences", None), "jwt_providers.okta.audiences", "is required"),
        ("audiences a string", set("audiences", Some(json!("api"))), "jwt_providers.okta.audiences", "list of strings"),
        ("audiences empty", set("audiences", Some(json!([]))), "jwt_providers.okta.audiences", "non-empty list"),
        ("audience a number", set("audiences", Some(json!(["a", 5]))), "jwt_providers.okta.audiences[1]", "string"),
        ("audience twice", set("audiences", Some(json!(["a", "a"]))), "jwt_providers.okta.audiences[1]", "twice"),
        ("jwks missing", set("jwks", None), "jwt_providers.okta.jwks", "is required"),
        ("jwks no scheme", set("jwks", Some(json!("okta.com/keys"))), "jwt_providers.okta.jwks", "http://"),
        ("jwks no host", set("jwks", Some(json!("https:///keys"))), "jwt_providers.okta.jwks", "host"),
        ("jwks bad port", set("jwks", Some(json!("http://h:0/k"))), "jwt_providers.okta.jwks", "port"),
        ("jwks fragment", set("jwks", Some(json!("https://h/k?a#b"))), "jwt_providers.okta.jwks", "fragment"),
        ("jwks a number", set("jwks", Some(json!(5))), "jwt_providers.okta.jwks", "URL string"),
        ("cache a word", set("jwks_cache", Some(json!("often"))), "jwt_providers.okta.jwks_cache", "duration"),
        ("cache too short", set("jwks_cache", Some(json!("500ms"))), "jwt_providers.okta.jwks_cache", "at least 1s"),
        ("cache too long", set("jwks_cache", Some(json!("25h"))), "jwt_providers.okta.jwks_cache", "duration"),
        ("skew fraction", set("clock_skew", Some(json!("1.5s"))), "jwt_providers.okta.clock_skew", "whole seconds"),
        ("skew too long", set("clock_skew", Some(json!("11m"))), "jwt_providers.okta.clock_skew", "600s"),
        ("skew negative", set("clock_skew", Some(json!(-1))), "jwt_providers.okta.clock_skew", "whole seconds"),
        (
            "cluster taken by a service",
            {
                let mut f = set("clock_skew", None);
                f["services"] = json!({"jwks_okta": {"url": "http://127.0.0.1:1"}});
                f
            },
            "jwt_providers.okta.jwks",
            "already services.jwks_okta's",
        ),
        // The file has providers, its `identity.accept` does not list jwt (here: no identity at all).
        ("providers without jwt accepted", set("clock_skew", None), "jwt_providers", "identity.accept"),
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
    // An empty section is no provider.
    assert!(parse(&whole(json!({}))).is_ok_and(|g| g.jwt_providers.is_empty()));
    // The top level's unknown-field message names the section.
    let mut f = base();
    f["jwt_provider"] = json!({});
    let e = parse(&f).unwrap_err();
    assert!(e.field == "jwt_provider" && e.reason.contains("jwt_providers"), "{e}");
}

#[test]
fn identity_accept_and_providers_must_agree() {
    let ps = providers();
    let root = |accept: Value| object(json!({"identity": {"accept": accept}}));
    assert!(jwt::check_accept(&root(json!(["jwt"])), &ps).is_ok());
    assert!(jwt::check_accept(&root(json!(["keys", "jwt"])), &ps).is_ok());
    assert!(jwt::check_accept(&root(json!(["keys"])), &[]).is_ok());
    assert!(jwt::check_accept(&object(json!({})), &[]).is_ok(), "no identity: keys only, no providers");
    let e = jwt::check_accept(&root(json!(["keys", "jwt"])), &[]).unwrap_err();
    assert_eq!(e.field, "identity.accept");
    assert!(e.reason.contains("jwt_providers"), "{e}");
    for accept in [json!(["keys"]), json!("jwt"), json!(null)] {
        let e = jwt::check_accept(&root(accept.clone()), &ps).unwrap_err();
        assert_eq!(e.field, "jwt_providers", "{accept}");
        assert!(e.reason.contains("identity.accept to list \"jwt\""), "{e}");
    }
    assert_eq!(jwt::check_accept(&object(json!({})), &ps).unwrap_err().field, "jwt_providers");
}

/// The list under `key` of a map, or nothing.
fn items<'a>(y: &'a Y, key: &str) -> &'a [Y] {
    match y.get(key) {
        Some(Y::List(v)) => v,
        Some(Y::Flow(b)) => match b.as_ref() {
            Y::List(v) => v,
            _ => &[],
        },
        _ => &[],
    }
}

fn str_at<'a>(y: &'a Y, key: &str) -> &'a str {
    match y.get(key) {
        Some(Y::Str(v)) => v,
        _ => "",
    }
}

#[test]
fn render_puts_jwt_authn_before_the_route_role_and_a_cluster_per_key_set() {
    let g = gateway();
    let doc = envoy::render(&g);
    let sr = doc.get("static_resources").unwrap();
    let listener = &items(sr, "listeners")[0];
    let chain = &items(listener, "filter_chains")[0];
    let hcm = items(chain, "filters")[0].get("typed_config").unwrap();
    let filters = items(hcm, "http_filters");
    let names: Vec<_> = filters.iter().map(|f| str_at(f, "name")).collect();
    assert_eq!(names, ["envoy.filters.http.jwt_authn", "switchyard", "envoy.filters.http.router"]);
    let authn = filters[0].get("typed_config").unwrap();
    let okta = authn.get("providers").and_then(|p| p.get("okta")).unwrap();
    assert_eq!(str_at(okta, "issuer"), "https://dev-123456.okta.com/oauth2/default");
    assert_eq!(str_at(okta, "payload_in_metadata"), "payload");
    assert_eq!(str_at(okta, "failed_status_in_metadata"), "failure");
    assert_eq!(okta.get("forward"), Some(&Y::Bool(false)));
    assert_eq!(okta.get("require_expiration"), Some(&Y::Bool(true)));
    assert_eq!(okta.get("clock_skew_seconds"), Some(&Y::Int(30)));
    let jwks = okta.get("remote_jwks").unwrap();
    let uri = jwks.get("http_uri").unwrap();
    assert_eq!(str_at(uri, "uri"), "https://dev-123456.okta.com/oauth2/default/v1/keys");
    assert_eq!(str_at(uri, "cluster"), "jwks_okta");
    assert_eq!(str_at(jwks, "cache_duration"), "300s");
    assert!(jwks.get("async_fetch").is_some() && jwks.get("retry_policy").is_some());

    let text = to_string(&doc);
    assert!(text.contains("from_headers:\n"), "{text}");
    assert!(text.contains("- { name: authorization, value_prefix: \"Bearer \" }\n"), "{text}");
    assert!(text.contains("- { name: x-api-key }\n"), "{text}");
    // Every provider may verify; none or a failure goes on to the filter.
    assert!(text.contains("requirements:\n") && text.contains("- { provider_name: entra }\n"), "{text}");
    let rule = &items(authn, "rules")[0];
    let reqs = rule.get("requires").and_then(|r| r.get("requires_any")).unwrap();
    assert_eq!(items(reqs, "requirements").len(), 4, "three providers and allow_missing_or_failed");
    assert!(text.contains("- { allow_missing_or_failed: {} }\n"), "{text}");

    let clusters = items(sr, "clusters");
    let find = |n: &str| clusters.iter().find(|c| str_at(c, "name") == n).unwrap_or_else(|| panic!("no {n}"));
    let okta_c = find("jwks_okta");
    assert_eq!(str_at(okta_c, "type"), "STRICT_DNS");
    let tls = okta_c.get("transport_socket").and_then(|t| t.get("typed_config")).unwrap();
    assert_eq!(str_at(tls, "sni"), "dev-123456.okta.com");
    let okta_text = to_string(okta_c);
    assert!(okta_text.contains("san_type: DNS, matcher: { exact: dev-123456.okta.com }"), "{okta_text}");
    assert!(okta_text.contains("port_value: 443"), "{okta_text}");
    let local_c = find("jwks_local");
    assert_eq!(str_at(local_c, "type"), "STATIC");
    assert!(local_c.get("transport_socket").is_none(), "http:// is plain");
    assert!(to_string(local_c).contains("port_value: 18080"));
    // The plugin configuration knows nothing of the providers.
    assert!(!g.plugin_json().contains("jwt_providers"));
}

#[test]
fn without_providers_nothing_changes() {
    let g = parse(&base()).unwrap();
    assert!(g.jwt_providers.is_empty());
    let text = to_string(&envoy::render(&g));
    assert!(!text.contains("jwt_authn") && !text.contains("jwks_"));
    assert!(!istio::render(&g, &base()).unwrap().contains("jwt"));
}

#[test]
fn istio_gets_jwt_authn_first_and_the_key_set_hosts() {
    let g = gateway();
    let mut file = base();
    file["jwt_providers"] = providers_section();
    let text = istio::render(&g, &file).unwrap_or_else(|e| panic!("{e}"));
    // login.microsoftonline.com and dev-123456.okta.com: an entry and TLS each; 127.0.0.1 plain, static.
    assert_eq!(text.matches("name: jwks-").count(), 5, "{text}");
    for host in ["login.microsoftonline.com", "dev-123456.okta.com"] {
        assert!(text.contains(&format!("mode: SIMPLE\n        sni: {host}\n")), "{host}: {text}");
        assert!(text.contains(&format!("cluster: \"outbound|80||{host}\"")), "{host}: {text}");
    }
    assert!(text.contains("cluster: \"outbound|18080||127.0.0.1\""), "{text}");
    assert!(text.contains("operation: INSERT_FIRST"), "{text}");
    assert!(text.contains("name: switchyard.jwt_authn"), "{text}");
    assert!(text.contains("payload_in_metadata: payload") && text.contains("failed_status_in_metadata: failure"));
    // An in-cluster key set is reached through the Service (no entry), over http only.
    let mut g = gateway();
    g.jwt_providers.truncate(1);
    g.jwt_providers[0].jwks = parse::parse_url("http://keycloak.auth.svc.cluster.local:8080", "f").unwrap();
    let text = istio::render(&g, &file).unwrap();
    assert!(!text.contains("name: jwks-"), "{text}");
    assert!(text.contains("outbound|8080||keycloak.auth.svc.cluster.local"), "{text}");
    g.jwt_providers[0].jwks = parse::parse_url("https://keycloak.auth.svc.cluster.local", "f").unwrap();
    let e = istio::render(&g, &file).unwrap_err();
    assert_eq!(e.field, "jwt_providers.entra.jwks");
}
