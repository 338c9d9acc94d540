//! Starting and stopping every enabled processor and notifier of a topology.

use crate::codec::{register_topic_schemas, registry_settings, Codec};
use crate::config::Topology;
use crate::engine::{self, Clock, EngineSpec};
use crate::state::StateStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

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
            let codec = Codec::new(handle.clone(), sr.clone(), ids.clone());
            let job = crate::jobs::build(p, codec)?;
            let spec = EngineSpec {
                inputs: p.inputs.clone(),
                global_inputs: p.global_inputs.clone(),
                name: p.name.clone(),
                job,
                store: store.clone(),
                clock: Clock::Wall,
                freshness: freshness.clone(),
                started: Arc::new(AtomicBool::new(false)),
                bounds: None,
            };
            started.push(spec.started.clone());
            let topo = topology.clone();
            let flag = shutdown.clone();
            let name = p.name.clone();
            let thread = std::thread::Builder::new()
                .name(format!("fluxo-{name}"))
                .spawn(move || engine::run(&topo, spec, flag))?;
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
