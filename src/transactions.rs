//! Kafka transactions for `processing_guarantee = "exactly_once"`.
//!
//! Each checkpoint of the engine becomes: begin a transaction (lazily, at the first output) ->
//! produce the outputs -> `send_offsets_to_transaction` (the next input offsets, with the
//! consumer group's metadata) -> `commit_transaction` -> commit state and offsets to the store.
//! A `read_committed` consumer then sees the outputs of a checkpoint once, or not at all.
//!
//! # Why state stays consistent with the outputs
//! The state store stays the source of truth for positions (partitions are positioned at the
//! offsets stored with the state), and the group's committed offset is never behind it: the
//! Kafka commit comes first, the store commit second.
//! - Crash (or error) before the Kafka commit: the transaction is aborted (explicitly, or by
//!   `init_transactions` on restart, which fences and aborts whatever the previous incarnation
//!   of the same `transactional.id` left open; otherwise by the transaction timeout). Store and
//!   group agree on the last checkpoint; the records since are processed again and their
//!   outputs produced again, in a new transaction.
//! - Crash after the Kafka commit but before the store commit: the group's committed offset is
//!   ahead of the store's. On restart the engine reads the group's committed offsets (the
//!   *horizon*) and re-processes the records between the store's offset and the horizon from the
//!   stored state, **discarding their outputs** (they were committed with the transaction). The
//!   same happens in-process when the store refuses a commit after the Kafka commit went
//!   through. Processors are deterministic functions of (state, record, processing time), so the
//!   state converges to what the first pass computed. Exceptions: risk scoring with an external
//!   validator (its answer may differ the second time) and processors reading the wall clock
//!   (`Clock::Wall` gives a different processing time on the second pass): their state after
//!   recovery reflects the second pass while the committed outputs reflect the first.
//! - A commit whose outcome is unknown (it timed out and retries did not settle it) or a fenced
//!   producer (another instance took the same `transactional.id`) is fatal: the engine stops,
//!   and the restart resolves the outcome through `init_transactions` and the horizon.
//!
//! Global inputs (tables every instance reads whole) are not part of the group, so their
//! offsets live only in the store; outputs produced while applying them are not deduplicated by
//! the horizon (fluxo's processors produce none from table records).
//!
//! # transactional.id
//! `<group>-<instance>`, i.e. `<group_prefix>-<processor>-<runtime.instance>`: stable across
//! restarts so a restarted instance fences its previous incarnation. With `group` assignment
//! partitions move between instances; fencing of zombies then also relies on the group
//! generation sent with the offsets (KIP-447, Kafka 2.5+). Every instance must have its own
//! `runtime.instance`.
//!
//! # Brokers without transactions
//! [`Transactions::start`] runs `init_transactions` and then a probe transaction (offsets only,
//! for a probe group `<group>-txn-probe`, aborted) with a short timeout, so a broker that cannot
//! serve transactions (a Kafka-protocol broker without them, or a Kafka whose transaction
//! coordinator cannot start) fails the start with [`TxnError::Unsupported`] instead of hanging
//! at the first checkpoint.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long the start-up probe waits for each transactional request.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a transactional call the client calls retriable (the coordinator unreachable: a
/// broker restarting, a leader moving) is tried again before the producer is given up as
/// failed. Nothing can be committed meanwhile anyway, and giving up stops the engine; kept under
/// the consumer's `max.poll.interval.ms` (5 min), which the engine does not poll during it.
pub const RETRIABLE_PATIENCE: Duration = Duration::from_secs(240);

