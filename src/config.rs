//! `topology.toml`: brokers, schema registry, state backend, topics and processors.
//!
//! The pipeline is configured by this file alone, with `FLUXO_*` environment variables
//! overriding addresses and secrets (see [`Overrides`]). Loading validates everything a
//! processor will need at start, so a bad key fails with an error naming the key and its line
//! instead of a panic later.

use crate::catalog::{Kind, ParamError, Params};
use fluxo_processors::config::DurationMs;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A configuration problem, naming the key and (when known) the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the error is in.
    pub file: String,
    /// Dotted key, e.g. `processors.price-change.params.window`.
    pub key: String,
    /// 1-based line, when the key can be located.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: `{}`: {}",
                self.file, line, self.key, self.message
            ),
            None => write!(f, "{}: `{}`: {}", self.file, self.key, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `[kafka]`: how to reach the brokers.
///
/// Its `Debug` output hides the values of secret client settings (see [`is_secret_setting`]).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list (`FLUXO_BOOTSTRAP_SERVERS` overrides).
    #[serde(default = "default_bootstrap")]
    pub bootstrap_servers: String,
    /// Consumer groups are named `<group_prefix>-<processor>` (default `fluxo`); separate
    /// deployments sharing a cluster use different prefixes.
    #[serde(default = "default_group_prefix")]
    pub group_prefix: String,
    /// librdkafka settings passed through to every client (SASL, SSL, compression, rack…).
    /// A value of the form `env:NAME` is read from the environment variable NAME.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
}

/// True for librdkafka settings whose value is a secret (passwords, keys, JAAS and OAuth
/// configuration): their values are never printed, and a value written in clear (not
/// `env:NAME`) draws a warning at start.
pub fn is_secret_setting(key: &str) -> bool {
    const MARKERS: [&str; 5] = [
        "password",
        "secret",
        "jaas",
        "key.pem",
        "oauthbearer.config",
    ];
    let key = key.to_ascii_lowercase();
    MARKERS.iter().any(|m| key.contains(m))
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client: BTreeMap<&str, &str> = self
            .client
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_setting(k) && !v.starts_with("env:") {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_prefix", &self.group_prefix)
            .field("client", &client)
            .finish()
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: default_bootstrap(),
            group_prefix: default_group_prefix(),
            client: BTreeMap::new(),
        }
    }
}

fn default_group_prefix() -> String {
    "fluxo".into()
}

fn default_bootstrap() -> String {
    "127.0.0.1:9092".into()
}

/// `[schema_registry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL of a Confluent-compatible registry (`FLUXO_SCHEMA_REGISTRY_URL` overrides).
    #[serde(default = "default_registry_url")]
    pub url: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: default_registry_url(),
        }
    }
}

fn default_registry_url() -> String {
    "http://127.0.0.1:8081".into()
}

/// Which state backend holds processor state, checkpoints and views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded, persistent engine (redb) under the data directory.
    #[default]
    Embedded,
    /// A ScyllaDB cluster.
    Scylla,
}

/// `[state]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `embedded` (default) or `scylla`.
    #[serde(default)]
    pub backend: Backend,
    /// File of the embedded engine, relative to the data directory.
    #[serde(default)]
    pub path: Option<String>,
    /// Page cache of the embedded engine in MiB (default 512); views larger than it are
    /// served from the OS page cache.
    #[serde(default)]
    pub cache_mb: Option<usize>,
    /// ScyllaDB contact points, `host:port` or `host` (port 9042); `FLUXO_SCYLLA_NODES`
    /// (comma-separated) overrides.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// ScyllaDB keyspace (default `fluxo`), created at start if missing.
    #[serde(default)]
    pub keyspace: Option<String>,
    /// Replication of the keyspace when fluxo creates it: `{ class = "NetworkTopologyStrategy",
    /// dc1 = 3 }`, `{ class = "SimpleStrategy", replication_factor = 1 }` or
    /// `{ replication_factor = 3 }` (NetworkTopologyStrategy in every DC). Default
    /// NetworkTopologyStrategy with replication factor 3.
    #[serde(default)]
    pub replication: Option<toml::Table>,
    /// Consistency of every read and write (default `LOCAL_QUORUM`). Effectively-once needs
    /// reads that see every acknowledged write: `LOCAL_QUORUM`, `QUORUM`, `EACH_QUORUM` or `ALL`.
    #[serde(default)]
    pub consistency: Option<String>,
    /// The datacenter this instance runs in: requests go to its nodes first (token-aware).
    #[serde(default)]
    pub local_dc: Option<String>,
    /// Most CQL requests in flight per store (default 64).
    #[serde(default)]
    pub max_concurrency: Option<usize>,
}

/// The CQL consistency levels `state.consistency` accepts.
pub const CONSISTENCY_LEVELS: [&str; 8] = [
    "ONE",
    "TWO",
    "THREE",
    "QUORUM",
    "ALL",
    "LOCAL_QUORUM",
    "EACH_QUORUM",
    "LOCAL_ONE",
];

/// Replication of the ScyllaDB keyspace, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy` with a replication factor (single-DC, development).
    Simple(u32),
    /// `NetworkTopologyStrategy` with one replication factor for every DC.
    EveryDc(u32),
    /// `NetworkTopologyStrategy` with a replication factor per named DC.
    PerDc(BTreeMap<String, u32>),
}

