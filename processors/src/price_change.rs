//! Price change: alert when a symbol's price moves at least `threshold_pct` inside a trailing
//! event-time window.
//!
//! # Parameters (`[processors.price-change.params]` in topology.toml)
//! | key                | default  | meaning                                                    |
//! |--------------------|----------|------------------------------------------------------------|
//! | `threshold_pct`    | `10`     | minimum move in percent, `> 0`, `<= 10000`, ≤ 4 decimals   |
//! | `window`           | `"5m"`   | trailing event-time window, `> 0`                          |
//! | `direction`        | `"rise"` | `"rise"`, `"fall"` or `"both"`                             |
//! | `cooldown`         | window   | quiet period per symbol and direction after an alert       |
//! | `allowed_lateness` | `"30s"`  | how far behind the newest quote a quote may arrive         |
//! | `idle_timeout`     | lateness | wall-clock wait before a quiet symbol's held quotes count  |
//! | `max_cached_keys`  | `100000` | symbols kept in memory after a flush (others reload)       |
//!
//! # Semantics
//! Everything is per symbol and in **event time**; arrival order only decides what is late.
//!
//! **Ordering and lateness.** Let `max` be the greatest event time among the symbol's accepted
//! quotes and `watermark = max - allowed_lateness`. A quote with `event_time < watermark` is late:
//! it is rejected with reason `late` (the runtime dead-letters it), counted in
//! [`PriceChangeProcessor::late_quotes`], and changes nothing. Accepted quotes wait in a small
//! buffer ordered by `(event_time, arrival)` and are *released* once `event_time <= watermark`.
//! No quote accepted later can sort before a released one, so released quotes form exactly the
//! symbol's accepted quotes sorted by event time (ties in arrival order): every quote is evaluated
//! as if all of them had arrived in event-time order. The price of that exactness is latency: an
//! alert for a quote at `t` is emitted when the first quote with `event_time >= t +
//! allowed_lateness` arrives for that symbol (with `allowed_lateness = "0s"` at once).
//!
//! **Quiet symbols.** A symbol that stops quoting (a halt, the end of the session) would keep its
//! last quotes, and their alerts, held back for ever. So in live runs the runtime ticks the wall
//! clock ([`Tick::WallClock`]): once a symbol has had no quote for `idle_timeout` of wall-clock
//! time (default and upper bound: `allowed_lateness`), its held quotes are released. That moves
//! its watermark up to its newest event time: a quote older than that arriving afterwards is
//! `late`. Replays never see the wall clock; at the end of their range ([`Tick::EndOfInput`])
//! they release whatever is still held, so two replays give the same outputs. Held quotes live in
//! memory until released, and in the state with their symbol; [`HELD_TABLE`] lists the symbols
//! holding quotes per input partition, so after a restart (or a rebalance) the partition's
//! resume ([`Processor::on_resume`]) loads them and the wall-clock tick releases them
//! `idle_timeout` after the resume if their symbol stays quiet.
//!
//! **Window.** When quote `q` (time `t`, price `p`) is released, its window holds every released
//! quote of the symbol with `t - window <= event_time <= t` up to and including `q`. Both ends
//! are inclusive: with the default 5 minutes, a reference exactly 5 minutes old still counts,
//! 4m59s counts, 5m01s does not. The window is kept with monotonic deques (amortised O(1) per
//! quote): the lowest price (for `rise`) and the highest (for `fall`); when several quotes share
//! that price, the most recent one is the reference.
//!
//! **Alert condition.** Rise: `p >= low * (1 + threshold_pct / 100)`, i.e. `(p - low) / low *
//! 100 >= threshold_pct`, evaluated exactly in decimal arithmetic. Fall: `p <= high * (1 -
//! threshold_pct / 100)`. With `both`, the two are checked independently and one quote may
//! raise a rise and a fall alert (rise first).
//!
//! **Cooldown.** After an alert in a direction with published change `c` (rounded as below) at
//! time `t_a`, a later candidate in that direction at time `t` with `t - t_a < cooldown` is
//! emitted only if its exact change magnitude is at least `|c| + threshold_pct` (another full
//! step); every emitted alert restarts the cooldown from its own time and change. From
//! `t_a + cooldown` on, the plain threshold applies again. `cooldown = "0s"` disables it.
//!
//! **Output.** [`PriceAlert`]: `from_*` is the reference quote, `to_*` the quote that triggered
//! it, `change_pct = (to - from) / from * 100` rounded half away from zero to exactly
//! [`PERCENT_SCALE`] places (`10.0100`; negative for a fall), `threshold_pct` with the same
//! 4 places, prices as received, `window_start = t - window`, `window_end = t`, `alert_id = "<to_event_id>/rise"` or `"/fall"` (deterministic: a
//! replay gives the same id). Every alert is also written in `flush` to the view
//! [`views::PRICE_ALERTS`] under [`views::alert_key`]`(symbol, to_time, alert_id)`, value = JSON of
//! the alert.
//!
//! **Hot path.** One hash lookup per quote (FxHash of the symbol into a vector of slots), no
//! allocation (the quote's id moves from the input into the buffer and the deque; with `both`
//! it is cloned once), and one same-scale decimal comparison per direction: the alert level
//! `extreme * (1 ± threshold_pct / 100)` is cached while the window's extreme stays the same,
//! rounded outward to 8 places (exact, since prices have at most 8).
//!
//! **Input validation.** `price` must satisfy `0 < price < 10^12` with at most
//! [`PRICE_SCALE`] decimal places (the Avro `decimal(20, 8)`); otherwise the quote is rejected
//! with reason `invalid_price`. These bounds make every product above exact.
//!
//! # State
//! Table [`SYMBOLS_TABLE`] (`price-change/symbols`), key = symbol bytes, value = postcard of
//! the symbol's state: newest accepted event time, the reorder buffer (quotes within
//! `allowed_lateness` of the newest), the two monotonic deques (quotes inside the window only),
//! and the time and change of the last alert per direction. It is written for every symbol
//! touched since the previous flush, so a fresh processor over the flushed state continues
//! exactly where the old one stopped: no window is lost and no alert is emitted twice. State that
//! cannot be decoded is replaced by an empty state for that symbol and counted in
//! [`PriceChangeProcessor::state_errors`]. If `direction` is changed between runs, a deque that
//! was not maintained before starts empty and fills within one window.

use crate::config::{ConfigDecimal, DurationMs};
use crate::events::{AssetPrice, Direction, PriceAlert, PERCENT_SCALE, PRICE_SCALE};
use crate::keyed::{self as shared, Cache, Quote, Reorder};
use crate::{views, Context, Millis, Processor, Rejection, Resume, StateReader, StateWriter, Tick};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Private state table: key = symbol, value = postcard of the symbol's window state.
pub const SYMBOLS_TABLE: &str = "price-change/symbols";

