//! fluxo's pure stream processors.
//!
//! Every processor here is deterministic: a typed event goes in, state changes and typed events
//! come out. Nothing in this crate touches Kafka, a database, a socket or the clock; the runtime
//! (`fluxo`'s `src/`) does the I/O and hands each processor what it needs through [`Context`].
//!
//! # Layout
//! - [`events`]: the typed events, one per Avro schema in `schemas/`.
//! - [`state`]: the small key-value interface processors use for durable state, plus
//!   [`state::MemoryState`] for tests and benchmarks.
//! - [`price_change`]: alert when a price moves more than a threshold inside an event-time window.
//! - [`below_average`]: edge-triggered events when a price crosses below its historical average.
//! - [`risk`]: CPF/CNPJ validation, the blacklist table and behaviour rules that score transactions.
//! - [`consolidation`]: the idempotent daily consolidated balance per account.
//! - [`notify`]: webhook payloads and the retry schedule of the notifier.
//!
//! # The contract
//! A processor implements [`Processor`]. The runtime calls [`Processor::process`] once per input
//! record, in offset order per partition, and [`Processor::flush`] before every checkpoint: the
//! changes written there are committed to the state store in the same atomic write as the input
//! offsets they reflect. A processor may therefore keep any working set in memory, as long as
//! everything that must survive a crash is written out in `flush`; after a crash or a rebalance the
//! runtime builds a fresh processor, which loads what it needs lazily through
//! [`Context::state`].
//!
//! Time reaches a processor in two ways: the event time inside each record, and
//! [`Processor::on_tick`], which the runtime calls when stream time or the wall clock advances
//! and when a bounded run's input ends ([`Tick`]). A processor that holds records back for
//! event-time order releases them there, so its outputs do not wait for the next record of the
//! same key.

pub mod below_average;
pub mod config;
pub mod consolidation;
pub mod events;
pub(crate) mod keyed;
pub mod notify;
pub mod price_change;
pub mod risk;
pub mod state;
#[cfg(test)]
pub(crate) mod testkit;
pub mod views;

pub use state::{StateReader, StateWriter};

/// Milliseconds since the Unix epoch (UTC), the unit of every time in fluxo's events.
pub type Millis = i64;

/// Where an input record came from, as the runtime read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Offset in the source partition.
    pub offset: i64,
    /// The record's Kafka timestamp (create or log-append time), if it had one.
    pub timestamp: Option<Millis>,
    /// Processing time the runtime assigns to this record. Live processing passes the wall clock
    /// at the moment the record is processed; replays pass the record's Kafka timestamp so that
    /// two replays are byte-identical. Processors use it only for fields documented as
    /// processing-time (decision time, latency, `updated_at`), never for windows.
    pub processing_time: Millis,
}

impl RecordMeta<'_> {
    /// A stable id for the `index`-th output of this record: `topic/partition/offset/index`.
    /// The runtime also puts it in the `fluxo-id` header so consumers can drop duplicates.
    pub fn output_id(&self, index: usize) -> String {
        format!(
            "{}/{}/{}/{}",
            self.topic, self.partition, self.offset, index
        )
    }
}

/// Why a record was not applied. The runtime sends it to `<topic>.dlq` with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// A short machine-readable reason such as `late`, `invalid_amount`, `unknown_kind`.
    pub reason: String,
    /// A human-readable explanation (never a CPF/CNPJ in clear).
    pub detail: String,
}

impl Rejection {
    /// A rejection with a reason code and a human-readable detail.
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// What a processor sees while it handles one record.
pub struct Context<'a, O> {
    /// Where the record came from.
    pub meta: RecordMeta<'a>,
    /// Committed state, for lazy loading of keys the processor does not hold in memory.
    pub state: &'a dyn StateReader,
    out: &'a mut Vec<O>,
}

impl<'a, O> Context<'a, O> {
    /// A context that appends emitted records to `out`.
    pub fn new(meta: RecordMeta<'a>, state: &'a dyn StateReader, out: &'a mut Vec<O>) -> Self {
        Self { meta, state, out }
    }

    /// Emit an output record; the runtime encodes and produces it after `process` returns.
    pub fn emit(&mut self, output: O) {
        self.out.push(output);
    }

    /// How many records this input has emitted so far (the index of the next one).
    pub fn emitted(&self) -> usize {
        self.out.len()
    }
}

/// Time passing, as the runtime reports it to [`Processor::on_tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick<'a> {
    /// The wall clock reads this (epoch ms). Live runs report it about once a second, so work
    /// held back for event-time order can be released when no later record arrives (a symbol
    /// that stops quoting). Replays never see it: their outputs must not depend on when they
    /// run.
    WallClock(Millis),
    /// The stream time of an input partition advanced: the greatest record timestamp read from
    /// it so far (Kafka Streams' stream time). Reported after each batch that moved it.
    StreamTime {
        /// Input topic.
        topic: &'a str,
        /// Input partition.
        partition: i32,
        /// Its new stream time.
        time: Millis,
    },
    /// The input ends here: a bounded run (a replay) read its whole range. Everything held back
    /// is released, so a replay's outputs are complete and the same at every run.
    EndOfInput,
}

/// The runtime resumed an input partition from its checkpoint, with a fresh processor: at
/// start, after a rebalance gave it the partition, or after a rewind. Reported to
/// [`Processor::on_resume`] before the partition's next record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume<'a> {
    /// Input topic.
    pub topic: &'a str,
    /// Input partition.
    pub partition: i32,
    /// Processing time of the resume (the wall clock in live runs, as in [`RecordMeta`]).
    pub processing_time: Millis,
}

/// A pure stream processor.
pub trait Processor {
    /// The typed input (an enum when the processor reads several topics).
    type Input;
    /// The typed output (an enum when the processor writes several topics).
    type Output;

    /// Apply one input record, emitting through `ctx`.
    ///
    /// # Errors
    /// A [`Rejection`] when the record cannot be applied (invalid, too late); the runtime
    /// dead-letters it and moves on. A rejected record must leave the state unchanged.
    fn process(
        &mut self,
        ctx: &mut Context<'_, Self::Output>,
        input: Self::Input,
    ) -> Result<(), Rejection>;

    /// Write every state change since the last flush. Called before each checkpoint; what is
    /// written here is committed atomically with the input offsets processed so far.
    fn flush(&mut self, changes: &mut dyn StateWriter);

    /// Time advanced (see [`Tick`]); emit through `ctx` as in [`Processor::process`]. `ctx.meta`
    /// names the last input record the runtime handed this processor, with the current
    /// processing time. Changes made here are flushed and committed like any other. The default
    /// does nothing.
    fn on_tick(&mut self, _ctx: &mut Context<'_, Self::Output>, _tick: Tick<'_>) {}

    /// An input partition resumed from its checkpoint ([`Resume`]). A processor that holds
    /// records back finds, in its committed state, those of the partition that were held when
    /// the checkpoint was taken, so [`Processor::on_tick`] releases them even if their key never
    /// sees another record; everything else may keep loading lazily. Nothing is emitted here.
    /// The default does nothing.
    fn on_resume(&mut self, _state: &dyn StateReader, _resume: Resume<'_>) {}
}
