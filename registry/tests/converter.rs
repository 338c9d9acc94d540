//! A real Confluent client, `schema_registry_converter`, registers through the embedded
//! registry and round-trips Confluent-framed records (magic byte 0 + 4-byte schema id).

mod common;

use apache_avro::types::Value;
use apache_avro::Decimal;
use common::fresh;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde_json::json;

fn transaction_schema() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/transaction.avsc");
    std::fs::read_to_string(path).expect("transaction.avsc")
}

fn fields() -> Vec<(&'static str, Value)> {
    vec![
        ("transaction_id", Value::String("tx-1".into())),
        ("kind", Value::Enum(1, "TED".into())),
        ("payer_document", Value::String("doc-payer".into())),
        ("payer_name", Value::String("Ana".into())),
        ("payee_document", Value::String("doc-payee".into())),
        // 12345 unscaled at scale 2 = 123.45
        ("amount", Value::Decimal(Decimal::from(vec![0x30, 0x39]))),
        ("channel", Value::String("app".into())),
        ("event_time", Value::TimestampMillis(1_700_000_000_000)),
    ]
}

#[tokio::test]
async fn converter_registers_encodes_and_decodes() {
    let (_dir, server, c) = fresh().await;
    let settings = SrSettings::new_builder(server.url.clone())
        .no_proxy()
        .build()
        .expect("sr settings");

    // a key schema first, so the value schema gets id 2 and the framing is checked with it
    let key_schema = SuppliedSchema::new(None, SchemaType::Avro, r#"{"type":"string"}"#.into());
    let encoder = AvroEncoder::new(settings.clone());
    let key_strategy =
        SubjectNameStrategy::TopicNameStrategyWithSchema("transactions".into(), true, key_schema);
    let key = encoder
        .encode_value(Value::String("doc-payer".into()), &key_strategy)
        .await
        .expect("encode key");
    assert_eq!(key[..5], [0, 0, 0, 0, 1]);

    let supplied = SuppliedSchema::new(
        Some("br.com.fluxo.Transaction".into()),
        SchemaType::Avro,
        transaction_schema(),
    );
    let strategy =
        SubjectNameStrategy::TopicNameStrategyWithSchema("transactions".into(), false, supplied);
    let bytes = encoder
        .encode(fields(), strategy)
        .await
        .expect("encode value");
    assert_eq!(
        bytes[..5],
        [0, 0, 0, 0, 2],
        "magic byte 0 then id 2, big-endian"
    );
    assert_eq!(
        c.get("/subjects").await.body,
        json!(["transactions-key", "transactions-value"])
    );
    assert_eq!(
        c.get("/subjects/transactions-value/versions").await.body,
        json!([1])
    );

    // a consumer with its own client fetches the schema by id and decodes
    let decoder = AvroDecoder::new(settings.clone());
    let decoded = decoder.decode(Some(&bytes)).await.expect("decode value");
    let expected: Vec<(String, Value)> = fields()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(decoded.value, Value::Record(expected));
    let decoded_key = decoder.decode(Some(&key)).await.expect("decode key");
    assert_eq!(decoded_key.value, Value::String("doc-payer".into()));

    // a producer without the schema looks up the latest version: same bytes
    let latest = AvroEncoder::new(settings.clone())
        .encode(
            fields(),
            SubjectNameStrategy::TopicNameStrategy("transactions".into(), false),
        )
        .await
        .expect("encode with latest");
    assert_eq!(latest, bytes);

    // an incompatible schema is refused by the registry with Confluent's 409 body
    let broken = transaction_schema().replace(
        r#"{"name": "channel", "type": "string"}"#,
        r#"{"name": "channel", "type": "int"}"#,
    );
    assert_ne!(broken, transaction_schema());
    let supplied = SuppliedSchema::new(None, SchemaType::Avro, broken);
    let err = AvroEncoder::new(settings)
        .encode(
            fields(),
            SubjectNameStrategy::TopicNameStrategyWithSchema(
                "transactions".into(),
                false,
                supplied,
            ),
        )
        .await
        .expect_err("incompatible schema must be refused");
    let text = err.to_string();
    assert!(
        text.contains("error_code: 409, message: Schema being registered is incompatible"),
        "{text}"
    );
    server.stop().await;
}
