//! Risk scoring: CPF/CNPJ validation, the blacklist table and behaviour rules.
//!
//! [`RiskProcessor`] reads two topics, as [`RiskInput`]:
//! - `transactions` → [`RiskInput::Transaction`], with the [`ExternalValidation`] the runtime
//!   obtained for payer and payee before calling `process` (see [`resilience`]);
//! - `document-blacklist` → [`RiskInput::Blacklist`] (`entry: None` for a tombstone).
//!
//! and emits one [`RiskDecision`] per transaction on
//! `risk-decisions` (keyed by transaction id), also written in `flush` to the
//! [`views::RISK_DECISIONS`](crate::views::RISK_DECISIONS) view (key = transaction id bytes,
//! value = its JSON).
//!
//! # Rules, in evaluation order (the order of `reasons`)
//! | rule id | fires when | contribution |
//! |---|---|---|
//! | `invalid_document` | payer or payee is not a valid CPF/CNPJ (one reason per side) | 1000, hard |
//! | `blacklist_payer`, `blacklist_payee` | the normalized document is listed | 1000, hard |
//! | `external_payer`, `external_payee` | the validator said [`ExternalVerdict::Flagged`] | `external.flagged_weight`, or 1000 hard with `flagged_rejects` |
//! | `external_unavailable` | a verdict is [`ExternalVerdict::Unavailable`]; sets `degraded` | 0 |
//! | `amount_ratio` | payer has ≥ `min_history` amounts and amount / average ≥ `ratio` | weight |
//! | `amount_zscore` | payer has ≥ `min_history` amounts, std-dev > 0, (amount − average) / std-dev ≥ `zscore` | weight |
//! | `velocity_count_10m`, `velocity_sum_10m` | count / sum of the payer's transactions in `(t − 10m, t]`, this one included, ≥ threshold | count / sum weight |
//! | `velocity_count_1h`, `velocity_sum_1h` | same over 1 h | count / sum weight |
//! | `new_payee` | payer has ≥ `min_history` amounts, valid payee never paid by this payer, amount ≥ `amount` | weight |
//! | `night_amount` | local hour (`time_zone`) in `start_hour..end_hour` (wrapping midnight) and amount ≥ `amount` | weight |
//!
//! Verdicts about a document that is not a valid CPF/CNPJ are ignored: the transaction is
//! rejected for `invalid_document` anyway and no validation was needed.
//!
//! Score = sum of contributions capped at 1000; any hard rule makes it 1000. The decision is
//! REJECT from `reject_threshold`, REVIEW from `review_threshold`, APPROVE below
//! ([`decision_for`]). A hard rule therefore always gives REJECT. Behaviour rules are still
//! evaluated on hard-rejected transactions (for the explanation). The amount and z-score
//! rules compare with the history *before* the transaction; the z-score test is done as
//! `(amount − mean)² ≥ z² · variance`, exact in decimals.
//!
//! Reason texts are human-readable, quote amounts in BRL and show documents only masked
//! ([`documents::mask`]); external free text (blacklist reason and source, validator message)
//! is quoted after [`documents::redact_documents`] and cut at 200 characters.
//!
//! `decided_at = ctx.meta.processing_time`, `latency_ms = decided_at − arrival`, where arrival is
//! the later of the event time and the record's Kafka timestamp ([`arrival`]): the SLA clock
//! starts when the transaction enters Kafka. All windows are event time.
//!
//! # What the processor learns
//! - Velocity history: every transaction of a valid payer (attempts count, even rejected ones).
//!   Kept sorted by event time; an out-of-order transaction is counted in the windows ending at
//!   its own event time. Entries at or before `latest event time − max(window)` and beyond
//!   `rules.velocity_1h.max_events` (oldest first) are dropped.
//! - Amount statistics (Welford mean/M2) and known payees: only from transactions not REJECTed,
//!   so a blocked outlier does not make the next one look normal. Known payees are stored as
//!   the first 64 bits of their pseudonym (keyed), most recent `max_known_payees` kept.
//! - Invalid payer documents create no payer state.
//!
//! # Dead letters
//! `Err(Rejection)` (state unchanged) only for records that cannot be decided: empty
//! `transaction_id` (`missing_transaction_id`), amount ≤ 0 (`invalid_amount`), a blacklist
//! record whose key is empty (`invalid_key`) or names another document than its value
//! (`key_mismatch`). An invalid CPF/CNPJ is a decision (REJECT, `invalid_document`), not a dead
//! letter.
//!
//! # State
//! - `risk-scoring/blacklist` ([`store::BLACKLIST_TABLE`]): pseudonym of the normalized
//!   document ([`pseudonym`]: HMAC-SHA256 under the runtime's key, never the document) → listing.
//!   The whole blacklist is a table every instance holds (like a Kafka Streams global table):
//!   **the runtime must feed every partition of `document-blacklist` to every instance** (not
//!   only the partitions assigned by the consumer group), resuming from the checkpointed
//!   offsets (from the beginning on an empty store). Lookups are lazy with negative caching.
//!   Blacklist changes apply to transactions processed after them; to honour "changes apply to
//!   transactions that come after them", the runtime should drain pending blacklist records
//!   before each batch of transactions.
//! - `risk-scoring/payers` ([`store::PAYERS_TABLE`]): pseudonym of the payer document →
//!   [`store::PayerState`].
//! - `risk_decisions` view.
//!
//! All are written in `flush`; after a flush each in-memory table holding more than
//! `max_cached_keys` entries drops its least recently used ones down to ¾ of that bound.
//!
//! # External validation
//! The processor never calls anything. Before `process`, the runtime fills an
//! [`ExternalValidation`] per transaction when `external.url` is set (else
//! [`ExternalValidation::not_configured`]): per valid document, the cached verdict if any,
//! otherwise calls driven by [`resilience::CallPlan`] under the transaction's
//! [`resilience::Deadline`] (`external.budget`), the instance's [`resilience::CircuitBreaker`]
//! and [`resilience::TtlCache`] (all built from [`ExternalConfig`]). Any failure to get an answer
//! in budget is [`ExternalVerdict::Unavailable`] and the decision is `degraded`.
//!
//! # Logging
//! [`decision_log_fields`] and [`transaction_log_fields`] give the JSON fields of the decision
//! log line; documents only masked.

