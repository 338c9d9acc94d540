//! Throughput of the risk-scoring processor: transactions per second through `process` (plus a
//! `flush` per batch of 1 000, as the runtime does per checkpoint) with a warm blacklist of
//! 100 000 documents and 10 000 payers with history.
//!
//! Run: `cargo bench --bench risk`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fluxo_processors::events::{BlacklistEntry, Transaction, TransactionKind};
use fluxo_processors::risk::documents::{generate_cnpj, generate_cpf, mask, punctuate, validate};
use fluxo_processors::risk::resilience::UnavailableCause;
use fluxo_processors::risk::{
    Config, ExternalValidation, ExternalVerdict, RiskInput, RiskProcessor,
};
use fluxo_processors::state::MemoryState;
use fluxo_processors::{Context, Millis, Processor, RecordMeta, StateWriter};
use rust_decimal::Decimal;
use std::hint::black_box;

const BLACKLIST: u64 = 100_000;
const PAYERS: u64 = 10_000;
const PAYEES: u64 = 20_000;
/// Payees that are also blacklisted (1%).
const LISTED_PAYEES: u64 = 200;
const BATCH: u64 = 1_000;
/// 20 ms between transactions: 3 000 a minute.
const STEP_MS: Millis = 20;

/// Discards writes: the bench measures the processor (including encoding), not a store.
struct NullWriter;

impl StateWriter for NullWriter {
    fn put(&mut self, _table: &str, key: &[u8], value: &[u8]) {
        black_box((key, value));
    }
    fn delete(&mut self, _table: &str, key: &[u8]) {
        black_box(key);
    }
}

fn blacklisted(i: u64) -> String {
    if i.is_multiple_of(5) {
        generate_cnpj(50_000_000 + i, 1)
    } else {
        generate_cpf(300_000_000 + i)
    }
}

struct Workload {
    payers: Vec<String>,
    payees: Vec<String>,
    i: u64,
    t: Millis,
    rng: u64,
}

impl Workload {
    fn new() -> Self {
        let payers = (0..PAYERS)
            .map(|i| {
                let d = generate_cpf(100_000_000 + i * 7);
                // Half the payers arrive punctuated.
                if i % 2 == 0 {
                    punctuate(&d).unwrap_or(d)
                } else {
                    d
                }
            })
            .collect();
        let payees = (0..PAYEES)
            .map(|i| {
                if i < LISTED_PAYEES {
                    blacklisted(i * 97)
                } else {
                    generate_cnpj(60_000_000 + i, 1)
                }
            })
            .collect();
        Self {
            payers,
            payees,
            i: 0,
            t: 1_717_426_800_000, // 2024-06-03 15:00 UTC
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn next(&mut self) -> (RiskInput, Millis) {
        let r = self.next_u64();
        self.i += 1;
        self.t += STEP_MS;
        let payer = &self.payers[(r % PAYERS) as usize];
        // Each payer mostly pays a few regular payees, sometimes a random one.
        let payee_idx = if r.is_multiple_of(10) {
            (r >> 20) % PAYEES
        } else {
            ((r % PAYERS) * 2 + (r >> 40) % 2) % PAYEES
        };
        let cents = if r.is_multiple_of(50) {
            1_000_000 + (r >> 24) % 2_000_000
        } else {
            1_000 + (r >> 24) % 200_000
        };
        let validation = ExternalValidation {
            payer: if r.is_multiple_of(100) {
                ExternalVerdict::Unavailable(UnavailableCause::Timeout)
            } else {
                ExternalVerdict::Clean
            },
            payee: ExternalVerdict::Clean,
        };
        let tx = Transaction {
            transaction_id: format!("tx-{}", self.i),
            kind: TransactionKind::Pix,
            payer_document: payer.clone(),
            payer_name: "Maria Silva".into(),
            payee_document: self.payees[payee_idx as usize].clone(),
            amount: Decimal::new(cents as i64, 2),
            channel: "app".into(),
            event_time: self.t,
        };
        (RiskInput::Transaction { tx, validation }, self.t + 50)
    }
}

fn run(p: &mut RiskProcessor, state: &MemoryState, input: RiskInput, processing_time: Millis) {
    let mut out = Vec::with_capacity(1);
    let meta = RecordMeta {
        topic: "transactions",
        partition: 0,
        offset: 0,
        timestamp: None,
        processing_time,
    };
    let mut ctx = Context::new(meta, state, &mut out);
    // Every generated record is valid (positive amount, non-empty id).
    if p.process(&mut ctx, input).is_err() {
        unreachable!("bench inputs are valid");
    }
    black_box(out);
}

/// A processor with the whole blacklist and every payer's history in memory and in state.
fn warm() -> (RiskProcessor, MemoryState, Workload) {
    let config = Config {
        max_cached_keys: 250_000,
        ..Config::default()
    };
    let mut p = RiskProcessor::new(
        config,
        fluxo_processors::risk::Pseudonymizer::new(b"bench document key").unwrap(),
    );
    let mut state = MemoryState::new();
    for i in 0..BLACKLIST {
        let doc = blacklisted(i);
        let input = RiskInput::Blacklist {
            key: doc.clone(),
            entry: Some(BlacklistEntry {
                document: doc,
                listed: true,
                reason: "fraude".into(),
                source: "coaf".into(),
                since: 0,
            }),
        };
        run(&mut p, &state, input, 0);
    }
    p.flush(&mut state);
    let mut w = Workload::new();
    // ~6 transactions per payer of history.
    for _ in 0..PAYERS * 6 {
        let (input, pt) = w.next();
        run(&mut p, &state, input, pt);
    }
    p.flush(&mut state);
    (p, state, w)
}

fn bench_process(c: &mut Criterion) {
    let (mut p, state, mut w) = warm();
    let mut group = c.benchmark_group("risk");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("process_1000_tx_warm_100k_blacklist_10k_payers", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let (input, pt) = w.next();
                run(&mut p, &state, input, pt);
            }
            p.flush(&mut NullWriter);
        })
    });
    group.finish();
    eprintln!(
        "cached blacklist keys {}, cached payers {}",
        p.cached_blacklist_keys(),
        p.cached_payers()
    );
}

fn bench_documents(c: &mut Criterion) {
    let mut group = c.benchmark_group("documents");
    group.throughput(Throughput::Elements(1));
    group.bench_function("validate_punctuated_cpf", |b| {
        b.iter(|| validate(black_box("529.982.247-25")))
    });
    group.bench_function("mask_cnpj", |b| {
        b.iter(|| mask(black_box("11.222.333/0001-81")))
    });
    group.finish();
}

criterion_group!(benches, bench_process, bench_documents);
criterion_main!(benches);
