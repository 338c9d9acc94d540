//! `fluxo replay`: re-run one processor over a range of its inputs.
//!
//! # Namespaces
//! - `fresh` (default): the replay gets an id (`--id`, else the start time `YYYYMMDDHHMMSS`),
//!   its own state file `<data-dir>/replays/<id>.redb` (checkpoints under
//!   `<processor>.replay-<id>`), and its own topics: every output `T` goes to `T.replay-<id>`,
//!   every dead letter to `<input>.dlq.replay-<id>`, created on the fly with the partitions of
//!   the originals. Live state and live topics are not touched, and a running `fluxo up` does
//!   not stand in the way (its store file is not opened).
//! - `live`: rebuilds the live view. The processor's tables (`<kind>/...` and its view table)
//!   are dropped from the live store, its checkpoints are set to the start of the range, and the
//!   outputs go to the live topics (with the same `fluxo-id` headers as the first time, so
//!   consumers that drop duplicates drop them). The fence is the store file's lock: while the
//!   replay runs, no `fluxo up`/`run` can open the store, and a replay refuses to start while
//!   one holds it. After a rebuild, the live processor resumes from the end of the range.
//!
//! # Determinism
//! Processing time is the record's timestamp ([`Clock::RecordTime`]), and the input partitions
//! are replayed one after the other in `(topic, partition)` order, each stopping exactly at its
//! end offset, so two replays of one range produce the same records in the same order in every
//! output partition and leave the same state. Global tables (the blacklist) are read whole up to
//! the end of the range before the first input record.

pub mod diff;
pub mod progress;
pub mod range;

use crate::codec::{register_topic_schemas, registry_settings, Codec};
use crate::config::{ProcessorConfig, Topology};
use crate::engine::{self, Bounds, Clock, EngineSpec};
use crate::state::embedded::EmbeddedStore;
use crate::state::{Checkpoint, StateStore, WriteBatch};
use range::{Range, RangeError, Start};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a replay writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A separate namespace: own state file, own `.replay-<id>` topics.
    Fresh,
    /// The live view and live topics (needs `--confirm`).
    Live,
}

/// What to replay, as the command line asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// The processor's name in the topology.
    pub processor: String,
    /// Start of the range.
    pub start: Start,
    /// End of the range (epoch ms, exclusive); `None`: the high watermarks at start.
    pub to: Option<i64>,
    /// Where to write.
    pub target: Target,
    /// `--confirm` was given.
    pub confirm: bool,
    /// The what-if topology whose parameters the replay uses, if any.
    pub what_if: Option<Topology>,
    /// Compare the outputs with the live ones.
    pub diff: bool,
    /// The replay id (fresh only).
    pub id: Option<String>,
}

/// Why a replay failed.
#[derive(Debug)]
pub enum ReplayError {
    /// The request cannot be carried out as asked (exit 2).
    Usage(String),
    /// Something failed while running (exit 1).
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for ReplayError {
    fn from(e: anyhow::Error) -> Self {
        Self::Runtime(e)
    }
}

impl From<RangeError> for ReplayError {
    fn from(e: RangeError) -> Self {
        match e {
            RangeError::Usage(m) => Self::Usage(m),
            RangeError::Broker(e) => Self::Runtime(e),
        }
    }
}

/// What a finished replay did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The processor.
    pub processor: String,
    /// The replay id (`None` for a live rebuild).
    pub id: Option<String>,
    /// Input records read (the whole range).
    pub records_read: u64,
    /// Output records produced.
    pub records_emitted: u64,
    /// Records dead-lettered.
    pub records_dead_lettered: u64,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
    /// Where the outputs went.
    pub output_topics: Vec<String>,
    /// The state file.
    pub state: String,
    /// `(topic, partition, start, end)` of every replayed input partition.
    pub partitions: Vec<(String, i32, i64, i64)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "replay of {}{} done in {:.1}s",
            self.processor,
            self.id
                .as_deref()
                .map(|i| format!(" (id {i})"))
                .unwrap_or_else(|| " (live rebuild)".into()),
            self.elapsed_ms as f64 / 1000.0
        )?;
        writeln!(f, "  records read          {}", self.records_read)?;
        writeln!(f, "  records emitted       {}", self.records_emitted)?;
        writeln!(f, "  records dead-lettered {}", self.records_dead_lettered)?;
        writeln!(
            f,
            "  outputs               {}",
            self.output_topics.join(", ")
        )?;
        write!(f, "  state                 {}", self.state)
    }
}

