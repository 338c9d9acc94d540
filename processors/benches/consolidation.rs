//! Throughput of the daily-consolidation processor: 1M pre-generated ledger entries over 10k
//! accounts (5% duplicates, 2% late by 1-3 days, 30 days of event time), with no state store and
//! with a flush into a [`MemoryState`] every 20 000 entries (topology.toml's
//! `checkpoint_max_records`).
//!
//! Each case runs twice: `consolidation/*` measures wall time (criterion's default) and
//! `consolidation_cpu/*` measures the bench thread's CPU time, read from
//! `/proc/thread-self/schedstat`, so that a machine shared with other jobs still gives a
//! meaningful figure (the CPU group reports nothing useful where that file is missing).
//!
//! `cargo bench --bench consolidation`

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fluxo_processors::consolidation::{Config, ConsolidationProcessor};
use fluxo_processors::events::LedgerEntry;
use fluxo_processors::state::{MemoryState, NoState};
use fluxo_processors::{Context, Processor, RecordMeta, StateReader, StateWriter};
use rust_decimal::Decimal;
use std::hint::black_box;

const ENTRIES: usize = 1_000_000;
const ACCOUNTS: u64 = 10_000;
const FLUSH_EVERY: usize = 20_000;
/// 2024-03-01T03:00:00Z, local midnight in São Paulo.
const START: i64 = 1_709_262_000_000;
const DAY: i64 = 86_400_000;

/// A small deterministic generator (xorshift64*), so every run measures the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn generate() -> Vec<LedgerEntry> {
    let mut rng = Rng(0x5eed_1ed6_e4c0_ffee);
    let mut out: Vec<LedgerEntry> = Vec::with_capacity(ENTRIES);
    let span = 30 * DAY;
    for i in 0..ENTRIES {
        // 5% duplicates of a recent entry (a producer retry or a replay).
        if i > 0 && rng.below(100) < 5 {
            let back = 1 + rng.below((i as u64).min(50_000)) as usize;
            out.push(out[i - back].clone());
            continue;
        }
        let n = i as u64 + 1;
        let mut at = START + span * i as i64 / ENTRIES as i64 + rng.below(60_000) as i64;
        if rng.below(100) < 2 {
            at -= (1 + rng.below(3) as i64) * DAY;
        }
        out.push(LedgerEntry {
            entry_id: Some(format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                n as u32,
                (n >> 32) as u16,
                rng.below(0x1000),
                rng.below(0x1000),
                rng.next() & 0xffff_ffff_ffff
            )),
            account_id: format!("acc-{:05}", rng.below(ACCOUNTS)),
            kind: if rng.below(2) == 0 { "DEBIT" } else { "CREDIT" }.to_string(),
            amount: Decimal::new(1 + rng.below(1_000_000) as i64, 2),
            currency: "BRL".to_string(),
            occurred_at: at,
            description: String::new(),
        });
    }
    out
}

/// Process every entry; flush into `store` every `flush_every` entries when there is one.
fn run(entries: Vec<LedgerEntry>, mut store: Option<&mut MemoryState>, flush_every: usize) -> u64 {
    let mut p = ConsolidationProcessor::new(Config::default());
    let mut out = Vec::with_capacity(1);
    let mut emitted = 0_u64;
    for (i, e) in entries.into_iter().enumerate() {
        let meta = RecordMeta {
            topic: "ledger-entries",
            partition: 0,
            offset: i as i64,
            timestamp: None,
            processing_time: START + i as i64,
        };
        let reader: &dyn StateReader = match &store {
            Some(s) => &**s,
            None => &NoState,
        };
        let mut ctx = Context::new(meta, reader, &mut out);
        let _ = black_box(p.process(&mut ctx, e));
        emitted += out.len() as u64;
        out.clear();
        if (i + 1) % flush_every == 0 {
            if let Some(s) = store.as_deref_mut() {
                p.flush(s as &mut dyn StateWriter);
            }
        }
    }
    if let Some(s) = store {
        p.flush(s);
    }
    assert!(p.duplicates_skipped() > 40_000);
    emitted
}

/// CPU time of the current thread in nanoseconds, from `/proc/thread-self/schedstat` (0 where
/// unavailable).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A criterion measurement of the bench thread's CPU time (formatted like wall time).
struct CpuTime;

static WALL: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

fn bench_wall(c: &mut Criterion) {
    bench(c, "consolidation");
}

fn bench_cpu(c: &mut Criterion<CpuTime>) {
    bench(c, "consolidation_cpu");
}

fn bench<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let entries = generate();
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.throughput(Throughput::Elements(ENTRIES as u64));
    group.bench_function("1M_entries_10k_accounts_no_store", |b| {
        b.iter_batched(
            || entries.clone(),
            |e| run(e, None, usize::MAX),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("1M_entries_10k_accounts_memory_state_flush_20k", |b| {
        b.iter_batched(
            || (entries.clone(), MemoryState::new()),
            |(e, mut s)| (run(e, Some(&mut s), FLUSH_EVERY), s),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(wall, bench_wall);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench_cpu
}
criterion_main!(wall, cpu);
