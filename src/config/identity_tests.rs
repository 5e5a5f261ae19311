//! The `identity` and `teams` sections: what they compile to, and every rejection naming its field.

use super::tests::{sample, MapEnv};
use super::*;
use crate::limits::{Period, Rate};
use serde_json::{json, Value};

fn env() -> MapEnv {
    MapEnv(vec![("OPENAI_API_KEY", "sk-openai-secret")])
}

/// The sample config with users (JWT and keys), three teams and a key in one of them.
pub fn with_identity() -> Value {
    let mut v: Value = serde_json::from_str(&sample()).unwrap();
    v["models"]["gpt-4o"] = json!({"provider": "openai"});
    v["identity"] = json!({
        "accept": ["keys", "jwt"],
        "teams_claim": "realm_access.roles",
        "log_user": "hashed",
        "user_limits": {"requests": {"limit": 10}, "models": {"demo": {"tokens": {"limit": 100}}}}
    });
    v["teams"] = json!({
        "research": {"models": ["gpt-*", "demo"], "limits": {"budget": {"usd": 5, "period": "day"}}},
        "data-science": {"claims": ["ds", "grp-8a7d"], "models": ["gpt-4o-mini", "llama"]},
        "ops": {"claims": ["ds", "ops"], "models": ["*"]}
    });
    v["keys"][1]["team"] = "research".into();
    v
}

fn parse(v: &Value) -> Result<Config, ConfigError> {
    Config::parse(v.to_string().as_bytes(), &env())
}

#[test]
fn identity_and_teams_compile() {
    let c = parse(&with_identity()).unwrap();
    assert!(c.accepts_keys() && c.accepts_jwt() && c.has_identity());
    let i = c.identity.as_ref().unwrap();
    assert_eq!(i.user_claim, "sub", "the default");
    assert_eq!(i.teams_claim.as_deref(), Some("realm_access.roles"));
    assert_eq!(i.log_user, LogUser::Hashed);
    assert_eq!(i.user_limits.requests, Some(Rate { max: 10, window_secs: 60 }));
    assert!(i.user_limits.per_model.contains_key("demo"));
    // Sorted by name: a team id orders as its name.
    let names: Vec<&str> = c.teams.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["data-science", "ops", "research"]);
    let ds = c.team_id("data-science").unwrap();
    let ops = c.team_id("ops").unwrap();
    let research = c.team_id("research").unwrap();
    assert_eq!(c.teams_for_claim("ds"), &[ds, ops]);
    assert_eq!(c.teams_for_claim("grp-8a7d"), &[ds]);
    assert_eq!(c.teams_for_claim("research"), &[research], "a team's claims default to its name");
    assert!(c.teams_for_claim("data-science").is_empty(), "claims replace the default");
    let r = c.team(research).unwrap();
    assert!(r.may_use("gpt-4o") && r.may_use("gpt-4o-mini") && r.may_use("gpt-prod") && r.may_use("demo"));
    assert!(!r.may_use("llama") && !r.may_use("qwen"));
    assert_eq!(r.listed, vec!["demo", "gpt-4o", "gpt-4o-mini", "gpt-prod"]);
    assert_eq!(r.limits.budget, Some(Budget { micros: 5_000_000, period: Period::Day }));
    assert_eq!(&*r.limits.record, "switchyard/limits/team:research");
    let d = c.team(ds).unwrap();
    assert!(d.may_use("llama"), "an unavailable model may be granted");
    assert_eq!(d.listed, vec!["gpt-4o-mini"], "but is not listed");
    assert_eq!(c.team(ops).unwrap().listed.len(), 5);
    assert_eq!(c.keys[1].team_id, Some(research));
    assert_eq!(c.keys[0].team_id, None);
    // Team records exist from the load on (the users' are made by their first request).
    let shared = crate::limits::shared_keys(&c);
    assert!(shared.contains(&"switchyard/limits/team:research".to_string()), "{shared:?}");
    let j: Value = serde_json::from_str(&c.models_json(&["demo", "gpt-4o"])).unwrap();
    assert_eq!(j["data"][1]["id"], "gpt-4o");
    assert_eq!(j["data"][1]["owned_by"], "openai");
}

#[test]
fn without_identity_keys_only() {
    let c = Config::parse(sample().as_bytes(), &env()).unwrap();
    assert!(c.accepts_keys() && !c.accepts_jwt() && !c.has_identity());
    assert!(c.identity.is_none() && c.teams.is_empty());
    // `team` on a key without a teams section stays a cache-scope name only.
    let mut v: Value = serde_json::from_str(&sample()).unwrap();
    v["keys"][0]["team"] = "anything".into();
    v["keys"][0]["id"] = "user:x".into();
    let c = parse(&v).unwrap();
    assert_eq!((c.keys[0].team.as_deref(), c.keys[0].team_id), (Some("anything"), None));
    // Teams for keys only: no identity section needed.
    let mut v: Value = serde_json::from_str(&sample()).unwrap();
    v["teams"] = json!({"t": {"models": [], "limits": {"concurrent": 3}}});
    v["keys"][0]["team"] = "t".into();
    let c = parse(&v).unwrap();
    assert!(c.accepts_keys() && !c.accepts_jwt() && c.has_identity());
    assert_eq!(c.keys[0].team_id, Some(0));
    // JWT only, with a nested user claim.
    let mut v = with_identity();
    v["identity"]["accept"] = json!(["jwt"]);
    v["identity"]["user_claim"] = "https://example.com/claims.uid".into();
    let c = parse(&v).unwrap();
    assert!(!c.accepts_keys() && c.accepts_jwt());
    assert_eq!(c.identity.unwrap().user_claim, "https://example.com/claims.uid");
}

