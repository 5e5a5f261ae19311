//! The response cache's fleet tier (`switchyard.cache.v1.Cache`) of the built service over real gRPC,
//! with real redis-server processes: Get and Put, the Redis key and its TTL, refusals, size bounds, Redis
//! failures, and a Redis of its own for the cache (`--cache-redis`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use switchyard_limits::cache_proto::cache_client::CacheClient;
use switchyard_limits::cache_proto::{GetRequest, PutRequest};
use tonic::transport::Channel;
use tonic::Code;

fn key(n: u8) -> Vec<u8> {
    let mut k = vec![0x5a; 32];
    k[0] = n;
    k
}

fn redis_name(k: &[u8]) -> String {
    format!("sy:{{c:{}}}", k.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

async fn get(c: &mut CacheClient<Channel>, k: &[u8]) -> Result<Option<Vec<u8>>, tonic::Status> {
    let r = c.get(GetRequest { key: k.to_vec() }).await?.into_inner();
    Ok(r.found.then_some(r.entry))
}

async fn put(c: &mut CacheClient<Channel>, k: &[u8], entry: &[u8], ttl_secs: u32) -> Result<(), tonic::Status> {
    c.put(PutRequest { key: k.to_vec(), entry: entry.to_vec(), ttl_secs }).await.map(|_| ())
}

fn ttl(redis: &Redis, name: &str) -> i64 {
    redis::cmd("TTL").arg(name).query(&mut redis.conn()).unwrap()
}

#[tokio::test]
async fn put_then_get_under_the_key_with_its_ttl() {
    let redis = Redis::start();
    let svc = Service::start(&redis.url(), &[]);
    let mut c = svc.cache_client().await;
    assert_eq!(get(&mut c, &key(1)).await.unwrap(), None);
    put(&mut c, &key(1), b"an answer\x00with any bytes", 120).await.unwrap();
    assert_eq!(get(&mut c, &key(1)).await.unwrap().as_deref(), Some(&b"an answer\x00with any bytes"[..]));
    assert_eq!(get(&mut c, &key(2)).await.unwrap(), None, "another key");
    // The Redis key: the hex of the cache key, hash-tagged; it expires with the entry.
    let t = ttl(&redis, &redis_name(&key(1)));
    assert!((115..=120).contains(&t), "{t}");
    // A put replaces the entry and its TTL; TTLs past 30 days are cut to 30 days.
    put(&mut c, &key(1), b"newer", u32::MAX).await.unwrap();
    assert_eq!(get(&mut c, &key(1)).await.unwrap().as_deref(), Some(&b"newer"[..]));
    let t = ttl(&redis, &redis_name(&key(1)));
    assert!((2_592_000 - 5..=2_592_000).contains(&t), "{t}");
    // The entry really goes away with its TTL.
    put(&mut c, &key(3), b"short", 1).await.unwrap();
    assert!(get(&mut c, &key(3)).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(get(&mut c, &key(3)).await.unwrap(), None);
    let (_, m) = svc.get("/metrics");
    assert_eq!(metric(&m, "switchyard_limits_cache_gets_total{result=\"hit\"}"), 3.0, "{m}");
    assert_eq!(metric(&m, "switchyard_limits_cache_gets_total{result=\"miss\"}"), 3.0, "{m}");
    assert_eq!(metric(&m, "switchyard_limits_cache_puts_total{result=\"ok\"}"), 3.0, "{m}");
    assert_eq!(
        metric(&m, "switchyard_limits_cache_put_bytes_total"),
        (b"an answer\x00with any bytes".len() + 5 + 5) as f64,
        "{m}"
    );
}

#[tokio::test]
async fn bad_keys_ttls_and_sizes_are_invalid_arguments() {
    let redis = Redis::start();
    let svc = Service::start(&redis.url(), &["--cache-max-entry-bytes", "1000"]);
    let mut c = svc.cache_client().await;
    for k in [vec![], vec![1; 31], vec![1; 33]] {
        assert_eq!(get(&mut c, &k).await.unwrap_err().code(), Code::InvalidArgument, "{}", k.len());
        let e = put(&mut c, &k, b"x", 60).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("32 bytes"), "{}", e.message());
    }
    assert_eq!(put(&mut c, &key(1), b"x", 0).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(put(&mut c, &key(1), b"", 60).await.unwrap_err().code(), Code::InvalidArgument);
    let e = put(&mut c, &key(1), &[7; 1001], 60).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("1001") && e.message().contains("1000"), "{}", e.message());
    let n: i64 = redis::cmd("DBSIZE").query(&mut redis.conn()).unwrap();
    assert_eq!(n, 0, "nothing refused reached Redis");
    put(&mut c, &key(1), &[7; 1000], 60).await.unwrap();
    let (_, m) = svc.get("/metrics");
    assert_eq!(metric(&m, "switchyard_limits_cache_puts_total{result=\"refused\"}"), 6.0, "{m}");
    assert_eq!(metric(&m, "switchyard_limits_cache_puts_total{result=\"ok\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "switchyard_limits_cache_gets_total{result=\"error\"}"), 3.0, "{m}");
}

#[tokio::test]
async fn entries_up_to_the_default_4_mib_go_through() {
    // gRPC's usual 4 MiB message bound would refuse a 4 MiB entry with its key: the service allows more.
    let redis = Redis::start();
    let svc = Service::start(&redis.url(), &[]);
    let mut c = svc.cache_client().await;
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    put(&mut c, &key(1), &big, 60).await.unwrap();
    assert_eq!(get(&mut c, &key(1)).await.unwrap().as_deref(), Some(&big[..]));
    let e = put(&mut c, &key(2), &[0; (4 << 20) + 1], 60).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

async fn cache_unavailable_fast(c: &mut CacheClient<Channel>) {
    for _ in 0..3 {
        let start = Instant::now();
        assert_eq!(get(c, &key(1)).await.unwrap_err().code(), Code::Unavailable);
        assert_eq!(put(c, &key(1), b"x", 60).await.unwrap_err().code(), Code::Unavailable);
        assert!(start.elapsed() < Duration::from_millis(500), "took {:?}", start.elapsed());
    }
}

async fn cache_recovers(c: &mut CacheClient<Channel>) {
    let start = Instant::now();
    while put(c, &key(9), b"back", 60).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(5), "no recovery within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(c, &key(9)).await.unwrap().as_deref(), Some(&b"back"[..]));
}

#[tokio::test]
async fn redis_down_or_frozen_is_unavailable_fast() {
    let mut redis = Redis::start();
    let svc = Service::start(&redis.url(), &["--redis-timeout-ms", "50"]);
    let mut c = svc.cache_client().await;
    put(&mut c, &key(1), b"x", 60).await.unwrap();
    redis.stop();
    cache_unavailable_fast(&mut c).await;
    redis.restart();
    cache_recovers(&mut c).await;
    redis.pause();
    cache_unavailable_fast(&mut c).await;
    redis.resume();
    cache_recovers(&mut c).await;
    let (_, m) = svc.get("/metrics");
    assert!(metric(&m, "switchyard_limits_cache_gets_total{result=\"error\"}") >= 6.0, "{m}");
    assert!(metric(&m, "switchyard_limits_cache_puts_total{result=\"error\"}") >= 6.0, "{m}");
    assert_eq!(metric(&m, "switchyard_limits_redis_outages_total"), 2.0, "{m}");
}

#[tokio::test]
async fn a_redis_of_its_own_for_the_cache() {
    let limits_redis = Redis::start();
    let mut cache_redis = Redis::start();
    let svc = Service::start(&limits_redis.url(), &["--cache-redis", &cache_redis.url()]);
    let mut c = svc.cache_client().await;
    let mut l = svc.client().await;
    put(&mut c, &key(1), b"entry", 60).await.unwrap();
    call(&mut l, vec![rate("k", "requests", 10, 60, None, None)]).await.unwrap();
    let exists = |r: &Redis, name: &str| -> i64 { redis::cmd("EXISTS").arg(name).query(&mut r.conn()).unwrap() };
    assert_eq!(exists(&cache_redis, &redis_name(&key(1))), 1);
    assert_eq!(exists(&limits_redis, &redis_name(&key(1))), 0, "no cache entry in the limits' Redis");
    assert_eq!(exists(&limits_redis, "sy:{k}:r:requests:60"), 1);
    assert_eq!(exists(&cache_redis, "sy:{k}:r:requests:60"), 0);
    // The cache's Redis down: the cache is unavailable, the limits and /healthz are not.
    cache_redis.stop();
    cache_unavailable_fast(&mut c).await;
    assert_eq!(call(&mut l, vec![rate("k", "requests", 10, 60, None, None)]).await.unwrap().overall_code, OK);
    assert_eq!(svc.get("/healthz").0, 200);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !svc.log_text().contains("cache redis is unavailable") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = svc.log_text();
    assert_eq!(log.matches("cache redis is unavailable").count(), 1, "{log}");
    let (_, m) = svc.get("/metrics");
    assert!(m.contains("switchyard_limits_cache_redis_up 0\n"), "{m}");
    assert!(m.contains("switchyard_limits_redis_up 1\n"), "{m}");
    cache_redis.restart();
    cache_recovers(&mut c).await;
}
