//! Where input partitions stand: rewinding to the checkpoint, the consumer's positions, the end
//! of a bounded run, and the group's committed offsets mirrored for lag tools.

use super::rebalance::GroupContext;
use super::task::Task;
use super::Bounds;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;

/// True when every assigned partition of a bounded run has reached its end: its next offset
/// (processed or checkpointed), or the consumer's position (which also moves past offsets
/// holding no record, such as transaction markers), is at or past the end.
pub(super) fn reached_ends(
    t: &Task,
    consumer: &BaseConsumer<GroupContext>,
    bounds: &Bounds,
) -> bool {
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
pub(super) fn consumer_positions<C: ConsumerContext>(
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
pub(super) fn rewind(
    t: &mut Task,
    consumer: Option<&BaseConsumer<GroupContext>>,
    global: Option<&BaseConsumer>,
) {
    t.reset();
    // Outputs still queued belong to the discarded work; they will be produced again.
    let _ = t.producer.flush(Duration::from_secs(5));
    t.producer.context().forget_failures();
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
pub(super) fn commit_group_offsets(consumer: Option<&BaseConsumer<GroupContext>>, t: &Task) {
    let Some(consumer) = consumer else { return };
    // In `exactly_once` mode the offsets were committed with the transaction.
    if t.static_assignment || t.checkpointer.transactions().is_some() {
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
