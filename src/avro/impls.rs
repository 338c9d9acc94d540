//! The hand-written [`AvroEvent`] mappings of the eight event types, field by field in schema
//! order. Four functions per type: `to_value`/`from_value` (generic `Value`, schema evolution) and
//! `write_datum`/`read_datum` (direct binary, current schema). The tests in `avro::tests` prove
//! both agree with the `.avsc` files and with each other.

use super::binary::{put_bool, put_decimal, put_index, put_int, put_long, put_str, Reader};
use super::decimal::DecimalSpec;
use super::schemas;
use super::typed::{decimal_value, describe_schema, AvroEvent, Fields};
use super::CodecError;
use apache_avro::types::Value;
use apache_avro::Schema;
use fluxo_processors::events::{
    AssetPrice, AverageMethod, BelowAverageEvent, BlacklistEntry, CrossingKind, DailyBalance,
    Decision, Direction, LedgerEntry, PriceAlert, RiskDecision, RiskReason, Transaction,
    TransactionKind, MONEY_SCALE, PERCENT_SCALE, PRICE_SCALE,
};
use rust_decimal::Decimal;

/// Prices: `decimal(20, 8)`.
const PRICE: DecimalSpec = DecimalSpec::new(20, PRICE_SCALE);
/// Percentages: `decimal(12, 4)`.
const PERCENT: DecimalSpec = DecimalSpec::new(12, PERCENT_SCALE);
/// BRL amounts: `decimal(18, 2)`.
const MONEY: DecimalSpec = DecimalSpec::new(18, MONEY_SCALE);

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn f(name: &str, value: Value) -> (String, Value) {
    (name.to_owned(), value)
}

/// Writes a decimal field, naming it on error.
fn put_dec(
    out: &mut Vec<u8>,
    value: Decimal,
    spec: DecimalSpec,
    record: &str,
    field: &str,
) -> Result<(), CodecError> {
    put_decimal(out, value, spec).map_err(|reason| CodecError::Decimal {
        path: format!("{record}.{field}"),
        reason,
    })
}

/// An Avro enum mirrored by a Rust enum: symbols in schema order.
trait Symbols: Sized + Copy + 'static {
    /// The schema's symbols, in order.
    const SYMBOLS: &'static [&'static str];
    /// The variant at `index` of [`Self::SYMBOLS`].
    fn from_index(index: usize) -> Option<Self>;
    /// The index of `self` in [`Self::SYMBOLS`].
    fn index(self) -> usize;

    fn value(self) -> Value {
        let i = self.index();
        // `index()` is always below SYMBOLS.len() (at most 4 symbols).
        Value::Enum(i as u32, Self::SYMBOLS[i].to_owned())
    }

    fn read(r: &mut Reader<'_>, field: &str) -> Result<Self, CodecError> {
        let i = r.index(field, "enum", Self::SYMBOLS.len())?;
        Self::from_index(i).ok_or_else(|| CodecError::UnknownSymbol {
            path: r.path(field),
            symbol: Self::SYMBOLS[i].to_owned(),
            expected: Self::SYMBOLS,
        })
    }

    fn take(fields: &mut Fields, field: &str) -> Result<Self, CodecError> {
        let i = fields.symbol(field, Self::SYMBOLS)?;
        // `symbol` returns an index into SYMBOLS, and every impl maps every index.
        Self::from_index(i).ok_or_else(|| CodecError::UnknownSymbol {
            path: fields.field_path(field),
            symbol: Self::SYMBOLS[i].to_owned(),
            expected: Self::SYMBOLS,
        })
    }
}

impl Symbols for Direction {
    const SYMBOLS: &'static [&'static str] = &["RISE", "FALL"];
    fn from_index(index: usize) -> Option<Self> {
        match index {
            0 => Some(Direction::Rise),
            1 => Some(Direction::Fall),
            _ => None,
        }
    }
    fn index(self) -> usize {
        match self {
            Direction::Rise => 0,
            Direction::Fall => 1,
        }
    }
}

