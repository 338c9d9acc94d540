//! Webhook notifications: what a notifier sends for an output event, and when it retries.
//!
//! The runtime's notifier (`fluxo`'s `src/jobs/notify.rs`) consumes `price-alerts`,
//! `below-average-events` and `risk-decisions` and POSTs each wanted event to a webhook. This
//! module holds the pure part: the payloads ([`render`], in the generic JSON shape or the
//! Slack-compatible `{"text": ...}` shape), how an HTTP status is treated ([`classify`]) and the
//! retry schedule ([`RetryPolicy`]).
//!
//! # What a payload never carries
//! No CPF/CNPJ and no transaction amount: a risk decision goes out with its transaction id,
//! decision, score, degraded flag and the rule ids with their contributions, but not the rules'
//! explanation texts (they quote amounts and masked documents); those stay behind the
//! authenticated query API (`GET /v1/risk-decisions/{transaction_id}`). Asset prices are public
//! market data and are sent as they are.

use crate::events::{
    AverageMethod, BelowAverageEvent, CrossingKind, Decision, Direction, PriceAlert, RiskDecision,
};
use crate::risk::resilience::{backoff_delay_with, Jitter};
use crate::Millis;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// The payload shape a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The generic JSON envelope (`id`, `notifier`, `type`, `source`, `data`).
    Json,
    /// A Slack incoming-webhook message: `{"text": "..."}` (also accepted by Mattermost,
    /// Rocket.Chat and Teams' Slack-compatible connectors).
    Slack,
}

/// An event a notifier can deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// From `price-alerts`.
    PriceAlert(PriceAlert),
    /// From `below-average-events`.
    BelowAverage(BelowAverageEvent),
    /// From `risk-decisions`.
    RiskDecision(RiskDecision),
}

impl Notification {
    /// The `type` of the generic JSON payload.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PriceAlert(_) => "price_alert",
            Self::BelowAverage(_) => "below_average",
            Self::RiskDecision(_) => "risk_decision",
        }
    }
}

/// Where a notification came from and how receivers deduplicate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The notifier's name in topology.toml.
    pub notifier: &'a str,
    /// The record's `fluxo-id` header: the same on every retry and every replay.
    pub idempotency_key: &'a str,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// The body to POST for `n`.
