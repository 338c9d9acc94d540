//! Binding of the daily consolidation: `ledger-entries` in, `daily-balances` out (compacted,
//! keyed `account/date`).

use super::{Binding, JobError, Output, RawRecord};
use crate::codec::Codec;
use fluxo_processors::consolidation::{self, ConsolidationProcessor};
use fluxo_processors::events::{DailyBalance, LedgerEntry};

/// `daily-consolidation`.
pub struct ConsolidationBinding {
    /// Parameters.
    pub config: consolidation::Config,
    /// The `daily-balances` topic.
    pub output: String,
    /// Duplicates the current processor had skipped at the last look (for the counter).
    pub seen_duplicates: std::cell::Cell<u64>,
}

impl Binding for ConsolidationBinding {
    type P = ConsolidationProcessor;

    fn new_processor(&self) -> Self::P {
        ConsolidationProcessor::new(self.config.clone())
    }

    fn decode(&mut self, codec: &mut Codec, rec: &RawRecord<'_>) -> Result<LedgerEntry, JobError> {
        Ok(codec.decode(rec.payload)?)
    }

    fn after(&self, processor: &ConsolidationProcessor) {
        let now = processor.duplicates_skipped();
        let before = self.seen_duplicates.replace(now);
        // A fresh processor (after a rewind) starts from zero again.
        let delta = if now >= before { now - before } else { now };
        if delta > 0 {
            crate::metrics::DUPLICATES_SKIPPED
                .with_label_values(&["daily-consolidation"])
                .inc_by(delta);
        }
    }

    fn encode(&self, codec: &Codec, balance: &DailyBalance) -> anyhow::Result<Output> {
        Ok(Output::new(
            &self.output,
            consolidation::output_key(balance).into_bytes(),
            codec.encode(&self.output, balance)?,
        ))
    }
}
