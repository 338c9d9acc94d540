//! The HTTP query API: the materialized views served as JSON, behind bearer-token auth.
//!
//! # Routes
//! - `GET /v1/accounts/{account}/daily-balances/{date}`: one day's consolidated balance.
//! - `GET /v1/accounts/{account}/daily-balances?from=DATE&to=DATE`: every day of the range
//!   (days without entries as zeros) and the running balance.
//! - `GET /v1/risk-decisions/{transaction_id}`: the decision on one transaction.
//! - `GET /v1/assets/{symbol}/alerts?since=TIME&limit=N`: price alerts since a time.
//! - `GET /v1/assets/{symbol}/below-average-events?since=TIME&limit=N`: crossings of the average.
//! - `GET /openapi.json` (public): the OpenAPI 3.0 document of these routes and of the runtime's
//!   `/healthz`, `/readyz` and `/metrics`, which the runtime serves itself.
//!
//! Every `/v1` route requires `Authorization: Bearer <JWT>` ([`auth`]). Unknown routes get 404
//! and a known route with another method 405, both as `{"error": ...}` JSON.
//!
//! # Reads
//! Reads go through [`StateStore::get`] and one [`StateStore::scan`] per request (a date range is
//! one scan of the account's partition), so the API runs unchanged on any backend and never
//! touches Kafka: it keeps serving the last committed state while the broker is down, and the
//! write path never waits for it (CQRS). The store calls are synchronous (a point read or a
//! bounded scan); each request's reads run on tokio's blocking pool under a deadline,
//! [`ApiState::read_timeout`] (`[http] read_timeout`, default 5 s): a store that stalls (a frozen
//! node keeps its connections open, and the driver waits and retries for tens of seconds)
//! gets the request a 503 with a JSON error at the deadline instead of a hang. The abandoned
//! read finishes on its blocking thread when the driver gives up, and holds its place in
//! [`ReadGate`] until then: at most [`ReadGate::limit`] reads run at once (`[http]
//! max_reads_in_flight`, default 128), so a stalled store holds at most that many threads; a
//! request arriving while all are taken is answered 503 with `Retry-After` at once. The number
//! running is the gauge `fluxo_http_reads_in_flight`.
//!
//! # Freshness (`as_of`)
//! Every successful response is `{"as_of": "<RFC 3339>", "data": ...}` and a 404 for a missing
//! row carries `as_of` too. `as_of` is the value of the shared [`Freshness`] read *before* the
//! store: the instant up to which the views are known to reflect every input the processors had
//! consumed. The runtime sets it ([`Freshness::touch`]) after each successful checkpoint commit
//! and whenever its consumers are caught up, so it stops advancing exactly when input stops
//! being applied (Kafka down, processing stopped) and readers can see how stale the data is.
//! Rows add their own `updated_at` (processing time of their last change).

pub mod auth;
mod handlers;
pub mod openapi;
pub mod params;
mod seed;

#[cfg(test)]
mod tests;

pub use auth::{Auth, AuthError};
pub use seed::{seed_account_id, seed_daily_balances, seeded_balance};

use crate::state::StateStore;
use axum::routing::get;
use axum::Router;
use fluxo_processors::Millis;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How fresh the views behind the API are (see the module documentation).
#[derive(Debug)]
pub struct Freshness {
    as_of_ms: AtomicI64,
}

impl Freshness {
    /// Fresh as of `as_of` (epoch milliseconds).
    pub fn new(as_of: Millis) -> Self {
        Self {
            as_of_ms: AtomicI64::new(as_of),
        }
    }

    /// Fresh as of the current wall-clock time (e.g. right after state is restored).
    pub fn now() -> Self {
        Self::new(now_millis())
    }

    /// Record that the views reflect every consumed input as of `as_of`. Never moves back.
    pub fn set(&self, as_of: Millis) {
        self.as_of_ms.fetch_max(as_of, Ordering::Relaxed);
    }

    /// [`Freshness::set`] to the current wall-clock time.
    pub fn touch(&self) {
        self.set(now_millis());
    }

    /// The current `as_of`, epoch milliseconds.
    pub fn get(&self) -> Millis {
        self.as_of_ms.load(Ordering::Relaxed)
    }
}