impl Replication {
    /// The CQL replication map, e.g. `{'class': 'NetworkTopologyStrategy', 'dc1': 3}`.
    pub fn to_cql(&self) -> String {
        match self {
            Self::Simple(rf) => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}")
            }
            Self::EveryDc(rf) => {
                format!("{{'class': 'NetworkTopologyStrategy', 'replication_factor': {rf}}}")
            }
            Self::PerDc(dcs) => {
                let mut s = String::from("{'class': 'NetworkTopologyStrategy'");
                for (dc, rf) in dcs {
                    s.push_str(&format!(", '{dc}': {rf}"));
                }
                s.push('}');
                s
            }
        }
    }
}

/// `[state]` settings of the ScyllaDB backend, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaSettings {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// Keyspace name (a CQL identifier).
    pub keyspace: String,
    /// Replication used when creating the keyspace.
    pub replication: Replication,
    /// One of [`CONSISTENCY_LEVELS`].
    pub consistency: String,
    /// Preferred datacenter.
    pub local_dc: Option<String>,
    /// Most requests in flight.
    pub max_concurrency: usize,
}

/// A CQL identifier fluxo accepts unquoted: a letter, then letters, digits or `_` (48 at most).
fn is_cql_identifier(s: &str) -> bool {
    s.len() <= 48
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A datacenter name: letters, digits, `_`, `-` and `.` (it is quoted inside CQL).
fn is_dc_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl StateConfig {
    /// The ScyllaDB settings, validated; `Err((key, message))` names the offending key.
    ///
    /// # Errors
    /// When a node, the keyspace, the replication, the consistency or `local_dc` is invalid.
    pub fn scylla(&self) -> Result<ScyllaSettings, (String, String)> {
        let bad = |key: &str, message: String| Err((format!("state.{key}"), message));
        if self.nodes.is_empty() {
            return bad(
                "nodes",
                "the scylla backend needs at least one node (or FLUXO_SCYLLA_NODES)".into(),
            );
        }
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let (host, port) = match node.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(':') => (h, Some(p)),
                _ => (node.as_str(), None),
            };
            if host.trim().is_empty() || host.contains(char::is_whitespace) {
                return bad("nodes", format!("`{node}` is not a host or host:port"));
            }
            match port {
                Some(p) if p.parse::<u16>().map_or(true, |p| p == 0) => {
                    return bad("nodes", format!("`{node}`: `{p}` is not a port"));
                }
                Some(_) => nodes.push(node.clone()),
                None => nodes.push(format!("{host}:9042")),
            }
        }
        let keyspace = self.keyspace.clone().unwrap_or_else(|| "fluxo".into());
        if !is_cql_identifier(&keyspace) {
            return bad(
                "keyspace",
                format!("`{keyspace}` is not a keyspace name (a letter, then letters, digits or _; 48 at most)"),
            );
        }
        let replication = match &self.replication {
            None => Replication::EveryDc(3),
            Some(table) => parse_replication(table).map_err(|m| ("state.replication".into(), m))?,
        };
        let consistency = self
            .consistency
            .as_deref()
            .unwrap_or("LOCAL_QUORUM")
            .to_ascii_uppercase();
        if !CONSISTENCY_LEVELS.contains(&consistency.as_str()) {
            return bad(
                "consistency",
                format!(
                    "`{consistency}` is not a consistency level; known: {}",
                    CONSISTENCY_LEVELS.join(", ")
                ),
            );
        }
        if let Some(dc) = &self.local_dc {
            if !is_dc_name(dc) {
                return bad("local_dc", format!("`{dc}` is not a datacenter name"));
            }
        }
        let max_concurrency = self.max_concurrency.unwrap_or(64);
        if max_concurrency == 0 {
            return bad("max_concurrency", "must be at least 1".into());
        }
        Ok(ScyllaSettings {
            nodes,
            keyspace,
            replication,
            consistency,
            local_dc: self.local_dc.clone(),
            max_concurrency,
        })
    }
}

