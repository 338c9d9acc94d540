//! The dashboards and alert rules in `deploy/` only query what fluxo exports.
//!
//! Every PromQL expression of `deploy/prometheus/alerts.yml` and of the Grafana dashboards
//! (`deploy/grafana/dashboards/*.json`, panel targets and `label_values` variables) is
//! tokenized; each metric it names must be a family of [`fluxo::metrics::families`] (histogram
//! series `_bucket`/`_sum`/`_count` resolve to their family) or Prometheus's own `up`, and each
//! label it matches or groups by must be one of those metrics' labels (or `job`, `instance`,
//! added by Prometheus, and `le` of histogram buckets).
//!
//! The family list comes from the collectors' descriptors because a labelled metric shows in a
//! scrape only once it has a child; a second test scrapes the real `/metrics` route of the ops
//! and query API router and checks that the two views agree and that the query API's own
//! metrics count what was asked. No broker is needed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Metric and label names a PromQL expression refers to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Refs {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

/// Words of PromQL that are neither metrics nor functions.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "Inf",
    "NaN",
    "group_left",
    "group_right",
];
/// Aggregation operators, which may be followed by `by (...)` before their parenthesis.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
/// Modifiers followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Index just past the string literal opening at `i`.
fn skip_string(s: &[char], i: usize) -> usize {
    let quote = s[i];
    let mut j = i + 1;
    while j < s.len() && s[j] != quote {
        if s[j] == '\\' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// The identifier starting at `i` and the index past it.
fn ident(s: &[char], i: usize) -> (String, usize) {
    let mut j = i;
    while j < s.len() && is_ident(s[j]) {
        j += 1;
    }
    (s[i..j].iter().collect(), j)
}

fn next_non_space(s: &[char], mut i: usize) -> Option<char> {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    s.get(i).copied()
}

/// Tokenize a PromQL expression (Grafana's `$variables` allowed) into the metrics and labels
/// it names. Identifiers followed by `(` are functions or aggregations; identifiers in `{...}`
/// before a matcher and in `by (...)`-style lists are labels; strings, numbers, durations in
/// `[...]` and `$variables` are skipped.
fn promql_refs(expr: &str) -> Refs {
    let s: Vec<char> = expr.chars().collect();
    let mut refs = Refs::default();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i);
        } else if c == '[' {
            while i < s.len() && s[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            // Label matchers: `name op "value"`, comma-separated.
            i += 1;
            while i < s.len() && s[i] != '}' {
                if s[i] == '"' || s[i] == '\'' || s[i] == '`' {
                    i = skip_string(&s, i);
                } else if is_ident_start(s[i]) {
                    let (name, j) = ident(&s, i);
                    if name != "__name__" {
                        refs.labels.insert(name);
                    }
                    i = j;
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c == '$' {
            let (_, j) = ident(&s, i + 1);
            i = j.max(i + 1);
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let (word, j) = ident(&s, i);
            i = j;
            let next = next_non_space(&s, i);
            if LABEL_LISTS.contains(&word.as_str()) && next == Some('(') {
                while s[i] != '(' {
                    i += 1;
                }
                while i < s.len() && s[i] != ')' {
                    if is_ident_start(s[i]) {
                        let (label, j) = ident(&s, i);
                        refs.labels.insert(label);
                        i = j;
                    } else {
                        i += 1;
                    }
                }
            } else if KEYWORDS.contains(&word.as_str())
                || next == Some('(')
                || AGGREGATIONS.contains(&word.as_str())
            {
                // A keyword, or a function / aggregation name (`sum by (x) (...)`).
            } else {
                refs.metrics.insert(word);
            }
        } else {
            i += 1;
        }
    }
    refs
}

/// Labels Prometheus adds to every series it scrapes.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// Check one expression against the exported families; the problems found, as sentences.
fn check_expr(source: &str, expr: &str, families: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let refs = promql_refs(expr);
    let mut problems = Vec::new();
    if refs.metrics.is_empty() {
        problems.push(format!("{source}: `{expr}` names no metric"));
    }
    let mut allowed: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
    for metric in &refs.metrics {
        if metric == "up" {
            continue;
        }
        let histogram_part = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| metric.strip_suffix(suffix).map(|base| (base, *suffix)));
        let labels = families.get(metric).or_else(|| {
            histogram_part.and_then(|(base, suffix)| {
                if suffix == "_bucket" {
                    allowed.insert("le".into());
                }
                families.get(base)
            })
        });
        match labels {
            Some(labels) => allowed.extend(labels.iter().cloned()),
            None => problems.push(format!(
                "{source}: metric `{metric}` in `{expr}` is not exported by fluxo"
            )),
        }
    }
    for label in refs.labels.difference(&allowed) {
        problems.push(format!(
            "{source}: label `{label}` in `{expr}` is not a label of {:?}",
            refs.metrics
        ));
    }
    problems
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `expr:` values of a Prometheus rules file: plain or quoted scalars on the line, or
/// block scalars (`>-`, `|`) on the more-indented lines after it.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        i += 1;
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let value = value.trim();
        if value.starts_with('>') || value.starts_with('|') {
            let mut block = Vec::new();
            while i < lines.len()
                && (lines[i].trim().is_empty()
                    || lines[i].len() - lines[i].trim_start().len() > indent)
            {
                block.push(lines[i].trim());
                i += 1;
            }
            exprs.push(block.join(" ").trim().to_string());
        } else {
            exprs.push(value.trim_matches(|c| c == '"' || c == '\'').to_string());
        }
    }
    exprs
}

/// `(panel title, expr)` pairs.
type PanelExprs = Vec<(String, String)>;
/// `(variable, metric, label)` of `label_values(metric, label)` variables.
type LabelVariables = Vec<(String, String, String)>;

/// `(panel title, expr)` of every target of a Grafana dashboard, and its `label_values`
/// variable queries as `(variable, metric, label)`.
fn dashboard_exprs(dashboard: &serde_json::Value) -> (PanelExprs, LabelVariables) {
    let mut exprs = Vec::new();
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    for p in panels {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or("?").to_string();
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "panel `{title}` has no target");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default().to_string();
            assert!(
                !expr.is_empty(),
                "panel `{title}` has a target without expr"
            );
            exprs.push((title.clone(), expr));
        }
    }
    let mut vars = Vec::new();
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_default();
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: only label_values(...) is checked", v["name"]));
        let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
        vars.push((
            v["name"].as_str().unwrap_or("?").to_string(),
            metric.trim().to_string(),
            label.trim().to_string(),
        ));
    }
    (exprs, vars)
}

