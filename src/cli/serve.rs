//! `fluxo serve`: the query API on its own, scaled apart from processing.
//!
//! With the embedded backend, `fluxo serve` keeps its own replica of the views
//! (`<data-dir>/views.redb`), fed from the processors' output topics: it needs no access to the
//! processing store, and it keeps answering from the replica while Kafka is down. With a shared
//! backend (ScyllaDB) it reads the views where the processors write them.

use super::up::{http_router, open_scylla, termination};
use super::{load_topology, Failure};
use crate::api::Freshness;
use crate::catalog::Kind;
use crate::codec::{registry_settings, Codec};
use crate::config::{Backend, Topology};
use crate::engine::{self, Clock, EngineSpec};
use crate::http;
use crate::jobs::views::{view_kind_for_schema, ViewsJob};
use crate::state::embedded::EmbeddedStore;
use crate::state::StateStore;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Flags of `fluxo serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where the replica of the views is kept (default `./data`).
    #[arg(long, env = "FLUXO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `fluxo serve`.
pub async fn serve(topology_path: &Path, args: ServeArgs) -> Result<(), Failure> {
    let topology = load_topology(topology_path, args.data_dir)?;
    if topology.state.backend == Backend::Scylla {
        return serve_shared(&topology).await;
    }
    let path = topology.data_dir.join("views.redb");
    let store: Arc<dyn StateStore> = Arc::new(
        EmbeddedStore::open_with_cache(&path, topology.state.cache_mb.unwrap_or(512))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let api = ApiServer::start(&topology, store.clone()).await?;
    let freshness = api.freshness.clone();

    // The replica: every topic that feeds a view, read whole by this instance.
    let topics: BTreeMap<String, Kind> = topology
        .topics
        .iter()
        .filter_map(|(name, t)| view_kind_for_schema(&t.schema).map(|k| (name.clone(), k)))
        .collect();
    let sr = registry_settings(&topology.schema_registry.url)?;
    let codec = Codec::new(tokio::runtime::Handle::current(), sr, Default::default());
    let spec = EngineSpec {
        inputs: Vec::new(),
        global_inputs: topics.keys().cloned().collect(),
        name: "serve".into(),
        job: Box::new(ViewsJob::new(codec, topics)),
        store,
        clock: Clock::Wall,
        freshness: Some(freshness),
        started: Arc::new(AtomicBool::new(false)),
        bounds: None,
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    let topo = topology.clone();
    let replica = std::thread::Builder::new()
        .name("fluxo-serve-replica".into())
        .spawn(move || engine::run(&topo, spec, flag))
        .context("starting the replica")?;

    println!("http        http://{}", topology.http.addr);
    println!("views       {}", path.display());
    println!("ready");
    api.ready.store(true, Ordering::SeqCst);
    termination().await;
    eprintln!("fluxo: stopping");
    api.ready.store(false, Ordering::SeqCst);
    shutdown.store(true, Ordering::SeqCst);
    let joined = tokio::task::spawn_blocking(move || replica.join())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    api.stop().await;
    match joined {
        Ok(r) => r.map_err(Failure::Runtime),
        Err(_) => Err(Failure::Runtime(anyhow::anyhow!("the replica panicked"))),
    }
}

/// `fluxo serve` on a shared backend (ScyllaDB): the API reads the views where the processors
/// write them; no replica. `as_of` is the oldest of the enabled processors' latest checkpoint
/// commits (polled every second), a conservative bound: it lags while the processors are idle.
async fn serve_shared(topology: &Topology) -> Result<(), Failure> {
    // Connecting blocks; the store's bridge moves this worker's tasks aside meanwhile.
    let store = open_scylla(topology)?;
    let api = ApiServer::start(topology, store.clone()).await?;
    let processors: Vec<String> = topology
        .processors
        .values()
        .filter(|p| p.enabled)
        .map(|p| p.name.clone())
        .collect();
    let poll_store = store.clone();
    let poll_freshness = api.freshness.clone();
    let poller = tokio::spawn(async move {
        loop {
            let (s, names) = (poll_store.clone(), processors.clone());
            let as_of = tokio::task::spawn_blocking(move || s.views_as_of(&names)).await;
            match as_of {
                Ok(Ok(Some(t))) => poll_freshness.set(t),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the views' freshness"),
                Err(e) => tracing::warn!(error = %e, "freshness poll failed"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    println!("http        http://{}", topology.http.addr);
    println!("views       scylla (shared with the processors)");
    println!("ready");
    api.ready.store(true, Ordering::SeqCst);
    termination().await;
    eprintln!("fluxo: stopping");
    api.ready.store(false, Ordering::SeqCst);
    poller.abort();
    api.stop().await;
    Ok(())
}

/// The query API and the ops routes of `fluxo serve`, served from `store`.
struct ApiServer {
    /// How fresh the answers are (`as_of`).
    freshness: Arc<Freshness>,
    /// What `/readyz` answers.
    ready: Arc<AtomicBool>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ApiServer {
    /// Bind `[http] addr` and serve, not ready yet.
    async fn start(topology: &Topology, store: Arc<dyn StateStore>) -> Result<Self, Failure> {
        let freshness = Arc::new(Freshness::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let auth = std::sync::Arc::new(super::up::api_auth(&topology.http.addr)?);
        let router = http_router(topology, auth, store, freshness.clone(), ready.clone())?;
        let listener = tokio::net::TcpListener::bind(&topology.http.addr)
            .await
            .with_context(|| format!("binding the HTTP API to {}", topology.http.addr))?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(http::serve(listener, router, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Ok(Self {
            freshness,
            ready,
            stop,
            task,
        })
    }

    /// Stop serving, waiting up to 5 s for requests in flight.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}
