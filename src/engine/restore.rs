//! Restoring the global tables (topics every instance reads whole, like the blacklist): read
//! from the offsets stored with the state up to the high watermarks seen at start, and
//! checkpointed, before the group consumer starts, so the first group record already sees them.

use super::clients::Clients;
use super::positions::consumer_positions;
use super::task::{lock, Task};
use super::{raw, Bounds, Clock};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Next offset per `(topic, partition)`.
type Offsets = BTreeMap<(String, i32), i64>;

/// Catch the global tables `topics` up and checkpoint them; the consumer, positioned after
/// them, keeps them current in the run loop. `None` when the processor has no global inputs.
///
/// # Errors
/// When the consumer cannot be created or assigned, a record cannot be applied, the store
/// keeps failing, or the final checkpoint fails.
pub(super) fn restore_global_tables(
    clients: &Clients<'_>,
    task: &Mutex<Task>,
    topics: &[String],
    bounds: Option<&Bounds>,
    clock: Clock,
    shutdown: &AtomicBool,
) -> anyhow::Result<Option<BaseConsumer>> {
    if topics.is_empty() {
        return Ok(None);
    }
    let consumer = clients.global_consumer()?;
    let stored = lock(task).stored_offsets();
    lock(task).fail_if_fatal()?;
    let ends = assign_from_checkpoints(&consumer, topics, &stored, bounds)?;
    let started = Instant::now();
    catch_up(&consumer, task, &ends, stored, bounds, clock, shutdown)?;
    let mut t = lock(task);
    t.checkpoint()?;
    tracing::info!(processor = %t.name, elapsed_ms = started.elapsed().as_millis() as u64, "global tables restored");
    drop(t);
    Ok(Some(consumer))
}

/// Assign every partition of `topics` at its stored offset (the beginning when none) and
/// return where catching up ends: the high watermark, or the bound's end if lower.
fn assign_from_checkpoints(
    consumer: &BaseConsumer,
    topics: &[String],
    stored: &Offsets,
    bounds: Option<&Bounds>,
) -> anyhow::Result<Offsets> {
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for topic in topics {
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
                let high = match bounds.and_then(|b| b.ends.get(&key)) {
                    Some(end) => high.min(*end),
                    None => high,
                };
                ends.insert(key, high);
            }
        }
    }
    consumer.assign(&tpl)?;
    Ok(ends)
}

/// Apply the global records from `positions` (the stored offsets) until every partition
/// reached its end in `ends`, or shutdown.
fn catch_up(
    consumer: &BaseConsumer,
    task: &Mutex<Task>,
    ends: &Offsets,
    mut positions: Offsets,
    bounds: Option<&Bounds>,
    clock: Clock,
    shutdown: &AtomicBool,
) -> anyhow::Result<()> {
    let caught_up = |positions: &Offsets| {
        ends.iter()
            .all(|(k, high)| positions.get(k).copied().unwrap_or(0) >= *high || *high == 0)
    };
    while !caught_up(&positions) && !shutdown.load(Ordering::SeqCst) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let rec = raw(&m);
            positions.insert((rec.topic.to_string(), rec.partition), rec.offset + 1);
            if bounds.is_some_and(|b| !b.admits(&rec)) {
                continue;
            }
            let pt = clock.processing_time(&rec);
            lock(task)
                .handle(&rec, pt)
                .map_err(|e| anyhow::anyhow!("restoring global tables: {e}"))?;
        } else {
            // Idle: the consumer's position also moves over what is never delivered
            // (transaction markers, aborted records), which message offsets cannot show.
            for (key, p) in consumer_positions(consumer) {
                let slot = positions.entry(key).or_insert(p);
                *slot = (*slot).max(p);
            }
        }
    }
    Ok(())
}
