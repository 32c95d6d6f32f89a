//! The requeue daemon: makes "retry" mean reprocessing.
//!
//! - [`Redriver`]: automatic redrive of transient DLQ items under a [`RequeueConfig`] policy
//!   (redrive count below a maximum, exponential backoff with jitter elapsed, a cluster-wide
//!   rate), in atomic batches (`dlq_core::Dlq::redrive_due`); items over the maximum are
//!   parked. Every redrive and park is recorded in Postgres (source status, `job_events`,
//!   job progress), one transaction per batch.
//! - [`Reconciler`]: sources in flight for too long that nothing in Redis holds are enqueued
//!   again, so Redis losing its data loses no work.
//! - [`partitions`]: the event trail's monthly partitions, created ahead and dropped past
//!   the `[events]` retention.
//! - [`schedules`]: scheduled recrawls started when due (`crawl_schedules`).
//! - [`limits`]: projects' queue limits copied from Postgres into Redis at start and every
//!   reconcile interval (Redis keeps no other copy).
//! - [`run`]: these loops plus the cluster-wide queue and DLQ gauges ([`metrics`]), until
//!   cancelled.
//!
//! Any number of replicas may run at once: each batch is one Redis script, so no item is
//! redriven twice, and the reconciler claims a source in Postgres before enqueuing it.

mod bookkeeping;
mod clock;
pub mod config;
mod error;
pub mod limits;
pub mod metrics;
pub mod partitions;
pub mod reconcile;
pub mod redrive;
pub mod schedules;

use std::time::Duration;

use pipeline_ops::Services;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use bookkeeping::ACTOR;
pub use clock::{RateLimit, redis_now_ms};
pub use config::RequeueConfig;
pub use error::RequeueError;
pub use reconcile::{ReconcileReport, Reconciler};
pub use redrive::{Redriver, SweepReport};

/// How often the queue, DLQ and pause gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the redrive loop, the reconciler, partition maintenance, scheduled recrawls, the
/// copy of queue limits into Redis and the gauges until `cancel` fires, then waits for them
/// to finish their current batch for at most `drain` (a batch is atomic in Redis, and a
/// schedule's run is one transaction, so stopping between batches loses nothing). Returns whether they drained in time.
pub async fn run(
    services: &Services,
    config: RequeueConfig,
    cancel: CancellationToken,
    drain: Duration,
) -> bool {
    let tracker = TaskTracker::new();
    let redriver = Redriver::new(services.clone(), config.clone());
    let limits_every = config.reconcile_interval;
    let reconciler = Reconciler::new(services.clone(), config);
    let c = cancel.clone();
    tracker.spawn(async move { redriver.run(c).await });
    let c = cancel.clone();
    tracker.spawn(async move { reconciler.run(c).await });
    tracker.spawn(partitions::run(
        services.db.clone(),
        services.settings.events.clone(),
        cancel.clone(),
    ));
    tracker.spawn(schedules::run(services.clone(), cancel.clone()));
    tracker.spawn(limits::run(services.clone(), limits_every, cancel.clone()));
    tracker.spawn(metrics::run_gauges(
        services.clone(),
        GAUGE_INTERVAL,
        cancel.clone(),
    ));
    tracker.close();
    cancel.cancelled().await;
    pipeline_core::shutdown::drain_within(drain, tracker.wait()).await
}
