//! The route handlers and the JSON they answer.
//!
//! Responses are built with `serde_json::to_vec` into one buffer; store rows are decoded into the
//! processors' event types, so a corrupt row is a 500, never garbage passed through.

use super::{params, ApiState};
use crate::state::StoreError;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fluxo_processors::events::{BelowAverageEvent, DailyBalance, PriceAlert, RiskDecision};
use fluxo_processors::{views, Millis};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An error answer: status and `{"error": message}` (plus `as_of` for a missing row).
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 400: the request is malformed; the message says how.
    BadRequest(String),
    /// 404: no such row; the message says which, `as_of` when it was looked up.
    NotFound(String, Option<Millis>),
    /// 500: the store holds a row that does not decode.
    Internal,
    /// 503: the store did not answer (down, unreachable, timed out): a clear, retriable answer
    /// instead of a hang or an opaque 500, with `Retry-After`.
    Unavailable,
    /// 503: the store's reads did not finish within the request's read timeout.
    TimedOut(std::time::Duration),
    /// 503: every read slot ([`super::ReadGate`]) is taken by reads still running; the number is
    /// the limit.
    Saturated(usize),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<String>,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn error_response(status: StatusCode, error: &str, as_of: Option<Millis>) -> Response {
    let body = ErrorBody {
        error,
        as_of: as_of.and_then(params::rfc3339),
    };
    // Serializing a struct of strings cannot fail.
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest(m) => error_response(StatusCode::BAD_REQUEST, &m, None),
            ApiError::NotFound(m, as_of) => error_response(StatusCode::NOT_FOUND, &m, as_of),
            ApiError::Internal => {
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)
            }
            ApiError::Unavailable => unavailable("the state store is unavailable; retry later"),
            ApiError::TimedOut(after) => unavailable(&format!(
                "the state store did not answer within {} ms; retry later",
                after.as_millis()
            )),
            ApiError::Saturated(limit) => unavailable(&format!(
                "too many state store reads in flight (limit {limit}); retry later"
            )),
        }
    }
}

/// A 503 with `message` and `Retry-After: 5`.
fn unavailable(message: &str) -> Response {
    let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, message, None);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Run `read` (a request's store reads and the answer built from them) on the blocking pool,
/// answering [`ApiError::TimedOut`] when it takes longer than the state's read timeout. The
/// store calls block their thread (the driver waits and retries for tens of seconds when a node
/// stalls), so the deadline cannot be enforced around them on an async worker. The read holds
/// a place in the state's [`super::ReadGate`] until it ends, after its request's answer if it
/// timed out; with no place free the answer is [`ApiError::Saturated`] at once.
async fn bounded<F>(state: &ApiState, read: F) -> ApiResult
where
    F: FnOnce(&ApiState) -> ApiResult + Send + 'static,
{
    let Some(permit) = state.reads.try_enter() else {
        return Err(ApiError::Saturated(state.reads.limit()));
    };
    let limit = state.read_timeout;
    let owned = state.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _place = permit;
        read(&owned)
    });
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "query API: a read task failed");
            Err(ApiError::Internal)
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = limit.as_millis() as u64,
                "query API: the state store did not answer in time"
            );
            Err(ApiError::TimedOut(limit))
        }
    }
}

impl From<StoreError> for ApiError {
    /// A failed read is the store's availability, not the request's fault (the error itself is
    /// logged, never sent: it may name hosts).
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "query API: the state store failed a read");
        ApiError::Unavailable
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(format!("bad path: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(match r {
            QueryRejection::FailedToDeserializeQueryString(e) => {
                // serde's message names the bad or unknown parameter and the expected ones.
                format!(
                    "bad query string: {}",
                    e.body_text()
                        .trim_start_matches("Failed to deserialize query string: ")
                )
            }
            _ => "bad query string".to_string(),
        })
    }
}

type ApiResult = Result<Response, ApiError>;

/// `{"as_of": ..., "data": ...}`.
#[derive(Serialize)]
struct Envelope<T> {
    as_of: String,
    data: T,
}

fn ok<T: Serialize>(as_of: Millis, data: T) -> ApiResult {
    let body = serde_json::to_vec(&Envelope {
        as_of: params::rfc3339(as_of).ok_or(ApiError::Internal)?,
        data,
    })
    .map_err(|_| ApiError::Internal)?;
    Ok(json_response(StatusCode::OK, body))
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|_| ApiError::Internal)
}

fn time(millis: Millis) -> Result<String, ApiError> {
    params::rfc3339(millis).ok_or(ApiError::Internal)
}

fn date(days: i32) -> Result<String, ApiError> {
    params::format_days(days).ok_or(ApiError::Internal)
}

