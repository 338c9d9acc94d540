//! A topic's most recent records, for the console: a bounded read from Kafka, decoded with the
//! writer schema from the registry, documents masked ([`super::redact`]).
//!
//! Each read is a fresh consumer that joins no group and commits nothing: it is *assigned* each
//! partition from `high watermark - 2 * limit` (the doubling leaves room for the transaction
//! markers an `exactly_once` topic holds between records), reads `read_committed` up to the end
//! (partition EOF, which is the last stable offset) or for at most [`READ_TIMEOUT`], and keeps
//! the newest `limit` records. Reading Kafka rather than keeping copies in the runtime means the
//! console shows what is really on the topics, on `fluxo up`, `run` and `serve` alike, and costs
//! nothing while nobody looks. At most [`CONCURRENT_READS`] reads run at once; more wait.

use crate::avro::framing::unframe;
use crate::avro::json::value_to_json;
use crate::codec::registry_settings;
use crate::config::Topology;
use crate::engine::{
    DLQ_DETAIL, DLQ_OFFSET, DLQ_PARTITION, DLQ_PAYLOAD, DLQ_PROCESSOR, DLQ_REASON, DLQ_SCHEMA_ID,
    DLQ_SIZE, DLQ_TOPIC, DLQ_WITHHELD,
};
use anyhow::Context as _;
use base64::Engine as _;
use fluxo_processors::risk::documents::mask;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use schema_registry_converter::async_impl::avro::AvroDecoder;
use serde_json::{json, Value};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::redact;

/// The longest a read waits for the records it asked for.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Reads running at once (each is a Kafka consumer).
pub const CONCURRENT_READS: usize = 4;
/// Bytes of a dead letter's payload shown as hex.
pub const HEX_PREVIEW: usize = 64;
/// Bytes of a dead letter's payload shown as base64.
pub const BASE64_PREVIEW: usize = 1024;

/// Reads recent records (see the module documentation).
pub struct Reader {
    topology: Arc<Topology>,
    decoder: AvroDecoder,
    permits: tokio::sync::Semaphore,
}

/// One record as read, before decoding.
struct Raw {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Reader {
    /// A reader of `topology`'s topics.
    ///
    /// # Errors
    /// When the registry settings are invalid.
    pub fn new(topology: Arc<Topology>) -> anyhow::Result<Self> {
        let decoder = AvroDecoder::new(registry_settings(&topology.schema_registry.url)?);
        Ok(Self {
            topology,
            decoder,
            permits: tokio::sync::Semaphore::new(CONCURRENT_READS),
        })
    }

    /// The newest `limit` records of `topic` (newest first), only those keyed `key` when given.
    ///
    /// # Errors
    /// When Kafka cannot be read (no metadata, no watermarks).
    pub async fn recent(
        &self,
        topic: &str,
        limit: usize,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let raw = {
            let _permit = self.permits.acquire().await?;
            let topology = self.topology.clone();
            let name = topic.to_string();
            tokio::task::spawn_blocking(move || {
                read_tail(&topology, &name, limit.saturating_mul(2))
            })
            .await
            .context("joining the read")??
        };
        let mut raw: Vec<Raw> = raw
            .into_iter()
            .filter(|r| key.is_none_or(|k| r.key.as_deref() == Some(k.as_bytes())))
            .collect();
        raw.sort_by_key(|r| std::cmp::Reverse((r.timestamp, r.offset, r.partition)));
        raw.truncate(limit);
        let dead_letters = topic.ends_with(".dlq") || topic.ends_with(".notify-dlq");
        let mut records = Vec::with_capacity(raw.len());
        for r in &raw {
            records.push(if dead_letters {
                self.dead_letter(topic, r).await
            } else {
                self.record(topic, r).await
            });
        }
        Ok(json!({
            "topic": topic,
            "dead_letters": dead_letters,
            "records": records,
        }))
    }

    /// The key of a record of `topic`, masked: whole when the topic is keyed by a document.
    fn key(&self, topic: &str, key: Option<&[u8]>) -> Option<String> {
        let key = String::from_utf8_lossy(key?).into_owned();
        let by_document = self
            .topology
            .topics
            .get(topic)
            .and_then(|t| t.key.as_deref())
            .is_some_and(redact::is_document_field);
        Some(if by_document {
            mask(&key)
        } else {
            redact::text(&key)
        })
    }

