//! Golden wire bytes: fixed values of every event type, encoded with the typed codecs, pinned in
//! `testdata/golden/avro.txt`.
//!
//! The typed codecs are generated from `schemas/*.avsc` by the build script; this file was
//! written against the hand-written codecs they replaced, and pins the bytes those wrote, so a
//! change of the generator (or of a schema) that alters a single byte on the wire fails here.
//! Each line of the golden file is `name hex-of-the-datum`; the test also decodes every pinned
//! datum back into the value it came from, and checks the Confluent framing of each.
//!
//! After a deliberate wire change (a new event, a new fixture), regenerate the file with
//! `FLUXO_BLESS_GOLDEN=1 cargo test --lib avro::golden -- --test-threads=1` and review its diff.

use super::typed::{decode_datum, encode_datum, AvroEvent};
use super::{encode_framed, unframe};
use fluxo_processors::events::{
    AssetPrice, AverageMethod, BelowAverageEvent, BlacklistEntry, CrossingKind, DailyBalance,
    Decision, Direction, LedgerEntry, PriceAlert, RiskDecision, RiskReason, Transaction,
    TransactionKind,
};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::str::FromStr;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/golden/avro.txt");

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn asset_prices() -> Vec<(&'static str, AssetPrice)> {
    vec![
        (
            "asset_price/b3",
            AssetPrice {
                event_id: "9b2f6c1e-0000-4000-8000-000000000001".into(),
                symbol: "PETR4".into(),
                price: dec("38.41"),
                currency: "BRL".into(),
                source: "b3".into(),
                event_time: 1_714_564_800_250,
            },
        ),
        (
            "asset_price/max_precision",
            AssetPrice {
                event_id: String::new(),
                symbol: "BTC-BRL".into(),
                price: dec("999999999999.99999999"),
                currency: "BRL".into(),
                source: "binance".into(),
                event_time: -1,
            },
        ),
    ]
}

fn price_alerts() -> Vec<(&'static str, PriceAlert)> {
    [
        ("price_alert/rise", Direction::Rise, "10.0001"),
        ("price_alert/fall", Direction::Fall, "-7.5"),
    ]
    .into_iter()
    .map(|(name, direction, change)| {
        (
            name,
            PriceAlert {
                alert_id: format!("VALE3/{name}"),
                symbol: "VALE3".into(),
                direction,
                from_price: dec("61.20000001"),
                from_time: 1_714_564_800_000,
                from_event_id: "q-1".into(),
                to_price: dec("67.32"),
                to_time: 1_714_564_860_000,
                to_event_id: "q-2".into(),
                change_pct: dec(change),
                threshold_pct: dec("5"),
                window_start: 1_714_564_560_000,
                window_end: 1_714_564_860_000,
            },
        )
    })
    .collect()
}

fn below_average_events() -> Vec<(&'static str, BelowAverageEvent)> {
    [
        (
            "below_average/below_sma",
            CrossingKind::Below,
            AverageMethod::Sma,
        ),
        (
            "below_average/recovered_ewma",
            CrossingKind::Recovered,
            AverageMethod::Ewma,
        ),
    ]
    .into_iter()
    .map(|(name, kind, method)| {
        (
            name,
            BelowAverageEvent {
                event_id: format!("ITUB4/{name}"),
                symbol: "ITUB4".into(),
                kind,
                price: dec("31.5"),
                average: dec("33.12345678"),
                deviation_pct: dec("-4.9020"),
                samples: 1_440,
                method,
                event_time: 1_714_564_800_000,
                quote_event_id: "q-9".into(),
            },
        )
    })
    .collect()
}

fn transactions() -> Vec<(&'static str, Transaction)> {
    [
        ("transaction/pix", TransactionKind::Pix, "0.01"),
        ("transaction/ted", TransactionKind::Ted, "1500.75"),
        (
            "transaction/card",
            TransactionKind::Card,
            "9999999999999999.99",
        ),
        ("transaction/boleto", TransactionKind::Boleto, "128"),
    ]
    .into_iter()
    .map(|(name, kind, amount)| {
        (
            name,
            Transaction {
                transaction_id: format!("tx/{name}"),
                kind,
                payer_document: "529.982.247-25".into(),
                payer_name: "José da Conceição".into(),
                payee_document: "11222333000181".into(),
                amount: dec(amount),
                channel: "app".into(),
                event_time: 1_714_564_800_000,
            },
        )
    })
    .collect()
}

fn blacklist_entries() -> Vec<(&'static str, BlacklistEntry)> {
    [("blacklist/listed", true), ("blacklist/unlisted", false)]
        .into_iter()
        .map(|(name, listed)| {
            (
                name,
                BlacklistEntry {
                    document: "52998224725".into(),
                    listed,
                    reason: "fraude confirmada".into(),
                    source: "coaf".into(),
                    since: 1_700_000_000_000,
                },
            )
        })
        .collect()
}

fn risk_decisions() -> Vec<(&'static str, RiskDecision)> {
    [
        ("risk_decision/approve_no_reasons", Decision::Approve, 0),
        ("risk_decision/review_one_reason", Decision::Review, 1),
        ("risk_decision/reject_three_reasons", Decision::Reject, 3),
    ]
    .into_iter()
    .map(|(name, decision, reasons)| {
        (
            name,
            RiskDecision {
                transaction_id: format!("tx/{name}"),
                score: [0, 450, 1000][reasons.min(2)],
                decision,
                reasons: (0..reasons)
                    .map(|i| RiskReason {
                        rule_id: format!("rule_{i}"),
                        contribution: i as i32 * 300 - 100,
                        text: format!("pagador 529.***.***-25 motivo {i}"),
                    })
                    .collect(),
                degraded: reasons == 1,
                event_time: 1_714_564_800_000,
                decided_at: 1_714_564_800_012,
                latency_ms: 12,
            },
        )
    })
    .collect()
}

