//! Throughput of the two market processors on one core: pure logic, no Kafka.
//!
//! The input is a pre-generated, realistic series: 50 symbols, a quote every 20 ms overall (one
//! per symbol per second), random walks in prices with 8 decimal places (as the Avro decoder
//! produces them), an occasional jump of several percent, and 2 % of the quotes shifted back in
//! event time within the allowed lateness. Each measured iteration runs a fresh processor over
//! the whole series and flushes into a `MemoryState` every 20 000 quotes, like a checkpoint.
//!
//! Each case runs twice: `market/*` measures wall time (criterion's default) and `market_cpu/*`
//! the bench thread's CPU time, read from `/proc/thread-self/schedstat`, so that a machine
//! shared with other jobs still gives a meaningful per-core figure (the CPU group reports
//! nothing useful where that file is missing). Throughput is in quotes (elements) per second.
//!
//! `cargo bench --bench market` (release).

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fluxo_processors::below_average::{self, Average, BelowAverageProcessor};
use fluxo_processors::config::DurationMs;
use fluxo_processors::events::AssetPrice;
use fluxo_processors::price_change::{self, Directions, PriceChangeProcessor};
use fluxo_processors::state::MemoryState;
use fluxo_processors::{Context, Processor, RecordMeta};
use rust_decimal::Decimal;
use std::hint::black_box;
use std::time::Duration;

const QUOTES: usize = 200_000;
const SYMBOLS: usize = 50;
const FLUSH_EVERY: usize = 20_000;

/// xorshift64*: a deterministic generator, enough for test data.
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

fn series() -> Vec<AssetPrice> {
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let symbols: Vec<String> = (0..SYMBOLS).map(|i| format!("SYM{i:02}3")).collect();
    // Prices in units of 10^-8, starting between 10 and 110.
    let mut prices: Vec<i64> = (0..SYMBOLS)
        .map(|_| (10 + rng.below(100) as i64) * 100_000_000)
        .collect();
    let t0: i64 = 1_700_000_000_000;
    (0..QUOTES)
        .map(|i| {
            let s = rng.below(SYMBOLS as u64) as usize;
            let p = prices[s];
            // ±0.2 % per quote, and a jump of up to ±15 % once in 2 000 quotes.
            let mut step = (rng.below(4_001) as i64 - 2_000) * (p / 1_000_000);
            if rng.below(2_000) == 0 {
                step = (rng.below(30_001) as i64 - 15_000) * (p / 100_000);
            }
            prices[s] = (p + step).max(1_000_000);
            let mut time = t0 + i as i64 * 20;
            if rng.below(50) == 0 {
                time -= rng.below(20_000) as i64;
            }
            AssetPrice {
                event_id: format!("b3-{i:08}"),
                symbol: symbols[s].clone(),
                price: Decimal::new(prices[s], 8),
                currency: "BRL".to_string(),
                source: "b3".to_string(),
                event_time: time,
            }
        })
        .collect()
}

/// Process the whole series with checkpoints; returns the number of outputs.
fn drive<P: Processor<Input = AssetPrice>>(mut p: P, inputs: Vec<AssetPrice>) -> usize {
    let mut store = MemoryState::new();
    let mut out = Vec::new();
    let mut emitted = 0;
    for (i, quote) in inputs.into_iter().enumerate() {
        let meta = RecordMeta {
            topic: "asset-prices",
            partition: 0,
            offset: i as i64,
            timestamp: None,
            processing_time: 0,
        };
        let mut ctx = Context::new(meta, &store, &mut out);
        let _ = black_box(p.process(&mut ctx, quote));
        emitted += out.len();
        out.clear();
        if (i + 1) % FLUSH_EVERY == 0 {
            p.flush(&mut store);
        }
    }
    p.flush(&mut store);
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
    bench(c, "market");
}

fn bench_cpu(c: &mut Criterion<CpuTime>) {
    bench(c, "market_cpu");
}

fn bench<M: Measurement>(c: &mut Criterion<M>, group_name: &str) {
    let inputs = series();
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(QUOTES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));

    let price_configs = [
        ("price_change/rise", price_change::Config::default()),
        (
            "price_change/both",
            price_change::Config {
                direction: Directions::Both,
                ..Default::default()
            },
        ),
        (
            "price_change/both_threshold_1pct",
            price_change::Config {
                direction: Directions::Both,
                threshold_pct: fluxo_processors::config::ConfigDecimal(Decimal::ONE),
                ..Default::default()
            },
        ),
    ];
    for (name, config) in price_configs {
        let alerts = drive(PriceChangeProcessor::new(config.clone()), inputs.clone());
        eprintln!("{name}: {alerts} alerts over {QUOTES} quotes");
        group.bench_function(name, |b| {
            b.iter_batched(
                || (PriceChangeProcessor::new(config.clone()), inputs.clone()),
                |(p, inputs)| drive(p, inputs),
                BatchSize::PerIteration,
            )
        });
    }

    let average_configs = [
        ("below_average/sma_24h", below_average::Config::default()),
        (
            "below_average/sma_5m",
            below_average::Config {
                window: DurationMs(300_000),
                ..Default::default()
            },
        ),
        (
            "below_average/ewma_1h",
            below_average::Config {
                average: Average::Ewma,
                ..Default::default()
            },
        ),
    ];
    for (name, config) in average_configs {
        let events = drive(BelowAverageProcessor::new(config.clone()), inputs.clone());
        eprintln!("{name}: {events} events over {QUOTES} quotes");
        group.bench_function(name, |b| {
            b.iter_batched(
                || (BelowAverageProcessor::new(config.clone()), inputs.clone()),
                |(p, inputs)| drive(p, inputs),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(wall, bench_wall);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench_cpu
}
criterion_main!(wall, cpu);