/// The suffix of a fresh replay's topics.
pub fn topic_suffix(id: &str) -> String {
    format!(".replay-{id}")
}

/// The state file of a fresh replay.
pub fn state_path(topology: &Topology, id: &str) -> PathBuf {
    topology.data_dir.join("replays").join(format!("{id}.redb"))
}

fn check_id(id: &str) -> Result<(), ReplayError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ReplayError::Usage(format!(
            "--id `{id}`: use 1 to 64 letters, digits, `-` or `_`"
        )))
    }
}

/// The processor to run: the live one, with the what-if topology's parameters if given.
fn processor_config(live: &Topology, req: &Request) -> Result<ProcessorConfig, ReplayError> {
    let Some(p) = live.processors.get(&req.processor) else {
        return Err(ReplayError::Usage(format!(
            "no processor `{}` in {} (it has: {})",
            req.processor,
            live.source.display(),
            live.processors
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let mut config = p.clone();
    if let Some(other) = &req.what_if {
        let Some(o) = other.processors.get(&req.processor) else {
            return Err(ReplayError::Usage(format!(
                "the what-if topology {} has no processor `{}`",
                other.source.display(),
                req.processor
            )));
        };
        if o.kind != p.kind
            || o.inputs != p.inputs
            || o.outputs != p.outputs
            || o.global_inputs != p.global_inputs
        {
            return Err(ReplayError::Usage(format!(
                "the what-if topology {} must keep `{}`'s kind and topics; only its params may differ",
                other.source.display(),
                req.processor
            )));
        }
        config.params = o.params.clone();
    }
    Ok(config)
}

/// Check the request before touching anything.
fn check_request(req: &Request) -> Result<(), ReplayError> {
    if req.target == Target::Live {
        if !req.confirm {
            return Err(ReplayError::Usage(format!(
                "--into live drops and rebuilds the live state and view of `{}` and re-emits its outputs to the live topics; add --confirm to do it",
                req.processor
            )));
        }
        if req.what_if.is_some() || req.diff {
            return Err(ReplayError::Usage(
                "--topology OTHER.toml and --diff replay into a fresh namespace; drop --into live"
                    .into(),
            ));
        }
        if req.id.is_some() {
            return Err(ReplayError::Usage(
                "--id names a fresh replay; a live rebuild has none".into(),
            ));
        }
    }
    Ok(())
}

/// Sum of a counter of `processor` over every other label.
pub fn counter_sum(metric: &str, processor: &str) -> u64 {
    prometheus::gather()
        .iter()
        .filter(|f| f.name() == metric)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "processor" && l.value() == processor)
        })
        .map(|m| m.get_counter().value() as u64)
        .sum()
}

/// Input records of `range` checkpointed so far by the engine `name`.
fn done(name: &str, range: &Range) -> u64 {
    range
        .inputs
        .iter()
        .map(|((topic, partition), (start, end))| {
            let at = crate::metrics::CHECKPOINTED_OFFSET
                .with_label_values(&[name, topic, &partition.to_string()])
                .get();
            (at.clamp(*start, *end) - start) as u64
        })
        .sum()
}

/// Open the live store, failing clearly when a running fluxo holds it.
///
/// On the ScyllaDB backend nothing holds the store: the rebuild claims the processor's
/// partitions instead (see `replay`), which fences running instances.
fn open_live_store(topology: &Topology) -> Result<Arc<dyn StateStore>, ReplayError> {
    if topology.state.backend == crate::config::Backend::Scylla {
        let settings = topology
            .state
            .scylla()
            .map_err(|(key, message)| ReplayError::Usage(format!("`{key}`: {message}")))?;
        let store = crate::state::scylla::ScyllaStore::connect(&settings)
            .map_err(|e| ReplayError::Runtime(anyhow::anyhow!("{e}")))?;
        return Ok(Arc::new(store));
    }
    let path = topology.state_path();
    match EmbeddedStore::open_with_cache(&path, topology.state.cache_mb.unwrap_or(512)) {
        Ok(s) => Ok(Arc::new(s)),
        Err(e) if e.0.contains("already open") || e.0.contains("lock") => {
            Err(ReplayError::Runtime(anyhow::anyhow!(
                "the live store {} is in use by a running fluxo (up or run): stop it, then run the replay again (the store lock fences the live processor during a rebuild)",
                path.display()
            )))
        }
        Err(e) => Err(ReplayError::Runtime(anyhow::anyhow!("{e}"))),
    }
}

/// Run the replay described by `req` against `live` (the topology in production). Blocks; run
/// it off the async runtime. Setting `shutdown` stops it at the next checkpoint.
///
/// # Errors
/// [`ReplayError::Usage`] for a request that cannot be carried out (exit 2),
/// [`ReplayError::Runtime`] when the brokers, the registry or the store fail (exit 1).
pub fn run(
    live: &Topology,
    req: &Request,
    handle: &tokio::runtime::Handle,
    shutdown: Arc<AtomicBool>,
) -> Result<(Summary, Option<diff::Report>), ReplayError> {
    check_request(req)?;
    let config = processor_config(live, req)?;
    let range = range::resolve(live, &config, &req.start, req.to)?;
    if req.target == Target::Live {
        check_live_covers_every_partition(live, &req.processor, &config, &range)?;
    }
    let started = Instant::now();
    let id = match (&req.id, req.target) {
        (_, Target::Live) => None,
        (Some(id), _) => Some(id.clone()),
        (None, _) => Some(chrono::Utc::now().format("%Y%m%d%H%M%S").to_string()),
    };
    if let Some(id) = &id {
        check_id(id)?;
    }
    let suffix = id.as_deref().map(topic_suffix).unwrap_or_default();
    let name = match &id {
        Some(id) => format!("{}{}", config.name, topic_suffix(id)),
        None => config.name.clone(),
    };
    let output_topics: Vec<String> = config
        .outputs
        .iter()
        .map(|t| format!("{t}{suffix}"))
        .collect();

    // The store, emptied for this processor, with checkpoints at the start of the range.
    let (store, state) = match &id {
        Some(id) => fresh_store(live, &config, id, &suffix, handle)?,
        None => emptied_live_store(live, &config, &range)?,
    };
    write_start_offsets(&*store, &name, &range)?;

    let sr = registry_settings(&live.schema_registry.url)?;
    let ids = handle.block_on(register_topic_schemas(live, &sr))?;
    let engines = PartitionEngines {
        live,
        config: &config,
        range: &range,
        name: &name,
        suffix: &suffix,
        store,
        handle,
        sr: &sr,
        ids: &ids,
    };
    engines.run_in_order(&shutdown)?;
    let read = done(&name, &range);
    if shutdown.load(Ordering::SeqCst) {
        return Err(ReplayError::Runtime(anyhow::anyhow!(
            "interrupted after {read} of {} records; run the replay again to start over",
            range.total()
        )));
    }
    let summary = Summary {
        processor: config.name.clone(),
        id: id.clone(),
        records_read: read,
        records_emitted: counter_sum("fluxo_records_out_total", &name),
        records_dead_lettered: counter_sum("fluxo_records_dead_lettered_total", &name),
        elapsed_ms: started.elapsed().as_millis() as u64,
        output_topics: output_topics.clone(),
        state: state.display().to_string(),
        partitions: range
            .inputs
            .iter()
            .map(|((t, p), (s, e))| (t.clone(), *p, *s, *e))
            .collect(),
    };
    let report = if req.diff {
        let codec = Codec::new(handle.clone(), sr, ids);
        Some(diff::compare(live, &config, &range, &suffix, codec)?)
    } else {
        None
    };
    Ok((summary, report))
}

/// `--into live` rebuilds the whole view, so the range must start every input partition.
fn check_live_covers_every_partition(
    live: &Topology,
    processor: &str,
    config: &ProcessorConfig,
    range: &Range,
) -> Result<(), ReplayError> {
    let all = live
        .processors
        .get(processor)
        .map(|p| p.inputs.len())
        .unwrap_or(0);
    let listed: std::collections::BTreeSet<&String> = range.inputs.keys().map(|(t, _)| t).collect();
    let partitions = live
        .topics
        .iter()
        .filter(|(t, _)| config.inputs.contains(t))
        .map(|(_, c)| c.partitions as usize)
        .sum::<usize>();
    if listed.len() != all || range.inputs.len() < partitions {
        return Err(ReplayError::Usage(
            "--into live rebuilds the whole view: give a start for every input partition, or a time, or `beginning`".into(),
        ));
    }
    Ok(())
}

/// The store of a fresh replay `id`: its topics created, an empty embedded store of its own.
fn fresh_store(
    live: &Topology,
    config: &ProcessorConfig,
    id: &str,
    suffix: &str,
    handle: &tokio::runtime::Handle,
) -> Result<(Arc<dyn StateStore>, PathBuf), ReplayError> {
    handle.block_on(create_replay_topics(live, config, suffix))?;
    let path = state_path(live, id);
    if path.exists() {
        std::fs::remove_file(&path)
            .map_err(|e| anyhow::anyhow!("cannot reset {}: {e}", path.display()))?;
    }
    let store = EmbeddedStore::open(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((Arc::new(store), path))
}

/// The live store, its partitions claimed and the processor's state and view dropped (a live
/// rebuild), and where it is (for the summary).
fn emptied_live_store(
    live: &Topology,
    config: &ProcessorConfig,
    range: &Range,
) -> Result<(Arc<dyn StateStore>, PathBuf), ReplayError> {
    let store = open_live_store(live)?;
    // On a shared store, take the processor's partitions first: running instances'
    // commits are refused from here on (the embedded store's file lock refused this
    // rebuild already while one runs).
    let partitions: Vec<(String, i32)> = range.inputs.keys().cloned().collect();
    store
        .claim(&config.name, &partitions)
        .map_err(|e| anyhow::anyhow!("claiming the live partitions: {e}"))?;
    store
        .drop_namespace(crate::catalog::StoreNamespace::new(config.kind, &config.name).prefix())
        .and_then(|()| store.drop_namespace(config.kind.view()))
        .map_err(|e| anyhow::anyhow!("dropping the live state: {e}"))?;
    let state = match live.state.backend {
        crate::config::Backend::Scylla => PathBuf::from(format!(
            "scylla keyspace {}",
            live.state.keyspace.as_deref().unwrap_or("fluxo")
        )),
        crate::config::Backend::Embedded => live.state_path(),
    };
    Ok((store, state))
}

/// Checkpoint `name` at the start of the range: every input partition at its start, every
/// global partition at its low watermark.
fn write_start_offsets(
    store: &dyn StateStore,
    name: &str,
    range: &Range,
) -> Result<(), ReplayError> {
    let mut batch = WriteBatch::new();
    let positions = range
        .inputs
        .iter()
        .map(|(k, (s, _))| (k, *s))
        .chain(range.globals.iter().map(|(k, (low, _))| (k, *low)));
    for ((topic, partition), next_offset) in positions {
        batch.checkpoints.push(Checkpoint {
            processor: name.to_string(),
            topic: topic.clone(),
            partition: *partition,
            next_offset,
        });
    }
    store
        .commit(batch)
        .map_err(|e| anyhow::anyhow!("writing the start offsets: {e}"))?;
    Ok(())
}

/// The bounded engine runs of a replay: one per input partition, in order.
struct PartitionEngines<'a> {
    live: &'a Topology,
    config: &'a ProcessorConfig,
    range: &'a Range,
    /// The replay's processor name (checkpoints, metrics).
    name: &'a str,
    /// Appended to every produced topic.
    suffix: &'a str,
    store: Arc<dyn StateStore>,
    /// What each engine's codec is built from (one codec per engine thread).
    handle: &'a tokio::runtime::Handle,
    sr: &'a schema_registry_converter::async_impl::schema_registry::SrSettings,
    ids: &'a std::collections::HashMap<String, u32>,
}

impl PartitionEngines<'_> {
    /// Run an engine over each input partition's range in turn (skipping empty ranges, and
    /// everything once `shutdown` is set), reporting progress.
    fn run_in_order(&self, shutdown: &Arc<AtomicBool>) -> Result<(), ReplayError> {
        let mut progress = progress::Progress::new(self.range.total());
        for ((topic, partition), (start, end)) in &self.range.inputs {
            if start >= end || shutdown.load(Ordering::SeqCst) {
                continue;
            }
            self.run_one(topic, *partition, *end, shutdown, &mut progress)?;
        }
        progress.finish(done(self.name, self.range));
        Ok(())
    }

    /// Run the engine over `topic:partition` up to `end` (and the global tables up to theirs).
    fn run_one(
        &self,
        topic: &str,
        partition: i32,
        end: i64,
        shutdown: &Arc<AtomicBool>,
        progress: &mut progress::Progress,
    ) -> Result<(), ReplayError> {
        let codec = Codec::new(self.handle.clone(), self.sr.clone(), self.ids.clone());
        let job = crate::jobs::build(self.config, codec)?;
        let mut ends: BTreeMap<(String, i32), i64> = self
            .range
            .globals
            .iter()
            .map(|(k, (_, e))| (k.clone(), *e))
            .collect();
        ends.insert((topic.to_string(), partition), end);
        let spec = EngineSpec {
            inputs: self.config.inputs.clone(),
            global_inputs: self.config.global_inputs.clone(),
            name: self.name.to_string(),
            job,
            store: self.store.clone(),
            clock: Clock::RecordTime,
            freshness: None,
            started: Arc::new(AtomicBool::new(false)),
            bounds: Some(Bounds {
                ends,
                topic_suffix: self.suffix.to_string(),
            }),
        };
        let topo = self.live.clone();
        let flag = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fluxo-replay-{partition}"))
            .spawn(move || engine::run(&topo, spec, flag))
            .map_err(|e| anyhow::anyhow!("starting the engine: {e}"))?;
        while !thread.is_finished() {
            progress.update(done(self.name, self.range));
            std::thread::sleep(Duration::from_millis(200));
        }
        match thread.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ReplayError::Runtime(
                e.context(format!("replaying {topic}:{partition}")),
            )),
            Err(_) => Err(ReplayError::Runtime(anyhow::anyhow!(
                "the replay engine panicked"
            ))),
        }
    }
}

