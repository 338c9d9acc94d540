//! `fluxo consume`: print a topic's records as JSON lines.
//!
//! Values are decoded with their writer schema from the registry and printed as one JSON
//! object per line. On a `.dlq` topic each dead letter prints with its reason, processor,
//! source position and the original payload in base64 (none for inputs that carry documents:
//! `"withheld": true`). `--partition P --offset O --count 1` reads one record at a position,
//! e.g. the source of a dead letter, to re-drive it.

use super::{load_topology, Failure};
use crate::avro::framing::unframe;
use crate::avro::json::value_to_json;
use crate::codec::registry_settings;
use crate::engine::{
    DLQ_DETAIL, DLQ_OFFSET, DLQ_PARTITION, DLQ_PAYLOAD, DLQ_PROCESSOR, DLQ_REASON, DLQ_SCHEMA_ID,
    DLQ_SIZE, DLQ_TOPIC, DLQ_WITHHELD,
};
use base64::Engine as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use schema_registry_converter::async_impl::avro::AvroDecoder;
use serde_json::{json, Map, Value as Json};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Flags of `fluxo consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    #[arg(long)]
    pub topic: String,
    /// Start at the oldest record (default: only records produced from now on).
    #[arg(long)]
    pub from_beginning: bool,
    /// Exit after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit after this many seconds even if fewer records came.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Wrap each record with its partition, offset, key, timestamp and headers.
    #[arg(long)]
    pub with_metadata: bool,
    /// Read only this partition (with `--offset`).
    #[arg(long, requires = "offset")]
    pub partition: Option<i32>,
    /// Start at this offset of `--partition` (e.g. a dead letter's source offset).
    #[arg(long, requires = "partition", conflicts_with = "from_beginning")]
    pub offset: Option<i64>,
}

fn header_str(m: &impl Message, name: &str) -> Option<String> {
    m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// `fluxo consume`.
pub async fn consume(topology_path: &Path, args: ConsumeArgs) -> Result<(), Failure> {
    let topology = load_topology(topology_path, None)?;
    let sr = registry_settings(&topology.schema_registry.url)?;
    let decoder = AvroDecoder::new(sr);
    let mut cfg = crate::kafka::client_config(&topology)?;
    cfg.set("group.id", format!("fluxo-consume-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = cfg
        .create()
        .map_err(|e| anyhow::anyhow!("creating the consumer: {e}"))?;
    let md = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("reading metadata of {}: {e}", args.topic))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(Failure::Usage(format!(
            "topic `{}` does not exist",
            args.topic
        )));
    }
    let mut tpl = TopicPartitionList::new();
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    match (args.partition, args.offset) {
        (Some(p), Some(o)) => {
            if !partitions.contains(&p) {
                return Err(Failure::Usage(format!(
                    "topic `{}` has no partition {p}",
                    args.topic
                )));
            }
            tpl.add_partition_offset(&args.topic, p, Offset::Offset(o))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        _ => {
            for p in &partitions {
                tpl.add_partition_offset(&args.topic, *p, start)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
    }
    consumer
        .assign(&tpl)
        .map_err(|e| anyhow::anyhow!("assigning partitions: {e}"))?;

    let dlq = args.topic.ends_with(".dlq") || args.topic.ends_with(".notify-dlq");
    let deadline = args
        .timeout
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    while args.count.is_none_or(|n| printed < n) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = match result {
            Ok(m) => m,
            Err(e) => {
                eprintln!("fluxo: consumer error: {e}");
                continue;
            }
        };
        let body = if dlq {
            json!({
                "reason": header_str(&m, DLQ_REASON),
                "detail": header_str(&m, DLQ_DETAIL),
                "processor": header_str(&m, DLQ_PROCESSOR),
                "source_topic": header_str(&m, DLQ_TOPIC),
                "source_partition": header_str(&m, DLQ_PARTITION).and_then(|p| p.parse::<i64>().ok()),
                "source_offset": header_str(&m, DLQ_OFFSET).and_then(|p| p.parse::<i64>().ok()),
                "source_size": header_str(&m, DLQ_SIZE).and_then(|p| p.parse::<i64>().ok()),
                "source_schema_id": header_str(&m, DLQ_SCHEMA_ID).and_then(|p| p.parse::<i64>().ok()),
                "withheld": header_str(&m, DLQ_PAYLOAD).as_deref() == Some(DLQ_WITHHELD),
                "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                "payload_base64": m.payload().map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            })
        } else {
            match m.payload() {
                None => Json::Null,
                Some(bytes) => match decode(&decoder, bytes).await {
                    Ok(v) => v,
                    Err(e) => json!({
                        "error": e,
                        "payload_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
                    }),
                },
            }
        };
        let line = if args.with_metadata {
            let mut meta = Map::new();
            meta.insert("topic".into(), json!(m.topic()));
            meta.insert("partition".into(), json!(m.partition()));
            meta.insert("offset".into(), json!(m.offset()));
            meta.insert("timestamp".into(), json!(m.timestamp().to_millis()));
            meta.insert(
                "key".into(),
                json!(m.key().map(|k| String::from_utf8_lossy(k).into_owned())),
            );
            let headers: Map<String, Json> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                json!(h.value.map(|v| String::from_utf8_lossy(v).into_owned())),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            meta.insert("headers".into(), Json::Object(headers));
            meta.insert("value".into(), body);
            Json::Object(meta)
        } else {
            body
        };
        let mut out = stdout.lock();
        if writeln!(out, "{line}").is_err() {
            // The reader went away (e.g. `| head`): that is a normal end.
            return Ok(());
        }
        printed += 1;
    }
    Ok(())
}

async fn decode(decoder: &AvroDecoder, bytes: &[u8]) -> Result<Json, String> {
    let (id, datum) = unframe(bytes).map_err(|e| e.to_string())?;
    let schema = decoder
        .get_schema(id)
        .await
        .map_err(|e| format!("schema id {id}: {e}"))?;
    let value = crate::avro::typed::decode_value(&schema.parsed, datum)
        .map_err(|e| format!("undecodable with schema id {id}: {e}"))?;
    Ok(value_to_json(&schema.parsed, &value))
}
