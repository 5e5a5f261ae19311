//! Wiring: the gRPC server (rate limits and the response cache's fleet tier), the admin server and a Redis
//! watcher, until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::server::TcpIncoming;

use crate::admin::{self, Admin};
use crate::cache::CacheService;
use crate::cache_proto::cache_server::CacheServer;
use crate::grpc::Limits;
use crate::log;
use crate::metrics::Metrics;
use crate::proto::rate_limit_service_server::RateLimitServiceServer;
use crate::rules::Rules;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct Config {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub redis: String,
    pub domain: String,
    pub rules: Rules,
    pub redis_timeout: Duration,
    /// The response cache's own Redis (`None`: the limits' one).
    pub cache_redis: Option<String>,
    /// The largest cache entry a `Put` may carry.
    pub cache_max_entry_bytes: usize,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

/// Serves until a shutdown signal; errors are startup failures (bad address, port taken, bad Redis URL).
pub async fn run(cfg: Config) -> Result<(), String> {
    let own_cache_redis = cfg.cache_redis.clone().filter(|u| *u != cfg.redis);
    let metrics = Arc::new(if own_cache_redis.is_some() { Metrics::new().with_cache_redis() } else { Metrics::new() });
    let store = Arc::new(Store::new(&cfg.redis, cfg.redis_timeout, metrics.redis.clone(), "redis")?);
    let cache_store = match (&own_cache_redis, &metrics.cache_redis) {
        (Some(url), Some(health)) => Arc::new(
            Store::new(url, cfg.redis_timeout, health.clone(), "cache redis")
                .map_err(|e| format!("--cache-redis: {e}"))?,
        ),
        _ => store.clone(),
    };
    let grpc_in =
        TcpIncoming::bind(cfg.grpc).map_err(|e| format!("--grpc {}: {e}", cfg.grpc))?.with_nodelay(Some(true));
    let admin_in = tokio::net::TcpListener::bind(cfg.admin).await.map_err(|e| format!("--admin {}: {e}", cfg.admin))?;

    // Watch Redis once a second, so an outage and the recovery are logged even while no request comes.
    let watched =
        if own_cache_redis.is_some() { vec![store.clone(), cache_store.clone()] } else { vec![store.clone()] };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for s in &watched {
                let _ = s.ping().await;
            }
        }
    });

    let admin = admin::router(Admin { store: store.clone(), metrics: metrics.clone() });
    let admin_task =
        tokio::spawn(async move { axum::serve(admin_in, admin).with_graceful_shutdown(shutdown_signal()).await });

    let cache =
        CacheService { store: cache_store, metrics: metrics.clone(), max_entry_bytes: cfg.cache_max_entry_bytes };
    let limits = Limits { domain: cfg.domain.clone(), rules: Arc::new(cfg.rules), store, metrics };
    log::line(&format!(
        "serving gRPC on {} (domain {}; response cache entries up to {} bytes in {}), admin on {}, redis {} (timeout {} ms)",
        cfg.grpc,
        cfg.domain,
        cfg.cache_max_entry_bytes,
        own_cache_redis.as_deref().unwrap_or("the same redis"),
        cfg.admin,
        cfg.redis,
        cfg.redis_timeout.as_millis()
    ));
    // A put carries its entry and a few bytes more; tonic refuses larger messages before the service sees
    // them (RESOURCE_EXHAUSTED), so the bound leaves room to answer entries a little too large with
    // INVALID_ARGUMENT.
    let cache_message = cfg.cache_max_entry_bytes.saturating_add(1 << 20);
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(limits))
        .add_service(
            CacheServer::new(cache).max_decoding_message_size(cache_message).max_encoding_message_size(cache_message),
        )
        .serve_with_incoming_shutdown(grpc_in, shutdown_signal())
        .await
        .map_err(|e| format!("gRPC server: {e}"))?;
    let _ = admin_task.await;
    log::line("stopped");
    Ok(())
}
