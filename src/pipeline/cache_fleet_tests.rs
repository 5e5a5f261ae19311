//! The fleet tier in the cache stages, with the test playing Envoy and the cache service: a process-tier
//! miss asks the fleet tier, and the lookup is resumed with an entry, a not-found, a failure, a timeout,
//! a corrupt or an expired entry; a stored answer leaves a put for the host.

use crate::cache::fleet;
use crate::codec::protobuf::{Reader, Writer};
use crate::config::tests::MapEnv;
use crate::config::Config;
use crate::http::testing::MapHeaders;
use crate::http::{Decision, Step};
use crate::limits::tests::MemStore;
use crate::observe::Record;
use crate::pipeline::callout::{Callout, CalloutKind, CalloutOutcome};
use crate::pipeline::{Ctx, Pipeline};
use crate::providers::mock::Clock;
use std::rc::Rc;

const S: u64 = 1_000_000_000;
const T0: u64 = 1_800_000_000 * S;
const BODY: &str = r#"{"model":"echo","messages":[{"role":"user","content":"hello fleet"}]}"#;

fn config(fleet: bool, failure_mode: &str) -> Rc<Config> {
    let digest = crate::codec::sha256::to_hex(&crate::codec::sha256::digest(b"sk-test"));
    let v = serde_json::json!({
        "fleet_limits": {"cluster": "limits", "timeout_ms": 40, "failure_mode": failure_mode},
        "cache": {"fleet": fleet},
        "providers": {"local": {"kind": "mock"}},
        "models": {"echo": {"provider": "local", "cache": {"ttl": 60}}},
        "keys": [{"id": "k", "sha256": digest, "models": ["*"]}],
    });
    Rc::new(Config::parse(v.to_string().as_bytes(), &MapEnv(vec![])).unwrap())
}

fn ctx(store: &MemStore, now_ns: u64) -> Ctx<'_> {
    Ctx { clock: Clock { unix_secs: now_ns / S, seq: now_ns }, now_ns, store }
}

/// A request up to its body's decision.
fn begin(cfg: &Rc<Config>, store: &MemStore, now_ns: u64, extra: &[(&str, &str)]) -> (Pipeline, Decision) {
    let mut h = vec![(":method", "POST"), (":path", "/v1/chat/completions"), ("authorization", "Bearer sk-test")];
    h.extend_from_slice(extra);
    let mut p = Pipeline::new(cfg.clone());
    assert_eq!(p.on_request_headers(&MapHeaders::new(&h), false).step, Step::NeedBody);
    assert_eq!(p.on_body_progress(BODY.len(), true), None);
    let d = p.on_request_body(BODY.as_bytes(), &ctx(store, now_ns));
    (p, d)
}

/// The fleet `Get` a decision asks for: its key hash (and the call's shape).
fn get_of(d: &Decision) -> [u8; 32] {
    let Step::Callout(Callout { cluster, timeout_ms, kind }) = &d.step else { panic!("a fleet lookup: {d:?}") };
    assert_eq!((cluster.as_str(), *timeout_ms), ("limits", 40), "fleet_limits' cluster and timeout");
    let CalloutKind::Grpc { service, method, message, .. } = kind else { panic!("gRPC") };
    assert_eq!((service.as_str(), method.as_str()), ("switchyard.cache.v1.Cache", "Get"));
    let fields: Vec<_> = Reader::new(message).collect::<Result<_, _>>().unwrap();
    assert_eq!(fields.len(), 1);
    fields[0].1.as_bytes().try_into().unwrap()
}

