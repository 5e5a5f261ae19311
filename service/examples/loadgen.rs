//! Load generator for the cost model in service/README.md: admission calls per second and their latency,
//! either straight to Redis (the script alone, EVALSHA on one multiplexed connection) or through the
//! service (gRPC ShouldRateLimit on one HTTP/2 channel).
//!
//! cargo run --release -p switchyard-limits --example loadgen -- \
//!     script|grpc TARGET [--concurrency 32] [--seconds 5] [--keys 1000] [--descriptors 3]
//!
//! TARGET: a Redis URL (script) or the service's gRPC address `http://127.0.0.1:8081` (grpc). Each call
//! admits `--descriptors` of: requests/60 s, tokens/60 s per model, a monthly budget, for a key drawn
//! from `--keys` ids (so calls rarely contend on one key, as in a fleet with many keys).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::limits::{period_of, Period};
use switchyard_limits::plan::{self, Item, Planned};
use switchyard_limits::proto::rate_limit_descriptor::{Entry, RateLimitOverride};
use switchyard_limits::proto::rate_limit_service_client::RateLimitServiceClient;
use switchyard_limits::proto::{RateLimitDescriptor, RateLimitRequest};
use switchyard_limits::rules::Rules;
use switchyard_limits::script;

fn d(pairs: &[(&str, String)], limit: Option<u32>, hits: u64) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: pairs.iter().map(|(k, v)| Entry { key: k.to_string(), value: v.clone() }).collect(),
        limit: limit.map(|requests_per_unit| RateLimitOverride { requests_per_unit, unit: 2 }),
        hits_addend: Some(hits),
    }
}

fn request(key: u64, n: usize) -> RateLimitRequest {
    let id = format!("key-{key}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let month = format!("month:{}", period_of(Period::Month, now).0);
    let all = [
        d(
            &[("switchyard_key", id.clone()), ("limit", "requests".into()), ("window_secs", "60".into())],
            Some(1_000_000),
            1,
        ),
        d(
            &[
                ("switchyard_key", id.clone()),
                ("model", "gpt-4o".into()),
                ("limit", "tokens".into()),
                ("window_secs", "60".into()),
            ],
            Some(4_000_000_000),
            500,
        ),
        d(
            &[
                ("switchyard_key", id),
                ("limit", "budget".into()),
                ("period", month),
                ("max_micros", "1000000000000000".into()),
            ],
            None,
            10,
        ),
    ];
    RateLimitRequest { domain: "switchyard".into(), descriptors: all.into_iter().take(n).collect(), hits_addend: 0 }
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].parse().expect(name)).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, target) = (args.first().cloned().unwrap_or_default(), args.get(1).cloned().unwrap_or_default());
    let concurrency = arg(&args, "--concurrency", 32);
    let seconds = arg(&args, "--seconds", 5);
    let keys = arg(&args, "--keys", 1000).max(1);
    let n = arg(&args, "--descriptors", 3).clamp(1, 3) as usize;

    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let redis = if mode == "script" {
        Some(redis::Client::open(target.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap())
    } else if mode == "grpc" {
        None
    } else {
        panic!("usage: loadgen script|grpc TARGET [--concurrency N] [--seconds S] [--keys K] [--descriptors 1-3]");
    };
    let channel = if mode == "grpc" {
        Some(tonic::transport::Endpoint::new(target.clone()).unwrap().connect().await.unwrap())
    } else {
        None
    };

    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (done, count, errors, latencies) = (done.clone(), count.clone(), errors.clone(), latencies.clone());
        let mut redis = redis.clone();
        let mut grpc = channel.clone().map(RateLimitServiceClient::new);
        tasks.push(tokio::spawn(async move {
            let s = script::script();
            let mut lat = Vec::new();
            let mut i = t * 7_919;
            while !done.load(Ordering::Relaxed) {
                i = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let req = request((i >> 33) % keys, n);
                let t0 = Instant::now();
                let ok = if let Some(c) = redis.as_mut() {
                    let planned = plan::plan(&req, "switchyard", &Rules::default()).unwrap();
                    let items: Vec<&Item> = planned
                        .iter()
                        .filter_map(|e| if let Planned::Script(i) = &e.planned { Some(i) } else { None })
                        .collect();
                    script::invocation(&s, &items, None).invoke_async::<Vec<i64>>(c).await.is_ok()
                } else if let Some(g) = grpc.as_mut() {
                    g.should_rate_limit(req).await.is_ok()
                } else {
                    false
                };
                lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if ok { &count } else { &errors }.fetch_add(1, Ordering::Relaxed);
            }
            latencies.lock().unwrap().extend(lat);
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_unstable();
    let pct =
        |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "{mode}: {n} descriptor(s), concurrency {concurrency}: {:.0} calls/s ({} ok, {} errors in {elapsed:.1} s), \
         latency p50 {} us, p99 {} us",
        count.load(Ordering::Relaxed) as f64 / elapsed,
        count.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        pct(0.5),
        pct(0.99)
    );
}
