use super::tests::{sample, MapEnv};
use super::*;
use serde_json::{json, Value};

const S: u64 = 1_000_000_000;

fn parse(v: &Value) -> Result<Config, ConfigError> {
    Config::parse(v.to_string().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "sk-x")]))
}

/// The sample with `f` applied.
fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut v: Value = serde_json::from_str(&sample()).unwrap();
    f(&mut v);
    v
}

#[test]
fn model_cache_settings_and_defaults() {
    let v = with(|v| {
        v["models"]["demo"]["cache"] = json!({"ttl": "5m", "scope": "team", "charge": true, "max_entry_bytes": 4096});
        v["models"]["gpt-4o-mini"]["cache"] = json!({"ttl": 30});
        v["keys"][0]["team"] = "research".into();
    });
    let c = parse(&v).unwrap();
    let demo = c.models["demo"].cache.unwrap();
    assert_eq!(demo, ModelCache { ttl_ns: 300 * S, max_entry_bytes: 4096, scope: CacheScope::Team, charge: true });
    let mini = c.models["gpt-4o-mini"].cache.unwrap();
    // Default bounds: 10,000 entries in 1250 sets of 8, 64 MiB / 1250 per set: below 1 MiB.
    let budget = (64u64 << 20) / 1250;
    assert_eq!(mini, ModelCache { ttl_ns: 30 * S, max_entry_bytes: budget, scope: CacheScope::Key, charge: false });
    assert_eq!(c.models["gpt-prod"].cache, None);
    assert_eq!(c.cache, CacheBounds { max_bytes: 64 << 20, max_entries: 10_000, fleet: false });
    assert_eq!(c.cache.layout().set_budget(), budget);
    assert_eq!(c.keys[0].team.as_deref(), Some("research"));
    assert_eq!(c.keys[1].team, None);

    // With room per set, the default is 1 MiB.
    let v = with(|v| {
        v["cache"] = json!({"max_bytes": 1 << 30, "max_entries": 1000});
        v["models"]["demo"]["cache"] = json!({"ttl": "1h", "scope": "shared"});
    });
    let c = parse(&v).unwrap();
    assert_eq!(c.cache, CacheBounds { max_bytes: 1 << 30, max_entries: 1000, fleet: false });
    let demo = c.models["demo"].cache.unwrap();
    assert_eq!((demo.max_entry_bytes, demo.scope, demo.ttl_ns), (1 << 20, CacheScope::Shared, 3600 * S));
}

#[test]
fn ttl_forms() {
    let ok = [
        (json!(1), S),
        (json!(2_592_000), 30 * 86_400 * S),
        (json!("30s"), 30 * S),
        (json!("5m"), 300 * S),
        (json!("1h"), 3600 * S),
        (json!("7d"), 7 * 86_400 * S),
        (json!("30d"), 30 * 86_400 * S),
        (json!("250ms"), S / 4),
    ];
    for (v, ns) in ok {
        assert_eq!(cache::ttl(&v, "t"), Ok(ns), "{v}");
    }
    let bad = [
        json!(0),
        json!(-1),
        json!(1.5),
        json!(2_592_001),
        json!("0s"),
        json!("31d"),
        json!("5"),
        json!("5 m"),
        json!("-1s"),
        json!("s"),
        json!("1.5h"),
        json!("1w"),
        json!("99999999999999999999s"),
        json!(""),
        json!(true),
        json!(null),
        json!({"secs": 5}),
    ];
    for v in bad {
        let e = cache::ttl(&v, "t").unwrap_err();
        assert!(e.reason.contains("at most 30 days"), "{v}: {e}");
    }
}

