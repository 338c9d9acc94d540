//! Keyed state shared by the market processors ([`crate::price_change`],
//! [`crate::below_average`]): the per-key reorder buffer that releases records in event-time
//! order, the per-symbol working set with dirty tracking and eviction, the index of symbols
//! holding quotes back (so a restarted processor finds them), and state (de)serialisation.

use crate::config::DurationMs;
use crate::events::{AssetPrice, PRICE_SCALE};
use crate::{views, Millis, Rejection, Resume, StateReader, StateWriter, Tick};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hasher};

/// Serde adapter storing a [`Decimal`] as its 16 raw bytes (compact, fast, lossless).
pub(crate) mod dec_bytes {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        d.serialize().serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        <[u8; 16]>::deserialize(d).map(Decimal::deserialize)
    }
}

/// One quote as kept in buffers and windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Quote {
    pub(crate) time: Millis,
    #[serde(with = "dec_bytes")]
    pub(crate) price: Decimal,
    pub(crate) id: String,
}

/// Reorder buffer: accepted quotes sorted by `(time, arrival)`, released at the watermark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reorder {
    /// Newest accepted event time.
    max_time: Option<Millis>,
    pub(super) pending: VecDeque<Quote>,
    /// Processing time of the last push (not persisted: a buffer restored lazily counts from
    /// the next quote of its symbol, one restored by [`Cache::resume`] from the resume).
    #[serde(skip)]
    arrived: Millis,
}

impl Reorder {
    /// When the last quote arrived (processing time), if any quote is held back.
    pub(crate) fn held_since(&self) -> Option<Millis> {
        (!self.pending.is_empty()).then_some(self.arrived)
    }

    /// Move the watermark up to the newest accepted event time, so that [`Reorder::pop_ready`]
    /// releases every held quote. From then on a quote older than that time is late: it
    /// would sort before quotes already released.
    pub(crate) fn release_all(&mut self, lateness: Millis) {
        if let Some(m) = self.max_time {
            self.max_time = Some(m.saturating_add(lateness));
        }
    }

    fn watermark(&self, lateness: Millis) -> Option<Millis> {
        self.max_time.map(|m| m.saturating_sub(lateness))
    }

