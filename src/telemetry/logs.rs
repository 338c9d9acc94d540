//! The log subscriber: JSON lines (one object per line) or human-readable text, on stderr.
//!
//! - Level and targets from `RUST_LOG` (default `info`, with chatty dependencies at `warn`).
//! - Format: text when stderr is a terminal, JSON otherwise; `FLUXO_LOG_FORMAT=json|text`
//!   overrides.
//! - Every line emitted while a traced span is current (a record being processed) carries
//!   `trace_id` and `span_id`.
//! - The per-decision audit of risk scoring goes to the [`AUDIT_TARGET`] target, which is off
//!   unless `RUST_LOG` names it (`RUST_LOG=info,fluxo::audit=info`): no per-record lines at
//!   `info` otherwise.

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Target of the per-decision audit lines of risk scoring.
pub const AUDIT_TARGET: &str = "fluxo::audit";

/// Filter used when `RUST_LOG` is unset or invalid.
const DEFAULT_FILTER: &str = "info,rdkafka=warn,librdkafka=warn,h2=warn,hyper=warn,reqwest=warn";

/// The filter directives for a `RUST_LOG` value: the audit target stays off unless named.
pub fn directives(rust_log: Option<&str>) -> String {
    let base = rust_log
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_FILTER);
    if base.contains(AUDIT_TARGET) {
        base.to_string()
    } else {
        format!("{base},{AUDIT_TARGET}=off")
    }
}

/// Whether to write JSON: `FLUXO_LOG_FORMAT` if set to `json` or `text`, else JSON unless
/// stderr is a terminal.
fn json_format() -> bool {
    use std::io::IsTerminal;
    match std::env::var("FLUXO_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stderr().is_terminal(),
    }
}

/// Install the subscriber (once; later calls do nothing).
pub fn init() {
    use tracing_subscriber::EnvFilter;
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = EnvFilter::try_new(directives(rust_log.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new(directives(None)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json_format() {
        builder
            .json()
            .event_format(WithTraceIds {
                inner: tracing_subscriber::fmt::format().json().flatten_event(true),
                json: true,
            })
            .try_init()
    } else {
        use std::io::IsTerminal;
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .event_format(WithTraceIds {
                inner: tracing_subscriber::fmt::format(),
                json: false,
            })
            .try_init()
    };
    if let Ok(v) = std::env::var("FLUXO_LOG_FORMAT") {
        if v != "json" && v != "text" {
            tracing::warn!(value = %v, "FLUXO_LOG_FORMAT must be `json` or `text`; ignored");
        }
    }
}

/// The ids of the current traced span, as lowercase hex.
fn current_ids() -> Option<(String, String)> {
    if !super::enabled() {
        return None;
    }
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// A JSON object line with `trace_id` and `span_id` added as its first fields.
fn with_ids(line: &str, trace_id: &str, span_id: &str) -> String {
    match line.strip_prefix('{') {
        Some(rest) => {
            let sep = if rest.trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            format!("{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{sep}{rest}")
        }
        None => line.to_string(),
    }
}

/// An event formatter adding the current trace and span ids to `inner`'s lines.
pub struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = current_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        if self.json {
            let mut line = String::new();
            self.inner
                .format_event(ctx, Writer::new(&mut line), event)?;
            writer.write_str(&with_ids(&line, &trace_id, &span_id))
        } else {
            write!(writer, "trace_id={trace_id} span_id={span_id} ")?;
            self.inner.format_event(ctx, writer, event)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_target_is_off_unless_named() {
        assert_eq!(
            directives(None),
            format!("{DEFAULT_FILTER},fluxo::audit=off")
        );
        assert_eq!(directives(Some("  ")), directives(None));
        assert_eq!(directives(Some("debug")), "debug,fluxo::audit=off");
        assert_eq!(
            directives(Some("warn,fluxo::audit=info")),
            "warn,fluxo::audit=info"
        );
    }

    #[test]
    fn ids_lead_the_json_object() {
        assert_eq!(
            with_ids("{\"level\":\"INFO\"}\n", "ab", "cd"),
            "{\"trace_id\":\"ab\",\"span_id\":\"cd\",\"level\":\"INFO\"}\n"
        );
        assert_eq!(
            with_ids("{}\n", "ab", "cd"),
            "{\"trace_id\":\"ab\",\"span_id\":\"cd\"}\n"
        );
        assert_eq!(with_ids("plain\n", "ab", "cd"), "plain\n");
    }
}
