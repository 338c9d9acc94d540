//! Helpers of `benches/loadtest.sh`: the raw rdkafka passthrough baseline and the latency tap.
//!
//! ```text
//! loadtest passthrough --bootstrap HOST:PORT --from TOPIC --to TOPIC --expect N
//!                      [--fetch-wait-ms 100] [--timeout-s 300] [--start beginning|end]
//! loadtest tap --bootstrap HOST:PORT --input TOPIC --output TOPIC[,TOPIC...] --since-ms T
//!              --expect N --out FILE.json [--timeout-s 300]
//! ```
//!
//! `passthrough` is the baseline fluxo is compared with: a plain consume -> produce loop with
//! the client settings of fluxo's engine (`src/engine.rs`: `fetch.wait.max.ms`,
//! `queued.max.messages.kbytes`, `acks=all`, `linger.ms=5`, no idempotence and one request in
//! flight), reading every partition of `--from` from the beginning and writing each record
//! (key, payload, a `fluxo-id` header) to `--to` (`--start end`: only records that arrive after
//! it started, for a latency floor measured with `tap`). It stops once `--expect` records are
//! acknowledged and prints one JSON line: records, the wall-clock times of its start, first
//! record and last acknowledgement, and its own CPU seconds and peak RSS.
//!
//! `tap` measures end-to-end latency: it reads the input topic and the output topics from the
//! beginning, joins every output record to its input through the `fluxo-id` header the engine
//! puts on outputs (`processor:topic/partition/offset/i`) and records, in an HDR histogram per
//! processor, output Kafka timestamp (set when fluxo produced it) minus input Kafka timestamp
//! (set by `fluxo produce --rate`, at the same moment it stamps the event time). Only inputs
//! stamped at or after `--since-ms` count, and the tap starts reading there (offsets for times). It writes percentiles, the histogram's percentile
//! distribution and a per-second series (outputs, p50, p99, max by output time) to `--out`.
//!
//! Run without a subcommand (as `cargo bench` does) it prints this usage and exits.

use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, ClientContext};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage:
  loadtest passthrough --bootstrap HOST:PORT --from TOPIC --to TOPIC --expect N [--fetch-wait-ms 100] [--timeout-s 300] [--start beginning|end]
  loadtest tap --bootstrap HOST:PORT --input TOPIC --output TOPIC[,TOPIC] --since-ms T --expect N --out FILE [--timeout-s 300]
(run by benches/loadtest.sh; see benches/README.md)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("passthrough") => passthrough(&Flags::parse(&args[1..])),
        Some("tap") => tap(&Flags::parse(&args[1..])),
        _ => {
            println!("{USAGE}");
            return;
        }
    };
    if let Err(e) = result {
        eprintln!("loadtest: {e}");
        std::process::exit(1);
    }
}

/// `--name value` pairs.
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Self {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                map.insert(name.to_string(), it.next().cloned().unwrap_or_default());
            }
        }
        Self(map)
    }

    fn get(&self, name: &str) -> Result<&str, String> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("--{name} is required\n{USAGE}"))
    }

    fn num(&self, name: &str, default: Option<i64>) -> Result<i64, String> {
        match (self.0.get(name), default) {
            (Some(v), _) => v.parse().map_err(|e| format!("--{name} {v}: {e}")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("--{name} is required\n{USAGE}")),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Consumer settings of fluxo's engine, assigned to every partition of `topics` at `start`.
fn consumer(
    bootstrap: &str,
    group: &str,
    fetch_wait_ms: i64,
    topics: &[&str],
    start: Offset,
) -> Result<BaseConsumer, String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "fluxo-loadtest")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("queued.max.messages.kbytes", "32768")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), start)
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    c.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    Ok(c)
}

/// Counts acknowledgements and remembers when the last one came.
#[derive(Default)]
struct Acks {
    ok: AtomicU64,
    failed: AtomicU64,
    last_ms: AtomicI64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.last_ms.store(now_ms(), Ordering::Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Create `to` with as many partitions as `from` (an existing topic is kept).
fn create_like(bootstrap: &str, from_partitions: i32, to: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("admin: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let topic = NewTopic::new(to, from_partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = rt
        .block_on(admin.create_topics([&topic], &opts))
        .map_err(|e| format!("creating {to}: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("creating {name}: {code}")),
        }
    }
    Ok(())
}

/// CPU seconds (user + system) and peak RSS in MiB of this process.
fn own_usage() -> (f64, f64) {
    let ticks = 100.0; // CLK_TCK on Linux
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(") ")?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            // after "(comm) ": state is index 0, utime 11, stime 12
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks)
        })
        .unwrap_or(0.0);
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .unwrap_or(0.0)
        / 1024.0;
    (cpu, hwm)
}

