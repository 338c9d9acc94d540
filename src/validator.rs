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

use crate::metrics;
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
        Ok(Some(Self {
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
    /// from `event_time` (the oldest transaction of the batch), so a decision leaves within the
    /// SLA even when the batch waited; a transaction seen late still gets half the budget.
    pub async fn validate_all(
        &self,
        documents: Vec<String>,
        event_time: Millis,
    ) -> HashMap<String, ExternalVerdict> {
        let now = now_millis();
        let budget = self.config.budget.millis();
        let start = event_time.clamp(now - budget / 2, now);
        let deadline = self.config.deadline(start);
        let calls = documents.into_iter().map(|d| {
            let this = self.clone();
            async move {
                let v = this.validate(&d, deadline).await;
                (d, v)
            }
        });
        let out: HashMap<_, _> = futures::future::join_all(calls).await.into_iter().collect();
        let state = self.shared().breaker.state_at(now_millis());
        metrics::VALIDATOR_BREAKER_STATE.set(state.gauge());
        out
    }

    /// The verdict for one document under `deadline`.
    pub async fn validate(&self, digits: &str, deadline: Deadline) -> ExternalVerdict {
        if let Some(v) = self.shared().cache.get(&digits.to_string(), now_millis()) {
            metrics::VALIDATOR_CALLS
                .with_label_values(&["cache_hit"])
                .inc();
            return v.clone();
        }
        let mut plan = self.config.call_plan(deadline);
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
            let call = self.client.get(url).send();
            let outcome =
                match tokio::time::timeout(Duration::from_millis(timeout as u64), call).await {
                    Err(_) => Err(UnavailableCause::Timeout),
                    Ok(Err(_)) => Err(UnavailableCause::Transport),
                    Ok(Ok(resp)) if !resp.status().is_success() => {
                        Err(UnavailableCause::HttpStatus(resp.status().as_u16()))
                    }
                    Ok(Ok(resp)) => match resp.json::<Answer>().await {
                        Ok(a) if a.flagged => Ok(ExternalVerdict::Flagged {
                            reason: a
                                .reason
                                .unwrap_or_else(|| "flagged by the validator".into()),
                        }),
                        Ok(_) => Ok(ExternalVerdict::Clean),
                        Err(_) => Err(UnavailableCause::Transport),
                    },
                };
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
