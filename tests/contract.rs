//! The processor contract on the real broker: quiet symbols still alert (wall-clock ticks), two
//! processors of one kind keep their own state across a restart (stores namespaced by processor),
//! and an input's trace headers reach its outputs with tracing off.

mod common;

use common::*;
use fluxo_processors::events::{AssetPrice, BelowAverageEvent, CrossingKind, PriceAlert};
use std::time::{Duration, Instant};

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

/// Read `topic` until `n` records arrived; the time the last one was seen.
fn wait_records(topic: &str, n: usize, timeout: Duration) -> (Vec<ReadRecord>, Instant) {
    let records = read_topic(topic, n, timeout);
    (records, Instant::now())
}

/// HALT rises 12% (100 → 112) and QUIET dips below its average (50, 50, 50 → 40), and neither
/// quotes again: both last quotes wait in the reorder buffer.
fn quiet_quotes() -> [AssetPrice; 6] {
    [
        quote("HALT", "h-1", "100.00", T0),
        quote("HALT", "h-2", "112.00", T0 + 60_000),
        quote("QUIET", "q-1", "50.00", T0),
        quote("QUIET", "q-2", "50.00", T0 + 1_000),
        quote("QUIET", "q-3", "50.00", T0 + 2_000),
        quote("QUIET", "q-4", "40.00", T0 + 3_000),
    ]
}

/// price-change and below-average with `lateness` of allowed lateness, started, and the
/// [`quiet_quotes`] sent to their input (returned with the producer and the running engine).
async fn started_with_quiet_quotes(lateness: &str) -> (Env, String, TestProducer, KillOnDrop) {
    let env = Env::new(
        &["price-change", "below-average"],
        &format!(
            "[processors.price-change.params]\nallowed_lateness = \"{lateness}\"\n\
             [processors.below-average.params]\nallowed_lateness = \"{lateness}\"\nmin_samples = 3\n"
        ),
    );
    env.create_topics();
    let prices = env.topic("asset-prices");
    let mut p = TestProducer::new();
    let child = KillOnDrop(env.start());
    for q in &quiet_quotes() {
        p.send(&prices, &q.symbol, q).await;
    }
    (env, prices, p, child)
}

/// HALT's alert (to h-2) and QUIET's below-average event (q-4) each arrive once within `bound`
/// of `since`; returns when the alert was seen.
fn expect_released(env: &Env, since: Instant, bound: Duration) -> Instant {
    let (alerts, alert_seen) = wait_records(&env.topic("price-alerts"), 1, Duration::from_secs(30));
    assert_eq!(
        alerts.len(),
        1,
        "no alert for the quiet symbol; log:\n{}",
        env.log()
    );
    let alert: PriceAlert = decode(alerts[0].payload.as_ref().unwrap());
    assert_eq!(
        (alert.symbol.as_str(), alert.to_event_id.as_str()),
        ("HALT", "h-2")
    );
    assert!(
        alert_seen - since <= bound,
        "alert after {:?}, bound {bound:?}",
        alert_seen - since
    );
    let (events, seen) = wait_records(
        &env.topic("below-average-events"),
        1,
        Duration::from_secs(30),
    );
    assert_eq!(
        events.len(),
        1,
        "no below-average event; log:\n{}",
        env.log()
    );
    let event: BelowAverageEvent = decode(events[0].payload.as_ref().unwrap());
    assert_eq!(
        (event.symbol.as_str(), event.quote_event_id.as_str()),
        ("QUIET", "q-4")
    );
    assert_eq!(event.kind, CrossingKind::Below);
    assert!(
        seen - since <= bound,
        "event after {:?}, bound {bound:?}",
        seen - since
    );
    alert_seen
}

