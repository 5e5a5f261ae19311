use super::*;
use crate::codec::sha256;
use crate::limits::{Period, Rate};
use serde_json::Value;

pub struct MapEnv(pub Vec<(&'static str, &'static str)>);
impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }
}

pub fn demo_key_hash(key: &str) -> String {
    sha256::to_hex(&sha256::digest(key.as_bytes()))
}

pub fn sample() -> String {
    serde_json::json!({
        "providers": {
            "local": {"kind": "mock"},
            "openai": {"kind": "openai", "api_key": {"env": "OPENAI_API_KEY"}},
            "azure": {"kind": "azure_openai", "cluster": "azure_cluster", "api_version": "2024-10-21", "api_key": "az-inline"},
            "groq": {"kind": "openai_compatible", "base_path": "/openai/v1/", "api_key": {"env": "GROQ_API_KEY", "optional": true}},
            "ollama": {"kind": "openai_compatible"}
        },
        "models": {
            "demo": {"provider": "local"},
            "gpt-4o-mini": {"provider": "openai"},
            "gpt-prod": {"provider": "azure", "model": "prod-deployment"},
            "llama": {"provider": "groq", "model": "llama-3.3-70b"},
            "qwen": {"provider": "ollama", "model": "qwen2.5"}
        },
        "keys": [
            {"id": "all", "sha256": demo_key_hash("sk-all"), "models": ["*"]},
            {"id": "mini-only", "sha256": demo_key_hash("sk-mini"), "models": ["gpt-4o-mini", "llama"]}
        ]
    })
    .to_string()
}

fn env() -> MapEnv {
    MapEnv(vec![("OPENAI_API_KEY", "sk-openai-secret")])
}

fn parse_err(v: serde_json::Value) -> ConfigError {
    Config::parse(v.to_string().as_bytes(), &env()).unwrap_err()
}

#[test]
fn parses_sample() {
    let c = Config::parse(sample().as_bytes(), &env()).unwrap();
    assert_eq!(c.providers.len(), 4, "groq is disabled without GROQ_API_KEY");
    assert_eq!(c.disabled, vec!["groq".to_string()]);
    assert!(!c.models.contains_key("llama"));
    assert_eq!(c.unavailable.get("llama").map(String::as_str), Some("groq"));
    let m = &c.models["gpt-prod"];
    assert_eq!(m.cluster, "azure_cluster");
    assert_eq!(m.targets[0].model, "prod-deployment");
    assert_eq!(c.models["gpt-4o-mini"].targets[0].model, "gpt-4o-mini");
    let (_, ollama) = c.provider_by_name("ollama").unwrap();
    assert_eq!(ollama.kind, ProviderKind::OpenAiCompatible { base_path: "/v1".into(), native_responses: false });
    let (_, openai) = c.provider_by_name("openai").unwrap();
    assert_eq!(openai.credential.as_ref().unwrap().expose(), "sk-openai-secret");
    assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
}

#[test]
fn keys_and_model_lists() {
    let c = Config::parse(sample().as_bytes(), &env()).unwrap();
    assert!(c.key_by_secret("sk-nope").is_none());
    let k = c.key_by_secret("sk-mini").unwrap();
    assert_eq!(k.id, "mini-only");
    assert!(k.may_use("gpt-4o-mini") && !k.may_use("demo"));
    let v: Value = serde_json::from_str(&k.models_json).unwrap();
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["gpt-4o-mini"], "disabled llama is not listed");
    let all = c.key_by_secret("sk-all").unwrap();
    let v: Value = serde_json::from_str(&all.models_json).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 4);
    assert_eq!(v["object"], "list");
}

#[test]
fn limits_and_prices() {
    let mut v: Value = serde_json::from_str(&sample()).unwrap();
    v["models"]["demo"]["price"] = serde_json::json!({"input": 2.5, "output": 10});
    v["keys"][0]["limits"] = serde_json::json!({
        "requests": {"limit": 10}, "tokens": {"limit": 1000, "window_secs": 3600}, "concurrent": 2,
        "budget": {"usd": 1.5, "period": "month"}, "models": {"demo": {"requests": {"limit": 1, "window_secs": 1}}}
    });
    let c = Config::parse(v.to_string().as_bytes(), &env()).unwrap();
    let p = c.models["demo"].max_price().unwrap();
    assert_eq!(p.cached_input, 2.5);
    assert_eq!(p.cost_micros(1000, 200, 100), 2000 + 500 + 1000);
    let l = &c.keys[0].limits;
    assert_eq!(l.requests, Some(Rate { max: 10, window_secs: 60 }));
    assert_eq!(l.tokens, Some(Rate { max: 1000, window_secs: 3600 }));
    assert_eq!(l.concurrent, Some(2));
    assert_eq!(l.budget, Some(Budget { micros: 1_500_000, period: Period::Month }));
    assert_eq!(l.per_model["demo"].requests, Some(Rate { max: 1, window_secs: 1 }));
    assert!(c.keys[1].limits.is_empty());
    assert_eq!(c.default_max_output_tokens, 4096);
}