/// One day of one account (`GET .../daily-balances/{date}`).
#[derive(Serialize)]
struct DayBalance<'a> {
    account_id: &'a str,
    date: String,
    total_credits: Decimal,
    total_debits: Decimal,
    net: Decimal,
    entry_count: i64,
    last_entry_at: String,
    updated_at: String,
}

/// One day of a range, zeros when the day has no entries.
#[derive(Serialize)]
struct RangeDay {
    date: String,
    total_credits: Decimal,
    total_debits: Decimal,
    net: Decimal,
    entry_count: i64,
    last_entry_at: Option<String>,
    updated_at: Option<String>,
    running_balance: Decimal,
}

/// A range of days (`GET .../daily-balances?from&to`).
#[derive(Serialize)]
struct RangeBalance<'a> {
    account_id: &'a str,
    from: String,
    to: String,
    total_credits: Decimal,
    total_debits: Decimal,
    net: Decimal,
    entry_count: i64,
    closing_balance: Decimal,
    days: Vec<RangeDay>,
}

/// The ordered time or date that follows the partition prefix in a view key.
fn key_time(key: &[u8], prefix_len: usize) -> Result<i64, ApiError> {
    key.get(prefix_len..prefix_len + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(views::from_ordered_i64)
        .ok_or(ApiError::Internal)
}

fn account_exists(state: &ApiState, account: &str) -> Result<bool, ApiError> {
    let prefix = views::partition_prefix(account);
    Ok(!state
        .store
        .scan(views::DAILY_BALANCES, &prefix, &prefix, None, 1)?
        .is_empty())
}

fn unknown_account(account: &str, as_of: Millis) -> ApiError {
    ApiError::NotFound(format!("unknown account {account}"), Some(as_of))
}

/// `GET /v1/accounts/{account}/daily-balances/{date}`.
pub(crate) async fn daily_balance(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((account, day)) = path?;
    bounded(&state, move |state| {
        read_daily_balance(state, &account, day)
    })
    .await
}

fn read_daily_balance(state: &ApiState, account: &str, day: String) -> ApiResult {
    let account = params::identifier("account id", account).map_err(ApiError::BadRequest)?;
    let days = params::business_date("date", &day).map_err(ApiError::BadRequest)?;
    let as_of = state.freshness.get();
    let key = views::daily_balance_key(account, days);
    let Some(row) = state.store.get(views::DAILY_BALANCES, &key)? else {
        return Err(if account_exists(state, account)? {
            ApiError::NotFound(
                format!("account {account} has no entries on {day}"),
                Some(as_of),
            )
        } else {
            unknown_account(account, as_of)
        });
    };
    let b: DailyBalance = decode(&row)?;
    ok(
        as_of,
        DayBalance {
            account_id: account,
            date: day,
            total_credits: b.total_credits,
            total_debits: b.total_debits,
            net: b.net,
            entry_count: b.entry_count,
            last_entry_at: time(b.last_entry_at)?,
            updated_at: time(b.updated_at)?,
        },
    )
}

/// Query of a range of daily balances.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /v1/accounts/{account}/daily-balances?from=DATE&to=DATE`.
pub(crate) async fn daily_balance_range(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> ApiResult {
    let Path(account) = path?;
    let Query(q) = query?;
    bounded(&state, move |state| {
        read_daily_balance_range(state, &account, &q)
    })
    .await
}

fn read_daily_balance_range(state: &ApiState, account: &str, q: &RangeQuery) -> ApiResult {
    let account = params::identifier("account id", account).map_err(ApiError::BadRequest)?;
    let range =
        params::date_range(q.from.as_deref(), q.to.as_deref()).map_err(ApiError::BadRequest)?;
    let as_of = state.freshness.get();
    let prefix = views::partition_prefix(account);
    let start = views::daily_balance_key(account, range.from);
    let end = views::daily_balance_key(account, range.to.saturating_add(1));
    let rows = state.store.scan(
        views::DAILY_BALANCES,
        &prefix,
        &start,
        Some(&end),
        range.len(),
    )?;
    if rows.is_empty() && !account_exists(state, account)? {
        return Err(unknown_account(account, as_of));
    }
    let zero = Decimal::new(0, fluxo_processors::events::MONEY_SCALE);
    // Rows come in date order, at most one per day; the date is read from the key.
    let mut stored = rows
        .iter()
        .map(|(k, v)| Ok((key_time(k, prefix.len())?, v)))
        .peekable();
    let mut days = Vec::with_capacity(range.len());
    let (mut credits, mut debits, mut running, mut count) = (zero, zero, zero, 0_i64);
    for d in range.from..=range.to {
        let here = |r: &Result<(i64, &Vec<u8>), ApiError>| {
            r.as_ref().map_or(true, |(day, _)| *day == i64::from(d))
        };
        let day = match stored.next_if(here) {
            Some(row) => {
                let b: DailyBalance = decode(row?.1)?;
                // decimal(18, 2) rows cannot overflow a 96-bit Decimal over 366 days; a
                // corrupt row that would is a 500, not a panic.
                let add = |a: Decimal, b: Decimal| a.checked_add(b).ok_or(ApiError::Internal);
                running = add(running, b.net)?;
                credits = add(credits, b.total_credits)?;
                debits = add(debits, b.total_debits)?;
                count = count.saturating_add(b.entry_count);
                RangeDay {
                    date: date(d)?,
                    total_credits: b.total_credits,
                    total_debits: b.total_debits,
                    net: b.net,
                    entry_count: b.entry_count,
                    last_entry_at: Some(time(b.last_entry_at)?),
                    updated_at: Some(time(b.updated_at)?),
                    running_balance: running,
                }
            }
            None => RangeDay {
                date: date(d)?,
                total_credits: zero,
                total_debits: zero,
                net: zero,
                entry_count: 0,
                last_entry_at: None,
                updated_at: None,
                running_balance: running,
            },
        };
        days.push(day);
    }
    ok(
        as_of,
        RangeBalance {
            account_id: account,
            from: date(range.from)?,
            to: date(range.to)?,
            total_credits: credits,
            total_debits: debits,
            net: running,
            entry_count: count,
            closing_balance: running,
            days,
        },
    )
}

/// `GET /v1/risk-decisions/{transaction_id}`.
pub(crate) async fn risk_decision(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let Path(id) = path?;
    bounded(&state, move |state| read_risk_decision(state, &id)).await
}

fn read_risk_decision(state: &ApiState, id: &str) -> ApiResult {
    let id = params::identifier("transaction id", id).map_err(ApiError::BadRequest)?;
    let as_of = state.freshness.get();
    match state.store.get(views::RISK_DECISIONS, id.as_bytes())? {
        Some(row) => ok(as_of, decode::<RiskDecision>(&row)?),
        None => Err(ApiError::NotFound(
            format!("no risk decision for transaction {id}"),
            Some(as_of),
        )),
    }
}

/// Query of an event listing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    since: Option<String>,
    limit: Option<String>,
}

/// A page of events of one symbol.
#[derive(Serialize)]
struct EventPage<'a, T> {
    symbol: &'a str,
    since: Option<String>,
    events: Vec<T>,
    /// Set when more events follow: ask again with `since` = this value.
    next_since: Option<Millis>,
}