pub mod config;
pub mod documents;
mod processor;
pub mod pseudonym;
pub mod resilience;
mod rules;
pub mod store;

#[cfg(test)]
mod tests;

pub use config::{
    AmountRatioRule, AmountZscoreRule, Config, DedupConfig, ExternalConfig, NewPayeeRule,
    NightRule, RulesConfig, VelocityLongRule, VelocityRule, MAX_SCORE,
};
pub use processor::{
    arrival, decision_for, rule_ids, ExternalValidation, ExternalVerdict, RiskInput, RiskProcessor,
};
pub use pseudonym::Pseudonymizer;

use crate::events::{Decision, RiskDecision, Transaction, TransactionKind};
use serde_json::{json, Value};

/// The wire symbol of a decision: `APPROVE`, `REVIEW` or `REJECT`.
pub fn decision_symbol(decision: Decision) -> &'static str {
    match decision {
        Decision::Approve => "APPROVE",
        Decision::Review => "REVIEW",
        Decision::Reject => "REJECT",
    }
}

/// The wire symbol of a transaction kind: `PIX`, `TED`, `CARD` or `BOLETO`.
pub fn kind_symbol(kind: TransactionKind) -> &'static str {
    match kind {
        TransactionKind::Pix => "PIX",
        TransactionKind::Ted => "TED",
        TransactionKind::Card => "CARD",
        TransactionKind::Boleto => "BOLETO",
    }
}

/// Fields of the structured decision log line: `transaction_id`, `score`, `decision`
/// (`APPROVE`…), `reasons` (`[{rule_id, contribution, text}]`, texts already masked),
/// `degraded`, `latency_ms`, `event_time`, `decided_at`.
pub fn decision_log_fields(decision: &RiskDecision) -> Value {
    json!({
        "transaction_id": decision.transaction_id,
        "score": decision.score,
        "decision": decision_symbol(decision.decision),
        "reasons": decision.reasons.iter().map(|r| json!({
            "rule_id": r.rule_id,
            "contribution": r.contribution,
            "text": r.text,
        })).collect::<Vec<_>>(),
        "degraded": decision.degraded,
        "latency_ms": decision.latency_ms,
        "event_time": decision.event_time,
        "decided_at": decision.decided_at,
    })
}

/// Transaction fields safe for the same log line: `kind`, `payer` and `payee` masked,
/// `amount` (string), `channel` (documents redacted), `event_time`. The payer name is left out
/// (personal data).
pub fn transaction_log_fields(tx: &Transaction) -> Value {
    json!({
        "transaction_id": tx.transaction_id,
        "kind": kind_symbol(tx.kind),
        "payer": documents::mask(&tx.payer_document),
        "payee": documents::mask(&tx.payee_document),
        "amount": tx.amount.to_string(),
        "channel": documents::redact_documents(&tx.channel),
        "event_time": tx.event_time,
    })
}
