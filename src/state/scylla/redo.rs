//! The redo record of a multi-partition commit: a [`WriteBatch`] as bytes, stored in the
//! `commit_log` table before any of its rows is written (see the effectively-once argument in
//! [`super`]).
//!
//! Layout (all integers big-endian): `FXR1`, write count `u32`, then per write: table
//! (`u32` length + bytes), key (same), `0` for a delete or `1` + value (`u32` length + bytes);
//! then checkpoint count `u32`, per checkpoint: processor, topic (length + bytes), partition
//! `i32`, next offset `i64`.

use crate::state::{Checkpoint, WriteBatch};

const MAGIC: &[u8; 4] = b"FXR1";

/// Most bytes in one `commit_log` row: rows stay far below Scylla's mutation and batch limits.
pub const CHUNK_BYTES: usize = 256 * 1024;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Tables, keys and values are far below 4 GiB (Scylla refuses cells over 2 GiB anyway).
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// `batch` as redo bytes.
pub fn encode(batch: &WriteBatch) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(batch.writes.len() as u32).to_be_bytes());
    for ((table, key), value) in &batch.writes {
        put_bytes(&mut out, table.as_bytes());
        put_bytes(&mut out, key);
        match value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put_bytes(&mut out, v);
            }
        }
    }
    out.extend_from_slice(&(batch.checkpoints.len() as u32).to_be_bytes());
    for c in &batch.checkpoints {
        put_bytes(&mut out, c.processor.as_bytes());
        put_bytes(&mut out, c.topic.as_bytes());
        out.extend_from_slice(&c.partition.to_be_bytes());
        out.extend_from_slice(&c.next_offset.to_be_bytes());
    }
    out
}

/// A cursor over redo bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("redo record is truncated".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let b = self.take(N)?;
        <[u8; N]>::try_from(b).map_err(|e| e.to_string())
    }

    fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_be_bytes(self.array()?) as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()?;
        self.take(n)
    }

    fn text(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "redo text is not UTF-8".into())
    }
}

/// Inverse of [`encode`].
///
/// # Errors
/// When `bytes` is not a whole redo record.
pub fn decode(bytes: &[u8]) -> Result<WriteBatch, String> {
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC {
        return Err("not a redo record".into());
    }
    let mut batch = WriteBatch::new();
    for _ in 0..r.u32()? {
        let table = r.text()?;
        let key = r.bytes()?.to_vec();
        let value = match r.take(1)? {
            [0] => None,
            [1] => Some(r.bytes()?.to_vec()),
            _ => return Err("bad redo write tag".into()),
        };
        batch.writes.insert((table, key), value);
    }
    for _ in 0..r.u32()? {
        let processor = r.text()?;
        let topic = r.text()?;
        let partition = i32::from_be_bytes(r.array()?);
        let next_offset = i64::from_be_bytes(r.array()?);
        batch.checkpoints.push(Checkpoint {
            processor,
            topic,
            partition,
            next_offset,
        });
    }
    if !r.0.is_empty() {
        return Err("redo record has trailing bytes".into());
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluxo_processors::StateWriter;

    #[test]
    fn redo_records_round_trip_and_refuse_damage() {
        let mut b = WriteBatch::new();
        b.put("t", b"a\0\xff", &[7; 300]);
        b.put("u/v", b"", b"");
        b.delete("t", b"gone");
        b.checkpoints.push(Checkpoint {
            processor: "p".into(),
            topic: "in".into(),
            partition: -1,
            next_offset: i64::MAX,
        });
        let bytes = encode(&b);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.writes, b.writes);
        assert_eq!(back.checkpoints, b.checkpoints);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[bytes.as_slice(), &[0]].concat()).is_err());
        assert!(decode(b"XXXX").is_err());
        let empty = decode(&encode(&WriteBatch::new())).unwrap();
        assert!(empty.is_empty());
    }
}
