//! The read-side replica of `fluxo serve`: it materializes the views the query API serves from
//! the processors' output topics (`daily-balances`, `risk-decisions`, `price-alerts`,
//! `below-average-events`) into a store of its own.
//!
//! This keeps the query side apart from processing (CQRS): a `fluxo serve` instance can run on
//! another machine, scale on its own, and keep answering from its replica while Kafka or the
//! processors are down. Rows are keyed exactly as the processors key their views, so the API
//! answers the same either way.

use super::kinds::{dispatch, KindTypes, KindVisitor};
use super::{Job, JobError, Output, RawRecord};
use crate::avro::typed::AvroEvent;
use crate::catalog::Kind;
use crate::codec::Codec;
use fluxo_processors::views::{self, ViewRow};
use fluxo_processors::{StateReader, StateWriter};
use std::collections::BTreeMap;

/// The processor kind whose output topics (holding `schema`) feed its view, if any: the
/// catalog says which schema each kind writes and [`Kind::view`] which view that feeds.
pub fn view_kind_for_schema(schema: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.shape().output == schema)
}

/// Writes view rows from output records, through the same [`views::materialize`] the
/// processors use in `fluxo run`.
pub struct ViewsJob {
    codec: Codec,
    topics: BTreeMap<String, Kind>,
    pending: BTreeMap<(&'static str, Vec<u8>), Vec<u8>>,
}

impl ViewsJob {
    /// A job replicating `topics` (topic -> the kind whose output it holds).
    pub fn new(codec: Codec, topics: BTreeMap<String, Kind>) -> Self {
        Self {
            codec,
            topics,
            pending: BTreeMap::new(),
        }
    }

    fn row<T: AvroEvent + ViewRow>(&mut self, rec: &RawRecord<'_>) -> Result<(), JobError> {
        let event: T = self.codec.decode(rec.payload)?;
        let (key, value) = views::view_entry(&event);
        // Buffered until flush, so a replayed batch overwrites rather than duplicates.
        self.pending.insert((T::VIEW, key), value);
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
        /// The row of one record, decoded as the output event of its topic's kind.
        struct Row<'j, 'r> {
            job: &'j mut ViewsJob,
            rec: &'j RawRecord<'r>,
        }
        impl KindVisitor for Row<'_, '_> {
            type Output = Result<(), JobError>;
            fn visit<K: KindTypes>(self) -> Self::Output {
                self.job.row::<K::Out>(self.rec)
            }
        }
        dispatch(kind, Row { job: self, rec })
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

#[cfg(test)]
mod tests {
    use super::*;
    use fluxo_processors::events::{BelowAverageEvent, DailyBalance, PriceAlert, RiskDecision};

    #[test]
    fn every_kind_feeds_its_own_view_from_its_output_schema() {
        for kind in Kind::ALL {
            assert_eq!(view_kind_for_schema(kind.shape().output), Some(kind));
        }
        assert_eq!(view_kind_for_schema("AssetPrice"), None);
        assert_eq!(
            view_kind_for_schema("DailyBalance").map(Kind::view),
            Some(DailyBalance::VIEW)
        );
        assert_eq!(
            view_kind_for_schema("RiskDecision").map(Kind::view),
            Some(RiskDecision::VIEW)
        );
        assert_eq!(
            view_kind_for_schema("PriceAlert").map(Kind::view),
            Some(PriceAlert::VIEW)
        );
        assert_eq!(
            view_kind_for_schema("BelowAverageEvent").map(Kind::view),
            Some(BelowAverageEvent::VIEW)
        );
    }
}
