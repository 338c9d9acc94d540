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
//! headers naming the reason, the processor and the source position; its offset is checkpointed
//! like any other, so the partition keeps moving.
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

use crate::config::Topology;
use crate::jobs::{DeadLetter, Job, JobError, Output, RawRecord};
use crate::metrics;
use crate::state::{Checkpoint, StateStore, StoreReader, WriteBatch};
use fluxo_processors::{RecordMeta, Tick};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest a batch is processed before the engine checkpoints what is done and polls again.
const MAX_BATCH_TIME: Duration = Duration::from_secs(10);

/// Header carrying the deterministic id of an output record.
pub const ID_HEADER: &str = "fluxo-id";
/// Copy the input's W3C trace headers onto its outputs, so a trace started upstream continues
/// past fluxo even with tracing off (with tracing on, the `publish` span replaces them with its
/// own, a child of the same trace).
fn forward_trace_headers(rec: &RawRecord<'_>, outputs: &mut [Output]) {
    let Some(headers) = &rec.headers else {
        return;
    };
    let trace = headers.iter().filter(|(k, _)| {
        *k == crate::telemetry::kafka::TRACEPARENT || *k == crate::telemetry::kafka::TRACESTATE
    });
    for (k, v) in trace {
        for out in outputs.iter_mut() {
            if !out.headers.iter().any(|(have, _)| have == k) {
                out.headers.push((k.to_string(), v.to_vec()));
            }
        }
    }
}

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

/// How long the store may keep failing before the engine stops (see `store_or_fail`): the
/// default of `[runtime] store_patience`.
pub const CHECKPOINT_READ_PATIENCE: Duration = Duration::from_secs(120);

/// Counts failed deliveries so a checkpoint can refuse to commit past them.
pub struct DeliveryContext {
    processor: String,
    failed: AtomicU64,
    /// Sequence numbers of the outputs sent and not yet acknowledged (or failed).
    outstanding: Mutex<BTreeSet<u64>>,
}

impl DeliveryContext {
    /// A context for `processor`'s producer.
    fn new(processor: &str) -> Self {
        Self {
            processor: processor.to_string(),
            failed: AtomicU64::new(0),
            outstanding: Mutex::new(BTreeSet::new()),
        }
    }

    fn outstanding(&self) -> MutexGuard<'_, BTreeSet<u64>> {
        // The set stays consistent whatever a panicking holder did: it only inserts and removes.
        self.outstanding.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether every output with a sequence number below `end` has had its delivery report.
    fn delivered_before(&self, end: u64) -> bool {
        self.outstanding().first().is_none_or(|first| *first >= end)
    }
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Self::DeliveryOpaque) {
        self.outstanding().remove(&(seq as u64));
        if let Err((e, msg)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            metrics::PRODUCE_ERRORS
                .with_label_values(&[&self.processor, msg.topic()])
                .inc();
            tracing::warn!(processor = %self.processor, topic = msg.topic(), error = %e, "delivery failed");
        }
    }
}

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

/// How often a live engine tells its processor the wall-clock time ([`Tick::WallClock`]).
const WALL_TICK_EVERY: Duration = Duration::from_secs(1);

/// How long an engine keeps rewinding and retrying commits the store fences before it stops:
/// normally the group takes the partitions away first (a zombie's next poll learns it lost
/// them); a fence that outlasts this is another process holding them for good (a live rebuild
/// with `fluxo replay --into live`, an instance with the same partitions by mistake).
const FENCED_PATIENCE: Duration = Duration::from_secs(60);

/// The part of the engine the rebalance callback needs too.
struct Task {
    name: String,
    job: Box<dyn Job>,
    store: Arc<dyn StateStore>,
    producer: BaseProducer<DeliveryContext>,
    /// Next offset per input partition, processed but not yet checkpointed.
    pending: BTreeMap<(String, i32), i64>,
    /// Partitions assigned by the group.
    assigned: HashSet<(String, i32)>,
    /// Bumped at every rebalance, so a batch collected across one is dropped.
    generation: u64,
    since_checkpoint: usize,
    last_checkpoint: Instant,
    produce_timeout: Duration,
    outputs: Vec<Output>,
    freshness: Option<Arc<crate::api::Freshness>>,
    /// Set when uncommitted global-table records were dropped: the loop re-reads them.
    global_rewind: bool,
    /// Partitions are assigned statically (no consumer group).
    static_assignment: bool,
    /// Kafka transactions, in `exactly_once` mode.
    txn: Option<crate::transactions::Transactions>,
    /// Appended to the topic of every produced record (replays into a fresh namespace).
    topic_suffix: String,
    /// Sequence number of the next output produced.
    next_seq: u64,
    /// A checkpoint taken but not yet committed: it waits for its outputs' acknowledgements
    /// while processing goes on (see [`Task::checkpoint_staged`]).
    staged: Option<Staged>,
    /// Stage checkpoints instead of blocking on acknowledgements (`effectively_once`, unbounded
    /// runs).
    stage_checkpoints: bool,
    /// Since when commits have been fenced without a success in between.
    fenced_since: Option<Instant>,
    /// The last input record handled: `(topic, partition, offset)`, named by tick outputs.
    last_input: Option<(String, i32, i64)>,
    /// Set when the engine cannot go on (the store kept failing); the run loop stops with it.
    fatal: std::sync::OnceLock<String>,
    /// How long [`Task::store_or_fail`] retries (`[runtime] store_patience`).
    store_patience: Duration,
    /// Stream time per input partition (greatest record timestamp), and whether it advanced
    /// since the processor was last told.
    stream_times: Vec<StreamTime>,
}

/// The stream time of one input partition.
struct StreamTime {
    topic: String,
    partition: i32,
    time: i64,
    advanced: bool,
}

/// A checkpoint's state changes and offsets, taken at a point in the stream, committed once every
/// output produced before that point is acknowledged.
struct Staged {
    batch: WriteBatch,
    /// Outputs with a sequence number below this were produced before the snapshot.
    outputs_end: u64,
    taken: Instant,
}

