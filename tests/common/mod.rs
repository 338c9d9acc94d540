//! Shared harness of the integration tests: a real Apache Kafka broker over a real socket, the embedded
//! schema registry, topologies with topic names unique to each test, the `fluxo` binary as a
//! child process, and helpers to produce and read records.
//!
//! The broker is `FLUXO_TEST_BOOTSTRAP` when set; otherwise the harness starts a single-node
//! Apache Kafka of its own on a free port (`scripts/kafka`, fetched from Maven Central into the
//! cache on first use).

#![allow(dead_code)]

pub mod faults;
pub mod ledger;

use fluxo::avro::framing::frame;
use fluxo::avro::typed::{encode_datum, AvroEvent};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Broker tests of one test binary run one at a time: each starts `fluxo` processes against the
/// binary's broker, and several at once on a 2-core machine starve each other (and the broker)
/// into timeouts that test nothing of fluxo.
/// Each `#[tokio::test]` runs on a runtime of its own, so holding this across `.await` blocks
/// only other tests, which is the point.
pub fn serial() -> Serial {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    Serial(LOCK.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The guard of [`serial`].
pub struct Serial(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

static BROKER: OnceLock<String> = OnceLock::new();

/// The test broker's bootstrap address: `FLUXO_TEST_BOOTSTRAP` when set, otherwise an Apache
/// Kafka of this test binary's own on a free port. It lives in a static, which is never dropped:
/// a watchdog stops it and removes its data once this test binary has exited, so no test run
/// leaves a broker behind.
pub fn broker() -> String {
    BROKER
        .get_or_init(|| {
            if let Ok(addr) = std::env::var("FLUXO_TEST_BOOTSTRAP") {
                return addr;
            }
            let dir = fluxo::engines::scratch_dir("fluxo-kafka").unwrap();
            let address = format!("127.0.0.1:{}", free_port());
            let b = fluxo::engines::kafka::Broker::start(&address, &dir)
                .expect("starting Apache Kafka");
            fluxo::engines::stop_with_process(b.pid(), std::process::id(), Some(&dir)).unwrap();
            // Never dropped (a drop would stop it before the watchdog does).
            std::mem::forget(b);
            address
        })
        .clone()
}

/// Make `address` this test binary's broker, before anything asks for one: for tests that
/// start (and kill) a broker of their own. Panics when another broker was chosen already.
pub fn use_broker(address: &str) {
    let chosen = BROKER.get_or_init(|| address.to_string());
    assert_eq!(chosen, address, "the test broker was chosen already");
}

/// The CQL address of this test binary's Cassandra node (started on first use; see
/// `fluxo::engines::cassandra::shared_test_node`).
pub fn cassandra() -> String {
    fluxo::engines::cassandra::shared_test_node()
}

struct OwnedRegistry {
    url: String,
    _dir: tempfile::TempDir,
}

static REGISTRY: OnceLock<OwnedRegistry> = OnceLock::new();

/// The URL of an embedded schema registry shared by the tests of this binary.
pub fn registry() -> String {
    REGISTRY
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("registry.redb");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let registry =
                        std::sync::Arc::new(fluxo_registry::Registry::open(&path).unwrap());
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    tx.send(listener.local_addr().unwrap()).unwrap();
                    fluxo_registry::serve(
                        listener,
                        registry,
                        fluxo_registry::WriteAccess::Open,
                        std::future::pending(),
                    )
                    .await
                    .unwrap();
                });
            });
            let addr = rx.recv().unwrap();
            OwnedRegistry {
                url: format!("http://{addr}"),
                _dir: dir,
            }
        })
        .url
        .clone()
}

/// A suffix unique to this test run and call.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        Instant::now().elapsed().subsec_nanos() % 10_000
    )
}

