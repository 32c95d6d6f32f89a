//! Maintenance of the event trail's monthly partitions (`[events]` settings): creates the
//! coming months' partitions and drops those past retention, at start and then periodically.
//!
//! The daemon does this because it is the one process that always runs and already owns
//! background housekeeping (redrives, reconciliation). An insert never depends on it: a row
//! whose month has no partition lands in the default partition, and the next run moves it.

use std::time::Duration;

use pipeline_core::settings::EventsSettings;
use pipeline_store::events::{PartitionChange, ensure_partitions};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::RequeueError;

/// Pause after a failed run, shorter than the interval: a database that was down at start
/// should not leave next month without a partition for an hour.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(60);

/// One maintenance run.
pub async fn maintain(
    db: &PgPool,
    settings: &EventsSettings,
) -> Result<Vec<PartitionChange>, RequeueError> {
    let changes = ensure_partitions(
        db,
        settings.partitions_ahead_months,
        settings.retention_days,
    )
    .await?;
    for c in &changes {
        tracing::info!(partition = %c.partition_name, change = %c.change, "event partition maintained");
        metrics::counter!("pipeline_event_partitions_total", "change" => c.change.clone())
            .increment(1);
    }
    Ok(changes)
}

/// Runs [`maintain`] now and every `maintenance_interval_secs` until `cancel` fires.
pub async fn run(db: PgPool, settings: EventsSettings, cancel: CancellationToken) {
    let interval = Duration::from_secs(settings.maintenance_interval_secs.max(1));
    while !cancel.is_cancelled() {
        let pause = match maintain(&db, &settings).await {
            Ok(_) => interval,
            Err(err) => {
                tracing::error!(
                    error = format!("{err:#}"),
                    "event partition maintenance failed"
                );
                RETRY_AFTER_ERROR.min(interval)
            }
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
