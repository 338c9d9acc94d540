//! The risk-scoring processor: inputs, rule evaluation, state handling.
//!
//! See the [module docs of `risk`](super) for the rules, their order and the state tables.

use super::config::Config;
use super::documents::{mask, normalize, redact_documents, Document};
use super::pseudonym::Pseudonymizer;
use super::resilience::UnavailableCause;
use super::rules::{self, Findings, Parsed, VelocityWindow};
use super::store::{
    decode, decode_payer, encode, encode_payer, Listing, PayerState, BLACKLIST_TABLE, PAYERS_TABLE,
};
use crate::events::{BlacklistEntry, Decision, RiskDecision, Transaction};
use crate::{views, Context, Millis, Processor, Rejection, StateReader, StateWriter};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::fmt;

/// Rule ids, in evaluation order.
pub mod rule_ids {
    /// Payer or payee document is not a valid CPF/CNPJ (hard: score 1000).
    pub const INVALID_DOCUMENT: &str = "invalid_document";
    /// Payer is blacklisted (hard).
    pub const BLACKLIST_PAYER: &str = "blacklist_payer";
    /// Payee is blacklisted (hard).
    pub const BLACKLIST_PAYEE: &str = "blacklist_payee";
    /// The external validator flagged the payer.
    pub const EXTERNAL_PAYER: &str = "external_payer";
    /// The external validator flagged the payee.
    pub const EXTERNAL_PAYEE: &str = "external_payee";
    /// The external validator could not be used (contribution 0, sets `degraded`).
    pub const EXTERNAL_UNAVAILABLE: &str = "external_unavailable";
    /// Amount / payer's average at or above the ratio threshold.
    pub const AMOUNT_RATIO: &str = "amount_ratio";
    /// Amount's z-score against the payer's history at or above the threshold.
    pub const AMOUNT_ZSCORE: &str = "amount_zscore";
    /// Count in the short velocity window.
    pub const VELOCITY_COUNT_10M: &str = "velocity_count_10m";
    /// Sum in the short velocity window.
    pub const VELOCITY_SUM_10M: &str = "velocity_sum_10m";
    /// Count in the long velocity window.
    pub const VELOCITY_COUNT_1H: &str = "velocity_count_1h";
    /// Sum in the long velocity window.
    pub const VELOCITY_SUM_1H: &str = "velocity_sum_1h";
    /// High amount to a payee the payer never paid.
    pub const NEW_PAYEE: &str = "new_payee";
    /// High amount at night, local time.
    pub const NIGHT_AMOUNT: &str = "night_amount";
}

/// What the external validator said about one document, filled in by the runtime.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ExternalVerdict {
    /// No validator configured, or the runtime chose not to ask (e.g. an invalid document).
    #[default]
    NotConfigured,
    /// The validator knows nothing against the document.
    Clean,
    /// The validator flagged the document; `reason` is its message (documents in it are
    /// redacted before it is quoted).
    Flagged {
        /// The validator's explanation.
        reason: String,
    },
    /// No usable answer in time: the decision is made from local data and marked `degraded`.
    Unavailable(UnavailableCause),
}

impl fmt::Debug for ExternalVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExternalVerdict::NotConfigured => f.write_str("NotConfigured"),
            ExternalVerdict::Clean => f.write_str("Clean"),
            ExternalVerdict::Flagged { reason } => f
                .debug_struct("Flagged")
                .field("reason", &redact_documents(reason))
                .finish(),
            ExternalVerdict::Unavailable(c) => f.debug_tuple("Unavailable").field(c).finish(),
        }
    }
}

/// External verdicts for both documents of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExternalValidation {
    /// About the payer document.
    pub payer: ExternalVerdict,
    /// About the payee document.
    pub payee: ExternalVerdict,
}

impl ExternalValidation {
    /// No validator: both [`ExternalVerdict::NotConfigured`].
    pub fn not_configured() -> Self {
        Self::default()
    }
}

/// An input record of the risk-scoring processor.
#[derive(Clone, PartialEq)]
pub enum RiskInput {
    /// A record of `transactions`, with the external verdicts the runtime obtained for it.
    Transaction {
        /// The transaction.
        tx: Transaction,
        /// External verdicts for payer and payee.
        validation: ExternalValidation,
    },
    /// A record of `document-blacklist`.
    Blacklist {
        /// The record key (the document, punctuated or not).
        key: String,
        /// The value; `None` for a tombstone.
        entry: Option<BlacklistEntry>,
    },
}

