//! Persisted state of the risk-scoring processor: the blacklist table and per-payer behaviour.
//!
//! # Tables
//! - [`BLACKLIST_TABLE`] `risk-scoring/blacklist`: key = the pseudonym of the normalized
//!   document ([`super::pseudonym::Pseudonym::hex`]: HMAC-SHA256 under the document key, 64 hex
//!   characters; never the document), value = [`Listing`] (its free text redacted). Only listed
//!   documents are stored; a tombstone or `listed = false` deletes the key.
//! - [`PAYERS_TABLE`] `risk-scoring/payers`: key = the pseudonym of the payer document (valid
//!   CPF/CNPJ only), value = [`PayerState`].
//! - [`crate::views::RISK_DECISIONS`] `risk_decisions`: key = transaction id bytes, value = JSON
//!   of [`crate::events::RiskDecision`].
//!
//! Values are one format-version byte ([`FORMAT_VERSION`]; [`PAYER_FORMAT_VERSION`] for payers,
//! whose version-1 values are still read) followed by postcard. Decimals are
//! stored as rust_decimal's 16-byte representation. A value that cannot be decoded is treated
//! fail-closed for the blacklist (the document counts as listed, reason
//! "unreadable blacklist entry") and as a fresh history for a payer.

use super::documents::stable_hash;
use crate::Millis;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::VecDeque;

/// The blacklist table.
pub const BLACKLIST_TABLE: &str = "risk-scoring/blacklist";
/// The per-payer behaviour table.
pub const PAYERS_TABLE: &str = "risk-scoring/payers";
/// First byte of every stored value but a payer's.
pub const FORMAT_VERSION: u8 = 1;
/// First byte of a stored [`PayerState`] (version 2 added [`PayerState::seen_ids`]).
pub const PAYER_FORMAT_VERSION: u8 = 2;

/// A decimal stored as its 16-byte representation (compact and exact in postcard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredDecimal(pub Decimal);

impl Serialize for StoredDecimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize().serialize(s)
    }
}

impl<'de> Deserialize<'de> for StoredDecimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[u8; 16]>::deserialize(d).map(|b| StoredDecimal(Decimal::deserialize(b)))
    }
}

/// A listed document (the blacklist entry without the document itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Why it was listed (free text from the source; redacted before use in reasons).
    pub reason: String,
    /// Who listed it.
    pub source: String,
    /// Since when.
    pub since: Millis,
}

impl Listing {
    /// What an undecodable stored entry is taken for (fail closed).
    pub fn unreadable() -> Self {
        Self {
            reason: "unreadable blacklist entry".into(),
            source: "state".into(),
            since: 0,
        }
    }
}

/// One past transaction in the velocity history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recent {
    /// Event time.
    pub time: Millis,
    /// Amount in BRL.
    pub amount: StoredDecimal,
}

/// A transaction id this payer sent recently (for dropping duplicates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenId {
    /// Event time of the transaction.
    pub time: Millis,
    /// [`stable_hash`] of the transaction id.
    pub id: u64,
}

/// A payer's state as version 1 stored it (before [`PayerState::seen_ids`]).
#[derive(Deserialize)]
struct PayerStateV1 {
    count: u64,
    mean: StoredDecimal,
    m2: StoredDecimal,
    max_event_time: Millis,
    recent: VecDeque<Recent>,
    known_payees: VecDeque<u64>,
}

/// Behaviour history of one payer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PayerState {
    /// Transactions in the amount statistics.
    pub count: u64,
    /// Running mean of amounts (Welford).
    pub mean: StoredDecimal,
    /// Running sum of squared deviations (Welford); sample variance = `m2 / (count - 1)`.
    pub m2: StoredDecimal,
    /// Latest event time seen for this payer.
    pub max_event_time: Millis,
    /// Transactions inside the longest velocity window, sorted by event time (ties in arrival
    /// order), at most `max_events`.
    pub recent: VecDeque<Recent>,
    /// Pseudonyms ([`super::pseudonym::Pseudonym::short`], keyed) of the payees this payer
    /// paid, least recently paid first, at most `max_known_payees`. (Before pseudonymization
    /// these were unkeyed FNV hashes; such old entries simply never match.)
    pub known_payees: VecDeque<u64>,
    /// Transaction ids of this payer inside the dedup window, in arrival order, at most
    /// `dedup.max_ids`.
    pub seen_ids: VecDeque<SeenId>,
}

impl PayerState {
    /// Add an amount to the Welford statistics. If the arithmetic would overflow (amounts
    /// beyond ~10^14 BRL), the amount is left out of the statistics entirely.
    pub fn observe_amount(&mut self, amount: Decimal) {
        let Some(n) = self.count.checked_add(1) else {
            return;
        };
        let next = (|| {
            let n_dec = Decimal::from(n);
            let delta = amount.checked_sub(self.mean.0)?;
            let mean = self.mean.0.checked_add(delta.checked_div(n_dec)?)?;
            let delta2 = amount.checked_sub(mean)?;
            let m2 = self.m2.0.checked_add(delta.checked_mul(delta2)?)?;
            Some((mean, m2))
        })();
        if let Some((mean, m2)) = next {
            self.count = n;
            self.mean = StoredDecimal(mean);
            self.m2 = StoredDecimal(m2);
        }
    }

