//! The risk rules, one function each, in evaluation order (see [`rule_ids`]).
//!
//! Each rule reads the transaction (and, for the behaviour rules, the payer's history) and adds
//! its [`RiskReason`] to the [`Findings`]; none touches state. The processor's driver
//! (`RiskProcessor::process_transaction`) calls them in order, loads and updates the payer's
//! history around them, and turns the findings into a decision. A new rule is a function here,
//! a rule id, its parameters in [`super::config`] and one call in the driver.

use super::config::{
    AmountRatioRule, AmountZscoreRule, Config, ExternalConfig, NewPayeeRule, NightRule, MAX_SCORE,
};
use super::documents::{mask, normalize, redact_documents, Document, DocumentError};
use super::processor::{decision_for, rule_ids, ExternalValidation, ExternalVerdict};
use super::store::{Listing, PayerState};
use crate::events::{Decision, RiskReason, Transaction};
use crate::Millis;
use chrono::{DateTime, Timelike};
use chrono_tz::Tz;
use rust_decimal::{Decimal, MathematicalOps};
use std::borrow::Cow;

/// Longest external text (blacklist reason, validator message) quoted in a reason.
const MAX_QUOTED_CHARS: usize = 200;

/// A document of the transaction as parsed once by the driver: valid, or why not.
pub(super) type Parsed = Result<Document, DocumentError>;

/// What the rules found so far about one transaction.
#[derive(Debug, Default)]
pub(super) struct Findings {
    /// The rules that fired, in evaluation order.
    pub(super) reasons: Vec<RiskReason>,
    /// A hard rule fired (invalid document, blacklist, a rejecting external flag): score 1000.
    pub(super) hard: bool,
    /// An external validation could not be used.
    pub(super) degraded: bool,
}

impl Findings {
    fn push(&mut self, rule_id: &str, contribution: i32, text: String) {
        self.reasons.push(RiskReason {
            rule_id: rule_id.to_string(),
            contribution,
            text,
        });
    }

