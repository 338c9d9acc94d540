//! Helpers of `benches/loadtest.sh`: the raw rdkafka passthrough baseline and the latency tap.
//!
//! ```text
//! loadtest passthrough --bootstrap HOST:PORT --from TOPIC --to TOPIC --expect N
//!                      [--expect-file F] [--fetch-wait-ms 100] [--idempotent true|false]
//!                      [--timeout-s 300] [--start beginning|end]
//! loadtest tap --bootstrap HOST:PORT --input TOPIC --output TOPIC[,TOPIC...] --since-ms T
//!              --expect N [--expect-file F] --out FILE.json [--timeout-s 300]
//! ```
//!
//! `passthrough` is the baseline fluxo is compared with: a plain consume -> produce loop with
//! the client settings of fluxo's engine (`src/engine.rs`: `fetch.wait.max.ms`,
//! `queued.max.messages.kbytes`, `acks=all`, `linger.ms=5`, and like the topology's
//! `idempotent_producer`: idempotence with 5 requests in flight, or none and one request in
//! flight), reading every partition of `--from` from the beginning and writing each record
//! (key, payload, a `fluxo-id` header) to `--to` (`--start end`: only records that arrive after
//! it is positioned, for a latency floor measured with `tap`). It is not transactional: under
//! `exactly_once` it is the baseline without the cost of transactions. It stops once `--expect`
//! records are acknowledged and prints one JSON line: records, the wall-clock times of its
//! start, first record and last acknowledgement, and its own CPU seconds and peak RSS.
//!
//! `tap` measures end-to-end latency: it reads the input topic and the output topics
//! (`read_committed`, so under `exactly_once` outputs count once their transaction commits),
//! joins every output record to its input through the `fluxo-id` header the engine puts on
//! outputs (`processor:topic/partition/offset/i`) and records, in HDR histograms per processor,
//! - `latency_ms`: output Kafka timestamp (set when fluxo produced it) minus input Kafka timestamp
//!   (set by `fluxo produce --rate`, at the same moment it stamps the event time);
//! - `visible_ms`: the wall-clock time the tap received the output minus the input timestamp: when
//!   a `read_committed` consumer could see it (under `exactly_once` the commit of the checkpoint's
//!   transaction, which the Kafka timestamp does not include). Meaningful only when the tap runs
//!   while the records are produced, as `benches/loadtest.sh` does.
//!
//! `steady_latency_ms` and `steady_visible_ms` are the same without the inputs stamped in the
//! run's first second, which also measures the producer's start (`fluxo produce --rate` stamps
//! its first records before its producer is connected and has a producer id).
//!
//! Only inputs stamped at or after `--since-ms` count, and the tap starts reading there (offsets
//! for times, or the end of a partition with nothing newer). It writes percentiles, the
//! histograms' percentile distributions and a per-second series (outputs, p50, p99, max by output
//! time; p50/p99 of `visible_ms`) to `--out`.
//!
//! Both print `loadtest: positioned` on stderr once their consumer is assigned to fixed offsets:
//! whatever is produced after that is read. `--expect-file F`: once F holds a number (written
//! after the producer finished, with the records it got acknowledged), it replaces `--expect`.
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
  loadtest passthrough --bootstrap HOST:PORT --from TOPIC --to TOPIC --expect N [--expect-file F] [--fetch-wait-ms 100] [--idempotent true|false] [--timeout-s 300] [--start beginning|end]
  loadtest tap --bootstrap HOST:PORT --input TOPIC --output TOPIC[,TOPIC] --since-ms T --expect N [--expect-file F] --out FILE [--timeout-s 300]
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

/// `--expect N`, replaced by the number in `--expect-file` once that file holds one.
struct Expected {
    n: u64,
    file: Option<String>,
    settled: bool,
    last_read: Option<Instant>,
}

impl Expected {
    fn new(f: &Flags) -> Result<Self, String> {
        let n = f.num("expect", None)?;
        Ok(Self {
            n: u64::try_from(n).map_err(|_| format!("--expect {n}"))?,
            file: f.0.get("expect-file").cloned(),
            settled: false,
            last_read: None,
        })
    }

