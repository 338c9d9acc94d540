//! The state store: processor state, input checkpoints and materialized views.
//!
//! One interface, [`StateStore`], with the embedded engine ([`embedded::EmbeddedStore`], redb) as
//! the default and a ScyllaDB backend ([`scylla::ScyllaStore`]); both pass the same conformance
//! suite (`conformance::run_all`, in tests). It is shaped for a wide-column backend too: tables of ordered byte keys where a
//! prefix is the partition key and the rest the clustering key, idempotent upserts, and one
//! [`WriteBatch`] that carries state changes together with the input offsets they reflect.
//!
//! # Effectively-once
//! A processor's state changes and the next offsets of the inputs it has consumed are committed
//! in one atomic [`StateStore::commit`]. After a crash the runtime resumes every partition from
//! the offset stored with the state, so no input is applied twice and none is skipped.

#[cfg(test)]
pub mod conformance;
pub mod embedded;
pub mod scylla;

use fluxo_processors::{StateReader, StateWriter};
use std::collections::BTreeMap;

/// A state store error (I/O, corruption, a backend refusing a write).
#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(pub String);

/// What a fenced commit's error says (see [`StateStore::claim`]).
pub const FENCED: &str = "fenced:";

impl StoreError {
    /// True when the store refused a commit because another instance claimed one of its
    /// partitions.
    pub fn is_fenced(&self) -> bool {
        self.0.contains(FENCED)
    }
}

/// One input position: the next offset to read of a topic partition, for one processor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checkpoint {
    /// Processor (or view) name the offset belongs to.
    pub processor: String,
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
    /// Next offset to consume.
    pub next_offset: i64,
}

/// Writes by `(table, key)`: `Some(value)` upserts, `None` deletes.
pub type Writes = BTreeMap<(String, Vec<u8>), Option<Vec<u8>>>;

/// Writes to commit atomically: upserts and deletes plus checkpoints.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    /// `(table, key) -> Some(value)` upsert or `None` delete; the last write to a key wins.
    pub writes: Writes,
    /// Offsets reflected by these writes.
    pub checkpoints: Vec<Checkpoint>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.checkpoints.is_empty()
    }
}

impl StateWriter for WriteBatch {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) {
        self.writes
            .insert((table.to_string(), key.to_vec()), Some(value.to_vec()));
    }

    fn delete(&mut self, table: &str, key: &[u8]) {
        self.writes.insert((table.to_string(), key.to_vec()), None);
    }
}

/// Rows of a scan: `(key, value)` in key order.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// A durable key-value store with atomic batches and checkpoints.
pub trait StateStore: Send + Sync {
    /// The value of `key` in `table`.
    ///
    /// # Errors
    /// A [`StoreError`] when the backend cannot be read.
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` entries of `table` with `start <= key < end` (`end = None`: to the end of the
    /// keys starting with `prefix`), in key order, all sharing `prefix`.
    ///
    /// `prefix` names one partition: it contains the partition separator
    /// ([`fluxo_processors::views::SEP`]), as [`fluxo_processors::views::partition_prefix`]
    /// builds it, so a wide-column backend answers from one partition. (The embedded engine
    /// accepts any prefix; the ScyllaDB backend refuses one without the separator.)
    ///
    /// # Errors
    /// A [`StoreError`] when the backend cannot be read.
    fn scan(
        &self,
        table: &str,
        prefix: &[u8],
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, StoreError>;

    /// Commit `batch` atomically: all of its writes and checkpoints, or none.
    ///
    /// # Errors
    /// A [`StoreError`]; then nothing of the batch is visible.
    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Take `partitions` (`(topic, partition)`) of `processor` for this instance, before it
    /// reads their checkpoints: from then on a commit of any earlier holder that checkpoints
    /// them is refused (an error for which [`StoreError::is_fenced`] holds), so an instance that lost them (a
    /// zombie resumed after its session expired) cannot commit over the new owner. A store
    /// that only one process can open (the embedded one) has nothing to fence.
    ///
    /// # Errors
    /// A [`StoreError`] when the backend cannot record the claim.
    fn claim(&self, processor: &str, partitions: &[(String, i32)]) -> Result<(), StoreError> {
        let _ = (processor, partitions);
        Ok(())
    }

    /// Every checkpoint of `processor`.
    ///
    /// # Errors
    /// A [`StoreError`] when the backend cannot be read.
    fn checkpoints(&self, processor: &str) -> Result<Vec<Checkpoint>, StoreError>;

    /// Remove every table whose name starts with `prefix` and the checkpoints of processors whose
    /// name starts with it (used to reset a replay namespace).
    ///
    /// # Errors
    /// A [`StoreError`] when the backend cannot be written.
    fn drop_namespace(&self, prefix: &str) -> Result<(), StoreError>;
}

/// Adapts a [`StateStore`] to the processors' [`StateReader`]. A read error is logged and
/// answered as a miss would be fatal to determinism, so it aborts the batch instead: see
/// [`StoreReader::take_error`].
pub struct StoreReader<'a> {
    store: &'a dyn StateStore,
    /// Writes not yet in the store, read first (a staged checkpoint's).
    overlay: Option<&'a Writes>,
    error: std::cell::RefCell<Option<StoreError>>,
}

impl<'a> StoreReader<'a> {
    /// A reader over `store`.
    pub fn new(store: &'a dyn StateStore) -> Self {
        Self::with_overlay(store, None)
    }

    /// A reader over `store` that answers from `overlay` (upserts and deletes not yet
    /// committed, as in [`WriteBatch::writes`]) first.
    pub fn with_overlay(store: &'a dyn StateStore, overlay: Option<&'a Writes>) -> Self {
        Self {
            store,
            overlay,
            error: std::cell::RefCell::new(None),
        }
    }

    /// The first read error since the last call, if any. A batch that saw one must not be
    /// committed: the processor may have acted on a false miss.
    pub fn take_error(&self) -> Option<StoreError> {
        self.error.borrow_mut().take()
    }
}

impl StateReader for StoreReader<'_> {
    fn get(&self, table: &str, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(overlay) = self.overlay.filter(|o| !o.is_empty()) {
            if let Some(staged) = overlay.get(&(table.to_string(), key.to_vec())) {
                return staged.clone();
            }
        }
        match self.store.get(table, key) {
            Ok(v) => v,
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }

    fn scan_prefix(&self, table: &str, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        const PAGE: usize = 1_000;
        let mut rows: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut start = prefix.to_vec();
        loop {
            match self.store.scan(table, prefix, &start, None, PAGE) {
                Ok(page) => {
                    let more = page.len() == PAGE;
                    if let Some((last, _)) = page.last() {
                        // The next key after `last`.
                        start.clone_from(last);
                        start.push(0);
                    }
                    rows.extend(page);
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    self.error.borrow_mut().get_or_insert(e);
                    return Vec::new();
                }
            }
        }
        if let Some(overlay) = self.overlay {
            let staged = overlay
                .range((table.to_string(), prefix.to_vec())..)
                .take_while(|((t, k), _)| t == table && k.starts_with(prefix));
            for ((_, key), value) in staged {
                match value {
                    Some(v) => rows.insert(key.clone(), v.clone()),
                    None => rows.remove(key),
                };
            }
        }
        rows.into_iter().collect()
    }
}