#[test]
fn fallback_targets() {
    let mut v: Value = serde_json::from_str(&sample()).unwrap();
    v["models"]["ha"] = serde_json::json!({"cluster": "ha", "targets": [
        {"provider": "openai", "model": "gpt-4o", "price": {"input": 2.5, "output": 10}},
        {"provider": "azure", "model": "dep", "price": {"input": 3, "output": 8}},
        {"provider": "groq", "model": "llama"}
    ]});
    let c = Config::parse(v.to_string().as_bytes(), &env()).unwrap();
    let m = &c.models["ha"];
    assert_eq!(m.cluster, "ha");
    assert_eq!(m.targets.len(), 2, "the target on the disabled provider is left out");
    assert_eq!(m.max_price().unwrap(), Price { input: 3.0, output: 10.0, cached_input: 3.0 });
    let (azure, _) = c.provider_by_name("azure").unwrap();
    assert_eq!(m.target(azure, None).unwrap().model, "dep");
    assert!(m.target(azure, Some("other")).is_none());
    let bad = [
        (serde_json::json!({"targets": [{"provider": "openai"}]}), "models.x.cluster"),
        (serde_json::json!({"cluster": "c", "targets": []}), "models.x.targets"),
        (
            serde_json::json!({"cluster": "c", "provider": "openai", "targets": [{"provider": "openai"}]}),
            "models.x.provider",
        ),
        (
            serde_json::json!({"cluster": "c", "targets": [{"provider": "openai"}, {"provider": "local"}]}),
            "models.x.targets[1].provider",
        ),
        (
            serde_json::json!({"cluster": "c", "targets": [{"provider": "openai"}, {"provider": "openai"}]}),
            "models.x.targets[1]",
        ),
        (serde_json::json!({"cluster": "c", "targets": [{"provider": "nobody"}]}), "models.x.targets[0].provider"),
    ];
    for (model, field) in bad {
        let mut v: Value = serde_json::from_str(&sample()).unwrap();
        v["models"]["x"] = model;
        assert_eq!(parse_err(v).field, field);
    }
}

#[test]
fn secrets_do_not_debug_print() {
    let c = Config::parse(sample().as_bytes(), &env()).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("sk-openai-secret") && !dbg.contains("az-inline"));
}

