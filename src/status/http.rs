//! The status page on the wire: `GET /` (HTML) and `GET /api/status`
//! (JSON), built on the blocking pool one at a time so a page view never
//! holds an async worker and never piles store reads onto polling and
//! delivery; and the bearer-token guard for everything but the probes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use tokio::sync::Semaphore;

use super::page::Page;
use super::{gather, StatusError, StatusSource, StatusView};
use crate::secret::Secret;

#[derive(Clone)]
struct PageState {
    source: StatusSource,
    page: Arc<Page>,
    /// One page build at a time: requests queue instead of multiplying reads.
    building: Arc<Semaphore>,
}

/// `/` and `/api/status` over `source`. Fails only if the built-in template
/// does not compile.
pub fn routes(source: StatusSource) -> Result<Router, StatusError> {
    let state = PageState {
        page: Arc::new(Page::new(source.timezone)?),
        source,
        building: Arc::new(Semaphore::new(1)),
    };
    Ok(Router::new()
        .route("/", get(html))
        .route("/api/status", get(json))
        .with_state(state))
}

async fn html(State(s): State<PageState>) -> Response {
    let page = s.page.clone();
    match build(&s, move |view| page.render(&view)).await {
        Ok(body) => (
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            Html(body),
        )
            .into_response(),
        Err(status) => status.into_response(),
    }
}

async fn json(State(s): State<PageState>) -> Response {
    match build(&s, Ok).await {
        Ok(view) => Json(view).into_response(),
        Err(status) => status.into_response(),
    }
}

/// Gathers the view and finishes it with `finish` on the blocking pool; a
/// failure is logged and answered 500 without details.
async fn build<T: Send + 'static>(
    s: &PageState,
    finish: impl FnOnce(StatusView) -> Result<T, StatusError> + Send + 'static,
) -> Result<T, (StatusCode, &'static str)> {
    const UNAVAILABLE: (StatusCode, &str) = (
        StatusCode::INTERNAL_SERVER_ERROR,
        "status unavailable; see the bot's log\n",
    );
    let _permit = s.building.acquire().await.map_err(|_| UNAVAILABLE)?;
    let source = s.source.clone();
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || finish(gather(&source, Utc::now())?)).await;
    match result {
        Ok(Ok(out)) => {
            let duration_ms = started.elapsed().as_millis() as u64;
            tracing::debug!(duration_ms, "status page built");
            Ok(out)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "status page failed");
            Err(UNAVAILABLE)
        }
        Err(e) => {
            tracing::error!(error = %e, "status page task failed");
            Err(UNAVAILABLE)
        }
    }
}

/// Middleware: with a token configured, the request must carry
/// `Authorization: Bearer <token>`; 401 otherwise. Without one (loopback
/// only, enforced by config validation) everything passes.
pub async fn require_token(
    State(token): State<Option<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    match &token {
        Some(token) if !bearer_matches(request.headers(), token) => {
            tracing::debug!(path = %request.uri().path(), "request without the server token refused");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is required (server.token)\n",
            )
                .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Whether the `Authorization` header is `Bearer <token>` (scheme case
/// insensitive, as RFC 9110 says).
fn bearer_matches(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some((scheme, given)) = value.split_at_checked(7) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"Bearer ") && same_bytes(given, token.expose().as_bytes())
}

/// Constant-time equality (hand-rolled rather than a dependency): every
/// byte is compared whatever differs first, so the time tells an attacker
/// nothing but the length.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let token = Secret::new("s3cret-Tok");
        assert!(bearer_matches(&with("Bearer s3cret-Tok"), &token));
        assert!(bearer_matches(&with("bearer s3cret-Tok"), &token));
        for wrong in [
            "Bearer s3cret-Tol",
            "Bearer s3cret-To",
            "Bearer s3cret-Tok ",
            "Basic s3cret-Tok",
            "s3cret-Tok",
            "Bearer",
            "",
        ] {
            assert!(!bearer_matches(&with(wrong), &token), "{wrong:?}");
        }
        assert!(!bearer_matches(&HeaderMap::new(), &token));
    }
}