impl Task {
    /// Produce `out` (waiting while the queue is full).
    fn produce(&mut self, out: &Output) {
        if let Some(txn) = &mut self.txn {
            if let Err(e) = txn.ensure_begun(&self.producer) {
                // Counted as a failed delivery: the checkpoint refuses to move past it.
                self.producer
                    .context()
                    .failed
                    .fetch_add(1, Ordering::SeqCst);
                tracing::error!(processor = %self.name, error = %e, "cannot begin a transaction");
                return;
            }
        }
        let headers = out.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            })
        });
        let suffixed;
        let topic = if self.topic_suffix.is_empty() {
            out.topic.as_str()
        } else {
            suffixed = format!("{}{}", out.topic, self.topic_suffix);
            suffixed.as_str()
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.producer.context().outstanding().insert(seq);
        let mut record = BaseRecord::with_opaque_to(topic, seq as usize).headers(headers);
        if let Some(k) = &out.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &out.payload {
            record = record.payload(p.as_slice());
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, r)) => {
                    // Not retriable by waiting (e.g. message too large): count it as a failed
                    // delivery so the checkpoint refuses to move past it.
                    self.producer.context().outstanding().remove(&seq);
                    self.producer
                        .context()
                        .failed
                        .fetch_add(1, Ordering::SeqCst);
                    metrics::PRODUCE_ERRORS
                        .with_label_values(&[&self.name, r.topic])
                        .inc();
                    tracing::error!(processor = %self.name, topic = r.topic, error = %e, "cannot produce");
                    return;
                }
            }
        }
    }

    /// Flush outputs, then commit state and offsets atomically.
    fn checkpoint(&mut self) -> Result<(), CheckpointError> {
        let started = Instant::now();
        if let Some(fatal) = self.txn.as_ref().and_then(|t| t.fatal_error()) {
            return Err(fatal.into());
        }
        if self.producer.flush(self.produce_timeout).is_err() {
            return Err(CheckpointError::Delivery(format!(
                "{} records still in flight after {:?}",
                self.producer.in_flight_count(),
                self.produce_timeout
            )));
        }
        let failed = self.producer.context().failed.swap(0, Ordering::SeqCst);
        if failed > 0 {
            return Err(CheckpointError::Delivery(format!(
                "{failed} deliveries failed"
            )));
        }
        // Every output is acknowledged now: a staged checkpoint goes first.
        self.commit_staged()?;
        if let Some(txn) = &mut self.txn {
            // Outputs and group offsets commit in Kafka first, then state in the store (see
            // `crate::transactions` for why this order keeps them consistent).
            let offsets: BTreeMap<(String, i32), i64> = self
                .pending
                .iter()
                .filter(|(k, _)| self.assigned.contains(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            txn.commit(&self.producer, &offsets)?;
        }
        let batch = self.snapshot();
        let had_work = !batch.is_empty();
        let checkpoints = batch.checkpoints.clone();
        self.commit_to_store(batch)?;
        self.committed(&checkpoints);
        if let Some(f) = &self.freshness {
            f.touch();
        }
        if had_work {
            metrics::CHECKPOINT_SECONDS
                .with_label_values(&[&self.name])
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Commit `batch` to the store, timed.
    fn commit_to_store(&self, batch: WriteBatch) -> Result<(), crate::state::StoreError> {
        let started = Instant::now();
        let result = self.store.commit(batch);
        if result.is_ok() {
            metrics::STORE_COMMIT_SECONDS
                .with_label_values(&[&self.name])
                .observe(started.elapsed().as_secs_f64());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            metrics::LAST_CHECKPOINT_TIMESTAMP
                .with_label_values(&[&self.name])
                .set(now);
        }
        result
    }

    /// Forget uncommitted work: a fresh processor, no pending offsets.
    fn reset(&mut self) {
        if let Some(txn) = &mut self.txn {
            txn.abort(&self.producer);
        }
        self.job.reset();
        self.pending.clear();
        self.staged = None;
        self.since_checkpoint = 0;
        self.producer.context().failed.store(0, Ordering::SeqCst);
    }

    /// Commit the staged checkpoint, if any (its outputs must be acknowledged).
    fn commit_staged(&mut self) -> Result<(), CheckpointError> {
        let Some(staged) = self.staged.take() else {
            return Ok(());
        };
        let checkpoints = staged.batch.checkpoints.clone();
        self.commit_to_store(staged.batch)?;
        self.committed(&checkpoints);
        metrics::CHECKPOINT_SECONDS
            .with_label_values(&[&self.name])
            .observe(staged.taken.elapsed().as_secs_f64());
        Ok(())
    }

    /// The non-blocking checkpoint of the processing loop (`effectively_once`): commit the staged
    /// checkpoint once every output produced before it is acknowledged, then stage the next one
    /// (state changes and offsets so far, when `stage_next`) without waiting for acknowledgements. Processing goes on
    /// meanwhile; reads see the staged writes (see `handle`). The guarantee is the blocking
    /// checkpoint's: state and offsets reach the store together, and only after the outputs that
    /// precede them are acknowledged. A crash loses at most the staged and the newer work, which
    /// is then processed again from the last commit.
    ///
    /// # Errors
    /// A failed delivery, outputs unacknowledged past the produce timeout, or a store error; the
    /// caller rewinds to the last committed checkpoint.
    fn checkpoint_staged(&mut self, stage_next: bool) -> Result<(), CheckpointError> {
        self.producer.poll(Duration::ZERO);
        let failed = self.producer.context().failed.swap(0, Ordering::SeqCst);
        if failed > 0 {
            return Err(CheckpointError::Delivery(format!(
                "{failed} deliveries failed"
            )));
        }
        if let Some(staged) = &self.staged {
            if !self.producer.context().delivered_before(staged.outputs_end) {
                if staged.taken.elapsed() > self.produce_timeout {
                    return Err(CheckpointError::Delivery(format!(
                        "outputs of a checkpoint unacknowledged after {:?}",
                        self.produce_timeout
                    )));
                }
                return Ok(());
            }
            self.commit_staged()?;
            if let Some(f) = &self.freshness {
                f.touch();
            }
        }
        if !stage_next || self.since_checkpoint == 0 {
            return Ok(());
        }
        self.staged = Some(Staged {
            batch: self.snapshot(),
            outputs_end: self.next_seq,
            taken: Instant::now(),
        });
        Ok(())
    }

    /// The processor's state changes and the next offsets of the records processed since the
    /// last snapshot, as one batch; the pending work starts afresh.
    fn snapshot(&mut self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        self.job.flush(&mut batch);
        batch.checkpoints = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((topic, partition), next_offset)| Checkpoint {
                processor: self.name.clone(),
                topic,
                partition,
                next_offset,
            })
            .collect();
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        batch
    }

    /// Report `checkpoints` as committed.
    fn committed(&self, checkpoints: &[Checkpoint]) {
        for c in checkpoints {
            metrics::CHECKPOINTED_OFFSET
                .with_label_values(&[&self.name, &c.topic, &c.partition.to_string()])
                .set(c.next_offset);
        }
    }

    /// Claim `partitions` in the store for this instance before reading their checkpoints
    /// (fencing earlier holders; a no-op on the embedded store). Retried like a checkpoint read,
    /// then fail-stop: processing a partition without holding it could commit over its owner.
    fn claim(&self, partitions: &[(String, i32)]) {
        self.store_or_fail("claim partitions", || {
            self.store.claim(&self.name, partitions)
        })
    }

    /// Record a checkpoint's outcome; true when commits have been fenced for longer than
    /// [`FENCED_PATIENCE`] and the engine must stop.
    fn fenced_too_long(&mut self, result: &Result<(), CheckpointError>) -> bool {
        match result {
            Err(e) if e.is_fenced() => {
                let since = *self.fenced_since.get_or_insert_with(Instant::now);
                since.elapsed() > FENCED_PATIENCE
            }
            Err(_) => false,
            Ok(()) => {
                self.fenced_since = None;
                false
            }
        }
    }

    /// The stored next offset of every partition of this processor.
    ///
    /// A failed read is retried with backoff, never taken as "no checkpoints" (that would
    /// re-read the partitions from the beginning and count their records twice).
    fn stored_offsets(&self) -> BTreeMap<(String, i32), i64> {
        self.store_or_fail("read checkpoints", || self.store.checkpoints(&self.name))
            .into_iter()
            .map(|c| ((c.topic, c.partition), c.next_offset))
            .collect()
    }

    /// `call` the store, retrying with backoff. When it keeps failing for `store_patience`
    /// ([`CHECKPOINT_READ_PATIENCE`] by default) the engine is marked failed ([`Task::fatal`]) and `T`'s
    /// default is returned: the run loop checks the mark before processing anything and stops
    /// with the error, which travels up to the binary (fail-stop; every store commit is atomic,
    /// so a restart resumes from a consistent checkpoint). Rebalance callbacks cannot return
    /// errors, hence the mark.
    fn store_or_fail<T: Default>(
        &self,
        what: &str,
        call: impl Fn() -> Result<T, crate::state::StoreError>,
    ) -> T {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            match call() {
                Ok(v) => return v,
                Err(e) if started.elapsed() < self.store_patience => {
                    tracing::error!(processor = %self.name, error = %e, retry_in = ?pause, "cannot {what}; retrying");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(processor = %self.name, error = %e, "cannot {what}; stopping the engine so that a restart resumes from a consistent checkpoint");
                    let _ = self.fatal.set(format!("cannot {what}: {e}"));
                    return T::default();
                }
            }
        }
    }

    /// The error that stopped the engine, if one did (see [`Task::store_or_fail`]).
    fn fail_if_fatal(&self) -> anyhow::Result<()> {
        match self.fatal.get() {
            Some(why) => Err(anyhow::anyhow!("{}: {why}", self.name)),
            None => Ok(()),
        }
    }

    /// Run one record through the job and produce what comes out.
    ///
    /// # Errors
    /// When the record must be retried from the last checkpoint (a failed state read, a
    /// dependency down); nothing of it was produced.
    fn handle(&mut self, rec: &RawRecord<'_>, processing_time: i64) -> Result<(), String> {
        let started = Instant::now();
        // Traced records: the `process` span is current (log lines carry its ids) until return.
        let _process = rec.trace.as_ref().map(|t| t.enter());
        metrics::RECORDS_IN
            .with_label_values(&[&self.name, rec.topic])
            .inc();
        let mut outputs = std::mem::take(&mut self.outputs);
        outputs.clear();
        // Reads see the staged checkpoint's writes: the processor may have dropped those keys from
        // its cache after staging them, and the store does not have them yet.
        let reader =
            StoreReader::with_overlay(&*self.store, self.staged.as_ref().map(|s| &s.batch.writes));
        let result = self
            .job
            .process(rec, processing_time, &reader, &mut outputs);
        if let Some(e) = reader.take_error() {
            self.outputs = outputs;
            return Err(e.to_string());
        }
        match result {
            Ok(()) => {
                for (i, out) in outputs.iter_mut().enumerate() {
                    let id = format!(
                        "{}:{}/{}/{}/{}",
                        self.name, rec.topic, rec.partition, rec.offset, i
                    );
                    out.headers.push((ID_HEADER.to_string(), id.into_bytes()));
                }
            }
            Err(JobError::Dead(dl)) => {
                outputs.clear();
                outputs.push(self.dead_letter(rec, &dl));
            }
            Err(JobError::Retry(why)) => {
                self.outputs = outputs;
                return Err(why);
            }
        }
        forward_trace_headers(rec, &mut outputs);
        self.observe_position(rec);
        // Re-processed only to rebuild state: the outputs were committed in an earlier transaction.
        let replayed = self
            .txn
            .as_ref()
            .is_some_and(|t| t.already_committed(rec.topic, rec.partition, rec.offset));
        for out in outputs.iter_mut().filter(|_| !replayed) {
            let _publish = rec.trace.as_ref().and_then(|t| t.publish(out));
            self.produce(out);
            if out.dead_letter.is_none() {
                metrics::RECORDS_OUT
                    .with_label_values(&[&self.name, &out.topic])
                    .inc();
            }
        }
        self.outputs = outputs;
        self.pending
            .insert((rec.topic.to_string(), rec.partition), rec.offset + 1);
        self.since_checkpoint += 1;
        metrics::PROCESSING_SECONDS
            .with_label_values(&[&self.name])
            .observe(started.elapsed().as_secs_f64());
        if let Some(ts) = rec.timestamp {
            let latency = (processing_time - ts).max(0) as f64 / 1000.0;
            metrics::EVENT_TIME_LATENCY_SECONDS
                .with_label_values(&[&self.name])
                .observe(latency);
        }
        Ok(())
    }

    /// Remember `rec` as the last input and advance its partition's stream time.
    fn observe_position(&mut self, rec: &RawRecord<'_>) {
        match &mut self.last_input {
            Some((topic, partition, offset)) => {
                if topic != rec.topic {
                    rec.topic.clone_into(topic);
                }
                *partition = rec.partition;
                *offset = rec.offset;
            }
            None => self.last_input = Some((rec.topic.to_string(), rec.partition, rec.offset)),
        }
        let Some(ts) = rec.timestamp else { return };
        // A handful of partitions per engine: a scan beats a map keyed by an owned topic.
        match self
            .stream_times
            .iter_mut()
            .find(|s| s.partition == rec.partition && s.topic == rec.topic)
        {
            Some(s) if ts > s.time => {
                s.time = ts;
                s.advanced = true;
            }
            Some(_) => {}
            None => self.stream_times.push(StreamTime {
                topic: rec.topic.to_string(),
                partition: rec.partition,
                time: ts,
                advanced: true,
            }),
        }
    }

    /// Tell the job about every partition whose stream time advanced.
    fn tick_stream_times(&mut self, processing_time: i64) -> Result<(), String> {
        let advanced: Vec<(String, i32, i64)> = self
            .stream_times
            .iter_mut()
            .filter_map(|s| std::mem::take(&mut s.advanced).then_some(&*s))
            .map(|s| (s.topic.clone(), s.partition, s.time))
            .collect();
        for (topic, partition, time) in advanced {
            let tick = Tick::StreamTime {
                topic: &topic,
                partition,
                time,
            };
            self.tick(tick, processing_time)?;
        }
        Ok(())
    }

    /// Run a [`Tick`] through the job and produce what comes out. Its outputs are named after
    /// the last input record (`<processor>:<topic>/<partition>/<offset>/t<time>.<n>`), so the
    /// replay diff places them in the range of that record.
    ///
    /// # Errors
    /// When the tick must be retried from the last checkpoint (a failed state read).
    fn tick(&mut self, tick: Tick<'_>, processing_time: i64) -> Result<(), String> {
        // Nothing was handed to the job since it was built: it holds nothing back.
        let Some((topic, partition, offset)) = self.last_input.clone() else {
            return Ok(());
        };
        let mut outputs = std::mem::take(&mut self.outputs);
        outputs.clear();
        let reader =
            StoreReader::with_overlay(&*self.store, self.staged.as_ref().map(|s| &s.batch.writes));
        let meta = RecordMeta {
            topic: &topic,
            partition,
            offset,
            timestamp: None,
            processing_time,
        };
        let result = self.job.tick(tick, meta, &reader, &mut outputs);
        if let Some(e) = reader.take_error() {
            self.outputs = outputs;
            return Err(e.to_string());
        }
        if let Err(e) = result {
            self.outputs = outputs;
            return Err(format!("{e:?}"));
        }
        if outputs.is_empty() {
            self.outputs = outputs;
            return Ok(());
        }
        for (i, out) in outputs.iter_mut().enumerate() {
            let id = format!(
                "{}:{topic}/{partition}/{offset}/t{processing_time}.{i}",
                self.name
            );
            out.headers.push((ID_HEADER.to_string(), id.into_bytes()));
            self.produce(out);
            metrics::RECORDS_OUT
                .with_label_values(&[&self.name, &out.topic])
                .inc();
        }
        self.outputs = outputs;
        // What the tick changed is committed with the next checkpoint.
        self.since_checkpoint += 1;
        Ok(())
    }

    fn dead_letter(&self, rec: &RawRecord<'_>, dl: &DeadLetter) -> Output {
        metrics::DEAD_LETTERS
            .with_label_values(&[&self.name, rec.topic, &dl.reason])
            .inc();
        let headers = vec![
            (DLQ_REASON.to_string(), dl.reason.clone().into_bytes()),
            (DLQ_DETAIL.to_string(), dl.detail.clone().into_bytes()),
            (DLQ_PROCESSOR.to_string(), self.name.clone().into_bytes()),
            (DLQ_TOPIC.to_string(), rec.topic.as_bytes().to_vec()),
            (
                DLQ_PARTITION.to_string(),
                rec.partition.to_string().into_bytes(),
            ),
            (DLQ_OFFSET.to_string(), rec.offset.to_string().into_bytes()),
            (
                ID_HEADER.to_string(),
                format!(
                    "{}:{}/{}/{}/dlq",
                    self.name, rec.topic, rec.partition, rec.offset
                )
                .into_bytes(),
            ),
        ];
        Output {
            topic: self.job.dead_letter_topic(rec.topic),
            key: rec.key.map(<[u8]>::to_vec),
            payload: rec.payload.map(<[u8]>::to_vec),
            headers,
            dead_letter: Some(dl.reason.clone()),
        }
    }
}

/// The consumer context: positions partitions from the store on assignment and checkpoints on
/// revocation.
struct GroupContext {
    task: Arc<Mutex<Task>>,
    name: String,
    started: Arc<AtomicBool>,
}

fn lock(task: &Mutex<Task>) -> MutexGuard<'_, Task> {
    // A panic while holding the lock leaves a task that is reset before use anyway.
    task.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClientContext for GroupContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                let Some(lag) = partition_lag(*partition, p) else {
                    continue;
                };
                metrics::CONSUMER_LAG
                    .with_label_values(&[&self.name, topic, &partition.to_string()])
                    .set(lag);
            }
        }
    }
}

