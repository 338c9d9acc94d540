//! `processing_guarantee = "exactly_once"`: Kafka transactions, against the harness's Apache
//! Kafka broker (`common::broker`): outputs committed once, aborted transactions invisible to
//! `read_committed` consumers, a crash between the Kafka commit and the store commit, a zombie
//! producer fenced, and a clear start failure on brokers that cannot serve transactions.

mod common;

use fluxo::config::{Overrides, Topology};
use fluxo::pipeline::Pipeline;
use fluxo::state::embedded::EmbeddedStore;
use fluxo::state::{Checkpoint, Rows, StateStore, StoreError, WriteBatch};
use fluxo_processors::events::AssetPrice;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The broker and the topic creation of these tests.
struct Brokers {
    bootstrap: String,
}

impl Brokers {
    fn new() -> Self {
        Self {
            bootstrap: common::broker(),
        }
    }

    fn create_topics(&self, topology: &Topology) {
        let rt = tokio::runtime::Handle::current();
        let t = topology.clone();
        std::thread::spawn(move || rt.block_on(fluxo::kafka::create_topics(&t)))
            .join()
            .unwrap()
            .unwrap();
    }
}

/// `text` (a topology) switched to `exactly_once`, whatever it said.
fn exactly_once(text: &str) -> String {
    let re_from = [
        "processing_guarantee = \"effectively_once\"",
        "processing_guarantee = \"exactly_once\"",
    ];
    assert!(
        re_from.iter().any(|f| text.contains(f)),
        "the shipped topology no longer sets processing_guarantee"
    );
    text.replacen(re_from[0], re_from[1], 1)
}

/// The shipped topology with only price-change enabled, in `exactly_once` mode, on `bootstrap`.
fn topology(bootstrap: &str, data: &Path) -> Topology {
    let suffix = common::unique("eo");
    let mut text = common::topology_text(&suffix, "");
    text = exactly_once(&text);
    for p in ["below-average", "risk-scoring", "daily-consolidation"] {
        text = text.replace(
            &format!("[processors.{p}]\n"),
            &format!("[processors.{p}]\nenabled = false\n"),
        );
    }
    let overrides = Overrides {
        bootstrap_servers: Some(bootstrap.to_string()),
        schema_registry_url: Some(common::registry()),
        data_dir: Some(data.to_path_buf()),
        ..Default::default()
    };
    Topology::parse(&text, "topology.toml", &overrides).unwrap()
}

fn topic(t: &Topology, name: &str) -> String {
    t.topics
        .keys()
        .find(|k| k.starts_with(&format!("{name}-")))
        .unwrap()
        .clone()
}

/// `symbols` symbols, each quoted at 100, at 120 one second later and at 120 again a minute
/// later (which releases the second quote from the 30 s reorder buffer): exactly one rise alert
/// (20% > the default 10%; the cooldown silences the third quote) per symbol.
async fn produce_quotes(t: &Topology, bootstrap: &str, symbols: usize) {
    let sr = fluxo::codec::registry_settings(&t.schema_registry.url).unwrap();
    let ids = fluxo::codec::register_topic_schemas(t, &sr).await.unwrap();
    let prices = topic(t, "asset-prices");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (step, price) in [(0, "100"), (1, "120"), (61, "120")] {
        for s in 0..symbols {
            let q = AssetPrice {
                event_id: format!("q{s}-{step}"),
                symbol: format!("SYM{s}"),
                price: price.parse().unwrap(),
                currency: "BRL".into(),
                source: "b3".into(),
                event_time: 1_700_000_000_000 + step * 1000,
            };
            let payload = fluxo::avro::framing::frame(
                ids[&prices],
                &fluxo::avro::typed::encode_datum(&q).unwrap(),
            );
            let key = q.symbol.clone();
            producer
                .send(BaseRecord::to(&prices).key(&key).payload(&payload))
                .unwrap();
        }
        // Second quotes after the first ones, so each symbol's 100 precedes its 120.
        producer.flush(Duration::from_secs(30)).unwrap();
    }
}

