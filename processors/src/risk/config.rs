//! Configuration of the risk-scoring processor, read from topology.toml's
//! `[processors.risk-scoring.params]` table (nested tables for the rules and the external
//! validator).
//!
//! ```toml
//! [processors.risk-scoring.params]
//! review_threshold = 400          # score >= this -> REVIEW
//! reject_threshold = 700          # score >= this -> REJECT
//! time_zone = "America/Sao_Paulo" # for the night rule
//! max_cached_keys = 100000        # per in-memory table (payers, blacklist)
//! sla = "2s"
//!
//! [processors.risk-scoring.params.dedup]  # duplicates of a transaction id, per valid payer
//! window = "24h"                  # event time; a duplicate older than this is scored again
//! max_ids = 1000                  # ids remembered per payer
//!
//! [processors.risk-scoring.params.rules.amount_ratio]
//! weight = 250
//! min_history = 5
//! ratio = "5"            # amount / payer's average >= 5
//!
//! [processors.risk-scoring.params.rules.amount_zscore]
//! weight = 200
//! min_history = 5
//! zscore = "3"           # (amount - average) / std-dev >= 3
//!
//! [processors.risk-scoring.params.rules.velocity_10m]
//! window = "10m"
//! count = 10             # this payer's transactions in the window, this one included
//! count_weight = 150
//! sum = "10000.00"       # BRL in the window, this one included
//! sum_weight = 200
//!
//! [processors.risk-scoring.params.rules.velocity_1h]
//! window = "1h"
//! count = 30
//! count_weight = 150
//! sum = "50000.00"
//! sum_weight = 200
//! max_events = 1000      # per payer, bound of the velocity history
//!
//! [processors.risk-scoring.params.rules.new_payee]
//! weight = 200
//! min_history = 3
//! amount = "5000.00"
//! max_known_payees = 1000
//!
//! [processors.risk-scoring.params.rules.night]
//! weight = 150
//! start_hour = 22
//! end_hour = 6
//! amount = "1000.00"
//!
//! [processors.risk-scoring.params.external]
//! url = "http://validator:8080/v1/documents"   # absent = not configured
//! timeout = "300ms"
//! budget = "1s"
//! max_retries = 2
//! backoff_base = "50ms"
//! backoff_max = "400ms"
//! jitter = "full"
//! failure_threshold = 5
//! open_for = "30s"
//! half_open_probes = 1
//! cache_ttl = "10m"
//! cache_capacity = 100000
//! flagged_weight = 500
//! flagged_rejects = false
//! ```
//!
//! Every threshold compares with `>=`: a rule fires when its value reaches the threshold.
//! A weight of 0 disables a check (it never appears in the reasons).

use super::resilience::{
    BreakerConfig, CallPlan, CircuitBreaker, Deadline, Jitter, RetryPolicy, TtlCache,
};
use crate::config::{ConfigDecimal, DurationMs};
use crate::Millis;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::hash::Hash;

/// Highest score, and the contribution of a hard rule (invalid document, blacklist).
pub const MAX_SCORE: i32 = 1000;

/// Parameters of the risk-scoring processor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Score from which a transaction goes to REVIEW (default 400).
    pub review_threshold: i32,
    /// Score from which a transaction is REJECTed (default 700).
    pub reject_threshold: i32,
    /// IANA time zone of the night rule (default `America/Sao_Paulo`).
    pub time_zone: String,
    /// Entries kept in memory per table (payers, blacklist) after a flush; beyond it the least
    /// recently used clean entries are dropped down to three quarters of it (default 100 000).
    pub max_cached_keys: usize,
    /// The per-transaction SLA (default 2 s); `external.budget` must fit inside it.
    pub sla: DurationMs,
    /// Behaviour rules.
    pub rules: RulesConfig,
    /// The optional external validator.
    pub external: ExternalConfig,
    /// Dropping duplicate transaction ids.
    pub dedup: DedupConfig,
}

/// Which transaction ids are remembered to drop duplicates (per valid payer, in its state).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// How long (event time) an id is remembered (default 24 h).
    pub window: DurationMs,
    /// Most ids remembered per payer (default 1000); 0 turns dropping duplicates off.
    pub max_ids: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            window: DurationMs(24 * 3_600_000),
            max_ids: 1000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            review_threshold: 400,
            reject_threshold: 700,
            time_zone: "America/Sao_Paulo".into(),
            max_cached_keys: 100_000,
            sla: DurationMs(2_000),
            rules: RulesConfig::default(),
            external: ExternalConfig::default(),
            dedup: DedupConfig::default(),
        }
    }
}

