//! Scale-out on the shared ScyllaDB state (a Cassandra node here): three `fluxo run` instances
//! in one consumer group on Apache Kafka, sharing one keyspace. The state of a partition lives
//! in the shared store, so whichever instance the group hands a partition to resumes it from
//! its checkpoint; the store's fence keeps an instance that lost a partition from committing
//! for it.
//!
//! - `three_instances_survive_a_sigkill`: 60k ledger entries and 30k quotes; one instance is
//!   SIGKILLed midway; the two survivors are handed its partitions by the broker's rebalance
//!   and finish. Every daily balance equals the exact sums, every price alert of a clean
//!   single-processor pass is out, and a `read_committed` consumer sees each output once.
//! - `a_paused_instance_is_fenced_when_it_resumes`: one of three instances is paused with
//!   SIGSTOP past its session timeout while the others take its partitions over, then resumed
//!   (a zombie); the balances stay exact. The store-level proof that a zombie's commit is
//!   refused is `a_claimed_partition_fences_its_previous_holder` in `src/state/scylla`; here the
//!   whole path (rebalance, claim, fenced or abandoned commits) is exercised on real engines.

mod common;

use common::ledger::*;
use common::*;
use fluxo_processors::events::{AssetPrice, DailyBalance, LedgerEntry, PriceAlert};
use fluxo_processors::{Context, Processor, RecordMeta};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::time::{Duration, Instant};

const LEDGER: &str = "daily-consolidation";
const PRICES: &str = "price-change";

/// Partitions of `processor`'s input held by the instance of `env` (0 when unreachable).
fn assigned(env: &Env, processor: &str) -> u64 {
    env.metric(
        "fluxo_assigned_partitions",
        &[&format!("processor=\"{processor}\"")],
    ) as u64
}

fn consumed(env: &Env, processor: &str) -> u64 {
    env.metric(
        "fluxo_records_in_total",
        &[&format!("processor=\"{processor}\"")],
    ) as u64
}

