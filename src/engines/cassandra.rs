//! Apache Cassandra, one node, from `scripts/cassandra`: the CQL stand-in for ScyllaDB in tests
//! (ScyllaDB cannot be installed here; the protocol, the driver and fluxo's schema are the same).

use super::Service;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// The launcher, `scripts/cassandra DATA_DIR PORT`.
pub const SCRIPT: &str = include_str!("../../scripts/cassandra");

/// How long a start may take: the first one fetches Cassandra from Maven Central.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// A running Cassandra node, stopped when dropped.
pub struct Node {
    service: Service,
    /// Its CQL address, `127.0.0.1:port`.
    pub address: String,
}

impl Node {
    /// Start a node with CQL on `127.0.0.1:port`, its data under `dir` (kept across starts), and
    /// wait until it answers CQL.
    ///
    /// # Errors
    /// When the node does not start.
    pub fn start(port: u16, dir: &Path) -> anyhow::Result<Self> {
        let service = Service::start(
            "cassandra",
            SCRIPT,
            dir,
            &[port.to_string()],
            &[],
            START_TIMEOUT,
        )?;
        Ok(Self {
            service,
            address: format!("127.0.0.1:{port}"),
        })
    }
}

/// The process controls ([`Service::pid`], [`Service::engine_pid`], [`Service::stop`],
/// [`Service::kill`], ...).
impl std::ops::Deref for Node {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.service
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut Service {
        &mut self.service
    }
}

/// The CQL address of a node shared by everything in this process that asks (the store's unit
/// tests, an integration test binary): `FLUXO_TEST_SCYLLA` when set (a ScyllaDB or Cassandra
/// node someone runs), otherwise a Cassandra node started on first use on a free port, in a
/// scratch directory; a watchdog stops it and removes its data when this process exits.
///
/// # Panics
/// When the node cannot be started: a test that needs it cannot run without it.
pub fn shared_test_node() -> String {
    struct Shared {
        address: String,
        _node: Option<Node>,
    }
    static NODE: OnceLock<Shared> = OnceLock::new();
    NODE.get_or_init(|| {
        if let Ok(address) = std::env::var("FLUXO_TEST_SCYLLA") {
            return Shared {
                address,
                _node: None,
            };
        }
        let dir = super::scratch_dir("fluxo-cassandra").expect("a scratch directory");
        let node = Node::start(super::free_port(), &dir).expect("starting Cassandra");
        super::stop_with_process(node.pid(), std::process::id(), Some(&dir))
            .expect("starting the Cassandra watchdog");
        Shared {
            address: node.address.clone(),
            _node: Some(node),
        }
    })
    .address
    .clone()
}
