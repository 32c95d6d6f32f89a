//! Scheduled recrawls (`crawl_schedules`): every `crawl.schedule_check_secs` the daemon starts
//! the runs that are due and whose previous run has ended
//! (`pipeline_ops::crawl::start_due_recrawls`). Any number of replicas may do this: each
//! takes due rows with `FOR UPDATE SKIP LOCKED` and creates a run and advances its schedule in
//! one transaction, so a run is started once.

use std::time::Duration;

use pipeline_ops::Services;
use tokio_util::sync::CancellationToken;

/// Runs started per transaction; more due runs wait for the next check (or the next batch,
/// which follows at once).
pub const BATCH: i64 = 20;

/// Starts the due runs until none is left; how many were started.
///
/// # Errors
/// Postgres.
pub async fn start_due(services: &Services) -> Result<usize, pipeline_store::StoreError> {
    let mut total = 0;
    loop {
        let started = pipeline_ops::crawl::start_due_recrawls(services, BATCH).await?;
        total += started.len();
        metrics::counter!("pipeline_scheduled_recrawls_total").increment(started.len() as u64);
        if (started.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// Runs [`start_due`] now and every `crawl.schedule_check_secs` until `cancel` fires.
pub async fn run(services: Services, cancel: CancellationToken) {
    let every = Duration::from_secs(services.settings.crawl.schedule_check_secs.max(1));
    while !cancel.is_cancelled() {
        if let Err(err) = start_due(&services).await {
            tracing::error!(error = %err, "starting scheduled recrawls failed");
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}
