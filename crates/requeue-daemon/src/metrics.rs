//! The daemon's metrics (rendered by the probe server's `/metrics`; `docs/metrics.md` has
//! them all): its counters `pipeline_requeue_redriven_total{family}`,
//! `pipeline_requeue_parked_total{family}`, `pipeline_requeue_reconciled_total{family}` and
//! `pipeline_requeue_bookkeeping_failures_total{family}`, and the cluster-wide gauges
//! `pipeline_queue_depth{family,state}`, `pipeline_dlq_items{family,state}` and
//! `pipeline_family_paused{family}`.
//!
//! The gauges describe Redis, not this process, so one kind of process publishes them: this
//! one, which watches the DLQs anyway. Workers and the API do not, or a `sum` over the
//! processes would count each queue once per replica. A second replica of this daemon reads
//! the same numbers, so dashboards and alerts aggregate the gauges with `max by`.

use std::time::Duration;

use pipeline_ops::{Family, Services};
use tokio_util::sync::CancellationToken;

/// Counts one redrive batch.
pub fn record_sweep(family: Family, redriven: u64, parked: u64) {
    if redriven > 0 {
        metrics::counter!("pipeline_requeue_redriven_total", "family" => family.as_str())
            .increment(redriven);
    }
    if parked > 0 {
        metrics::counter!("pipeline_requeue_parked_total", "family" => family.as_str())
            .increment(parked);
    }
}

/// Refreshes the cluster-wide gauges of every family: queue depth by state, DLQ items by
/// state, paused (a few O(1) Redis reads per family).
pub async fn refresh_gauges(services: &Services) {
    match pipeline_ops::queues::snapshot(services).await {
        Ok(snapshot) => pipeline_ops::queues::publish(&snapshot),
        // Swallowed on purpose: a gauge can wait for the next tick; /ready reports Redis.
        Err(err) => tracing::debug!(error = %err, "queue gauges not refreshed"),
    }
}

/// Refreshes the gauges every `every` until `cancel` fires.
pub async fn run_gauges(services: Services, every: Duration, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        refresh_gauges(&services).await;
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}
