//! The ScyllaDB state backend (`[state] backend = "scylla"`): the [`StateStore`] interface on a
//! ScyllaDB (or Cassandra) cluster, shared by every fluxo instance and by `fluxo serve`.
//!
//! # Tables
//! `deploy/scylla/schema.cql` (embedded here and applied at start, every statement
//! `IF NOT EXISTS`). The materialized views and the blacklist are typed tables laid out for
//! their queries ([`mapping`]): `daily_balances` partitioned by account and clustered by date,
//! `price_alerts` / `below_average_events` by symbol and (time, id), `risk_decisions` and
//! `blacklist` by their id. Processor-private state goes to one generic `kv` table: its values
//! are versioned, processor-defined encodings (postcard) read back only by their processor and
//! only by key, so typed columns would add a second schema to keep in step with each processor
//! for no query; its key splits at the first `0x00` into partition and clustering key, like the
//! views' keys. Every read names one partition; a scan is one clustering slice; nothing uses
//! `ALLOW FILTERING`.
//!
//! # Driver settings
//! Prepared statements only; the driver's default load balancing, token-aware, preferring
//! `local_dc` when set (no failover to other DCs: LOCAL_* consistency would lie there); the
//! configured consistency (default LOCAL_QUORUM) on every read and write, so reads see every
//! acknowledged write; at most `max_concurrency` requests in flight per store (a semaphore);
//! timeouts, unavailable and overloaded errors retried 4 times with backoff (50 ms, 200 ms,
//! 800 ms). Retrying is safe because every statement is idempotent: writes carry an explicit
//! write timestamp (below), reads are reads.
//!
//! # Synchronous interface over an async driver
//! [`StateStore`] is synchronous and is called from the engine's threads and inline from the
//! API's async handlers. The store owns a small multi-threaded tokio runtime of its own where
//! the driver's connections live; each call spawns its future there and waits on a channel.
//! When the caller is a worker of a multi-threaded tokio runtime (the API), the wait is wrapped
//! in [`tokio::task::block_in_place`] so that runtime's other tasks move to other workers; a
//! plain thread just blocks. Calling from a current-thread runtime blocks that runtime for the
//! call (no deadlock: the driver runs on its own runtime). Dropping the store shuts its runtime
//! down in the background, so it may be dropped anywhere.
//!
//! # Effectively-once on ScyllaDB
//! Scylla has no multi-partition transactions: only a batch whose rows share one partition is
//! applied atomically and in isolation. A [`WriteBatch`] spans partitions (state of many keys,
//! view rows, the checkpoint), and applying part of one is not safe to redo: a processor's
//! dedup state (e.g. the ids of the entries already counted) written without the balance it
//! guards would make the redo skip those entries and lose them. So `commit` works like a
//! redo log:
//! 1. Every write becomes a row ([`mapping::Mutation`]), validated before anything is sent.
//!    All rows of the commit get the same write timestamp `ts` (`USING TIMESTAMP`), from a clock
//!    that only moves forward and is pushed past every timestamp seen in checkpoints and pending
//!    commits.
//! 2. If all rows fall in one partition (a lone checkpoint, one account) and one batch
//!    ([`plan::is_direct`]), they go in one
//!    UNLOGGED single-partition batch — atomic and isolated by itself. Done.
//! 3. Otherwise the batch is serialized ([`redo`]) into `commit_log` rows (partition
//!    `(owner, ts)`, owner = the processor of its checkpoints), then the commit point is
//!    written: one row `pending_commits(owner, ts)`. A crash before that row leaves nothing
//!    visible but an orphan log partition; the checkpoint did not move, so the inputs are
//!    consumed again and produce the same batch.
//! 4. The rows are applied: one UNLOGGED batch per partition (at most 100 rows / 96 KiB each),
//!    at bounded concurrency, the checkpoint partition last; then the pending row and the log
//!    are deleted.
//! 5. Before answering [`StateStore::checkpoints`] for a processor — which the engine reads
//!    before it resumes a partition, i.e. before it reads any state — every pending commit of
//!    that processor is rolled forward: its log is read and all its rows are applied again with
//!    the same timestamp `ts`. (Pending commits of batches without checkpoints are rolled
//!    forward at open.) A pending row whose log is gone is a finished commit brought back by a
//!    replica that missed its delete (logs are deleted only after their pending row), and is
//!    dropped. This reasoning needs reads that see acknowledged writes: QUORUM levels.
//!
//! Why a crash between writes cannot double count or lose anything: a commit is either before
//! its commit point (nothing of it is ever visible to the processor, which resumes from the old
//! checkpoint and recomputes it) or after it (it is completed before the processor reads state
//! or offsets again). Re-applying a commit is idempotent: its rows are absolute values (state
//! and view rows are upserts of the whole value, deletes are deletes; nothing increments) with
//! the same key and the same write timestamp, so applying them twice, or late, changes nothing,
//! and a newer commit's rows (larger timestamps) win over an old one replayed after them. The
//! API may see a commit half-applied for the few milliseconds it takes (no isolation across
//! partitions), never a state that will not become whole. Batches are UNLOGGED: Scylla's
//! batchlog (LOGGED) would give the same eventual atomicity, but refuses batches over 1 MiB and
//! replays on its own schedule, after the processor may already have read state again.

pub mod mapping;
pub mod plan;
pub mod redo;

use super::{Checkpoint, Rows, StateStore, StoreError, WriteBatch};
use crate::config::ScyllaSettings;
use fluxo_processors::events::{BelowAverageEvent, DailyBalance, PriceAlert, RiskDecision};
use fluxo_processors::risk::store::Listing;
use fluxo_processors::views;
use mapping::{
    date_from_cql, date_to_cql, decimal_from_cql, decimal_to_cql, enum_from_text, enum_text,
    timestamp_from_cql, timestamp_to_cql, Mutation, Slice, Table,
};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::response::query_result::QueryResult;
use scylla::response::PagingState;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::{CqlDate, CqlDecimal, CqlTimestamp};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// `deploy/scylla/schema.cql`.
pub const SCHEMA: &str = include_str!("../../../deploy/scylla/schema.cql");

/// Attempts of one statement on a transient error (timeout, unavailable, overloaded).
const ATTEMPTS: u32 = 4;
/// Attempts of a whole checkpoint read (roll-forward included), 2 s apart: the engine resumes
/// partitions from it, so it is worth waiting out a longer outage than one statement's retries.
const CHECKPOINT_ATTEMPTS: u32 = 8;
/// Rows per page of a scan.
const PAGE_ROWS: i32 = 1000;

/// The statements of `schema.cql`, comments removed.
pub fn schema_statements() -> Vec<String> {
    let text: String = SCHEMA
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("scylla: {e}"))
}

/// Parse a consistency name of [`crate::config::CONSISTENCY_LEVELS`].
fn consistency(name: &str) -> Result<Consistency, StoreError> {
    Ok(match name {
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        other => return Err(store_err(format!("unknown consistency `{other}`"))),
    })
}

/// Whether `e` may succeed when tried again: timeouts, an unavailable or overloaded replica,
/// a broken or missing connection.
fn is_transient(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::RequestTimeout(_)
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::EmptyPlan => true,
        ExecutionError::LastAttemptError(a) => match a {
            RequestAttemptError::DbError(db, _) => matches!(
                db,
                DbError::ReadTimeout { .. }
                    | DbError::WriteTimeout { .. }
                    | DbError::Unavailable { .. }
                    | DbError::Overloaded
                    | DbError::IsBootstrapping
                    | DbError::RateLimitReached { .. }
            ),
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId => true,
            _ => false,
        },
        _ => false,
    }
}

/// Write timestamps (microseconds): the wall clock, but strictly increasing and never below a
/// timestamp already seen, so a later commit always wins over an earlier one replayed late.
#[derive(Debug, Default)]
pub struct WriteClock(AtomicI64);

impl WriteClock {
    /// The next timestamp.
    pub fn next(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let mut prev = self.0.load(Ordering::SeqCst);
        loop {
            let next = now.max(prev.saturating_add(1));
            match self
                .0
                .compare_exchange(prev, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(seen) => prev = seen,
            }
        }
    }

    /// Never hand out a timestamp at or below `ts` again.
    pub fn observe(&self, ts: i64) {
        self.0.fetch_max(ts, Ordering::SeqCst);
    }
}

/// The write statements, by what they write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// `INSERT INTO kv (tbl, part, ckey, payload) VALUES (?, ?, ?, ?) USING TIMESTAMP ?`
    KvPut,
    /// `DELETE FROM kv USING TIMESTAMP ? WHERE tbl = ? AND part = ? AND ckey = ?`
    KvDel,
    /// `INSERT INTO checkpoints (processor, topic, topic_partition, next_offset) VALUES (?, ?, ?, ?) USING TIMESTAMP ?`
    CpPut,
    /// `INSERT INTO daily_balances (account_id, business_date, total_credits, total_debits, net, entry_count, last_entry_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`
    BalPut,
    /// `DELETE FROM daily_balances USING TIMESTAMP ? WHERE account_id = ? AND business_date = ?`
    BalDel,
    /// `INSERT INTO risk_decisions (transaction_id, score, decision, reasons, degraded, event_time, decided_at, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`
    DecPut,
    /// `DELETE FROM risk_decisions USING TIMESTAMP ? WHERE transaction_id = ?`
    DecDel,
    /// `INSERT INTO price_alerts (symbol, to_time, alert_id, direction, from_price, from_time, from_event_id, to_price, to_event_id, change_pct, threshold_pct, window_start, window_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`
    PaPut,
    /// `DELETE FROM price_alerts USING TIMESTAMP ? WHERE symbol = ? AND to_time = ? AND alert_id = ?`
    PaDel,
    /// `INSERT INTO below_average_events (symbol, event_time, event_id, kind, price, average, deviation_pct, samples, method, quote_event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`
    BaPut,
    /// `DELETE FROM below_average_events USING TIMESTAMP ? WHERE symbol = ? AND event_time = ? AND event_id = ?`
    BaDel,
    /// `INSERT INTO blacklist (document, reason, source, listed_since) VALUES (?, ?, ?, ?) USING TIMESTAMP ?`
    BlPut,
    /// `DELETE FROM blacklist USING TIMESTAMP ? WHERE document = ?`
    BlDel,
}

