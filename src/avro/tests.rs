//! Agreement tests: every Rust event type against its `.avsc`, the direct binary codec against
//! `apache_avro`, schema evolution, decimal edge cases, malformed input.

use super::json::value_to_json;
use super::schemas;
use super::typed::{decode_datum, decode_value, encode_datum, encode_value, AvroEvent};
use super::{encode_datum_into, encode_framed, unframe, CodecError};
use apache_avro::schema::Schema;
use apache_avro::types::Value;
use fluxo_processors::events::{
    AssetPrice, AverageMethod, BelowAverageEvent, BlacklistEntry, CrossingKind, DailyBalance,
    Decision, Direction, LedgerEntry, PriceAlert, RiskDecision, RiskReason, Transaction,
    TransactionKind,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::json;
use std::fmt::Debug;
use std::str::FromStr;

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn asset_price() -> AssetPrice {
    AssetPrice {
        event_id: "q-1".into(),
        symbol: "PETR4".into(),
        price: dec("110.01"),
        currency: "BRL".into(),
        source: "b3".into(),
        event_time: 1_714_564_800_250,
    }
}

fn price_alert(direction: Direction) -> PriceAlert {
    PriceAlert {
        alert_id: "a-1".into(),
        symbol: "BTC-BRL".into(),
        direction,
        from_price: dec("350000.12345678"),
        from_time: 1_000,
        from_event_id: "q-0".into(),
        to_price: dec("367500.5"),
        to_time: 61_000,
        to_event_id: "q-9".into(),
        change_pct: dec("-5.0001"),
        threshold_pct: dec("5"),
        window_start: 1_000,
        window_end: 61_000,
    }
}

fn below_average(kind: CrossingKind, method: AverageMethod) -> BelowAverageEvent {
    BelowAverageEvent {
        event_id: "b-1".into(),
        symbol: "VALE3".into(),
        kind,
        price: dec("61.2"),
        average: dec("64.98765432"),
        deviation_pct: dec("-5.8253"),
        samples: 42,
        method,
        event_time: -5,
        quote_event_id: "q-7".into(),
    }
}

fn transaction(kind: TransactionKind) -> Transaction {
    Transaction {
        transaction_id: "t-1".into(),
        kind,
        payer_document: "52998224725".into(),
        payer_name: "José da Silva".into(),
        payee_document: "11.222.333/0001-81".into(),
        amount: dec("1500.75"),
        channel: "app".into(),
        event_time: 1_714_564_800_000,
    }
}

fn blacklist_entry() -> BlacklistEntry {
    BlacklistEntry {
        document: "52998224725".into(),
        listed: true,
        reason: "fraude".into(),
        source: "coaf".into(),
        since: 1_700_000_000_000,
    }
}

fn risk_decision(decision: Decision, reasons: usize) -> RiskDecision {
    RiskDecision {
        transaction_id: "t-1".into(),
        score: 730,
        decision,
        reasons: (0..reasons)
            .map(|i| RiskReason {
                rule_id: format!("rule_{i}"),
                contribution: i as i32 * 100 - 50,
                text: format!("motivo {i}"),
            })
            .collect(),
        degraded: true,
        event_time: 1_714_564_800_000,
        decided_at: 1_714_564_800_012,
        latency_ms: 12,
    }
}

fn ledger_entry(entry_id: Option<&str>) -> LedgerEntry {
    LedgerEntry {
        entry_id: entry_id.map(str::to_owned),
        account_id: "acc-1".into(),
        kind: "DEBIT".into(),
        amount: dec("-0.01"),
        currency: "BRL".into(),
        occurred_at: 1_714_564_800_000,
        description: "pão".into(),
    }
}

fn daily_balance() -> DailyBalance {
    DailyBalance {
        account_id: "acc-1".into(),
        business_date: 19_844,
        total_credits: dec("1000.5"),
        total_debits: dec("250.25"),
        net: dec("750.25"),
        entry_count: 3,
        last_entry_at: 1_714_564_800_000,
        updated_at: 1_714_564_900_000,
    }
}

/// Whether a value produced by the typed mapping has exactly the type `schema` declares,
/// logical types included.
fn same_type(value: &Value, schema: &Schema, path: &str) {
    match (value, schema) {
        (Value::String(_), Schema::String)
        | (Value::Long(_), Schema::Long)
        | (Value::Int(_), Schema::Int)
        | (Value::Boolean(_), Schema::Boolean)
        | (Value::Null, Schema::Null)
        | (Value::TimestampMillis(_), Schema::TimestampMillis)
        | (Value::Date(_), Schema::Date) => {}
        (Value::Decimal(_), Schema::Decimal(_)) => {}
        (Value::Enum(index, symbol), Schema::Enum(e)) => {
            assert_eq!(
                &e.symbols[*index as usize], symbol,
                "{path}: enum index/symbol"
            );
        }
        (Value::Union(index, inner), Schema::Union(u)) => {
            same_type(inner, &u.variants()[*index as usize], path);
        }
        (Value::Array(items), Schema::Array(a)) => {
            for (i, item) in items.iter().enumerate() {
                same_type(item, &a.items, &format!("{path}[{i}]"));
            }
        }
        (Value::Record(fields), Schema::Record(r)) => {
            let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
            let expected: Vec<&str> = r.fields.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(names, expected, "{path}: field names and order");
            for ((name, v), field) in fields.iter().zip(&r.fields) {
                same_type(v, &field.schema, &format!("{path}.{name}"));
            }
        }
        (v, s) => panic!("{path}: value {v:?} does not have the schema's type {s:?}"),
    }
}

/// The full agreement check of one event against its schema, with the JSON rendering expected
/// (which proves decimal scales, dates and timestamps).
fn check_agreement<T: AvroEvent + PartialEq + Debug>(event: &T, expected_json: serde_json::Value) {
    let schema = T::schema();
    let entry = schemas::all()
        .iter()
        .find(|s| s.name == T::SCHEMA_NAME)
        .unwrap();
    assert_eq!(schemas::schema_for(entry.name), Some(schema));
    let value = event.to_value().unwrap();
    assert!(
        value.validate(schema),
        "{}: to_value does not validate",
        T::SCHEMA_NAME
    );
    same_type(&value, schema, T::SCHEMA_NAME);
    assert_eq!(
        value_to_json(schema, &value),
        expected_json,
        "{}",
        T::SCHEMA_NAME
    );

    // The direct encoder writes exactly what apache_avro writes for to_value.
    let direct = encode_datum(event).unwrap();
    let generic = encode_value(schema, &value).unwrap();
    assert_eq!(
        direct,
        generic,
        "{}: direct vs apache_avro bytes",
        T::SCHEMA_NAME
    );

    // Round trips: fast path, generic path, and through from_value.
    assert_eq!(&decode_datum::<T>(schema, &direct).unwrap(), event);
    let cloned = schema.clone();
    assert_eq!(&decode_datum::<T>(&cloned, &direct).unwrap(), event);
    let decoded = decode_value(schema, &direct).unwrap();
    assert_eq!(&T::from_value(decoded).unwrap(), event);
    assert_eq!(&T::from_value(value).unwrap(), event);

    // Truncated datums are errors, never panics; trailing bytes are refused.
    for len in 0..direct.len() {
        assert!(
            decode_datum::<T>(schema, &direct[..len]).is_err(),
            "{} cut at {len}",
            T::SCHEMA_NAME
        );
    }
    let mut longer = direct.clone();
    longer.push(0);
    assert!(matches!(
        decode_datum::<T>(schema, &longer),
        Err(CodecError::TrailingBytes { count: 1, .. })
    ));
}

#[test]
fn asset_price_agrees_with_its_schema() {
    check_agreement(
        &asset_price(),
        json!({"event_id": "q-1", "symbol": "PETR4", "price": "110.01000000", "currency": "BRL",
               "source": "b3", "event_time": 1_714_564_800_250_i64}),
    );
}

#[test]
fn price_alert_agrees_with_its_schema() {
    let expected = |direction: &str| {
        json!({"alert_id": "a-1", "symbol": "BTC-BRL", "direction": direction,
               "from_price": "350000.12345678", "from_time": 1000, "from_event_id": "q-0",
               "to_price": "367500.50000000", "to_time": 61000, "to_event_id": "q-9",
               "change_pct": "-5.0001", "threshold_pct": "5.0000", "window_start": 1000,
               "window_end": 61000})
    };
    check_agreement(&price_alert(Direction::Rise), expected("RISE"));
    check_agreement(&price_alert(Direction::Fall), expected("FALL"));
}

#[test]
fn below_average_event_agrees_with_its_schema() {
    for (kind, kind_symbol) in [
        (CrossingKind::Below, "BELOW"),
        (CrossingKind::Recovered, "RECOVERED"),
    ] {
        for (method, method_symbol) in [(AverageMethod::Sma, "SMA"), (AverageMethod::Ewma, "EWMA")]
        {
            check_agreement(
                &below_average(kind, method),
                json!({"event_id": "b-1", "symbol": "VALE3", "kind": kind_symbol,
                       "price": "61.20000000", "average": "64.98765432", "deviation_pct": "-5.8253",
                       "samples": 42, "method": method_symbol, "event_time": -5,
                       "quote_event_id": "q-7"}),
            );
        }
    }
}

#[test]
fn transaction_agrees_with_its_schema() {
    for (kind, symbol) in [
        (TransactionKind::Pix, "PIX"),
        (TransactionKind::Ted, "TED"),
        (TransactionKind::Card, "CARD"),
        (TransactionKind::Boleto, "BOLETO"),
    ] {
        check_agreement(
            &transaction(kind),
            json!({"transaction_id": "t-1", "kind": symbol, "payer_document": "52998224725",
                   "payer_name": "José da Silva", "payee_document": "11.222.333/0001-81",
                   "amount": "1500.75", "channel": "app", "event_time": 1_714_564_800_000_i64}),
        );
    }
}

#[test]
fn blacklist_entry_agrees_with_its_schema() {
    check_agreement(
        &blacklist_entry(),
        json!({"document": "52998224725", "listed": true, "reason": "fraude", "source": "coaf",
               "since": 1_700_000_000_000_i64}),
    );
}

#[test]
fn risk_decision_agrees_with_its_schema() {
    for (decision, symbol) in [
        (Decision::Approve, "APPROVE"),
        (Decision::Review, "REVIEW"),
        (Decision::Reject, "REJECT"),
    ] {
        for reasons in [0, 1, 3] {
            let reasons_json: Vec<serde_json::Value> = (0..reasons)
                .map(|i| {
                    json!({"rule_id": format!("rule_{i}"), "contribution": i * 100 - 50,
                                "text": format!("motivo {i}")})
                })
                .collect();
            check_agreement(
                &risk_decision(decision, reasons as usize),
                json!({"transaction_id": "t-1", "score": 730, "decision": symbol,
                       "reasons": reasons_json, "degraded": true,
                       "event_time": 1_714_564_800_000_i64, "decided_at": 1_714_564_800_012_i64,
                       "latency_ms": 12}),
            );
        }
    }
}

#[test]
fn ledger_entry_agrees_with_its_schema() {
    for id in [None, Some("9b2f6c1e-0000-4000-8000-000000000001")] {
        check_agreement(
            &ledger_entry(id),
            json!({"entry_id": id, "account_id": "acc-1", "kind": "DEBIT", "amount": "-0.01",
                   "currency": "BRL", "occurred_at": 1_714_564_800_000_i64, "description": "pão"}),
        );
    }
}

#[test]
fn daily_balance_agrees_with_its_schema() {
    check_agreement(
        &daily_balance(),
        json!({"account_id": "acc-1", "business_date": "2024-05-01", "total_credits": "1000.50",
               "total_debits": "250.25", "net": "750.25", "entry_count": 3,
               "last_entry_at": 1_714_564_800_000_i64, "updated_at": 1_714_564_900_000_i64}),
    );
}

#[test]
fn the_wire_bytes_are_what_java_writes() {
    // AssetPrice: strings are length + UTF-8, the price 110.01 at scale 8 is the unscaled
    // 11001000000 = 0x028FB5F040 in 5 bytes, the time a zig-zag varint.
    let bytes = encode_datum(&asset_price()).unwrap();
    let mut expected = vec![0x06];
    expected.extend(b"q-1");
    expected.push(0x0A);
    expected.extend(b"PETR4");
    expected.extend([0x0A, 0x02, 0x8F, 0xB5, 0xF0, 0x40]);
    expected.push(0x06);
    expected.extend(b"BRL");
    expected.push(0x04);
    expected.extend(b"b3");
    let mut time = Vec::new();
    super::binary::put_long(&mut time, 1_714_564_800_250);
    expected.extend(time);
    assert_eq!(bytes, expected);
    // A negative amount: -0.01 at scale 2 is -1, one byte 0xFF.
    let ledger = encode_datum(&ledger_entry(None)).unwrap();
    assert_eq!(&ledger[..1], &[0x00], "union branch 0 (null)");
    let amount_at = 1 + 6 + 6; // branch, "acc-1", "DEBIT"
    assert_eq!(&ledger[amount_at..amount_at + 2], &[0x02, 0xFF]);
}

#[test]
fn decimal_edge_cases_in_events() {
    // Zero, negative, and the largest values each precision allows round-trip exactly.
    for amount in [
        "0",
        "-0.01",
        "-9999999999999999.99",
        "9999999999999999.99",
        "0.1",
    ] {
        let mut t = transaction(TransactionKind::Pix);
        t.amount = dec(amount);
        let bytes = encode_datum(&t).unwrap();
        assert_eq!(
            encode_value(Transaction::schema(), &t.to_value().unwrap()).unwrap(),
            bytes
        );
        let back: Transaction = decode_datum(Transaction::schema(), &bytes).unwrap();
        assert_eq!(back.amount, t.amount, "{amount}");
        assert_eq!(back.amount.scale(), 2);
    }
    for price in [
        "999999999999.99999999",
        "-999999999999.99999999",
        "0.00000001",
    ] {
        let mut p = asset_price();
        p.price = dec(price);
        let back: AssetPrice =
            decode_datum(AssetPrice::schema(), &encode_datum(&p).unwrap()).unwrap();
        assert_eq!(back.price, p.price);
    }
    // Too many places: an error naming the field, from both encoders; never rounding.
    let mut t = transaction(TransactionKind::Pix);
    t.amount = dec("1.234");
    let expected = "Transaction.amount: 1.234 has more than 2 decimal places";
    assert_eq!(encode_datum(&t).unwrap_err().to_string(), expected);
    assert_eq!(t.to_value().unwrap_err().to_string(), expected);
    // Beyond the precision.
    let mut p = price_alert(Direction::Rise);
    p.change_pct = dec("100000000");
    assert_eq!(
        encode_datum(&p).unwrap_err().to_string(),
        "PriceAlert.change_pct: 100000000 does not fit decimal(12, 4) (at most 8 digits before the decimal point)"
    );
    // A failed encode leaves a reused buffer untouched.
    let mut buffer = vec![1, 2, 3];
    assert!(encode_datum_into(&t, &mut buffer).is_err());
    assert!(encode_framed(7, &t, &mut buffer).is_err());
    assert_eq!(buffer, vec![1, 2, 3]);
}

#[test]
fn decoding_out_of_range_decimal_bytes_is_an_error() {
    // A writer that put 10^16 (17 integer digits) into decimal(18, 2).
    let mut t = transaction(TransactionKind::Pix);
    t.amount = dec("1");
    let mut bytes = encode_datum(&t).unwrap();
    // amount 1.00 is the unscaled 100: length 1, byte 0x64; then "app" (length 3 = 0x06).
    let at = bytes
        .windows(3)
        .position(|w| w == [0x02, 0x64, 0x06])
        .unwrap();
    let (unscaled, start) = super::decimal::unscaled_bytes(1_000_000_000_000_000_000);
    let mut patched = bytes[..at].to_vec();
    super::binary::put_bytes(&mut patched, &unscaled[start..]);
    patched.extend_from_slice(&bytes[at + 2..]);
    assert_eq!(
        decode_datum::<Transaction>(Transaction::schema(), &patched).unwrap_err().to_string(),
        "Transaction.amount: 10000000000000000.00 does not fit decimal(18, 2) (at most 16 digits before the decimal point)"
    );
    // Empty decimal bytes.
    bytes.splice(at..at + 2, [0x00]);
    assert_eq!(
        decode_datum::<Transaction>(Transaction::schema(), &bytes)
            .unwrap_err()
            .to_string(),
        "Transaction.amount: an empty byte string is not a decimal"
    );
}

#[test]
fn framed_round_trip() {
    let mut buffer = Vec::new();
    encode_framed(42, &transaction(TransactionKind::Card), &mut buffer).unwrap();
    let (id, datum) = unframe(&buffer).unwrap();
    assert_eq!(id, 42);
    let back: Transaction = decode_datum(Transaction::schema(), datum).unwrap();
    assert_eq!(back, transaction(TransactionKind::Card));
    assert_eq!(buffer, super::frame(42, &encode_datum(&back).unwrap()));
}

// ---------------------------------------------------------------------------------------------
// Schema evolution: decoding with a writer schema other than the current one.

fn parse(text: &str) -> Schema {
    Schema::parse_str(text).unwrap()
}

/// The first version of LedgerEntry: no entry_id, no description (both have defaults now).
const LEDGER_V1: &str = r#"{"type": "record", "name": "LedgerEntry", "namespace": "br.com.fluxo", "fields": [
    {"name": "account_id", "type": "string"},
    {"name": "kind", "type": "string"},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}},
    {"name": "currency", "type": "string"},
    {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
]}"#;