/// What went wrong with a transaction.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TxnError {
    /// The brokers do not support transactions (found at start).
    #[error("processing_guarantee = \"exactly_once\" needs Kafka transactions, which the brokers at {bootstrap} do not support ({detail}); on brokers without transactions use processing_guarantee = \"effectively_once\"")]
    Unsupported {
        /// The brokers asked.
        bootstrap: String,
        /// What the client reported.
        detail: String,
    },
    /// The transaction was aborted; its outputs are invisible to `read_committed` consumers and
    /// the work since the last checkpoint must be redone.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// The producer cannot continue (a commit whose outcome is unknown, a failed abort); the
    /// engine must stop and be restarted.
    #[error("transactional producer failed: {0}")]
    Fatal(String),
    /// The producer was fenced: another producer with the same `transactional.id` (a restarted
    /// or second instance) or the coordinator (a transaction it timed out during a broker
    /// outage) bumped its epoch. Fatal like [`TxnError::Fatal`]; told apart because a fence with
    /// the brokers reachable means another instance owns the work (see `pipeline::supervise`).
    #[error("transactional producer fenced: {0}")]
    Fenced(String),
}

impl TxnError {
    /// True when the producer cannot go on ([`TxnError::Fatal`] or [`TxnError::Fenced`]).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Fatal(_) | Self::Fenced(_))
    }

    /// True when the producer was fenced ([`TxnError::Fenced`]).
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced(_))
    }
}

/// True when `e` carries one of the error codes librdkafka and the brokers use for a fenced
/// producer: the client's own `_FENCED` (what a fatal transactional error reports after a
/// fence) or the broker's `PRODUCER_FENCED`. Read from the code, not the message text.
/// `INVALID_PRODUCER_EPOCH` is deliberately not a fence here: a group rebalance after an
/// instance dies can answer a transactional call with it (scale_out's
/// `three_instances_survive_a_sigkill`), and that engine must restart in-process, as it did
/// when the text (which does not say "fenced") was matched.
pub fn is_fenced_error(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
    )
}

/// Why a transactional producer cannot go on, kept so that every later call reports it.
#[derive(Debug, Clone)]
struct FatalCause {
    text: String,
    fenced: bool,
}

impl FatalCause {
    fn new(text: String, e: &KafkaError) -> Self {
        Self {
            text,
            fenced: is_fenced_error(e),
        }
    }

    fn error(&self) -> TxnError {
        if self.fenced {
            TxnError::Fenced(self.text.clone())
        } else {
            TxnError::Fatal(self.text.clone())
        }
    }
}

/// The transactional state of one engine.
pub struct Transactions {
    timeout: Duration,
    group_metadata: Option<ConsumerGroupMetadata>,
    open: bool,
    /// Next offset per input partition whose outputs are already committed in Kafka.
    horizon: BTreeMap<(String, i32), i64>,
    fatal: Option<FatalCause>,
}

/// The `transactional.id` of instance `instance` of the engine whose consumer group is `group`.
pub fn transactional_id(group: &str, instance: u32) -> String {
    format!("{group}-{instance}")
}

/// The transaction timeout unless `[kafka.client]` sets `transaction.timeout.ms`: Kafka Streams'
/// exactly-once default. A member that dies with a transaction open holds back every
/// `read_committed` consumer of its output partitions (the last stable offset stops there)
/// until the broker aborts that transaction, at the latest this long after it began, so it is
/// kept short; a checkpoint's transaction lasts one checkpoint interval.
pub const TRANSACTION_TIMEOUT_MS: u64 = 10_000;

/// Make `cfg` a transactional producer's configuration.
pub fn configure_producer(cfg: &mut ClientConfig, transactional_id: &str) {
    cfg.set("transactional.id", transactional_id)
        // Transactions require idempotence, whatever `runtime.idempotent_producer` says.
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5");
    let timeout = match cfg.get("transaction.timeout.ms") {
        Some(t) => t.to_string(),
        None => {
            let t = TRANSACTION_TIMEOUT_MS.to_string();
            cfg.set("transaction.timeout.ms", &t);
            t
        }
    };
    // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
    let message_timeout = cfg
        .get("message.timeout.ms")
        .and_then(|m| m.parse::<u64>().ok())
        .zip(timeout.parse::<u64>().ok())
        .map(|(m, t)| m.min(t));
    if let Some(m) = message_timeout {
        cfg.set("message.timeout.ms", m.to_string());
    }
}