impl Write {
    /// Every write statement.
    #[cfg(test)]
    const ALL: [Write; 13] = [
        Write::KvPut,
        Write::KvDel,
        Write::CpPut,
        Write::BalPut,
        Write::BalDel,
        Write::DecPut,
        Write::DecDel,
        Write::PaPut,
        Write::PaDel,
        Write::BaPut,
        Write::BaDel,
        Write::BlPut,
        Write::BlDel,
    ];

    /// Its CQL.
    fn cql(self) -> &'static str {
        match self {
            Write::KvPut => "INSERT INTO kv (tbl, part, ckey, payload) VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
            Write::KvDel => "DELETE FROM kv USING TIMESTAMP ? WHERE tbl = ? AND part = ? AND ckey = ?",
            Write::CpPut => "INSERT INTO checkpoints (processor, topic, topic_partition, next_offset) VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
            Write::BalPut => "INSERT INTO daily_balances (account_id, business_date, total_credits, total_debits, net, entry_count, last_entry_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            Write::BalDel => "DELETE FROM daily_balances USING TIMESTAMP ? WHERE account_id = ? AND business_date = ?",
            Write::DecPut => "INSERT INTO risk_decisions (transaction_id, score, decision, reasons, degraded, event_time, decided_at, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            Write::DecDel => "DELETE FROM risk_decisions USING TIMESTAMP ? WHERE transaction_id = ?",
            Write::PaPut => "INSERT INTO price_alerts (symbol, to_time, alert_id, direction, from_price, from_time, from_event_id, to_price, to_event_id, change_pct, threshold_pct, window_start, window_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            Write::PaDel => "DELETE FROM price_alerts USING TIMESTAMP ? WHERE symbol = ? AND to_time = ? AND alert_id = ?",
            Write::BaPut => "INSERT INTO below_average_events (symbol, event_time, event_id, kind, price, average, deviation_pct, samples, method, quote_event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            Write::BaDel => "DELETE FROM below_average_events USING TIMESTAMP ? WHERE symbol = ? AND event_time = ? AND event_id = ?",
            Write::BlPut => "INSERT INTO blacklist (document, reason, source, listed_since) VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
            Write::BlDel => "DELETE FROM blacklist USING TIMESTAMP ? WHERE document = ?",
        }
    }
}

/// The prepared statements.
struct Statements {
    kv_get: PreparedStatement,
    kv_put: PreparedStatement,
    kv_del: PreparedStatement,
    kv_scan: PreparedStatement,
    kv_scan_open: PreparedStatement,
    kv_partitions: PreparedStatement,
    kv_drop: PreparedStatement,
    cp_put: PreparedStatement,
    cp_get: PreparedStatement,
    cp_processors: PreparedStatement,
    cp_drop: PreparedStatement,
    pending_put: PreparedStatement,
    pending_list: PreparedStatement,
    pending_del: PreparedStatement,
    /// The fence of an owner: its static `epochs`.
    epochs_get: PreparedStatement,
    pending_owners: PreparedStatement,
    log_put: PreparedStatement,
    log_get: PreparedStatement,
    log_del: PreparedStatement,
    bal_put: PreparedStatement,
    bal_del: PreparedStatement,
    bal_get: PreparedStatement,
    bal_scan: PreparedStatement,
    bal_scan_open: PreparedStatement,
    dec_put: PreparedStatement,
    dec_del: PreparedStatement,
    dec_get: PreparedStatement,
    pa_put: PreparedStatement,
    pa_del: PreparedStatement,
    pa_get: PreparedStatement,
    pa_scan: PreparedStatement,
    pa_scan_open: PreparedStatement,
    ba_put: PreparedStatement,
    ba_del: PreparedStatement,
    ba_get: PreparedStatement,
    ba_scan: PreparedStatement,
    ba_scan_open: PreparedStatement,
    bl_put: PreparedStatement,
    bl_del: PreparedStatement,
    bl_get: PreparedStatement,
}

const BAL_COLS: &str =
    "business_date, total_credits, total_debits, net, entry_count, last_entry_at, updated_at";
const PA_COLS: &str = "to_time, alert_id, direction, from_price, from_time, from_event_id, \
     to_price, to_event_id, change_pct, threshold_pct, window_start, window_end";
const BA_COLS: &str =
    "event_time, event_id, kind, price, average, deviation_pct, samples, method, quote_event_id";
const DEC_COLS: &str = "score, decision, reasons, degraded, event_time, decided_at, latency_ms";

impl Statements {
    /// The prepared form of `w`.
    fn write(&self, w: Write) -> &PreparedStatement {
        match w {
            Write::KvPut => &self.kv_put,
            Write::KvDel => &self.kv_del,
            Write::CpPut => &self.cp_put,
            Write::BalPut => &self.bal_put,
            Write::BalDel => &self.bal_del,
            Write::DecPut => &self.dec_put,
            Write::DecDel => &self.dec_del,
            Write::PaPut => &self.pa_put,
            Write::PaDel => &self.pa_del,
            Write::BaPut => &self.ba_put,
            Write::BaDel => &self.ba_del,
            Write::BlPut => &self.bl_put,
            Write::BlDel => &self.bl_del,
        }
    }

    async fn prepare(session: &Session) -> Result<Self, StoreError> {
        let p = |cql: String| async move {
            let mut st = session
                .prepare(cql.as_str())
                .await
                .map_err(|e| store_err(format!("preparing `{cql}`: {e}")))?;
            // Every statement is idempotent (explicit write timestamps), so the driver may
            // retry it on another node too.
            st.set_is_idempotent(true);
            Ok::<_, StoreError>(st)
        };
        let s = |cql: &str| p(cql.to_string());
        Ok(Self {
            kv_get: s("SELECT payload FROM kv WHERE tbl = ? AND part = ? AND ckey = ?").await?,
            kv_put: s(Write::KvPut.cql()).await?,
            kv_del: s(Write::KvDel.cql()).await?,
            kv_scan: s("SELECT ckey, payload FROM kv WHERE tbl = ? AND part = ? AND ckey >= ? AND ckey < ? LIMIT ?").await?,
            kv_scan_open: s("SELECT ckey, payload FROM kv WHERE tbl = ? AND part = ? AND ckey >= ? LIMIT ?").await?,
            kv_partitions: s("SELECT DISTINCT tbl, part FROM kv").await?,
            kv_drop: s("DELETE FROM kv USING TIMESTAMP ? WHERE tbl = ? AND part = ?").await?,
            cp_put: s(Write::CpPut.cql()).await?,
            cp_get: s("SELECT topic, topic_partition, next_offset, WRITETIME(next_offset) FROM checkpoints WHERE processor = ?").await?,
            cp_processors: s("SELECT DISTINCT processor FROM checkpoints").await?,
            cp_drop: s("DELETE FROM checkpoints USING TIMESTAMP ? WHERE processor = ?").await?,
            pending_put: s("INSERT INTO pending_commits (owner, commit_ts, chunks) VALUES (?, ?, ?) IF NOT EXISTS").await?,
            // The clustering bound leaves out the partition's static-only row (the fence).
            pending_list: s("SELECT commit_ts, chunks FROM pending_commits WHERE owner = ? AND commit_ts >= -9223372036854775808").await?,
            pending_del: s("DELETE FROM pending_commits WHERE owner = ? AND commit_ts = ? IF EXISTS").await?,
            epochs_get: s("SELECT epochs FROM pending_commits WHERE owner = ? LIMIT 1").await?,
            pending_owners: s("SELECT DISTINCT owner FROM pending_commits").await?,
            log_put: s("INSERT INTO commit_log (owner, commit_ts, chunk, payload) VALUES (?, ?, ?, ?) USING TIMESTAMP ?").await?,
            log_get: s("SELECT chunk, payload FROM commit_log WHERE owner = ? AND commit_ts = ?").await?,
            log_del: s("DELETE FROM commit_log USING TIMESTAMP ? WHERE owner = ? AND commit_ts = ?").await?,
            bal_put: s(Write::BalPut.cql()).await?,
            bal_del: s(Write::BalDel.cql()).await?,
            bal_get: p(format!("SELECT {BAL_COLS} FROM daily_balances WHERE account_id = ? AND business_date = ?")).await?,
            bal_scan: p(format!("SELECT {BAL_COLS} FROM daily_balances WHERE account_id = ? AND business_date >= ? AND business_date < ? LIMIT ?")).await?,
            bal_scan_open: p(format!("SELECT {BAL_COLS} FROM daily_balances WHERE account_id = ? AND business_date >= ? LIMIT ?")).await?,
            dec_put: s(Write::DecPut.cql()).await?,
            dec_del: s(Write::DecDel.cql()).await?,
            dec_get: p(format!("SELECT {DEC_COLS} FROM risk_decisions WHERE transaction_id = ?")).await?,
            pa_put: s(Write::PaPut.cql()).await?,
            pa_del: s(Write::PaDel.cql()).await?,
            pa_get: p(format!("SELECT {PA_COLS} FROM price_alerts WHERE symbol = ? AND to_time = ? AND alert_id = ?")).await?,
            pa_scan: p(format!("SELECT {PA_COLS} FROM price_alerts WHERE symbol = ? AND (to_time, alert_id) >= (?, ?) AND (to_time, alert_id) < (?, ?) LIMIT ?")).await?,
            pa_scan_open: p(format!("SELECT {PA_COLS} FROM price_alerts WHERE symbol = ? AND (to_time, alert_id) >= (?, ?) LIMIT ?")).await?,
            ba_put: s(Write::BaPut.cql()).await?,
            ba_del: s(Write::BaDel.cql()).await?,
            ba_get: p(format!("SELECT {BA_COLS} FROM below_average_events WHERE symbol = ? AND event_time = ? AND event_id = ?")).await?,
            ba_scan: p(format!("SELECT {BA_COLS} FROM below_average_events WHERE symbol = ? AND (event_time, event_id) >= (?, ?) AND (event_time, event_id) < (?, ?) LIMIT ?")).await?,
            ba_scan_open: p(format!("SELECT {BA_COLS} FROM below_average_events WHERE symbol = ? AND (event_time, event_id) >= (?, ?) LIMIT ?")).await?,
            bl_put: s(Write::BlPut.cql()).await?,
            bl_del: s(Write::BlDel.cql()).await?,
            bl_get: s("SELECT reason, source, listed_since FROM blacklist WHERE document = ?").await?,
        })
    }
}

