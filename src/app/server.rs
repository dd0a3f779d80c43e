//! `[server] listen`: `/livez` (the poll loop is alive; never 503 just
//! because the Crayon API is down), `/healthz` (a recent successful poll),
//! `/metrics` (Prometheus text format) and the status page (`/`,
//! `/api/status`, see [`crate::status`]). With `server.token`, all but the
//! two probes need `Authorization: Bearer <token>`.

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
use crate::config::Config;
use crate::secret::Secret;
use crate::status::{self, StatusSource};
use crate::store::Store;

#[derive(Clone)]
struct Shared {
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
    store: Arc<dyn Store>,
    sinks: Arc<Vec<String>>,
    /// The sinks with a `digest` window, for the deferred gauge.
    digest_sinks: Arc<Vec<String>>,
}

/// What the server takes from the config and the app besides the shared
/// handles: the sinks `/metrics` counts, the token guarding it and the
/// status page, and the page's time zone.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configured sinks' names.
    pub sinks: Vec<String>,
    /// Those with a `digest` window.
    pub digest_sinks: Vec<String>,
    /// `server.token`.
    pub token: Option<Secret>,
    /// `display.timezone`.
    pub timezone: chrono_tz::Tz,
}

impl Settings {
    /// The settings of `config` (the role comes from [`Health`]).
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            sinks: config.sinks.keys().cloned().collect(),
            digest_sinks: config
                .sinks
                .values()
                .filter(|s| s.digest.is_some())
                .map(|s| s.name.clone())
                .collect(),
            token: config.server_token.clone(),
            timezone: config.timezone,
        }
    }
}

/// Binds `listen` and serves until `shutdown`. Binding errors are returned
/// so `run` can refuse to start on a taken port.
pub async fn serve(
    listen: SocketAddr,
    health: Arc<Health>,
    store: Arc<dyn Store>,
    settings: Settings,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let page = status::http::routes(StatusSource {
        store: store.clone(),
        health: health.clone(),
        accounts: Vec::new(),
        timezone: settings.timezone,
    })
    .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let shared = Shared {
        health,
        metrics: telemetry::install(),
        store,
        sinks: Arc::new(settings.sinks),
        digest_sinks: Arc::new(settings.digest_sinks),
    };
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .with_state(shared.clone())
        .merge(page)
        .route_layer(axum::middleware::from_fn_with_state(
            settings.token.clone(),
            status::http::require_token,
        ));
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/healthz", get(healthz))
        .with_state(shared)
        .merge(guarded);
    let guard = if settings.token.is_some() {
        "bearer token"
    } else {
        "none (loopback)"
    };
    tracing::info!(listen = %listen, guard, "serving /, /api/status, /livez, /healthz and /metrics");
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

/// 200 while leading with recent successful polls of every account, or
/// standing by (a standby polls nothing, by design); the body names the
/// role and, when failing, the failing accounts.
async fn healthz(State(s): State<Shared>) -> impl IntoResponse {
    let role = s.health.role();
    match s.health.verdict() {
        Verdict::Ok => (StatusCode::OK, Json(json!({"status": "ok", "role": role}))),
        Verdict::Starting => (
            StatusCode::OK,
            Json(json!({"status": "starting", "role": role})),
        ),
        Verdict::Standby => (StatusCode::OK, Json(json!({"status": "ok", "role": role}))),
        Verdict::Failing(reason) => {
            let accounts: Vec<_> = (s.health.failing().into_iter())
                .map(|(account, reason)| json!({"account": account.as_str(), "reason": reason}))
                .collect();
            let body =
                json!({"status": "failing", "reason": reason, "role": role, "accounts": accounts});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
    }
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    for account in s.health.accounts() {
        if let Ok(counts) = s.store.outbox_counts(&account) {
            telemetry::outbox_counts(&account, &counts, &s.sinks);
        }
    }
    let now = chrono::Utc::now();
    for account in s.health.accounts() {
        if let Ok(n) = s.store.digests_waiting(&account, &s.digest_sinks, now) {
            telemetry::deliveries_deferred(&account, "digest", n);
        }
    }
    let body = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
