//! The web console: a few static pages served at `/` by every fluxo HTTP server, and the JSON
//! routes only the console needs.
//!
//! # Pages
//! `console/index.html`, `console/app.js`, `console/app.css` and the vendored uPlot
//! (`console/vendor/uplot/`, MIT) are compiled into the binary (`include_str!`): no CDN, no
//! network, no build step. They hold no data; every figure on a page comes from an authenticated
//! `/v1` route, with the bearer token the person pasted or that `fluxo up`'s console URL
//! (`http://ADDR/#token=...`) put in the tab's `sessionStorage`. Without a token a page shows
//! nothing but the sign-in form.
//!
//! # Routes (bearer token required, like every `/v1` route)
//! - `GET /v1/console/pipeline`: the topology as a graph with each processor's live figures,
//!   read from this process's own metrics ([`pipeline`]).
//! - `GET /v1/console/topics/{topic}/records?limit=N&key=K`: a topic's most recent records,
//!   decoded to JSON, documents masked ([`records`]).
//! - `GET /v1/console/risk-latency`: the risk decision latency histogram and the SLA breaches.
//!
//! The market, risk and account pages also call the query API's own routes (alerts,
//! below-average events, one risk decision, daily balances), so they show the same answers.

pub mod pipeline;
pub mod records;
pub mod redact;

use crate::api::params::rfc3339;
use crate::api::{Auth, Freshness};
use crate::config::Topology;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Route of the pipeline graph and its live figures.
pub const ROUTE_PIPELINE: &str = "/v1/console/pipeline";
/// Route of a topic's recent records.
pub const ROUTE_RECORDS: &str = "/v1/console/topics/{topic}/records";
/// Route of the risk latency histogram.
pub const ROUTE_RISK_LATENCY: &str = "/v1/console/risk-latency";
/// Every JSON route of the console, for the OpenAPI document.
pub const ROUTES: [&str; 3] = [ROUTE_PIPELINE, ROUTE_RECORDS, ROUTE_RISK_LATENCY];

/// Default and largest `limit` of [`ROUTE_RECORDS`].
pub const DEFAULT_RECORDS: usize = 50;
/// Largest `limit` of [`ROUTE_RECORDS`]: a bounded read, whatever the caller asks.
pub const MAX_RECORDS: usize = 2000;

/// What the console's handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    /// The running topology: topics, processors, notifiers, Kafka and registry settings.
    pub topology: Arc<Topology>,
    /// The freshness of the views (the `as_of` of every response).
    pub freshness: Arc<Freshness>,
    /// Rate sampling of the pipeline page.
    pub sampler: Arc<pipeline::Sampler>,
    /// Reads of recent records (a Kafka consumer per read, the registry's schemas cached).
    pub reader: Arc<records::Reader>,
}

impl std::fmt::Debug for ConsoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleState").finish_non_exhaustive()
    }
}

impl ConsoleState {
    /// The console of `topology`, answering with `freshness` as `as_of`.
    ///
    /// # Errors
    /// When the schema registry settings are invalid.
    pub fn new(topology: Arc<Topology>, freshness: Arc<Freshness>) -> anyhow::Result<Self> {
        let reader = Arc::new(records::Reader::new(topology.clone())?);
        Ok(Self {
            topology,
            freshness,
            sampler: Arc::new(pipeline::Sampler::default()),
            reader,
        })
    }
}

const INDEX_HTML: &str = include_str!("../../console/index.html");
const APP_JS: &str = include_str!("../../console/app.js");
const APP_CSS: &str = include_str!("../../console/app.css");
const UPLOT_JS: &str = include_str!("../../console/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../console/vendor/uplot/uPlot.min.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The pages are compiled in: a new binary may change them, so always revalidate.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // Nothing is loaded from elsewhere; scripts only from this origin.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
                ),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The console's routes: the public static pages and the authenticated JSON routes (the same
/// bearer-token check as the query API). Merge it with the query API's router.
pub fn router(state: ConsoleState, auth: Arc<Auth>) -> Router {
    let v1 = Router::new()
        .route(ROUTE_PIPELINE, get(pipeline_handler))
        .route(ROUTE_RECORDS, get(records_handler))
        .route(ROUTE_RISK_LATENCY, get(risk_latency_handler))
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            crate::api::auth::require_bearer,
        ))
        .with_state(state);
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/console/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/console/vendor/uPlot.iife.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", UPLOT_JS) }),
        )
        .route(
            "/console/vendor/uPlot.min.css",
            get(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }),
        )
        .merge(v1)
        .layer(axum::middleware::from_fn(crate::http::track_requests))
}

/// `{"as_of", "data"}` with status 200, as every `/v1` answer.
fn envelope(state: &ConsoleState, data: Value) -> Response {
    let as_of = rfc3339(state.freshness.get());
    (
        StatusCode::OK,
        axum::Json(json!({"as_of": as_of, "data": data})),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

async fn pipeline_handler(State(state): State<ConsoleState>) -> Response {
    let data = pipeline::snapshot(&state.topology, &state.sampler);
    envelope(&state, data)
}

async fn risk_latency_handler(State(state): State<ConsoleState>) -> Response {
    envelope(&state, pipeline::risk_latency())
}

/// Query of [`ROUTE_RECORDS`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    limit: Option<String>,
    key: Option<String>,
}

async fn records_handler(
    State(state): State<ConsoleState>,
    topic: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Path(topic)) = topic else {
        return error(StatusCode::BAD_REQUEST, "bad topic name");
    };
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "unknown query parameter (limit and key are accepted)",
        );
    };
    let limit = match query.limit.as_deref() {
        None => DEFAULT_RECORDS,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_RECORDS).contains(&n) => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("limit must be an integer from 1 to {MAX_RECORDS}"),
                )
            }
        },
    };
    // Only the topology's topics: the console is no general-purpose Kafka browser (internal
    // topics such as __consumer_offsets stay out of reach).
    if !state
        .topology
        .all_topics()
        .iter()
        .any(|(name, _)| *name == topic)
    {
        return error(
            StatusCode::NOT_FOUND,
            &format!("`{}` is not a topic of this topology", redact::text(&topic)),
        );
    }
    match state
        .reader
        .recent(&topic, limit, query.key.as_deref())
        .await
    {
        Ok(data) => envelope(&state, data),
        Err(e) => {
            tracing::warn!(topic = %topic, error = %e, "console: reading recent records failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot read {topic} now: {}", redact::text(&e.to_string())),
            )
        }
    }
}