fn fatal_or_aborted(e: &KafkaError) -> Option<bool> {
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => Some(true),
        KafkaError::Transaction(t) if t.txn_requires_abort() => Some(false),
        // rdkafka flushes before committing: nothing was sent to the coordinator yet.
        KafkaError::Flush(_) => Some(false),
        _ => None,
    }
}

impl Transactions {
    /// Initialize transactions for `producer` (fencing and aborting what a previous incarnation
    /// of its `transactional.id` left open), then check with an aborted probe transaction that
    /// the brokers support them. `base` is the client configuration, `group` the engine's
    /// consumer group and `probe_topic` an existing topic.
    ///
    /// # Errors
    /// [`TxnError::Unsupported`] when the brokers answer no transactional request in time or
    /// refuse them.
    pub fn start<C: ProducerContext>(
        producer: &BaseProducer<C>,
        base: &ClientConfig,
        group: &str,
        probe_topic: &str,
        timeout: Duration,
    ) -> Result<Self, TxnError> {
        let unsupported = |step: &str, e: &dyn std::fmt::Display| TxnError::Unsupported {
            bootstrap: base.get("bootstrap.servers").unwrap_or("?").to_string(),
            detail: format!("{step}: {e}"),
        };
        producer
            .init_transactions(timeout)
            .map_err(|e| unsupported("init_transactions", &e))?;
        let probe: BaseConsumer = base
            .clone()
            .set("group.id", format!("{group}-txn-probe"))
            .create()
            .map_err(|e| unsupported("probe consumer", &e))?;
        let metadata = probe
            .group_metadata()
            .ok_or_else(|| unsupported("probe consumer", &"no group metadata"))?;
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(probe_topic, 0, Offset::Offset(0))
            .map_err(|e| unsupported("probe offsets", &e))?;
        producer
            .begin_transaction()
            .map_err(|e| unsupported("begin_transaction", &e))?;
        let sent = producer.send_offsets_to_transaction(&offsets, &metadata, PROBE_TIMEOUT);
        // Aborting sends EndTxn once the offsets registered the transaction on the coordinator.
        let aborted = producer.abort_transaction(PROBE_TIMEOUT);
        sent.map_err(|e| unsupported("send_offsets_to_transaction", &e))?;
        aborted.map_err(|e| unsupported("abort_transaction (EndTxn)", &e))?;
        Ok(Self {
            timeout,
            group_metadata: None,
            open: false,
            horizon: BTreeMap::new(),
            fatal: None,
        })
    }

    /// The group metadata sent with the offsets (refreshed at every assignment).
    pub fn set_group_metadata(&mut self, metadata: Option<ConsumerGroupMetadata>) {
        self.group_metadata = metadata;
    }

