//! Durability: everything registered survives a restart on the same redb file, with the same
//! ids, and new ids continue after the old ones.

mod common;

use common::{record, Client, Server};
use serde_json::json;

/// Every read endpoint whose answer must be identical across a restart.
const PATHS: [&str; 12] = [
    "/schemas/ids/1",
    "/schemas/ids/2",
    "/schemas/ids/3",
    "/subjects",
    "/subjects?deleted=true",
    "/subjects/orders-value/versions",
    "/subjects/orders-value/versions/1",
    "/subjects/orders-value/versions/latest",
    "/subjects/audit-value/versions/1",
    "/subjects/gone-value/versions?deleted=true",
    "/config",
    "/config/orders-value",
];

async fn snapshot(c: &Client) -> Vec<(u16, serde_json::Value)> {
    let mut out = Vec::new();
    for p in PATHS {
        let r = c.get(p).await;
        out.push((r.status, r.body));
    }
    out
}

#[tokio::test]
async fn state_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("registry.redb");
    let v1 = record(r#"{"name":"a","type":"string"}"#);
    let v2 = record(r#"{"name":"a","type":"string"},{"name":"b","type":"long","default":0}"#);
    let other = r#"{"type":"record","name":"Gone","fields":[{"name":"g","type":"int"}]}"#;

    let server = Server::start(&file).await;
    let c = Client::new(&server.url);
    assert_eq!(c.register_ok("orders-value", &v1).await, 1);
    assert_eq!(c.register_ok("orders-value", &v2).await, 2);
    assert_eq!(c.register_ok("audit-value", &v1).await, 1);
    assert_eq!(c.register_ok("gone-value", other).await, 3);
    assert_eq!(c.delete("/subjects/gone-value").await.body, json!([1]));
    let r = c.put("/config", &json!({"compatibility": "FORWARD"})).await;
    assert_eq!(r.status, 200);
    let r = c
        .put("/config/orders-value", &json!({"compatibility": "FULL"}))
        .await;
    assert_eq!(r.status, 200);
    let before = snapshot(&c).await;
    assert!(
        before.iter().all(|(status, _)| *status == 200),
        "{before:?}"
    );
    drop(c);
    server.stop().await;

    let server = Server::start(&file).await;
    let c = Client::new(&server.url);
    let after = snapshot(&c).await;
    assert_eq!(before, after);
    assert_eq!(
        after[6].1,
        json!({"subject": "orders-value", "version": 1, "id": 1, "schema": v1})
    );
    assert_eq!(after[10].1, json!({"compatibilityLevel": "FORWARD"}));
    assert_eq!(after[11].1, json!({"compatibilityLevel": "FULL"}));

    // dedup still knows the old schemas, and new ids continue after the highest one
    assert_eq!(c.register_ok("orders-value", &v2).await, 2);
    assert_eq!(c.register_ok("new-value", other).await, 3);
    let v3 = record(
        r#"{"name":"a","type":"string"},{"name":"b","type":"long","default":0},{"name":"c","type":"int","default":0}"#,
    );
    assert_eq!(c.register_ok("orders-value", &v3).await, 4);
    assert_eq!(
        c.get("/subjects/orders-value/versions").await.body,
        json!([1, 2, 3])
    );
    // the FULL level persisted: a field without default is refused both ways
    let bad = record(r#"{"name":"a","type":"string"},{"name":"z","type":"int"}"#);
    assert_eq!(c.register("orders-value", &bad).await.status, 409);
    drop(c);
    server.stop().await;

    // and a third open sees the id 4 registered after the first restart
    let server = Server::start(&file).await;
    let c = Client::new(&server.url);
    assert_eq!(c.get("/schemas/ids/4").await.body, json!({ "schema": v3 }));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn registry_api_reopens_without_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("r.redb");
    let request = fluxo_registry::SchemaRequest {
        schema: Some(record(r#"{"name":"a","type":"int"}"#)),
        ..Default::default()
    };
    {
        let reg = fluxo_registry::Registry::open(&file).expect("open");
        assert_eq!(reg.register("s", &request).expect("register"), 1);
        // redb holds an exclusive lock while open
        assert!(fluxo_registry::Registry::open(&file).is_err());
    }
    let reg = fluxo_registry::Registry::open(&file).expect("reopen");
    let v = reg
        .version("s", fluxo_registry::VersionSpec::Latest, false)
        .expect("version");
    assert_eq!(
        (v.version, v.id, v.info.schema),
        (1, 1, request.schema.clone().unwrap_or_default())
    );
    assert_eq!(reg.lookup("s", &request, false).map(|v| v.id).ok(), Some(1));
}
