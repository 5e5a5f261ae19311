//! `switchyard-limits`: the fleet-wide rate-limit service (see service/README.md).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use switchyard_limits::rules::Rules;
use switchyard_limits::server::{self, Config};

/// Switchyard's fleet-wide limits and budgets: Envoy's rate-limit service protocol (gRPC) with its
/// state in Redis.
#[derive(Parser, Debug)]
#[command(name = "switchyard-limits", version)]
struct Args {
    /// gRPC listen address (envoy.service.ratelimit.v3.RateLimitService).
    #[arg(long, default_value = "127.0.0.1:8081", env = "SWITCHYARD_LIMITS_GRPC")]
    grpc: SocketAddr,
    /// Admin HTTP listen address: /healthz, /metrics, /spend?key=ID.
    #[arg(long, default_value = "127.0.0.1:9091", env = "SWITCHYARD_LIMITS_ADMIN")]
    admin: SocketAddr,
    /// Redis URL (redis://[user:password@]host:port[/db], rediss:// not built in).
    #[arg(long, default_value = "redis://127.0.0.1:6379", env = "SWITCHYARD_LIMITS_REDIS")]
    redis: String,
    /// The domain whose `switchyard_key` descriptors are Switchyard's (the filter's configured domain).
    #[arg(long, default_value = "switchyard", env = "SWITCHYARD_LIMITS_DOMAIN")]
    domain: String,
    /// Rules file for standard descriptors (envoyproxy/ratelimit's YAML shape); repeat for more domains.
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<String>,
    /// Timeout of each Redis command and connection attempt, in milliseconds.
    #[arg(long, default_value_t = 50, env = "SWITCHYARD_LIMITS_REDIS_TIMEOUT_MS")]
    redis_timeout_ms: u64,
    /// A Redis of its own for the response cache's fleet tier (default: the --redis one). Recommended:
    /// with maxmemory and allkeys-lru there, while the limits' Redis keeps noeviction.
    #[arg(long, env = "SWITCHYARD_LIMITS_CACHE_REDIS")]
    cache_redis: Option<String>,
    /// The largest response cache entry a Put may store (larger: INVALID_ARGUMENT).
    #[arg(long, default_value_t = switchyard_limits::cache::DEFAULT_MAX_ENTRY_BYTES, env = "SWITCHYARD_LIMITS_CACHE_MAX_ENTRY_BYTES")]
    cache_max_entry_bytes: usize,
}

fn load_rules(files: &[String]) -> Result<Rules, String> {
    let mut rules = Rules::default();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("--rules {f}: {e}"))?;
        rules.add_yaml(&text).map_err(|e| format!("--rules {f}: {e}"))?;
    }
    Ok(rules)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match load_rules(&args.rules) {
        Ok(rules) => Config {
            grpc: args.grpc,
            admin: args.admin,
            redis: args.redis,
            domain: args.domain,
            rules,
            redis_timeout: Duration::from_millis(args.redis_timeout_ms.max(1)),
            cache_redis: args.cache_redis,
            cache_max_entry_bytes: args.cache_max_entry_bytes.max(1),
        },
        Err(e) => {
            eprintln!("switchyard-limits: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard-limits: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-limits: {e}");
            ExitCode::FAILURE
        }
    }
}
