//! Below average: edge-triggered events when a price crosses below its historical average.
//!
//! # Parameters (`[processors.below-average.params]` in topology.toml)
//! | key                 | default  | meaning                                                   |
//! |---------------------|----------|-----------------------------------------------------------|
//! | `average`           | `"sma"`  | `"sma"` (event-time window) or `"ewma"` (half-life)       |
//! | `window`            | `"24h"`  | SMA window, `> 0`                                         |
//! | `half_life`         | `"1h"`   | EWMA half-life, `> 0`                                     |
//! | `min_samples`       | `30`     | quotes the average needs before it is used, `>= 1`        |
//! | `min_deviation_pct` | `0`      | crossings less than this far below are ignored, `[0,100)` |
//! | `emit_recovered`    | `false`  | also emit a `Recovered` event when it goes back up        |
//! | `allowed_lateness`  | `"30s"`  | how far behind the newest quote a quote may arrive        |
//! | `idle_timeout`      | lateness | wall-clock wait before a quiet symbol's held quotes count |
//! | `max_cached_keys`   | `100000` | symbols kept in memory after a flush (others reload)      |
//!
//! # Semantics
//! Per symbol, in event time. **Ordering and lateness** work exactly as in
//! [`crate::price_change`]: a quote more than `allowed_lateness` behind the symbol's newest
//! accepted event time is rejected with reason `late` (counted in
//! [`BelowAverageProcessor::late_quotes`]); accepted quotes are buffered and released in
//! `(event_time, arrival)` order once the watermark passes them, so out-of-order quotes count as
//! if they had arrived in order, and events lag by up to `allowed_lateness` of event time.
//! A symbol that goes quiet has its held quotes released after `idle_timeout` of wall-clock time
//! in live runs, and at the end of a replay's range, as price change's "quiet symbols" describes;
//! [`HELD_TABLE`] finds them again after a restart.
//!
//! **The average is the history's**: a released quote `q` (time `t`, price `p`) is compared with
//! the average of the quotes released *before* it, and only then added to the average.
//! - `sma`: the arithmetic mean of the earlier quotes with `t - window <= event_time <= t`
//!   (both ends inclusive); `samples` = how many there are. Kept incrementally: a running
//!   decimal sum plus a FIFO of `(time, price)`.
//! - `ewma`: `Σ wᵢ·pᵢ / Σ wᵢ` over *all* earlier quotes with `wᵢ = 0.5^((t - tᵢ) / half_life)`:
//!   a quote's weight halves every half-life (quotes with the same time weigh the same). Kept
//!   incrementally as two decayed sums `Σw·p` and `Σw` (weights relative to the newest quote, so
//!   `Σw >= 1`); the decay factor `0.5^(Δt / half_life)` is the product of one precomputed
//!   factor per non-zero byte of `Δt` in milliseconds (none for `Δt = 0`), each built from
//!   per-bit factors `0.5^(2^k ms / half_life)` computed once with Decimal `exp` to 28
//!   significant digits. **Precision**: the sums (`Σw·p` in units of 10^-8) and the factors are
//!   binary fixed point with 128 fractional bits (~38 digits; each multiplication rounds down
//!   by less than 2^-128), so the only error that matters is the factors' own ~10^-28 relative
//!   error, the same as the reference that computes every weight afresh with Decimal `exp`
//!   (the property tests compare the two). The mean can therefore differ from the exact one by
//!   ~10^-26 relative at most after long runs, which changes the 8-place average only for a
//!   mean that close to a rounding midpoint. (Until 2026-12 the sums were Decimal, rounded to
//!   28 significant digits at every quote: three full-precision Decimal multiplications per
//!   quote made EWMA ~3× slower than SMA.) `samples` = all earlier quotes.
//!
//! The average used is that mean rounded half away from zero to exactly [`PRICE_SCALE`] places
//! — the value published in the event; "below" means `p < average`. Every quote with at least
//! one earlier quote in the average is compared and moves the side as described next; events
//! are only emitted once `samples >= min_samples`. On the hot path "below" is decided without a
//! division: for SMA exactly, in integers (`(2P + 1)·n <= 2S` with `P` and `S` in units of
//! 10^-8); for EWMA the same `(2P + 1)·Σw <= 2·Σw·P`, exact on the fixed-point sums (384-bit
//! products). The average itself is only computed for an event (for EWMA by bisection with
//! that same comparison, so the published average and "below" always agree).
//!
//! **Edge trigger.** Each symbol is `unknown` (start), `above` (armed) or `below`:
//! - `unknown` → `above` when `p >= average` (a crossing needs an observed at-or-above first;
//!   quotes below the average before that emit nothing);
//! - `above` → `below` when `p < average` and `(average - p) / average * 100 >=
//!   min_deviation_pct`: emits one [`CrossingKind::Below`] event. A smaller dip keeps the
//!   symbol armed, so a later deeper quote still triggers. During warm-up (`samples <
//!   min_samples`) such a crossing is not announced and the symbol goes back to `unknown`;
//! - `below` → `above` when `p >= average`: emits [`CrossingKind::Recovered`] if
//!   `emit_recovered` (and `samples >= min_samples`); either way the symbol is armed again.
//!   `below` is only entered with an event, so every `Recovered` follows a `Below`.
//!
//! Further quotes on the same side emit nothing, so a dip followed by more quotes below gives
//! exactly one event. With no earlier quote in the average (first quote, or an SMA window
//! emptied by a gap) nothing is compared and the side is kept.
//!
//! **Output.** [`BelowAverageEvent`] with the quote's price, the rounded average,
//! `deviation_pct = (p - average) / average * 100` rounded half away from zero to exactly
//! [`PERCENT_SCALE`] places, `samples`, the method, the quote's time and id, and `event_id =
//! "<quote_event_id>/below"` or `"/recovered"`. Every event is also written in `flush` to the
//! view [`views::BELOW_AVERAGE_EVENTS`] under [`views::alert_key`]`(symbol, event_time,
//! event_id)`, value = JSON of the event. Prices are validated as in [`crate::price_change`]
//! (reason `invalid_price`).
//!
//! # State
//! - [`SYMBOLS_TABLE`] (`below-average/symbols`), key = symbol: postcard of the reorder buffer,
//!   the side, and the average's running values (SMA: sum and the FIFO's head and tail
//!   positions; EWMA: decayed sums, sample count, last time). The average's variant index is
//!   its format version: EWMA state of version 1 (Decimal sums, before 2026-12) still decodes
//!   and is converted to version 2 (fixed-point sums) on the symbol's next quote.
//! - [`SMA_CHUNKS_TABLE`] (`below-average/sma-chunks`), key = `symbol \0 chunk (u64 BE)`: the SMA
//!   FIFO in chunks of 256 `(time, price)` entries. A day of a busy symbol is hundreds of
//!   thousands of quotes, so the FIFO is never rewritten whole: a flush writes only chunks that
//!   changed (in practice the tail chunk) and deletes chunks that left the window; in memory a
//!   symbol keeps only its head and tail chunks plus chunks not yet flushed, and loads older
//!   chunks lazily as the window's start reaches them.
//!
//! Undecodable or missing state restarts the symbol's average from nothing (counted in
//! [`BelowAverageProcessor::state_errors`]). Switching `average` between runs starts the average
//! afresh (old SMA chunks are deleted); changing `window` applies from the next quote on.

use crate::config::{ConfigDecimal, DurationMs};
use crate::events::{
    AssetPrice, AverageMethod, BelowAverageEvent, CrossingKind, PERCENT_SCALE, PRICE_SCALE,
};
use crate::keyed::{self as shared, Cache, Quote, Reorder};
use crate::{views, Context, Millis, Processor, Rejection, Resume, StateReader, StateWriter, Tick};
use rust_decimal::prelude::MathematicalOps;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{btree_map, BTreeMap};

/// Private state table: key = symbol, value = postcard of the symbol's state.
pub const SYMBOLS_TABLE: &str = "below-average/symbols";

/// Private index of the symbols holding quotes back: key = `<topic>/<partition> \0 symbol`,
/// empty value. Written when a symbol starts or stops holding quotes, read when the runtime
/// resumes a partition ([`Processor::on_resume`]), so a quiet symbol's held quotes are released
/// after a restart too.
pub const HELD_TABLE: &str = "below-average/held";
/// Private table of SMA history chunks: key = `symbol \0 chunk number (u64 big-endian)`.
pub const SMA_CHUNKS_TABLE: &str = "below-average/sma-chunks";

/// Entries per SMA chunk (tiny in unit tests so that chunk boundaries are exercised).
const CHUNK_LEN: u64 = if cfg!(test) { 4 } else { 256 };

/// How the historical average is computed (`average` in topology.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Average {
    /// Simple moving average over `window` of event time.
    #[default]
    Sma,
    /// Exponentially weighted average with `half_life`.
    Ewma,
}

/// Parameters of the below average processor, read from `[processors.<name>.params]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// SMA or EWMA (default SMA).
    pub average: Average,
    /// SMA window of event time (default 24 h).
    pub window: DurationMs,
    /// EWMA half-life (default 1 h).
    pub half_life: DurationMs,
    /// Quotes the average must be based on before it is used (default 30).
    pub min_samples: u64,
    /// Crossings less than this many percent below the average are ignored (default 0).
    pub min_deviation_pct: ConfigDecimal,
    /// Emit a `Recovered` event when the price gets back to at-or-above (default false).
    pub emit_recovered: bool,
    /// How far behind the newest quote of a symbol a quote may be and still count (default 30 s).
    pub allowed_lateness: DurationMs,
    /// Wall-clock time after which a symbol's held-back quotes are evaluated when no later
    /// quote of it arrived (default and upper bound: `allowed_lateness`).
    pub idle_timeout: Option<DurationMs>,
    /// Symbols kept in memory after a flush; beyond it the least recently used are dropped
    /// (default 100 000).
    pub max_cached_keys: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            average: Average::Sma,
            window: DurationMs(24 * 3_600_000),
            half_life: DurationMs(3_600_000),
            min_samples: 30,
            min_deviation_pct: ConfigDecimal(Decimal::ZERO),
            emit_recovered: false,
            allowed_lateness: DurationMs(30_000),
            idle_timeout: None,
            max_cached_keys: 100_000,
        }
    }
}

