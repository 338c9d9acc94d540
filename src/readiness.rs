//! Whether the brokers can be reached, for `/readyz`.
//!
//! A process that has restored its state and started its processors is not ready for traffic
//! while its brokers are gone: it reads and produces nothing, and an orchestrator should route
//! elsewhere and page someone. The engines themselves wait out an outage (their Kafka clients
//! reconnect on their own), so the signal comes from a probe of its own: a thread asks the
//! brokers for the metadata of one topic every [`PROBE_EVERY`], independently of the engine
//! loops, which may be blocked waiting on the very brokers that are gone.

use crate::config::Topology;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// When a probe of this process last found the brokers unreachable.
static LAST_OUTAGE: Mutex<Option<Instant>> = Mutex::new(None);

/// True when a probe of this process found the brokers unreachable within `window`, or an
/// engine's client could not reach one of them ([`client_error`]). A
/// transactional producer fenced right after an outage was fenced by the coordinator aborting
/// its open transaction on timeout; fenced with the brokers reachable all along, it was fenced
/// by another instance (a live rebuild, a duplicate `runtime.instance`), and must stop.
pub fn broker_lost_within(window: Duration) -> bool {
    LAST_OUTAGE
        .lock()
        .map(|t| t.is_some_and(|t| t.elapsed() < window))
        .unwrap_or(false)
}

/// Note what a Kafka client of the engines reported: a broker it could not reach (a node of a
/// cluster down, while the probe still finds the others) counts as an outage for
/// [`broker_lost_within`], so that a producer fenced by the transaction coordinator's
/// failover is restarted like one fenced after a whole-cluster outage.
///
/// Logs it as librdkafka's default `ClientContext::error` does; the engines' client contexts
/// call this from theirs.
pub fn client_error(error: &rdkafka::error::KafkaError, reason: &str) {
    use rdkafka::types::RDKafkaErrorCode as C;
    if matches!(
        error.rdkafka_error_code(),
        Some(C::BrokerTransportFailure | C::AllBrokersDown)
    ) {
        if let Ok(mut t) = LAST_OUTAGE.lock() {
            *t = Some(Instant::now());
        }
    }
    tracing::error!(target: "librdkafka", "librdkafka: {error}: {reason}");
}

/// Time between two probes.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How long one metadata request may take before the brokers count as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The outcome of the latest probe of the brokers; the probing thread stops once the last
/// [`Arc`] of it is dropped.
pub struct BrokerProbe {
    reachable: AtomicBool,
}

impl BrokerProbe {
    /// Start probing the brokers of `topology` with the metadata of `topic` (one of its topics:
    /// a request for every topic would be heavy on a shared cluster). The first probe runs
    /// before this returns, so the answer is known from the start.
    ///
    /// # Errors
    /// When the Kafka client cannot be created (a bad `[kafka.client]` setting).
    pub fn start(topology: &Topology, topic: &str) -> anyhow::Result<Arc<Self>> {
        let mut cfg = crate::kafka::client_config(topology)?;
        // A probe must never create the topic it asks about.
        cfg.set("allow.auto.create.topics", "false");
        let client: BaseConsumer = cfg.create()?;
        // Assumed reachable until the first probe says otherwise (which logs it).
        let probe = Arc::new(Self {
            reachable: AtomicBool::new(true),
        });
        let topic = topic.to_string();
        let check = move |probe: &Self| {
            let ok = client
                .fetch_metadata(Some(&topic), PROBE_TIMEOUT)
                .is_ok_and(|md| !md.brokers().is_empty());
            if !ok {
                if let Ok(mut t) = LAST_OUTAGE.lock() {
                    *t = Some(Instant::now());
                }
            }
            let was = probe.reachable.swap(ok, Ordering::SeqCst);
            if was != ok {
                if ok {
                    tracing::info!("the brokers are reachable again");
                } else {
                    tracing::warn!(
                        "the brokers cannot be reached; /readyz answers 503 until they can"
                    );
                }
            }
        };
        check(&probe);
        let weak: Weak<Self> = Arc::downgrade(&probe);
        std::thread::Builder::new()
            .name("fluxo-broker-probe".into())
            .spawn(move || loop {
                std::thread::sleep(PROBE_EVERY);
                let Some(probe) = weak.upgrade() else { return };
                check(&probe);
            })?;
        Ok(probe)
    }

    /// True when the latest probe got an answer from the brokers.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::SeqCst)
    }
}
