//! The behaviour every [`StateStore`] backend must have, as one suite: [`run_all`].
//!
//! The embedded engine runs it in its tests; the ScyllaDB backend runs it against a Cassandra
//! node the test starts, or the node `FLUXO_TEST_SCYLLA` names (see `scylla_conformance` in
//! [`super::scylla`]'s tests).
//! Everything a run writes lives under a fresh namespace (tables) or fresh partition names
//! (views), so runs against a shared, persistent cluster do not see each other.

use super::{Checkpoint, StateStore, WriteBatch};
use fluxo_processors::events::{
    AverageMethod, BelowAverageEvent, CrossingKind, DailyBalance, Decision, Direction, PriceAlert,
    RiskDecision, RiskReason,
};
use fluxo_processors::risk::store::{self as risk_store, Listing, BLACKLIST_TABLE};
use fluxo_processors::{views, StateWriter};
use rust_decimal::Decimal;
use std::str::FromStr;

/// Names unique to one run of the suite.
struct Run {
    id: String,
}

impl Run {
    fn new() -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        }
    }

    /// A generic table of this run.
    fn table(&self, name: &str) -> String {
        format!("conformance-{}/{name}", self.id)
    }

    /// A view partition (account, symbol, id) of this run.
    fn name(&self, name: &str) -> String {
        format!("{name}-{}", self.id)
    }
}