impl Config {
    /// Check the values; the message names the offending key.
    ///
    /// # Errors
    /// A message naming the first invalid key.
    pub fn validate(&self) -> Result<(), String> {
        if self.window.0 <= 0 {
            return Err(format!("window must be > 0, got {}", self.window));
        }
        if self.half_life.0 <= 0 {
            return Err(format!("half_life must be > 0, got {}", self.half_life));
        }
        if self.min_samples == 0 {
            return Err("min_samples must be >= 1".to_string());
        }
        let d = self.min_deviation_pct.0;
        if d < Decimal::ZERO || d >= Decimal::ONE_HUNDRED {
            return Err(format!("min_deviation_pct must be >= 0 and < 100, got {d}"));
        }
        if d.normalize().scale() > PERCENT_SCALE {
            return Err(format!(
                "min_deviation_pct must have at most {PERCENT_SCALE} decimal places, got {d}"
            ));
        }
        if self.allowed_lateness.0 < 0 {
            return Err(format!(
                "allowed_lateness must be >= 0, got {}",
                self.allowed_lateness
            ));
        }
        if let Some(t) = self.idle_timeout {
            if t.0 < 0 {
                return Err(format!("idle_timeout must be >= 0, got {t}"));
            }
        }
        if self.max_cached_keys == 0 {
            return Err("max_cached_keys must be >= 1".to_string());
        }
        Ok(())
    }
}

/// Where the price last stood relative to the average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
enum Side {
    #[default]
    Unknown,
    Above,
    Below,
}

/// Running SMA values; the FIFO entries `head..tail` live in [`SMA_CHUNKS_TABLE`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Sma {
    #[serde(with = "shared::dec_bytes")]
    sum: Decimal,
    head: u64,
    tail: u64,
}

/// Running EWMA values of format version 1 (before 2026-12): the decayed sums in Decimal,
/// `weighted_sum` in currency units. Only decoded (and converted to [`Ewma`]), never written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct EwmaV1 {
    #[serde(with = "shared::dec_bytes")]
    weighted_sum: Decimal,
    #[serde(with = "shared::dec_bytes")]
    weight: Decimal,
    samples: u64,
    last_time: Millis,
}

/// Running EWMA values (format version 2): `Σ wᵢ·Pᵢ` with `Pᵢ` the price in units of
/// 10^-8, `Σ wᵢ` (weights relative to `last_time`, so `Σ wᵢ >= 1`), count, last time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Ewma {
    weighted_sum: Fixed,
    weight: Fixed,
    samples: u64,
    last_time: Millis,
}

impl Ewma {
    /// The version 1 state with the same values (to 2^-128 below each Decimal sum).
    fn from_v1(old: &EwmaV1) -> Self {
        Self {
            weighted_sum: Fixed::from_decimal(old.weighted_sum, PRICE_SCALE),
            weight: Fixed::from_decimal(old.weight, 0),
            samples: old.samples,
            last_time: old.last_time,
        }
    }
}

/// The average's running values. Postcard stores the variant's index, so variants are only
/// ever appended: the index is the format version of the EWMA state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Avg {
    Sma(Sma),
    /// EWMA format version 1 (Decimal sums): read from old state, converted on the next quote.
    EwmaV1(EwmaV1),
    /// EWMA format version 2 (fixed-point sums).
    Ewma(Ewma),
}

/// A non-negative fixed-point number `int + frac / 2^128`: the EWMA's decayed sums. 128
/// fractional bits (~38 decimal digits) where Decimal keeps 28 significant digits in all, and
/// multiplying by a decay factor takes eight 64-bit multiplications instead of a 192-bit
/// product rescaled by powers of ten.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Fixed {
    int: u128,
    frac: u128,
}

/// The full 256-bit product `a · b` as `(high, low)` 128-bit halves.
fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const LOW: u128 = u64::MAX as u128;
    let (a1, a0) = (a >> 64, a & LOW);
    let (b1, b0) = (b >> 64, b & LOW);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // < 3 · 2^64: no overflow.
    let mid = (p00 >> 64) + (p01 & LOW) + (p10 & LOW);
    let low = (p00 & LOW) | (mid << 64);
    // The product is < 2^256, so the high half cannot overflow.
    let high = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (high, low)
}

/// `floor(num · 2^128 / den)` split as `Fixed`, for `den < 2^126` (table set-up and old
/// state only: a bit at a time).
fn fixed_ratio(num: u128, den: u128) -> Fixed {
    let den = den.max(1);
    let mut rem = num % den;
    let mut frac = 0u128;
    for _ in 0..128 {
        rem <<= 1;
        frac <<= 1;
        if rem >= den {
            rem -= den;
            frac |= 1;
        }
    }
    Fixed {
        int: num / den,
        frac,
    }
}

impl Fixed {
    const ZERO: Fixed = Fixed { int: 0, frac: 0 };

    /// `value · 10^shift` (negative values as zero), rounded down to a multiple of 2^-128.
    fn from_decimal(value: Decimal, shift: u32) -> Self {
        if value.is_sign_negative() {
            return Self::ZERO;
        }
        let mantissa = value.mantissa().unsigned_abs();
        let scale = value.scale();
        if scale <= shift {
            // mantissa < 2^96 and shift <= 8 here: the product fits.
            Fixed {
                int: mantissa.saturating_mul(10u128.pow(shift - scale)),
                frac: 0,
            }
        } else {
            // scale - shift <= 28: 10^28 < 2^94.
            fixed_ratio(mantissa, 10u128.pow(scale - shift))
        }
    }

    /// `self · factor / 2^128` (a decay factor in `[0, 1)`), rounded down.
    fn decayed(self, factor: u128) -> Self {
        let (int, int_low) = mul_wide(self.int, factor);
        let (frac_high, _) = mul_wide(self.frac, factor);
        let (frac, carry) = int_low.overflowing_add(frac_high);
        Fixed {
            int: int + u128::from(carry),
            frac,
        }
    }

    /// `self + n` (saturating: the integer part would need ~10^18 quotes to overflow).
    fn plus(self, n: u128) -> Self {
        Fixed {
            int: self.int.saturating_add(n),
            frac: self.frac,
        }
    }

    /// `self · k` exactly, as a 384-bit number `(high, middle, low)` in units of 2^-128.
    fn times(self, k: u128) -> (u128, u128, u128) {
        let (carry, low) = mul_wide(self.frac, k);
        let (high, middle) = mul_wide(self.int, k);
        let (middle, c) = middle.overflowing_add(carry);
        // self.int · k < 2^256 - 2^129, so the high half has room for the carry.
        (high + u128::from(c), middle, low)
    }
}

/// One SMA FIFO entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    time: Millis,
    #[serde(with = "shared::dec_bytes")]
    price: Decimal,
}

#[derive(Debug, Clone, Default)]
struct Chunk {
    entries: Vec<Entry>,
    dirty: bool,
}

/// In-memory chunk cache of one symbol's SMA FIFO (not persisted itself).
#[derive(Debug, Clone, Default)]
struct Chunks {
    loaded: BTreeMap<u64, Chunk>,
    /// Chunks that left the window since the last flush, to delete.
    dead: Vec<u64>,
}

/// Everything the processor keeps per symbol.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SymbolState {
    reorder: Reorder,
    side: Side,
    avg: Option<Avg>,
    #[serde(skip)]
    chunks: Chunks,
}

impl shared::Held for SymbolState {
    fn reorder(&mut self) -> &mut Reorder {
        &mut self.reorder
    }
}

fn chunk_key(symbol: &str, chunk: u64) -> Vec<u8> {
    let mut key = views::partition_prefix(symbol);
    key.extend_from_slice(&chunk.to_be_bytes());
    key
}

impl Chunks {
    /// Entry `index` of the FIFO, loading its chunk if needed; `None` if the store lacks it.
    fn entry(&mut self, reader: &dyn StateReader, symbol: &str, index: u64) -> Option<Entry> {
        let chunk = self.chunk(reader, symbol, index / CHUNK_LEN)?;
        usize::try_from(index % CHUNK_LEN)
            .ok()
            .and_then(|i| chunk.entries.get(i))
            .copied()
    }

    fn chunk(&mut self, reader: &dyn StateReader, symbol: &str, n: u64) -> Option<&mut Chunk> {
        match self.loaded.entry(n) {
            btree_map::Entry::Occupied(chunk) => Some(chunk.into_mut()),
            btree_map::Entry::Vacant(slot) => {
                let bytes = reader.get(SMA_CHUNKS_TABLE, &chunk_key(symbol, n))?;
                let entries: Vec<Entry> = postcard::from_bytes(&bytes).ok()?;
                Some(slot.insert(Chunk {
                    entries,
                    dirty: false,
                }))
            }
        }
    }

    fn kill(&mut self, n: u64) {
        self.loaded.remove(&n);
        self.dead.push(n);
    }

