//! `fluxo replay` on the real broker: two replays of one range give byte-identical outputs and
//! identical state, a fresh replay leaves the live topics and state untouched, a live rebuild
//! equals the original view (and is refused without `--confirm`, or while a running fluxo holds
//! the store), a live rebuild on the ScyllaDB backend fences the running instance, and what-if
//! diffs give the known answers of crafted series.

mod common;

use common::*;
use fluxo_processors::events::{AssetPrice, Transaction, TransactionKind};
use fluxo_processors::risk::documents::generate_cpf;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const T0: i64 = 1_767_268_800_000; // 2026-01-01T12:00:00Z

fn quote(symbol: &str, id: &str, price: &str, at: i64) -> AssetPrice {
    AssetPrice {
        event_id: id.into(),
        symbol: symbol.into(),
        price: price.parse().unwrap(),
        currency: "BRL".into(),
        source: "b3".into(),
        event_time: at,
    }
}

fn minute(m: i64) -> i64 {
    T0 + m * 60_000
}

/// `(partition, key, value)` of every record of `topic`, in partition then offset order.
type Records = Vec<(i32, Option<Vec<u8>>, Option<Vec<u8>>)>;

fn records(topic: &str) -> Records {
    let mut all = read_topic(topic, usize::MAX, Duration::from_secs(4));
    all.sort_by_key(|r| (r.partition, r.offset));
    all.into_iter()
        .map(|r| (r.partition, r.key, r.payload))
        .collect()
}

/// Every table of a state file but the checkpoints, and the checkpoints as
/// `topic/partition -> offset` (processor names differ between replays).
type Snapshot = (
    BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>,
    BTreeMap<String, i64>,
);

fn snapshot(path: &Path) -> Snapshot {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let mut tables = BTreeMap::new();
    for handle in txn.list_tables().unwrap() {
        let name = handle.name().to_string();
        if name == "__checkpoints" {
            continue;
        }
        let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
        let t = txn.open_table(def).unwrap();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = t
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect();
        // An emptied table is the same state as a table never written: live runs write and
        // later delete the held-quote index of symbols whose quotes a tick released, a replay
        // releases them before its only checkpoint and never creates the table.
        if !rows.is_empty() {
            tables.insert(name, rows);
        }
    }
    let def: TableDefinition<&[u8], i64> = TableDefinition::new("__checkpoints");
    let cps = txn.open_table(def).unwrap();
    let mut checkpoints = BTreeMap::new();
    for r in cps.iter().unwrap() {
        let (k, v) = r.unwrap();
        let key = k.value();
        let rest = &key[key.iter().position(|b| *b == 0).unwrap() + 1..];
        let sep = rest.iter().position(|b| *b == 0).unwrap();
        let partition = i32::from_be_bytes(rest[sep + 1..].try_into().unwrap());
        let topic = String::from_utf8_lossy(&rest[..sep]);
        checkpoints.insert(format!("{topic}/{partition}"), v.value());
    }
    (tables, checkpoints)
}

