//! Rebalance handling: the consumer group moves partitions in and out, and the engine
//! checkpoints before anything moves and positions what it receives at the offsets stored with
//! the state. Also the consumer's statistics (lag per partition).

use super::task::{lock, Task};
use crate::metrics;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The consumer context: positions partitions from the store on assignment and checkpoints on
/// revocation.
pub(super) struct GroupContext {
    pub(super) task: Arc<Mutex<Task>>,
    pub(super) name: String,
    pub(super) started: Arc<AtomicBool>,
}

impl ClientContext for GroupContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::readiness::client_error(&error, reason);
    }
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
        if let Some(txn) = task.checkpointer.transactions_mut() {
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
    fn unknown_positions_and_the_internal_partition_have_no_lag() {
        assert_eq!(partition_lag(-1, &stats(1_000, 400, 900)), None);
        assert_eq!(partition_lag(0, &stats(-1, 400, 900)), None);
        assert_eq!(partition_lag(0, &stats(1_000, -1, -1)), None);
    }
}