    /// After `consumer` was assigned `partitions`: take its current group metadata (generation)
    /// and learn the horizon of the new partitions.
    pub fn on_assigned<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &[(String, i32)],
    ) {
        self.set_group_metadata(consumer.group_metadata());
        self.learn_committed(consumer, partitions);
    }

    /// Read the group's committed offsets of `partitions` into the horizon: records below it
    /// had their outputs committed by an earlier transaction.
    pub fn learn_committed<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &[(String, i32)],
    ) {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in partitions {
            tpl.add_partition(topic, *partition);
        }
        match consumer.committed_offsets(tpl, self.timeout) {
            Ok(committed) => {
                for e in committed.elements() {
                    if let Offset::Offset(next) = e.offset() {
                        let slot = self
                            .horizon
                            .entry((e.topic().to_string(), e.partition()))
                            .or_insert(next);
                        *slot = (*slot).max(next);
                    }
                }
            }
            Err(e) => {
                // Without the horizon, a crash between the two commits would repeat outputs:
                // refuse to go on rather than break the guarantee.
                self.fatal = Some(FatalCause::new(
                    format!("cannot read the group's committed offsets: {e}"),
                    &e,
                ));
            }
        }
    }

    /// True when the outputs of the record at `offset` were committed by an earlier transaction
    /// (it is being re-processed only to rebuild state).
    pub fn already_committed(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.horizon
            .get(&(topic.to_string(), partition))
            .is_some_and(|next| offset < *next)
    }

    /// Begin a transaction unless one is open.
    ///
    /// # Errors
    /// When the producer refuses (e.g. it is fenced).
    pub fn ensure_begun<C: ProducerContext>(
        &mut self,
        producer: &BaseProducer<C>,
    ) -> Result<(), TxnError> {
        if let Some(f) = &self.fatal {
            return Err(f.error());
        }
        if self.open {
            return Ok(());
        }
        producer.begin_transaction().map_err(|e| {
            let text = format!("begin_transaction: {e}");
            if fatal_or_aborted(&e) == Some(true) {
                let cause = FatalCause::new(text, &e);
                let error = cause.error();
                self.fatal = Some(cause);
                error
            } else {
                TxnError::Aborted(text)
            }
        })?;
        self.open = true;
        Ok(())
    }

    /// Commit the open transaction with `offsets` (next offset per group partition). On
    /// success the horizon moves to `offsets`.
    ///
    /// # Errors
    /// [`TxnError::Aborted`] when the transaction was aborted (redo the work),
    /// [`TxnError::Fatal`] when the producer cannot go on.
    pub fn commit<C: ProducerContext>(
        &mut self,
        producer: &BaseProducer<C>,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), TxnError> {
        if let Some(f) = &self.fatal {
            return Err(f.error());
        }
        if !self.open && offsets.is_empty() {
            return Ok(());
        }
        self.ensure_begun(producer)?;
        if !offsets.is_empty() {
            let Some(metadata) = &self.group_metadata else {
                self.abort(producer);
                return Err(TxnError::Aborted("no consumer group metadata yet".into()));
            };
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), next) in self.committable(offsets) {
                if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(next)) {
                    self.abort(producer);
                    return Err(TxnError::Aborted(format!("offsets: {e}")));
                }
            }
            let sent = retrying("send_offsets_to_transaction", || {
                producer.send_offsets_to_transaction(&tpl, metadata, self.timeout)
            });
            if let Err(e) = sent {
                return Err(self.failed(producer, "send_offsets_to_transaction", &e));
            }
        }
        if let Err(e) = retrying("commit_transaction", || {
            producer.commit_transaction(self.timeout)
        }) {
            return Err(self.failed(producer, "commit_transaction", &e));
        }
        self.open = false;
        for (k, next) in offsets {
            let slot = self.horizon.entry(k.clone()).or_insert(*next);
            *slot = (*slot).max(*next);
        }
        Ok(())
    }

    /// The offsets to commit for `offsets`: never below the horizon, so re-processing records
    /// whose outputs are committed does not move the group's offset back (a crash then would
    /// repeat those outputs).
    fn committable(&self, offsets: &BTreeMap<(String, i32), i64>) -> BTreeMap<(String, i32), i64> {
        offsets
            .iter()
            .map(|(k, next)| {
                let next = self.horizon.get(k).map_or(*next, |h| (*h).max(*next));
                (k.clone(), next)
            })
            .collect()
    }

    /// Classify a failed transactional call: abort when the client says the transaction can be
    /// aborted, otherwise (fenced, or an outcome nobody knows) mark the producer fatal.
    fn failed<C: ProducerContext>(
        &mut self,
        producer: &BaseProducer<C>,
        step: &str,
        e: &KafkaError,
    ) -> TxnError {
        let text = format!("{step}: {e}");
        match fatal_or_aborted(e) {
            Some(false) => {
                self.abort(producer);
                TxnError::Aborted(text)
            }
            Some(true) | None => {
                let cause = FatalCause::new(text, e);
                let error = cause.error();
                self.fatal = Some(cause);
                error
            }
        }
    }

    /// Abort the open transaction, if any (its outputs become invisible to `read_committed`).
    pub fn abort<C: ProducerContext>(&mut self, producer: &BaseProducer<C>) {
        if !self.open {
            return;
        }
        match retrying("abort_transaction", || {
            producer.abort_transaction(self.timeout)
        }) {
            Ok(()) => self.open = false,
            Err(e) => {
                tracing::error!(error = %e, "abort_transaction failed; stopping the engine");
                self.fatal = Some(FatalCause::new(format!("abort_transaction: {e}"), &e));
            }
        }
    }

    /// Why the producer cannot go on, if it cannot.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_ref().map(|f| f.text.as_str())
    }

    /// The error every call reports once the producer cannot go on ([`TxnError::Fenced`] when
    /// it was fenced, [`TxnError::Fatal`] otherwise), if it cannot.
    pub fn fatal_error(&self) -> Option<TxnError> {
        self.fatal.as_ref().map(FatalCause::error)
    }
}