#[test]
fn older_writer_missing_fields_with_defaults() {
    let writer = parse(LEDGER_V1);
    let value = Value::Record(vec![
        ("account_id".into(), Value::String("acc-9".into())),
        ("kind".into(), Value::String("CREDIT".into())),
        (
            "amount".into(),
            Value::Decimal(apache_avro::Decimal::from(vec![0x2A, 0xF9])),
        ),
        ("currency".into(), Value::String("BRL".into())),
        ("occurred_at".into(), Value::TimestampMillis(5)),
    ]);
    let bytes = encode_value(&writer, &value).unwrap();
    let entry: LedgerEntry = decode_datum(&writer, &bytes).unwrap();
    assert_eq!(
        entry,
        LedgerEntry {
            entry_id: None,
            account_id: "acc-9".into(),
            kind: "CREDIT".into(),
            amount: dec("110.01"),
            currency: "BRL".into(),
            occurred_at: 5,
            description: String::new(),
        }
    );
}

#[test]
fn newer_writer_with_reordered_and_extra_fields() {
    // Fields reordered, an extra field, `samples` written as int, timestamps as plain longs.
    let writer = parse(
        r#"{"type": "record", "name": "BelowAverageEvent", "namespace": "br.com.fluxo", "fields": [
            {"name": "quote_event_id", "type": "string"},
            {"name": "extra", "type": ["null", "string"], "default": null},
            {"name": "event_id", "type": "string"},
            {"name": "symbol", "type": "string"},
            {"name": "kind", "type": {"type": "enum", "name": "CrossingKind", "symbols": ["BELOW", "RECOVERED", "TOUCHED"]}},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 8}},
            {"name": "average", "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 8}},
            {"name": "deviation_pct", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 4}},
            {"name": "samples", "type": "int"},
            {"name": "method", "type": {"type": "enum", "name": "AverageMethod", "symbols": ["SMA", "EWMA"]}},
            {"name": "event_time", "type": "long"}
        ]}"#,
    );
    let expected = below_average(CrossingKind::Recovered, AverageMethod::Ewma);
    let current = expected.to_value().unwrap();
    let Value::Record(mut fields) = current else {
        panic!()
    };
    let mut take = |name: &str| {
        let i = fields.iter().position(|(n, _)| n == name).unwrap();
        fields.remove(i)
    };
    let event_id = take("event_id");
    let symbol = take("symbol");
    let kind = take("kind");
    let price = take("price");
    let average = take("average");
    let deviation = take("deviation_pct");
    let method = take("method");
    let quote = take("quote_event_id");
    let value = |kind_value: Value| {
        Value::Record(vec![
            quote.clone(),
            (
                "extra".into(),
                Value::Union(1, Box::new(Value::String("x".into()))),
            ),
            event_id.clone(),
            symbol.clone(),
            ("kind".into(), kind_value),
            price.clone(),
            average.clone(),
            deviation.clone(),
            ("samples".into(), Value::Int(42)),
            method.clone(),
            ("event_time".into(), Value::Long(-5)),
        ])
    };
    let bytes = encode_value(&writer, &value(kind.1.clone())).unwrap();
    let decoded: BelowAverageEvent = decode_datum(&writer, &bytes).unwrap();
    assert_eq!(decoded, expected);
    // A symbol the Rust enum does not know is a clear error.
    let bytes = encode_value(&writer, &value(Value::Enum(2, "TOUCHED".into()))).unwrap();
    assert_eq!(
        decode_datum::<BelowAverageEvent>(&writer, &bytes)
            .unwrap_err()
            .to_string(),
        "BelowAverageEvent.kind: unknown symbol \"TOUCHED\", expected one of BELOW, RECOVERED"
    );
}

