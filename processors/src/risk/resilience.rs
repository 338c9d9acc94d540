//! Pure resilience primitives for the external validator: circuit breaker, TTL cache, jittered
//! backoff, per-transaction deadline, and [`CallPlan`] which combines them.
//!
//! Nothing here does I/O, reads the clock or draws random numbers: the time is passed in as
//! `now: Millis` (the runtime's wall clock) and randomness as a `jitter_unit` in `[0, 1)`. The
//! runtime wraps these around its HTTP client (reqwest + tokio timeouts); this module decides
//! *whether* to call, *how long* to wait for a call and *how long* to sleep before a retry.
//!
//! # How a runtime drives them (per document to check)
//! ```text
//! if let Some(v) = cache.get(&digits, now) { return v.clone() }      // Clean / Flagged
//! let mut plan = CallPlan::new(policy, Deadline::starting(start, budget));
//! loop {
//!     let timeout = match plan.begin_call(now(), &mut breaker) {       // breaker.allow inside
//!         Ok(t) => t,
//!         Err(cause) => return Unavailable(cause),                    // open / budget spent
//!     };
//!     match tokio::time::timeout(ms(timeout), http_call()).await {
//!         Ok(Ok(verdict)) => { plan.on_success(now(), &mut breaker);
//!                              cache.insert(digits, verdict.clone(), now()); return verdict }
//!         failed => match plan.on_failure(now(), &mut breaker, cause_of(failed), rand01()) {
//!             Ok(delay) => tokio::time::sleep(ms(delay)).await,       // then loop
//!             Err(cause) => return Unavailable(cause),               // retries or budget spent
//!         },
//!     }
//! }
//! ```
//! The breaker and the cache are shared by every task of an instance (behind a mutex held only
//! for the call to these methods, never across an `.await`). Payer and payee can be validated
//! concurrently, each with its own [`CallPlan`] over the same [`Deadline`].

use crate::Millis;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// State of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls are refused until `open_for` has passed.
    Open,
    /// A limited number of trial calls (probes) are let through.
    HalfOpen,
}

impl BreakerState {
    /// Value for a metric gauge: closed 0, open 1, half-open 2.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    /// `"closed"`, `"open"` or `"half_open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Settings of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (at least 1).
    pub failure_threshold: u32,
    /// How long the breaker stays open before letting probes through.
    pub open_for: Millis,
    /// Trial calls allowed while half-open (at least 1).
    pub half_open_probes: u32,
}

/// A circuit breaker over consecutive failures, driven by explicit time.
///
/// - **Closed**: [`allow`](Self::allow) is `true`. Each failure increments a counter, each
///   success resets it; `failure_threshold` consecutive failures open the breaker.
/// - **Open**: `allow` is `false` until `open_for` has passed since it opened; the first `allow`
///   after that moves it to half-open.
/// - **HalfOpen**: `allow` is `true` for at most `half_open_probes` calls. The first recorded
///   success closes the breaker, the first recorded failure re-opens it for another `open_for`.
///   Probes whose outcome is never recorded (a cancelled task) are forgotten after `open_for`,
///   so the breaker cannot stay stuck half-open.
///
/// Outcomes recorded while open (calls that started before it opened) are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    consecutive_failures: u32,
    /// When the breaker last opened (Open) or went half-open (HalfOpen).
    since: Millis,
    probes_issued: u32,
    times_opened: u64,
}

