use super::tests::MemStore;
use super::*;
use crate::config::{Allowed, Budget, Key, KeyLimits, ModelLimits};
use crate::limits::Subject;

fn key(mut limits: KeyLimits) -> Key {
    name_records("k", &mut limits);
    Key { id: "k".into(), allowed: Allowed::All, limits, models_json: String::new(), team: None, team_id: None }
}
const S: u64 = 1_000_000_000;
const T: u64 = 1_795_262_400 * S;

#[test]
fn tokens_reserve_then_settle_to_real_usage() {
    let st = MemStore::default();
    let k = key(KeyLimits { tokens: Some(Rate { max: 1000, window_secs: 60 }), ..Default::default() });
    let mut a = Reservation::reserve(&st, &k, "m", 600, 0, T).unwrap();
    assert!(a.headers.contains(&("x-ratelimit-remaining-tokens", "400".to_string())));
    let e = Reservation::reserve(&st, &k, "m", 600, 0, T).unwrap_err();
    assert_eq!((e.status, e.kind, e.code), (429, "tokens", Some("rate_limit_exceeded")));
    assert!(e.headers.iter().any(|(h, v)| *h == "retry-after" && v.parse::<u64>().unwrap() >= 1));
    a.settle(&st, Some((150, 0)), T);
    assert!(Reservation::reserve(&st, &k, "m", 600, 0, T).is_ok(), "150 + 600 fits once settled");
}

#[test]
fn failures_release_and_refusals_roll_back() {
    let st = MemStore::default();
    let limits = KeyLimits {
        requests: Some(Rate { max: 3, window_secs: 60 }),
        tokens: Some(Rate { max: 100, window_secs: 60 }),
        concurrent: Some(1),
        ..Default::default()
    };
    let k = key(limits);
    let mut a = Reservation::reserve(&st, &k, "m", 80, 0, T).unwrap();
    let c = Reservation::reserve(&st, &k, "m", 10, 0, T).unwrap_err();
    assert!(c.message.contains("concurrent"));
    a.settle(&st, None, T);
    // The failed request gave its 80 tokens back but still counts as a request.
    let mut b = Reservation::reserve(&st, &k, "m", 90, 0, T).unwrap();
    assert!(b.headers.contains(&("x-ratelimit-remaining-requests", "1".to_string())));
    b.settle(&st, Some((90, 0)), T);
    // Too many tokens: refused, and its request unit is given back.
    let e = Reservation::reserve(&st, &k, "m", 50, 0, T).unwrap_err();
    assert_eq!(e.kind, "tokens");
    let ok = Reservation::reserve(&st, &k, "m", 5, 0, T).unwrap();
    assert!(ok.headers.contains(&("x-ratelimit-remaining-requests", "0".to_string())));
}

#[test]
fn a_refusal_by_the_model_limit_gives_back_the_key_units() {
    let st = MemStore::default();
    let mut limits = KeyLimits { requests: Some(Rate { max: 2, window_secs: 60 }), ..Default::default() };
    limits
        .per_model
        .insert("m".into(), ModelLimits { requests: Some(Rate { max: 1, window_secs: 60 }), ..Default::default() });
    let k = key(limits);
    Reservation::reserve(&st, &k, "m", 0, 0, T).unwrap();
    for _ in 0..5 {
        assert!(Reservation::reserve(&st, &k, "m", 0, 0, T).is_err());
    }
    // Refusals by the model's limit took nothing from the key's: one request is still left.
    Reservation::reserve(&st, &k, "other", 0, 0, T).unwrap();
    assert!(Reservation::reserve(&st, &k, "other", 0, 0, T).is_err());
}

#[test]
fn budget_refuses_with_insufficient_quota() {
    let st = MemStore::default();
    let k = key(KeyLimits { budget: Some(Budget { micros: 1000, period: Period::Day }), ..Default::default() });
    let mut a = Reservation::reserve(&st, &k, "m", 0, 800, T).unwrap();
    a.settle(&st, Some((0, 1200)), T);
    let e = Reservation::reserve(&st, &k, "m", 0, 1, T).unwrap_err();
    assert_eq!((e.status, e.code), (429, Some("insufficient_quota")));
    assert!(e.headers.iter().any(|(h, v)| *h == "retry-after" && v == "43200"));
    // Next UTC day it is open again.
    assert!(Reservation::reserve(&st, &k, "m", 0, 1, T + 86_400 * S).is_ok());
}