    /// `Err(late)` when `time` is behind the watermark.
    pub(crate) fn check(
        &self,
        symbol: &str,
        id: &str,
        time: Millis,
        lateness: Millis,
    ) -> Result<(), Rejection> {
        match self.watermark(lateness) {
            Some(wm) if time < wm => Err(Rejection::new(
                "late",
                format!(
                    "quote {id} of {symbol} at {time} is behind the watermark {wm} \
                     (newest event time minus allowed lateness of {lateness} ms)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Add an accepted quote, arrived at processing time `arrived`, after every buffered
    /// quote with the same or an earlier time.
    pub(crate) fn push(&mut self, quote: Quote, arrived: Millis) {
        self.arrived = arrived;
        let time = quote.time;
        if self.pending.back().is_none_or(|q| q.time <= time) {
            self.pending.push_back(quote);
        } else {
            let at = self.pending.partition_point(|q| q.time <= time);
            self.pending.insert(at, quote);
        }
        self.max_time = Some(self.max_time.map_or(time, |m| m.max(time)));
    }

    /// The oldest buffered quote if it is at or behind the watermark: no quote accepted
    /// from now on can sort before it.
    pub(crate) fn pop_ready(&mut self, lateness: Millis) -> Option<Quote> {
        let wm = self.watermark(lateness)?;
        if self.pending.front()?.time <= wm {
            self.pending.pop_front()
        } else {
            None
        }
    }
}

/// `value` rounded half away from zero to `scale` places, and shown with exactly `scale`
/// places (`10.01` becomes `10.0100`).
pub(crate) fn round_to(value: Decimal, scale: u32) -> Decimal {
    let mut rounded = value.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(scale);
    rounded
}

/// For a [`Tick`]: release the symbols whose held quotes last arrived at or before the
/// returned processing time (`None`: this tick releases nothing). Live runs release after
/// `idle` of wall-clock time without a quote; the end of a bounded run releases everything.
pub(crate) fn release_due(tick: Tick<'_>, idle: Millis) -> Option<Millis> {
    match tick {
        Tick::WallClock(now) => Some(now.saturating_sub(idle)),
        Tick::EndOfInput => Some(Millis::MAX),
        Tick::StreamTime { .. } => None,
    }
}

/// The wall-clock wait before held quotes are released: `idle_timeout` when set, capped at
/// `allowed_lateness`.
pub(crate) fn idle(lateness: DurationMs, idle_timeout: Option<DurationMs>) -> Millis {
    let lateness = lateness.0.max(0);
    idle_timeout.map_or(lateness, |t| t.0.clamp(0, lateness))
}

/// `10^k` for `k` in `0..=20`.
const POW10: [i128; 21] = {
    let mut t = [1i128; 21];
    let mut k = 1;
    while k < 21 {
        t[k] = t[k - 1] * 10;
        k += 1;
    }
    t
};

/// `value` in units of `10^-8` if it has at most 8 decimal places.
pub(crate) fn units8(value: Decimal) -> Option<i128> {
    let scale = value.scale();
    (scale <= PRICE_SCALE).then(|| value.mantissa() * POW10[(PRICE_SCALE - scale) as usize])
}

/// `invalid_price` unless `0 < price < 10^12` with at most [`PRICE_SCALE`] places.
pub(crate) fn validate_price(q: &AssetPrice) -> Result<(), Rejection> {
    // In units of 10^-8: 0 < units < 10^20.
    match units8(q.price) {
        Some(units) if units > 0 && units < POW10[20] => Ok(()),
        _ => Err(Rejection::new(
            "invalid_price",
            format!(
                "quote {} of {}: price {} must be > 0, < 10^12 and have at most {} decimal \
                 places",
                q.event_id, q.symbol, q.price, PRICE_SCALE
            ),
        )),
    }
}

/// Decode a symbol's state from `table`, or start empty (counting undecodable values).
pub(crate) fn load<S: DeserializeOwned + Default>(
    reader: &dyn StateReader,
    table: &str,
    symbol: &str,
    errors: &mut u64,
) -> S {
    match reader.get(table, symbol.as_bytes()) {
        None => S::default(),
        Some(bytes) => postcard::from_bytes(&bytes).unwrap_or_else(|_| {
            *errors += 1;
            S::default()
        }),
    }
}

/// Postcard bytes of a state value.
pub(crate) fn encode<S: Serialize>(value: &S) -> Vec<u8> {
    // Postcard into a growable Vec only fails for serde features it does not support
    // (sequences or maps of unknown length, `collect_str`); the state types use none.
    postcard::to_allocvec(value).expect("postcard encoding of processor state cannot fail")
}

/// JSON bytes of an output event for a view row.
pub(crate) fn to_json<S: Serialize>(value: &S) -> Vec<u8> {
    // serde_json only fails for maps with non-string keys or failing Serialize impls; the
    // event structs have neither.
    serde_json::to_vec(value).expect("JSON encoding of an event cannot fail")
}

/// FxHash-style hasher for the symbol map: symbols are short, and SipHash would dominate the
/// per-quote cost. Keys come from our own topics, so hash flooding is not a concern.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A symbol state with a reorder buffer: what the held-quote index looks at.
pub(crate) trait Held {
    /// The symbol's reorder buffer.
    fn reorder(&mut self) -> &mut Reorder;
}

/// The input partition a symbol's quotes come from, as the runtime names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    topic: String,
    partition: i32,
}

impl Origin {
    /// `<topic>/<partition> \0`: one partition of the held-quote index, so a store shaped like
    /// a wide-column table answers a resume from one partition.
    fn prefix(topic: &str, partition: i32) -> Vec<u8> {
        views::partition_prefix(&format!("{topic}/{partition}"))
    }

    /// The key of `symbol` in the held-quote index.
    fn key(&self, symbol: &str) -> Vec<u8> {
        let mut key = Self::prefix(&self.topic, self.partition);
        key.extend_from_slice(symbol.as_bytes());
        key
    }

    fn is(&self, topic: &str, partition: i32) -> bool {
        self.partition == partition && self.topic == topic
    }
}

/// Whether the held-quote index has an entry for a cached symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Indexed {
    /// No entry.
    No,
    /// An entry under this partition.
    Under(Origin),
    /// Loaded lazily with quotes held back: its entry, if one was written, is under the
    /// partition its quotes come from (state written before the index existed has none).
    Unknown,
}

#[derive(Debug)]
struct Slot<S> {
    symbol: String,
    state: S,
    dirty: bool,
    last_used: u64,
    /// The partition of the symbol's latest quote.
    origin: Origin,
    /// What the stored held-quote index says of the symbol.
    indexed: Indexed,
}

impl<S: Held> Slot<S> {
    /// Bring the held-quote index in line with the state being flushed: an entry under the
    /// symbol's partition while it holds quotes back, none otherwise. Written only when that
    /// changes, so a symbol that keeps quoting costs no index write per flush.
    fn update_index(&mut self, changes: &mut dyn StateWriter, table: &str) {
        let held = self.state.reorder().held_since().is_some();
        let stale = match &self.indexed {
            Indexed::Under(o) if held && *o == self.origin => return,
            Indexed::No if !held => return,
            Indexed::Under(o) => Some(o.key(&self.symbol)),
            Indexed::Unknown => Some(self.origin.key(&self.symbol)),
            Indexed::No => None,
        };
        let key = self.origin.key(&self.symbol);
        if let Some(stale) = stale.filter(|k| !held || *k != key) {
            changes.delete(table, &stale);
        }
        self.indexed = if held {
            changes.put(table, &key, &[]);
            Indexed::Under(self.origin.clone())
        } else {
            Indexed::No
        };
    }
}

/// The in-memory working set: symbol -> state, with dirty tracking and LRU eviction.
/// Symbols index a vector of slots, so a quote costs one hash lookup and no allocation.
#[derive(Debug)]
pub(crate) struct Cache<S> {
    index: HashMap<String, usize, BuildHasherDefault<FxHasher>>,
    slots: Vec<Slot<S>>,
    dirty: Vec<usize>,
    tick: u64,
}

impl<S> Default for Cache<S> {
    fn default() -> Self {
        Self {
            index: HashMap::default(),
            slots: Vec::new(),
            dirty: Vec::new(),
            tick: 0,
        }
    }
}

/// A borrowed slot of the cache.
pub(crate) struct SlotRef<'a, S> {
    slot: &'a mut Slot<S>,
    dirty: &'a mut Vec<usize>,
    at: usize,
}

impl<S> SlotRef<'_, S> {
    /// The symbol's state.
    pub(crate) fn state(&mut self) -> &mut S {
        &mut self.slot.state
    }

    /// Record that the state changed and must be written at the next flush.
    pub(crate) fn mark_dirty(&mut self) {
        if !self.slot.dirty {
            self.slot.dirty = true;
            self.dirty.push(self.at);
        }
    }
}

impl<S: Held> Cache<S> {
    /// The slot of `symbol`, whose quote came from `topic`/`partition`, loading it with `load`
    /// on first sight.
    pub(crate) fn get(
        &mut self,
        symbol: &str,
        (topic, partition): (&str, i32),
        load: impl FnOnce() -> S,
    ) -> SlotRef<'_, S> {
        self.tick += 1;
        let at = match self.index.get(symbol) {
            Some(&at) => at,
            None => {
                let at = self.slots.len();
                let mut state = load();
                let indexed = match state.reorder().held_since() {
                    Some(_) => Indexed::Unknown,
                    None => Indexed::No,
                };
                self.slots.push(Slot {
                    symbol: symbol.to_string(),
                    state,
                    dirty: false,
                    last_used: 0,
                    origin: Origin {
                        topic: topic.to_string(),
                        partition,
                    },
                    indexed,
                });
                self.index.insert(symbol.to_string(), at);
                at
            }
        };
        // `index` only holds positions in `slots`; both are rebuilt together in `evict`.
        let slot = &mut self.slots[at];
        slot.last_used = self.tick;
        if !slot.origin.is(topic, partition) {
            slot.origin = Origin {
                topic: topic.to_string(),
                partition,
            };
        }
        SlotRef {
            slot,
            dirty: &mut self.dirty,
            at,
        }
    }