fn passthrough(f: &Flags) -> Result<(), String> {
    let start_ms = now_ms();
    let bootstrap = f.get("bootstrap")?;
    let from = f.get("from")?;
    let to = f.get("to")?;
    let expect = f.num("expect", None)? as u64;
    let fetch_wait = f.num("fetch-wait-ms", Some(100))?;
    let deadline = Instant::now() + Duration::from_secs(f.num("timeout-s", Some(300))? as u64);

    let start = match f.0.get("start").map(String::as_str) {
        None | Some("beginning") => Offset::Beginning,
        Some("end") => Offset::End,
        Some(other) => return Err(format!("--start {other}: beginning or end")),
    };
    let c = consumer(
        bootstrap,
        "fluxo-loadtest-passthrough",
        fetch_wait,
        &[from],
        start,
    )?;
    let partitions = c
        .fetch_metadata(Some(from), Duration::from_secs(10))
        .map_err(|e| e.to_string())?
        .topics()
        .first()
        .map(|t| t.partitions().len() as i32)
        .unwrap_or(1);
    create_like(bootstrap, partitions, to)?;
    let producer: BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "fluxo-loadtest")
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "100000")
        .set("message.timeout.ms", "120000")
        .create_with_context(Acks::default())
        .map_err(|e| format!("producer: {e}"))?;

    let mut consumed = 0u64;
    let mut first_in_ms = 0i64;
    while producer.context().ok.load(Ordering::Relaxed) < expect {
        if Instant::now() > deadline {
            return Err(format!(
                "timed out: {consumed} consumed, {} acknowledged of {expect}",
                producer.context().ok.load(Ordering::Relaxed)
            ));
        }
        producer.poll(Duration::ZERO);
        if consumed >= expect {
            producer.poll(Duration::from_millis(10));
            continue;
        }
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.map_err(|e| format!("consume: {e}"))?;
        if first_in_ms == 0 {
            first_in_ms = now_ms();
        }
        consumed += 1;
        let id = format!(
            "passthrough:{}/{}/{}/0",
            m.topic(),
            m.partition(),
            m.offset()
        );
        let headers = OwnedHeaders::new().insert(Header {
            key: "fluxo-id",
            value: Some(id.as_bytes()),
        });
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(to).headers(headers);
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Some(p) = m.payload() {
            rec = rec.payload(p);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    rec = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(format!("produce: {e}")),
            }
        }
    }
    let _ = producer.flush(Timeout::After(Duration::from_secs(30)));
    let acks = producer.context();
    let done_ms = acks.last_ms.load(Ordering::Relaxed);
    let (cpu_s, hwm_mib) = own_usage();
    let secs = (done_ms - first_in_ms) as f64 / 1000.0;
    println!(
        "{}",
        json!({
            "records": acks.ok.load(Ordering::Relaxed),
            "failed": acks.failed.load(Ordering::Relaxed),
            "start_ms": start_ms,
            "first_in_ms": first_in_ms,
            "done_ms": done_ms,
            "seconds": secs,
            "records_per_s": if secs > 0.0 { expect as f64 / secs } else { 0.0 },
            "cpu_s": cpu_s,
            "hwm_mib": hwm_mib,
            "fetch_wait_ms": fetch_wait,
        })
    );
    Ok(())
}

/// Where an output came from, parsed from its `fluxo-id` header.
struct Origin {
    processor: String,
    topic: String,
    partition: i32,
    offset: i64,
}

fn origin(id: &str) -> Option<Origin> {
    let (processor, rest) = id.split_once(':')?;
    let mut parts = rest.rsplitn(4, '/');
    let _index = parts.next()?;
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?.to_string();
    Some(Origin {
        processor: processor.to_string(),
        topic,
        partition,
        offset,
    })
}

fn histogram() -> Histogram<u64> {
    // 1 ms .. 1 h at 3 significant digits; the bounds are valid constants.
    Histogram::new_with_bounds(1, 3_600_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "count": h.len(),
        "min": h.min(),
        "mean": h.mean(),
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p95": h.value_at_quantile(0.95),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

/// HdrHistogram's classic percentile distribution (`.hgrm`) text.
fn distribution(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for v in h.iter_quantiles(1) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            "inf".into()
        };
        out.push_str(&format!(
            "{:12.3} {:14.12} {:10} {:>14}\n",
            v.value_iterated_to() as f64,
            q,
            v.count_since_last_iteration(),
            inv
        ));
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n",
        h.mean(),
        h.stdev(),
        h.max() as f64,
        h.len()
    ));
    out
}

