//! The web console on a real `fluxo run` against the test broker:
//! - its JSON routes over HTTP: a token required, topics of the topology only, documents masked
//!   in keys, values and dead-letter payload previews;
//! - the pages in a real browser: Debian's Chromium driven by playwright-core
//!   (`console/tests/e2e.mjs`) over simulated data, one screenshot per page.
//!
//! The browser test needs `node`, `npm` and `/usr/bin/chromium` (`scripts/bootstrap` installs
//! them); without them it fails saying so, it does not skip. `npm ci` of `console/tests` runs
//! when its `node_modules` does not hold the locked playwright-core (npm's cache makes later runs
//! offline). Screenshots go to `$FLUXO_CONSOLE_SCREENSHOTS` when set (README's come from
//! `FLUXO_CONSOLE_SCREENSHOTS=docs/console cargo test --test console`), else under the target
//! directory.

mod common;

use common::{http_get, http_request, serial, Env, KillOnDrop, TestProducer};
use fluxo_processors::events::{Transaction, TransactionKind};
use rust_decimal::Decimal;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A valid CPF: it must never reach a page or a console answer in clear.
const CPF: &str = "52998224725";
const CPF_PUNCTUATED: &str = "529.982.247-25";

/// The development token `fluxo run` printed.
fn token(env: &Env) -> String {
    let log = env.log();
    log.lines()
        .find_map(|l| l.strip_prefix("token       "))
        .unwrap_or_else(|| panic!("no token line in the log:\n{log}"))
        .trim()
        .to_string()
}

fn get_json(env: &Env, path: &str, token: Option<&str>) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let (status, body) = http_request(&env.http_addr, "GET", path, &headers, "")
        .unwrap_or_else(|| panic!("no answer to {path}"));
    let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, json)
}

fn assert_no_document(what: &str, body: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    for clear in [
        CPF.to_string(),
        CPF_PUNCTUATED.to_string(),
        b64.encode(CPF),
        b64.encode(CPF_PUNCTUATED),
    ] {
        assert!(!body.contains(&clear), "{what} shows {clear}: {body}");
    }
}