/// The `fluxo-id` headers of every record of `topic`, read with `isolation`
/// (`read_committed` or `read_uncommitted`).
fn read_ids(bootstrap: &str, topic: &str, isolation: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", common::unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
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
    let mut ids = Vec::new();
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(3) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            idle = Instant::now();
            let id = m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == fluxo::engine::ID_HEADER)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .unwrap_or_default();
            ids.push(id);
        }
    }
    ids
}

fn checkpointed(store: &dyn StateStore, processor: &str) -> i64 {
    store
        .checkpoints(processor)
        .unwrap()
        .iter()
        .map(|c| c.next_offset)
        .sum()
}

/// Run price-change over `store` until it checkpointed `total` input records, then stop it.
async fn run_until(t: &Topology, store: Arc<dyn StateStore>, probe: &dyn StateStore, total: i64) {
    let pipeline = Pipeline::start(t, store, None).await.unwrap();
    assert!(
        pipeline.wait_started(Duration::from_secs(60)).await,
        "engine did not start"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while checkpointed(probe, "price-change") < total {
        assert!(!pipeline.any_finished(), "engine stopped early");
        assert!(Instant::now() < deadline, "not all input checkpointed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::spawn_blocking(move || pipeline.stop())
        .await
        .unwrap()
        .unwrap();
}

fn assert_each_once(ids: &[String], symbols: usize) {
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), symbols, "distinct outputs: {ids:?}");
    assert_eq!(ids.len(), symbols, "duplicates among {ids:?}");
    assert!(
        ids.iter().all(|i| i.starts_with("price-change:")),
        "{ids:?}"
    );
}

/// A store that refuses commits number `from..until` (1-based), like a disk that fills and is
/// freed again: the Kafka transaction of those checkpoints commits, the store's does not.
struct FlakyStore {
    inner: Arc<EmbeddedStore>,
    commits: AtomicUsize,
    from: usize,
    until: usize,
}

impl StateStore for FlakyStore {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn scan(
        &self,
        table: &str,
        prefix: &[u8],
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, StoreError> {
        self.inner.scan(table, prefix, start, end, limit)
    }
    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if (self.from..self.until).contains(&n) && !batch.checkpoints.is_empty() {
            return Err(StoreError(format!("injected failure of commit {n}")));
        }
        self.inner.commit(batch)
    }
    fn checkpoints(&self, processor: &str) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.checkpoints(processor)
    }
    fn drop_namespace(&self, prefix: &str) -> Result<(), StoreError> {
        self.inner.drop_namespace(prefix)
    }
}

const SYMBOLS: usize = 40;
const QUOTES: i64 = 3 * SYMBOLS as i64;

/// Every input is processed and its alert committed once: a `read_committed` consumer sees
/// each of the 40 alerts exactly once, and the store checkpointed all 120 quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_outputs_are_committed_once() {
    let brokers = Brokers::new();
    let dir = tempfile::tempdir().unwrap();
    let t = topology(&brokers.bootstrap, dir.path());
    brokers.create_topics(&t);
    produce_quotes(&t, &brokers.bootstrap, SYMBOLS).await;
    let store: Arc<EmbeddedStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
    run_until(&t, store.clone(), &*store, QUOTES).await;
    let alerts = topic(&t, "price-alerts");
    assert_each_once(
        &read_ids(&brokers.bootstrap, &alerts, "read_committed"),
        SYMBOLS,
    );
    assert_eq!(checkpointed(&*store, "price-change"), QUOTES);
}

