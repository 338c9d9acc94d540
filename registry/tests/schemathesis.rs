//! schemathesis (PyPI; `scripts/bootstrap` installs it) against the registry's `/openapi.json`
//! through `scripts/schemathesis`: every check (no 5xx, every answer as the document says,
//! schema-valid requests accepted, invalid ones refused), writes open, a subject registered
//! first so that reads find something. Without schemathesis the test fails saying how to
//! install it. Ignored by default: at most 30 examples per operation still take about 6 minutes
//! on a loaded 2-core machine, too long for every `cargo test`.

mod common;

use common::{record, Client, Server};
use std::path::Path;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "about 6 minutes on a loaded 2-core machine: cargo test -p fluxo-registry --test schemathesis -- --ignored"]
async fn schemathesis_finds_every_answer_conforming_and_no_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("r.redb")).await;
    let client = Client::new(&server.url);
    client
        .register_ok(
            "asset-prices-value",
            &record(r#"[{"name":"a","type":"string"}]"#),
        )
        .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/schemathesis");
    let url = format!("{}/openapi.json", server.url);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(script)
            .args([url.as_str(), "--seed", "16", "--max-examples", "30"])
            .env_remove("FLUXO_TOKEN")
            .output()
            .expect("running scripts/schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The count line of the summary: "N generated, N passed, ...".
    let summary = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" generated"))
        .unwrap_or_default();
    eprintln!("schemathesis against the registry: {summary}");
    server.stop().await;
}