#[test]
#[allow(clippy::type_complexity)]
fn rejections_name_the_field() {
    let base: Value = serde_json::from_str(&sample()).unwrap();
    let cases: Vec<(Box<dyn Fn(&mut Value)>, &str, &str)> = vec![
        (
            Box::new(|v| v["providers"]["openai"]["kind"] = "opneai".into()),
            "providers.openai.kind",
            "unknown provider kind",
        ),
        (
            Box::new(|v| v["providers"]["openai"]["api_key"] = serde_json::json!({"env": "NOPE"})),
            "providers.openai.api_key.env",
            "NOPE is not set",
        ),
        (
            Box::new(|v| {
                v["providers"]["openai"].as_object_mut().unwrap().remove("api_key");
            }),
            "providers.openai.api_key",
            "required",
        ),
        (
            Box::new(|v| v["providers"]["azure"].as_object_mut().unwrap().remove("api_version").map(|_| ()).unwrap()),
            "providers.azure.api_version",
            "required",
        ),
        (
            Box::new(|v| v["providers"]["ollama"]["base_path"] = "v1".into()),
            "providers.ollama.base_path",
            "starting with '/'",
        ),
        (Box::new(|v| v["providers"]["local"]["colour"] = "red".into()), "providers.local.colour", "unknown field"),
        (
            Box::new(|v| v["models"]["demo"]["provider"] = "nobody".into()),
            "models.demo.provider",
            "no provider 'nobody'",
        ),
        (Box::new(|v| v["models"]["demo"]["provider"] = 5.into()), "models.demo.provider", "must be a string"),
        (Box::new(|v| v["keys"][0]["sha256"] = "abc".into()), "keys[0].sha256", "64 hex digits"),
        (Box::new(|v| v["keys"][1]["id"] = "all".into()), "keys[1].id", "duplicate key id"),
        (Box::new(|v| v["keys"][1]["models"][0] = "gpt-5".into()), "keys[1].models[0]", "no model 'gpt-5'"),
        (
            Box::new(|v| {
                v["keys"][1].as_object_mut().unwrap().remove("models");
            }),
            "keys[1].models",
            "required",
        ),
        (Box::new(|v| v["max_body_bytes"] = (-1).into()), "max_body_bytes", "integer"),
        (Box::new(|v| v["log_bodies"] = serde_json::json!({"max_bytes": 0})), "log_bodies.max_bytes", "integer"),
        (
            Box::new(|v| v["models"]["demo"]["price"] = serde_json::json!({"input": 1})),
            "models.demo.price.output",
            "required",
        ),
        (
            Box::new(|v| v["models"]["demo"]["price"] = serde_json::json!({"input": -1, "output": 1})),
            "models.demo.price.input",
            "number",
        ),
        (
            Box::new(|v| v["keys"][0]["limits"] = serde_json::json!({"requests": {"limit": 0}})),
            "keys[0].limits.requests.limit",
            "positive",
        ),
        (
            Box::new(|v| v["keys"][0]["limits"] = serde_json::json!({"tokens": {"limit": 5, "window_secs": 0}})),
            "keys[0].limits.tokens.window_secs",
            "integer",
        ),
        (
            Box::new(|v| v["keys"][0]["limits"] = serde_json::json!({"budget": {"usd": 5, "period": "week"}})),
            "keys[0].limits.budget.period",
            "day",
        ),
        (
            Box::new(|v| v["keys"][0]["limits"] = serde_json::json!({"models": {"nope": {}}})),
            "keys[0].limits.models.nope",
            "no model",
        ),
        (
            Box::new(|v| v["keys"][0]["limits"] = serde_json::json!({"concurrent": "4"})),
            "keys[0].limits.concurrent",
            "positive",
        ),
        (Box::new(|v| v["extra"] = 1.into()), "extra", "unknown field"),
        (
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("keys");
            }),
            "keys",
            "required",
        ),
        (Box::new(|v| v["keys"] = serde_json::json!({})), "keys", "must be an array"),
        (
            Box::new(|v| v["keys"][0]["limits"] = serde_json::json!({"fleet": {"requests": {"limit": 5}}})),
            "keys[0].limits.fleet",
            "fleet_limits",
        ),
        (
            Box::new(|v| {
                v["fleet_limits"] = serde_json::json!({"cluster": "rls"});
                v["keys"][0]["limits"] = serde_json::json!({"fleet": {"concurrent": 2}});
            }),
            "keys[0].limits.fleet.concurrent",
            "local only",
        ),
        (
            Box::new(|v| {
                v["fleet_limits"] = serde_json::json!({"cluster": "rls", "protocol": "standard"});
                v["keys"][0]["limits"] = serde_json::json!({"fleet": {"budget": {"usd": 5, "period": "day"}}});
            }),
            "keys[0].limits.fleet.budget",
            "keeps no money",
        ),
        (
            Box::new(|v| {
                v["fleet_limits"] = serde_json::json!({"cluster": "rls", "protocol": "standard"});
                v["keys"][0]["limits"] =
                    serde_json::json!({"fleet": {"models": {"demo": {"tokens": {"limit": 5, "window_secs": 90}}}}});
            }),
            "keys[0].limits.fleet.models.demo.tokens.window_secs",
            "1, 60, 3600 or 86400",
        ),
        (
            Box::new(|v| v["fleet_limits"] = serde_json::json!({"cluster": "rls", "failure_mode": "maybe"})),
            "fleet_limits.failure_mode",
            "open",
        ),
        (
            Box::new(|v| v["fleet_limits"] = serde_json::json!({"cluster": "rls", "timeout_ms": 0})),
            "fleet_limits.timeout_ms",
            "1 to 10000",
        ),
        (Box::new(|v| v["fleet_limits"] = serde_json::json!({"domain": "x"})), "fleet_limits.cluster", "required"),
    ];
    for (mutate, field, reason) in cases {
        let mut v = base.clone();
        mutate(&mut v);
        let e = parse_err(v);
        assert_eq!(e.field, field, "{e}");
        assert!(e.reason.contains(reason), "{field}: {e}");
    }
}