/// A row of `daily_balances` as selected by [`BAL_COLS`].
type BalRow = (
    CqlDate,
    CqlDecimal,
    CqlDecimal,
    CqlDecimal,
    i64,
    CqlTimestamp,
    CqlTimestamp,
);
/// A row of `price_alerts` as selected by [`PA_COLS`].
type PaRow = (
    CqlTimestamp,
    String,
    String,
    CqlDecimal,
    CqlTimestamp,
    String,
    CqlDecimal,
    String,
    CqlDecimal,
    CqlDecimal,
    CqlTimestamp,
    CqlTimestamp,
);
/// A row of `below_average_events` as selected by [`BA_COLS`].
type BaRow = (
    CqlTimestamp,
    String,
    String,
    CqlDecimal,
    CqlDecimal,
    CqlDecimal,
    i64,
    String,
    String,
);
/// A row of `risk_decisions` as selected by [`DEC_COLS`] (an empty list reads as null).
type DecRow = (
    i32,
    String,
    Option<Vec<(String, i32, String)>>,
    bool,
    CqlTimestamp,
    CqlTimestamp,
    i64,
);

fn balance_row(account: &str, r: BalRow) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let date = date_from_cql(r.0);
    let b = DailyBalance {
        account_id: account.to_string(),
        business_date: date,
        total_credits: decimal_from_cql(&r.1).map_err(store_err)?,
        total_debits: decimal_from_cql(&r.2).map_err(store_err)?,
        net: decimal_from_cql(&r.3).map_err(store_err)?,
        entry_count: r.4,
        last_entry_at: timestamp_from_cql(r.5),
        updated_at: timestamp_from_cql(r.6),
    };
    Ok((
        views::daily_balance_key(account, date),
        mapping::view_json(&b).map_err(store_err)?,
    ))
}

fn alert_row(symbol: &str, r: PaRow) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let a = PriceAlert {
        alert_id: r.1,
        symbol: symbol.to_string(),
        direction: enum_from_text(&r.2).map_err(store_err)?,
        from_price: decimal_from_cql(&r.3).map_err(store_err)?,
        from_time: timestamp_from_cql(r.4),
        from_event_id: r.5,
        to_price: decimal_from_cql(&r.6).map_err(store_err)?,
        to_time: timestamp_from_cql(r.0),
        to_event_id: r.7,
        change_pct: decimal_from_cql(&r.8).map_err(store_err)?,
        threshold_pct: decimal_from_cql(&r.9).map_err(store_err)?,
        window_start: timestamp_from_cql(r.10),
        window_end: timestamp_from_cql(r.11),
    };
    Ok((
        views::alert_key(symbol, a.to_time, &a.alert_id),
        mapping::view_json(&a).map_err(store_err)?,
    ))
}

fn below_row(symbol: &str, r: BaRow) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let e = BelowAverageEvent {
        event_id: r.1,
        symbol: symbol.to_string(),
        kind: enum_from_text(&r.2).map_err(store_err)?,
        price: decimal_from_cql(&r.3).map_err(store_err)?,
        average: decimal_from_cql(&r.4).map_err(store_err)?,
        deviation_pct: decimal_from_cql(&r.5).map_err(store_err)?,
        samples: r.6,
        method: enum_from_text(&r.7).map_err(store_err)?,
        event_time: timestamp_from_cql(r.0),
        quote_event_id: r.8,
    };
    Ok((
        views::alert_key(symbol, e.event_time, &e.event_id),
        mapping::view_json(&e).map_err(store_err)?,
    ))
}

fn decision_row(id: &str, r: DecRow) -> Result<Vec<u8>, StoreError> {
    let d = RiskDecision {
        transaction_id: id.to_string(),
        score: r.0,
        decision: mapping::decision_from_text(&r.1).map_err(store_err)?,
        reasons: mapping::reasons_from_cql(r.2.unwrap_or_default()),
        degraded: r.3,
        event_time: timestamp_from_cql(r.4),
        decided_at: timestamp_from_cql(r.5),
        latency_ms: r.6,
    };
    mapping::view_json(&d).map_err(store_err)
}

/// Values bound to one statement.
type Values = Box<dyn SerializeRow + Send + Sync>;
/// One statement of a batch with its bound values.
type Bound = (PreparedStatement, Values);

/// The connected driver and what every call shares.
struct Inner {
    session: Session,
    st: Statements,
    limit: Semaphore,
    clock: WriteClock,
    /// This store's instance id, written beside the epochs it claims.
    instance: String,
    /// The epoch this instance claimed, per `(processor, "topic/partition")`.
    claims: std::sync::Mutex<std::collections::HashMap<(String, String), i64>>,
}

