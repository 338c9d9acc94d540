//! The risk-scoring processor: inputs, rule evaluation, state handling.
//!
//! See the [module docs of `risk`](super) for the rules, their order and the state tables.

use super::config::{Config, MAX_SCORE};
use super::documents::{mask, normalize, redact_documents, Document, DocumentError};
use super::pseudonym::Pseudonymizer;
use super::resilience::UnavailableCause;
use super::store::{
    decode, decode_payer, encode, encode_payer, Listing, PayerState, BLACKLIST_TABLE, PAYERS_TABLE,
};
use crate::events::{BlacklistEntry, Decision, RiskDecision, RiskReason, Transaction};
use crate::{views, Context, Millis, Processor, Rejection, StateReader, StateWriter};
use chrono::{DateTime, Timelike};
use chrono_tz::Tz;
use rust_decimal::{Decimal, MathematicalOps};
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

/// Longest external text (blacklist reason, validator message) quoted in a reason.
const MAX_QUOTED_CHARS: usize = 200;

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

/// Decimal rendered with two decimals (BRL).
fn brl(d: Decimal) -> String {
    format!("{:.2}", d)
}

/// A duration in its shortest unit (`10m`, `1h`, `90s`, `1500ms`).
fn human_duration(ms: Millis) -> String {
    match ms {
        m if m > 0 && m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m > 0 && m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m > 0 && m % 1_000 == 0 => format!("{}s", m / 1_000),
        m => format!("{m}ms"),
    }
}

/// External free text made safe to quote: documents redacted, length bounded.
fn quote(text: &str) -> String {
    let redacted = redact_documents(text);
    if redacted.chars().count() <= MAX_QUOTED_CHARS {
        redacted
    } else {
        let mut s: String = redacted.chars().take(MAX_QUOTED_CHARS).collect();
        s.push('…');
        s
    }
}

