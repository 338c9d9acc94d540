//! The input range of a replay: parsing `--from` / `--to` and resolving them to offsets.
//!
//! `--from` is an RFC 3339 time (or epoch milliseconds), `beginning`, or a list of start
//! offsets `topic:partition=offset,...` (`partition=offset` when the processor has one input
//! topic). Times are resolved with offsets-for-times: the start of a partition is its first
//! record stamped at or after `--from`; its end (exclusive) is its first record stamped at or
//! after `--to`, or its high watermark when the replay starts. With a list of offsets, only the
//! listed partitions are replayed.

use crate::config::{ProcessorConfig, Topology};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a replay starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The first record stamped at or after this time (epoch ms) in every partition.
    Time(i64),
    /// The oldest record still in every partition.
    Beginning,
    /// Explicit start offsets; unlisted partitions are not replayed.
    Offsets(Vec<StartOffset>),
}

/// One `topic:partition=offset` of `--from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOffset {
    /// The topic, `None` for the `partition=offset` form.
    pub topic: Option<String>,
    /// The partition.
    pub partition: i32,
    /// The first offset to replay.
    pub offset: i64,
}

/// Parse `--from`.
///
/// # Errors
/// A message saying which part is wrong.
pub fn parse_start(value: &str) -> Result<Start, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("beginning") || value.eq_ignore_ascii_case("earliest") {
        return Ok(Start::Beginning);
    }
    if !value.contains('=') {
        return parse_time("--from", value).map(Start::Time);
    }
    let mut offsets = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad =
            || format!("--from: `{item}` is not `topic:partition=offset` or `partition=offset`");
        let (position, offset) = item.split_once('=').ok_or_else(bad)?;
        let (topic, partition) = match position.rsplit_once(':') {
            Some((t, p)) if !t.is_empty() => (Some(t.to_string()), p),
            Some(_) => return Err(bad()),
            None => (None, position),
        };
        let partition: i32 = partition.trim().parse().map_err(|_| bad())?;
        let offset: i64 = offset.trim().parse().map_err(|_| bad())?;
        if partition < 0 || offset < 0 {
            return Err(bad());
        }
        offsets.push(StartOffset {
            topic,
            partition,
            offset,
        });
    }
    if offsets.is_empty() {
        return Err("--from: no offsets given".into());
    }
    Ok(Start::Offsets(offsets))
}

/// Parse a time of `--from` / `--to`: RFC 3339 or epoch milliseconds.
///
/// # Errors
/// A message naming `what`.
pub fn parse_time(what: &str, value: &str) -> Result<i64, String> {
    crate::api::params::instant(what, value)
}

/// The offsets a replay covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Range {
    /// `(topic, partition) -> (start, end)` of the processor's inputs, end exclusive.
    pub inputs: BTreeMap<(String, i32), (i64, i64)>,
    /// `(topic, partition) -> (low watermark, end)` of its global inputs (tables read whole up
    /// to the end of the range).
    pub globals: BTreeMap<(String, i32), (i64, i64)>,
}

impl Range {
    /// Input records in the range.
    pub fn total(&self) -> u64 {
        self.inputs
            .values()
            .map(|(s, e)| (e - s).max(0) as u64)
            .sum()
    }
}

/// A `--from` / `--to` problem (exit 2) or a broker problem (exit 1).
#[derive(Debug)]
pub enum RangeError {
    /// The request names topics or partitions that do not fit the processor.
    Usage(String),
    /// The brokers could not answer.
    Broker(anyhow::Error),
}

impl From<rdkafka::error::KafkaError> for RangeError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        Self::Broker(e.into())
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, RangeError> {
    let md = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let ids: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if ids.is_empty() {
        return Err(RangeError::Broker(anyhow::anyhow!(
            "topic {topic} has no partitions on the brokers"
        )));
    }
    Ok(ids)
}

/// The offset of the first record stamped at or after `time` in each partition (the high
/// watermark where there is none).
fn offsets_for_time(
    consumer: &BaseConsumer,
    keys: &[(String, i32)],
    time: i64,
    highs: &BTreeMap<(String, i32), (i64, i64)>,
) -> Result<BTreeMap<(String, i32), i64>, RangeError> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in keys {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(time))?;
    }
    let found = consumer.offsets_for_times(tpl, TIMEOUT)?;
    let mut out = BTreeMap::new();
    for e in found.elements() {
        let key = (e.topic().to_string(), e.partition());
        let (low, high) = highs.get(&key).copied().unwrap_or((0, 0));
        let offset = match e.offset() {
            Offset::Offset(o) if o >= 0 => o.clamp(low, high),
            _ => high,
        };
        out.insert(key, offset);
    }
    Ok(out)
}