impl Inner {
    /// Run `f` (one request) under the concurrency limit, retrying transient errors.
    async fn retry<T, Fut>(&self, what: &str, mut f: impl FnMut() -> Fut) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, ExecutionError>>,
    {
        let mut delay = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            let permit = self
                .limit
                .acquire()
                .await
                .map_err(|_| store_err("the store is closed"))?;
            let result = f().await;
            drop(permit);
            match result {
                Ok(v) => return Ok(v),
                Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                    tracing::warn!(%what, attempt, error = %e, "scylla: retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                    attempt += 1;
                }
                Err(e) => return Err(store_err(format!("{what}: {e}"))),
            }
        }
    }

    async fn exec<V: SerializeRow + Sync>(
        &self,
        what: &str,
        st: &PreparedStatement,
        values: &V,
    ) -> Result<QueryResult, StoreError> {
        self.retry(what, || self.session.execute_unpaged(st, values))
            .await
    }

    /// Every row of a (single-partition) query, page by page, up to `limit` rows.
    async fn rows<V, R>(
        &self,
        what: &str,
        st: &PreparedStatement,
        values: &V,
        limit: usize,
    ) -> Result<Vec<R>, StoreError>
    where
        V: SerializeRow + Sync,
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let mut st = st.clone();
        st.set_page_size(PAGE_ROWS);
        let mut out = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let (result, next) = self
                .retry(what, || {
                    self.session
                        .execute_single_page(&st, values, paging.clone())
                })
                .await?;
            let rows = result.into_rows_result().map_err(store_err)?;
            for row in rows.rows::<R>().map_err(store_err)? {
                if out.len() >= limit {
                    return Ok(out);
                }
                out.push(row.map_err(store_err)?);
            }
            match next.into_paging_control_flow() {
                ControlFlow::Break(()) => return Ok(out),
                ControlFlow::Continue(p) => paging = p,
            }
        }
    }

    async fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let st = &self.st;
        let first = |mut rows: Vec<(Vec<u8>, Vec<u8>)>| rows.pop().map(|(_, v)| v);
        match Table::of(table) {
            Table::Kv | Table::Checkpoints => {
                let (part, ckey) = mapping::split_key(key);
                let rows: Vec<(Vec<u8>,)> = self
                    .rows("get", &st.kv_get, &(table, part, ckey), 1)
                    .await?;
                Ok(rows.into_iter().next().map(|r| r.0))
            }
            Table::DailyBalances => {
                let Ok((account, date)) = mapping::parse_balance_key(key) else {
                    return Ok(None);
                };
                let rows: Vec<BalRow> = self
                    .rows("get", &st.bal_get, &(&account, date_to_cql(date)), 1)
                    .await?;
                let rows = rows
                    .into_iter()
                    .map(|r| balance_row(&account, r))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(first(rows))
            }
            Table::PriceAlerts => {
                let Ok((symbol, time, id)) = mapping::parse_alert_key(key) else {
                    return Ok(None);
                };
                let values = (&symbol, timestamp_to_cql(time), &id);
                let rows: Vec<PaRow> = self.rows("get", &st.pa_get, &values, 1).await?;
                let rows = rows
                    .into_iter()
                    .map(|r| alert_row(&symbol, r))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(first(rows))
            }
            Table::BelowAverage => {
                let Ok((symbol, time, id)) = mapping::parse_alert_key(key) else {
                    return Ok(None);
                };
                let values = (&symbol, timestamp_to_cql(time), &id);
                let rows: Vec<BaRow> = self.rows("get", &st.ba_get, &values, 1).await?;
                let rows = rows
                    .into_iter()
                    .map(|r| below_row(&symbol, r))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(first(rows))
            }
            Table::RiskDecisions => {
                let Ok(id) = std::str::from_utf8(key) else {
                    return Ok(None);
                };
                let rows: Vec<DecRow> = self.rows("get", &st.dec_get, &(id,), 1).await?;
                rows.into_iter()
                    .next()
                    .map(|r| decision_row(id, r))
                    .transpose()
            }
            Table::Blacklist => {
                let Ok(document) = std::str::from_utf8(key) else {
                    return Ok(None);
                };
                let rows: Vec<(String, String, CqlTimestamp)> =
                    self.rows("get", &st.bl_get, &(document,), 1).await?;
                Ok(rows.into_iter().next().map(|(reason, source, since)| {
                    mapping::listing_bytes(&Listing {
                        reason,
                        source,
                        since: timestamp_from_cql(since),
                    })
                }))
            }
        }
    }

    async fn scan(
        &self,
        table: &str,
        prefix: &[u8],
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, StoreError> {
        let (part, _) = mapping::split_key(prefix);
        if part.len() == prefix.len() {
            return Err(store_err(format!(
                "{table}: a scan prefix must name one partition (`partition \\0 ...`)"
            )));
        }
        let Some((low, high)) = mapping::scan_bounds(prefix, start, end) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cql_limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let st = &self.st;
        let kind = Table::of(table);
        if kind == Table::Kv {
            let n = part.len();
            return match &high {
                Some(h) => {
                    let values = (table, part, &low[n..], &h[n..], cql_limit);
                    let rows: Vec<(Vec<u8>, Vec<u8>)> =
                        self.rows("scan", &st.kv_scan, &values, limit).await?;
                    Ok(rows
                        .into_iter()
                        .map(|(c, v)| ([part, &c].concat(), v))
                        .collect())
                }
                None => {
                    let values = (table, part, &low[n..], cql_limit);
                    let rows: Vec<(Vec<u8>, Vec<u8>)> =
                        self.rows("scan", &st.kv_scan_open, &values, limit).await?;
                    Ok(rows
                        .into_iter()
                        .map(|(c, v)| ([part, &c].concat(), v))
                        .collect())
                }
            };
        }
        // Typed views: the prefix is exactly their partition, the bounds full clustering keys.
        let partition = std::str::from_utf8(part)
            .map_err(|_| store_err(format!("{table}: partition is not UTF-8")))?;
        let slice = mapping::view_slice(kind, prefix, &low, high.as_deref())
            .map_err(|e| store_err(format!("{table}: {e}")))?;
        match (kind, slice) {
            (_, None) => Ok(Vec::new()),
            (Table::DailyBalances, Some(Slice::Dates { lo, hi })) => {
                let lo = date_to_cql(lo);
                let rows: Vec<BalRow> = match hi {
                    Some(hi) => {
                        let v = (partition, lo, date_to_cql(hi), cql_limit);
                        self.rows("scan", &st.bal_scan, &v, limit).await?
                    }
                    None => {
                        let v = (partition, lo, cql_limit);
                        self.rows("scan", &st.bal_scan_open, &v, limit).await?
                    }
                };
                rows.into_iter()
                    .map(|r| balance_row(partition, r))
                    .collect()
            }
            (Table::PriceAlerts | Table::BelowAverage, Some(Slice::Times { lo, hi })) => {
                let lo = (timestamp_to_cql(lo.0), lo.1);
                let hi = hi.map(|(t, id)| (timestamp_to_cql(t), id));
                let (scan, open) = if kind == Table::PriceAlerts {
                    (&st.pa_scan, &st.pa_scan_open)
                } else {
                    (&st.ba_scan, &st.ba_scan_open)
                };
                macro_rules! run {
                    ($row:ty, $decode:expr) => {{
                        let rows: Vec<$row> = match &hi {
                            Some(hi) => {
                                let v = (partition, lo.0, &lo.1, hi.0, &hi.1, cql_limit);
                                self.rows("scan", scan, &v, limit).await?
                            }
                            None => {
                                let v = (partition, lo.0, &lo.1, cql_limit);
                                self.rows("scan", open, &v, limit).await?
                            }
                        };
                        rows.into_iter().map(|r| $decode(partition, r)).collect()
                    }};
                }
                if kind == Table::PriceAlerts {
                    run!(PaRow, alert_row)
                } else {
                    run!(BaRow, below_row)
                }
            }
            _ => Err(store_err(format!("{table} is read by key only"))),
        }
    }

    /// The prepared statement and values writing `m` at write timestamp `ts`.
    fn bind(&self, m: &Mutation, ts: i64) -> Result<Bound, StoreError> {
        let (write, values) = bound_values(m, ts)?;
        Ok((self.st.write(write).clone(), values))
    }

    /// Apply the rows of one partition in UNLOGGED single-partition batches.
    async fn apply_partition(&self, rows: &[&Mutation], ts: i64) -> Result<(), StoreError> {
        for batch in plan::batches(rows) {
            let bound = batch
                .iter()
                .map(|m| self.bind(m, ts))
                .collect::<Result<Vec<_>, _>>()?;
            self.send_batch(bound).await?;
        }
        Ok(())
    }

    async fn send_batch(&self, rows: Vec<Bound>) -> Result<(), StoreError> {
        if let [(st, values)] = rows.as_slice() {
            return self.exec("write", st, values).await.map(drop);
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        batch.set_is_idempotent(true);
        let mut values = Vec::with_capacity(rows.len());
        for (st, v) in rows {
            batch.append_statement(st);
            values.push(v);
        }
        self.retry("batch", || self.session.batch(&batch, &values))
            .await
            .map(drop)
    }

    /// Apply every row of a commit at write timestamp `ts`: state and views first (each
    /// partition in its own batches, concurrently under the semaphore), checkpoints last.
    async fn apply(&self, rows: &[Mutation], ts: i64) -> Result<(), StoreError> {
        let (state, checkpoints) = plan::partitions(rows);
        let writes = state.iter().map(|rows| self.apply_partition(rows, ts));
        for r in futures::future::join_all(writes).await {
            r?;
        }
        for rows in &checkpoints {
            self.apply_partition(rows, ts).await?;
        }
        Ok(())
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows = mutations(&batch)?;
        let ts = self.clock.next();
        let fence = self.fence_of(&batch);
        if fence.is_empty() && plan::is_direct(&rows) {
            // One partition, one batch: an UNLOGGED single-partition batch is atomic and
            // isolated by itself.
            return self.apply(&rows, ts).await;
        }
        let owner = owner_of(&batch);
        let record = redo::encode(&batch);
        let chunks: Vec<&[u8]> = record.chunks(redo::CHUNK_BYTES).collect();
        let n = i32::try_from(chunks.len()).map_err(store_err)?;
        let log = chunks.iter().enumerate().map(|(i, c)| {
            let values = (&owner, ts, i as i32, *c, ts);
            async move { self.exec("commit log", &self.st.log_put, &values).await }
        });
        for r in futures::future::join_all(log).await {
            r?;
        }
        // The commit point: a lightweight transaction, conditioned on this instance still
        // holding the partitions it checkpoints.
        if fence.is_empty() {
            self.exec("commit point", &self.st.pending_put, &(&owner, ts, n))
                .await?;
        } else {
            self.fenced_commit_point(&owner, ts, n, &fence).await?;
        }
        self.apply(&rows, ts).await?;
        self.forget(&owner, ts).await
    }

    /// The claimed epochs the commit of `batch` is conditioned on: those of its checkpoints'
    /// partitions that this instance claimed (global-table partitions, read by every instance,
    /// are never claimed).
    fn fence_of(&self, batch: &WriteBatch) -> Vec<(String, i64)> {
        let claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        batch
            .checkpoints
            .iter()
            .filter_map(|c| {
                let key = fence_key(&c.topic, c.partition);
                claims
                    .get(&(c.processor.clone(), key.clone()))
                    .map(|epoch| (key, *epoch))
            })
            .collect()
    }

    /// Write the commit point of `(owner, ts)` if every partition of `fence` still has the
    /// epoch this instance claimed.
    ///
    /// # Errors
    /// A fenced [`StoreError`] ([`StoreError::is_fenced`]) when another instance claimed one
    /// of them since.
    async fn fenced_commit_point(
        &self,
        owner: &str,
        ts: i64,
        chunks: i32,
        fence: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let conditions: Vec<String> = (0..fence.len())
            .map(|_| "epochs[?] = ?".to_string())
            .collect();
        let cql = format!(
            "UPDATE pending_commits SET chunks = ? WHERE owner = ? AND commit_ts = ? IF {}",
            conditions.join(" AND ")
        );
        use scylla::value::CqlValue;
        let mut values: Vec<Option<CqlValue>> = vec![
            Some(CqlValue::Int(chunks)),
            Some(CqlValue::Text(owner.to_string())),
            Some(CqlValue::BigInt(ts)),
        ];
        for (key, epoch) in fence {
            values.push(Some(CqlValue::Text(key.clone())));
            values.push(Some(CqlValue::BigInt(*epoch)));
        }
        let applied = self.lwt("fenced commit point", &cql, &values).await?;
        if applied {
            return Ok(());
        }
        // The stale claims stay: every later commit for those partitions is conditioned on
        // them and fails the same way until this instance claims them again.
        Err(store_err(format!(
            "{} another instance claimed partitions of `{owner}` this instance was \
             committing ({}); nothing was committed",
            super::FENCED,
            fence
                .iter()
                .map(|(k, e)| format!("{k} at epoch {e}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Run a lightweight transaction; true when it applied.
    async fn lwt(
        &self,
        what: &str,
        cql: &str,
        values: &[Option<scylla::value::CqlValue>],
    ) -> Result<bool, StoreError> {
        let mut st = scylla::statement::Statement::new(cql);
        st.set_serial_consistency(Some(scylla::statement::SerialConsistency::Serial));
        let result = self
            .retry(what, || self.session.query_unpaged(st.clone(), values))
            .await?;
        let rows = result
            .into_rows_result()
            .map_err(|e| store_err(format!("{what}: {e}")))?;
        let row: scylla::value::Row = rows
            .first_row()
            .map_err(|e| store_err(format!("{what}: {e}")))?;
        Ok(matches!(
            row.columns.first(),
            Some(Some(scylla::value::CqlValue::Boolean(true)))
        ))
    }

    /// Claim `partitions` of `processor` for this instance: bump each one's epoch in a
    /// lightweight transaction, so that commits of any earlier holder fail from now on.
    async fn claim(&self, processor: &str, partitions: &[(String, i32)]) -> Result<(), StoreError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = partitions.iter().map(|(t, p)| fence_key(t, *p)).collect();
        for attempt in 1..=20u64 {
            let mut st = self.st.epochs_get.clone();
            st.set_consistency(Consistency::Serial);
            let current: Vec<FenceRow> = self.rows("read epochs", &st, &(processor,), 1).await?;
            let epochs = current
                .into_iter()
                .next()
                .and_then(|(e,)| e)
                .unwrap_or_default();
            use scylla::value::CqlValue;
            let mut sets = Vec::new();
            let mut conditions = Vec::new();
            let mut values: Vec<Option<CqlValue>> = Vec::new();
            let mut cond_values: Vec<Option<CqlValue>> = Vec::new();
            let mut wanted = Vec::new();
            for key in &keys {
                let old = epochs.get(key).copied();
                let new = old.unwrap_or(0) + 1;
                wanted.push((key.clone(), new));
                sets.push("epochs[?] = ?, holders[?] = ?");
                values.push(Some(CqlValue::Text(key.clone())));
                values.push(Some(CqlValue::BigInt(new)));
                values.push(Some(CqlValue::Text(key.clone())));
                values.push(Some(CqlValue::Text(self.instance.clone())));
                conditions.push("epochs[?] = ?");
                cond_values.push(Some(CqlValue::Text(key.clone())));
                // `= null`: the partition was never claimed.
                cond_values.push(old.map(CqlValue::BigInt));
            }
            let cql = format!(
                "UPDATE pending_commits SET {} WHERE owner = ? IF {}",
                sets.join(", "),
                conditions.join(" AND ")
            );
            values.push(Some(CqlValue::Text(processor.to_string())));
            values.extend(cond_values);
            if self.lwt("claim partitions", &cql, &values).await? {
                let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
                for (key, epoch) in wanted {
                    claims.insert((processor.to_string(), key), epoch);
                }
                tracing::info!(
                    processor,
                    partitions = keys.len(),
                    "scylla: partitions claimed"
                );
                return Ok(());
            }
            tracing::debug!(
                processor,
                attempt,
                "scylla: claim raced with another; retrying"
            );
            tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
        }
        Err(store_err(format!(
            "claiming partitions of `{processor}`: still contended after 20 attempts"
        )))
    }

    /// Delete a fully applied commit's pending row and log.
    async fn forget(&self, owner: &str, ts: i64) -> Result<(), StoreError> {
        let now = self.clock.next();
        // The pending row was written by a lightweight transaction; its delete is one too
        // (mixing Paxos and plain writes on one row can order them wrongly).
        self.exec("commit done", &self.st.pending_del, &(owner, ts))
            .await?;
        self.exec("commit log cleanup", &self.st.log_del, &(now, owner, ts))
            .await
            .map(drop)
    }

    /// Complete every pending commit of `owner` (see the module documentation).
    async fn roll_forward(&self, owner: &str) -> Result<usize, StoreError> {
        let pending: Vec<(i64, i32)> = self
            .rows(
                "pending commits",
                &self.st.pending_list,
                &(owner,),
                usize::MAX,
            )
            .await?;
        for (ts, chunks) in &pending {
            self.clock.observe(*ts);
            let parts: Vec<(i32, Vec<u8>)> = self
                .rows("commit log", &self.st.log_get, &(owner, *ts), usize::MAX)
                .await?;
            if parts.is_empty() {
                // The log is written whole before the commit point and deleted only after the
                // commit was applied and its pending row deleted; with reads that see every
                // acknowledged write (QUORUM levels), an empty log means a finished commit
                // whose pending row came back (a replica that missed the delete).
                tracing::warn!(%owner, commit = ts, "scylla: pending commit already applied");
                self.forget(owner, *ts).await?;
                continue;
            }
            if parts.len() != usize::try_from(*chunks).unwrap_or(0)
                || parts.iter().enumerate().any(|(i, (c, _))| *c as usize != i)
            {
                return Err(store_err(format!(
                    "pending commit {ts} of `{owner}` has {} of its {chunks} log chunks",
                    parts.len()
                )));
            }
            let record: Vec<u8> = parts.into_iter().flat_map(|(_, b)| b).collect();
            let batch = redo::decode(&record).map_err(store_err)?;
            self.apply(&mutations(&batch)?, *ts).await?;
            self.forget(owner, *ts).await?;
            tracing::info!(%owner, commit = ts, "scylla: rolled a pending commit forward");
        }
        Ok(pending.len())
    }

    async fn checkpoints(&self, processor: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let mut attempt = 1;
        loop {
            match self.checkpoints_once(processor).await {
                Ok(c) => return Ok(c),
                Err(e) if attempt < CHECKPOINT_ATTEMPTS => {
                    tracing::warn!(%processor, attempt, error = %e, "scylla: checkpoints unreadable, retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn checkpoints_once(&self, processor: &str) -> Result<Vec<Checkpoint>, StoreError> {
        self.roll_forward(processor).await?;
        let rows: Vec<(String, i32, i64, i64)> = self
            .rows("checkpoints", &self.st.cp_get, &(processor,), usize::MAX)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(topic, partition, next_offset, written)| {
                // Partitions may come from another instance: stay ahead of its timestamps.
                self.clock.observe(written);
                Checkpoint {
                    processor: processor.to_string(),
                    topic,
                    partition,
                    next_offset,
                }
            })
            .collect())
    }

    /// The write time (epoch ms) of `processor`'s latest checkpoint commit, if any.
    async fn last_commit(&self, processor: &str) -> Result<Option<i64>, StoreError> {
        let rows: Vec<(String, i32, i64, i64)> = self
            .rows("checkpoints", &self.st.cp_get, &(processor,), usize::MAX)
            .await?;
        Ok(rows.iter().map(|r| r.3 / 1000).max())
    }

    async fn drop_namespace(&self, prefix: &str) -> Result<(), StoreError> {
        let ts = self.clock.next();
        let st = &self.st;
        // Partition-key-only scans of whole tables: meant for rare resets, not the hot path.
        let owners: Vec<(String,)> = self
            .rows("list owners", &st.pending_owners, &(), usize::MAX)
            .await?;
        for (owner,) in owners.iter().filter(|(o,)| o.starts_with(prefix)) {
            let pending: Vec<(i64, i32)> = self
                .rows("pending commits", &st.pending_list, &(owner,), usize::MAX)
                .await?;
            for (commit, _) in pending {
                self.forget(owner, commit).await?;
            }
        }
        let parts: Vec<(String, Vec<u8>)> = self
            .rows("list partitions", &st.kv_partitions, &(), usize::MAX)
            .await?;
        for (tbl, part) in parts.iter().filter(|(t, _)| t.starts_with(prefix)) {
            self.exec("drop", &st.kv_drop, &(ts, tbl, part)).await?;
        }
        for (name, cql_table) in Table::TYPED {
            if name.starts_with(prefix) {
                let cql = format!("TRUNCATE {cql_table}");
                self.retry("truncate", || self.session.query_unpaged(cql.as_str(), &()))
                    .await?;
            }
        }
        let processors: Vec<(String,)> = self
            .rows("list processors", &st.cp_processors, &(), usize::MAX)
            .await?;
        for (p,) in processors.iter().filter(|(p,)| p.starts_with(prefix)) {
            self.exec("drop checkpoints", &st.cp_drop, &(ts, p)).await?;
        }
        Ok(())
    }
}

/// The statement and values writing `m` at write timestamp `ts`.
fn bound_values(m: &Mutation, ts: i64) -> Result<(Write, Values), StoreError> {
    let dec = decimal_to_cql;
    Ok(match m {
        Mutation::Kv {
            tbl,
            part,
            ckey,
            value,
        } => match value {
            Some(v) => (
                Write::KvPut,
                Box::new((tbl.clone(), part.clone(), ckey.clone(), v.clone(), ts)),
            ),
            None => (
                Write::KvDel,
                Box::new((ts, tbl.clone(), part.clone(), ckey.clone())),
            ),
        },
        Mutation::Balance { account, date, row } => match row {
            Some(b) => (
                Write::BalPut,
                Box::new((
                    account.clone(),
                    date_to_cql(*date),
                    dec(b.total_credits),
                    dec(b.total_debits),
                    dec(b.net),
                    b.entry_count,
                    timestamp_to_cql(b.last_entry_at),
                    timestamp_to_cql(b.updated_at),
                    ts,
                )),
            ),
            None => (
                Write::BalDel,
                Box::new((ts, account.clone(), date_to_cql(*date))),
            ),
        },
        Mutation::Decision { id, row } => match row {
            Some(d) => (
                Write::DecPut,
                Box::new((
                    id.clone(),
                    d.score,
                    enum_text(&d.decision).map_err(store_err)?,
                    mapping::reasons_to_cql(&d.reasons),
                    d.degraded,
                    timestamp_to_cql(d.event_time),
                    timestamp_to_cql(d.decided_at),
                    d.latency_ms,
                    ts,
                )),
            ),
            None => (Write::DecDel, Box::new((ts, id.clone()))),
        },
        Mutation::PriceAlert {
            symbol,
            time,
            id,
            row,
        } => match row {
            Some(a) => (
                Write::PaPut,
                Box::new((
                    symbol.clone(),
                    timestamp_to_cql(*time),
                    id.clone(),
                    enum_text(&a.direction).map_err(store_err)?,
                    dec(a.from_price),
                    timestamp_to_cql(a.from_time),
                    a.from_event_id.clone(),
                    dec(a.to_price),
                    a.to_event_id.clone(),
                    dec(a.change_pct),
                    dec(a.threshold_pct),
                    timestamp_to_cql(a.window_start),
                    timestamp_to_cql(a.window_end),
                    ts,
                )),
            ),
            None => (
                Write::PaDel,
                Box::new((ts, symbol.clone(), timestamp_to_cql(*time), id.clone())),
            ),
        },
        Mutation::BelowAverage {
            symbol,
            time,
            id,
            row,
        } => match row {
            Some(e) => (
                Write::BaPut,
                Box::new((
                    symbol.clone(),
                    timestamp_to_cql(*time),
                    id.clone(),
                    enum_text(&e.kind).map_err(store_err)?,
                    dec(e.price),
                    dec(e.average),
                    dec(e.deviation_pct),
                    e.samples,
                    enum_text(&e.method).map_err(store_err)?,
                    e.quote_event_id.clone(),
                    ts,
                )),
            ),
            None => (
                Write::BaDel,
                Box::new((ts, symbol.clone(), timestamp_to_cql(*time), id.clone())),
            ),
        },
        Mutation::Blacklist { document, row } => match row {
            Some(l) => (
                Write::BlPut,
                Box::new((
                    document.clone(),
                    l.reason.clone(),
                    l.source.clone(),
                    timestamp_to_cql(l.since),
                    ts,
                )),
            ),
            None => (Write::BlDel, Box::new((ts, document.clone()))),
        },
        Mutation::Checkpoint(c) => (
            Write::CpPut,
            Box::new((
                c.processor.clone(),
                c.topic.clone(),
                c.partition,
                c.next_offset,
                ts,
            )),
        ),
    })
}

/// Every write and checkpoint of `batch` as rows, or the first that cannot be mapped.
fn mutations(batch: &WriteBatch) -> Result<Vec<Mutation>, StoreError> {
    let mut rows = Vec::with_capacity(batch.writes.len() + batch.checkpoints.len());
    for ((table, key), value) in &batch.writes {
        rows.push(Mutation::from_write(table, key, value.as_deref()).map_err(store_err)?);
    }
    rows.extend(batch.checkpoints.iter().cloned().map(Mutation::Checkpoint));
    Ok(rows)
}

/// The owner of the pending commits of batches without checkpoints. CQL refuses an empty
/// partition key ("Key may not be empty", on Cassandra and ScyllaDB alike), and no processor
/// name starts with a space.
const NO_OWNER: &str = " none";

/// The processor whose pending commits hold `batch`: that of its checkpoints ([`NO_OWNER`] if
/// none).
fn owner_of(batch: &WriteBatch) -> String {
    batch
        .checkpoints
        .first()
        .map_or_else(|| NO_OWNER.to_string(), |c| c.processor.clone())
}

/// The fence of one owner as read: `epochs` (null when never claimed).
type FenceRow = (Option<std::collections::HashMap<String, i64>>,);

/// How a partition is named in the fence's maps: `topic/partition`.
fn fence_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The ScyllaDB state store.
pub struct ScyllaStore {
    runtime: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScyllaStore")
    }
}

impl Drop for ScyllaStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Does not block, so the store may be dropped inside an async context.
            rt.shutdown_background();
        }
    }
}

impl ScyllaStore {
    /// Connect to the cluster, create the keyspace and tables if missing, prepare the
    /// statements and complete any pending commit of batches without checkpoints.
    ///
    /// # Errors
    /// A [`StoreError`] when no node answers or the schema cannot be applied.
    pub fn connect(settings: &ScyllaSettings) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fluxo-scylla")
            .enable_all()
            .build()
            .map_err(store_err)?;
        let settings = settings.clone();
        let connect = async move {
            let mut policy = DefaultPolicy::builder().token_aware(true);
            if let Some(dc) = &settings.local_dc {
                policy = policy
                    .prefer_datacenter(dc.clone())
                    .permit_dc_failover(false);
            }
            let profile = ExecutionProfile::builder()
                .consistency(consistency(&settings.consistency)?)
                .load_balancing_policy(policy.build())
                .retry_policy(Arc::new(DefaultRetryPolicy::new()))
                .request_timeout(Some(Duration::from_secs(10)))
                .build();
            let session = SessionBuilder::new()
                .known_nodes(&settings.nodes)
                .default_execution_profile_handle(profile.into_handle())
                .build()
                .await
                .map_err(|e| {
                    store_err(format!("connecting to {}: {e}", settings.nodes.join(",")))
                })?;
            let ks = &settings.keyspace;
            let create = format!(
                "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {}",
                settings.replication.to_cql()
            );
            session
                .query_unpaged(create.as_str(), &())
                .await
                .map_err(|e| store_err(format!("creating keyspace {ks}: {e}")))?;
            session
                .use_keyspace(ks.as_str(), false)
                .await
                .map_err(|e| store_err(format!("using keyspace {ks}: {e}")))?;
            for cql in schema_statements() {
                session
                    .query_unpaged(cql.as_str(), &())
                    .await
                    .map_err(|e| store_err(format!("applying `{cql}`: {e}")))?;
            }
            session.await_schema_agreement().await.map_err(store_err)?;
            let st = Statements::prepare(&session).await?;
            let inner = Inner {
                session,
                st,
                limit: Semaphore::new(settings.max_concurrency),
                clock: WriteClock::default(),
                instance: uuid::Uuid::new_v4().to_string(),
                claims: Default::default(),
            };
            inner.roll_forward(NO_OWNER).await?;
            Ok::<_, StoreError>(Arc::new(inner))
        };
        let inner = match wait(&runtime, connect) {
            Ok(inner) => inner,
            Err(e) => {
                // Dropping a runtime blocks, which panics inside an async context (`fluxo serve`).
                runtime.shutdown_background();
                return Err(e);
            }
        };
        Ok(Self {
            runtime: Some(runtime),
            inner,
        })
    }

    /// How fresh the views are: the oldest of `processors`' latest checkpoint commits (epoch
    /// ms; write times, i.e. wall clock), `None` when none has committed yet. Used by
    /// `fluxo serve`, which shares the views but not the processors' in-memory freshness.
    ///
    /// # Errors
    /// A [`StoreError`] when the checkpoints cannot be read.
    pub fn views_as_of(&self, processors: &[String]) -> Result<Option<i64>, StoreError> {
        let processors = processors.to_vec();
        self.call(|i| async move {
            let mut oldest: Option<i64> = None;
            for p in &processors {
                if let Some(t) = i.last_commit(p).await? {
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                }
            }
            Ok(oldest)
        })
    }

    /// Run `f` on the store's runtime and wait for it (see the module documentation).
    fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let Some(rt) = &self.runtime else {
            return Err(store_err("the store is closed"));
        };
        wait(rt, f(self.inner.clone()))
    }
}

/// Spawn `fut` on `rt` and block the calling thread until it is done.
fn wait<T, Fut>(rt: &tokio::runtime::Runtime, fut: Fut) -> Result<T, StoreError>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let recv = move || {
        rx.recv()
            .map_err(|_| store_err("the driver runtime stopped"))?
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(recv)
        }
        _ => recv(),
    }
}