/// UTC date of `ms` as `YYYY-MM-DD`, or the raw number when out of range.
fn date(ms: Millis) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Whether `(amount - mean)^2 >= z^2 * var` with `amount > mean`, i.e. the z-score reaches `z`,
/// computed without square roots where the arithmetic fits.
fn zscore_reaches(diff: Decimal, var: Decimal, z: Decimal) -> bool {
    if diff <= Decimal::ZERO {
        return false;
    }
    let lhs = diff.checked_mul(diff);
    let rhs = z.checked_mul(z).and_then(|z2| z2.checked_mul(var));
    match (lhs, rhs) {
        (Some(l), Some(r)) => l >= r,
        (None, Some(_)) => true,
        (Some(_), None) => false,
        (None, None) => var
            .sqrt()
            .and_then(|s| diff.checked_div(s))
            .is_some_and(|zz| zz >= z),
    }
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

    fn process_transaction(
        &mut self,
        ctx: &mut Context<'_, RiskDecision>,
        tx: Transaction,
        validation: ExternalValidation,
    ) -> Result<(), Rejection> {
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
        // From here on nothing fails: state may change.
        let payer: Result<Document, DocumentError> = Document::parse(&tx.payer_document);
        let payee: Result<Document, DocumentError> = Document::parse(&tx.payee_document);
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
        let mut reasons: Vec<RiskReason> = Vec::new();
        let mut hard = false;
        let mut degraded = false;
        let reason = |rule_id: &str, contribution: i32, text: String| RiskReason {
            rule_id: rule_id.to_string(),
            contribution,
            text,
        };

        // 1. Document validity.
        for (role, raw, parsed) in [
            ("payer", &tx.payer_document, &payer),
            ("payee", &tx.payee_document, &payee),
        ] {
            if let Err(e) = parsed {
                hard = true;
                reasons.push(reason(
                    rule_ids::INVALID_DOCUMENT,
                    MAX_SCORE,
                    format!("{role} document {} {e}", mask(raw)),
                ));
            }
        }

        // 2. Blacklist (both sides, normalized, valid or not).
        for (role, rule_id, raw, parsed) in [
            (
                "payer",
                rule_ids::BLACKLIST_PAYER,
                &tx.payer_document,
                &payer,
            ),
            (
                "payee",
                rule_ids::BLACKLIST_PAYEE,
                &tx.payee_document,
                &payee,
            ),
        ] {
            let key = match parsed {
                Ok(doc) => std::borrow::Cow::Borrowed(doc.digits()),
                Err(_) => std::borrow::Cow::Owned(normalize(raw)),
            };
            if key.is_empty() {
                continue;
            }
            if let Some(l) = self.listing(ctx.state, &key) {
                hard = true;
                reasons.push(reason(
                    rule_id,
                    MAX_SCORE,
                    format!(
                        "{role} {} is blacklisted by {} since {}: {}",
                        mask(&key),
                        quote(&l.source),
                        date(l.since),
                        quote(&l.reason)
                    ),
                ));
            }
        }

        // 3. External validator (verdicts on invalid documents are moot and ignored).
        let ext = &self.config.external;
        for (role, rule_id, raw, verdict, parsed) in [
            (
                "payer",
                rule_ids::EXTERNAL_PAYER,
                &tx.payer_document,
                &validation.payer,
                &payer,
            ),
            (
                "payee",
                rule_ids::EXTERNAL_PAYEE,
                &tx.payee_document,
                &validation.payee,
                &payee,
            ),
        ] {
            if parsed.is_err() {
                continue;
            }
            match verdict {
                ExternalVerdict::NotConfigured | ExternalVerdict::Clean => {}
                ExternalVerdict::Flagged { reason: why } => {
                    let contribution = if ext.flagged_rejects {
                        hard = true;
                        MAX_SCORE
                    } else {
                        ext.flagged_weight
                    };
                    if contribution > 0 {
                        reasons.push(reason(
                            rule_id,
                            contribution,
                            format!(
                                "external validator flagged the {role} {}: {}",
                                mask(raw),
                                quote(why)
                            ),
                        ));
                    }
                }
                ExternalVerdict::Unavailable(cause) => {
                    degraded = true;
                    reasons.push(reason(
                        rule_ids::EXTERNAL_UNAVAILABLE,
                        0,
                        format!(
                            "external validation of the {role} {} unavailable ({}); decided on \
                             local data",
                            mask(raw),
                            cause.label()
                        ),
                    ));
                }
            }
        }

        // 4. Behaviour of a valid payer.
        let amount = tx.amount;
        // The payee's pseudonyms (current, and previous while rotating), for `new_payee`.
        let payee_hashes = payee.as_ref().ok().map(|d| {
            (
                self.pseudonymizer.pseudonym(d.digits()).short(),
                self.pseudonymizer
                    .previous_pseudonym(d.digits())
                    .map(|h| h.short()),
            )
        });
        // The payer was loaded above (entries are only trimmed in flush), so this is `Some`
        // exactly when the payer is valid.
        if let Some(cached) = payer_key.as_ref().and_then(|key| self.payers.get_mut(key)) {
            let rules = &self.config.rules;
            let p = &mut cached.value;

            // Amount against history (before this transaction joins it).
            let r = &rules.amount_ratio;
            if r.weight > 0 && p.count >= r.min_history && p.mean.0 > Decimal::ZERO {
                if let Some(ratio) = amount.checked_div(p.mean.0) {
                    if ratio >= r.ratio.0 {
                        reasons.push(reason(
                            rule_ids::AMOUNT_RATIO,
                            r.weight,
                            format!(
                                "amount {} BRL is {}x the payer's average of {} BRL over {} \
                                 transactions (threshold {}x)",
                                brl(amount),
                                brl(ratio),
                                brl(p.mean.0),
                                p.count,
                                r.ratio.0
                            ),
                        ));
                    }
                }
            }
            let z = &rules.amount_zscore;
            if z.weight > 0 && p.count >= z.min_history {
                if let Some(var) = p.variance().filter(|v| *v > Decimal::ZERO) {
                    let diff = amount.checked_sub(p.mean.0).unwrap_or(Decimal::ZERO);
                    if zscore_reaches(diff, var, z.zscore.0) {
                        let shown = var
                            .sqrt()
                            .and_then(|s| diff.checked_div(s))
                            .map(brl)
                            .unwrap_or_else(|| format!(">= {}", z.zscore.0));
                        reasons.push(reason(
                            rule_ids::AMOUNT_ZSCORE,
                            z.weight,
                            format!(
                                "amount {} BRL is {} standard deviations above the payer's \
                                 average of {} BRL (threshold {})",
                                brl(amount),
                                shown,
                                brl(p.mean.0),
                                z.zscore.0
                            ),
                        ));
                    }
                }
            }

            // Velocity, this transaction included.
            let short = &rules.velocity_10m;
            let long = &rules.velocity_1h;
            let retention = short.window.0.max(long.window.0);
            p.record_event(tx.event_time, amount, retention, long.max_events as usize);
            let dedup = &self.config.dedup;
            p.remember_id(
                &tx.transaction_id,
                tx.event_time,
                dedup.window.0,
                dedup.max_ids,
            );
            for (count_id, sum_id, window, count_thr, count_w, sum_thr, sum_w) in [
                (
                    rule_ids::VELOCITY_COUNT_10M,
                    rule_ids::VELOCITY_SUM_10M,
                    short.window.0,
                    short.count,
                    short.count_weight,
                    short.sum.0,
                    short.sum_weight,
                ),
                (
                    rule_ids::VELOCITY_COUNT_1H,
                    rule_ids::VELOCITY_SUM_1H,
                    long.window.0,
                    long.count,
                    long.count_weight,
                    long.sum.0,
                    long.sum_weight,
                ),
            ] {
                let (count, sum) = p.window(tx.event_time, window);
                if count_w > 0 && count >= count_thr {
                    reasons.push(reason(
                        count_id,
                        count_w,
                        format!(
                            "{count} transactions from this payer in the last {} (threshold {})",
                            human_duration(window),
                            count_thr
                        ),
                    ));
                }
                if sum_w > 0 && sum >= sum_thr {
                    reasons.push(reason(
                        sum_id,
                        sum_w,
                        format!(
                            "{} BRL from this payer in the last {} (threshold {} BRL)",
                            brl(sum),
                            human_duration(window),
                            brl(sum_thr)
                        ),
                    ));
                }
            }

            // New payee.
            let np = &rules.new_payee;
            if let (Ok(payee_doc), Some((current, previous))) = (&payee, payee_hashes) {
                if np.weight > 0
                    && p.count >= np.min_history
                    && amount >= np.amount.0
                    && !p.knows_payee(current)
                    && !previous.is_some_and(|h| p.knows_payee(h))
                {
                    reasons.push(reason(
                        rule_ids::NEW_PAYEE,
                        np.weight,
                        format!(
                            "{} BRL to payee {} never paid before by this payer (threshold {} \
                             BRL)",
                            brl(amount),
                            payee_doc.masked(),
                            brl(np.amount.0)
                        ),
                    ));
                }
            }
        }

        // 5. Night.
        let night = &self.config.rules.night;
        if night.weight > 0 && amount >= night.amount.0 {
            if let Some(local) =
                DateTime::from_timestamp_millis(tx.event_time).map(|t| t.with_timezone(&self.tz))
            {
                let h = local.hour();
                let inside = if night.start_hour < night.end_hour {
                    (night.start_hour..night.end_hour).contains(&h)
                } else {
                    h >= night.start_hour || h < night.end_hour
                };
                if inside {
                    reasons.push(reason(
                        rule_ids::NIGHT_AMOUNT,
                        night.weight,
                        format!(
                            "{} BRL at {} local time ({}), inside the night window {}h-{}h \
                             (threshold {} BRL)",
                            brl(amount),
                            local.format("%H:%M"),
                            self.tz.name(),
                            night.start_hour,
                            night.end_hour,
                            brl(night.amount.0)
                        ),
                    ));
                }
            }
        }

        // Score and decision.
        let total: i64 = reasons.iter().map(|r| i64::from(r.contribution)).sum();
        let score = if hard {
            MAX_SCORE
        } else {
            // Bounded by MAX_SCORE, so it fits in an i32.
            total.clamp(0, i64::from(MAX_SCORE)) as i32
        };
        let decision = decision_for(
            score,
            self.config.review_threshold,
            self.config.reject_threshold,
        );

        // Learn: velocity already recorded; amounts and payees only from non-rejected ones.
        if let Some(key) = &payer_key {
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
                    self.payers_dirty.push(key.clone());
                }
            }
        }

        let decided_at = ctx.meta.processing_time;
        let arrived = arrival(tx.event_time, ctx.meta.timestamp);
        let out = RiskDecision {
            transaction_id: tx.transaction_id,
            score,
            decision,
            reasons,
            degraded,
            event_time: tx.event_time,
            decided_at,
            latency_ms: decided_at.saturating_sub(arrived),
        };
        self.pending.push(out.clone());
        ctx.emit(out);
        Ok(())
    }
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
            // A struct of strings, numbers and a unit enum always serializes to JSON.
            if let Ok(json) = serde_json::to_vec(&d) {
                changes.put(views::RISK_DECISIONS, d.transaction_id.as_bytes(), &json);
            }
        }
        trim(&mut self.blacklist, self.config.max_cached_keys);
        trim(&mut self.payers, self.config.max_cached_keys);
    }
}