fn cp(processor: &str, topic: &str, partition: i32, next_offset: i64) -> Checkpoint {
    Checkpoint {
        processor: processor.into(),
        topic: topic.into(),
        partition,
        next_offset,
    }
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn sorted(mut cps: Vec<Checkpoint>) -> Vec<Checkpoint> {
    cps.sort();
    cps
}

/// Run every check against `store`; panics (with the check's name) on the first failure.
pub fn run_all(store: &dyn StateStore) {
    let run = Run::new();
    empty_batch_is_a_no_op(store);
    batch_commits_writes_and_checkpoints_together(store, &run);
    checkpoints_are_per_processor_and_overwritten(store, &run);
    scan_stays_inside_prefix_range_and_limit(store, &run);
    scan_orders_binary_keys_unsigned(store, &run);
    deletes_and_overwrites(store, &run);
    binary_keys_round_trip(store, &run);
    large_values_and_large_batches(store, &run);
    views_round_trip_and_scan_in_order(store, &run);
    blacklist_and_decisions_round_trip(store, &run);
    drop_namespace_removes_tables_and_checkpoints(store, &run);
}

fn empty_batch_is_a_no_op(store: &dyn StateStore) {
    store.commit(WriteBatch::new()).unwrap();
}

fn batch_commits_writes_and_checkpoints_together(store: &dyn StateStore, run: &Run) {
    let (t, u) = (run.table("t"), run.table("u"));
    let p = run.table("p");
    let mut b = WriteBatch::new();
    b.put(&t, b"a", b"1");
    b.put(&t, b"b", b"2");
    b.delete(&t, b"b");
    b.put(&u, b"x\0y", b"3");
    b.checkpoints.push(cp(&p, "in", 2, 42));
    store.commit(b).unwrap();
    assert_eq!(store.get(&t, b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        store.get(&t, b"b").unwrap(),
        None,
        "delete after put in one batch"
    );
    assert_eq!(store.get(&u, b"x\0y").unwrap(), Some(b"3".to_vec()));
    assert_eq!(store.get(&run.table("missing"), b"a").unwrap(), None);
    assert_eq!(store.checkpoints(&p).unwrap(), vec![cp(&p, "in", 2, 42)]);
}

fn checkpoints_are_per_processor_and_overwritten(store: &dyn StateStore, run: &Run) {
    let (p1, p2, p3) = (run.table("cp1"), run.table("cp2"), run.table("cp3"));
    let mut b = WriteBatch::new();
    b.checkpoints = vec![
        cp(&p1, "a", 0, 10),
        cp(&p1, "a", 1, 11),
        cp(&p1, "b", 0, 12),
    ];
    store.commit(b).unwrap();
    let mut b = WriteBatch::new();
    b.checkpoints = vec![cp(&p2, "a", 0, 99)];
    store.commit(b).unwrap();
    let mut b = WriteBatch::new();
    b.checkpoints = vec![cp(&p1, "a", 1, 20)];
    store.commit(b).unwrap();
    assert_eq!(
        sorted(store.checkpoints(&p1).unwrap()),
        vec![
            cp(&p1, "a", 0, 10),
            cp(&p1, "a", 1, 20),
            cp(&p1, "b", 0, 12)
        ]
    );
    assert_eq!(store.checkpoints(&p2).unwrap(), vec![cp(&p2, "a", 0, 99)]);
    assert!(store.checkpoints(&p3).unwrap().is_empty());
    // A processor whose name extends another's is not mixed in.
    assert!(store.checkpoints(&run.table("cp")).unwrap().is_empty());
}

fn scan_stays_inside_prefix_range_and_limit(store: &dyn StateStore, run: &Run) {
    let v = run.table("v");
    let mut b = WriteBatch::new();
    for k in [
        &b"a"[..],
        b"a\0",
        b"a\0\x01",
        b"a\0\x02",
        b"a\0\x03",
        b"ab\0\x01",
        b"b\0\x01",
    ] {
        b.put(&v, k, k);
    }
    store.commit(b).unwrap();
    let keys = |rows: Vec<(Vec<u8>, Vec<u8>)>| {
        rows.into_iter()
            .map(|(k, val)| {
                assert_eq!(k, val, "value belongs to its key");
                k
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(store.scan(&v, b"a\0", b"", None, 100).unwrap()),
        vec![
            b"a\0".to_vec(),
            b"a\0\x01".to_vec(),
            b"a\0\x02".to_vec(),
            b"a\0\x03".to_vec()
        ]
    );
    assert_eq!(
        keys(
            store
                .scan(&v, b"a\0", b"a\0\x02", Some(b"a\0\x03"), 100)
                .unwrap()
        ),
        vec![b"a\0\x02".to_vec()]
    );
    assert_eq!(
        keys(store.scan(&v, b"a\0", b"a\0\x02", None, 100).unwrap()),
        vec![b"a\0\x02".to_vec(), b"a\0\x03".to_vec()]
    );
    assert_eq!(
        keys(store.scan(&v, b"a\0", b"", None, 2).unwrap()),
        vec![b"a\0".to_vec(), b"a\0\x01".to_vec()]
    );
    assert_eq!(
        keys(store.scan(&v, b"a\0", b"", Some(b"zzz"), 100).unwrap()).len(),
        4,
        "an end past the prefix stops at the prefix"
    );
    assert!(store.scan(&v, b"a\0", b"b", None, 100).unwrap().is_empty());
    assert!(store.scan(&v, b"a\0", b"", None, 0).unwrap().is_empty());
    assert!(store
        .scan(&v, b"a\0", b"a\0\x02", Some(b"a\0\x02"), 100)
        .unwrap()
        .is_empty());
    assert_eq!(
        keys(store.scan(&v, b"a\0\x02", b"", None, 100).unwrap()),
        vec![b"a\0\x02".to_vec()],
        "a prefix longer than the partition"
    );
    assert_eq!(
        keys(store.scan(&v, b"ab\0", b"", None, 100).unwrap()),
        vec![b"ab\0\x01".to_vec()]
    );
    assert!(store
        .scan(&run.table("nothing"), b"a\0", b"", None, 10)
        .unwrap()
        .is_empty());
}

fn scan_orders_binary_keys_unsigned(store: &dyn StateStore, run: &Run) {
    let v = run.table("order");
    let suffixes: [&[u8]; 6] = [b"\xff", b"\x80", b"\x7f", b"\x00\x01", b"\x00", b"\xff\x00"];
    let mut b = WriteBatch::new();
    for s in suffixes {
        b.put(&v, &[b"p\0", s].concat(), s);
    }
    store.commit(b).unwrap();
    let got: Vec<Vec<u8>> = store
        .scan(&v, b"p\0", b"", None, 100)
        .unwrap()
        .into_iter()
        .map(|(_, val)| val)
        .collect();
    let mut want: Vec<Vec<u8>> = suffixes.iter().map(|s| s.to_vec()).collect();
    want.sort();
    assert_eq!(got, want);
    // Ordered time keys (views::ordered_i64) sort like the numbers, negatives first.
    let t = run.table("times");
    let mut b = WriteBatch::new();
    for time in [5_i64, -1, 0, i64::MIN, i64::MAX, -86_400_000] {
        b.put(&t, &views::alert_key("S", time, "id"), &time.to_be_bytes());
    }
    store.commit(b).unwrap();
    let got: Vec<i64> = store
        .scan(&t, &views::partition_prefix("S"), b"", None, 100)
        .unwrap()
        .into_iter()
        .map(|(_, v)| i64::from_be_bytes(v.try_into().unwrap()))
        .collect();
    assert_eq!(got, vec![i64::MIN, -86_400_000, -1, 0, 5, i64::MAX]);
}

fn deletes_and_overwrites(store: &dyn StateStore, run: &Run) {
    let t = run.table("del");
    let mut b = WriteBatch::new();
    b.put(&t, b"k\x001", b"v1");
    b.put(&t, b"k\x002", b"v2");
    store.commit(b).unwrap();
    let mut b = WriteBatch::new();
    b.put(&t, b"k\x001", b"v1-new");
    b.delete(&t, b"k\x002");
    b.delete(&t, b"k\0never-written");
    store.commit(b).unwrap();
    assert_eq!(store.get(&t, b"k\x001").unwrap(), Some(b"v1-new".to_vec()));
    assert_eq!(store.get(&t, b"k\x002").unwrap(), None);
    let rows = store.scan(&t, b"k\0", b"", None, 10).unwrap();
    assert_eq!(rows, vec![(b"k\x001".to_vec(), b"v1-new".to_vec())]);
    // Put again after a delete.
    let mut b = WriteBatch::new();
    b.put(&t, b"k\x002", b"back");
    store.commit(b).unwrap();
    assert_eq!(store.get(&t, b"k\x002").unwrap(), Some(b"back".to_vec()));
}

fn binary_keys_round_trip(store: &dyn StateStore, run: &Run) {
    let t = run.table("bin");
    let keys: Vec<Vec<u8>> = vec![
        vec![0xff],
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x01, 0x00, 0xff, 0x00],
        vec![0xfe, 0xff, 0xff],
        (0..=255).collect(),
        "ação/€".as_bytes().to_vec(),
    ];
    let mut b = WriteBatch::new();
    for (i, k) in keys.iter().enumerate() {
        b.put(&t, k, &[i as u8, 0, 0xff]);
    }
    store.commit(b).unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            store.get(&t, k).unwrap(),
            Some(vec![i as u8, 0, 0xff]),
            "{k:?}"
        );
    }
    assert_eq!(store.get(&t, &[0x00, 0x01]).unwrap(), None);
    assert_eq!(store.get(&t, &[0xff, 0x00]).unwrap(), None);
    // Empty value.
    let mut b = WriteBatch::new();
    b.put(&t, b"empty", b"");
    store.commit(b).unwrap();
    assert_eq!(store.get(&t, b"empty").unwrap(), Some(Vec::new()));
}

fn large_values_and_large_batches(store: &dyn StateStore, run: &Run) {
    let t = run.table("large");
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut b = WriteBatch::new();
    b.put(&t, b"big", &big);
    b.checkpoints.push(cp(&run.table("large-p"), "in", 0, 1));
    store.commit(b).unwrap();
    assert_eq!(store.get(&t, b"big").unwrap(), Some(big));
    // Many rows in many partitions and in one partition, with their checkpoint.
    let mut b = WriteBatch::new();
    for i in 0..600_u32 {
        b.put(
            &t,
            format!("part{}\0{i:05}", i % 7).as_bytes(),
            &i.to_be_bytes(),
        );
        b.put(&t, format!("one\0{i:05}").as_bytes(), &[7; 1024]);
    }
    b.checkpoints.push(cp(&run.table("large-p"), "in", 0, 601));
    store.commit(b).unwrap();
    assert_eq!(
        store.checkpoints(&run.table("large-p")).unwrap(),
        vec![cp(&run.table("large-p"), "in", 0, 601)]
    );
    let one = store.scan(&t, b"one\0", b"", None, usize::MAX).unwrap();
    assert_eq!(one.len(), 600);
    assert_eq!(one[599].0, b"one\x0000599".to_vec());
    let p3 = store.scan(&t, b"part3\0", b"", None, usize::MAX).unwrap();
    let want: Vec<u32> = (0..600).filter(|i| i % 7 == 3).collect();
    let got: Vec<u32> = p3
        .iter()
        .map(|(_, v)| u32::from_be_bytes(v.as_slice().try_into().unwrap()))
        .collect();
    assert_eq!(got, want);
}

fn balance(account: &str, date: i32, net: &str) -> DailyBalance {
    let net = dec(net);
    DailyBalance {
        account_id: account.into(),
        business_date: date,
        total_credits: net.max(Decimal::ZERO),
        total_debits: (-net).max(Decimal::ZERO),
        net,
        entry_count: i64::from(date).abs() + 1,
        last_entry_at: i64::from(date) * 86_400_000 + 1,
        updated_at: 1_705_312_800_123,
    }
}

fn views_round_trip_and_scan_in_order(store: &dyn StateStore, run: &Run) {
    let account = run.name("acc");
    let mut b = WriteBatch::new();
    let days = [-2_i32, -1, 0, 19_737, 19_738, 19_740];
    for (i, d) in days.iter().enumerate() {
        let row = balance(&account, *d, &format!("{}.{:02}", i as i64 - 2, i * 7));
        b.put(
            views::DAILY_BALANCES,
            &views::daily_balance_key(&account, *d),
            &serde_json::to_vec(&row).unwrap(),
        );
    }
    store.commit(b).unwrap();
    let read = |k: &[u8]| -> Option<DailyBalance> {
        store
            .get(views::DAILY_BALANCES, k)
            .unwrap()
            .map(|v| serde_json::from_slice(&v).unwrap())
    };
    let d = read(&views::daily_balance_key(&account, 19_737)).unwrap();
    assert_eq!(d, balance(&account, 19_737, "1.21"));
    assert_eq!(d.net.to_string(), "1.21", "scale kept");
    let neg = read(&views::daily_balance_key(&account, -2)).unwrap();
    assert_eq!(neg.net.to_string(), "-2.00");
    assert_eq!(read(&views::daily_balance_key(&account, 19_739)), None);
    let prefix = views::partition_prefix(&account);
    let range = store
        .scan(
            views::DAILY_BALANCES,
            &prefix,
            &views::daily_balance_key(&account, -1),
            Some(&views::daily_balance_key(&account, 19_740)),
            100,
        )
        .unwrap();
    let dates: Vec<i32> = range
        .iter()
        .map(|(k, v)| {
            let b: DailyBalance = serde_json::from_slice(v).unwrap();
            assert_eq!(k, &views::daily_balance_key(&account, b.business_date));
            b.business_date
        })
        .collect();
    assert_eq!(dates, vec![-1, 0, 19_737, 19_738]);
    assert_eq!(
        store
            .scan(views::DAILY_BALANCES, &prefix, &prefix, None, 1)
            .unwrap()
            .len(),
        1
    );
    let other = views::partition_prefix(&run.name("nobody"));
    assert!(store
        .scan(views::DAILY_BALANCES, &other, &other, None, 1)
        .unwrap()
        .is_empty());

    let symbol = run.name("PETR4");
    let alert = |time: i64, id: &str| PriceAlert {
        alert_id: id.into(),
        symbol: symbol.clone(),
        direction: if time % 2 == 0 {
            Direction::Rise
        } else {
            Direction::Fall
        },
        from_price: dec("30.12345678"),
        from_time: time - 60_000,
        from_event_id: "q1".into(),
        to_price: dec("33.50000000"),
        to_time: time,
        to_event_id: "q2".into(),
        change_pct: dec("11.2101"),
        threshold_pct: dec("5.0000"),
        window_start: time - 300_000,
        window_end: time,
    };
    let alerts = [
        alert(-1_000, "a"),
        alert(1_000, "b"),
        alert(1_000, "c"),
        alert(2_000, "a"),
    ];
    let mut b = WriteBatch::new();
    for a in &alerts {
        b.put(
            views::PRICE_ALERTS,
            &views::alert_key(&symbol, a.to_time, &a.alert_id),
            &serde_json::to_vec(a).unwrap(),
        );
    }
    store.commit(b).unwrap();
    let prefix = views::partition_prefix(&symbol);
    let since = |t: i64, limit: usize| -> Vec<PriceAlert> {
        store
            .scan(
                views::PRICE_ALERTS,
                &prefix,
                &views::alert_key(&symbol, t, ""),
                None,
                limit,
            )
            .unwrap()
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).unwrap())
            .collect()
    };
    assert_eq!(since(i64::MIN, 10), alerts.to_vec());
    assert_eq!(since(1_000, 2), alerts[1..3].to_vec());
    assert_eq!(since(1_001, 10), alerts[3..].to_vec());
    assert!(since(2_001, 10).is_empty());
    let key = views::alert_key(&symbol, 1_000, "c");
    let one: PriceAlert =
        serde_json::from_slice(&store.get(views::PRICE_ALERTS, &key).unwrap().unwrap()).unwrap();
    assert_eq!(one, alerts[2]);

    let event = BelowAverageEvent {
        event_id: "e1".into(),
        symbol: symbol.clone(),
        kind: CrossingKind::Below,
        price: dec("9.87654321"),
        average: dec("10.00000000"),
        deviation_pct: dec("-1.2346"),
        samples: 20,
        method: AverageMethod::Ewma,
        event_time: -5,
        quote_event_id: "q9".into(),
    };
    let key = views::alert_key(&symbol, -5, "e1");
    let mut b = WriteBatch::new();
    b.put(
        views::BELOW_AVERAGE_EVENTS,
        &key,
        &serde_json::to_vec(&event).unwrap(),
    );
    store.commit(b).unwrap();
    let rows = store
        .scan(views::BELOW_AVERAGE_EVENTS, &prefix, &prefix, None, 10)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, key);
    let back: BelowAverageEvent = serde_json::from_slice(&rows[0].1).unwrap();
    assert_eq!(back, event);

    // Deleting a view row.
    let mut b = WriteBatch::new();
    b.delete(views::PRICE_ALERTS, &views::alert_key(&symbol, 1_000, "b"));
    store.commit(b).unwrap();
    assert_eq!(since(0, 10), vec![alerts[2].clone(), alerts[3].clone()]);
}

