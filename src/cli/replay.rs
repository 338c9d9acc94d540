//! `fluxo replay`: re-run one processor over a range of its inputs, into a fresh namespace or
//! the live view, optionally with other parameters and a diff against the live outputs.

use super::{load_topology, Failure};
use crate::replay::{self, range, ReplayError, Request, Target};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How the summary and the diff are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON object `{"summary": ..., "diff": ...}`.
    Json,
}

/// Flags of `fluxo replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The processor to replay (its name in the topology).
    #[arg(long)]
    pub processor: String,
    /// Start: an RFC 3339 time, `beginning`, or offsets `topic:partition=offset,...`
    /// (`partition=offset` when the processor has one input; unlisted partitions are skipped).
    #[arg(long)]
    pub from: String,
    /// End (exclusive), an RFC 3339 time; default: the end of every partition at start.
    #[arg(long)]
    pub to: Option<String>,
    /// `fresh`: own state and `.replay-<id>` topics; `live`: rebuild the live view.
    #[arg(long = "into", value_enum, default_value = "fresh")]
    pub target: Target,
    /// Required by `--into live`.
    #[arg(long)]
    pub confirm: bool,
    /// Compare the outputs with the live outputs of the same inputs (what-if).
    #[arg(long)]
    pub diff: bool,
    /// The id of a fresh replay (default: the start time, `YYYYMMDDHHMMSS`).
    #[arg(long)]
    pub id: Option<String>,
    /// The live topology; given (or with `--diff`), `--topology` names the what-if topology
    /// (default live: `$FLUXO_TOPOLOGY`, else `./topology.toml`).
    #[arg(long)]
    pub live_topology: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

fn usage(e: ReplayError) -> Failure {
    match e {
        ReplayError::Usage(m) => Failure::Usage(m),
        ReplayError::Runtime(e) => Failure::Runtime(e),
    }
}

/// `fluxo replay`. `topology` is the `--topology` value and `topology_given` whether it was
/// written on the command line. Written with `--diff` (or `--live-topology`), it is the what-if
/// topology, and the live one is `--live-topology`, `$FLUXO_TOPOLOGY` or `./topology.toml`;
/// otherwise it is the live topology, as for every other command.
pub async fn replay(
    topology: &Path,
    topology_given: bool,
    args: ReplayArgs,
) -> Result<(), Failure> {
    // `--topology` keeps its global meaning (the live topology) unless it comes with `--diff`
    // or `--live-topology`: then it names the what-if topology.
    let what_if_form = topology_given && (args.diff || args.live_topology.is_some());
    let live_path = match &args.live_topology {
        Some(p) => p.clone(),
        None if what_if_form => std::env::var_os("FLUXO_TOPOLOGY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("topology.toml")),
        None => topology.to_path_buf(),
    };
    let live = load_topology(&live_path, None)?;
    crate::privacy::init(live.state.backend).map_err(Failure::Usage)?;
    let what_if = if what_if_form && topology != live_path {
        eprintln!(
            "fluxo: what-if parameters from {}, live topology {}",
            topology.display(),
            live_path.display()
        );
        Some(load_topology(topology, None)?)
    } else {
        None
    };
    let start = range::parse_start(&args.from).map_err(Failure::Usage)?;
    let to = args
        .to
        .as_deref()
        .map(|t| range::parse_time("--to", t))
        .transpose()
        .map_err(Failure::Usage)?;
    let req = Request {
        processor: args.processor.clone(),
        start,
        to,
        target: args.target,
        confirm: args.confirm,
        what_if,
        diff: args.diff,
        id: args.id.clone(),
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    let handle = tokio::runtime::Handle::current();
    let mut task = tokio::task::spawn_blocking(move || replay::run(&live, &req, &handle, flag));
    let result = tokio::select! {
        r = &mut task => r,
        _ = super::up::termination() => {
            eprintln!("fluxo: stopping the replay at the next checkpoint");
            shutdown.store(true, Ordering::SeqCst);
            task.await
        }
    };
    let (summary, report) = result
        .map_err(|e| anyhow::anyhow!("replay task: {e}"))?
        .map_err(usage)?;
    match args.format {
        Format::Text => {
            println!("{summary}");
            if let Some(r) = report {
                println!("{r}");
            }
        }
        Format::Json => {
            let json = serde_json::json!({ "summary": summary, "diff": report });
            println!("{json}");
        }
    }
    Ok(())
}
