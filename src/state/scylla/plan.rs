//! How a commit's rows are grouped and batched, with no I/O (see the effectively-once
//! argument in [`super`]): rows by CQL partition, each partition's rows in UNLOGGED batches of
//! bounded size, checkpoints apart so they are written last, and whether the commit can skip
//! the redo log (one partition, one batch).

use super::mapping::{Mutation, Table};
use std::collections::BTreeMap;

/// Most rows in one single-partition batch.
pub const BATCH_ROWS: usize = 100;
/// Most payload bytes in one single-partition batch (below Scylla's 128 KiB batch warning).
pub const BATCH_BYTES: usize = 96 * 1024;

/// A row's approximate payload size in bytes (what batch sizes are bounded by).
pub fn approx_bytes(m: &Mutation) -> usize {
    let text = |s: &str| s.len() + 4;
    match m {
        Mutation::Kv {
            tbl,
            part,
            ckey,
            value,
        } => text(tbl) + part.len() + ckey.len() + value.as_ref().map_or(0, Vec::len) + 16,
        Mutation::Balance { account, row, .. } => text(account) + row.as_ref().map_or(12, |_| 120),
        Mutation::Decision { id, row } => {
            text(id)
                + row.as_ref().map_or(8, |d| {
                    64 + d
                        .reasons
                        .iter()
                        .map(|r| text(&r.rule_id) + text(&r.text) + 8)
                        .sum::<usize>()
                })
        }
        Mutation::PriceAlert {
            symbol, id, row, ..
        } => {
            text(symbol)
                + text(id)
                + row
                    .as_ref()
                    .map_or(16, |a| text(&a.from_event_id) + text(&a.to_event_id) + 160)
        }
        Mutation::BelowAverage {
            symbol, id, row, ..
        } => text(symbol) + text(id) + row.as_ref().map_or(16, |e| text(&e.quote_event_id) + 130),
        Mutation::Blacklist { document, row } => {
            text(document)
                + row
                    .as_ref()
                    .map_or(8, |l| text(&l.reason) + text(&l.source) + 16)
        }
        Mutation::Checkpoint(c) => text(&c.processor) + text(&c.topic) + 20,
    }
}