/// Private index of the symbols holding quotes back: key = `<topic>/<partition> \0 symbol`,
/// empty value. Written when a symbol starts or stops holding quotes, read when the runtime
/// resumes a partition ([`Processor::on_resume`]), so a quiet symbol's held quotes are released
/// after a restart too.
pub const HELD_TABLE: &str = "price-change/held";

/// Largest accepted `threshold_pct`.
const MAX_THRESHOLD_PCT: i64 = 10_000;

/// Which moves raise alerts (`direction` in topology.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Directions {
    /// Only rises (the business rule's default).
    #[default]
    Rise,
    /// Only falls.
    Fall,
    /// Rises and falls, checked independently.
    Both,
}

/// Parameters of the price change processor, read from `[processors.<name>.params]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Minimum move in percent (default 10).
    pub threshold_pct: ConfigDecimal,
    /// Trailing event-time window (default 5 minutes).
    pub window: DurationMs,
    /// Which moves alert (default rise).
    pub direction: Directions,
    /// Quiet period after an alert, per direction; `None` means "same as `window`".
    pub cooldown: Option<DurationMs>,
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
            threshold_pct: ConfigDecimal(Decimal::TEN),
            window: DurationMs(5 * 60_000),
            direction: Directions::Rise,
            cooldown: None,
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
        let t = self.threshold_pct.0;
        if t <= Decimal::ZERO || t > Decimal::from(MAX_THRESHOLD_PCT) {
            return Err(format!(
                "threshold_pct must be > 0 and <= {MAX_THRESHOLD_PCT}, got {t}"
            ));
        }
        if t.normalize().scale() > PERCENT_SCALE {
            return Err(format!(
                "threshold_pct must have at most {PERCENT_SCALE} decimal places, got {t}"
            ));
        }
        if self.window.0 <= 0 {
            return Err(format!("window must be > 0, got {}", self.window));
        }
        if let Some(c) = self.cooldown {
            if c.0 < 0 {
                return Err(format!("cooldown must be >= 0, got {c}"));
            }
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

/// Time and published magnitude of the last alert in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct LastAlert {
    time: Millis,
    #[serde(with = "shared::dec_bytes")]
    change_abs: Decimal,
}

/// Everything the processor keeps per symbol (persisted with postcard).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SymbolState {
    /// Accepted quotes not yet released, plus the newest accepted event time.
    reorder: Reorder,
    /// Monotonic deque for rises: prices strictly increasing from front (the window minimum).
    lows: VecDeque<Quote>,
    /// Monotonic deque for falls: prices strictly decreasing from front (the window maximum).
    highs: VecDeque<Quote>,
    last_rise: Option<LastAlert>,
    last_fall: Option<LastAlert>,
    /// Cache of `lows[0].price * rise_factor` rounded up to 8 places; not persisted (derived).
    #[serde(skip)]
    rise_level: Option<Decimal>,
    /// Cache of `highs[0].price * fall_factor` rounded down to 8 places; not persisted.
    #[serde(skip)]
    fall_level: Option<Decimal>,
}

impl shared::Held for SymbolState {
    fn reorder(&mut self) -> &mut Reorder {
        &mut self.reorder
    }
}

/// Derived parameters used on the hot path.
#[derive(Debug, Clone)]
struct Params {
    threshold: Decimal,
    rise_factor: Decimal,
    fall_factor: Decimal,
    window: Millis,
    cooldown: Millis,
    lateness: Millis,
    idle: Millis,
    rise: bool,
    fall: bool,
    max_cached_keys: usize,
}

/// The price change processor: `asset-prices` in, `price-alerts` out. See the module docs.
#[derive(Debug)]
pub struct PriceChangeProcessor {
    params: Params,
    cache: Cache<SymbolState>,
    views: Vec<PriceAlert>,
    late: u64,
    state_errors: u64,
}