/// Create the topics of a fresh replay (outputs and dead-letter topics, with `suffix`), with
/// the partitions of the originals.
async fn create_replay_topics(
    live: &Topology,
    config: &ProcessorConfig,
    suffix: &str,
) -> Result<(), ReplayError> {
    let all: BTreeMap<String, crate::config::TopicConfig> = live.all_topics().into_iter().collect();
    let dlqs = config
        .inputs
        .iter()
        .chain(&config.global_inputs)
        .map(|t| Topology::dlq_topic(t));
    let mut topics = BTreeMap::new();
    for t in config.outputs.iter().cloned().chain(dlqs) {
        if let Some(c) = all.get(&t) {
            topics.insert(format!("{t}{suffix}"), c.clone());
        }
    }
    let mut t = live.clone();
    t.topics = topics;
    t.processors.clear();
    crate::kafka::create_topics(&t).await?;
    // Reusing an id whose outputs already hold records would mix two replays.
    let output = format!("{}{suffix}", config.outputs[0]);
    let used = diff::records_in(live, &output)?;
    if used > 0 {
        return Err(ReplayError::Usage(format!(
            "replay id `{}` was used before ({output} holds {used} records); pick another --id",
            suffix.trim_start_matches(".replay-"),
        )));
    }
    Ok(())
}
