//! How one input record, or one tick of time, runs through the job: state reads, outputs with
//! their deterministic ids, dead letters, stream time.

use super::checkpoint::Checkpointer;
use super::task::{StreamTime, Task};
use super::{
    DLQ_DETAIL, DLQ_OFFSET, DLQ_PARTITION, DLQ_PAYLOAD, DLQ_PROCESSOR, DLQ_REASON, DLQ_SCHEMA_ID,
    DLQ_SIZE, DLQ_TOPIC, DLQ_WITHHELD, ID_HEADER,
};
use crate::jobs::{DeadLetter, JobError, Output, RawRecord};
use crate::metrics;
use crate::state::{StateStore, StoreReader};
use fluxo_processors::{RecordMeta, Resume, Tick};
use std::time::Instant;

/// Copy the input's W3C trace headers onto its outputs, so a trace started upstream continues
/// past fluxo even with tracing off (with tracing on, the `publish` span replaces them with its
/// own, a child of the same trace).
fn forward_trace_headers(rec: &RawRecord<'_>, outputs: &mut [Output]) {
    let Some(headers) = &rec.headers else {
        return;
    };
    let trace = headers.iter().filter(|(k, _)| {
        *k == crate::telemetry::kafka::TRACEPARENT || *k == crate::telemetry::kafka::TRACESTATE
    });
    for (k, v) in trace {
        for out in outputs.iter_mut() {
            if !out.headers.iter().any(|(have, _)| have == k) {
                out.headers.push((k.to_string(), v.to_vec()));
            }
        }
    }
}

/// A reader of the committed `store` that also sees the staged checkpoint's writes: the
/// processor may have dropped those keys from its cache after staging them, and the store does
/// not have them yet. A free function, so the job can be borrowed mutably beside it.
fn reader<'a>(store: &'a dyn StateStore, checkpointer: &'a Checkpointer) -> StoreReader<'a> {
    StoreReader::with_overlay(store, checkpointer.staged().map(|s| &s.batch.writes))
}

impl Task {
    /// Run one record through the job and produce what comes out.
    ///
    /// # Errors
    /// When the record must be retried from the last checkpoint (a failed state read, a
    /// dependency down); nothing of it was produced.
    pub(super) fn handle(
        &mut self,
        rec: &RawRecord<'_>,
        processing_time: i64,
    ) -> Result<(), String> {
        let started = Instant::now();
        // Traced records: the `process` span is current (log lines carry its ids) until return.
        let _process = rec.trace.as_ref().map(|t| t.enter());
        self.series.records_in(rec.topic).inc();
        let mut outputs = std::mem::take(&mut self.outputs);
        outputs.clear();
        // Reads see the staged checkpoint's writes: the processor may have dropped those keys from
        // its cache after staging them, and the store does not have them yet.
        let reader = reader(&*self.store, &self.checkpointer);
        let result = self
            .job
            .process(rec, processing_time, &reader, &mut outputs);
        if let Some(e) = reader.take_error() {
            self.outputs = outputs;
            return Err(e.to_string());
        }
        match result {
            Ok(()) => {
                for (i, out) in outputs.iter_mut().enumerate() {
                    let id = format!(
                        "{}:{}/{}/{}/{}",
                        self.name, rec.topic, rec.partition, rec.offset, i
                    );
                    out.headers.push((ID_HEADER.to_string(), id.into_bytes()));
                }
            }
            Err(JobError::Dead(dl)) => {
                outputs.clear();
                outputs.push(self.dead_letter(rec, &dl));
            }
            Err(JobError::Retry(why)) => {
                self.outputs = outputs;
                return Err(why);
            }
        }
        forward_trace_headers(rec, &mut outputs);
        self.observe_position(rec);
        // Re-processed only to rebuild state: the outputs were committed in an earlier transaction.
        let replayed = self
            .checkpointer
            .transactions()
            .is_some_and(|t| t.already_committed(rec.topic, rec.partition, rec.offset));
        for out in outputs.iter_mut().filter(|_| !replayed) {
            let _publish = rec.trace.as_ref().and_then(|t| t.publish(out));
            self.produce(out);
            if out.dead_letter.is_none() {
                self.series.records_out(&out.topic).inc();
            }
        }
        self.outputs = outputs;
        self.note_pending(rec.topic, rec.partition, rec.offset + 1);
        self.since_checkpoint += 1;
        self.series
            .processing
            .observe(started.elapsed().as_secs_f64());
        if let Some(ts) = rec.timestamp {
            let latency = (processing_time - ts).max(0) as f64 / 1000.0;
            self.series.latency.observe(latency);
        }
        Ok(())
    }

