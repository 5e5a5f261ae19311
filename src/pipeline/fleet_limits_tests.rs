//! The fleet-wide limits stages in the pipeline, with the test playing Envoy and the rate-limit service.

use crate::codec::protobuf::{Reader, Writer};
use crate::config::tests::{demo_key_hash, sample, MapEnv};
use crate::config::Config;
use crate::http::testing::MapHeaders;
use crate::http::{Step, H_CLUSTER};
use crate::limits::tests::MemStore;
use crate::pipeline::callout::{CalloutKind, CalloutOutcome};
use crate::pipeline::{Ctx, Pipeline};
use std::rc::Rc;

fn config(failure_mode: &str) -> Rc<Config> {
    let mut v: serde_json::Value = serde_json::from_str(&sample()).unwrap();
    v["fleet_limits"] = serde_json::json!({"cluster": "ratelimit", "failure_mode": failure_mode, "timeout_ms": 40});
    v["keys"].as_array_mut().unwrap().push(serde_json::json!({
        "id": "fleet-key", "sha256": demo_key_hash("sk-fleet"), "models": ["*"],
        "limits": {"fleet": {
            "requests": {"limit": 10, "window_secs": 60},
            "tokens": {"limit": 100000, "window_secs": 3600},
            "models": {"gpt-4o-mini": {"requests": {"limit": 3}}}
        }}
    }));
    let cfg = Config::parse(v.to_string().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "sk-openai-secret")]));
    Rc::new(cfg.unwrap())
}

const T0: u64 = 1_796_256_000_000_000_000;

fn ctx(store: &MemStore, now_ns: u64) -> Ctx<'_> {
    Ctx { clock: crate::providers::mock::Clock { unix_secs: now_ns / 1_000_000_000, seq: 1 }, now_ns, store }
}

/// A chat request with key `key` up to its body: the decision.
fn start(p: &mut Pipeline, key: &str, store: &MemStore) -> crate::http::Decision {
    let auth = format!("Bearer {key}");
    let h = MapHeaders::new(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("authorization", &auth),
    ]);
    assert_eq!(p.on_request_headers(&h, false).step, Step::NeedBody);
    let body = br#"{"model":"gpt-4o-mini","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;
    p.on_request_body(body, &ctx(store, T0))
}

/// A `RateLimitResponse`: overall code and per-descriptor (code, remaining, reset seconds).
fn verdict(code: u64, statuses: &[(u64, u64, u64)]) -> CalloutOutcome {
    let mut w = Writer::new();
    w.uint(1, code);
    for (c, rem, secs) in statuses {
        w.message(2, |s| {
            s.uint(1, *c).uint(3, *rem).message(4, |d| {
                d.uint(1, *secs);
            });
        });
    }
    CalloutOutcome::grpc(0, w.buf, None)
}

/// The entries of each descriptor of a `RateLimitRequest`, and its hits.
fn descriptors(message: &[u8]) -> Vec<(Vec<(String, String)>, u64)> {
    let mut out = Vec::new();
    for f in Reader::new(message) {
        let (n, v) = f.unwrap();
        if n != 2 {
            continue;
        }
        let (mut entries, mut hits) = (Vec::new(), 0);
        for f in Reader::new(v.as_bytes()) {
            let (n, v) = f.unwrap();
            match n {
                1 => {
                    let kv: Vec<_> = Reader::new(v.as_bytes()).map(|f| f.unwrap().1.as_bytes().to_vec()).collect();
                    entries
                        .push((String::from_utf8(kv[0].clone()).unwrap(), String::from_utf8(kv[1].clone()).unwrap()));
                }
                3 => hits = Reader::new(v.as_bytes()).next().map_or(0, |f| f.unwrap().1.as_u64()),
                _ => {}
            }
        }
        out.push((entries, hits));
    }
    out
}