/// Resolve `start` / `to` for `processor` against the brokers of `topology`.
///
/// # Errors
/// [`RangeError::Usage`] when `start` names a topic or partition the processor does not read.
pub fn resolve(
    topology: &Topology,
    processor: &ProcessorConfig,
    start: &Start,
    to: Option<i64>,
) -> Result<Range, RangeError> {
    let consumer: BaseConsumer = crate::kafka::client_config(topology)
        .map_err(RangeError::Broker)?
        .set(
            "group.id",
            format!("{}-replay", topology.kafka.group_prefix),
        )
        .set("enable.auto.commit", "false")
        .create()?;
    let mut watermarks = BTreeMap::new();
    for topic in processor.inputs.iter().chain(&processor.global_inputs) {
        for p in partitions(&consumer, topic)? {
            let w = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
            watermarks.insert((topic.clone(), p), w);
        }
    }
    let keys: Vec<(String, i32)> = watermarks.keys().cloned().collect();
    let ends: BTreeMap<(String, i32), i64> = match to {
        Some(t) => offsets_for_time(&consumer, &keys, t, &watermarks)?,
        None => watermarks
            .iter()
            .map(|(k, (_, h))| (k.clone(), *h))
            .collect(),
    };
    let input_keys: Vec<(String, i32)> = keys
        .iter()
        .filter(|(t, _)| processor.inputs.contains(t))
        .cloned()
        .collect();
    let starts: BTreeMap<(String, i32), i64> = match start {
        Start::Beginning => input_keys
            .iter()
            .map(|k| (k.clone(), watermarks[k].0))
            .collect(),
        Start::Time(t) => offsets_for_time(&consumer, &input_keys, *t, &watermarks)?,
        Start::Offsets(list) => {
            let mut out = BTreeMap::new();
            for s in list {
                let topic = match &s.topic {
                    Some(t) => t.clone(),
                    None if processor.inputs.len() == 1 => processor.inputs[0].clone(),
                    None => {
                        return Err(RangeError::Usage(format!(
                            "--from: {} reads several topics ({}); write topic:partition=offset",
                            processor.name,
                            processor.inputs.join(", ")
                        )))
                    }
                };
                let key = (topic.clone(), s.partition);
                let Some((low, _)) = watermarks
                    .get(&key)
                    .filter(|_| processor.inputs.contains(&topic))
                else {
                    return Err(RangeError::Usage(format!(
                        "--from: {topic}:{} is not a partition of an input of {} ({})",
                        s.partition,
                        processor.name,
                        processor.inputs.join(", ")
                    )));
                };
                out.insert(key, s.offset.max(*low));
            }
            out
        }
    };
    let mut range = Range::default();
    for (key, start) in starts {
        let end = ends.get(&key).copied().unwrap_or(start);
        range.inputs.insert(key, (start.min(end), end));
    }
    for key in keys
        .iter()
        .filter(|(t, _)| processor.global_inputs.contains(t))
    {
        let low = watermarks[key].0;
        range
            .globals
            .insert(key.clone(), (low, ends.get(key).copied().unwrap_or(low)));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_parses_times_offsets_and_beginning() {
        assert_eq!(
            parse_start("2026-01-01T12:00:00Z"),
            Ok(Start::Time(1_767_268_800_000))
        );
        assert_eq!(
            parse_start("2026-01-01T09:00:00-03:00"),
            Ok(Start::Time(1_767_268_800_000))
        );
        assert_eq!(parse_start("beginning"), Ok(Start::Beginning));
        assert_eq!(
            parse_start("asset-prices:2=10, 0=5"),
            Ok(Start::Offsets(vec![
                StartOffset {
                    topic: Some("asset-prices".into()),
                    partition: 2,
                    offset: 10
                },
                StartOffset {
                    topic: None,
                    partition: 0,
                    offset: 5
                },
            ]))
        );
    }

    #[test]
    fn from_rejects_what_it_cannot_read() {
        assert!(parse_start("yesterday").is_err());
        assert!(parse_start("a:b=1").is_err());
        assert!(parse_start("0=-1").is_err());
        assert!(parse_start(":0=1").is_err());
        assert!(parse_start(",").is_err());
    }
}