/// Records between a partition's high watermark and this consumer's position, from librdkafka's
/// statistics. Not librdkafka's `consumer_lag`: that one is measured from the group's committed
/// offset, which fluxo does not commit in `static` assignment (its checkpoints are in the state
/// store), so it stayed -1. The position is the next offset handed to fluxo, or the fetch
/// position before the first record; `None` for the internal partition -1 or when unknown.
fn partition_lag(partition: i32, p: &rdkafka::statistics::Partition) -> Option<i64> {
    if partition < 0 || p.hi_offset < 0 {
        return None;
    }
    let position = if p.app_offset >= 0 {
        p.app_offset
    } else if p.next_offset >= 0 {
        p.next_offset
    } else {
        return None;
    };
    Some((p.hi_offset - position).max(0))
}

impl ConsumerContext for GroupContext {
    /// Partitions come and go by the group's rebalances. Both protocols are served: with
    /// `cooperative-sticky` (fluxo's default) the lists name only the partitions that move, and
    /// the others keep being read; with an eager assignor every partition is revoked and
    /// assigned again. Either way every processed record is checkpointed before anything
    /// moves, and an assigned partition starts at the offset stored with its state.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr::*;
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let mut task = lock(&self.task);
        // A batch collected across a rebalance is dropped and read again (see the run loop).
        task.generation += 1;
        match err {
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assign(consumer, &mut task, tpl, cooperative)
            }
            _ => {
                if err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::error!(processor = %self.name, error = ?err, "rebalance error");
                }
                self.revoke(consumer, &mut task, tpl, cooperative)
            }
        }
    }
}