impl fmt::Debug for RiskInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RiskInput::Transaction { tx, validation } => f
                .debug_struct("Transaction")
                .field("transaction_id", &tx.transaction_id)
                .field("payer", &mask(&tx.payer_document))
                .field("payee", &mask(&tx.payee_document))
                .field("amount", &tx.amount)
                .field("event_time", &tx.event_time)
                .field("validation", validation)
                .finish(),
            RiskInput::Blacklist { key, entry } => f
                .debug_struct("Blacklist")
                .field("key", &mask(key))
                .field("listed", &entry.as_ref().map(|e| e.listed))
                .finish(),
        }
    }
}

/// The decision for a score: REJECT from `reject_threshold`, REVIEW from `review_threshold`,
/// APPROVE below.
pub fn decision_for(score: i32, review_threshold: i32, reject_threshold: i32) -> Decision {
    if score >= reject_threshold {
        Decision::Reject
    } else if score >= review_threshold {
        Decision::Review
    } else {
        Decision::Approve
    }
}

/// One in-memory entry of a lazily loaded table.
#[derive(Debug, Clone)]
struct Cached<T> {
    value: T,
    dirty: bool,
    last_used: u64,
}

/// Drop the least recently used clean entries down to three quarters of `max` when the map
/// holds more than `max`.
fn trim<T>(map: &mut HashMap<String, Cached<T>>, max: usize) {
    if map.len() <= max {
        return;
    }
    let keep = (max - max / 4).max(1);
    let mut uses: Vec<u64> = map
        .values()
        .filter(|c| !c.dirty)
        .map(|c| c.last_used)
        .collect();
    let to_drop = map.len().saturating_sub(keep).min(uses.len());
    if to_drop == 0 {
        return;
    }
    // `to_drop` is in 1..=uses.len(), so the index is in range.
    let (_, cutoff, _) = uses.select_nth_unstable(to_drop - 1);
    let cutoff = *cutoff;
    // `last_used` values are unique, so exactly `to_drop` clean entries go.
    map.retain(|_, c| c.dirty || c.last_used > cutoff);
}