/// The behaviour rules.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Amount against the payer's average.
    pub amount_ratio: AmountRatioRule,
    /// Amount against the payer's distribution (z-score).
    pub amount_zscore: AmountZscoreRule,
    /// Short velocity window (rule ids `velocity_count_10m`, `velocity_sum_10m`).
    pub velocity_10m: VelocityRule,
    /// Long velocity window (rule ids `velocity_count_1h`, `velocity_sum_1h`) and the bound of
    /// the per-payer history.
    pub velocity_1h: VelocityLongRule,
    /// High amount to a payee this payer never paid.
    pub new_payee: NewPayeeRule,
    /// High amount at night, local time.
    pub night: NightRule,
}

/// Rule `amount_ratio`: amount / payer's average amount >= `ratio`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmountRatioRule {
    /// Points added when it fires (0 disables).
    pub weight: i32,
    /// Past transactions of the payer needed before it can fire.
    pub min_history: u64,
    /// Ratio threshold (> 1).
    pub ratio: ConfigDecimal,
}

impl Default for AmountRatioRule {
    fn default() -> Self {
        Self {
            weight: 250,
            min_history: 5,
            ratio: ConfigDecimal(Decimal::from(5)),
        }
    }
}

/// Rule `amount_zscore`: (amount - average) / sample standard deviation >= `zscore`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmountZscoreRule {
    /// Points added when it fires (0 disables).
    pub weight: i32,
    /// Past transactions of the payer needed before it can fire (at least 2).
    pub min_history: u64,
    /// Z-score threshold (> 0).
    pub zscore: ConfigDecimal,
}

impl Default for AmountZscoreRule {
    fn default() -> Self {
        Self {
            weight: 200,
            min_history: 5,
            zscore: ConfigDecimal(Decimal::from(3)),
        }
    }
}

/// Velocity over a trailing event-time window: count and sum of the payer's transactions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VelocityRule {
    /// Window length (default 10 min).
    pub window: DurationMs,
    /// Count threshold, this transaction included.
    pub count: u32,
    /// Points when the count threshold is reached (0 disables).
    pub count_weight: i32,
    /// Sum threshold in BRL, this transaction included.
    pub sum: ConfigDecimal,
    /// Points when the sum threshold is reached (0 disables).
    pub sum_weight: i32,
}

impl Default for VelocityRule {
    fn default() -> Self {
        Self {
            window: DurationMs(600_000),
            count: 10,
            count_weight: 150,
            sum: ConfigDecimal(Decimal::new(1_000_000, 2)),
            sum_weight: 200,
        }
    }
}

/// The long velocity window, plus the bound of the per-payer history both windows read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VelocityLongRule {
    /// Window length (default 1 h).
    pub window: DurationMs,
    /// Count threshold, this transaction included.
    pub count: u32,
    /// Points when the count threshold is reached (0 disables).
    pub count_weight: i32,
    /// Sum threshold in BRL, this transaction included.
    pub sum: ConfigDecimal,
    /// Points when the sum threshold is reached (0 disables).
    pub sum_weight: i32,
    /// Most transactions remembered per payer for velocity (oldest dropped first); counts
    /// saturate at this value, so it must be at least both count thresholds.
    pub max_events: u32,
}

impl Default for VelocityLongRule {
    fn default() -> Self {
        Self {
            window: DurationMs(3_600_000),
            count: 30,
            count_weight: 150,
            sum: ConfigDecimal(Decimal::new(5_000_000, 2)),
            sum_weight: 200,
            max_events: 1_000,
        }
    }
}

/// Rule `new_payee`: amount >= `amount` to a payee not among the payer's known payees.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewPayeeRule {
    /// Points added when it fires (0 disables).
    pub weight: i32,
    /// Past transactions of the payer needed before it can fire (a new payer's payees are all
    /// new).
    pub min_history: u64,
    /// Amount threshold in BRL.
    pub amount: ConfigDecimal,
    /// Payees remembered per payer (most recently paid kept).
    pub max_known_payees: u32,
}

impl Default for NewPayeeRule {
    fn default() -> Self {
        Self {
            weight: 200,
            min_history: 3,
            amount: ConfigDecimal(Decimal::new(500_000, 2)),
            max_known_payees: 1_000,
        }
    }
}

/// Rule `night_amount`: amount >= `amount` with the local hour in `start_hour..end_hour`
/// (wrapping midnight when `start_hour > end_hour`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NightRule {
    /// Points added when it fires (0 disables).
    pub weight: i32,
    /// First night hour, 0..=23 (inclusive).
    pub start_hour: u32,
    /// First day hour, 0..=23 (exclusive end of the night).
    pub end_hour: u32,
    /// Amount threshold in BRL.
    pub amount: ConfigDecimal,
}