impl StateStore for ScyllaStore {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (table, key) = (table.to_string(), key.to_vec());
        self.call(|i| async move { i.get(&table, &key).await })
    }

    fn scan(
        &self,
        table: &str,
        prefix: &[u8],
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, StoreError> {
        let (table, prefix, start) = (table.to_string(), prefix.to_vec(), start.to_vec());
        let end = end.map(<[u8]>::to_vec);
        self.call(|i| async move { i.scan(&table, &prefix, &start, end.as_deref(), limit).await })
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.call(|i| async move { i.commit(batch).await })
    }

    fn claim(&self, processor: &str, partitions: &[(String, i32)]) -> Result<(), StoreError> {
        let (processor, partitions) = (processor.to_string(), partitions.to_vec());
        self.call(|i| async move { i.claim(&processor, &partitions).await })
    }

    fn checkpoints(&self, processor: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let processor = processor.to_string();
        self.call(|i| async move { i.checkpoints(&processor).await })
    }

    fn drop_namespace(&self, prefix: &str) -> Result<(), StoreError> {
        let prefix = prefix.to_string();
        self.call(|i| async move { i.drop_namespace(&prefix).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_idempotent_and_query_shaped() {
        let statements = schema_statements();
        assert_eq!(statements.len(), 9, "{statements:#?}");
        for s in &statements {
            assert!(s.starts_with("CREATE TABLE IF NOT EXISTS "), "{s}");
            assert!(!s.to_uppercase().contains("ALLOW FILTERING"), "{s}");
        }
        for (_, cql_table) in Table::TYPED {
            let head = format!("CREATE TABLE IF NOT EXISTS {cql_table} (");
            assert!(
                statements.iter().any(|s| s.starts_with(&head)),
                "{cql_table}"
            );
        }
        let balances = statements
            .iter()
            .find(|s| s.contains(" daily_balances "))
            .unwrap();
        assert!(balances.contains("business_date date"));
        assert!(balances.contains("total_credits decimal"));
        assert!(balances.contains("last_entry_at timestamp"));
        assert!(balances.contains("PRIMARY KEY (account_id, business_date)"));
        assert!(balances.contains("CLUSTERING ORDER BY (business_date ASC)"));
        for log in [" pending_commits ", " commit_log "] {
            let s = statements.iter().find(|s| s.contains(log)).unwrap();
            assert!(s.ends_with("AND gc_grace_seconds = 3600"), "{s}");
        }
    }

    #[test]
    fn the_write_clock_only_moves_forward() {
        let clock = WriteClock::default();
        let a = clock.next();
        let b = clock.next();
        assert!(b > a);
        clock.observe(i64::MAX / 2);
        assert_eq!(clock.next(), i64::MAX / 2 + 1);
        clock.observe(5);
        assert_eq!(clock.next(), i64::MAX / 2 + 2);
    }

    #[test]
    fn consistency_names_map_to_levels() {
        for name in crate::config::CONSISTENCY_LEVELS {
            assert!(consistency(name).is_ok(), "{name}");
        }
        assert_eq!(
            consistency("LOCAL_QUORUM").unwrap(),
            Consistency::LocalQuorum
        );
        assert!(consistency("MOST").is_err());
    }

    /// The sync bridge from every kind of caller: a plain thread, a worker of a multi-threaded
    /// runtime (the API's handlers) and a current-thread runtime. None may panic or deadlock.
    #[test]
    fn the_sync_bridge_works_from_any_caller() {
        let driver = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
        );
        let call = |d: &tokio::runtime::Runtime| {
            wait(d, async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(7)
            })
        };
        assert_eq!(call(&driver).unwrap(), 7);
        let multi = tokio::runtime::Runtime::new().unwrap();
        let d = driver.clone();
        let got = multi.block_on(async move { tokio::spawn(async move { call(&d) }).await });
        assert_eq!(got.unwrap().unwrap(), 7);
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(current.block_on(async { call(&driver) }).unwrap(), 7);
        // Inside an explicit block_in_place (nested) too.
        let d = driver.clone();
        let nested = multi.block_on(async move {
            tokio::spawn(async move { tokio::task::block_in_place(|| call(&d)) }).await
        });
        assert_eq!(nested.unwrap().unwrap(), 7);
        let failed: Result<i32, _> = wait(&driver, async { Err(store_err("boom")) });
        assert_eq!(failed.unwrap_err().to_string(), "state store: scylla: boom");
    }

    /// No server here: a node that refuses connections is a clear error, not a panic or hang,
    /// from a plain thread and from a runtime worker.
    #[test]
    fn an_unreachable_cluster_is_an_error() {
        let settings = ScyllaSettings {
            nodes: vec!["127.0.0.1:1".into()],
            keyspace: "fluxo".into(),
            replication: crate::config::Replication::Simple(1),
            consistency: "LOCAL_QUORUM".into(),
            local_dc: None,
            max_concurrency: 4,
        };
        let started = std::time::Instant::now();
        let e = ScyllaStore::connect(&settings).unwrap_err();
        assert!(e.to_string().contains("connecting to 127.0.0.1:1"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(30));
        // From an async context too (`fluxo serve`, `fluxo up`): an error, not a panic.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let e = rt
            .block_on(
                async move { tokio::spawn(async move { ScyllaStore::connect(&settings) }).await },
            )
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("connecting to 127.0.0.1:1"), "{e}");
    }

    #[test]
    fn a_batch_owned_by_its_processor() {
        let mut b = WriteBatch::new();
        assert_eq!(owner_of(&b), NO_OWNER);
        b.checkpoints.push(Checkpoint {
            processor: "risk-scoring".into(),
            topic: "t".into(),
            partition: 0,
            next_offset: 1,
        });
        assert_eq!(owner_of(&b), "risk-scoring");
        let rows = mutations(&b).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].group(),
            (Table::Checkpoints, b"risk-scoring".to_vec())
        );
    }
}

