//! The notifier as an engine [`Job`]: decode an output event, keep it if the notifier wants it,
//! POST it, retry with backoff, dead-letter it when the webhook keeps failing.
//!
//! The engine calls [`Job::process`] once per record in offset order and checkpoints the next
//! offset only after `process` returned, so a record's offset advances only once it was
//! delivered or dead-lettered (at-least-once; receivers dedupe on the `Idempotency-Key`).

use super::config::{NotifierConfig, WebhookUrl};
use crate::codec::Codec;
use crate::config::Topology;
use crate::engine::ID_HEADER;
use crate::jobs::{DeadLetter, Job, JobError, Output, RawRecord};
use crate::metrics;
use fluxo_processors::events::{BelowAverageEvent, PriceAlert, RiskDecision};
use fluxo_processors::notify::{classify, render, Envelope, Notification, Verdict};
use fluxo_processors::{StateReader, StateWriter};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Request header carrying the record's `fluxo-id`, the same on every retry and replay.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Dead-letter reason: the webhook kept failing (5xx, 408, 429, timeout, connection) through
/// every retry.
pub const REASON_FAILED: &str = "webhook_failed";
/// Dead-letter reason: the webhook refused the payload (a 4xx other than 408/425/429).
pub const REASON_REJECTED: &str = "webhook_rejected";

/// The event kind a topic holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PriceAlert,
    BelowAverage,
    RiskDecision,
}

/// One notifier's job.
pub struct NotifierJob {
    config: NotifierConfig,
    url: String,
    headers: HeaderMap,
    client: reqwest::Client,
    codec: Codec,
    kinds: BTreeMap<String, Kind>,
    shutdown: Arc<AtomicBool>,
}

/// How one attempt went.
enum Attempt {
    Delivered,
    Retry { what: String, after: Option<u64> },
    Permanent(String),
}