/// `state.replication` as written -> [`Replication`].
fn parse_replication(table: &toml::Table) -> Result<Replication, String> {
    let factor = |key: &str, v: &toml::Value| match v.as_integer() {
        Some(n) if (1..=100).contains(&n) => Ok(n as u32),
        _ => Err(format!(
            "`{key}` must be a replication factor from 1 to 100, got {v}"
        )),
    };
    let class = match table.get("class") {
        None => None,
        Some(toml::Value::String(c)) => Some(c.as_str()),
        Some(v) => return Err(format!("`class` must be a string, got {v}")),
    };
    let rf = table
        .get("replication_factor")
        .map(|v| factor("replication_factor", v))
        .transpose()?;
    let dcs = table
        .iter()
        .filter(|(k, _)| *k != "class" && *k != "replication_factor")
        .map(|(k, v)| {
            if !is_dc_name(k) {
                return Err(format!("`{k}` is not a datacenter name"));
            }
            Ok((k.clone(), factor(k, v)?))
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    match (class.unwrap_or("NetworkTopologyStrategy"), rf, dcs.is_empty()) {
        ("SimpleStrategy", Some(rf), true) => Ok(Replication::Simple(rf)),
        ("SimpleStrategy", _, _) => {
            Err("SimpleStrategy takes `replication_factor` and nothing else".into())
        }
        ("NetworkTopologyStrategy", Some(rf), true) => Ok(Replication::EveryDc(rf)),
        ("NetworkTopologyStrategy", None, false) => Ok(Replication::PerDc(dcs)),
        ("NetworkTopologyStrategy", _, _) => Err(
            "NetworkTopologyStrategy takes either `replication_factor` or one factor per datacenter (dc1 = 3)"
                .into(),
        ),
        (other, _, _) => Err(format!(
            "unknown class `{other}`; use NetworkTopologyStrategy or SimpleStrategy"
        )),
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the query API, `/healthz` and `/metrics` (`FLUXO_HTTP_ADDR` overrides).
    #[serde(default = "default_http_addr")]
    pub addr: String,
    /// Longest a query API request waits for the state store's reads before it answers 503
    /// (`FLUXO_HTTP_READ_TIMEOUT` overrides; default 5 s). A stalled store (a frozen node keeps
    /// its connections open) otherwise holds the request for the driver's own timeouts and
    /// retries, tens of seconds.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: DurationMs,
    /// Most query API store reads running at once (`FLUXO_HTTP_MAX_READS_IN_FLIGHT` overrides;
    /// default 128). A read abandoned at `read_timeout` keeps its thread until the store answers,
    /// so without a bound a stalled store piles up a thread per request; past the bound a
    /// request is answered 503 with `Retry-After` at once.
    #[serde(default = "default_max_reads_in_flight")]
    pub max_reads_in_flight: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: default_http_addr(),
            read_timeout: default_read_timeout(),
            max_reads_in_flight: default_max_reads_in_flight(),
        }
    }
}

fn default_http_addr() -> String {
    "127.0.0.1:8080".into()
}

fn default_read_timeout() -> DurationMs {
    DurationMs(5_000)
}

/// Twice the 64 connections of the API load bench (benches/README.md): a healthy store's reads
/// take well under a millisecond, so only a stalled store brings the count near it.
fn default_max_reads_in_flight() -> usize {
    128
}

/// `[runtime]`: checkpointing and backpressure.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Longest time between two checkpoints.
    pub checkpoint_interval: DurationMs,
    /// Most records processed between two checkpoints.
    pub checkpoint_max_records: usize,
    /// Most records handed to a processor in one batch.
    pub max_batch: usize,
    /// Most produced records waiting for acknowledgement (bounded memory).
    pub max_in_flight: usize,
    /// How long a checkpoint waits for outstanding produce acknowledgements.
    pub produce_timeout: DurationMs,
    /// `fetch.wait.max.ms` of the consumers. Kafka answers a fetch as soon as data arrives, so
    /// this only bounds how long an idle fetch waits.
    pub fetch_wait_max: DurationMs,
    /// Consumer group session timeout: how long the broker waits for a silent member before it
    /// hands that member's partitions to the others.
    pub session_timeout: DurationMs,
    /// How input partitions are shared between instances: `group` (Kafka consumer groups,
    /// rebalancing as instances come and go) or `static` (this instance takes the partitions
    /// `p` with `p % instances == instance`, like Flink's Kafka source; no group coordinator
    /// involved). Offsets come from the state store either way.
    pub assignment: Assignment,
    /// Whether fluxo's producers are idempotent (`enable.idempotence`, default true). fluxo's
    /// guarantees do not depend on it (outputs carry deterministic ids); without it, one request
    /// in flight keeps retried batches in order, at a cost in throughput.
    pub idempotent_producer: bool,
    /// This instance's number, from 0: part of its `transactional.id` (distinct per instance,
    /// stable across its restarts) and, with `static` assignment, its share of the partitions.
    pub instance: u32,
    /// With `static` assignment: how many instances share the partitions.
    pub instances: u32,
    /// `effectively_once` (default: state and offsets committed together in the store, outputs
    /// deduplicated downstream by their `fluxo-id`) or `exactly_once` (Kafka transactions: the
    /// outputs and the input offsets of each checkpoint commit in one transaction; needs brokers
    /// with transactions, see [`crate::transactions`]).
    pub processing_guarantee: ProcessingGuarantee,
    /// How long an engine keeps retrying a state store that fails (down, unreachable) before it
    /// stops with an error (exit 1), so that a supervisor restarts it or someone is paged. While
    /// it retries nothing is committed: state is never applied without its offsets.
    pub store_patience: DurationMs,
}

/// What a crash can do to the outputs (see [`RuntimeConfig::processing_guarantee`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingGuarantee {
    /// Outputs may repeat after a crash, with the same `fluxo-id`; state is never applied twice.
    #[default]
    EffectivelyOnce,
    /// Outputs and input offsets commit in one Kafka transaction; `read_committed` consumers see
    /// each output once.
    ExactlyOnce,
}

/// How input partitions are assigned (see [`RuntimeConfig::assignment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Assignment {
    /// Kafka consumer groups.
    #[default]
    Group,
    /// A fixed share of the partitions per instance.
    Static,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            checkpoint_interval: DurationMs(200),
            checkpoint_max_records: 20_000,
            max_batch: 500,
            max_in_flight: 100_000,
            produce_timeout: DurationMs(30_000),
            fetch_wait_max: DurationMs(100),
            session_timeout: DurationMs(30_000),
            assignment: Assignment::Group,
            idempotent_producer: true,
            instance: 0,
            instances: 1,
            processing_guarantee: ProcessingGuarantee::EffectivelyOnce,
            store_patience: DurationMs(crate::engine::CHECKPOINT_READ_PATIENCE.as_millis() as i64),
        }
    }
}

/// Kafka `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CleanupPolicy {
    /// Delete segments older than the retention.
    Delete,
    /// Keep the latest record per key.
    Compact,
}

