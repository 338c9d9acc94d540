//! Starting and stopping every enabled processor and notifier of a topology.

use crate::codec::{register_topic_schemas, registry_settings, Codec};
use crate::config::Topology;
use crate::engine::{self, Clock, EngineSpec};
use crate::state::StateStore;
use crate::transactions::TxnError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How many times an engine is restarted in-process within [`RESTART_WINDOW`] before its
/// error stops the process (see [`supervise`]).
pub const MAX_RESTARTS: usize = 5;

/// The window [`MAX_RESTARTS`] counts restarts in.
pub const RESTART_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// True when an engine stopped on an error that a fresh engine settles: its transactional
/// producer failed for good (a commit whose outcome is unknown, or fenced: after a broker
/// outage the coordinator aborts the open transaction on its timeout and bumps the producer
/// epoch, which fences the producer that opened it). A new engine initializes transactions
/// again (aborting what is left open), resumes from the store's checkpoints and learns the
/// group's committed offsets, exactly as a process restart would.
pub fn restartable(e: &anyhow::Error) -> bool {
    producer_error(e).is_some_and(TxnError::is_fatal)
}

/// True when `e` says the transactional producer was fenced (by the coordinator after an
/// outage, or by another instance): [`TxnError::Fenced`], set from the client's error code where
/// the error arose (see [`crate::transactions::is_fenced_error`]). Other fatal producer errors (a
/// flush or commit that timed out while the store was down) are always settled by a restart.
fn fenced(e: &anyhow::Error) -> bool {
    producer_error(e).is_some_and(TxnError::is_fenced)
}

/// The transactional producer's error `e` carries, directly or inside a checkpoint's error.
fn producer_error(e: &anyhow::Error) -> Option<&TxnError> {
    match e.downcast_ref::<engine::CheckpointError>() {
        Some(engine::CheckpointError::Transaction(t)) => Some(t),
        Some(_) => None,
        None => e.downcast_ref::<TxnError>(),
    }
}

/// How recent a broker outage must be for a fenced engine to be restarted in-process (see
/// [`crate::readiness::broker_lost_within`]).
pub const OUTAGE_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// Run an engine (`attempt`) and run it again, after a pause, when it stops on a
/// [`restartable`] error within [`OUTAGE_WINDOW`] of a broker outage seen by this process's
/// probe (a fence with the brokers reachable all along is another instance's: a live rebuild
/// with `fluxo replay --into live` must stop the running instance, not be fenced back): at most [`MAX_RESTARTS`] times in [`RESTART_WINDOW`], so that two
/// instances configured with the same `runtime.instance` (fencing each other for real) still
/// stop with the error. Any other error, or one during shutdown, is returned as is.
fn supervise(
    name: &str,
    shutdown: &AtomicBool,
    mut attempt: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut restarts: std::collections::VecDeque<std::time::Instant> = Default::default();
    loop {
        let Err(e) = attempt() else { return Ok(()) };
        if shutdown.load(Ordering::SeqCst)
            || !restartable(&e)
            || (fenced(&e) && !crate::readiness::broker_lost_within(OUTAGE_WINDOW))
        {
            return Err(e);
        }
        restarts.retain(|t| t.elapsed() < RESTART_WINDOW);
        if restarts.len() >= MAX_RESTARTS {
            return Err(e.context(format!(
                "restarted {MAX_RESTARTS} times within {RESTART_WINDOW:?}; giving up"
            )));
        }
        restarts.push_back(std::time::Instant::now());
        let pause = std::time::Duration::from_secs(1 << restarts.len().min(5));
        tracing::warn!(processor = %name, error = %e, retry_in = ?pause, "engine stopped on a transactional producer failure; restarting it with a new producer");
        crate::metrics::ENGINE_RESTARTS
            .with_label_values(&[name])
            .inc();
        std::thread::sleep(pause);
    }
}

/// Running engines, one thread per processor.
pub struct Pipeline {
    shutdown: Arc<AtomicBool>,
    started: Vec<Arc<AtomicBool>>,
    threads: Vec<(String, JoinHandle<anyhow::Result<()>>)>,
}

