//! The built service over real gRPC, with a real redis-server: admission all or nothing, over-limit
//! statuses and reset, settlement, budgets, standard descriptors with rules, Redis failures, admin HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use switchyard::limits::{period_of, Period};
use tonic::Code;

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn this_month() -> String {
    format!("month:{}", period_of(Period::Month, now_secs()).0)
}

fn today() -> String {
    format!("day:{}", period_of(Period::Day, now_secs()).0)
}

#[tokio::test]
async fn admission_is_all_or_nothing() {
    let redis = Redis::start();
    let svc = Service::start(&redis.url(), &[]);
    let mut c = svc.client().await;
    let both = |tokens: u64| {
        vec![rate("k1", "requests", 5, 60, Some(1), None), rate("k1", "tokens", 100, 60, Some(tokens), None)]
    };
    for expected_requests_left in [4, 3] {
        let r = call(&mut c, both(40)).await.unwrap();
        assert_eq!(r.overall_code, OK);
        assert_eq!(codes(&r)[0], (OK, expected_requests_left));
    }
    // 80 tokens taken: 40 more do not fit, so neither descriptor takes anything.
    let r = call(&mut c, both(40)).await.unwrap();
    assert_eq!(r.overall_code, OVER);
    assert_eq!(codes(&r), vec![(OK, 3), (OVER, 20)]);
    assert!(reset(&r, 1) > Duration::from_secs(11) && reset(&r, 1) <= Duration::from_secs(12), "{:?}", reset(&r, 1));
    let limit = r.statuses[1].current_limit.clone().unwrap();
    assert_eq!((limit.requests_per_unit, limit.unit), (100, 2));
    // The refused call took no request: the next one leaves 2, not 1.
    let r = call(&mut c, both(20)).await.unwrap();
    assert_eq!(codes(&r), vec![(OK, 2), (OK, 0)]);
    // The same bucket twice in one call counts twice, and all or nothing still holds.
    let twice = vec![rate("k2", "requests", 3, 60, Some(2), None), rate("k2", "requests", 3, 60, Some(2), None)];
    let r = call(&mut c, twice.clone()).await.unwrap();
    assert_eq!(r.overall_code, OVER);
    let r = call(&mut c, vec![twice[0].clone()]).await.unwrap();
    assert_eq!(codes(&r), vec![(OK, 1)]);
}

#[tokio::test]
async fn over_limit_then_reset() {
    let redis = Redis::start();
    let svc = Service::start(&redis.url(), &[]);
    let mut c = svc.client().await;
    let d = || vec![rate("k", "requests", 2, 1, None, None)];
    assert_eq!(call(&mut c, d()).await.unwrap().overall_code, OK);
    assert_eq!(call(&mut c, d()).await.unwrap().overall_code, OK);
    let r = call(&mut c, d()).await.unwrap();
    assert_eq!(r.overall_code, OVER);
    let wait = reset(&r, 0);
    assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500), "{wait:?}");
    assert_eq!(r.statuses[0].current_limit.as_ref().map(|l| l.unit), Some(1));
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let r = call(&mut c, d()).await.unwrap();
    assert_eq!(codes(&r), vec![(OK, 0)]);
}

#[tokio::test]
async fn refund_and_charge() {
    let redis = Redis::start();
    let svc = Service::start(&redis.url(), &[]);
    let mut c = svc.client().await;
    let tok = |n: u64, op: Option<&str>| vec![rate("k", "tokens", 100, 3600, Some(n), op)];
    assert_eq!(codes(&call(&mut c, tok(100, None)).await.unwrap()), vec![(OK, 0)]);
    assert_eq!(call(&mut c, tok(1, None)).await.unwrap().overall_code, OVER);
    // The request used 70 of its 100: 30 go back.
    let r = call(&mut c, tok(30, Some("refund"))).await.unwrap();
    assert_eq!(codes(&r), vec![(OK, 30)]);
    assert_eq!(codes(&call(&mut c, tok(30, None)).await.unwrap()), vec![(OK, 0)]);
    // Another used 50 more than it reserved: charged even past the limit, always OK.
    let r = call(&mut c, tok(50, Some("charge"))).await.unwrap();
    assert_eq!(r.overall_code, OK);
    let r = call(&mut c, tok(1, None)).await.unwrap();
    assert_eq!(r.overall_code, OVER);
    // 151 units ahead of a 100-unit window at 36 s each: 51 intervals to wait.
    let wait = reset(&r, 0);
    assert!(wait > Duration::from_secs(51 * 36 - 5) && wait <= Duration::from_secs(51 * 36), "{wait:?}");
    // A batch of 500 settlements in one call, each answered OK, in order.
    let batch: Vec<_> = (0..500).map(|i| rate(&format!("b{i}"), "tokens", 10, 60, Some(1), Some("refund"))).collect();
    let r = call(&mut c, batch).await.unwrap();
    assert_eq!((r.overall_code, r.statuses.len()), (OK, 500));
    assert!(r.statuses.iter().all(|s| s.code == OK && s.limit_remaining == 10));
    let (_, m) = svc.get("/metrics");
    assert!(m.contains("switchyard_limits_settlements_total{op=\"refund\"} 501\n"), "{m}");
    assert!(m.contains("switchyard_limits_settlements_total{op=\"charge\"} 1\n"), "{m}");
}

