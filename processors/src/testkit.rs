//! Helpers for the tests of the market processors: quotes, a one-record step, whole runs and
//! proptest strategies.

use crate::events::AssetPrice;
use crate::{Context, Millis, Processor, RecordMeta, Rejection, StateReader, Tick};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

/// An arbitrary event-time origin (2023-11-14T22:13:20Z).
pub(crate) const T0: Millis = 1_700_000_000_000;

/// A quote of `symbol` at `price` (decimal string) and event time `time`.
pub(crate) fn quote(id: &str, symbol: &str, price: &str, time: Millis) -> AssetPrice {
    AssetPrice {
        event_id: id.to_string(),
        symbol: symbol.to_string(),
        price: rust_decimal::Decimal::from_str(price).expect("test price"),
        currency: "BRL".to_string(),
        source: "b3".to_string(),
        event_time: time,
    }
}

/// Process one record at `offset`; the emitted outputs or the rejection.
pub(crate) fn step<P: Processor<Input = AssetPrice>>(
    p: &mut P,
    state: &dyn StateReader,
    offset: i64,
    input: AssetPrice,
) -> Result<Vec<P::Output>, Rejection> {
    step_at(p, state, offset, input, 0)
}

/// [`step`] at processing time `now`.
pub(crate) fn step_at<P: Processor<Input = AssetPrice>>(
    p: &mut P,
    state: &dyn StateReader,
    offset: i64,
    input: AssetPrice,
    now: Millis,
) -> Result<Vec<P::Output>, Rejection> {
    let mut out = Vec::new();
    let meta = RecordMeta {
        topic: "asset-prices",
        partition: 0,
        offset,
        timestamp: None,
        processing_time: now,
    };
    let mut ctx = Context::new(meta, state, &mut out);
    p.process(&mut ctx, input)?;
    Ok(out)
}

/// Tell the processor `tick` at processing time `now`; what it emitted.
pub(crate) fn tick<P: Processor>(
    p: &mut P,
    state: &dyn StateReader,
    tick: Tick<'_>,
    now: Millis,
) -> Vec<P::Output> {
    let mut out = Vec::new();
    let meta = RecordMeta {
        topic: "asset-prices",
        partition: 0,
        offset: 0,
        timestamp: None,
        processing_time: now,
    };
    let mut ctx = Context::new(meta, state, &mut out);
    p.on_tick(&mut ctx, tick);
    out
}

/// Process all records; per record, the outputs or the rejection.
pub(crate) fn run<P: Processor<Input = AssetPrice>>(
    p: &mut P,
    state: &dyn StateReader,
    inputs: &[AssetPrice],
) -> Vec<Result<Vec<P::Output>, Rejection>> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, q)| step(p, state, i as i64, q.clone()))
        .collect()
}

/// Raw material of one quote: symbol, time step, disorder, price move.
pub(crate) type RawQuote = (u8, u8, u32, u8, u32, i32, u8);

/// Turn raw material into quotes: a global clock with small steps and occasional gaps,
/// some quotes shifted back in time (some beyond the lateness), per-symbol random walks
/// in cents with occasional jumps.
pub(crate) fn build_series(raw: &[RawQuote], lateness: Millis) -> Vec<AssetPrice> {
    const GRID: Millis = 2_500;
    let mut clock = T0;
    let mut prices = [10_000i64; 3];
    raw.iter()
        .enumerate()
        .map(
            |(i, &(sym, dt_kind, dt, jitter_kind, jitter, step, jump))| {
                // Times on a 2.5 s grid (windows, cooldowns and lateness are multiples of it),
                // so exact boundaries and equal times are frequent.
                clock += GRID
                    * match dt_kind % 10 {
                        0..=5 => i64::from(dt % 3),
                        6..=8 => i64::from(dt % 24),
                        _ => i64::from(dt % 160),
                    };
                let time = if jitter_kind % 4 == 0 {
                    clock - GRID * (i64::from(jitter) % ((lateness + 10_000) / GRID + 1))
                } else {
                    clock
                };
                let s = usize::from(sym % 3);
                let mut mv = i64::from(step % 80);
                if jump % 8 == 0 {
                    mv *= 20;
                }
                prices[s] = (prices[s] + mv).max(100);
                AssetPrice {
                    event_id: format!("e{i}"),
                    symbol: ["PETR4", "VALE3", "BTC-BRL"][s].to_string(),
                    price: Decimal::new(prices[s], 2),
                    currency: "BRL".to_string(),
                    source: "test".to_string(),
                    event_time: time,
                }
            },
        )
        .collect()
}

pub(crate) fn arb_raw() -> impl Strategy<Value = Vec<RawQuote>> {
    prop::collection::vec(
        (
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            any::<u8>(),
            any::<u32>(),
            -40i32..=40,
            any::<u8>(),
        ),
        1..120,
    )
}

/// One symbol's accepted inputs in processing order: `(input index, released at)`.
pub(crate) type SymbolPlan = (String, Vec<(usize, Option<usize>)>);

/// How the reorder buffer treats a series, computed plainly: which inputs are late, and per
/// symbol the accepted inputs in event-time order (ties in arrival order), each with the
/// input index at which it is released (`None`: still buffered at the end).
pub(crate) fn plan(quotes: &[AssetPrice], lateness: Millis) -> (Vec<usize>, Vec<SymbolPlan>) {
    let mut late = Vec::new();
    let mut max: HashMap<&str, Millis> = HashMap::new();
    let mut accepted: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut max_after: Vec<Option<Millis>> = Vec::new();
    for (i, q) in quotes.iter().enumerate() {
        let m = max.get(q.symbol.as_str()).copied();
        if m.is_some_and(|m| q.event_time < m - lateness) {
            late.push(i);
        } else {
            max.insert(&q.symbol, m.map_or(q.event_time, |m| m.max(q.event_time)));
            accepted.entry(&q.symbol).or_default().push(i);
        }
        max_after.push(max.get(q.symbol.as_str()).copied());
    }
    let symbols = accepted
        .into_iter()
        .map(|(symbol, mut list)| {
            list.sort_by_key(|&i| quotes[i].event_time); // stable
            let list = list
                .into_iter()
                .map(|i| {
                    let t = quotes[i].event_time;
                    let released = (i..quotes.len()).find(|&j| {
                        quotes[j].symbol == symbol
                            && max_after[j].is_some_and(|m| m - lateness >= t)
                    });
                    (i, released)
                })
                .collect();
            (symbol.to_string(), list)
        })
        .collect();
    (late, symbols)
}
