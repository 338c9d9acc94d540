//! Materialized views the query API serves, how their keys are laid out, and the one
//! materializer that writes their rows.
//!
//! Processors write view rows through [`crate::StateWriter`] in `flush`, so a view always
//! reflects exactly the input offsets checkpointed with it. Values are the JSON of the event
//! struct (decimals as strings); keys are ordered bytes shaped like a ScyllaDB partition key
//! followed by a clustering key, so a prefix scan lists one partition in clustering order.
//!
//! Every row is written by [`materialize`], from the event's [`ViewRow`] impl: by the
//! processors in `fluxo run` (their `flush`) and by the read-side replica of `fluxo serve`
//! (`jobs::views` in the runtime, from the output topics), so the two cannot key or encode a
//! row differently. A new output event implements [`ViewRow`] and [`OutputEvent`] (here or
//! in its processor's module): the runtime's generic binding, view replica and replay diff
//! take it from there.

use crate::events::{BelowAverageEvent, DailyBalance, PriceAlert, RiskDecision};
use crate::{Millis, StateWriter};
use serde::Serialize;

/// `price_alerts`: key [`alert_key`], value JSON of [`crate::events::PriceAlert`].
pub const PRICE_ALERTS: &str = "price_alerts";
/// `below_average_events`: key [`alert_key`], value JSON of
/// [`crate::events::BelowAverageEvent`].
pub const BELOW_AVERAGE_EVENTS: &str = "below_average_events";
/// `risk_decisions`: key = transaction id bytes, value JSON of [`crate::events::RiskDecision`].
pub const RISK_DECISIONS: &str = "risk_decisions";
/// `daily_balances`: key [`daily_balance_key`], value JSON of [`crate::events::DailyBalance`].
pub const DAILY_BALANCES: &str = "daily_balances";

/// Separator between the partition part and the clustering part of a view key.
pub const SEP: u8 = 0;

