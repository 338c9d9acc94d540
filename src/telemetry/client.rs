//! Client spans of outgoing HTTP calls, after OpenTelemetry's HTTP semantic conventions. The
//! URL is never recorded (the validator's carries a document): only its route template, the
//! server address and port.

use super::tracer;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

/// One attempt of an HTTP call (kind CLIENT), child of the record's `process` span; ended when
/// dropped.
pub struct ClientSpan {
    cx: Context,
}

/// Where a call goes, as recorded on its spans.
#[derive(Debug, Clone)]
pub struct Target {
    /// `GET`, `POST`…
    pub method: &'static str,
    /// The route with placeholders, e.g. `/documents/{document}`.
    pub template: &'static str,
    /// Host name or address of the server.
    pub server: String,
    /// Port of the server.
    pub port: Option<u16>,
}

impl ClientSpan {
    /// Start attempt number `attempt` (0 for the first) of a call to `target` under `parent`;
    /// `None` when tracing is off or there is no parent.
    pub fn start(parent: Option<&Context>, target: &Target, attempt: u32) -> Option<Self> {
        let tracer = tracer()?;
        let parent = parent?;
        let mut attributes = vec![
            KeyValue::new("http.request.method", target.method),
            KeyValue::new("url.template", target.template),
            KeyValue::new("server.address", target.server.clone()),
        ];
        if let Some(port) = target.port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if attempt > 0 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(attempt),
            ));
        }
        let span = tracer
            .span_builder(format!("{} {}", target.method, target.template))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        Some(Self {
            cx: parent.with_span(span),
        })
    }

    /// The W3C headers to send with the request.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(2);
        super::inject(&self.cx, &mut |k, v| out.push((k.to_string(), v)));
        out
    }

    /// Record the response status (4xx and 5xx mark the span as failed).
    pub fn status(&self, code: u16) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
        if code >= 400 {
            span.set_attribute(KeyValue::new("error.type", code.to_string()));
            span.set_status(Status::error(""));
        }
    }

    /// Record a failure without a usable response (`timeout`, `transport`…).
    pub fn failed(&self, error_type: &str) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("error.type", error_type.to_string()));
        span.set_status(Status::error(""));
    }
}

impl Drop for ClientSpan {
    fn drop(&mut self) {
        self.cx.span().end();
    }
}