    async fn decode(&self, bytes: &[u8]) -> Result<Value, String> {
        let (id, datum) = unframe(bytes).map_err(|e| e.to_string())?;
        let schema = self
            .decoder
            .get_schema(id)
            .await
            .map_err(|e| format!("schema id {id}: {e}"))?;
        let value = crate::avro::typed::decode_value(&schema.parsed, datum)
            .map_err(|e| format!("undecodable with schema id {id}: {e}"))?;
        Ok(redact::json(value_to_json(&schema.parsed, &value)))
    }

    async fn record(&self, topic: &str, r: &Raw) -> Value {
        let value = match &r.payload {
            None => Value::Null,
            Some(bytes) => match self.decode(bytes).await {
                Ok(v) => v,
                Err(e) => json!({"error": redact::text(&e), "payload": preview(bytes)}),
            },
        };
        json!({
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": self.key(topic, r.key.as_deref()),
            "value": value,
        })
    }

    async fn dead_letter(&self, topic: &str, r: &Raw) -> Value {
        let source = r.header(DLQ_TOPIC).map_or_else(
            || {
                topic
                    .trim_end_matches(".notify-dlq")
                    .trim_end_matches(".dlq")
                    .to_string()
            },
            str::to_string,
        );
        // A payload that still decodes (e.g. an alert a webhook refused) is shown decoded too.
        let decoded = match &r.payload {
            Some(bytes) => self.decode(bytes).await.ok(),
            None => None,
        };
        let withheld = r.header(DLQ_PAYLOAD) == Some(DLQ_WITHHELD);
        // A withheld dead letter's key is already a keyed pseudonym: shown whole, it still lets
        // the reader group the dead letters of one payer.
        let key = if withheld {
            r.key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
        } else {
            self.key(&source, r.key.as_deref())
        };
        json!({
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": key,
            "reason": r.header(DLQ_REASON),
            "detail": r.header(DLQ_DETAIL).map(redact::text),
            "processor": r.header(DLQ_PROCESSOR),
            "source_topic": source,
            "source_partition": r.header(DLQ_PARTITION).and_then(|p| p.parse::<i64>().ok()),
            "source_offset": r.header(DLQ_OFFSET).and_then(|p| p.parse::<i64>().ok()),
            "source_size": r.header(DLQ_SIZE).and_then(|p| p.parse::<i64>().ok()),
            "source_schema_id": r.header(DLQ_SCHEMA_ID).and_then(|p| p.parse::<i64>().ok()),
            "withheld": withheld,
            "payload": r.payload.as_deref().map(preview),
            "value": decoded,
        })
    }
}

/// A payload's size and its first bytes as hex and base64, documents blotted out first.
fn preview(bytes: &[u8]) -> Value {
    let safe = redact::bytes(bytes);
    let hex: String = safe
        .iter()
        .take(HEX_PREVIEW)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    json!({
        "size": bytes.len(),
        "hex": hex,
        "base64": base64::engine::general_purpose::STANDARD
            .encode(&safe[..safe.len().min(BASE64_PREVIEW)]),
        "truncated": bytes.len() > BASE64_PREVIEW,
    })
}

/// The last `span` offsets of every partition of `topic`, read committed.
fn read_tail(topology: &Topology, topic: &str, span: usize) -> anyhow::Result<Vec<Raw>> {
    let mut cfg = crate::kafka::client_config(topology)?;
    cfg.set("group.id", "fluxo-console")
        .set("client.id", "fluxo-console")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "50");
    let consumer: BaseConsumer = cfg.create().context("creating the consumer")?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(3))
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let span = i64::try_from(span).unwrap_or(i64::MAX);
    let mut tpl = TopicPartitionList::new();
    let mut pending = BTreeSet::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(3))
            .with_context(|| format!("reading the offsets of {topic}/{p}"))?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low.max(high - span)))?;
            pending.insert(p);
        }
    }
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl).context("assigning the partitions")?;
    let per_partition = usize::try_from(span).unwrap_or(usize::MAX);
    let mut kept: std::collections::BTreeMap<i32, VecDeque<Raw>> = Default::default();
    let deadline = Instant::now() + READ_TIMEOUT;
    while !pending.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => tracing::debug!(topic, error = %e, "console read"),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    h.value
                                        .map(|v| String::from_utf8_lossy(v).into_owned())
                                        .unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let q = kept.entry(m.partition()).or_default();
                q.push_back(Raw {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
                if q.len() > per_partition {
                    q.pop_front();
                }
            }
        }
    }
    Ok(kept.into_values().flatten().collect())
}
