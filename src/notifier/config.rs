//! `[notifiers.<name>]` in topology.toml: where a notifier POSTs, in which shape, which events,
//! and how hard it tries.
//!
//! ```toml
//! [notifiers.trading-desk]
//! url_env = "FLUXO_WEBHOOK_TRADING"   # or url = "https://hooks.example.com/..."
//! format = "slack"                    # or "json" (default)
//! topics = ["price-alerts", "below-average-events", "risk-decisions"]
//! risk_decisions = ["REJECT"]         # default
//! timeout = "5s"                      # per attempt (default)
//! retries = 5                         # attempts after the first (default)
//! backoff = "200ms"                   # first retry's backoff, doubling (default)
//! max_backoff = "10s"                 # cap (default)
//! headers = { Authorization = "env:FLUXO_WEBHOOK_TOKEN" }
//! ```

use crate::config::TopicConfig;
use fluxo_processors::config::DurationMs;
use fluxo_processors::events::Decision;
use fluxo_processors::notify::{decision_name, Format, RetryPolicy};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Longest a single delivery may take with every attempt timing out (4 minutes): the engine
/// must poll the consumer within `max.poll.interval.ms` (5 minutes by default).
pub const MAX_DELIVERY_MS: i64 = 240_000;

/// The schemas a notifier can deliver.
const DELIVERABLE: [&str; 3] = ["PriceAlert", "BelowAverageEvent", "RiskDecision"];

/// `[notifiers.<name>]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifier {
    url: Option<String>,
    url_env: Option<String>,
    #[serde(default = "default_format")]
    format: Format,
    topics: Vec<String>,
    #[serde(default = "default_decisions")]
    risk_decisions: Vec<String>,
    #[serde(default = "default_timeout")]
    timeout: DurationMs,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default = "default_backoff")]
    backoff: DurationMs,
    #[serde(default = "default_max_backoff")]
    max_backoff: DurationMs,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    enabled: Option<bool>,
}

fn default_format() -> Format {
    Format::Json
}
fn default_decisions() -> Vec<String> {
    vec!["REJECT".into()]
}
fn default_timeout() -> DurationMs {
    DurationMs(5_000)
}
fn default_retries() -> u32 {
    5
}
fn default_backoff() -> DurationMs {
    DurationMs(200)
}
fn default_max_backoff() -> DurationMs {
    DurationMs(10_000)
}

/// Where the webhook URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookUrl {
    /// Written in topology.toml.
    Literal(String),
    /// Read at start from this environment variable (webhook URLs are often secrets).
    Env(String),
}

/// A validated notifier.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Its name (metric label; engine, consumer group and checkpoints `notifier-<name>`).
    pub name: String,
    /// The webhook.
    pub url: WebhookUrl,
    /// Payload shape.
    pub format: Format,
    /// Topics it consumes (each holds `PriceAlert`, `BelowAverageEvent` or `RiskDecision`).
    pub topics: Vec<String>,
    /// Which risk decisions it delivers.
    pub risk_decisions: Vec<Decision>,
    /// Timeout, retries, backoff.
    pub policy: RetryPolicy,
    /// Extra request headers; a value `env:NAME` is read from the environment at start.
    pub headers: BTreeMap<String, String>,
    /// Whether `fluxo up`/`run` start it.
    pub enabled: bool,
}

impl NotifierConfig {
    /// The engine name: consumer group `<prefix>-notifier-<name>`, checkpoints, engine metrics.
    pub fn engine_name(&self) -> String {
        format!("notifier-{}", self.name)
    }
}

/// A notifier-config problem: the key under `notifiers.<name>.` and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierError {
    /// Key below the notifier, e.g. `topics`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn fail(key: &'static str, message: impl Into<String>) -> NotifierError {
    NotifierError {
        key,
        message: message.into(),
    }
}