impl Symbols for CrossingKind {
    const SYMBOLS: &'static [&'static str] = &["BELOW", "RECOVERED"];
    fn from_index(index: usize) -> Option<Self> {
        match index {
            0 => Some(CrossingKind::Below),
            1 => Some(CrossingKind::Recovered),
            _ => None,
        }
    }
    fn index(self) -> usize {
        match self {
            CrossingKind::Below => 0,
            CrossingKind::Recovered => 1,
        }
    }
}

impl Symbols for AverageMethod {
    const SYMBOLS: &'static [&'static str] = &["SMA", "EWMA"];
    fn from_index(index: usize) -> Option<Self> {
        match index {
            0 => Some(AverageMethod::Sma),
            1 => Some(AverageMethod::Ewma),
            _ => None,
        }
    }
    fn index(self) -> usize {
        match self {
            AverageMethod::Sma => 0,
            AverageMethod::Ewma => 1,
        }
    }
}

impl Symbols for TransactionKind {
    const SYMBOLS: &'static [&'static str] = &["PIX", "TED", "CARD", "BOLETO"];
    fn from_index(index: usize) -> Option<Self> {
        match index {
            0 => Some(TransactionKind::Pix),
            1 => Some(TransactionKind::Ted),
            2 => Some(TransactionKind::Card),
            3 => Some(TransactionKind::Boleto),
            _ => None,
        }
    }
    fn index(self) -> usize {
        match self {
            TransactionKind::Pix => 0,
            TransactionKind::Ted => 1,
            TransactionKind::Card => 2,
            TransactionKind::Boleto => 3,
        }
    }
}

impl Symbols for Decision {
    const SYMBOLS: &'static [&'static str] = &["APPROVE", "REVIEW", "REJECT"];
    fn from_index(index: usize) -> Option<Self> {
        match index {
            0 => Some(Decision::Approve),
            1 => Some(Decision::Review),
            2 => Some(Decision::Reject),
            _ => None,
        }
    }
    fn index(self) -> usize {
        match self {
            Decision::Approve => 0,
            Decision::Review => 1,
            Decision::Reject => 2,
        }
    }
}

/// Reads the top-level record of `T` from the front of `input` with `read`, advancing `input`.
fn read_top<T: AvroEvent>(
    input: &mut &[u8],
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    let mut r = Reader::new(input, T::SCHEMA_NAME);
    let event = read(&mut r)?;
    *input = r.rest();
    Ok(event)
}

/// The fields of a top-level record value of `T`.
fn fields_of<T: AvroEvent>(value: Value) -> Result<Fields, CodecError> {
    Fields::new(value, T::schema(), T::schema(), T::SCHEMA_NAME.to_owned())
}

// ---------------------------------------------------------------------------------------------
// AssetPrice

impl AvroEvent for AssetPrice {
    const SCHEMA_NAME: &'static str = "AssetPrice";