fn dashboards() -> Vec<(PathBuf, serde_json::Value)> {
    let dir = repo().join("deploy/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect()
}

fn name(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

#[test]
fn the_tokenizer_finds_metrics_and_labels_and_skips_the_rest() {
    let refs = promql_refs(
        r#"histogram_quantile(0.99, sum by (job, le) (rate(fluxo_http_request_duration_seconds_bucket{route!="unmatched", status=~"5.."}[5m]))) > 0.25"#,
    );
    assert_eq!(
        refs.metrics,
        BTreeSet::from(["fluxo_http_request_duration_seconds_bucket".to_string()])
    );
    assert_eq!(
        refs.labels,
        BTreeSet::from(["job", "le", "route", "status"].map(String::from))
    );
    let refs = promql_refs(
        r#"sum(rate(a_total{x="{not_a_label=1}"}[$__rate_interval])) / on (instance) group_left sum(b) and c offset 1h > bool 1e3"#,
    );
    assert_eq!(
        refs.metrics,
        BTreeSet::from(["a_total", "b", "c"].map(String::from))
    );
    assert_eq!(
        refs.labels,
        BTreeSet::from(["instance", "x"].map(String::from))
    );
}

#[test]
fn the_check_rejects_unknown_metrics_and_labels() {
    let families = fluxo::metrics::families();
    assert_eq!(
        check_expr("t", "sum(rate(fluxo_records_in_total[5m]))", &families),
        Vec::<String>::new()
    );
    assert_eq!(
        check_expr("t", "rate(fluxo_record_in_total[5m])", &families),
        vec!["t: metric `fluxo_record_in_total` in `rate(fluxo_record_in_total[5m])` is not exported by fluxo".to_string()]
    );
    assert_eq!(
        check_expr("t", r#"fluxo_risk_decisions_total{decison="REJECT"}"#, &families),
        vec![r#"t: label `decison` in `fluxo_risk_decisions_total{decison="REJECT"}` is not a label of {"fluxo_risk_decisions_total"}"#.to_string()]
    );
    // `le` belongs to buckets only.
    assert_eq!(
        check_expr(
            "t",
            "sum by (le) (fluxo_risk_decision_latency_seconds_count)",
            &families
        )
        .len(),
        1
    );
}

#[test]
fn every_metric_of_the_alert_rules_and_dashboards_is_exported() {
    let families = fluxo::metrics::families();
    let mut problems = Vec::new();

    let alerts_path = repo().join("deploy/prometheus/alerts.yml");
    let alerts = std::fs::read_to_string(&alerts_path).unwrap();
    let exprs = rule_exprs(&alerts);
    let rules = alerts
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert_eq!(exprs.len(), rules, "one expr per alert rule");
    assert!(rules >= 7, "alerts.yml has {rules} rules");
    for e in &exprs {
        problems.extend(check_expr(&name(&alerts_path), e, &families));
    }

    let boards = dashboards();
    assert_eq!(
        boards.len(),
        3,
        "pipeline, risk and consolidation dashboards"
    );
    let mut queried = BTreeSet::new();
    for (path, board) in &boards {
        let (exprs, vars) = dashboard_exprs(board);
        assert!(exprs.len() >= 5, "{}: {} targets", name(path), exprs.len());
        for (panel, e) in &exprs {
            let source = format!("{} panel `{panel}`", name(path));
            problems.extend(check_expr(&source, e, &families));
            queried.extend(promql_refs(e).metrics);
        }
        for (var, metric, label) in vars {
            match families.get(&metric) {
                Some(labels) if labels.contains(&label) => {}
                _ => problems.push(format!(
                    "{} variable `{var}`: `{metric}` has no label `{label}`",
                    name(path)
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The dashboards show the metrics issue 7 asks for.
    for m in [
        "fluxo_records_in_total",
        "fluxo_records_out_total",
        "fluxo_consumer_lag_records",
        "fluxo_records_dead_lettered_total",
        "fluxo_risk_decisions_total",
        "fluxo_risk_decision_latency_seconds_bucket",
        "fluxo_validator_breaker_state",
        "fluxo_consolidation_late_corrections_total",
        "fluxo_http_requests_total",
        "fluxo_http_request_duration_seconds_bucket",
    ] {
        assert!(queried.contains(m), "no dashboard queries {m}");
    }
}

/// `(family, kind)` of each `# TYPE` line of a Prometheus text scrape.
fn scraped_families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect()
}

#[test]
fn the_metrics_route_exports_the_listed_families_and_counts_api_requests() {
    use fluxo::api::{self, ApiState, Auth, Freshness};
    use fluxo::http::{self, AppState};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let store =
        fluxo::state::embedded::EmbeddedStore::open(&dir.path().join("views.redb")).unwrap();
    let auth = Auth::development();
    let token = auth.dev_token(std::time::Duration::from_secs(600)).unwrap();
    let router = http::ops_router(AppState {
        ready: Arc::new(AtomicBool::new(true)),
        broker: None,
    })
    .merge(api::router(ApiState {
        store: Arc::new(store),
        auth: Arc::new(auth),
        freshness: Arc::new(Freshness::now()),
        read_timeout: std::time::Duration::from_secs(5),
        reads: api::ReadGate::new(128),
    }));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    runtime.spawn(http::serve(listener, router, std::future::pending()));

    let bearer = format!("Bearer {token}");
    let authorized = [("Authorization", bearer.as_str())];
    let none: &[(&str, &str)] = &[];
    let asked = [
        ("/openapi.json", none, 200),
        ("/v1/risk-decisions/tx-1", none, 401),
        ("/v1/risk-decisions/tx-1", &authorized[..], 404),
        ("/v1/risk-decisions/tx-2", &authorized[..], 404),
        ("/no/such/route", none, 404),
    ];
    for (path, headers, status) in asked {
        let (code, _) = common::http_request(&addr, "GET", path, headers, "").unwrap();
        assert_eq!(code, status, "GET {path}");
    }
    let (code, text) = common::http_get(&addr, "/metrics").unwrap();
    assert_eq!(code, 200);

    for line in [
        r#"fluxo_http_requests_total{method="GET",route="/openapi.json",status="200"} 1"#,
        r#"fluxo_http_requests_total{method="GET",route="/v1/risk-decisions/{transaction_id}",status="401"} 1"#,
        r#"fluxo_http_requests_total{method="GET",route="/v1/risk-decisions/{transaction_id}",status="404"} 2"#,
        r#"fluxo_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"fluxo_http_request_duration_seconds_count{route="/v1/risk-decisions/{transaction_id}"} 3"#,
        r#"fluxo_http_request_duration_seconds_count{route="unmatched"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    // The ops routes themselves are not query API requests.
    assert!(!text.contains(r#"route="/metrics""#));

    let listed = fluxo::metrics::families();
    let scraped = scraped_families(&text);
    for (family, kind) in &scraped {
        assert!(
            listed.contains_key(family),
            "/metrics exports {family} ({kind}), which metrics::families() does not list"
        );
    }
    // Unlabelled metrics are in every scrape, from the start.
    let unlabelled: Vec<&String> = listed
        .iter()
        .filter(|(_, labels)| labels.is_empty())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        unlabelled,
        [
            "fluxo_consolidation_late_corrections_total",
            "fluxo_http_reads_in_flight",
            "fluxo_risk_decision_latency_seconds",
            "fluxo_risk_sla_breaches_total",
            "fluxo_validator_breaker_state",
        ]
        .iter()
        .collect::<Vec<_>>()
    );
    for family in unlabelled {
        assert!(
            scraped.contains_key(family),
            "{family} missing from /metrics"
        );
    }
    assert_eq!(scraped["fluxo_http_request_duration_seconds"], "histogram");
    assert_eq!(scraped["fluxo_risk_decision_latency_seconds"], "histogram");
    assert_eq!(scraped["fluxo_http_requests_total"], "counter");
    runtime.shutdown_background();
}
