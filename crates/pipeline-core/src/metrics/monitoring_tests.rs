//! The catalogue against what operators read and run: the table of `docs/metrics.md`, the
//! Grafana dashboard and the alert rules (with their unit tests and Kubernetes copy).

use std::collections::{BTreeMap, BTreeSet};

use super::catalogue::PROCESSES;
use super::tests::{described, find, read};

/// `docs/metrics.md` has one row per series: name, kind, labels and exporters as listed
/// here, and no row for a series that does not exist.
#[test]
fn the_docs_table_matches_the_catalogue() {
    let doc = read("docs/metrics.md");
    let table = doc
        .split("\n## ")
        .find(|s| s.starts_with("Every series"))
        .expect("a section \"Every series\"");
    let kinds = described();
    let mut rows = BTreeMap::new();
    let mut wrong = Vec::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [name, kind, labels, by, meaning] = cells[..] else {
            wrong.push(format!("not five cells: {line}"));
            continue;
        };
        let name = name.trim_matches('`');
        rows.insert(name.to_owned(), ());
        let Some(want_kind) = kinds.get(name) else {
            wrong.push(format!("{name}: no such metric"));
            continue;
        };
        if kind != *want_kind {
            wrong.push(format!("{name}: kind {kind}, is {want_kind}"));
        }
        if meaning.is_empty() {
            wrong.push(format!("{name}: no meaning"));
        }
        let words = |cell: &str| -> BTreeSet<String> {
            cell.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let (want_labels, want_by): (BTreeSet<String>, BTreeSet<String>) = match find(name) {
            Some(m) => (
                m.labels.iter().map(|(l, _)| (*l).to_owned()).collect(),
                m.exported_by.iter().map(|p| (*p).to_owned()).collect(),
            ),
            None => (
                BTreeSet::new(),
                PROCESSES.iter().map(|p| (*p).to_owned()).collect(),
            ),
        };
        let got_labels: BTreeSet<String> = labels
            .split(',')
            .filter_map(|l| l.trim().strip_prefix('`')?.split('`').next())
            .map(str::to_owned)
            .collect();
        if got_labels != want_labels {
            wrong.push(format!(
                "{name}: labels {got_labels:?}, are {want_labels:?}"
            ));
        }
        let got_by = if by == "every process" {
            PROCESSES.iter().map(|p| (*p).to_owned()).collect()
        } else {
            words(by)
        };
        if got_by != want_by {
            wrong.push(format!("{name}: exported by {got_by:?}, is {want_by:?}"));
        }
    }
    for name in kinds.keys() {
        if !rows.contains_key(*name) {
            wrong.push(format!("{name}: no row in docs/metrics.md"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The series names a PromQL text mentions (`pipeline_*` and `process_*`), with a
/// histogram's `_bucket`, `_sum` and `_count` taken back to the histogram.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let kinds = described();
    promql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("pipeline_") || w.starts_with("process_"))
        .map(|w| {
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = w.strip_suffix(suffix)
                    && kinds.get(base) == Some(&"histogram")
                {
                    return base.to_owned();
                }
            }
            w.to_owned()
        })
        .collect()
}

/// Every `expr` of a Grafana dashboard, wherever it sits in the panels.
fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The cluster-wide gauges are read from Redis by every requeue daemon replica alike: a
/// `sum` over replicas would multiply them.
const CLUSTER_WIDE: [&str; 3] = [
    "pipeline_queue_depth",
    "pipeline_dlq_items",
    "pipeline_family_paused",
];

fn check_queries(file: &str, queries: &[String], wrong: &mut Vec<String>) -> BTreeSet<String> {
    let kinds = described();
    let mut used = BTreeSet::new();
    for q in queries {
        let names = metric_names(q);
        for n in &names {
            if !kinds.contains_key(n.as_str()) {
                wrong.push(format!("{file}: {n} is no metric (in `{q}`)"));
            }
        }
        if names.iter().any(|n| CLUSTER_WIDE.contains(&n.as_str())) && !q.contains("max by") {
            wrong.push(format!(
                "{file}: a cluster-wide gauge not under `max by`: `{q}`"
            ));
        }
        used.extend(names);
    }
    used
}

/// The dashboard parses, and every series it queries exists.
#[test]
fn the_dashboard_queries_existing_metrics() {
    let file = "deploy/monitoring/grafana-dashboard.json";
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    let mut wrong = Vec::new();
    let used = check_queries(file, &queries, &mut wrong);
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Each area of the system has a panel.
    for name in [
        "pipeline_messages_total",
        "pipeline_queue_depth",
        "pipeline_dlq_items",
        "pipeline_http_request_duration_seconds",
        "pipeline_scrape_fetches_total",
        "pipeline_requeue_parked_total",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(name), "{file} has no panel on {name}");
    }
}

/// The alert rules (`expr:` lines of both rule files) and the series of their unit tests
/// name existing metrics only.
#[test]
fn the_alert_rules_query_existing_metrics() {
    let mut wrong = Vec::new();
    for file in [
        "deploy/monitoring/alerts.yml",
        "deploy/monitoring/alerts.test.yml",
        "deploy/k8s/monitoring/prometheus-rule.yaml",
    ] {
        // An expression may continue on the lines after `expr: |`; the whole file is
        // scanned, and only rule expressions and test series hold metric names.
        let used = check_names_only(file, &read(file), &mut wrong);
        assert!(
            used.contains("pipeline_messages_total"),
            "{file}: names no metric"
        );
    }
    for file in [
        "deploy/monitoring/alerts.yml",
        "deploy/k8s/monitoring/prometheus-rule.yaml",
    ] {
        let text = read(file);
        for e in rule_exprs(&text) {
            check_queries(file, std::slice::from_ref(&e), &mut wrong);
        }
    }
    // Operators find every alert explained in the docs.
    let doc = read("docs/metrics.md");
    for line in read("deploy/monitoring/alerts.yml").lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ")
            && !doc.contains(&format!("| `{name}` |"))
        {
            wrong.push(format!("docs/metrics.md: no row for the alert {name}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

fn check_names_only(file: &str, text: &str, wrong: &mut Vec<String>) -> BTreeSet<String> {
    let kinds = described();
    let used = metric_names(text);
    for n in &used {
        if !kinds.contains_key(n.as_str()) {
            wrong.push(format!("{file}: {n} is no metric"));
        }
    }
    used
}

/// The rule expressions of a rules file: `expr: <one line>` or `expr: |` and the lines
/// indented below it.
fn rule_exprs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((indent, rest)) = line.split_once("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" && rest != "|-" && rest != ">" && rest != ">-" {
            out.push(rest.to_owned());
            continue;
        }
        let depth = indent.len();
        let mut expr = String::new();
        while let Some(next) = lines.peek() {
            let next_depth = next.len() - next.trim_start().len();
            if !next.trim().is_empty() && next_depth <= depth {
                break;
            }
            expr.push_str(next.trim());
            expr.push('\n');
            lines.next();
        }
        out.push(expr);
    }
    out
}
