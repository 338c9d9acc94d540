//! The read-side replica of `fluxo serve`: it materializes the views the query API serves from
//! the processors' output topics (`daily-balances`, `risk-decisions`, `price-alerts`,
//! `below-average-events`) into a store of its own.
//!
//! This keeps the query side apart from processing (CQRS): a `fluxo serve` instance can run on
//! another machine, scale on its own, and keep answering from its replica while Kafka or the
//! processors are down. Rows are keyed exactly as the processors key their views, so the API
//! answers the same either way.

use super::{Job, JobError, Output, RawRecord};
use crate::avro::typed::AvroEvent;
use crate::codec::Codec;
use fluxo_processors::events::{BelowAverageEvent, DailyBalance, PriceAlert, RiskDecision};
use fluxo_processors::{views, StateReader, StateWriter};
use std::collections::BTreeMap;

/// Which view a topic feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewKind {
    /// `daily-balances` -> `daily_balances`.
    DailyBalances,
    /// `risk-decisions` -> `risk_decisions`.
    RiskDecisions,
    /// `price-alerts` -> `price_alerts`.
    PriceAlerts,
    /// `below-average-events` -> `below_average_events`.
    BelowAverage,
}

impl ViewKind {
    /// The view fed by topics holding `schema`, if any.
    pub fn for_schema(schema: &str) -> Option<Self> {
        match schema {
            "DailyBalance" => Some(Self::DailyBalances),
            "RiskDecision" => Some(Self::RiskDecisions),
            "PriceAlert" => Some(Self::PriceAlerts),
            "BelowAverageEvent" => Some(Self::BelowAverage),
            _ => None,
        }
    }
}

/// Writes view rows from output records.
pub struct ViewsJob {
    codec: Codec,
    topics: BTreeMap<String, ViewKind>,
    pending: BTreeMap<(&'static str, Vec<u8>), Vec<u8>>,
}

impl ViewsJob {
    /// A job replicating `topics` (topic -> view).
    pub fn new(codec: Codec, topics: BTreeMap<String, ViewKind>) -> Self {
        Self {
            codec,
            topics,
            pending: BTreeMap::new(),
        }
    }

    fn row<T: AvroEvent + serde::Serialize>(
        &mut self,
        rec: &RawRecord<'_>,
        table: &'static str,
        key: impl Fn(&T) -> Vec<u8>,
    ) -> Result<(), JobError> {
        let event: T = self.codec.decode(rec.payload)?;
        let json = serde_json::to_vec(&event).map_err(|e| JobError::Retry(e.to_string()))?;
        self.pending.insert((table, key(&event)), json);
        Ok(())
    }
}

impl Job for ViewsJob {
    fn process(
        &mut self,
        rec: &RawRecord<'_>,
        _processing_time: i64,
        _state: &dyn StateReader,
        _out: &mut Vec<Output>,
    ) -> Result<(), JobError> {
        let Some(kind) = self.topics.get(rec.topic).copied() else {
            return Ok(());
        };
        if rec.payload.is_none() {
            // A tombstone on a compacted view topic: nothing to show for that key.
            return Ok(());
        }
        match kind {
            ViewKind::DailyBalances => self.row(rec, views::DAILY_BALANCES, |b: &DailyBalance| {
                views::daily_balance_key(&b.account_id, b.business_date)
            }),
            ViewKind::RiskDecisions => self.row(rec, views::RISK_DECISIONS, |d: &RiskDecision| {
                d.transaction_id.as_bytes().to_vec()
            }),
            ViewKind::PriceAlerts => self.row(rec, views::PRICE_ALERTS, |a: &PriceAlert| {
                views::alert_key(&a.symbol, a.to_time, &a.alert_id)
            }),
            ViewKind::BelowAverage => {
                self.row(rec, views::BELOW_AVERAGE_EVENTS, |e: &BelowAverageEvent| {
                    views::alert_key(&e.symbol, e.event_time, &e.event_id)
                })
            }
        }
    }

    fn flush(&mut self, changes: &mut dyn StateWriter) {
        for ((table, key), value) in std::mem::take(&mut self.pending) {
            changes.put(table, &key, &value);
        }
    }

    fn reset(&mut self) {
        self.pending.clear();
    }
}
