//! The OpenAPI 3.0 document of the query API and of the runtime's operational routes, written
//! by hand with `serde_json::json!` and rendered once.

use super::params::{DEFAULT_LIMIT, MAX_ID_LEN, MAX_LIMIT, MAX_RANGE_DAYS};
use serde_json::{json, Value};
use std::sync::LazyLock;

/// Every path the document describes, in document order.
pub const PATHS: [&str; 12] = [
    super::ROUTE_DAILY_BALANCE,
    super::ROUTE_DAILY_BALANCES,
    super::ROUTE_RISK_DECISION,
    super::ROUTE_ALERTS,
    super::ROUTE_BELOW_AVERAGE,
    crate::console::ROUTE_PIPELINE,
    crate::console::ROUTE_RECORDS,
    crate::console::ROUTE_RISK_LATENCY,
    super::ROUTE_OPENAPI,
    "/healthz",
    "/readyz",
    "/metrics",
];

static DOCUMENT: LazyLock<Vec<u8>> =
    // Serializing a `Value` cannot fail.
    LazyLock::new(|| serde_json::to_vec_pretty(&document()).unwrap_or_default());

/// The document, rendered once.
pub fn document_bytes() -> &'static [u8] {
    DOCUMENT.as_slice()
}

fn id_param(name: &str, description: &str, example: &str) -> Value {
    json!({
        "name": name, "in": "path", "required": true, "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN,
                   "pattern": "^[A-Za-z0-9._-]+$"},
        "example": example
    })
}

fn date_param(name: &str, location: &str, description: &str, example: &str) -> Value {
    json!({
        "name": name, "in": location, "required": true, "description": description,
        "schema": {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
        "example": example
    })
}

fn error(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn envelope(description: &str, data: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["as_of", "data"],
            "properties": {
                "as_of": {"$ref": "#/components/schemas/AsOf"},
                "data": {"$ref": format!("#/components/schemas/{data}")}
            }
        }}}
    })
}

fn events_op(summary: &str, description: &str, schema: &str) -> Value {
    json!({"get": {
        "summary": summary,
        "description": description,
        "tags": ["market"],
        "parameters": [
            id_param("symbol", "Ticker or pair.", "PETR4"),
            {"name": "since", "in": "query", "required": false,
             "description": "Only events at or after this time: an RFC 3339 date-time (2024-05-01T12:00:00Z, 2024-05-01T09:00:00.250-03:00; encode '+' as %2B) or epoch milliseconds (1714564800000). Absent: from the first event.",
             "schema": {"anyOf": [
                 {"type": "string", "format": "date-time"},
                 {"type": "string", "pattern": "^-?[0-9]{1,15}$"}
             ]},
             "example": "2024-05-01T12:00:00Z"},
            {"name": "limit", "in": "query", "required": false,
             "description": "Most events returned.",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}}
        ],
        "responses": {
            "200": envelope("Events in event-time order (empty for a symbol without events).", schema),
            "400": error("Bad symbol, since or limit."),
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "500": error("A stored row does not decode."),
            "503": error("The state store cannot be reached, did not answer within the read timeout, or has too many reads in flight; retry later (see Retry-After).")
        }
    }})
}

fn money(description: &str) -> Value {
    json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$", "description": description,
           "example": "1250.00"})
}

/// The OpenAPI 3.0 document.
pub fn document() -> Value {
    let mut doc = core_document();
    for (section, extra) in [
        ("/paths", console_paths()),
        ("/components/schemas", console_schemas()),
    ] {
        if let (Some(target), Value::Object(items)) = (doc.pointer_mut(section), extra) {
            if let Some(map) = target.as_object_mut() {
                map.extend(items);
            }
        }
    }
    doc
}