/// The shipped topology with every topic renamed `<topic>-<suffix>` and `extra` appended
/// (e.g. processor params).
pub fn topology_text(suffix: &str, extra: &str) -> String {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("topology.toml"))
            .unwrap();
    let topics = [
        "asset-prices",
        "price-alerts",
        "below-average-events",
        "transactions",
        "document-blacklist",
        "risk-decisions",
        "ledger-entries",
        "daily-balances",
    ];
    let mut text = shipped;
    for t in topics {
        text = text
            .replace(&format!("[topics.{t}]"), &format!("[topics.{t}-{suffix}]"))
            .replace(&format!("\"{t}\""), &format!("\"{t}-{suffix}\""));
    }
    // Tests share one broker: each gets consumer groups of its own.
    let text = text.replacen(
        "group_prefix = \"fluxo\"",
        &format!("group_prefix = \"fluxo-{suffix}\""),
        1,
    );
    assert!(
        text.contains(&format!("fluxo-{suffix}\"")),
        "group_prefix not set"
    );
    format!("{text}\n{extra}\n")
}

/// A child process killed when dropped (a failed assertion must not leave it running).
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The document key the runtimes of the tests pseudonymize CPF/CNPJ with.
pub const TEST_DOCUMENT_KEY: &str = "fluxo integration tests document key";