fn blacklist_and_decisions_round_trip(store: &dyn StateStore, run: &Run) {
    let id = run.name("tx");
    let decision = |reasons: Vec<RiskReason>| RiskDecision {
        transaction_id: id.clone(),
        score: 850,
        decision: Decision::Reject,
        reasons,
        degraded: true,
        event_time: -1,
        decided_at: 1_705_312_800_123,
        latency_ms: 12,
    };
    let full = decision(vec![
        RiskReason {
            rule_id: "blacklist_payer".into(),
            contribution: 800,
            text: "payer ***.456.789-** is listed".into(),
        },
        RiskReason {
            rule_id: "velocity_10m".into(),
            contribution: 50,
            text: "5 transactions in 10 minutes".into(),
        },
    ]);
    for d in [full, decision(Vec::new())] {
        let mut b = WriteBatch::new();
        b.put(
            views::RISK_DECISIONS,
            id.as_bytes(),
            &serde_json::to_vec(&d).unwrap(),
        );
        store.commit(b).unwrap();
        let back: RiskDecision = serde_json::from_slice(
            &store
                .get(views::RISK_DECISIONS, id.as_bytes())
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(back, d);
    }
    assert_eq!(
        store
            .get(views::RISK_DECISIONS, run.name("other").as_bytes())
            .unwrap(),
        None
    );

    let document = run.name("12345678909");
    let listing = Listing {
        reason: "fraude confirmada".into(),
        source: "coaf".into(),
        since: -86_400_000,
    };
    let bytes = risk_store::encode(&listing);
    let mut b = WriteBatch::new();
    b.put(BLACKLIST_TABLE, document.as_bytes(), &bytes);
    store.commit(b).unwrap();
    assert_eq!(
        store.get(BLACKLIST_TABLE, document.as_bytes()).unwrap(),
        Some(bytes)
    );
    let mut b = WriteBatch::new();
    b.delete(BLACKLIST_TABLE, document.as_bytes());
    store.commit(b).unwrap();
    assert_eq!(
        store.get(BLACKLIST_TABLE, document.as_bytes()).unwrap(),
        None
    );
}

fn drop_namespace_removes_tables_and_checkpoints(store: &dyn StateStore, run: &Run) {
    let ns = format!("conformance-{}/replay-1/", run.id);
    let live = run.table("live");
    let mut b = WriteBatch::new();
    b.put(&format!("{ns}x"), b"k", b"v");
    b.put(&format!("{ns}y"), b"p\0k", b"v");
    b.put(&live, b"k", b"v");
    b.checkpoints.push(cp(&format!("{ns}p"), "t", 0, 1));
    store.commit(b).unwrap();
    let mut b = WriteBatch::new();
    b.checkpoints.push(cp(&live, "t", 0, 7));
    store.commit(b).unwrap();
    store.drop_namespace(&ns).unwrap();
    assert_eq!(store.get(&format!("{ns}x"), b"k").unwrap(), None);
    assert!(store
        .scan(&format!("{ns}y"), b"p\0", b"", None, 10)
        .unwrap()
        .is_empty());
    assert!(store.checkpoints(&format!("{ns}p")).unwrap().is_empty());
    assert_eq!(store.get(&live, b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        store.checkpoints(&live).unwrap(),
        vec![cp(&live, "t", 0, 7)]
    );
    // Writing again after a drop works.
    let mut b = WriteBatch::new();
    b.put(&format!("{ns}x"), b"k", b"again");
    store.commit(b).unwrap();
    assert_eq!(
        store.get(&format!("{ns}x"), b"k").unwrap(),
        Some(b"again".to_vec())
    );
    // Clean up this run's generic tables (views use run-unique partitions).
    store
        .drop_namespace(&format!("conformance-{}/", run.id))
        .unwrap();
    assert_eq!(store.get(&live, b"k").unwrap(), None);
}