/// The store refuses two checkpoints after their Kafka transactions committed (the in-process
/// form of a crash between the two commits): the engine rewinds to the store's checkpoint and
/// re-processes the records since, discarding the outputs already committed. Not even a
/// `read_uncommitted` consumer sees a duplicate, and the state converges (all quotes
/// checkpointed, every alert present once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failure_after_the_kafka_commit_repeats_no_output() {
    let brokers = Brokers::new();
    let dir = tempfile::tempdir().unwrap();
    let mut t = topology(&brokers.bootstrap, dir.path());
    // Small checkpoints, so the failures fall between records.
    t.runtime.checkpoint_max_records = 7;
    t.runtime.max_batch = 7;
    brokers.create_topics(&t);
    produce_quotes(&t, &brokers.bootstrap, SYMBOLS).await;
    let store = Arc::new(FlakyStore {
        inner: Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap()),
        commits: AtomicUsize::new(0),
        from: 3,
        until: 5,
    });
    run_until(&t, store.clone(), &*store, QUOTES).await;
    assert!(
        store.commits.load(Ordering::SeqCst) >= 5,
        "failures not reached"
    );
    let alerts = topic(&t, "price-alerts");
    assert_each_once(
        &read_ids(&brokers.bootstrap, &alerts, "read_uncommitted"),
        SYMBOLS,
    );
    assert_each_once(
        &read_ids(&brokers.bootstrap, &alerts, "read_committed"),
        SYMBOLS,
    );
}

/// A crash between the Kafka commit and the store commit, then a restart: the first run's store
/// refuses every commit from the third on (its Kafka transactions keep committing), and it is
/// stopped; the second run starts from the store's older checkpoint, learns from the group's
/// committed offsets which outputs are already committed, re-processes those records only to
/// rebuild state, and produces the rest. A `read_committed` consumer sees each alert once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_a_crash_between_the_commits_repeats_no_output() {
    let brokers = Brokers::new();
    let dir = tempfile::tempdir().unwrap();
    let mut t = topology(&brokers.bootstrap, dir.path());
    t.runtime.checkpoint_max_records = 7;
    t.runtime.max_batch = 7;
    brokers.create_topics(&t);
    produce_quotes(&t, &brokers.bootstrap, SYMBOLS).await;
    let inner = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
    let frozen = Arc::new(FlakyStore {
        inner: inner.clone(),
        commits: AtomicUsize::new(0),
        from: 3,
        until: usize::MAX,
    });
    let pipeline = Pipeline::start(&t, frozen.clone(), None).await.unwrap();
    assert!(pipeline.wait_started(Duration::from_secs(60)).await);
    let deadline = Instant::now() + Duration::from_secs(60);
    while frozen.commits.load(Ordering::SeqCst) < 8 {
        assert!(Instant::now() < deadline, "first run made no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::spawn_blocking(move || pipeline.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(checkpointed(&*inner, "price-change") < QUOTES);
    run_until(&t, inner.clone(), &*inner, QUOTES).await;
    let alerts = topic(&t, "price-alerts");
    assert_each_once(
        &read_ids(&brokers.bootstrap, &alerts, "read_committed"),
        SYMBOLS,
    );
}

/// A transactional producer over the brokers, with the engine's settings, started (probe
/// included) for group `group`.
fn transactional(
    bootstrap: &str,
    id: &str,
    group: &str,
    probe_topic: &str,
) -> (
    BaseProducer,
    fluxo::transactions::Transactions,
    BaseConsumer,
) {
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", bootstrap);
    let mut pcfg = base.clone();
    fluxo::transactions::configure_producer(&mut pcfg, id);
    let producer: BaseProducer = pcfg.create().unwrap();
    let mut txn = fluxo::transactions::Transactions::start(
        &producer,
        &base,
        group,
        probe_topic,
        Duration::from_secs(10),
    )
    .unwrap();
    let consumer: BaseConsumer = base.clone().set("group.id", group).create().unwrap();
    txn.set_group_metadata(consumer.group_metadata());
    (producer, txn, consumer)
}

fn send_with_id(producer: &BaseProducer, topic: &str, id: &str) {
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: fluxo::engine::ID_HEADER,
        value: Some(id.as_bytes()),
    });
    producer
        .send(
            BaseRecord::<(), [u8]>::to(topic)
                .payload(&b"x"[..])
                .headers(headers),
        )
        .unwrap();
}

