//! A hardened HTTP/1.1 server for any axum [`Router`]: the registry's REST API and fluxo's query
//! API both run on it (it lives here because the registry crate is the lower layer both share).
//!
//! `axum::serve` has no timeouts and no connection cap: a client that opens a connection and
//! sends half a request header keeps a task and a socket forever, so a few hundred such
//! "slow-loris" connections starve the process of file descriptors. This server bounds every
//! resource a client can hold ([`Limits`]):
//! - the request head (line + headers) must arrive within `header_read_timeout`; the timer also
//!   runs on an idle keep-alive connection, which is closed when it expires;
//! - the whole request (body read + handler) must finish within `request_timeout`, else 503;
//! - at most `max_connections` connections are served at once; further ones wait in the kernel's
//!   accept backlog (they are not accepted, so they hold no task);
//! - a head over `max_header_bytes` is answered 431 and a URI over `max_uri_bytes` 414 before any
//!   routing; a body declared (`Content-Length`) or read over `max_body_bytes` 413, before the
//!   handler sees it.

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What a client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time allowed for the request line and headers to arrive (and for an idle keep-alive
    /// connection to send its next request).
    pub header_read_timeout: Duration,
    /// Time allowed for one request, body read and handler included.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest request head (request line + headers), in bytes.
    pub max_header_bytes: usize,
    /// Longest request URI (path + query), in bytes.
    pub max_uri_bytes: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    /// 10 s for the head, 30 s per request, 1024 connections, 16 KiB of head, 8 KiB of URI,
    /// 1 MiB of body: far above what fluxo's APIs need (the largest real body, a schema, is a few
    /// KiB; a token is under 1 KiB), far below what would hurt.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::json!({"error": message}).to_string(),
    )
        .into_response()
}

/// Refuses oversized URIs and declared bodies before routing, and bounds the request's time.
async fn guard(limits: Arc<Limits>, request: Request, next: Next) -> Response {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return json_error(StatusCode::URI_TOO_LONG, "URI too long");
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => json_error(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
    }
}

/// `router` with the per-request limits of `limits` applied (URI length, body size, time).
/// [`serve`] applies it itself; use it to test a router in-process.
pub fn limit(router: Router, limits: Limits) -> Router {
    let shared = Arc::new(limits);
    router
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| guard(shared.clone(), req, next),
        ))
        // Bodies without a Content-Length (chunked) are cut when they pass the limit; the
        // extractors then fail with 413.
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
}

/// Serves `router` on `listener` with `limits` until `shutdown` completes, then waits (at most
/// the request timeout) for the requests in flight.
///
/// # Errors
/// Never for a client's fault; accept errors (e.g. out of file descriptors) are logged and
/// retried after a pause.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = limit(router, limits);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        // The read buffer must hold the largest head we answer 431 to, not just reject it.
        .max_buf_size((limits.max_header_bytes * 2).max(8192));
    tokio::pin!(shutdown);
    loop {
        // A slot first: beyond the cap, connections stay in the backlog, unaccepted.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone().into_service::<hyper::body::Incoming>());
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are the client's (reset, timeout, bad request): nothing to report.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.request_timeout, graceful.shutdown()).await;
    Ok(())
}