/// Three instances of one deployment on the scylla backend, started, with the group settled
/// (every partition of both inputs held by someone).
fn three_instances() -> (Vec<Env>, Vec<Child>) {
    let a = Env::new(&[LEDGER, PRICES], "");
    a.use_scylla();
    // A short session, so that a dead or paused member's partitions move quickly.
    a.edit_topology("session_timeout = \"10s\"", "session_timeout = \"6s\"");
    let (b, c) = (a.sibling(), a.sibling());
    a.create_topics();
    let envs = vec![a, b, c];
    let children: Vec<Child> = envs.iter().map(Env::start).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let held: Vec<(u64, u64)> = envs
            .iter()
            .map(|e| (assigned(e, LEDGER), assigned(e, PRICES)))
            .collect();
        if held.iter().map(|h| h.0).sum::<u64>() == 3 && held.iter().map(|h| h.1).sum::<u64>() == 3
        {
            eprintln!("group settled: (ledger, prices) partitions per instance {held:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle: {held:?}; log a:\n{}",
            envs[0].log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    (envs, children)
}

/// `n` simulated quotes one second of event time apart.
fn simulated_quotes(seed: u64, n: usize) -> Vec<AssetPrice> {
    let mut sim = fluxo::simulate::Simulator::new(fluxo::simulate::SimKind::Prices, seed);
    let base = 1_767_225_600_000;
    (0..n as i64)
        .map(|i| sim.next_price(base + i * 1_000))
        .collect()
}

/// The alert ids a single price-change processor emits over `quotes` in order (per symbol the
/// order is the partition's, which is all the processor's state depends on).
fn expected_alerts(quotes: &[AssetPrice]) -> BTreeSet<String> {
    let mut p = fluxo_processors::price_change::PriceChangeProcessor::new(Default::default());
    let mut state = fluxo_processors::state::MemoryState::new();
    let mut out: Vec<PriceAlert> = Vec::new();
    for (i, q) in quotes.iter().enumerate() {
        let meta = RecordMeta {
            topic: "asset-prices",
            partition: 0,
            offset: i as i64,
            timestamp: None,
            processing_time: 0,
        };
        let mut ctx = Context::new(meta, &state, &mut out);
        let _ = p.process(&mut ctx, q.clone());
        // Flushing as checkpoints do keeps the processor's caches as they are live.
        if i % 500 == 499 {
            p.flush(&mut state);
        }
    }
    out.into_iter().map(|a| a.alert_id).collect()
}

/// Produce the ledger entries and quotes of the scale-out scenarios.
async fn produce(envs: &[Env], entries: &[LedgerEntry], quotes: &[AssetPrice]) {
    let ledger = envs[0].topic("ledger-entries");
    let prices = envs[0].topic("asset-prices");
    let mut producer = TestProducer::new();
    let lid = producer.schema_id::<LedgerEntry>(&ledger).await;
    let pid = producer.schema_id::<AssetPrice>(&prices).await;
    for (i, e) in entries.iter().enumerate() {
        producer.enqueue_raw(&ledger, &e.account_id, &framed(lid, e));
        if let Some(q) = quotes.get(i / 2).filter(|_| i % 2 == 0) {
            let payload =
                fluxo::avro::framing::frame(pid, &fluxo::avro::typed::encode_datum(q).unwrap());
            producer.enqueue_raw(&prices, &q.symbol, &payload);
        }
    }
    producer.flush();
}

/// Wait until the surviving instances together hold every partition of both inputs and have
/// checkpointed all input (the checkpoint gauges of one processor summed over instances keep
/// stale values of partitions an instance gave up, so the outputs are what is finally checked).
fn wait_done(survivors: &[&Env], ledger_n: u64, quotes_n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while survivors.iter().map(|e| assigned(e, LEDGER)).sum::<u64>() != 3
        || survivors.iter().map(|e| assigned(e, PRICES)).sum::<u64>() != 3
    {
        assert!(
            Instant::now() < deadline,
            "the survivors were not handed every partition; log:\n{}",
            survivors[0].log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let store = survivors[0].store();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let sum = |p: &str| -> i64 {
            store
                .checkpoints(p)
                .unwrap()
                .iter()
                .filter(|c| !c.topic.ends_with(".dlq"))
                .map(|c| c.next_offset)
                .sum()
        };
        let (l, q) = (sum(LEDGER) as u64, sum(PRICES) as u64);
        if l >= ledger_n && q >= quotes_n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "checkpointed {l} of {ledger_n} entries, {q} of {quotes_n} quotes"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Outputs as a `read_committed` consumer sees them: every `fluxo-id` once, the last balance per
/// (account, day), the alert ids.
fn check_outputs(env: &Env, want: &Expected, alerts: &BTreeSet<String>) {
    // The killed member's open transaction holds readers back until the broker aborts it
    // (10 s), so the outputs may take a moment to show in full.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let balances = read_to_end(&env.topic("daily-balances"), Duration::from_secs(120));
        let alert_records = read_to_end(&env.topic("price-alerts"), Duration::from_secs(120));
        let mut last = Expected::new();
        for r in &balances {
            let b: DailyBalance = decode(r.payload.as_deref().expect("no tombstones"));
            last.insert(
                (b.account_id, b.business_date),
                (b.total_credits, b.total_debits, b.entry_count),
            );
        }
        let got_alerts: BTreeSet<String> = alert_records
            .iter()
            .map(|r| decode::<PriceAlert>(r.payload.as_deref().unwrap()).alert_id)
            .collect();
        if (&last != want || &got_alerts != alerts) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(3));
            continue;
        }
        assert_eq!(last.len(), want.len(), "(account, day) keys out");
        for (k, v) in want {
            assert_eq!(last.get(k), Some(v), "last balance out for {k:?}");
        }
        assert_eq!(&got_alerts, alerts, "price alerts out");
        for (topic, records) in [
            ("daily-balances", &balances),
            ("price-alerts", &alert_records),
        ] {
            let mut ids = BTreeMap::new();
            for r in records.iter() {
                let id = r
                    .headers
                    .iter()
                    .find(|(k, _)| k.as_str() == fluxo::engine::ID_HEADER)
                    .map(|(_, v)| v.clone())
                    .expect("every output has a fluxo-id");
                *ids.entry(id).or_insert(0) += 1;
            }
            let repeated: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
            assert!(
                repeated.is_empty(),
                "{topic}: outputs seen twice: {repeated:?}"
            );
        }
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_survive_a_sigkill() {
    let _serial = serial();
    const ENTRIES: usize = 60_000;
    const QUOTES: usize = 30_000;
    let (envs, mut children) = three_instances();
    let entries = simulated_entries(11, ENTRIES);
    let want = expected(&entries);
    let quotes = simulated_quotes(12, QUOTES);
    let alerts = expected_alerts(&quotes);
    produce(&envs, &entries, &quotes).await;

    // SIGKILL the first instance once the group is a third of the way through the ledger.
    let deadline = Instant::now() + Duration::from_secs(300);
    while envs.iter().map(|e| consumed(e, LEDGER)).sum::<u64>() < (ENTRIES / 3) as u64 {
        assert!(
            Instant::now() < deadline,
            "not consuming; log:\n{}",
            envs[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    children[0].kill().unwrap();
    children[0].wait().unwrap();
    eprintln!("killed instance 0");

    wait_done(&[&envs[1], &envs[2]], ENTRIES as u64, QUOTES as u64);
    for i in [1, 2] {
        assert!(stop(&mut children[i]).success(), "log:\n{}", envs[i].log());
    }
    let got = stored_balances(&envs[1], &want);
    assert_eq!(
        got.len(),
        want.len(),
        "(account, day) rows in the shared store"
    );
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "stored balance of {k:?}");
    }
    check_outputs(&envs[0], &want, &alerts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_instance_is_fenced_when_it_resumes() {
    let _serial = serial();
    const ENTRIES: usize = 60_000;
    let (envs, mut children) = three_instances();
    let entries = simulated_entries(21, ENTRIES);
    let want = expected(&entries);
    produce(&envs, &entries, &[]).await;

    let deadline = Instant::now() + Duration::from_secs(300);
    while envs.iter().map(|e| consumed(e, LEDGER)).sum::<u64>() < (ENTRIES / 4) as u64 {
        assert!(
            Instant::now() < deadline,
            "not consuming; log:\n{}",
            envs[0].log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Pause the instance that holds ledger partitions, past its 6 s session timeout.
    let zombie = (0..3).find(|i| assigned(&envs[*i], LEDGER) > 0).unwrap();
    let pid = children[zombie].id().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let others: Vec<usize> = (0..3).filter(|i| *i != zombie).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while others
        .iter()
        .map(|i| assigned(&envs[*i], LEDGER))
        .sum::<u64>()
        != 3
    {
        assert!(
            Instant::now() < deadline,
            "the others were not handed the paused member's partitions"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Let the new holders commit for a while, then wake the zombie.
    std::thread::sleep(Duration::from_secs(3));
    signal("-CONT");
    eprintln!("instance {zombie} paused past its session, resumed");

    wait_done(&[&envs[others[0]], &envs[others[1]]], ENTRIES as u64, 0);
    std::thread::sleep(Duration::from_secs(2));
    for child in children.iter_mut() {
        let _ = stop(child);
    }
    let zombie_log = envs[zombie].log();
    eprintln!(
        "zombie: {} fenced commits, lost assignment logged: {}",
        zombie_log.matches("fenced").count(),
        zombie_log.contains("assignment lost")
    );
    let got = stored_balances(&envs[others[0]], &want);
    assert_eq!(
        got.len(),
        want.len(),
        "(account, day) rows in the shared store"
    );
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "stored balance of {k:?}");
    }
    check_outputs(&envs[0], &want, &BTreeSet::new());
}