    /// Record `next` as the offset to checkpoint for `(topic, partition)`. The records come
    /// from a handful of partitions: finding the entry beats allocating its key per record.
    fn note_pending(&mut self, topic: &str, partition: i32, next: i64) {
        let known = self
            .pending
            .iter_mut()
            .find(|((t, p), _)| *p == partition && t == topic);
        match known {
            Some((_, offset)) => *offset = next,
            None => {
                self.pending.insert((topic.to_string(), partition), next);
            }
        }
    }

    /// Remember `rec` as the last input and advance its partition's stream time.
    fn observe_position(&mut self, rec: &RawRecord<'_>) {
        match &mut self.last_input {
            Some((topic, partition, offset)) => {
                if topic != rec.topic {
                    rec.topic.clone_into(topic);
                }
                *partition = rec.partition;
                *offset = rec.offset;
            }
            None => self.last_input = Some((rec.topic.to_string(), rec.partition, rec.offset)),
        }
        let Some(ts) = rec.timestamp else { return };
        // A handful of partitions per engine: a scan beats a map keyed by an owned topic.
        match self
            .stream_times
            .iter_mut()
            .find(|s| s.partition == rec.partition && s.topic == rec.topic)
        {
            Some(s) if ts > s.time => {
                s.time = ts;
                s.advanced = true;
            }
            Some(_) => {}
            None => self.stream_times.push(StreamTime {
                topic: rec.topic.to_string(),
                partition: rec.partition,
                time: ts,
                advanced: true,
            }),
        }
    }

    /// Tell the job about every partition whose stream time advanced.
    pub(super) fn tick_stream_times(&mut self, processing_time: i64) -> Result<(), String> {
        let advanced: Vec<(String, i32, i64)> = self
            .stream_times
            .iter_mut()
            .filter_map(|s| std::mem::take(&mut s.advanced).then_some(&*s))
            .map(|s| (s.topic.clone(), s.partition, s.time))
            .collect();
        for (topic, partition, time) in advanced {
            let tick = Tick::StreamTime {
                topic: &topic,
                partition,
                time,
            };
            self.tick(tick, processing_time)?;
        }
        Ok(())
    }

    /// After a reset (a start, a rebalance, a rewind), tell the fresh job which partitions it
    /// resumes from their checkpoints ([`Resume`]), so it finds what it held back when they were
    /// taken; then ticks release that even if no record of those partitions comes. A partition
    /// never checkpointed has nothing held. Later calls do nothing until the next reset.
    ///
    /// # Errors
    /// When the store cannot be read (the caller rewinds and the resume runs again).
    pub(super) fn resume_partitions(&mut self, processing_time: i64) -> Result<(), String> {
        if !self.resume_pending {
            return Ok(());
        }
        let stored = self.stored_offsets();
        let mut resumed: Vec<(&(String, i32), i64)> = self
            .assigned
            .iter()
            .filter_map(|key| stored.get(key).filter(|o| **o > 0).map(|o| (key, *o)))
            .collect();
        resumed.sort();
        let reader = reader(&*self.store, &self.checkpointer);
        for ((topic, partition), _) in &resumed {
            let resume = Resume {
                topic,
                partition: *partition,
                processing_time,
            };
            self.job.resume(resume, &reader);
        }
        if let Some(e) = reader.take_error() {
            return Err(e.to_string());
        }
        // Ticks name their outputs after the last input record; before any record is read
        // again, that is the last one checkpointed.
        if self.last_input.is_none() {
            if let Some(((topic, partition), next)) = resumed.first() {
                self.last_input = Some((topic.clone(), *partition, next - 1));
            }
        }
        self.resume_pending = false;
        Ok(())
    }