fn ledger_entries() -> Vec<(&'static str, LedgerEntry)> {
    [
        (
            "ledger_entry/with_id",
            Some("0f8e0c4c-6a5b-4f1e-9d43-3c1b2a000001"),
        ),
        ("ledger_entry/without_id", None),
    ]
    .into_iter()
    .map(|(name, entry_id)| {
        (
            name,
            LedgerEntry {
                entry_id: entry_id.map(str::to_owned),
                account_id: "acc-0001".into(),
                kind: if entry_id.is_some() {
                    "CREDIT"
                } else {
                    "DEBIT"
                }
                .into(),
                amount: dec(if entry_id.is_some() { "250.5" } else { "-0.01" }),
                currency: "BRL".into(),
                occurred_at: 1_714_564_800_000,
                description: "pão de queijo".into(),
            },
        )
    })
    .collect()
}

fn daily_balances() -> Vec<(&'static str, DailyBalance)> {
    vec![
        (
            "daily_balance/positive",
            DailyBalance {
                account_id: "acc-0001".into(),
                business_date: 19_844,
                total_credits: dec("1000.5"),
                total_debits: dec("250.25"),
                net: dec("750.25"),
                entry_count: 3,
                last_entry_at: 1_714_564_800_000,
                updated_at: 1_714_564_900_000,
            },
        ),
        (
            "daily_balance/negative_before_epoch",
            DailyBalance {
                account_id: "acc-0002".into(),
                business_date: -1,
                total_credits: Decimal::ZERO,
                total_debits: dec("1234567.89"),
                net: dec("-1234567.89"),
                entry_count: 1,
                last_entry_at: -86_400_000,
                updated_at: 0,
            },
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Every fixture as `name -> datum bytes`, each checked on the way: the pinned datum decodes
/// back to the fixture, and its framing is the header followed by the same datum.
fn encode_all() -> BTreeMap<&'static str, Vec<u8>> {
    fn add<T: AvroEvent + PartialEq + Debug>(
        out: &mut BTreeMap<&'static str, Vec<u8>>,
        fixtures: Vec<(&'static str, T)>,
    ) {
        for (name, event) in fixtures {
            let datum = encode_datum(&event).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                decode_datum::<T>(T::schema(), &datum).unwrap(),
                event,
                "{name}"
            );
            let mut framed = Vec::new();
            encode_framed(7, &event, &mut framed).unwrap();
            let (id, body) = unframe(&framed).unwrap();
            assert_eq!((id, body), (7, datum.as_slice()), "{name}: framing");
            assert!(out.insert(name, datum).is_none(), "{name} twice");
        }
    }
    let mut out = BTreeMap::new();
    add(&mut out, asset_prices());
    add(&mut out, price_alerts());
    add(&mut out, below_average_events());
    add(&mut out, transactions());
    add(&mut out, blacklist_entries());
    add(&mut out, risk_decisions());
    add(&mut out, ledger_entries());
    add(&mut out, daily_balances());
    out
}

/// The pinned file as `name -> bytes`.
fn pinned() -> BTreeMap<String, Vec<u8>> {
    let text = std::fs::read_to_string(GOLDEN)
        .unwrap_or_else(|e| panic!("{GOLDEN}: {e} (FLUXO_BLESS_GOLDEN=1 writes it)"));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (name, hex) = line.split_once(' ').expect("`name hex` per line");
            (name.to_string(), unhex(hex.trim()))
        })
        .collect()
}

#[test]
fn every_event_encodes_to_its_pinned_bytes() {
    let encoded = encode_all();
    if std::env::var_os("FLUXO_BLESS_GOLDEN").is_some() {
        let mut text = String::from(
            "# Avro datums (no framing) of the fixtures in src/avro/golden.rs: `name hex`.\n",
        );
        for (name, bytes) in &encoded {
            text.push_str(&format!("{name} {}\n", hex(bytes)));
        }
        std::fs::write(GOLDEN, text).unwrap();
    }
    let pinned = pinned();
    let names: Vec<&str> = encoded.keys().copied().collect();
    let pinned_names: Vec<&str> = pinned.keys().map(String::as_str).collect();
    assert_eq!(names, pinned_names, "fixtures and golden file disagree");
    for (name, bytes) in &encoded {
        assert_eq!(
            hex(bytes),
            hex(&pinned[*name]),
            "{name}: the wire bytes changed"
        );
    }
}

#[test]
fn the_pinned_bytes_decode_back_to_the_fixtures() {
    fn check<T: AvroEvent + PartialEq + Debug>(
        pinned: &BTreeMap<String, Vec<u8>>,
        fixtures: Vec<(&'static str, T)>,
    ) {
        for (name, event) in fixtures {
            let bytes = pinned
                .get(name)
                .unwrap_or_else(|| panic!("{name} is not pinned"));
            assert_eq!(
                decode_datum::<T>(T::schema(), bytes).unwrap(),
                event,
                "{name}"
            );
            // And through apache_avro's generic reader, so the pinned bytes are valid Avro and
            // not merely what our own decoder accepts.
            let value = super::decode_value(T::schema(), bytes).unwrap();
            assert_eq!(T::from_value(value).unwrap(), event, "{name} (generic)");
        }
    }
    let pinned = pinned();
    check(&pinned, asset_prices());
    check(&pinned, price_alerts());
    check(&pinned, below_average_events());
    check(&pinned, transactions());
    check(&pinned, blacklist_entries());
    check(&pinned, risk_decisions());
    check(&pinned, ledger_entries());
    check(&pinned, daily_balances());
}
