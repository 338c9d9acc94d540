//! The pipeline page's data: the topology as a graph, with each processor's live figures taken
//! from this process's own metrics (the same numbers `/metrics` exports), not from a scrape.
//!
//! Rates are differences of the record counters between two requests: the [`Sampler`] keeps
//! the totals of the last minute of requests and rates the current totals against the newest
//! sample at least [`RATE_WINDOW`] old (or the oldest one, at least half a second old). Until a
//! second request comes a rate is `null`, so the first answer never shows a made-up figure.
//! On a process that does not run a processor (`fluxo serve`, or one disabled) its figures are
//! absent and its status says so.

use crate::config::Topology;
use prometheus::core::Collector;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The span rates are measured over, when requests come often enough.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);
/// How long samples are kept.
const KEEP: Duration = Duration::from_secs(60);

/// Totals of one processor at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    records_in: f64,
    records_out: f64,
    dead_letters: f64,
}

/// Counter samples of past requests (see the module documentation).
#[derive(Debug, Default)]
pub struct Sampler {
    samples: Mutex<VecDeque<(Instant, BTreeMap<String, Totals>)>>,
}

impl Sampler {
    /// Record `now`'s totals and return the per-second rates against the chosen earlier sample,
    /// by processor (absent when there is no earlier sample to compare with).
    fn rates(&self, now: Instant, totals: &BTreeMap<String, Totals>) -> BTreeMap<String, Totals> {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        while samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > KEEP)
        {
            samples.pop_front();
        }
        let base = samples
            .iter()
            .rev()
            .find(|(t, _)| now.duration_since(*t) >= RATE_WINDOW)
            .or_else(|| {
                samples
                    .front()
                    .filter(|(t, _)| now.duration_since(*t) >= Duration::from_millis(500))
            })
            .cloned();
        samples.push_back((now, totals.clone()));
        let Some((then, before)) = base else {
            return BTreeMap::new();
        };
        let secs = now.duration_since(then).as_secs_f64();
        totals
            .iter()
            .map(|(name, t)| {
                let b = before.get(name).copied().unwrap_or_default();
                // A counter never goes back; `max` keeps a restarted engine's reset at zero.
                let rate = |x: f64, y: f64| ((x - y) / secs).max(0.0);
                (
                    name.clone(),
                    Totals {
                        records_in: rate(t.records_in, b.records_in),
                        records_out: rate(t.records_out, b.records_out),
                        dead_letters: rate(t.dead_letters, b.dead_letters),
                    },
                )
            })
            .collect()
    }
}

/// One metric child: its labels and value (counter or gauge).
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Every child of `collector` with its labels.
fn samples(collector: &dyn Collector) -> Vec<Sample> {
    collector
        .collect()
        .iter()
        .flat_map(|family| family.get_metric().iter())
        .map(|m| Sample {
            labels: m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect(),
            value: m
                .counter
                .as_ref()
                .map(|c| c.value())
                .or_else(|| m.gauge.as_ref().map(|g| g.value()))
                .unwrap_or(0.0),
        })
        .collect()
}

