//! The runtime's guarantees on a real broker: effectively-once state across a SIGKILL, and dead
//! letters for malformed input without stalling the partition.
//!
//! Both use the daily-consolidation processor, whose state (sums per account and day) is easy to
//! compute independently from what was produced.

mod common;

use common::ledger::*;
use common::*;
use fluxo::avro::framing::frame;
use fluxo::avro::typed::AvroEvent;
use fluxo::simulate::{SimKind, Simulator};
use fluxo_processors::events::LedgerEntry;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_equals_one_clean_pass() {
    let _serial = serial();
    let env = Env::new(&["daily-consolidation"], "");
    sigkill_then_restart(&env).await;
}

/// The same crash on the ScyllaDB backend (a Cassandra node): its commit protocol (redo log,
/// roll-forward) must keep the state exact through a SIGKILL at any point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_equals_one_clean_pass_on_scylla() {
    let _serial = serial();
    let env = Env::new(&["daily-consolidation"], "");
    env.use_scylla();
    sigkill_then_restart(&env).await;
}

/// 60k ledger entries; `fluxo run` SIGKILLed a third of the way through and restarted; the
/// stored balances equal the exact sums.
async fn sigkill_then_restart(env: &Env) {
    const N: usize = 60_000;
    env.create_topics();
    let topic = env.topic("ledger-entries");
    let entries = simulated_entries(42, N);
    let want = expected(&entries);

    let mut producer = TestProducer::new();
    let id = producer.schema_id::<LedgerEntry>(&topic).await;
    let mut child = env.start();
    for e in &entries {
        producer.enqueue_raw(&topic, &e.account_id, &framed(id, e));
    }
    producer.flush();

    // Kill it hard in the middle of the stream.
    env.wait_for_records_in(
        "daily-consolidation",
        (N / 3) as u64,
        Duration::from_secs(300),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = env.log().len();

    let mut child = env.start();
    env.wait_checkpointed("daily-consolidation", N as u64, Duration::from_secs(600));
    assert!(
        stop(&mut child).success(),
        "log:\n{}",
        &env.log()[killed_at..]
    );

    let got = stored_balances(env, &want);
    assert_eq!(got.len(), want.len(), "number of (account, day) rows");
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "balance of {k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_go_to_the_dead_letter_topic_and_good_ones_are_processed() {
    let _serial = serial();
    let env = Env::new(&["daily-consolidation"], "");
    env.create_topics();
    let topic = env.topic("ledger-entries");
    let mut producer = TestProducer::new();
    let id = producer.schema_id::<LedgerEntry>(&topic).await;
    let mut sim = Simulator::new(SimKind::Ledger, 7);
    let base = 1_767_225_600_000;

    // 5,000 good entries with 1,000 malformed ones of five kinds mixed in.
    let mut good = Vec::new();
    let mut bad_reasons = Vec::new();
    for i in 0..6_000i64 {
        if i % 6 == 5 {
            let n = bad_reasons.len();
            let (reason, payload): (&str, Option<Vec<u8>>) = match n % 5 {
                0 => ("bad_framing", Some(vec![7, 1, 2, 3, 4, 5, 6])),
                1 => ("unknown_schema_id", Some(frame(987_654, &[2, 4, 6]))),
                2 => ("undecodable", Some(frame(id, &[0xff, 0xff, 0xff]))),
                3 => ("null_value", None),
                _ => {
                    let mut e = sim.next_entry(base + i * 1_000);
                    e.amount = -e.amount;
                    ("invalid_amount", Some(framed(id, &e)))
                }
            };
            producer
                .send_raw(&topic, "ACC-BAD", payload.as_deref())
                .await;
            bad_reasons.push(reason);
        } else {
            let e = sim.next_entry(base + i * 1_000);
            producer.enqueue_raw(&topic, &e.account_id, &framed(id, &e));
            good.push(e);
        }
    }
    producer.flush();
    assert_eq!(bad_reasons.len(), 1_000);

    let mut child = env.start();
    env.wait_checkpointed("daily-consolidation", 6_000, Duration::from_secs(300));
    let dead = read_topic(&format!("{topic}.dlq"), 1_000, Duration::from_secs(60));
    assert!(stop(&mut child).success(), "log:\n{}", env.log());

    assert_eq!(
        dead.len(),
        1_000,
        "every malformed record is dead-lettered once"
    );
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut positions = HashSet::new();
    for d in &dead {
        let reason = d
            .headers
            .get("fluxo-dlq-reason")
            .cloned()
            .unwrap_or_default();
        *by_reason.entry(reason).or_default() += 1;
        assert_eq!(d.headers.get("fluxo-dlq-source-topic"), Some(&topic));
        assert_eq!(
            d.headers.get("fluxo-dlq-processor").map(String::as_str),
            Some("daily-consolidation")
        );
        assert!(!d.headers.get("fluxo-dlq-detail").unwrap().is_empty());
        let p = d.headers["fluxo-dlq-source-partition"].clone();
        let o = d.headers["fluxo-dlq-source-offset"].clone();
        assert!(positions.insert((p, o)), "a dead letter twice");
    }
    for reason in [
        "bad_framing",
        "unknown_schema_id",
        "undecodable",
        "null_value",
        "invalid_amount",
    ] {
        assert_eq!(by_reason.get(reason), Some(&200), "{reason}: {by_reason:?}");
    }
    let want = expected(&good);
    assert_eq!(stored_balances(&env, &want), want);
}

#[test]
fn avro_types_are_used_on_the_wire() {
    // The test producer and the runtime agree on the framing: a framed value decodes back.
    let e = Simulator::new(SimKind::Ledger, 1).next_entry(0);
    let bytes = framed(3, &e);
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 3]);
    assert_eq!(decode::<LedgerEntry>(&bytes), e);
    assert_eq!(LedgerEntry::SCHEMA_NAME, "LedgerEntry");
}

/// The harness itself: a runtime a test leaves running (e.g. after a failed assertion) is killed
/// when its environment is dropped, so no `fluxo run` outlives the test binary.
#[test]
fn a_runtime_left_running_is_killed_with_its_environment() {
    let _serial = serial();
    let env = Env::new(&["daily-consolidation"], "");
    env.create_topics();
    let mut child = env.start();
    let pid = child.id();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(env);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fluxo run {pid} still running after its environment was dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "killed, not exited: {status}");
}
