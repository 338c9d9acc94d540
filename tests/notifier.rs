//! The webhook notifier on the real broker, against HTTP receivers the tests start (axum on a
//! loopback port): exact JSON and Slack payloads, a receiver that fails and then recovers, and
//! one that never accepts a record (dead-lettered, the partition moves on).

mod common;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use common::*;
use fluxo_processors::events::{Decision, Direction, PriceAlert, RiskDecision, RiskReason};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T0: i64 = 1_767_268_800_000; // 2026-01-01T12:00:00Z

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    route: String,
    idempotency_key: Option<String>,
    content_type: Option<String>,
    body: Value,
    answered: u16,
}

#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Received>>,
    /// `flaky` answers 503 to this many requests before it answers 200.
    flaky_failures: Mutex<u32>,
}

/// How each route answers:
/// - `ok`: 200;
/// - `flaky`: 503 until `flaky_failures` are used up, then 200;
/// - `picky`: 500 to any body mentioning `poison`, 400 to any mentioning `refused`, no answer
///   within 1.5 s to any mentioning `sloth` (recorded as answered `0`), else 200.
async fn hook(
    State(r): State<Arc<Receiver>>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let status = match route.as_str() {
        "flaky" => {
            let mut left = r.flaky_failures.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        }
        "picky" if body.contains("poison") => StatusCode::INTERNAL_SERVER_ERROR,
        "picky" if body.contains("refused") => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    // `sloth` answers only after the notifier's timeout.
    let slow = route == "picky" && body.contains("sloth");
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    r.got.lock().unwrap().push(Received {
        route,
        idempotency_key: header("idempotency-key"),
        content_type: header("content-type"),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        answered: if slow { 0 } else { status.as_u16() },
    });
    if slow {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    status
}

/// Start a receiver on its own thread and runtime; its base URL.
fn start_receiver(flaky_failures: u32) -> (Arc<Receiver>, String) {
    let receiver = Arc::new(Receiver {
        flaky_failures: Mutex::new(flaky_failures),
        ..Default::default()
    });
    let state = receiver.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route("/hooks/{route}", axum::routing::post(hook))
                .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (receiver, format!("http://{addr}/hooks"))
}

impl Receiver {
    fn on(&self, route: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.route == route)
            .cloned()
            .collect()
    }

    /// Wait until `route` got `n` requests (and a moment more, to see any extra one).
    fn wait(&self, route: &str, n: usize, env: &Env) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.on(route).len() < n {
            assert!(
                Instant::now() < deadline,
                "{route} got {} of {n} requests: {:#?}\nlog:\n{}",
                self.on(route).len(),
                self.on(route),
                env.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(1_500));
        self.on(route)
    }
}

fn alert(id: &str) -> PriceAlert {
    PriceAlert {
        alert_id: id.into(),
        symbol: "PETR4".into(),
        direction: Direction::Rise,
        from_price: "100.00000000".parse().unwrap(),
        from_time: T0,
        from_event_id: "q-1".into(),
        to_price: "110.01000000".parse().unwrap(),
        to_time: T0 + 299_000,
        to_event_id: "q-2".into(),
        change_pct: "10.0100".parse().unwrap(),
        threshold_pct: "10.0000".parse().unwrap(),
        window_start: T0 - 1_000,
        window_end: T0 + 299_000,
    }
}

fn decision(tx: &str, decision: Decision, score: i32) -> RiskDecision {
    RiskDecision {
        transaction_id: tx.into(),
        score,
        decision,
        reasons: vec![RiskReason {
            rule_id: "blacklist_payer".into(),
            contribution: 1000,
            text: "payer ***.456.789-** is blacklisted; amount 98765.43 BRL".into(),
        }],
        degraded: false,
        event_time: T0,
        decided_at: T0 + 20,
        latency_ms: 20,
    }
}

/// An environment with no processor running and `notifiers` (TOML, `{url}` and topic names
/// `{price-alerts}`, `{risk-decisions}` substituted) appended to its topology.
fn env_with(notifiers: &str, url: &str) -> Env {
    let env = Env::new(&[], "");
    let text = notifiers
        .replace("{url}", url)
        .replace("{price-alerts}", &env.topic("price-alerts"))
        .replace("{risk-decisions}", &env.topic("risk-decisions"));
    let mut topology = std::fs::read_to_string(&env.topology).unwrap();
    topology.push_str(&text);
    std::fs::write(&env.topology, topology).unwrap();
    env.create_topics();
    env
}

fn source(topic: &str, rec: &ReadRecord) -> Value {
    json!({"topic": topic, "partition": rec.partition, "offset": rec.offset})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_alert_and_reject_arrive_in_json_and_slack_shapes() {
    let _serial = serial();
    let (receiver, url) = start_receiver(0);
    let env = env_with(
        r#"
[notifiers.desk-json]
url = "{url}/json"
topics = ["{price-alerts}", "{risk-decisions}"]

[notifiers.desk-slack]
url_env = "FLUXO_TEST_SLACK_WEBHOOK"
format = "slack"
topics = ["{price-alerts}", "{risk-decisions}"]
risk_decisions = ["REJECT"]
"#,
        &url,
    );
    let alerts = env.topic("price-alerts");
    let decisions = env.topic("risk-decisions");
    let mut p = TestProducer::new();
    p.send_with_headers(
        &alerts,
        "PETR4",
        &alert("a-1"),
        &[("fluxo-id", "price-change:asset-prices/1/7/0")],
    )
    .await;
    // An approval (not wanted), then a rejection without a fluxo-id header.
    p.send(&decisions, "tx-1", &decision("tx-1", Decision::Approve, 10))
        .await;
    p.send(
        &decisions,
        "tx-2",
        &decision("tx-2", Decision::Reject, 1000),
    )
    .await;
    let alert_rec = read_topic(&alerts, 1, Duration::from_secs(10)).remove(0);
    let reject_rec = read_topic(&decisions, 2, Duration::from_secs(10))
        .into_iter()
        .find(|r| r.key.as_deref() == Some(b"tx-2".as_slice()))
        .unwrap();
    let reject_key = format!("{decisions}/{}/{}", reject_rec.partition, reject_rec.offset);

    let mut cmd_env = env.command(&["run"]);
    cmd_env.env("FLUXO_TEST_SLACK_WEBHOOK", format!("{url}/slack"));
    let mut child = start_with(&env, cmd_env);

    let json_got = receiver.wait("json", 2, &env);
    let slack_got = receiver.wait("slack", 2, &env);
    common::stop(&mut child);

    assert_eq!(json_got.len(), 2, "{json_got:#?}");
    let by_type = |t: &str| json_got.iter().find(|r| r.body["type"] == t).unwrap();
    let a = by_type("price_alert");
    assert_eq!(
        a.idempotency_key.as_deref(),
        Some("price-change:asset-prices/1/7/0")
    );
    assert_eq!(a.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        a.body,
        json!({
            "id": "price-change:asset-prices/1/7/0",
            "notifier": "desk-json",
            "type": "price_alert",
            "source": source(&alerts, &alert_rec),
            "data": {
                "alert_id": "a-1",
                "symbol": "PETR4",
                "direction": "RISE",
                "from_price": "100.00000000",
                "to_price": "110.01000000",
                "change_pct": "10.0100",
                "threshold_pct": "10.0000",
                "from_time": "2026-01-01T12:00:00.000Z",
                "to_time": "2026-01-01T12:04:59.000Z",
                "window_start": "2026-01-01T11:59:59.000Z",
                "window_end": "2026-01-01T12:04:59.000Z",
            }
        })
    );
    let r = by_type("risk_decision");
    assert_eq!(r.idempotency_key.as_deref(), Some(reject_key.as_str()));
    assert_eq!(
        r.body,
        json!({
            "id": reject_key,
            "notifier": "desk-json",
            "type": "risk_decision",
            "source": source(&decisions, &reject_rec),
            "data": {
                "transaction_id": "tx-2",
                "decision": "REJECT",
                "score": 1000,
                "degraded": false,
                "reasons": [{"rule_id": "blacklist_payer", "contribution": 1000}],
                "event_time": "2026-01-01T12:00:00.000Z",
                "decided_at": "2026-01-01T12:00:00.020Z",
            }
        })
    );

    assert_eq!(slack_got.len(), 2, "{slack_got:#?}");
    let mut texts: Vec<Value> = slack_got.iter().map(|r| r.body.clone()).collect();
    texts.sort_by_key(|v| v.to_string());
    assert_eq!(
        texts,
        vec![
            json!({"text": "*PETR4* rose 10.01% (from 100 to 110.01, threshold 10%) at 2026-01-01T12:04:59.000Z"}),
            json!({"text": "Transaction `tx-2`: *REJECT* (score 1000): blacklist_payer (+1000)"}),
        ]
    );
    for r in json_got.iter().chain(&slack_got) {
        let body = r.body.to_string();
        assert!(
            !body.contains("98765") && !body.contains("456.789"),
            "{body}"
        );
    }
}

/// Start `fluxo run` from `cmd` (an [`Env::command`] with extra variables); wait for `/readyz`.
fn start_with(env: &Env, mut cmd: std::process::Command) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.dir.path().join("fluxo.log"))
        .unwrap();
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("fluxo run exited early ({status}); log:\n{}", env.log());
        }
        if http_get(&env.http_addr, "/readyz").is_some_and(|(code, _)| code == 200) {
            return child;
        }
        assert!(Instant::now() < deadline, "not ready; log:\n{}", env.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_recovers_gets_the_record_once_with_a_stable_key() {
    let _serial = serial();
    let (receiver, url) = start_receiver(3);
    let env = env_with(
        r#"
[notifiers.flaky]
url = "{url}/flaky"
topics = ["{price-alerts}"]
timeout = "2s"
retries = 5
backoff = "50ms"
max_backoff = "400ms"
"#,
        &url,
    );
    let alerts = env.topic("price-alerts");
    let mut p = TestProducer::new();
    p.send_with_headers(&alerts, "PETR4", &alert("a-1"), &[("fluxo-id", "id-1")])
        .await;
    let mut child = env.start();
    let got = receiver.wait("flaky", 4, &env);
    env.wait_checkpointed("notifier-flaky", 1, Duration::from_secs(30));
    let delivered = env.metric(
        "fluxo_notifier_deliveries_total",
        &["notifier=\"flaky\"", "outcome=\"delivered\""],
    );
    let retries = env.metric("fluxo_notifier_retries_total", &["notifier=\"flaky\""]);
    common::stop(&mut child);

    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![503, 503, 503, 200],
        "{got:#?}"
    );
    for r in &got {
        assert_eq!(r.idempotency_key.as_deref(), Some("id-1"));
        assert_eq!(r.body, got[0].body);
    }
    assert_eq!(delivered, 1.0);
    assert_eq!(retries, 3.0);
    assert!(read_topic(&format!("{alerts}.notify-dlq"), 1, Duration::from_secs(3)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_is_dead_lettered_and_the_next_ones_still_go() {
    let _serial = serial();
    let (receiver, url) = start_receiver(0);
    let env = env_with(
        r#"
[notifiers.picky]
url = "{url}/picky"
topics = ["{price-alerts}"]
timeout = "500ms"
retries = 2
backoff = "50ms"
max_backoff = "200ms"
"#,
        &url,
    );
    let alerts = env.topic("price-alerts");
    let mut p = TestProducer::new();
    // One key, so one partition and this order.
    for (id, key) in [
        ("poison", "k-poison"),
        ("good-1", "k-1"),
        ("refused", "k-refused"),
        ("sloth", "k-sloth"),
        ("good-2", "k-2"),
    ] {
        p.send_with_headers(&alerts, "PETR4", &alert(id), &[("fluxo-id", key)])
            .await;
    }
    let sent = read_topic(&alerts, 5, Duration::from_secs(10));
    let mut child = env.start();
    // Three attempts for the poison and the sloth, one for each other record.
    let got = receiver.wait("picky", 9, &env);
    env.wait_checkpointed("notifier-picky", 5, Duration::from_secs(30));
    let outcome = |o: &str| {
        env.metric(
            "fluxo_notifier_deliveries_total",
            &["notifier=\"picky\"", &format!("outcome=\"{o}\"")],
        )
    };
    let (delivered, failed, rejected) =
        (outcome("delivered"), outcome("failed"), outcome("rejected"));
    common::stop(&mut child);

    let seen: Vec<(String, u16)> = got
        .iter()
        .map(|r| (r.idempotency_key.clone().unwrap(), r.answered))
        .collect();
    let s = |k: &str, code| (k.to_string(), code);
    assert_eq!(
        seen,
        vec![
            s("k-poison", 500),
            s("k-poison", 500),
            s("k-poison", 500),
            s("k-1", 200),
            s("k-refused", 400),
            s("k-sloth", 0),
            s("k-sloth", 0),
            s("k-sloth", 0),
            s("k-2", 200),
        ]
    );
    assert_eq!((delivered, failed, rejected), (2.0, 2.0, 1.0));

    let dlq = read_topic(&format!("{alerts}.notify-dlq"), 3, Duration::from_secs(10));
    assert_eq!(dlq.len(), 3, "{dlq:#?}");
    let poison = &sent[0];
    let refused = &sent[2];
    let sloth = &sent[3];
    for (dead, original, reason, detail) in [
        (
            &dlq[0],
            poison,
            "webhook_failed",
            "3 attempts, the last: HTTP 500",
        ),
        (
            &dlq[1],
            refused,
            "webhook_rejected",
            "the webhook answered HTTP 400",
        ),
        (
            &dlq[2],
            sloth,
            "webhook_failed",
            "3 attempts, the last: timeout after 500 ms",
        ),
    ] {
        let h = |k: &str| dead.headers.get(k).cloned().unwrap_or_default();
        assert_eq!(h("fluxo-dlq-reason"), reason);
        assert_eq!(h("fluxo-dlq-detail"), detail);
        assert_eq!(h("fluxo-dlq-processor"), "notifier-picky");
        assert_eq!(h("fluxo-dlq-source-topic"), alerts);
        assert_eq!(
            h("fluxo-dlq-source-partition"),
            original.partition.to_string()
        );
        assert_eq!(h("fluxo-dlq-source-offset"), original.offset.to_string());
        assert_eq!(dead.payload, original.payload);
        assert_eq!(dead.key, original.key);
    }
}

/// At-least-once across a crash: a record whose delivery was still retrying when the process
/// died is delivered after the restart, with the same idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_short_by_a_crash_is_made_after_the_restart_with_the_same_key() {
    let _serial = serial();
    let (receiver, url) = start_receiver(u32::MAX);
    let env = env_with(
        r#"
[notifiers.restart]
url = "{url}/flaky"
topics = ["{price-alerts}"]
timeout = "1s"
retries = 20
backoff = "300ms"
max_backoff = "1s"
"#,
        &url,
    );
    let alerts = env.topic("price-alerts");
    let mut p = TestProducer::new();
    p.send_with_headers(&alerts, "PETR4", &alert("a-1"), &[("fluxo-id", "id-r")])
        .await;
    let mut child = env.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.on("flaky").len() < 3 {
        assert!(
            Instant::now() < deadline,
            "no attempts; log:\n{}",
            env.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Crash (SIGKILL) while the delivery is retrying: its offset was never checkpointed.
    child.kill().unwrap();
    child.wait().unwrap();
    let before = receiver.on("flaky").len();
    assert!(receiver.on("flaky").iter().all(|r| r.answered == 503));

    *receiver.flaky_failures.lock().unwrap() = 0;
    let mut child = env.start();
    let got = receiver.wait("flaky", before + 1, &env);
    env.wait_checkpointed("notifier-restart", 1, Duration::from_secs(30));
    common::stop(&mut child);

    assert_eq!(got.len(), before + 1, "{got:#?}");
    assert_eq!(got.last().unwrap().answered, 200);
    assert!(got
        .iter()
        .all(|r| r.idempotency_key.as_deref() == Some("id-r") && r.body == got[0].body));
    assert!(read_topic(&format!("{alerts}.notify-dlq"), 1, Duration::from_secs(3)).is_empty());
}

/// A stop (SIGTERM) while a delivery is retrying cuts it short promptly, without checkpointing
/// it: the record is delivered after the restart, with the same idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_short_by_a_stop_is_made_after_the_restart_with_the_same_key() {
    let _serial = serial();
    let (receiver, url) = start_receiver(u32::MAX);
    let env = env_with(
        r#"
[notifiers.restart]
url = "{url}/flaky"
topics = ["{price-alerts}"]
timeout = "1s"
retries = 20
backoff = "300ms"
max_backoff = "1s"
"#,
        &url,
    );
    let alerts = env.topic("price-alerts");
    let mut p = TestProducer::new();
    p.send_with_headers(&alerts, "PETR4", &alert("a-1"), &[("fluxo-id", "id-r")])
        .await;
    let mut child = env.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.on("flaky").len() < 3 {
        assert!(
            Instant::now() < deadline,
            "no attempts; log:\n{}",
            env.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopping = Instant::now();
    let status = common::stop(&mut child);
    assert!(status.success(), "{status}; log:\n{}", env.log());
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        stopping.elapsed()
    );
    let before = receiver.on("flaky").len();
    assert!(receiver.on("flaky").iter().all(|r| r.answered == 503));

    *receiver.flaky_failures.lock().unwrap() = 0;
    let mut child = env.start();
    let got = receiver.wait("flaky", before + 1, &env);
    env.wait_checkpointed("notifier-restart", 1, Duration::from_secs(30));
    common::stop(&mut child);

    assert_eq!(got.len(), before + 1, "{got:#?}");
    assert_eq!(got.last().unwrap().answered, 200);
    assert!(got
        .iter()
        .all(|r| r.idempotency_key.as_deref() == Some("id-r") && r.body == got[0].body));
    assert!(read_topic(&format!("{alerts}.notify-dlq"), 1, Duration::from_secs(3)).is_empty());
}