#[test]
fn rejects_non_json_and_non_object() {
    let e = Config::parse(b"{", &env()).unwrap_err();
    assert!(e.reason.contains("not valid JSON"));
    let e = Config::parse(b"[]", &env()).unwrap_err();
    assert_eq!(e.field, "(root)");
}

#[test]
fn env_secret_value_never_in_error() {
    let env = MapEnv(vec![("OPENAI_API_KEY", "sk-bad\nvalue")]);
    let e = Config::parse(sample().as_bytes(), &env).unwrap_err();
    assert!(!e.to_string().contains("sk-bad"), "{e}");
}

#[test]
fn parse_raw_keeps_what_the_file_says() {
    let mut v: Value = serde_json::from_str(&sample()).unwrap();
    v["keys"][1]["limits"] = serde_json::json!({"concurrent": 3, "models": {"llama": {"requests": {"limit": 2}}}});
    let raw = parse_raw(v.to_string().as_bytes(), &env()).unwrap();
    assert_eq!(raw.max_body_bytes, None, "defaults are compile's");
    assert_eq!(raw.default_max_output_tokens, None);
    assert_eq!(raw.log_bodies, None);
    let names: Vec<&str> = raw.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["azure", "groq", "local", "ollama", "openai"], "every provider, in the file's order");
    let groq = raw.providers.iter().find(|p| p.name == "groq").unwrap();
    assert!(groq.settings.is_none(), "its optional credential is not set");
    let ollama = raw.providers.iter().find(|p| p.name == "ollama").unwrap().settings.as_ref().unwrap();
    assert_eq!(ollama.cluster, None, "the cluster default is compile's");
    assert_eq!(ollama.kind, ProviderKind::OpenAiCompatible { base_path: "/v1".into(), native_responses: false });
    let llama = raw.models.iter().find(|m| m.name == "llama").unwrap();
    assert_eq!(llama.path, "models.llama");
    assert_eq!(
        llama.targets,
        vec![RawTarget {
            path: "models.llama".into(),
            provider: "groq".into(),
            model: Some("llama-3.3-70b".into()),
            price: None
        }],
        "a model on a left-out provider is still in the raw file"
    );
    let demo = raw.models.iter().find(|m| m.name == "demo").unwrap();
    assert_eq!((demo.cluster.as_deref(), demo.targets[0].model.as_deref()), (None, None));
    let k = &raw.keys[1];
    assert_eq!((k.path.as_str(), k.id.as_str()), ("keys[1]", "mini-only"));
    assert_eq!(k.models, ["gpt-4o-mini", "llama"]);
    assert_eq!(Some(k.sha256), sha256::parse_hex(&demo_key_hash("sk-mini")));
    let l = k.limits.as_ref().unwrap();
    assert_eq!(l.concurrent, Some(3));
    assert_eq!(l.models[0].path, "keys[1].limits.models.llama");
    assert_eq!(l.models[0].requests, Some(Rate { max: 2, window_secs: 60 }));
    assert_eq!(raw.keys[0].models, ["*"]);
    assert!(raw.keys[0].limits.is_none());
}

#[test]
fn compile_is_parse_raw_then_cross_checks() {
    let raw = parse_raw(sample().as_bytes(), &env()).unwrap();
    let c = compile(raw).unwrap();
    assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(c.default_max_output_tokens, DEFAULT_MAX_OUTPUT_TOKENS);
    assert_eq!(c.models["demo"].cluster, "local", "the provider's cluster, which defaults to its name");
    assert_eq!(c.disabled, ["groq"]);
    assert!(c.key_by_secret("sk-mini").is_some());
}

