//! `fluxo up` (everything on one machine) and `fluxo run` (processors only).

use super::{load_topology, Failure};
use crate::api::{self, ApiState, Auth, Freshness};
use crate::config::{Backend, Topology};
use crate::console::{self, ConsoleState};
use crate::engines::is_listening;
use crate::engines::kafka::Broker;
use crate::http::{self, AppState};
use crate::pipeline::Pipeline;
use crate::state::embedded::EmbeddedStore;
use crate::state::scylla::ScyllaStore;
use crate::state::StateStore;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Flags of `fluxo up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where the broker, registry and state keep their data (default `./data`).
    #[arg(long, env = "FLUXO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Flags of `fluxo run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Where the embedded state store keeps its file (default `./data`).
    #[arg(long, env = "FLUXO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `host:port` of an `http://host:port[/path]` URL.
fn url_authority(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("`{url}`: the embedded registry serves plain http://"))?;
    Ok(rest.split('/').next().unwrap_or(rest).to_string())
}

/// Resolves when SIGINT or SIGTERM arrives.
pub(super) async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The API's token verification: from `FLUXO_JWT_SECRET` / `FLUXO_JWT_PUBLIC_KEY`, or a
/// development secret whose ready-to-use token is printed, with the console URL that signs in
/// with it (`http://ADDR/#token=...`: the fragment never reaches the server or its logs).
pub(super) fn api_auth(http_addr: &str) -> Result<Auth, Failure> {
    match Auth::from_env() {
        Ok(Some(auth)) => {
            println!("console     http://{http_addr}/ (sign in with a bearer token)");
            Ok(auth)
        }
        Ok(None) => {
            let auth = Auth::development();
            let token = auth
                .dev_token(Duration::from_secs(7 * 24 * 3600))
                .map_err(|e| anyhow::anyhow!("minting a development token: {e}"))?;
            println!("auth        development secret (set FLUXO_JWT_SECRET or FLUXO_JWT_PUBLIC_KEY in production)");
            if let Some(secret) = auth.development_secret() {
                println!("jwt-secret  {secret}");
            }
            println!("token       {token}");
            println!("console     http://{http_addr}/#token={token}");
            Ok(auth)
        }
        Err(e) => Err(Failure::Usage(format!("JWT settings: {e}"))),
    }
}

/// Environment variable: `1` opens the embedded registry's writes to anyone (development only).
pub const REGISTRY_OPEN_WRITES_ENV: &str = "FLUXO_REGISTRY_OPEN_WRITES";

/// Who may write to the embedded registry: bearer tokens of the query API, unless
/// [`REGISTRY_OPEN_WRITES_ENV`] is `1`.
fn registry_access(auth: &Arc<Auth>) -> fluxo_registry::WriteAccess {
    if std::env::var(REGISTRY_OPEN_WRITES_ENV).is_ok_and(|v| v.trim() == "1") {
        eprintln!("fluxo: warning: {REGISTRY_OPEN_WRITES_ENV}=1: anyone can change or delete schemas in the registry");
        return fluxo_registry::WriteAccess::Open;
    }
    let auth = auth.clone();
    fluxo_registry::WriteAccess::Bearer(Arc::new(move |token: &str| auth.verify(token)))
}

pub(super) fn open_store(topology: &Topology) -> Result<Arc<dyn StateStore>, Failure> {
    match topology.state.backend {
        Backend::Embedded => {
            let path = topology.state_path();
            let store =
                EmbeddedStore::open_with_cache(&path, topology.state.cache_mb.unwrap_or(512))
                    .map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
            Ok(Arc::new(store))
        }
        Backend::Scylla => Ok(open_scylla(topology)?),
    }
}