impl NotifierJob {
    /// The job of `config`; `shutdown` cuts retries short when the process stops (the record is
    /// then delivered again after the restart).
    ///
    /// # Errors
    /// When `url_env` or an `env:` header names an unset variable, a header value is invalid,
    /// or the HTTP client cannot be built.
    pub fn new(
        config: NotifierConfig,
        codec: Codec,
        topology: &Topology,
        shutdown: Arc<AtomicBool>,
    ) -> anyhow::Result<Self> {
        let key = |k: &str| format!("notifiers.{}.{k}", config.name);
        let env = |var: &str, k: &str| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| anyhow::anyhow!("{}: environment variable {var} is not set", key(k)))
        };
        let url = match &config.url {
            WebhookUrl::Literal(u) => u.clone(),
            WebhookUrl::Env(var) => env(var, "url_env")?,
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &config.headers {
            let value = match value.strip_prefix("env:") {
                Some(var) => env(var.trim(), "headers")?,
                None => value.clone(),
            };
            let mut v = HeaderValue::from_str(&value).map_err(|_| {
                anyhow::anyhow!(
                    "{}: the value of `{name}` is not a header value",
                    key("headers")
                )
            })?;
            v.set_sensitive(true);
            headers.insert(HeaderName::from_bytes(name.as_bytes())?, v);
        }
        let kinds = config
            .topics
            .iter()
            .filter_map(|t| {
                let kind = match topology.topics.get(t)?.schema.as_str() {
                    "PriceAlert" => Kind::PriceAlert,
                    "BelowAverageEvent" => Kind::BelowAverage,
                    "RiskDecision" => Kind::RiskDecision,
                    _ => return None,
                };
                Some((t.clone(), kind))
            })
            .collect();
        let client = reqwest::Client::builder()
            .user_agent(concat!("fluxo-notifier/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(config.policy.timeout as u64))
            .build()?;
        Ok(Self {
            config,
            url,
            headers,
            client,
            codec,
            kinds,
            shutdown,
        })
    }

    /// The event of `rec`, or `None` when this notifier does not deliver it.
    fn notification(&mut self, rec: &RawRecord<'_>) -> Result<Option<Notification>, JobError> {
        let Some(kind) = self.kinds.get(rec.topic).copied() else {
            return Ok(None);
        };
        if rec.payload.is_none() {
            return Ok(None);
        }
        Ok(match kind {
            Kind::PriceAlert => Some(Notification::PriceAlert(
                self.codec.decode::<PriceAlert>(rec.payload)?,
            )),
            Kind::BelowAverage => Some(Notification::BelowAverage(
                self.codec.decode::<BelowAverageEvent>(rec.payload)?,
            )),
            Kind::RiskDecision => {
                let d: RiskDecision = self.codec.decode(rec.payload)?;
                self.config
                    .risk_decisions
                    .contains(&d.decision)
                    .then_some(Notification::RiskDecision(d))
            }
        })
    }

    /// One POST.
    fn attempt(&self, body: &[u8], key: &str) -> Attempt {
        let request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(IDEMPOTENCY_HEADER, key)
            .timeout(Duration::from_millis(self.config.policy.timeout as u64))
            .body(body.to_vec());
        // `send` arms the timeout timer, so it must run on the runtime.
        let answer = self.codec.handle().block_on(async move {
            let response = request.send().await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
            // Read the body so the connection can be reused.
            let _ = response.bytes().await;
            Ok::<_, reqwest::Error>((status, retry_after))
        });
        match answer {
            Ok((status, retry_after)) => match classify(status.as_u16()) {
                Verdict::Delivered => Attempt::Delivered,
                Verdict::Retry => Attempt::Retry {
                    what: format!("HTTP {}", status.as_u16()),
                    after: retry_after,
                },
                Verdict::Permanent => Attempt::Permanent(format!("HTTP {}", status.as_u16())),
            },
            // The URL can hold a secret (Slack webhook URLs do): never in a message.
            Err(e) if e.is_timeout() => Attempt::Retry {
                what: format!("timeout after {} ms", self.config.policy.timeout),
                after: None,
            },
            Err(e) => Attempt::Retry {
                what: format!("transport error: {}", e.without_url()),
                after: None,
            },
        }
    }

    /// Sleep `ms`, waking early when the process stops; false when it does.
    fn pause(&self, ms: u64) -> bool {
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            if self.shutdown.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        !self.shutdown.load(Ordering::SeqCst)
    }

    /// POST until delivered, refused, or out of retries.
    fn deliver(&self, body: &[u8], key: &str) -> Result<(), JobError> {
        let name = self.config.name.as_str();
        let policy = self.config.policy;
        let started = Instant::now();
        let done = |outcome: &str| {
            metrics::NOTIFIER_DELIVERIES
                .with_label_values(&[name, outcome])
                .inc();
            metrics::NOTIFIER_DELIVERY_SECONDS
                .with_label_values(&[name, outcome])
                .observe(started.elapsed().as_secs_f64());
        };
        let mut retry = 0;
        loop {
            match self.attempt(body, key) {
                Attempt::Delivered => {
                    done("delivered");
                    return Ok(());
                }
                Attempt::Permanent(what) => {
                    done("rejected");
                    tracing::warn!(notifier = name, id = key, answer = %what, "webhook refused a notification; dead-lettered");
                    return Err(JobError::Dead(DeadLetter {
                        reason: REASON_REJECTED.into(),
                        detail: format!("the webhook answered {what}"),
                    }));
                }
                Attempt::Retry { what, .. } if retry >= policy.retries => {
                    done("failed");
                    tracing::warn!(notifier = name, id = key, last = %what, "webhook delivery failed after every retry; dead-lettered");
                    return Err(JobError::Dead(DeadLetter {
                        reason: REASON_FAILED.into(),
                        detail: format!("{} attempts, the last: {what}", retry + 1),
                    }));
                }
                Attempt::Retry { what, after } => {
                    let backoff = policy.delay(retry, rand::random::<f64>());
                    // Honour Retry-After (seconds), within the configured cap.
                    let wait = after
                        .map(|s| (s.saturating_mul(1_000) as i64).min(policy.max_backoff))
                        .unwrap_or(0)
                        .max(backoff);
                    tracing::debug!(notifier = name, id = key, answer = %what, retry, wait_ms = wait, "webhook attempt failed; retrying");
                    if !self.pause(wait.max(0) as u64) {
                        return Err(JobError::Retry(
                            "stopping: delivery not finished, it is retried after the restart"
                                .into(),
                        ));
                    }
                    retry += 1;
                    metrics::NOTIFIER_RETRIES.with_label_values(&[name]).inc();
                }
            }
        }
    }
}

/// The idempotency key of `rec`: its `fluxo-id` header, or its position when it has none.
fn idempotency_key(rec: &RawRecord<'_>) -> String {
    rec.headers
        .iter()
        .flatten()
        .find(|(k, _)| *k == ID_HEADER)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}/{}/{}", rec.topic, rec.partition, rec.offset))
}

impl Job for NotifierJob {
    fn process(
        &mut self,
        rec: &RawRecord<'_>,
        _processing_time: i64,
        _state: &dyn StateReader,
        _out: &mut Vec<Output>,
    ) -> Result<(), JobError> {
        let Some(n) = self.notification(rec)? else {
            metrics::NOTIFIER_DELIVERIES
                .with_label_values(&[&self.config.name, "skipped"])
                .inc();
            return Ok(());
        };
        let key = idempotency_key(rec);
        let body = render(
            self.config.format,
            &n,
            &Envelope {
                notifier: &self.config.name,
                idempotency_key: &key,
                topic: rec.topic,
                partition: rec.partition,
                offset: rec.offset,
            },
        );
        let body = serde_json::to_vec(&body).map_err(|e| JobError::Retry(e.to_string()))?;
        self.deliver(&body, &key)
    }

    fn flush(&mut self, _changes: &mut dyn StateWriter) {}

    fn reset(&mut self) {}

    fn dead_letter_topic(&self, source_topic: &str) -> String {
        Topology::notify_dlq_topic(source_topic)
    }
}