    /// The score (the sum of contributions clamped to 0..=1000, or 1000 after a hard rule) and
    /// the decision it leads to under `config`'s thresholds.
    pub(super) fn score(&self, config: &Config) -> (i32, Decision) {
        let total: i64 = self.reasons.iter().map(|r| i64::from(r.contribution)).sum();
        let score = if self.hard {
            MAX_SCORE
        } else {
            // Bounded by MAX_SCORE, so it fits in an i32.
            total.clamp(0, i64::from(MAX_SCORE)) as i32
        };
        let decision = decision_for(score, config.review_threshold, config.reject_threshold);
        (score, decision)
    }
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

/// Rule 1: Document validity: an invalid payer or payee CPF/CNPJ is a hard rule.
pub(super) fn invalid_documents(
    found: &mut Findings,
    tx: &Transaction,
    payer: &Parsed,
    payee: &Parsed,
) {
    for (role, raw, parsed) in [
        ("payer", &tx.payer_document, payer),
        ("payee", &tx.payee_document, payee),
    ] {
        if let Err(e) = parsed {
            found.hard = true;
            found.push(
                rule_ids::INVALID_DOCUMENT,
                MAX_SCORE,
                format!("{role} document {} {e}", mask(raw)),
            );
        }
    }
}

/// Rule 2: Blacklist, both sides, by normalized document (valid or not); the `listing` callback
/// looks a normalized document up (payer first, then payee).
pub(super) fn blacklist(
    found: &mut Findings,
    tx: &Transaction,
    payer: &Parsed,
    payee: &Parsed,
    mut listing: impl FnMut(&str) -> Option<Listing>,
) {
    for (role, rule_id, raw, parsed) in [
        (
            "payer",
            rule_ids::BLACKLIST_PAYER,
            &tx.payer_document,
            payer,
        ),
        (
            "payee",
            rule_ids::BLACKLIST_PAYEE,
            &tx.payee_document,
            payee,
        ),
    ] {
        let key = match parsed {
            Ok(doc) => Cow::Borrowed(doc.digits()),
            Err(_) => Cow::Owned(normalize(raw)),
        };
        if key.is_empty() {
            continue;
        }
        if let Some(l) = listing(&key) {
            found.hard = true;
            found.push(
                rule_id,
                MAX_SCORE,
                format!(
                    "{role} {} is blacklisted by {} since {}: {}",
                    mask(&key),
                    quote(&l.source),
                    date(l.since),
                    quote(&l.reason)
                ),
            );
        }
    }
}

/// Rule 3: External validator verdicts (verdicts on invalid documents are moot and ignored).
pub(super) fn external(
    found: &mut Findings,
    ext: &ExternalConfig,
    tx: &Transaction,
    (payer, payee): (&Parsed, &Parsed),
    validation: &ExternalValidation,
) {
    for (role, rule_id, raw, verdict, parsed) in [
        (
            "payer",
            rule_ids::EXTERNAL_PAYER,
            &tx.payer_document,
            &validation.payer,
            payer,
        ),
        (
            "payee",
            rule_ids::EXTERNAL_PAYEE,
            &tx.payee_document,
            &validation.payee,
            payee,
        ),
    ] {
        if parsed.is_err() {
            continue;
        }
        match verdict {
            ExternalVerdict::NotConfigured | ExternalVerdict::Clean => {}
            ExternalVerdict::Flagged { reason: why } => {
                let contribution = if ext.flagged_rejects {
                    found.hard = true;
                    MAX_SCORE
                } else {
                    ext.flagged_weight
                };
                if contribution > 0 {
                    found.push(
                        rule_id,
                        contribution,
                        format!(
                            "external validator flagged the {role} {}: {}",
                            mask(raw),
                            quote(why)
                        ),
                    );
                }
            }
            ExternalVerdict::Unavailable(cause) => {
                found.degraded = true;
                found.push(
                    rule_ids::EXTERNAL_UNAVAILABLE,
                    0,
                    format!(
                        "external validation of the {role} {} unavailable ({}); decided on \
                         local data",
                        mask(raw),
                        cause.label()
                    ),
                );
            }
        }
    }
}

/// Rule 4a: Amount against the payer's average (history before this transaction).
pub(super) fn amount_ratio(
    found: &mut Findings,
    r: &AmountRatioRule,
    amount: Decimal,
    p: &PayerState,
) {
    if r.weight > 0 && p.count >= r.min_history && p.mean.0 > Decimal::ZERO {
        if let Some(ratio) = amount.checked_div(p.mean.0) {
            if ratio >= r.ratio.0 {
                found.push(
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
                );
            }
        }
    }
}

/// Rule 4b: Amount's z-score against the payer's history (before this transaction).
pub(super) fn amount_zscore(
    found: &mut Findings,
    z: &AmountZscoreRule,
    amount: Decimal,
    p: &PayerState,
) {
    if z.weight <= 0 || p.count < z.min_history {
        return;
    }
    let Some(var) = p.variance().filter(|v| *v > Decimal::ZERO) else {
        return;
    };
    let diff = amount.checked_sub(p.mean.0).unwrap_or(Decimal::ZERO);
    if zscore_reaches(diff, var, z.zscore.0) {
        let shown = var
            .sqrt()
            .and_then(|s| diff.checked_div(s))
            .map(brl)
            .unwrap_or_else(|| format!(">= {}", z.zscore.0));
        found.push(
            rule_ids::AMOUNT_ZSCORE,
            z.weight,
            format!(
                "amount {} BRL is {} standard deviations above the payer's average of {} BRL \
                 (threshold {})",
                brl(amount),
                shown,
                brl(p.mean.0),
                z.zscore.0
            ),
        );
    }
}

/// One velocity window's thresholds (the short and the long window have their own config
/// types; this is what the rule needs of either).
pub(super) struct VelocityWindow {
    /// Rule id of the count threshold.
    pub(super) count_id: &'static str,
    /// Rule id of the sum threshold.
    pub(super) sum_id: &'static str,
    /// Window length.
    pub(super) window: Millis,
    /// Count threshold and its weight.
    pub(super) count: (u32, i32),
    /// Sum threshold (BRL) and its weight.
    pub(super) sum: (Decimal, i32),
}

/// Rule 4c: Velocity: count and sum of the payer's transactions inside `w` up to `event_time`, this
/// transaction included (the driver records it first).
pub(super) fn velocity(
    found: &mut Findings,
    w: &VelocityWindow,
    event_time: Millis,
    p: &PayerState,
) {
    let (count, sum) = p.window(event_time, w.window);
    let (count_thr, count_w) = w.count;
    let (sum_thr, sum_w) = w.sum;
    if count_w > 0 && count >= count_thr {
        found.push(
            w.count_id,
            count_w,
            format!(
                "{count} transactions from this payer in the last {} (threshold {})",
                human_duration(w.window),
                count_thr
            ),
        );
    }
    if sum_w > 0 && sum >= sum_thr {
        found.push(
            w.sum_id,
            sum_w,
            format!(
                "{} BRL from this payer in the last {} (threshold {} BRL)",
                brl(sum),
                human_duration(w.window),
                brl(sum_thr)
            ),
        );
    }
}

/// Rule 4d: A high amount to a payee this payer never paid.
pub(super) fn new_payee(
    found: &mut Findings,
    np: &NewPayeeRule,
    amount: Decimal,
    (payee, hashes): (&Parsed, Option<(u64, Option<u64>)>),
    p: &PayerState,
) {
    // `hashes`: the payee's pseudonyms, current and (while rotating keys) previous.
    let (Ok(payee_doc), Some((current, previous))) = (payee, hashes) else {
        return;
    };
    if np.weight > 0
        && p.count >= np.min_history
        && amount >= np.amount.0
        && !p.knows_payee(current)
        && !previous.is_some_and(|h| p.knows_payee(h))
    {
        found.push(
            rule_ids::NEW_PAYEE,
            np.weight,
            format!(
                "{} BRL to payee {} never paid before by this payer (threshold {} BRL)",
                brl(amount),
                payee_doc.masked(),
                brl(np.amount.0)
            ),
        );
    }
}

/// Rule 5: A high amount inside the night window, in the configured time zone.
pub(super) fn night(
    found: &mut Findings,
    night: &NightRule,
    tz: Tz,
    amount: Decimal,
    event_time: Millis,
) {
    if night.weight <= 0 || amount < night.amount.0 {
        return;
    }
    let Some(local) = DateTime::from_timestamp_millis(event_time).map(|t| t.with_timezone(&tz))
    else {
        return;
    };
    let h = local.hour();
    let inside = if night.start_hour < night.end_hour {
        (night.start_hour..night.end_hour).contains(&h)
    } else {
        h >= night.start_hour || h < night.end_hour
    };
    if inside {
        found.push(
            rule_ids::NIGHT_AMOUNT,
            night.weight,
            format!(
                "{} BRL at {} local time ({}), inside the night window {}h-{}h (threshold {} \
                 BRL)",
                brl(amount),
                local.format("%H:%M"),
                tz.name(),
                night.start_hour,
                night.end_hour,
                brl(night.amount.0)
            ),
        );
    }
}