/// One symbol's rows of `table` (keyed by [`views::alert_key`]) from `since` on.
fn events<T>(state: &ApiState, table: &str, symbol: &str, q: &EventsQuery) -> ApiResult
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let symbol = params::identifier("symbol", symbol).map_err(ApiError::BadRequest)?;
    let since = match q.since.as_deref() {
        Some(s) => params::instant("'since'", s).map_err(ApiError::BadRequest)?,
        None => i64::MIN,
    };
    let limit = params::limit(q.limit.as_deref()).map_err(ApiError::BadRequest)?;
    let as_of = state.freshness.get();
    let prefix = views::partition_prefix(symbol);
    let start = views::alert_key(symbol, since, "");
    let mut rows = state.store.scan(table, &prefix, &start, None, limit + 1)?;
    let next_since = if rows.len() > limit {
        // Keys are `symbol \0 time(8) id`: the time follows the prefix.
        let next = key_time(&rows[limit].0, prefix.len())?;
        rows.truncate(limit);
        Some(next)
    } else {
        None
    };
    let events = rows
        .iter()
        .map(|(_, v)| decode::<T>(v))
        .collect::<Result<Vec<_>, _>>()?;
    ok(
        as_of,
        EventPage {
            symbol,
            since: q.since.is_some().then(|| time(since)).transpose()?,
            events,
            next_since,
        },
    )
}

/// `GET /v1/assets/{symbol}/alerts?since=TIME&limit=N`.
pub(crate) async fn price_alerts(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult {
    let Path(symbol) = path?;
    let Query(q) = query?;
    bounded(&state, move |state| {
        events::<PriceAlert>(state, views::PRICE_ALERTS, &symbol, &q)
    })
    .await
}

/// `GET /v1/assets/{symbol}/below-average-events?since=TIME&limit=N`.
pub(crate) async fn below_average_events(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult {
    let Path(symbol) = path?;
    let Query(q) = query?;
    bounded(&state, move |state| {
        events::<BelowAverageEvent>(state, views::BELOW_AVERAGE_EVENTS, &symbol, &q)
    })
    .await
}

/// `GET /openapi.json`.
pub(crate) async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        super::openapi::document_bytes(),
    )
        .into_response()
}

/// Fallback of unknown routes: 404.
pub(crate) async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "no such route", None)
}

/// Fallback of a known route with another method than GET: 405.
pub(crate) async fn method_not_allowed() -> Response {
    let mut r = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: this route only answers GET",
        None,
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
    r
}