#[test]
fn a_key_with_fleet_limits_asks_the_service_once_then_goes_on() {
    let cfg = config("closed");
    let store = MemStore::default();
    let mut p = Pipeline::new(cfg.clone());
    let d = start(&mut p, "sk-fleet", &store);
    let Step::Callout(c) = &d.step else { panic!("{d:?}") };
    assert_eq!((c.cluster.as_str(), c.timeout_ms), ("ratelimit", 40));
    let CalloutKind::Grpc { service, method, message, .. } = &c.kind else { panic!() };
    assert_eq!((service.as_str(), method.as_str()), ("envoy.service.ratelimit.v3.RateLimitService", "ShouldRateLimit"));
    let ds = descriptors(message);
    let limits: Vec<_> =
        ds.iter().map(|(e, h)| (e.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","), *h)).collect();
    assert_eq!(limits[0], ("switchyard_key=fleet-key,limit=requests,window_secs=60".to_string(), 1));
    assert!(limits[1].0.starts_with("switchyard_key=fleet-key,limit=tokens,window_secs=3600"));
    assert!(limits[1].1 >= 50, "the reservation covers max_tokens: {}", limits[1].1);
    assert_eq!(limits[2], ("switchyard_key=fleet-key,model=gpt-4o-mini,limit=requests,window_secs=60".to_string(), 1));
    // OK: the request goes on to dispatch.
    let d = p.on_callout(verdict(1, &[(1, 9, 0), (1, 99_000, 0), (1, 2, 0)]), &ctx(&store, T0 + 1_000_000)).unwrap();
    assert_eq!(d.step, Step::Continue);
    assert_eq!(d.set(H_CLUSTER), Some("openai"));
    // The provider reports 7 tokens: the unused reservation goes back.
    let _ = p.on_response_headers(200, Some("application/json"), None, true);
    let body = br#"{"id":"x","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
    let _ = p.on_response_body(body.to_vec(), true, T0 + 2_000_000);
    let record = p.on_done(&ctx(&store, T0 + 3_000_000), 1).unwrap();
    assert_eq!(record.fleet_limits, Some("ok"));
    let settle = p.take_fleet_settlement();
    assert_eq!(settle.len(), 1, "only the token reservation is settled: {settle:?}");
    assert_eq!(settle[0].entries.last().map(|e| (e.0, e.1.as_str())), Some(("op", "refund")));
    assert_eq!(settle[0].hits, limits[1].1 - 7);
}

#[test]
fn over_limit_is_a_429_naming_the_limit_with_retry_after() {
    let cfg = config("closed");
    let store = MemStore::default();
    let mut p = Pipeline::new(cfg);
    start(&mut p, "sk-fleet", &store);
    let d = p.on_callout(verdict(2, &[(1, 5, 0), (1, 5, 0), (2, 0, 17)]), &ctx(&store, T0 + 1)).unwrap();
    let Step::Respond(r) = &d.step else { panic!("{d:?}") };
    assert_eq!(r.status, 429);
    assert!(r.headers.iter().any(|(k, v)| *k == "retry-after" && v == "17"), "{:?}", r.headers);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("requests on model gpt-4o-mini: 3 per 60s"), "{msg}");
    // Envoy passes the local answer through the response side.
    let _ = p.on_response_headers(429, Some("application/json"), None, false);
    let record = p.on_done(&ctx(&store, T0 + 2), 0).unwrap();
    assert_eq!((record.status, record.fleet_limits), (429, Some("over_limit")));
    assert!(p.take_fleet_settlement().is_empty(), "nothing was reserved");
}

#[test]
fn service_failures_follow_the_failure_mode() {
    for (mode, outcome, want) in [
        ("closed", CalloutOutcome::Failed("no healthy upstream".into()), Some(503)),
        ("open", CalloutOutcome::Failed("no healthy upstream".into()), None),
        ("closed", CalloutOutcome::TimedOut, Some(503)),
        ("open", CalloutOutcome::TimedOut, None),
        ("closed", CalloutOutcome::grpc(14, Vec::new(), Some("redis down".into())), Some(503)),
        // Garbage instead of a verdict is a failure too.
        ("closed", CalloutOutcome::grpc(0, b"\xff\xff\xff".to_vec(), None), Some(503)),
        ("open", verdict(0, &[]), None),
    ] {
        let store = MemStore::default();
        let mut p = Pipeline::new(config(mode));
        start(&mut p, "sk-fleet", &store);
        let d = p.on_callout(outcome.clone(), &ctx(&store, T0 + 1)).unwrap();
        match want {
            Some(s) => {
                let Step::Respond(r) = &d.step else { panic!("{mode} {outcome:?}: {d:?}") };
                assert_eq!(r.status, s);
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(v["error"]["code"], "limits_unavailable");
            }
            None => assert_eq!(d.set(H_CLUSTER), Some("openai"), "{mode} {outcome:?}: admitted on the local tier"),
        }
        let record = p.on_done(&ctx(&store, T0 + 2), 0).unwrap();
        assert_eq!(record.fleet_limits, Some("unavailable"));
        assert!(p.take_fleet_settlement().is_empty(), "nothing reserved, nothing to settle");
    }
}

#[test]
fn an_answer_later_than_the_timeout_is_a_failure() {
    let store = MemStore::default();
    let mut p = Pipeline::new(config("closed"));
    start(&mut p, "sk-fleet", &store);
    let d = p.on_callout(verdict(1, &[(1, 1, 0), (1, 1, 0), (1, 1, 0)]), &ctx(&store, T0 + 40_000_000)).unwrap();
    assert!(matches!(&d.step, Step::Respond(r) if r.status == 503), "{d:?}");
}

