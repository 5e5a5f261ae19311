//! Wiring: the gRPC server, the admin server and a Redis watcher, until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::server::TcpIncoming;

use crate::admin::{self, Admin};
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
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(Store::new(&cfg.redis, cfg.redis_timeout, metrics.clone())?);
    let grpc_in =
        TcpIncoming::bind(cfg.grpc).map_err(|e| format!("--grpc {}: {e}", cfg.grpc))?.with_nodelay(Some(true));
    let admin_in = tokio::net::TcpListener::bind(cfg.admin).await.map_err(|e| format!("--admin {}: {e}", cfg.admin))?;

    // Watch Redis once a second, so an outage and the recovery are logged even while no request comes.
    let watcher = store.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let _ = watcher.ping().await;
        }
    });

    let admin = admin::router(Admin { store: store.clone(), metrics: metrics.clone() });
    let admin_task =
        tokio::spawn(async move { axum::serve(admin_in, admin).with_graceful_shutdown(shutdown_signal()).await });

    let limits = Limits { domain: cfg.domain.clone(), rules: Arc::new(cfg.rules), store, metrics };
    log::line(&format!(
        "serving gRPC on {} (domain {}), admin on {}, redis {} (timeout {} ms)",
        cfg.grpc,
        cfg.domain,
        cfg.admin,
        cfg.redis,
        cfg.redis_timeout.as_millis()
    ));
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(limits))
        .serve_with_incoming_shutdown(grpc_in, shutdown_signal())
        .await
        .map_err(|e| format!("gRPC server: {e}"))?;
    let _ = admin_task.await;
    log::line("stopped");
    Ok(())
}
