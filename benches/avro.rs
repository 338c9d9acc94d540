//! Avro codec throughput: framed records decoded and re-encoded on one core.
//!
//! Each iteration takes a batch of Confluent-framed records and, per record, does what a
//! processor's input and output do: unframe, decode with the writer schema into the typed
//! event, encode the event again and frame it into a reused buffer. The writer schema is a
//! separately parsed copy of the current schema, as the runtime gets it from the registry, so the
//! schema comparison that picks the direct decoder is measured too. The `generic` variants go
//! through `apache_avro`'s `Value` instead (decode_value → from_value → to_value → encode_value),
//! the path used for writer schemas other than the current one.
//!
//! Run: `cargo bench --bench avro` (records/s = elements/s in criterion's output).

use apache_avro::Schema;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fluxo::avro::typed::{decode_datum, decode_value, encode_framed, encode_value, AvroEvent};
use fluxo::avro::{frame_into, unframe};
use fluxo_processors::events::{AssetPrice, Transaction, TransactionKind};
use rust_decimal::Decimal;
use std::hint::black_box;

const BATCH: usize = 1024;
const SCHEMA_ID: u32 = 7;

fn asset_prices() -> Vec<AssetPrice> {
    (0..BATCH)
        .map(|i| AssetPrice {
            event_id: format!("9b2f6c1e-0000-4000-8000-{i:012}"),
            symbol: ["PETR4", "VALE3", "BTC-BRL", "ITUB4"][i % 4].to_string(),
            price: Decimal::new(11_001_000_000 + i as i64 * 1_234_567, 8),
            currency: "BRL".to_string(),
            source: "b3".to_string(),
            event_time: 1_714_564_800_000 + i as i64 * 250,
        })
        .collect()
}

fn transactions() -> Vec<Transaction> {
    let kinds = [
        TransactionKind::Pix,
        TransactionKind::Ted,
        TransactionKind::Card,
        TransactionKind::Boleto,
    ];
    (0..BATCH)
        .map(|i| Transaction {
            transaction_id: format!("9b2f6c1e-0000-4000-8000-{i:012}"),
            kind: kinds[i % 4],
            payer_document: "52998224725".to_string(),
            payer_name: "Maria Aparecida dos Santos".to_string(),
            payee_document: "11.222.333/0001-81".to_string(),
            amount: Decimal::new(150_075 + i as i64 * 37, 2),
            channel: "app".to_string(),
            event_time: 1_714_564_800_000 + i as i64 * 1_000,
        })
        .collect()
}

/// The events framed as they arrive from Kafka.
fn framed<T: AvroEvent>(events: &[T]) -> Vec<Vec<u8>> {
    events
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            encode_framed(SCHEMA_ID, e, &mut out).expect("bench events are valid");
            out
        })
        .collect()
}

/// A copy of the current schema parsed on its own, as the registry client would hold it.
fn writer_schema<T: AvroEvent>() -> Schema {
    let json = fluxo::avro::schemas::all()
        .iter()
        .find(|s| s.name == T::SCHEMA_NAME)
        .expect("every event has a schema")
        .json;
    Schema::parse_str(json).expect("schemas parse")
}

fn typed_round_trip<T: AvroEvent>(writer: &Schema, payloads: &[Vec<u8>], out: &mut Vec<u8>) {
    for payload in payloads {
        let (id, datum) = unframe(payload).expect("framed");
        let event: T = decode_datum(writer, datum).expect("decodes");
        out.clear();
        encode_framed(id, &event, out).expect("encodes");
        black_box(&*out);
    }
}

fn generic_round_trip<T: AvroEvent>(writer: &Schema, payloads: &[Vec<u8>], out: &mut Vec<u8>) {
    for payload in payloads {
        let (id, datum) = unframe(payload).expect("framed");
        let event = T::from_value(decode_value(writer, datum).expect("decodes")).expect("maps");
        let value = event.to_value().expect("maps");
        let datum = encode_value(T::schema(), &value).expect("encodes");
        out.clear();
        frame_into(id, &datum, out);
        black_box(&*out);
    }
}

fn bench_type<T: AvroEvent>(c: &mut Criterion, name: &str, payloads: &[Vec<u8>]) {
    let writer = writer_schema::<T>();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(payloads.len() as u64));
    let mut out = Vec::with_capacity(256);
    group.bench_function("typed decode+encode", |b| {
        b.iter(|| typed_round_trip::<T>(&writer, payloads, &mut out))
    });
    group.bench_function("generic decode+encode", |b| {
        b.iter(|| generic_round_trip::<T>(&writer, payloads, &mut out))
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_type::<AssetPrice>(c, "avro/asset_price", &framed(&asset_prices()));
    bench_type::<Transaction>(c, "avro/transaction", &framed(&transactions()));
}

criterion_group!(benches, codec);
criterion_main!(benches);