/// `call` a transactional API until it succeeds or fails for another reason than a retriable
/// one (librdkafka's word that the same call may succeed later, e.g. a timeout while the
/// coordinator is unreachable), for at most [`RETRIABLE_PATIENCE`].
fn retrying(
    what: &str,
    mut call: impl FnMut() -> Result<(), KafkaError>,
) -> Result<(), KafkaError> {
    let started = std::time::Instant::now();
    loop {
        match call() {
            Err(KafkaError::Transaction(t))
                if t.is_retriable() && started.elapsed() < RETRIABLE_PATIENCE =>
            {
                tracing::warn!(error = %t, "{what} failed (retriable: the transaction coordinator is unreachable?); retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_horizon(horizon: &[(&str, i32, i64)]) -> Transactions {
        Transactions {
            timeout: Duration::from_secs(1),
            group_metadata: None,
            open: false,
            horizon: horizon
                .iter()
                .map(|(t, p, o)| ((t.to_string(), *p), *o))
                .collect(),
            fatal: None,
        }
    }

    #[test]
    fn records_below_the_horizon_are_already_committed() {
        let t = with_horizon(&[("prices", 0, 30)]);
        assert!(t.already_committed("prices", 0, 29));
        assert!(!t.already_committed("prices", 0, 30));
        assert!(!t.already_committed("prices", 1, 0));
        assert!(!t.already_committed("other", 0, 0));
    }

    #[test]
    fn committed_offsets_never_go_back_below_the_horizon() {
        let t = with_horizon(&[("prices", 0, 30)]);
        let offsets = BTreeMap::from([
            (("prices".to_string(), 0), 17),
            (("prices".to_string(), 1), 5),
        ]);
        let sent = t.committable(&offsets);
        assert_eq!(sent[&("prices".to_string(), 0)], 30);
        assert_eq!(sent[&("prices".to_string(), 1)], 5);
        let later = BTreeMap::from([(("prices".to_string(), 0), 31)]);
        assert_eq!(t.committable(&later)[&("prices".to_string(), 0)], 31);
    }

    #[test]
    fn a_fence_is_told_by_its_error_code_not_its_text() {
        for code in [RDKafkaErrorCode::Fenced, RDKafkaErrorCode::ProducerFenced] {
            assert!(is_fenced_error(&KafkaError::Flush(code)), "{code:?}");
        }
        // An old epoch restarts the engine like any fatal producer error (see above).
        assert!(!is_fenced_error(&KafkaError::Flush(
            RDKafkaErrorCode::InvalidProducerEpoch
        )));
        // A timeout is not a fence, and neither is a message merely mentioning one.
        assert!(!is_fenced_error(&KafkaError::Flush(
            RDKafkaErrorCode::OperationTimedOut
        )));
        assert!(!is_fenced_error(&KafkaError::ClientCreation(
            "fenced".to_string()
        )));
        let cause = FatalCause::new(
            "commit".into(),
            &KafkaError::Flush(RDKafkaErrorCode::Fenced),
        );
        assert!(matches!(cause.error(), TxnError::Fenced(_)));
        assert!(cause.error().is_fatal());
    }

    #[test]
    fn the_transactional_id_is_stable_per_group_and_instance() {
        assert_eq!(
            transactional_id("fluxo-price-change", 2),
            "fluxo-price-change-2"
        );
    }
}
