//! Realistic data for `fluxo produce --simulate` and the load tests.
//!
//! - `prices`: B3 tickers and crypto pairs on a random walk that now and then jumps more than
//!   10% (up or down) within minutes.
//! - `transactions`: Pix/TED/card/boleto payments between valid CPFs and CNPJs (check digits
//!   computed), BRL amounts; a few carry an invalid document.
//! - `ledger`: debits and credits on a pool of accounts, with some duplicate entry ids (a
//!   re-sent entry) and some late entries (days old).
//! - `blacklist`: listings and unlistings of documents from the same pool the transactions
//!   use, so blacklisted payers really show up.
//!
//! Everything is drawn from a seeded generator: the same seed gives the same records (but for
//! the event times, which follow the wall clock passed in).

use crate::avro::typed::AvroEvent;
use apache_avro::types::Value;
use fluxo_processors::events::{
    AssetPrice, BlacklistEntry, LedgerEntry, Transaction, TransactionKind,
};
use fluxo_processors::risk::documents;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use std::collections::VecDeque;

/// What to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimKind {
    /// Asset quotes for `asset-prices`.
    Prices,
    /// Payments for `transactions`.
    Transactions,
    /// Debits and credits for `ledger-entries`.
    Ledger,
    /// Blacklist updates for `document-blacklist`.
    Blacklist,
}

impl SimKind {
    /// The topic the simulated records belong on.
    pub fn default_topic(self) -> &'static str {
        match self {
            Self::Prices => "asset-prices",
            Self::Transactions => "transactions",
            Self::Ledger => "ledger-entries",
            Self::Blacklist => "document-blacklist",
        }
    }

    /// The schema of the simulated records.
    pub fn schema_name(self) -> &'static str {
        match self {
            Self::Prices => "AssetPrice",
            Self::Transactions => "Transaction",
            Self::Ledger => "LedgerEntry",
            Self::Blacklist => "BlacklistEntry",
        }
    }
}

/// Milliseconds since the epoch, from the wall clock (simulated event times).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seed of the document pool shared by the transaction and blacklist simulators.
const POOL_SEED: u64 = 0x5EED_D0C5;
/// Documents in the shared pool.
const POOL_SIZE: usize = 2_000;
/// Accounts the ledger simulator draws from by default.
const ACCOUNTS: u32 = 1_000;
/// Starting price of the synthetic symbols beyond the listed assets (`--keys` above 13).
const SYNTHETIC_PRICE: &str = "25.00";

/// Quoted assets and their starting prices.
const ASSETS: &[(&str, &str, &str)] = &[
    ("PETR4", "38.50", "b3"),
    ("VALE3", "62.10", "b3"),
    ("ITUB4", "33.20", "b3"),
    ("BBDC4", "14.80", "b3"),
    ("ABEV3", "12.90", "b3"),
    ("WEGE3", "40.00", "b3"),
    ("MGLU3", "9.50", "b3"),
    ("BBAS3", "27.00", "b3"),
    ("B3SA3", "11.50", "b3"),
    ("RENT3", "45.00", "b3"),
    ("BTC-BRL", "350000.00", "binance"),
    ("ETH-BRL", "18000.00", "binance"),
    ("SOL-BRL", "800.00", "binance"),
];

