//! Two fluxo instances in one consumer group on Apache Kafka: they split the partitions, and
//! when one is killed (SIGKILL) the broker's rebalance hands its partitions to the other, which
//! finishes the stream alone with no loss and no double count; no operator restarts anything.
//!
//! With `assignment = "group"` an instance that is given a partition resumes from its own
//! checkpoint of that partition, or re-reads it from the beginning when it has none: the input
//! topic is the changelog of the partition's state (Kafka Streams' source-topic changelog
//! optimisation), so a takeover rebuilds exactly the state the dead instance had.

mod common;

use common::ledger::*;
use common::*;
use fluxo_processors::events::{DailyBalance, LedgerEntry};
use std::time::{Duration, Instant};

const PROCESSOR: &str = "daily-consolidation";

/// Partitions of the processor's input assigned to the instance of `env` (0 when unreachable).
fn assigned(env: &Env) -> u64 {
    env.metric(
        "fluxo_assigned_partitions",
        &[&format!("processor=\"{PROCESSOR}\"")],
    ) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_s_partitions_are_taken_over_without_loss_or_double_count() {
    let _serial = serial();
    const N: usize = 30_000;
    let a = Env::new(&[PROCESSOR], "");
    // A short session so that the survivor is given the dead member's partitions quickly.
    a.edit_topology("session_timeout = \"10s\"", "session_timeout = \"6s\"");
    let b = a.sibling();
    a.create_topics();
    let topic = a.topic("ledger-entries");

    let mut child_a = a.start();
    let mut child_b = b.start();
    // The group settles with the 3 partitions split between the two members.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut pa, mut pb) = (0, 0);
    while Instant::now() < deadline {
        (pa, pb) = (assigned(&a), assigned(&b));
        if pa + pb == 3 && pa > 0 && pb > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("group split before the kill: instance a {pa} partitions, instance b {pb}");
    assert!(
        pa + pb == 3 && pa > 0 && pb > 0,
        "the group did not split the partitions: a {pa}, b {pb}; log a:\n{}\nlog b:\n{}",
        a.log(),
        b.log()
    );

    let entries = simulated_entries(7, N);
    let want = expected(&entries);
    let mut producer = TestProducer::new();
    let id = producer.schema_id::<LedgerEntry>(&topic).await;
    for e in &entries {
        producer.enqueue_raw(&topic, &e.account_id, &framed(id, e));
    }
    producer.flush();

    // Kill a member once the pair has consumed a third of the stream.
    let consumed = |env: &Env| {
        env.metric(
            "fluxo_records_in_total",
            &[&format!("processor=\"{PROCESSOR}\"")],
        ) as usize
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while consumed(&a) + consumed(&b) < N / 3 {
        assert!(
            Instant::now() < deadline,
            "not consuming; log a:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (victim, survivor, mut survivor_child) = if assigned(&a) >= assigned(&b) {
        child_a.kill().unwrap();
        child_a.wait().unwrap();
        ("a", &b, child_b)
    } else {
        child_b.kill().unwrap();
        child_b.wait().unwrap();
        ("b", &a, child_a)
    };
    eprintln!("killed instance {victim} after the pair consumed a third of {N} entries");

    // The broker hands the dead member's partitions to the survivor once its session expires.
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(60);
    while assigned(survivor) != 3 {
        assert!(
            Instant::now() < deadline,
            "60 s after the kill the survivor holds {} of 3 partitions; log:\n{}",
            assigned(survivor),
            survivor.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "survivor holds all 3 partitions {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    survivor.wait_checkpointed(PROCESSOR, N as u64, Duration::from_secs(300));
    assert!(
        stop(&mut survivor_child).success(),
        "log:\n{}",
        survivor.log()
    );

    // The survivor alone holds every partition: its view must be exact.
    let got = stored_balances(survivor, &want);
    assert_eq!(got.len(), want.len(), "number of (account, day) rows");
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "balance of {k:?}");
    }

    // What downstream consumers see: the last `daily-balances` record of every (account, day)
    // equals the exact sums, whatever was re-emitted during the takeover. The killed member's
    // open transaction holds `read_committed` readers back until the broker aborts it (the
    // transaction timeout, 10 s), so the outputs may take that long to show in full.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = last_balances(&a.topic("daily-balances"));
    while last != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        last = last_balances(&a.topic("daily-balances"));
    }
    assert_eq!(last.len(), want.len(), "number of (account, day) keys out");
    for (k, v) in &want {
        assert_eq!(last.get(k), Some(v), "last balance out for {k:?}");
    }
}

/// The last balance of every (account, day) in the `daily-balances` topic `topic`, read to its
/// end.
fn last_balances(topic: &str) -> Expected {
    let mut last = Expected::new();
    for r in &read_to_end(topic, Duration::from_secs(120)) {
        let b: DailyBalance = decode(r.payload.as_deref().expect("no tombstones"));
        last.insert(
            (b.account_id, b.business_date),
            (b.total_credits, b.total_debits, b.entry_count),
        );
    }
    last
}