impl Default for NightRule {
    fn default() -> Self {
        Self {
            weight: 150,
            start_hour: 22,
            end_hour: 6,
            amount: ConfigDecimal(Decimal::new(100_000, 2)),
        }
    }
}

/// The external validator: how the processor weighs its verdicts, and how the runtime calls it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalConfig {
    /// Base URL; `None` (the default) means not configured.
    pub url: Option<String>,
    /// Timeout of one call (default 300 ms).
    pub timeout: DurationMs,
    /// Time budget for all calls and retries of one transaction (default 1 s; below `sla`).
    pub budget: DurationMs,
    /// Retries after the first call (default 2).
    pub max_retries: u32,
    /// Backoff base (default 50 ms).
    pub backoff_base: DurationMs,
    /// Backoff ceiling (default 400 ms).
    pub backoff_max: DurationMs,
    /// `full` (default), `equal` or `none`.
    pub jitter: Jitter,
    /// Consecutive failures that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long the breaker stays open (default 30 s).
    pub open_for: DurationMs,
    /// Probes allowed while half-open (default 1).
    pub half_open_probes: u32,
    /// How long a Clean or Flagged verdict is cached (default 10 min).
    pub cache_ttl: DurationMs,
    /// Verdicts cached at most (default 100 000).
    pub cache_capacity: usize,
    /// Points when the validator flags a document (default 500; rule ids `external_payer`,
    /// `external_payee`).
    pub flagged_weight: i32,
    /// A flag is a hard REJECT (score 1000) instead of `flagged_weight` (default false).
    pub flagged_rejects: bool,
}

impl Default for ExternalConfig {
    fn default() -> Self {
        Self {
            url: None,
            timeout: DurationMs(300),
            budget: DurationMs(1_000),
            max_retries: 2,
            backoff_base: DurationMs(50),
            backoff_max: DurationMs(400),
            jitter: Jitter::Full,
            failure_threshold: 5,
            open_for: DurationMs(30_000),
            half_open_probes: 1,
            cache_ttl: DurationMs(600_000),
            cache_capacity: 100_000,
            flagged_weight: 500,
            flagged_rejects: false,
        }
    }
}

/// Smallest call timeout [`ExternalConfig::call_plan`] starts a call with.
pub const MIN_CALL_TIMEOUT_MS: Millis = 10;

impl ExternalConfig {
    /// Whether a URL is configured.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// A closed circuit breaker with these settings (one per instance).
    pub fn breaker(&self) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: self.failure_threshold,
            open_for: self.open_for.millis(),
            half_open_probes: self.half_open_probes,
        })
    }

    /// The retry policy of one validation.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            call_timeout: self.timeout.millis(),
            max_retries: self.max_retries,
            backoff_base: self.backoff_base.millis(),
            backoff_max: self.backoff_max.millis(),
            jitter: self.jitter,
            min_call_timeout: MIN_CALL_TIMEOUT_MS,
        }
    }

    /// The deadline of a transaction whose validation starts at `start` (wall clock).
    pub fn deadline(&self, start: Millis) -> Deadline {
        Deadline::starting(start, self.budget.millis())
    }

    /// A fresh call plan for one document of a transaction, under the transaction's deadline.
    pub fn call_plan(&self, deadline: Deadline) -> CallPlan {
        CallPlan::new(self.retry_policy(), deadline)
    }

    /// An empty verdict cache with these settings (one per instance).
    pub fn cache<K: Eq + Hash + Clone, V>(&self) -> TtlCache<K, V> {
        TtlCache::new(self.cache_capacity, self.cache_ttl.millis())
    }
}

fn check_weight(key: &str, weight: i32) -> Result<(), String> {
    if (0..=MAX_SCORE).contains(&weight) {
        Ok(())
    } else {
        Err(format!("`{key}` must be within 0..=1000, got {weight}"))
    }
}

fn check_positive_decimal(key: &str, value: ConfigDecimal) -> Result<(), String> {
    if value.0 > Decimal::ZERO {
        Ok(())
    } else {
        Err(format!("`{key}` must be greater than 0, got {}", value.0))
    }
}

fn check_positive_duration(key: &str, value: DurationMs) -> Result<(), String> {
    if value.0 > 0 {
        Ok(())
    } else {
        Err(format!("`{key}` must be longer than 0ms"))
    }
}

