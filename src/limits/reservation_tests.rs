use super::tests::MemStore;
use super::*;
use crate::config::{Allowed, Budget, Key, KeyLimits, ModelLimits};

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