    /// Drop the whole FIFO: every stored chunk is deleted at the next flush and the next entry
    /// starts a fresh chunk.
    fn reset(&mut self, sma: &mut Sma) {
        if sma.tail > 0 {
            for n in sma.head / CHUNK_LEN..=(sma.tail - 1) / CHUNK_LEN {
                self.kill(n);
            }
        }
        sma.tail = sma.tail.div_ceil(CHUNK_LEN) * CHUNK_LEN;
        sma.head = sma.tail;
        sma.sum = Decimal::ZERO;
    }
}

/// Derived parameters used on the hot path.
#[derive(Debug, Clone)]
struct Params {
    method: Average,
    window: Millis,
    /// EWMA decay tables (see [`decay_tables`]); empty for SMA.
    decays: Vec<[u128; 256]>,
    min_samples: u64,
    min_deviation: Decimal,
    emit_recovered: bool,
    lateness: Millis,
    idle: Millis,
    max_cached_keys: usize,
}

/// `ln(0.5)` to 28 decimal places.
const LN_HALF: Decimal = Decimal::from_parts(0xAA7A_65BF, 0x81F5_2F01, 0x1665_943F, true, 28);

/// `0.5^(2^k / half_life_ms)` for `k` in `0..63`, zero once it is below 10^-28.
fn bit_decays(half_life_ms: Millis) -> Vec<Decimal> {
    let h = Decimal::from(half_life_ms.max(1));
    (0..63u32)
        .map(|k| {
            let exponent = LN_HALF * (Decimal::from(1u64 << k) / h);
            if exponent < Decimal::from(-64) {
                Decimal::ZERO
            } else {
                exponent.checked_exp().unwrap_or(Decimal::ZERO)
            }
        })
        .collect()
}

/// A factor in `[0, 1]` as a fraction of 2^128 (rounded down; 1 saturates to `2^128 - 1`).
fn q128(factor: Decimal) -> u128 {
    let fixed = Fixed::from_decimal(factor, 0);
    if fixed.int > 0 {
        u128::MAX
    } else {
        fixed.frac
    }
}

/// `tables[j][b] = 0.5^((b << 8j) ms / half_life) · 2^128` for the 8 bytes of a time
/// difference (`b >= 1`; entry 0 is unused), each the product of the per-bit factors of `b`,
/// multiplied in 128-bit fixed point.
fn decay_tables(half_life_ms: Millis) -> Vec<[u128; 256]> {
    let bits: Vec<u128> = bit_decays(half_life_ms).into_iter().map(q128).collect();
    (0..8usize)
        .map(|j| {
            let mut table = [0u128; 256];
            for b in 1..256usize {
                let low = b.trailing_zeros() as usize;
                let bit = bits.get(8 * j + low).copied().unwrap_or(0);
                let rest = b & (b - 1);
                table[b] = if rest == 0 {
                    bit
                } else {
                    mul_wide(table[rest], bit).0
                };
            }
            table
        })
        .collect()
}

impl Params {
    /// `0.5^(dt / half_life) · 2^128` for `dt` ms, `None` for a factor of exactly one
    /// (`dt <= 0`): one table factor per non-zero byte of `dt`.
    fn decay(&self, dt: Millis) -> Option<u128> {
        let mut bytes = u64::try_from(dt).unwrap_or(0);
        let mut factor: Option<u128> = None;
        for table in &self.decays {
            if bytes == 0 {
                break;
            }
            let b = (bytes & 0xff) as usize;
            if b != 0 {
                let f = match factor {
                    None => table[b],
                    Some(f) => mul_wide(f, table[b]).0,
                };
                if f == 0 {
                    return Some(0);
                }
                factor = Some(f);
            }
            bytes >>= 8;
        }
        factor
    }
}

/// The below average processor: `asset-prices` in, `below-average-events` out. See the module
/// docs.
#[derive(Debug)]
pub struct BelowAverageProcessor {
    params: Params,
    cache: Cache<SymbolState>,
    views: Vec<BelowAverageEvent>,
    late: u64,
    state_errors: u64,
}

impl BelowAverageProcessor {
    /// A processor with `config` (call [`Config::validate`] first; out-of-range values are
    /// clamped to something harmless rather than rejected here).
    pub fn new(config: Config) -> Self {
        Self {
            params: Params {
                method: config.average,
                window: config.window.0.max(1),
                decays: match config.average {
                    Average::Ewma => decay_tables(config.half_life.0),
                    Average::Sma => Vec::new(),
                },
                min_samples: config.min_samples.max(1),
                min_deviation: config.min_deviation_pct.0.max(Decimal::ZERO),
                emit_recovered: config.emit_recovered,
                lateness: config.allowed_lateness.0.max(0),
                idle: shared::idle(config.allowed_lateness, config.idle_timeout),
                max_cached_keys: config.max_cached_keys.max(1),
            },
            cache: Cache::default(),
            views: Vec::new(),
            late: 0,
            state_errors: 0,
        }
    }

    /// Quotes rejected as `late` since this instance started (a metric; not persisted).
    pub fn late_quotes(&self) -> u64 {
        self.late
    }

    /// Symbols whose stored state was undecodable or incomplete and was restarted.
    pub fn state_errors(&self) -> u64 {
        self.state_errors
    }

    /// Symbols currently held in memory.
    pub fn cached_symbols(&self) -> usize {
        self.cache.len()
    }
}

impl Processor for BelowAverageProcessor {
    type Input = AssetPrice;
    type Output = BelowAverageEvent;

    fn process(
        &mut self,
        ctx: &mut Context<'_, BelowAverageEvent>,
        input: AssetPrice,
    ) -> Result<(), Rejection> {
        shared::validate_price(&input)?;
        let AssetPrice {
            event_id,
            symbol,
            price,
            event_time,
            ..
        } = input;
        let params = &self.params;
        let state_errors = &mut self.state_errors;
        let reader = ctx.state;
        let origin = (ctx.meta.topic, ctx.meta.partition);
        let mut slot = self.cache.get(&symbol, origin, || {
            shared::load(reader, SYMBOLS_TABLE, &symbol, state_errors)
        });
        if let Err(rejection) =
            slot.state()
                .reorder
                .check(&symbol, &event_id, event_time, params.lateness)
        {
            self.late += 1;
            return Err(rejection);
        }
        slot.mark_dirty();
        let state = slot.state();
        state.reorder.push(
            Quote {
                time: event_time,
                price,
                id: event_id,
            },
            ctx.meta.processing_time,
        );
        while let Some(quote) = state.reorder.pop_ready(params.lateness) {
            let mut out = Out {
                ctx: &mut *ctx,
                views: &mut self.views,
                symbol: &symbol,
            };
            release(params, reader, state, quote, &mut out, state_errors);
        }
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Context<'_, BelowAverageEvent>, tick: Tick<'_>) {
        let Some(arrived_by) = shared::release_due(tick, self.params.idle) else {
            return;
        };
        let params = &self.params;
        let views = &mut self.views;
        let state_errors = &mut self.state_errors;
        let reader = ctx.state;
        self.cache.visit(|symbol, state| {
            if state.reorder.held_since().is_none_or(|t| t > arrived_by) {
                return false;
            }
            state.reorder.release_all(params.lateness);
            while let Some(quote) = state.reorder.pop_ready(params.lateness) {
                let mut out = Out {
                    ctx: &mut *ctx,
                    views: &mut *views,
                    symbol,
                };
                release(params, reader, state, quote, &mut out, state_errors);
            }
            true
        });
    }

    fn on_resume(&mut self, state: &dyn StateReader, resume: Resume<'_>) {
        let errors = &mut self.state_errors;
        self.cache.resume(state, HELD_TABLE, resume, |symbol| {
            shared::load(state, SYMBOLS_TABLE, symbol, errors)
        });
    }

    fn flush(&mut self, changes: &mut dyn StateWriter) {
        self.cache
            .flush_with(changes, HELD_TABLE, |changes, symbol, state| {
                changes.put(SYMBOLS_TABLE, symbol.as_bytes(), &shared::encode(&*state));
                let chunks = &mut state.chunks;
                for n in chunks.dead.drain(..) {
                    changes.delete(SMA_CHUNKS_TABLE, &chunk_key(symbol, n));
                }
                for (n, chunk) in chunks.loaded.iter_mut().filter(|(_, c)| c.dirty) {
                    chunk.dirty = false;
                    changes.put(
                        SMA_CHUNKS_TABLE,
                        &chunk_key(symbol, *n),
                        &shared::encode(&chunk.entries),
                    );
                }
                // Keep only what the next quotes touch: the head chunk (eviction) and the tail
                // chunk (append). Everything else is stored and reloads lazily.
                if let Some(Avg::Sma(sma)) = &state.avg {
                    let head = sma.head / CHUNK_LEN;
                    let tail = sma.tail.saturating_sub(1) / CHUNK_LEN;
                    chunks.loaded.retain(|n, _| *n == head || *n == tail);
                } else {
                    chunks.loaded.clear();
                }
            });
        for event in self.views.drain(..) {
            views::materialize(changes, &event);
        }
        self.cache.evict(self.params.max_cached_keys, |s| {
            s.reorder.held_since().is_some()
        });
    }
}

/// Where a released quote's events go.
struct Out<'a, 'c> {
    ctx: &'a mut Context<'c, BelowAverageEvent>,
    views: &'a mut Vec<BelowAverageEvent>,
    symbol: &'a str,
}