impl GroupContext {
    /// Position the newly assigned partitions at their stored offsets and take them on.
    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        task: &mut Task,
        tpl: &TopicPartitionList,
        cooperative: bool,
    ) {
        // Commit what is processed (global-table records included, which belong to no group
        // partition) before anything changes: the reset below forgets uncommitted work.
        if let Err(e) = task.checkpoint() {
            tracing::error!(processor = %self.name, error = %e, "checkpoint on assign failed; work since the last checkpoint is read again");
            task.global_rewind = true;
        }
        task.reset();
        let added: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        task.claim(&added);
        let stored = task.stored_offsets();
        let mut positioned = TopicPartitionList::new();
        for e in tpl.elements() {
            let key = (e.topic().to_string(), e.partition());
            let offset = match stored.get(&key) {
                Some(o) => {
                    metrics::CHECKPOINTED_OFFSET
                        .with_label_values(&[&self.name, e.topic(), &e.partition().to_string()])
                        .set(*o);
                    Offset::Offset(*o)
                }
                None => Offset::Beginning,
            };
            if let Err(err) = positioned.add_partition_offset(e.topic(), e.partition(), offset) {
                tracing::error!(processor = %self.name, error = %err, "bad assignment");
            }
            task.assigned.insert(key);
        }
        let keys: Vec<(String, i32)> = task.assigned.iter().cloned().collect();
        if let Some(txn) = &mut task.txn {
            txn.on_assigned(consumer, &keys);
        }
        let result = if cooperative {
            consumer.incremental_assign(&positioned)
        } else {
            consumer.assign(&positioned)
        };
        if let Err(e) = result {
            tracing::error!(processor = %self.name, error = %e, "assign failed");
        }
        metrics::ASSIGNED_PARTITIONS
            .with_label_values(&[&self.name])
            .set(task.assigned.len() as i64);
        tracing::info!(processor = %self.name, added = tpl.count(), partitions = task.assigned.len(), "partitions assigned");
        self.started.store(true, Ordering::SeqCst);
    }

    /// Checkpoint, then let the revoked partitions go.
    fn revoke(
        &self,
        consumer: &BaseConsumer<Self>,
        task: &mut Task,
        tpl: &TopicPartitionList,
        cooperative: bool,
    ) {
        if consumer.assignment_lost() {
            // The group gave these partitions away already (this member missed its session
            // timeout): another member may be processing them, so nothing of theirs is
            // committed here. Uncommitted work is forgotten; the retained partitions (none, for
            // a lost assignment) are read again from their checkpoints.
            tracing::warn!(processor = %self.name, "assignment lost (session timeout?); dropping uncommitted work");
        } else if let Err(e) = task.checkpoint() {
            tracing::error!(processor = %self.name, error = %e, "checkpoint on revoke failed; the next owner resumes from the previous checkpoint");
        }
        task.reset();
        let result = if cooperative {
            for e in tpl.elements() {
                task.assigned
                    .remove(&(e.topic().to_string(), e.partition()));
            }
            consumer.incremental_unassign(tpl)
        } else {
            task.assigned.clear();
            consumer.unassign()
        };
        if let Err(e) = result {
            tracing::error!(processor = %self.name, error = %e, "unassign failed");
        }
        metrics::ASSIGNED_PARTITIONS
            .with_label_values(&[&self.name])
            .set(task.assigned.len() as i64);
        tracing::info!(processor = %self.name, revoked = tpl.count(), partitions = task.assigned.len(), "partitions revoked");
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

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

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

/// Run the engine until `shutdown` is set; then finish in-flight work, checkpoint, leave the
/// group and return.
///
/// # Errors
/// When the Kafka clients cannot be created or the store fails at start.
pub fn run(topology: &Topology, spec: EngineSpec, shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    let name = spec.name.clone();
    let rt = &topology.runtime;
    let base = crate::kafka::client_config(topology)?;

    let mut pcfg = base.clone();
    pcfg.set(
        "enable.idempotence",
        if rt.idempotent_producer {
            "true"
        } else {
            "false"
        },
    )
    // Without idempotence, one request in flight keeps retried batches in order.
    .set(
        "max.in.flight.requests.per.connection",
        if rt.idempotent_producer { "5" } else { "1" },
    )
    .set("acks", "all")
    .set("linger.ms", "5")
    .set("queue.buffering.max.messages", rt.max_in_flight.to_string())
    .set("message.timeout.ms", "120000");
    let exactly_once = rt.processing_guarantee == crate::config::ProcessingGuarantee::ExactlyOnce;
    let group = format!("{}-{name}", topology.kafka.group_prefix);
    if exactly_once {
        let id = crate::transactions::transactional_id(&group, rt.instance);
        crate::transactions::configure_producer(&mut pcfg, &id);
    }
    let producer: BaseProducer<DeliveryContext> =
        pcfg.create_with_context(DeliveryContext::new(&name))?;
    let produce_timeout = Duration::from_millis(rt.produce_timeout.millis().max(1) as u64);
    let txn = if exactly_once {
        let probe_topic = spec
            .inputs
            .first()
            .or(spec.global_inputs.first())
            .cloned()
            .unwrap_or_default();
        let t = crate::transactions::Transactions::start(
            &producer,
            &base,
            &group,
            &probe_topic,
            produce_timeout,
        )?;
        tracing::info!(processor = %name, "exactly_once: Kafka transactions initialized");
        Some(t)
    } else {
        None
    };

    let task = Arc::new(Mutex::new(Task {
        name: name.clone(),
        job: spec.job,
        store: spec.store,
        producer,
        pending: BTreeMap::new(),
        assigned: HashSet::new(),
        generation: 0,
        since_checkpoint: 0,
        last_checkpoint: Instant::now(),
        produce_timeout,
        outputs: Vec::new(),
        freshness: spec.freshness.clone(),
        global_rewind: false,
        static_assignment: rt.assignment == crate::config::Assignment::Static,
        txn,
        topic_suffix: spec
            .bounds
            .as_ref()
            .map(|b| b.topic_suffix.clone())
            .unwrap_or_default(),
        next_seq: 0,
        staged: None,
        fenced_since: None,
        last_input: None,
        fatal: std::sync::OnceLock::new(),
        store_patience: Duration::from_millis(rt.store_patience.millis().max(0) as u64),
        stream_times: Vec::new(),
        // Transactions commit per checkpoint, and a bounded run is judged by its final commit:
        // both keep the blocking checkpoint.
        stage_checkpoints: !exactly_once && spec.bounds.is_none(),
    }));
    let bounds = spec.bounds.clone();
    let clock = spec.clock;
    let processing_time = |rec: &RawRecord<'_>| match clock {
        Clock::Wall => now_millis(),
        Clock::RecordTime => rec.timestamp.unwrap_or(0),
    };

    let mut ccfg = base.clone();
    if exactly_once {
        ccfg.set("isolation.level", "read_committed");
    }
    ccfg.set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", rt.fetch_wait_max.millis().to_string())
        .set("queued.max.messages.kbytes", "32768")
        .set("statistics.interval.ms", "1000")
        .set(
            "session.timeout.ms",
            rt.session_timeout.millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (rt.session_timeout.millis() / 10).max(100).to_string(),
        );
    if !topology
        .kafka
        .client
        .contains_key("partition.assignment.strategy")
    {
        // Incremental rebalancing: a member joining or leaving moves only the partitions that
        // change owner; the others keep being processed (Kafka Streams' default too).
        ccfg.set("partition.assignment.strategy", "cooperative-sticky");
    }

    // Global inputs: every instance reads them whole, caught up before the group starts.
    let global = if spec.global_inputs.is_empty() {
        None
    } else {
        let consumer: BaseConsumer = ccfg
            .clone()
            .set("group.id", format!("{group}-global"))
            .create()?;
        let stored = lock(&task).stored_offsets();
        lock(&task).fail_if_fatal()?;
        let mut tpl = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for topic in &spec.global_inputs {
            let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            for t in md.topics() {
                for p in t.partitions() {
                    let key = (topic.clone(), p.id());
                    let start = stored.get(&key).copied();
                    tpl.add_partition_offset(
                        topic,
                        p.id(),
                        start.map(Offset::Offset).unwrap_or(Offset::Beginning),
                    )?;
                    let (_, high) =
                        consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
                    let high = match bounds.as_ref().and_then(|b| b.ends.get(&key)) {
                        Some(end) => high.min(*end),
                        None => high,
                    };
                    ends.insert(key, high);
                }
            }
        }
        consumer.assign(&tpl)?;
        // Catch up to the high watermarks seen at start.
        let caught_up = |positions: &BTreeMap<(String, i32), i64>| {
            ends.iter()
                .all(|(k, high)| positions.get(k).copied().unwrap_or(0) >= *high || *high == 0)
        };
        let mut positions: BTreeMap<(String, i32), i64> = stored.clone();
        let started = Instant::now();
        while !caught_up(&positions) && !shutdown.load(Ordering::SeqCst) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let rec = raw(&m);
                if bounds.as_ref().is_some_and(|b| !b.admits(&rec)) {
                    positions.insert((rec.topic.to_string(), rec.partition), rec.offset + 1);
                    continue;
                }
                positions.insert((rec.topic.to_string(), rec.partition), rec.offset + 1);
                let pt = processing_time(&rec);
                lock(&task)
                    .handle(&rec, pt)
                    .map_err(|e| anyhow::anyhow!("restoring global tables: {e}"))?;
            } else {
                // Idle: the consumer's position also moves over what is never delivered
                // (transaction markers, aborted records), which message offsets cannot show.
                for (key, p) in consumer_positions(&consumer) {
                    let slot = positions.entry(key).or_insert(p);
                    *slot = (*slot).max(p);
                }
            }
        }
        let mut t = lock(&task);
        t.checkpoint()?;
        tracing::info!(processor = %name, elapsed_ms = started.elapsed().as_millis() as u64, "global tables restored");
        drop(t);
        Some(consumer)
    };

    // Group inputs; a processor with only global inputs (the `fluxo serve` replica) has none.
    let consumer: Option<BaseConsumer<GroupContext>> = if spec.inputs.is_empty() {
        spec.started.store(true, Ordering::SeqCst);
        None
    } else {
        let c: BaseConsumer<GroupContext> = ccfg.create_with_context(GroupContext {
            task: task.clone(),
            name: name.clone(),
            started: spec.started.clone(),
        })?;
        let inputs: Vec<&str> = spec.inputs.iter().map(String::as_str).collect();
        match rt.assignment {
            // A bounded run (a replay) reads exactly its partitions, whatever the topology says.
            _ if bounds.is_some() => {
                let only = bounds.as_ref().map(|b| &b.ends);
                assign_static(&c, &task, &inputs, 0, 1, only)?;
                spec.started.store(true, Ordering::SeqCst);
            }
            crate::config::Assignment::Group => c.subscribe(&inputs)?,
            crate::config::Assignment::Static => {
                assign_static(&c, &task, &inputs, rt.instance, rt.instances, None)?;
                spec.started.store(true, Ordering::SeqCst);
            }
        }
        Some(c)
    };
    metrics::PROCESSOR_UP.with_label_values(&[&name]).set(1.0);
    tracing::info!(processor = %name, inputs = ?spec.inputs, global_inputs = ?spec.global_inputs, "engine started");

    let checkpoint_every = Duration::from_millis(rt.checkpoint_interval.millis().max(1) as u64);
    let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(rt.max_batch);
    // Live runs tell processors the wall-clock time; bounded runs must not depend on it.
    let wall_ticks = matches!(clock, Clock::Wall) && bounds.is_none();
    let mut last_wall_tick = Instant::now();
    while !shutdown.load(Ordering::SeqCst) {
        lock(&task).fail_if_fatal()?;
        let mut global_records = 0;
        if let Some(g) = &global {
            // Global records first, so table changes apply to the records read after them.
            let mut wait = if consumer.is_none() {
                Duration::from_millis(50)
            } else {
                Duration::ZERO
            };
            while global_records < rt.max_batch {
                let Some(Ok(m)) = g.poll(wait) else { break };
                wait = Duration::ZERO;
                global_records += 1;
                let rec = raw(&m);
                if bounds.as_ref().is_some_and(|b| !b.admits(&rec)) {
                    continue;
                }
                let pt = processing_time(&rec);
                let mut t = lock(&task);
                if let Err(e) = t.handle(&rec, pt) {
                    tracing::error!(processor = %name, error = %e, "cannot apply a global record; rewinding to the last checkpoint");
                    rewind(&mut t, consumer.as_ref(), global.as_ref());
                    break;
                }
            }
        }
        batch.clear();
        let mut generation = 0;
        if let Some(consumer) = &consumer {
            generation = lock(&task).generation;
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    batch.push(m);
                    while batch.len() < rt.max_batch {
                        match consumer.poll(Duration::ZERO) {
                            Some(Ok(m)) => batch.push(m),
                            Some(Err(e)) => {
                                tracing::warn!(processor = %name, error = %e, "consumer error");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Some(Err(e)) => tracing::warn!(processor = %name, error = %e, "consumer error"),
                None => {}
            }
        }
        let mut t = lock(&task);
        t.fail_if_fatal()?;
        if std::mem::take(&mut t.global_rewind) {
            rewind(&mut t, consumer.as_ref(), global.as_ref());
            continue;
        }
        if t.generation != generation {
            // A rebalance happened while collecting: everything processed before it is
            // checkpointed, so the partitions kept (cooperative rebalancing) go back to their
            // stored offsets and these records are read again; new ones start there anyway.
            batch.clear();
            rewind(&mut t, consumer.as_ref(), global.as_ref());
            continue;
        }
        if !batch.is_empty() {
            let mut records: Vec<RawRecord<'_>> = batch
                .iter()
                .map(raw)
                .filter(|r| t.assigned.contains(&(r.topic.to_string(), r.partition)))
                .filter(|r| bounds.as_ref().is_none_or(|b| b.admits(r)))
                .collect();
            crate::telemetry::kafka::receive_batch(&name, &group, &mut records);
            t.job.prepare(&records);
            let mut failed = false;
            let mut cut = false;
            let batch_started = Instant::now();
            for (i, rec) in records.iter().enumerate() {
                let pt = processing_time(rec);
                if let Err(e) = t.handle(rec, pt) {
                    tracing::error!(processor = %name, error = %e, "cannot process a record; rewinding to the last checkpoint");
                    failed = true;
                    break;
                }
                if batch_started.elapsed() >= MAX_BATCH_TIME && i + 1 < records.len() {
                    cut = true;
                    break;
                }
            }
            if failed && shutdown.load(Ordering::SeqCst) {
                // Stopping (e.g. a notifier cut its retries short): drop the uncommitted work
                // without seeking; the next start resumes from the last checkpoint.
                t.reset();
                break;
            }
            if failed {
                rewind(&mut t, consumer.as_ref(), global.as_ref());
                drop(t);
                // Give a failed dependency (store, registry) a moment before reading again.
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            if cut {
                tracing::info!(processor = %name, "batch took over {MAX_BATCH_TIME:?}; checkpointing and polling again");
                // A slow batch (a notifier retrying a webhook) must not keep the consumer from
                // polling for longer than `max.poll.interval.ms`: commit what is done and read
                // the rest again from there.
                match t.checkpoint() {
                    Ok(()) => commit_group_offsets(consumer.as_ref(), &t),
                    Err(e) => {
                        tracing::error!(processor = %name, error = %e, "checkpoint failed; rewinding to the last checkpoint")
                    }
                }
                rewind(&mut t, consumer.as_ref(), global.as_ref());
                continue;
            }
        }
        let tick_time = match clock {
            Clock::Wall => now_millis(),
            Clock::RecordTime => t.stream_times.iter().map(|s| s.time).max().unwrap_or(0),
        };
        let mut ticked = t.tick_stream_times(tick_time);
        if wall_ticks && ticked.is_ok() && last_wall_tick.elapsed() >= WALL_TICK_EVERY {
            last_wall_tick = Instant::now();
            ticked = t.tick(Tick::WallClock(tick_time), tick_time);
        }
        if let Err(e) = ticked {
            tracing::error!(processor = %name, error = %e, "cannot advance the processor's time; rewinding to the last checkpoint");
            rewind(&mut t, consumer.as_ref(), global.as_ref());
            continue;
        }
        t.producer.poll(Duration::ZERO);
        if batch.is_empty() && global_records == 0 && t.since_checkpoint == 0 && t.staged.is_none()
        {
            // Caught up: the views reflect everything there is.
            if let Some(f) = &t.freshness {
                f.touch();
            }
        }
        if let (Some(b), Some(c)) = (&bounds, &consumer) {
            if reached_ends(&t, c, b) {
                // Messages still held keep the consumer from being destroyed.
                batch.clear();
                if let Err(e) = t.tick(Tick::EndOfInput, tick_time) {
                    tracing::error!(processor = %name, error = %e, "cannot release what is held at the end of the range; rewinding to the last checkpoint");
                    rewind(&mut t, consumer.as_ref(), global.as_ref());
                    continue;
                }
                break;
            }
        }
        let due = t.since_checkpoint >= rt.checkpoint_max_records
            || (t.since_checkpoint > 0 && t.last_checkpoint.elapsed() >= checkpoint_every);
        if t.stage_checkpoints && (due || t.staged.is_some()) {
            // Commits the staged checkpoint when its outputs are acknowledged; stages the next
            // one when due.
            let result = t.checkpoint_staged(due);
            if t.fenced_too_long(&result) {
                tracing::error!(processor = %name, "commits fenced for over {FENCED_PATIENCE:?}: another process holds these partitions; stopping");
                return Err(result.unwrap_err().into());
            }
            match result {
                Ok(()) => {
                    if t.staged.is_none() {
                        commit_group_offsets(consumer.as_ref(), &t);
                    }
                }
                Err(e) => {
                    tracing::error!(processor = %name, error = %e, "checkpoint failed; rewinding to the last checkpoint");
                    rewind(&mut t, consumer.as_ref(), global.as_ref());
                }
            }
        } else if due {
            let result = t.checkpoint();
            let fenced_too_long = t.fenced_too_long(&result);
            match result {
                Ok(()) => commit_group_offsets(consumer.as_ref(), &t),
                Err(e) if e.is_fatal() || fenced_too_long => {
                    tracing::error!(processor = %name, error = %e, "cannot commit (fenced); stopping");
                    return Err(e.into());
                }
                Err(e) => {
                    tracing::error!(processor = %name, error = %e, "checkpoint failed; rewinding to the last checkpoint");
                    rewind(&mut t, consumer.as_ref(), global.as_ref());
                }
            }
        }
    }

    // Messages still held keep librdkafka from destroying the consumer (its close would wait
    // for them forever): release them first.
    drop(batch);

    // Shutdown: finish, checkpoint, leave the group.
    {
        let mut t = lock(&task);
        // A failed engine commits nothing more: the store is what failed.
        t.fail_if_fatal()?;
        // Do not wait the whole produce timeout at exit when the broker is gone.
        t.produce_timeout = t.produce_timeout.min(Duration::from_secs(10));
        if let Err(e) = t.checkpoint() {
            tracing::error!(processor = %name, error = %e, "final checkpoint failed; the next start resumes from the previous one");
            if bounds.is_some() {
                // A bounded run is judged by what it committed: say it did not finish.
                return Err(anyhow::anyhow!("final checkpoint failed: {e}"));
            }
        } else {
            commit_group_offsets(consumer.as_ref(), &t);
        }
    }
    if let Some(consumer) = consumer {
        consumer.unsubscribe();
        // Serve the revoke callback and leave the group.
        let _ = consumer.poll(Duration::from_millis(100));
        drop(consumer);
    }
    metrics::PROCESSOR_UP.with_label_values(&[&name]).set(0.0);
    tracing::info!(processor = %name, "engine stopped");
    Ok(())
}

/// Take this instance's share of the input partitions (`p % instances == instance`),
/// positioned at the offsets stored with the state.
fn assign_static(
    consumer: &BaseConsumer<GroupContext>,
    task: &Mutex<Task>,
    inputs: &[&str],
    instance: u32,
    instances: u32,
    only: Option<&BTreeMap<(String, i32), i64>>,
) -> anyhow::Result<()> {
    let mut t = lock(task);
    let mut tpl = TopicPartitionList::new();
    let mut keys = Vec::new();
    for topic in inputs {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for m in md.topics() {
            for p in m.partitions() {
                let key = (topic.to_string(), p.id());
                if p.id().rem_euclid(instances as i32) == instance as i32
                    && only.is_none_or(|o| o.contains_key(&key))
                {
                    keys.push(key);
                }
            }
        }
    }
    t.claim(&keys);
    let stored = t.stored_offsets();
    for topic in inputs {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for m in md.topics() {
            for p in m.partitions() {
                if p.id().rem_euclid(instances as i32) != instance as i32 {
                    continue;
                }
                let key = (topic.to_string(), p.id());
                if only.is_some_and(|o| !o.contains_key(&key)) {
                    continue;
                }
                let offset = match stored.get(&key) {
                    Some(o) => {
                        metrics::CHECKPOINTED_OFFSET
                            .with_label_values(&[t.name.as_str(), topic, &p.id().to_string()])
                            .set(*o);
                        Offset::Offset(*o)
                    }
                    None => Offset::Beginning,
                };
                tpl.add_partition_offset(topic, p.id(), offset)?;
                t.assigned.insert(key);
            }
        }
    }
    consumer.assign(&tpl)?;
    let keys: Vec<(String, i32)> = t.assigned.iter().cloned().collect();
    if let Some(txn) = &mut t.txn {
        txn.on_assigned(consumer, &keys);
    }
    metrics::ASSIGNED_PARTITIONS
        .with_label_values(&[&t.name])
        .set(t.assigned.len() as i64);
    tracing::info!(processor = %t.name, partitions = t.assigned.len(), instance, instances, "partitions assigned (static)");
    Ok(())
}

/// True when every assigned partition of a bounded run has reached its end: its next offset
/// (processed or checkpointed), or the consumer's position (which also moves past offsets
/// holding no record, such as transaction markers), is at or past the end.
fn reached_ends(t: &Task, consumer: &BaseConsumer<GroupContext>, bounds: &Bounds) -> bool {
    let positions = consumer_positions(consumer);
    let stored = t.stored_offsets();
    t.assigned.iter().all(|key| {
        let Some(end) = bounds.ends.get(key) else {
            return true;
        };
        let next = t.pending.get(key).or(stored.get(key)).copied();
        next.is_some_and(|n| n >= *end) || positions.get(key).is_some_and(|p| p >= end)
    })
}

/// The next offset `consumer` will hand over, per assigned partition that has one. It moves past
/// records never delivered (transaction markers, aborted transactions under `read_committed`).
fn consumer_positions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
) -> BTreeMap<(String, i32), i64> {
    consumer
        .position()
        .map(|tpl| {
            tpl.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Throw away uncommitted work and re-read every partition (group and global) from its
/// checkpoint.
fn rewind(
    t: &mut Task,
    consumer: Option<&BaseConsumer<GroupContext>>,
    global: Option<&BaseConsumer>,
) {
    t.reset();
    // Outputs still queued belong to the discarded work; they will be produced again.
    let _ = t.producer.flush(Duration::from_secs(5));
    t.producer.context().failed.store(0, Ordering::SeqCst);
    let stored = t.stored_offsets();
    let position = |topic: &str, partition: i32| {
        stored
            .get(&(topic.to_string(), partition))
            .map(|o| Offset::Offset(*o))
            .unwrap_or(Offset::Beginning)
    };
    if let Some(consumer) = consumer {
        for (topic, partition) in &t.assigned {
            let offset = position(topic, *partition);
            if let Err(e) = consumer.seek(topic, *partition, offset, Duration::from_secs(5)) {
                tracing::error!(processor = %t.name, topic, partition, error = %e, "seek failed");
            }
        }
    }
    if let Some(global) = global {
        if let Ok(assignment) = global.assignment() {
            for e in assignment.elements() {
                let offset = position(e.topic(), e.partition());
                if let Err(err) =
                    global.seek(e.topic(), e.partition(), offset, Duration::from_secs(5))
                {
                    tracing::error!(processor = %t.name, topic = e.topic(), error = %err, "seek failed");
                }
            }
        }
    }
}

/// Mirror the checkpoint into the group's committed offsets (for lag tools; not used to resume).
/// Only in `group` assignment: a statically assigned instance has no group to report to.
fn commit_group_offsets(consumer: Option<&BaseConsumer<GroupContext>>, t: &Task) {
    let Some(consumer) = consumer else { return };
    // In `exactly_once` mode the offsets were committed with the transaction.
    if t.static_assignment || t.txn.is_some() {
        return;
    }
    let stored = t.stored_offsets();
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in stored {
        if t.assigned.contains(&(topic.clone(), partition)) {
            let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(next));
        }
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, rdkafka::consumer::CommitMode::Async) {
            tracing::debug!(processor = %t.name, error = %e, "group offset commit failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::partition_lag;
    use rdkafka::statistics::Partition;

    fn stats(hi: i64, app: i64, next: i64) -> Partition {
        Partition {
            hi_offset: hi,
            app_offset: app,
            next_offset: next,
            consumer_lag: -1,
            ..Partition::default()
        }
    }

    #[test]
    fn lag_is_the_high_watermark_minus_the_position_without_committed_offsets() {
        assert_eq!(partition_lag(0, &stats(1_000, 400, 900)), Some(600));
        // Before the first record reached fluxo: the fetch position.
        assert_eq!(partition_lag(0, &stats(1_000, -1, 250)), Some(750));
        assert_eq!(partition_lag(0, &stats(1_000, 1_000, 1_000)), Some(0));
        // A watermark older than the position (stale statistics) is no negative lag.
        assert_eq!(partition_lag(0, &stats(10, 12, 12)), Some(0));
    }

    #[test]
    fn outputs_count_as_delivered_once_every_earlier_one_has_its_report() {
        let ctx = super::DeliveryContext::new("p");
        assert!(ctx.delivered_before(10));
        ctx.outstanding().extend([3, 4, 7]);
        assert!(ctx.delivered_before(3));
        assert!(!ctx.delivered_before(4));
        // Reports arrive out of order across partitions: 7 before 3 and 4.
        ctx.outstanding().remove(&7);
        assert!(!ctx.delivered_before(8));
        ctx.outstanding().remove(&3);
        ctx.outstanding().remove(&4);
        assert!(ctx.delivered_before(8));
    }

    #[test]
    fn unknown_positions_and_the_internal_partition_have_no_lag() {
        assert_eq!(partition_lag(-1, &stats(1_000, 400, 900)), None);
        assert_eq!(partition_lag(0, &stats(-1, 400, 900)), None);
        assert_eq!(partition_lag(0, &stats(1_000, -1, -1)), None);
    }
}