/// A symbol rises 12% and then never quotes again; another dips below its average and goes
/// quiet. Both wait in the reorder buffer (allowed lateness 4 s of event time), and nothing later
/// of their symbols releases them: the wall-clock tick does, within the lateness plus a
/// checkpoint interval (exactly-once: the transaction commits at the checkpoint), plus the tick's
/// one-second period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symbol_that_goes_quiet_still_alerts() {
    let _serial = serial();
    let lateness_ms = 4_000;
    let (env, prices, mut p, mut child) = started_with_quiet_quotes("4s").await;
    let sent = Instant::now();

    let checkpoint_ms = 200;
    let bound = Duration::from_millis(lateness_ms + checkpoint_ms + 1_000 + 2_000);
    let seen = expect_released(&env, sent, bound);
    // The held quotes were released by the tick, not by an event-time advance: nothing else came.
    assert!(
        seen - sent >= Duration::from_millis(lateness_ms - 500),
        "released before its idle timeout: {:?}",
        seen - sent
    );

    // A quote older than the released ones is late now (it would sort before them).
    p.send(
        &prices,
        "HALT",
        &quote("HALT", "h-late", "90.00", T0 + 59_000),
    )
    .await;
    let dlq = read_topic(&format!("{prices}.dlq"), 1, Duration::from_secs(30));
    assert_eq!(dlq.len(), 1, "log:\n{}", env.log());
    assert_eq!(
        dlq[0].headers.get("fluxo-dlq-reason").map(String::as_str),
        Some("late")
    );
    assert_eq!(stop(&mut child.0).code(), Some(0));
}

/// A symbol rises 12% and another dips below its average; fluxo is stopped while both quotes
/// are still held back (the checkpoint keeps them), restarted, and no quote arrives any more.
/// The restarted engine finds the held quotes when it resumes the partitions and the wall-clock
/// tick releases them within the idle timeout (the lateness) plus a checkpoint interval and the
/// tick's period of the restart. (Before, they waited for their symbol's next quote: for ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_held_across_a_restart_is_released_without_new_quotes() {
    let _serial = serial();
    let lateness_ms = 8_000;
    const PARTITIONS: i32 = 3;
    let (env, prices, _producer, mut child) = started_with_quiet_quotes("8s").await;
    env.wait_checkpointed("price-change", 6, Duration::from_secs(30));
    env.wait_checkpointed("below-average", 6, Duration::from_secs(30));
    assert_eq!(stop(&mut child.0).code(), Some(0));
    // Stopped before the idle timeout: nothing was released, the state holds both symbols.
    assert!(
        read_to_end(&env.topic("price-alerts"), Duration::from_secs(3)).is_empty(),
        "released before the stop; the test needs a longer lateness; log:\n{}",
        env.log()
    );
    assert!(read_to_end(&env.topic("below-average-events"), Duration::from_secs(3)).is_empty());
    let held = |table: &str, symbol: &str| {
        let store = env.store();
        (0..PARTITIONS).any(|partition| {
            let mut key = format!("{prices}/{partition}").into_bytes();
            key.push(0);
            key.extend_from_slice(symbol.as_bytes());
            store.get(table, &key).unwrap().is_some()
        })
    };
    assert!(held("price-change/held", "HALT"));
    assert!(held("below-average/held", "QUIET"));

    let mut child = KillOnDrop(env.start());
    let restarted = Instant::now();
    let bound = Duration::from_millis(lateness_ms + 200 + 1_000 + 3_000);
    expect_released(&env, restarted, bound);
    assert_eq!(stop(&mut child.0).code(), Some(0));
    // Released once, and the index forgot the symbols.
    assert_eq!(
        read_to_end(&env.topic("price-alerts"), Duration::from_secs(3)).len(),
        1
    );
    assert!(!held("price-change/held", "HALT"));
    assert!(!held("below-average/held", "QUIET"));
}