/// Compare one released quote (in event-time order) with the history's average, then add it.
fn release(
    params: &Params,
    reader: &dyn StateReader,
    state: &mut SymbolState,
    quote: Quote,
    out: &mut Out<'_, '_>,
    state_errors: &mut u64,
) {
    // Start the average of the configured kind (dropping one of the other kind).
    if let Some(Avg::EwmaV1(old)) = &state.avg {
        state.avg = Some(Avg::Ewma(Ewma::from_v1(old)));
    }
    let matches = matches!(
        (&state.avg, params.method),
        (Some(Avg::Sma(_)), Average::Sma) | (Some(Avg::Ewma(_)), Average::Ewma)
    );
    if !matches {
        if let Some(Avg::Sma(sma)) = &mut state.avg {
            state.chunks.reset(sma);
        }
        state.avg = Some(match params.method {
            Average::Sma => Avg::Sma(Sma::default()),
            Average::Ewma => Avg::Ewma(Ewma::default()),
        });
    }
    match &mut state.avg {
        Some(Avg::Sma(sma)) => {
            let chunks = &mut state.chunks;
            let cutoff = quote.time.saturating_sub(params.window);
            while sma.head < sma.tail {
                match chunks.entry(reader, out.symbol, sma.head) {
                    Some(entry) if entry.time >= cutoff => break,
                    Some(entry) => {
                        sma.sum -= entry.price;
                        sma.head += 1;
                        if sma.head % CHUNK_LEN == 0 {
                            chunks.kill(sma.head / CHUNK_LEN - 1);
                        }
                    }
                    None => {
                        *state_errors += 1;
                        chunks.reset(sma);
                    }
                }
            }
            let samples = sma.tail - sma.head;
            if samples > 0 {
                let mean = match shared::units8(sma.sum) {
                    Some(sum) => Mean::Units { sum, samples },
                    None => Mean::Value(sma.sum / Decimal::from(samples)),
                };
                compare(params, &mut state.side, &quote, mean, samples, out);
            }
            let entry = Entry {
                time: quote.time,
                price: quote.price,
            };
            let n = sma.tail / CHUNK_LEN;
            if sma.tail % CHUNK_LEN == 0 {
                chunks.loaded.insert(n, Chunk::default());
            }
            let chunk = match chunks.chunk(reader, out.symbol, n) {
                Some(chunk) => chunk,
                None => {
                    // The partly filled tail chunk is missing from the store: start afresh.
                    *state_errors += 1;
                    chunks.reset(sma);
                    chunks.loaded.entry(sma.tail / CHUNK_LEN).or_default()
                }
            };
            chunk.entries.push(entry);
            chunk.dirty = true;
            sma.tail += 1;
            sma.sum += quote.price;
        }
        Some(Avg::Ewma(ewma)) => {
            if ewma.samples > 0 {
                let mean = Mean::Ratio {
                    weighted_sum: ewma.weighted_sum,
                    weight: ewma.weight,
                };
                compare(params, &mut state.side, &quote, mean, ewma.samples, out);
            }
            // Validated: 0 < units < 10^20.
            let units = shared::units8(quote.price)
                .and_then(|u| u128::try_from(u).ok())
                .unwrap_or(0);
            if ewma.samples == 0 {
                ewma.weighted_sum = Fixed::ZERO;
                ewma.weight = Fixed::ZERO;
            } else if let Some(factor) = params.decay(quote.time - ewma.last_time) {
                ewma.weighted_sum = ewma.weighted_sum.decayed(factor);
                ewma.weight = ewma.weight.decayed(factor);
            }
            ewma.weighted_sum = ewma.weighted_sum.plus(units);
            ewma.weight = ewma.weight.plus(1);
            ewma.samples += 1;
            ewma.last_time = quote.time;
        }
        // Converted to version 2 above.
        Some(Avg::EwmaV1(_)) | None => {}
    }
}

/// The mean of the history, in the form that is cheapest to compare.
enum Mean {
    /// An SMA whose sum has at most 8 places: `sum` in units of 10^-8 over `samples` quotes.
    Units { sum: i128, samples: u64 },
    /// An EWMA: `weighted_sum / weight` (`weighted_sum` in units of 10^-8), `weight >= 1`.
    Ratio { weighted_sum: Fixed, weight: Fixed },
    /// Any other mean, not yet rounded.
    Value(Decimal),
}

/// Prices are below 10^12, i.e. 10^20 units of 10^-8 (see [`shared::validate_price`]).
const MAX_UNITS: u128 = 100_000_000_000_000_000_000;

/// Whether `units` (a price in units of 10^-8) is below `round(S / W)`, rounded half up:
/// `P < round(S / W)` ⇔ `P + 1/2 <= S / W` ⇔ `(2P + 1)·W <= 2S`, compared exactly in 384
/// bits.
fn ratio_is_below(weighted_sum: &Fixed, weight: &Fixed, units: u128) -> bool {
    match units.checked_mul(2).and_then(|u| u.checked_add(1)) {
        Some(k) => weight.times(k) <= weighted_sum.times(2),
        None => false,
    }
}

impl Mean {
    /// Whether `price < average`, with the average rounded half away from zero to 8 places.
    /// For `Units` exactly and without a division: with `P` the price in units of 10^-8,
    /// `P < round(S / n)` ⇔ `P + 1 <= floor(S / n + 1/2)` ⇔ `(2P + 1) n <= 2S`.
    fn is_below(&self, price: Decimal) -> bool {
        match (self, shared::units8(price)) {
            // |units| < 2^96 * 10^8 < 2^124, so `2 * sum` cannot overflow; the product is
            // checked (it would need ~10^17 samples to overflow).
            (Mean::Units { sum, samples }, Some(p)) => {
                match (2 * p + 1).checked_mul(i128::from(*samples)) {
                    Some(lhs) => lhs <= 2 * *sum,
                    None => price < self.average(),
                }
            }
            // The same identity for the fixed-point sums, exact (prices are > 0).
            (
                Mean::Ratio {
                    weighted_sum,
                    weight,
                },
                Some(p),
            ) => match u128::try_from(p) {
                Ok(units) => ratio_is_below(weighted_sum, weight, units),
                Err(_) => true,
            },
            _ => price < self.average(),
        }
    }

    /// The average rounded half away from zero to exactly 8 places (exact for `Units`).
    fn average(&self) -> Decimal {
        match *self {
            Mean::Units { sum, samples } => {
                // sum > 0 (prices are > 0): round half up = floor((2S + n) / 2n). The quotient
                // is at most the largest price, so it fits Decimal; the fallback is for
                // corrupted state only.
                let n = i128::from(samples.max(1));
                Decimal::try_from_i128_with_scale((2 * sum + n) / (2 * n), PRICE_SCALE)
                    .unwrap_or_else(|_| {
                        let sum = Decimal::try_from_i128_with_scale(sum, PRICE_SCALE)
                            .unwrap_or(Decimal::MAX);
                        shared::round_to(sum / Decimal::from(samples.max(1)), PRICE_SCALE)
                    })
            }
            Mean::Ratio {
                weighted_sum,
                weight,
            } => {
                // Only for an event: the smallest `P` not below the average is the average
                // (round half up of `S / W`), found by bisection with the exact comparison, so
                // it can never disagree with `is_below`. The mean is at most the largest
                // price, below 10^20 units (the bound only matters for corrupted state).
                let (mut low, mut high) = (0u128, MAX_UNITS);
                while low < high {
                    let mid = low + (high - low) / 2;
                    if ratio_is_below(&weighted_sum, &weight, mid) {
                        low = mid + 1;
                    } else {
                        high = mid;
                    }
                }
                i128::try_from(low)
                    .ok()
                    .and_then(|units| Decimal::try_from_i128_with_scale(units, PRICE_SCALE).ok())
                    .unwrap_or(Decimal::MAX)
            }
            Mean::Value(mean) => shared::round_to(mean, PRICE_SCALE),
        }
    }
}

