//! Prometheus metrics, kept in atomics and written as text by `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::plan::Class;

/// Upper bounds of the Redis latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

#[derive(Debug, Default)]
pub struct Metrics {
    requests_ok: AtomicU64,
    requests_over: AtomicU64,
    requests_error: AtomicU64,
    descriptors: [AtomicU64; 4],
    settle_refund: AtomicU64,
    settle_charge: AtomicU64,
    redis_errors: AtomicU64,
    redis_outages: AtomicU64,
    redis_up: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
}

/// How a gRPC call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Over,
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
        let m = Self::default();
        m.redis_up.store(1, Relaxed);
        m
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

    pub fn redis_error(&self) {
        self.redis_errors.fetch_add(1, Relaxed);
    }

    /// Redis went down (`false`, counted as an outage) or came back (`true`).
    pub fn redis_up(&self, up: bool) {
        self.redis_up.store(up as u64, Relaxed);
        if !up {
            self.redis_outages.fetch_add(1, Relaxed);
        }
    }

    pub fn redis_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_ns.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(2048);
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
        o.push_str("# HELP switchyard_limits_redis_errors_total Redis commands that failed or timed out.\n");
        o.push_str("# TYPE switchyard_limits_redis_errors_total counter\n");
        let _ = writeln!(o, "switchyard_limits_redis_errors_total {}", g(&self.redis_errors));
        o.push_str("# HELP switchyard_limits_redis_outages_total Episodes of Redis being unreachable.\n");
        o.push_str("# TYPE switchyard_limits_redis_outages_total counter\n");
        let _ = writeln!(o, "switchyard_limits_redis_outages_total {}", g(&self.redis_outages));
        o.push_str("# HELP switchyard_limits_redis_up 1 while Redis answers, 0 during an outage.\n");
        o.push_str("# TYPE switchyard_limits_redis_up gauge\n");
        let _ = writeln!(o, "switchyard_limits_redis_up {}", g(&self.redis_up));
        o.push_str("# HELP switchyard_limits_redis_seconds Latency of Redis commands (scripts and reads).\n");
        o.push_str("# TYPE switchyard_limits_redis_seconds histogram\n");
        for (b, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(o, "switchyard_limits_redis_seconds_bucket{{le=\"{bound}\"}} {}", g(b));
        }
        let count = g(&self.latency_count);
        let _ = writeln!(o, "switchyard_limits_redis_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(o, "switchyard_limits_redis_seconds_sum {}", g(&self.latency_sum_ns) as f64 / 1e9);
        let _ = writeln!(o, "switchyard_limits_redis_seconds_count {count}");
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
        m.redis_latency(Duration::from_micros(700));
        m.redis_up(false);
        let t = m.render();
        assert!(t.contains("switchyard_limits_requests_total{result=\"over\"} 1\n"));
        assert!(t.contains("switchyard_limits_descriptors_total{kind=\"budget\"} 1\n"));
        assert!(t.contains("switchyard_limits_settlements_total{op=\"charge\"} 1\n"));
        assert!(t.contains("switchyard_limits_redis_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(t.contains("switchyard_limits_redis_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(t.contains("switchyard_limits_redis_seconds_count 1\n"));
        assert!(t.contains("switchyard_limits_redis_up 0\n"));
        assert!(t.contains("switchyard_limits_redis_outages_total 1\n"));
    }
}