#[test]
#[allow(clippy::type_complexity)]
fn cross_references_are_compile_errors() {
    // Each file is well-formed field by field, so stage 1 accepts it; stage 2 rejects the reference.
    let cases: Vec<(Box<dyn Fn(&mut Value)>, &str, &str)> = vec![
        (
            Box::new(|v| v["models"]["demo"]["provider"] = "nobody".into()),
            "models.demo.provider",
            "names no provider 'nobody' in providers",
        ),
        (
            Box::new(|v| {
                v["models"]["x"] =
                    serde_json::json!({"cluster": "c", "targets": [{"provider": "openai"}, {"provider": "local"}]})
            }),
            "models.x.targets[1].provider",
            "a mock provider answers locally and cannot be one of several targets",
        ),
        (Box::new(|v| v["keys"][1]["id"] = "all".into()), "keys[1].id", "duplicate key id 'all'"),
        (
            Box::new(|v| v["keys"][1]["sha256"] = demo_key_hash("sk-all").into()),
            "keys[1].sha256",
            "the same key digest appears twice",
        ),
        (
            Box::new(|v| v["keys"][1]["models"][0] = "gpt-5".into()),
            "keys[1].models[0]",
            "names no model 'gpt-5' in models",
        ),
        (
            Box::new(|v| v["keys"][0]["limits"] = serde_json::json!({"models": {"nope": {}}})),
            "keys[0].limits.models.nope",
            "names no model 'nope' in models",
        ),
    ];
    for (mutate, field, reason) in cases {
        let mut v: Value = serde_json::from_str(&sample()).unwrap();
        mutate(&mut v);
        let raw = parse_raw(v.to_string().as_bytes(), &env()).unwrap();
        let e = compile(raw).unwrap_err();
        assert_eq!((e.field.as_str(), e.reason.as_str()), (field, reason));
        assert_eq!(parse_err(v), e, "Config::parse gives the same error");
    }
}

#[test]
fn field_errors_are_parse_raw_errors() {
    let mut v: Value = serde_json::from_str(&sample()).unwrap();
    v["models"]["demo"]["colour"] = "red".into();
    let e = parse_raw(v.to_string().as_bytes(), &env()).unwrap_err();
    assert_eq!(e.field, "models.demo.colour");
    assert!(e.reason.starts_with("unknown field (expected one of: provider, model, price, cluster, targets, cache)"));
}

#[test]
fn forward_headers_per_provider() {
    let mut v: Value = serde_json::from_str(&sample()).unwrap();
    v["providers"]["openai"]["forward_headers"] = serde_json::json!(["openai-organization", "openai-project"]);
    v["providers"]["azure"]["forward_headers"] = serde_json::json!(["openai-project"]);
    let cfg = Config::parse(v.to_string().as_bytes(), &env()).unwrap();
    let (openai, _) = cfg.provider_by_name("openai").unwrap();
    let (azure, _) = cfg.provider_by_name("azure").unwrap();
    let (ollama, _) = cfg.provider_by_name("ollama").unwrap();
    let f = &cfg.forwarding;
    assert!(f.forwards(openai, "openai-organization") && f.forwards(openai, "openai-project"));
    assert!(!f.forwards(azure, "openai-organization") && f.forwards(azure, "openai-project"));
    assert!(!f.forwards(ollama, "openai-organization") && !f.forwards(ollama, "openai-project"));
    assert!(Config::parse(sample().as_bytes(), &env()).unwrap().forwarding.is_empty());

    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("openai", serde_json::json!("openai-organization"), "providers.openai.forward_headers", "must be an array"),
        ("openai", serde_json::json!([1]), "providers.openai.forward_headers[0]", "must be a header name"),
        ("openai", serde_json::json!(["a", "a"]), "providers.openai.forward_headers[1]", "listed twice"),
        ("openai", serde_json::json!(["x-api-key"]), "providers.openai.forward_headers[0]", "credential"),
        ("openai", serde_json::json!(["Openai-Project"]), "providers.openai.forward_headers[0]", "lower-case"),
        ("local", serde_json::json!(["openai-project"]), "providers.local.forward_headers", "unknown field"),
    ];
    for (provider, value, field, reason) in cases {
        let mut v: Value = serde_json::from_str(&sample()).unwrap();
        v["providers"][provider]["forward_headers"] = value;
        let e = parse_err(v);
        assert_eq!(e.field, field);
        assert!(e.reason.contains(reason), "{}", e.reason);
    }
    let mut v: Value = serde_json::from_str(&sample()).unwrap();
    // Providers are read in name order: azure's 40 names, then openai's 20 old and 24 new ones.
    let many: Vec<String> = (0..40).map(|i| format!("x-h{i}")).collect();
    v["providers"]["azure"]["forward_headers"] = serde_json::json!(many);
    let more: Vec<String> = (20..70).map(|i| format!("x-h{i}")).collect();
    v["providers"]["openai"]["forward_headers"] = serde_json::json!(more);
    let e = parse_err(v);
    assert_eq!(e.field, "providers.openai.forward_headers[44]");
    assert!(e.reason.contains("more than 64 distinct names"));
}