impl RawNotifier {
    /// Validate against the declared topics.
    ///
    /// # Errors
    /// A [`NotifierError`] naming the key.
    pub fn validate(
        self,
        name: &str,
        topics: &BTreeMap<String, TopicConfig>,
    ) -> Result<NotifierConfig, NotifierError> {
        let url = match (self.url, self.url_env) {
            (Some(u), None) => {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(fail("url", "must start with http:// or https://"));
                }
                WebhookUrl::Literal(u)
            }
            (None, Some(v)) if !v.trim().is_empty() => WebhookUrl::Env(v),
            (None, Some(_)) => return Err(fail("url_env", "names no variable")),
            (Some(_), Some(_)) => return Err(fail("url", "give `url` or `url_env`, not both")),
            (None, None) => return Err(fail("url", "missing: give `url` or `url_env`")),
        };
        if self.topics.is_empty() {
            return Err(fail("topics", "a notifier needs at least one topic"));
        }
        for t in &self.topics {
            let Some(topic) = topics.get(t) else {
                return Err(fail(
                    "topics",
                    format!("topic `{t}` is not declared under [topics]"),
                ));
            };
            if !DELIVERABLE.contains(&topic.schema.as_str()) {
                return Err(fail(
                    "topics",
                    format!(
                        "topic `{t}` holds `{}`; a notifier delivers {}",
                        topic.schema,
                        DELIVERABLE.join(", ")
                    ),
                ));
            }
        }
        let all = [Decision::Approve, Decision::Review, Decision::Reject];
        let mut risk_decisions = Vec::new();
        for d in &self.risk_decisions {
            match all.iter().find(|x| decision_name(**x) == d) {
                Some(x) => risk_decisions.push(*x),
                None => {
                    return Err(fail(
                        "risk_decisions",
                        format!("unknown decision `{d}`; known: APPROVE, REVIEW, REJECT"),
                    ))
                }
            }
        }
        if self.timeout.millis() <= 0 {
            return Err(fail("timeout", "must be more than 0"));
        }
        if self.backoff.millis() > self.max_backoff.millis() {
            return Err(fail("backoff", "must not exceed `max_backoff`"));
        }
        let policy = RetryPolicy {
            timeout: self.timeout.millis(),
            retries: self.retries,
            backoff: self.backoff.millis(),
            max_backoff: self.max_backoff.millis(),
        };
        if policy.worst_case() > MAX_DELIVERY_MS {
            return Err(fail(
                "retries",
                format!(
                    "with this timeout and backoff one delivery could take {} s; at most {} s \
                     (lower `retries`, `timeout` or `max_backoff`)",
                    policy.worst_case() / 1_000,
                    MAX_DELIVERY_MS / 1_000
                ),
            ));
        }
        for (h, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(fail("headers", format!("`{h}` is not a header name")));
            }
            if v.strip_prefix("env:").is_some_and(|n| n.trim().is_empty()) {
                return Err(fail(
                    "headers",
                    format!("`{h}` = \"env:\" names no variable"),
                ));
            }
        }
        Ok(NotifierConfig {
            name: name.to_string(),
            url,
            format: self.format,
            topics: self.topics,
            risk_decisions,
            policy,
            headers: self.headers,
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, Topology};

    const BASE: &str = r#"
[topics.price-alerts]
schema = "PriceAlert"
[topics.risk-decisions]
schema = "RiskDecision"
[topics.asset-prices]
schema = "AssetPrice"
"#;

    fn parse(notifier: &str) -> Result<Topology, crate::config::ConfigError> {
        Topology::parse(
            &format!("{BASE}\n[notifiers.desk]\n{notifier}\n"),
            "t.toml",
            &Overrides::default(),
        )
    }

    #[test]
    fn defaults_and_dead_letter_topics() {
        let t = parse(
            "url = \"http://127.0.0.1:9/hook\"\ntopics = [\"price-alerts\", \"risk-decisions\"]",
        )
        .unwrap();
        let n = &t.notifiers["desk"];
        assert_eq!(n.url, WebhookUrl::Literal("http://127.0.0.1:9/hook".into()));
        assert_eq!(n.format, Format::Json);
        assert_eq!(n.risk_decisions, vec![Decision::Reject]);
        assert_eq!(
            n.policy,
            RetryPolicy {
                timeout: 5_000,
                retries: 5,
                backoff: 200,
                max_backoff: 10_000
            }
        );
        assert_eq!(n.engine_name(), "notifier-desk");
        let names: Vec<_> = t.all_topics().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"price-alerts.notify-dlq".to_string()));
        assert!(names.contains(&"risk-decisions.notify-dlq".to_string()));
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let cases = [
            (
                "topics = [\"price-alerts\"]",
                "notifiers.desk.url",
                "missing",
            ),
            (
                "url = \"ftp://x\"\ntopics = [\"price-alerts\"]",
                "notifiers.desk.url",
                "http://",
            ),
            (
                "url = \"http://x\"\ntopics = [\"asset-prices\"]",
                "notifiers.desk.topics",
                "AssetPrice",
            ),
            (
                "url = \"http://x\"\ntopics = [\"nope\"]",
                "notifiers.desk.topics",
                "not declared",
            ),
            (
                "url = \"http://x\"\ntopics = [\"risk-decisions\"]\nrisk_decisions = [\"DENY\"]",
                "notifiers.desk.risk_decisions",
                "DENY",
            ),
            (
                "url = \"http://x\"\ntopics = [\"price-alerts\"]\nretries = 100",
                "notifiers.desk.retries",
                "at most 240 s",
            ),
            (
                "url = \"http://x\"\ntopics = [\"price-alerts\"]\nformat = \"xml\"",
                "notifiers.desk.format",
                "xml",
            ),
            (
                "url = \"http://x\"\ntopics = [\"price-alerts\"]\ntimeot = \"1s\"",
                "notifiers.desk.timeot",
                "timeot",
            ),
        ];
        for (text, key, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.line.is_some_and(|l| l >= 8), "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
    }
}