/// The conformance suite against a real CQL node: Apache Cassandra started by the test (or the
/// node `FLUXO_TEST_SCYLLA` names, e.g. a ScyllaDB).
#[cfg(test)]
mod conformance_tests {
    use super::*;
    use crate::config::Replication;

    /// Runs [`crate::state::conformance::run_all`] against the test node, in keyspace
    /// `fluxo_conformance` (SimpleStrategy, RF 1).
    #[test]
    fn scylla_conformance() {
        let node = crate::engines::cassandra::shared_test_node();
        let settings = ScyllaSettings {
            nodes: node.split(',').map(|s| s.trim().to_string()).collect(),
            keyspace: "fluxo_conformance".into(),
            replication: Replication::Simple(1),
            consistency: "LOCAL_QUORUM".into(),
            local_dc: None,
            max_concurrency: 16,
        };
        let store = ScyllaStore::connect(&settings).unwrap();
        crate::state::conformance::run_all(&store);
        // The same calls from inside a multi-threaded runtime (the API's handlers).
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            tokio::spawn(async move {
                assert_eq!(store.get("conformance-none/t", b"k").unwrap(), None);
                drop(store);
            })
            .await
            .unwrap();
        });
    }

    fn settings(keyspace: &str) -> ScyllaSettings {
        ScyllaSettings {
            nodes: vec![crate::engines::cassandra::shared_test_node()],
            keyspace: keyspace.into(),
            replication: Replication::Simple(1),
            consistency: "LOCAL_QUORUM".into(),
            local_dc: None,
            max_concurrency: 16,
        }
    }

    fn batch(processor: &str, partition: i32, next_offset: i64, value: &[u8]) -> WriteBatch {
        let mut b = WriteBatch::new();
        // Two partitions of state, so the commit goes through the commit point.
        b.writes
            .insert(("fence/t".into(), b"a\0k".to_vec()), Some(value.to_vec()));
        b.writes
            .insert(("fence/t".into(), b"b\0k".to_vec()), Some(value.to_vec()));
        b.checkpoints.push(Checkpoint {
            processor: processor.into(),
            topic: "in".into(),
            partition,
            next_offset,
        });
        b
    }

    fn lone_checkpoint(processor: &str, partition: i32, next_offset: i64) -> WriteBatch {
        let mut b = WriteBatch::new();
        b.checkpoints.push(Checkpoint {
            processor: processor.into(),
            topic: "in".into(),
            partition,
            next_offset,
        });
        b
    }

    /// Two instances (two connections) of one processor: once the second claims a partition,
    /// the first can no longer commit for it (neither a multi-partition commit nor a lone
    /// checkpoint), while its other partitions and the new holder commit as usual.
    #[test]
    fn a_claimed_partition_fences_its_previous_holder() {
        let old = ScyllaStore::connect(&settings("fluxo_fence")).unwrap();
        let new = ScyllaStore::connect(&settings("fluxo_fence")).unwrap();
        let processor = format!("p{}", std::process::id());
        let parts = |ps: &[i32]| {
            ps.iter()
                .map(|p| ("in".to_string(), *p))
                .collect::<Vec<_>>()
        };
        old.claim(&processor, &parts(&[0, 1])).unwrap();
        old.commit(batch(&processor, 0, 10, b"old")).unwrap();
        old.commit(batch(&processor, 1, 10, b"old")).unwrap();

        new.claim(&processor, &parts(&[0])).unwrap();
        let err = old.commit(batch(&processor, 0, 20, b"zombie")).unwrap_err();
        assert!(err.is_fenced(), "{err}");
        let err = old.commit(lone_checkpoint(&processor, 0, 30)).unwrap_err();
        assert!(err.is_fenced(), "{err}");
        // Its other partition is still its own.
        old.commit(batch(&processor, 1, 20, b"old")).unwrap();
        // The new holder commits.
        new.commit(batch(&processor, 0, 15, b"new")).unwrap();

        let offsets: std::collections::BTreeMap<i32, i64> = new
            .checkpoints(&processor)
            .unwrap()
            .into_iter()
            .map(|c| (c.partition, c.next_offset))
            .collect();
        assert_eq!(offsets, [(0, 15), (1, 20)].into_iter().collect());
        // The zombie's values never landed: the last commit to the keys is the old holder's
        // partition-1 commit, then the new holder's.
        assert_eq!(new.get("fence/t", b"a\0k").unwrap(), Some(b"new".to_vec()));

        // Claiming back fences the new holder in turn.
        old.claim(&processor, &parts(&[0])).unwrap();
        let err = new.commit(batch(&processor, 0, 40, b"new")).unwrap_err();
        assert!(err.is_fenced(), "{err}");
        old.commit(batch(&processor, 0, 50, b"old")).unwrap();
    }
}

