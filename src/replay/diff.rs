//! The what-if diff: how a replay's outputs differ from the live outputs of the same inputs.
//!
//! Live outputs are picked from the live output topic by their `fluxo-id` header
//! (`<processor>:<topic>/<partition>/<offset>/<n>`): those of the live processor whose source
//! offset lies in the replayed range. Outputs are matched by a stable key: the transaction id
//! (risk decisions), the symbol with the from/to quote ids (price alerts), the symbol with the
//! quote id and crossing kind (below-average events), the account and business day (daily
//! balances). The report counts decisions that moved between APPROVE / REVIEW / REJECT (a
//! transition matrix, with example transaction ids) and the outputs gained and lost. It names
//! no document and no amount.

use super::range::Range;
use super::ReplayError;
use crate::catalog::Kind;
use crate::codec::Codec;
use crate::config::{ProcessorConfig, Topology};
use crate::engine::ID_HEADER;
use crate::jobs::kinds::{dispatch, KindTypes, KindVisitor};
use fluxo_processors::views::OutputEvent;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// Examples kept per moved cell and per gained/lost list.
pub const EXAMPLES: usize = 10;
const DECISIONS: [&str; 3] = ["APPROVE", "REVIEW", "REJECT"];
const TIMEOUT: Duration = Duration::from_secs(10);

/// An output record read back.
#[derive(Debug, Clone)]
pub struct OutputRecord {
    /// Value bytes.
    pub payload: Option<Vec<u8>>,
    /// The `fluxo-id` header.
    pub id: Option<String>,
}

/// One output present on one side only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// The matching key.
    pub key: String,
    /// The symbol (alerts and below-average events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// The event time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// How risk decisions moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Decisions {
    /// `live -> what-if -> count` over transactions decided on both sides.
    pub matrix: BTreeMap<String, BTreeMap<String, u64>>,
    /// Transactions whose decision changed.
    pub moved: u64,
    /// `"APPROVE->REVIEW" -> transaction ids` (up to [`EXAMPLES`] each, sorted).
    pub examples: BTreeMap<String, Vec<String>>,
}

/// The what-if report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// The processor.
    pub processor: String,
    /// Its kind.
    pub kind: String,
    /// Live outputs of the range (distinct keys).
    pub live_outputs: u64,
    /// What-if outputs (distinct keys).
    pub what_if_outputs: u64,
    /// Risk decisions moved (risk scoring only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decisions: Option<Decisions>,
    /// Outputs of the what-if run without a live counterpart.
    pub gained: u64,
    /// Live outputs the what-if run does not produce.
    pub lost: u64,
    /// Outputs on both sides whose content differs (daily balances).
    pub changed: u64,
    /// Up to [`EXAMPLES`] gained outputs, in key order.
    pub gained_examples: Vec<Change>,
    /// Up to [`EXAMPLES`] lost outputs, in key order.
    pub lost_examples: Vec<Change>,
}

/// Offsets currently held by `topic` (sum of high minus low watermarks): an upper bound of its
/// records, since transaction markers take offsets too.
///
/// # Errors
/// When the brokers cannot answer.
pub fn records_in(topology: &Topology, topic: &str) -> anyhow::Result<u64> {
    let consumer = consumer(topology)?;
    let mut total = 0;
    for p in partitions(&consumer, topic)? {
        let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
        total += (high - low).max(0) as u64;
    }
    Ok(total)
}

