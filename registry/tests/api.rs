//! REST API of the embedded registry against a real server: registration, fetch by id,
//! versions, lookups, config, deletes and Confluent error bodies.

mod common;

use common::{fresh, record};
use serde_json::json;

const CT: &str = "application/vnd.schemaregistry.v1+json";

fn v1() -> String {
    record(r#"{"name":"a","type":"string"}"#)
}

fn v2() -> String {
    record(r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#)
}

#[tokio::test]
async fn register_and_fetch_by_id() {
    let (_dir, server, c) = fresh().await;
    let pretty = "{\n  \"type\": \"record\", \"name\": \"R\", \"namespace\": \"t\",\n  \"fields\": [ {\"name\": \"a\", \"type\": \"string\", \"doc\": \"two  spaces\"} ]\n}";
    let r = c.register("orders-value", pretty).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"id": 1})));
    assert_eq!(r.content_type, CT);

    let expected = r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"string","doc":"two  spaces"}]}"#;
    // schema_registry_converter sends ?deleted=true
    for path in ["/schemas/ids/1", "/schemas/ids/1?deleted=true&subject=x"] {
        let r = c.get(path).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, CT);
        // no schemaType for AVRO, no references when empty
        assert_eq!(r.body, json!({ "schema": expected }));
    }
    let raw = c.get("/schemas/ids/1/schema").await;
    assert_eq!((raw.status, raw.text.as_str()), (200, expected));

    let missing = c.get("/schemas/ids/99").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.content_type, CT);
    assert_eq!(
        missing.body,
        json!({"error_code": 40403, "message": "Schema 99 not found"})
    );
    server.stop().await;
}

#[tokio::test]
async fn identical_schemas_reuse_ids_and_versions() {
    let (_dir, server, c) = fresh().await;
    assert_eq!(c.register_ok("s1", &v1()).await, 1);
    // same schema, different layout and key order: same id, no new version
    let shuffled = r#"{ "fields": [ {"type": {"type": "string"}, "name": "a"} ], "namespace": "t", "name": "R", "type": "record" }"#;
    assert_eq!(c.register_ok("s1", shuffled).await, 1);
    assert_eq!(c.get("/subjects/s1/versions").await.body, json!([1]));
    // same schema under another subject: same global id, version 1 there
    assert_eq!(c.register_ok("s2", &v1()).await, 1);
    assert_eq!(c.get("/subjects/s2/versions").await.body, json!([1]));
    // a new schema gets the next id
    assert_eq!(c.register_ok("s1", &v2()).await, 2);
    assert_eq!(c.get("/subjects/s1/versions").await.body, json!([1, 2]));
    // re-registering an older version returns its id, without a new version
    assert_eq!(c.register_ok("s1", &v1()).await, 1);
    assert_eq!(c.get("/subjects/s1/versions").await.body, json!([1, 2]));

    assert_eq!(c.get("/subjects").await.body, json!(["s1", "s2"]));
    assert_eq!(
        c.get("/subjects?subjectPrefix=s2").await.body,
        json!(["s2"])
    );
    assert_eq!(
        c.get("/schemas/ids/1/versions").await.body,
        json!([{"subject": "s1", "version": 1}, {"subject": "s2", "version": 1}])
    );
    assert_eq!(
        c.get("/schemas/ids/1/subjects").await.body,
        json!(["s1", "s2"])
    );
    server.stop().await;
}

