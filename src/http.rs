//! The HTTP server of every fluxo process: `/metrics`, `/healthz`, `/readyz`, and the query API
//! routes when a state store is attached.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Set once state is restored and every processor runs.
    pub ready: Arc<AtomicBool>,
    /// The brokers' probe, when this process reads Kafka: not ready while they are gone.
    pub broker: Option<Arc<crate::readiness::BrokerProbe>>,
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}

async fn healthz() -> impl IntoResponse {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ok"})),
    )
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if !s.ready.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "starting"})),
        )
    } else if s.broker.as_ref().is_some_and(|b| !b.reachable()) {
        // The engines wait for the brokers and resume by themselves; meanwhile nothing is
        // processed, which is what not ready means.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "broker unreachable"})),
        )
    } else {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        )
    }
}

/// The operational routes (`/metrics`, `/healthz`, `/readyz`).
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Middleware of the query API: counts each request in `fluxo_http_requests_total` and times it
/// in `fluxo_http_request_duration_seconds`, labelled with the route template (never the path
/// itself, which carries account ids and documents) or `unmatched`.
pub async fn track_requests(
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched
        .as_ref()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = request.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    crate::metrics::HTTP_REQUEST_SECONDS
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    crate::metrics::HTTP_REQUESTS
        .with_label_values(&[&route, &method, response.status().as_str()])
        .inc();
    response
}

/// Serve `router` on `listener` until `shutdown` resolves, with the hardened server of
/// [`fluxo_registry::server`] and its default [`fluxo_registry::Limits`] (header-read and request
/// timeouts, a connection cap, early 431/414/413).
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    fluxo_registry::server::serve(
        listener,
        router,
        fluxo_registry::Limits::default(),
        shutdown,
    )
    .await
}