#[test]
fn missing_field_without_default_is_a_clear_error() {
    let writer = parse(
        r#"{"type": "record", "name": "LedgerEntry", "namespace": "br.com.fluxo", "fields": [
            {"name": "kind", "type": "string"}
        ]}"#,
    );
    let bytes = encode_value(
        &writer,
        &Value::Record(vec![("kind".into(), Value::String("DEBIT".into()))]),
    )
    .unwrap();
    assert_eq!(
        decode_datum::<LedgerEntry>(&writer, &bytes).unwrap_err().to_string(),
        "LedgerEntry.account_id: missing from the writer's record and the schema gives it no default"
    );
    // Nested records too.
    let writer = parse(
        r#"{"type": "record", "name": "RiskDecision", "namespace": "br.com.fluxo", "fields": [
            {"name": "transaction_id", "type": "string"},
            {"name": "score", "type": "int"},
            {"name": "decision", "type": {"type": "enum", "name": "Decision", "symbols": ["APPROVE", "REVIEW", "REJECT"]}},
            {"name": "reasons", "type": {"type": "array", "items": {"type": "record", "name": "RiskReason",
                "fields": [{"name": "rule_id", "type": "string"}, {"name": "contribution", "type": "int"}]}}},
            {"name": "degraded", "type": "boolean"},
            {"name": "event_time", "type": "long"},
            {"name": "decided_at", "type": "long"},
            {"name": "latency_ms", "type": "long"}
        ]}"#,
    );
    let reason = Value::Record(vec![
        ("rule_id".into(), Value::String("r".into())),
        ("contribution".into(), Value::Int(1)),
    ]);
    let value = Value::Record(vec![
        ("transaction_id".into(), Value::String("t".into())),
        ("score".into(), Value::Int(1)),
        ("decision".into(), Value::Enum(0, "APPROVE".into())),
        ("reasons".into(), Value::Array(vec![reason.clone(), reason])),
        ("degraded".into(), Value::Boolean(false)),
        ("event_time".into(), Value::Long(1)),
        ("decided_at".into(), Value::Long(2)),
        ("latency_ms".into(), Value::Long(1)),
    ]);
    let bytes = encode_value(&writer, &value).unwrap();
    assert_eq!(
        decode_datum::<RiskDecision>(&writer, &bytes).unwrap_err().to_string(),
        "RiskDecision.reasons[0].text: missing from the writer's record and the schema gives it no default"
    );
}

