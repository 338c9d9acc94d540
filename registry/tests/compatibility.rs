//! Compatibility enforcement over HTTP: registrations rejected with Confluent's 409, the
//! compatibility endpoint, levels and transitivity.

mod common;

use common::{fresh, record, Client};
use serde_json::json;

const A: &str = r#"{"name":"a","type":"string"}"#;

async fn set_level(c: &Client, subject: &str, level: &str) {
    let r = c
        .put(
            &format!("/config/{subject}"),
            &json!({ "compatibility": level }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Asserts a 409 whose message names `error_type`, returning the message.
async fn rejected(c: &Client, subject: &str, schema: &str, error_type: &str) -> String {
    let r = c.register(subject, schema).await;
    assert_eq!(r.status, 409, "expected 409, got {}", r.text);
    assert_eq!(r.body["error_code"], 409);
    let message = r.body["message"].as_str().expect("message").to_string();
    assert!(
        message.starts_with(&format!(
            "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{{errorType:'{error_type}'"
        )),
        "{message}"
    );
    message
}

#[tokio::test]
async fn backward_added_field_needs_default() {
    let (_dir, server, c) = fresh().await;
    c.register_ok("s", &record(A)).await;
    let message = rejected(
        &c,
        "s",
        &record(&format!(r#"{A},{{"name":"b","type":"int"}}"#)),
        "READER_FIELD_MISSING_DEFAULT_VALUE",
    )
    .await;
    assert_eq!(
        message,
        format!(
            "Schema being registered is incompatible with an earlier schema for subject \"s\", details: [{{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'b' at path '/fields/1' in the new schema has no default value and is missing in the old schema', additionalInfo:'b'}}, {{oldSchemaVersion: 1}}, {{oldSchema: '{}'}}, {{validateFields: 'false', compatibility: 'BACKWARD'}}]",
            record(A)
        )
    );
    // a rejected schema creates no version and consumes no id
    assert_eq!(c.get("/subjects/s/versions").await.body, json!([1]));
    let with_default = record(&format!(r#"{A},{{"name":"b","type":"int","default":0}}"#));
    assert_eq!(c.register_ok("s", &with_default).await, 2);
    server.stop().await;
}

#[tokio::test]
async fn removing_a_field_is_backward_but_not_forward() {
    let (_dir, server, c) = fresh().await;
    let two = record(&format!(r#"{A},{{"name":"b","type":"int"}}"#));
    let one = record(A);
    c.register_ok("back", &two).await;
    assert_eq!(c.register_ok("back", &one).await, 2);

    set_level(&c, "fwd", "FORWARD").await;
    c.register_ok("fwd", &two).await;
    let message = rejected(&c, "fwd", &one, "READER_FIELD_MISSING_DEFAULT_VALUE").await;
    assert!(
        message.contains("The field 'b' at path '/fields/1' in the old schema has no default value and is missing in the new schema"),
        "{message}"
    );
    assert!(message.ends_with("{validateFields: 'false', compatibility: 'FORWARD'}]"));
    server.stop().await;
}

#[tokio::test]
async fn changing_a_type_string_to_int_is_rejected() {
    let (_dir, server, c) = fresh().await;
    c.register_ok("s", &record(A)).await;
    let message = rejected(
        &c,
        "s",
        &record(r#"{"name":"a","type":"int"}"#),
        "TYPE_MISMATCH",
    )
    .await;
    assert!(message.contains(
        "description:'The type (path '/fields/0/type') of a field in the new schema does not match with the old schema', additionalInfo:'reader type: INT not compatible with writer type: STRING'"
    ), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn type_evolution_rules() {
    let (_dir, server, c) = fresh().await;
    let f = |ty: &str| record(&format!(r#"{{"name":"a","type":{ty}}}"#));
    // int -> long -> double promotions read old data
    c.register_ok("num", &f(r#""int""#)).await;
    c.register_ok("num", &f(r#""long""#)).await;
    c.register_ok("num", &f(r#""double""#)).await;
    rejected(&c, "num", &f(r#""float""#), "TYPE_MISMATCH").await;
    // string <-> bytes
    c.register_ok("sb", &f(r#""string""#)).await;
    c.register_ok("sb", &f(r#""bytes""#)).await;
    // enum symbols: adding is fine, removing breaks reading
    let e = |s: &str| f(&format!(r#"{{"type":"enum","name":"K","symbols":[{s}]}}"#));
    c.register_ok("enum", &e(r#""PIX","TED""#)).await;
    c.register_ok("enum", &e(r#""PIX","TED","CARD""#)).await;
    let m = rejected(&c, "enum", &e(r#""PIX","CARD""#), "MISSING_ENUM_SYMBOLS").await;
    assert!(m.contains("additionalInfo:'[TED]'"), "{m}");
    // unions: widening to optional is fine, narrowing away a branch is not
    c.register_ok("opt", &f(r#""string""#)).await;
    c.register_ok("opt", &f(r#"["null","string"]"#)).await;
    let m = rejected(&c, "opt", &f(r#""bytes""#), "TYPE_MISMATCH").await;
    assert!(
        m.contains("reader type: BYTES not compatible with writer type: NULL"),
        "{m}"
    );
    // decimals keep precision and scale
    let d = |s: u32| {
        f(&format!(
            r#"{{"type":"bytes","logicalType":"decimal","precision":18,"scale":{s}}}"#
        ))
    };
    c.register_ok("dec", &d(2)).await;
    rejected(&c, "dec", &d(4), "TYPE_MISMATCH").await;
    server.stop().await;
}

#[tokio::test]
async fn none_accepts_anything() {
    let (_dir, server, c) = fresh().await;
    set_level(&c, "s", "NONE").await;
    c.register_ok("s", &record(A)).await;
    assert_eq!(
        c.register_ok("s", &record(r#"{"name":"a","type":"int"}"#))
            .await,
        2
    );
    assert_eq!(c.register_ok("s", r#""string""#).await, 3);
    // the global NONE applies to subjects without their own level
    let r = c.put("/config", &json!({"compatibility": "NONE"})).await;
    assert_eq!(r.status, 200);
    c.register_ok("g", &record(A)).await;
    assert_eq!(
        c.register_ok("g", &record(r#"{"name":"x","type":"long"}"#))
            .await,
        4
    );
    server.stop().await;
}

/// v1 {a:int}, v2 {} and v3 {a:string = ""}: v3 reads v2 data but not v1 data.
async fn transitive_history(c: &Client, subject: &str) -> String {
    c.register_ok(subject, &record(r#"{"name":"a","type":"int"}"#))
        .await;
    c.register_ok(subject, &record("")).await;
    record(r#"{"name":"a","type":"string","default":""}"#)
}

#[tokio::test]
async fn transitive_levels_check_all_versions() {
    let (_dir, server, c) = fresh().await;
    let v3 = transitive_history(&c, "plain").await;
    assert_eq!(c.register_ok("plain", &v3).await, 3);

    set_level(&c, "trans", "BACKWARD_TRANSITIVE").await;
    let v3 = transitive_history(&c, "trans").await;
    let m = rejected(&c, "trans", &v3, "TYPE_MISMATCH").await;
    assert!(
        m.contains("{oldSchemaVersion: 1}") && !m.contains("{oldSchemaVersion: 2}"),
        "{m}"
    );

    // FULL_TRANSITIVE: the new schema must also be readable by every old one
    set_level(&c, "full", "FULL_TRANSITIVE").await;
    let with = |f: &str| record(&format!(r#"{A}{f}"#));
    c.register_ok("full", &with("")).await;
    c.register_ok("full", &with(r#",{"name":"b","type":"int","default":1}"#))
        .await;
    rejected(
        &c,
        "full",
        &with(r#",{"name":"b","type":"int","default":1},{"name":"c","type":"int"}"#),
        "READER_FIELD_MISSING_DEFAULT_VALUE",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn full_checks_both_directions() {
    let (_dir, server, c) = fresh().await;
    set_level(&c, "s", "FULL").await;
    let two = record(&format!(r#"{A},{{"name":"b","type":"int"}}"#));
    c.register_ok("s", &two).await;
    // removing b: backward ok, forward broken (old reader has no default for b)
    rejected(&c, "s", &record(A), "READER_FIELD_MISSING_DEFAULT_VALUE").await;
    // adding c with a default works both ways
    let three = record(&format!(
        r#"{A},{{"name":"b","type":"int"}},{{"name":"c","type":"long","default":5}}"#
    ));
    assert_eq!(c.register_ok("s", &three).await, 2);
    server.stop().await;
}

#[tokio::test]
async fn compatibility_endpoint() {
    let (_dir, server, c) = fresh().await;
    c.register_ok("s", &record(A)).await;
    let good =
        json!({ "schema": record(&format!(r#"{A},{{"name":"b","type":"int","default":0}}"#)) });
    let bad = json!({ "schema": record(&format!(r#"{A},{{"name":"b","type":"int"}}"#)) });

    for path in [
        "/compatibility/subjects/s/versions/latest",
        "/compatibility/subjects/s/versions/1",
        "/compatibility/subjects/s/versions",
    ] {
        let r = c.post(path, &good).await;
        assert_eq!(
            (r.status, r.body),
            (200, json!({"is_compatible": true})),
            "{path}"
        );
        let r = c.post(path, &bad).await;
        assert_eq!(
            (r.status, r.body),
            (200, json!({"is_compatible": false})),
            "{path}"
        );
    }
    let r = c
        .post(
            "/compatibility/subjects/s/versions/latest?verbose=true",
            &bad,
        )
        .await;
    assert_eq!(
        r.body,
        json!({
            "is_compatible": false,
            "messages": [
                "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'b' at path '/fields/1' in the new schema has no default value and is missing in the old schema', additionalInfo:'b'}",
                "{oldSchemaVersion: 1}",
                format!("{{oldSchema: '{}'}}", record(A)),
                "{validateFields: 'false', compatibility: 'BACKWARD'}"
            ]
        })
    );
    let r = c
        .post(
            "/compatibility/subjects/s/versions/latest?verbose=true",
            &good,
        )
        .await;
    assert_eq!(r.body, json!({"is_compatible": true, "messages": []}));

    // nothing to be incompatible with
    let r = c
        .post("/compatibility/subjects/new/versions/latest", &bad)
        .await;
    assert_eq!((r.status, r.body), (200, json!({"is_compatible": true})));
    let r = c.post("/compatibility/subjects/new/versions/1", &bad).await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (404, json!(40401))
    );
    let r = c.post("/compatibility/subjects/s/versions/9", &bad).await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (404, json!(40402))
    );
    let r = c.post("/compatibility/subjects/s/versions/x", &bad).await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (422, json!(42202))
    );
    let r = c
        .post(
            "/compatibility/subjects/s/versions/latest",
            &json!({"schema": "{"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (422, json!(42201))
    );
    // the check registered nothing
    assert_eq!(c.get("/subjects").await.body, json!(["s"]));
    server.stop().await;
}