impl CircuitBreaker {
    /// A closed breaker. Zero `failure_threshold` or `half_open_probes` are treated as 1.
    pub fn new(config: BreakerConfig) -> Self {
        let config = BreakerConfig {
            failure_threshold: config.failure_threshold.max(1),
            open_for: config.open_for.max(0),
            half_open_probes: config.half_open_probes.max(1),
        };
        Self {
            config,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            since: 0,
            probes_issued: 0,
            times_opened: 0,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// The state as of the last call (an open breaker whose time is up stays `Open` here until
    /// the next [`allow`](Self::allow)); use [`state_at`](Self::state_at) for a gauge.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The state a call at `now` would see, without changing anything.
    pub fn state_at(&self, now: Millis) -> BreakerState {
        match self.state {
            BreakerState::Open if now >= self.since.saturating_add(self.config.open_for) => {
                BreakerState::HalfOpen
            }
            s => s,
        }
    }

    /// How many times the breaker has opened (re-opening after a failed probe included), for a
    /// counter metric.
    pub fn times_opened(&self) -> u64 {
        self.times_opened
    }

    /// Consecutive failures counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Whether a call may be made at `now`. A `true` while half-open uses up one probe, so call
    /// this only right before actually calling.
    pub fn allow(&mut self, now: Millis) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                if now >= self.since.saturating_add(self.config.open_for) {
                    self.state = BreakerState::HalfOpen;
                    self.since = now;
                    self.probes_issued = 1;
                    true
                } else {
                    false
                }
            }
            BreakerState::HalfOpen => {
                if self.probes_issued >= self.config.half_open_probes
                    && now >= self.since.saturating_add(self.config.open_for)
                {
                    // Every probe slot taken and none reported back for `open_for`: lost.
                    self.since = now;
                    self.probes_issued = 0;
                }
                if self.probes_issued < self.config.half_open_probes {
                    self.probes_issued += 1;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// A call succeeded: resets the failure count; closes a half-open breaker.
    pub fn record_success(&mut self, _now: Millis) {
        match self.state {
            BreakerState::Closed => self.consecutive_failures = 0,
            BreakerState::HalfOpen => {
                self.state = BreakerState::Closed;
                self.consecutive_failures = 0;
                self.probes_issued = 0;
            }
            BreakerState::Open => {}
        }
    }

    /// A call failed (timeout, transport error, 5xx): may open the breaker; re-opens a half-open
    /// one.
    pub fn record_failure(&mut self, now: Millis) {
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= self.config.failure_threshold {
                    self.open(now);
                }
            }
            BreakerState::HalfOpen => self.open(now),
            BreakerState::Open => {}
        }
    }

    fn open(&mut self, now: Millis) {
        self.state = BreakerState::Open;
        self.since = now;
        self.consecutive_failures = 0;
        self.probes_issued = 0;
        self.times_opened += 1;
    }
}

/// A bounded cache whose entries expire at a given time.
///
/// Expired entries are invisible to [`get`](Self::get) and removed by
/// [`purge_expired`](Self::purge_expired) or when room is needed. When an insert finds the
/// cache full, the entry that expires first is evicted (an expired one if there is any; with a
/// single TTL this is the oldest insertion).
///
/// `Debug` shows only sizes, never keys (which may be documents).
#[derive(Clone)]
pub struct TtlCache<K, V> {
    capacity: usize,
    ttl: Millis,
    entries: HashMap<K, (V, Millis, u64)>,
    /// `(expires_at, seq)` of every entry, to find the one that expires first.
    order: BTreeSet<(Millis, u64)>,
    by_seq: HashMap<u64, K>,
    next_seq: u64,
}

impl<K, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl<K: Eq + Hash + Clone, V> TtlCache<K, V> {
    /// An empty cache holding at most `capacity` entries (0 = caches nothing), each living
    /// `ttl` unless inserted with [`insert_with_ttl`](Self::insert_with_ttl).
    pub fn new(capacity: usize, ttl: Millis) -> Self {
        Self {
            capacity,
            ttl,
            entries: HashMap::new(),
            order: BTreeSet::new(),
            by_seq: HashMap::new(),
            next_seq: 0,
        }
    }

    /// The value of `key` if present and not expired at `now` (an entry is valid while
    /// `now < inserted_at + ttl`).
    pub fn get(&self, key: &K, now: Millis) -> Option<&V> {
        match self.entries.get(key) {
            Some((v, expires_at, _)) if now < *expires_at => Some(v),
            _ => None,
        }
    }

    /// Insert or replace `key` with the default TTL.
    pub fn insert(&mut self, key: K, value: V, now: Millis) {
        self.insert_with_ttl(key, value, now, self.ttl);
    }