#[test]
fn a_writer_schema_of_another_record_is_refused() {
    let bytes = encode_datum(&asset_price()).unwrap();
    assert_eq!(
        decode_datum::<Transaction>(AssetPrice::schema(), &bytes).unwrap_err().to_string(),
        "the writer schema is the record br.com.fluxo.AssetPrice, not a version of the record Transaction"
    );
    assert_eq!(
        decode_datum::<Transaction>(&Schema::String, &bytes)
            .unwrap_err()
            .to_string(),
        "the writer schema is a string, not a version of the record Transaction"
    );
}

#[test]
fn wrong_types_in_values_name_the_field() {
    let Value::Record(mut fields) = transaction(TransactionKind::Pix).to_value().unwrap() else {
        panic!()
    };
    fields[7].1 = Value::String("yesterday".into());
    assert_eq!(
        Transaction::from_value(Value::Record(fields))
            .unwrap_err()
            .to_string(),
        "Transaction.event_time: expected a timestamp-millis, got string"
    );
    assert_eq!(
        Transaction::from_value(Value::Long(1))
            .unwrap_err()
            .to_string(),
        "Transaction: expected a record, got long"
    );
}

#[test]
fn malformed_datums_never_panic() {
    // Random bytes through every decoder: errors or values, never a panic. The `older_*` writer
    // schemas (timestamps as plain longs) force the generic apache_avro path.
    let plain = |index: usize| {
        parse(&schemas::all()[index].json.replace(
            r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
            r#""long""#,
        ))
    };
    let older_transaction = plain(schemas::TRANSACTION);
    let older_decision = plain(schemas::RISK_DECISION);
    assert!(!super::typed::same_binary_layout(
        &older_decision,
        RiskDecision::schema()
    ));
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..64), |bytes| {
            let _ = decode_datum::<Transaction>(&older_transaction, &bytes);
            let _ = decode_datum::<RiskDecision>(&older_decision, &bytes);
            let _ = decode_datum::<AssetPrice>(AssetPrice::schema(), &bytes);
            let _ = decode_datum::<PriceAlert>(PriceAlert::schema(), &bytes);
            let _ = decode_datum::<BelowAverageEvent>(BelowAverageEvent::schema(), &bytes);
            let _ = decode_datum::<Transaction>(Transaction::schema(), &bytes);
            let _ = decode_datum::<BlacklistEntry>(BlacklistEntry::schema(), &bytes);
            let _ = decode_datum::<RiskDecision>(RiskDecision::schema(), &bytes);
            let _ = decode_datum::<LedgerEntry>(LedgerEntry::schema(), &bytes);
            let _ = decode_datum::<DailyBalance>(DailyBalance::schema(), &bytes);
            let _ = unframe(&bytes);
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Property tests: every type round-trips with arbitrary decimals within precision.

/// A decimal within `decimal(precision, scale)`, with any scale from 0 to the schema's.
fn decimal_within(precision: u32, scale: u32) -> impl Strategy<Value = Decimal> {
    (0..=scale).prop_flat_map(move |own_scale| {
        let digits = precision - scale + own_scale;
        let limit = 10i128.pow(digits) - 1;
        (-limit..=limit)
            .prop_map(move |unscaled| Decimal::from_i128_with_scale(unscaled, own_scale))
    })
}

fn price() -> impl Strategy<Value = Decimal> {
    decimal_within(20, 8)
}

fn percent() -> impl Strategy<Value = Decimal> {
    decimal_within(12, 4)
}

fn money() -> impl Strategy<Value = Decimal> {
    decimal_within(18, 2)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

/// Encodes with both encoders, checks they agree, and decodes with both decoders.
fn round_trip<T: AvroEvent + PartialEq + Debug>(event: &T) -> Result<(), TestCaseError> {
    let direct = encode_datum(event).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let value = event
        .to_value()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&encode_value(T::schema(), &value).unwrap(), &direct);
    prop_assert_eq!(&decode_datum::<T>(T::schema(), &direct).unwrap(), event);
    prop_assert_eq!(
        &T::from_value(decode_value(T::schema(), &direct).unwrap()).unwrap(),
        event
    );
    Ok(())
}

proptest! {
    #[test]
    fn asset_price_round_trips(
        event_id in text(), symbol in text(), price in price(), currency in text(),
        source in text(), event_time in any::<i64>(),
    ) {
        round_trip(&AssetPrice { event_id, symbol, price, currency, source, event_time })?;
    }

    #[test]
    fn price_alert_round_trips(
        ids in (text(), text(), text(), text()), rise in any::<bool>(),
        prices in (price(), price()), pcts in (percent(), percent()),
        times in (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
    ) {
        round_trip(&PriceAlert {
            alert_id: ids.0, symbol: ids.1,
            direction: if rise { Direction::Rise } else { Direction::Fall },
            from_price: prices.0, from_time: times.0, from_event_id: ids.2,
            to_price: prices.1, to_time: times.1, to_event_id: ids.3,
            change_pct: pcts.0, threshold_pct: pcts.1, window_start: times.2, window_end: times.3,
        })?;
    }

    #[test]
    fn below_average_event_round_trips(
        ids in (text(), text(), text()), below in any::<bool>(), sma in any::<bool>(),
        price in price(), average in price(), deviation_pct in percent(),
        samples in any::<i64>(), event_time in any::<i64>(),
    ) {
        round_trip(&BelowAverageEvent {
            event_id: ids.0, symbol: ids.1,
            kind: if below { CrossingKind::Below } else { CrossingKind::Recovered },
            price, average, deviation_pct, samples,
            method: if sma { AverageMethod::Sma } else { AverageMethod::Ewma },
            event_time, quote_event_id: ids.2,
        })?;
    }

    #[test]
    fn transaction_round_trips(
        strings in (text(), text(), text(), text(), text()), kind in 0usize..4,
        amount in money(), event_time in any::<i64>(),
    ) {
        let kinds = [TransactionKind::Pix, TransactionKind::Ted, TransactionKind::Card, TransactionKind::Boleto];
        round_trip(&Transaction {
            transaction_id: strings.0, kind: kinds[kind], payer_document: strings.1,
            payer_name: strings.2, payee_document: strings.3, amount, channel: strings.4, event_time,
        })?;
    }

    #[test]
    fn blacklist_entry_round_trips(
        document in text(), listed in any::<bool>(), reason in text(), source in text(),
        since in any::<i64>(),
    ) {
        round_trip(&BlacklistEntry { document, listed, reason, source, since })?;
    }

    #[test]
    fn risk_decision_round_trips(
        transaction_id in text(), score in any::<i32>(), decision in 0usize..3,
        reasons in proptest::collection::vec((text(), any::<i32>(), text()), 0..5),
        degraded in any::<bool>(), times in (any::<i64>(), any::<i64>(), any::<i64>()),
    ) {
        let decisions = [Decision::Approve, Decision::Review, Decision::Reject];
        round_trip(&RiskDecision {
            transaction_id, score, decision: decisions[decision],
            reasons: reasons.into_iter()
                .map(|(rule_id, contribution, text)| RiskReason { rule_id, contribution, text })
                .collect(),
            degraded, event_time: times.0, decided_at: times.1, latency_ms: times.2,
        })?;
    }

    #[test]
    fn ledger_entry_round_trips(
        entry_id in proptest::option::of(text()), strings in (text(), text(), text(), text()),
        amount in money(), occurred_at in any::<i64>(),
    ) {
        round_trip(&LedgerEntry {
            entry_id, account_id: strings.0, kind: strings.1, amount, currency: strings.2,
            occurred_at, description: strings.3,
        })?;
    }

    #[test]
    fn daily_balance_round_trips(
        account_id in text(), business_date in any::<i32>(),
        amounts in (money(), money(), money()), entry_count in any::<i64>(),
        times in (any::<i64>(), any::<i64>()),
    ) {
        round_trip(&DailyBalance {
            account_id, business_date, total_credits: amounts.0, total_debits: amounts.1,
            net: amounts.2, entry_count, last_entry_at: times.0, updated_at: times.1,
        })?;
    }
}

#[test]
fn the_fast_path_is_taken_only_for_the_same_binary_layout() {
    use super::typed::same_binary_layout;
    let json = schemas::all()[schemas::TRANSACTION].json;
    let same = parse(json);
    assert!(same_binary_layout(&same, Transaction::schema()));
    let with_doc = parse(&json.replace("A payment on transactions", "Another doc"));
    assert!(same_binary_layout(&with_doc, Transaction::schema()));
    let other_scale = parse(&json.replace(
        r#""precision": 18, "scale": 2"#,
        r#""precision": 18, "scale": 3"#,
    ));
    assert!(!same_binary_layout(&other_scale, Transaction::schema()));
    let plain_long = parse(&json.replace(
        r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
        r#""long""#,
    ));
    assert!(!same_binary_layout(&plain_long, Transaction::schema()));
    let more_symbols = parse(&json.replace(r#""BOLETO"]"#, r#""BOLETO", "DOC"]"#));
    assert!(!same_binary_layout(&more_symbols, Transaction::schema()));
    let renamed = parse(&json.replace(r#""channel""#, r#""canal""#));
    assert!(!same_binary_layout(&renamed, Transaction::schema()));

    // Plain long timestamps decode through the generic path to the same event.
    let t = transaction(TransactionKind::Ted);
    let bytes = encode_datum(&t).unwrap();
    assert_eq!(decode_datum::<Transaction>(&plain_long, &bytes).unwrap(), t);
    // A decimal written at another scale is refused, not silently rescaled.
    assert_eq!(
        decode_datum::<Transaction>(&other_scale, &bytes).unwrap_err().to_string(),
        "Transaction.amount: the writer's decimal(18, 3) has another scale than the reader's decimal(18, 2)"
    );
}
