//! Apache Kafka, single node in KRaft mode, from `scripts/kafka`: the development broker of
//! `fluxo up`, the test harness and the benches.

use super::Service;
use std::path::Path;
use std::time::Duration;

/// The launcher, `scripts/kafka DATA_DIR PORT [CONTROLLER_PORT]`.
pub const SCRIPT: &str = include_str!("../../scripts/kafka");

/// How long a start may take: the first one fetches Kafka from Maven Central.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// A running Kafka broker, stopped when dropped.
pub struct Broker {
    service: Service,
    /// Its `host:port` for clients.
    pub address: String,
}

impl Broker {
    /// Start a broker for clients on `address` (`127.0.0.1:port`), its data under `dir`
    /// (formatted on first start, kept after), and wait until it serves.
    ///
    /// # Errors
    /// When the address has no port, or the broker does not start.
    pub fn start(address: &str, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(address, dir, &[])
    }

    /// [`Broker::start`] with extra environment for the launcher (`FLUXO_KAFKA_PROPS`, ...).
    ///
    /// # Errors
    /// As [`Broker::start`].
    pub fn start_with(address: &str, dir: &Path, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let port = Self::port(address)?;
        Self::launch(address, dir, vec![port], env)
    }

    /// One node of a multi-node cluster on this machine: like [`Broker::start_with`], with a
    /// fixed controller port (the other voters name it in `FLUXO_KAFKA_VOTERS`, which `env`
    /// carries with `FLUXO_KAFKA_NODE_ID` and `FLUXO_KAFKA_CLUSTER_ID`). A node of a cluster
    /// is ready only once a quorum of voters runs, so the nodes must be started concurrently.
    ///
    /// # Errors
    /// As [`Broker::start`].
    pub fn start_node(
        address: &str,
        controller_port: u16,
        dir: &Path,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let port = Self::port(address)?;
        Self::launch(address, dir, vec![port, controller_port.to_string()], env)
    }

    fn port(address: &str) -> anyhow::Result<String> {
        address
            .rsplit_once(':')
            .map(|(_, p)| p.to_string())
            .ok_or_else(|| anyhow::anyhow!("`{address}`: the broker address needs a port"))
    }

    fn launch(
        address: &str,
        dir: &Path,
        args: Vec<String>,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let service = Service::start("kafka", SCRIPT, dir, &args, env, START_TIMEOUT)?;
        Ok(Self {
            service,
            address: address.to_string(),
        })
    }
}

/// The process controls ([`Service::pid`], [`Service::engine_pid`], [`Service::stop`],
/// [`Service::kill`], ...).
impl std::ops::Deref for Broker {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.service
    }
}

impl std::ops::DerefMut for Broker {
    fn deref_mut(&mut self) -> &mut Service {
        &mut self.service
    }
}