    /// The expected count now (reads the file, at most every 100 ms, until it holds a number).
    fn get(&mut self) -> u64 {
        if !self.settled
            && self
                .last_read
                .is_none_or(|t| t.elapsed() > Duration::from_millis(100))
        {
            self.last_read = Some(Instant::now());
            if let Some(path) = &self.file {
                if let Some(n) = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                {
                    self.n = n;
                    self.settled = true;
                }
            }
        }
        self.n
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
        // librdkafka's default, said out loud: under `exactly_once` only committed outputs count.
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("queued.max.messages.kbytes", "32768")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        // A topic created a moment ago (by `fluxo up` or the passthrough) may not be in the
        // metadata yet: without this wait it would be assigned no partition and read nothing.
        let deadline = Instant::now() + Duration::from_secs(30);
        let partitions = loop {
            let md = c
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .map_err(|e| format!("metadata of {topic}: {e}"))?;
            let ids: Vec<i32> = md
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if !ids.is_empty() {
                break ids;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "topic {topic}: no partitions in the metadata after 30 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        for p in partitions {
            tpl.add_partition_offset(topic, p, start)
                .map_err(|e| e.to_string())?;
        }
    }
    c.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    Ok(c)
}

/// Assign `c` to `tpl` with every logical offset (`End`, or the -1 of offsets for times when no
/// record is that new) replaced by the partition's high watermark now, so that nothing produced
/// from now on is skipped however late the first fetch goes out; then say so on stderr.
fn position(c: &BaseConsumer, tpl: &TopicPartitionList) -> Result<(), String> {
    let mut at = TopicPartitionList::new();
    for e in tpl.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) if o >= 0 => Offset::Offset(o),
            Offset::Beginning => Offset::Beginning,
            _ => {
                let (_, high) = c
                    .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))
                    .map_err(|err| {
                        format!("watermarks of {}/{}: {err}", e.topic(), e.partition())
                    })?;
                Offset::Offset(high)
            }
        };
        at.add_partition_offset(e.topic(), e.partition(), offset)
            .map_err(|err| err.to_string())?;
    }
    c.assign(&at).map_err(|e| format!("assign: {e}"))?;
    eprintln!("loadtest: positioned");
    Ok(())
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
    let mut expected = Expected::new(f)?;
    let fetch_wait = f.num("fetch-wait-ms", Some(100))?;
    let idempotent = match f.0.get("idempotent").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(format!("--idempotent {other}: true or false")),
    };
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
    if let Ok(tpl) = c.assignment() {
        position(&c, &tpl)?;
    }
    let producer: BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "fluxo-loadtest")
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set(
            "max.in.flight.requests.per.connection",
            if idempotent { "5" } else { "1" },
        )
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "100000")
        .set("message.timeout.ms", "120000")
        .create_with_context(Acks::default())
        .map_err(|e| format!("producer: {e}"))?;

    let mut consumed = 0u64;
    let mut first_in_ms = 0i64;
    let mut expect = expected.get();
    while producer.context().ok.load(Ordering::Relaxed) < expect {
        expect = expected.get();
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
            "idempotent": idempotent,
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
    let mut expected = Expected::new(f)?;
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
    // Start at the first records stamped since `--since-ms` (less for the broker to serve), or
    // at the end of a partition that has none yet; the output of an input stamped just before
    // may come after it, which the join then ignores.
    let mut at = c.assignment().map_err(|e| format!("assignment: {e}"))?;
    if since > 0 {
        let mut times = TopicPartitionList::new();
        for e in at.elements() {
            times
                .add_partition_offset(e.topic(), e.partition(), Offset::Offset(since))
                .map_err(|e| e.to_string())?;
        }
        match c.offsets_for_times(times, Duration::from_secs(30)) {
            Ok(tpl) => at = tpl,
            Err(e) => {
                eprintln!("loadtest: tap: offsets for times: {e}; reading from the beginning")
            }
        }
    }
    position(&c, &at)?;

    // (partition, offset) -> input timestamp; (processor, partition, offset, output ts, received)
    let mut inputs: HashMap<(i32, i64), i64> = HashMap::new();
    let mut outs: Vec<(String, i32, i64, i64, i64)> = Vec::new();
    let mut joined = 0u64;
    let (mut checked, mut unmatched) = (0usize, Vec::<usize>::new());
    let mut last_check = Instant::now();
    while Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let received = now_ms();
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
                    outs.push((o.processor, o.partition, o.offset, ts, received));
                }
            }
        }
        if last_check.elapsed() > Duration::from_millis(500) {
            last_check = Instant::now();
            // Join what came since the last check, and what found no input then.
            let mut still = Vec::new();
            for i in unmatched.drain(..).chain(checked..outs.len()) {
                let (_, p, o, _, _) = &outs[i];
                match inputs.get(&(*p, *o)) {
                    Some(t) if *t >= since => joined += 1,
                    Some(_) => {}
                    None => still.push(i),
                }
            }
            unmatched = still;
            checked = outs.len();
            if joined >= expected.get() {
                break;
            }
        }
    }
    let expect = expected.get();

    // The first second of a paced run also measures the load generator's start (its first
    // records are stamped before its producer has a connection and a producer id): the
    // `steady_*` summaries leave out the inputs stamped in the first second.
    let first_in = inputs.values().filter(|t| **t >= since).min().copied();
    let steady_from = first_in.map_or(i64::MAX, |t| t + 1000);
    let mut per_proc: BTreeMap<String, (Histogram<u64>, Histogram<u64>)> = BTreeMap::new();
    let mut steady: BTreeMap<String, (Histogram<u64>, Histogram<u64>)> = BTreeMap::new();
    let mut per_second: BTreeMap<(String, i64), (Histogram<u64>, Histogram<u64>)> = BTreeMap::new();
    let mut missing = 0u64;
    for (proc_, p, o, out_ts, received) in &outs {
        let Some(in_ts) = inputs.get(&(*p, *o)) else {
            missing += 1;
            continue;
        };
        if *in_ts < since {
            continue;
        }
        let lat = (out_ts - in_ts).max(1) as u64;
        let visible = (received - in_ts).max(1) as u64;
        if *in_ts >= steady_from {
            let (h, v) = steady
                .entry(proc_.clone())
                .or_insert_with(|| (histogram(), histogram()));
            let _ = h.record(lat);
            let _ = v.record(visible);
        }
        for (h, v) in [
            per_proc
                .entry(proc_.clone())
                .or_insert_with(|| (histogram(), histogram())),
            per_second
                .entry((proc_.clone(), out_ts / 1000))
                .or_insert_with(|| (histogram(), histogram())),
        ] {
            let _ = h.record(lat);
            let _ = v.record(visible);
        }
    }
    let series: Vec<serde_json::Value> = per_second
        .iter()
        .map(|((p, sec), (h, v))| {
            json!({"processor": p, "t": sec, "n": h.len(), "p50": h.value_at_quantile(0.5),
                   "p99": h.value_at_quantile(0.99), "max": h.max(),
                   "visible_p50": v.value_at_quantile(0.5), "visible_p99": v.value_at_quantile(0.99)})
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
        "latency_ms": per_proc.iter().map(|(p, (h, _))| (p.clone(), summary(h))).collect::<BTreeMap<_, _>>(),
        "visible_ms": per_proc.iter().map(|(p, (_, v))| (p.clone(), summary(v))).collect::<BTreeMap<_, _>>(),
        "first_input_ms": first_in,
        "steady_latency_ms": steady.iter().map(|(p, (h, _))| (p.clone(), summary(h))).collect::<BTreeMap<_, _>>(),
        "steady_visible_ms": steady.iter().map(|(p, (_, v))| (p.clone(), summary(v))).collect::<BTreeMap<_, _>>(),
        "hgrm": per_proc.iter().map(|(p, (h, _))| (p.clone(), distribution(h))).collect::<BTreeMap<_, _>>(),
        "visible_hgrm": per_proc.iter().map(|(p, (_, v))| (p.clone(), distribution(v))).collect::<BTreeMap<_, _>>(),
        "series": series,
    });
    std::fs::write(out_path, report.to_string()).map_err(|e| format!("writing {out_path}: {e}"))?;
    if joined < expect {
        eprintln!("loadtest: tap saw {joined} of {expect} outputs before its timeout");
    }
    Ok(())
}
