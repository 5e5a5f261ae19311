//! The admin HTTP server: `GET /healthz` (200 when Redis answers PING, else 503), `GET /metrics`
//! (Prometheus text), `GET /spend?key=ID` (a key's budgets: spent and remaining per period).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use crate::budget::BudgetRow;
use crate::metrics::Metrics;
use crate::store::Store;

#[derive(Clone)]
pub struct Admin {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}

pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/spend", get(spend))
        .with_state(admin)
}

async fn healthz(State(a): State<Admin>) -> Response {
    match a.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}\n")).into_response(),
    }
}

async fn metrics(State(a): State<Admin>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], a.metrics.render()).into_response()
}

#[derive(Serialize)]
struct Spend<'a> {
    key: &'a str,
    budgets: Vec<BudgetRow>,
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn spend(State(a): State<Admin>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(key) = q.get("key").filter(|k| !k.is_empty()) else {
        return json(StatusCode::BAD_REQUEST, serde_json::json!({"error": "missing ?key=ID"}));
    };
    match a.store.budgets(key).await {
        Ok(budgets) => match serde_json::to_value(Spend { key, budgets }) {
            Ok(v) => json(StatusCode::OK, v),
            Err(e) => json(StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({"error": e.to_string()})),
        },
        Err(e) => json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"error": format!("redis: {e}")})),
    }
}
