//! Users and teams through the route role: who is let in (keys, verified JWTs, Envoy's refusals in each
//! client's error shape), which models they may use and which team a request is attributed to, the
//! limits each subject holds, and what the request's record says.

use super::*;
use crate::config::identity_tests::with_identity;
use crate::config::tests::MapEnv;
use crate::http::testing::MapHeaders;
use crate::identity::tests::{golden, verified};
use crate::identity::Verified;
use crate::limits::tests::MemStore;
use crate::observe::tests::Recorder;
use crate::observe::MetricIds;
use serde_json::{json, Value};
use std::cell::Cell;

/// The host's metadata, counting how often it is read.
struct Meta {
    bytes: Option<Vec<u8>>,
    reads: Cell<u32>,
}

impl Meta {
    fn new(bytes: Option<Vec<u8>>) -> Meta {
        Meta { bytes, reads: Cell::new(0) }
    }
}

impl Verified for Meta {
    fn metadata(&self) -> Option<Vec<u8>> {
        self.reads.set(self.reads.get() + 1);
        self.bytes.clone()
    }
}

/// `with_identity` with groups read from `groups` (data-science: ds; ops: ds, ops; research), then `f`.
fn config(f: impl Fn(&mut Value)) -> Rc<Config> {
    let mut v = with_identity();
    v["identity"]["teams_claim"] = "groups".into();
    v["identity"].as_object_mut().unwrap().remove("user_limits");
    f(&mut v);
    Rc::new(Config::parse(v.to_string().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "sk-o")])).unwrap())
}

const T0: u64 = 1_796_256_000_000_000_000;

/// What a request got: the decision, the record, and how often the metadata was read.
struct Got {
    d: Decision,
    record: Record,
    reads: u32,
}

impl Got {
    fn status(&self) -> u16 {
        match &self.d.step {
            Step::Respond(r) => r.status,
            _ => 0,
        }
    }