#[tokio::test]
async fn console_routes_need_a_token_and_never_show_a_document() {
    let _serial = serial();
    let env = Env::new(&["risk-scoring"], "");
    env.create_topics();
    let _child = KillOnDrop(env.start());
    let token = token(&env);
    let t = Some(token.as_str());

    // The pages are public (they hold no data); the data routes are not.
    let (status, html) = http_get(&env.http_addr, "/").unwrap();
    assert_eq!(status, 200);
    assert!(html.contains("<title>fluxo console</title>"), "{html}");
    for asset in [
        "/console/app.js",
        "/console/app.css",
        "/console/vendor/uPlot.iife.min.js",
        "/console/vendor/uPlot.min.css",
    ] {
        assert_eq!(http_get(&env.http_addr, asset).unwrap().0, 200, "{asset}");
    }
    for path in [
        "/v1/console/pipeline",
        "/v1/console/risk-latency",
        &format!("/v1/console/topics/{}/records", env.topic("transactions")),
    ] {
        assert_eq!(get_json(&env, path, None).0, 401, "{path}");
        assert_eq!(get_json(&env, path, Some("not-a-token")).0, 401, "{path}");
    }

    // The graph: four processors, one running here, the others disabled; rates from the second
    // request on.
    let (status, first) = get_json(&env, "/v1/console/pipeline", t);
    assert_eq!(status, 200, "{first}");
    let procs = first["data"]["processors"].as_array().unwrap();
    assert_eq!(procs.len(), 4, "{first}");
    let risk = procs.iter().find(|p| p["name"] == "risk-scoring").unwrap();
    assert_eq!(risk["status"], "running");
    assert_eq!(risk["inputs"][0], env.topic("transactions"));
    assert_eq!(
        risk["dlq_topics"],
        serde_json::json!([
            format!("{}.dlq", env.topic("transactions")),
            format!("{}.dlq", env.topic("document-blacklist"))
        ])
    );
    assert!(procs
        .iter()
        .filter(|p| p["name"] != "risk-scoring")
        .all(|p| p["status"] == "disabled"));
    let topics = first["data"]["topics"].as_array().unwrap();
    assert!(topics.iter().any(
        |t| t["name"] == format!("{}.dlq", env.topic("transactions"))
            && t["role"] == "dead_letters"
    ));

    // A transaction with documents, and garbage with one in clear, keyed by it.
    let mut producer = TestProducer::new();
    let tx = Transaction {
        transaction_id: "console-tx-1".into(),
        kind: TransactionKind::Pix,
        payer_document: CPF_PUNCTUATED.into(),
        payer_name: "Maria".into(),
        payee_document: "11222333000181".into(),
        amount: Decimal::new(12_345, 2),
        channel: "app".into(),
        event_time: fluxo::simulate::now_millis(),
    };
    producer.send(&env.topic("transactions"), CPF, &tx).await;
    let garbage = format!("not avro, payer {CPF_PUNCTUATED}");
    producer
        .send_raw(&env.topic("transactions"), CPF, Some(garbage.as_bytes()))
        .await;
    env.wait_for_records_in("risk-scoring", 2, Duration::from_secs(60));

    let records = format!("/v1/console/topics/{}/records", env.topic("transactions"));
    let (status, body) = get_json(&env, &records, t);
    assert_eq!(status, 200, "{body}");
    let recs = body["data"]["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "{body}");
    let good = recs
        .iter()
        .find(|r| r["value"]["transaction_id"] == "console-tx-1")
        .unwrap_or_else(|| panic!("the transaction is not listed: {body}"));
    assert_eq!(good["key"], "***.982.247-**");
    assert_eq!(good["value"]["payer_document"], "***.982.247-**");
    assert_eq!(good["value"]["payee_document"], "**.222.333/0001-**");
    assert_eq!(good["value"]["amount"], "123.45");
    assert_no_document("the transactions topic", &body.to_string());
    assert!(!body.to_string().contains("11222333000181"));

    // The dead letter: reason, source offset, a preview without the document.
    let dlq = format!(
        "/v1/console/topics/{}.dlq/records?limit=5",
        env.topic("transactions")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = get_json(&env, &dlq, t);
        assert_eq!(status, 200, "{body}");
        if !body["data"]["records"].as_array().unwrap().is_empty() {
            break body;
        }
        assert!(Instant::now() < deadline, "no dead letter: {body}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let dead = &body["data"]["records"][0];
    assert_eq!(body["data"]["dead_letters"], true);
    assert_eq!(dead["reason"], "bad_framing", "{body}");
    assert_eq!(dead["source_topic"], env.topic("transactions"));
    assert!(dead["source_offset"].is_i64(), "{body}");
    // The transactions carry documents: the dead letter has no payload, only its size, and the
    // key's pseudonym (64 hex digits).
    assert_eq!(dead["withheld"], true, "{body}");
    assert!(dead["payload"].is_null(), "{body}");
    assert_eq!(dead["source_size"], garbage.len());
    let key = dead["key"].as_str().unwrap_or_default();
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{body}"
    );
    assert_no_document("the dead-letter topic", &body.to_string());

    // Filters and bad requests.
    let (_, body) = get_json(&env, &format!("{records}?key=nobody"), t);
    assert_eq!(body["data"]["records"], serde_json::json!([]));
    let (_, body) = get_json(&env, &format!("{records}?key={CPF}&limit=1"), t);
    assert_eq!(body["data"]["records"].as_array().unwrap().len(), 1);
    for (path, code) in [
        (
            "/v1/console/topics/__consumer_offsets/records".to_string(),
            404,
        ),
        (format!("{records}?limit=0"), 400),
        (format!("{records}?limit=abc"), 400),
        (format!("{records}?limit=2001"), 400),
        (format!("{records}?offset=3"), 400),
    ] {
        let (status, body) = get_json(&env, &path, t);
        assert_eq!(status, code, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }

    // The latency histogram counts the decision; the second graph request has rates.
    let (status, body) = get_json(&env, "/v1/console/risk-latency", t);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["count"], 1, "{body}");
    let buckets = body["data"]["buckets"].as_array().unwrap();
    assert_eq!(
        buckets
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum::<u64>(),
        1
    );
    assert!(buckets.last().unwrap()["le_seconds"].is_null());
    let (_, second) = get_json(&env, "/v1/console/pipeline", t);
    let risk = second["data"]["processors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "risk-scoring")
        .unwrap()
        .clone();
    assert!(risk["rate_in"].is_number(), "{risk}");
    assert_eq!(risk["records_in"], 2.0, "{risk}");
    assert_eq!(risk["dead_letters"], 1.0, "{risk}");
    assert!(
        risk["last_checkpoint_age_seconds"].as_f64().unwrap() < 60.0,
        "{risk}"
    );
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `name --version` must work, else the test fails naming what to install.
fn require(program: &str) {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the console's browser test needs `{program}`: run scripts/bootstrap (Debian packages nodejs, npm, chromium)"
    );
}

/// `console/tests/node_modules` with the locked playwright-core (`npm ci` when not).
fn npm_ci() {
    let dir = repo().join("console/tests");
    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package-lock.json")).unwrap())
            .unwrap();
    let locked = lock["packages"]["node_modules/playwright-core"]["version"].clone();
    let installed = std::fs::read_to_string(dir.join("node_modules/playwright-core/package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map(|v| v["version"].clone());
    if installed.as_ref() == Some(&locked) {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "npm ci in console/tests failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `fluxo produce` to the end.
fn produce(env: &Env, args: &[&str]) {
    let out = env.command(args).output().unwrap();
    assert!(
        out.status.success(),
        "fluxo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn console_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "the console's browser test needs Chromium at {chromium}: run scripts/bootstrap (Debian package chromium)"
    );
    require("node");
    require("npm");
    npm_ci();

    let _serial = serial();
    let env = Env::new(
        &[
            "price-change",
            "below-average",
            "risk-scoring",
            "daily-consolidation",
        ],
        "",
    );
    env.create_topics();
    let _child = KillOnDrop(env.start());
    let token = token(&env);

    // History first (flat out: event times spread over the past), then a steady trickle on
    // every input so that the rates are live while the browser looks.
    let (prices, txs, ledger, blacklist) = (
        env.topic("asset-prices"),
        env.topic("transactions"),
        env.topic("ledger-entries"),
        env.topic("document-blacklist"),
    );
    produce(
        &env,
        &[
            "produce",
            "--simulate",
            "blacklist",
            "--topic",
            &blacklist,
            "--count",
            "400",
            "--seed",
            "7",
        ],
    );
    produce(
        &env,
        &[
            "produce",
            "--simulate",
            "prices",
            "--topic",
            &prices,
            "--count",
            "4000",
            "--seed",
            "11",
        ],
    );
    produce(
        &env,
        &[
            "produce",
            "--simulate",
            "transactions",
            "--topic",
            &txs,
            "--count",
            "1500",
            "--seed",
            "7",
        ],
    );
    produce(
        &env,
        &[
            "produce",
            "--simulate",
            "ledger",
            "--topic",
            &ledger,
            "--count",
            "1500",
            "--seed",
            "7",
        ],
    );
    let garbage = format!("\u{1}garbage, payer {CPF_PUNCTUATED}");
    TestProducer::new()
        .send_raw(&prices, "PETR4", Some(garbage.as_bytes()))
        .await;
    let trickle: Vec<KillOnDrop> = [
        ("prices", &prices),
        ("transactions", &txs),
        ("ledger", &ledger),
    ]
    .into_iter()
    .map(|(kind, topic)| {
        KillOnDrop(
            env.command(&[
                "produce",
                "--simulate",
                kind,
                "--topic",
                topic,
                "--rate",
                "20",
                "--seed",
                "99",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        )
    })
    .collect();

    let shots = std::env::var_os("FLUXO_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { repo().join(p) })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console"));
    let out = Command::new("node")
        .arg(repo().join("console/tests/e2e.mjs"))
        .current_dir(repo().join("console/tests"))
        .env(
            "FLUXO_CONSOLE_URL",
            format!("http://{}/#token={token}", env.http_addr),
        )
        .env(
            "FLUXO_PROCESSORS",
            "price-change,below-average,risk-scoring,daily-consolidation",
        )
        .env("FLUXO_GARBAGE_DLQ", format!("{prices}.dlq"))
        .env("FLUXO_SECRET_DOCUMENT", CPF_PUNCTUATED)
        .env("FLUXO_SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    drop(trickle);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}{stderr}\nfluxo log:\n{}",
        env.log()
    );
    for page in ["pipeline", "market", "risk", "accounts", "dead-letters"] {
        let png = shots.join(format!("{page}.png"));
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} missing or empty", png.display());
    }
}
