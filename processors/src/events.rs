//! Typed events, one per Avro schema in `schemas/` (same name, same fields, same order).
//!
//! Money and prices are [`Decimal`] (Avro `decimal` logical type, the scale stated on each
//! field); times are [`Millis`] (Avro `timestamp-millis`); business dates are days since the Unix
//! epoch (Avro `date`). The runtime's Avro codec maps these structs to and from the schemas, and a
//! test in the runtime proves the two agree field by field. Enums serialize (serde) as the Avro
//! enum symbols (`RISE`, `PIX`, `APPROVE`), so JSON views read like the topics.

use crate::Millis;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Scale of prices (`asset-prices`, `price-alerts`, `below-average-events`): 8 decimal places.
pub const PRICE_SCALE: u32 = 8;
/// Scale of money amounts in BRL (`transactions`, `ledger-entries`, `daily-balances`): centavos.
pub const MONEY_SCALE: u32 = 2;
/// Scale of percentages (`change_pct`, `deviation_pct`): 4 decimal places.
pub const PERCENT_SCALE: u32 = 4;

/// A quote of an asset (B3 stock or crypto pair) on `asset-prices`, keyed by symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetPrice {
    /// Unique id of this quote.
    pub event_id: String,
    /// Ticker or pair, e.g. `PETR4`, `BTC-BRL`.
    pub symbol: String,
    /// Price, decimal(20, 8).
    pub price: Decimal,
    /// ISO 4217 currency of the price, e.g. `BRL`.
    pub currency: String,
    /// Feed the quote came from, e.g. `b3`, `binance`.
    pub source: String,
    /// Event time of the quote.
    pub event_time: Millis,
}

/// Which way a price moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    /// The price went up.
    Rise,
    /// The price went down.
    Fall,
}

/// An alert on `price-alerts`: a price moved at least the threshold inside the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceAlert {
    /// Deterministic id of the alert.
    pub alert_id: String,
    /// Ticker or pair.
    pub symbol: String,
    /// Which way the price moved.
    pub direction: Direction,
    /// The reference price (lowest in the window for a rise, highest for a fall), decimal(20, 8).
    pub from_price: Decimal,
    /// Event time of the reference quote.
    pub from_time: Millis,
    /// Event id of the reference quote.
    pub from_event_id: String,
    /// The price that triggered the alert, decimal(20, 8).
    pub to_price: Decimal,
    /// Event time of the triggering quote.
    pub to_time: Millis,
    /// Event id of the triggering quote.
    pub to_event_id: String,
    /// Change from `from_price` to `to_price` in percent, decimal(12, 4), negative for a fall.
    pub change_pct: Decimal,
    /// The threshold in percent that was crossed, decimal(12, 4).
    pub threshold_pct: Decimal,
    /// Start of the event-time window considered (inclusive).
    pub window_start: Millis,
    /// End of the window: the triggering quote's event time.
    pub window_end: Millis,
}

/// Whether a below-average event marks the crossing below or the recovery above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CrossingKind {
    /// The price fell from at-or-above the average to below it.
    Below,
    /// The price came back to at-or-above the average.
    Recovered,
}

/// How a historical average is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AverageMethod {
    /// Simple moving average over an event-time window.
    Sma,
    /// Exponentially weighted moving average with a half-life in event time.
    Ewma,
}

/// An event on `below-average-events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BelowAverageEvent {
    /// Deterministic id of the event.
    pub event_id: String,
    /// Ticker or pair.
    pub symbol: String,
    /// Crossing below, or recovery.
    pub kind: CrossingKind,
    /// The quote's price, decimal(20, 8).
    pub price: Decimal,
    /// The average it was compared with, decimal(20, 8).
    pub average: Decimal,
    /// `(price - average) / average * 100`, decimal(12, 4) (negative below the average).
    pub deviation_pct: Decimal,
    /// How many quotes the average is based on.
    pub samples: i64,
    /// How the average was computed.
    pub method: AverageMethod,
    /// Event time of the quote.
    pub event_time: Millis,
    /// Event id of the quote.
    pub quote_event_id: String,
}

