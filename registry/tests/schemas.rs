//! Every fluxo event schema in `schemas/` registers, and reads back as the same Avro schema.

mod common;

use apache_avro::Schema;
use common::fresh;
use serde_json::json;
use std::path::PathBuf;

#[tokio::test]
async fn every_avsc_registers() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("schemas dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected the fluxo event schemas, found {files:?}"
    );

    let (_tmp, server, c) = fresh().await;
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).expect("read avsc");
        let stem = file.file_stem().and_then(|s| s.to_str()).expect("stem");
        let subject = format!("{stem}-value");
        let id = c.register_ok(&subject, &text).await;
        assert_eq!(id, i as u64 + 1, "{stem}");
        // idempotent: registering at start on every boot changes nothing
        assert_eq!(c.register_ok(&subject, &text).await, id);

        let fetched = c.get(&format!("/schemas/ids/{id}")).await;
        let back = Schema::parse_str(fetched.body["schema"].as_str().expect("schema"))
            .expect("fetched schema parses");
        let original = Schema::parse_str(&text).expect("avsc parses");
        assert_eq!(back.canonical_form(), original.canonical_form(), "{stem}");
        assert_eq!(
            c.get(&format!("/subjects/{subject}/versions")).await.body,
            json!([1])
        );
    }
    server.stop().await;
}