/// The console's routes (`crate::console`), kept apart so that each `json!` stays within the
/// macro's recursion limit.
fn console_paths() -> Value {
    json!({
        (crate::console::ROUTE_PIPELINE): {"get": {
            "summary": "The pipeline as a graph, with each processor's live figures (web console)",
            "description": "Processors with their input, output and dead-letter topics, status (running, stopped, disabled, not_in_this_process), record totals, rates per second (null until a second request gives a base to compare with; measured over about rate_window_seconds between requests), consumer lag, assigned partitions and the age of the last checkpoint; notifiers with their deliveries by outcome; every topic with its role. From this process's own metrics.",
            "tags": ["console"],
            "responses": {
                "200": envelope("The graph and its figures.", "ConsolePipeline"),
                "401": {"$ref": "#/components/responses/Unauthorized"}
            }
        }},
        (crate::console::ROUTE_RECORDS): {"get": {
            "summary": "A topic's most recent records, decoded (web console)",
            "description": "A bounded read_committed read of the newest records of a topic of the topology, newest first, decoded with their writer schema to JSON. Documents (CPF/CNPJ) are masked in values, keys and texts; a dead-letter topic (*.dlq, *.notify-dlq) gives reason, detail, processor, source topic/partition/offset/size/schema id and a payload preview (hex of the first 64 bytes, base64 of the first 1024) with the digits of anything shaped like a document replaced by '*'; dead letters of inputs that carry documents (transactions, blacklist) have no payload (withheld: true) and a pseudonymized key.",
            "tags": ["console"],
            "parameters": [
                {"name": "topic", "in": "path", "required": true, "description": "A topic of the topology (dead-letter topics included).",
                 "schema": {"type": "string"}, "example": "asset-prices"},
                {"name": "limit", "in": "query", "required": false, "description": "Most records returned.",
                 "schema": {"type": "integer", "minimum": 1, "maximum": crate::console::MAX_RECORDS, "default": crate::console::DEFAULT_RECORDS}},
                {"name": "key", "in": "query", "required": false, "description": "Only records with this key (e.g. a symbol), among the newest 2 x limit offsets of each partition.",
                 "schema": {"type": "string"}}
            ],
            "responses": {
                "200": envelope("The records.", "ConsoleRecords"),
                "400": error("Bad limit or unknown parameter."),
                "401": {"$ref": "#/components/responses/Unauthorized"},
                "404": error("Not a topic of the topology."),
                "503": error("Kafka could not be read.")
            }
        }},
        (crate::console::ROUTE_RISK_LATENCY): {"get": {
            "summary": "Risk decision latency histogram and SLA breaches (web console)",
            "description": "fluxo_risk_decision_latency_seconds of this process as per-bucket counts (the last bucket, le_seconds null, is above the highest bound), with fluxo_risk_sla_breaches_total and the decisions by kind.",
            "tags": ["console"],
            "responses": {
                "200": envelope("The histogram.", "ConsoleRiskLatency"),
                "401": {"$ref": "#/components/responses/Unauthorized"}
            }
        }}
    })
}