#[test]
fn keys_are_created_once_and_kept_on_reload() {
    use crate::config::tests::{sample, MapEnv};
    let mut v: serde_json::Value = serde_json::from_str(&sample()).unwrap();
    v["keys"][0]["limits"] =
        serde_json::json!({"requests": {"limit": 2}, "models": {"demo": {"tokens": {"limit": 9}}}});
    let cfg = crate::config::Config::parse(v.to_string().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "x")])).unwrap();
    let keys = shared_keys(&cfg);
    assert_eq!(keys, vec!["switchyard/limits/all".to_string(), "switchyard/limits/all/model/demo".to_string()]);
    let st = MemStore::default();
    create_missing(&st, &keys);
    let k = &cfg.keys[0];
    Reservation::reserve(&st, k, "x", 0, 0, T).unwrap();
    create_missing(&st, &keys);
    Reservation::reserve(&st, k, "x", 0, 0, T).unwrap();
    assert!(Reservation::reserve(&st, k, "x", 0, 0, T).is_err(), "a reload kept the count");
}

#[test]
fn budget_settlement_never_reaches_into_a_new_period() {
    let st = MemStore::default();
    let k = key(KeyLimits { budget: Some(Budget { micros: 1000, period: Period::Day }), ..Default::default() });
    let mut late = Reservation::reserve(&st, &k, "m", 0, 600, T).unwrap();
    // The next UTC day starts before the answer ends: a fresh budget, untouched by the old request.
    let tomorrow = T + 86_400 * S;
    let mut today = Reservation::reserve(&st, &k, "m", 0, 900, tomorrow).unwrap();
    late.settle(&st, Some((0, 100)), tomorrow);
    today.settle(&st, Some((0, 900)), tomorrow);
    assert!(Reservation::reserve(&st, &k, "m", 0, 100, tomorrow).is_ok(), "900 + 100 fits: the refund went nowhere");
    assert!(Reservation::reserve(&st, &k, "m", 0, 1, tomorrow).is_err());
}

#[test]
fn concurrency_slots_come_back_however_a_request_ends() {
    let st = MemStore::default();
    let k = key(KeyLimits { concurrent: Some(2), ..Default::default() });
    let mut a = Reservation::reserve(&st, &k, "m", 0, 0, T).unwrap();
    let mut b = Reservation::reserve(&st, &k, "m", 0, 0, T).unwrap();
    assert!(Reservation::reserve(&st, &k, "m", 0, 0, T).is_err());
    a.settle(&st, None, T);
    let mut c = Reservation::reserve(&st, &k, "m", 0, 0, T).unwrap();
    b.settle(&st, Some((1, 0)), T);
    c.settle(&st, None, T);
    c.settle(&st, None, T);
    assert!(Reservation::reserve(&st, &k, "m", 0, 0, T).is_ok(), "a second settle releases nothing twice");
}

#[test]
fn per_model_limits_apply_to_that_model_only() {
    let st = MemStore::default();
    let mut limits = KeyLimits::default();
    limits
        .per_model
        .insert("big".into(), ModelLimits { requests: Some(Rate { max: 1, window_secs: 60 }), ..Default::default() });
    let k = key(limits);
    Reservation::reserve(&st, &k, "big", 1, 0, T).unwrap();
    assert!(Reservation::reserve(&st, &k, "big", 1, 0, T).is_err());
    assert!(Reservation::reserve(&st, &k, "small", 1, 0, T).is_ok());
}

/// A team (or any subject other than a key) with these limits, its records named.
fn team(name: &str, mut limits: KeyLimits) -> crate::config::Team {
    name_records(&format!("team:{name}"), &mut limits);
    crate::config::Team { name: name.into(), allowed: Allowed::All, listed: Vec::new(), limits }
}

#[test]
fn a_refusal_by_one_subject_takes_nothing_from_the_others() {
    let st = MemStore::default();
    let users = KeyLimits {
        requests: Some(Rate { max: 10, window_secs: 60 }),
        tokens: Some(Rate { max: 1000, window_secs: 60 }),
        concurrent: Some(5),
        budget: Some(Budget { micros: 10_000, period: Period::Day }),
        ..Default::default()
    };
    let t = team("ds", KeyLimits { budget: Some(Budget { micros: 1000, period: Period::Day }), ..Default::default() });
    let both = |id: &str| [Subject::user(id, &users, "m"), Subject::team(&t, "m")];
    let mut a = Reservation::reserve_for(&st, both("alice"), 100, 900, T).unwrap();
    let before = st.data.borrow().get("switchyard/limits/user:bob").cloned();
    assert!(before.is_none(), "bob's record is made by his first request");
    // Bob's own limits have room, the team's budget has not: refused, and bob's record took nothing.
    let e = Reservation::reserve_for(&st, both("bob"), 100, 200, T).unwrap_err();
    assert_eq!(e.code, Some("insufficient_quota"));
    assert!(e.message.contains("team 'ds'"), "{}", e.message);
    let words = |id: &str| -> Vec<u64> {
        let v = st.data.borrow().get(&format!("switchyard/limits/user:{id}")).map(|(v, _)| v.clone()).unwrap();
        v.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
    };
    // [in flight, requests TAT, tokens TAT, period, used]: both buckets full again (TAT = now).
    assert_eq!(words("bob"), vec![0, T, T, T / S / 86_400, 0], "everything given back");
    // Settling charges every subject: alice used 300 micro-dollars, so the team has 700 left.
    a.settle(&st, Some((50, 300)), T);
    let mut b = Reservation::reserve_for(&st, both("bob"), 100, 700, T).unwrap();
    assert!(Reservation::reserve_for(&st, both("carol"), 1, 1, T).is_err(), "the team's budget is spent");
    b.settle(&st, Some((10, 100)), T);
    let mut c = Reservation::reserve_for(&st, both("carol"), 1, 600, T).unwrap();
    c.settle(&st, None, T);
    // Alice's own record: one request (6 s of a 60 s window for 10), 50 tokens, 300 micro-dollars.
    assert_eq!(words("alice"), vec![0, T + 6 * S, T + 3 * S, T / S / 86_400, 300]);
}

