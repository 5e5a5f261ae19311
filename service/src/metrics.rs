//! Prometheus metrics, kept in atomics and written as text by `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::plan::Class;

/// Upper bounds of the Redis latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

/// The health of one Redis connection: errors, outage episodes, up or down, command latency.
#[derive(Debug, Default)]
pub struct RedisHealth {
    errors: AtomicU64,
    outages: AtomicU64,
    up: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
}

impl RedisHealth {
    pub fn new() -> Self {
        let h = Self::default();
        h.up.store(1, Relaxed);
        h
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// Redis went down (`false`, counted as an outage) or came back (`true`).
    pub fn set_up(&self, up: bool) {
        self.up.store(up as u64, Relaxed);
        if !up {
            self.outages.fetch_add(1, Relaxed);
        }
    }

    pub fn latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_ns.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// The series under `name` (`switchyard_limits_redis` or `switchyard_limits_cache_redis`); `what`
    /// names the Redis in the help texts.
    fn render(&self, o: &mut String, name: &str, what: &str) {
        let g = |a: &AtomicU64| a.load(Relaxed);
        let _ = writeln!(o, "# HELP {name}_errors_total Commands to {what} that failed or timed out.");
        let _ = writeln!(o, "# TYPE {name}_errors_total counter");
        let _ = writeln!(o, "{name}_errors_total {}", g(&self.errors));
        let _ = writeln!(o, "# HELP {name}_outages_total Episodes of {what} being unreachable.");
        let _ = writeln!(o, "# TYPE {name}_outages_total counter");
        let _ = writeln!(o, "{name}_outages_total {}", g(&self.outages));
        let _ = writeln!(o, "# HELP {name}_up 1 while {what} answers, 0 during an outage.");
        let _ = writeln!(o, "# TYPE {name}_up gauge");
        let _ = writeln!(o, "{name}_up {}", g(&self.up));
        let _ = writeln!(o, "# HELP {name}_seconds Latency of commands to {what} (scripts and reads).");
        let _ = writeln!(o, "# TYPE {name}_seconds histogram");
        for (b, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(o, "{name}_seconds_bucket{{le=\"{bound}\"}} {}", g(b));
        }
        let count = g(&self.latency_count);
        let _ = writeln!(o, "{name}_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(o, "{name}_seconds_sum {}", g(&self.latency_sum_ns) as f64 / 1e9);
        let _ = writeln!(o, "{name}_seconds_count {count}");
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests_ok: AtomicU64,
    requests_over: AtomicU64,
    requests_error: AtomicU64,
    descriptors: [AtomicU64; 4],
    settle_refund: AtomicU64,
    settle_charge: AtomicU64,
    /// The Redis of the limits (and of the cache, unless it has its own).
    pub redis: Arc<RedisHealth>,
    /// The cache's own Redis (`--cache-redis`), when it is another one.
    pub cache_redis: Option<Arc<RedisHealth>>,
    cache_gets: [AtomicU64; 3],
    cache_puts: [AtomicU64; 3],
    cache_put_bytes: AtomicU64,
}

/// How a gRPC call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Over,
    Error,
}

/// How a cache `Get` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetOutcome {
    Hit,
    Miss,
    /// Redis failed or the request was invalid.
    Error,
}

/// How a cache `Put` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Ok,
    /// INVALID_ARGUMENT: not a 32-byte key, TTL 0, an empty entry or one over the size bound.
    Refused,
    /// Redis failed (UNAVAILABLE).
    Error,
}

