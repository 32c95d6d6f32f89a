//! What every process exports on `/metrics`: the Prometheus recorder, the catalogue of
//! series ([`catalogue`], explained for operators in `docs/metrics.md`), their registration
//! at start-up ([`start`]), and the `process_*` series read from `/proc` at scrape time.
//!
//! The rules the catalogue keeps:
//!
//! - One prefix: every series is `pipeline_*`, besides the standard `process_*`.
//! - No series sums its own parts: a total is `sum` over the parts, never a label value
//!   beside them.
//! - A `sum` over replicas is right. A series counts what its own process did, except the
//!   three cluster-wide gauges (`pipeline_queue_depth`, `pipeline_dlq_items`,
//!   `pipeline_family_paused`), which describe Redis rather than a process: only the requeue
//!   daemon exports them, and since a second replica of it reads the same numbers, they are
//!   aggregated with `max by (family, state)`, never `sum`.
//! - Counters exist from start-up at zero, for every label value known in advance, so
//!   `rate()` and `increase()` see the first event instead of taking it as the series' start.
//! - Durations and sizes are histograms (buckets), not summaries: buckets add up across
//!   replicas (`histogram_quantile` over `sum by (le)`), quantiles cannot.

pub mod catalogue;
mod process;

#[cfg(test)]
mod monitoring_tests;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use catalogue::{COUNTERS, GAUGES, HISTOGRAMS, Metric, PROCESS, Values};

/// The version every process reports in `pipeline_build_info` (and `--version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets of every `*_seconds` histogram: 1 ms to 2 min, covering a queue round trip, an
/// API answer, a page fetch and a slow embedding batch.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Buckets of the count histograms (texts per embedding batch, chunks per source).
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// The process-wide Prometheus recorder, installed on first use, with every series of the
/// catalogue described (so each has its `# HELP`).
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("pipeline_embedding_batch_size".into()),
                        COUNT_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("pipeline_extractions_per_source".into()),
                        COUNT_BUCKETS,
                    )
                })
                .expect("bucket lists are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, which this process never does;
            // the handle still renders this recorder's (then empty) registry.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// Installs the recorder (see [`handle`]) and registers what `process` (a binary name of
/// [`catalogue::PROCESSES`]) exports from its first scrape: `pipeline_build_info` and
/// [`register_counters`]. Call it once at start-up, before serving `/metrics`.
pub fn start(process: &'static str) {
    handle();
    metrics::gauge!("pipeline_build_info", "version" => VERSION, "process" => process).set(1.0);
    register_counters(process);
}

/// Registers, at zero, every counter `process` exports, for every combination of its
/// labels' known values (counters with an open label, such as a route, appear on first use).
pub fn register_counters(process: &str) {
    for metric in COUNTERS.iter().filter(|m| m.exported_by.contains(&process)) {
        for labels in label_sets(metric, process) {
            metrics::counter!(metric.name, labels).increment(0);
        }
    }
}

/// Every combination of `metric`'s label values in `process`; none when a label is open.
fn label_sets(metric: &Metric, process: &str) -> Vec<Vec<metrics::Label>> {
    let mut sets = vec![Vec::new()];
    for &(label, values) in metric.labels {
        let values: &[&'static str] = match values {
            Values::Fixed(v) => v,
            Values::Families => &catalogue::FAMILIES,
            Values::OwnFamily => catalogue::own_families(process),
            Values::Open => return Vec::new(),
        };
        sets = sets
            .into_iter()
            .flat_map(|set| {
                values.iter().map(move |&v| {
                    let mut set = set.clone();
                    set.push(metrics::Label::new(label, v));
                    set
                })
            })
            .collect();
    }
    sets
}

/// `/metrics`: the recorder's series, then the `process_*` series read now.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    process::Reading::now().render_into(&mut out);
    out
}

/// Gives every series of the catalogue its help text (and unit), in the current recorder.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for m in COUNTERS {
        describe_counter!(m.name, m.help);
    }
    for m in GAUGES {
        describe_gauge!(m.name, m.help);
    }
    for m in HISTOGRAMS {
        if m.name.ends_with("_seconds") {
            describe_histogram!(m.name, Unit::Seconds, m.help);
        } else {
            describe_histogram!(m.name, m.help);
        }
    }
}