    fn body(&self) -> Value {
        match &self.d.step {
            Step::Respond(r) => serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        match &self.d.step {
            Step::Respond(r) => r.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    fn code(&self) -> String {
        self.body()["error"]["code"].as_str().unwrap_or("").to_string()
    }
}

fn send(
    cfg: &Rc<Config>,
    store: &MemStore,
    path: &str,
    headers: &[(&str, &str)],
    meta: Option<Vec<u8>>,
    body: &str,
) -> Got {
    let method = if body.is_empty() { "GET" } else { "POST" };
    let mut h = vec![(":method", method), (":path", path)];
    h.extend_from_slice(headers);
    let meta = Meta::new(meta);
    let mut p = Pipeline::new(cfg.clone());
    let ctx = Ctx { clock: mock::Clock { unix_secs: T0 / 1_000_000_000, seq: 1 }, now_ns: T0, store };
    let mut d = p.on_request_headers_with(&MapHeaders::new(&h), &meta, body.is_empty());
    if d.step == Step::NeedBody {
        d = match p.on_body_progress(body.len(), true) {
            Some(held) => held,
            None => p.on_request_body(body.as_bytes(), &ctx),
        };
    }
    let record = p.on_done(&ctx, 1).unwrap_or_default();
    Got { d, record, reads: meta.reads.get() }
}

fn chat(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

const CHAT: &str = "/v1/chat/completions";
const JWT: (&str, &str) = ("authorization", "Bearer aaa.bbb.ccc");

#[test]
#[allow(clippy::type_complexity)]
fn who_may_do_what() {
    let cfg = config(|_| {});
    let alice = || Some(verified("alice", &["ds"]));
    let nobody = || Some(verified("carol", &["unknown"]));
    // (headers, metadata, model, status, code, attributed team)
    let cases: Vec<(Vec<(&str, &str)>, Option<Vec<u8>>, &str, u16, &str, Option<&str>)> = vec![
        // Keys as without identity; a key's team is its own.
        (vec![("authorization", "Bearer sk-all")], None, "demo", 200, "", Some("-")),
        (vec![("x-api-key", "sk-mini")], None, "gpt-4o-mini", 0, "", Some("research")),
        (vec![("x-api-key", "sk-mini")], None, "demo", 403, "model_not_allowed", Some("research")),
        // A user in two teams (ds: data-science and ops) may use the union of their grants.
        (vec![JWT], alice(), "gpt-4o-mini", 0, "", Some("data-science")),
        (vec![JWT], alice(), "demo", 200, "", Some("ops")),
        (vec![JWT], alice(), "qwen", 0, "", Some("ops")),
        // The header picks one of theirs that grants the model.
        (vec![JWT, ("x-switchyard-team", "ops")], alice(), "gpt-4o-mini", 0, "", Some("ops")),
        (vec![JWT, ("x-switchyard-team", "data-science")], alice(), "demo", 403, "model_not_allowed", Some("-")),
        (vec![JWT, ("x-switchyard-team", "research")], alice(), "demo", 403, "team_not_allowed", Some("-")),
        (vec![JWT, ("x-switchyard-team", "nope")], alice(), "demo", 403, "team_not_allowed", Some("-")),
        // No team, no grant.
        (vec![JWT], nobody(), "demo", 403, "model_not_allowed", Some("-")),
        // Envoy's refusals: a JWT-looking credential gets its reason; keys fall back to the key answers.
        (vec![JWT], Some(golden("expired")), "demo", 401, "invalid_token", None),
        (vec![JWT], Some(golden("badsig")), "demo", 401, "invalid_token", None),
        (vec![], Some(golden("missing")), "demo", 401, "missing_api_key", None),
        (vec![("authorization", "Bearer sk-wrong")], Some(golden("skkey")), "demo", 401, "invalid_api_key", None),
        (vec![JWT], None, "demo", 401, "invalid_api_key", None),
        (vec![JWT], Some(b"\x0a\x05ab".to_vec()), "demo", 401, "invalid_token", None),
    ];
    for (headers, meta, model, status, code, team) in cases {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(&headers);
        let store = MemStore::default();
        let got = send(&cfg, &store, CHAT, &h, meta.clone(), &chat(model));
        let what = format!("{headers:?} {model} {:?}", got.body());
        assert_eq!(got.status(), status, "{what}");
        assert_eq!(got.code(), code, "{what}");
        assert_eq!(got.record.team.as_deref(), team.or(Some("-")), "{what}");
        if status == 403 {
            assert!(got.body()["error"]["message"].as_str().unwrap().contains(model) || code == "team_not_allowed");
        }
        let keyed = headers.iter().any(|(_, v)| v.starts_with("sk-") || v.starts_with("Bearer sk-"));
        let valid_key = keyed && !headers.iter().any(|(_, v)| v.contains("wrong"));
        assert_eq!(got.reads, u32::from(!valid_key), "the metadata is read only without a valid key: {what}");
    }
}

#[test]
fn refusals_in_each_clients_shape() {
    let cfg = config(|_| {});
    let store = MemStore::default();
    let got = send(&cfg, &store, CHAT, &[JWT], Some(golden("expired")), &chat("demo"));
    assert_eq!((got.status(), got.code().as_str()), (401, "invalid_token"));
    assert_eq!(got.body()["error"]["message"], "The token was not accepted: Jwt is expired.");
    assert_eq!(got.header("www-authenticate"), Some("Bearer error=\"invalid_token\""));
    let messages =
        json!({"model": "demo", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}).to_string();
    let got = send(&cfg, &store, "/v1/messages", &[JWT], Some(golden("badsig")), &messages);
    let b = got.body();
    assert_eq!(
        (got.status(), b["type"].as_str(), b["error"]["type"].as_str()),
        (401, Some("error"), Some("authentication_error"))
    );
    assert_eq!(b["error"]["code"], "invalid_token");
    assert!(b["error"]["message"].as_str().unwrap().contains("Jwt verification fails"));
    assert_eq!(got.header("www-authenticate"), Some("Bearer error=\"invalid_token\""));
    let got = send(&cfg, &store, "/v1/messages", &[JWT], Some(verified("a", &[])), &messages);
    assert_eq!((got.status(), got.body()["error"]["type"].as_str()), (403, Some("permission_error")));
    assert!(got.body()["error"]["message"].as_str().unwrap().contains("'demo'"));
    // A user claim that is not there, a user claim that is not a string.
    let cfg = config(|v| v["identity"]["user_claim"] = "email".into());
    let got = send(&cfg, &store, CHAT, &[JWT], Some(verified("a", &["ds"])), &chat("demo"));
    assert_eq!((got.status(), got.code().as_str()), (401, "invalid_token"));
    assert!(got.body()["error"]["message"].as_str().unwrap().contains("'email'"));
    let cfg = config(|v| v["identity"]["user_claim"] = "groups".into());
    let got = send(&cfg, &store, CHAT, &[JWT], Some(verified("a", &["ds"])), &chat("demo"));
    assert_eq!(got.code(), "invalid_token");
}

#[test]
fn jwt_only_listeners() {
    let cfg = config(|v| v["identity"]["accept"] = json!(["jwt"]));
    let store = MemStore::default();
    for (headers, meta, message) in [
        (vec![], golden("missing"), "Jwt is missing"),
        (vec![("authorization", "Bearer sk-all")], golden("skkey"), "Jwt is not in the form"),
    ] {
        let got = send(&cfg, &store, CHAT, &headers, Some(meta), &chat("demo"));
        assert_eq!((got.status(), got.code().as_str()), (401, "invalid_token"), "{headers:?}");
        assert!(got.body()["error"]["message"].as_str().unwrap().contains(message));
        assert_eq!(got.reads, 1);
    }
    // A configured key is not accepted here; no jwt_authn in front at all: said so.
    let got = send(&cfg, &store, CHAT, &[("x-api-key", "sk-all")], None, &chat("demo"));
    assert_eq!(got.code(), "invalid_token");
    assert!(got.body()["error"]["message"].as_str().unwrap().contains("jwt_authn"));
    let got = send(&cfg, &store, CHAT, &[JWT], Some(golden("good")), &chat("demo"));
    assert_eq!(got.status(), 200, "alice@example.com in ds: ops grants demo");
    assert_eq!(got.record.user.as_deref().map(str::len), Some(16), "log_user: hashed");
}

#[test]
fn model_lists_per_caller() {
    let cfg = config(|_| {});
    let store = MemStore::default();
    let ids = |got: &Got| -> Vec<String> {
        got.body()["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
    };
    let alice = Some(verified("alice", &["ds"]));
    let got = send(&cfg, &store, "/v1/models", &[JWT], alice.clone(), "");
    assert_eq!(ids(&got), vec!["demo", "gpt-4o", "gpt-4o-mini", "gpt-prod", "qwen"], "ops grants all served");
    let got = send(&cfg, &store, "/v1/models", &[JWT], Some(verified("bob", &["grp-8a7d", "research"])), "");
    assert_eq!(ids(&got), vec!["demo", "gpt-4o", "gpt-4o-mini", "gpt-prod"], "the union of data-science and research");
    let got = send(&cfg, &store, "/v1/models", &[JWT], Some(verified("carol", &[])), "");
    assert!(ids(&got).is_empty());
    let got = send(&cfg, &store, "/v1/models", &[("x-api-key", "sk-mini")], None, "");
    assert_eq!(ids(&got), vec!["gpt-4o-mini"], "a key's list as without identity");
    let got = send(&cfg, &store, "/v1/models/gpt-4o", &[JWT], Some(verified("bob", &["grp-8a7d"])), "");
    assert_eq!((got.status(), got.code().as_str()), (404, "model_not_found"), "not granted: not there");
    let got = send(&cfg, &store, "/v1/models/gpt-4o", &[JWT], Some(verified("bob", &["research"])), "");
    assert_eq!((got.status(), got.body()["id"].as_str()), (200, Some("gpt-4o")));
}

#[test]
fn a_team_budget_is_shared_by_its_users_and_keys() {
    // research: 3 requests a minute for all of it; every user: 2 of their own.
    let cfg = config(|v| {
        v["teams"]["research"]["limits"] = json!({"requests": {"limit": 3}});
        v["identity"]["user_limits"] = json!({"requests": {"limit": 2}});
        v["keys"][1]["models"] = json!(["demo"]);
    });
    let store = MemStore::default();
    let user = |name: &str| Some(verified(name, &["research"]));
    let ok = |got: &Got| got.status() == 200;
    assert!(ok(&send(&cfg, &store, CHAT, &[JWT], user("alice"), &chat("demo"))));
    assert!(ok(&send(&cfg, &store, CHAT, &[JWT], user("bob"), &chat("demo"))));
    assert!(ok(&send(&cfg, &store, CHAT, &[("x-api-key", "sk-mini")], None, &chat("demo"))));
    for (headers, meta) in
        [(vec![JWT], user("alice")), (vec![JWT], user("dave")), (vec![("x-api-key", "sk-mini")], None)]
    {
        let got = send(&cfg, &store, CHAT, &headers, meta, &chat("demo"));
        assert_eq!((got.status(), got.code().as_str()), (429, "rate_limit_exceeded"), "{headers:?}");
        assert!(got.body()["error"]["message"].as_str().unwrap().contains("Team 'research'"), "{:?}", got.body());
    }
    // The refusals took nothing: a user's own limit still has room for exactly one more of alice's.
    let cfg2 = config(|v| {
        v["teams"]["research"].as_object_mut().unwrap().remove("limits");
        v["identity"]["user_limits"] = json!({"requests": {"limit": 2}});
    });
    let got = send(&cfg2, &store, CHAT, &[JWT], user("alice"), &chat("demo"));
    assert!(ok(&got), "alice's refused request was given back: {:?}", got.body());
    let got = send(&cfg2, &store, CHAT, &[JWT], user("alice"), &chat("demo"));
    assert_eq!(got.status(), 429);
    assert!(got.body()["error"]["message"].as_str().unwrap().starts_with("User rate limit reached"));
    // Records: per user, per team; none for keys without limits.
    let names: Vec<String> = store.data.borrow().keys().cloned().collect();
    for n in ["switchyard/limits/user:alice", "switchyard/limits/user:bob", "switchyard/limits/team:research"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
}

#[test]
fn records_and_stats_carry_the_team_never_the_user() {
    let cfg = config(|v| v["identity"]["log_user"] = "plain".into());
    let store = MemStore::default();
    let got =
        send(&cfg, &store, CHAT, &[JWT, ("x-switchyard-team", "ops")], Some(verified("alice", &["ds"])), &chat("demo"));
    let r = &got.record;
    assert_eq!(
        (r.key_id.as_deref(), r.user.as_deref(), r.team.as_deref(), r.by_user),
        (None, Some("alice"), Some("ops"), true)
    );
    let t = Recorder::default();
    let mut ids = MetricIds::default();
    crate::observe::emit(r, &mut ids, &t);
    let key_got = send(&cfg, &store, CHAT, &[("x-api-key", "sk-mini")], None, &chat("gpt-4o-mini"));
    crate::observe::emit(&key_got.record, &mut ids, &t);
    let counters: Vec<String> = t.counters.borrow().iter().map(|(n, _)| n.clone()).collect();
    assert!(
        counters.contains(&"switchyard.requests.model.demo.provider.local.key.-.team.ops.outcome.ok".to_string()),
        "{counters:?}"
    );
    assert!(counters.iter().all(|n| !n.contains("alice")));
    let fields = crate::observe::log_fields(r);
    assert!(fields.contains(&("user", crate::observe::Value::Str("alice"))));
    assert!(fields.contains(&("team", crate::observe::Value::Str("ops"))));
    // A key of a team: its team; the key's own id stays its tag.
    assert_eq!(key_got.record.team.as_deref(), Some("research"));
    let off = config(|v| v["identity"]["log_user"] = "off".into());
    let got = send(&off, &store, CHAT, &[JWT], Some(verified("alice", &["ds"])), &chat("demo"));
    assert_eq!(got.record.user, None);
    assert!(!crate::observe::log_fields(&got.record).iter().any(|(k, _)| *k == "user"));
}

#[test]
fn without_identity_nothing_changes() {
    let cfg = Rc::new(
        Config::parse(crate::config::tests::sample().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "k")])).unwrap(),
    );
    let store = MemStore::default();
    let got = send(&cfg, &store, CHAT, &[JWT], Some(golden("good")), &chat("demo"));
    assert_eq!((got.status(), got.code().as_str(), got.reads), (401, "invalid_api_key", 0), "never read");
    let got = send(&cfg, &store, CHAT, &[("x-api-key", "sk-all")], None, &chat("demo"));
    assert_eq!((got.status(), got.record.team.as_deref(), got.record.user.as_deref()), (200, None, None));
    let t = Recorder::default();
    crate::observe::emit(&got.record, &mut MetricIds::default(), &t);
    assert_eq!(t.counters.borrow()[0].0, "switchyard.requests.model.demo.provider.local.key.all.outcome.ok");
    assert!(!crate::observe::log_fields(&got.record).iter().any(|(k, _)| *k == "team" || *k == "user"));
}

#[test]
fn cached_answers_are_shared_within_the_requests_team() {
    let cfg = |scope: &str| {
        let scope = scope.to_string();
        config(move |v| {
            v["models"]["demo"]["cache"] = json!({"ttl": 60, "scope": scope});
            v["keys"][1]["models"] = json!(["demo"]);
        })
    };
    let user = |name: &str, groups: &[&str]| Some(verified(name, groups));
    let cache = |got: &Got| got.record.cache;
    let team = cfg("team");
    let store = MemStore::default();
    let ask = |h: &[(&str, &str)], meta| send(&team, &store, CHAT, h, meta, &chat("demo"));
    assert_eq!(cache(&ask(&[JWT], user("alice", &["research"]))), Some("miss"));
    assert_eq!(cache(&ask(&[JWT], user("bob", &["research"]))), Some("hit"), "a user of the same team");
    assert_eq!(cache(&ask(&[("x-api-key", "sk-mini")], None)), Some("hit"), "a key of the same team");
    assert_eq!(cache(&ask(&[JWT], user("carol", &["ops"]))), Some("miss"), "another team");
    let picked = ask(&[JWT, ("x-switchyard-team", "research")], user("dave", &["ops", "research"]));
    assert_eq!(cache(&picked), Some("hit"), "the team the request is attributed to");
    let mine = cfg("key");
    let store = MemStore::default();
    let ask = |h: &[(&str, &str)], meta| send(&mine, &store, CHAT, h, meta, &chat("demo"));
    assert_eq!(cache(&ask(&[JWT], user("alice", &["research"]))), Some("miss"));
    assert_eq!(cache(&ask(&[JWT], user("bob", &["research"]))), Some("miss"), "scope key: never between users");
    assert_eq!(cache(&ask(&[JWT], user("alice", &["ops"]))), Some("hit"), "the same user");
}
