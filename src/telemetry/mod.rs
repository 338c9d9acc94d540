//! Telemetry: OpenTelemetry traces exported over OTLP, and the log subscriber.
//!
//! Tracing is on only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: then spans go through a batch processor to the
//! OTLP/HTTP (protobuf) exporter, sampled as `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`
//! say (parent-based, always on by default), under `OTEL_SERVICE_NAME` (default `fluxo`).
//! Otherwise no tracer exists and every span helper returns `None` after one atomic load, so a
//! record costs no allocation.
//!
//! - [`kafka`]: W3C trace context in Kafka headers, and the messaging spans.
//! - [`client`]: client spans of outgoing HTTP calls (the risk validator).
//! - [`logs`]: the log subscriber (JSON or text, with `trace_id` and `span_id`).

pub mod client;
pub mod kafka;
pub mod logs;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::sync::OnceLock;

/// The instrumentation scope of every fluxo span.
pub const SCOPE: &str = "fluxo";

/// The tracer, set once by [`init`] when an endpoint is configured.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The tracer when tracing is on; `None` (one atomic load) when it is off.
#[inline]
pub fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// Whether spans are being recorded and exported.
#[inline]
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Keeps the tracer provider alive; dropping it flushes the spans still queued.
#[must_use = "dropping the guard shuts tracing down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("fluxo: flushing spans at exit failed: {e}");
            }
        }
    }
}

/// Set up logging, then tracing when an OTLP endpoint is configured. Call once, outside any
/// async runtime, and keep the guard until the end of `main`.
pub fn init() -> Telemetry {
    logs::init();
    let provider = match provider_from_env() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "tracing disabled: cannot build the OTLP exporter");
            None
        }
    };
    if let Some(p) = &provider {
        let _ = TRACER.set(p.tracer(SCOPE));
    }
    Telemetry { provider }
}

fn env_set(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A provider exporting to the configured OTLP endpoint, or `None` when none is configured (or
/// `OTEL_SDK_DISABLED=true`).
fn provider_from_env() -> anyhow::Result<Option<SdkTracerProvider>> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    if env_set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if env_set("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|| env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .is_none()
    {
        return Ok(None);
    }
    let protocol = env_set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env_set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    if protocol != "http/protobuf" {
        tracing::warn!(
            protocol,
            "OTEL_EXPORTER_OTLP_PROTOCOL not supported; exporting with http/protobuf"
        );
    }
    // The endpoint, headers and timeout come from the standard `OTEL_EXPORTER_OTLP_*`
    // variables (`/v1/traces` is appended to OTEL_EXPORTER_OTLP_ENDPOINT).
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if env_set("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("fluxo");
    }
    // The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (SDK defaults).
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// Write the W3C `traceparent` (and `tracestate`, when not empty) of `cx` through `set`.
pub fn inject(cx: &Context, set: &mut dyn FnMut(&str, String)) {
    struct Setter<'a>(&'a mut dyn FnMut(&str, String));
    impl Injector for Setter<'_> {
        fn set(&mut self, key: &str, value: String) {
            // The propagator writes `tracestate` even when empty; an empty header says nothing.
            if !value.is_empty() {
                (self.0)(key, value)
            }
        }
    }
    TraceContextPropagator::new().inject_context(cx, &mut Setter(set));
}

/// The remote span context carried by W3C headers (`get` looks a header up by name); an empty
/// context when they are missing or malformed.
pub fn extract<'a>(get: &'a dyn Fn(&str) -> Option<&'a str>) -> Context {
    struct Getter<'a>(&'a dyn Fn(&str) -> Option<&'a str>);
    impl Extractor for Getter<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (self.0)(key)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent", "tracestate"]
        }
    }
    TraceContextPropagator::new().extract_with_context(&Context::new(), &Getter(get))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::RawRecord;
    use opentelemetry::trace::TraceContextExt;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn w3c_headers_round_trip() {
        let cx = extract(&|name| (name == "traceparent").then_some(PARENT));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        let mut written = Vec::new();
        inject(&cx, &mut |k, v| written.push((k.to_string(), v)));
        assert_eq!(
            written,
            vec![("traceparent".to_string(), PARENT.to_string())]
        );
    }

    #[test]
    fn malformed_headers_give_no_parent() {
        let cx = extract(&|name| (name == "traceparent").then_some("00-zz-01"));
        assert!(!cx.span().span_context().is_valid());
    }

    #[test]
    fn nothing_is_traced_when_tracing_is_off() {
        assert!(!enabled());
        assert!(kafka::PublishSpan::new_trace("transactions").is_none());
        let mut records = vec![RawRecord {
            topic: "transactions",
            partition: 0,
            offset: 7,
            key: None,
            payload: None,
            timestamp: None,
            headers: Some(vec![("traceparent", PARENT.as_bytes())]),
            trace: None,
        }];
        kafka::receive_batch("risk-scoring", "fluxo-risk-scoring", &mut records);
        assert!(records[0].trace.is_none());
    }
}
