//! Risk scoring on the real broker: blacklist join, unlisting, invalid documents, and an external
//! validator (a real local HTTP server) that is slow, failing and recovering.

mod common;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use common::*;
use fluxo_processors::events::{
    BlacklistEntry, Decision, RiskDecision, Transaction, TransactionKind,
};
use fluxo_processors::risk::documents::{generate_cnpj, generate_cpf, punctuate};
use rust_decimal::Decimal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tx(id: &str, payer: &str, payee: &str, amount: i64, event_time: i64) -> Transaction {
    Transaction {
        transaction_id: id.into(),
        kind: TransactionKind::Pix,
        payer_document: payer.into(),
        payer_name: "Maria".into(),
        payee_document: payee.into(),
        amount: Decimal::new(amount, 2),
        channel: "app".into(),
        event_time,
    }
}

fn now() -> i64 {
    fluxo::simulate::now_millis()
}

/// Read decisions until every id in `ids` has one.
fn decisions(env: &Env, ids: &[&str]) -> Vec<RiskDecision> {
    let topic = env.topic("risk-decisions");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all: Vec<RiskDecision> = read_topic(&topic, usize::MAX, Duration::from_secs(2))
            .into_iter()
            .filter_map(|r| r.payload.map(|p| decode::<RiskDecision>(&p)))
            .collect();
        if ids
            .iter()
            .all(|id| all.iter().any(|d| d.transaction_id == *id))
        {
            return all
                .into_iter()
                .filter(|d| ids.contains(&d.transaction_id.as_str()))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "decisions missing; log:\n{}",
            env.log()
        );
    }
}

fn find<'a>(all: &'a [RiskDecision], id: &str) -> &'a RiskDecision {
    all.iter().find(|d| d.transaction_id == id).unwrap()
}

fn has_reason(d: &RiskDecision, rule: &str) -> bool {
    d.reasons.iter().any(|r| r.rule_id == rule)
}

