//! The embedded state engine: one redb database file under the data directory.
//!
//! Each logical table is a redb table of byte keys and byte values; checkpoints live in the
//! `__checkpoints` table, keyed `processor \0 topic \0 partition`, and are written in the same
//! redb write transaction as the state they describe, which redb commits atomically and
//! durably (copy-on-write B-trees with a checksummed commit slot).

use super::{Checkpoint, Rows, StateStore, StoreError, WriteBatch};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use std::path::Path;

const CHECKPOINTS: TableDefinition<&[u8], i64> = TableDefinition::new("__checkpoints");

/// An open table of byte keys and byte values.
type BytesTable<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

fn table(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// The embedded, persistent state store.
pub struct EmbeddedStore {
    db: Database,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedStore")
    }
}

fn checkpoint_key(processor: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut k = Vec::with_capacity(processor.len() + topic.len() + 6);
    k.extend_from_slice(processor.as_bytes());
    k.push(0);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

impl EmbeddedStore {
    /// Open (or create) the store file at `path`, creating parent directories.
    ///
    /// # Errors
    /// A [`StoreError`] when the file cannot be created, is locked by another process, or is
    /// not a redb database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, 256)
    }

    /// Open (or create) the store file at `path` with a page cache of `cache_mb` MiB.
    ///
    /// # Errors
    /// As [`EmbeddedStore::open`].
    pub fn open_with_cache(path: &Path, cache_mb: usize) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(store_err)?;
        }
        let db = Database::builder()
            .set_cache_size(cache_mb.max(1) * 1024 * 1024)
            .create(path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        Ok(Self { db })
    }
}

impl StateStore for EmbeddedStore {
    fn get(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let t = match txn.open_table(table(name)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(store_err(e)),
        };
        Ok(t.get(key).map_err(store_err)?.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        name: &str,
        prefix: &[u8],
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let t = match txn.open_table(table(name)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(store_err(e)),
        };
        let from = if start < prefix { prefix } else { start };
        let mut out = Vec::new();
        for item in t.range::<&[u8]>(from..).map_err(store_err)? {
            let (k, v) = item.map_err(store_err)?;
            let key = k.value();
            if !key.starts_with(prefix) || end.is_some_and(|e| key >= e) || out.len() >= limit {
                break;
            }
            out.push((key.to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut current: Option<(String, BytesTable<'_>)> = None;
            for ((name, key), value) in &batch.writes {
                if current.as_ref().is_none_or(|(n, _)| n != name) {
                    // Close the previous table before opening the next one.
                    drop(current.take());
                    let t = txn.open_table(table(name)).map_err(store_err)?;
                    current = Some((name.clone(), t));
                }
                // The branch above always leaves `current` set to this table.
                let Some((_, t)) = current.as_mut() else {
                    continue;
                };
                match value {
                    Some(v) => {
                        t.insert(key.as_slice(), v.as_slice()).map_err(store_err)?;
                    }
                    None => {
                        t.remove(key.as_slice()).map_err(store_err)?;
                    }
                }
            }
            drop(current);
            let mut cp = txn.open_table(CHECKPOINTS).map_err(store_err)?;
            for c in &batch.checkpoints {
                let k = checkpoint_key(&c.processor, &c.topic, c.partition);
                cp.insert(k.as_slice(), c.next_offset).map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)
    }

    fn checkpoints(&self, processor: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let t = match txn.open_table(CHECKPOINTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(store_err(e)),
        };
        let mut prefix = processor.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in t.range::<&[u8]>(prefix.as_slice()..).map_err(store_err)? {
            let (k, v) = item.map_err(store_err)?;
            let key = k.value();
            if !key.starts_with(&prefix) {
                break;
            }
            let rest = &key[prefix.len()..];
            let Some(sep) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let topic = String::from_utf8_lossy(&rest[..sep]).into_owned();
            let Ok(part) = <[u8; 4]>::try_from(&rest[sep + 1..]) else {
                continue;
            };
            out.push(Checkpoint {
                processor: processor.to_string(),
                topic,
                partition: i32::from_be_bytes(part),
                next_offset: v.value(),
            });
        }
        Ok(out)
    }

    fn drop_namespace(&self, prefix: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let names: Vec<String> = txn
                .list_tables()
                .map_err(store_err)?
                .map(|h| h.name().to_string())
                .filter(|n| n.starts_with(prefix))
                .collect();
            for n in names {
                txn.delete_table(table(&n)).map_err(store_err)?;
            }
            let mut cp = txn.open_table(CHECKPOINTS).map_err(store_err)?;
            let keys: Vec<Vec<u8>> = cp
                .range::<&[u8]>(prefix.as_bytes()..)
                .map_err(store_err)?
                .filter_map(Result::ok)
                .map(|(k, _)| k.value().to_vec())
                .take_while(|k| k.starts_with(prefix.as_bytes()))
                .collect();
            for k in keys {
                cp.remove(k.as_slice()).map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluxo_processors::StateWriter;

    fn open() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_reader_with_an_overlay_answers_staged_writes_first() {
        use crate::state::{StoreReader, WriteBatch};
        use fluxo_processors::StateReader;
        let (_dir, store) = open();
        let mut committed = WriteBatch::new();
        committed.put("t", b"kept", b"old");
        committed.put("t", b"deleted", b"old");
        committed.put("t", b"updated", b"old");
        store.commit(committed).unwrap();
        let mut staged = WriteBatch::new();
        staged.put("t", b"updated", b"new");
        staged.delete("t", b"deleted");
        staged.put("t", b"added", b"new");
        let reader = StoreReader::with_overlay(&store, Some(&staged.writes));
        assert_eq!(reader.get("t", b"kept"), Some(b"old".to_vec()));
        assert_eq!(reader.get("t", b"updated"), Some(b"new".to_vec()));
        assert_eq!(reader.get("t", b"deleted"), None);
        assert_eq!(reader.get("t", b"added"), Some(b"new".to_vec()));
        assert_eq!(reader.get("other", b"updated"), None);
        let plain = StoreReader::new(&store);
        assert_eq!(plain.get("t", b"updated"), Some(b"old".to_vec()));
    }

    #[test]
    fn passes_the_store_conformance_suite() {
        let (_dir, store) = open();
        crate::state::conformance::run_all(&store);
    }

    #[test]
    fn committed_state_and_checkpoints_survive_reopening() {
        let (dir, store) = open();
        let mut b = WriteBatch::new();
        b.put("t", b"a", b"1");
        b.checkpoints.push(Checkpoint {
            processor: "p".into(),
            topic: "in".into(),
            partition: 2,
            next_offset: 42,
        });
        store.commit(b).unwrap();
        drop(store);
        let store = EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(store.get("t", b"a").unwrap(), Some(b"1".to_vec()));
        let cps = store.checkpoints("p").unwrap();
        assert_eq!(
            cps.iter()
                .map(|c| (c.topic.as_str(), c.partition, c.next_offset))
                .collect::<Vec<_>>(),
            vec![("in", 2, 42)]
        );
    }
}