#[test]
fn concurrency_held_by_a_user_comes_back_when_the_team_refuses() {
    let st = MemStore::default();
    let users = KeyLimits { concurrent: Some(1), ..Default::default() };
    let t = team("t", KeyLimits { concurrent: Some(1), ..Default::default() });
    let subjects = |id: &str| [Subject::user(id, &users, "m"), Subject::team(&t, "m")];
    let mut a = Reservation::reserve_for(&st, subjects("a"), 0, 0, T).unwrap();
    let e = Reservation::reserve_for(&st, subjects("b"), 0, 0, T).unwrap_err();
    assert_eq!(e.message, "Too many concurrent requests for team 't' (limit 1).");
    a.settle(&st, None, T);
    // b's slot was given back when the team refused: b may go now.
    let mut b = Reservation::reserve_for(&st, subjects("b"), 0, 0, T).unwrap();
    let e = Reservation::reserve_for(&st, [Subject::user("b", &users, "m")], 0, 0, T).unwrap_err();
    assert_eq!(e.message, "Too many concurrent requests for this user (limit 1).");
    b.settle(&st, None, T);
}

#[test]
fn headers_show_the_subject_with_the_least_room() {
    let st = MemStore::default();
    let k = key(KeyLimits {
        requests: Some(Rate { max: 100, window_secs: 60 }),
        tokens: Some(Rate { max: 50, window_secs: 60 }),
        ..Default::default()
    });
    let t = team("t", KeyLimits { requests: Some(Rate { max: 5, window_secs: 60 }), ..Default::default() });
    let r = Reservation::reserve_for(&st, [Subject::key(&k, "m"), Subject::team(&t, "m")], 10, 0, T).unwrap();
    let h = |name: &str| r.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    assert_eq!(h("x-ratelimit-limit-requests").as_deref(), Some("5"), "the team's 4 left beat the key's 99");
    assert_eq!(h("x-ratelimit-remaining-requests").as_deref(), Some("4"));
    assert_eq!(h("x-ratelimit-remaining-tokens").as_deref(), Some("40"), "only the key limits tokens");
    assert_eq!(r.headers.len(), 6, "each header once");
    // The team's refusal names it; the key's units were given back.
    let big = team("big", KeyLimits { tokens: Some(Rate { max: 5, window_secs: 60 }), ..Default::default() });
    let e = Reservation::reserve_for(&st, [Subject::key(&k, "m"), Subject::team(&big, "m")], 10, 0, T).unwrap_err();
    assert!(e.message.starts_with("Request too large for the token limit (team 'big')"), "{}", e.message);
    let again = Reservation::reserve_for(&st, [Subject::key(&k, "m")], 10, 0, T).unwrap();
    assert!(again.headers.contains(&("x-ratelimit-remaining-requests", "98".to_string())));
}

#[test]
fn a_users_model_limits_have_records_of_their_own() {
    let st = MemStore::default();
    let mut users = KeyLimits::default();
    users
        .per_model
        .insert("big".into(), ModelLimits { requests: Some(Rate { max: 1, window_secs: 60 }), ..Default::default() });
    Reservation::reserve_for(&st, [Subject::user("a", &users, "big")], 0, 0, T).unwrap();
    let e = Reservation::reserve_for(&st, [Subject::user("a", &users, "big")], 0, 0, T).unwrap_err();
    assert!(e.message.starts_with("User rate limit reached for requests"), "{}", e.message);
    Reservation::reserve_for(&st, [Subject::user("b", &users, "big")], 0, 0, T).unwrap();
    assert!(st.data.borrow().contains_key("switchyard/limits/user:a/model/big"));
}