/// The risk-scoring processor. See the [module docs](super).
pub struct RiskProcessor {
    config: Config,
    tz: Tz,
    pseudonymizer: Pseudonymizer,
    /// Keys under the previous document key found while rotating: deleted at the next flush
    /// (their entries are written under the current key).
    rekeyed: Vec<(&'static str, String)>,
    blacklist: HashMap<String, Cached<Option<Listing>>>,
    blacklist_dirty: Vec<String>,
    payers: HashMap<String, Cached<PayerState>>,
    payers_dirty: Vec<String>,
    pending: Vec<RiskDecision>,
    tick: u64,
    duplicates_skipped: u64,
}

impl RiskProcessor {
    /// A processor with an empty working set. `config` should have passed
    /// [`Config::validate`]; an unknown `time_zone` falls back to `America/Sao_Paulo`.
    /// Documents are stored under their pseudonyms from `pseudonymizer` (see
    /// [`super::pseudonym`]); the runtime builds it from its key.
    pub fn new(config: Config, pseudonymizer: Pseudonymizer) -> Self {
        let tz = config
            .time_zone
            .parse::<Tz>()
            .unwrap_or(chrono_tz::America::Sao_Paulo);
        Self {
            config,
            tz,
            pseudonymizer,
            rekeyed: Vec::new(),
            blacklist: HashMap::new(),
            blacklist_dirty: Vec::new(),
            payers: HashMap::new(),
            payers_dirty: Vec::new(),
            pending: Vec::new(),
            tick: 0,
            duplicates_skipped: 0,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Transactions skipped as duplicates of an id their payer sent inside the dedup window,
    /// since this processor was built.
    pub fn duplicates_skipped(&self) -> u64 {
        self.duplicates_skipped
    }

    /// Blacklist keys held in memory (listed and known-absent), for a gauge.
    pub fn cached_blacklist_keys(&self) -> usize {
        self.blacklist.len()
    }

    /// Payers held in memory, for a gauge.
    pub fn cached_payers(&self) -> usize {
        self.payers.len()
    }

    /// Decisions waiting for the next flush to reach the `risk_decisions` view.
    pub fn pending_decisions(&self) -> usize {
        self.pending.len()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Read `table` under the pseudonym of `document`; while rotating, a miss is retried under
    /// the previous key's pseudonym. Returns the current key, the bytes, and whether they came
    /// from the previous key (then the old key is queued for deletion at the next flush).
    fn read_pseudonymized(
        &mut self,
        state: &dyn StateReader,
        table: &'static str,
        key: &str,
        document: &str,
    ) -> (Option<Vec<u8>>, bool) {
        if let Some(bytes) = state.get(table, key.as_bytes()) {
            return (Some(bytes), false);
        }
        if let Some(old) = self.pseudonymizer.previous_pseudonym(document) {
            let old = old.hex();
            if let Some(bytes) = state.get(table, old.as_bytes()) {
                self.rekeyed.push((table, old));
                return (Some(bytes), true);
            }
        }
        (None, false)
    }

    /// The listing of a normalized document, loading it (or its absence) on first sight.
    fn listing(&mut self, state: &dyn StateReader, document: &str) -> Option<Listing> {
        let key = self.pseudonymizer.pseudonym(document).hex();
        let tick = self.next_tick();
        if let Some(c) = self.blacklist.get_mut(&key) {
            c.last_used = tick;
            return c.value.clone();
        }
        let (bytes, rekey) = self.read_pseudonymized(state, BLACKLIST_TABLE, &key, document);
        let value =
            bytes.map(|bytes| decode::<Listing>(&bytes).unwrap_or_else(Listing::unreadable));
        if rekey {
            self.blacklist_dirty.push(key.clone());
        }
        self.blacklist.insert(
            key,
            Cached {
                value: value.clone(),
                dirty: rekey,
                last_used: tick,
            },
        );
        value
    }

    fn set_listing(&mut self, key: String, value: Option<Listing>) {
        let tick = self.next_tick();
        match self.blacklist.get_mut(&key) {
            Some(c) => {
                c.value = value;
                c.last_used = tick;
                if !c.dirty {
                    c.dirty = true;
                    self.blacklist_dirty.push(key);
                }
            }
            None => {
                self.blacklist_dirty.push(key.clone());
                self.blacklist.insert(
                    key,
                    Cached {
                        value,
                        dirty: true,
                        last_used: tick,
                    },
                );
            }
        }
    }

    /// Make sure the payer `document` is in the payer map (loading it lazily) and mark it
    /// used. Returns its key in the map (its pseudonym).
    fn load_payer(&mut self, state: &dyn StateReader, document: &str) -> String {
        let key = self.pseudonymizer.pseudonym(document).hex();
        let tick = self.next_tick();
        if let Some(c) = self.payers.get_mut(&key) {
            c.last_used = tick;
            return key;
        }
        let (bytes, rekey) = self.read_pseudonymized(state, PAYERS_TABLE, &key, document);
        let value = bytes
            .and_then(|bytes| decode_payer(&bytes))
            .unwrap_or_default();
        if rekey {
            self.payers_dirty.push(key.clone());
        }
        self.payers.insert(
            key.clone(),
            Cached {
                value,
                dirty: rekey,
                last_used: tick,
            },
        );
        key
    }

    fn process_blacklist(
        &mut self,
        key: String,
        entry: Option<BlacklistEntry>,
    ) -> Result<(), Rejection> {
        let norm = normalize(&key);
        if norm.is_empty() {
            return Err(Rejection::new(
                "invalid_key",
                "blacklist record key is empty after removing punctuation",
            ));
        }
        if let Some(e) = &entry {
            let doc = normalize(&e.document);
            if !doc.is_empty() && doc != norm {
                return Err(Rejection::new(
                    "key_mismatch",
                    format!(
                        "blacklist record key {} differs from its document {}",
                        mask(&norm),
                        mask(&doc)
                    ),
                ));
            }
        }
        // Free text is stored redacted: it is only ever quoted redacted, and a document in it
        // must not reach the store in clear.
        let listing = entry.filter(|e| e.listed).map(|e| Listing {
            reason: redact_documents(&e.reason),
            source: redact_documents(&e.source),
            since: e.since,
        });
        if let Some(old) = self.pseudonymizer.previous_pseudonym(&norm) {
            // Listed or not, nothing stays under the previous key.
            self.rekeyed.push((BLACKLIST_TABLE, old.hex()));
        }
        let key = self.pseudonymizer.pseudonym(&norm).hex();
        self.set_listing(key, listing);
        Ok(())
    }

    /// The driver: checks the transaction, skips a duplicate, runs the rules of [`rules`] in
    /// order, learns from the transaction and emits the decision.
    fn process_transaction(
        &mut self,
        ctx: &mut Context<'_, RiskDecision>,
        tx: Transaction,
        validation: ExternalValidation,
    ) -> Result<(), Rejection> {
        check_transaction(&tx)?;
        // From here on nothing fails: state may change.
        let payer: Parsed = Document::parse(&tx.payer_document);
        let payee: Parsed = Document::parse(&tx.payee_document);
        let payer_key = match &payer {
            Ok(doc) => Some(self.load_payer(ctx.state, doc.digits())),
            Err(_) => None,
        };
        if let Some(key) = &payer_key {
            // A transaction delivered twice must not count twice in the payer's history.
            if self.payers[key].value.has_seen(&tx.transaction_id) {
                self.duplicates_skipped += 1;
                return Ok(());
            }
        }
        let mut found = Findings::default();
        rules::invalid_documents(&mut found, &tx, &payer, &payee);
        let state = ctx.state;
        rules::blacklist(&mut found, &tx, &payer, &payee, |key| {
            self.listing(state, key)
        });
        rules::external(
            &mut found,
            &self.config.external,
            &tx,
            (&payer, &payee),
            &validation,
        );
        // The payee's pseudonyms (current, and previous while rotating), for `new_payee`.
        let payee_hashes = payee.as_ref().ok().map(|d| {
            (
                self.pseudonymizer.pseudonym(d.digits()).short(),
                self.pseudonymizer
                    .previous_pseudonym(d.digits())
                    .map(|h| h.short()),
            )
        });
        if let Some(key) = &payer_key {
            self.payer_rules(&mut found, &tx, key, &payee, payee_hashes);
        }
        rules::night(
            &mut found,
            &self.config.rules.night,
            self.tz,
            tx.amount,
            tx.event_time,
        );
        let (score, decision) = found.score(&self.config);
        if let Some(key) = &payer_key {
            self.learn(key, payee_hashes, tx.amount, decision);
        }

        let decided_at = ctx.meta.processing_time;
        let arrived = arrival(tx.event_time, ctx.meta.timestamp);
        let out = RiskDecision {
            transaction_id: tx.transaction_id,
            score,
            decision,
            reasons: found.reasons,
            degraded: found.degraded,
            event_time: tx.event_time,
            decided_at,
            latency_ms: decided_at.saturating_sub(arrived),
        };
        self.pending.push(out.clone());
        ctx.emit(out);
        Ok(())
    }

    /// The behaviour rules of a valid payer, against its history: amount (before this
    /// transaction joins the history), then velocity (after it joins), then new payee.
    fn payer_rules(
        &mut self,
        found: &mut Findings,
        tx: &Transaction,
        key: &str,
        payee: &Parsed,
        payee_hashes: Option<(u64, Option<u64>)>,
    ) {
        // The payer was loaded by the caller (entries are only trimmed in flush).
        let Some(cached) = self.payers.get_mut(key) else {
            return;
        };
        let cfg = &self.config.rules;
        let p = &mut cached.value;
        rules::amount_ratio(found, &cfg.amount_ratio, tx.amount, p);
        rules::amount_zscore(found, &cfg.amount_zscore, tx.amount, p);

        let (short, long) = (&cfg.velocity_10m, &cfg.velocity_1h);
        let retention = short.window.0.max(long.window.0);
        p.record_event(
            tx.event_time,
            tx.amount,
            retention,
            long.max_events as usize,
        );
        let dedup = &self.config.dedup;
        p.remember_id(
            &tx.transaction_id,
            tx.event_time,
            dedup.window.0,
            dedup.max_ids,
        );
        let windows = [
            VelocityWindow {
                count_id: rule_ids::VELOCITY_COUNT_10M,
                sum_id: rule_ids::VELOCITY_SUM_10M,
                window: short.window.0,
                count: (short.count, short.count_weight),
                sum: (short.sum.0, short.sum_weight),
            },
            VelocityWindow {
                count_id: rule_ids::VELOCITY_COUNT_1H,
                sum_id: rule_ids::VELOCITY_SUM_1H,
                window: long.window.0,
                count: (long.count, long.count_weight),
                sum: (long.sum.0, long.sum_weight),
            },
        ];
        for w in &windows {
            rules::velocity(found, w, tx.event_time, p);
        }
        rules::new_payee(found, &cfg.new_payee, tx.amount, (payee, payee_hashes), p);
    }

    /// Learn from a decided transaction: velocity is already recorded; amounts and payees are
    /// learnt only from transactions that were not rejected.
    fn learn(
        &mut self,
        key: &str,
        payee_hashes: Option<(u64, Option<u64>)>,
        amount: Decimal,
        decision: Decision,
    ) {
        let max_payees = self.config.rules.new_payee.max_known_payees as usize;
        if let Some(cached) = self.payers.get_mut(key) {
            if decision != Decision::Reject {
                cached.value.observe_amount(amount);
                if let Some((current, previous)) = payee_hashes {
                    if let Some(old) = previous {
                        cached.value.forget_payee(old);
                    }
                    cached.value.remember_payee(current, max_payees);
                }
            }
            if !cached.dirty {
                cached.dirty = true;
                self.payers_dirty.push(key.to_string());
            }
        }
    }
}

/// The checks that reject a transaction before any state changes.
fn check_transaction(tx: &Transaction) -> Result<(), Rejection> {
    if tx.transaction_id.is_empty() {
        return Err(Rejection::new(
            "missing_transaction_id",
            "transaction has an empty transaction_id",
        ));
    }
    if tx.amount <= Decimal::ZERO {
        return Err(Rejection::new(
            "invalid_amount",
            format!(
                "transaction {} has amount {}, it must be greater than 0",
                tx.transaction_id, tx.amount
            ),
        ));
    }
    Ok(())
}

/// When a transaction entered the pipeline: the later of its event time and its record's Kafka
/// timestamp. The SLA clock starts there, so a transaction produced late (a backlog, a demo
/// with event times in the past, a replay) is not counted as slow for time it spent before it
/// reached Kafka, and one stamped in the future by a skewed client clock is not counted before
/// it happened.
pub fn arrival(event_time: Millis, kafka_timestamp: Option<Millis>) -> Millis {
    kafka_timestamp.map_or(event_time, |ts| ts.max(event_time))
}

impl Processor for RiskProcessor {
    type Input = RiskInput;
    type Output = RiskDecision;

    fn process(
        &mut self,
        ctx: &mut Context<'_, RiskDecision>,
        input: RiskInput,
    ) -> Result<(), Rejection> {
        match input {
            RiskInput::Transaction { tx, validation } => {
                self.process_transaction(ctx, tx, validation)
            }
            RiskInput::Blacklist { key, entry } => self.process_blacklist(key, entry),
        }
    }

    fn flush(&mut self, changes: &mut dyn StateWriter) {
        // Old-key entries first: their current-key writes below come after them.
        for (table, key) in self.rekeyed.drain(..) {
            changes.delete(table, key.as_bytes());
        }
        for key in self.blacklist_dirty.drain(..) {
            if let Some(c) = self.blacklist.get_mut(&key) {
                c.dirty = false;
                match &c.value {
                    Some(listing) => changes.put(BLACKLIST_TABLE, key.as_bytes(), &encode(listing)),
                    None => changes.delete(BLACKLIST_TABLE, key.as_bytes()),
                }
            }
        }
        for key in self.payers_dirty.drain(..) {
            if let Some(c) = self.payers.get_mut(&key) {
                c.dirty = false;
                changes.put(PAYERS_TABLE, key.as_bytes(), &encode_payer(&c.value));
            }
        }
        for d in self.pending.drain(..) {
            views::materialize(changes, &d);
        }
        trim(&mut self.blacklist, self.config.max_cached_keys);
        trim(&mut self.payers, self.config.max_cached_keys);
    }
}
