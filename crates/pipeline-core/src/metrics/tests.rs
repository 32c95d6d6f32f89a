//! The catalogue against the code that records metrics, and what start-up registers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::catalogue::{FAMILIES, PROCESSES};
use super::*;

pub(super) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(super) fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every described series by name, with its kind.
pub(super) fn described() -> BTreeMap<&'static str, &'static str> {
    let mut all = BTreeMap::new();
    for (kind, list) in [
        ("counter", COUNTERS),
        ("gauge", GAUGES),
        ("histogram", HISTOGRAMS),
    ] {
        for m in list {
            assert!(
                all.insert(m.name, kind).is_none(),
                "{} listed twice",
                m.name
            );
        }
    }
    for m in PROCESS {
        assert!(
            all.insert(m.name, m.kind).is_none(),
            "{} listed twice",
            m.name
        );
    }
    all
}

pub(super) fn find(name: &str) -> Option<&'static Metric> {
    COUNTERS
        .iter()
        .chain(GAUGES)
        .chain(HISTOGRAMS)
        .find(|m| m.name == name)
}

/// One `metrics::counter!/gauge!/histogram!` call of the workspace's code with a literal
/// name: its kind, name, and labels (with the value when it is a literal).
struct Call {
    kind: &'static str,
    name: String,
    labels: Vec<(String, Option<String>)>,
    at: PathBuf,
}

fn calls() -> Vec<Call> {
    let mut out = Vec::new();
    let mut stack = vec![workspace().join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source tree") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("readable source");
                for kind in ["counter", "gauge", "histogram"] {
                    let needle = format!("metrics::{kind}!(");
                    for (i, _) in text.match_indices(&needle) {
                        let args = macro_args(&text[i + needle.len()..]);
                        let Some(name) = args
                            .trim_start()
                            .strip_prefix('"')
                            .and_then(|r| r.split('"').next())
                        else {
                            // A name held in a variable (the catalogue's own registration).
                            continue;
                        };
                        out.push(Call {
                            kind,
                            name: name.to_owned(),
                            labels: labels_of(args),
                            at: path.clone(),
                        });
                    }
                }
            }
        }
    }
    out
}

/// The text up to the `)` that closes a macro call whose `(` was just passed.
fn macro_args(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    text
}

/// The `"label" => value` pairs of a macro call's arguments.
fn labels_of(args: &str) -> Vec<(String, Option<String>)> {
    let mut labels = Vec::new();
    let mut rest = args;
    while let Some(i) = rest.find("=>") {
        let label = rest[..i]
            .trim_end()
            .strip_suffix('"')
            .and_then(|b| b.rsplit('"').next())
            .unwrap_or("?");
        let value = rest[i + 2..]
            .trim_start()
            .strip_prefix('"')
            .and_then(|a| a.split('"').next());
        labels.push((label.to_owned(), value.map(str::to_owned)));
        rest = &rest[i + 2..];
    }
    labels
}