impl CleanupPolicy {
    /// The Kafka config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
        }
    }
}

/// `[topics.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Number of partitions.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// `delete` (default) or `compact`.
    #[serde(default = "default_cleanup")]
    pub cleanup_policy: CleanupPolicy,
    /// Retention (`"7d"`); absent means the broker default.
    #[serde(default)]
    pub retention: Option<DurationMs>,
    /// The event schema (record name, e.g. `AssetPrice`) of the values.
    pub schema: String,
    /// The value field whose content is the record key (`fluxo produce` keys JSON lines by it).
    #[serde(default)]
    pub key: Option<String>,
    /// Replicas per partition when fluxo creates the topic; absent means the broker's
    /// `default.replication.factor` (1 on the development broker, 3 on a production cluster),
    /// so one topology serves both.
    #[serde(default)]
    pub replication_factor: Option<i32>,
}

fn default_partitions() -> i32 {
    3
}

fn default_cleanup() -> CleanupPolicy {
    CleanupPolicy::Delete
}

/// `[processors.<name>]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcessor {
    kind: Option<Spanned<String>>,
    inputs: Spanned<Vec<String>>,
    #[serde(default)]
    global_inputs: Option<Spanned<Vec<String>>>,
    outputs: Spanned<Vec<String>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    params: Option<Spanned<toml::Table>>,
}

/// A processor as validated.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Its name (consumer group `fluxo-<name>`, metric label).
    pub name: String,
    /// Which implementation.
    pub kind: Kind,
    /// Input topics consumed in the group.
    pub inputs: Vec<String>,
    /// Topics every instance reads whole, as a table (e.g. the blacklist).
    pub global_inputs: Vec<String>,
    /// Output topics.
    pub outputs: Vec<String>,
    /// Whether `fluxo up`/`run` start it.
    pub enabled: bool,
    /// The implementation's parameters, parsed and validated.
    pub params: Params,
}

/// Check that a processor's inputs and outputs hold the schemas its kind reads and writes.
fn check_shape(
    config: &ProcessorConfig,
    topics: &BTreeMap<String, TopicConfig>,
) -> Result<(), ParamError> {
    let shape = config.kind.shape();
    let check = |field: &str, list: &[String], schema: &str, exactly_one: bool| {
        if exactly_one && list.len() != 1 {
            return Err(ParamError {
                key: field.into(),
                message: format!("needs exactly one topic, got {}", list.len()),
            });
        }
        for t in list {
            let found = topics.get(t).map(|c| c.schema.as_str()).unwrap_or_default();
            if found != schema {
                return Err(ParamError {
                    key: field.into(),
                    message: format!(
                        "topic `{t}` holds `{found}`, this processor needs `{schema}`"
                    ),
                });
            }
        }
        Ok(())
    };
    check("inputs", &config.inputs, shape.input, shape.single_input)?;
    check("outputs", &config.outputs, shape.output, true)?;
    match shape.global_input {
        Some(schema) => check("global_inputs", &config.global_inputs, schema, false),
        None if !config.global_inputs.is_empty() => Err(ParamError {
            key: "global_inputs".into(),
            message: format!("`{}` reads no global table", config.kind),
        }),
        None => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    kafka: KafkaConfig,
    #[serde(default)]
    schema_registry: RegistryConfig,
    #[serde(default)]
    state: StateConfig,
    #[serde(default)]
    http: HttpConfig,
    #[serde(default)]
    runtime: RuntimeConfig,
    #[serde(default)]
    topics: BTreeMap<String, Spanned<TopicConfig>>,
    #[serde(default)]
    processors: BTreeMap<String, Spanned<RawProcessor>>,
    #[serde(default)]
    notifiers: BTreeMap<String, Spanned<crate::notifier::config::RawNotifier>>,
}

/// Turns a key and a byte span of the topology text into a [`ConfigError`] with its line.
struct Locator<'a> {
    text: &'a str,
    file: &'a str,
}

impl Locator<'_> {
    /// The error at `key` (and the line of `span`, when known).
    fn err(
        &self,
        key: String,
        span: Option<std::ops::Range<usize>>,
        message: String,
    ) -> ConfigError {
        let line_of = |offset: usize| {
            self.text[..offset.min(self.text.len())]
                .matches('\n')
                .count()
                + 1
        };
        ConfigError {
            file: self.file.to_string(),
            key,
            line: span.map(|s| line_of(s.start)),
            message,
        }
    }
}

/// `FLUXO_HTTP_MAX_READS_IN_FLIGHT` over `[http] max_reads_in_flight`, which must be at least 1.
fn apply_max_reads_in_flight(
    http: &mut HttpConfig,
    overrides: &Overrides,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let key = || "http.max_reads_in_flight".to_string();
    if let Some(v) = &overrides.http_max_reads_in_flight {
        http.max_reads_in_flight = v.trim().parse().map_err(|_| {
            loc.err(
                key(),
                None,
                format!("FLUXO_HTTP_MAX_READS_IN_FLIGHT: `{v}` is not a whole number"),
            )
        })?;
    }
    if http.max_reads_in_flight == 0 {
        return Err(loc.err(key(), None, "must be at least 1".into()));
    }
    Ok(())
}

