//! What the fault tests share (tests/faults.rs, tests/kafka_cluster.rs): a paced input stream of
//! ledger entries and quotes, the invariants a finished run must meet (balances exact, every
//! alert present, none repeated under exactly-once), and the probes an operator would use
//! meanwhile (`/readyz`, the query API).

use super::ledger::*;
use super::*;
use fluxo_processors::events::{AssetPrice, DailyBalance, LedgerEntry};
use std::collections::BTreeSet;
use std::process::Child;
use std::time::{Duration, Instant};

/// The development bearer token `fluxo run` printed in its log.
pub fn token(env: &Env) -> String {
    env.log()
        .lines()
        .find_map(|l| l.strip_prefix("token"))
        .map(|t| t.trim().to_string())
        .expect("no development token in the log")
}

/// `GET path` with the bearer token: (status, JSON body, time taken).
pub fn api_get(env: &Env, token: &str, path: &str) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let auth = format!("Bearer {token}");
    let (code, body) = http_request(&env.http_addr, "GET", path, &[("Authorization", &auth)], "")
        .unwrap_or((0, String::new()));
    (
        code,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        started.elapsed(),
    )
}

/// The API path of the daily balance of `(account, business date)`.
pub fn balance_path((account, day): &(String, i32)) -> String {
    let date =
        chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(*day as u64);
    format!("/v1/accounts/{account}/daily-balances/{date}")
}

pub fn readyz(env: &Env) -> u16 {
    http_get(&env.http_addr, "/readyz").map_or(0, |(c, _)| c)
}

pub fn assert_running(child: &mut Child, env: &Env, when: &str) {
    if let Ok(Some(status)) = child.try_wait() {
        panic!("fluxo run exited {when} ({status}); log:\n{}", env.log());
    }
}

/// Wait until `cond` holds, `what` naming it in the failure.
pub fn wait_until(env: &Env, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; log:\n{}",
            env.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Wait until the checkpointed offsets of `processor` add up to `total`, failing early if
/// `fluxo run` exits meanwhile.
pub fn wait_checkpointed(
    env: &Env,
    child: &mut Child,
    processor: &str,
    total: u64,
    timeout: Duration,
) {
    let label = format!("processor=\"{processor}\"");
    wait_until(
        env,
        &format!("{processor} checkpointing {total}"),
        timeout,
        || {
            assert_running(child, env, "before checkpointing everything");
            env.metric("fluxo_checkpointed_offset", &[&label]) as u64 >= total
        },
    );
}

/// Three quotes per symbol: 100, 120 one second later (a 20 % rise: one alert) and 120 a minute
/// later (releases the second from the reorder buffer; the cooldown silences it).
pub fn quotes(symbol: usize) -> [AssetPrice; 3] {
    let at = |step: i64, price: &str| AssetPrice {
        event_id: format!("q{symbol}-{step}"),
        symbol: format!("SYM{symbol}"),
        price: price.parse().unwrap(),
        currency: "BRL".into(),
        source: "b3".into(),
        event_time: 1_767_268_800_000 + step * 1_000,
    };
    [at(0, "100"), at(1, "120"), at(61, "120")]
}

/// The input of a run: ledger entries and the quotes of `symbols` symbols, produced by a thread
/// at a steady pace (a stream that goes on while a fault is injected; records produced while
/// the broker is down wait in the producer's queue and go out once it is back).
pub struct Stream {
    pub entries: Vec<LedgerEntry>,
    pub symbols: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    pub async fn start(env: &Env, seed: u64, n: usize, symbols: usize, per_second: u64) -> Self {
        let entries = simulated_entries(seed, n);
        let ledger = env.topic("ledger-entries");
        let prices = env.topic("asset-prices");
        let mut producer = TestProducer::new();
        let ledger_id = producer.schema_id::<LedgerEntry>(&ledger).await;
        let price_id = if symbols > 0 {
            producer.schema_id::<AssetPrice>(&prices).await
        } else {
            0
        };
        let to_send = entries.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let quote_every = n / symbols.max(1);
            for (i, e) in to_send.iter().enumerate() {
                producer.enqueue_raw(&ledger, &e.account_id, &framed(ledger_id, e));
                if symbols > 0 && i % quote_every == 0 && i / quote_every < symbols {
                    for q in quotes(i / quote_every) {
                        let payload = fluxo::avro::framing::frame(
                            price_id,
                            &fluxo::avro::typed::encode_datum(&q).unwrap(),
                        );
                        producer.enqueue_raw(&prices, &q.symbol, &payload);
                    }
                }
                // Pacing, not an assertion: the stream lasts n / per_second seconds.
                let due = started + Duration::from_millis(i as u64 * 1000 / per_second);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            producer.flush();
        });
        Self {
            entries,
            symbols,
            thread: Some(thread),
        }
    }

    /// Wait for the producer to have every record acknowledged.
    pub fn finish(&mut self) {
        if let Some(t) = self.thread.take() {
            t.join().expect("the producer thread failed");
        }
    }
}