/// The statements' bind values and result rows against the column types of `schema.cql`, with
/// no server: the driver's own serializers and type checks run on column specs built from the
/// schema file, as a prepared statement's metadata would give them.
#[cfg(test)]
mod cql_type_tests {
    use super::*;
    use fluxo_processors::events::{
        AverageMethod, BelowAverageEvent, CrossingKind, DailyBalance, Decision, Direction,
        PriceAlert, RiskDecision, RiskReason,
    };
    use scylla::deserialize::row::DeserializeRow;
    use scylla::frame::response::result::{
        CollectionType, ColumnSpec, ColumnType, NativeType, TableSpec,
    };
    use scylla::serialize::row::RowSerializationContext;
    use scylla::serialize::writers::RowWriter;
    use std::collections::HashMap;
    use std::str::FromStr;

    /// A CQL type as written in schema.cql.
    fn cql_type(t: &str) -> ColumnType<'static> {
        // A static column's type is its type.
        let t = t.trim();
        let t = t.strip_suffix(" static").unwrap_or(t).trim();
        let inner = |prefix: &str| t.strip_prefix(prefix).and_then(|r| r.strip_suffix('>'));
        if let Some(e) = inner("map<") {
            let kv = top_level(e);
            assert_eq!(kv.len(), 2, "map<{e}>");
            return ColumnType::Collection {
                frozen: false,
                typ: CollectionType::Map(Box::new(cql_type(kv[0])), Box::new(cql_type(kv[1]))),
            };
        }
        if let Some(e) = inner("list<") {
            return ColumnType::Collection {
                frozen: false,
                typ: CollectionType::List(Box::new(cql_type(e))),
            };
        }
        if let Some(e) = inner("frozen<") {
            return cql_type(e);
        }
        if let Some(e) = inner("tuple<") {
            return ColumnType::Tuple(e.split(',').map(cql_type).collect());
        }
        ColumnType::Native(match t {
            "text" => NativeType::Text,
            "blob" => NativeType::Blob,
            "int" => NativeType::Int,
            "bigint" => NativeType::BigInt,
            "decimal" => NativeType::Decimal,
            "date" => NativeType::Date,
            "timestamp" => NativeType::Timestamp,
            "boolean" => NativeType::Boolean,
            other => panic!("type {other} not in this test's parser"),
        })
    }

    /// Split at commas outside `<>` and `()`.
    fn top_level(s: &str) -> Vec<&str> {
        let (mut depth, mut start, mut out) = (0_i32, 0, Vec::new());
        for (i, c) in s.char_indices() {
            match c {
                '<' | '(' => depth += 1,
                '>' | ')' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(s[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(s[start..].trim());
        out
    }

    /// table -> column -> type, from schema.cql.
    fn schema() -> HashMap<String, HashMap<String, ColumnType<'static>>> {
        let mut tables = HashMap::new();
        for st in schema_statements() {
            let rest = st.strip_prefix("CREATE TABLE IF NOT EXISTS ").unwrap();
            let (name, rest) = rest.split_once(" (").unwrap();
            let rest = rest.split(" WITH ").next().unwrap();
            let body = &rest[..rest.rfind(')').unwrap()];
            let mut cols = HashMap::new();
            for def in top_level(body) {
                if def.starts_with("PRIMARY KEY") {
                    continue;
                }
                let def = def.trim_end_matches(" PRIMARY KEY");
                let (col, typ) = def.split_once(' ').unwrap();
                cols.insert(col.to_string(), cql_type(typ));
            }
            tables.insert(name.to_string(), cols);
        }
        tables
    }

    /// The column type of each bind marker of a write statement, in order.
    fn marker_types(
        cql: &str,
        schema: &HashMap<String, HashMap<String, ColumnType<'static>>>,
    ) -> Vec<(String, ColumnType<'static>)> {
        let bigint = ColumnType::Native(NativeType::BigInt);
        if let Some(rest) = cql.strip_prefix("INSERT INTO ") {
            let (table, rest) = rest.split_once(" (").unwrap();
            let cols = rest.split_once(')').unwrap().0;
            let mut out: Vec<_> = cols
                .split(", ")
                .map(|c| (c.to_string(), schema[table][c].clone()))
                .collect();
            assert!(cql.ends_with(" USING TIMESTAMP ?"), "{cql}");
            out.push(("[timestamp]".into(), bigint));
            return out;
        }
        let rest = cql
            .strip_prefix("DELETE FROM ")
            .unwrap_or_else(|| panic!("{cql}"));
        let (table, rest) = rest.split_once(" USING TIMESTAMP ? WHERE ").unwrap();
        let mut out = vec![("[timestamp]".to_string(), bigint)];
        for cond in rest.split(" AND ") {
            let col = cond.strip_suffix(" = ?").unwrap_or_else(|| panic!("{cql}"));
            out.push((col.to_string(), schema[table][col].clone()));
        }
        out
    }

    fn dec(s: &str) -> rust_decimal::Decimal {
        rust_decimal::Decimal::from_str(s).unwrap()
    }

    /// One put and one delete of every kind of row.
    fn samples() -> Vec<Mutation> {
        let put = |table: &str, key: &[u8], json: Vec<u8>| {
            Mutation::from_write(table, key, Some(&json)).unwrap()
        };
        let del = |table: &str, key: &[u8]| Mutation::from_write(table, key, None).unwrap();
        let balance = DailyBalance {
            account_id: "a".into(),
            business_date: -1,
            total_credits: dec("1.00"),
            total_debits: dec("0.50"),
            net: dec("0.50"),
            entry_count: 2,
            last_entry_at: -5,
            updated_at: 7,
        };
        let alert = PriceAlert {
            alert_id: "x".into(),
            symbol: "S".into(),
            direction: Direction::Rise,
            from_price: dec("1.00000000"),
            from_time: 1,
            from_event_id: "e1".into(),
            to_price: dec("2.00000000"),
            to_time: 2,
            to_event_id: "e2".into(),
            change_pct: dec("100.0000"),
            threshold_pct: dec("5.0000"),
            window_start: 0,
            window_end: 2,
        };
        let below = BelowAverageEvent {
            event_id: "b".into(),
            symbol: "S".into(),
            kind: CrossingKind::Recovered,
            price: dec("1.00000000"),
            average: dec("1.10000000"),
            deviation_pct: dec("-9.0909"),
            samples: 3,
            method: AverageMethod::Sma,
            event_time: 3,
            quote_event_id: "q".into(),
        };
        let decision = RiskDecision {
            transaction_id: "t".into(),
            score: 10,
            decision: Decision::Approve,
            reasons: vec![RiskReason {
                rule_id: "r".into(),
                contribution: 10,
                text: "x".into(),
            }],
            degraded: false,
            event_time: 1,
            decided_at: 2,
            latency_ms: 1,
        };
        let json = |v: &dyn erased_serde_json::ToJson| v.to_json();
        let bkey = views::daily_balance_key("a", -1);
        let akey = views::alert_key("S", 2, "x");
        let ekey = views::alert_key("S", 3, "b");
        let listing = Listing {
            reason: "r".into(),
            source: "s".into(),
            since: 1,
        };
        vec![
            put("p/t", b"k\0c", b"v".to_vec()),
            del("p/t", b"k\0c"),
            put(views::DAILY_BALANCES, &bkey, json(&balance)),
            del(views::DAILY_BALANCES, &bkey),
            put(views::PRICE_ALERTS, &akey, json(&alert)),
            del(views::PRICE_ALERTS, &akey),
            put(views::BELOW_AVERAGE_EVENTS, &ekey, json(&below)),
            del(views::BELOW_AVERAGE_EVENTS, &ekey),
            put(views::RISK_DECISIONS, b"t", json(&decision)),
            del(views::RISK_DECISIONS, b"t"),
            put(
                fluxo_processors::risk::store::BLACKLIST_TABLE,
                b"123",
                mapping::listing_bytes(&listing),
            ),
            del(fluxo_processors::risk::store::BLACKLIST_TABLE, b"123"),
            Mutation::Checkpoint(Checkpoint {
                processor: "p".into(),
                topic: "t".into(),
                partition: 0,
                next_offset: 1,
            }),
        ]
    }

    /// JSON of any view struct, behind one object-safe call.
    mod erased_serde_json {
        pub trait ToJson {
            fn to_json(&self) -> Vec<u8>;
        }
        impl<T: serde::Serialize> ToJson for T {
            fn to_json(&self) -> Vec<u8> {
                serde_json::to_vec(self).unwrap()
            }
        }
    }

    #[test]
    fn every_write_binds_the_schema_types() {
        let schema = schema();
        let table = TableSpec::borrowed("fluxo", "t");
        let mut used = Vec::new();
        for m in samples() {
            let (write, values) = bound_values(&m, 42).unwrap();
            used.push(write);
            let markers = marker_types(write.cql(), &schema);
            let specs: Vec<ColumnSpec> = markers
                .iter()
                .map(|(name, typ)| ColumnSpec::borrowed(name, typ.clone(), table.clone()))
                .collect();
            let ctx = RowSerializationContext::from_specs(&specs);
            let mut buf = Vec::new();
            let mut writer = RowWriter::new(&mut buf);
            values
                .serialize(&ctx, &mut writer)
                .unwrap_or_else(|e| panic!("{write:?} ({}): {e}", write.cql()));
            assert_eq!(writer.value_count(), markers.len(), "{write:?}");
        }
        for w in Write::ALL {
            assert!(used.contains(&w), "{w:?} has no sample");
        }
    }

    /// `DeserializeRow::type_check` of `R` against `table`'s `columns` (WRITETIME(..) is bigint).
    fn check<R: for<'f, 'm> DeserializeRow<'f, 'm>>(table: &str, columns: &str) {
        let schema = schema();
        let spec_table = TableSpec::borrowed("fluxo", "t");
        let names: Vec<&str> = columns.split(',').map(str::trim).collect();
        let specs: Vec<ColumnSpec> = names
            .iter()
            .map(|c| {
                let typ = if c.starts_with("WRITETIME(") {
                    ColumnType::Native(NativeType::BigInt)
                } else {
                    schema[table][*c].clone()
                };
                ColumnSpec::borrowed(c, typ, spec_table.clone())
            })
            .collect();
        R::type_check(&specs).unwrap_or_else(|e| panic!("{table} ({columns}): {e}"));
    }

    #[test]
    fn every_read_row_type_checks_against_the_schema() {
        check::<(Vec<u8>,)>("kv", "payload");
        check::<(Vec<u8>, Vec<u8>)>("kv", "ckey, payload");
        check::<(String, Vec<u8>)>("kv", "tbl, part");
        check::<(String, i32, i64, i64)>(
            "checkpoints",
            "topic, topic_partition, next_offset, WRITETIME(next_offset)",
        );
        check::<(String,)>("checkpoints", "processor");
        check::<(i64, i32)>("pending_commits", "commit_ts, chunks");
        check::<(String,)>("pending_commits", "owner");
        check::<(i32, Vec<u8>)>("commit_log", "chunk, payload");
        check::<BalRow>("daily_balances", BAL_COLS);
        check::<PaRow>("price_alerts", PA_COLS);
        check::<BaRow>("below_average_events", BA_COLS);
        check::<DecRow>("risk_decisions", DEC_COLS);
        check::<(String, String, CqlTimestamp)>("blacklist", "reason, source, listed_since");
    }

    #[test]
    fn a_wrong_type_is_caught_by_these_checks() {
        let schema = schema();
        let specs = [ColumnSpec::borrowed(
            "entry_count",
            schema["daily_balances"]["entry_count"].clone(),
            TableSpec::borrowed("fluxo", "t"),
        )];
        // entry_count is bigint: an i32 must not pass.
        assert!(<(i32,)>::type_check(&specs).is_err());
        let ctx = RowSerializationContext::from_specs(&specs);
        let mut buf = Vec::new();
        assert!((1_i32,)
            .serialize(&ctx, &mut RowWriter::new(&mut buf))
            .is_err());
        assert!((1_i64,)
            .serialize(&ctx, &mut RowWriter::new(&mut buf))
            .is_ok());
    }
}
