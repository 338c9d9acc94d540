//! The stream engine: consume -> decode -> process -> encode -> produce -> checkpoint.
//!
//! One engine per processor, on its own OS thread (Kafka clients are synchronous underneath;
//! async work such as schema lookups runs on the tokio runtime through a handle). The engine
//! joins the consumer group `fluxo-<processor>` over the processor's inputs and reads its
//! global inputs (tables every instance holds whole, like the blacklist) with a second,
//! group-less consumer that it catches up before the group consumer starts.
//!
//! # Effectively-once
//! Offsets live with the state: a checkpoint first waits until every produced output is
//! acknowledged, then commits the processor's state changes and the next input offsets in one
//! atomic store write. On assignment a partition is positioned at the offset stored with the
//! state, never at the group's committed offset (that one is only written afterwards, for lag
//! tools). A crash between produce and checkpoint replays the records since the checkpoint: their
//! state changes were never committed, so nothing is applied twice, and the outputs they produce
//! again carry the same `fluxo-id` header, so consumers can drop the duplicates.
//!
//! # Dead letters
//! A record that cannot be decoded or that the processor rejects goes to `<topic>.dlq` with
//! headers naming the reason, the processor and the source position (topic, partition, offset,
//! and the value's size and schema id when it has them); its offset is checkpointed like any
//! other, so the partition keeps moving.
//!
//! Inputs that carry documents (the job says so, [`crate::jobs::Job::carries_documents`]: the
//! transactions and the blacklist) must not have them copied to another topic, and a record
//! that does not parse cannot be masked field by field. Their dead letters therefore carry no
//! value ([`DLQ_PAYLOAD`] `withheld`), the key replaced by its keyed pseudonym (the HMAC of
//! [`crate::privacy`], so dead letters of one payer still share a key and a partition) and the
//! detail with digit runs masked. The original stays on the input topic at the source offset,
//! readable there for as long as that topic's retention keeps it: that is what a re-drive
//! reads (`fluxo consume --topic <input> --partition P --offset O --count 1`). Other inputs
//! (prices, ledger entries) keep their key and value in the dead letter.
//!
//! # Bounded runs
//! With [`EngineSpec::bounds`] (replays, `src/replay`), the engine reads only the listed
//! partitions from their stored offsets, ignores records past each end offset, produces to
//! suffixed topics, and returns once every partition reached its end and is checkpointed.
//!
//! # Backpressure
//! The producer queue is bounded (`max_in_flight`); when it is full the engine waits for
//! acknowledgements before it reads more. The consumer's prefetch is bounded in bytes, so memory
//! does not grow with lag.
//!
//! # Modules
//! - `clients`: the Kafka producer and consumers, configured for the processing guarantee.
//! - `restore`: catching up the global tables before the group consumer starts.
//! - `checkpoint`: the checkpoint strategies, one `Checkpointer` variant per guarantee
//!   (`Transactional`, `Pipelined`, `Blocking`), replacing the flags that used to select them.
//! - `rebalance`: the consumer-group callbacks that move partitions in and out.
//! - `run_loop`: poll, process, tick, checkpoint, until shutdown ([`run`]).
//! - `task`, `records`, `delivery`, `positions`: the state the loop and the rebalance
//!   callbacks share, how one record or tick runs through the job, how outputs are produced
//!   and acknowledged, where partitions are positioned.
//!
//! Errors the engine cannot recover from are returned from [`run`]; the caller (the binary, or
//! `pipeline`'s supervisor) decides whether to restart or exit.

mod checkpoint;
mod clients;
mod delivery;
mod positions;
mod rebalance;
mod records;
mod restore;
mod run_loop;
mod task;

pub use delivery::DeliveryContext;
pub use run_loop::run;

use crate::jobs::{Job, RawRecord};
use crate::state::StateStore;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Header carrying the deterministic id of an output record.
pub const ID_HEADER: &str = "fluxo-id";