    /// Sample variance, when at least two amounts were observed.
    pub fn variance(&self) -> Option<Decimal> {
        if self.count < 2 {
            return None;
        }
        self.m2.0.checked_div(Decimal::from(self.count - 1))
    }

    /// Insert a transaction into the velocity history (sorted by time, after equal times), drop
    /// the oldest beyond `max_events` and those at or before `max_event_time - retention`.
    pub fn record_event(
        &mut self,
        time: Millis,
        amount: Decimal,
        retention: Millis,
        max_events: usize,
    ) {
        let pos = self.recent.partition_point(|r| r.time <= time);
        self.recent.insert(
            pos,
            Recent {
                time,
                amount: StoredDecimal(amount),
            },
        );
        self.max_event_time = self.max_event_time.max(time);
        while self.recent.len() > max_events {
            self.recent.pop_front();
        }
        let horizon = self.max_event_time.saturating_sub(retention);
        while self.recent.front().is_some_and(|r| r.time <= horizon) {
            self.recent.pop_front();
        }
    }

    /// Count and sum of the history inside `(time - window, time]`.
    pub fn window(&self, time: Millis, window: Millis) -> (u32, Decimal) {
        let start = time.saturating_sub(window);
        let lo = self.recent.partition_point(|r| r.time <= start);
        let hi = self.recent.partition_point(|r| r.time <= time);
        let mut sum = Decimal::ZERO;
        let mut count = 0u32;
        for r in self.recent.range(lo..hi.max(lo)) {
            count += 1;
            // A sum beyond Decimal's range saturates (far above any threshold).
            sum = sum.checked_add(r.amount.0).unwrap_or(Decimal::MAX);
        }
        (count, sum)
    }

    /// Whether `transaction_id` is among the ids this payer sent inside the dedup window.
    pub fn has_seen(&self, transaction_id: &str) -> bool {
        let h = stable_hash(transaction_id.as_bytes());
        self.seen_ids.iter().any(|s| s.id == h)
    }

    /// Remember `transaction_id`; forget ids beyond `max` (oldest first) and those that arrived
    /// at or before `time - window` (checked from the oldest, so an id that arrived out of
    /// event-time order may stay a little longer).
    pub fn remember_id(&mut self, transaction_id: &str, time: Millis, window: Millis, max: usize) {
        self.seen_ids.push_back(SeenId {
            time,
            id: stable_hash(transaction_id.as_bytes()),
        });
        while self.seen_ids.len() > max {
            self.seen_ids.pop_front();
        }
        let horizon = self.max_event_time.max(time).saturating_sub(window);
        while self.seen_ids.front().is_some_and(|s| s.time <= horizon) {
            self.seen_ids.pop_front();
        }
    }

    /// Whether the payee whose pseudonym is `payee` ([`super::pseudonym::Pseudonym::short`])
    /// is among the known payees.
    pub fn knows_payee(&self, payee: u64) -> bool {
        self.known_payees.contains(&payee)
    }

    /// Remember `payee` (a pseudonym's short form) as the most recently paid, forgetting the
    /// least recent beyond `max`.
    pub fn remember_payee(&mut self, payee: u64, max: usize) {
        self.forget_payee(payee);
        self.known_payees.push_back(payee);
        while self.known_payees.len() > max {
            self.known_payees.pop_front();
        }
    }

    /// Forget `payee` (used for the previous key's pseudonym while rotating).
    pub fn forget_payee(&mut self, payee: u64) {
        if let Some(pos) = self.known_payees.iter().position(|x| *x == payee) {
            self.known_payees.remove(pos);
        }
    }
}

/// Version byte + postcard of `value`.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Serializing these plain structs into a Vec cannot fail (no maps with non-string keys,
    // no sequences of unknown length); should it ever, an empty body decodes as unreadable.
    if let Ok(body) = postcard::to_allocvec(value) {
        out.extend_from_slice(&body);
    }
    out
}

/// A payer's state as stored: [`PAYER_FORMAT_VERSION`] + postcard.
pub fn encode_payer(value: &PayerState) -> Vec<u8> {
    let mut out = encode(value);
    out[0] = PAYER_FORMAT_VERSION;
    out
}

/// Inverse of [`encode_payer`], reading version-1 values too (with no seen ids).
pub fn decode_payer(bytes: &[u8]) -> Option<PayerState> {
    match bytes.split_first() {
        Some((&PAYER_FORMAT_VERSION, body)) => postcard::from_bytes(body).ok(),
        Some((&FORMAT_VERSION, body)) => {
            let v1: PayerStateV1 = postcard::from_bytes(body).ok()?;
            Some(PayerState {
                count: v1.count,
                mean: v1.mean,
                m2: v1.m2,
                max_event_time: v1.max_event_time,
                recent: v1.recent,
                known_payees: v1.known_payees,
                seen_ids: VecDeque::new(),
            })
        }
        _ => None,
    }
}