impl Config {
    /// Check every parameter; the message names the offending key (`rules.night.start_hour`).
    ///
    /// # Errors
    /// A message naming the first bad key and why.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_SCORE).contains(&self.review_threshold) {
            return Err(format!(
                "`review_threshold` must be within 1..=1000, got {}",
                self.review_threshold
            ));
        }
        if !(1..=MAX_SCORE).contains(&self.reject_threshold) {
            return Err(format!(
                "`reject_threshold` must be within 1..=1000, got {}",
                self.reject_threshold
            ));
        }
        if self.reject_threshold < self.review_threshold {
            return Err(format!(
                "`reject_threshold` ({}) must not be below `review_threshold` ({})",
                self.reject_threshold, self.review_threshold
            ));
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(format!(
                "`time_zone` `{}` is not an IANA time zone name",
                self.time_zone
            ));
        }
        if self.max_cached_keys == 0 {
            return Err("`max_cached_keys` must be at least 1".into());
        }
        check_positive_duration("sla", self.sla)?;

        let r = &self.rules;
        check_weight("rules.amount_ratio.weight", r.amount_ratio.weight)?;
        if r.amount_ratio.ratio.0 <= Decimal::ONE {
            return Err(format!(
                "`rules.amount_ratio.ratio` must be greater than 1, got {}",
                r.amount_ratio.ratio.0
            ));
        }
        if r.amount_ratio.min_history == 0 {
            return Err("`rules.amount_ratio.min_history` must be at least 1".into());
        }
        check_weight("rules.amount_zscore.weight", r.amount_zscore.weight)?;
        check_positive_decimal("rules.amount_zscore.zscore", r.amount_zscore.zscore)?;
        if r.amount_zscore.min_history < 2 {
            return Err("`rules.amount_zscore.min_history` must be at least 2".into());
        }

        let short = &r.velocity_10m;
        let long = &r.velocity_1h;
        check_positive_duration("rules.velocity_10m.window", short.window)?;
        check_positive_duration("rules.velocity_1h.window", long.window)?;
        check_weight("rules.velocity_10m.count_weight", short.count_weight)?;
        check_weight("rules.velocity_10m.sum_weight", short.sum_weight)?;
        check_weight("rules.velocity_1h.count_weight", long.count_weight)?;
        check_weight("rules.velocity_1h.sum_weight", long.sum_weight)?;
        check_positive_decimal("rules.velocity_10m.sum", short.sum)?;
        check_positive_decimal("rules.velocity_1h.sum", long.sum)?;
        if long.max_events == 0 {
            return Err("`rules.velocity_1h.max_events` must be at least 1".into());
        }
        for (key, count) in [
            ("rules.velocity_10m.count", short.count),
            ("rules.velocity_1h.count", long.count),
        ] {
            if count == 0 {
                return Err(format!("`{key}` must be at least 1"));
            }
            if count > long.max_events {
                return Err(format!(
                    "`{key}` ({count}) must not exceed `rules.velocity_1h.max_events` ({})",
                    long.max_events
                ));
            }
        }

        check_weight("rules.new_payee.weight", r.new_payee.weight)?;
        check_positive_decimal("rules.new_payee.amount", r.new_payee.amount)?;
        if r.new_payee.max_known_payees == 0 {
            return Err("`rules.new_payee.max_known_payees` must be at least 1".into());
        }

        check_weight("rules.night.weight", r.night.weight)?;
        check_positive_decimal("rules.night.amount", r.night.amount)?;
        for (key, hour) in [
            ("rules.night.start_hour", r.night.start_hour),
            ("rules.night.end_hour", r.night.end_hour),
        ] {
            if hour > 23 {
                return Err(format!("`{key}` must be within 0..=23, got {hour}"));
            }
        }
        if r.night.start_hour == r.night.end_hour {
            return Err("`rules.night.end_hour` must differ from `rules.night.start_hour`".into());
        }

        let e = &self.external;
        if let Some(url) = &e.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err("`external.url` must start with http:// or https://".into());
            }
        }
        check_positive_duration("external.timeout", e.timeout)?;
        check_positive_duration("external.budget", e.budget)?;
        if e.timeout.0 < MIN_CALL_TIMEOUT_MS {
            return Err(format!(
                "`external.timeout` must be at least {MIN_CALL_TIMEOUT_MS}ms"
            ));
        }
        if e.budget.0 >= self.sla.0 {
            return Err(format!(
                "`external.budget` ({}) must be shorter than `sla` ({})",
                e.budget, self.sla
            ));
        }
        if e.backoff_max.0 < e.backoff_base.0 {
            return Err("`external.backoff_max` must not be below `external.backoff_base`".into());
        }
        if e.backoff_base.0 < 0 {
            return Err("`external.backoff_base` must not be negative".into());
        }
        if e.failure_threshold == 0 {
            return Err("`external.failure_threshold` must be at least 1".into());
        }
        check_positive_duration("external.open_for", e.open_for)?;
        if e.half_open_probes == 0 {
            return Err("`external.half_open_probes` must be at least 1".into());
        }
        check_weight("external.flagged_weight", e.flagged_weight)?;
        Ok(())
    }
}
