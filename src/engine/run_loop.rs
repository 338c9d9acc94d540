//! The run loop: apply global-table records, poll a batch from the group, run it through the
//! job, tell the processor the time, checkpoint when due; on shutdown, a last checkpoint and
//! leaving the group.

use super::checkpoint::FENCED_PATIENCE;
use super::clients::Clients;
use super::positions::{commit_group_offsets, reached_ends, rewind};
use super::rebalance::GroupContext;
use super::restore::restore_global_tables;
use super::task::{lock, Task};
use super::{now_millis, raw, Bounds, Clock, EngineSpec};
use crate::config::Topology;
use crate::jobs::RawRecord;
use crate::metrics;
use fluxo_processors::Tick;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Longest a batch is processed before the engine checkpoints what is done and polls again.
const MAX_BATCH_TIME: Duration = Duration::from_secs(10);

/// How often a live engine tells its processor the wall-clock time ([`Tick::WallClock`]).
const WALL_TICK_EVERY: Duration = Duration::from_secs(1);

/// Run the engine until `shutdown` is set; then finish in-flight work, checkpoint, leave the
/// group and return.
///
/// # Errors
/// When the Kafka clients cannot be created, the store fails at start, or the engine cannot go
/// on (the store kept failing, the transactional producer failed, commits stayed fenced): the
/// caller decides whether to restart the engine or exit.
pub fn run(topology: &Topology, spec: EngineSpec, shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    let name = spec.name.clone();
    let rt = &topology.runtime;
    let clients = Clients::new(topology, &name)?;
    let probe_topic = spec
        .inputs
        .first()
        .or(spec.global_inputs.first())
        .cloned()
        .unwrap_or_default();
    let (producer, checkpointer) = clients.producer(&probe_topic, spec.bounds.is_some())?;
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
        produce_timeout: clients.produce_timeout(),
        outputs: Vec::new(),
        freshness: spec.freshness.clone(),
        global_rewind: false,
        static_assignment: rt.assignment == crate::config::Assignment::Static,
        checkpointer,
        topic_suffix: spec
            .bounds
            .as_ref()
            .map(|b| b.topic_suffix.clone())
            .unwrap_or_default(),
        next_seq: 0,
        fenced_since: None,
        store_failing_since: None,
        last_input: None,
        fatal: OnceLock::new(),
        store_patience: Duration::from_millis(rt.store_patience.millis().max(0) as u64),
        stream_times: Vec::new(),
        resume_pending: true,
        series: super::task::RecordSeries::new(&name),
    }));
    let bounds = spec.bounds;
    // Global inputs: every instance reads them whole, caught up before the group starts.
    let global = restore_global_tables(
        &clients,
        &task,
        &spec.global_inputs,
        bounds.as_ref(),
        spec.clock,
        &shutdown,
    )?;
    // Group inputs; a processor with only global inputs (the `fluxo serve` replica) has none.
    let group = clients.group_consumer(&task, &spec.inputs, &spec.started, bounds.as_ref())?;
    let consumers = Consumers { group, global };
    metrics::PROCESSOR_UP.with_label_values(&[&name]).set(1.0);
    tracing::info!(processor = %name, inputs = ?spec.inputs, global_inputs = ?spec.global_inputs, "engine started");

    let run_loop = RunLoop {
        name,
        group: clients.group.clone(),
        task,
        // Live runs tell processors the wall-clock time; bounded runs must not depend on it.
        wall_ticks: matches!(spec.clock, Clock::Wall) && bounds.is_none(),
        bounds,
        clock: spec.clock,
        max_batch: rt.max_batch,
        checkpoint_max_records: rt.checkpoint_max_records,
        checkpoint_every: Duration::from_millis(rt.checkpoint_interval.millis().max(1) as u64),
        shutdown: &shutdown,
    };
    run_loop.process_until_shutdown(&consumers)?;
    run_loop.finish(consumers)
}