#[test]
#[allow(clippy::type_complexity)]
fn identity_rejections_name_the_field() {
    let cases: Vec<(Box<dyn Fn(&mut Value)>, &str, &str)> = vec![
        (Box::new(|v| v["identity"]["accept"] = json!([])), "identity.accept", "must list"),
        (Box::new(|v| v["identity"]["accept"] = json!("jwt")), "identity.accept", "must be an array"),
        (Box::new(|v| v["identity"]["accept"] = json!(["jwt", "oidc"])), "identity.accept[1]", "\"keys\""),
        (Box::new(|v| v["identity"]["accept"] = json!(["jwt", "jwt"])), "identity.accept[1]", "twice"),
        (Box::new(|v| v["identity"]["colour"] = json!(1)), "identity.colour", "unknown field"),
        (Box::new(|v| v["identity"]["user_claim"] = json!("")), "identity.user_claim", "must not be empty"),
        (Box::new(|v| v["identity"]["user_claim"] = json!("a..b")), "identity.user_claim", "dotted path"),
        (Box::new(|v| v["identity"]["teams_claim"] = json!(".roles")), "identity.teams_claim", "dotted path"),
        (Box::new(|v| v["identity"]["teams_claim"] = json!(7)), "identity.teams_claim", "must be a string"),
        (Box::new(|v| v["identity"]["log_user"] = json!("maybe")), "identity.log_user", "\"hashed\""),
        (
            Box::new(|v| v["identity"]["user_limits"] = json!({"requests": {"limit": 0}})),
            "identity.user_limits.requests.limit",
            "positive",
        ),
        (
            Box::new(|v| v["identity"]["user_limits"] = json!({"models": {"nope": {}}})),
            "identity.user_limits.models.nope",
            "no model",
        ),
        (
            Box::new(|v| v["identity"]["user_limits"] = json!({"fleet": {"requests": {"limit": 5}}})),
            "identity.user_limits.fleet",
            "fleet_limits",
        ),
        (
            Box::new(|v| v["identity"] = json!({"accept": ["keys"], "teams_claim": "groups"})),
            "identity.teams_claim",
            "add \"jwt\"",
        ),
        (
            Box::new(|v| {
                v["identity"].as_object_mut().unwrap().remove("teams_claim");
            }),
            "identity.teams_claim",
            "required with teams and jwt",
        ),
        (
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("teams");
                v["keys"][1].as_object_mut().unwrap().remove("team");
            }),
            "identity.accept",
            "add a teams section",
        ),
        (Box::new(|v| v["teams"] = json!([])), "teams", "must be an object"),
        (Box::new(|v| v["teams"]["bad name"] = json!({"models": []})), "teams.bad name", "team names"),
        (Box::new(|v| v["teams"]["x"] = json!({})), "teams.x.models", "required"),
        (Box::new(|v| v["teams"]["x"] = json!({"models": [], "size": 1})), "teams.x.size", "unknown field"),
        (Box::new(|v| v["teams"]["x"] = json!({"models": ["gpt-5"]})), "teams.x.models[0]", "no model 'gpt-5'"),
        (Box::new(|v| v["teams"]["x"] = json!({"models": ["mistral-*"]})), "teams.x.models[0]", "matches no model"),
        (Box::new(|v| v["teams"]["x"] = json!({"models": ["demo", "demo"]})), "teams.x.models[1]", "twice"),
        (Box::new(|v| v["teams"]["x"] = json!({"models": [], "claims": []})), "teams.x.claims", "at least one"),
        (Box::new(|v| v["teams"]["x"] = json!({"models": [], "claims": [""]})), "teams.x.claims[0]", "1 to 256"),
        (Box::new(|v| v["teams"]["x"] = json!({"models": [], "claims": [3]})), "teams.x.claims[0]", "a string"),
        (
            Box::new(|v| v["teams"]["x"] = json!({"models": [], "limits": {"budget": {"usd": -1, "period": "day"}}})),
            "teams.x.limits.budget.usd",
            "US dollars",
        ),
        (
            Box::new(|v| {
                v["fleet_limits"] = json!({"cluster": "rls", "protocol": "standard"});
                v["teams"]["x"] = json!({"models": [], "limits": {"fleet": {"budget": {"usd": 1, "period": "day"}}}});
            }),
            "teams.x.limits.fleet.budget",
            "keeps no money",
        ),
        (Box::new(|v| v["keys"][0]["team"] = "nobody".into()), "keys[0].team", "no team 'nobody'"),
        (Box::new(|v| v["keys"][0]["id"] = "team:research".into()), "keys[0].id", "must not start with"),
        (Box::new(|v| v["keys"][0]["id"] = "user:alice".into()), "keys[0].id", "must not start with"),
    ];
    for (mutate, field, reason) in cases {
        let mut v = with_identity();
        mutate(&mut v);
        let e = parse(&v).unwrap_err();
        assert_eq!(e.field, field, "{e}");
        assert!(e.reason.contains(reason), "{field}: {e}");
    }
    // A key id with a subject prefix is refused with teams alone too.
    let mut v: Value = serde_json::from_str(&sample()).unwrap();
    v["teams"] = json!({"t": {"models": []}});
    v["keys"][0]["id"] = "user:x".into();
    assert_eq!(parse(&v).unwrap_err().field, "keys[0].id");
}