impl PriceChangeProcessor {
    /// A processor with `config` (call [`Config::validate`] first; out-of-range values are
    /// clamped to something harmless rather than rejected here).
    pub fn new(config: Config) -> Self {
        // Shown with PERCENT_SCALE places in alerts; validate() allows no more than that.
        let threshold = shared::round_to(config.threshold_pct.0, PERCENT_SCALE);
        let pct = threshold / Decimal::ONE_HUNDRED;
        let window = config.window.0.max(1);
        Self {
            params: Params {
                threshold,
                rise_factor: Decimal::ONE + pct,
                fall_factor: Decimal::ONE - pct,
                window,
                cooldown: config.cooldown.map_or(window, |c| c.0.max(0)),
                lateness: config.allowed_lateness.0.max(0),
                idle: shared::idle(config.allowed_lateness, config.idle_timeout),
                rise: config.direction != Directions::Fall,
                fall: config.direction != Directions::Rise,
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

    /// Symbols whose stored state could not be decoded and was started afresh.
    pub fn state_errors(&self) -> u64 {
        self.state_errors
    }

    /// Symbols currently held in memory.
    pub fn cached_symbols(&self) -> usize {
        self.cache.len()
    }
}

impl Processor for PriceChangeProcessor {
    type Input = AssetPrice;
    type Output = PriceAlert;

    fn process(
        &mut self,
        ctx: &mut Context<'_, PriceAlert>,
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
            release(params, &symbol, state, quote, ctx, &mut self.views);
        }
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Context<'_, PriceAlert>, tick: Tick<'_>) {
        let Some(arrived_by) = shared::release_due(tick, self.params.idle) else {
            return;
        };
        let params = &self.params;
        let views = &mut self.views;
        self.cache.visit(|symbol, state| {
            if state.reorder.held_since().is_none_or(|t| t > arrived_by) {
                return false;
            }
            state.reorder.release_all(params.lateness);
            while let Some(quote) = state.reorder.pop_ready(params.lateness) {
                release(params, symbol, state, quote, ctx, views);
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
                changes.put(SYMBOLS_TABLE, symbol.as_bytes(), &shared::encode(state));
            });
        for alert in self.views.drain(..) {
            views::materialize(changes, &alert);
        }
        self.cache.evict(self.params.max_cached_keys, |s| {
            s.reorder.held_since().is_some()
        });
    }
}

/// Apply one released quote (in event-time order) to the window and emit its alerts.
fn release(
    params: &Params,
    symbol: &str,
    state: &mut SymbolState,
    quote: Quote,
    ctx: &mut Context<'_, PriceAlert>,
    views: &mut Vec<PriceAlert>,
) {
    let start = quote.time.saturating_sub(params.window);
    let (for_lows, for_highs) = match (params.rise, params.fall) {
        (true, true) => (Some(quote.clone()), Some(quote)),
        (true, false) => (Some(quote), None),
        (false, _) => (None, Some(quote)),
    };
    if let Some(quote) = for_lows {
        let lows = &mut state.lows;
        let before = lows.len();
        while lows.front().is_some_and(|q| q.time < start) {
            lows.pop_front();
        }
        let mut front_changed = lows.len() != before;
        while lows.back().is_some_and(|q| q.price >= quote.price) {
            lows.pop_back();
        }
        lows.push_back(quote);
        front_changed |= lows.len() == 1;
        if front_changed {
            state.rise_level = None;
        }
        if let (Some(from), Some(to)) = (lows.front(), lows.back()) {
            // `lows` is strictly increasing, so with more than one entry `from.price < to.price`.
            // Prices have at most 8 places, so `to >= x` exactly when `to >= ceil8(x)`.
            let level = *state.rise_level.get_or_insert_with(|| {
                level8(
                    from.price * params.rise_factor,
                    RoundingStrategy::ToPositiveInfinity,
                )
            });
            if lows.len() > 1 && to.price >= level {
                if let Some(alert) = decide(
                    params,
                    &mut state.last_rise,
                    Direction::Rise,
                    symbol,
                    from,
                    to,
                    start,
                ) {
                    emit(ctx, views, alert);
                }
            }
        }
    }
    if let Some(quote) = for_highs {
        let highs = &mut state.highs;
        let before = highs.len();
        while highs.front().is_some_and(|q| q.time < start) {
            highs.pop_front();
        }
        let mut front_changed = highs.len() != before;
        while highs.back().is_some_and(|q| q.price <= quote.price) {
            highs.pop_back();
        }
        highs.push_back(quote);
        front_changed |= highs.len() == 1;
        if front_changed {
            state.fall_level = None;
        }
        if let (Some(from), Some(to)) = (highs.front(), highs.back()) {
            // `to <= x` exactly when `to <= floor8(x)`.
            let level = *state.fall_level.get_or_insert_with(|| {
                level8(
                    from.price * params.fall_factor,
                    RoundingStrategy::ToNegativeInfinity,
                )
            });
            if highs.len() > 1 && to.price <= level {
                if let Some(alert) = decide(
                    params,
                    &mut state.last_fall,
                    Direction::Fall,
                    symbol,
                    from,
                    to,
                    start,
                ) {
                    emit(ctx, views, alert);
                }
            }
        }
    }
}

/// `value` rounded with `strategy` to exactly [`PRICE_SCALE`] places, so that comparing it with
/// a price of that scale is a plain integer comparison.
fn level8(value: Decimal, strategy: RoundingStrategy) -> Decimal {
    let mut level = value.round_dp_with_strategy(PRICE_SCALE, strategy);
    level.rescale(PRICE_SCALE);
    level
}

fn emit(ctx: &mut Context<'_, PriceAlert>, views: &mut Vec<PriceAlert>, alert: PriceAlert) {
    views.push(alert.clone());
    ctx.emit(alert);
}

/// Apply the cooldown to a move that passed the threshold; build the alert if it survives.
fn decide(
    params: &Params,
    last: &mut Option<LastAlert>,
    direction: Direction,
    symbol: &str,
    from: &Quote,
    to: &Quote,
    start: Millis,
) -> Option<PriceAlert> {
    if let Some(prev) = *last {
        if to.time.saturating_sub(prev.time) < params.cooldown {
            // Inside the cooldown: the move must reach the previous change plus a full step,
            // |to - from| * 100 >= (|c| + threshold) * from. The left side is below 10^14; if
            // the right side overflows it is certainly larger.
            let moved = match direction {
                Direction::Rise => to.price - from.price,
                Direction::Fall => from.price - to.price,
            };
            let reached = (prev.change_abs + params.threshold)
                .checked_mul(from.price)
                .is_some_and(|needed| moved * Decimal::ONE_HUNDRED >= needed);
            if !reached {
                return None;
            }
        }
    }
    let change_pct = percent_change(from.price, to.price);
    *last = Some(LastAlert {
        time: to.time,
        change_abs: change_pct.abs(),
    });
    let suffix = match direction {
        Direction::Rise => "rise",
        Direction::Fall => "fall",
    };
    Some(PriceAlert {
        alert_id: format!("{}/{suffix}", to.id),
        symbol: symbol.to_string(),
        direction,
        from_price: from.price,
        from_time: from.time,
        from_event_id: from.id.clone(),
        to_price: to.price,
        to_time: to.time,
        to_event_id: to.id.clone(),
        change_pct,
        threshold_pct: params.threshold,
        window_start: start,
        window_end: to.time,
    })
}

/// `(to - from) / from * 100`, rounded half away from zero to exactly [`PERCENT_SCALE`] places.
/// `from > 0` and both below 10^12 with at most 8 places (validated), so nothing overflows.
fn percent_change(from: Decimal, to: Decimal) -> Decimal {
    shared::round_to((to - from) * Decimal::ONE_HUNDRED / from, PERCENT_SCALE)
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

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn config(f: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::default();
        f(&mut c);
        c.validate().unwrap();
        c
    }

    fn alerts(results: Vec<Result<Vec<PriceAlert>, Rejection>>) -> Vec<PriceAlert> {
        results.into_iter().flat_map(|r| r.unwrap()).collect()
    }

    // ------------------------------------------------------------------ scenarios

    /// A quote held back when the checkpoint was taken is found again by the partition's resume
    /// and released by the wall clock `idle_timeout` after it, with no new quote; a partition
    /// that did not hold it finds nothing; once released, the held index forgets the symbol.
    #[test]
    fn a_held_quote_is_released_after_a_restart_without_new_quotes() {
        use crate::testkit::{step_at, tick};
        use crate::{Resume, Tick};
        let cfg = config(|c| c.idle_timeout = Some(DurationMs(10_000)));
        let mut state = MemoryState::new();
        let mut p = PriceChangeProcessor::new(cfg.clone());
        let arrived = 1_000_000;
        step_at(&mut p, &state, 1, quote("a", "HALT", "100", T0), arrived).unwrap();
        step_at(
            &mut p,
            &state,
            2,
            quote("b", "HALT", "112", T0 + M),
            arrived,
        )
        .unwrap();
        p.flush(&mut state);
        assert_eq!(state.table(HELD_TABLE).len(), 1, "HALT holds its quote");

        let resume = |partition| Resume {
            topic: "asset-prices",
            partition,
            processing_time: arrived + 60_000,
        };
        let mut elsewhere = PriceChangeProcessor::new(cfg.clone());
        elsewhere.on_resume(&state, resume(1));
        assert_eq!(elsewhere.cached_symbols(), 0);

        let mut restarted = PriceChangeProcessor::new(cfg);
        restarted.on_resume(&state, resume(0));
        assert_eq!(restarted.cached_symbols(), 1);
        let now = arrived + 60_000 + 9_999;
        assert!(tick(&mut restarted, &state, Tick::WallClock(now), now).is_empty());
        let now = arrived + 60_000 + 10_000;
        let out = tick(&mut restarted, &state, Tick::WallClock(now), now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to_event_id, "b");
        restarted.flush(&mut state);
        assert!(state.table(HELD_TABLE).is_empty());
    }

    /// A symbol that rises and goes quiet: its last quote waits for `allowed_lateness` of event
    /// time that never comes; the wall-clock tick releases it once it waited `idle_timeout`
    /// (stream time alone does not), and the end of input releases it in replays.
    #[test]
    fn a_quiet_symbols_held_quote_is_released_by_the_wall_clock() {
        use crate::testkit::{step_at, tick};
        use crate::Tick;
        let cfg = config(|c| c.idle_timeout = Some(DurationMs(10_000)));
        let state = MemoryState::new();
        let mut p = PriceChangeProcessor::new(cfg.clone());
        let arrived = 1_000_000;
        assert!(
            step_at(&mut p, &state, 1, quote("a", "HALT", "100", T0), arrived)
                .unwrap()
                .is_empty()
        );
        assert!(
            step_at(
                &mut p,
                &state,
                2,
                quote("b", "HALT", "112", T0 + M),
                arrived
            )
            .unwrap()
            .is_empty(),
            "held for 30 s of event time"
        );
        let stream = Tick::StreamTime {
            topic: "asset-prices",
            partition: 0,
            time: T0 + 10 * M,
        };
        assert!(tick(&mut p, &state, stream, arrived + 60_000).is_empty());
        assert!(tick(
            &mut p,
            &state,
            Tick::WallClock(arrived + 9_999),
            arrived + 9_999
        )
        .is_empty());
        let out = tick(
            &mut p,
            &state,
            Tick::WallClock(arrived + 10_000),
            arrived + 10_000,
        );
        assert_eq!(ids(&out), vec![("a", "b", "b/rise")]);
        assert!(tick(
            &mut p,
            &state,
            Tick::WallClock(arrived + 20_000),
            arrived + 20_000
        )
        .is_empty());
        // Released up to its newest quote: an older one would sort before it.
        let late = step_at(
            &mut p,
            &state,
            3,
            quote("c", "HALT", "90", T0 + M - 1),
            arrived,
        );
        assert_eq!(late.unwrap_err().reason, "late");
        assert!(step_at(&mut p, &state, 4, quote("d", "HALT", "90", T0 + M), arrived).is_ok());

        // A replay: no wall clock, the end of its input releases what is held.
        let mut replay = PriceChangeProcessor::new(cfg.clone());
        step_at(&mut replay, &state, 1, quote("a", "HALT", "100", T0), T0).unwrap();
        step_at(
            &mut replay,
            &state,
            2,
            quote("b", "HALT", "112", T0 + M),
            T0 + M,
        )
        .unwrap();
        let out = tick(&mut replay, &state, Tick::EndOfInput, T0 + M);
        assert_eq!(ids(&out), vec![("a", "b", "b/rise")]);

        // Without idle_timeout the wait is allowed_lateness (30 s).
        let mut p = PriceChangeProcessor::new(config(|_| {}));
        step_at(&mut p, &state, 1, quote("a", "HALT", "100", T0), arrived).unwrap();
        step_at(
            &mut p,
            &state,
            2,
            quote("b", "HALT", "112", T0 + M),
            arrived,
        )
        .unwrap();
        assert!(tick(&mut p, &state, Tick::WallClock(arrived + 29_999), 0).is_empty());
        assert_eq!(
            tick(&mut p, &state, Tick::WallClock(arrived + 30_000), 0).len(),
            1
        );
    }

    /// Held quotes stay in memory until released, whatever the cache size.
    #[test]
    fn eviction_keeps_symbols_with_held_quotes() {
        use crate::testkit::{step_at, tick};
        use crate::Tick;
        let mut state = MemoryState::new();
        let mut p = PriceChangeProcessor::new(config(|c| c.max_cached_keys = 1));
        step_at(&mut p, &state, 1, quote("a", "HALT", "100", T0), 0).unwrap();
        step_at(&mut p, &state, 2, quote("b", "HALT", "112", T0 + M), 0).unwrap();
        for (i, s) in ["X", "Y", "Z"].into_iter().enumerate() {
            step_at(&mut p, &state, 3 + i as i64, quote(s, s, "1", T0), 0).unwrap();
            p.flush(&mut state);
        }
        let out = tick(&mut p, &state, Tick::EndOfInput, 0);
        assert!(ids(&out).contains(&("a", "b", "b/rise")), "{out:?}");
    }

    #[test]
    fn scenario_rise_within_4m59s_alerts() {
        let mut p = PriceChangeProcessor::new(Config::default());
        let out = run(
            &mut p,
            &NoState,
            &[
                quote("q1", "PETR4", "100.00", T0),
                quote("q2", "PETR4", "110.01", T0 + 4 * M + 59 * S),
                // Moves the watermark (max - 30 s) past q2; itself no alert (window lacks q1).
                quote("q3", "PETR4", "110.01", T0 + 5 * M + 29 * S),
            ],
        );
        assert_eq!(out[0], Ok(vec![]));
        assert_eq!(out[1], Ok(vec![]), "held until the watermark passes q2");
        let expected = PriceAlert {
            alert_id: "q2/rise".to_string(),
            symbol: "PETR4".to_string(),
            direction: Direction::Rise,
            from_price: d("100.00"),
            from_time: T0,
            from_event_id: "q1".to_string(),
            to_price: d("110.01"),
            to_time: T0 + 4 * M + 59 * S,
            to_event_id: "q2".to_string(),
            change_pct: d("10.0100"),
            threshold_pct: d("10"),
            window_start: T0 - S,
            window_end: T0 + 4 * M + 59 * S,
        };
        assert_eq!(out[2], Ok(vec![expected.clone()]));
        let alert = &out[2].as_ref().unwrap()[0];
        assert_eq!(alert.change_pct.to_string(), "10.0100");
        assert_eq!(alert.threshold_pct.to_string(), "10.0000");

        // Without lateness the alert comes with the quote itself.
        let mut p = PriceChangeProcessor::new(config(|c| c.allowed_lateness = DurationMs(0)));
        let out = run(
            &mut p,
            &NoState,
            &[
                quote("q1", "PETR4", "100.00", T0),
                quote("q2", "PETR4", "110.01", T0 + 4 * M + 59 * S),
            ],
        );
        assert_eq!(out, vec![Ok(vec![]), Ok(vec![expected])]);
    }

    #[test]
    fn scenario_same_rise_over_5m01s_does_not_alert() {
        for lateness in [0, 30 * S] {
            let mut p =
                PriceChangeProcessor::new(config(|c| c.allowed_lateness = DurationMs(lateness)));
            let out = run(
                &mut p,
                &NoState,
                &[
                    quote("q1", "PETR4", "100.00", T0),
                    quote("q2", "PETR4", "110.01", T0 + 5 * M + S),
                    quote("q3", "PETR4", "110.01", T0 + 6 * M),
                ],
            );
            assert_eq!(out, vec![Ok(vec![]), Ok(vec![]), Ok(vec![])]);
        }
    }

    #[test]
    fn window_start_is_inclusive_at_exactly_5m() {
        let mut p = PriceChangeProcessor::new(config(|c| c.allowed_lateness = DurationMs(0)));
        let out = alerts(run(
            &mut p,
            &NoState,
            &[
                quote("q1", "X", "100", T0),
                quote("q2", "X", "110", T0 + 5 * M),
                quote("q3", "X", "100", T0 + 20 * M),
                quote("q4", "X", "110", T0 + 25 * M + 1),
            ],
        ));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].alert_id, "q2/rise");
        assert_eq!(out[0].change_pct, d("10.0000"));
        assert_eq!(out[0].window_start, T0);
    }

    #[test]
    fn just_below_threshold_does_not_alert() {
        let mut p = PriceChangeProcessor::new(config(|c| c.allowed_lateness = DurationMs(0)));
        let out = alerts(run(
            &mut p,
            &NoState,
            &[
                quote("q1", "X", "100.00000000", T0),
                quote("q2", "X", "109.99999999", T0 + M),
            ],
        ));
        assert_eq!(out, vec![]);
    }

    // ------------------------------------------------------------------ semantics

    fn immediate(f: impl FnOnce(&mut Config)) -> PriceChangeProcessor {
        PriceChangeProcessor::new(config(|c| {
            c.allowed_lateness = DurationMs(0);
            f(c);
        }))
    }

    fn ids(out: &[PriceAlert]) -> Vec<(&str, &str, &str)> {
        out.iter()
            .map(|a| {
                (
                    a.from_event_id.as_str(),
                    a.to_event_id.as_str(),
                    a.alert_id.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn reference_is_the_window_minimum_latest_among_ties() {
        let mut p = immediate(|_| {});
        let out = alerts(run(
            &mut p,
            &NoState,
            &[
                quote("a", "X", "100", T0),
                quote("b", "X", "95", T0 + S),
                quote("c", "X", "98", T0 + 2 * S),
                quote("e", "X", "95.00", T0 + 3 * S),
                quote("f", "X", "104.5", T0 + 4 * S),
            ],
        ));
        assert_eq!(ids(&out), vec![("e", "f", "f/rise")]);
        assert_eq!(out[0].from_price, d("95.00"));
        assert_eq!(out[0].change_pct, d("10.0000"));
    }

    #[test]
    fn old_minimum_leaves_the_window() {
        let mut p = immediate(|c| c.window = DurationMs(10 * S));
        let out = alerts(run(
            &mut p,
            &NoState,
            &[
                quote("a", "X", "95", T0),
                quote("b", "X", "100", T0 + 5 * S), // 5.26 % over a
                quote("c", "X", "105", T0 + 11 * S), // a left the window: 5 % over b
                quote("d", "X", "110", T0 + 12 * S), // 10 % over b
            ],
        ));
        assert_eq!(ids(&out), vec![("b", "d", "d/rise")]);
    }

    #[test]
    fn fall_and_both_directions() {
        let series = [
            quote("a", "X", "100", T0),
            quote("b", "X", "120", T0 + S),
            quote("c", "X", "108", T0 + 2 * S), // rise 8 % over a, fall 10 % under b
            quote("d", "X", "85", T0 + 3 * S),  // fall 29.17 % under b
        ];
        let mut p = immediate(|c| {
            c.direction = Directions::Fall;
            c.cooldown = Some(DurationMs(0));
        });
        let out = alerts(run(&mut p, &NoState, &series));
        assert_eq!(ids(&out), vec![("b", "c", "c/fall"), ("b", "d", "d/fall")]);
        assert_eq!(out[0].change_pct, d("-10.0000"));
        assert_eq!(out[0].direction, Direction::Fall);
        assert_eq!(out[1].change_pct, d("-29.1667"));

        let mut p = immediate(|c| {
            c.direction = Directions::Both;
            c.cooldown = Some(DurationMs(0));
        });
        let out = alerts(run(&mut p, &NoState, &series));
        assert_eq!(
            ids(&out),
            vec![
                ("a", "b", "b/rise"),
                ("b", "c", "c/fall"),
                ("b", "d", "d/fall")
            ]
        );

        let mut p = immediate(|c| c.cooldown = Some(DurationMs(0)));
        let out = alerts(run(&mut p, &NoState, &series));
        assert_eq!(ids(&out), vec![("a", "b", "b/rise")]);
    }

    #[test]
    fn one_quote_can_raise_and_fall() {
        let mut p = immediate(|c| c.direction = Directions::Both);
        let out = alerts(run(
            &mut p,
            &NoState,
            &[
                quote("a", "X", "200", T0),
                quote("b", "X", "100", T0 + S),     // fall 50 %
                quote("c", "X", "150", T0 + 2 * S), // rise 50 % over b, fall 25 % under a
            ],
        ));
        assert_eq!(
            ids(&out),
            vec![("a", "b", "b/fall"), ("b", "c", "c/rise")],
            "the fall of c is inside the fall cooldown and not a full step beyond 50 %"
        );
    }

    #[test]
    fn cooldown_suppresses_until_a_full_step_or_expiry() {
        let mut p = immediate(|_| {}); // threshold 10 %, window = cooldown = 5 min
        let out = alerts(run(
            &mut p,
            &NoState,
            &[
                quote("a", "X", "100", T0),
                quote("b", "X", "110", T0 + M),        // alert 10 %
                quote("c", "X", "119.99", T0 + 2 * M), // 19.99 %: suppressed
                quote("d", "X", "120", T0 + 3 * M),    // 20 %: a full step, alert
                quote("e", "X", "125", T0 + 4 * M),    // 25 %: suppressed (needs 30 %)
                // Cooldown from d ends at T0 + 8m; a (T0) left the window at T0 + 5m.
                quote("f", "X", "105", T0 + 6 * M),
                quote("g", "X", "116", T0 + 7 * M), // 10.48 % over f, in cooldown: no
                quote("h", "X", "116", T0 + 8 * M), // cooldown over: alert
            ],
        ));
        assert_eq!(
            ids(&out),
            vec![
                ("a", "b", "b/rise"),
                ("a", "d", "d/rise"),
                ("f", "h", "h/rise")
            ]
        );
        assert_eq!(out[1].change_pct, d("20.0000"));
        assert_eq!(out[2].change_pct, d("10.4762"));
    }

    #[test]
    fn symbols_are_independent() {
        let mut p = immediate(|_| {});
        let out = alerts(run(
            &mut p,
            &NoState,
            &[
                quote("a", "X", "100", T0),
                quote("b", "Y", "200", T0 + S),
                quote("c", "X", "111", T0 + 2 * S),
                quote("d", "Y", "210", T0 + 3 * S),
            ],
        ));
        assert_eq!(ids(&out), vec![("a", "c", "c/rise")]);
        assert_eq!(out[0].symbol, "X");
    }

    #[test]
    fn out_of_order_within_lateness_counts_as_in_order() {
        // In order: 100 @0s, 111 @20s -> alert from the 100.
        // Arrival: 111 @20s first, then 100 @0s (20 s late, within 30 s), then 120 @60s.
        let mut p = PriceChangeProcessor::new(Config::default());
        let out = run(
            &mut p,
            &NoState,
            &[
                quote("b", "X", "111", T0 + 20 * S),
                quote("a", "X", "100", T0),
                quote("c", "X", "101", T0 + 60 * S),
            ],
        );
        assert_eq!(out[0], Ok(vec![]));
        assert_eq!(out[1], Ok(vec![]));
        let got = out[2].clone().unwrap();
        assert_eq!(ids(&got), vec![("a", "b", "b/rise")]);
        assert_eq!(got[0].from_time, T0);
        assert_eq!(p.late_quotes(), 0);
    }

    #[test]
    fn late_quote_is_rejected_and_changes_nothing() {
        let series = [
            quote("a", "X", "100", T0),
            quote("b", "X", "104", T0 + 60 * S),
            quote("late", "X", "50", T0 + 29 * S), // watermark 30 s: late by 1 s
            quote("c", "X", "56", T0 + 70 * S),
            quote("d", "X", "111", T0 + 120 * S),
        ];
        let mut p = PriceChangeProcessor::new(Config::default());
        let mut store = MemoryState::new();
        let out = run(&mut p, &store, &series);
        let rejection = out[2].clone().unwrap_err();
        assert_eq!(rejection.reason, "late");
        assert!(rejection.detail.contains("late"), "{}", rejection.detail);
        assert_eq!(p.late_quotes(), 1);
        p.flush(&mut store);

        // Same series without the late quote: same outputs and same state.
        let without: Vec<_> = series
            .iter()
            .filter(|q| q.event_id != "late")
            .cloned()
            .collect();
        let mut q = PriceChangeProcessor::new(Config::default());
        let mut store2 = MemoryState::new();
        let out2 = run(&mut q, &store2, &without);
        q.flush(&mut store2);
        let mut kept = out.clone();
        let _late = kept.remove(2);
        assert_eq!(kept, out2);
        assert_eq!(store, store2);

        // Exactly at the watermark is accepted.
        let mut p = PriceChangeProcessor::new(Config::default());
        let out = run(
            &mut p,
            &NoState,
            &[
                quote("a", "X", "100", T0 + 60 * S),
                quote("b", "X", "1", T0 + 30 * S),
            ],
        );
        assert_eq!(out, vec![Ok(vec![]), Ok(vec![])]);
    }

    #[test]
    fn invalid_prices_are_rejected() {
        let mut p = PriceChangeProcessor::new(Config::default());
        for price in ["0", "-1", "1000000000000", "1.000000001"] {
            let r = step(&mut p, &NoState, 0, quote("a", "X", price, T0)).unwrap_err();
            assert_eq!(r.reason, "invalid_price", "{price}");
        }
        assert!(step(
            &mut p,
            &NoState,
            0,
            quote("a", "X", "999999999999.99999999", T0)
        )
        .is_ok());
        assert_eq!(p.cached_symbols(), 1);
    }

    #[test]
    fn flush_writes_state_and_view_rows() {
        let mut p = immediate(|_| {});
        let mut store = MemoryState::new();
        let out = alerts(run(
            &mut p,
            &store,
            &[quote("a", "X", "100", T0), quote("b", "X", "110", T0 + S)],
        ));
        p.flush(&mut store);
        let rows = store.table(views::PRICE_ALERTS);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].0,
            views::alert_key("X", T0 + S, "b/rise").as_slice()
        );
        let row: PriceAlert = serde_json::from_slice(rows[0].1).unwrap();
        assert_eq!(row, out[0]);
        let json: serde_json::Value = serde_json::from_slice(rows[0].1).unwrap();
        assert_eq!(json["change_pct"], "10.0000");
        assert_eq!(store.table(SYMBOLS_TABLE).len(), 1);
        // A second flush without new input writes nothing new.
        let before = store.clone();
        p.flush(&mut store);
        assert_eq!(store, before);
    }

    #[test]
    fn eviction_keeps_the_most_recent_and_reloads_the_rest() {
        let mut p = PriceChangeProcessor::new(config(|c| {
            c.max_cached_keys = 4;
            c.allowed_lateness = DurationMs(0);
        }));
        let mut store = MemoryState::new();
        for (i, s) in ["A", "B", "C", "D", "E"].iter().enumerate() {
            step(&mut p, &store, i as i64, quote("x", s, "100", T0)).unwrap();
        }
        p.flush(&mut store);
        assert_eq!(p.cached_symbols(), 2);
        // A was evicted; its window reloads and the rise is seen.
        let out = step(&mut p, &store, 9, quote("y", "A", "110", T0 + S)).unwrap();
        assert_eq!(ids(&out), vec![("x", "y", "y/rise")]);
    }

    #[test]
    fn undecodable_state_starts_afresh() {
        let mut store = MemoryState::new();
        store.put(SYMBOLS_TABLE, b"X", &[0xff, 0xff, 0xff]);
        let mut p = immediate(|_| {});
        let out = alerts(run(
            &mut p,
            &store,
            &[quote("a", "X", "100", T0), quote("b", "X", "110", T0 + S)],
        ));
        assert_eq!(ids(&out), vec![("a", "b", "b/rise")]);
        assert_eq!(p.state_errors(), 1);
    }

    #[test]
    fn reorder_buffer_orders_by_time_then_arrival() {
        let mut r = Reorder::default();
        for (t, id) in [(5, "a"), (3, "b"), (5, "c"), (4, "d"), (3, "e")] {
            r.check("X", id, t, 10).unwrap();
            r.push(
                Quote {
                    time: t,
                    price: Decimal::ONE,
                    id: id.to_string(),
                },
                0,
            );
        }
        let order: Vec<_> = r.pending.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(order, vec!["b", "e", "d", "a", "c"]);
        assert_eq!(r.pop_ready(10), None, "watermark -5 releases nothing");
        assert_eq!(r.pop_ready(2).map(|q| q.id), Some("b".to_string()));
        assert_eq!(r.pop_ready(2).map(|q| q.id), Some("e".to_string()));
        assert_eq!(r.pop_ready(2), None, "4 > watermark 3");
        assert_eq!(r.check("X", "z", 2, 2).unwrap_err().reason, "late");
        assert!(r.check("X", "z", 3, 2).is_ok());
    }

    #[test]
    fn state_round_trips_through_postcard() {
        let state = SymbolState {
            lows: VecDeque::from([Quote {
                time: -5,
                price: d("123.45678901"),
                id: "x".to_string(),
            }]),
            last_fall: Some(LastAlert {
                time: 7,
                change_abs: d("12.3400"),
            }),
            ..SymbolState::default()
        };
        let bytes = shared::encode(&state);
        let back: SymbolState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.lows[0].price.to_string(), "123.45678901");
    }

    #[test]
    fn price_units_and_bounds() {
        assert_eq!(shared::units8(d("1.5")), Some(150_000_000));
        assert_eq!(shared::units8(d("-0.00000001")), Some(-1));
        assert_eq!(shared::units8(d("1.000000001")), None);
        assert_eq!(
            level8(d("1.000000001"), RoundingStrategy::ToPositiveInfinity).to_string(),
            "1.00000001"
        );
        assert_eq!(
            level8(d("1.000000009"), RoundingStrategy::ToNegativeInfinity).to_string(),
            "1.00000000"
        );
        assert_eq!(
            level8(d("2"), RoundingStrategy::ToNegativeInfinity).to_string(),
            "2.00000000"
        );
    }

    #[test]
    fn fx_hasher_distinguishes_symbols() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let b = BuildHasherDefault::<shared::FxHasher>::default();
        let symbols = [
            "PETR4", "PETR3", "VALE3", "BTC-BRL", "ETH-BRL", "A", "AA", "ITUB4",
        ];
        let hashes: std::collections::HashSet<u64> =
            symbols.iter().map(|s| b.hash_one(s)).collect();
        assert_eq!(hashes.len(), symbols.len());
    }

    // ------------------------------------------------------------------ config

    #[test]
    fn config_defaults_match_the_issue() {
        let c = Config::default();
        assert_eq!(c.threshold_pct.0, Decimal::TEN);
        assert_eq!(c.window.0, 300_000);
        assert_eq!(c.direction, Directions::Rise);
        assert_eq!(c.cooldown, None);
        assert_eq!(c.allowed_lateness.0, 30_000);
        assert!(c.validate().is_ok());
        let p = PriceChangeProcessor::new(c);
        assert_eq!(
            p.params.cooldown, 300_000,
            "cooldown defaults to the window"
        );
        assert_eq!(p.params.rise_factor, d("1.1"));
        assert!(p.params.rise && !p.params.fall);
    }

    #[test]
    fn config_reads_params() {
        let c: Config = serde_json::from_str(
            r#"{"threshold_pct": "2.5", "window": "10m", "direction": "both",
                "cooldown": "1m", "allowed_lateness": "0s", "max_cached_keys": 10}"#,
        )
        .unwrap();
        assert_eq!(c.threshold_pct.0, d("2.5"));
        assert_eq!(c.window.0, 600_000);
        assert_eq!(c.direction, Directions::Both);
        assert_eq!(c.cooldown, Some(DurationMs(60_000)));
        assert_eq!(c.allowed_lateness.0, 0);
        assert_eq!(c.max_cached_keys, 10);
        let c: Config = serde_json::from_str(r#"{"threshold_pct": 7}"#).unwrap();
        assert_eq!(c.threshold_pct.0, Decimal::from(7));
        assert_eq!(c.window.0, 300_000);
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.threshold_pct = ConfigDecimal(d("-1"))).starts_with("threshold_pct"));
        assert!(bad(|c| c.threshold_pct = ConfigDecimal(d("0"))).starts_with("threshold_pct"));
        assert!(bad(|c| c.threshold_pct = ConfigDecimal(d("10001"))).starts_with("threshold_pct"));
        assert!(bad(|c| c.threshold_pct = ConfigDecimal(d("1.00001"))).starts_with("threshold_pct"));
        assert!(bad(|c| c.window = DurationMs(0)).starts_with("window"));
        assert!(bad(|c| c.cooldown = Some(DurationMs(-1))).starts_with("cooldown"));
        assert!(bad(|c| c.allowed_lateness = DurationMs(-1)).starts_with("allowed_lateness"));
        assert!(bad(|c| c.max_cached_keys = 0).starts_with("max_cached_keys"));

