//! Leader failures on a three-node Apache Kafka cluster, run on one machine as production runs
//! it on three: three combined broker + controller nodes (KRaft, a quorum of three voters),
//! every topic with three replicas, `min.insync.replicas = 2`, and fluxo's producers with
//! `acks = all`. Mid-stream, the node leading an input partition is SIGKILLed and restarted
//! 10 s later, then the node leading an output partition: under both processing guarantees
//! `fluxo run` keeps going by itself, and the finished run meets the same invariants as the
//! single-broker faults (tests/faults.rs): every balance exact, every alert present, none
//! repeated under exactly-once.

mod common;

use common::faults::*;
use common::*;
use fluxo::engines::kafka::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const LEDGER: &str = "daily-consolidation";
const PRICES: &str = "price-change";
const NODES: i32 = 3;

/// One node of the cluster: its addresses, data and process (None while killed).
struct Node {
    id: i32,
    address: String,
    controller_port: u16,
    dir: PathBuf,
    broker: Option<Broker>,
}

/// The cluster of this test binary, shared by its tests (they run one at a time).
struct Cluster {
    nodes: Vec<Node>,
    env: Vec<(&'static str, String)>,
}

impl Cluster {
    /// Three nodes on free ports, started concurrently: a node is ready only once a quorum of
    /// the voters runs.
    fn start() -> Self {
        let cluster_id = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
        };
        let mut nodes: Vec<Node> = (1..=NODES)
            .map(|id| Node {
                id,
                address: format!("127.0.0.1:{}", free_port()),
                controller_port: free_port(),
                dir: fluxo::engines::scratch_dir(&format!("fluxo-cluster-{id}")).unwrap(),
                broker: None,
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        // Later lines of server.properties win: these replace the single-node defaults of
        // scripts/kafka with what a production cluster sets.
        let props = [
            "default.replication.factor=3",
            "min.insync.replicas=2",
            "offsets.topic.replication.factor=3",
            "offsets.topic.num.partitions=3",
            "transaction.state.log.replication.factor=3",
            "transaction.state.log.min.isr=2",
            "transaction.state.log.num.partitions=3",
        ]
        .join("\n");
        let env = vec![
            ("FLUXO_KAFKA_VOTERS", voters),
            ("FLUXO_KAFKA_CLUSTER_ID", cluster_id),
            ("FLUXO_KAFKA_PROPS", props),
            // Three JVMs on a 2-core test machine.
            ("FLUXO_KAFKA_HEAP", "384m".to_string()),
        ];
        let started: Vec<Broker> = std::thread::scope(|s| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|n| s.spawn(|| start_node(n, &env)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (node, broker) in nodes.iter_mut().zip(started) {
            // Stopped, and its data removed, once this test binary exits.
            fluxo::engines::stop_with_process(broker.pid(), std::process::id(), Some(&node.dir))
                .unwrap();
            node.broker = Some(broker);
        }
        Self { nodes, env }
    }

    /// Every node's client address, as a bootstrap list.
    fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL node `id` (launcher and JVM), as a crash would.
    fn kill(&mut self, id: i32) {
        let node = &mut self.nodes[(id - 1) as usize];
        node.broker.take().expect("the node runs").kill();
    }

    /// Start node `id` again with its data; the two others keep the quorum meanwhile.
    fn restart(&mut self, id: i32) {
        let node = &self.nodes[(id - 1) as usize];
        assert!(node.broker.is_none(), "node {id} runs");
        let broker = start_node(node, &self.env);
        self.nodes[(id - 1) as usize].broker = Some(broker);
    }

    /// The node id leading `topic`'s `partition`, and its replica count.
    fn leader_of(&self, topic: &str, partition: i32) -> (i32, usize) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) {
                let p = md
                    .topics()
                    .first()
                    .and_then(|t| t.partitions().iter().find(|p| p.id() == partition));
                if let Some(p) = p.filter(|p| p.leader() > 0) {
                    return (p.leader(), p.replicas().len());
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader for {topic}/{partition}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn start_node(node: &Node, env: &[(&'static str, String)]) -> Broker {
    let mut env = env.to_vec();
    env.push(("FLUXO_KAFKA_NODE_ID", node.id.to_string()));
    Broker::start_node(&node.address, node.controller_port, &node.dir, &env)
        .unwrap_or_else(|e| panic!("starting Kafka node {}: {e:#}", node.id))
}

fn cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            let cluster = Cluster::start();
            use_broker(&cluster.bootstrap());
            Mutex::new(cluster)
        })
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Kill the node leading `topic`/`partition`, keep it down 10 s while checking that
/// `fluxo run` keeps running, then restart it. Returns how many `/readyz` probes said 503
/// meanwhile (the cluster stays available, so fluxo should stay ready; reported, not asserted:
/// the probe's metadata request may meet the dead node first).
fn kill_leader(
    cluster: &mut Cluster,
    env: &Env,
    child: &mut std::process::Child,
    topic: &str,
) -> usize {
    let (leader, replicas) = cluster.leader_of(topic, 0);
    assert_eq!(replicas, NODES as usize, "replicas of {topic}");
    cluster.kill(leader);
    let killed = Instant::now();
    eprintln!("killed node {leader}, leader of {topic}/0");
    let mut not_ready = 0;
    while killed.elapsed() < Duration::from_secs(10) {
        assert_running(child, env, &format!("with node {leader} down"));
        not_ready += usize::from(readyz(env) == 503);
        std::thread::sleep(Duration::from_millis(500));
    }
    cluster.restart(leader);
    eprintln!(
        "node {leader} back after {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    not_ready
}

/// The leader of an input partition, then of an output partition, SIGKILLed mid-stream and
/// restarted: nothing lost, nothing applied twice.
// The cluster's guard is held across the scenario on purpose: its tests kill its nodes and
// must not overlap.
#[allow(clippy::await_holding_lock)]
async fn leaders_killed_mid_stream(guarantee: &str) {
    let _serial = serial();
    let mut cluster = cluster();
    const N: usize = 24_000;
    const SYMBOLS: usize = 24;
    let env = mixed_env(LEDGER, PRICES, guarantee);
    let mut child = KillOnDrop(env.start());
    let mut stream = Stream::start(&env, 31, N, SYMBOLS, 1_000).await;

    env.wait_for_records_in(LEDGER, N as u64 / 4, Duration::from_secs(180));
    let input = kill_leader(
        &mut cluster,
        &env,
        &mut child.0,
        &env.topic("ledger-entries"),
    );
    env.wait_for_records_in(LEDGER, N as u64 * 5 / 8, Duration::from_secs(300));
    let output = kill_leader(
        &mut cluster,
        &env,
        &mut child.0,
        &env.topic("daily-balances"),
    );
    eprintln!("/readyz 503 while a node was down: {input} (input leader), {output} (output leader) of 20 probes each");

    stream.finish();
    wait_checkpointed(
        &env,
        &mut child.0,
        LEDGER,
        N as u64,
        Duration::from_secs(300),
    );
    wait_checkpointed(
        &env,
        &mut child.0,
        PRICES,
        3 * SYMBOLS as u64,
        Duration::from_secs(120),
    );
    eprintln!(
        "{guarantee}: finished; engines restarted in-process {} times",
        env.metric("fluxo_engine_restarts_total", &[]) as u64
    );
    assert!(stop(&mut child.0).success(), "log:\n{}", env.log());
    drop(cluster);
    check_invariants(&env, &stream, guarantee == "exactly_once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_killed_mid_stream_exactly_once() {
    leaders_killed_mid_stream("exactly_once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_killed_mid_stream_effectively_once() {
    leaders_killed_mid_stream("effectively_once").await;
}
