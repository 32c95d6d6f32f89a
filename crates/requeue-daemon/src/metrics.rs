//! The daemon's metrics (rendered by the probe server's `/metrics`):
//! `requeue_redriven_total{family}`, `requeue_parked_total{family}`,
//! `requeue_reconciled_total{family}`, `requeue_bookkeeping_failures_total{family}`, and the
//! gauges `dlq_items{family,state}` (`state` = `total`, `parked`, `transient`, `permanent`).

use std::time::Duration;

use pipeline_ops::{Family, Services};
use tokio_util::sync::CancellationToken;

/// Counts one redrive batch.
pub fn record_sweep(family: Family, redriven: u64, parked: u64) {
    if redriven > 0 {
        metrics::counter!("requeue_redriven_total", "family" => family.as_str())
            .increment(redriven);
    }
    if parked > 0 {
        metrics::counter!("requeue_parked_total", "family" => family.as_str()).increment(parked);
    }
}

/// Refreshes the DLQ size gauges of every family (O(1) reads each).
pub async fn refresh_dlq_gauges(services: &Services) {
    for family in Family::ALL {
        match services.dlq(family).stats().await {
            Ok(s) => {
                for (state, n) in [
                    ("total", s.total),
                    ("parked", s.parked),
                    ("transient", s.transient),
                    ("permanent", s.permanent),
                ] {
                    metrics::gauge!("dlq_items", "family" => family.as_str(), "state" => state)
                        .set(n as f64);
                }
            }
            // Swallowed on purpose: a gauge can wait for the next tick; /ready reports Redis.
            Err(err) => {
                tracing::debug!(error = %err, dlq = family.as_str(), "DLQ stats unavailable")
            }
        }
    }
}

/// Refreshes the gauges every `every` until `cancel` fires.
pub async fn run_gauges(services: Services, every: Duration, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        refresh_dlq_gauges(&services).await;
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}
