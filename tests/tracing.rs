//! Tracing across Kafka hops, against real components: a real OTLP/HTTP receiver (an axum
//! server decoding the protobuf export requests with opentelemetry-proto's types), the real
//! broker, `fluxo produce` and `fluxo run` (risk scoring) as processes, and a real local HTTP
//! validator that fails the first call for each document so that retries are traced too.

mod common;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use common::*;
use fluxo_processors::events::RiskDecision;
use fluxo_processors::risk::documents::{generate_cnpj, generate_cpf};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Spans received by the OTLP receiver, with the `service.name` of their resource.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

async fn receive_traces(State(r): State<Received>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut spans = r.spans.lock().unwrap();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                spans.push((service.clone(), span));
            }
        }
    }
    StatusCode::OK
}

/// A validator answering 503 to the first call for each document and `clean` afterwards; it
/// records the `traceparent` of every call.
#[derive(Clone, Default)]
struct Validator {
    calls: Arc<Mutex<Vec<Call>>>,
}

/// A validator call: the document and the `traceparent` header.
type Call = (String, Option<String>);

async fn validate(
    State(v): State<Validator>,
    Path(doc): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<serde_json::Value>, StatusCode> {
    let traceparent = headers
        .get("traceparent")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let mut calls = v.calls.lock().unwrap();
    let first = !calls.iter().any(|(d, _)| *d == doc);
    calls.push((doc, traceparent));
    if first {
        Err(StatusCode::SERVICE_UNAVAILABLE)
    } else {
        Ok(axum::Json(serde_json::json!({"flagged": false})))
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

fn s(v: &str) -> Option<Value> {
    Some(Value::StringValue(v.into()))
}

fn i(v: i64) -> Option<Value> {
    Some(Value::IntValue(v))
}

/// Every attribute value of `span` as text (to check that nothing sensitive leaks).
fn attribute_text(span: &Span) -> String {
    format!("{:?} {}", span.attributes, span.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_is_one_trace_from_produce_to_decision() {
    let _serial = serial();
    let received = Received::default();
    let otlp = serve(
        Router::new()
            .route("/v1/traces", post(receive_traces))
            .with_state(received.clone()),
    )
    .await;
    let validator = Validator::default();
    let validator_url = serve(
        Router::new()
            .route("/documents/{doc}", get(validate))
            .with_state(validator.clone()),
    )
    .await;
    // The child processes inherit these (this test binary runs one test).
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp);
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
    std::env::remove_var("OTEL_SERVICE_NAME");
    std::env::remove_var("OTEL_TRACES_SAMPLER");
    std::env::set_var("FLUXO_LOG_FORMAT", "json");
    std::env::set_var("RUST_LOG", "warn,fluxo::audit=info");

    let params = format!(
        r#"
[processors.risk-scoring.params.external]
url = "{validator_url}"
timeout = "500ms"
budget = "1500ms"
max_retries = 2
backoff_base = "10ms"
backoff_max = "20ms"
failure_threshold = 50
"#
    );
    let env = Env::new(&["risk-scoring"], &params);
    env.create_topics();
    let mut child = env.start();

    let txs = env.topic("transactions");
    let decisions_topic = env.topic("risk-decisions");
    let payer = generate_cpf(7_301);
    let payee = generate_cnpj(73_011_222, 1);
    let line = serde_json::json!({
        "transaction_id": "trace-1", "kind": "PIX", "payer_document": payer,
        "payer_name": "Maria", "payee_document": payee, "amount": "987.65",
        "channel": "app", "event_time": fluxo::simulate::now_millis(),
    });
    let file = env.dir.path().join("tx.jsonl");
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let out = env
        .command(&["produce", "--topic", &txs, "--file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The decision, and the trace context it carries.
    let deadline = Instant::now() + Duration::from_secs(60);
    let decision = loop {
        let found = read_topic(&decisions_topic, 1, Duration::from_secs(2));
        if let Some(r) = found.into_iter().next() {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no decision; log:\n{}",
            env.log()
        );
    };
    let d = decode::<RiskDecision>(decision.payload.as_deref().unwrap());
    assert_eq!(d.transaction_id, "trace-1");
    assert!(
        !d.degraded,
        "the retry should have reached the validator: {d:?}"
    );
    assert!(stop(&mut child).success(), "log:\n{}", env.log());

    // 1 producer span + receive + process + 4 validator attempts + publish.
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans: Vec<(String, Span)> = loop {
        let spans = received.spans.lock().unwrap().clone();
        if spans.len() >= 8 || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(spans.len(), 8, "spans: {names:?}");
    assert!(spans.iter().all(|(service, _)| service == "fluxo"));

    let by_name = |name: &str| -> Vec<&Span> {
        spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name)
            .collect()
    };
    let one = |name: &str| -> &Span {
        let found = by_name(name);
        assert_eq!(found.len(), 1, "{name}: {names:?}");
        found[0]
    };
    let produce = one(&format!("publish {txs}"));
    let receive = one(&format!("receive {txs}"));
    let process = one(&format!("process {txs}"));
    let publish = one(&format!("publish {decisions_topic}"));
    let calls = by_name("GET /documents/{document}");
    assert_eq!(calls.len(), 4, "{names:?}");

    // One trace, and the tree: produce -> receive -> process -> {4 calls, publish}.
    let trace_id = produce.trace_id.clone();
    assert_eq!(trace_id.len(), 16);
    assert!(spans.iter().all(|(_, s)| s.trace_id == trace_id));
    assert!(produce.parent_span_id.is_empty());
    assert_eq!(receive.parent_span_id, produce.span_id);
    assert_eq!(process.parent_span_id, receive.span_id);
    assert_eq!(publish.parent_span_id, process.span_id);
    for call in &calls {
        assert_eq!(call.parent_span_id, process.span_id, "{}", call.name);
        assert_eq!(call.kind, SpanKind::Client as i32);
    }
    assert_eq!(produce.kind, SpanKind::Producer as i32);
    assert_eq!(receive.kind, SpanKind::Consumer as i32);
    assert_eq!(process.kind, SpanKind::Internal as i32);
    assert_eq!(publish.kind, SpanKind::Producer as i32);

    // Messaging attributes.
    for (span, topic, operation) in [
        (produce, &txs, "publish"),
        (receive, &txs, "receive"),
        (process, &txs, "process"),
        (publish, &decisions_topic, "publish"),
    ] {
        assert_eq!(attr(span, "messaging.system"), s("kafka"), "{}", span.name);
        assert_eq!(attr(span, "messaging.destination.name"), s(topic));
        assert_eq!(attr(span, "messaging.operation.type"), s(operation));
    }
    let group = format!("fluxo-{}-risk-scoring", env.suffix);
    let input = read_topic(&txs, 1, Duration::from_secs(10)).remove(0);
    assert_eq!(
        input.headers.get("traceparent").map(String::as_str),
        Some(format!("00-{}-{}-01", hex(&trace_id), hex(&produce.span_id)).as_str())
    );
    for span in [receive, process] {
        assert_eq!(
            attr(span, "messaging.destination.partition.id"),
            s(&input.partition.to_string())
        );
        assert_eq!(
            attr(span, "messaging.kafka.message.offset"),
            i(input.offset)
        );
        assert_eq!(attr(span, "messaging.consumer.group.name"), s(&group));
    }

    // Each document: a failed first call (503), then a retry that succeeds.
    let mut statuses: BTreeMap<Option<i64>, Vec<Option<Value>>> = BTreeMap::new();
    for call in &calls {
        let resend = match attr(call, "http.request.resend_count") {
            Some(Value::IntValue(n)) => Some(n),
            _ => None,
        };
        statuses
            .entry(resend)
            .or_default()
            .push(attr(call, "http.response.status_code"));
        assert_eq!(attr(call, "http.request.method"), s("GET"));
        assert_eq!(attr(call, "server.address"), s("127.0.0.1"));
    }
    assert_eq!(
        statuses,
        BTreeMap::from([
            (None, vec![i(503), i(503)]),
            (Some(1), vec![i(200), i(200)])
        ])
    );

    // The validator saw each attempt's own span as the parent.
    let call_ids: Vec<String> = calls.iter().map(|c| hex(&c.span_id)).collect();
    let seen = validator.calls.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    for (_, traceparent) in &seen {
        let tp = traceparent
            .as_deref()
            .expect("traceparent sent to the validator");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts[1], hex(&trace_id));
        assert!(call_ids.contains(&parts[2].to_string()), "{tp}");
    }

    // The decision carries the publish span as its parent.
    assert_eq!(
        decision.headers.get("traceparent").map(String::as_str),
        Some(format!("00-{}-{}-01", hex(&trace_id), hex(&publish.span_id)).as_str())
    );

    assert_eq!(decision.headers.get("tracestate"), None);
    assert_eq!(input.headers.get("tracestate"), None);

    // No document, amount or transaction id in span names or attributes.
    let digits = |d: &str| d.chars().filter(char::is_ascii_digit).collect::<String>();
    for (_, span) in &spans {
        let text = attribute_text(span);
        for secret in [
            digits(&payer),
            digits(&payee),
            "987.65".into(),
            "trace-1".into(),
        ] {
            assert!(!text.contains(&secret), "{secret} in {text}");
        }
    }

    // The audit line of the decision carries the ids of the `process` span.
    let log = env.log();
    let audit: Vec<HashMap<String, serde_json::Value>> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &HashMap<String, serde_json::Value>| {
            l.get("target").and_then(|t| t.as_str()) == Some("fluxo::audit")
        })
        .collect();
    assert_eq!(audit.len(), 1, "log:\n{log}");
    assert_eq!(audit[0]["trace_id"], serde_json::json!(hex(&trace_id)));
    assert_eq!(
        audit[0]["span_id"],
        serde_json::json!(hex(&process.span_id))
    );
}
