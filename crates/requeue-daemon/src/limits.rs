//! Projects' queue limits copied from Postgres into Redis (`pipeline_ops::limits::sync_all`)
//! at start and then every `requeue.reconcile_interval_secs`, beside the reconciler: Redis
//! keeps no other copy of them, so this is what restores them after Redis lost its data
//! (their lanes would run at weight 1 with no cap meanwhile) and what gives shards added
//! since the last pass their share of each cap.
//!
//! Setting the limits a lane already has changes nothing, so replicas may do this at once.
//! A failed pass is logged and the next one tries again; it never stops the daemon.

use std::time::Duration;

use pipeline_ops::Services;
use tokio_util::sync::CancellationToken;

/// Copies every project's limits into Redis now and every `every` until `cancel` fires.
pub async fn run(services: Services, every: Duration, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        match pipeline_ops::limits::sync_all(&services).await {
            Ok(report) => {
                tracing::debug!(
                    applied = report.applied,
                    skipped = report.skipped,
                    "queue limits copied to Redis"
                );
            }
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "copying queue limits to Redis failed; retried next pass"
                );
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}