/// Sum of `collector`'s children whose `label` is `value`, and whether there was any.
fn sum_where(all: &[Sample], label: &str, value: &str) -> Option<f64> {
    let matching: Vec<f64> = all
        .iter()
        .filter(|s| s.labels.get(label).map(String::as_str) == Some(value))
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The pipeline graph with live figures (the `data` of `/v1/console/pipeline`).
pub fn snapshot(topology: &Topology, sampler: &Sampler) -> Value {
    use crate::metrics as m;
    let records_in = samples(&*m::RECORDS_IN);
    let records_out = samples(&*m::RECORDS_OUT);
    let dead = samples(&*m::DEAD_LETTERS);
    let lag = samples(&*m::CONSUMER_LAG);
    let up = samples(&*m::PROCESSOR_UP);
    let assigned = samples(&*m::ASSIGNED_PARTITIONS);
    let checkpoints = samples(&*m::LAST_CHECKPOINT_TIMESTAMP);
    let deliveries = samples(&*m::NOTIFIER_DELIVERIES);

    let totals: BTreeMap<String, Totals> = topology
        .processors
        .keys()
        .map(|name| {
            (
                name.clone(),
                Totals {
                    records_in: sum_where(&records_in, "processor", name).unwrap_or(0.0),
                    records_out: sum_where(&records_out, "processor", name).unwrap_or(0.0),
                    dead_letters: sum_where(&dead, "processor", name).unwrap_or(0.0),
                },
            )
        })
        .collect();
    let rates = sampler.rates(Instant::now(), &totals);
    let now = unix_now();

    let processors: Vec<Value> = topology
        .processors
        .values()
        .map(|p| {
            let name = p.name.as_str();
            let up_value = sum_where(&up, "processor", name);
            let status = match (p.enabled, up_value) {
                (false, _) => "disabled",
                (true, Some(v)) if v >= 1.0 => "running",
                (true, Some(_)) => "stopped",
                (true, None) => "not_in_this_process",
            };
            let t = totals.get(name).copied().unwrap_or_default();
            let r = rates.get(name);
            let dlq_topics: Vec<String> = p
                .inputs
                .iter()
                .chain(&p.global_inputs)
                .map(|t| Topology::dlq_topic(t))
                .collect();
            json!({
                "name": name,
                "kind": p.kind.name(),
                "enabled": p.enabled,
                "status": status,
                "inputs": p.inputs,
                "global_inputs": p.global_inputs,
                "outputs": p.outputs,
                "dlq_topics": dlq_topics,
                "records_in": t.records_in,
                "records_out": t.records_out,
                "dead_letters": t.dead_letters,
                "rate_in": r.map(|r| r.records_in),
                "rate_out": r.map(|r| r.records_out),
                "rate_dead_letters": r.map(|r| r.dead_letters),
                "lag": sum_where(&lag, "processor", name),
                "assigned_partitions": sum_where(&assigned, "processor", name),
                "last_checkpoint_age_seconds": sum_where(&checkpoints, "processor", name)
                    .filter(|t| *t > 0.0)
                    .map(|t| (now - t).max(0.0)),
            })
        })
        .collect();

    let notifiers: Vec<Value> = topology
        .notifiers
        .values()
        .map(|n| {
            let outcomes: BTreeMap<&str, f64> = deliveries
                .iter()
                .filter(|s| s.labels.get("notifier") == Some(&n.name))
                .filter_map(|s| Some((s.labels.get("outcome")?.as_str(), s.value)))
                .collect();
            json!({
                "name": n.name,
                "enabled": n.enabled,
                "topics": n.topics,
                "dlq_topics": n.topics.iter().map(|t| Topology::notify_dlq_topic(t)).collect::<Vec<_>>(),
                "deliveries": outcomes,
            })
        })
        .collect();

    let topics: Vec<Value> = topology
        .all_topics()
        .into_iter()
        .map(|(name, t)| {
            let role = if name.ends_with(".dlq") || name.ends_with(".notify-dlq") {
                "dead_letters"
            } else if topology
                .processors
                .values()
                .any(|p| p.inputs.contains(&name) || p.global_inputs.contains(&name))
            {
                "input"
            } else {
                "output"
            };
            json!({"name": name, "partitions": t.partitions, "schema": t.schema, "role": role})
        })
        .collect();

    json!({
        "processors": processors,
        "notifiers": notifiers,
        "topics": topics,
        "rate_window_seconds": RATE_WINDOW.as_secs(),
    })
}

/// The risk decision latency histogram (`fluxo_risk_decision_latency_seconds`), per bucket
/// rather than cumulative, with the SLA breaches and the decisions by kind.
pub fn risk_latency() -> Value {
    use crate::metrics as m;
    let families = m::RISK_DECISION_LATENCY.collect();
    let histogram = families
        .first()
        .and_then(|f| f.get_metric().first())
        .and_then(|metric| metric.histogram.as_ref().cloned());
    let (buckets, count, sum) = match histogram {
        Some(h) => {
            let mut previous = 0u64;
            let mut buckets: Vec<Value> = h
                .bucket
                .iter()
                .map(|b| {
                    let n = b.cumulative_count().saturating_sub(previous);
                    previous = b.cumulative_count();
                    json!({"le_seconds": b.upper_bound(), "count": n})
                })
                .collect();
            buckets.push(json!({
                "le_seconds": Value::Null,
                "count": h.sample_count().saturating_sub(previous)
            }));
            (buckets, h.sample_count(), h.sample_sum())
        }
        None => (Vec::new(), 0, 0.0),
    };
    let decisions: BTreeMap<String, f64> =
        samples(&*m::RISK_DECISIONS)
            .iter()
            .fold(BTreeMap::new(), |mut acc, s| {
                if let Some(d) = s.labels.get("decision") {
                    *acc.entry(d.clone()).or_insert(0.0) += s.value;
                }
                acc
            });
    json!({
        "buckets": buckets,
        "count": count,
        "sum_seconds": sum,
        "sla_breaches": m::RISK_SLA_BREACHES.get(),
        "decisions": decisions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(n: f64) -> BTreeMap<String, Totals> {
        [(
            "p".to_string(),
            Totals {
                records_in: n,
                records_out: n / 2.0,
                dead_letters: 0.0,
            },
        )]
        .into()
    }

    #[test]
    fn rates_need_an_earlier_sample_and_use_the_window() {
        let s = Sampler::default();
        let t0 = Instant::now();
        assert!(
            s.rates(t0, &totals(0.0)).is_empty(),
            "no rate from one sample"
        );
        // Too soon after the first to rate.
        assert!(s
            .rates(t0 + Duration::from_millis(100), &totals(10.0))
            .is_empty());
        let r = s.rates(t0 + Duration::from_secs(2), &totals(200.0));
        assert_eq!(r["p"].records_in, 100.0);
        assert_eq!(r["p"].records_out, 50.0);
        // Once samples span the window, the newest one at least RATE_WINDOW old is the base.
        let r = s.rates(t0 + Duration::from_secs(7), &totals(700.0));
        assert_eq!(r["p"].records_in, (700.0 - 200.0) / 5.0);
        // Samples older than a minute are dropped: a long pause rates against nothing older.
        let r = s.rates(t0 + Duration::from_secs(200), &totals(700.0));
        assert!(r.is_empty());
    }
}
