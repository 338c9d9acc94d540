//! Trace context across Kafka: W3C `traceparent` / `tracestate` headers, and spans named and
//! attributed after OpenTelemetry's messaging semantic conventions.
//!
//! A producer writes `publish <topic>` (kind PRODUCER) and the headers of that span. A processor
//! continues the trace for each input record with `receive <topic>` (kind CONSUMER, child of the
//! producer span found in the headers), `process <topic>` under it, open while the record is
//! processed, and one `publish <topic>` (PRODUCER) under `process` per output (dead letters
//! included), whose headers the output carries on.
//!
//! Attributes: `messaging.system`, `messaging.destination.name`,
//! `messaging.operation.type`/`messaging.operation.name`, and on consumed records
//! `messaging.destination.partition.id`, `messaging.kafka.message.offset`,
//! `messaging.consumer.group.name`. Never a key or a payload: keys of fluxo's topics are
//! documents and transaction ids.

use super::tracer;
use crate::jobs::{Output, RawRecord};
use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, ContextGuard, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;

/// Header of the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// Header of the W3C trace state.
pub const TRACESTATE: &str = "tracestate";

fn messaging(topic: &str, operation: &'static str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.destination.name", topic.to_string()),
        KeyValue::new("messaging.operation.type", operation),
        KeyValue::new("messaging.operation.name", operation),
    ]
}

fn header<'a>(rec: &'a RawRecord<'_>, name: &str) -> Option<&'a str> {
    rec.headers
        .as_ref()?
        .iter()
        .rev()
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// The trace of one consumed record: its `process` span, open until [`ProcessScope`] ends it.
#[derive(Debug, Clone)]
pub struct RecordTrace {
    process: Context,
}

/// Start the traces of a batch just read by `processor` in consumer group `group` (nothing when
/// tracing is off).
pub fn receive_batch(processor: &str, group: &str, records: &mut [RawRecord<'_>]) {
    let Some(tracer) = tracer() else { return };
    for rec in records.iter_mut() {
        rec.trace = Some(RecordTrace::start(tracer, processor, group, rec));
    }
}

impl RecordTrace {
    fn start(tracer: &SdkTracer, processor: &str, group: &str, rec: &RawRecord<'_>) -> Self {
        let parent = super::extract(&|name| header(rec, name));
        let attributes = |operation| {
            let mut a = messaging(rec.topic, operation);
            a.extend([
                KeyValue::new(
                    "messaging.destination.partition.id",
                    rec.partition.to_string(),
                ),
                KeyValue::new("messaging.kafka.message.offset", rec.offset),
                KeyValue::new("messaging.consumer.group.name", group.to_string()),
                KeyValue::new("fluxo.processor", processor.to_string()),
            ]);
            a
        };
        let mut receive = tracer
            .span_builder(format!("receive {}", rec.topic))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes("receive"))
            .start_with_context(tracer, &parent);
        receive.end();
        let received = parent.with_span(receive);
        let process = tracer
            .span_builder(format!("process {}", rec.topic))
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes("process"))
            .start_with_context(tracer, &received);
        Self {
            process: received.with_span(process),
        }
    }

    /// The context of the `process` span (parent of calls made for this record).
    pub fn context(&self) -> &Context {
        &self.process
    }

    /// Make the `process` span current on this thread (log lines carry its ids) until the
    /// scope drops, which ends the span.
    pub fn enter(&self) -> ProcessScope<'_> {
        ProcessScope {
            trace: self,
            _current: self.process.clone().attach(),
        }
    }

    /// Start the `publish` span of `out` and write its headers into `out`.
    pub fn publish(&self, out: &mut Output) -> Option<PublishSpan> {
        let span = PublishSpan::start(&self.process, &out.topic, out.dead_letter.as_deref())?;
        out.headers
            .retain(|(k, _)| k != TRACEPARENT && k != TRACESTATE);
        for (k, v) in span.headers() {
            out.headers.push((k, v.into_bytes()));
        }
        Some(span)
    }
}

/// The `process` span made current; dropping it ends the span.
pub struct ProcessScope<'a> {
    trace: &'a RecordTrace,
    _current: ContextGuard,
}

impl Drop for ProcessScope<'_> {
    fn drop(&mut self) {
        self.trace.process.span().end();
    }
}

/// A `publish <topic>` span (kind PRODUCER); ended when dropped.
pub struct PublishSpan {
    cx: Context,
}

impl PublishSpan {
    fn start(parent: &Context, topic: &str, dead_letter: Option<&str>) -> Option<Self> {
        let tracer = tracer()?;
        let mut attributes = messaging(topic, "publish");
        if let Some(reason) = dead_letter {
            attributes.push(KeyValue::new("fluxo.dlq.reason", reason.to_string()));
        }
        let span = tracer
            .span_builder(format!("publish {topic}"))
            .with_kind(SpanKind::Producer)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        Some(Self {
            cx: parent.with_span(span),
        })
    }

    /// A `publish` span starting a new trace (`fluxo produce`), or `None` when tracing is off.
    pub fn new_trace(topic: &str) -> Option<Self> {
        Self::start(&Context::new(), topic, None)
    }

    /// The W3C headers naming this span as the parent.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(2);
        super::inject(&self.cx, &mut |k, v| out.push((k.to_string(), v)));
        out
    }
}

impl Drop for PublishSpan {
    fn drop(&mut self) {
        self.cx.span().end();
    }
}