/// Two price-change rules (10% in 5 minutes, 5% in 1 minute) in one topology, restarted between
/// a symbol's low and its rises: each restores its own window, so each raises exactly its own
/// alert. (With stores named by kind, each restored the other's window.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processors_of_one_kind_keep_their_own_state_across_a_restart() {
    let _serial = serial();
    let env = Env::new(&["price-change"], "");
    let fast_alerts = env.topic("fast-alerts");
    let extra = format!(
        "[processors.price-change.params]\nallowed_lateness = \"0s\"\n\
         [topics.{fast_alerts}]\nschema = \"PriceAlert\"\nkey = \"symbol\"\npartitions = 3\n\
         [processors.fast-rise]\nkind = \"price-change\"\ninputs = [\"{prices}\"]\n\
         outputs = [\"{fast_alerts}\"]\n\
         [processors.fast-rise.params]\nthreshold_pct = 5\nwindow = \"1m\"\nallowed_lateness = \"0s\"\n",
        prices = env.topic("asset-prices"),
    );
    std::fs::write(
        &env.topology,
        format!(
            "{}\n{extra}",
            std::fs::read_to_string(&env.topology).unwrap()
        ),
    )
    .unwrap();
    env.create_topics();
    let prices = env.topic("asset-prices");
    let mut p = TestProducer::new();

    let mut child = KillOnDrop(env.start());
    // The low, and (for the slow rule) a higher quote 90 s later that only the slow rule keeps.
    p.send(&prices, "S", &quote("S", "s-1", "100.00", T0)).await;
    p.send(&prices, "S", &quote("S", "s-2", "104.00", T0 + 90_000))
        .await;
    env.wait_checkpointed("price-change", 2, Duration::from_secs(30));
    env.wait_checkpointed("fast-rise", 2, Duration::from_secs(30));
    assert_eq!(stop(&mut child.0).code(), Some(0));
    {
        // Each rule's window is stored under its own name (the slow one holds 100 and 104, the
        // fast one only 104).
        let store = env.store();
        let slow = store.get("price-change/symbols", b"S").unwrap();
        let fast = store.get("fast-rise/symbols", b"S").unwrap();
        assert!(slow.is_some() && fast.is_some(), "{slow:?} {fast:?}");
        assert_ne!(slow, fast);
    }

    let mut child = KillOnDrop(env.start());
    p.send(&prices, "S", &quote("S", "s-3", "110.24", T0 + 120_000))
        .await;
    p.send(&prices, "S", &quote("S", "s-4", "111.00", T0 + 240_000))
        .await;
    env.wait_checkpointed("price-change", 4, Duration::from_secs(30));
    env.wait_checkpointed("fast-rise", 4, Duration::from_secs(30));

    let slow: Vec<PriceAlert> = read_to_end(&env.topic("price-alerts"), Duration::from_secs(20))
        .iter()
        .map(|r| decode(r.payload.as_ref().unwrap()))
        .collect();
    let fast: Vec<PriceAlert> = read_to_end(&fast_alerts, Duration::from_secs(20))
        .iter()
        .map(|r| decode(r.payload.as_ref().unwrap()))
        .collect();
    let pairs = |alerts: &[PriceAlert]| -> Vec<(String, String)> {
        alerts
            .iter()
            .map(|a| (a.from_event_id.clone(), a.to_event_id.clone()))
            .collect()
    };
    // Slow rule (10% over 5 minutes, low 100): 110.24 is +10.24% -> alert; 111 is within the
    // cooldown and not another full step -> none.
    assert_eq!(
        pairs(&slow),
        vec![("s-1".into(), "s-3".into())],
        "log:\n{}",
        env.log()
    );
    // Fast rule (5% over 1 minute): at 120 s its window holds 104 (90 s): +6% -> alert. At 240 s
    // its window holds only 111 itself.
    assert_eq!(
        pairs(&fast),
        vec![("s-2".into(), "s-3".into())],
        "log:\n{}",
        env.log()
    );
    assert_eq!(stop(&mut child.0).code(), Some(0));
}

/// With tracing off, an input's `traceparent` and `tracestate` reach its outputs unchanged, so
/// a trace started upstream continues downstream of fluxo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_headers_pass_through_with_tracing_off() {
    let _serial = serial();
    let env = Env::new(
        &["price-change"],
        "[processors.price-change.params]\nallowed_lateness = \"0s\"\n",
    );
    env.create_topics();
    let prices = env.topic("asset-prices");
    let mut p = TestProducer::new();
    let mut child = KillOnDrop(env.start());
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    p.send(&prices, "T", &quote("T", "t-1", "10.00", T0)).await;
    p.send_with_headers(
        &prices,
        "T",
        &quote("T", "t-2", "12.00", T0 + 1_000),
        &[("traceparent", traceparent), ("tracestate", "vendor=abc")],
    )
    .await;
    let alerts = read_topic(&env.topic("price-alerts"), 1, Duration::from_secs(30));
    assert_eq!(alerts.len(), 1, "log:\n{}", env.log());
    assert_eq!(
        alerts[0].headers.get("traceparent").map(String::as_str),
        Some(traceparent)
    );
    assert_eq!(
        alerts[0].headers.get("tracestate").map(String::as_str),
        Some("vendor=abc")
    );
    assert_eq!(stop(&mut child.0).code(), Some(0));
}
