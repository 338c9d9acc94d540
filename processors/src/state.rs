//! The key-value state interface processors see, and an in-memory implementation.
//!
//! State is organised in named tables of byte keys and byte values. Table names are global in a
//! store, so each processor prefixes its private tables with its own name
//! (`price-change/symbols`); materialized views that the query API serves use the view's name
//! (`daily_balances`, `risk_decisions`, `price_alerts`). Keys of a view are ordered bytes, so a
//! prefix scan over `account\0` lists an account's days in date order — the same shape a
//! ScyllaDB table gets from its partition key plus clustering key.

use std::collections::BTreeMap;

/// Read access to committed state.
pub trait StateReader {
    /// The value stored under `key` in `table`, if any.
    fn get(&self, table: &str, key: &[u8]) -> Option<Vec<u8>>;

    /// Every `(key, value)` of `table` whose key starts with `prefix`, in key order. `prefix`
    /// names one partition of the table (it ends with [`crate::views::SEP`], as
    /// [`crate::views::partition_prefix`] builds it), so a wide-column store answers from one
    /// partition. Meant for restoring a processor, not for the per-record path.
    fn scan_prefix(&self, table: &str, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
}

/// Buffered writes, committed by the runtime atomically with input offsets.
pub trait StateWriter {
    /// Insert or replace `key` in `table` (idempotent upsert).
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]);
    /// Remove `key` from `table`; removing a missing key is not an error.
    fn delete(&mut self, table: &str, key: &[u8]);
}

/// An in-memory state store for tests, benchmarks and replays without a database.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryState {
    /// `(table, key) -> value`.
    pub entries: BTreeMap<(String, Vec<u8>), Vec<u8>>,
}

impl MemoryState {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every `(key, value)` of `table`, in key order.
    pub fn table(&self, table: &str) -> Vec<(&[u8], &[u8])> {
        self.entries
            .iter()
            .filter(|((t, _), _)| t == table)
            .map(|((_, k), v)| (k.as_slice(), v.as_slice()))
            .collect()
    }
}

impl StateReader for MemoryState {
    fn get(&self, table: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.entries
            .get(&(table.to_string(), key.to_vec()))
            .cloned()
    }

    fn scan_prefix(&self, table: &str, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.entries
            .range((table.to_string(), prefix.to_vec())..)
            .take_while(|((t, k), _)| t == table && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl StateWriter for MemoryState {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) {
        self.entries
            .insert((table.to_string(), key.to_vec()), value.to_vec());
    }

    fn delete(&mut self, table: &str, key: &[u8]) {
        self.entries.remove(&(table.to_string(), key.to_vec()));
    }
}

/// An empty, read-only state: every key is missing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoState;

impl StateReader for NoState {
    fn get(&self, _table: &str, _key: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn scan_prefix(&self, _table: &str, _prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        Vec::new()
    }
}