/// One partition's rows split into batches of at most [`BATCH_ROWS`] rows and
/// [`BATCH_BYTES`] bytes (a single larger row is a batch of its own).
pub fn batches<'a>(rows: &[&'a Mutation]) -> Vec<Vec<&'a Mutation>> {
    let mut out: Vec<Vec<&Mutation>> = Vec::new();
    let mut current: Vec<&Mutation> = Vec::new();
    let mut bytes = 0;
    for m in rows {
        let size = approx_bytes(m);
        if !current.is_empty() && (current.len() >= BATCH_ROWS || bytes + size > BATCH_BYTES) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(m);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The rows of a commit by partition: `(state and views, checkpoints)`, each a list of
/// partitions in a stable order.
pub fn partitions(rows: &[Mutation]) -> (Vec<Vec<&Mutation>>, Vec<Vec<&Mutation>>) {
    let mut groups: BTreeMap<(Table, Vec<u8>), Vec<&Mutation>> = BTreeMap::new();
    for m in rows {
        groups.entry(m.group()).or_default().push(m);
    }
    let (checkpoints, state): (Vec<_>, Vec<_>) = groups
        .into_iter()
        .partition(|((t, _), _)| *t == Table::Checkpoints);
    (
        state.into_iter().map(|(_, r)| r).collect(),
        checkpoints.into_iter().map(|(_, r)| r).collect(),
    )
}

/// Whether the commit is one single-partition batch — atomic and isolated by itself, so it
/// needs no redo record.
pub fn is_direct(rows: &[Mutation]) -> bool {
    let (state, checkpoints) = partitions(rows);
    let mut all = state.into_iter().chain(checkpoints);
    match (all.next(), all.next()) {
        (Some(only), None) => batches(&only).len() == 1,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Checkpoint, WriteBatch};
    use fluxo_processors::StateWriter;

    fn rows(b: &WriteBatch) -> Vec<Mutation> {
        super::super::mutations(b).unwrap()
    }

    fn cp(p: &str, partition: i32) -> Checkpoint {
        Checkpoint {
            processor: p.into(),
            topic: "in".into(),
            partition,
            next_offset: 1,
        }
    }

    #[test]
    fn lone_partitions_skip_the_redo_log() {
        let mut b = WriteBatch::new();
        b.checkpoints = vec![cp("p", 0), cp("p", 1)];
        assert!(is_direct(&rows(&b)), "checkpoints of one processor");
        let mut b = WriteBatch::new();
        b.put("t", b"acc\0\x01", b"v");
        b.put("t", b"acc\0\x02", b"v");
        assert!(is_direct(&rows(&b)), "one partition");
        b.put("t", b"other\0\x01", b"v");
        assert!(!is_direct(&rows(&b)), "two partitions");
        let mut b = WriteBatch::new();
        b.put("t", b"acc\0\x01", b"v");
        b.checkpoints = vec![cp("p", 0)];
        assert!(!is_direct(&rows(&b)), "state and its checkpoint");
        let mut b = WriteBatch::new();
        b.put("t", b"acc\0\x01", &vec![0; BATCH_BYTES]);
        b.put("t", b"acc\0\x02", b"v");
        assert!(!is_direct(&rows(&b)), "one partition, two batches");
        assert!(!is_direct(&[]));
    }

    #[test]
    fn checkpoints_are_a_group_of_their_own_and_partitions_are_exact() {
        let mut b = WriteBatch::new();
        b.put("t", b"a\0\x01", b"1");
        b.put("t", b"a\0\x02", b"2");
        b.put("t", b"b\0\x01", b"3");
        b.put("u", b"a\0\x01", b"4");
        b.checkpoints = vec![cp("p", 0), cp("p", 1), cp("q", 0)];
        let r = rows(&b);
        let (state, checkpoints) = partitions(&r);
        let sizes: Vec<usize> = state.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 1, 1]);
        let cps: Vec<Vec<(String, i32)>> = checkpoints
            .iter()
            .map(|g| {
                g.iter()
                    .map(|m| match m {
                        Mutation::Checkpoint(c) => (c.processor.clone(), c.partition),
                        other => panic!("{other:?} among checkpoints"),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            cps,
            vec![
                vec![("p".to_string(), 0), ("p".to_string(), 1)],
                vec![("q".to_string(), 0)]
            ]
        );
    }

    #[test]
    fn batches_are_bounded_by_rows_and_bytes() {
        let mut b = WriteBatch::new();
        for i in 0..250_u32 {
            b.put("t", format!("a\0{i:03}").as_bytes(), b"v");
        }
        let r = rows(&b);
        let refs: Vec<&Mutation> = r.iter().collect();
        let sizes: Vec<usize> = batches(&refs).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        let mut b = WriteBatch::new();
        b.put("t", b"a\0\x01", &vec![0; 60 * 1024]);
        b.put("t", b"a\0\x02", &vec![0; 60 * 1024]);
        b.put("t", b"a\0\x03", &vec![0; 3 * 1024 * 1024]);
        b.put("t", b"a\0\x04", b"small");
        let r = rows(&b);
        let refs: Vec<&Mutation> = r.iter().collect();
        let sizes: Vec<usize> = batches(&refs).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1, 1, 1]);
        let all: usize = batches(&refs).iter().flatten().count();
        assert_eq!(all, 4, "no row lost or repeated");
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn a_redo_record_replays_the_same_rows() {
        let mut b = WriteBatch::new();
        b.put("t", b"a\0\x01", &vec![9; 700 * 1024]);
        b.delete("t", b"gone");
        b.put(
            fluxo_processors::views::RISK_DECISIONS,
            b"tx",
            br#"{"transaction_id":"tx","score":1,"decision":"APPROVE","reasons":[],"degraded":false,"event_time":0,"decided_at":0,"latency_ms":0}"#,
        );
        b.checkpoints = vec![cp("p", 3)];
        let record = super::super::redo::encode(&b);
        let chunks: Vec<&[u8]> = record.chunks(super::super::redo::CHUNK_BYTES).collect();
        assert_eq!(chunks.len(), 3);
        let joined: Vec<u8> = chunks.concat();
        let replayed = super::super::redo::decode(&joined).unwrap();
        assert_eq!(rows(&replayed), rows(&b));
    }
}