/// A generator of one kind of record.
pub struct Simulator {
    kind: SimKind,
    rng: StdRng,
    symbols: Vec<(String, &'static str)>,
    prices: Vec<Decimal>,
    documents: Vec<String>,
    accounts: u32,
    recent_entries: VecDeque<LedgerEntry>,
    seq: u64,
}

/// The shared pool of valid CPFs (80%) and CNPJs (20%), punctuated now and then.
pub fn document_pool() -> Vec<String> {
    document_pool_of(POOL_SIZE)
}

/// A pool of `size` documents drawn like [`document_pool`] (whose first `size` documents it
/// shares, so a transactions and a blacklist simulator with the same size meet). Drawn at
/// random, so a large pool holds a few duplicates: up to `size` distinct documents.
pub fn document_pool_of(size: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(POOL_SEED);
    (0..size)
        .map(|i| {
            let digits = if i % 5 == 4 {
                documents::generate_cnpj(rng.random_range(0..100_000_000), 1)
            } else {
                documents::generate_cpf(rng.random_range(0..1_000_000_000))
            };
            // A third of the documents are written with punctuation, as people type them.
            if i % 3 == 0 {
                documents::punctuate(&digits).unwrap_or(digits)
            } else {
                digits
            }
        })
        .collect()
}

fn uuid_from(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

impl Simulator {
    /// A simulator of `kind` drawing from `seed`, over the default keys: the 13 listed
    /// assets, 1,000 accounts, 2,000 documents.
    pub fn new(kind: SimKind, seed: u64) -> Self {
        Self::with_keys(kind, seed, None)
    }

    /// A simulator of `kind` drawing from `seed` over `keys` distinct keys (at least 1): the
    /// symbols of `prices` (the listed assets first, then synthetic `SIM0000013`... starting
    /// at R$ 25.00), the accounts of `ledger`, the documents of `transactions` and `blacklist`.
    /// `None` keeps the defaults of [`Simulator::new`], record for record: the scaling
    /// benchmark grows the state with it without changing the default data.
    pub fn with_keys(kind: SimKind, seed: u64, keys: Option<usize>) -> Self {
        let keys = keys.map(|k| k.max(1));
        let symbols = symbols(keys.unwrap_or(ASSETS.len()));
        let prices = symbols.iter().map(|(s, _)| starting_price(s)).collect();
        let documents = match kind {
            SimKind::Transactions | SimKind::Blacklist => {
                document_pool_of(keys.unwrap_or(POOL_SIZE))
            }
            _ => Vec::new(),
        };
        Self {
            kind,
            rng: StdRng::seed_from_u64(seed),
            symbols,
            prices,
            documents,
            accounts: keys.map_or(ACCOUNTS, |k| u32::try_from(k).unwrap_or(u32::MAX)),
            recent_entries: VecDeque::with_capacity(1024),
            seq: 0,
        }
    }

    /// The next record as `(key, Avro value)`, with event times around `now`.
    pub fn next_record(&mut self, now: i64) -> (String, Value) {
        self.seq += 1;
        match self.kind {
            SimKind::Prices => {
                let p = self.next_price(now);
                (p.symbol.clone(), to_value(&p))
            }
            SimKind::Transactions => {
                let t = self.next_transaction(now);
                (t.payer_document.clone(), to_value(&t))
            }
            SimKind::Ledger => {
                let e = self.next_entry(now);
                (e.account_id.clone(), to_value(&e))
            }
            SimKind::Blacklist => {
                let b = self.next_blacklist(now);
                (documents::normalize(&b.document), to_value(&b))
            }
        }
    }

    /// The next quote.
    pub fn next_price(&mut self, now: i64) -> AssetPrice {
        let i = self.rng.random_range(0..self.symbols.len());
        let (symbol, source) = &self.symbols[i];
        // A small random step most of the time; a jump of 11-20% now and then.
        let step: f64 = if self.rng.random_bool(0.003) {
            let jump = self.rng.random_range(0.11..0.20);
            if self.rng.random_bool(0.5) {
                jump
            } else {
                -jump
            }
        } else {
            self.rng.random_range(-0.004..0.004)
        };
        let factor = Decimal::from_f64_retain(1.0 + step).unwrap_or(Decimal::ONE);
        let next = (self.prices[i] * factor)
            .round_dp(2)
            .max(Decimal::new(1, 2));
        self.prices[i] = next;
        AssetPrice {
            event_id: uuid_from(&mut self.rng),
            symbol: symbol.clone(),
            price: next,
            currency: "BRL".into(),
            source: (*source).into(),
            event_time: now,
        }
    }

    fn pick_document(&mut self) -> String {
        let i = self.rng.random_range(0..self.documents.len());
        self.documents[i].clone()
    }

    /// The next payment.
    pub fn next_transaction(&mut self, now: i64) -> Transaction {
        let kind = match self.rng.random_range(0..100) {
            0..60 => TransactionKind::Pix,
            60..85 => TransactionKind::Card,
            85..95 => TransactionKind::Ted,
            _ => TransactionKind::Boleto,
        };
        let mut payer = self.pick_document();
        let payee = self.pick_document();
        if self.rng.random_bool(0.005) {
            // A mistyped document: the last check digit is off by one.
            let last = payer.pop().and_then(|c| c.to_digit(10)).unwrap_or(0);
            payer.push(char::from_digit((last + 1) % 10, 10).unwrap_or('0'));
        }
        // Log-uniform amounts between R$ 1 and R$ 50,000.
        let cents = (100.0 * 10f64.powf(self.rng.random_range(0.0..4.7))) as i64;
        let channel = ["app", "web", "pos", "api"][self.rng.random_range(0..4)];
        Transaction {
            transaction_id: uuid_from(&mut self.rng),
            kind,
            payer_document: payer,
            payer_name: format!("Cliente {:05}", self.rng.random_range(0..100_000)),
            payee_document: payee,
            amount: Decimal::new(cents, 2),
            channel: channel.into(),
            event_time: now,
        }
    }

    /// The next ledger entry (2% are re-sent duplicates, 3% are late by 1-3 days).
    pub fn next_entry(&mut self, now: i64) -> LedgerEntry {
        if !self.recent_entries.is_empty() && self.rng.random_bool(0.02) {
            let i = self.rng.random_range(0..self.recent_entries.len());
            return self.recent_entries[i].clone();
        }
        let late = self.rng.random_bool(0.03);
        let occurred_at = if late {
            now - self.rng.random_range(1..=3) * 86_400_000 - self.rng.random_range(0..3_600_000)
        } else {
            now - self.rng.random_range(0..10_000)
        };
        let entry = LedgerEntry {
            entry_id: Some(uuid_from(&mut self.rng)),
            // u32, as the i32 of the fixed pool before: the same draws for the same seed.
            account_id: format!("ACC-{:06}", self.rng.random_range(0..self.accounts)),
            kind: if self.rng.random_bool(0.5) {
                "CREDIT".into()
            } else {
                "DEBIT".into()
            },
            amount: Decimal::new(self.rng.random_range(100..500_000), 2),
            currency: "BRL".into(),
            occurred_at,
            description: [
                "pix recebido",
                "boleto pago",
                "tarifa",
                "transferencia",
                "compra cartao",
            ][self.rng.random_range(0..5)]
            .into(),
        };
        if self.recent_entries.len() == 1024 {
            self.recent_entries.pop_front();
        }
        self.recent_entries.push_back(entry.clone());
        entry
    }

    /// The next blacklist update (80% listings).
    pub fn next_blacklist(&mut self, now: i64) -> BlacklistEntry {
        let listed = self.rng.random_bool(0.8);
        BlacklistEntry {
            document: self.pick_document(),
            listed,
            reason: ["fraud", "court order", "coaf report", "chargebacks"]
                [self.rng.random_range(0..4)]
            .into(),
            source: ["coaf", "internal", "partner"][self.rng.random_range(0..3)].into(),
            since: now,
        }
    }
}

/// The first `n` symbols: the listed assets, then synthetic ones quoted on B3.
fn symbols(n: usize) -> Vec<(String, &'static str)> {
    (0..n)
        .map(|i| match ASSETS.get(i) {
            Some((symbol, _, source)) => ((*symbol).to_string(), *source),
            None => (format!("SIM{i:07}"), "b3"),
        })
        .collect()
}

/// A symbol's starting price: its listed price, or [`SYNTHETIC_PRICE`].
fn starting_price(symbol: &str) -> Decimal {
    let listed = ASSETS.iter().find(|(s, _, _)| *s == symbol);
    listed
        .map_or(SYNTHETIC_PRICE, |(_, p, _)| *p)
        .parse()
        .unwrap_or(Decimal::ONE)
}

fn to_value<T: AvroEvent>(event: &T) -> Value {
    // Simulated events are built to fit their schemas; a failure here is a bug in this module,
    // which the tests below catch for every kind.
    event
        .to_value()
        .unwrap_or_else(|e| panic!("simulated {} does not fit its schema: {e}", T::SCHEMA_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_simulated_record_fits_its_schema() {
        for kind in [
            SimKind::Prices,
            SimKind::Transactions,
            SimKind::Ledger,
            SimKind::Blacklist,
        ] {
            let schema = crate::avro::schemas::schema_for(kind.schema_name()).unwrap();
            let mut sim = Simulator::new(kind, 7);
            for _ in 0..2_000 {
                let (key, value) = sim.next_record(1_700_000_000_000);
                assert!(!key.is_empty());
                assert!(value.validate(schema), "{kind:?}: {value:?}");
            }
        }
    }

    #[test]
    fn pool_documents_are_valid() {
        let pool = document_pool();
        assert_eq!(pool.len(), POOL_SIZE);
        assert!(pool.iter().all(|d| documents::validate(d).is_ok()));
    }

    #[test]
    fn same_seed_same_records() {
        let mut a = Simulator::new(SimKind::Ledger, 3);
        let mut b = Simulator::new(SimKind::Ledger, 3);
        for _ in 0..100 {
            assert_eq!(a.next_entry(0), b.next_entry(0));
        }
    }

    #[test]
    fn ledger_has_duplicates_and_late_entries() {
        let mut sim = Simulator::new(SimKind::Ledger, 11);
        let now = 1_700_000_000_000;
        let entries: Vec<_> = (0..5_000).map(|_| sim.next_entry(now)).collect();
        let ids: std::collections::HashSet<_> =
            entries.iter().map(|e| e.entry_id.clone()).collect();
        assert!(ids.len() < entries.len(), "no duplicates");
        assert!(
            entries.iter().any(|e| e.occurred_at < now - 86_400_000),
            "no late entries"
        );
    }

    #[test]
    fn default_keys_are_the_fixed_pools() {
        // `None` and the old fixed sizes draw the same records for the same seed.
        for (kind, keys) in [
            (SimKind::Prices, ASSETS.len()),
            (SimKind::Ledger, ACCOUNTS as usize),
            (SimKind::Transactions, POOL_SIZE),
        ] {
            let mut a = Simulator::new(kind, 9);
            let mut b = Simulator::with_keys(kind, 9, Some(keys));
            for _ in 0..500 {
                assert_eq!(a.next_record(0), b.next_record(0), "{kind:?}");
            }
        }
        let mut sim = Simulator::new(SimKind::Ledger, 9);
        let accounts: std::collections::HashSet<_> =
            (0..20_000).map(|_| sim.next_entry(0).account_id).collect();
        assert_eq!(accounts.len(), 1_000);
    }

    #[test]
    fn keys_sets_the_distinct_accounts_symbols_and_documents() {
        let distinct = |kind, keys, n| {
            let mut sim = Simulator::with_keys(kind, 4, Some(keys));
            (0..n)
                .map(|_| sim.next_record(0).0)
                .collect::<std::collections::HashSet<_>>()
        };
        let accounts = distinct(SimKind::Ledger, 50_000, 200_000);
        assert!(accounts.len() > 45_000 && accounts.len() <= 50_000);
        assert!(accounts.iter().all(|a| a.as_str() < "ACC-050000"));
        let symbols = distinct(SimKind::Prices, 100, 20_000);
        assert_eq!(symbols.len(), 100);
        assert!(symbols.contains("PETR4") && symbols.contains("SIM0000099"));
        assert_eq!(distinct(SimKind::Prices, 3, 1_000).len(), 3);
        // Payers are keys; the mistyped ones (an invalid check digit) are not from the pool.
        let payers = distinct(SimKind::Transactions, 10, 1_000);
        assert!(
            payers
                .iter()
                .filter(|d| documents::validate(d).is_ok())
                .count()
                <= 10
        );
        let pool = document_pool_of(5_000);
        assert_eq!(pool[..POOL_SIZE], document_pool()[..]);
        assert!(pool.iter().all(|d| documents::validate(d).is_ok()));
    }

    #[test]
    fn prices_jump_now_and_then() {
        let mut sim = Simulator::new(SimKind::Prices, 5);
        let mut last: std::collections::HashMap<String, Decimal> = Default::default();
        let mut jumps = 0;
        for _ in 0..20_000 {
            let p = sim.next_price(0);
            if let Some(prev) = last.insert(p.symbol.clone(), p.price) {
                if ((p.price - prev) / prev).abs() > Decimal::new(10, 2) {
                    jumps += 1;
                }
            }
        }
        assert!(jumps > 5, "only {jumps} jumps");
    }
}
