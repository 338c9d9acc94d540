//! Producing outputs and tracking their acknowledgements, so a checkpoint never commits past
//! an output that was not delivered.

use super::task::Task;
use crate::jobs::Output;
use crate::metrics;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Counts failed deliveries so a checkpoint can refuse to commit past them.
pub struct DeliveryContext {
    processor: String,
    failed: AtomicU64,
    /// Sequence numbers of the outputs sent and not yet acknowledged (or failed).
    outstanding: Mutex<BTreeSet<u64>>,
}

impl DeliveryContext {
    /// A context for `processor`'s producer.
    pub(super) fn new(processor: &str) -> Self {
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
    pub(super) fn delivered_before(&self, end: u64) -> bool {
        self.outstanding().first().is_none_or(|first| *first >= end)
    }

    /// Count one failed delivery: the next checkpoint refuses to move past it.
    fn count_failure(&self) {
        self.failed.fetch_add(1, Ordering::SeqCst);
    }

    /// The failed deliveries since the last call (or [`DeliveryContext::forget_failures`]).
    pub(super) fn take_failures(&self) -> u64 {
        self.failed.swap(0, Ordering::SeqCst)
    }

    /// Forget failed deliveries: they belong to discarded work, which will be produced again.
    pub(super) fn forget_failures(&self) {
        self.failed.store(0, Ordering::SeqCst);
    }
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::readiness::client_error(&error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Self::DeliveryOpaque) {
        self.outstanding().remove(&(seq as u64));
        if let Err((e, msg)) = result {
            self.count_failure();
            metrics::PRODUCE_ERRORS
                .with_label_values(&[&self.processor, msg.topic()])
                .inc();
            tracing::warn!(processor = %self.processor, topic = msg.topic(), error = %e, "delivery failed");
        }
    }
}

impl Task {
    /// Produce `out` (waiting while the queue is full).
    pub(super) fn produce(&mut self, out: &Output) {
        if let Some(txn) = self.checkpointer.transactions_mut() {
            if let Err(e) = txn.ensure_begun(&self.producer) {
                // Counted as a failed delivery: the checkpoint refuses to move past it.
                self.producer.context().count_failure();
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
                    self.producer.context().count_failure();
                    metrics::PRODUCE_ERRORS
                        .with_label_values(&[&self.name, r.topic])
                        .inc();
                    tracing::error!(processor = %self.name, topic = r.topic, error = %e, "cannot produce");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryContext;

    #[test]
    fn outputs_count_as_delivered_once_every_earlier_one_has_its_report() {
        let ctx = DeliveryContext::new("p");
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
}