/// Dead-letter headers.
pub const DLQ_REASON: &str = "fluxo-dlq-reason";
/// Human-readable detail of a dead letter.
pub const DLQ_DETAIL: &str = "fluxo-dlq-detail";
/// Processor that dead-lettered the record.
pub const DLQ_PROCESSOR: &str = "fluxo-dlq-processor";
/// Source topic of a dead letter.
pub const DLQ_TOPIC: &str = "fluxo-dlq-source-topic";
/// Source partition of a dead letter.
pub const DLQ_PARTITION: &str = "fluxo-dlq-source-partition";
/// Source offset of a dead letter.
pub const DLQ_OFFSET: &str = "fluxo-dlq-source-offset";
/// Size in bytes of the dead-lettered record's value (absent for a tombstone).
pub const DLQ_SIZE: &str = "fluxo-dlq-source-size";
/// Schema id of the dead-lettered value's Confluent framing, when it has one.
pub const DLQ_SCHEMA_ID: &str = "fluxo-dlq-source-schema-id";
/// `withheld` when the dead letter carries no value and a pseudonymized key, because its input
/// carries documents; absent when key and value are copied as read.
pub const DLQ_PAYLOAD: &str = "fluxo-dlq-payload";
/// The value of [`DLQ_PAYLOAD`] for a withheld record.
pub const DLQ_WITHHELD: &str = "withheld";

/// How long the store may keep failing before the engine stops (see `Task::store_or_fail`):
/// the default of `[runtime] store_patience`.
pub const CHECKPOINT_READ_PATIENCE: Duration = Duration::from_secs(120);

/// What a checkpoint could not do.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Some outputs were not acknowledged; the state must not move past them.
    #[error("outputs not acknowledged: {0}")]
    Delivery(String),
    /// The store refused the commit.
    #[error(transparent)]
    Store(#[from] crate::state::StoreError),
    /// The Kafka transaction of the checkpoint failed (`exactly_once`).
    #[error(transparent)]
    Transaction(#[from] crate::transactions::TxnError),
}

impl CheckpointError {
    /// True when the engine cannot go on and must stop (a fenced or otherwise failed
    /// transactional producer).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Transaction(t) if t.is_fatal())
    }

    /// True when the shared store refused the commit because another instance claimed one of
    /// its partitions (see [`StateStore::claim`]).
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_fenced())
    }
}

/// How processing time is assigned to records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The wall clock (live processing).
    Wall,
    /// The record's Kafka timestamp (replays: deterministic outputs).
    RecordTime,
}

impl Clock {
    /// The processing time of `rec` under this clock.
    fn processing_time(self, rec: &RawRecord<'_>) -> i64 {
        match self {
            Clock::Wall => now_millis(),
            Clock::RecordTime => rec.timestamp.unwrap_or(0),
        }
    }
}

/// Everything an engine needs to run.
pub struct EngineSpec {
    /// Input topics read in the consumer group.
    pub inputs: Vec<String>,
    /// Topics every instance reads whole, as tables (e.g. the blacklist).
    pub global_inputs: Vec<String>,
    /// Name used for the consumer group, checkpoints and metrics (differs in replays).
    pub name: String,
    /// The job (decode, process, encode).
    pub job: Box<dyn Job>,
    /// Where state and checkpoints go.
    pub store: Arc<dyn StateStore>,
    /// How processing time is read.
    pub clock: Clock,
    /// Touched after every checkpoint and whenever the engine is caught up, so the query API
    /// can say how fresh its answers are.
    pub freshness: Option<Arc<crate::api::Freshness>>,
    /// Set once global tables are restored and the group has assigned partitions.
    pub started: Arc<AtomicBool>,
    /// `Some` for a bounded run (a replay); `None` for live processing.
    pub bounds: Option<Bounds>,
}

/// A bounded run: which partitions to read and where to stop.
///
/// The engine reads exactly the listed partitions of its inputs and global inputs (whatever
/// the topology's static assignment says), from the offsets stored with the state, ignores
/// records at or past each partition's end, and returns once every listed input partition has
/// reached its end and the work is checkpointed.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// Exclusive end offset per `(topic, partition)`.
    pub ends: BTreeMap<(String, i32), i64>,
    /// Appended to the topic of every produced record, dead letters included (e.g.
    /// `.replay-7`); empty to produce to the topics themselves.
    pub topic_suffix: String,
}

impl Bounds {
    /// True when `rec` lies inside the bounds.
    fn admits(&self, rec: &RawRecord<'_>) -> bool {
        self.ends
            .get(&(rec.topic.to_string(), rec.partition))
            .is_some_and(|end| rec.offset < *end)
    }
}

/// Milliseconds since the Unix epoch by the wall clock.
fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The job's view of a consumed message (borrowing it: no copies of key or payload).
fn raw<'a>(m: &'a BorrowedMessage<'a>) -> RawRecord<'a> {
    RawRecord {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key(),
        payload: m.payload(),
        timestamp: m.timestamp().to_millis(),
        headers: m.headers().map(|h| {
            h.iter()
                .filter_map(|h| h.value.map(|v| (h.key, v)))
                .collect()
        }),
        trace: None,
    }
}