/// Inverse of [`encode`]; `None` for an unknown version or undecodable bytes.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => postcard::from_bytes(body).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn welford_matches_the_exact_statistics() {
        let mut p = PayerState::default();
        for a in [d("90"), d("110"), d("100"), d("90"), d("110")] {
            p.observe_amount(a);
        }
        assert_eq!(p.count, 5);
        assert_eq!(p.mean.0, d("100"));
        assert_eq!(p.m2.0, d("400"));
        assert_eq!(p.variance(), Some(d("100")));
    }

    #[test]
    fn welford_skips_amounts_that_would_overflow() {
        let mut p = PayerState::default();
        p.observe_amount(d("1"));
        let before = p.clone();
        p.observe_amount(Decimal::MAX);
        assert_eq!(p, before);
        p.observe_amount(Decimal::MIN);
        assert_eq!(p, before);
        p.observe_amount(d("3"));
        assert_eq!((p.count, p.mean.0, p.m2.0), (2, d("2"), d("2")));
    }

    #[test]
    fn velocity_history_is_sorted_bounded_and_trimmed() {
        let mut p = PayerState::default();
        p.record_event(1_000, d("1"), 10_000, 3);
        p.record_event(3_000, d("3"), 10_000, 3);
        p.record_event(2_000, d("2"), 10_000, 3);
        let times: Vec<_> = p.recent.iter().map(|r| r.time).collect();
        assert_eq!(times, [1_000, 2_000, 3_000]);
        assert_eq!(p.window(3_000, 2_000), (2, d("5")));
        assert_eq!(p.window(3_000, 1_999), (2, d("5")));
        assert_eq!(p.window(3_000, 1_000), (1, d("3")));
        assert_eq!(
            p.window(2_000, 10_000),
            (2, d("3")),
            "later events excluded"
        );
        p.record_event(4_000, d("4"), 10_000, 3);
        assert_eq!(p.recent.len(), 3, "bounded by max_events");
        assert_eq!(p.recent[0].time, 2_000);
        p.record_event(12_000, d("12"), 10_000, 3);
        let times: Vec<_> = p.recent.iter().map(|r| r.time).collect();
        assert_eq!(
            times,
            [3_000, 4_000, 12_000],
            "2000 <= 12000 - 10000 dropped"
        );
    }

    #[test]
    fn known_payees_keep_the_most_recent() {
        let mut p = PayerState::default();
        p.remember_payee(1, 2);
        p.remember_payee(2, 2);
        p.remember_payee(1, 2);
        p.remember_payee(3, 2);
        assert!(p.knows_payee(1));
        assert!(!p.knows_payee(2));
        assert!(p.knows_payee(3));
        assert_eq!(p.known_payees.len(), 2);
        p.forget_payee(3);
        assert!(!p.knows_payee(3));
    }

    #[test]
    fn encoding_round_trips_and_rejects_unknown_versions() {
        let mut p = PayerState::default();
        p.observe_amount(d("12.34"));
        p.record_event(5, d("12.34"), 100, 10);
        p.remember_payee(0x0011_2223_3300_0181, 10);
        p.remember_id("tx-1", 5, 100, 10);
        let bytes = encode_payer(&p);
        assert_eq!(bytes[0], PAYER_FORMAT_VERSION);
        assert_eq!(decode_payer(&bytes), Some(p.clone()));
        let mut other = bytes.clone();
        other[0] = 99;
        assert_eq!(decode_payer(&other), None);
        assert_eq!(decode_payer(&[]), None);
        let l = Listing {
            reason: "r".into(),
            source: "s".into(),
            since: -3,
        };
        assert_eq!(decode::<Listing>(&encode(&l)), Some(l));
    }

    #[test]
    fn version_1_payers_are_read_with_no_seen_ids() {
        #[derive(Serialize)]
        struct V1<'a>(
            u64,
            StoredDecimal,
            StoredDecimal,
            Millis,
            &'a VecDeque<Recent>,
            &'a VecDeque<u64>,
        );
        let mut p = PayerState::default();
        p.observe_amount(d("7.5"));
        p.record_event(9, d("7.5"), 100, 10);
        p.remember_payee(0x0011_2223_3300_0181, 10);
        let v1 = encode(&V1(
            p.count,
            p.mean,
            p.m2,
            p.max_event_time,
            &p.recent,
            &p.known_payees,
        ));
        assert_eq!(v1[0], FORMAT_VERSION);
        assert_eq!(decode_payer(&v1), Some(p));
    }

    #[test]
    fn seen_ids_are_bounded_by_count_and_window() {
        let mut p = PayerState::default();
        for (i, t) in [10, 20, 30].into_iter().enumerate() {
            p.remember_id(&format!("tx-{i}"), t, 100, 2);
        }
        assert!(!p.has_seen("tx-0"), "beyond max_ids");
        assert!(p.has_seen("tx-1") && p.has_seen("tx-2"));
        p.remember_id("tx-3", 125, 100, 10);
        assert!(!p.has_seen("tx-1"), "at or before 125 - 100");
        assert!(p.has_seen("tx-2") && p.has_seen("tx-3"));
    }
}