/// What the request got once resumed with `outcome` at `now_ns`: status, headers, body, record.
type Got = (u16, Vec<(&'static str, String)>, Vec<u8>, Record);

fn resume(mut p: Pipeline, outcome: CalloutOutcome, store: &MemStore, now_ns: u64) -> (Got, Option<Vec<u8>>) {
    let d = p.on_callout(outcome, &ctx(store, now_ns)).expect("the request was paused");
    let Step::Respond(r) = d.step else { panic!("answered (a hit, or the mock on a miss): {d:?}") };
    let record = p.on_done(&ctx(store, now_ns), 0).expect("a record");
    ((r.status, r.headers, r.body, record), p.take_cache_put())
}

fn found(entry: &[u8]) -> CalloutOutcome {
    let mut w = Writer::new();
    w.uint(1, 1).bytes(2, entry);
    CalloutOutcome::grpc(0, w.buf, None)
}

fn not_found() -> CalloutOutcome {
    CalloutOutcome::grpc(0, Vec::new(), None)
}

fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
}

fn text(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["choices"][0]["message"]["content"].as_str().unwrap().to_string()
}

/// A put's (key, entry, ttl_secs).
fn put_fields(put: &[u8]) -> ([u8; 32], Vec<u8>, u64) {
    let fields: Vec<_> = Reader::new(put).collect::<Result<_, _>>().unwrap();
    let n: Vec<u32> = fields.iter().map(|f| f.0).collect();
    assert_eq!(n, vec![1, 2, 3]);
    (fields[0].1.as_bytes().try_into().unwrap(), fields[1].1.as_bytes().to_vec(), fields[2].1.as_u64())
}

/// Envoy A: a miss in both tiers, answered by the mock; returns what it answered and its put's entry.
fn stored_on_a(cfg: &Rc<Config>, now_ns: u64) -> (String, [u8; 32], Vec<u8>) {
    let a = MemStore::default();
    let (p, d) = begin(cfg, &a, now_ns, &[]);
    let hash = get_of(&d);
    let ((status, h, body, record), put) = resume(p, not_found(), &a, now_ns);
    assert_eq!((status, header(&h, "x-switchyard-cache")), (200, Some("miss")));
    assert_eq!((record.cache, record.cache_fleet, record.cache_tier), (Some("miss"), Some("miss"), None));
    let (key, entry, ttl) = put_fields(&put.expect("a put for the fleet tier"));
    assert_eq!((key, ttl), (hash, 60), "under the lookup's key, for the model's TTL");
    let e = fleet::decode_entry(entry.clone(), &hash, now_ns).unwrap();
    assert_eq!((e.stored_at_ns, e.expires_at_ns), (now_ns, now_ns + 60 * S));
    (text(&body), hash, entry)
}

#[test]
fn a_fleet_hit_is_served_and_fills_the_process_tier() {
    let cfg = config(true, "closed");
    let (answer, hash, entry) = stored_on_a(&cfg, T0);
    // Envoy B, 7 s later: its process tier is empty, the fleet tier has A's entry.
    let b = MemStore::default();
    let (p, d) = begin(&cfg, &b, T0 + 7 * S, &[]);
    assert_eq!(get_of(&d), hash, "the same key on every Envoy");
    let ((status, h, body, record), put) = resume(p, found(&entry), &b, T0 + 7 * S);
    assert_eq!((status, header(&h, "x-switchyard-cache"), header(&h, "age")), (200, Some("hit"), Some("7")));
    assert_eq!(text(&body), answer);
    assert_eq!((record.cache, record.cache_tier, record.cache_fleet), (Some("hit"), Some("fleet"), Some("hit")));
    assert_eq!(record.usage.map(|u| u.completion_tokens), Some(0), "a hit is charged no tokens");
    assert!(record.cache_stored.is_some_and(|(_, bytes)| bytes > 0), "filled into B's process tier");
    assert_eq!(put, None, "a hit is not put back");
    // The next request on B is a process-tier hit: no fleet lookup, the age goes on from A's store.
    let (mut p, d) = begin(&cfg, &b, T0 + 9 * S, &[]);
    let Step::Respond(r) = d.step else { panic!("a local hit: {d:?}") };
    assert_eq!((header(&r.headers, "x-switchyard-cache"), header(&r.headers, "age")), (Some("hit"), Some("9")));
    let record = p.on_done(&ctx(&b, T0 + 9 * S), 0).unwrap();
    assert_eq!((record.cache_tier, record.cache_fleet), (Some("process"), None));
    // Until A's expiry, not 60 s from the fill.
    let (_, d) = begin(&cfg, &b, T0 + 60 * S, &[]);
    assert_eq!(get_of(&d), hash, "expired locally at the entry's own expiry: asked again");
}

#[test]
fn not_found_failures_and_timeouts_are_misses_whatever_the_failure_mode() {
    let cfg = config(true, "closed");
    let cases = [
        (not_found(), "miss"),
        (CalloutOutcome::Failed("no healthy upstream".into()), "unavailable"),
        (CalloutOutcome::grpc(14, Vec::new(), Some("redis: connection refused".into())), "unavailable"),
        (CalloutOutcome::TimedOut, "unavailable"),
        (CalloutOutcome::grpc(0, b"\x0a\x05ab".to_vec(), None), "unavailable"),
    ];
    for (outcome, said) in cases {
        let store = MemStore::default();
        let (p, d) = begin(&cfg, &store, T0, &[]);
        get_of(&d);
        let ((status, h, _, record), put) = resume(p, outcome, &store, T0 + S / 100);
        assert_eq!((status, header(&h, "x-switchyard-cache")), (200, Some("miss")), "{said}");
        assert_eq!((record.cache, record.cache_fleet, record.status), (Some("miss"), Some(said), 200));
        assert!(put.is_some(), "the fresh answer is put in the fleet tier ({said})");
    }
    // An answer that comes after the deadline is a timeout too (the entry is not served).
    let (_, _, entry) = stored_on_a(&cfg, T0);
    let store = MemStore::default();
    let (p, _) = begin(&cfg, &store, T0, &[]);
    let ((_, h, _, record), _) = resume(p, found(&entry), &store, T0 + S);
    assert_eq!((header(&h, "x-switchyard-cache"), record.cache_fleet), (Some("miss"), Some("unavailable")));
}

#[test]
fn corrupt_and_expired_entries_are_misses() {
    let cfg = config(true, "open");
    let (_, hash, entry) = stored_on_a(&cfg, T0);
    let mut bad_answer = b"{\"not\":\"an answer\"}".to_vec();
    bad_answer.extend_from_slice(&entry[entry.len() - fleet::TRAILER..]);
    let other_key = fleet::encode_entry(&[9; 32], &entry[..entry.len() - fleet::TRAILER], T0, T0 + 60 * S);
    let cases = [
        (b"garbage".to_vec(), T0 + S, "corrupt"),
        (Vec::new(), T0 + S, "corrupt"),
        (other_key, T0 + S, "corrupt"),
        (bad_answer, T0 + S, "corrupt"),
        (entry.clone(), T0 + 60 * S, "expired"),
    ];
    for (bytes, now, said) in cases {
        let store = MemStore::default();
        let (p, d) = begin(&cfg, &store, now, &[]);
        assert_eq!(get_of(&d), hash);
        let ((status, h, _, record), put) = resume(p, found(&bytes), &store, now);
        assert_eq!((status, header(&h, "x-switchyard-cache"), record.cache_fleet), (200, Some("miss"), Some(said)));
        assert!(put.is_some(), "the fresh answer replaces it");
    }
}

#[test]
fn no_store_no_cache_and_the_fleet_tier_off() {
    let cfg = config(true, "open");
    let store = MemStore::default();
    // no-store: neither tier is asked, nothing is put.
    let (mut p, d) = begin(&cfg, &store, T0, &[("cache-control", "no-store")]);
    assert!(matches!(d.step, Step::Respond(_)), "no fleet lookup: {d:?}");
    p.on_done(&ctx(&store, T0), 0);
    assert_eq!(p.take_cache_put(), None);
    // no-cache: no lookup, the fresh answer goes to both tiers.
    let (mut p, d) = begin(&cfg, &store, T0, &[("cache-control", "no-cache")]);
    assert!(matches!(d.step, Step::Respond(_)), "no fleet lookup: {d:?}");
    let record = p.on_done(&ctx(&store, T0), 0).unwrap();
    assert_eq!((record.cache, record.cache_fleet), (Some("bypass"), None));
    assert!(p.take_cache_put().is_some());
    // cache.fleet off: a miss is a miss at once, and nothing is put.
    let cfg = config(false, "open");
    let (mut p, d) = begin(&cfg, &MemStore::default(), T0, &[]);
    assert!(matches!(d.step, Step::Respond(_)), "no fleet lookup: {d:?}");
    p.on_done(&ctx(&store, T0), 0);
    assert_eq!(p.take_cache_put(), None);
}