/// Kind of a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionKind {
    /// Pix instant payment.
    Pix,
    /// TED bank transfer.
    Ted,
    /// Card payment.
    Card,
    /// Boleto bancário.
    Boleto,
}

/// A payment on `transactions`, keyed by payer document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Unique id of the transaction.
    pub transaction_id: String,
    /// Pix, TED, card or boleto.
    pub kind: TransactionKind,
    /// Payer CPF (11 digits) or CNPJ (14 digits), with or without punctuation.
    pub payer_document: String,
    /// Payer name.
    pub payer_name: String,
    /// Payee CPF or CNPJ, with or without punctuation.
    pub payee_document: String,
    /// Amount in BRL, decimal(18, 2).
    pub amount: Decimal,
    /// Channel the payment came through, e.g. `app`, `web`, `pos`.
    pub channel: String,
    /// Event time of the transaction.
    pub event_time: Millis,
}

/// An update of `document-blacklist` (compacted, keyed by document). A tombstone (no value) or
/// `listed = false` removes the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlacklistEntry {
    /// CPF or CNPJ, digits only or punctuated.
    pub document: String,
    /// Whether the document is listed.
    pub listed: bool,
    /// Why it was listed.
    pub reason: String,
    /// Who listed it, e.g. `coaf`, `internal`.
    pub source: String,
    /// Since when.
    pub since: Millis,
}

/// Outcome of risk scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    /// Let it through.
    Approve,
    /// Hold for a human.
    Review,
    /// Block it.
    Reject,
}

/// One rule's part in a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskReason {
    /// Rule id, e.g. `blacklist_payer`, `invalid_document`, `velocity_10m`.
    pub rule_id: String,
    /// Points the rule added to the score.
    pub contribution: i32,
    /// Human-readable explanation (documents masked).
    pub text: String,
}

/// A decision on `risk-decisions`, keyed by transaction id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskDecision {
    /// The transaction decided on.
    pub transaction_id: String,
    /// Score 0 to 1000.
    pub score: i32,
    /// Approve, review or reject.
    pub decision: Decision,
    /// The rules that fired, in evaluation order.
    pub reasons: Vec<RiskReason>,
    /// True when an external validation could not be used and the decision rests on local data.
    pub degraded: bool,
    /// Event time of the transaction.
    pub event_time: Millis,
    /// Processing time at which the decision was made.
    pub decided_at: Millis,
    /// `decided_at - event_time`, in milliseconds.
    pub latency_ms: i64,
}

/// A ledger entry on `ledger-entries`, keyed by account. `kind` and `currency` are strings and
/// `entry_id` is optional on the wire so that invalid entries can be decoded and dead-lettered
/// with a precise reason instead of failing to decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Entry id (a UUID); `None` is invalid.
    pub entry_id: Option<String>,
    /// Account the entry belongs to.
    pub account_id: String,
    /// `DEBIT` or `CREDIT`; anything else is invalid.
    pub kind: String,
    /// Amount, decimal(18, 2); must be > 0.
    pub amount: Decimal,
    /// ISO 4217 currency; only `BRL` is accepted.
    pub currency: String,
    /// When the entry happened (event time).
    pub occurred_at: Millis,
    /// Free text.
    pub description: String,
}

/// A daily consolidated balance on `daily-balances` (compacted; key = `account/date`), also the
/// row of the `daily_balances` view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyBalance {
    /// The account.
    pub account_id: String,
    /// Business date, days since 1970-01-01 in the configured time zone.
    pub business_date: i32,
    /// Sum of credits, decimal(18, 2).
    pub total_credits: Decimal,
    /// Sum of debits, decimal(18, 2).
    pub total_debits: Decimal,
    /// `total_credits - total_debits`, decimal(18, 2).
    pub net: Decimal,
    /// How many distinct entries were applied.
    pub entry_count: i64,
    /// Latest `occurred_at` among the entries.
    pub last_entry_at: Millis,
    /// Processing time of the last change.
    pub updated_at: Millis,
}