/// The wall clock in epoch milliseconds (0 if the clock is before 1970).
fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store holding the views.
    pub store: Arc<dyn StateStore>,
    /// Token verification.
    pub auth: Arc<Auth>,
    /// The freshness the runtime keeps up to date.
    pub freshness: Arc<Freshness>,
    /// Longest a request waits for its store reads before answering 503 (`[http]
    /// read_timeout`).
    pub read_timeout: std::time::Duration,
    /// The bound on store reads running at once (`[http] max_reads_in_flight`).
    pub reads: ReadGate,
}

/// At most [`ReadGate::limit`] store reads running at once, counting those whose request was
/// already answered at the read timeout (their blocking thread is still taken). Clones share
/// the count.
#[derive(Debug, Clone)]
pub struct ReadGate {
    permits: Arc<Semaphore>,
    limit: usize,
    /// Set while requests are being refused, so the log says so once per episode, not per
    /// request.
    refusing: Arc<AtomicBool>,
}

/// One running read's place in its [`ReadGate`], given back when dropped.
#[derive(Debug)]
pub(crate) struct ReadPermit {
    _permit: OwnedSemaphorePermit,
}

impl ReadGate {
    /// A gate letting `limit` reads run at once (at least 1).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            refusing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// How many reads may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many reads are running now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// A place for one read, or `None` when all are taken (no waiting: the request is answered
    /// at once).
    pub(crate) fn try_enter(&self) -> Option<ReadPermit> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                if self.refusing.swap(false, Ordering::Relaxed) {
                    tracing::info!("query API: store reads admitted again");
                }
                crate::metrics::HTTP_READS_IN_FLIGHT.inc();
                Some(ReadPermit { _permit: permit })
            }
            Err(_) => {
                if !self.refusing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        limit = self.limit,
                        "query API: every store read slot is taken (the store is slow or \
                         stalled); answering 503 until one frees"
                    );
                }
                None
            }
        }
    }
}

impl Drop for ReadPermit {
    fn drop(&mut self) {
        crate::metrics::HTTP_READS_IN_FLIGHT.dec();
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("auth", &self.auth)
            .field("freshness", &self.freshness)
            .field("read_timeout", &self.read_timeout)
            .field("reads", &self.reads)
            .finish_non_exhaustive()
    }
}

/// Route of one day's balance.
pub const ROUTE_DAILY_BALANCE: &str = "/v1/accounts/{account}/daily-balances/{date}";
/// Route of a range of daily balances.
pub const ROUTE_DAILY_BALANCES: &str = "/v1/accounts/{account}/daily-balances";
/// Route of a risk decision.
pub const ROUTE_RISK_DECISION: &str = "/v1/risk-decisions/{transaction_id}";
/// Route of a symbol's price alerts.
pub const ROUTE_ALERTS: &str = "/v1/assets/{symbol}/alerts";
/// Route of a symbol's below-average events.
pub const ROUTE_BELOW_AVERAGE: &str = "/v1/assets/{symbol}/below-average-events";
/// Route of the OpenAPI document.
pub const ROUTE_OPENAPI: &str = "/openapi.json";

/// The query API: the `/v1` routes (bearer token required) and `/openapi.json` (public), with a
/// JSON 404 for unknown routes, every request counted and timed ([`crate::http::track_requests`]).
/// Merge it with the runtime's `/metrics`, `/healthz` and `/readyz`
/// router (which must not set a fallback of its own).
pub fn router(state: ApiState) -> Router {
    let auth = state.auth.clone();
    let v1 = Router::new()
        .route(ROUTE_DAILY_BALANCE, get(handlers::daily_balance))
        .route(ROUTE_DAILY_BALANCES, get(handlers::daily_balance_range))
        .route(ROUTE_RISK_DECISION, get(handlers::risk_decision))
        .route(ROUTE_ALERTS, get(handlers::price_alerts))
        .route(ROUTE_BELOW_AVERAGE, get(handlers::below_average_events))
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            auth::require_bearer,
        ))
        .with_state(state);
    Router::new()
        .route(ROUTE_OPENAPI, get(handlers::openapi_json))
        .merge(v1)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn(crate::http::track_requests))
}