pub fn render(format: Format, n: &Notification, envelope: &Envelope<'_>) -> Value {
    match format {
        Format::Json => json!({
            "id": envelope.idempotency_key,
            "notifier": envelope.notifier,
            "type": n.kind(),
            "source": {
                "topic": envelope.topic,
                "partition": envelope.partition,
                "offset": envelope.offset,
            },
            "data": data(n),
        }),
        Format::Slack => json!({ "text": slack_text(n) }),
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-01-01T12:04:59.000Z`.
fn time(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Rise => "RISE",
        Direction::Fall => "FALL",
    }
}

fn crossing(k: CrossingKind) -> &'static str {
    match k {
        CrossingKind::Below => "BELOW",
        CrossingKind::Recovered => "RECOVERED",
    }
}

fn method(m: AverageMethod) -> &'static str {
    match m {
        AverageMethod::Sma => "SMA",
        AverageMethod::Ewma => "EWMA",
    }
}

/// `APPROVE`, `REVIEW` or `REJECT`, as on the wire and in `risk_decisions = [...]`.
pub fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Approve => "APPROVE",
        Decision::Review => "REVIEW",
        Decision::Reject => "REJECT",
    }
}

/// A decimal without trailing zeros (`100.00000000` -> `100`).
fn short(d: Decimal) -> String {
    d.normalize().to_string()
}

fn data(n: &Notification) -> Value {
    match n {
        Notification::PriceAlert(a) => json!({
            "alert_id": a.alert_id,
            "symbol": a.symbol,
            "direction": direction(a.direction),
            "from_price": a.from_price.to_string(),
            "to_price": a.to_price.to_string(),
            "change_pct": a.change_pct.to_string(),
            "threshold_pct": a.threshold_pct.to_string(),
            "from_time": time(a.from_time),
            "to_time": time(a.to_time),
            "window_start": time(a.window_start),
            "window_end": time(a.window_end),
        }),
        Notification::BelowAverage(e) => json!({
            "event_id": e.event_id,
            "symbol": e.symbol,
            "kind": crossing(e.kind),
            "price": e.price.to_string(),
            "average": e.average.to_string(),
            "deviation_pct": e.deviation_pct.to_string(),
            "samples": e.samples,
            "method": method(e.method),
            "event_time": time(e.event_time),
        }),
        Notification::RiskDecision(d) => json!({
            "transaction_id": d.transaction_id,
            "decision": decision_name(d.decision),
            "score": d.score,
            "degraded": d.degraded,
            "reasons": d.reasons.iter().map(|r| json!({
                "rule_id": r.rule_id,
                "contribution": r.contribution,
            })).collect::<Vec<_>>(),
            "event_time": time(d.event_time),
            "decided_at": time(d.decided_at),
        }),
    }
}

/// `text` safe inside a Slack message: `&`, `<` and `>` escaped as Slack asks, so an id such
/// as `<!channel>` cannot ping a channel or forge a link.
pub fn escape_slack(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_text(n: &Notification) -> String {
    match n {
        Notification::PriceAlert(a) => format!(
            "*{}* {} {}% (from {} to {}, threshold {}%) at {}",
            escape_slack(&a.symbol),
            match a.direction {
                Direction::Rise => "rose",
                Direction::Fall => "fell",
            },
            short(a.change_pct.abs()),
            short(a.from_price),
            short(a.to_price),
            short(a.threshold_pct),
            time(a.to_time),
        ),
        Notification::BelowAverage(e) => format!(
            "*{}* {} its {} average: {} vs {} ({}%, {} samples) at {}",
            escape_slack(&e.symbol),
            match e.kind {
                CrossingKind::Below => "fell below",
                CrossingKind::Recovered => "recovered to",
            },
            method(e.method),
            short(e.price),
            short(e.average),
            short(e.deviation_pct),
            e.samples,
            time(e.event_time),
        ),
        Notification::RiskDecision(d) => {
            let rules = d
                .reasons
                .iter()
                .map(|r| format!("{} (+{})", escape_slack(&r.rule_id), r.contribution))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "Transaction `{}`: *{}* (score {}{}){}",
                escape_slack(&d.transaction_id),
                decision_name(d.decision),
                d.score,
                if d.degraded { ", degraded" } else { "" },
                if rules.is_empty() {
                    String::new()
                } else {
                    format!(": {rules}")
                },
            )
        }
    }
}

/// What one HTTP answer means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered.
    Delivered,
    /// Worth another attempt: 408, 425, 429, 5xx (and timeouts and transport errors).
    Retry,
    /// The receiver refuses this payload (other 4xx, or an unfollowed 3xx): retrying cannot
    /// help, dead-letter it now.
    Permanent,
}

/// How an HTTP status is treated.
pub fn classify(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 425 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Permanent,
    }
}

/// Timeout and retries of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Per-attempt timeout (connect + answer), ms.
    pub timeout: Millis,
    /// Attempts after the first.
    pub retries: u32,
    /// Backoff before the first retry, ms; doubles each retry.
    pub backoff: Millis,
    /// Longest backoff, ms.
    pub max_backoff: Millis,
}

impl RetryPolicy {
    /// The wait before retry `retry` (0 = the first retry): exponential, capped at
    /// `max_backoff`, with equal jitter (half the cap plus up to half at random, so a failing
    /// receiver is never hammered and concurrent notifiers spread out). `jitter_unit` is uniform
    /// in `[0, 1)`.
    pub fn delay(&self, retry: u32, jitter_unit: f64) -> Millis {
        backoff_delay_with(
            Jitter::Equal,
            retry,
            self.backoff,
            self.max_backoff,
            jitter_unit,
        )
    }

    /// The longest one delivery can take before it is dead-lettered: every attempt timing out
    /// and every backoff at its largest.
    pub fn worst_case(&self) -> Millis {
        let attempts = i64::from(self.retries) + 1;
        let waits: Millis = (0..self.retries)
            .map(|r| backoff_delay_with(Jitter::None, r, self.backoff, self.max_backoff, 0.0))
            .fold(0, Millis::saturating_add);
        self.timeout.saturating_mul(attempts).saturating_add(waits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RiskReason;

    const T: Millis = 1_767_268_800_000; // 2026-01-01T12:00:00Z

    fn env() -> Envelope<'static> {
        Envelope {
            notifier: "desk",
            idempotency_key: "price-change:asset-prices/1/7/0",
            topic: "price-alerts",
            partition: 2,
            offset: 41,
        }
    }

    fn alert() -> PriceAlert {
        PriceAlert {
            alert_id: "a-1".into(),
            symbol: "PETR4".into(),
            direction: Direction::Rise,
            from_price: "100.00000000".parse().unwrap(),
            from_time: T,
            from_event_id: "q-1".into(),
            to_price: "110.01000000".parse().unwrap(),
            to_time: T + 299_000,
            to_event_id: "q-2".into(),
            change_pct: "10.0100".parse().unwrap(),
            threshold_pct: "10.0000".parse().unwrap(),
            window_start: T - 1_000,
            window_end: T + 299_000,
        }
    }

    fn reject() -> RiskDecision {
        RiskDecision {
            transaction_id: "tx-9".into(),
            score: 1000,
            decision: Decision::Reject,
            reasons: vec![
                RiskReason {
                    rule_id: "blacklist_payer".into(),
                    contribution: 1000,
                    text: "payer ***.456.789-** is blacklisted by coaf since 2026-01-01".into(),
                },
                RiskReason {
                    rule_id: "amount_ratio".into(),
                    contribution: 250,
                    text: "amount 98765.43 BRL is 12x the payer's average".into(),
                },
            ],
            degraded: true,
            event_time: T,
            decided_at: T + 15,
            latency_ms: 15,
        }
    }

    #[test]
    fn price_alert_json_shape() {
        let v = render(Format::Json, &Notification::PriceAlert(alert()), &env());
        assert_eq!(
            v,
            json!({
                "id": "price-change:asset-prices/1/7/0",
                "notifier": "desk",
                "type": "price_alert",
                "source": {"topic": "price-alerts", "partition": 2, "offset": 41},
                "data": {
                    "alert_id": "a-1",
                    "symbol": "PETR4",
                    "direction": "RISE",
                    "from_price": "100.00000000",
                    "to_price": "110.01000000",
                    "change_pct": "10.0100",
                    "threshold_pct": "10.0000",
                    "from_time": "2026-01-01T12:00:00.000Z",
                    "to_time": "2026-01-01T12:04:59.000Z",
                    "window_start": "2026-01-01T11:59:59.000Z",
                    "window_end": "2026-01-01T12:04:59.000Z",
                }
            })
        );
    }

    #[test]
    fn price_alert_slack_text() {
        let v = render(Format::Slack, &Notification::PriceAlert(alert()), &env());
        assert_eq!(
            v,
            json!({"text": "*PETR4* rose 10.01% (from 100 to 110.01, threshold 10%) at 2026-01-01T12:04:59.000Z"})
        );
    }

    #[test]
    fn below_average_both_shapes() {
        let e = BelowAverageEvent {
            event_id: "b-1".into(),
            symbol: "VALE3".into(),
            kind: CrossingKind::Below,
            price: "90.00000000".parse().unwrap(),
            average: "100.00000000".parse().unwrap(),
            deviation_pct: "-10.0000".parse().unwrap(),
            samples: 30,
            method: AverageMethod::Sma,
            event_time: T,
            quote_event_id: "q-3".into(),
        };
        let n = Notification::BelowAverage(e);
        assert_eq!(
            render(Format::Json, &n, &env())["data"],
            json!({
                "event_id": "b-1",
                "symbol": "VALE3",
                "kind": "BELOW",
                "price": "90.00000000",
                "average": "100.00000000",
                "deviation_pct": "-10.0000",
                "samples": 30,
                "method": "SMA",
                "event_time": "2026-01-01T12:00:00.000Z",
            })
        );
        assert_eq!(render(Format::Json, &n, &env())["type"], "below_average");
        assert_eq!(
            render(Format::Slack, &n, &env()),
            json!({"text": "*VALE3* fell below its SMA average: 90 vs 100 (-10%, 30 samples) at 2026-01-01T12:00:00.000Z"})
        );
    }

    #[test]
    fn reject_carries_ids_score_and_rules_but_no_texts() {
        let n = Notification::RiskDecision(reject());
        let v = render(Format::Json, &n, &env());
        assert_eq!(
            v["data"],
            json!({
                "transaction_id": "tx-9",
                "decision": "REJECT",
                "score": 1000,
                "degraded": true,
                "reasons": [
                    {"rule_id": "blacklist_payer", "contribution": 1000},
                    {"rule_id": "amount_ratio", "contribution": 250},
                ],
                "event_time": "2026-01-01T12:00:00.000Z",
                "decided_at": "2026-01-01T12:00:00.015Z",
            })
        );
        let slack = render(Format::Slack, &n, &env());
        assert_eq!(
            slack,
            json!({"text": "Transaction `tx-9`: *REJECT* (score 1000, degraded): blacklist_payer (+1000), amount_ratio (+250)"})
        );
        for body in [v.to_string(), slack.to_string()] {
            assert!(!body.contains("98765"), "an amount leaked: {body}");
            assert!(!body.contains("456.789"), "a document leaked: {body}");
        }
    }

    #[test]
    fn slack_text_cannot_ping_or_link() {
        let mut d = reject();
        d.transaction_id = "<!channel> & <http://evil|click>".into();
        d.reasons.truncate(1);
        assert_eq!(
            render(Format::Slack, &Notification::RiskDecision(d), &env()),
            json!({"text": "Transaction `&lt;!channel&gt; &amp; &lt;http://evil|click&gt;`: *REJECT* (score 1000, degraded): blacklist_payer (+1000)"})
        );
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(200), Verdict::Delivered);
        assert_eq!(classify(204), Verdict::Delivered);
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert_eq!(classify(s), Verdict::Retry, "{s}");
        }
        for s in [301, 400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(classify(s), Verdict::Permanent, "{s}");
        }
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_and_is_capped() {
        let p = RetryPolicy {
            timeout: 5_000,
            retries: 5,
            backoff: 200,
            max_backoff: 1_000,
        };
        // Lowest jitter: half the cap; highest: just under the cap.
        assert_eq!(
            (0..5).map(|r| p.delay(r, 0.0)).collect::<Vec<_>>(),
            vec![100, 200, 400, 500, 500]
        );
        assert_eq!(
            (0..5).map(|r| p.delay(r, 0.999_999)).collect::<Vec<_>>(),
            vec![199, 399, 799, 999, 999]
        );
        // Six attempts of 5 s plus 200 + 400 + 800 + 1000 + 1000 of backoff.
        assert_eq!(p.worst_case(), 33_400);
        assert_eq!(RetryPolicy { retries: 0, ..p }.worst_case(), 5_000);
    }
}