/// The `[topics]`: at least one partition each, a known schema.
fn parse_topics(
    raw: BTreeMap<String, Spanned<TopicConfig>>,
    loc: &Locator<'_>,
) -> Result<BTreeMap<String, TopicConfig>, ConfigError> {
    let mut topics = BTreeMap::new();
    for (name, spanned) in raw {
        let span = spanned.span();
        let topic = spanned.into_inner();
        if topic.partitions < 1 {
            return Err(loc.err(
                format!("topics.{name}.partitions"),
                Some(span),
                format!("must be at least 1, got {}", topic.partitions),
            ));
        }
        if topic.replication_factor.is_some_and(|rf| rf < 1) {
            return Err(loc.err(
                format!("topics.{name}.replication_factor"),
                Some(span),
                "must be at least 1 (or absent: the broker's default)".into(),
            ));
        }
        if crate::avro::schemas::schema_for(&topic.schema).is_none() {
            return Err(loc.err(
                format!("topics.{name}.schema"),
                Some(span),
                format!(
                    "unknown schema `{}`; known: {}",
                    topic.schema,
                    crate::avro::schemas::all()
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        topics.insert(name, topic);
    }

    Ok(topics)
}

/// One `[processors.<name>]`: its kind, declared topics, parameters and shape.
fn parse_processor(
    name: &str,
    spanned: Spanned<RawProcessor>,
    topics: &BTreeMap<String, TopicConfig>,
    loc: &Locator<'_>,
) -> Result<ProcessorConfig, ConfigError> {
    let span = spanned.span();
    let p = spanned.into_inner();
    let kind = match &p.kind {
        Some(k) => (k.get_ref().clone(), Some(k.span())),
        None => (name.to_string(), Some(span.clone())),
    };
    let kind = match kind.0.parse::<Kind>() {
        Ok(k) => k,
        Err(message) => return Err(loc.err(format!("processors.{name}.kind"), kind.1, message)),
    };
    let check_topics = |field: &str, list: &Spanned<Vec<String>>| {
        if let Some(missing) = list.get_ref().iter().find(|t| !topics.contains_key(*t)) {
            return Err(loc.err(
                format!("processors.{name}.{field}"),
                Some(list.span()),
                format!("topic `{missing}` is not declared under [topics]"),
            ));
        }
        Ok(())
    };
    check_topics("inputs", &p.inputs)?;
    check_topics("outputs", &p.outputs)?;
    if let Some(g) = &p.global_inputs {
        check_topics("global_inputs", g)?;
    }
    if p.inputs.get_ref().is_empty() {
        return Err(loc.err(
            format!("processors.{name}.inputs"),
            Some(p.inputs.span()),
            "a processor needs at least one input topic".into(),
        ));
    }
    let params_span = p.params.as_ref().map(|s| s.span());
    let table = p.params.map(|s| s.into_inner()).unwrap_or_default();
    let in_params = |e: ParamError| {
        loc.err(
            format!("processors.{name}.{}", e.key),
            params_span.clone().or(Some(span.clone())),
            e.message,
        )
    };
    let params = Params::parse(kind, &table).map_err(in_params)?;
    let config = ProcessorConfig {
        name: name.to_string(),
        kind,
        inputs: p.inputs.into_inner(),
        global_inputs: p.global_inputs.map(|g| g.into_inner()).unwrap_or_default(),
        outputs: p.outputs.into_inner(),
        enabled: p.enabled.unwrap_or(true),
        params,
    };
    check_shape(&config, topics).map_err(|e| {
        loc.err(
            format!("processors.{name}.{}", e.key),
            Some(span.clone()),
            e.message,
        )
    })?;
    Ok(config)
}

/// The `[notifiers]`, validated against the topics; an engine name may not be a processor's.
fn parse_notifiers(
    raw: BTreeMap<String, Spanned<crate::notifier::config::RawNotifier>>,
    topics: &BTreeMap<String, TopicConfig>,
    processors: &BTreeMap<String, ProcessorConfig>,
    loc: &Locator<'_>,
) -> Result<BTreeMap<String, crate::notifier::config::NotifierConfig>, ConfigError> {
    let mut notifiers = BTreeMap::new();
    for (name, spanned) in raw {
        let span = spanned.span();
        let config = spanned.into_inner().validate(&name, topics).map_err(|e| {
            loc.err(
                format!("notifiers.{name}.{}", e.key),
                Some(span.clone()),
                e.message,
            )
        })?;
        if processors.contains_key(&config.engine_name()) {
            return Err(loc.err(
                format!("notifiers.{name}"),
                Some(span),
                format!(
                    "its engine name `{}` is taken by a processor",
                    config.engine_name()
                ),
            ));
        }
        notifiers.insert(name, config);
    }

    Ok(notifiers)
}

/// `[runtime]`: the instance numbering and batch sizes.
fn check_runtime(runtime: &RuntimeConfig, loc: &Locator<'_>) -> Result<(), ConfigError> {
    // `instances` splits the partitions in static assignment only; with consumer groups
    // `instance` just names the instance (its transactional.id).
    if runtime.instances == 0
        || (runtime.assignment == Assignment::Static && runtime.instance >= runtime.instances)
    {
        return Err(loc.err(
            "runtime.instance".into(),
            None,
            format!(
                "instance {} is not below instances {}",
                runtime.instance, runtime.instances
            ),
        ));
    }
    if runtime.max_batch == 0 || runtime.checkpoint_max_records == 0 {
        return Err(loc.err(
            "runtime".into(),
            None,
            "max_batch and checkpoint_max_records must be at least 1".into(),
        ));
    }
    Ok(())
}

/// The whole, validated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Where it was read from.
    pub source: PathBuf,
    /// `[kafka]`.
    pub kafka: KafkaConfig,
    /// `[schema_registry]`.
    pub schema_registry: RegistryConfig,
    /// `[state]`.
    pub state: StateConfig,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[runtime]`.
    pub runtime: RuntimeConfig,
    /// Declared topics by name.
    pub topics: BTreeMap<String, TopicConfig>,
    /// Processors by name.
    pub processors: BTreeMap<String, ProcessorConfig>,
    /// Webhook notifiers by name (`[notifiers.<name>]`).
    pub notifiers: BTreeMap<String, crate::notifier::config::NotifierConfig>,
    /// The data directory (`FLUXO_DATA_DIR`, `--data-dir`, default `./data`).
    pub data_dir: PathBuf,
}

/// `FLUXO_*` overrides, read from the environment by [`Overrides::from_env`].
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `FLUXO_BOOTSTRAP_SERVERS`.
    pub bootstrap_servers: Option<String>,
    /// `FLUXO_SCHEMA_REGISTRY_URL`.
    pub schema_registry_url: Option<String>,
    /// `FLUXO_HTTP_ADDR`.
    pub http_addr: Option<String>,
    /// `FLUXO_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `FLUXO_SCYLLA_NODES` (comma-separated).
    pub scylla_nodes: Option<String>,
    /// `FLUXO_HTTP_READ_TIMEOUT` (a duration, e.g. `5s`).
    pub http_read_timeout: Option<String>,
    /// `FLUXO_HTTP_MAX_READS_IN_FLIGHT` (a whole number, at least 1).
    pub http_max_reads_in_flight: Option<String>,
}

impl Overrides {
    /// Read the `FLUXO_*` variables that are set and not empty.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            bootstrap_servers: var("FLUXO_BOOTSTRAP_SERVERS"),
            schema_registry_url: var("FLUXO_SCHEMA_REGISTRY_URL"),
            http_addr: var("FLUXO_HTTP_ADDR"),
            data_dir: var("FLUXO_DATA_DIR").map(PathBuf::from),
            scylla_nodes: var("FLUXO_SCYLLA_NODES"),
            http_read_timeout: var("FLUXO_HTTP_READ_TIMEOUT"),
            http_max_reads_in_flight: var("FLUXO_HTTP_MAX_READS_IN_FLIGHT"),
        }
    }
}

/// The topology file named by `FLUXO_TOPOLOGY`, or `./topology.toml`.
pub fn default_topology_path() -> PathBuf {
    std::env::var_os("FLUXO_TOPOLOGY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("topology.toml"))
}

impl Topology {
    /// Read, parse, apply `overrides` and validate the topology at `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and line of the first problem found.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            line: None,
            message: format!("cannot read the topology: {e}"),
        })?;
        Self::parse(&text, &file, overrides)
    }

    /// Parse and validate topology text (`file` names it in errors).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key and line of the first problem found.
    pub fn parse(text: &str, file: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        let loc = Locator { text, file };
        let raw: RawTopology = toml::from_str(text).map_err(|e| {
            let key = key_from_toml_error(text, &e);
            loc.err(key, e.span(), e.message().to_string())
        })?;
        let topics = parse_topics(raw.topics, &loc)?;
        let mut processors = BTreeMap::new();
        for (name, spanned) in raw.processors {
            let config = parse_processor(&name, spanned, &topics, &loc)?;
            processors.insert(name, config);
        }
        let notifiers = parse_notifiers(raw.notifiers, &topics, &processors, &loc)?;

        let mut kafka = raw.kafka;
        let mut schema_registry = raw.schema_registry;
        let mut http = raw.http;
        let mut state = raw.state;
        if let Some(v) = &overrides.bootstrap_servers {
            kafka.bootstrap_servers = v.clone();
        }
        if let Some(v) = &overrides.schema_registry_url {
            schema_registry.url = v.clone();
        }
        if let Some(v) = &overrides.http_addr {
            http.addr = v.clone();
        }
        if let Some(v) = &overrides.http_read_timeout {
            http.read_timeout = v.parse().map_err(|e: String| {
                loc.err(
                    "http.read_timeout".into(),
                    None,
                    format!("FLUXO_HTTP_READ_TIMEOUT: {e}"),
                )
            })?;
        }
        if http.read_timeout.millis() <= 0 {
            return Err(loc.err(
                "http.read_timeout".into(),
                None,
                "must be greater than 0".into(),
            ));
        }
        apply_max_reads_in_flight(&mut http, overrides, &loc)?;
        if let Some(v) = &overrides.scylla_nodes {
            state.nodes = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if state.backend == Backend::Scylla {
            if let Err((key, message)) = state.scylla() {
                return Err(loc.err(key, None, message));
            }
        }
        if http.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(loc.err(
                "http.addr".into(),
                None,
                format!(
                    "`{}` is not a socket address like 127.0.0.1:8080",
                    http.addr
                ),
            ));
        }
        check_runtime(&raw.runtime, &loc)?;
        Ok(Self {
            source: PathBuf::from(file),
            kafka,
            schema_registry,
            state,
            http,
            runtime: raw.runtime,
            topics,
            processors,
            notifiers,
            data_dir: overrides
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("data")),
        })
    }

    /// The dead-letter topic of `topic`.
    pub fn dlq_topic(topic: &str) -> String {
        format!("{topic}.dlq")
    }

    /// The dead-letter topic of a notifier's failed deliveries from `topic`.
    pub fn notify_dlq_topic(topic: &str) -> String {
        format!("{topic}.notify-dlq")
    }

    /// Every topic fluxo needs: the declared ones plus a `.dlq` per processor input and a
    /// `.notify-dlq` per notifier topic.
    pub fn all_topics(&self) -> Vec<(String, TopicConfig)> {
        let mut all: BTreeMap<String, TopicConfig> = self.topics.clone();
        let processor_dlqs = self
            .processors
            .values()
            .flat_map(|p| p.inputs.iter().chain(&p.global_inputs))
            .map(|t| Self::dlq_topic(t));
        let notifier_dlqs = self
            .notifiers
            .values()
            .flat_map(|n| &n.topics)
            .map(|t| Self::notify_dlq_topic(t));
        for dlq in processor_dlqs.chain(notifier_dlqs) {
            all.entry(dlq).or_insert_with(|| TopicConfig {
                partitions: 1,
                cleanup_policy: CleanupPolicy::Delete,
                retention: Some(DurationMs(14 * 86_400_000)),
                schema: String::new(),
                key: None,
                replication_factor: None,
            });
        }
        all.into_iter().collect()
    }

    /// The state file of the embedded engine.
    pub fn state_path(&self) -> PathBuf {
        self.data_dir
            .join(self.state.path.as_deref().unwrap_or("state.redb"))
    }
}