#[tokio::test]
async fn versions_by_number_and_latest() {
    let (_dir, server, c) = fresh().await;
    c.register_ok("s", &v1()).await;
    c.register_ok("s", &v2()).await;
    let second = json!({"subject": "s", "version": 2, "id": 2, "schema": v2()});
    for v in ["2", "latest", "-1"] {
        let r = c.get(&format!("/subjects/s/versions/{v}")).await;
        assert_eq!((r.status, r.body), (200, second.clone()), "version {v}");
    }
    assert_eq!(
        c.get("/subjects/s/versions/1").await.body,
        json!({"subject": "s", "version": 1, "id": 1, "schema": v1()})
    );
    let raw = c.get("/subjects/s/versions/latest/schema").await;
    assert_eq!((raw.status, raw.text), (200, v2()));

    let r = c.get("/subjects/s/versions/3").await;
    assert_eq!(
        (r.status, r.body),
        (
            404,
            json!({"error_code": 40402, "message": "Version 3 not found."})
        )
    );
    for bad in ["0", "abc", "-5"] {
        let r = c.get(&format!("/subjects/s/versions/{bad}")).await;
        assert_eq!(r.status, 422, "{bad}");
        assert_eq!(r.body["error_code"], 42202);
    }
    for path in ["/subjects/nope/versions", "/subjects/nope/versions/latest"] {
        let r = c.get(path).await;
        assert_eq!(
            (r.status, r.body),
            (
                404,
                json!({"error_code": 40401, "message": "Subject 'nope' not found."})
            )
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn lookup_schema_under_subject() {
    let (_dir, server, c) = fresh().await;
    c.register_ok("s", &v1()).await;
    c.register_ok("s", &v2()).await;
    let r = c
        .post(
            "/subjects/s?deleted=false",
            &json!({"schema": v1(), "schemaType": "AVRO"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body),
        (
            200,
            json!({"subject": "s", "version": 1, "id": 1, "schema": v1()})
        )
    );
    let other = record(r#"{"name":"z","type":"long"}"#);
    let r = c.post("/subjects/s", &json!({ "schema": other })).await;
    assert_eq!(
        (r.status, r.body),
        (
            404,
            json!({"error_code": 40403, "message": "Schema not found"})
        )
    );
    let r = c.post("/subjects/none", &json!({ "schema": v1() })).await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (404, json!(40401))
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_schemas_and_bodies() {
    let (_dir, server, c) = fresh().await;
    let invalid = [
        "not json at all",
        r#"{"type":"recordx","name":"R","fields":[]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}"#,
        r#"{"type":"enum","name":"E","symbols":["A","A"]}"#,
        "",
    ];
    for schema in invalid {
        let r = c.register("s", schema).await;
        assert_eq!(r.status, 422, "{schema}: {}", r.text);
        assert_eq!(r.body["error_code"], 42201, "{schema}");
        assert!(r.body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Invalid schema")));
    }
    let r = c
        .post(
            "/subjects/s/versions",
            &json!({"schema": v1(), "schemaType": "PROTOBUF"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (422, json!(42201))
    );
    let r = c
        .post("/subjects/s/versions", &json!({"references": []}))
        .await;
    assert_eq!(
        (r.status, r.body),
        (
            422,
            json!({"error_code": 42201, "message": "Invalid schema: Empty schema"})
        )
    );
    // malformed JSON and wrongly-typed JSON bodies
    for body in ["{not json", r#"{"schema": 5}"#, "[1,2"] {
        let r = c.post_raw("/subjects/s/versions", body).await;
        assert_eq!(
            (r.status, r.body["error_code"].clone()),
            (422, json!(422)),
            "{body}"
        );
        assert_eq!(r.content_type, CT);
    }
    // nothing was registered
    assert_eq!(c.get("/subjects").await.body, json!([]));
    server.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let (_dir, server, c) = fresh().await;
    for path in ["/nope", "/schemas/ids/abc", "/subjects/s/versions/1/nope"] {
        let r = c.get(path).await;
        assert_eq!(
            (r.status, r.body),
            (
                404,
                json!({"error_code": 404, "message": "HTTP 404 Not Found"})
            ),
            "{path}"
        );
    }
    let r = c.delete("/schemas/types").await;
    assert_eq!(
        (r.status, r.body),
        (
            405,
            json!({"error_code": 405, "message": "HTTP 405 Method Not Allowed"})
        )
    );
    assert_eq!(c.get("/schemas/types").await.body, json!(["AVRO"]));
    assert_eq!(c.get("/").await.body, json!({}));
    assert_eq!(c.get("/mode").await.body, json!({"mode": "READWRITE"}));
    server.stop().await;
}

#[tokio::test]
async fn global_and_subject_config() {
    let (_dir, server, c) = fresh().await;
    assert_eq!(
        c.get("/config").await.body,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    let r = c.put("/config", &json!({"compatibility": "FULL"})).await;
    assert_eq!((r.status, r.body), (200, json!({"compatibility": "FULL"})));
    assert_eq!(
        c.get("/config").await.body,
        json!({"compatibilityLevel": "FULL"})
    );

    let r = c
        .put("/config", &json!({"compatibility": "SIDEWAYS"}))
        .await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (422, json!(42203))
    );
    let r = c.put("/config", &json!({"level": "FULL"})).await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (422, json!(42203))
    );

    let r = c.get("/config/s").await;
    assert_eq!(
        (r.status, r.body),
        (
            404,
            json!({"error_code": 40408, "message": "Subject 's' does not have subject-level compatibility configured"})
        )
    );
    let r = c.get("/config/s?defaultToGlobal=true").await;
    assert_eq!(
        (r.status, r.body),
        (200, json!({"compatibilityLevel": "FULL"}))
    );

    let r = c.put("/config/s", &json!({"compatibility": "none"})).await;
    assert_eq!((r.status, r.body), (200, json!({"compatibility": "NONE"})));
    assert_eq!(
        c.get("/config/s").await.body,
        json!({"compatibilityLevel": "NONE"})
    );

    let r = c.delete("/config/s").await;
    assert_eq!(
        (r.status, r.body),
        (200, json!({"compatibilityLevel": "NONE"}))
    );
    assert_eq!(c.get("/config/s").await.body["error_code"], 40408);
    let r = c.delete("/config").await;
    assert_eq!(
        (r.status, r.body),
        (200, json!({"compatibilityLevel": "FULL"}))
    );
    assert_eq!(
        c.get("/config").await.body,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    server.stop().await;
}

#[tokio::test]
async fn soft_and_permanent_deletes() {
    let (_dir, server, c) = fresh().await;
    c.register_ok("s", &v1()).await;
    c.register_ok("s", &v2()).await;

    // permanent delete needs a soft delete first
    let r = c.delete("/subjects/s/versions/2?permanent=true").await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (404, json!(40407))
    );
    let r = c.delete("/subjects/s/versions/2").await;
    assert_eq!((r.status, r.body), (200, json!(2)));
    let r = c.delete("/subjects/s/versions/2").await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (404, json!(40406))
    );
    assert_eq!(c.get("/subjects/s/versions").await.body, json!([1]));
    assert_eq!(
        c.get("/subjects/s/versions?deleted=true").await.body,
        json!([1, 2])
    );
    assert_eq!(
        c.get("/subjects/s/versions/2").await.body["error_code"],
        40402
    );
    assert_eq!(
        c.get("/subjects/s/versions/2?deleted=true").await.body["id"],
        2
    );
    assert_eq!(
        c.get("/subjects/s/versions/latest").await.body["version"],
        1
    );
    // the id stays fetchable: old records must stay decodable
    assert_eq!(
        c.get("/schemas/ids/2?deleted=true").await.body["schema"],
        v2()
    );

    let r = c.delete("/subjects/s/versions/2?permanent=true").await;
    assert_eq!((r.status, r.body), (200, json!(2)));
    assert_eq!(
        c.get("/subjects/s/versions?deleted=true").await.body,
        json!([1])
    );

    let r = c.delete("/subjects/s?permanent=true").await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (404, json!(40405))
    );
    let r = c.delete("/subjects/s").await;
    assert_eq!((r.status, r.body), (200, json!([1])));
    let r = c.delete("/subjects/s").await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (404, json!(40404))
    );
    assert_eq!(c.get("/subjects").await.body, json!([]));
    assert_eq!(c.get("/subjects?deleted=true").await.body, json!(["s"]));
    assert_eq!(
        c.get("/subjects/s/versions").await.body["error_code"],
        40401
    );

    // registering again after a soft delete continues the version numbers
    assert_eq!(c.register_ok("s", &v2()).await, 2);
    assert_eq!(c.get("/subjects/s/versions").await.body, json!([2]));
    let r = c.delete("/subjects/nope").await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (404, json!(40401))
    );
    server.stop().await;
}

#[tokio::test]
async fn subjects_with_slashes_and_json_content_type() {
    let (_dir, server, c) = fresh().await;
    // schema_registry_converter escapes '/' in subjects as %2F
    let r = c.register("team%2Fpayments-value", &v1()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        c.get("/subjects").await.body,
        json!(["team/payments-value"])
    );
    let r = c.get("/subjects/team%2Fpayments-value/versions/1").await;
    assert_eq!(r.body["subject"], "team/payments-value");

    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/subjects/plain/versions", c.base))
        .header("content-type", "application/json")
        .body(json!({ "schema": v1() }).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    server.stop().await;
}

#[tokio::test]
async fn references_to_other_subjects() {
    let (_dir, server, c) = fresh().await;
    let money = r#"{"type":"record","name":"Money","namespace":"t","fields":[{"name":"units","type":"long"}]}"#;
    let money_id = c.register_ok("money", money).await;
    let payment = r#"{"type":"record","name":"Payment","namespace":"t","fields":[{"name":"amount","type":"t.Money"}]}"#;
    let refs = json!([{"name": "t.Money", "subject": "money", "version": 1}]);
    // without the reference the name does not resolve
    assert_eq!(
        c.register("payments-value", payment).await.body["error_code"],
        42201
    );
    let r = c
        .post(
            "/subjects/payments-value/versions",
            &json!({"schema": payment, "references": refs}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.body["id"].as_u64().expect("id");
    assert_eq!(id, money_id + 1);
    assert_eq!(
        c.get(&format!("/schemas/ids/{id}")).await.body,
        json!({"schema": payment, "references": refs})
    );
    assert_eq!(
        c.get("/subjects/money/versions/1/referencedby").await.body,
        json!([id])
    );
    // a referenced version cannot be deleted
    let r = c.delete("/subjects/money/versions/1").await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (422, json!(42206))
    );
    let missing = json!([{"name": "t.Money", "subject": "money", "version": 7}]);
    let r = c
        .post(
            "/subjects/other/versions",
            &json!({"schema": payment, "references": missing}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (422, json!(42201))
    );
    server.stop().await;
}