/// Every metric the workspace's code records is described with the same kind and the same
/// labels, and a literal label value is one the catalogue lists, so `/metrics` never shows
/// a series without `# HELP`, and the catalogue's labels (hence the docs') are the code's.
#[test]
fn every_recorded_metric_is_described() {
    let calls = calls();
    assert!(calls.len() > 40, "the scan found the call sites");
    let kinds = described();
    let mut wrong = Vec::new();
    for c in &calls {
        let at = c.at.display();
        if kinds.get(c.name.as_str()) != Some(&c.kind) {
            wrong.push(format!(
                "{} {} is not described as a {0} ({at})",
                c.kind, c.name
            ));
            continue;
        }
        let m = find(&c.name).expect("described");
        let want: BTreeSet<&str> = m.labels.iter().map(|(l, _)| *l).collect();
        let got: BTreeSet<&str> = c.labels.iter().map(|(l, _)| l.as_str()).collect();
        if want != got {
            wrong.push(format!(
                "{}: labels {got:?}, described {want:?} ({at})",
                c.name
            ));
        }
        for (label, value) in &c.labels {
            let listed = m.labels.iter().find(|(l, _)| l == label).map(|(_, v)| *v);
            let known = match (listed, value) {
                (Some(Values::Fixed(values)), Some(v)) => values.contains(&v.as_str()),
                (Some(Values::Families | Values::OwnFamily), Some(v)) => {
                    FAMILIES.contains(&v.as_str())
                }
                _ => true,
            };
            if !known {
                wrong.push(format!(
                    "{}: {label}={value:?} is not listed ({at})",
                    c.name
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn names_follow_the_conventions() {
    for m in COUNTERS.iter().chain(GAUGES).chain(HISTOGRAMS) {
        assert!(
            m.name.starts_with("pipeline_"),
            "{} lacks the prefix",
            m.name
        );
        assert!(
            !m.help.is_empty() && !m.exported_by.is_empty(),
            "{}",
            m.name
        );
        for p in m.exported_by {
            assert!(PROCESSES.contains(p), "{}: unknown process {p}", m.name);
        }
        // A state that sums the others would double every `sum`.
        for (label, values) in m.labels {
            if let Values::Fixed(values) = values {
                assert!(!values.contains(&"total"), "{}: {label}=total", m.name);
            }
        }
    }
    for m in COUNTERS {
        assert!(m.name.ends_with("_total"), "{}", m.name);
    }
    for m in GAUGES.iter().chain(HISTOGRAMS) {
        assert!(!m.name.ends_with("_total"), "{}", m.name);
    }
    for m in PROCESS {
        assert!(m.name.starts_with("process_"), "{}", m.name);
    }
    for p in PROCESSES {
        for f in super::catalogue::own_families(p) {
            assert!(FAMILIES.contains(f), "{p}: {f}");
        }
    }
}

fn rendered_after_start(process: &'static str) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        describe();
        metrics::gauge!("pipeline_build_info", "version" => VERSION, "process" => process).set(1.0);
        register_counters(process);
    });
    handle.render()
}

/// A fresh process shows its counters at zero, for every known label value and only for
/// its own family where that is what it counts, before anything happened.
#[test]
fn start_registers_each_process_counters_at_zero() {
    let scrape = rendered_after_start("scrape-worker");
    for line in [
        r#"pipeline_scrape_fetches_total{outcome="ok"} 0"#,
        r#"pipeline_scrape_fetches_total{outcome="http_5xx"} 0"#,
        r#"pipeline_crawl_links_total{outcome="nofollow"} 0"#,
        r#"pipeline_messages_total{family="scrape",outcome="dead_lettered"} 0"#,
        r#"pipeline_queue_reserved_total{family="scrape"} 0"#,
        r#"pipeline_queue_enqueued_total{family="extraction"} 0"#,
        "pipeline_scrape_politeness_waits_total 0",
        r#"pipeline_build_info{version=""#,
    ] {
        assert!(scrape.contains(line), "{line} missing:\n{scrape}");
    }
    assert!(scrape.contains("# HELP pipeline_scrape_fetches_total Page fetches"));
    // Its own family only, and nothing another process counts.
    assert!(!scrape.contains(r#"pipeline_messages_total{family="extraction""#));
    assert!(!scrape.contains("pipeline_requeue_"));
    assert!(!scrape.contains("pipeline_http_requests_total"));

    let requeue = rendered_after_start("requeue-daemon");
    for family in FAMILIES {
        for name in [
            "pipeline_requeue_redriven_total",
            "pipeline_requeue_parked_total",
            "pipeline_requeue_reconciled_total",
        ] {
            let line = format!(r#"{name}{{family="{family}"}} 0"#);
            assert!(requeue.contains(&line), "{line} missing:\n{requeue}");
        }
    }
    assert!(requeue.contains(r#"pipeline_event_partitions_total{change="dropped"} 0"#));
    assert!(!requeue.contains("pipeline_messages_total"));

    let api = rendered_after_start("pipeline-api");
    assert!(
        api.contains("pipeline_api_connections_refused_total 0"),
        "{api}"
    );
    assert!(api.contains(r#"pipeline_dlq_redriven_total{family="extraction",by="console"} 0"#));
    assert!(api.contains(r#"process="pipeline-api""#));
    assert!(api.contains(&format!(r#"version="{VERSION}""#)));
}
