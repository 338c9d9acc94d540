//! The query API over a real pipeline: balances computed by `fluxo run` are served with a JWT,
//! `fluxo serve` answers the same from its own replica, and reads keep working after the broker
//! is gone.

mod common;

use common::*;
use fluxo::simulate::{SimKind, Simulator};
use fluxo_processors::events::LedgerEntry;
use std::process::Stdio;
use std::time::{Duration, Instant};

const SECRET: &str = "an-integration-test-secret-of-32-bytes-or-more";

fn token() -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let exp = fluxo::simulate::now_millis() / 1000 + 600;
    encode(
        &Header::default(),
        &serde_json::json!({"sub": "test", "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let (code, body) = http_request(addr, "GET", path, &headers, "").expect("no answer");
    (
        code,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_are_served_by_run_and_by_serve_and_survive_the_broker_going_away() {
    let _serial = serial();
    // A broker of this test's own, so it can be stopped.
    let broker_dir = tempfile::tempdir().unwrap();
    let broker_addr = format!("127.0.0.1:{}", free_port());
    let mut broker = fluxo::engines::kafka::Broker::start(&broker_addr, broker_dir.path()).unwrap();
    let env = Env::new(&["daily-consolidation"], "");
    let with_broker = |mut c: std::process::Command| {
        c.env("FLUXO_BOOTSTRAP_SERVERS", &broker_addr)
            .env("FLUXO_JWT_SECRET", SECRET);
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

    // Produce a day of entries for a few accounts.
    let topic = env.topic("ledger-entries");
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker_addr)
        .create()
        .unwrap();
    let sr = fluxo::codec::registry_settings(&registry()).unwrap();
    let schema = fluxo::avro::schemas::all()
        .iter()
        .find(|s| s.name == "LedgerEntry")
        .unwrap();
    let id = schema_registry_converter::async_impl::schema_registry::post_schema(
        &sr,
        format!("{topic}-value"),
        schema_registry_converter::schema_registry_common::SuppliedSchema::new(
            None,
            schema_registry_converter::schema_registry_common::SchemaType::Avro,
            schema.json.to_string(),
        ),
    )
    .await
    .unwrap()
    .id;
    let mut sim = Simulator::new(SimKind::Ledger, 99);
    let noon = 1_767_268_800_000; // 2026-01-01T12:00:00Z = 09:00 in São Paulo
    let entries: Vec<LedgerEntry> = (0..300).map(|i| sim.next_entry(noon + i * 1_000)).collect();
    for e in &entries {
        let mut payload = Vec::new();
        fluxo::avro::typed::encode_framed(id, e, &mut payload).unwrap();
        producer
            .send(
                rdkafka::producer::FutureRecord::<str, [u8]>::to(&topic)
                    .key(&e.account_id)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    // Processing, and the API it serves.
    let log = std::fs::File::create(env.dir.path().join("fluxo.log")).unwrap();
    let mut run = with_broker(env.command(&["run"]))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(&env.http_addr, "/readyz").is_none_or(|(c, _)| c != 200) {
        assert!(Instant::now() < deadline, "not ready: {}", env.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    env.wait_checkpointed(
        "daily-consolidation",
        entries.len() as u64,
        Duration::from_secs(120),
    );

    let account = entries[0].account_id.clone();
    let day = format!("/v1/accounts/{account}/daily-balances/2026-01-01");
    let (code, _) = get(&env.http_addr, &day, None);
    assert_eq!(code, 401);
    let (code, _) = get(&env.http_addr, &day, Some("not-a-jwt"));
    assert_eq!(code, 401);
    let (code, from_run) = get(&env.http_addr, &day, Some(&token()));
    assert_eq!(code, 200, "{from_run}");
    assert!(from_run["as_of"].is_string(), "{from_run}");
    let (code, _) = get(&env.http_addr, "/v1/nothing-here", Some(&token()));
    assert_eq!(code, 404);

    // `fluxo serve` on its own replica answers the same.
    let serve_addr = format!("127.0.0.1:{}", free_port());
    let serve_dir = tempfile::tempdir().unwrap();
    let serve_log = std::fs::File::create(serve_dir.path().join("serve.log")).unwrap();
    let mut serve = KillOnDrop(
        with_broker(env.command(&["serve"]))
            .env("FLUXO_HTTP_ADDR", &serve_addr)
            .env("FLUXO_DATA_DIR", serve_dir.path())
            .stdout(serve_log.try_clone().unwrap())
            .stderr(serve_log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let from_serve = loop {
        if let Some((200, body)) = http_request(
            &serve_addr,
            "GET",
            &day,
            &[("Authorization", &format!("Bearer {}", token()))],
            "",
        ) {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v["data"] == from_run["data"] {
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "serve never caught up: {}",
            std::fs::read_to_string(serve_dir.path().join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(from_serve["data"], from_run["data"]);

    // The broker goes away: both keep answering from their stores.
    broker.stop(Duration::from_secs(5));
    let (code, again) = get(&env.http_addr, &day, Some(&token()));
    assert_eq!(code, 200);
    assert_eq!(again["data"], from_run["data"]);
    let (code, again) = get(&serve_addr, &day, Some(&token()));
    assert_eq!(code, 200);
    assert_eq!(again["data"], from_run["data"]);

    stop(&mut serve);
    stop(&mut run);
}