    /// Insert or replace `key`, expiring at `now + ttl`. A non-positive `ttl` stores nothing
    /// (and removes an older value).
    pub fn insert_with_ttl(&mut self, key: K, value: V, now: Millis, ttl: Millis) {
        self.remove(&key);
        if self.capacity == 0 || ttl <= 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.purge_expired(now);
        }
        while self.entries.len() >= self.capacity {
            let Some(first) = self.order.pop_first() else {
                break;
            };
            if let Some(k) = self.by_seq.remove(&first.1) {
                self.entries.remove(&k);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let expires_at = now.saturating_add(ttl);
        self.order.insert((expires_at, seq));
        self.by_seq.insert(seq, key.clone());
        self.entries.insert(key, (value, expires_at, seq));
    }

    /// Remove `key`, returning its value if it was there (expired or not).
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (v, expires_at, seq) = self.entries.remove(key)?;
        self.order.remove(&(expires_at, seq));
        self.by_seq.remove(&seq);
        Some(v)
    }

    /// Remove every entry expired at `now`; returns how many.
    pub fn purge_expired(&mut self, now: Millis) -> usize {
        let mut removed = 0;
        while let Some(&(expires_at, seq)) = self.order.first() {
            if expires_at > now {
                break;
            }
            self.order.pop_first();
            if let Some(k) = self.by_seq.remove(&seq) {
                self.entries.remove(&k);
            }
            removed += 1;
        }
        removed
    }

    /// Entries held, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bound on entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// How a backoff delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Uniform in `[0, cap)`: spreads retries most (AWS "full jitter").
    #[default]
    Full,
    /// `cap / 2` plus uniform in `[0, cap / 2)`: never retries immediately.
    Equal,
    /// Exactly `cap` (deterministic; for tests).
    None,
}

/// Exponential backoff with full jitter: `cap = min(max, base * 2^attempt)` and the delay is
/// `floor(cap * jitter_unit)`. `attempt` 0 is the delay before the first retry; `jitter_unit`
/// is a uniform random number in `[0, 1)` (clamped into it).
pub fn backoff_delay(attempt: u32, base: Millis, max: Millis, jitter_unit: f64) -> Millis {
    backoff_delay_with(Jitter::Full, attempt, base, max, jitter_unit)
}

/// [`backoff_delay`] with a choice of [`Jitter`].
pub fn backoff_delay_with(
    jitter: Jitter,
    attempt: u32,
    base: Millis,
    max: Millis,
    jitter_unit: f64,
) -> Millis {
    let base = base.max(0);
    let max = max.max(0);
    let factor = 1_i64.checked_shl(attempt.min(62)).unwrap_or(i64::MAX);
    let cap = base.saturating_mul(factor).min(max);
    let u = if jitter_unit.is_finite() {
        jitter_unit.clamp(0.0, 1.0 - f64::EPSILON)
    } else {
        0.0
    };
    // Delays are well inside f64's exact integer range (2^53 ms is 285 000 years).
    let scaled = |span: Millis| (span as f64 * u).floor() as Millis;
    match jitter {
        Jitter::Full => scaled(cap),
        Jitter::Equal => cap / 2 + scaled(cap - cap / 2),
        Jitter::None => cap,
    }
}

/// A point in time by which a transaction's external validation must be done, so the decision
/// leaves within the SLA whatever the validator does. One deadline covers all calls and
/// retries for a transaction (payer and payee), not each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// Absolute time (ms) after which no call may run.
    pub at: Millis,
}

impl Deadline {
    /// A deadline `budget` ms after `start`.
    pub fn starting(start: Millis, budget: Millis) -> Self {
        Self {
            at: start.saturating_add(budget.max(0)),
        }
    }

    /// Milliseconds left at `now` (never negative).
    pub fn remaining(&self, now: Millis) -> Millis {
        self.at.saturating_sub(now).max(0)
    }

    /// Whether nothing is left at `now`.
    pub fn expired(&self, now: Millis) -> bool {
        now >= self.at
    }
}

