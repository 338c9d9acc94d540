//! `fluxo produce`: JSON lines or simulated data, validated and produced as Confluent-framed
//! Avro.

use super::{load_topology, Failure};
use crate::avro::framing::frame;
use crate::avro::json::json_to_value;
use crate::codec::registry_settings;
use crate::simulate::{SimKind, Simulator};
use apache_avro::types::Value;
use apache_avro::Schema;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Flags of `fluxo produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Topic to produce to (default for `--simulate`: the simulator's input topic).
    #[arg(long)]
    pub topic: Option<String>,
    /// Read JSON lines from this file instead of standard input.
    #[arg(long, conflicts_with = "simulate")]
    pub file: Option<PathBuf>,
    /// Abort at the first line that does not fit the schema (default: report it and skip it).
    #[arg(long)]
    pub strict: bool,
    /// Generate realistic data instead of reading JSON.
    #[arg(long, value_enum)]
    pub simulate: Option<SimKind>,
    /// Records per second, stamped with the wall clock (default: as fast as possible, with
    /// event times spread 250 ms apart over the past).
    #[arg(long)]
    pub rate: Option<f64>,
    /// How many records to simulate.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Seed of the simulator, for reproducible data (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Distinct keys the simulator draws from: symbols (prices; default the 13 listed assets,
    /// then synthetic SIM0000013...), accounts (ledger; default 1,000), documents
    /// (transactions and blacklist; default 2,000). For growing the state in benchmarks.
    #[arg(long, requires = "simulate", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub keys: Option<u64>,
}

/// Counts acknowledged and failed deliveries.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                tracing::warn!(error = %e, "delivery failed");
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Sends framed records, waiting when the producer queue is full.
struct Sender {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    schema_id: u32,
    schema: &'static Schema,
}

impl Sender {
    fn send(&self, key: &str, value: Value) -> anyhow::Result<()> {
        let datum = crate::avro::typed::encode_value(self.schema, &value)?;
        let payload = frame(self.schema_id, &datum);
        // With tracing on, each record starts a trace: a `publish` span whose W3C headers the
        // record carries to the processors.
        let publish = crate::telemetry::kafka::PublishSpan::new_trace(&self.topic);
        let mut record = BaseRecord::to(&self.topic).key(key).payload(&payload);
        if let Some(span) = &publish {
            let headers = span
                .headers()
                .iter()
                .fold(OwnedHeaders::new(), |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    })
                });
            record = record.headers(headers);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
}

fn progress(total: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match total {
        Some(n) => {
            let bar = ProgressBar::new(n);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        }
        None => ProgressBar::new_spinner(),
    }
}

/// Paces a loop at `rate` iterations per second.
struct Pacer {
    start: Instant,
    rate: Option<f64>,
}

impl Pacer {
    fn wait(&self, i: u64) {
        if let Some(rate) = self.rate.filter(|r| *r > 0.0) {
            let due = self.start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
}

/// `fluxo produce`.
pub async fn produce(topology_path: &Path, args: ProduceArgs) -> Result<(), Failure> {
    let topology = load_topology(topology_path, None)?;
    let topic = match (&args.topic, args.simulate) {
        (Some(t), _) => t.clone(),
        (None, Some(kind)) => kind.default_topic().to_string(),
        (None, None) => return Err(Failure::Usage("--topic is required (or --simulate)".into())),
    };
    let topic_cfg = topology.topics.get(&topic).ok_or_else(|| {
        Failure::Usage(format!(
            "topic `{topic}` is not declared in {}",
            topology.source.display()
        ))
    })?;
    let declared = crate::avro::schemas::all()
        .iter()
        .find(|s| s.name == topic_cfg.schema)
        .ok_or_else(|| Failure::Usage(format!("topic `{topic}` has an unknown schema")))?;
    let schema = crate::avro::schemas::schema_for(declared.name)
        .ok_or_else(|| Failure::Usage(format!("schema {} does not parse", declared.name)))?;
    if let Some(kind) = args.simulate {
        if kind.schema_name() != declared.name {
            return Err(Failure::Usage(format!(
                "--simulate {kind:?} makes {} records, but topic `{topic}` holds {}",
                kind.schema_name(),
                declared.name
            )));
        }
    }
    let sr = registry_settings(&topology.schema_registry.url)?;
    let registered_id = crate::codec::register_or_lookup(
        &sr,
        &topology.schema_registry.url,
        &format!("{topic}-value"),
        SuppliedSchema::new(
            Some(format!("br.com.fluxo.{}", declared.name)),
            SchemaType::Avro,
            declared.json.to_string(),
        ),
    )
    .await?;

    let mut cfg = crate::kafka::client_config(&topology)?;
    let idempotent = topology.runtime.idempotent_producer;
    cfg.set(
        "enable.idempotence",
        if idempotent { "true" } else { "false" },
    )
    .set(
        "max.in.flight.requests.per.connection",
        if idempotent { "5" } else { "1" },
    )
    .set("linger.ms", "5")
    .set("queue.buffering.max.messages", "200000");
    let producer: ThreadedProducer<Deliveries> = cfg
        .create_with_context(Deliveries::default())
        .map_err(|e| anyhow::anyhow!("creating the producer: {e}"))?;
    let sender = Sender {
        producer,
        topic: topic.clone(),
        schema_id: registered_id,
        schema,
    };
    let key_field = topic_cfg.key.clone();
    let started = Instant::now();

    let (sent, skipped, sender) = tokio::task::spawn_blocking(move || -> Result<_, Failure> {
        let pacer = Pacer {
            start: Instant::now(),
            rate: args.rate,
        };
        let (sent, skipped) = match args.simulate {
            Some(kind) => (send_simulated(&sender, kind, &args, &pacer)?, 0),
            None => send_lines(&sender, &args, key_field.as_deref(), &pacer)?,
        };
        Ok((sent, skipped, sender))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))??;

    let producer = sender.producer;
    tokio::task::spawn_blocking(move || {
        let _ = producer.flush(Duration::from_secs(60));
        let ctx = producer.context();
        let failed = ctx.failed.load(Ordering::Relaxed);
        let ok = ctx.ok.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "produced {ok} of {sent} records to {topic} in {secs:.1}s ({:.0}/s); {skipped} lines skipped; {failed} deliveries failed",
            ok as f64 / secs.max(1e-9)
        );
        if failed > 0 || ok < sent {
            return Err(Failure::Runtime(anyhow::anyhow!(
                "{} records were not acknowledged by the broker",
                sent - ok
            )));
        }
        Ok(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?
}

/// One line of `fluxo produce`'s input: its record key (the value of `key_field`, or empty) and
/// its Avro value for `schema`. Public for the fuzz target `json_to_avro`.
///
/// # Errors
/// The reason the line is skipped: not JSON, or not a value of `schema`.
pub fn json_line(
    schema: &Schema,
    line: &str,
    key_field: Option<&str>,
) -> Result<(String, Value), String> {
    serde_json::from_str::<serde_json::Value>(line)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|json| {
            let key = key_of(&json, key_field);
            json_to_value(schema, &json)
                .map(|v| (key, v))
                .map_err(|e| e.to_string())
        })
}

/// Send `args.count` records of simulated `kind`; returns how many were sent.
fn send_simulated(
    sender: &Sender,
    kind: SimKind,
    args: &ProduceArgs,
    pacer: &Pacer,
) -> Result<u64, Failure> {
    let bar = progress(Some(args.count));
    let seed = args.seed.unwrap_or_else(rand::random);
    let keys = args.keys.map(|k| usize::try_from(k).unwrap_or(usize::MAX));
    let mut sim = Simulator::with_keys(kind, seed, keys);
    // Paced runs stamp records with the wall clock. Flat-out runs spread event times
    // over the past (one record every 250 ms, ending now), so windows, lateness and
    // jumps "within minutes" mean what they would in a live feed.
    let step = 250;
    let first = crate::simulate::now_millis() - args.count as i64 * step;
    let mut sent = 0u64;
    for i in 0..args.count {
        pacer.wait(i);
        let now = if args.rate.is_some() {
            crate::simulate::now_millis()
        } else {
            first + i as i64 * step
        };
        let (key, value) = sim.next_record(now);
        sender.send(&key, value)?;
        sent += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(sent)
}

/// Send the JSON lines of `args.file` (stdin without one), keyed by `key_field`; returns how
/// many were sent and how many skipped (not JSON, or not valid for the schema). With
/// `--strict` the first bad line fails the run instead.
fn send_lines(
    sender: &Sender,
    args: &ProduceArgs,
    key_field: Option<&str>,
    pacer: &Pacer,
) -> Result<(u64, u64), Failure> {
    let reader: Box<dyn BufRead> = match &args.file {
        Some(f) => Box::new(std::io::BufReader::new(
            std::fs::File::open(f).map_err(|e| anyhow::anyhow!("opening {}: {e}", f.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let bar = progress(None);
    let (mut sent, mut skipped) = (0u64, 0u64);
    for (n, line) in reader.lines().enumerate() {
        let line_no = n + 1;
        let line = line.map_err(|e| anyhow::anyhow!("reading line {line_no}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = json_line(sender.schema, &line, key_field);
        match parsed {
            Ok((key, value)) => {
                pacer.wait(sent);
                sender.send(&key, value)?;
                sent += 1;
                bar.inc(1);
            }
            Err(e) if args.strict => {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "line {line_no}: {e} (aborting: --strict)"
                )));
            }
            Err(e) => {
                eprintln!("fluxo: line {line_no} skipped: {e}");
                skipped += 1;
            }
        }
    }
    bar.finish_and_clear();
    Ok((sent, skipped))
}

/// The record key: the value of the topic's key field, or empty.
fn key_of(json: &serde_json::Value, field: Option<&str>) -> String {
    match field.and_then(|f| json.get(f)) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => String::new(),
    }
}