/// The schemas of the console's answers.
fn console_schemas() -> Value {
    json!({
        "ConsolePipeline": {"type": "object", "properties": {
            "processors": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "kind": {"type": "string"}, "enabled": {"type": "boolean"},
                "status": {"type": "string", "enum": ["running", "stopped", "disabled", "not_in_this_process"]},
                "inputs": {"type": "array", "items": {"type": "string"}},
                "global_inputs": {"type": "array", "items": {"type": "string"}},
                "outputs": {"type": "array", "items": {"type": "string"}},
                "dlq_topics": {"type": "array", "items": {"type": "string"}},
                "records_in": {"type": "number"}, "records_out": {"type": "number"}, "dead_letters": {"type": "number"},
                "rate_in": {"type": "number", "nullable": true}, "rate_out": {"type": "number", "nullable": true},
                "rate_dead_letters": {"type": "number", "nullable": true},
                "lag": {"type": "number", "nullable": true},
                "assigned_partitions": {"type": "number", "nullable": true},
                "last_checkpoint_age_seconds": {"type": "number", "nullable": true}
            }}},
            "notifiers": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "enabled": {"type": "boolean"},
                "topics": {"type": "array", "items": {"type": "string"}},
                "dlq_topics": {"type": "array", "items": {"type": "string"}},
                "deliveries": {"type": "object", "additionalProperties": {"type": "number"}}
            }}},
            "topics": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "partitions": {"type": "integer"}, "schema": {"type": "string"},
                "role": {"type": "string", "enum": ["input", "output", "dead_letters"]}
            }}},
            "rate_window_seconds": {"type": "integer"}
        }},
        "ConsoleRecords": {"type": "object", "properties": {
            "topic": {"type": "string"},
            "dead_letters": {"type": "boolean"},
            "records": {"type": "array", "items": {"type": "object", "properties": {
                "partition": {"type": "integer"}, "offset": {"type": "integer", "format": "int64"},
                "timestamp": {"type": "integer", "format": "int64", "nullable": true},
                "key": {"type": "string", "nullable": true},
                "value": {"description": "The decoded record (documents masked); on a dead-letter topic, the original record when it still decodes, else null."},
                "reason": {"type": "string", "nullable": true}, "detail": {"type": "string", "nullable": true},
                "processor": {"type": "string", "nullable": true}, "source_topic": {"type": "string"},
                "source_partition": {"type": "integer", "nullable": true},
                "source_offset": {"type": "integer", "format": "int64", "nullable": true},
                "source_size": {"type": "integer", "nullable": true, "description": "Size in bytes of the dead-lettered value."},
                "source_schema_id": {"type": "integer", "nullable": true, "description": "Schema id of the dead-lettered value's framing, when it has one."},
                "withheld": {"type": "boolean", "description": "True when the input carries documents: the dead letter has no payload and a pseudonymized key; the original is read at source_topic/source_partition/source_offset."},
                "payload": {"type": "object", "nullable": true, "properties": {
                    "size": {"type": "integer"}, "hex": {"type": "string"}, "base64": {"type": "string"},
                    "truncated": {"type": "boolean"}
                }}
            }}}
        }},
        "ConsoleRiskLatency": {"type": "object", "properties": {
            "buckets": {"type": "array", "items": {"type": "object", "properties": {
                "le_seconds": {"type": "number", "nullable": true}, "count": {"type": "integer"}
            }}},
            "count": {"type": "integer"}, "sum_seconds": {"type": "number"},
            "sla_breaches": {"type": "integer"},
            "decisions": {"type": "object", "additionalProperties": {"type": "number"}}
        }}
    })
}

/// The query API's and runtime's part of the document.
fn core_document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "fluxo query API",
            "version": "1",
            "description": "Read-only views maintained by fluxo's processors. Every /v1 response is {\"as_of\", \"data\"}: as_of is the instant up to which the views are known to reflect every consumed input (it stops advancing while input is not applied, e.g. Kafka down). Money is an exact decimal string. Errors are {\"error\": message}."
        },
        "security": [{"bearerAuth": []}],
        "paths": core_paths(),
        "components": core_components()
    })
}