fn class_index(c: Class) -> usize {
    match c {
        Class::Rate => 0,
        Class::Budget => 1,
        Class::Standard => 2,
        Class::Unlimited => 3,
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self { redis: Arc::new(RedisHealth::new()), ..Self::default() }
    }

    /// With the cache's own Redis (`--cache-redis`): its health is exported apart.
    pub fn with_cache_redis(mut self) -> Self {
        self.cache_redis = Some(Arc::new(RedisHealth::new()));
        self
    }

    pub fn request(&self, o: Outcome) {
        match o {
            Outcome::Ok => &self.requests_ok,
            Outcome::Over => &self.requests_over,
            Outcome::Error => &self.requests_error,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn descriptor(&self, c: Class) {
        if let Some(d) = self.descriptors.get(class_index(c)) {
            d.fetch_add(1, Relaxed);
        }
    }

    pub fn settlement(&self, charge: bool) {
        if charge { &self.settle_charge } else { &self.settle_refund }.fetch_add(1, Relaxed);
    }

    pub fn cache_get(&self, o: GetOutcome) {
        let i = match o {
            GetOutcome::Hit => 0,
            GetOutcome::Miss => 1,
            GetOutcome::Error => 2,
        };
        if let Some(c) = self.cache_gets.get(i) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// A put's outcome; `bytes` of an entry stored.
    pub fn cache_put(&self, o: PutOutcome, bytes: usize) {
        let i = match o {
            PutOutcome::Ok => 0,
            PutOutcome::Refused => 1,
            PutOutcome::Error => 2,
        };
        if let Some(c) = self.cache_puts.get(i) {
            c.fetch_add(1, Relaxed);
        }
        if o == PutOutcome::Ok {
            self.cache_put_bytes.fetch_add(bytes as u64, Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let g = |a: &AtomicU64| a.load(Relaxed);
        o.push_str("# HELP switchyard_limits_requests_total ShouldRateLimit calls by result.\n");
        o.push_str("# TYPE switchyard_limits_requests_total counter\n");
        for (r, v) in [("ok", &self.requests_ok), ("over", &self.requests_over), ("error", &self.requests_error)] {
            let _ = writeln!(o, "switchyard_limits_requests_total{{result=\"{r}\"}} {}", g(v));
        }
        o.push_str("# HELP switchyard_limits_descriptors_total Descriptors received by kind.\n");
        o.push_str("# TYPE switchyard_limits_descriptors_total counter\n");
        for c in [Class::Rate, Class::Budget, Class::Standard, Class::Unlimited] {
            let v = self.descriptors.get(class_index(c)).map(g).unwrap_or(0);
            let _ = writeln!(o, "switchyard_limits_descriptors_total{{kind=\"{}\"}} {v}", c.label());
        }
        o.push_str("# HELP switchyard_limits_settlements_total Settlement descriptors applied by op.\n");
        o.push_str("# TYPE switchyard_limits_settlements_total counter\n");
        let _ = writeln!(o, "switchyard_limits_settlements_total{{op=\"refund\"}} {}", g(&self.settle_refund));
        let _ = writeln!(o, "switchyard_limits_settlements_total{{op=\"charge\"}} {}", g(&self.settle_charge));
        self.redis.render(&mut o, "switchyard_limits_redis", "Redis");
        o.push_str("# HELP switchyard_limits_cache_gets_total Response cache Get calls by result.\n");
        o.push_str("# TYPE switchyard_limits_cache_gets_total counter\n");
        for (r, v) in ["hit", "miss", "error"].iter().zip(&self.cache_gets) {
            let _ = writeln!(o, "switchyard_limits_cache_gets_total{{result=\"{r}\"}} {}", g(v));
        }
        o.push_str("# HELP switchyard_limits_cache_puts_total Response cache Put calls by result.\n");
        o.push_str("# TYPE switchyard_limits_cache_puts_total counter\n");
        for (r, v) in ["ok", "refused", "error"].iter().zip(&self.cache_puts) {
            let _ = writeln!(o, "switchyard_limits_cache_puts_total{{result=\"{r}\"}} {}", g(v));
        }
        o.push_str("# HELP switchyard_limits_cache_put_bytes_total Bytes of response cache entries stored.\n");
        o.push_str("# TYPE switchyard_limits_cache_put_bytes_total counter\n");
        let _ = writeln!(o, "switchyard_limits_cache_put_bytes_total {}", g(&self.cache_put_bytes));
        if let Some(c) = &self.cache_redis {
            c.render(&mut o, "switchyard_limits_cache_redis", "the cache's Redis");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::new();
        m.request(Outcome::Over);
        m.descriptor(Class::Budget);
        m.settlement(true);
        m.redis.latency(Duration::from_micros(700));
        m.redis.set_up(false);
        m.cache_get(GetOutcome::Hit);
        m.cache_get(GetOutcome::Hit);
        m.cache_put(PutOutcome::Ok, 1000);
        m.cache_put(PutOutcome::Refused, 5000);
        let t = m.render();
        assert!(t.contains("switchyard_limits_requests_total{result=\"over\"} 1\n"));
        assert!(t.contains("switchyard_limits_descriptors_total{kind=\"budget\"} 1\n"));
        assert!(t.contains("switchyard_limits_settlements_total{op=\"charge\"} 1\n"));
        assert!(t.contains("switchyard_limits_redis_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(t.contains("switchyard_limits_redis_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(t.contains("switchyard_limits_redis_seconds_count 1\n"));
        assert!(t.contains("switchyard_limits_redis_up 0\n"));
        assert!(t.contains("switchyard_limits_redis_outages_total 1\n"));
        assert!(t.contains("switchyard_limits_cache_gets_total{result=\"hit\"} 2\n"));
        assert!(t.contains("switchyard_limits_cache_gets_total{result=\"miss\"} 0\n"));
        assert!(t.contains("switchyard_limits_cache_puts_total{result=\"refused\"} 1\n"));
        assert!(t.contains("switchyard_limits_cache_put_bytes_total 1000\n"), "refused bytes are not counted");
        assert!(!t.contains("cache_redis"), "no cache Redis of its own");
        let m = Metrics::new().with_cache_redis();
        m.cache_redis.as_ref().unwrap().set_up(false);
        let t = m.render();
        assert!(t.contains("switchyard_limits_cache_redis_up 0\n"));
        assert!(t.contains("switchyard_limits_cache_redis_outages_total 1\n"));
        assert!(t.contains("switchyard_limits_redis_up 1\n"));
    }
}