/// Why an external validation could not be used; no free text, so nothing sensitive (an error
/// message could quote the URL, which may contain the document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnavailableCause {
    /// A call did not answer within its timeout.
    Timeout,
    /// The circuit breaker refused the call.
    CircuitOpen,
    /// The transaction's deadline budget was spent before a call could be made or retried.
    BudgetExhausted,
    /// The validator answered with this non-success HTTP status.
    HttpStatus(u16),
    /// Connection, TLS or decoding error.
    Transport,
}

impl UnavailableCause {
    /// Short text for reasons and metric labels: `timeout`, `circuit_open`, `budget_exhausted`,
    /// `http_503`, `transport_error`.
    pub fn label(self) -> String {
        match self {
            UnavailableCause::Timeout => "timeout".into(),
            UnavailableCause::CircuitOpen => "circuit_open".into(),
            UnavailableCause::BudgetExhausted => "budget_exhausted".into(),
            UnavailableCause::HttpStatus(code) => format!("http_{code}"),
            UnavailableCause::Transport => "transport_error".into(),
        }
    }
}

/// Retry settings of one external validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Timeout of a single call (further shortened to what is left of the deadline).
    pub call_timeout: Millis,
    /// Retries after the first call (0 = one call only).
    pub max_retries: u32,
    /// Backoff base (delay cap before the first retry).
    pub backoff_base: Millis,
    /// Backoff ceiling.
    pub backoff_max: Millis,
    /// Jitter mode.
    pub jitter: Jitter,
    /// Smallest call timeout worth starting; with less left the budget counts as spent.
    pub min_call_timeout: Millis,
}

/// The calls of one external validation under a [`Deadline`]: when to call, with what timeout,
/// whether and how long to back off. See the module docs for the loop a runtime runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPlan {
    policy: RetryPolicy,
    deadline: Deadline,
    calls: u32,
}

impl CallPlan {
    /// A plan with no call made yet.
    pub fn new(policy: RetryPolicy, deadline: Deadline) -> Self {
        Self {
            policy,
            deadline,
            calls: 0,
        }
    }

    /// Calls started so far.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// The deadline in force.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// Before a call: the timeout to use, or why not to call (budget spent, breaker open).
    ///
    /// # Errors
    /// [`UnavailableCause::BudgetExhausted`] when less than `min_call_timeout` is left;
    /// [`UnavailableCause::CircuitOpen`] when the breaker refuses.
    pub fn begin_call(
        &mut self,
        now: Millis,
        breaker: &mut CircuitBreaker,
    ) -> Result<Millis, UnavailableCause> {
        let remaining = self.deadline.remaining(now);
        if remaining <= 0 || remaining < self.policy.min_call_timeout {
            return Err(UnavailableCause::BudgetExhausted);
        }
        if !breaker.allow(now) {
            return Err(UnavailableCause::CircuitOpen);
        }
        self.calls += 1;
        Ok(self.policy.call_timeout.min(remaining))
    }

    /// After a successful call: records it on the breaker.
    pub fn on_success(&mut self, now: Millis, breaker: &mut CircuitBreaker) {
        breaker.record_success(now);
    }