/// Order-preserving big-endian bytes of a signed time or date (sign bit flipped).
pub fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`ordered_i64`].
pub fn from_ordered_i64(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// The partition prefix of `partition` (e.g. a symbol or an account): `partition \0`.
pub fn partition_prefix(partition: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(partition.len() + 1);
    key.extend_from_slice(partition.as_bytes());
    key.push(SEP);
    key
}

/// Key of an alert row: `symbol \0 time(8 bytes, ordered) id`, so one symbol's alerts scan in
/// event-time order and `since=T` is a range scan from [`alert_key`]`(symbol, T, "")`.
pub fn alert_key(symbol: &str, time: Millis, id: &str) -> Vec<u8> {
    let mut key = partition_prefix(symbol);
    key.extend_from_slice(&ordered_i64(time));
    key.extend_from_slice(id.as_bytes());
    key
}

/// Key of a daily balance row: `account \0 date(8 bytes, ordered)`, date = days since epoch.
pub fn daily_balance_key(account: &str, business_date: i32) -> Vec<u8> {
    let mut key = partition_prefix(account);
    key.extend_from_slice(&ordered_i64(i64::from(business_date)));
    key
}

/// An output event that is a row of a view: the view it belongs to and its key there.
pub trait ViewRow: Serialize {
    /// The view (table) the event is a row of.
    const VIEW: &'static str;

    /// The row's key in [`Self::VIEW`].
    fn view_key(&self) -> Vec<u8>;
}

impl ViewRow for PriceAlert {
    const VIEW: &'static str = PRICE_ALERTS;

    fn view_key(&self) -> Vec<u8> {
        alert_key(&self.symbol, self.to_time, &self.alert_id)
    }
}

impl ViewRow for BelowAverageEvent {
    const VIEW: &'static str = BELOW_AVERAGE_EVENTS;

    fn view_key(&self) -> Vec<u8> {
        alert_key(&self.symbol, self.event_time, &self.event_id)
    }
}

impl ViewRow for RiskDecision {
    const VIEW: &'static str = RISK_DECISIONS;

    fn view_key(&self) -> Vec<u8> {
        self.transaction_id.as_bytes().to_vec()
    }
}

impl ViewRow for DailyBalance {
    const VIEW: &'static str = DAILY_BALANCES;

    fn view_key(&self) -> Vec<u8> {
        daily_balance_key(&self.account_id, self.business_date)
    }
}

/// An output event as the runtime handles every one alike: its Kafka key, and what identifies
/// and compares it in a replay's what-if diff. With [`ViewRow`], this is all the runtime needs
/// of a new output event besides its Avro codec (generated from its schema); the impls may live
/// next to the event's processor.
pub trait OutputEvent: ViewRow {
    /// The key of the output record in Kafka (it decides the partition).
    fn output_key(&self) -> Vec<u8>;

    /// What identifies this output across a live run and a replay of the same input.
    fn diff_key(&self) -> String;

    /// The symbol a diff shows with a change, if the event has one.
    fn diff_symbol(&self) -> Option<&str> {
        None
    }

    /// The event time a diff shows with a change (epoch ms), if it shows one.
    fn diff_time(&self) -> Option<Millis> {
        None
    }

    /// What a diff compares besides the key (empty: only whether the output exists).
    fn diff_class(&self) -> String {
        String::new()
    }
}

impl OutputEvent for PriceAlert {
    fn output_key(&self) -> Vec<u8> {
        self.symbol.as_bytes().to_vec()
    }

    fn diff_key(&self) -> String {
        format!(
            "{} {}->{}",
            self.symbol, self.from_event_id, self.to_event_id
        )
    }

    fn diff_symbol(&self) -> Option<&str> {
        Some(&self.symbol)
    }

    fn diff_time(&self) -> Option<Millis> {
        Some(self.to_time)
    }
}

impl OutputEvent for BelowAverageEvent {
    fn output_key(&self) -> Vec<u8> {
        self.symbol.as_bytes().to_vec()
    }

    fn diff_key(&self) -> String {
        format!("{} {} {:?}", self.symbol, self.quote_event_id, self.kind)
    }

    fn diff_symbol(&self) -> Option<&str> {
        Some(&self.symbol)
    }

    fn diff_time(&self) -> Option<Millis> {
        Some(self.event_time)
    }
}

impl OutputEvent for RiskDecision {
    fn output_key(&self) -> Vec<u8> {
        self.transaction_id.as_bytes().to_vec()
    }

    fn diff_key(&self) -> String {
        self.transaction_id.clone()
    }

    fn diff_time(&self) -> Option<Millis> {
        Some(self.event_time)
    }

    fn diff_class(&self) -> String {
        crate::risk::decision_symbol(self.decision).to_string()
    }
}

impl OutputEvent for DailyBalance {
    fn output_key(&self) -> Vec<u8> {
        crate::consolidation::output_key(self).into_bytes()
    }

    fn diff_key(&self) -> String {
        let day = crate::consolidation::date_text(self.business_date).unwrap_or_default();
        format!("{}/{day}", self.account_id)
    }

    /// Compared, never shown: amounts stay out of the report.
    fn diff_class(&self) -> String {
        format!(
            "{} {} {} {}",
            self.total_credits, self.total_debits, self.net, self.entry_count
        )
    }
}

/// The key and value of `row` in its view (the value is the event's JSON).
pub fn view_entry<T: ViewRow>(row: &T) -> (Vec<u8>, Vec<u8>) {
    (row.view_key(), crate::keyed::to_json(row))
}

/// Writes (or overwrites) `row` in its view.
pub fn materialize<T: ViewRow>(changes: &mut dyn StateWriter, row: &T) {
    let (key, value) = view_entry(row);
    changes.put(T::VIEW, &key, &value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_bytes_sort_like_numbers() {
        let values = [-5_i64, -1, 0, 1, 1_700_000_000_000];
        for pair in values.windows(2) {
            assert!(ordered_i64(pair[0]) < ordered_i64(pair[1]));
            assert_eq!(from_ordered_i64(ordered_i64(pair[0])), pair[0]);
        }
        assert!(daily_balance_key("acc", -1) < daily_balance_key("acc", 0));
        assert!(alert_key("A", 5, "z") < alert_key("A", 6, "a"));
    }
}
