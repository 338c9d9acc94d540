//! The external document validator of risk scoring: HTTP calls with a per-call timeout,
//! bounded retries with jittered backoff, a circuit breaker and a verdict cache, all under one
//! deadline per transaction. The decisions about *whether* and *how long* come from the pure
//! primitives in `fluxo_processors::risk::resilience`; this module only does the I/O.
//!
//! # Protocol
//! `GET {url}/documents/{digits}` answers `200 {"flagged": false}` or
//! `200 {"flagged": true, "reason": "..."}`; any other status, a timeout or a transport error is
//! a failure. The document travels in the path of an internal call; it is never logged, and
//! neither is the URL.
//!
//! # Tracing
//! With tracing on, every attempt (the first call and each retry) is a `GET /documents/{document}`
//! client span under the `process` span of the transaction that asked for the document, and
//! sends its `traceparent`.

use crate::metrics;
use crate::telemetry::client::{ClientSpan, Target};
use fluxo_processors::risk::resilience::{CircuitBreaker, Deadline, TtlCache, UnavailableCause};
use fluxo_processors::risk::{ExternalConfig, ExternalVerdict};
use fluxo_processors::Millis;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the breaker and the cache share between concurrent validations.
struct Shared {
    breaker: CircuitBreaker,
    cache: TtlCache<String, ExternalVerdict>,
}

/// A validator client; cheap to clone.
#[derive(Clone)]
pub struct Validator {
    client: reqwest::Client,
    base: String,
    config: ExternalConfig,
    shared: Arc<Mutex<Shared>>,
    /// The call as recorded on client spans.
    target: Arc<Target>,
}

#[derive(serde::Deserialize)]
struct Answer {
    flagged: bool,
    #[serde(default)]
    reason: Option<String>,
}

fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Validator {
    /// A client for `config.external`, or `None` when no URL is configured.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: &ExternalConfig) -> anyhow::Result<Option<Self>> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?;
        let parsed = reqwest::Url::parse(url).ok();
        let target = Target {
            method: "GET",
            template: "/documents/{document}",
            server: parsed
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default(),
            port: parsed
                .as_ref()
                .and_then(reqwest::Url::port_or_known_default),
        };
        Ok(Some(Self {
            target: Arc::new(target),
            client,
            base: url.trim_end_matches('/').to_string(),
            config: config.clone(),
            shared: Arc::new(Mutex::new(Shared {
                breaker: config.breaker(),
                cache: config.cache(),
            })),
        }))
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Verdicts for `documents` (normalized digits), all under one deadline: the budget counts
    /// from `event_time`, the earliest arrival in Kafka of the batch's transactions (see
    /// `fluxo_processors::risk::arrival`), so a decision leaves within the SLA even when the
    /// batch waited; a transaction seen late still gets half the budget. Each
    /// document comes with the trace context its calls belong to (`None` when not traced).
    pub async fn validate_all(
        &self,
        documents: Vec<(String, Option<opentelemetry::Context>)>,
        event_time: Millis,
    ) -> HashMap<String, ExternalVerdict> {
        let now = now_millis();
        let budget = self.config.budget.millis();
        let start = event_time.clamp(now - budget / 2, now);
        let deadline = self.config.deadline(start);
        let calls = documents.into_iter().map(|(d, trace)| {
            let this = self.clone();
            async move {
                let v = this.validate(&d, deadline, trace.as_ref()).await;
                (d, v)
            }
        });
        let out: HashMap<_, _> = futures::future::join_all(calls).await.into_iter().collect();
        let state = self.shared().breaker.state_at(now_millis());
        metrics::VALIDATOR_BREAKER_STATE.set(state.gauge());
        out
    }

    /// The verdict for one document under `deadline`; its calls are traced under `trace`.
    pub async fn validate(
        &self,
        digits: &str,
        deadline: Deadline,
        trace: Option<&opentelemetry::Context>,
    ) -> ExternalVerdict {
        if let Some(v) = self.shared().cache.get(&digits.to_string(), now_millis()) {
            metrics::VALIDATOR_CALLS
                .with_label_values(&["cache_hit"])
                .inc();
            return v.clone();
        }
        let mut plan = self.config.call_plan(deadline);
        let mut attempt = 0u32;
        loop {
            let begun = {
                let mut s = self.shared();
                plan.begin_call(now_millis(), &mut s.breaker)
            };
            let timeout = match begun {
                Ok(t) => t,
                Err(cause) => return self.unavailable(cause),
            };
            let url = format!("{}/documents/{digits}", self.base);
            let span = ClientSpan::start(trace, &self.target, attempt);
            attempt += 1;
            let mut request = self.client.get(url);
            if let Some(span) = &span {
                for (k, v) in span.headers() {
                    request = request.header(k, v);
                }
            }
            let call = request.send();
            let outcome =
                match tokio::time::timeout(Duration::from_millis(timeout as u64), call).await {
                    Err(_) => Err(UnavailableCause::Timeout),
                    Ok(Err(_)) => Err(UnavailableCause::Transport),
                    Ok(Ok(resp)) if !resp.status().is_success() => {
                        Err(UnavailableCause::HttpStatus(resp.status().as_u16()))
                    }
                    Ok(Ok(resp)) => {
                        if let Some(span) = &span {
                            span.status(resp.status().as_u16());
                        }
                        match resp.json::<Answer>().await {
                            Ok(a) if a.flagged => Ok(ExternalVerdict::Flagged {
                                reason: a
                                    .reason
                                    .unwrap_or_else(|| "flagged by the validator".into()),
                            }),
                            Ok(_) => Ok(ExternalVerdict::Clean),
                            Err(_) => Err(UnavailableCause::Transport),
                        }
                    }
                };
            if let Some(span) = &span {
                match &outcome {
                    Ok(_) => {}
                    Err(UnavailableCause::HttpStatus(code)) => span.status(*code),
                    Err(cause) => span.failed(&cause.label()),
                }
            }
            drop(span);
            match outcome {
                Ok(verdict) => {
                    metrics::VALIDATOR_CALLS.with_label_values(&["ok"]).inc();
                    let mut s = self.shared();
                    plan.on_success(now_millis(), &mut s.breaker);
                    s.cache
                        .insert(digits.to_string(), verdict.clone(), now_millis());
                    return verdict;
                }
                Err(cause) => {
                    metrics::VALIDATOR_CALLS
                        .with_label_values(&[&cause.label()])
                        .inc();
                    let next = {
                        let mut s = self.shared();
                        plan.on_failure(now_millis(), &mut s.breaker, cause, rand::random::<f64>())
                    };
                    match next {
                        Ok(delay) => tokio::time::sleep(Duration::from_millis(delay as u64)).await,
                        Err(cause) => return self.unavailable(cause),
                    }
                }
            }
        }
    }

    fn unavailable(&self, cause: UnavailableCause) -> ExternalVerdict {
        metrics::VALIDATOR_UNAVAILABLE
            .with_label_values(&[&cause.label()])
            .inc();
        ExternalVerdict::Unavailable(cause)
    }

    /// The breaker's state now (for tests and the dashboard).
    pub fn breaker_state(&self) -> fluxo_processors::risk::resilience::BreakerState {
        self.shared().breaker.state_at(now_millis())
    }
}