/// Five records produced in a transaction that is aborted, then three in one that commits:
/// `read_uncommitted` sees all eight, `read_committed` only the three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_transaction_is_invisible_to_read_committed() {
    let brokers = Brokers::new();
    let dir = tempfile::tempdir().unwrap();
    let t = topology(&brokers.bootstrap, dir.path());
    brokers.create_topics(&t);
    let alerts = topic(&t, "price-alerts");
    let prices = topic(&t, "asset-prices");
    let group = common::unique("txn-group");
    let (producer, mut txn, _c) =
        transactional(&brokers.bootstrap, &format!("{group}-0"), &group, &prices);

    txn.ensure_begun(&producer).unwrap();
    for i in 0..5 {
        send_with_id(&producer, &alerts, &format!("aborted-{i}"));
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    txn.abort(&producer);
    assert_eq!(txn.fatal(), None);

    txn.ensure_begun(&producer).unwrap();
    for i in 0..3 {
        send_with_id(&producer, &alerts, &format!("committed-{i}"));
    }
    let offsets = BTreeMap::from([((prices.clone(), 0), 3_i64)]);
    txn.commit(&producer, &offsets).unwrap();
    assert!(txn.already_committed(&prices, 0, 2));
    assert!(!txn.already_committed(&prices, 0, 3));

    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let all = sorted(read_ids(&brokers.bootstrap, &alerts, "read_uncommitted"));
    let committed = vec!["committed-0", "committed-1", "committed-2"];
    let mut expected_all: Vec<String> = (0..5).map(|i| format!("aborted-{i}")).collect();
    expected_all.extend(committed.iter().map(|s| s.to_string()));
    assert_eq!(all, expected_all);
    let visible = sorted(read_ids(&brokers.bootstrap, &alerts, "read_committed"));
    assert_eq!(visible, committed);
}

/// A second instance starting with the same `transactional.id` fences the first: the first's
/// next commit fails as fatal (the engine stops instead of committing over the new owner).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_fences_its_previous_incarnation() {
    let brokers = Brokers::new();
    let dir = tempfile::tempdir().unwrap();
    let t = topology(&brokers.bootstrap, dir.path());
    brokers.create_topics(&t);
    let alerts = topic(&t, "price-alerts");
    let prices = topic(&t, "asset-prices");
    let group = common::unique("txn-group");
    let id = format!("{group}-0");
    let (old, mut old_txn, _c1) = transactional(&brokers.bootstrap, &id, &group, &prices);
    old_txn.ensure_begun(&old).unwrap();
    send_with_id(&old, &alerts, "zombie");
    let (_new, _new_txn, _c2) = transactional(&brokers.bootstrap, &id, &group, &prices);
    let offsets = BTreeMap::from([((prices.clone(), 0), 1_i64)]);
    let err = old_txn.commit(&old, &offsets).unwrap_err();
    // Fatal, and told apart as a fence by its error code (not its message).
    assert!(
        matches!(err, fluxo::transactions::TxnError::Fenced(_)),
        "{err}"
    );
    assert!(err.is_fatal());
    assert!(old_txn.fatal().is_some());
}

/// Against brokers that cannot serve transactions (here a Kafka whose transaction log needs
/// three replicas on one node, so no transaction coordinator ever becomes available) `fluxo run`
/// in `exactly_once` mode stops within seconds with an error saying so, instead of hanging at
/// its first checkpoint.
#[test]
fn exactly_once_without_transactions_fails_fast_with_a_clear_error() {
    let _serial = common::serial();
    let broker_dir = tempfile::tempdir().unwrap();
    let address = format!("127.0.0.1:{}", common::free_port());
    let _broker = fluxo::engines::kafka::Broker::start_with(
        &address,
        broker_dir.path(),
        &[(
            "FLUXO_KAFKA_PROPS",
            "transaction.state.log.replication.factor=3".to_string(),
        )],
    )
    .unwrap();
    let env = common::Env::new(&["price-change"], "");
    let text = exactly_once(&std::fs::read_to_string(&env.topology).unwrap());
    std::fs::write(&env.topology, text).unwrap();
    let with_broker = |mut c: std::process::Command| {
        c.env("FLUXO_BOOTSTRAP_SERVERS", &address);
        c
    };
    let out = with_broker(env.command(&["topics", "create"]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    let mut child = with_broker(env.command(&["run"]))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("fluxo run did not stop within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("exit {status} after {elapsed:?}; stderr:\n{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs Kafka transactions, which the brokers at"),
        "{stderr}"
    );
    assert!(stderr.contains("effectively_once"), "{stderr}");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}