/// Every invariant of a finished run of `env` (stopped) over `stream`: the stored balances and
/// the last published ones equal the reference; every alert is there, once per id, and exactly
/// once when `exactly_once`.
pub fn check_invariants(env: &Env, stream: &Stream, exactly_once: bool) {
    let want = expected(&stream.entries);
    let got = stored_balances(env, &want);
    assert_eq!(
        got.len(),
        want.len(),
        "number of stored (account, day) rows"
    );
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "stored balance of {k:?}");
    }
    let mut last = Expected::new();
    for r in &read_to_end(&env.topic("daily-balances"), Duration::from_secs(120)) {
        let b: DailyBalance = decode(r.payload.as_deref().expect("no tombstones"));
        last.insert(
            (b.account_id, b.business_date),
            (b.total_credits, b.total_debits, b.entry_count),
        );
    }
    assert_eq!(last.len(), want.len(), "number of (account, day) keys out");
    for (k, v) in &want {
        assert_eq!(last.get(k), Some(v), "last balance out for {k:?}");
    }
    if stream.symbols == 0 {
        return;
    }
    let alerts = read_to_end(&env.topic("price-alerts"), Duration::from_secs(120));
    let ids: Vec<&String> = alerts
        .iter()
        .map(|r| {
            r.headers
                .get(fluxo::engine::ID_HEADER)
                .expect("an alert without its fluxo-id")
        })
        .collect();
    let distinct: BTreeSet<&String> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), stream.symbols, "distinct alerts: {ids:?}");
    let symbols: BTreeSet<String> = alerts
        .iter()
        .map(|r| {
            decode::<fluxo_processors::events::PriceAlert>(r.payload.as_deref().unwrap()).symbol
        })
        .collect();
    let want_symbols: BTreeSet<String> = (0..stream.symbols).map(|s| format!("SYM{s}")).collect();
    assert_eq!(symbols, want_symbols, "symbols alerted");
    if exactly_once {
        assert_eq!(ids.len(), stream.symbols, "an alert repeated: {ids:?}");
    } else {
        eprintln!(
            "effectively_once: {} alert records for {} alerts (repeats carry the same fluxo-id)",
            ids.len(),
            stream.symbols
        );
    }
}

/// Wait up to `timeout` for `child` (a `fluxo run` meant to fail-stop, `what` naming why) to
/// exit, assert it exited 1, and return its `fluxo: error:` line.
pub fn expect_fail_stop(env: &Env, child: &mut Child, what: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "fluxo run still runs {timeout:?} into {what}; log:\n{}",
            env.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let log = env.log();
    assert_eq!(status.code(), Some(1), "log:\n{log}");
    log.lines()
        .find(|l| l.starts_with("fluxo: error:"))
        .unwrap_or_else(|| panic!("no error line; log:\n{log}"))
        .to_string()
}

/// An environment with daily consolidation and price change under `guarantee`, its topics
/// created: the scenario of the broker and cluster fault tests.
pub fn mixed_env(ledger: &str, prices: &str, guarantee: &str) -> Env {
    let env = Env::new(&[ledger, prices], "");
    env.edit_topology(
        "processing_guarantee = \"exactly_once\"",
        &format!("processing_guarantee = \"{guarantee}\""),
    );
    env.create_topics();
    env
}