impl Pipeline {
    /// Register schemas and start an engine for every enabled processor and notifier.
    ///
    /// # Errors
    /// When the registry refuses a schema or a job cannot be built.
    pub async fn start(
        topology: &Topology,
        store: Arc<dyn StateStore>,
        freshness: Option<Arc<crate::api::Freshness>>,
    ) -> anyhow::Result<Self> {
        let sr = registry_settings(&topology.schema_registry.url)?;
        let ids = register_topic_schemas(topology, &sr).await?;
        let handle = tokio::runtime::Handle::current();
        let shutdown = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut started = Vec::new();
        for p in topology.processors.values().filter(|p| p.enabled) {
            let started_flag = Arc::new(AtomicBool::new(false));
            let spec = {
                let (handle, sr, ids, p) = (handle.clone(), sr.clone(), ids.clone(), p.clone());
                let (store, freshness, started_flag) =
                    (store.clone(), freshness.clone(), started_flag.clone());
                move || -> anyhow::Result<EngineSpec> {
                    let codec = Codec::new(handle.clone(), sr.clone(), ids.clone());
                    Ok(EngineSpec {
                        inputs: p.inputs.clone(),
                        global_inputs: p.global_inputs.clone(),
                        name: p.name.clone(),
                        job: crate::jobs::build(&p, codec)?,
                        store: store.clone(),
                        clock: Clock::Wall,
                        freshness: freshness.clone(),
                        started: started_flag.clone(),
                        bounds: None,
                    })
                }
            };
            // The first job is built here, so a bad one fails the start.
            let mut first = Some(spec()?);
            started.push(started_flag);
            let topo = topology.clone();
            let flag = shutdown.clone();
            let name = p.name.clone();
            let thread = std::thread::Builder::new()
                .name(format!("fluxo-{name}"))
                .spawn(move || {
                    supervise(&name, &flag, || {
                        let spec = match first.take() {
                            Some(s) => s,
                            None => spec()?,
                        };
                        engine::run(&topo, spec, flag.clone())
                    })
                })?;
            threads.push((p.name.clone(), thread));
        }
        for n in topology.notifiers.values().filter(|n| n.enabled) {
            let codec = Codec::new(handle.clone(), sr.clone(), ids.clone());
            let job = crate::notifier::job::NotifierJob::new(
                n.clone(),
                codec,
                topology,
                shutdown.clone(),
            )?;
            let spec = EngineSpec {
                inputs: n.topics.clone(),
                global_inputs: Vec::new(),
                name: n.engine_name(),
                job: Box::new(job),
                store: store.clone(),
                clock: Clock::Wall,
                freshness: None,
                started: Arc::new(AtomicBool::new(false)),
                bounds: None,
            };
            started.push(spec.started.clone());
            let topo = topology.clone();
            let flag = shutdown.clone();
            let name = spec.name.clone();
            let thread = std::thread::Builder::new()
                .name(format!("fluxo-{name}"))
                .spawn(move || engine::run(&topo, spec, flag))?;
            threads.push((name, thread));
        }
        Ok(Self {
            shutdown,
            started,
            threads,
        })
    }

    /// Names of the running processors.
    pub fn processors(&self) -> Vec<String> {
        self.threads.iter().map(|(n, _)| n.clone()).collect()
    }

    /// True once every engine has restored its global tables and received its partitions.
    pub fn all_started(&self) -> bool {
        self.started.iter().all(|s| s.load(Ordering::SeqCst))
    }

    /// Wait until [`Pipeline::all_started`] or `timeout`; false on timeout.
    pub async fn wait_started(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.all_started() {
            if tokio::time::Instant::now() >= deadline || self.any_finished() {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        true
    }

    /// True when an engine has stopped on its own (an error).
    pub fn any_finished(&self) -> bool {
        self.threads.iter().any(|(_, t)| t.is_finished())
    }

    /// Ask every engine to finish, checkpoint and leave its group; wait for them.
    ///
    /// # Errors
    /// The first engine error, after all engines stopped.
    pub fn stop(self) -> anyhow::Result<()> {
        self.shutdown.store(true, Ordering::SeqCst);
        // An engine whose broker is gone can block in the Kafka client's close; it gets a
        // deadline, after which the process exits without it (its last checkpoint stands).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
        while self.threads.iter().any(|(_, t)| !t.is_finished())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let mut first = Ok(());
        for (name, t) in self.threads {
            if !t.is_finished() {
                tracing::error!(processor = %name, "engine did not stop within 45 s; leaving it");
                if first.is_ok() {
                    first = Err(anyhow::anyhow!("processor {name} did not stop in time"));
                }
                continue;
            }
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(processor = %name, error = %e, "engine failed");
                    if first.is_ok() {
                        first = Err(e.context(format!("processor {name}")));
                    }
                }
                Err(_) => {
                    if first.is_ok() {
                        first = Err(anyhow::anyhow!("processor {name} panicked"));
                    }
                }
            }
        }
        first
    }
}