/// Connect to the ScyllaDB cluster of `[state]` (creating keyspace and tables if missing).
pub(super) fn open_scylla(topology: &Topology) -> Result<Arc<ScyllaStore>, Failure> {
    let settings = topology
        .state
        .scylla()
        .map_err(|(key, message)| Failure::Usage(format!("`{key}`: {message}")))?;
    let store =
        ScyllaStore::connect(&settings).map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
    println!(
        "state       scylla {} keyspace {} ({})",
        settings.nodes.join(","),
        settings.keyspace,
        settings.consistency
    );
    Ok(Arc::new(store))
}

/// The processors, HTTP server and store shared by `up` and `run`.
struct Running {
    pipeline: Pipeline,
    http_stop: watch::Sender<bool>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    ready: Arc<AtomicBool>,
}

/// Everything a fluxo HTTP server serves: `/metrics`, `/healthz`, `/readyz`, the query API and
/// the web console.
pub(super) fn http_router(
    topology: &Topology,
    auth: Arc<Auth>,
    store: Arc<dyn StateStore>,
    freshness: Arc<Freshness>,
    ready: Arc<AtomicBool>,
) -> Result<axum::Router, Failure> {
    let console = ConsoleState::new(Arc::new(topology.clone()), freshness.clone())?;
    // `/readyz` says not ready while the brokers are gone (probed with the metadata of one topic
    // of the topology).
    let broker = match topology.topics.keys().next() {
        Some(topic) => Some(crate::readiness::BrokerProbe::start(topology, topic)?),
        None => None,
    };
    Ok(http::ops_router(AppState { ready, broker })
        .merge(api::router(ApiState {
            store,
            auth: auth.clone(),
            freshness,
            read_timeout: std::time::Duration::from_millis(
                u64::try_from(topology.http.read_timeout.millis()).unwrap_or(5_000),
            ),
            reads: api::ReadGate::new(topology.http.max_reads_in_flight),
        }))
        .merge(console::router(console, auth)))
}