        let e = serde_json::from_str::<Config>(r#"{"treshold_pct": 5}"#).unwrap_err();
        assert!(e.to_string().contains("treshold_pct"), "{e}");
        let e = serde_json::from_str::<Config>(r#"{"direction": "up"}"#).unwrap_err();
        assert!(e.to_string().contains("up"), "{e}");
        let e = serde_json::from_str::<Config>(r#"{"window": "5 parsecs"}"#).unwrap_err();
        assert!(e.to_string().contains("5 parsecs"), "{e}");
    }

    // ------------------------------------------------------------------ reference model

    /// Brute force: per symbol, reject late quotes in arrival order, sort the accepted ones by
    /// (time, arrival), and for each compare with every earlier quote inside the window.
    /// Returns `(input index at which the alert is emitted, alert)` and the late indices.
    fn reference(c: &Config, quotes: &[AssetPrice]) -> (Vec<(usize, PriceAlert)>, Vec<usize>) {
        let lateness = c.allowed_lateness.0;
        let window = c.window.0;
        let cooldown = c.cooldown.unwrap_or(c.window).0;
        let t = c.threshold_pct.0;
        let hundred = Decimal::ONE_HUNDRED;
        let (late, symbols) = plan(quotes, lateness);
        let mut out: Vec<(usize, usize, u8, PriceAlert)> = Vec::new();
        for (symbol, list) in symbols {
            let mut last: [Option<(Millis, Decimal)>; 2] = [None, None];
            for (k, &(i, released)) in list.iter().enumerate() {
                let q = &quotes[i];
                let now = q.event_time;
                let Some(released_at) = released else {
                    continue;
                };
                let in_window: Vec<&AssetPrice> = list[..=k]
                    .iter()
                    .map(|&(j, _)| &quotes[j])
                    .filter(|o| o.event_time >= now - window)
                    .collect();
                for (dir_index, dir) in [Direction::Rise, Direction::Fall].into_iter().enumerate() {
                    let wanted = match dir {
                        Direction::Rise => c.direction != Directions::Fall,
                        Direction::Fall => c.direction != Directions::Rise,
                    };
                    if !wanted {
                        continue;
                    }
                    // The extreme price; among equals the latest.
                    let mut from = in_window[0];
                    for o in &in_window {
                        let better = match dir {
                            Direction::Rise => o.price <= from.price,
                            Direction::Fall => o.price >= from.price,
                        };
                        if better {
                            from = o;
                        }
                    }
                    let moved = match dir {
                        Direction::Rise => q.price - from.price,
                        Direction::Fall => from.price - q.price,
                    };
                    if moved * hundred < t * from.price {
                        continue;
                    }
                    if let Some((at, c_prev)) = last[dir_index] {
                        if now - at < cooldown && moved * hundred < (c_prev + t) * from.price {
                            continue;
                        }
                    }
                    let change = ((q.price - from.price) * hundred / from.price)
                        .round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero);
                    last[dir_index] = Some((now, change.abs()));
                    let name = if dir == Direction::Rise {
                        "rise"
                    } else {
                        "fall"
                    };
                    out.push((
                        released_at,
                        k,
                        dir_index as u8,
                        PriceAlert {
                            alert_id: format!("{}/{name}", q.event_id),
                            symbol: symbol.to_string(),
                            direction: dir,
                            from_price: from.price,
                            from_time: from.event_time,
                            from_event_id: from.event_id.clone(),
                            to_price: q.price,
                            to_time: now,
                            to_event_id: q.event_id.clone(),
                            change_pct: change,
                            threshold_pct: t,
                            window_start: now - window,
                            window_end: now,
                        },
                    ));
                }
            }
        }
        out.sort_by_key(|(at, k, dir, _)| (*at, *k, *dir));
        (out.into_iter().map(|(at, _, _, a)| (at, a)).collect(), late)
    }

    fn flatten(
        results: &[Result<Vec<PriceAlert>, Rejection>],
    ) -> (Vec<(usize, PriceAlert)>, Vec<usize>) {
        let mut alerts = Vec::new();
        let mut late = Vec::new();
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(list) => alerts.extend(list.iter().cloned().map(|a| (i, a))),
                Err(rej) => {
                    assert_eq!(rej.reason, "late");
                    late.push(i);
                }
            }
        }
        (alerts, late)
    }

    fn arb_config() -> impl Strategy<Value = Config> {
        (
            prop::sample::select(vec!["1", "2.5", "5", "10"]),
            prop::sample::select(vec![10_000i64, 60_000, 300_000]),
            prop::sample::select(vec![Directions::Rise, Directions::Fall, Directions::Both]),
            prop::sample::select(vec![None, Some(0i64), Some(20_000), Some(120_000)]),
            prop::sample::select(vec![0i64, 5_000, 30_000]),
        )
            .prop_map(|(t, w, dir, cd, late)| Config {
                threshold_pct: ConfigDecimal(Decimal::from_str(t).unwrap()),
                window: DurationMs(w),
                direction: dir,
                cooldown: cd.map(DurationMs),
                allowed_lateness: DurationMs(late),
                idle_timeout: None,
                max_cached_keys: 100_000,
            })
    }

    /// The generators must produce what the property tests are about: alerts both ways,
    /// cooldown suppressions, out-of-order quotes accepted and late ones rejected.
    #[test]
    fn generators_cover_the_interesting_cases() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (mut rises, mut falls, mut late, mut disordered, mut suppressed) = (0, 0, 0, 0, 0);
        for _ in 0..300 {
            let c = arb_config().new_tree(&mut runner).unwrap().current();
            let raw = arb_raw().new_tree(&mut runner).unwrap().current();
            let quotes = build_series(&raw, c.allowed_lateness.0);
            let (alerts, rejected) = reference(&c, &quotes);
            rises += alerts
                .iter()
                .filter(|(_, a)| a.direction == Direction::Rise)
                .count();
            falls += alerts
                .iter()
                .filter(|(_, a)| a.direction == Direction::Fall)
                .count();
            late += rejected.len();
            disordered += quotes
                .windows(2)
                .filter(|w| w[1].event_time < w[0].event_time && w[0].symbol == w[1].symbol)
                .count();
            let no_cooldown = Config {
                cooldown: Some(DurationMs(0)),
                ..c.clone()
            };
            suppressed += reference(&no_cooldown, &quotes).0.len() - alerts.len();
        }
        assert!(rises > 200 && falls > 200, "rises {rises}, falls {falls}");
        assert!(
            late > 300 && disordered > 500,
            "late {late}, disordered {disordered}"
        );
        assert!(suppressed > 100, "suppressed {suppressed}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn matches_brute_force_reference(c in arb_config(), raw in arb_raw()) {
            let quotes = build_series(&raw, c.allowed_lateness.0);
            let mut p = PriceChangeProcessor::new(c.clone());
            let got = flatten(&run(&mut p, &NoState, &quotes));
            let want = reference(&c, &quotes);
            prop_assert_eq!(got, want);
        }

        /// Flush at random points, crash at random points (losing everything after the last
        /// flush, which the runtime then replays), evict aggressively: the committed outputs
        /// and the final state equal one uninterrupted run.
        #[test]
        fn stop_restore_compare(
            c in arb_config(),
            raw in arb_raw(),
            actions in prop::collection::vec(0u8..10, 120),
        ) {
            let quotes = build_series(&raw, c.allowed_lateness.0);
            let mut single = PriceChangeProcessor::new(c.clone());
            let mut single_store = MemoryState::new();
            let expected = run(&mut single, &single_store, &quotes);
            single.flush(&mut single_store);

            let small = Config { max_cached_keys: 1, ..c.clone() };
            let mut store = MemoryState::new();
            let mut p = PriceChangeProcessor::new(small.clone());
            let mut committed: Vec<Result<Vec<PriceAlert>, Rejection>> = Vec::new();
            let mut pending: Vec<Result<Vec<PriceAlert>, Rejection>> = Vec::new();
            let mut i = 0;
            let mut steps = 0;
            while i < quotes.len() {
                pending.push(step(&mut p, &store, i as i64, quotes[i].clone()));
                i += 1;
                // Each action is used once, so crashes stop after `actions.len()` steps.
                match actions.get(steps).copied().unwrap_or(9) {
                    0..=2 => {
                        p.flush(&mut store);
                        committed.append(&mut pending);
                    }
                    3 => {
                        // Crash: lose the instance and the uncommitted outputs; replay.
                        i -= pending.len();
                        pending.clear();
                        p = PriceChangeProcessor::new(small.clone());
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
