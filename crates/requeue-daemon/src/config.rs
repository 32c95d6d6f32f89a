//! The daemon's configuration, derived from the `[requeue]` settings.

use std::time::Duration;

use dlq_core::RedrivePolicy;
use pipeline_core::settings::RequeueSettings;

/// Extra delay as a fraction of the redrive backoff, spread over items by their id (the same
/// value on every replica): a burst of failures does not come back as a burst.
pub const JITTER: f64 = 0.2;

/// How the daemon redrives and reconciles.
#[derive(Debug, Clone, PartialEq)]
pub struct RequeueConfig {
    /// When an item is redriven, deferred or parked.
    pub policy: RedrivePolicy,
    /// Most redrive decisions per second over all replicas (`None`: unlimited).
    pub rate_per_sec: Option<u32>,
    /// Items per atomic `redrive_due` call.
    pub batch_size: usize,
    /// Pause between sweeps that found nothing due.
    pub interval: Duration,
    /// A source without progress for this long, held by nothing in Redis, is enqueued again.
    pub reconcile_after: Duration,
    /// Most sources enqueued again per reconcile sweep.
    pub reconcile_batch: usize,
    /// Pause between reconcile sweeps.
    pub reconcile_interval: Duration,
    /// Whether redrives and parks are written to Postgres (only a benchmark turns this off).
    pub bookkeeping: bool,
}

impl RequeueConfig {
    /// The configuration of `[requeue]`.
    pub fn from_settings(s: &RequeueSettings) -> Self {
        Self {
            policy: RedrivePolicy {
                max_redrives: s.max_redrives,
                base: Duration::from_secs(s.redrive_base_delay_secs),
                cap: Duration::from_secs(s.redrive_max_delay_secs.max(s.redrive_base_delay_secs)),
                jitter: JITTER,
            },
            rate_per_sec: (s.rate_per_sec > 0).then_some(s.rate_per_sec),
            // dlq-core bounds one script's work; a zero batch would never redrive anything.
            batch_size: s.batch_size.clamp(1, 10_000),
            interval: Duration::from_millis(s.interval_ms.max(1)),
            reconcile_after: Duration::from_secs(s.reconcile_after_secs),
            reconcile_batch: s.reconcile_batch.max(1),
            reconcile_interval: Duration::from_secs(s.reconcile_interval_secs.max(1)),
            bookkeeping: true,
        }
    }
}