    /// Call `visit` for every cached symbol; those for which it returns true become dirty.
    pub(crate) fn visit(&mut self, mut visit: impl FnMut(&str, &mut S) -> bool) {
        for (at, slot) in self.slots.iter_mut().enumerate() {
            if visit(&slot.symbol, &mut slot.state) && !slot.dirty {
                slot.dirty = true;
                self.dirty.push(at);
            }
        }
    }

    /// Call `write` for every dirty symbol (in the order they became dirty), keep the
    /// held-quote index `held_table` in line with it, and mark it clean.
    pub(crate) fn flush_with(
        &mut self,
        changes: &mut dyn StateWriter,
        held_table: &str,
        mut write: impl FnMut(&mut dyn StateWriter, &str, &mut S),
    ) {
        for at in self.dirty.drain(..) {
            if let Some(slot) = self.slots.get_mut(at) {
                slot.dirty = false;
                write(&mut *changes, &slot.symbol, &mut slot.state);
                slot.update_index(changes, held_table);
            }
        }
    }

    /// The runtime resumed an input partition from its checkpoint: load every symbol that the
    /// held-quote index `held_table` lists under it and that is not cached, with `load`. Their
    /// held quotes count as arrived at the resume's processing time, so a wall-clock tick
    /// releases them once the symbol stays quiet for the idle timeout, as if its last quote had
    /// come then (without this they would wait for the symbol's next quote, for ever if it
    /// stopped quoting).
    pub(crate) fn resume(
        &mut self,
        reader: &dyn StateReader,
        held_table: &str,
        resume: Resume<'_>,
        mut load: impl FnMut(&str) -> S,
    ) {
        let prefix = Origin::prefix(resume.topic, resume.partition);
        for (key, _) in reader.scan_prefix(held_table, &prefix) {
            let Ok(symbol) = std::str::from_utf8(&key[prefix.len().min(key.len())..]) else {
                continue;
            };
            if self.index.contains_key(symbol) {
                continue;
            }
            let mut state = load(symbol);
            let held = state.reorder().held_since().is_some();
            state.reorder().arrived = resume.processing_time;
            let at = self.slots.len();
            self.tick += 1;
            self.slots.push(Slot {
                symbol: symbol.to_string(),
                state,
                // An entry whose symbol holds nothing (any more) is removed at the next flush.
                dirty: !held,
                last_used: self.tick,
                origin: Origin {
                    topic: resume.topic.to_string(),
                    partition: resume.partition,
                },
                indexed: Indexed::Under(Origin {
                    topic: resume.topic.to_string(),
                    partition: resume.partition,
                }),
            });
            if !held {
                self.dirty.push(at);
            }
            self.index.insert(symbol.to_string(), at);
        }
    }

    /// After a flush: if more than `max` symbols are cached, keep only the `max / 2` (at
    /// least 1) most recently used, and every one that `pinned` says must stay (quotes held
    /// back wait in memory for their release). Dirty entries are never dropped (and there
    /// are none right after a flush).
    pub(crate) fn evict(&mut self, max: usize, pinned: impl Fn(&S) -> bool) {
        if self.slots.len() <= max {
            return;
        }
        let keep = (max / 2).max(1);
        let mut ticks: Vec<u64> = self.slots.iter().map(|s| s.last_used).collect();
        let drop = ticks.len() - keep;
        let (_, cutoff, _) = ticks.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        self.slots
            .retain(|s| s.dirty || s.last_used > cutoff || pinned(&s.state));
        self.index.clear();
        self.dirty.clear();
        for (at, slot) in self.slots.iter().enumerate() {
            self.index.insert(slot.symbol.clone(), at);
            if slot.dirty {
                self.dirty.push(at);
            }
        }
    }

    /// Number of cached symbols.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}