async fn start_processing(topology: &Topology, auth: Arc<Auth>) -> Result<Running, Failure> {
    crate::privacy::init(topology.state.backend).map_err(Failure::Usage)?;
    let store = open_store(topology)?;
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(&topology.http.addr)
        .await
        .with_context(|| format!("binding the HTTP API to {}", topology.http.addr))?;
    let (http_stop, mut stopped) = watch::channel(false);
    let freshness = Arc::new(Freshness::now());
    let router = http_router(
        topology,
        auth,
        store.clone(),
        freshness.clone(),
        ready.clone(),
    )?;
    let http = tokio::spawn(http::serve(listener, router, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let pipeline = Pipeline::start(topology, store, Some(freshness)).await?;
    if !pipeline.wait_started(Duration::from_secs(60)).await && !pipeline.any_finished() {
        eprintln!("fluxo: warning: not every processor has its partitions after 60 s");
    }
    Ok(Running {
        pipeline,
        http_stop,
        http,
        ready,
    })
}

async fn wait_and_stop(running: Running, mut broker: Option<&mut Broker>) -> Result<(), Failure> {
    running.ready.store(true, Ordering::SeqCst);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let term = termination();
    tokio::pin!(term);
    let mut failure = None;
    loop {
        tokio::select! {
            _ = &mut term => break,
            _ = tick.tick() => {
                if running.pipeline.any_finished() {
                    failure = Some(anyhow::anyhow!("a processor stopped unexpectedly"));
                    break;
                }
                if let Some(b) = broker.as_deref_mut() {
                    if !b.is_running() {
                        failure = Some(anyhow::anyhow!("the broker exited; see its log in the data directory"));
                        break;
                    }
                }
            }
        }
    }
    eprintln!("fluxo: stopping");
    running.ready.store(false, Ordering::SeqCst);
    let stopped = tokio::task::spawn_blocking(move || running.pipeline.stop())
        .await
        .map_err(|e| anyhow::anyhow!("joining processors: {e}"))?;
    let _ = running.http_stop.send(true);
    // Graceful, but not forever: idle keep-alive connections must not hold the exit.
    let _ = tokio::time::timeout(Duration::from_secs(5), running.http).await;
    stopped?;
    match failure {
        Some(e) => Err(Failure::Runtime(e)),
        None => Ok(()),
    }
}

/// `fluxo up`.
pub async fn up(topology_path: &Path, args: UpArgs) -> Result<(), Failure> {
    let topology = load_topology(topology_path, args.data_dir)?;
    let data_dir = topology.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;

    // The broker.
    let broker_addr = topology
        .kafka
        .bootstrap_servers
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut broker = None;
    if is_listening(&broker_addr) {
        eprintln!("fluxo: a broker already listens on {broker_addr}; using it");
    } else {
        let dir = data_dir.join("kafka");
        let addr = broker_addr.clone();
        broker = Some(
            tokio::task::spawn_blocking(move || Broker::start(&addr, &dir))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))??,
        );
    }

    // One verifier for the query API and the registry's writes; with the development secret
    // (not in the environment) this process hands its own registry clients a token.
    let auth = Arc::new(api_auth(&topology.http.addr)?);
    if auth.development_secret().is_some() {
        let token = auth
            .dev_token(Duration::from_secs(7 * 24 * 3600))
            .map_err(|e| anyhow::anyhow!("minting a registry token: {e}"))?;
        crate::codec::set_registry_token(token);
    }

    // The schema registry.
    let registry_addr = url_authority(&topology.schema_registry.url)?;
    let (registry_stop, mut registry_stopped) = watch::channel(false);
    let mut registry_task = None;
    if is_listening(&registry_addr) {
        eprintln!("fluxo: a schema registry already listens on {registry_addr}; using it");
    } else {
        let registry = fluxo_registry::Registry::open(&data_dir.join("registry.redb"))
            .map_err(|e| anyhow::anyhow!("opening the schema registry: {e}"))?;
        let listener = tokio::net::TcpListener::bind(&registry_addr)
            .await
            .with_context(|| format!("binding the schema registry to {registry_addr}"))?;
        registry_task = Some(tokio::spawn(fluxo_registry::serve(
            listener,
            Arc::new(registry),
            registry_access(&auth),
            async move {
                let _ = registry_stopped.wait_for(|s| *s).await;
            },
        )));
    }

    let topo = topology.clone();
    tokio::task::spawn_blocking(move || {
        crate::kafka::wait_for_brokers(&topo, Duration::from_secs(60))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))??;
    crate::kafka::create_topics(&topology).await?;

    let running = start_processing(&topology, auth).await?;
    println!("broker      {broker_addr}");
    println!("registry    {}", topology.schema_registry.url);
    println!(
        "http        http://{} (console at /, /metrics /healthz /readyz)",
        topology.http.addr
    );
    if topology.state.backend == Backend::Embedded {
        println!("state       {}", topology.state_path().display());
    }
    println!("processors  {}", running.pipeline.processors().join(", "));
    println!("ready");
    let result = wait_and_stop(running, broker.as_mut()).await;
    let _ = registry_stop.send(true);
    if let Some(t) = registry_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    if let Some(mut b) = broker {
        tokio::task::spawn_blocking(move || b.stop(Duration::from_secs(10)))
            .await
            .ok();
    }
    result
}

/// `fluxo run`.
pub async fn run(topology_path: &Path, args: RunArgs) -> Result<(), Failure> {
    let topology = load_topology(topology_path, args.data_dir)?;
    let topo = topology.clone();
    tokio::task::spawn_blocking(move || {
        crate::kafka::wait_for_brokers(&topo, Duration::from_secs(60))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))??;
    crate::kafka::create_topics(&topology).await?;
    let auth = Arc::new(api_auth(&topology.http.addr)?);
    let running = start_processing(&topology, auth).await?;
    println!("http        http://{}", topology.http.addr);
    println!("processors  {}", running.pipeline.processors().join(", "));
    println!("ready");
    wait_and_stop(running, None).await
}