/// The engine's consumers: the group's (none for a processor with only global inputs) and the
/// global tables' (none without global inputs).
struct Consumers {
    group: Option<BaseConsumer<GroupContext>>,
    global: Option<BaseConsumer>,
}

impl Consumers {
    /// Throw away uncommitted work and re-read every partition from its checkpoint.
    fn rewind(&self, t: &mut Task) {
        rewind(t, self.group.as_ref(), self.global.as_ref());
    }
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Stop,
}

/// How processing a batch ended.
enum BatchOutcome {
    /// Every record was handled.
    Done,
    /// A record must be retried from the last checkpoint (a dependency failed).
    Failed,
    /// The batch took over [`MAX_BATCH_TIME`]: checkpoint what is done, read the rest again.
    Cut,
}

/// What the loop needs besides the shared task: the run's settings.
struct RunLoop<'a> {
    name: String,
    group: String,
    task: Arc<Mutex<Task>>,
    bounds: Option<Bounds>,
    clock: Clock,
    wall_ticks: bool,
    max_batch: usize,
    checkpoint_max_records: usize,
    checkpoint_every: Duration,
    shutdown: &'a AtomicBool,
}

impl RunLoop<'_> {
    /// Loop until shutdown, a bounded run's end, or an error the engine cannot go on with.
    fn process_until_shutdown(&self, consumers: &Consumers) -> anyhow::Result<()> {
        // Messages still held keep librdkafka from destroying the consumer (its close would
        // wait for them forever): the batch lives here, released before `finish`.
        let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(self.max_batch);
        let mut last_wall_tick = Instant::now();
        while !self.shutdown.load(Ordering::SeqCst) {
            if let Flow::Stop = self.step(consumers, &mut batch, &mut last_wall_tick)? {
                break;
            }
        }
        Ok(())
    }

    /// One turn of the loop: read, process, tick, checkpoint.
    fn step<'c>(
        &self,
        c: &'c Consumers,
        batch: &mut Vec<BorrowedMessage<'c>>,
        last_wall_tick: &mut Instant,
    ) -> anyhow::Result<Flow> {
        lock(&self.task).fail_if_fatal()?;
        let global_records = self.apply_global_records(c);
        batch.clear();
        let generation = self.poll_group(c, batch);
        let mut t = lock(&self.task);
        t.fail_if_fatal()?;
        if std::mem::take(&mut t.global_rewind) {
            c.rewind(&mut t);
            return Ok(Flow::Continue);
        }
        if t.generation != generation {
            // A rebalance happened while collecting: everything processed before it is
            // checkpointed, so the partitions kept (cooperative rebalancing) go back to their
            // stored offsets and these records are read again; new ones start there anyway.
            batch.clear();
            c.rewind(&mut t);
            return Ok(Flow::Continue);
        }
        let now = self.processing_time(&t);
        if let Err(e) = t.resume_partitions(now) {
            tracing::error!(processor = %self.name, error = %e, "cannot resume the partitions from their checkpoints; rewinding to the last checkpoint");
            c.rewind(&mut t);
            drop(t);
            std::thread::sleep(Duration::from_millis(500));
            return Ok(Flow::Continue);
        }
        if !batch.is_empty() {
            match self.process_batch(&mut t, batch) {
                BatchOutcome::Done => {}
                BatchOutcome::Failed if self.shutdown.load(Ordering::SeqCst) => {
                    // Stopping (e.g. a notifier cut its retries short): drop the uncommitted
                    // work without seeking; the next start resumes from the last checkpoint.
                    t.reset();
                    return Ok(Flow::Stop);
                }
                BatchOutcome::Failed => {
                    c.rewind(&mut t);
                    drop(t);
                    // Give a failed dependency (store, registry) a moment before reading again.
                    std::thread::sleep(Duration::from_millis(500));
                    return Ok(Flow::Continue);
                }
                BatchOutcome::Cut => {
                    self.checkpoint_cut_batch(&mut t, c);
                    return Ok(Flow::Continue);
                }
            }
        }
        let Some(tick_time) = self.advance_time(&mut t, c, last_wall_tick) else {
            return Ok(Flow::Continue);
        };
        t.producer.poll(Duration::ZERO);
        if batch.is_empty()
            && global_records == 0
            && t.since_checkpoint == 0
            && t.checkpointer.staged().is_none()
        {
            // Caught up: the views reflect everything there is.
            if let Some(f) = &t.freshness {
                f.touch();
            }
        }
        if let Some(flow) = self.end_of_range(&mut t, c, batch, tick_time) {
            return Ok(flow);
        }
        self.checkpoint_if_due(&mut t, c)?;
        Ok(Flow::Continue)
    }

    /// Apply up to a batch of global-table records; returns how many were read. They go first,
    /// so table changes apply to the group records read after them.
    fn apply_global_records(&self, c: &Consumers) -> usize {
        let Some(g) = &c.global else { return 0 };
        let mut global_records = 0;
        // A processor with only global inputs waits here; otherwise the group poll waits.
        let mut wait = if c.group.is_none() {
            Duration::from_millis(50)
        } else {
            Duration::ZERO
        };
        while global_records < self.max_batch {
            let Some(Ok(m)) = g.poll(wait) else { break };
            wait = Duration::ZERO;
            global_records += 1;
            let rec = raw(&m);
            if self.bounds.as_ref().is_some_and(|b| !b.admits(&rec)) {
                continue;
            }
            let pt = self.clock.processing_time(&rec);
            let mut t = lock(&self.task);
            if let Err(e) = t.handle(&rec, pt) {
                tracing::error!(processor = %self.name, error = %e, "cannot apply a global record; rewinding to the last checkpoint");
                c.rewind(&mut t);
                break;
            }
        }
        global_records
    }

    /// Collect up to a batch of group records into `batch`; returns the rebalance generation
    /// seen before polling (a batch collected across a rebalance is dropped).
    fn poll_group<'c>(&self, c: &'c Consumers, batch: &mut Vec<BorrowedMessage<'c>>) -> u64 {
        let Some(consumer) = &c.group else { return 0 };
        let generation = lock(&self.task).generation;
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                batch.push(m);
                while batch.len() < self.max_batch {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => batch.push(m),
                        Some(Err(e)) => {
                            tracing::warn!(processor = %self.name, error = %e, "consumer error");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Some(Err(e)) => tracing::warn!(processor = %self.name, error = %e, "consumer error"),
            None => {}
        }
        generation
    }

    /// Run the batch's records of assigned partitions (inside the bounds) through the job.
    fn process_batch(&self, t: &mut Task, batch: &[BorrowedMessage<'_>]) -> BatchOutcome {
        // Whether each partition of the batch is assigned, asked once per partition rather than
        // with a key allocated per record.
        let mut assigned: Vec<(&str, i32, bool)> = Vec::new();
        let mut records: Vec<RawRecord<'_>> = batch
            .iter()
            .map(raw)
            .filter(|r| {
                let known = assigned
                    .iter()
                    .find(|(topic, partition, _)| *partition == r.partition && *topic == r.topic);
                match known {
                    Some(&(_, _, yes)) => yes,
                    None => {
                        let yes = t.assigned.contains(&(r.topic.to_string(), r.partition));
                        assigned.push((r.topic, r.partition, yes));
                        yes
                    }
                }
            })
            .filter(|r| self.bounds.as_ref().is_none_or(|b| b.admits(r)))
            .collect();
        crate::telemetry::kafka::receive_batch(&self.name, &self.group, &mut records);
        t.job.prepare(&records);
        let batch_started = Instant::now();
        for (i, rec) in records.iter().enumerate() {
            let pt = self.clock.processing_time(rec);
            if let Err(e) = t.handle(rec, pt) {
                tracing::error!(processor = %self.name, error = %e, "cannot process a record; rewinding to the last checkpoint");
                return BatchOutcome::Failed;
            }
            if batch_started.elapsed() >= MAX_BATCH_TIME && i + 1 < records.len() {
                return BatchOutcome::Cut;
            }
        }
        BatchOutcome::Done
    }

    /// A slow batch (a notifier retrying a webhook) must not keep the consumer from polling for
    /// longer than `max.poll.interval.ms`: commit what is done and read the rest again from
    /// there.
    fn checkpoint_cut_batch(&self, t: &mut Task, c: &Consumers) {
        tracing::info!(processor = %self.name, "batch took over {MAX_BATCH_TIME:?}; checkpointing and polling again");
        match t.checkpoint() {
            Ok(()) => commit_group_offsets(c.group.as_ref(), t),
            Err(e) => {
                tracing::error!(processor = %self.name, error = %e, "checkpoint failed; rewinding to the last checkpoint")
            }
        }
        c.rewind(t);
    }

    /// The processing time of a tick or a resume: the wall clock in live runs, the greatest
    /// stream time read so far in bounded runs (so they do not depend on when they run).
    fn processing_time(&self, t: &Task) -> i64 {
        match self.clock {
            Clock::Wall => now_millis(),
            Clock::RecordTime => t.stream_times.iter().map(|s| s.time).max().unwrap_or(0),
        }
    }

    /// Tell the processor the stream time of every partition that advanced and, once a second
    /// in live runs, the wall-clock time. Returns the time of the ticks, or `None` after a
    /// failed tick (the work is rewound to the last checkpoint).
    fn advance_time(
        &self,
        t: &mut Task,
        c: &Consumers,
        last_wall_tick: &mut Instant,
    ) -> Option<i64> {
        let tick_time = self.processing_time(t);
        let mut ticked = t.tick_stream_times(tick_time);
        if self.wall_ticks && ticked.is_ok() && last_wall_tick.elapsed() >= WALL_TICK_EVERY {
            *last_wall_tick = Instant::now();
            ticked = t.tick(Tick::WallClock(tick_time), tick_time);
        }
        if let Err(e) = ticked {
            tracing::error!(processor = %self.name, error = %e, "cannot advance the processor's time; rewinding to the last checkpoint");
            c.rewind(t);
            return None;
        }
        Some(tick_time)
    }

    /// In a bounded run whose partitions all reached their ends: release what the processor
    /// holds back ([`Tick::EndOfInput`]) and stop. `None` while the run goes on.
    fn end_of_range(
        &self,
        t: &mut Task,
        c: &Consumers,
        batch: &mut Vec<BorrowedMessage<'_>>,
        tick_time: i64,
    ) -> Option<Flow> {
        let (Some(b), Some(consumer)) = (&self.bounds, &c.group) else {
            return None;
        };
        if !reached_ends(t, consumer, b) {
            return None;
        }
        // Messages still held keep the consumer from being destroyed.
        batch.clear();
        if let Err(e) = t.tick(Tick::EndOfInput, tick_time) {
            tracing::error!(processor = %self.name, error = %e, "cannot release what is held at the end of the range; rewinding to the last checkpoint");
            c.rewind(t);
            return Some(Flow::Continue);
        }
        Some(Flow::Stop)
    }

    /// Checkpoint when enough records or time went by since the last one, the way the
    /// checkpoint strategy does it.
    ///
    /// # Errors
    /// When the engine must stop: the transactional producer failed, or the store kept fencing
    /// commits for over [`FENCED_PATIENCE`].
    fn checkpoint_if_due(&self, t: &mut Task, c: &Consumers) -> anyhow::Result<()> {
        let due = t.since_checkpoint >= self.checkpoint_max_records
            || (t.since_checkpoint > 0 && t.last_checkpoint.elapsed() >= self.checkpoint_every);
        if t.checkpointer.is_pipelined() {
            if due || t.checkpointer.staged().is_some() {
                self.checkpoint_pipelined(t, c, due)?;
            }
        } else if due {
            self.checkpoint_blocking(t, c)?;
        }
        Ok(())
    }

    /// Commit the staged checkpoint when its outputs are acknowledged; stage the next one when
    /// `due`.
    fn checkpoint_pipelined(&self, t: &mut Task, c: &Consumers, due: bool) -> anyhow::Result<()> {
        let result = t.checkpoint_staged(due);
        if t.store_failing_too_long(&result) {
            return Err(self.store_gave_up(t, result));
        }
        if t.fenced_too_long(&result) {
            tracing::error!(processor = %self.name, "commits fenced for over {FENCED_PATIENCE:?}: another process holds these partitions; stopping");
            return Err(result.unwrap_err().into());
        }
        match result {
            Ok(()) => {
                if t.checkpointer.staged().is_none() {
                    commit_group_offsets(c.group.as_ref(), t);
                }
            }
            Err(e) => {
                tracing::error!(processor = %self.name, error = %e, "checkpoint failed; rewinding to the last checkpoint");
                c.rewind(t);
            }
        }
        Ok(())
    }

    /// The error that stops the engine once the store has refused its checkpoints for longer
    /// than `store_patience`: retrying forever would spin (a store that reported an I/O error,
    /// e.g. on a full disk, refuses every later commit until it is opened again), so the
    /// process exits for its supervisor to restart it, from the last checkpoint.
    fn store_gave_up(&self, t: &Task, result: Result<(), super::CheckpointError>) -> anyhow::Error {
        let e = result.expect_err("only called on a failed checkpoint");
        tracing::error!(processor = %self.name, error = %e, "the state store refused checkpoints for over {:?}; stopping", t.store_patience);
        anyhow::anyhow!("{e}").context(format!(
            "the state store refused checkpoints for over {:?} (store_patience)",
            t.store_patience
        ))
    }

    /// Wait for the outputs (and commit the transaction, `exactly_once`), then commit.
    fn checkpoint_blocking(&self, t: &mut Task, c: &Consumers) -> anyhow::Result<()> {
        let result = t.checkpoint();
        if t.store_failing_too_long(&result) {
            return Err(self.store_gave_up(t, result));
        }
        let fenced_too_long = t.fenced_too_long(&result);
        match result {
            Ok(()) => commit_group_offsets(c.group.as_ref(), t),
            Err(e) if e.is_fatal() || fenced_too_long => {
                tracing::error!(processor = %self.name, error = %e, "cannot commit (fenced); stopping");
                return Err(e.into());
            }
            Err(e) => {
                tracing::error!(processor = %self.name, error = %e, "checkpoint failed; rewinding to the last checkpoint");
                c.rewind(t);
            }
        }
        Ok(())
    }

    /// Shutdown: finish, checkpoint, leave the group.
    fn finish(&self, consumers: Consumers) -> anyhow::Result<()> {
        {
            let mut t = lock(&self.task);
            // A failed engine commits nothing more: the store is what failed.
            t.fail_if_fatal()?;
            // Do not wait the whole produce timeout at exit when the broker is gone.
            t.produce_timeout = t.produce_timeout.min(Duration::from_secs(10));
            if let Err(e) = t.checkpoint() {
                tracing::error!(processor = %self.name, error = %e, "final checkpoint failed; the next start resumes from the previous one");
                if self.bounds.is_some() {
                    // A bounded run is judged by what it committed: say it did not finish.
                    return Err(anyhow::anyhow!("final checkpoint failed: {e}"));
                }
            } else {
                commit_group_offsets(consumers.group.as_ref(), &t);
            }
        }
        let Consumers { group, global } = consumers;
        if let Some(consumer) = group {
            consumer.unsubscribe();
            // Serve the revoke callback and leave the group.
            let _ = consumer.poll(Duration::from_millis(100));
            drop(consumer);
        }
        metrics::PROCESSOR_UP
            .with_label_values(&[&self.name])
            .set(0.0);
        tracing::info!(processor = %self.name, "engine stopped");
        drop(global);
        Ok(())
    }
}