/// The paths of the query API and the runtime endpoints.
fn core_paths() -> Value {
    json!({
        (super::ROUTE_DAILY_BALANCE): {"get": {
            "summary": "One day's consolidated balance of an account",
            "tags": ["cash-flow"],
            "parameters": [
                id_param("account", "Account id.", "ACC-000001"),
                date_param("date", "path", "Business date.", "2024-01-15")
            ],
            "responses": {
                "200": envelope("The day's totals.", "DailyBalance"),
                "400": error("Bad account id or date."),
                "401": {"$ref": "#/components/responses/Unauthorized"},
                "404": error("Unknown account, or no entries that day (the message says which)."),
                "500": error("A stored row does not decode."),
        "503": error("The state store cannot be reached, did not answer within the read timeout, or has too many reads in flight; retry later (see Retry-After).")
            }
        }},
        (super::ROUTE_DAILY_BALANCES): {"get": {
            "summary": "Daily balances of an account over a date range, with the running balance",
            "description": format!("Every day from `from` to `to` (at most {MAX_RANGE_DAYS} days), days without entries as zeros, and the running balance: the cumulative sum of `net` from `from` (the range starts at zero; the view holds daily flows, not an opening balance). 404 only for an account without any entries."),
            "tags": ["cash-flow"],
            "parameters": [
                id_param("account", "Account id.", "ACC-000001"),
                date_param("from", "query", "First day (included).", "2024-01-01"),
                date_param("to", "query", "Last day (included).", "2024-01-31")
            ],
            "responses": {
                "200": envelope("Every day of the range.", "DailyBalanceRange"),
                "400": error("Bad account id, missing or bad dates, from after to, range too long, unknown parameter."),
                "401": {"$ref": "#/components/responses/Unauthorized"},
                "404": error("Unknown account."),
                "500": error("A stored row does not decode."),
        "503": error("The state store cannot be reached, did not answer within the read timeout, or has too many reads in flight; retry later (see Retry-After).")
            }
        }},
        (super::ROUTE_RISK_DECISION): {"get": {
            "summary": "The risk decision on a transaction",
            "tags": ["risk"],
            "parameters": [id_param("transaction_id", "Transaction id.", "5f0c7a1e-8d2b-4c1a-9e3f-1b2c3d4e5f60")],
            "responses": {
                "200": envelope("The decision, as published on risk-decisions.", "RiskDecision"),
                "400": error("Bad transaction id."),
                "401": {"$ref": "#/components/responses/Unauthorized"},
                "404": error("No decision for this transaction."),
                "500": error("A stored row does not decode."),
        "503": error("The state store cannot be reached, did not answer within the read timeout, or has too many reads in flight; retry later (see Retry-After).")
            }
        }},
        (super::ROUTE_ALERTS): events_op(
            "Price alerts of a symbol since a time",
            "Alerts ordered by the triggering quote's time (to_time). When more remain, next_since is set: ask again with since=next_since (events at that exact millisecond may repeat; alert_id identifies them).",
            "PriceAlertPage"),
        (super::ROUTE_BELOW_AVERAGE): events_op(
            "Below-average crossings and recoveries of a symbol since a time",
            "Events ordered by event_time. Paging as for alerts.",
            "BelowAverageEventPage"),
        (super::ROUTE_OPENAPI): {"get": {
            "summary": "This document", "tags": ["operations"], "security": [],
            "responses": {"200": {"description": "OpenAPI 3.0 document.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}}
        }},
        "/healthz": {"get": {
            "summary": "Liveness: the process answers", "tags": ["operations"], "security": [],
            "responses": {"200": {"description": "Alive.", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"status": {"type": "string", "enum": ["ok"]}}}}}}}
        }},
        "/readyz": {"get": {
            "summary": "Readiness: state is restored and every processor runs", "tags": ["operations"], "security": [],
            "responses": {
                "200": {"description": "Ready.", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"status": {"type": "string", "enum": ["ready"]}}}}}},
                "503": {"description": "Still restoring state, or the brokers cannot be reached.", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"status": {"type": "string", "enum": ["starting", "broker unreachable"]}}}}}}
            }
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics", "tags": ["operations"], "security": [],
            "responses": {"200": {"description": "Prometheus text exposition format 0.0.4.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}}
        }}
    })
}