/// Wait until the runtime has applied `n` records of `topic`.
fn wait_topic_in(env: &Env, topic: &str, n: u64) {
    let label = format!("topic=\"{topic}\"");
    let deadline = Instant::now() + Duration::from_secs(60);
    while (env.metric("fluxo_records_in_total", &[&label]) as u64) < n {
        assert!(
            Instant::now() < deadline,
            "{topic}: not applied; log:\n{}",
            env.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blacklist_listing_unlisting_and_invalid_documents() {
    let _serial = serial();
    let env = Env::new(&["risk-scoring"], "");
    env.create_topics();
    let mut p = TestProducer::new();
    let bl = env.topic("document-blacklist");
    let txs = env.topic("transactions");
    let mut child = env.start();

    let listed = generate_cpf(123_456_789);
    let payee = generate_cnpj(11_222_333, 1);
    let clean_payer = generate_cpf(987_654_321);
    let entry = BlacklistEntry {
        document: punctuate(&listed).unwrap(),
        listed: true,
        reason: "fraud".into(),
        source: "coaf".into(),
        since: now(),
    };
    p.send(&bl, &listed, &entry).await;
    wait_topic_in(&env, &bl, 1);

    // Blacklisted payer (written with punctuation) -> REJECT.
    p.send(
        &txs,
        &listed,
        &tx(
            "t-listed",
            &punctuate(&listed).unwrap(),
            &payee,
            1_000,
            now(),
        ),
    )
    .await;
    // Blacklisted payee -> REJECT.
    p.send(
        &txs,
        &clean_payer,
        &tx("t-payee", &clean_payer, &listed, 1_000, now()),
    )
    .await;
    // Invalid CPF (wrong check digit) -> REJECT invalid_document.
    let mut invalid = generate_cpf(111_222_333);
    let last = invalid.pop().unwrap().to_digit(10).unwrap();
    invalid.push(char::from_digit((last + 1) % 10, 10).unwrap());
    p.send(
        &txs,
        &invalid,
        &tx("t-invalid", &invalid, &payee, 1_000, now()),
    )
    .await;
    let got = decisions(&env, &["t-listed", "t-payee", "t-invalid"]);
    let d = find(&got, "t-listed");
    assert_eq!(d.decision, Decision::Reject);
    assert!(has_reason(d, "blacklist_payer"), "{d:?}");
    let d = find(&got, "t-payee");
    assert_eq!(d.decision, Decision::Reject);
    assert!(has_reason(d, "blacklist_payee"), "{d:?}");
    let d = find(&got, "t-invalid");
    assert_eq!(d.decision, Decision::Reject);
    assert!(has_reason(d, "invalid_document"), "{d:?}");
    for d in &got {
        assert!(
            d.reasons.iter().all(|r| !r.text.contains(&listed)),
            "document in clear: {d:?}"
        );
    }

    // Unlisting with listed=false, then a tombstone for another document.
    let unlisted = BlacklistEntry {
        listed: false,
        ..entry.clone()
    };
    p.send(&bl, &listed, &unlisted).await;
    wait_topic_in(&env, &bl, 2);
    p.send(&txs, &listed, &tx("t-after", &listed, &payee, 1_000, now()))
        .await;
    let d = decisions(&env, &["t-after"]).remove(0);
    assert!(!has_reason(&d, "blacklist_payer"), "{d:?}");
    assert_ne!(d.decision, Decision::Reject, "{d:?}");

    let other = generate_cpf(555_666_777);
    p.send(
        &bl,
        &other,
        &BlacklistEntry {
            document: other.clone(),
            ..entry.clone()
        },
    )
    .await;
    p.send_raw(&bl, &other, None).await;
    wait_topic_in(&env, &bl, 4);
    p.send(&txs, &other, &tx("t-tomb", &other, &payee, 1_000, now()))
        .await;
    let d = decisions(&env, &["t-tomb"]).remove(0);
    assert!(!has_reason(&d, "blacklist_payer"), "{d:?}");

    // The blacklist survives a restart (restored from state and the compacted topic).
    assert!(stop(&mut child).success());
    let mut child = env.start();
    p.send(
        &bl,
        &other,
        &BlacklistEntry {
            document: other.clone(),
            ..entry.clone()
        },
    )
    .await;
    wait_topic_in(&env, &bl, 1);
    p.send(
        &txs,
        &other,
        &tx("t-relisted", &other, &payee, 1_000, now()),
    )
    .await;
    let d = decisions(&env, &["t-relisted"]).remove(0);
    assert!(has_reason(&d, "blacklist_payer"), "{d:?}");
    assert!(stop(&mut child).success());
}

/// A local validator whose behaviour the test switches: 0 = healthy, 1 = slow, 2 = failing.
#[derive(Clone, Default)]
struct ValidatorControl {
    mode: Arc<AtomicUsize>,
    calls: Arc<AtomicU64>,
}

async fn validate(
    State(c): State<ValidatorControl>,
    Path(doc): Path<String>,
) -> Result<axum::Json<serde_json::Value>, StatusCode> {
    c.calls.fetch_add(1, Ordering::SeqCst);
    match c.mode.load(Ordering::SeqCst) {
        1 => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(axum::Json(serde_json::json!({"flagged": false})))
        }
        2 => Err(StatusCode::SERVICE_UNAVAILABLE),
        _ => Ok(axum::Json(serde_json::json!({
            "flagged": doc.ends_with("00"),
            "reason": "watch list",
        }))),
    }
}

async fn start_validator(control: ValidatorControl) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/documents/{doc}", get(validate))
        .with_state(control);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_failing_validator_degrades_within_the_sla_and_the_breaker_recovers() {
    let _serial = serial();
    let control = ValidatorControl::default();
    let url = start_validator(control.clone()).await;
    let params = format!(
        r#"
[processors.risk-scoring.params.external]
url = "{url}"
timeout = "200ms"
budget = "800ms"
max_retries = 2
failure_threshold = 3
open_for = "1s"
cache_ttl = "1ms"
"#
    );
    let env = Env::new(&["risk-scoring"], &params);
    env.create_topics();
    let mut p = TestProducer::new();
    let txs = env.topic("transactions");
    let mut child = env.start();
    let payee = generate_cnpj(44_555_666, 1);

    // Healthy: decisions use the validator and are not degraded.
    let payer = generate_cpf(1);
    p.send(&txs, &payer, &tx("h-1", &payer, &payee, 1_000, now()))
        .await;
    let d = decisions(&env, &["h-1"]).remove(0);
    assert!(!d.degraded, "{d:?}");
    assert!(control.calls.load(Ordering::SeqCst) >= 1);

    // Slow: every call times out; decisions are degraded and still within the SLA.
    control.mode.store(1, Ordering::SeqCst);
    let ids: Vec<String> = (0..20).map(|i| format!("slow-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let payer = generate_cpf(1_000 + i as u64);
        p.send(&txs, &payer, &tx(id, &payer, &payee, 1_000, now()))
            .await;
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    for d in decisions(&env, &refs) {
        assert!(d.degraded, "{d:?}");
        assert!(d.latency_ms < 2_000, "SLA: {d:?}");
        assert!(
            d.reasons
                .iter()
                .any(|r| r.rule_id == "external_unavailable"),
            "{d:?}"
        );
    }
    assert_eq!(env.metric("fluxo_risk_sla_breaches_total", &[]), 0.0);

    // Failing: the breaker opens, calls stop reaching the validator.
    control.mode.store(2, Ordering::SeqCst);
    for i in 0..6 {
        let payer = generate_cpf(2_000 + i);
        let id = format!("fail-{i}");
        p.send(&txs, &payer, &tx(&id, &payer, &payee, 1_000, now()))
            .await;
        let d = decisions(&env, &[&id]).remove(0);
        assert!(d.degraded, "{d:?}");
    }
    assert!(
        env.metric(
            "fluxo_validator_unavailable_total",
            &["cause=\"circuit_open\""]
        ) >= 1.0,
        "the breaker never opened; log:\n{}",
        env.log()
    );

    // Recovering: after `open_for` a probe succeeds, the breaker closes, decisions are whole.
    control.mode.store(0, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1_200));
    let mut closed = false;
    for i in 0..10 {
        let payer = generate_cpf(3_000 + i);
        let id = format!("ok-{i}");
        p.send(&txs, &payer, &tx(&id, &payer, &payee, 1_000, now()))
            .await;
        let d = decisions(&env, &[&id]).remove(0);
        if !d.degraded && env.metric("fluxo_validator_breaker_state", &[]) == 0.0 {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        closed,
        "the breaker did not close again; log:\n{}",
        env.log()
    );

    assert!(stop(&mut child).success());
}

/// The ASCII bytes of `text` in lowercase hex, as `SELECT JSON` renders a blob.
fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Run risk scoring with a listed CPF, a regular payer and payees, stop it, and return the
/// documents used (listed CPF, clean payer, payee) after checking that the blacklist blocked.
async fn run_with_known_documents(env: &Env) -> [String; 3] {
    env.create_topics();
    let mut p = TestProducer::new();
    let bl = env.topic("document-blacklist");
    let txs = env.topic("transactions");
    let mut child = env.start();
    let listed = generate_cpf(345_678_912);
    let payer = generate_cpf(876_543_219);
    let payee = generate_cnpj(44_555_666, 1);
    let entry = BlacklistEntry {
        document: punctuate(&listed).unwrap(),
        listed: true,
        // The reason names the document too: it must not reach the store in clear either.
        reason: format!("fraude, CPF {}", punctuate(&listed).unwrap()),
        source: "coaf".into(),
        since: now(),
    };
    p.send(&bl, &listed, &entry).await;
    wait_topic_in(env, &bl, 1);
    let t0 = now();
    p.send(
        &txs,
        &listed,
        &tx("t-listed", &punctuate(&listed).unwrap(), &payee, 1_000, t0),
    )
    .await;
    for i in 0..3 {
        p.send(
            &txs,
            &payer,
            &tx(&format!("t-ok-{i}"), &payer, &payee, 1_000, t0 + i),
        )
        .await;
    }
    let all = decisions(env, &["t-listed", "t-ok-0", "t-ok-1", "t-ok-2"]);
    let d = find(&all, "t-listed");
    assert_eq!(d.decision, Decision::Reject, "{d:?}");
    assert!(has_reason(d, "blacklist_payer"), "{d:?}");
    env.wait_checkpointed("risk-scoring", 5, Duration::from_secs(60));
    assert!(stop(&mut child).success());
    // No clear document in the log either.
    let log = env.log();
    for doc in [&listed, &payer, &payee] {
        assert!(!log.contains(doc.as_str()), "{doc} in the log:\n{log}");
    }
    [listed, payer, payee]
}

/// The clear forms of `doc` that must not be at rest: digits only and punctuated.
fn clear_forms(doc: &str) -> Vec<String> {
    vec![doc.to_string(), punctuate(doc).unwrap()]
}

fn pseudonym(doc: &str) -> String {
    fluxo_processors::risk::Pseudonymizer::new(TEST_DOCUMENT_KEY.as_bytes())
        .unwrap()
        .pseudonym(doc)
        .hex()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_at_rest_are_pseudonymized_in_the_embedded_store() {
    let _serial = serial();
    let env = Env::new(&["risk-scoring"], "");
    let docs = run_with_known_documents(&env).await;
    let path = env.parsed_topology().state_path();
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    for doc in &docs {
        for form in clear_forms(doc) {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                "{} holds a document in clear",
                path.display()
            );
        }
    }
    // The file scanned is the one holding the state: the pseudonyms are there.
    assert!(
        text.contains(&pseudonym(&docs[0])),
        "listed CPF's pseudonym"
    );
    assert!(text.contains(&pseudonym(&docs[1])), "payer's pseudonym");
    // And a restarted runtime still blocks the listed CPF from the stored blacklist.
    let mut child = env.start();
    let mut p = TestProducer::new();
    p.send(
        &env.topic("transactions"),
        &docs[0],
        &tx("t-again", &docs[0], &docs[2], 1_000, now()),
    )
    .await;
    let d = decisions(&env, &["t-again"]).remove(0);
    assert!(has_reason(&d, "blacklist_payer"), "{d:?}");
    assert!(stop(&mut child).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_at_rest_are_pseudonymized_in_cassandra() {
    let _serial = serial();
    let env = Env::new(&["risk-scoring"], "");
    env.use_scylla();
    let docs = run_with_known_documents(&env).await;
    let settings = env.parsed_topology().state.scylla().unwrap();
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&settings.nodes)
        .build()
        .await
        .unwrap();
    let mut dump = String::new();
    for table in ["blacklist", "kv", "risk_decisions", "checkpoints"] {
        let rows = session
            .query_unpaged(
                format!("SELECT JSON * FROM {}.{table}", settings.keyspace),
                &(),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        for row in rows.rows::<(String,)>().unwrap() {
            dump.push_str(&row.unwrap().0);
            dump.push('\n');
        }
    }
    for doc in &docs {
        for form in clear_forms(doc) {
            assert!(!dump.contains(&form), "{form} in Cassandra:\n{dump}");
            assert!(
                !dump.contains(&hex_of(&form)),
                "{form} (as a blob) in Cassandra:\n{dump}"
            );
        }
    }
    // The blacklist row is keyed by the pseudonym, and the payer's state too (a kv blob).
    assert!(dump.contains(&pseudonym(&docs[0])), "{dump}");
    assert!(dump.contains(&hex_of(&pseudonym(&docs[1]))[..40]), "{dump}");
    // A restarted runtime still blocks the listed CPF.
    let mut child = env.start();
    let mut p = TestProducer::new();
    p.send(
        &env.topic("transactions"),
        &docs[0],
        &tx("t-again", &docs[0], &docs[2], 1_000, now()),
    )
    .await;
    let d = decisions(&env, &["t-again"]).remove(0);
    assert!(has_reason(&d, "blacklist_payer"), "{d:?}");
    assert!(stop(&mut child).success());
}

/// Everything a dead letter carries, as bytes: key, value, header names and values.
fn dead_letter_bytes(r: &ReadRecord) -> Vec<u8> {
    let mut all = r.key.clone().unwrap_or_default();
    all.extend(r.payload.clone().unwrap_or_default());
    for (k, v) in &r.headers {
        all.extend(k.as_bytes());
        all.extend(v.as_bytes());
    }
    all
}

/// Run `fluxo consume` for the one record at `partition`/`offset` of `topic` (a re-drive's
/// first step) and return its JSON line.
fn consume_at(env: &Env, topic: &str, partition: &str, offset: &str) -> serde_json::Value {
    let out = env
        .command(&[
            "consume",
            "--topic",
            topic,
            "--partition",
            partition,
            "--offset",
            offset,
            "--count",
            "1",
            "--timeout",
            "30",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The inputs of risk scoring carry documents; their dead letters must not: no value, the key's
/// keyed pseudonym, the reason and the source coordinates in headers. The original stays
/// readable on the input topic at those coordinates (`fluxo consume --partition --offset`).
/// An invalid CPF is a decision (REJECT), not a dead letter, and shows no document either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_documents_withhold_them_and_point_at_the_source() {
    use base64::Engine as _;
    let _serial = serial();
    let env = Env::new(&["risk-scoring"], "");
    env.create_topics();
    let mut p = TestProducer::new();
    let txs = env.topic("transactions");
    let bl = env.topic("document-blacklist");
    let tx_schema = p.schema_id::<Transaction>(&txs).await;
    let mut child = env.start();

    let cpf = generate_cpf(529_982_247);
    let punctuated = punctuate(&cpf).unwrap();
    let other = generate_cpf(111_444_777);
    let payee = generate_cnpj(11_222_333, 1);
    let mut invalid = generate_cpf(333_222_111);
    let last = invalid.pop().unwrap().to_digit(10).unwrap();
    invalid.push(char::from_digit((last + 1) % 10, 10).unwrap());

    // Malformed: not Avro, naming the payer twice, keyed by the CPF.
    let garbage = format!("not avro, payer {punctuated} ({cpf})");
    p.send_raw(&txs, &cpf, Some(garbage.as_bytes())).await;
    // Schema-valid but undecidable: a zero amount (invalid_amount).
    p.send(&txs, &cpf, &tx("t-zero", &punctuated, &payee, 0, now()))
        .await;
    // An invalid CPF: a REJECT decision.
    p.send(
        &txs,
        &invalid,
        &tx("t-invalid", &invalid, &payee, 1_000, now()),
    )
    .await;
    // A blacklist record keyed by another document than its value's (key_mismatch).
    let entry = BlacklistEntry {
        document: punctuated.clone(),
        listed: true,
        reason: format!("fraud reported for {cpf}"),
        source: "coaf".into(),
        since: now(),
    };
    p.send(&bl, &other, &entry).await;

    let dead = read_topic(&format!("{txs}.dlq"), 2, Duration::from_secs(60));
    let dead_bl = read_topic(&format!("{bl}.dlq"), 1, Duration::from_secs(60));
    let d = decisions(&env, &["t-invalid"]).remove(0);
    assert_eq!(d.decision, Decision::Reject);
    assert!(has_reason(&d, "invalid_document"), "{d:?}");
    assert_eq!(dead.len(), 2, "{dead:#?}\nlog:\n{}", env.log());
    assert_eq!(dead_bl.len(), 1, "{dead_bl:#?}\nlog:\n{}", env.log());

    let b64 = base64::engine::general_purpose::STANDARD;
    let forbidden: Vec<String> = [&cpf, &punctuated, &other, &invalid, &payee]
        .iter()
        .flat_map(|doc| [doc.to_string(), b64.encode(doc)])
        .collect();
    let decision_bytes = read_topic(&env.topic("risk-decisions"), 1, Duration::from_secs(10))
        .iter()
        .map(dead_letter_bytes)
        .collect::<Vec<_>>();
    for (what, bytes) in dead
        .iter()
        .chain(&dead_bl)
        .map(|r| ("a dead letter", dead_letter_bytes(r)))
        .chain(decision_bytes.into_iter().map(|b| ("a decision", b)))
        .chain([("the log", env.log().into_bytes())])
    {
        let text = String::from_utf8_lossy(&bytes);
        for doc in &forbidden {
            assert!(!text.contains(doc.as_str()), "{what} carries {doc}: {text}");
        }
    }

    let by_reason = |records: &[ReadRecord], reason: &str| -> ReadRecord {
        records
            .iter()
            .find(|r| r.headers.get("fluxo-dlq-reason").map(String::as_str) == Some(reason))
            .unwrap_or_else(|| panic!("no {reason} dead letter: {records:#?}"))
            .clone()
    };
    let malformed = by_reason(&dead, "bad_framing");
    let zero = by_reason(&dead, "invalid_amount");
    let mismatch = by_reason(&dead_bl, "key_mismatch");
    for (r, source, size) in [
        (&malformed, &txs, Some(garbage.len())),
        (&zero, &txs, None),
        (&mismatch, &bl, None),
    ] {
        let h = |name: &str| r.headers.get(name).cloned().unwrap_or_default();
        assert!(r.payload.is_none(), "{r:#?}");
        assert_eq!(h("fluxo-dlq-payload"), "withheld");
        assert_eq!(h("fluxo-dlq-processor"), "risk-scoring");
        assert_eq!(&h("fluxo-dlq-source-topic"), source);
        assert!(
            h("fluxo-dlq-source-partition").parse::<i32>().is_ok(),
            "{r:#?}"
        );
        assert!(
            h("fluxo-dlq-source-offset").parse::<i64>().is_ok(),
            "{r:#?}"
        );
        assert!(h("fluxo-dlq-source-size").parse::<usize>().unwrap() > 0);
        if let Some(size) = size {
            assert_eq!(h("fluxo-dlq-source-size"), size.to_string());
        }
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        assert!(
            key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
            "{key}"
        );
    }
    // Not framed: no schema id; framed: the writer's.
    assert!(!malformed.headers.contains_key("fluxo-dlq-source-schema-id"));
    assert_eq!(
        zero.headers.get("fluxo-dlq-source-schema-id"),
        Some(&tx_schema.to_string())
    );
    // One payer, one pseudonym: both dead letters keyed by the CPF share their key.
    assert_eq!(malformed.key, zero.key);
    assert_ne!(malformed.key, mismatch.key);

    // Re-drive: the originals are read at their coordinates on the input topics.
    let at = |r: &ReadRecord| {
        let h = |n: &str| r.headers[n].clone();
        consume_at(
            &env,
            &h("fluxo-dlq-source-topic"),
            &h("fluxo-dlq-source-partition"),
            &h("fluxo-dlq-source-offset"),
        )
    };
    let original = at(&malformed);
    let bytes = b64
        .decode(original["payload_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, garbage.as_bytes(), "{original}");
    let original = at(&zero);
    assert_eq!(original["transaction_id"], "t-zero", "{original}");
    assert_eq!(
        original["payer_document"],
        punctuated.as_str(),
        "{original}"
    );
    let original = at(&mismatch);
    assert_eq!(original["document"], punctuated.as_str(), "{original}");
    assert!(stop(&mut child).success(), "log:\n{}", env.log());
}
