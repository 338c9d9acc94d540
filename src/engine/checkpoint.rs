//! The checkpoint strategies: how a processor's state, its input offsets and its outputs are
//! committed together. One [`Checkpointer`] per run, chosen from the processing guarantee and
//! whether the run is bounded.

use super::task::Task;
use super::CheckpointError;
use crate::metrics;
use crate::state::{Checkpoint, WriteBatch};
use crate::transactions::Transactions;
use rdkafka::producer::Producer;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long an engine keeps rewinding and retrying commits the store fences before it stops:
/// normally the group takes the partitions away first (a zombie's next poll learns it lost
/// them); a fence that outlasts this is another process holding them for good (a live rebuild
/// with `fluxo replay --into live`, an instance with the same partitions by mistake).
pub(super) const FENCED_PATIENCE: Duration = Duration::from_secs(60);

/// How an engine commits its checkpoints: one variant per guarantee.
pub(super) enum Checkpointer {
    /// `exactly_once`: the outputs and the group's offsets of a checkpoint are one Kafka
    /// transaction, committed before the state and offsets go to the store (see
    /// [`crate::transactions`] for why that order keeps them consistent). Blocking: each
    /// checkpoint waits for its transaction.
    Transactional(Transactions),
    /// `effectively_once`, live: a checkpoint is staged (state changes and offsets taken) and
    /// committed to the store once every output produced before it is acknowledged, while
    /// processing goes on. Same guarantee as [`Checkpointer::Blocking`], without stalling the
    /// loop on acknowledgements.
    Pipelined {
        /// The checkpoint taken and waiting for its outputs' acknowledgements.
        staged: Option<Staged>,
    },
    /// `effectively_once`, bounded run (a replay): every checkpoint waits for the outputs'
    /// acknowledgements, then commits. A bounded run is judged by its final commit, so nothing
    /// is left staged when it returns.
    Blocking,
}

impl Checkpointer {
    /// The strategy for a run: transactional when `transactions` is given (`exactly_once`),
    /// otherwise pipelined for live runs and blocking for `bounded` ones.
    pub(super) fn new(transactions: Option<Transactions>, bounded: bool) -> Self {
        match transactions {
            Some(t) => Self::Transactional(t),
            None if bounded => Self::Blocking,
            None => Self::Pipelined { staged: None },
        }
    }

    /// The Kafka transactions, in `exactly_once` mode.
    pub(super) fn transactions(&self) -> Option<&Transactions> {
        match self {
            Self::Transactional(t) => Some(t),
            _ => None,
        }
    }

    /// The Kafka transactions, in `exactly_once` mode.
    pub(super) fn transactions_mut(&mut self) -> Option<&mut Transactions> {
        match self {
            Self::Transactional(t) => Some(t),
            _ => None,
        }
    }

    /// True for [`Checkpointer::Pipelined`]: the run loop stages checkpoints instead of
    /// blocking on acknowledgements.
    pub(super) fn is_pipelined(&self) -> bool {
        matches!(self, Self::Pipelined { .. })
    }

    /// The staged checkpoint, if one waits for its acknowledgements. Reads see its writes: the
    /// processor may have dropped those keys from its cache, and the store does not have them yet.
    pub(super) fn staged(&self) -> Option<&Staged> {
        match self {
            Self::Pipelined { staged } => staged.as_ref(),
            _ => None,
        }
    }

    /// Take the staged checkpoint out (to commit it, or to forget it).
    fn take_staged(&mut self) -> Option<Staged> {
        match self {
            Self::Pipelined { staged } => staged.take(),
            _ => None,
        }
    }

    /// Keep `next` until its outputs are acknowledged.
    fn stage(&mut self, next: Staged) {
        match self {
            Self::Pipelined { staged } => *staged = Some(next),
            // The run loop stages only in pipelined mode; dropping a snapshot would lose work.
            _ => unreachable!("only pipelined checkpoints are staged"),
        }
    }

