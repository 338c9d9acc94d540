//! Client setup: the producer (transactional in `exactly_once`), the group consumer over the
//! processor's inputs and the group-less consumer of its global tables, configured from the
//! topology's `[kafka]` and `[runtime]` sections.

use super::checkpoint::Checkpointer;
use super::delivery::DeliveryContext;
use super::rebalance::GroupContext;
use super::task::{lock, Task};
use super::Bounds;
use crate::config::{Assignment, ProcessingGuarantee, RuntimeConfig, Topology};
use crate::metrics;
use crate::transactions::Transactions;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseProducer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Kafka client configurations of one engine.
pub(super) struct Clients<'a> {
    topology: &'a Topology,
    /// The processor's name (as run: replays use their own).
    name: String,
    /// The connection settings every client shares.
    base: ClientConfig,
    /// The consumers' settings (group, isolation, timeouts).
    consumer: ClientConfig,
    /// The consumer group: `<group_prefix>-<name>`.
    pub(super) group: String,
    exactly_once: bool,
}

impl<'a> Clients<'a> {
    /// The configurations for processor `name` of `topology`.
    ///
    /// # Errors
    /// When the topology's Kafka settings are unusable.
    pub(super) fn new(topology: &'a Topology, name: &str) -> anyhow::Result<Self> {
        let base = crate::kafka::client_config(topology)?;
        let rt = &topology.runtime;
        let exactly_once = rt.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
        let group = format!("{}-{name}", topology.kafka.group_prefix);
        let consumer = consumer_config(topology, &base, &group, exactly_once);
        Ok(Self {
            topology,
            name: name.to_string(),
            base,
            consumer,
            group,
            exactly_once,
        })
    }

    /// How long outputs may wait for their acknowledgements (`[runtime] produce_timeout`).
    pub(super) fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.runtime().produce_timeout.millis().max(1) as u64)
    }

    fn runtime(&self) -> &RuntimeConfig {
        &self.topology.runtime
    }

    /// The producer, and the checkpoint strategy that goes with it: transactional (after
    /// initializing transactions and probing that the brokers serve them) in `exactly_once`,
    /// pipelined for live runs otherwise, blocking for bounded ones. `probe_topic` is any topic
    /// that exists (the transactional probe's offsets name it).
    ///
    /// # Errors
    /// When the producer cannot be created or the brokers do not support transactions.
    pub(super) fn producer(
        &self,
        probe_topic: &str,
        bounded: bool,
    ) -> anyhow::Result<(BaseProducer<DeliveryContext>, Checkpointer)> {
        let rt = self.runtime();
        let mut cfg = self.base.clone();
        cfg.set(
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
        if self.exactly_once {
            let id = crate::transactions::transactional_id(&self.group, rt.instance);
            crate::transactions::configure_producer(&mut cfg, &id);
        }
        let producer: BaseProducer<DeliveryContext> =
            cfg.create_with_context(DeliveryContext::new(&self.name))?;
        let transactions = if self.exactly_once {
            let t = Transactions::start(
                &producer,
                &self.base,
                &self.group,
                probe_topic,
                self.produce_timeout(),
            )?;
            tracing::info!(processor = %self.name, "exactly_once: Kafka transactions initialized");
            Some(t)
        } else {
            None
        };
        // Transactions commit per checkpoint, and a bounded run is judged by its final commit:
        // both keep the blocking checkpoint.
        Ok((producer, Checkpointer::new(transactions, bounded)))
    }

    /// The group-less consumer of the global tables (assigned by [`super::restore`]).
    ///
    /// # Errors
    /// When the client cannot be created.
    pub(super) fn global_consumer(&self) -> anyhow::Result<BaseConsumer> {
        Ok(self
            .consumer
            .clone()
            .set("group.id", format!("{}-global", self.group))
            .create()?)
    }

    /// The consumer of the processor's inputs, subscribed to the group or assigned its static
    /// share (a bounded run: exactly its partitions), or `None` for a processor with only global
    /// inputs (the `fluxo serve` replica). `started` is set once partitions are assigned.
    ///
    /// # Errors
    /// When the client cannot be created, or the partitions cannot be listed or assigned.
    pub(super) fn group_consumer(
        &self,
        task: &Arc<Mutex<Task>>,
        inputs: &[String],
        started: &Arc<AtomicBool>,
        bounds: Option<&Bounds>,
    ) -> anyhow::Result<Option<BaseConsumer<GroupContext>>> {
        if inputs.is_empty() {
            started.store(true, Ordering::SeqCst);
            return Ok(None);
        }
        let rt = self.runtime();
        let c: BaseConsumer<GroupContext> = self.consumer.create_with_context(GroupContext {
            task: task.clone(),
            name: self.name.clone(),
            started: started.clone(),
        })?;
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        match rt.assignment {
            // A bounded run (a replay) reads exactly its partitions, whatever the topology says.
            _ if bounds.is_some() => {
                let only = bounds.map(|b| &b.ends);
                assign_static(&c, task, &inputs, 0, 1, only)?;
                started.store(true, Ordering::SeqCst);
            }
            Assignment::Group => c.subscribe(&inputs)?,
            Assignment::Static => {
                assign_static(&c, task, &inputs, rt.instance, rt.instances, None)?;
                started.store(true, Ordering::SeqCst);
            }
        }
        Ok(Some(c))
    }
}

/// The consumers' configuration: manual offsets (checkpoints live with the state),
/// `read_committed` under `exactly_once`, bounded prefetch, the group's timeouts.
fn consumer_config(
    topology: &Topology,
    base: &ClientConfig,
    group: &str,
    exactly_once: bool,
) -> ClientConfig {
    let rt = &topology.runtime;
    let mut ccfg = base.clone();
    if exactly_once {
        ccfg.set("isolation.level", "read_committed");
    }
    ccfg.set("group.id", group)
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
    ccfg
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
    if let Some(txn) = t.checkpointer.transactions_mut() {
        txn.on_assigned(consumer, &keys);
    }
    metrics::ASSIGNED_PARTITIONS
        .with_label_values(&[&t.name])
        .set(t.assigned.len() as i64);
    tracing::info!(processor = %t.name, partitions = t.assigned.len(), instance, instances, "partitions assigned (static)");
    Ok(())
}
