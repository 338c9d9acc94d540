//! Deterministic `daily_balances` rows for load tests and benchmarks.
//!
//! Account `i` is [`seed_account_id`]`(i)` (`ACC-000042`, the shape `fluxo simulate` uses) and
//! its row for day `d` is [`seeded_balance`]`(i, d, first_day)`, so a load test can check any
//! answer without reading the store.

use crate::state::{StateStore, StoreError, WriteBatch};
use fluxo_processors::events::{DailyBalance, MONEY_SCALE};
use fluxo_processors::{views, StateWriter};
use rust_decimal::Decimal;

/// Rows written per [`StateStore::commit`].
const BATCH_ROWS: usize = 20_000;

/// The id of seeded account `index`: `ACC-` and six digits (more past 999,999).
pub fn seed_account_id(index: usize) -> String {
    format!("ACC-{index:06}")
}

/// The seeded row of account `account` (an index) on day `first_day + day`: credits up to
/// 9,999.99, debits up to 7,999.99, 1 to 50 entries, times inside that day (UTC).
pub fn seeded_balance(account: usize, day: usize, first_day: i32) -> DailyBalance {
    let h = (account as u64)
        .wrapping_mul(2_654_435_761)
        .wrapping_add((day as u64).wrapping_mul(40_503))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 16;
    let credits = Decimal::new((h % 1_000_000) as i64, MONEY_SCALE);
    let debits = Decimal::new(((h / 1_000_000) % 800_000) as i64, MONEY_SCALE);
    let business_date = first_day.saturating_add(i32::try_from(day).unwrap_or(i32::MAX));
    let last_entry_at = i64::from(business_date) * 86_400_000 + (h % 86_400_000) as i64;
    DailyBalance {
        account_id: seed_account_id(account),
        business_date,
        total_credits: credits,
        total_debits: debits,
        net: credits - debits,
        entry_count: 1 + (h % 50) as i64,
        last_entry_at,
        updated_at: last_entry_at + 1_000,
    }
}

/// Write `accounts x days` rows of [`views::DAILY_BALANCES`] (days `first_day ..`) in batches of
/// 20,000 through [`StateStore::commit`]; returns the number of rows written.
///
/// # Errors
/// The first [`StoreError`] of a commit; earlier batches stay written.
pub fn seed_daily_balances(
    store: &dyn StateStore,
    accounts: usize,
    days: usize,
    first_day: i32,
) -> Result<usize, StoreError> {
    let mut batch = WriteBatch::new();
    let mut rows = 0;
    for account in 0..accounts {
        for day in 0..days {
            let b = seeded_balance(account, day, first_day);
            let value = serde_json::to_vec(&b).map_err(|e| StoreError(e.to_string()))?;
            let key = views::daily_balance_key(&b.account_id, b.business_date);
            batch.put(views::DAILY_BALANCES, &key, &value);
            rows += 1;
            if batch.writes.len() >= BATCH_ROWS {
                store.commit(std::mem::take(&mut batch))?;
            }
        }
    }
    store.commit(batch)?;
    Ok(rows)
}
