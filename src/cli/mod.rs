//! The `fluxo` command line.
//!
//! Exit codes scripts can trust: `0` success, `1` a runtime failure (broker down, registry
//! refusing a schema, a processor failing), `2` invalid usage or configuration (clap's own code
//! for bad flags, and any topology error).

mod consume;
pub mod produce;
mod replay;
mod serve;
mod up;

use crate::config::{ConfigError, Overrides, Topology};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// fluxo: stream processing on Kafka for Brazilian fintech events.
#[derive(Debug, Parser)]
#[command(name = "fluxo", version, about, long_about = None)]
pub struct Cli {
    /// The topology file.
    #[arg(
        long,
        global = true,
        env = "FLUXO_TOPOLOGY",
        default_value = "topology.toml"
    )]
    pub topology: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything on one machine: start Apache Kafka (fetched from Maven Central on first
    /// use) unless a broker already listens, the embedded schema registry, the state store, every processor and the HTTP API.
    Up(up::UpArgs),
    /// Run the processors only, against the brokers, registry and state the topology names.
    Run(up::RunArgs),
    /// Serve the query API on its own: from a replica of the views fed by the output topics, or
    /// from ScyllaDB when that is the state backend.
    Serve(serve::ServeArgs),
    /// Manage topics.
    Topics {
        /// Topic command.
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Produce JSON lines (validated against the topic's schema) or simulated data.
    Produce(produce::ProduceArgs),
    /// Print records of a topic as JSON lines.
    Consume(consume::ConsumeArgs),
    /// Re-run one processor over a range of its inputs, into a fresh namespace or the live
    /// view; with `--topology OTHER.toml --diff`, a what-if backtest against the live outputs.
    Replay(replay::ReplayArgs),
    /// Inspect the topology.
    Topology {
        /// Topology command.
        #[command(subcommand)]
        command: TopologyCommand,
    },
}

/// `fluxo topics ...`.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create every topic of the topology (and the dead-letter topics); existing ones are kept.
    Create,
}

/// `fluxo topology ...`.
#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Validate the topology and print its processors, topics and settings.
    Describe,
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Exit 2.
    Config(ConfigError),
    /// Exit 2.
    Usage(String),
    /// Exit 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Runtime(e)
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

/// Load the topology named on the command line with the `FLUXO_*` overrides.
///
/// # Errors
/// A [`ConfigError`] naming the key and line.
pub fn load_topology(
    path: &std::path::Path,
    data_dir: Option<PathBuf>,
) -> Result<Topology, ConfigError> {
    let mut overrides = Overrides::from_env();
    if data_dir.is_some() {
        overrides.data_dir = data_dir;
    }
    Topology::load(path, &overrides)
}

/// Parse the command line, run it, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    // `fluxo replay --topology OTHER.toml` names a what-if topology: tell it from the default.
    let topology_given =
        matches.value_source("topology") == Some(clap::parser::ValueSource::CommandLine);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Logs, and tracing when OTEL_EXPORTER_OTLP_ENDPOINT is set; dropped last, which flushes
    // the spans still queued.
    let telemetry = crate::telemetry::init();
    // A corrupt length in generically decoded Avro must not allocate hundreds of megabytes.
    let _ = apache_avro::util::max_allocation_bytes(16 << 20);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fluxo-io")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fluxo: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli, topology_given));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    drop(telemetry);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("fluxo: invalid configuration: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Usage(e)) => {
            eprintln!("fluxo: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("fluxo: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli, topology_given: bool) -> Result<(), Failure> {
    match cli.command {
        Command::Replay(args) => replay::replay(&cli.topology, topology_given, args).await,
        Command::Up(args) => up::up(&cli.topology, args).await,
        Command::Run(args) => up::run(&cli.topology, args).await,
        Command::Serve(args) => serve::serve(&cli.topology, args).await,
        Command::Topics {
            command: TopicsCommand::Create,
        } => {
            let topology = load_topology(&cli.topology, None)?;
            let created = crate::kafka::create_topics(&topology).await?;
            for t in &created {
                println!("created {t}");
            }
            println!(
                "{} topics exist ({} created)",
                topology.all_topics().len(),
                created.len()
            );
            Ok(())
        }
        Command::Produce(args) => produce::produce(&cli.topology, args).await,
        Command::Consume(args) => consume::consume(&cli.topology, args).await,
        Command::Topology {
            command: TopologyCommand::Describe,
        } => {
            let t = load_topology(&cli.topology, None)?;
            println!("topology {}", t.source.display());
            println!("brokers   {}", t.kafka.bootstrap_servers);
            println!("registry  {}", t.schema_registry.url);
            println!(
                "state     {:?} ({})",
                t.state.backend,
                t.state_path().display()
            );
            println!("http      {}", t.http.addr);
            println!("guarantee {:?}", t.runtime.processing_guarantee);
            println!("topics:");
            for (name, topic) in t.all_topics() {
                println!(
                    "  {name:<28} partitions={} cleanup={} schema={}",
                    topic.partitions,
                    topic.cleanup_policy.as_str(),
                    if topic.schema.is_empty() {
                        "-"
                    } else {
                        &topic.schema
                    }
                );
            }
            println!("processors:");
            for p in t.processors.values() {
                let stores = crate::catalog::StoreNamespace::new(p.kind, &p.name);
                let stores: Vec<String> = p
                    .kind
                    .stores()
                    .iter()
                    .map(|s| format!("{}{s}", stores.prefix()))
                    .collect();
                println!(
                    "  {:<20} kind={} inputs={:?} global_inputs={:?} outputs={:?}{}",
                    p.name,
                    p.kind,
                    p.inputs,
                    p.global_inputs,
                    p.outputs,
                    if p.enabled { "" } else { " (disabled)" }
                );
                println!("  {:<20} stores={stores:?} view={}", "", p.kind.view());
            }
            if !t.notifiers.is_empty() {
                println!("notifiers:");
            }
            for n in t.notifiers.values() {
                // The URL can hold a secret (Slack webhook URLs do): only its source is shown.
                let url = match &n.url {
                    crate::notifier::config::WebhookUrl::Literal(_) => "url".to_string(),
                    crate::notifier::config::WebhookUrl::Env(v) => format!("env:{v}"),
                };
                println!(
                    "  {:<20} format={:?} topics={:?} risk_decisions={:?} url_from={url} timeout={}ms retries={}{}",
                    n.name,
                    n.format,
                    n.topics,
                    n.risk_decisions,
                    n.policy.timeout,
                    n.policy.retries,
                    if n.enabled { "" } else { " (disabled)" }
                );
            }
            Ok(())
        }
    }
}