fn consumer(topology: &Topology) -> anyhow::Result<BaseConsumer> {
    Ok(crate::kafka::client_config(topology)?
        .set(
            "group.id",
            format!("{}-replay-diff", topology.kafka.group_prefix),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?)
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    let md = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    Ok(md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Every record of `topic` up to its high watermarks now, partition by partition.
///
/// # Errors
/// When the brokers cannot answer or the topic cannot be read within a few minutes.
pub fn read_all(topology: &Topology, topic: &str) -> anyhow::Result<Vec<OutputRecord>> {
    let consumer = consumer(topology)?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in partitions(&consumer, topic)? {
        let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
            ends.insert(p, (low, high));
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let mut next: BTreeMap<i32, i64> = ends.iter().map(|(p, (low, _))| (*p, *low)).collect();
    let mut idle = Instant::now();
    while ends.iter().any(|(p, (_, high))| next[p] < *high) {
        anyhow::ensure!(
            idle.elapsed() < Duration::from_secs(120),
            "reading {topic}: no record for 120 s before its high watermarks"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = Instant::now();
                let Some((_, high)) = ends.get(&m.partition()) else {
                    continue;
                };
                next.insert(m.partition(), m.offset() + 1);
                if m.offset() >= *high {
                    continue;
                }
                let id = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == ID_HEADER)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                });
                out.push(OutputRecord {
                    payload: m.payload().map(<[u8]>::to_vec),
                    id,
                });
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                // Transaction markers and aborted records take offsets but are never
                // delivered; the consumer's position moves past them.
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        if let (Offset::Offset(o), Some(n)) =
                            (e.offset(), next.get_mut(&e.partition()))
                        {
                            *n = (*n).max(o);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `(processor, topic, partition, offset)` of a `fluxo-id` header.
pub fn parse_id(id: &str) -> Option<(&str, &str, i32, i64)> {
    let (processor, rest) = id.split_once(':')?;
    let mut parts = rest.rsplitn(4, '/');
    let _n = parts.next()?;
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?;
    Some((processor, topic, partition, offset))
}

/// One matched output: its key, how to show it, and what is compared.
struct Entry {
    change: Change,
    class: String,
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// One output of `kind` as the diff sees it, from its [`OutputEvent`] identity; `None` when it
/// cannot be decoded.
fn entry(kind: Kind, codec: &mut Codec, payload: Option<&[u8]>) -> Option<Entry> {
    struct Decode<'a> {
        codec: &'a mut Codec,
        payload: Option<&'a [u8]>,
    }
    impl KindVisitor for Decode<'_> {
        type Output = Option<Entry>;
        fn visit<K: KindTypes>(self) -> Self::Output {
            let event: K::Out = self.codec.decode(self.payload).ok()?;
            Some(Entry {
                change: Change {
                    key: event.diff_key(),
                    symbol: event.diff_symbol().map(str::to_string),
                    time: event.diff_time().and_then(rfc3339),
                },
                class: event.diff_class(),
            })
        }
    }
    dispatch(kind, Decode { codec, payload })
}

fn entries<'a>(
    kind: Kind,
    codec: &mut Codec,
    records: impl Iterator<Item = &'a OutputRecord>,
) -> BTreeMap<String, Entry> {
    let mut seen = HashSet::new();
    let mut out = BTreeMap::new();
    for r in records {
        // An output produced again after a crash carries the same id: count it once.
        if let Some(id) = &r.id {
            if !seen.insert(id.clone()) {
                continue;
            }
        }
        if let Some(e) = entry(kind, codec, r.payload.as_deref()) {
            out.insert(e.change.key.clone(), e);
        }
    }
    out
}

/// Compare the outputs of the replay (topics suffixed `suffix`) with the live outputs of the
/// same input range.
///
/// # Errors
/// When the output topics cannot be read.
pub fn compare(
    live: &Topology,
    config: &ProcessorConfig,
    range: &Range,
    suffix: &str,
    mut codec: Codec,
) -> Result<Report, ReplayError> {
    let output = &config.outputs[0];
    let live_records = read_all(live, output)?;
    let in_range = |r: &&OutputRecord| {
        let Some((processor, topic, partition, offset)) = r.id.as_deref().and_then(parse_id) else {
            return false;
        };
        processor == config.name
            && range
                .inputs
                .get(&(topic.to_string(), partition))
                .is_some_and(|(s, e)| (*s..*e).contains(&offset))
    };
    let live_entries = entries(
        config.kind,
        &mut codec,
        live_records.iter().filter(in_range),
    );
    let replay_records = read_all(live, &format!("{output}{suffix}"))?;
    let replay_entries = entries(config.kind, &mut codec, replay_records.iter());
    Ok(build_report(config, &live_entries, &replay_entries))
}

fn build_report(
    config: &ProcessorConfig,
    live: &BTreeMap<String, Entry>,
    what_if: &BTreeMap<String, Entry>,
) -> Report {
    let mut report = Report {
        processor: config.name.clone(),
        kind: config.kind.name().to_string(),
        live_outputs: live.len() as u64,
        what_if_outputs: what_if.len() as u64,
        decisions: None,
        gained: 0,
        lost: 0,
        changed: 0,
        gained_examples: Vec::new(),
        lost_examples: Vec::new(),
    };
    let mut decisions = Decisions::default();
    for from in DECISIONS {
        let row = decisions.matrix.entry(from.to_string()).or_default();
        for to in DECISIONS {
            row.insert(to.to_string(), 0);
        }
    }
    for (key, l) in live {
        match what_if.get(key) {
            Some(w) => {
                if config.kind == Kind::RiskScoring {
                    *decisions
                        .matrix
                        .entry(l.class.clone())
                        .or_default()
                        .entry(w.class.clone())
                        .or_default() += 1;
                    if l.class != w.class {
                        decisions.moved += 1;
                        let ex = decisions
                            .examples
                            .entry(format!("{}->{}", l.class, w.class))
                            .or_default();
                        if ex.len() < EXAMPLES {
                            ex.push(key.clone());
                        }
                    }
                } else if l.class != w.class {
                    report.changed += 1;
                }
            }
            None => {
                report.lost += 1;
                if report.lost_examples.len() < EXAMPLES {
                    report.lost_examples.push(l.change.clone());
                }
            }
        }
    }
    for (key, w) in what_if {
        if !live.contains_key(key) {
            report.gained += 1;
            if report.gained_examples.len() < EXAMPLES {
                report.gained_examples.push(w.change.clone());
            }
        }
    }
    if config.kind == Kind::RiskScoring {
        report.decisions = Some(decisions);
    }
    report
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "what-if diff of {}: live {} outputs, what-if {}",
            self.processor, self.live_outputs, self.what_if_outputs
        )?;
        if let Some(d) = &self.decisions {
            writeln!(
                f,
                "decisions moved: {} (rows: live, columns: what-if)",
                d.moved
            )?;
            writeln!(
                f,
                "  {:<8} {:>8} {:>8} {:>8}",
                "", "APPROVE", "REVIEW", "REJECT"
            )?;
            for from in DECISIONS {
                let row = d.matrix.get(from);
                let cell = |to: &str| row.and_then(|r| r.get(to)).copied().unwrap_or(0);
                writeln!(
                    f,
                    "  {from:<8} {:>8} {:>8} {:>8}",
                    cell("APPROVE"),
                    cell("REVIEW"),
                    cell("REJECT")
                )?;
            }
            for (cell, ids) in &d.examples {
                writeln!(f, "  {cell}: e.g. {}", ids.join(", "))?;
            }
        }
        if self.changed > 0 {
            writeln!(f, "changed: {}", self.changed)?;
        }
        writeln!(f, "gained: {}", self.gained)?;
        for c in &self.gained_examples {
            writeln!(f, "  + {}", show(c))?;
        }
        write!(f, "lost: {}", self.lost)?;
        for c in &self.lost_examples {
            write!(f, "\n  - {}", show(c))?;
        }
        Ok(())
    }
}

fn show(c: &Change) -> String {
    match &c.time {
        Some(t) => format!("{} at {t}", c.key),
        None => c.key.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_source() {
        assert_eq!(
            parse_id("price-change:asset-prices-x/2/41/0"),
            Some(("price-change", "asset-prices-x", 2, 41))
        );
        assert_eq!(
            parse_id("risk-scoring:transactions/0/7/dlq"),
            Some(("risk-scoring", "transactions", 0, 7))
        );
        assert_eq!(parse_id("nonsense"), None);
    }

    fn e(key: &str, class: &str) -> (String, Entry) {
        (
            key.to_string(),
            Entry {
                change: Change {
                    key: key.into(),
                    symbol: None,
                    time: None,
                },
                class: class.into(),
            },
        )
    }

    #[test]
    fn decisions_moving_fill_the_matrix() {
        let config = ProcessorConfig {
            name: "risk-scoring".into(),
            kind: Kind::RiskScoring,
            inputs: vec![],
            global_inputs: vec![],
            outputs: vec![],
            enabled: true,
            params: crate::catalog::Params::parse(Kind::RiskScoring, &toml::Table::new()).unwrap(),
        };
        let live: BTreeMap<_, _> = [
            e("t1", "APPROVE"),
            e("t2", "APPROVE"),
            e("t3", "REJECT"),
            e("t4", "REVIEW"),
        ]
        .into();
        let what_if: BTreeMap<_, _> = [
            e("t1", "REVIEW"),
            e("t2", "APPROVE"),
            e("t3", "REJECT"),
            e("t5", "APPROVE"),
        ]
        .into();
        let r = build_report(&config, &live, &what_if);
        let d = r.decisions.unwrap();
        assert_eq!(d.moved, 1);
        assert_eq!(d.matrix["APPROVE"]["REVIEW"], 1);
        assert_eq!(d.matrix["APPROVE"]["APPROVE"], 1);
        assert_eq!(d.matrix["REJECT"]["REJECT"], 1);
        assert_eq!(d.examples["APPROVE->REVIEW"], vec!["t1".to_string()]);
        assert_eq!((r.gained, r.lost), (1, 1));
        assert_eq!(r.gained_examples[0].key, "t5");
        assert_eq!(r.lost_examples[0].key, "t4");
    }
}