    /// After a failed call (`cause`: timeout, status, transport): records it on the breaker and
    /// returns how long to sleep before the next [`begin_call`](Self::begin_call).
    ///
    /// # Errors
    /// `cause` when no retry is left, or when the backoff would end at or past the deadline.
    pub fn on_failure(
        &mut self,
        now: Millis,
        breaker: &mut CircuitBreaker,
        cause: UnavailableCause,
        jitter_unit: f64,
    ) -> Result<Millis, UnavailableCause> {
        breaker.record_failure(now);
        let retries_done = self.calls.saturating_sub(1);
        if retries_done >= self.policy.max_retries {
            return Err(cause);
        }
        let delay = backoff_delay_with(
            self.policy.jitter,
            retries_done,
            self.policy.backoff_base,
            self.policy.backoff_max,
            jitter_unit,
        );
        let resume = now.saturating_add(delay);
        if self.deadline.remaining(resume) < self.policy.min_call_timeout.max(1) {
            return Err(cause);
        }
        Ok(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, open_for: Millis, probes: u32) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: threshold,
            open_for,
            half_open_probes: probes,
        })
    }

    #[test]
    fn breaker_opens_after_n_consecutive_failures() {
        let mut b = breaker(3, 1_000, 1);
        assert!(b.allow(0));
        b.record_failure(1);
        b.record_failure(2);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 2);
        assert!(b.allow(3));
        b.record_failure(3);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.times_opened(), 1);
        assert!(!b.allow(4));
        assert!(!b.allow(1_002));
        assert_eq!(b.state_at(1_002), BreakerState::Open);
        assert_eq!(b.state_at(1_003), BreakerState::HalfOpen);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn success_resets_the_consecutive_count() {
        let mut b = breaker(3, 1_000, 1);
        b.record_failure(1);
        b.record_failure(2);
        b.record_success(3);
        assert_eq!(b.consecutive_failures(), 0);
        b.record_failure(4);
        b.record_failure(5);
        assert_eq!(b.state(), BreakerState::Closed);
        b.record_failure(6);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn half_open_probe_success_closes() {
        let mut b = breaker(1, 500, 1);
        b.record_failure(100);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow(599));
        assert!(b.allow(600));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // Only one probe while it is in flight.
        assert!(!b.allow(601));
        b.record_success(650);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow(651));
        assert!(b.allow(652));
    }

    #[test]
    fn half_open_probe_failure_reopens() {
        let mut b = breaker(2, 500, 2);
        b.record_failure(0);
        b.record_failure(10);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.allow(510));
        assert!(b.allow(511));
        assert!(!b.allow(512), "only two probes");
        b.record_failure(520);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.times_opened(), 2);
        // Open again for a full open_for from the failed probe.
        assert!(!b.allow(1_019));
        assert!(b.allow(1_020));
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn outcomes_while_open_are_ignored() {
        let mut b = breaker(1, 500, 1);
        b.record_failure(0);
        b.record_success(10);
        assert_eq!(b.state(), BreakerState::Open);
        b.record_failure(400);
        // The late failure did not extend the open period.
        assert!(b.allow(500));
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn lost_probes_are_forgotten_after_open_for() {
        let mut b = breaker(1, 500, 1);
        b.record_failure(0);
        assert!(b.allow(500));
        assert!(!b.allow(999));
        assert!(b.allow(1_000));
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn zero_settings_are_clamped() {
        let mut b = breaker(0, 100, 0);
        assert_eq!(b.config().failure_threshold, 1);
        assert_eq!(b.config().half_open_probes, 1);
        b.record_failure(0);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn gauge_values() {
        assert_eq!(BreakerState::Closed.gauge(), 0);
        assert_eq!(BreakerState::Open.gauge(), 1);
        assert_eq!(BreakerState::HalfOpen.gauge(), 2);
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
    }

    #[test]
    fn ttl_cache_expires_entries() {
        let mut c: TtlCache<String, u32> = TtlCache::new(10, 100);
        c.insert("a".into(), 1, 1_000);
        assert_eq!(c.get(&"a".into(), 1_000), Some(&1));
        assert_eq!(c.get(&"a".into(), 1_099), Some(&1));
        assert_eq!(c.get(&"a".into(), 1_100), None);
        assert_eq!(c.len(), 1, "expired but not purged yet");
        assert_eq!(c.purge_expired(1_100), 1);
        assert!(c.is_empty());
    }

    #[test]
    fn ttl_cache_replacing_refreshes_expiry() {
        let mut c: TtlCache<&str, u32> = TtlCache::new(10, 100);
        c.insert("a", 1, 0);
        c.insert("a", 2, 50);
        assert_eq!(c.get(&"a", 120), Some(&2));
        assert_eq!(c.get(&"a", 150), None);
        assert_eq!(c.len(), 1);
        assert_eq!(c.purge_expired(149), 0);
        assert_eq!(c.purge_expired(150), 1);
    }

    #[test]
    fn ttl_cache_is_bounded_and_evicts_first_to_expire() {
        let mut c: TtlCache<u32, u32> = TtlCache::new(3, 1_000);
        c.insert(1, 10, 0);
        c.insert(2, 20, 1);
        c.insert(3, 30, 2);
        c.insert(4, 40, 3);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&1, 3), None, "oldest evicted");
        assert_eq!(c.get(&2, 3), Some(&20));
        assert_eq!(c.get(&4, 3), Some(&40));
        // A longer-lived entry survives over shorter ones inserted later.
        c.insert_with_ttl(5, 50, 4, 10_000);
        assert_eq!(c.get(&2, 4), None);
        c.insert(6, 60, 5);
        assert_eq!(c.get(&3, 5), None);
        assert_eq!(c.get(&5, 5), Some(&50));
        assert_eq!(c.get(&6, 5), Some(&60));
        assert_eq!(c.get(&4, 5), Some(&40));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn ttl_cache_prefers_evicting_expired_entries() {
        let mut c: TtlCache<u32, u32> = TtlCache::new(2, 1_000);
        c.insert_with_ttl(1, 10, 0, 5_000);
        c.insert_with_ttl(2, 20, 0, 10);
        c.insert(3, 30, 100);
        assert_eq!(c.get(&1, 100), Some(&10));
        assert_eq!(c.get(&3, 100), Some(&30));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn ttl_cache_debug_hides_keys() {
        let mut c: TtlCache<String, u32> = TtlCache::new(5, 100);
        c.insert("52998224725".into(), 1, 0);
        assert_eq!(
            format!("{c:?}"),
            "TtlCache { len: 1, capacity: 5, ttl: 100 }"
        );
    }

    #[test]
    fn ttl_cache_zero_capacity_or_ttl_stores_nothing() {
        let mut c: TtlCache<u32, u32> = TtlCache::new(0, 1_000);
        c.insert(1, 1, 0);
        assert!(c.is_empty());
        let mut c: TtlCache<u32, u32> = TtlCache::new(5, 1_000);
        c.insert(1, 1, 0);
        c.insert_with_ttl(1, 2, 0, 0);
        assert_eq!(c.get(&1, 0), None);
        assert!(c.is_empty());
        assert_eq!(c.remove(&1), None);
    }

    #[test]
    fn backoff_grows_exponentially_up_to_max() {
        let d = |attempt| backoff_delay_with(Jitter::None, attempt, 100, 1_000, 0.5);
        assert_eq!([d(0), d(1), d(2), d(3), d(4)], [100, 200, 400, 800, 1_000]);
        assert_eq!(d(200), 1_000, "no overflow on huge attempts");
    }

    #[test]
    fn backoff_full_jitter_spans_zero_to_cap() {
        assert_eq!(backoff_delay(2, 100, 1_000, 0.0), 0);
        assert_eq!(backoff_delay(2, 100, 1_000, 0.5), 200);
        assert_eq!(backoff_delay(2, 100, 1_000, 0.999_999), 399);
        assert_eq!(backoff_delay(2, 100, 1_000, 7.0), 399, "clamped below 1");
        assert_eq!(backoff_delay(2, 100, 1_000, -1.0), 0);
        assert_eq!(backoff_delay(2, 100, 1_000, f64::NAN), 0);
    }

    #[test]
    fn backoff_equal_jitter_keeps_half() {
        assert_eq!(backoff_delay_with(Jitter::Equal, 1, 100, 1_000, 0.0), 100);
        assert_eq!(backoff_delay_with(Jitter::Equal, 1, 100, 1_000, 0.5), 150);
        assert_eq!(backoff_delay_with(Jitter::Equal, 1, 100, 1_000, 0.99), 199);
    }

    #[test]
    fn deadline_arithmetic() {
        let d = Deadline::starting(1_000, 800);
        assert_eq!(d.at, 1_800);
        assert_eq!(d.remaining(1_500), 300);
        assert_eq!(d.remaining(2_000), 0);
        assert!(!d.expired(1_799));
        assert!(d.expired(1_800));
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            call_timeout: 300,
            max_retries: 2,
            backoff_base: 100,
            backoff_max: 1_000,
            jitter: Jitter::None,
            min_call_timeout: 10,
        }
    }

    #[test]
    fn plan_retries_within_budget_then_gives_up_with_last_cause() {
        let mut b = breaker(10, 1_000, 1);
        let mut plan = CallPlan::new(policy(), Deadline::starting(0, 2_000));
        assert_eq!(plan.begin_call(0, &mut b), Ok(300));
        assert_eq!(
            plan.on_failure(300, &mut b, UnavailableCause::Timeout, 0.0),
            Ok(100)
        );
        assert_eq!(plan.begin_call(400, &mut b), Ok(300));
        assert_eq!(
            plan.on_failure(450, &mut b, UnavailableCause::HttpStatus(503), 0.0),
            Ok(200)
        );
        assert_eq!(plan.begin_call(650, &mut b), Ok(300));
        assert_eq!(
            plan.on_failure(950, &mut b, UnavailableCause::Timeout, 0.0),
            Err(UnavailableCause::Timeout),
            "two retries used"
        );
        assert_eq!(plan.calls(), 3);
        assert_eq!(b.consecutive_failures(), 3);
    }

    #[test]
    fn plan_shortens_the_last_call_to_the_deadline() {
        let mut b = breaker(10, 1_000, 1);
        let mut plan = CallPlan::new(policy(), Deadline::starting(0, 500));
        assert_eq!(plan.begin_call(0, &mut b), Ok(300));
        assert_eq!(
            plan.on_failure(300, &mut b, UnavailableCause::Transport, 0.0),
            Ok(100)
        );
        assert_eq!(plan.begin_call(400, &mut b), Ok(100));
        // A backoff that would end past the deadline is not taken.
        assert_eq!(
            plan.on_failure(495, &mut b, UnavailableCause::Timeout, 0.0),
            Err(UnavailableCause::Timeout)
        );
        assert_eq!(
            plan.begin_call(495, &mut b),
            Err(UnavailableCause::BudgetExhausted)
        );
    }

    #[test]
    fn plan_respects_an_open_breaker_and_feeds_it() {
        let mut b = breaker(2, 1_000, 1);
        let mut plan = CallPlan::new(policy(), Deadline::starting(0, 5_000));
        assert_eq!(plan.begin_call(0, &mut b), Ok(300));
        assert!(plan
            .on_failure(300, &mut b, UnavailableCause::Timeout, 0.0)
            .is_ok());
        assert_eq!(plan.begin_call(400, &mut b), Ok(300));
        assert!(plan
            .on_failure(700, &mut b, UnavailableCause::Timeout, 0.0)
            .is_ok());
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            plan.begin_call(900, &mut b),
            Err(UnavailableCause::CircuitOpen)
        );

        // Another transaction after open_for probes, succeeds and closes the breaker.
        let mut plan = CallPlan::new(policy(), Deadline::starting(1_700, 1_000));
        assert_eq!(plan.begin_call(1_700, &mut b), Ok(300));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        plan.on_success(1_750, &mut b);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn plan_without_retries_makes_one_call() {
        let mut b = breaker(10, 1_000, 1);
        let mut p = policy();
        p.max_retries = 0;
        let mut plan = CallPlan::new(p, Deadline::starting(0, 5_000));
        assert_eq!(plan.begin_call(0, &mut b), Ok(300));
        assert_eq!(
            plan.on_failure(10, &mut b, UnavailableCause::HttpStatus(500), 0.3),
            Err(UnavailableCause::HttpStatus(500))
        );
    }

    #[test]
    fn cause_labels() {
        assert_eq!(UnavailableCause::HttpStatus(503).label(), "http_503");
        assert_eq!(UnavailableCause::CircuitOpen.label(), "circuit_open");
        assert_eq!(
            UnavailableCause::BudgetExhausted.label(),
            "budget_exhausted"
        );
    }
}