/// Run `fluxo replay ARGS` to the end (at most three minutes).
fn replay(env: &Env, args: &[&str]) -> Output {
    let mut full = vec!["replay"];
    full.extend_from_slice(args);
    let out = env.dir.path().join("replay.out");
    let err = env.dir.path().join("replay.err");
    let mut child = env
        .command(&full)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "fluxo {full:?} did not finish in 180 s; stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

/// What the last replay of `env` printed on stderr.
fn out_err(env: &Env) -> Vec<u8> {
    std::fs::read(env.dir.path().join("replay.err")).unwrap_or_default()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "replay failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Quotes over six symbols (so several partitions): rises that alert, late quotes that are
/// dead-lettered, and undecodable bytes.
async fn produce_market(env: &Env) -> usize {
    let prices = env.topic("asset-prices");
    let mut p = TestProducer::new();
    let mut n = 0;
    for s in 0..6 {
        let symbol = format!("SYM{s}");
        for i in 0..20_i64 {
            // A saw-tooth: +12% every fourth quote, so alerts come out (with cooldowns).
            let price = if i % 4 == 3 { "112.00" } else { "100.00" };
            let q = quote(&symbol, &format!("{symbol}-{i}"), price, minute(i * 2));
            p.send(&prices, &symbol, &q).await;
            n += 1;
        }
        // Five minutes late: dead-lettered as `late`.
        let late = quote(&symbol, &format!("{symbol}-late"), "100.00", minute(20));
        p.send(&prices, &symbol, &late).await;
        n += 1;
    }
    p.send_raw(&prices, "SYM0", Some(b"not avro")).await;
    n + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_deterministic_fresh_leaves_live_alone_and_live_rebuild_matches() {
    let _serial = serial();
    // Live releases a quiet symbol's held quotes after `idle_timeout` of wall-clock time, a
    // replay at the end of its range: with a short timeout both have emitted everything.
    let env = Env::new(
        &["price-change"],
        "[processors.price-change.params]\nidle_timeout = \"1s\"\n",
    );
    env.create_topics();
    let mut child = env.start();
    let n = produce_market(&env).await;
    env.wait_checkpointed("price-change", n as u64, Duration::from_secs(90));
    // The idle timeout, a tick and a checkpoint.
    std::thread::sleep(Duration::from_secs(4));

    // While `fluxo run` holds the store, a live rebuild is refused with a clear message.
    let fenced = replay(
        &env,
        &[
            "--processor",
            "price-change",
            "--from",
            "beginning",
            "--into",
            "live",
            "--confirm",
        ],
    );
    let stderr = String::from_utf8_lossy(&fenced.stderr);
    assert_eq!(fenced.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by a running fluxo"), "{stderr}");
    assert!(stop(&mut child).success());

    let alerts = env.topic("price-alerts");
    let dlq = format!("{}.dlq", env.topic("asset-prices"));
    let live_state = env.data_dir().join("state.redb");
    let live_before = (records(&alerts), records(&dlq), snapshot(&live_state));
    assert!(!live_before.0.is_empty());
    assert_eq!(live_before.1.len(), 7, "6 late quotes and 1 undecodable");

    // Two fresh replays of the same range.
    for id in ["a", "b"] {
        let out = ok(&replay(
            &env,
            &[
                "--processor",
                "price-change",
                "--from",
                "beginning",
                "--id",
                id,
            ],
        ));
        assert!(
            out.contains(&format!("records read          {n}")),
            "{out}\n{}",
            String::from_utf8_lossy(&out_err(&env))
        );
        assert!(out.contains("records dead-lettered 7"), "{out}");
        assert!(
            out.contains(&format!("records emitted       {}", live_before.0.len())),
            "{out}"
        );
    }
    let a = records(&format!("{alerts}.replay-a"));
    let b = records(&format!("{alerts}.replay-b"));
    assert_eq!(a, b, "byte-identical outputs, in order, per partition");
    assert_eq!(a.len(), live_before.0.len());
    // The same alerts as live (live interleaves partitions differently, so compare as sets).
    let sorted = |mut r: Records| {
        r.sort();
        r
    };
    assert_eq!(sorted(a.clone()), sorted(live_before.0.clone()));
    assert_eq!(
        records(&format!("{dlq}.replay-a")),
        records(&format!("{dlq}.replay-b"))
    );
    assert_eq!(records(&format!("{dlq}.replay-a")).len(), 7);
    let replays = env.data_dir().join("replays");
    let (state_a, cps_a) = snapshot(&replays.join("a.redb"));
    let (state_b, cps_b) = snapshot(&replays.join("b.redb"));
    assert!(!state_a.is_empty());
    assert_eq!(state_a, state_b, "identical state");
    assert_eq!(cps_a, cps_b);
    assert_eq!(state_a, live_before.2 .0, "the same state as live");

    // Live topics and state untouched.
    let live_after = (records(&alerts), records(&dlq), snapshot(&live_state));
    assert_eq!(live_before, live_after);

    // Reusing an id is refused rather than mixing two replays.
    let reused = replay(
        &env,
        &[
            "--processor",
            "price-change",
            "--from",
            "beginning",
            "--id",
            "a",
        ],
    );
    assert_eq!(reused.status.code(), Some(2));

    // A live rebuild needs --confirm ...
    let refused = replay(
        &env,
        &[
            "--processor",
            "price-change",
            "--from",
            "beginning",
            "--into",
            "live",
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--confirm"));
    assert_eq!(snapshot(&live_state), live_before.2);

    // ... and with it rebuilds exactly the original view and offsets.
    ok(&replay(
        &env,
        &[
            "--processor",
            "price-change",
            "--from",
            "beginning",
            "--into",
            "live",
            "--confirm",
        ],
    ));
    assert_eq!(snapshot(&live_state), live_before.2);
}

/// On the ScyllaDB backend there is no file lock: a live rebuild claims the processor's
/// partitions in the shared store, so the running instance's store commits are refused from
/// then on, and (in the shipped `exactly_once` mode) the rebuild's transactional producer, with
/// the processor's transactional.id, fences the running one's at once: the running instance
/// stops (exit 1, "fenced") instead of committing over the rebuild, and the rebuild finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_rebuild_on_scylla_fences_the_running_instance() {
    let _serial = serial();
    let env = Env::new(&["price-change"], "");
    env.use_scylla();
    env.create_topics();
    let mut child = env.start();
    let n = produce_market(&env).await;
    env.wait_checkpointed("price-change", n as u64, Duration::from_secs(90));

    let out = ok(&replay(
        &env,
        &[
            "--processor",
            "price-change",
            "--from",
            "beginning",
            "--into",
            "live",
            "--confirm",
        ],
    ));
    assert!(out.contains(&format!("records read          {n}")), "{out}");

    // New quotes make the live instance process and try to commit: refused, and it stops.
    let mut p = TestProducer::new();
    let prices = env.topic("asset-prices");
    for i in 0..50_i64 {
        let q = quote("LATE", &format!("late-{i}"), "100.00", minute(100 + i));
        p.send(&prices, "LATE", &q).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fenced instance kept running; log:\n{}",
            env.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status.code(), Some(1), "log:\n{}", env.log());
    assert!(env.log().contains("fenced"), "log:\n{}", env.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_stops_at_the_given_offsets_and_times() {
    let _serial = serial();
    let env = Env::new(&["price-change"], "");
    env.create_topics();
    let prices = env.topic("asset-prices");
    let mut p = TestProducer::new();
    // One symbol, so one partition holds everything.
    for i in 0..10 {
        let q = quote("ONE", &format!("one-{i}"), "100.00", minute(i));
        p.send(&prices, "ONE", &q).await;
    }
    let middle = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 10..15 {
        let q = quote("ONE", &format!("one-{i}"), "100.00", minute(i));
        p.send(&prices, "ONE", &q).await;
    }
    let partition = read_topic(&prices, 15, Duration::from_secs(10))[0].partition;

    // Offsets: from 3 to the end.
    let out = ok(&replay(
        &env,
        &[
            "--processor",
            "price-change",
            "--from",
            &format!("{partition}=3"),
            "--id",
            "offsets",
            "--format",
            "json",
        ],
    ));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["summary"]["records_read"], 12);
    assert_eq!(
        json["summary"]["partitions"],
        serde_json::json!([[prices, partition, 3, 15]])
    );

    // Times: from the beginning to the middle, then from the middle to the end.
    let middle = middle.to_rfc3339();
    let out = ok(&replay(
        &env,
        &[
            "--processor",
            "price-change",
            "--from",
            "2020-01-01T00:00:00Z",
            "--to",
            &middle,
            "--id",
            "first",
            "--format",
            "json",
        ],
    ));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["summary"]["records_read"], 10, "{json}");
    let out = ok(&replay(
        &env,
        &[
            "--processor",
            "price-change",
            "--from",
            &middle,
            "--id",
            "second",
            "--format",
            "json",
        ],
    ));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["summary"]["records_read"], 5, "{json}");

    // Bad input is a usage error.
    let bad = replay(
        &env,
        &["--processor", "price-change", "--from", "yesterday"],
    );
    assert_eq!(bad.status.code(), Some(2));
    let bad = replay(&env, &["--processor", "nope", "--from", "beginning"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_lower_price_threshold_gains_exactly_the_crafted_alerts() {
    let _serial = serial();
    let env = Env::new(&["price-change"], "");
    env.create_topics();
    let mut child = env.start();
    let prices = env.topic("asset-prices");
    let mut p = TestProducer::new();
    // BIG rises 12% (an alert either way), MID1..MID3 rise 7% (alerts at 5% only), FLAT 3%
    // (none). A last quote six minutes on moves event time past the allowed lateness.
    let series = [
        ("BIG", "112.00"),
        ("MID1", "107.00"),
        ("MID2", "107.00"),
        ("MID3", "107.00"),
        ("FLAT", "103.00"),
    ];
    let mut n = 0;
    for (symbol, top) in series {
        for (i, (price, at)) in [("100.00", 0), (top, 1), (top, 7)].into_iter().enumerate() {
            let q = quote(symbol, &format!("{symbol}-{i}"), price, minute(at));
            p.send(&prices, symbol, &q).await;
            n += 1;
        }
    }
    env.wait_checkpointed("price-change", n, Duration::from_secs(60));
    assert!(stop(&mut child).success());

    let other = env.dir.path().join("what-if.toml");
    std::fs::write(
        &other,
        topology_text(
            &env.suffix,
            "[processors.price-change.params]\nthreshold_pct = 5\n",
        ),
    )
    .unwrap();
    let out = ok(&replay(
        &env,
        &[
            "--processor",
            "price-change",
            "--from",
            "beginning",
            "--topology",
            other.to_str().unwrap(),
            "--diff",
            "--id",
            "whatif",
            "--format",
            "json",
        ],
    ));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let diff = &json["diff"];
    assert_eq!(diff["live_outputs"], 1, "{diff}");
    assert_eq!(diff["what_if_outputs"], 4, "{diff}");
    assert_eq!(diff["gained"], 3, "{diff}");
    assert_eq!(diff["lost"], 0, "{diff}");
    let gained: Vec<&str> = diff["gained_examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(gained, ["MID1", "MID2", "MID3"]);
    assert_eq!(
        diff["gained_examples"][0]["time"],
        "2026-01-01T12:01:00.000Z"
    );

    // The text form says the same.
    let text = ok(&replay(
        &env,
        &[
            "--processor",
            "price-change",
            "--from",
            "beginning",
            "--topology",
            other.to_str().unwrap(),
            "--diff",
            "--id",
            "whatif-text",
        ],
    ));
    assert!(text.contains("gained: 3"), "{text}");
    assert!(
        text.contains("+ MID1 MID1-0->MID1-1 at 2026-01-01T12:01:00.000Z"),
        "{text}"
    );
    assert!(text.contains("lost: 0"), "{text}");
}

fn transaction(id: &str, payer: &str, amount: i64, event_time: i64) -> Transaction {
    Transaction {
        transaction_id: id.into(),
        kind: TransactionKind::Pix,
        payer_document: payer.into(),
        payer_name: "Maria".into(),
        payee_document: generate_cpf(555_000_001),
        amount: Decimal::new(amount, 2),
        channel: "app".into(),
        event_time,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_lower_review_threshold_moves_exactly_the_night_transactions() {
    let _serial = serial();
    let env = Env::new(&["risk-scoring"], "");
    env.create_topics();
    let mut child = env.start();
    let topic = env.topic("transactions");
    let mut p = TestProducer::new();
    // Each payer new (no history, no velocity). Night (23:00 in São Paulo) and >= 1000.00: the
    // night rule's 150 points, APPROVE at review_threshold 400, REVIEW at 150. Daytime: 0.
    let night = 1_767_319_200_000; // 2026-01-02T02:00:00Z = 23:00 -03:00
    let day = 1_767_366_000_000; // 2026-01-02T15:00:00Z = 12:00 -03:00
    let mut n = 0;
    for i in 0..4_u64 {
        let payer = generate_cpf(100_000_000 + i);
        let t = transaction(&format!("night-{i}"), &payer, 200_000, night);
        p.send(&topic, &payer, &t).await;
        n += 1;
    }
    for i in 0..6_u64 {
        let payer = generate_cpf(200_000_000 + i);
        let t = transaction(&format!("day-{i}"), &payer, 200_000, day);
        p.send(&topic, &payer, &t).await;
        n += 1;
    }
    env.wait_checkpointed("risk-scoring", n, Duration::from_secs(60));
    assert!(stop(&mut child).success());

    let other = env.dir.path().join("what-if.toml");
    std::fs::write(
        &other,
        topology_text(
            &env.suffix,
            "[processors.risk-scoring.params]\nreview_threshold = 150\n",
        ),
    )
    .unwrap();
    let out = ok(&replay(
        &env,
        &[
            "--processor",
            "risk-scoring",
            "--from",
            "beginning",
            "--topology",
            other.to_str().unwrap(),
            "--diff",
            "--id",
            "risk",
            "--format",
            "json",
        ],
    ));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let d = &json["diff"]["decisions"];
    assert_eq!(d["moved"], 4, "{json}");
    assert_eq!(d["matrix"]["APPROVE"]["REVIEW"], 4, "{json}");
    assert_eq!(d["matrix"]["APPROVE"]["APPROVE"], 6, "{json}");
    assert_eq!(d["matrix"]["REVIEW"]["REVIEW"], 0, "{json}");
    assert_eq!(
        d["examples"]["APPROVE->REVIEW"],
        serde_json::json!(["night-0", "night-1", "night-2", "night-3"])
    );
    assert_eq!(json["diff"]["gained"], 0);
    assert_eq!(json["diff"]["lost"], 0);
    // No document in the report.
    assert!(!out.contains(&generate_cpf(100_000_000)), "{out}");
}