    fn schema() -> &'static Schema {
        schemas::get(schemas::ASSET_PRICE)
    }

    fn to_value(&self) -> Result<Value, CodecError> {
        let n = Self::SCHEMA_NAME;
        Ok(Value::Record(vec![
            f("event_id", s(&self.event_id)),
            f("symbol", s(&self.symbol)),
            f("price", decimal_value(self.price, PRICE, n, "price")?),
            f("currency", s(&self.currency)),
            f("source", s(&self.source)),
            f("event_time", Value::TimestampMillis(self.event_time)),
        ]))
    }

    fn from_value(value: Value) -> Result<Self, CodecError> {
        let mut r = fields_of::<Self>(value)?;
        Ok(AssetPrice {
            event_id: r.string("event_id")?,
            symbol: r.string("symbol")?,
            price: r.decimal("price", PRICE)?,
            currency: r.string("currency")?,
            source: r.string("source")?,
            event_time: r.millis("event_time")?,
        })
    }

    fn write_datum(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        put_str(out, &self.event_id);
        put_str(out, &self.symbol);
        put_dec(out, self.price, PRICE, Self::SCHEMA_NAME, "price")?;
        put_str(out, &self.currency);
        put_str(out, &self.source);
        put_long(out, self.event_time);
        Ok(())
    }

    fn read_datum(input: &mut &[u8]) -> Result<Self, CodecError> {
        read_top(input, |r| {
            Ok(AssetPrice {
                event_id: r.string("event_id")?,
                symbol: r.string("symbol")?,
                price: r.decimal("price", PRICE)?,
                currency: r.string("currency")?,
                source: r.string("source")?,
                event_time: r.long("event_time")?,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// PriceAlert

impl AvroEvent for PriceAlert {
    const SCHEMA_NAME: &'static str = "PriceAlert";

    fn schema() -> &'static Schema {
        schemas::get(schemas::PRICE_ALERT)
    }

    fn to_value(&self) -> Result<Value, CodecError> {
        let n = Self::SCHEMA_NAME;
        Ok(Value::Record(vec![
            f("alert_id", s(&self.alert_id)),
            f("symbol", s(&self.symbol)),
            f("direction", self.direction.value()),
            f(
                "from_price",
                decimal_value(self.from_price, PRICE, n, "from_price")?,
            ),
            f("from_time", Value::TimestampMillis(self.from_time)),
            f("from_event_id", s(&self.from_event_id)),
            f(
                "to_price",
                decimal_value(self.to_price, PRICE, n, "to_price")?,
            ),
            f("to_time", Value::TimestampMillis(self.to_time)),
            f("to_event_id", s(&self.to_event_id)),
            f(
                "change_pct",
                decimal_value(self.change_pct, PERCENT, n, "change_pct")?,
            ),
            f(
                "threshold_pct",
                decimal_value(self.threshold_pct, PERCENT, n, "threshold_pct")?,
            ),
            f("window_start", Value::TimestampMillis(self.window_start)),
            f("window_end", Value::TimestampMillis(self.window_end)),
        ]))
    }

    fn from_value(value: Value) -> Result<Self, CodecError> {
        let mut r = fields_of::<Self>(value)?;
        Ok(PriceAlert {
            alert_id: r.string("alert_id")?,
            symbol: r.string("symbol")?,
            direction: Direction::take(&mut r, "direction")?,
            from_price: r.decimal("from_price", PRICE)?,
            from_time: r.millis("from_time")?,
            from_event_id: r.string("from_event_id")?,
            to_price: r.decimal("to_price", PRICE)?,
            to_time: r.millis("to_time")?,
            to_event_id: r.string("to_event_id")?,
            change_pct: r.decimal("change_pct", PERCENT)?,
            threshold_pct: r.decimal("threshold_pct", PERCENT)?,
            window_start: r.millis("window_start")?,
            window_end: r.millis("window_end")?,
        })
    }

    fn write_datum(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let n = Self::SCHEMA_NAME;
        put_str(out, &self.alert_id);
        put_str(out, &self.symbol);
        put_index(out, self.direction.index());
        put_dec(out, self.from_price, PRICE, n, "from_price")?;
        put_long(out, self.from_time);
        put_str(out, &self.from_event_id);
        put_dec(out, self.to_price, PRICE, n, "to_price")?;
        put_long(out, self.to_time);
        put_str(out, &self.to_event_id);
        put_dec(out, self.change_pct, PERCENT, n, "change_pct")?;
        put_dec(out, self.threshold_pct, PERCENT, n, "threshold_pct")?;
        put_long(out, self.window_start);
        put_long(out, self.window_end);
        Ok(())
    }

    fn read_datum(input: &mut &[u8]) -> Result<Self, CodecError> {
        read_top(input, |r| {
            Ok(PriceAlert {
                alert_id: r.string("alert_id")?,
                symbol: r.string("symbol")?,
                direction: Direction::read(r, "direction")?,
                from_price: r.decimal("from_price", PRICE)?,
                from_time: r.long("from_time")?,
                from_event_id: r.string("from_event_id")?,
                to_price: r.decimal("to_price", PRICE)?,
                to_time: r.long("to_time")?,
                to_event_id: r.string("to_event_id")?,
                change_pct: r.decimal("change_pct", PERCENT)?,
                threshold_pct: r.decimal("threshold_pct", PERCENT)?,
                window_start: r.long("window_start")?,
                window_end: r.long("window_end")?,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// BelowAverageEvent

impl AvroEvent for BelowAverageEvent {
    const SCHEMA_NAME: &'static str = "BelowAverageEvent";

    fn schema() -> &'static Schema {
        schemas::get(schemas::BELOW_AVERAGE_EVENT)
    }

    fn to_value(&self) -> Result<Value, CodecError> {
        let n = Self::SCHEMA_NAME;
        Ok(Value::Record(vec![
            f("event_id", s(&self.event_id)),
            f("symbol", s(&self.symbol)),
            f("kind", self.kind.value()),
            f("price", decimal_value(self.price, PRICE, n, "price")?),
            f("average", decimal_value(self.average, PRICE, n, "average")?),
            f(
                "deviation_pct",
                decimal_value(self.deviation_pct, PERCENT, n, "deviation_pct")?,
            ),
            f("samples", Value::Long(self.samples)),
            f("method", self.method.value()),
            f("event_time", Value::TimestampMillis(self.event_time)),
            f("quote_event_id", s(&self.quote_event_id)),
        ]))
    }

    fn from_value(value: Value) -> Result<Self, CodecError> {
        let mut r = fields_of::<Self>(value)?;
        Ok(BelowAverageEvent {
            event_id: r.string("event_id")?,
            symbol: r.string("symbol")?,
            kind: CrossingKind::take(&mut r, "kind")?,
            price: r.decimal("price", PRICE)?,
            average: r.decimal("average", PRICE)?,
            deviation_pct: r.decimal("deviation_pct", PERCENT)?,
            samples: r.long("samples")?,
            method: AverageMethod::take(&mut r, "method")?,
            event_time: r.millis("event_time")?,
            quote_event_id: r.string("quote_event_id")?,
        })
    }

    fn write_datum(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let n = Self::SCHEMA_NAME;
        put_str(out, &self.event_id);
        put_str(out, &self.symbol);
        put_index(out, self.kind.index());
        put_dec(out, self.price, PRICE, n, "price")?;
        put_dec(out, self.average, PRICE, n, "average")?;
        put_dec(out, self.deviation_pct, PERCENT, n, "deviation_pct")?;
        put_long(out, self.samples);
        put_index(out, self.method.index());
        put_long(out, self.event_time);
        put_str(out, &self.quote_event_id);
        Ok(())
    }

    fn read_datum(input: &mut &[u8]) -> Result<Self, CodecError> {
        read_top(input, |r| {
            Ok(BelowAverageEvent {
                event_id: r.string("event_id")?,
                symbol: r.string("symbol")?,
                kind: CrossingKind::read(r, "kind")?,
                price: r.decimal("price", PRICE)?,
                average: r.decimal("average", PRICE)?,
                deviation_pct: r.decimal("deviation_pct", PERCENT)?,
                samples: r.long("samples")?,
                method: AverageMethod::read(r, "method")?,
                event_time: r.long("event_time")?,
                quote_event_id: r.string("quote_event_id")?,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Transaction

impl AvroEvent for Transaction {
    const SCHEMA_NAME: &'static str = "Transaction";

    fn schema() -> &'static Schema {
        schemas::get(schemas::TRANSACTION)
    }

    fn to_value(&self) -> Result<Value, CodecError> {
        let n = Self::SCHEMA_NAME;
        Ok(Value::Record(vec![
            f("transaction_id", s(&self.transaction_id)),
            f("kind", self.kind.value()),
            f("payer_document", s(&self.payer_document)),
            f("payer_name", s(&self.payer_name)),
            f("payee_document", s(&self.payee_document)),
            f("amount", decimal_value(self.amount, MONEY, n, "amount")?),
            f("channel", s(&self.channel)),
            f("event_time", Value::TimestampMillis(self.event_time)),
        ]))
    }

    fn from_value(value: Value) -> Result<Self, CodecError> {
        let mut r = fields_of::<Self>(value)?;
        Ok(Transaction {
            transaction_id: r.string("transaction_id")?,
            kind: TransactionKind::take(&mut r, "kind")?,
            payer_document: r.string("payer_document")?,
            payer_name: r.string("payer_name")?,
            payee_document: r.string("payee_document")?,
            amount: r.decimal("amount", MONEY)?,
            channel: r.string("channel")?,
            event_time: r.millis("event_time")?,
        })
    }

    fn write_datum(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        put_str(out, &self.transaction_id);
        put_index(out, self.kind.index());
        put_str(out, &self.payer_document);
        put_str(out, &self.payer_name);
        put_str(out, &self.payee_document);
        put_dec(out, self.amount, MONEY, Self::SCHEMA_NAME, "amount")?;
        put_str(out, &self.channel);
        put_long(out, self.event_time);
        Ok(())
    }

    fn read_datum(input: &mut &[u8]) -> Result<Self, CodecError> {
        read_top(input, |r| {
            Ok(Transaction {
                transaction_id: r.string("transaction_id")?,
                kind: TransactionKind::read(r, "kind")?,
                payer_document: r.string("payer_document")?,
                payer_name: r.string("payer_name")?,
                payee_document: r.string("payee_document")?,
                amount: r.decimal("amount", MONEY)?,
                channel: r.string("channel")?,
                event_time: r.long("event_time")?,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// BlacklistEntry

impl AvroEvent for BlacklistEntry {
    const SCHEMA_NAME: &'static str = "BlacklistEntry";

    fn schema() -> &'static Schema {
        schemas::get(schemas::BLACKLIST_ENTRY)
    }

    fn to_value(&self) -> Result<Value, CodecError> {
        Ok(Value::Record(vec![
            f("document", s(&self.document)),
            f("listed", Value::Boolean(self.listed)),
            f("reason", s(&self.reason)),
            f("source", s(&self.source)),
            f("since", Value::TimestampMillis(self.since)),
        ]))
    }

    fn from_value(value: Value) -> Result<Self, CodecError> {
        let mut r = fields_of::<Self>(value)?;
        Ok(BlacklistEntry {
            document: r.string("document")?,
            listed: r.boolean("listed")?,
            reason: r.string("reason")?,
            source: r.string("source")?,
            since: r.millis("since")?,
        })
    }

    fn write_datum(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        put_str(out, &self.document);
        put_bool(out, self.listed);
        put_str(out, &self.reason);
        put_str(out, &self.source);
        put_long(out, self.since);
        Ok(())
    }

    fn read_datum(input: &mut &[u8]) -> Result<Self, CodecError> {
        read_top(input, |r| {
            Ok(BlacklistEntry {
                document: r.string("document")?,
                listed: r.boolean("listed")?,
                reason: r.string("reason")?,
                source: r.string("source")?,
                since: r.long("since")?,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// RiskDecision (with the nested RiskReason record)

fn reason_to_value(reason: &RiskReason) -> Value {
    Value::Record(vec![
        f("rule_id", s(&reason.rule_id)),
        f("contribution", Value::Int(reason.contribution)),
        f("text", s(&reason.text)),
    ])
}

impl AvroEvent for RiskDecision {
    const SCHEMA_NAME: &'static str = "RiskDecision";

    fn schema() -> &'static Schema {
        schemas::get(schemas::RISK_DECISION)
    }

    fn to_value(&self) -> Result<Value, CodecError> {
        Ok(Value::Record(vec![
            f("transaction_id", s(&self.transaction_id)),
            f("score", Value::Int(self.score)),
            f("decision", self.decision.value()),
            f(
                "reasons",
                Value::Array(self.reasons.iter().map(reason_to_value).collect()),
            ),
            f("degraded", Value::Boolean(self.degraded)),
            f("event_time", Value::TimestampMillis(self.event_time)),
            f("decided_at", Value::TimestampMillis(self.decided_at)),
            f("latency_ms", Value::Long(self.latency_ms)),
        ]))
    }

    fn from_value(value: Value) -> Result<Self, CodecError> {
        let mut r = fields_of::<Self>(value)?;
        let transaction_id = r.string("transaction_id")?;
        let score = r.int("score")?;
        let decision = Decision::take(&mut r, "decision")?;
        let item_schema = match r.field_schema("reasons") {
            Some(Schema::Array(array)) => array.items.as_ref(),
            other => {
                return Err(CodecError::SchemaMismatch {
                    expected: "an array of RiskReason records",
                    found: other.map_or_else(|| "no reasons field".to_owned(), describe_schema),
                })
            }
        };
        let items = r.array("reasons")?;
        let mut reasons = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let mut reason = Fields::new(item, r.root(), item_schema, r.item_path("reasons", i))?;
            reasons.push(RiskReason {
                rule_id: reason.string("rule_id")?,
                contribution: reason.int("contribution")?,
                text: reason.string("text")?,
            });
        }
        Ok(RiskDecision {
            transaction_id,
            score,
            decision,
            reasons,
            degraded: r.boolean("degraded")?,
            event_time: r.millis("event_time")?,
            decided_at: r.millis("decided_at")?,
            latency_ms: r.long("latency_ms")?,
        })
    }

    fn write_datum(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        put_str(out, &self.transaction_id);
        put_int(out, self.score);
        put_index(out, self.decision.index());
        // One block holding every item, then the end marker (what apache_avro writes).
        if !self.reasons.is_empty() {
            put_index(out, self.reasons.len());
            for reason in &self.reasons {
                put_str(out, &reason.rule_id);
                put_int(out, reason.contribution);
                put_str(out, &reason.text);
            }
        }
        put_long(out, 0);
        put_bool(out, self.degraded);
        put_long(out, self.event_time);
        put_long(out, self.decided_at);
        put_long(out, self.latency_ms);
        Ok(())
    }

    fn read_datum(input: &mut &[u8]) -> Result<Self, CodecError> {
        read_top(input, |r| {
            let transaction_id = r.string("transaction_id")?;
            let score = r.int("score")?;
            let decision = Decision::read(r, "decision")?;
            let mut reasons = Vec::new();
            loop {
                let count = r.block_count("reasons")?;
                if count == 0 {
                    break;
                }
                reasons.reserve(count);
                for _ in 0..count {
                    r.set_item(Some(("reasons", reasons.len())));
                    reasons.push(RiskReason {
                        rule_id: r.string("rule_id")?,
                        contribution: r.int("contribution")?,
                        text: r.string("text")?,
                    });
                }
                r.set_item(None);
            }
            Ok(RiskDecision {
                transaction_id,
                score,
                decision,
                reasons,
                degraded: r.boolean("degraded")?,
                event_time: r.long("event_time")?,
                decided_at: r.long("decided_at")?,
                latency_ms: r.long("latency_ms")?,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// LedgerEntry (entry_id is the union ["null", "string"])

impl AvroEvent for LedgerEntry {
    const SCHEMA_NAME: &'static str = "LedgerEntry";

    fn schema() -> &'static Schema {
        schemas::get(schemas::LEDGER_ENTRY)
    }

    fn to_value(&self) -> Result<Value, CodecError> {
        let entry_id = match &self.entry_id {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(id) => Value::Union(1, Box::new(s(id))),
        };
        Ok(Value::Record(vec![
            f("entry_id", entry_id),
            f("account_id", s(&self.account_id)),
            f("kind", s(&self.kind)),
            f(
                "amount",
                decimal_value(self.amount, MONEY, Self::SCHEMA_NAME, "amount")?,
            ),
            f("currency", s(&self.currency)),
            f("occurred_at", Value::TimestampMillis(self.occurred_at)),
            f("description", s(&self.description)),
        ]))
    }

    fn from_value(value: Value) -> Result<Self, CodecError> {
        let mut r = fields_of::<Self>(value)?;
        Ok(LedgerEntry {
            entry_id: r.opt_string("entry_id")?,
            account_id: r.string("account_id")?,
            kind: r.string("kind")?,
            amount: r.decimal("amount", MONEY)?,
            currency: r.string("currency")?,
            occurred_at: r.millis("occurred_at")?,
            description: r.string("description")?,
        })
    }

    fn write_datum(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match &self.entry_id {
            None => put_index(out, 0),
            Some(id) => {
                put_index(out, 1);
                put_str(out, id);
            }
        }
        put_str(out, &self.account_id);
        put_str(out, &self.kind);
        put_dec(out, self.amount, MONEY, Self::SCHEMA_NAME, "amount")?;
        put_str(out, &self.currency);
        put_long(out, self.occurred_at);
        put_str(out, &self.description);
        Ok(())
    }

    fn read_datum(input: &mut &[u8]) -> Result<Self, CodecError> {
        read_top(input, |r| {
            let entry_id = match r.index("entry_id", "union", 2)? {
                0 => None,
                _ => Some(r.string("entry_id")?),
            };
            Ok(LedgerEntry {
                entry_id,
                account_id: r.string("account_id")?,
                kind: r.string("kind")?,
                amount: r.decimal("amount", MONEY)?,
                currency: r.string("currency")?,
                occurred_at: r.long("occurred_at")?,
                description: r.string("description")?,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// DailyBalance

impl AvroEvent for DailyBalance {
    const SCHEMA_NAME: &'static str = "DailyBalance";

    fn schema() -> &'static Schema {
        schemas::get(schemas::DAILY_BALANCE)
    }

    fn to_value(&self) -> Result<Value, CodecError> {
        let n = Self::SCHEMA_NAME;
        Ok(Value::Record(vec![
            f("account_id", s(&self.account_id)),
            f("business_date", Value::Date(self.business_date)),
            f(
                "total_credits",
                decimal_value(self.total_credits, MONEY, n, "total_credits")?,
            ),
            f(
                "total_debits",
                decimal_value(self.total_debits, MONEY, n, "total_debits")?,
            ),
            f("net", decimal_value(self.net, MONEY, n, "net")?),
            f("entry_count", Value::Long(self.entry_count)),
            f("last_entry_at", Value::TimestampMillis(self.last_entry_at)),
            f("updated_at", Value::TimestampMillis(self.updated_at)),
        ]))
    }

    fn from_value(value: Value) -> Result<Self, CodecError> {
        let mut r = fields_of::<Self>(value)?;
        Ok(DailyBalance {
            account_id: r.string("account_id")?,
            business_date: r.date("business_date")?,
            total_credits: r.decimal("total_credits", MONEY)?,
            total_debits: r.decimal("total_debits", MONEY)?,
            net: r.decimal("net", MONEY)?,
            entry_count: r.long("entry_count")?,
            last_entry_at: r.millis("last_entry_at")?,
            updated_at: r.millis("updated_at")?,
        })
    }

    fn write_datum(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let n = Self::SCHEMA_NAME;
        put_str(out, &self.account_id);
        put_int(out, self.business_date);
        put_dec(out, self.total_credits, MONEY, n, "total_credits")?;
        put_dec(out, self.total_debits, MONEY, n, "total_debits")?;
        put_dec(out, self.net, MONEY, n, "net")?;
        put_long(out, self.entry_count);
        put_long(out, self.last_entry_at);
        put_long(out, self.updated_at);
        Ok(())
    }

    fn read_datum(input: &mut &[u8]) -> Result<Self, CodecError> {
        read_top(input, |r| {
            Ok(DailyBalance {
                account_id: r.string("account_id")?,
                business_date: r.int("business_date")?,
                total_credits: r.decimal("total_credits", MONEY)?,
                total_debits: r.decimal("total_debits", MONEY)?,
                net: r.decimal("net", MONEY)?,
                entry_count: r.long("entry_count")?,
                last_entry_at: r.long("last_entry_at")?,
                updated_at: r.long("updated_at")?,
            })
        })
    }
}