    /// Run a [`Tick`] through the job and produce what comes out. Its outputs are named after
    /// the last input record (`<processor>:<topic>/<partition>/<offset>/t<time>.<n>`), so the
    /// replay diff places them in the range of that record.
    ///
    /// # Errors
    /// When the tick must be retried from the last checkpoint (a failed state read).
    pub(super) fn tick(&mut self, tick: Tick<'_>, processing_time: i64) -> Result<(), String> {
        // Nothing was handed to the job since it was built: it holds nothing back.
        let Some((topic, partition, offset)) = self.last_input.clone() else {
            return Ok(());
        };
        let mut outputs = std::mem::take(&mut self.outputs);
        outputs.clear();
        let reader = reader(&*self.store, &self.checkpointer);
        let meta = RecordMeta {
            topic: &topic,
            partition,
            offset,
            timestamp: None,
            processing_time,
        };
        let result = self.job.tick(tick, meta, &reader, &mut outputs);
        if let Some(e) = reader.take_error() {
            self.outputs = outputs;
            return Err(e.to_string());
        }
        if let Err(e) = result {
            self.outputs = outputs;
            return Err(format!("{e:?}"));
        }
        if outputs.is_empty() {
            self.outputs = outputs;
            return Ok(());
        }
        for (i, out) in outputs.iter_mut().enumerate() {
            let id = format!(
                "{}:{topic}/{partition}/{offset}/t{processing_time}.{i}",
                self.name
            );
            out.headers.push((ID_HEADER.to_string(), id.into_bytes()));
            self.produce(out);
            self.series.records_out(&out.topic).inc();
        }
        self.outputs = outputs;
        // What the tick changed is committed with the next checkpoint.
        self.since_checkpoint += 1;
        Ok(())
    }

    /// The dead letter of `rec`: headers naming why, who and where from, and its key and value
    /// as read, or, for an input that carries documents, no value and the key's pseudonym (see
    /// the module docs of the engine, "Dead letters").
    fn dead_letter(&self, rec: &RawRecord<'_>, dl: &DeadLetter) -> Output {
        metrics::DEAD_LETTERS
            .with_label_values(&[&self.name, rec.topic, &dl.reason])
            .inc();
        let withhold = self.job.carries_documents(rec.topic);
        let detail = if withhold {
            fluxo_processors::risk::documents::redact_documents(&dl.detail)
        } else {
            dl.detail.clone()
        };
        let mut headers = vec![
            (DLQ_REASON.to_string(), dl.reason.clone().into_bytes()),
            (DLQ_DETAIL.to_string(), detail.into_bytes()),
            (DLQ_PROCESSOR.to_string(), self.name.clone().into_bytes()),
            (DLQ_TOPIC.to_string(), rec.topic.as_bytes().to_vec()),
            (
                DLQ_PARTITION.to_string(),
                rec.partition.to_string().into_bytes(),
            ),
            (DLQ_OFFSET.to_string(), rec.offset.to_string().into_bytes()),
            (
                ID_HEADER.to_string(),
                format!(
                    "{}:{}/{}/{}/dlq",
                    self.name, rec.topic, rec.partition, rec.offset
                )
                .into_bytes(),
            ),
        ];
        if let Some(value) = rec.payload {
            headers.push((DLQ_SIZE.to_string(), value.len().to_string().into_bytes()));
            if let Ok((id, _)) = crate::avro::framing::unframe(value) {
                headers.push((DLQ_SCHEMA_ID.to_string(), id.to_string().into_bytes()));
            }
        }
        let (key, payload) = if withhold {
            headers.push((DLQ_PAYLOAD.to_string(), DLQ_WITHHELD.as_bytes().to_vec()));
            let pseudonymizer = crate::privacy::pseudonymizer();
            let key = rec.key.map(|k| {
                pseudonymizer
                    .pseudonym(&String::from_utf8_lossy(k))
                    .hex()
                    .into_bytes()
            });
            (key, None)
        } else {
            (rec.key.map(<[u8]>::to_vec), rec.payload.map(<[u8]>::to_vec))
        };
        Output {
            topic: self.job.dead_letter_topic(rec.topic),
            key,
            payload,
            headers,
            dead_letter: Some(dl.reason.clone()),
        }
    }
}
