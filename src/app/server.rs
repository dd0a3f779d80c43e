//! `[server] listen`: `/livez` (the poll loop is alive; never 503 just
//! because the Crayon API is down), `/healthz` (a recent successful poll) and
//! `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::telemetry::{self, Health, Verdict};
use crate::domain::AccountId;
use crate::store::Store;

#[derive(Clone)]
struct Shared {
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
    store: Arc<dyn Store>,
    /// Whose outbox `/metrics` counts (the single account of a v0.1 config).
    account: AccountId,
    sinks: Arc<Vec<String>>,
}

/// Binds `listen` and serves until `shutdown`. Binding errors are returned
/// so `run` can refuse to start on a taken port.
pub async fn serve(
    listen: SocketAddr,
    health: Arc<Health>,
    store: Arc<dyn Store>,
    sinks: Vec<String>,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let shared = Shared {
        health,
        metrics: telemetry::install(),
        store,
        account: AccountId::default_account(),
        sinks: Arc::new(sinks),
    };
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(shared);
    tracing::info!(listen = %listen, "serving /livez, /healthz and /metrics");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    }))
}

async fn livez(State(s): State<Shared>) -> impl IntoResponse {
    if s.health.alive() {
        (StatusCode::OK, Json(json!({"status": "alive"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "stalled"})),
        )
    }
}

async fn healthz(State(s): State<Shared>) -> impl IntoResponse {
    match s.health.verdict() {
        Verdict::Ok => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Verdict::Starting => (StatusCode::OK, Json(json!({"status": "starting"}))),
        Verdict::Failing(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failing", "reason": reason})),
        ),
    }
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    if let Ok(counts) = s.store.outbox_counts(&s.account) {
        telemetry::outbox_counts(&counts, &s.sinks);
    }
    let body = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