fn tap(f: &Flags) -> Result<(), String> {
    let bootstrap = f.get("bootstrap")?;
    let input = f.get("input")?;
    let outputs: Vec<&str> = f.get("output")?.split(',').collect();
    let since = f.num("since-ms", Some(0))?;
    let expect = f.num("expect", None)? as usize;
    let out_path = f.get("out")?;
    let deadline = Instant::now() + Duration::from_secs(f.num("timeout-s", Some(300))? as u64);
    let mut topics = vec![input];
    topics.extend(&outputs);
    let c = consumer(
        bootstrap,
        "fluxo-loadtest-tap",
        100,
        &topics,
        Offset::Beginning,
    )?;
    // Start at the first records stamped since `--since-ms` (less for the broker to serve); the
    // output of an input stamped just before may come after it, which the join then ignores.
    if since > 0 {
        let from = c.assignment().and_then(|tpl| {
            let mut at = TopicPartitionList::new();
            for e in tpl.elements() {
                at.add_partition_offset(e.topic(), e.partition(), Offset::Offset(since))?;
            }
            c.offsets_for_times(at, Duration::from_secs(30))
        });
        match from {
            Ok(tpl) => c.assign(&tpl).map_err(|e| format!("assign: {e}"))?,
            Err(e) => {
                eprintln!("loadtest: tap: offsets for times: {e}; reading from the beginning")
            }
        }
    }

    // (partition, offset) -> input timestamp; (processor, partition, offset, output ts)
    let mut inputs: HashMap<(i32, i64), i64> = HashMap::new();
    let mut outs: Vec<(String, i32, i64, i64)> = Vec::new();
    let mut joined = 0usize;
    let mut last_check = Instant::now();
    while Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.map_err(|e| format!("consume: {e}"))?;
            let ts = m.timestamp().to_millis().unwrap_or(0);
            if m.topic() == input {
                inputs.insert((m.partition(), m.offset()), ts);
            } else if let Some(o) = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "fluxo-id").and_then(|h| h.value))
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(origin)
            {
                if o.topic == input {
                    outs.push((o.processor, o.partition, o.offset, ts));
                }
            }
        }
        if last_check.elapsed() > Duration::from_millis(500) {
            last_check = Instant::now();
            joined = outs
                .iter()
                .filter(|(_, p, o, _)| inputs.get(&(*p, *o)).is_some_and(|t| *t >= since))
                .count();
            if joined >= expect {
                break;
            }
        }
    }

    let mut per_proc: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut per_second: BTreeMap<(String, i64), Histogram<u64>> = BTreeMap::new();
    let mut missing = 0u64;
    for (proc_, p, o, out_ts) in &outs {
        let Some(in_ts) = inputs.get(&(*p, *o)) else {
            missing += 1;
            continue;
        };
        if *in_ts < since {
            continue;
        }
        let lat = (out_ts - in_ts).max(1) as u64;
        let _ = per_proc
            .entry(proc_.clone())
            .or_insert_with(histogram)
            .record(lat);
        let _ = per_second
            .entry((proc_.clone(), out_ts / 1000))
            .or_insert_with(histogram)
            .record(lat);
    }
    let series: Vec<serde_json::Value> = per_second
        .iter()
        .map(|((p, sec), h)| {
            json!({"processor": p, "t": sec, "n": h.len(), "p50": h.value_at_quantile(0.5),
                   "p99": h.value_at_quantile(0.99), "max": h.max()})
        })
        .collect();
    let report = json!({
        "input": input,
        "outputs": outputs,
        "since_ms": since,
        "expect": expect,
        "joined": joined,
        "complete": joined >= expect,
        "outputs_without_input": missing,
        "latency_ms": per_proc.iter().map(|(p, h)| (p.clone(), summary(h))).collect::<BTreeMap<_, _>>(),
        "hgrm": per_proc.iter().map(|(p, h)| (p.clone(), distribution(h))).collect::<BTreeMap<_, _>>(),
        "series": series,
    });
    std::fs::write(out_path, report.to_string()).map_err(|e| format!("writing {out_path}: {e}"))?;
    if joined < expect {
        eprintln!("loadtest: tap saw {joined} of {expect} outputs before its timeout");
    }
    Ok(())
}
