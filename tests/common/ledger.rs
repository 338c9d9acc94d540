//! Daily-consolidation helpers shared by the tests that check exact balances: the sums one
//! clean pass over a list of entries must give, computed independently of fluxo, and the rows a
//! stopped runtime holds in its `daily_balances` view.

use super::Env;
use chrono::TimeZone;
use fluxo::avro::framing::frame;
use fluxo::avro::typed::encode_datum;
use fluxo::simulate::{SimKind, Simulator};
use fluxo_processors::events::{DailyBalance, LedgerEntry};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashSet};

/// Expected totals per (account, business date): (credits, debits, count).
pub type Expected = BTreeMap<(String, i32), (Decimal, Decimal, i64)>;

/// The business date (days since 1970-01-01) of an instant in America/Sao_Paulo.
pub fn business_date(millis: i64) -> i32 {
    let tz: chrono_tz::Tz = "America/Sao_Paulo".parse().unwrap();
    let local = tz.timestamp_millis_opt(millis).unwrap().date_naive();
    (local - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

/// What one clean pass must give: each valid entry id counted once.
pub fn expected(entries: &[LedgerEntry]) -> Expected {
    let mut seen = HashSet::new();
    let mut out = Expected::new();
    for e in entries {
        let Some(id) = &e.entry_id else { continue };
        let valid = e.amount > Decimal::ZERO
            && (e.kind == "DEBIT" || e.kind == "CREDIT")
            && e.currency == "BRL";
        if !valid || !seen.insert(id.clone()) {
            continue;
        }
        let row = out
            .entry((e.account_id.clone(), business_date(e.occurred_at)))
            .or_insert((Decimal::ZERO, Decimal::ZERO, 0));
        if e.kind == "CREDIT" {
            row.0 += e.amount;
        } else {
            row.1 += e.amount;
        }
        row.2 += 1;
    }
    out
}

/// Every row of the `daily_balances` view of a stopped runtime, for the accounts of `want`
/// (a ScyllaDB read names one partition, i.e. one account; on the embedded store the whole view
/// is read, so rows of other accounts show too).
pub fn stored_balances(env: &Env, want: &Expected) -> Expected {
    let store = env.store();
    let rows = match env.parsed_topology().state.backend {
        fluxo::config::Backend::Embedded => store
            .scan(
                fluxo_processors::views::DAILY_BALANCES,
                b"",
                b"",
                None,
                usize::MAX,
            )
            .unwrap(),
        fluxo::config::Backend::Scylla => {
            let accounts: std::collections::BTreeSet<&String> =
                want.keys().map(|(a, _)| a).collect();
            accounts
                .into_iter()
                .flat_map(|a| {
                    let prefix = fluxo_processors::views::partition_prefix(a);
                    store
                        .scan(
                            fluxo_processors::views::DAILY_BALANCES,
                            &prefix,
                            b"",
                            None,
                            usize::MAX,
                        )
                        .unwrap()
                })
                .collect()
        }
    };
    rows.into_iter()
        .map(|(_, v)| {
            let b: DailyBalance = serde_json::from_slice(&v).unwrap();
            assert_eq!(b.net, b.total_credits - b.total_debits);
            (
                (b.account_id, b.business_date),
                (b.total_credits, b.total_debits, b.entry_count),
            )
        })
        .collect()
}

/// `e` Avro-encoded and framed with schema id `id`.
pub fn framed(id: u32, e: &LedgerEntry) -> Vec<u8> {
    frame(id, &encode_datum(e).unwrap())
}

/// `n` simulated ledger entries (duplicates, late and invalid ones included), one second of
/// event time apart from 2026-01-01T00:00:00Z, from the simulator seeded with `seed`.
pub fn simulated_entries(seed: u64, n: usize) -> Vec<LedgerEntry> {
    let mut sim = Simulator::new(SimKind::Ledger, seed);
    let base = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    (0..n as i64)
        .map(|i| sim.next_entry(base + i * 1_000))
        .collect()
}