#[test]
fn a_client_gone_after_admission_returns_the_whole_reservation() {
    let store = MemStore::default();
    let mut p = Pipeline::new(config("closed"));
    let d = start(&mut p, "sk-fleet", &store);
    let Step::Callout(c) = &d.step else { panic!() };
    let CalloutKind::Grpc { message, .. } = &c.kind else { panic!() };
    let reserved = descriptors(message)[1].1;
    p.on_callout(verdict(1, &[(1, 1, 0), (1, 1, 0), (1, 1, 0)]), &ctx(&store, T0 + 1)).unwrap();
    p.on_done(&ctx(&store, T0 + 2), 0).unwrap();
    let settle = p.take_fleet_settlement();
    assert_eq!(settle.iter().map(|d| d.hits).collect::<Vec<_>>(), vec![reserved]);
}

#[test]
fn keys_without_fleet_limits_and_configs_without_a_service_ask_nothing() {
    let store = MemStore::default();
    let mut p = Pipeline::new(config("closed"));
    let d = start(&mut p, "sk-all", &store);
    assert_eq!(d.set(H_CLUSTER), Some("openai"));
    let record = p.on_done(&ctx(&store, T0 + 2), 0).unwrap();
    assert_eq!(record.fleet_limits, None);
    let cfg = Rc::new(Config::parse(sample().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "k")])).unwrap());
    assert_eq!(crate::pipeline::request_stages(&cfg).len(), 5, "no fleet stage without fleet_limits");
    assert_eq!(crate::pipeline::request_stages(&config("open")).len(), 6);
}

#[test]
fn users_and_teams_are_subjects_of_their_own() {
    let mut v = crate::config::identity_tests::with_identity();
    v["fleet_limits"] = serde_json::json!({"cluster": "ratelimit", "timeout_ms": 40});
    v["identity"]["teams_claim"] = "groups".into();
    v["identity"]["user_limits"] = serde_json::json!({"fleet": {"requests": {"limit": 10}}});
    v["models"]["gpt-4o-mini"]["price"] = serde_json::json!({"input": 1, "output": 2});
    v["teams"]["research"]["limits"] = serde_json::json!({"fleet": {"tokens": {"limit": 9000, "window_secs": 3600}, "budget": {"usd": 5, "period": "month"}}});
    let cfg = Rc::new(Config::parse(v.to_string().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "k")])).unwrap());
    let store = MemStore::default();
    let ask = |headers: &[(&str, &str)], meta: Option<Vec<u8>>| {
        let mut h = vec![(":method", "POST"), (":path", "/v1/chat/completions"), ("content-type", "application/json")];
        h.extend_from_slice(headers);
        let mut p = Pipeline::new(cfg.clone());
        let meta = Meta(meta);
        assert_eq!(p.on_request_headers_with(&MapHeaders::new(&h), &meta, false).step, Step::NeedBody);
        let body = br#"{"model":"gpt-4o-mini","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;
        let d = p.on_request_body(body, &ctx(&store, T0));
        (p, d)
    };
    let subjects = |d: &crate::http::Decision| -> Vec<String> {
        let Step::Callout(c) = &d.step else { panic!("{d:?}") };
        let CalloutKind::Grpc { message, .. } = &c.kind else { panic!() };
        descriptors(message)
            .iter()
            .map(|(e, _)| format!("{}/{}", e[0].1, e.iter().find(|(k, _)| k == "limit").unwrap().1))
            .collect()
    };
    let jwt = [("authorization", "Bearer a.b.c")];
    let (mut p, d) = ask(&jwt, Some(crate::identity::tests::verified("alice", &["research"])));
    assert_eq!(subjects(&d), vec!["user:alice/requests", "team:research/tokens", "team:research/budget"]);
    // A key of the team: the team's descriptors (the key has no fleet limits of its own).
    let (_, d) = ask(&[("x-api-key", "sk-mini")], None);
    assert_eq!(subjects(&d), vec!["team:research/tokens", "team:research/budget"]);
    // Over the team's budget: the refusal names the team.
    let d = p.on_callout(verdict(2, &[(1, 9, 0), (1, 9, 0), (2, 0, 60)]), &ctx(&store, T0 + 1)).unwrap();
    let Step::Respond(r) = &d.step else { panic!("{d:?}") };
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["message"], "You exceeded the fleet-wide budget of team 'research'.");
    // Admitted: the settlement names every subject that holds something.
    let (mut p, _) = ask(&jwt, Some(crate::identity::tests::verified("bob", &["research"])));
    p.on_callout(verdict(1, &[(1, 9, 0), (1, 9, 0), (1, 9, 0)]), &ctx(&store, T0 + 1)).unwrap();
    p.on_done(&ctx(&store, T0 + 2), 0).unwrap();
    let settle: Vec<String> = p.take_fleet_settlement().iter().map(|d| d.entries[0].1.clone()).collect();
    // The team's tokens and money held go back (nothing was used; requests are never settled).
    assert_eq!(settle, vec!["team:research", "team:research"]);
}

struct Meta(Option<Vec<u8>>);

impl crate::identity::Verified for Meta {
    fn metadata(&self) -> Option<Vec<u8>> {
        self.0.clone()
    }
}