    /// Forget uncommitted work: abort the open transaction, drop the staged checkpoint.
    pub(super) fn discard<C: rdkafka::producer::ProducerContext>(
        &mut self,
        producer: &rdkafka::producer::BaseProducer<C>,
    ) {
        if let Self::Transactional(txn) = self {
            txn.abort(producer);
        }
        self.take_staged();
    }
}

/// A checkpoint's state changes and offsets, taken at a point in the stream, committed once every
/// output produced before that point is acknowledged.
pub(super) struct Staged {
    /// The state changes and the next input offsets.
    pub(super) batch: WriteBatch,
    /// Outputs with a sequence number below this were produced before the snapshot.
    outputs_end: u64,
    taken: Instant,
}

impl Task {
    /// Flush outputs, then commit state and offsets atomically (the blocking checkpoint, used
    /// by every strategy on rebalances, batch cuts and shutdown).
    pub(super) fn checkpoint(&mut self) -> Result<(), CheckpointError> {
        let started = Instant::now();
        if let Some(fatal) = self
            .checkpointer
            .transactions()
            .and_then(|t| t.fatal_error())
        {
            return Err(fatal.into());
        }
        if self.producer.flush(self.produce_timeout).is_err() {
            return Err(CheckpointError::Delivery(format!(
                "{} records still in flight after {:?}",
                self.producer.in_flight_count(),
                self.produce_timeout
            )));
        }
        let failed = self.producer.context().take_failures();
        if failed > 0 {
            return Err(CheckpointError::Delivery(format!(
                "{failed} deliveries failed"
            )));
        }
        // Every output is acknowledged now: a staged checkpoint goes first.
        self.commit_staged()?;
        if let Some(txn) = self.checkpointer.transactions_mut() {
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

    /// Commit the staged checkpoint, if any (its outputs must be acknowledged).
    fn commit_staged(&mut self) -> Result<(), CheckpointError> {
        let Some(staged) = self.checkpointer.take_staged() else {
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

    /// The non-blocking checkpoint of the processing loop ([`Checkpointer::Pipelined`]): commit
    /// the staged checkpoint once every output produced before it is acknowledged, then stage
    /// the next one (state changes and offsets so far, when `stage_next`) without waiting for
    /// acknowledgements. Processing goes on meanwhile; reads see the staged writes (see
    /// `handle`). The guarantee is the blocking checkpoint's: state and offsets reach the store
    /// together, and only after the outputs that precede them are acknowledged. A crash loses at
    /// most the staged and the newer work, which is then processed again from the last commit.
    ///
    /// # Errors
    /// A failed delivery, outputs unacknowledged past the produce timeout, or a store error; the
    /// caller rewinds to the last committed checkpoint.
    pub(super) fn checkpoint_staged(&mut self, stage_next: bool) -> Result<(), CheckpointError> {
        self.producer.poll(Duration::ZERO);
        let failed = self.producer.context().take_failures();
        if failed > 0 {
            return Err(CheckpointError::Delivery(format!(
                "{failed} deliveries failed"
            )));
        }
        if let Some(staged) = self.checkpointer.staged() {
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
        let batch = self.snapshot();
        self.checkpointer.stage(Staged {
            batch,
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

    /// Record a checkpoint's outcome; true when the store has refused checkpoints (for another
    /// reason than a fence) for longer than `store_patience` and the engine must stop.
    pub(super) fn store_failing_too_long(&mut self, result: &Result<(), CheckpointError>) -> bool {
        match result {
            Err(CheckpointError::Store(e)) if !e.is_fenced() => {
                let since = *self.store_failing_since.get_or_insert_with(Instant::now);
                since.elapsed() > self.store_patience
            }
            Err(_) => false,
            Ok(()) => {
                self.store_failing_since = None;
                false
            }
        }
    }

    /// Record a checkpoint's outcome; true when commits have been fenced for longer than
    /// [`FENCED_PATIENCE`] and the engine must stop.
    pub(super) fn fenced_too_long(&mut self, result: &Result<(), CheckpointError>) -> bool {
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
}
