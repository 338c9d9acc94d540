//! The part of the engine that the run loop and the rebalance callbacks share, behind a mutex:
//! the job, the producer, the offsets processed since the last checkpoint, the assigned
//! partitions, and access to the store.

use super::checkpoint::Checkpointer;
use super::delivery::DeliveryContext;
use crate::jobs::{Job, Output};
use crate::state::StateStore;
use rdkafka::producer::{BaseProducer, Producer};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The state of one engine the rebalance callback needs too.
pub(super) struct Task {
    pub(super) name: String,
    pub(super) job: Box<dyn Job>,
    pub(super) store: Arc<dyn StateStore>,
    pub(super) producer: BaseProducer<DeliveryContext>,
    /// Next offset per input partition, processed but not yet checkpointed.
    pub(super) pending: BTreeMap<(String, i32), i64>,
    /// Partitions assigned by the group.
    pub(super) assigned: HashSet<(String, i32)>,
    /// Bumped at every rebalance, so a batch collected across one is dropped.
    pub(super) generation: u64,
    pub(super) since_checkpoint: usize,
    pub(super) last_checkpoint: Instant,
    pub(super) produce_timeout: Duration,
    /// Reused buffer for a record's (or tick's) outputs.
    pub(super) outputs: Vec<Output>,
    pub(super) freshness: Option<Arc<crate::api::Freshness>>,
    /// Set when uncommitted global-table records were dropped: the loop re-reads them.
    pub(super) global_rewind: bool,
    /// Partitions are assigned statically (no consumer group).
    pub(super) static_assignment: bool,
    /// How checkpoints are committed (one strategy per processing guarantee).
    pub(super) checkpointer: Checkpointer,
    /// Appended to the topic of every produced record (replays into a fresh namespace).
    pub(super) topic_suffix: String,
    /// Sequence number of the next output produced.
    pub(super) next_seq: u64,
    /// Since when commits have been fenced without a success in between.
    pub(super) fenced_since: Option<Instant>,
    /// Since when the store has refused checkpoints (not fenced: an outage, a full disk)
    /// without a success in between.
    pub(super) store_failing_since: Option<Instant>,
    /// The last input record handled: `(topic, partition, offset)`, named by tick outputs.
    pub(super) last_input: Option<(String, i32, i64)>,
    /// Set when the engine cannot go on (the store kept failing); the run loop stops with it.
    pub(super) fatal: OnceLock<String>,
    /// How long [`Task::store_or_fail`] retries (`[runtime] store_patience`).
    pub(super) store_patience: Duration,
    /// Stream time per input partition (greatest record timestamp), and whether it advanced
    /// since the processor was last told.
    pub(super) stream_times: Vec<StreamTime>,
    /// Set when the job was rebuilt and has not been told which partitions it resumes
    /// ([`Task::resume_partitions`]).
    pub(super) resume_pending: bool,
    /// The metric series counted per record.
    pub(super) series: RecordSeries,
}

/// The stream time of one input partition.
pub(super) struct StreamTime {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) time: i64,
    pub(super) advanced: bool,
}

/// The per-record metric series of one processor, each looked up once: `with_label_values`
/// hashes its labels and takes a lock, which per record was about 2% of consolidation's CPU.
pub(super) struct RecordSeries {
    name: String,
    records_in: Vec<(String, prometheus::IntCounter)>,
    records_out: Vec<(String, prometheus::IntCounter)>,
    /// `fluxo_processing_duration_seconds` of the processor.
    pub(super) processing: prometheus::Histogram,
    /// `fluxo_event_time_latency_seconds` of the processor.
    pub(super) latency: prometheus::Histogram,
}

impl RecordSeries {
    /// The series of processor `name`.
    pub(super) fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            records_in: Vec::new(),
            records_out: Vec::new(),
            processing: crate::metrics::PROCESSING_SECONDS.with_label_values(&[name]),
            latency: crate::metrics::EVENT_TIME_LATENCY_SECONDS.with_label_values(&[name]),
        }
    }

    /// `fluxo_records_in_total` of `topic`.
    pub(super) fn records_in(&mut self, topic: &str) -> &prometheus::IntCounter {
        by_topic(
            &mut self.records_in,
            &crate::metrics::RECORDS_IN,
            &self.name,
            topic,
        )
    }

    /// `fluxo_records_out_total` of `topic`.
    pub(super) fn records_out(&mut self, topic: &str) -> &prometheus::IntCounter {
        by_topic(
            &mut self.records_out,
            &crate::metrics::RECORDS_OUT,
            &self.name,
            topic,
        )
    }
}

/// The series of `(processor, topic)` in `cache`, looked up in `vec` the first time. A processor
/// has a handful of topics: a scan is cheaper than hashing.
fn by_topic<'a>(
    cache: &'a mut Vec<(String, prometheus::IntCounter)>,
    vec: &prometheus::IntCounterVec,
    processor: &str,
    topic: &str,
) -> &'a prometheus::IntCounter {
    let i = match cache.iter().position(|(t, _)| t == topic) {
        Some(i) => i,
        None => {
            cache.push((
                topic.to_string(),
                vec.with_label_values(&[processor, topic]),
            ));
            cache.len() - 1
        }
    };
    &cache[i].1
}

/// Lock the shared task.
pub(super) fn lock(task: &Mutex<Task>) -> MutexGuard<'_, Task> {
    // A panic while holding the lock leaves a task that is reset before use anyway.
    task.lock().unwrap_or_else(|p| p.into_inner())
}

impl Task {
    /// Forget uncommitted work: a fresh processor, no pending offsets.
    pub(super) fn reset(&mut self) {
        self.checkpointer.discard(&self.producer);
        self.job.reset();
        self.resume_pending = true;
        self.pending.clear();
        self.since_checkpoint = 0;
        self.producer.context().forget_failures();
    }

    /// Claim `partitions` in the store for this instance before reading their checkpoints
    /// (fencing earlier holders; a no-op on the embedded store). Retried like a checkpoint read,
    /// then fail-stop: processing a partition without holding it could commit over its owner.
    pub(super) fn claim(&self, partitions: &[(String, i32)]) {
        self.store_or_fail("claim partitions", || {
            self.store.claim(&self.name, partitions)
        })
    }

    /// The stored next offset of every partition of this processor.
    ///
    /// A failed read is retried with backoff, never taken as "no checkpoints" (that would
    /// re-read the partitions from the beginning and count their records twice).
    pub(super) fn stored_offsets(&self) -> BTreeMap<(String, i32), i64> {
        self.store_or_fail("read checkpoints", || self.store.checkpoints(&self.name))
            .into_iter()
            .map(|c| ((c.topic, c.partition), c.next_offset))
            .collect()
    }

    /// `call` the store, retrying with backoff. When it keeps failing for `store_patience`
    /// ([`super::CHECKPOINT_READ_PATIENCE`] by default) the engine is marked failed
    /// ([`Task::fatal`]) and `T`'s default is returned: the run loop checks the mark before
    /// processing anything and stops with the error, which travels up to the binary (fail-stop;
    /// every store commit is atomic, so a restart resumes from a consistent checkpoint).
    /// Rebalance callbacks cannot return errors, hence the mark.
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
    pub(super) fn fail_if_fatal(&self) -> anyhow::Result<()> {
        match self.fatal.get() {
            Some(why) => Err(anyhow::anyhow!("{}: {why}", self.name)),
            None => Ok(()),
        }
    }
}