/// The edge trigger: update the side, and emit on a crossing once `samples >= min_samples`.
/// The average itself (a division) is only computed when the side changes.
fn compare(
    params: &Params,
    side: &mut Side,
    quote: &Quote,
    mean: Mean,
    samples: u64,
    out: &mut Out<'_, '_>,
) {
    let below = mean.is_below(quote.price);
    let transition = match *side {
        Side::Unknown | Side::Below => !below,
        Side::Above => below,
    };
    if !transition {
        return;
    }
    let average = mean.average();
    if average <= Decimal::ZERO {
        return;
    }
    let kind = match *side {
        Side::Unknown => {
            if !below {
                *side = Side::Above;
            }
            return;
        }
        Side::Above => {
            if !below
                || (average - quote.price) * Decimal::ONE_HUNDRED < params.min_deviation * average
            {
                return;
            }
            if samples < params.min_samples {
                // An unannounced (warm-up) crossing: wait for at-or-above again.
                *side = Side::Unknown;
                return;
            }
            *side = Side::Below;
            CrossingKind::Below
        }
        Side::Below => {
            if below {
                return;
            }
            *side = Side::Above;
            if !params.emit_recovered {
                return;
            }
            CrossingKind::Recovered
        }
    };
    if samples < params.min_samples {
        return;
    }
    let suffix = match kind {
        CrossingKind::Below => "below",
        CrossingKind::Recovered => "recovered",
    };
    let deviation_pct = shared::round_to(
        (quote.price - average) * Decimal::ONE_HUNDRED / average,
        PERCENT_SCALE,
    );
    let event = BelowAverageEvent {
        event_id: format!("{}/{suffix}", quote.id),
        symbol: out.symbol.to_string(),
        kind,
        price: quote.price,
        average,
        deviation_pct,
        samples: i64::try_from(samples).unwrap_or(i64::MAX),
        method: match params.method {
            Average::Sma => AverageMethod::Sma,
            Average::Ewma => AverageMethod::Ewma,
        },
        event_time: quote.time,
        quote_event_id: quote.id.clone(),
    };
    out.views.push(event.clone());
    out.ctx.emit(event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemoryState, NoState};
    use crate::testkit::{arb_raw, build_series, plan, quote, run, step, T0};
    use proptest::prelude::*;
    use std::str::FromStr;

    const S: Millis = 1_000;
    const M: Millis = 60_000;
    const H: Millis = 3_600_000;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn config(f: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::default();
        f(&mut c);
        c.validate().unwrap();
        c
    }

    fn events(results: Vec<Result<Vec<BelowAverageEvent>, Rejection>>) -> Vec<BelowAverageEvent> {
        results.into_iter().flat_map(|r| r.unwrap()).collect()
    }

    fn summary(out: &[BelowAverageEvent]) -> Vec<(&str, CrossingKind, String, String, i64)> {
        out.iter()
            .map(|e| {
                (
                    e.event_id.as_str(),
                    e.kind,
                    e.average.to_string(),
                    e.deviation_pct.to_string(),
                    e.samples,
                )
            })
            .collect()
    }

    /// A dip that is the symbol's last quote is held back for `allowed_lateness`; the wall clock
    /// releases it after `idle_timeout`, the end of a replay's input at once.
    #[test]
    fn a_quiet_symbols_dip_is_released_by_the_wall_clock() {
        use crate::testkit::{step_at, tick};
        let cfg = config(|c| {
            c.min_samples = 2;
            c.idle_timeout = Some(DurationMs(5_000));
        });
        let now = 1_000_000;
        for end in [Tick::WallClock(now + 5_000), Tick::EndOfInput] {
            let mut p = BelowAverageProcessor::new(cfg.clone());
            for (i, q) in minutes(&[("a", "10"), ("b", "10"), ("c", "8")])
                .into_iter()
                .enumerate()
            {
                assert!(step_at(&mut p, &NoState, i as i64, q, now)
                    .unwrap()
                    .is_empty());
            }
            if end != Tick::EndOfInput {
                assert!(tick(&mut p, &NoState, Tick::WallClock(now + 4_999), now).is_empty());
            }
            let out = tick(&mut p, &NoState, end, now);
            assert_eq!(out.len(), 1, "{end:?}");
            assert_eq!(
                (out[0].quote_event_id.as_str(), out[0].kind),
                ("c", CrossingKind::Below)
            );
        }
    }

    /// `(id, price)` quotes of symbol X one minute apart from T0.
    fn minutes(prices: &[(&str, &str)]) -> Vec<AssetPrice> {
        prices
            .iter()
            .enumerate()
            .map(|(i, (id, p))| quote(id, "X", p, T0 + i as i64 * M))
            .collect()
    }

    // ------------------------------------------------------------------ scenarios

    #[test]
    fn scenario_dip_then_more_quotes_below_gives_one_event() {
        // Defaults: SMA over 24 h, 30 samples, lateness 30 s (a quote one minute later
        // releases the previous one).
        let mut series: Vec<(String, String)> = (0..30)
            .map(|i| (format!("q{i}"), "100.00".to_string()))
            .collect();
        for (i, p) in ["99.00", "98.00", "97.50", "99.50", "90"]
            .iter()
            .enumerate()
        {
            series.push((format!("d{i}"), p.to_string()));
        }
        series.push(("tick".to_string(), "100".to_string()));
        let refs: Vec<(&str, &str)> = series
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut p = BelowAverageProcessor::new(Config::default());
        let out = run(&mut p, &NoState, &minutes(&refs));
        let at: Vec<usize> = (0..out.len())
            .filter(|&i| !out[i].as_ref().unwrap().is_empty())
            .collect();
        assert_eq!(
            at,
            vec![31],
            "released when the next quote moves the watermark"
        );
        let all = events(out);
        assert_eq!(
            summary(&all),
            vec![(
                "d0/below",
                CrossingKind::Below,
                "100.00000000".to_string(),
                "-1.0000".to_string(),
                30
            )]
        );
        let e = &all[0];
        assert_eq!(e.price, d("99.00"));
        assert_eq!(e.quote_event_id, "d0");
        assert_eq!(e.event_time, T0 + 30 * M);
        assert_eq!(e.method, AverageMethod::Sma);
        assert_eq!(e.symbol, "X");
    }

    #[test]
    fn warm_up_tracks_the_side_without_emitting() {
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.min_samples = 3;
            c.allowed_lateness = DurationMs(0);
            c.emit_recovered = true;
        }));
        let out = events(run(
            &mut p,
            &NoState,
            &minutes(&[
                ("a", "100"),
                ("b", "100"), // 1 sample, avg 100: armed
                ("c", "90"),  // 2 samples: below during warm-up: not announced, unknown
                ("d", "100"), // 3 samples, avg 96.67: at-or-above: armed, nothing to recover
                ("e", "95"),  // 4 samples, avg 97.5: below
            ]),
        ));
        assert_eq!(
            summary(&out),
            vec![(
                "e/below",
                CrossingKind::Below,
                "97.50000000".to_string(),
                "-2.5641".to_string(),
                4
            )]
        );
    }

    #[test]
    fn below_from_the_start_needs_an_at_or_above_first() {
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.min_samples = 1;
            c.allowed_lateness = DurationMs(0);
        }));
        let out = events(run(
            &mut p,
            &NoState,
            &minutes(&[
                ("a", "100"),
                ("b", "90"),
                ("c", "80"),
                ("d", "95"),
                ("e", "80"),
            ]),
        ));
        // b, c below (unknown: no event); d 95 >= avg 90: armed; e 80 < 91.25: event.
        assert_eq!(
            summary(&out),
            vec![(
                "e/below",
                CrossingKind::Below,
                "91.25000000".to_string(),
                "-12.3288".to_string(),
                4
            )]
        );
    }

    #[test]
    fn recovered_is_configurable_and_rearms_either_way() {
        let series = minutes(&[
            ("a", "100"),
            ("b", "100"),
            ("c", "90"),  // below 100
            ("d", "80"),  // still below
            ("e", "100"), // avg 92.5: recovered
            ("f", "101"), // still above
            ("g", "50"),  // below again
        ]);
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.min_samples = 2;
            c.allowed_lateness = DurationMs(0);
            c.emit_recovered = true;
        }));
        let out = events(run(&mut p, &NoState, &series));
        assert_eq!(
            summary(&out),
            vec![
                (
                    "c/below",
                    CrossingKind::Below,
                    "100.00000000".into(),
                    "-10.0000".into(),
                    2
                ),
                (
                    "e/recovered",
                    CrossingKind::Recovered,
                    "92.50000000".into(),
                    "8.1081".into(),
                    4
                ),
                (
                    "g/below",
                    CrossingKind::Below,
                    "95.16666667".into(),
                    "-47.4606".into(),
                    6
                ),
            ]
        );
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.min_samples = 2;
            c.allowed_lateness = DurationMs(0);
        }));
        let ids: Vec<String> = events(run(&mut p, &NoState, &series))
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(ids, vec!["c/below", "g/below"]);
    }

    #[test]
    fn equal_to_the_average_is_not_below() {
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.min_samples = 1;
            c.allowed_lateness = DurationMs(0);
        }));
        let out = events(run(
            &mut p,
            &NoState,
            &minutes(&[
                ("a", "100"),
                ("b", "100"),
                ("c", "100.00000000"),
                ("d", "99.99999999"),
            ]),
        ));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].event_id, "d/below");
        assert_eq!(out[0].deviation_pct.to_string(), "0.0000");
    }

    #[test]
    fn min_deviation_ignores_small_dips_but_stays_armed() {
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.min_samples = 2;
            c.allowed_lateness = DurationMs(0);
            c.min_deviation_pct = ConfigDecimal(d("5"));
        }));
        let out = events(run(
            &mut p,
            &NoState,
            &minutes(&[
                ("a", "100"),
                ("b", "100"),
                ("c", "96"), // -4 %: ignored
                ("d", "93"), // avg 98.6667: -5.7432 %: event
                ("e", "90"), // still below: nothing
            ]),
        ));
        assert_eq!(
            summary(&out),
            vec![(
                "d/below",
                CrossingKind::Below,
                "98.66666667".into(),
                "-5.7432".into(),
                3
            )]
        );
        // Exactly 5 % below fires.
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.min_samples = 1;
            c.allowed_lateness = DurationMs(0);
            c.min_deviation_pct = ConfigDecimal(d("5"));
        }));
        let out = events(run(
            &mut p,
            &NoState,
            &minutes(&[("a", "100"), ("b", "100"), ("c", "95")]),
        ));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].deviation_pct.to_string(), "-5.0000");
    }

    #[test]
    fn sma_window_drops_old_quotes() {
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.min_samples = 1;
            c.allowed_lateness = DurationMs(0);
            c.window = DurationMs(10 * M);
            c.emit_recovered = true;
        }));
        let series = vec![
            quote("a", "X", "200", T0),
            quote("b", "X", "100", T0 + 5 * M), // avg 200: unknown -> below, no event
            quote("c", "X", "160", T0 + 10 * M), // avg 150 (a at exactly 10 m is inside)
            quote("d", "X", "120", T0 + 10 * M + 1), // a left: avg (100 + 160) / 2 = 130
        ];
        let out = events(run(&mut p, &NoState, &series));
        assert_eq!(
            summary(&out),
            vec![(
                "d/below",
                CrossingKind::Below,
                "130.00000000".into(),
                "-7.6923".into(),
                2
            )]
        );
    }

    #[test]
    fn ewma_weights_halve_every_half_life() {
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.average = Average::Ewma;
            c.min_samples = 1;
            c.allowed_lateness = DurationMs(0);
        }));
        let out = events(run(
            &mut p,
            &NoState,
            &[
                quote("a", "X", "100", T0),
                quote("b", "X", "200", T0 + H),     // avg 100: above
                quote("c", "X", "150", T0 + 2 * H), // (100·0.25 + 200·0.5) / 0.75
            ],
        ));
        assert_eq!(
            summary(&out),
            vec![(
                "c/below",
                CrossingKind::Below,
                "166.66666667".into(),
                "-10.0000".into(),
                2
            )]
        );
        assert_eq!(out[0].method, AverageMethod::Ewma);

        // Same time: equal weights.
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.average = Average::Ewma;
            c.min_samples = 1;
            c.allowed_lateness = DurationMs(0);
        }));
        let out = events(run(
            &mut p,
            &NoState,
            &[
                quote("a", "X", "100", T0),
                quote("b", "X", "100", T0),
                quote("c", "X", "130", T0),
                quote("d", "X", "109", T0 + 30 * M),
            ],
        ));
        assert_eq!(
            summary(&out),
            vec![(
                "d/below",
                CrossingKind::Below,
                "110.00000000".into(),
                "-0.9091".into(),
                3
            )]
        );
    }

    /// A fraction of 2^128 as a Decimal (to ~28 digits).
    fn from_q128(f: u128) -> Decimal {
        Decimal::from(f >> 33) / Decimal::from(1u128 << 95)
    }

    #[test]
    fn decay_table_is_accurate() {
        let p = BelowAverageProcessor::new(config(|c| {
            c.average = Average::Ewma;
            c.half_life = DurationMs(H);
        }));
        let decay = |dt| from_q128(p.params.decay(dt).unwrap());
        let tol = d("0.0000000000000000000000001");
        assert_eq!(p.params.decay(0), None, "exactly one");
        assert!((decay(H) - d("0.5")).abs() < tol, "{}", decay(H));
        assert!((decay(3 * H) - d("0.125")).abs() < tol);
        let half = decay(H / 2);
        assert!((half * half - d("0.5")).abs() < tol, "{half}");
        assert!((half - d("0.7071067811865475244008443621")).abs() < tol);
        // 0.5^(1 ms / 1 h) = 0.99999980746..., and 0.5^(1000 ms / 1 h).
        assert!((decay(1) - d("0.9999998074591350471210206321")).abs() < tol);
        assert!((decay(1000) - d("0.9998074776513174452264949052")).abs() < tol);
        assert_eq!(p.params.decay(200 * H), Some(0));
        assert_eq!(p.params.decay(Millis::MAX), Some(0));
        assert_eq!(LN_HALF.to_string(), "-0.6931471805599453094172321215");
        let one_ms = BelowAverageProcessor::new(config(|c| {
            c.average = Average::Ewma;
            c.half_life = DurationMs(1);
        }));
        let decay = |dt| from_q128(one_ms.params.decay(dt).unwrap());
        assert!((decay(1) - d("0.5")).abs() < tol);
        assert!((decay(10) - d("0.0009765625")).abs() < tol);
    }

    #[test]
    fn fixed_point_arithmetic_is_exact_where_it_must_be() {
        assert_eq!(mul_wide(u128::MAX, u128::MAX), (u128::MAX - 1, 1));
        assert_eq!(mul_wide(1 << 100, 1 << 100), (1 << 72, 0));
        let x = Fixed::from_decimal(d("1.5"), 0);
        assert_eq!(
            x,
            Fixed {
                int: 1,
                frac: 1 << 127
            }
        );
        assert_eq!(
            x.decayed(1 << 127),
            Fixed {
                int: 0,
                frac: 3 << 126
            }
        );
        assert_eq!(x.times(3), (0, 4, 1 << 127));
        assert_eq!(Fixed::from_decimal(d("2.5"), 8).int, 250_000_000);
        assert_eq!(Fixed::from_decimal(d("-1"), 8), Fixed::ZERO);
        let third = Fixed::from_decimal(d("0.333333333"), 8);
        assert_eq!(third.int, 33_333_333);
        assert_eq!(third.frac, fixed_ratio(3, 10).frac);
        // A big state: 10^8 quotes of 10^20 - 1 units at one time.
        let sum = Fixed {
            int: (MAX_UNITS - 1) * 100_000_000,
            frac: 0,
        };
        let weight = Fixed {
            int: 100_000_000,
            frac: 0,
        };
        let mean = Mean::Ratio {
            weighted_sum: sum,
            weight,
        };
        assert_eq!(mean.average(), d("999999999999.99999999"));
        assert!(mean.is_below(d("999999999999.99999998")));
        assert!(!mean.is_below(d("999999999999.99999999")));
    }

    /// State written before the fixed-point sums (format version 1, Decimal sums) still
    /// decodes and continues; the next flush writes version 2.
    #[test]
    fn ewma_state_of_format_version_1_still_decodes() {
        let mut store = MemoryState::new();
        let old = SymbolState {
            side: Side::Above,
            avg: Some(Avg::EwmaV1(EwmaV1 {
                // Quotes 100 and 200 one half-life apart: (100·0.5 + 200) / 1.5.
                weighted_sum: d("250"),
                weight: d("1.5"),
                samples: 2,
                last_time: T0,
            })),
            ..SymbolState::default()
        };
        let bytes = shared::encode(&old);
        // No newest time, no held quote, side above, `Some`, variant 1.
        assert_eq!(bytes[..5], [0, 0, 1, 1, 1]);
        StateWriter::put(&mut store, SYMBOLS_TABLE, b"X", &bytes);
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.average = Average::Ewma;
            c.min_samples = 1;
            c.allowed_lateness = DurationMs(0);
        }));
        let out = events(run(&mut p, &store, &[quote("c", "X", "160", T0)]));
        assert_eq!(
            summary(&out),
            vec![(
                "c/below",
                CrossingKind::Below,
                "166.66666667".into(),
                "-4.0000".into(),
                2
            )]
        );
        assert_eq!(p.state_errors(), 0);
        p.flush(&mut store);
        let bytes = store.get(SYMBOLS_TABLE, b"X").unwrap();
        let new: SymbolState = postcard::from_bytes(&bytes).unwrap();
        match new.avg {
            Some(Avg::Ewma(ewma)) => {
                assert_eq!(ewma.samples, 3);
                // 250 + 160 in units; weight 2.5.
                assert_eq!(
                    ewma.weighted_sum,
                    Fixed {
                        int: 41_000_000_000,
                        frac: 0
                    }
                );
                assert_eq!(
                    ewma.weight,
                    Fixed {
                        int: 2,
                        frac: 1 << 127
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn late_quote_is_rejected_and_changes_nothing() {
        let cfg = config(|c| c.min_samples = 2);
        let series = vec![
            quote("a", "X", "100", T0),
            quote("b", "X", "100", T0 + M),
            quote("late", "X", "1", T0 + 29 * S),
            quote("c", "X", "90", T0 + 2 * M),
            quote("e", "X", "90", T0 + 3 * M),
        ];
        let mut p = BelowAverageProcessor::new(cfg.clone());
        let mut store = MemoryState::new();
        let mut out = run(&mut p, &store, &series);
        assert_eq!(out[2].clone().unwrap_err().reason, "late");
        assert_eq!(p.late_quotes(), 1);
        p.flush(&mut store);
        let _late = out.remove(2);
        let mut q = BelowAverageProcessor::new(cfg);
        let mut store2 = MemoryState::new();
        let without: Vec<_> = series
            .into_iter()
            .filter(|q| q.event_id != "late")
            .collect();
        let out2 = run(&mut q, &store2, &without);
        q.flush(&mut store2);
        assert_eq!(out, out2);
        assert_eq!(events(out2).len(), 1);
        assert_eq!(store, store2);
    }

    #[test]
    fn invalid_price_is_rejected() {
        let mut p = BelowAverageProcessor::new(Config::default());
        let r = step(&mut p, &NoState, 0, quote("a", "X", "0", T0)).unwrap_err();
        assert_eq!(r.reason, "invalid_price");
    }

    // ------------------------------------------------------------------ state

    #[test]
    fn sma_chunks_are_written_incrementally_and_deleted_when_old() {
        // CHUNK_LEN is 4 in tests; window 10 minutes = 10 quotes one minute apart.
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.window = DurationMs(10 * M - 1);
            c.allowed_lateness = DurationMs(0);
        }));
        let mut store = MemoryState::new();
        let quotes: Vec<AssetPrice> = (0..25)
            .map(|i| quote(&format!("q{i}"), "X", "100", T0 + i * M))
            .collect();
        for (i, q) in quotes.iter().enumerate() {
            step(&mut p, &store, i as i64, q.clone()).unwrap();
            if i % 3 == 0 {
                p.flush(&mut store);
            }
        }
        p.flush(&mut store);
        // Quotes 15..=24 are in the window: entries 15..25 -> chunks 3 (12..16), 4, 5, 6 (24).
        let keys: Vec<Vec<u8>> = store
            .table(SMA_CHUNKS_TABLE)
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        let expected: Vec<Vec<u8>> = (3..=6).map(|n| chunk_key("X", n)).collect();
        assert_eq!(keys, expected);
        let state: SymbolState =
            postcard::from_bytes(&store.get(SYMBOLS_TABLE, b"X").unwrap()).unwrap();
        assert_eq!(
            state.avg,
            Some(Avg::Sma(Sma {
                sum: d("1000"),
                head: 15,
                tail: 25
            }))
        );
        // In memory only the head and tail chunks remain.
        let cached: Vec<u64> = p
            .cache
            .get("X", ("asset-prices", 0), SymbolState::default)
            .state()
            .chunks
            .loaded
            .keys()
            .copied()
            .collect();
        assert_eq!(cached, vec![3, 6]);
    }

    #[test]
    fn switching_method_drops_the_sma_history() {
        let mut store = MemoryState::new();
        let mut p = BelowAverageProcessor::new(config(|c| c.allowed_lateness = DurationMs(0)));
        let quotes: Vec<AssetPrice> = (0..10)
            .map(|i| quote(&format!("q{i}"), "X", "100", T0 + i * M))
            .collect();
        run(&mut p, &store, &quotes);
        p.flush(&mut store);
        assert_eq!(store.table(SMA_CHUNKS_TABLE).len(), 3);
        let mut q = BelowAverageProcessor::new(config(|c| {
            c.allowed_lateness = DurationMs(0);
            c.average = Average::Ewma;
        }));
        step(&mut q, &store, 10, quote("n", "X", "100", T0 + 10 * M)).unwrap();
        q.flush(&mut store);
        assert_eq!(store.table(SMA_CHUNKS_TABLE).len(), 0);
    }

    #[test]
    fn missing_chunk_restarts_the_average() {
        let mut store = MemoryState::new();
        let cfg = config(|c| {
            c.allowed_lateness = DurationMs(0);
            c.min_samples = 1;
            c.window = DurationMs(5 * M);
        });
        let mut p = BelowAverageProcessor::new(cfg.clone());
        let quotes: Vec<AssetPrice> = (0..10)
            .map(|i| quote(&format!("q{i}"), "X", "100", T0 + i * M))
            .collect();
        run(&mut p, &store, &quotes);
        p.flush(&mut store);
        // Entries 4..10 live in chunks 1 and 2; lose chunk 1.
        store.delete(SMA_CHUNKS_TABLE, &chunk_key("X", 1));
        let mut q = BelowAverageProcessor::new(cfg);
        step(&mut q, &store, 10, quote("n", "X", "50", T0 + 10 * M)).unwrap();
        assert_eq!(q.state_errors(), 1);
        q.flush(&mut store);
        let state: SymbolState =
            postcard::from_bytes(&store.get(SYMBOLS_TABLE, b"X").unwrap()).unwrap();
        assert_eq!(
            state.avg,
            Some(Avg::Sma(Sma {
                sum: d("50"),
                head: 12,
                tail: 13
            }))
        );
        let keys: Vec<Vec<u8>> = store
            .table(SMA_CHUNKS_TABLE)
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(keys, vec![chunk_key("X", 3)]);
    }

    #[test]
    fn flush_writes_view_rows() {
        let mut p = BelowAverageProcessor::new(config(|c| {
            c.min_samples = 1;
            c.allowed_lateness = DurationMs(0);
        }));
        let mut store = MemoryState::new();
        let out = events(run(
            &mut p,
            &store,
            &minutes(&[("a", "100"), ("b", "100"), ("c", "90")]),
        ));
        p.flush(&mut store);
        let rows = store.table(views::BELOW_AVERAGE_EVENTS);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].0,
            views::alert_key("X", T0 + 2 * M, "c/below").as_slice()
        );
        let json: serde_json::Value = serde_json::from_slice(rows[0].1).unwrap();
        assert_eq!(json["average"], "100.00000000");
        assert_eq!(json["deviation_pct"], "-10.0000");
        let row: BelowAverageEvent = serde_json::from_slice(rows[0].1).unwrap();
        assert_eq!(row, out[0]);
    }

    // ------------------------------------------------------------------ config

    #[test]
    fn config_defaults_match_the_issue() {
        let c = Config::default();
        assert_eq!(c.average, Average::Sma);
        assert_eq!(c.window.0, 24 * H);
        assert_eq!(c.half_life.0, H);
        assert_eq!(c.min_samples, 30);
        assert_eq!(c.min_deviation_pct.0, Decimal::ZERO);
        assert!(!c.emit_recovered);
        assert_eq!(c.allowed_lateness.0, 30 * S);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn config_reads_params() {
        let c: Config = serde_json::from_str(
            r#"{"average": "ewma", "window": "12h", "half_life": "30m", "min_samples": 5,
                "min_deviation_pct": 1.5, "emit_recovered": true, "allowed_lateness": "1s"}"#,
        )
        .unwrap();
        assert_eq!(c.average, Average::Ewma);
        assert_eq!(c.window.0, 12 * H);
        assert_eq!(c.half_life.0, 30 * M);
        assert_eq!(c.min_samples, 5);
        assert_eq!(c.min_deviation_pct.0, d("1.5"));
        assert!(c.emit_recovered);
        assert_eq!(c.allowed_lateness.0, S);
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.window = DurationMs(0)).starts_with("window"));
        assert!(bad(|c| c.half_life = DurationMs(0)).starts_with("half_life"));
        assert!(bad(|c| c.min_samples = 0).starts_with("min_samples"));
        assert!(
            bad(|c| c.min_deviation_pct = ConfigDecimal(d("-1"))).starts_with("min_deviation_pct")
        );
        assert!(
            bad(|c| c.min_deviation_pct = ConfigDecimal(d("100"))).starts_with("min_deviation_pct")
        );
        assert!(bad(|c| c.min_deviation_pct = ConfigDecimal(d("0.00001")))
            .starts_with("min_deviation_pct"));
        assert!(bad(|c| c.allowed_lateness = DurationMs(-1)).starts_with("allowed_lateness"));
        assert!(bad(|c| c.max_cached_keys = 0).starts_with("max_cached_keys"));
        let e = serde_json::from_str::<Config>(r#"{"halflife": "1h"}"#).unwrap_err();
        assert!(e.to_string().contains("halflife"), "{e}");
        let e = serde_json::from_str::<Config>(r#"{"average": "median"}"#).unwrap_err();
        assert!(e.to_string().contains("median"), "{e}");
    }

    // ------------------------------------------------------------------ reference model

    /// Brute force: the same ordering as the processor (see `plan`), then for every released
    /// quote the average of all earlier quotes computed from scratch.
    fn reference(
        c: &Config,
        quotes: &[AssetPrice],
    ) -> (Vec<(usize, BelowAverageEvent)>, Vec<usize>) {
        let (late, symbols) = plan(quotes, c.allowed_lateness.0);
        let hundred = Decimal::ONE_HUNDRED;
        let mut out = Vec::new();
        for (symbol, list) in symbols {
            let mut side = Side::Unknown;
            for (k, &(i, released)) in list.iter().enumerate() {
                let Some(released_at) = released else {
                    continue;
                };
                let q = &quotes[i];
                let now = q.event_time;
                let history: Vec<&AssetPrice> =
                    list[..k].iter().map(|&(j, _)| &quotes[j]).collect();
                let (mean, samples) = match c.average {
                    Average::Sma => {
                        let inside: Vec<Decimal> = history
                            .iter()
                            .filter(|o| o.event_time >= now - c.window.0)
                            .map(|o| o.price)
                            .collect();
                        let n = inside.len() as u64;
                        let sum: Decimal = inside.iter().sum();
                        (
                            if n == 0 {
                                None
                            } else {
                                Some(sum / Decimal::from(n))
                            },
                            n,
                        )
                    }
                    Average::Ewma => {
                        // Weights relative to the newest earlier quote (the common factor
                        // 0.5^((now - newest) / h) cancels): Σw >= 1 keeps Decimal's 28
                        // places meaningful after long gaps.
                        let h = Decimal::from(c.half_life.0);
                        let newest = history.last().map_or(now, |o| o.event_time);
                        let mut num = Decimal::ZERO;
                        let mut den = Decimal::ZERO;
                        for o in &history {
                            let x = LN_HALF * Decimal::from(newest - o.event_time) / h;
                            let w = x.checked_exp().unwrap_or(Decimal::ZERO);
                            num += w * o.price;
                            den += w;
                        }
                        let n = history.len() as u64;
                        (if den.is_zero() { None } else { Some(num / den) }, n)
                    }
                };
                let Some(mean) = mean else { continue };
                let may_emit = samples >= c.min_samples;
                let average = mean.round_dp_with_strategy(
                    8,
                    rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                );
                let below = q.price < average;
                let kind = match side {
                    Side::Unknown => {
                        if !below {
                            side = Side::Above;
                        }
                        None
                    }
                    Side::Above => {
                        if below && (average - q.price) * hundred >= c.min_deviation_pct.0 * average
                        {
                            if may_emit {
                                side = Side::Below;
                                Some(CrossingKind::Below)
                            } else {
                                side = Side::Unknown;
                                None
                            }
                        } else {
                            None
                        }
                    }
                    Side::Below => {
                        if below {
                            None
                        } else {
                            side = Side::Above;
                            c.emit_recovered.then_some(CrossingKind::Recovered)
                        }
                    }
                };
                if let Some(kind) = kind.filter(|_| may_emit) {
                    let name = if kind == CrossingKind::Below {
                        "below"
                    } else {
                        "recovered"
                    };
                    out.push((
                        released_at,
                        k,
                        BelowAverageEvent {
                            event_id: format!("{}/{name}", q.event_id),
                            symbol: symbol.clone(),
                            kind,
                            price: q.price,
                            average,
                            deviation_pct: ((q.price - average) * hundred / average)
                                .round_dp_with_strategy(
                                    4,
                                    rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                                ),
                            samples: samples as i64,
                            method: match c.average {
                                Average::Sma => AverageMethod::Sma,
                                Average::Ewma => AverageMethod::Ewma,
                            },
                            event_time: now,
                            quote_event_id: q.event_id.clone(),
                        },
                    ));
                }
            }
        }
        out.sort_by_key(|(at, k, _)| (*at, *k));
        (out.into_iter().map(|(at, _, e)| (at, e)).collect(), late)
    }

    fn flatten(
        results: &[Result<Vec<BelowAverageEvent>, Rejection>],
    ) -> (Vec<(usize, BelowAverageEvent)>, Vec<usize>) {
        let mut out = Vec::new();
        let mut late = Vec::new();
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(list) => out.extend(list.iter().cloned().map(|e| (i, e))),
                Err(rej) => {
                    assert_eq!(rej.reason, "late");
                    late.push(i);
                }
            }
        }
        (out, late)
    }

    fn arb_config() -> impl Strategy<Value = Config> {
        (
            prop::sample::select(vec![Average::Sma, Average::Ewma]),
            prop::sample::select(vec![10_000i64, 60_000, 300_000]),
            prop::sample::select(vec![5_000i64, 60_000, 600_000]),
            prop::sample::select(vec![1u64, 3, 10]),
            prop::sample::select(vec!["0", "0.5", "2"]),
            any::<bool>(),
            prop::sample::select(vec![0i64, 5_000, 30_000]),
        )
            .prop_map(
                |(average, window, half_life, min_samples, dev, rec, late)| Config {
                    average,
                    window: DurationMs(window),
                    half_life: DurationMs(half_life),
                    min_samples,
                    min_deviation_pct: ConfigDecimal(Decimal::from_str(dev).unwrap()),
                    emit_recovered: rec,
                    allowed_lateness: DurationMs(late),
                    idle_timeout: None,
                    max_cached_keys: 100_000,
                },
            )
    }

    #[test]
    fn generators_cover_the_interesting_cases() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (mut below, mut recovered, mut late, mut ewma) = (0, 0, 0, 0);
        for _ in 0..200 {
            let c = arb_config().new_tree(&mut runner).unwrap().current();
            let raw = arb_raw().new_tree(&mut runner).unwrap().current();
            let quotes = build_series(&raw, c.allowed_lateness.0);
            let (out, rejected) = reference(&c, &quotes);
            below += out
                .iter()
                .filter(|(_, e)| e.kind == CrossingKind::Below)
                .count();
            recovered += out
                .iter()
                .filter(|(_, e)| e.kind == CrossingKind::Recovered)
                .count();
            ewma += out
                .iter()
                .filter(|(_, e)| e.method == AverageMethod::Ewma)
                .count();
            late += rejected.len();
        }
        assert!(
            below > 300 && recovered > 100,
            "below {below}, recovered {recovered}"
        );
        assert!(ewma > 100 && late > 200, "ewma {ewma}, late {late}");
    }

    #[test]
    fn integer_mean_rounds_half_up_at_8_places() {
        // 1.00000001 / 2 = 0.500000005 -> 0.50000001.
        let mean = Mean::Units {
            sum: 100_000_001,
            samples: 2,
        };
        assert_eq!(mean.average().to_string(), "0.50000001");
        assert!(mean.is_below(d("0.5")));
        assert!(!mean.is_below(d("0.50000001")));
        // 1.00000001 / 3 = 0.33333333666.. -> 0.33333334.
        let mean = Mean::Units {
            sum: 100_000_001,
            samples: 3,
        };
        assert_eq!(mean.average().to_string(), "0.33333334");
        assert!(mean.is_below(d("0.33333333")));
        assert!(!mean.is_below(d("0.33333334")));
        // EWMA form at the midpoint: 2.500000005 * 2 / 2 -> 2.50000001.
        let ratio = |sum: &str, weight: &str| Mean::Ratio {
            weighted_sum: Fixed::from_decimal(d(sum), 8),
            weight: Fixed::from_decimal(d(weight), 0),
        };
        let mean = ratio("5.00000001", "2");
        assert_eq!(mean.average().to_string(), "2.50000001");
        assert!(mean.is_below(d("2.5")));
        assert!(!mean.is_below(d("2.50000001")));
        let mean = ratio("5.000000009", "2");
        assert_eq!(mean.average().to_string(), "2.50000000");
        assert!(!mean.is_below(d("2.5")));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The integer SMA path is the same as dividing in Decimal and rounding.
        #[test]
        fn integer_mean_matches_decimal_division(
            sum in 1i128..10_000_000_000_000_000_000,
            samples in 1u64..2_000_000,
            price in 1i64..i64::MAX,
        ) {
            let units = Mean::Units { sum, samples };
            let value = Mean::Value(
                Decimal::from_i128_with_scale(sum, 8) / Decimal::from(samples),
            );
            prop_assert_eq!(units.average(), value.average());
            let price = Decimal::new(price % 100_000_000_000_000, 8);
            prop_assert_eq!(units.is_below(price), value.is_below(price));
            let near = units.average() - Decimal::new(1, 8);
            prop_assert_eq!(units.is_below(near), value.is_below(near));
            prop_assert!(!units.is_below(units.average()));
        }

        /// The EWMA comparison without a division agrees with dividing and rounding.
        #[test]
        fn ratio_mean_matches_decimal_division(
            weight in 1_000_000_000_000_000_000u64..u64::MAX,
            mean_units in 1i64..100_000_000_000_000,
            noise in -10_000_000i64..=10_000_000,
            offset in -3i64..=3,
        ) {
            // weight in [1, 18.4] with 18 places; weighted_sum = mean * weight (+ noise).
            let weight = Decimal::from_i128_with_scale(i128::from(weight), 18);
            let mean = Decimal::new(mean_units, 8) + Decimal::new(noise, 15);
            let ratio = Mean::Ratio {
                weighted_sum: Fixed::from_decimal(mean * weight, 8),
                weight: Fixed::from_decimal(weight, 0),
            };
            let value = Mean::Value(mean * weight / weight);
            prop_assert_eq!(ratio.average(), value.average());
            let price = ratio.average() + Decimal::new(offset, 8);
            prop_assert_eq!(ratio.is_below(price), value.is_below(price), "price {}", price);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// EWMA on irregular millisecond times and 8-place prices (the generic series is on a
        /// 2.5 s grid in cents) against the reference's weights computed from scratch with
        /// Decimal `exp`. A stream spans at most 40 half-lives: the reference keeps ~28
        /// significant digits, so a quote weighing less than ~10^-17 can move the mean off an
        /// exact rounding midpoint (two equal-time quotes) by less than the reference resolves,
        /// and there the fixed-point sums are the more precise of the two (found by this test
        /// with 78 half-lives). Longer gaps are covered by `matches_brute_force_reference`.
        #[test]
        fn ewma_matches_reference_on_irregular_quotes(
            half_life in prop::sample::select(vec![7i64, 977, 60_000, 3_600_000]),
            steps in prop::collection::vec(
                (0i64..400, -3_000_000i64..=3_000_000, 0u8..4),
                1..100,
            ),
        ) {
            let c = Config {
                average: Average::Ewma,
                half_life: DurationMs(half_life),
                min_samples: 1,
                emit_recovered: true,
                allowed_lateness: DurationMs(0),
                ..Config::default()
            };
            let mut time = T0;
            let mut units = 10_000_000_000i64;
            let quotes: Vec<AssetPrice> = steps
                .iter()
                .enumerate()
                .map(|(i, &(permille, mv, kind))| {
                    // Up to 0.4 half-lives per step; a quarter of the steps keep the time.
                    if kind > 0 {
                        time += half_life * permille / 1000 + i64::from(kind) - 1;
                    }
                    units = (units + mv).max(1);
                    quote(&format!("e{i}"), "X", &Decimal::new(units, 8).to_string(), time)
                })
                .collect();
            let mut p = BelowAverageProcessor::new(c.clone());
            let got = flatten(&run(&mut p, &NoState, &quotes));
            let want = reference(&c, &quotes);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn matches_brute_force_reference(c in arb_config(), raw in arb_raw()) {
            let quotes = build_series(&raw, c.allowed_lateness.0);
            let mut p = BelowAverageProcessor::new(c.clone());
            let got = flatten(&run(&mut p, &NoState, &quotes));
            let want = reference(&c, &quotes);
            prop_assert_eq!(got, want);
        }

        /// Flushes, crashes (replaying what was not committed) and eviction at random points
        /// give the same committed outputs and the same final store as one uninterrupted run
        /// (in particular no SMA chunk is leaked or lost).
        #[test]
        fn stop_restore_compare(
            c in arb_config(),
            raw in arb_raw(),
            actions in prop::collection::vec(0u8..10, 120),
        ) {
            let quotes = build_series(&raw, c.allowed_lateness.0);
            let mut single = BelowAverageProcessor::new(c.clone());
            let mut single_store = MemoryState::new();
            let expected = run(&mut single, &single_store, &quotes);
            single.flush(&mut single_store);

            let small = Config { max_cached_keys: 1, ..c.clone() };
            let mut store = MemoryState::new();
            let mut p = BelowAverageProcessor::new(small.clone());
            let mut committed = Vec::new();
            let mut pending = Vec::new();
            let mut i = 0;
            let mut steps = 0;
            while i < quotes.len() {
                pending.push(step(&mut p, &store, i as i64, quotes[i].clone()));
                i += 1;
                match actions.get(steps).copied().unwrap_or(9) {
                    0..=2 => {
                        p.flush(&mut store);
                        committed.append(&mut pending);
                    }
                    3 => {
                        i -= pending.len();
                        pending.clear();
                        p = BelowAverageProcessor::new(small.clone());
                    }
                    _ => {}
                }
                steps += 1;
            }
            p.flush(&mut store);
            committed.append(&mut pending);
            prop_assert_eq!(committed, expected);
            prop_assert_eq!(store, single_store);
        }
    }
}