/// A test environment: topology file, data dir, addresses.
pub struct Env {
    /// Topic suffix.
    pub suffix: String,
    /// Temporary directory holding topology and data.
    pub dir: tempfile::TempDir,
    /// Path of the topology file.
    pub topology: PathBuf,
    /// HTTP address of the runtime.
    pub http_addr: String,
    /// Process ids of the `fluxo run` children started by [`Env::start`], killed when the
    /// environment is dropped (a failed assertion must not leave a runtime running).
    children: std::sync::Mutex<Vec<u32>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let pids = self.children.lock().unwrap_or_else(|p| p.into_inner());
        // Only a process that is still this environment's runtime (its pid may have been reused
        // since it stopped): its environment names this environment's HTTP address.
        let ours = format!("FLUXO_HTTP_ADDR={}", self.http_addr);
        for pid in pids.iter() {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if !environ.split(|b| *b == 0).any(|var| var == ours.as_bytes()) {
                continue;
            }
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Env {
    /// A new environment with the shipped topology (topics suffixed) plus `extra`, and only the
    /// processors in `enabled` enabled.
    pub fn new(enabled: &[&str], extra: &str) -> Self {
        let suffix = unique("t");
        let dir = tempfile::tempdir().unwrap();
        let mut text = topology_text(&suffix, extra);
        for p in fluxo::catalog::Kind::ALL.map(|k| k.name()) {
            if !enabled.contains(&p) {
                text = text.replace(
                    &format!("[processors.{p}]\n"),
                    &format!("[processors.{p}]\nenabled = false\n"),
                );
            }
        }
        let topology = dir.path().join("topology.toml");
        std::fs::write(&topology, text).unwrap();
        Self {
            suffix,
            dir,
            topology,
            http_addr: format!("127.0.0.1:{}", free_port()),
            children: Default::default(),
        }
    }

    /// A second environment for another instance of the same deployment: the same topology
    /// (topics, consumer groups) with a data directory, HTTP address and `runtime.instance`
    /// (so a transactional.id) of its own.
    pub fn sibling(&self) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let dir = tempfile::tempdir().unwrap();
        let topology = dir.path().join("topology.toml");
        let text = std::fs::read_to_string(&self.topology).unwrap();
        assert!(
            text.contains("\ninstance = 0\n"),
            "no `instance = 0` in the topology"
        );
        let instance = NEXT.fetch_add(1, Ordering::SeqCst);
        std::fs::write(
            &topology,
            text.replacen("\ninstance = 0\n", &format!("\ninstance = {instance}\n"), 1),
        )
        .unwrap();
        Self {
            suffix: self.suffix.clone(),
            dir,
            topology,
            http_addr: format!("127.0.0.1:{}", free_port()),
            children: Default::default(),
        }
    }

    /// Switch this environment to the ScyllaDB backend on the binary's Cassandra node, in a
    /// keyspace of its own (siblings made after this share it, as instances of one deployment
    /// share their cluster).
    pub fn use_scylla(&self) {
        self.use_scylla_at(&cassandra());
    }

    /// [`Env::use_scylla`] on the node at `address` (a node the test starts, and kills).
    pub fn use_scylla_at(&self, address: &str) {
        let keyspace = format!("t_{}", self.suffix.replace('-', "_"));
        self.edit_topology(
            "backend = \"embedded\"",
            &format!(
                "backend = \"scylla\"\nnodes = [\"{}\"]\nkeyspace = \"{keyspace}\"\n\
                 replication = {{ class = \"SimpleStrategy\", replication_factor = 1 }}\n\
                 consistency = \"LOCAL_QUORUM\"",
                address
            ),
        );
    }

    /// The parsed topology of this environment.
    pub fn parsed_topology(&self) -> fluxo::config::Topology {
        let text = std::fs::read_to_string(&self.topology).unwrap();
        fluxo::config::Topology::parse(
            &text,
            "topology.toml",
            &fluxo::config::Overrides {
                data_dir: Some(self.data_dir()),
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// The state store of this environment, as `fluxo run` opens it (the embedded file must not
    /// be held by a running instance).
    pub fn store(&self) -> std::sync::Arc<dyn fluxo::state::StateStore> {
        let t = self.parsed_topology();
        match t.state.backend {
            fluxo::config::Backend::Embedded => std::sync::Arc::new(
                fluxo::state::embedded::EmbeddedStore::open(&t.state_path()).unwrap(),
            ),
            fluxo::config::Backend::Scylla => std::sync::Arc::new(
                fluxo::state::scylla::ScyllaStore::connect(&t.state.scylla().unwrap()).unwrap(),
            ),
        }
    }

    /// Replace `from` by `to` in the topology file (e.g. a `[runtime]` setting); panics when
    /// `from` is not there, so a renamed key cannot silently leave the test on defaults.
    pub fn edit_topology(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.topology).unwrap();
        assert!(text.contains(from), "{from:?} not in the topology");
        std::fs::write(&self.topology, text.replacen(from, to, 1)).unwrap();
    }

    /// The test name of a shipped topic.
    pub fn topic(&self, name: &str) -> String {
        format!("{name}-{}", self.suffix)
    }

    /// The data directory of the runtime.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A `fluxo` command with this environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fluxo"));
        c.args(args)
            .env("FLUXO_TOPOLOGY", &self.topology)
            .env("FLUXO_BOOTSTRAP_SERVERS", broker())
            .env("FLUXO_SCHEMA_REGISTRY_URL", registry())
            .env("FLUXO_HTTP_ADDR", &self.http_addr)
            .env("FLUXO_DATA_DIR", self.data_dir())
            // The scylla backend refuses to start without a document key.
            .env("FLUXO_DOCUMENT_KEY", TEST_DOCUMENT_KEY)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        c
    }

    /// Create the topics of the topology.
    pub fn create_topics(&self) {
        let out = self.command(&["topics", "create"]).output().unwrap();
        assert!(
            out.status.success(),
            "topics create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start `fluxo run` in the background and wait until it is ready.
    pub fn start(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("fluxo.log"))
            .unwrap();
        let mut child = self
            .command(&["run"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child.id());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("fluxo run exited early ({status}); log:\n{}", self.log());
            }
            if http_get(&self.http_addr, "/readyz").is_some_and(|(code, _)| code == 200) {
                return child;
            }
            assert!(
                Instant::now() < deadline,
                "fluxo run not ready; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The runtime's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fluxo.log")).unwrap_or_default()
    }

    /// Sum of a counter over all label sets matching `labels` (e.g. `processor="x"`).
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let Some((_, body)) = http_get(&self.http_addr, "/metrics") else {
            return 0.0;
        };
        body.lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Wait until the checkpointed offsets of `processor` add up to `total` (every input of a
    /// fresh topic applied and committed).
    pub fn wait_checkpointed(&self, processor: &str, total: u64, timeout: Duration) {
        let label = format!("processor=\"{processor}\"");
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.metric("fluxo_checkpointed_offset", &[&label]) as u64;
            if got >= total {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{processor} checkpointed {got} of {total}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait until `fluxo_records_in_total{processor}` reaches `n`.
    pub fn wait_for_records_in(&self, processor: &str, n: u64, timeout: Duration) {
        let label = format!("processor=\"{processor}\"");
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.metric("fluxo_records_in_total", &[&label]) as u64;
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{processor} consumed {got} of {n} records; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Stop a child with SIGTERM and wait for it (exit status returned).
pub fn stop(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 GET: `(status, body)`, or `None` when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path, &[], "")
}

/// A minimal HTTP/1.1 request with headers and body: `(status, body)`.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Registers schemas and produces typed events.
pub struct TestProducer {
    producer: FutureProducer,
    ids: HashMap<String, u32>,
}

impl TestProducer {
    /// A producer on the test broker.
    pub fn new() -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", broker())
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .set("queue.buffering.max.messages", "500000")
            .create()
            .unwrap();
        Self {
            producer,
            ids: HashMap::new(),
        }
    }

    /// The schema id of `T` registered under `<topic>-value`.
    pub async fn schema_id<T: AvroEvent>(&mut self, topic: &str) -> u32 {
        if let Some(id) = self.ids.get(topic) {
            return *id;
        }
        let sr = fluxo::codec::registry_settings(&registry()).unwrap();
        let schema = fluxo::avro::schemas::all()
            .iter()
            .find(|s| s.name == T::SCHEMA_NAME)
            .unwrap();
        let registered = schema_registry_converter::async_impl::schema_registry::post_schema(
            &sr,
            format!("{topic}-value"),
            schema_registry_converter::schema_registry_common::SuppliedSchema::new(
                Some(format!("br.com.fluxo.{}", schema.name)),
                schema_registry_converter::schema_registry_common::SchemaType::Avro,
                schema.json.to_string(),
            ),
        )
        .await
        .unwrap();
        self.ids.insert(topic.to_string(), registered.id);
        registered.id
    }

    /// Produce framed `event` with `key`.
    pub async fn send<T: AvroEvent>(&mut self, topic: &str, key: &str, event: &T) {
        let id = self.schema_id::<T>(topic).await;
        let payload = frame(id, &encode_datum(event).unwrap());
        self.send_raw(topic, key, Some(&payload)).await;
    }

    /// Produce framed `event` with `key` and `headers`.
    pub async fn send_with_headers<T: AvroEvent>(
        &mut self,
        topic: &str,
        key: &str,
        event: &T,
        headers: &[(&str, &str)],
    ) {
        let id = self.schema_id::<T>(topic).await;
        let payload = frame(id, &encode_datum(event).unwrap());
        let headers = headers
            .iter()
            .fold(rdkafka::message::OwnedHeaders::new(), |h, (k, v)| {
                h.insert(rdkafka::message::Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            });
        let record = FutureRecord::<str, [u8]>::to(topic)
            .key(key)
            .payload(&payload)
            .headers(headers);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// Produce raw bytes (or a tombstone).
    pub async fn send_raw(&self, topic: &str, key: &str, payload: Option<&[u8]>) {
        let mut record = FutureRecord::<str, [u8]>::to(topic).key(key);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// Queue without waiting for the acknowledgement (for bulk loads); call `flush` after.
    pub fn enqueue_raw(&self, topic: &str, key: &str, payload: &[u8]) {
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .key(key)
            .payload(payload);
        loop {
            match self.producer.send_result(record) {
                Ok(_) => return,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }

    /// Wait for every queued record.
    pub fn flush(&self) {
        self.producer.flush(Duration::from_secs(120)).unwrap();
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub payload: Option<Vec<u8>>,
    /// Headers with values.
    pub headers: HashMap<String, String>,
}

/// Read every record of `topic` from the beginning until `n` were read or `timeout` passed.
pub fn read_topic(topic: &str, n: usize, timeout: Duration) -> Vec<ReadRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(read_record(&m));
        }
    }
    out
}

/// Every record of `topic` a `read_committed` consumer sees, read until each partition reports
/// its end (transaction markers and aborted records take offsets, so a count of offsets says
/// nothing of how many records there are to read).
pub fn read_to_end(topic: &str, timeout: Duration) -> Vec<ReadRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut open = std::collections::HashSet::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
            open.insert(p.id());
        }
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !open.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{topic}: partitions {open:?} not read to their end within {timeout:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(read_record(&m)),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            _ => {}
        }
    }
    out
}

fn read_record(m: &rdkafka::message::BorrowedMessage<'_>) -> ReadRecord {
    ReadRecord {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|h| {
                h.iter()
                    .filter_map(|h| {
                        Some((
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value?).into_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Decode a framed value of `T` with the schema fluxo ships (the test registry holds the same).
pub fn decode<T: AvroEvent>(payload: &[u8]) -> T {
    let (_, datum) = fluxo::avro::framing::unframe(payload).unwrap();
    fluxo::avro::typed::decode_datum::<T>(T::schema(), datum).unwrap()
}