/// The security scheme, shared responses and schemas of the core document.
fn core_components() -> Value {
    json!({
        "securitySchemes": {"bearerAuth": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "HS256 (FLUXO_JWT_SECRET) or RS256/ES256 (FLUXO_JWT_PUBLIC_KEY); exp required."
        }},
        "responses": {"Unauthorized": {
            "description": "Missing or invalid token (no detail given).",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string", "enum": ["Bearer"]}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        }},
        "schemas": {
            "AsOf": {"type": "string", "format": "date-time",
                     "description": "The views reflect every input consumed up to this instant."},
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string", "description": "What is wrong."},
                "as_of": {"$ref": "#/components/schemas/AsOf"}
            }},
            "DailyBalance": {"type": "object", "properties": {
                "account_id": {"type": "string"},
                "date": {"type": "string", "format": "date"},
                "total_credits": money("Sum of credits."),
                "total_debits": money("Sum of debits."),
                "net": money("total_credits - total_debits."),
                "entry_count": {"type": "integer", "format": "int64"},
                "last_entry_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time",
                               "description": "When the row last changed (processing time)."}
            }},
            "RangeDay": {"type": "object", "properties": {
                "date": {"type": "string", "format": "date"},
                "total_credits": money("Sum of credits (0.00 without entries)."),
                "total_debits": money("Sum of debits."),
                "net": money("total_credits - total_debits."),
                "entry_count": {"type": "integer", "format": "int64"},
                "last_entry_at": {"type": "string", "format": "date-time", "nullable": true},
                "updated_at": {"type": "string", "format": "date-time", "nullable": true},
                "running_balance": money("Cumulative net from the first day of the range to this one.")
            }},
            "DailyBalanceRange": {"type": "object", "properties": {
                "account_id": {"type": "string"},
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "total_credits": money("Sum over the range."),
                "total_debits": money("Sum over the range."),
                "net": money("Sum over the range."),
                "entry_count": {"type": "integer", "format": "int64"},
                "closing_balance": money("The running balance of the last day."),
                "days": {"type": "array", "items": {"$ref": "#/components/schemas/RangeDay"}}
            }},
            "RiskDecision": {"type": "object", "description": "As on the risk-decisions topic; times in epoch milliseconds.", "properties": {
                "transaction_id": {"type": "string"},
                "score": {"type": "integer", "minimum": 0, "maximum": 1000},
                "decision": {"type": "string", "enum": ["APPROVE", "REVIEW", "REJECT"]},
                "reasons": {"type": "array", "items": {"type": "object", "properties": {
                    "rule_id": {"type": "string"},
                    "contribution": {"type": "integer"},
                    "text": {"type": "string"}
                }}},
                "degraded": {"type": "boolean"},
                "event_time": {"type": "integer", "format": "int64"},
                "decided_at": {"type": "integer", "format": "int64"},
                "latency_ms": {"type": "integer", "format": "int64"}
            }},
            "PriceAlert": {"type": "object", "description": "As on the price-alerts topic; times in epoch milliseconds.", "properties": {
                "alert_id": {"type": "string"},
                "symbol": {"type": "string"},
                "direction": {"type": "string", "enum": ["RISE", "FALL"]},
                "from_price": money("Reference price."),
                "from_time": {"type": "integer", "format": "int64"},
                "from_event_id": {"type": "string"},
                "to_price": money("Triggering price."),
                "to_time": {"type": "integer", "format": "int64"},
                "to_event_id": {"type": "string"},
                "change_pct": money("Change in percent."),
                "threshold_pct": money("Threshold crossed, in percent."),
                "window_start": {"type": "integer", "format": "int64"},
                "window_end": {"type": "integer", "format": "int64"}
            }},
            "BelowAverageEvent": {"type": "object", "description": "As on the below-average-events topic; times in epoch milliseconds.", "properties": {
                "event_id": {"type": "string"},
                "symbol": {"type": "string"},
                "kind": {"type": "string", "enum": ["BELOW", "RECOVERED"]},
                "price": money("Quote price."),
                "average": money("Average compared with."),
                "deviation_pct": money("(price - average) / average * 100."),
                "samples": {"type": "integer", "format": "int64"},
                "method": {"type": "string", "enum": ["SMA", "EWMA"]},
                "event_time": {"type": "integer", "format": "int64"},
                "quote_event_id": {"type": "string"}
            }},
            "PriceAlertPage": page("PriceAlert"),
            "BelowAverageEventPage": page("BelowAverageEvent")
        }
    })
}

fn page(item: &str) -> Value {
    json!({"type": "object", "properties": {
        "symbol": {"type": "string"},
        "since": {"type": "string", "format": "date-time", "nullable": true},
        "events": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
        "next_since": {"type": "integer", "format": "int64", "nullable": true,
                       "description": "Set when more events follow: ask again with since=next_since."}
    }})
}
