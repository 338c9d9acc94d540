//! Binding of the daily consolidation: `ledger-entries` in, `daily-balances` out (compacted,
//! keyed `account/date`).

use super::{Binding, JobError, Output, RawRecord};
use crate::codec::Codec;
use fluxo_processors::consolidation::{self, ConsolidationProcessor};
use fluxo_processors::events::{DailyBalance, LedgerEntry};
use fluxo_processors::views::OutputEvent;

/// Whether `balance` changed after its business day had ended: its `updated_at` (processing
/// time of the change) falls on a later business date in `tz`.
fn is_late_correction(balance: &DailyBalance, tz: chrono_tz::Tz) -> bool {
    consolidation::business_date(balance.updated_at, tz)
        .is_some_and(|today| balance.business_date < today)
}

/// `daily-consolidation`.
pub struct ConsolidationBinding {
    /// Parameters.
    pub config: consolidation::Config,
    /// The `daily-balances` topic.
    pub output: String,
    /// Duplicates skipped, for the counter.
    pub duplicates: super::DuplicateCounter,
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
        self.duplicates.update(processor.duplicates_skipped());
    }

    /// A balance changed after its business day had ended (in processing time) is a late
    /// correction: `fluxo_consolidation_late_corrections_total` counts them.
    fn observe(&self, balance: &DailyBalance) {
        if is_late_correction(balance, self.config.time_zone.0) {
            crate::metrics::CONSOLIDATION_LATE_CORRECTIONS.inc();
        }
    }

    fn encode(&self, codec: &Codec, balance: &DailyBalance) -> anyhow::Result<Output> {
        Ok(Output::new(
            &self.output,
            balance.output_key(),
            codec.encode(&self.output, balance)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    fn days(y: i32, m: u32, d: u32) -> i32 {
        let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
        (date - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
    }

    fn balance(business_date: i32, updated_at: &str) -> DailyBalance {
        DailyBalance {
            account_id: "ACC-1".into(),
            business_date,
            total_credits: Decimal::ZERO,
            total_debits: Decimal::ZERO,
            net: Decimal::ZERO,
            entry_count: 1,
            last_entry_at: 0,
            updated_at: chrono::DateTime::parse_from_rfc3339(updated_at)
                .unwrap()
                .timestamp_millis(),
        }
    }

    #[test]
    fn a_balance_changed_after_its_day_ended_in_sao_paulo_is_a_late_correction() {
        let tz = chrono_tz::America::Sao_Paulo;
        // 02:30 UTC on the 21st is still 23:30 of the 20th in Sao Paulo (UTC-3).
        assert!(!is_late_correction(
            &balance(days(2026, 11, 20), "2026-11-21T02:30:00Z"),
            tz
        ));
        assert!(is_late_correction(
            &balance(days(2026, 11, 20), "2026-11-21T03:00:00Z"),
            tz
        ));
        assert!(is_late_correction(
            &balance(days(2026, 11, 1), "2026-11-21T12:00:00Z"),
            tz
        ));
        // A day in the future (clock skew upstream) is not a correction.
        assert!(!is_late_correction(
            &balance(days(2026, 11, 22), "2026-11-21T12:00:00Z"),
            tz
        ));
    }
}