#[test]
fn cache_settings_are_refused_naming_the_field() {
    let m = |c: Value| move |v: &mut Value| v["models"]["demo"]["cache"] = c;
    let top = |c: Value| move |v: &mut Value| v["cache"] = c;
    let team = |t: Value| move |v: &mut Value| v["keys"][1]["team"] = t;
    let cases: Vec<(Value, &str, &str)> = vec![
        (with(m(json!({}))), "models.demo.cache.ttl", "is required"),
        (with(m(json!({"ttl": "0s"}))), "models.demo.cache.ttl", "above zero"),
        (with(m(json!({"ttl": "31d"}))), "models.demo.cache.ttl", "at most 30 days"),
        (with(m(json!(true))), "models.demo.cache", "must be an object"),
        (with(m(json!({"ttl": 5, "scope": "all"}))), "models.demo.cache.scope", "\"team\""),
        (with(m(json!({"ttl": 5, "charge": "yes"}))), "models.demo.cache.charge", "true or false"),
        (with(m(json!({"ttl": 5, "max_entry_bytes": 0}))), "models.demo.cache.max_entry_bytes", "1 to 16777216"),
        (with(m(json!({"ttl": 5, "max_entry_bytes": (16 << 20) + 1}))), "models.demo.cache.max_entry_bytes", "1 to"),
        (with(m(json!({"ttl": 5, "keyed_by": "user"}))), "models.demo.cache.keyed_by", "unknown field"),
        (with(top(json!({"max_bytes": 100}))), "cache.max_bytes", "1024 to 1073741824"),
        (with(top(json!({"max_bytes": (1u64 << 30) + 1}))), "cache.max_bytes", "1024 to 1073741824"),
        (with(top(json!({"max_entries": 0}))), "cache.max_entries", "1 to 1000000"),
        (with(top(json!({"max_entries": 1_000_001}))), "cache.max_entries", "1 to 1000000"),
        (with(top(json!({"fleet": "yes"}))), "cache.fleet", "true or false"),
        (with(top(json!({"fleet": true}))), "cache.fleet", "fleet_limits"),
        (with(top(json!({"ways": 4}))), "cache.ways", "unknown field (expected one of: max_bytes, max_entries, fleet)"),
        (with(top(json!([]))), "cache", "must be an object"),
        (with(team(json!(""))), "keys[1].team", "a name"),
        (with(team(json!("a b"))), "keys[1].team", "a name"),
        (with(team(json!(7))), "keys[1].team", "a name"),
        (with(|v| v["keys"][1]["teams"] = json!(["x"])), "keys[1].teams", "team"),
    ];
    for (v, field, needle) in cases {
        let e = parse(&v).unwrap_err();
        assert_eq!(e.field, field, "{e}");
        assert!(e.reason.contains(needle), "{e} lacks {needle}");
        // A field error is a stage-1 error, except the cross-checks of stage 2.
        let raw = parse_raw(v.to_string().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "sk-x")]));
        assert_eq!(raw.is_err(), field != "cache.fleet" || needle != "fleet_limits", "{field}");
    }
}

#[test]
fn an_entry_size_beyond_the_per_set_budget_is_refused_with_the_numbers() {
    // 64 MiB over 10,000 entries: 1250 sets of 8, 53687 bytes each.
    let v = with(|v| v["models"]["demo"]["cache"] = json!({"ttl": 60, "max_entry_bytes": 1 << 20}));
    let e = parse(&v).unwrap_err();
    assert_eq!(e.field, "models.demo.cache.max_entry_bytes");
    assert_eq!(
        e.reason,
        "1048576 is above the process cache's per-set budget of 53687 bytes (cache.max_bytes 67108864 / 1250 sets of 8 entries from cache.max_entries 10000); lower max_entry_bytes, raise cache.max_bytes or lower cache.max_entries"
    );
    // Exactly the budget fits.
    let v = with(|v| v["models"]["demo"]["cache"] = json!({"ttl": 60, "max_entry_bytes": 53_687}));
    assert_eq!(parse(&v).unwrap().models["demo"].cache.unwrap().max_entry_bytes, 53_687);
    // A budget too small for any answer is refused when a model caches, naming cache.max_bytes.
    let v = with(|v| {
        v["cache"] = json!({"max_bytes": 2000, "max_entries": 16});
        v["models"]["demo"]["cache"] = json!({"ttl": 60});
    });
    let e = parse(&v).unwrap_err();
    assert_eq!(e.field, "cache.max_bytes");
    assert!(e.reason.starts_with("models.demo.cache caches answers, but the process cache's per-set budget of 1000 bytes (cache.max_bytes 2000 / 2 sets of 8 entries from cache.max_entries 16) is below 1024 bytes"), "{e}");
    // Without a caching model the bounds alone are fine.
    let v = with(|v| v["cache"] = json!({"max_bytes": 2000, "max_entries": 16}));
    assert!(parse(&v).is_ok());
}

#[test]
fn cache_fleet_is_kept_with_the_fleet_service() {
    let v = with(|v| {
        v["fleet_limits"] = json!({"cluster": "ratelimit"});
        v["cache"] = json!({"fleet": true});
    });
    let c = parse(&v).unwrap();
    assert_eq!(c.cache, CacheBounds { fleet: true, ..CacheBounds::default() });
    // A standard rate-limit service has no cache service: refused at load, naming the field.
    let v = with(|v| {
        v["fleet_limits"] = json!({"cluster": "ratelimit", "protocol": "standard"});
        v["cache"] = json!({"fleet": true});
    });
    let e = parse(&v).unwrap_err();
    assert_eq!(e.field, "cache.fleet");
    assert!(e.reason.contains("protocol \"switchyard\""), "{e}");
}