/// Best effort at the dotted key a toml parse error is about, from its span.
fn key_from_toml_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return "(document)".into();
    };
    // Walk back to the closest `[table]` header and take the key at the error's line.
    let before = &text[..span.start.min(text.len())];
    let table = before
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            (l.starts_with('[') && l.ends_with(']'))
                .then(|| l.trim_matches(|c| c == '[' || c == ']').to_string())
        })
        .unwrap_or_default();
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    let message = e.message();
    // serde names the offending field in "unknown field `x`" and "missing field `x`".
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field"));
    let leaf = field.unwrap_or(key);
    match (table.is_empty(), leaf.is_empty() || leaf.starts_with('[')) {
        (true, _) => leaf.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{leaf}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[topics.asset-prices]
schema = "AssetPrice"
[topics.price-alerts]
schema = "PriceAlert"

[processors.price-change]
inputs = ["asset-prices"]
outputs = ["price-alerts"]
"#;

    #[test]
    fn minimal_topology_loads_with_defaults_and_overrides() {
        let o = Overrides {
            bootstrap_servers: Some("10.0.0.1:9093".into()),
            ..Default::default()
        };
        let t = Topology::parse(MINIMAL, "t.toml", &o).unwrap();
        assert_eq!(t.kafka.bootstrap_servers, "10.0.0.1:9093");
        assert_eq!(t.schema_registry.url, "http://127.0.0.1:8081");
        assert_eq!(t.processors["price-change"].kind, Kind::PriceChange);
        let names: Vec<_> = t.all_topics().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"asset-prices.dlq".to_string()));
    }

    #[test]
    fn unknown_topic_names_key_and_line() {
        let text = MINIMAL.replace(r#"outputs = ["price-alerts"]"#, r#"outputs = ["nope"]"#);
        let e = Topology::parse(&text, "t.toml", &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "processors.price-change.outputs");
        assert_eq!(e.line, Some(9));
        assert!(e.to_string().contains("`nope`"), "{e}");
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        let text = format!("{MINIMAL}\n[runtime]\ncheckpoint_intervall = \"1s\"\n");
        let e = Topology::parse(&text, "t.toml", &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "runtime.checkpoint_intervall");
        assert_eq!(e.line, Some(12));
    }

    #[test]
    fn bad_duration_is_reported() {
        let text = format!("{MINIMAL}\n[runtime]\ncheckpoint_interval = \"soon\"\n");
        let e = Topology::parse(&text, "t.toml", &Overrides::default()).unwrap_err();
        assert_eq!(e.line, Some(12), "{e}");
        assert_eq!(e.key, "runtime.checkpoint_interval", "{e}");
    }

    #[test]
    fn bad_params_name_the_processor_key() {
        let text = format!("{MINIMAL}\n[processors.price-change.params]\nthreshold_pctt = 5\n");
        let e = Topology::parse(&text, "t.toml", &Overrides::default()).unwrap_err();
        assert!(e.key.starts_with("processors.price-change.params"), "{e}");
        assert!(e.to_string().contains("threshold_pctt"), "{e}");
        assert_eq!(e.line, Some(11));
    }

    #[test]
    fn max_reads_in_flight_defaults_and_overrides() {
        let t = Topology::parse(MINIMAL, "t.toml", &Overrides::default()).unwrap();
        assert_eq!(t.http.max_reads_in_flight, 128);
        let text = format!("{MINIMAL}\n[http]\nmax_reads_in_flight = 8\n");
        let t = Topology::parse(&text, "t.toml", &Overrides::default()).unwrap();
        assert_eq!(t.http.max_reads_in_flight, 8);
        let env = |v: &str| Overrides {
            http_max_reads_in_flight: Some(v.into()),
            ..Default::default()
        };
        let t = Topology::parse(&text, "t.toml", &env("3")).unwrap();
        assert_eq!(t.http.max_reads_in_flight, 3);
        for bad in ["0", "many", "-1"] {
            let e = Topology::parse(MINIMAL, "t.toml", &env(bad)).unwrap_err();
            assert_eq!(e.key, "http.max_reads_in_flight", "{bad}: {e}");
        }
        let zero = format!("{MINIMAL}\n[http]\nmax_reads_in_flight = 0\n");
        let e = Topology::parse(&zero, "t.toml", &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
    }

    fn scylla(state: &str, nodes: Option<&str>) -> Result<Topology, ConfigError> {
        let text = format!("{MINIMAL}\n[state]\nbackend = \"scylla\"\n{state}\n");
        let o = Overrides {
            scylla_nodes: nodes.map(str::to_string),
            ..Default::default()
        };
        Topology::parse(&text, "t.toml", &o)
    }

    #[test]
    fn scylla_settings_have_production_defaults_and_env_nodes() {
        let t = scylla("", Some("10.0.0.1, 10.0.0.2:19042,")).unwrap();
        let s = t.state.scylla().unwrap();
        assert_eq!(s.nodes, vec!["10.0.0.1:9042", "10.0.0.2:19042"]);
        assert_eq!(s.keyspace, "fluxo");
        assert_eq!(s.consistency, "LOCAL_QUORUM");
        assert_eq!(s.max_concurrency, 64);
        assert_eq!(s.replication, Replication::EveryDc(3));
        assert_eq!(
            s.replication.to_cql(),
            "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}"
        );
    }

    #[test]
    fn scylla_replication_per_dc_and_simple() {
        let t = scylla(
            "nodes = [\"a:9042\"]\nlocal_dc = \"dc1\"\nconsistency = \"local_one\"\nreplication = { class = \"NetworkTopologyStrategy\", dc1 = 3, dc2 = 2 }",
            None,
        )
        .unwrap();
        let s = t.state.scylla().unwrap();
        assert_eq!(s.consistency, "LOCAL_ONE");
        assert_eq!(s.local_dc.as_deref(), Some("dc1"));
        assert_eq!(
            s.replication.to_cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        let t = scylla(
            "nodes = [\"a\"]\nreplication = { class = \"SimpleStrategy\", replication_factor = 1 }",
            None,
        )
        .unwrap();
        assert_eq!(
            t.state.scylla().unwrap().replication,
            Replication::Simple(1)
        );
    }

    #[test]
    fn bad_scylla_settings_name_the_key() {
        let cases = [
            ("", "state.nodes"),
            ("nodes = [\"a:notaport\"]", "state.nodes"),
            (
                "nodes = [\"a\"]\nkeyspace = \"fluxo; DROP\"",
                "state.keyspace",
            ),
            (
                "nodes = [\"a\"]\nconsistency = \"MOST\"",
                "state.consistency",
            ),
            ("nodes = [\"a\"]\nlocal_dc = \"dc'1\"", "state.local_dc"),
            (
                "nodes = [\"a\"]\nmax_concurrency = 0",
                "state.max_concurrency",
            ),
            (
                "nodes = [\"a\"]\nreplication = { class = \"Foo\", replication_factor = 1 }",
                "state.replication",
            ),
            (
                "nodes = [\"a\"]\nreplication = { replication_factor = 0 }",
                "state.replication",
            ),
            (
                "nodes = [\"a\"]\nreplication = { replication_factor = 3, dc1 = 3 }",
                "state.replication",
            ),
            (
                "nodes = [\"a\"]\nreplication = { class = \"SimpleStrategy\" }",
                "state.replication",
            ),
        ];
        for (state, key) in cases {
            let e = scylla(state, None).unwrap_err();
            assert_eq!(e.key, key, "{state}: {e}");
        }
        // The embedded default never looks at the Scylla keys.
        assert!(Topology::parse(MINIMAL, "t.toml", &Overrides::default()).is_ok());
    }

    #[test]
    fn processing_guarantee_defaults_to_effectively_once_and_parses_exactly_once() {
        let t = Topology::parse(MINIMAL, "t.toml", &Overrides::default()).unwrap();
        assert_eq!(
            t.runtime.processing_guarantee,
            ProcessingGuarantee::EffectivelyOnce
        );
        let text = format!("{MINIMAL}\n[runtime]\nprocessing_guarantee = \"exactly_once\"\n");
        let t = Topology::parse(&text, "t.toml", &Overrides::default()).unwrap();
        assert_eq!(
            t.runtime.processing_guarantee,
            ProcessingGuarantee::ExactlyOnce
        );
        let text = format!("{MINIMAL}\n[runtime]\nprocessing_guarantee = \"at_least_once\"\n");
        let e = Topology::parse(&text, "t.toml", &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "runtime.processing_guarantee", "{e}");
    }

    #[test]
    fn debug_output_hides_secret_client_settings() {
        let text = format!(
            "[kafka.client]\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"fluxo\"\n\"sasl.password\" = \"hunter2-literal\"\n\"ssl.key.password\" = \"env:FLUXO_KEY_PASSWORD\"\n{MINIMAL}"
        );
        let t = Topology::parse(&text, "t.toml", &Overrides::default()).unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2-literal"), "{shown}");
        assert!(
            shown.contains("\"sasl.password\": \"<redacted>\""),
            "{shown}"
        );
        assert!(shown.contains("env:FLUXO_KEY_PASSWORD"), "{shown}");
        assert!(shown.contains("SCRAM-SHA-512"), "{shown}");
    }

    #[test]
    fn the_shipped_topology_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topology.toml");
        let t = Topology::load(&path, &Overrides::default()).unwrap();
        for kind in Kind::ALL {
            assert!(t.processors.contains_key(kind.name()), "{kind} missing");
        }
    }
}