#[tokio::test]
async fn budgets_admit_refuse_settle_and_report() {
    let redis = Redis::start();
    let svc = Service::start(&redis.url(), &[]);
    let mut c = svc.client().await;
    let month = this_month();
    let b = |amount: u64, op: Option<&str>| vec![budget("team a", &month, 1_000_000, amount, op)];
    assert_eq!(codes(&call(&mut c, b(600_000, None)).await.unwrap()), vec![(OK, 400_000)]);
    let r = call(&mut c, b(500_000, None)).await.unwrap();
    assert_eq!((r.overall_code, codes(&r)), (OVER, vec![(OVER, 400_000)]));
    assert!(reset(&r, 0) > Duration::ZERO && reset(&r, 0) <= Duration::from_secs(31 * 86_400));
    assert!(r.statuses[0].current_limit.is_none());
    assert_eq!(call(&mut c, b(400_000, None)).await.unwrap().overall_code, OK);
    // Absurd amounts are refused, never wrapped around.
    assert_eq!(call(&mut c, b(u64::MAX, None)).await.unwrap().overall_code, OVER);
    let huge = vec![rate("team a", "tokens", 100, 60, Some(u64::MAX), None)];
    assert_eq!(call(&mut c, huge).await.unwrap().overall_code, OVER);
    // Spent exactly the budget: 0 is still admitted, 1 micro-dollar is not.
    assert_eq!(call(&mut c, b(0, None)).await.unwrap().overall_code, OK);
    assert_eq!(call(&mut c, b(1, None)).await.unwrap().overall_code, OVER);
    // Settlement: charged past the budget, then refunded.
    assert_eq!(call(&mut c, b(500_000, Some("charge"))).await.unwrap().overall_code, OK);
    assert_eq!(call(&mut c, b(0, None)).await.unwrap().overall_code, OK);
    assert_eq!(codes(&call(&mut c, b(1_000_000, Some("refund"))).await.unwrap()), vec![(OK, 500_000)]);
    // A budget and a rate in one call: the budget refuses, the rate takes nothing.
    let mixed =
        vec![rate("team a", "requests", 10, 60, None, None), budget("team a", &month, 1_000_000, 600_000, None)];
    let r = call(&mut c, mixed).await.unwrap();
    assert_eq!(codes(&r), vec![(OK, 10), (OVER, 500_000)]);
    // A daily budget of the same key, then the report.
    let day = today();
    call(&mut c, vec![budget("team a", &day, 2_000_000, 250_000, None)]).await.unwrap();
    let (status, body) = svc.get("/spend?key=team%20a");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["key"], "team a");
    let budgets = v["budgets"].as_array().unwrap();
    assert_eq!(budgets.len(), 2, "{body}");
    assert_eq!(budgets[0]["period"], day.as_str());
    assert_eq!(budgets[0]["spent_micros"], 250_000);
    assert_eq!(budgets[1]["period"], month.as_str());
    assert_eq!(budgets[1]["spent_micros"], 500_000);
    assert_eq!(budgets[1]["max_micros"], 1_000_000);
    assert_eq!(budgets[1]["spent_usd"], 0.5);
    assert_eq!(budgets[1]["remaining_usd"], 0.5);
    // The keys: tagged by the id, kept until 10 days after the month (2 after the day).
    let mut con = redis.conn();
    let ttl: i64 = redis::cmd("TTL").arg(format!("sy:{{team%20a}}:b:{month}")).query(&mut con).unwrap();
    assert!(ttl > 10 * 86_400 && ttl <= 41 * 86_400, "{ttl}");
    let ttl: i64 = redis::cmd("TTL").arg(format!("sy:{{team%20a}}:b:{day}")).query(&mut con).unwrap();
    assert!(ttl > 2 * 86_400 && ttl <= 3 * 86_400, "{ttl}");
    let ttl: i64 = redis::cmd("TTL").arg("sy:{team%20a}:budgets").query(&mut con).unwrap();
    assert!(ttl > 10 * 86_400 && ttl <= 41 * 86_400, "{ttl}");
    // A budget of a period long over is not kept (its expiry has passed).
    call(&mut c, vec![budget("team a", "day:20000", 2_000_000, 1, None)]).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&svc.get("/spend?key=team%20a").1).unwrap();
    assert_eq!(v["budgets"].as_array().unwrap().len(), 2);
    assert_eq!(svc.get("/spend?key=nobody"), (200, r#"{"budgets":[],"key":"nobody"}"#.to_string()));
    assert_eq!(svc.get("/spend").0, 400);
}

#[tokio::test]
async fn standard_descriptors_follow_the_rules_file() {
    let redis = Redis::start();
    let rules = std::env::temp_dir().join(format!("switchyard-limits-rules-{}.yaml", std::process::id()));
    std::fs::write(
        &rules,
        "domain: edge\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 3, name: per-user}\n  \
         - key: user\n    value: vip\n    unlimited: true\n",
    )
    .unwrap();
    let svc = Service::start(&redis.url(), &["--rules", rules.to_str().unwrap()]);
    let mut c = svc.client().await;
    let user = |u: &str| request("edge", vec![desc(&[("user", u)], None, None)]);
    for left in [2, 1, 0] {
        let r = c.should_rate_limit(user("bob")).await.unwrap().into_inner();
        assert_eq!(codes(&r), vec![(OK, left)]);
        let l = r.statuses[0].current_limit.clone().unwrap();
        assert_eq!((l.name.as_str(), l.requests_per_unit, l.unit), ("per-user", 3, 2));
    }
    let r = c.should_rate_limit(user("bob")).await.unwrap().into_inner();
    assert_eq!((r.overall_code, codes(&r)), (OVER, vec![(OVER, 0)]));
    assert!(reset(&r, 0) <= Duration::from_secs(20));
    // Other values count apart; vip is unlimited; an unknown descriptor has no limit.
    assert_eq!(c.should_rate_limit(user("alice")).await.unwrap().into_inner().overall_code, OK);
    for _ in 0..5 {
        let r = c.should_rate_limit(user("vip")).await.unwrap().into_inner();
        assert_eq!(r.overall_code, OK);
        assert!(r.statuses[0].current_limit.is_none());
    }
    let r = c.should_rate_limit(request("edge", vec![desc(&[("path", "/x")], None, None)])).await.unwrap();
    assert_eq!(r.into_inner().overall_code, OK);
    // A descriptor's own limit override (1 per second) wins over the rules.
    let own = || request("edge", vec![desc(&[("path", "/x")], Some((1, 1)), None)]);
    assert_eq!(c.should_rate_limit(own()).await.unwrap().into_inner().overall_code, OK);
    assert_eq!(c.should_rate_limit(own()).await.unwrap().into_inner().overall_code, OVER);
    let (_, m) = svc.get("/metrics");
    assert!(m.contains("switchyard_limits_descriptors_total{kind=\"standard\"} 7\n"), "{m}");
    assert!(m.contains("switchyard_limits_descriptors_total{kind=\"unlimited\"} 6\n"), "{m}");
    assert!(m.contains("switchyard_limits_requests_total{result=\"over\"} 2\n"), "{m}");
    let _ = std::fs::remove_file(rules);
}

#[tokio::test]
async fn malformed_switchyard_descriptors_are_invalid_arguments() {
    let redis = Redis::start();
    let svc = Service::start(&redis.url(), &[]);
    let mut c = svc.client().await;
    let bad = desc(&[("switchyard_key", "k"), ("limit", "requests")], Some((1, 2)), None);
    let e = call(&mut c, vec![bad]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("descriptor 0"), "{}", e.message());
    // No descriptors at all: OK with no statuses.
    let r = call(&mut c, vec![]).await.unwrap();
    assert_eq!((r.overall_code, r.statuses.len()), (OK, 0));
}

async fn unavailable_fast(
    c: &mut switchyard_limits::proto::rate_limit_service_client::RateLimitServiceClient<tonic::transport::Channel>,
) {
    for _ in 0..5 {
        let start = Instant::now();
        let e = call(c, vec![rate("k", "requests", 100, 60, None, None)]).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(start.elapsed() < Duration::from_millis(250), "took {:?}", start.elapsed());
    }
}

async fn recovers(
    c: &mut switchyard_limits::proto::rate_limit_service_client::RateLimitServiceClient<tonic::transport::Channel>,
) {
    let start = Instant::now();
    loop {
        match call(c, vec![rate("k", "requests", 100, 60, None, None)]).await {
            Ok(r) => {
                assert_eq!(r.overall_code, OK);
                return;
            }
            Err(e) => assert_eq!(e.code(), Code::Unavailable),
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no recovery within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_down_or_frozen_is_unavailable_fast_and_recovers() {
    let mut redis = Redis::start();
    let svc = Service::start(&redis.url(), &["--redis-timeout-ms", "50"]);
    let mut c = svc.client().await;
    assert_eq!(call(&mut c, vec![rate("k", "requests", 100, 60, None, None)]).await.unwrap().overall_code, OK);
    assert_eq!(svc.get("/healthz").0, 200);

    // Down: connections refused.
    redis.stop();
    unavailable_fast(&mut c).await;
    assert_eq!(svc.get("/healthz").0, 503);
    redis.restart();
    recovers(&mut c).await;
    assert_eq!(svc.get("/healthz").0, 200);

    // Frozen (SIGSTOP): the connection stays open and nothing answers; the timeout answers instead.
    redis.pause();
    unavailable_fast(&mut c).await;
    redis.resume();
    recovers(&mut c).await;

    // One log line per episode, not per failed request.
    let deadline = Instant::now() + Duration::from_secs(3);
    while svc.log_text().matches("redis is back").count() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = svc.log_text();
    assert_eq!(log.matches("redis is unavailable").count(), 2, "{log}");
    assert_eq!(log.matches("redis is back").count(), 2, "{log}");
    let (_, m) = svc.get("/metrics");
    assert!(m.contains("switchyard_limits_redis_outages_total 2\n"), "{m}");
    assert!(m.contains("switchyard_limits_redis_up 1\n"), "{m}");
    assert!(metric(&m, "switchyard_limits_requests_total{result=\"error\"}") >= 10.0, "{m}");
    assert!(metric(&m, "switchyard_limits_redis_errors_total") >= 10.0, "{m}");
}

#[tokio::test]
async fn starts_while_redis_is_down() {
    let mut redis = Redis::start();
    redis.stop();
    let svc = Service::start(&redis.url(), &[]);
    let mut c = svc.client().await;
    unavailable_fast(&mut c).await;
    assert_eq!(svc.get("/healthz").0, 503);
    redis.restart();
    recovers(&mut c).await;
}

#[tokio::test]
async fn state_survives_a_service_restart() {
    let redis = Redis::start();
    let month = this_month();
    {
        let svc = Service::start(&redis.url(), &[]);
        let mut c = svc.client().await;
        call(&mut c, vec![budget("k", &month, 10_000_000, 1_234_567, None)]).await.unwrap();
        call(&mut c, vec![rate("k", "requests", 2, 60, None, None)]).await.unwrap();
    }
    let svc = Service::start(&redis.url(), &[]);
    let mut c = svc.client().await;
    let r =
        call(&mut c, vec![rate("k", "requests", 2, 60, None, None), budget("k", &month, 10_000_000, 0, None)]).await;
    assert_eq!(codes(&r.unwrap()), vec![(OK, 0), (OK, 8_765_433)]);
    let (_, body) = svc.get("/spend?key=k");
    assert!(body.contains("\"spent_micros\":1234567"), "{body}");
}

#[tokio::test]
async fn a_script_error_is_unavailable_but_not_an_outage() {
    let redis = Redis::start();
    let svc = Service::start(&redis.url(), &[]);
    let mut c = svc.client().await;
    // Someone else's value of another type under the bucket's name: the script fails on it.
    let mut con = redis.conn();
    let _: () = redis::cmd("RPUSH").arg("sy:{k}:r:requests:60").arg("x").query(&mut con).unwrap();
    for _ in 0..3 {
        let e = call(&mut c, vec![rate("k", "requests", 10, 60, None, None)]).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
    }
    // Other keys work; Redis is healthy; one log line, no outage.
    assert_eq!(call(&mut c, vec![rate("other", "requests", 10, 60, None, None)]).await.unwrap().overall_code, OK);
    assert_eq!(svc.get("/healthz").0, 200);
    let log = svc.log_text();
    assert_eq!(log.matches("redis error answer").count(), 1, "{log}");
    assert_eq!(log.matches("redis is unavailable").count(), 0, "{log}");
    let (_, m) = svc.get("/metrics");
    assert_eq!(metric(&m, "switchyard_limits_redis_errors_total"), 3.0, "{m}");
    assert_eq!(metric(&m, "switchyard_limits_redis_outages_total"), 0.0, "{m}");
    assert_eq!(metric(&m, "switchyard_limits_requests_total{result=\"error\"}"), 3.0, "{m}");
}
