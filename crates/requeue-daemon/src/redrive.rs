//! The automatic redrive loop: each sweep asks every family's DLQ for its due items
//! (`Dlq::redrive_due`, one atomic script per batch, safe with any number of replicas),
//! then records what happened in Postgres, one transaction per batch.

use std::time::Duration;

use dlq_core::{DueAction, DueOutcome};
use pipeline_ops::Services;
use tokio_util::sync::CancellationToken;

use crate::bookkeeping;
use crate::clock::{RateLimit, redis_now_ms};
use crate::config::RequeueConfig;
use crate::error::RequeueError;

/// What one sweep did, summed over families.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Items moved back to their work queue.
    pub redriven: u64,
    /// Items parked (redrive limit reached).
    pub parked: u64,
    /// Items whose backoff had not elapsed, re-scored for later.
    pub deferred: u64,
    /// Malformed entries taken out of automatic redrive.
    pub malformed: u64,
    /// Whether the rate limit stopped the sweep early.
    pub rate_limited: bool,
    /// Whether some family returned a full batch (more may be due right now).
    pub full: bool,
}

impl SweepReport {
    /// Items acted on.
    pub fn total(&self) -> u64 {
        self.redriven + self.parked + self.deferred + self.malformed
    }
}

/// Automatic redrive over every family of `services`.
#[derive(Clone)]
pub struct Redriver {
    services: Services,
    config: RequeueConfig,
    rate: Option<RateLimit>,
}

impl Redriver {
    /// A redriver over `services` (its DLQs, its Postgres pool) with `config`.
    pub fn new(services: Services, config: RequeueConfig) -> Self {
        let rate = config
            .rate_per_sec
            .map(|r| RateLimit::new(&services.settings.redis.key_prefix, r));
        Self {
            services,
            config,
            rate,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &RequeueConfig {
        &self.config
    }

    /// One sweep: at most one batch per family. Each batch is atomic in Redis; its
    /// bookkeeping follows in one Postgres transaction.
    pub async fn sweep(&self) -> Result<SweepReport, RequeueError> {
        let now = redis_now_ms(&self.services.redis).await?;
        let mut report = SweepReport::default();
        for family in self.services.families() {
            let Some(dlq) = self.services.dlq(family) else {
                continue;
            };
            let mut limit = self.config.batch_size;
            if let Some(rate) = &self.rate {
                let want = u32::try_from(limit).unwrap_or(u32::MAX);
                let granted = rate.claim(&self.services.redis, now, want).await?;
                if granted == 0 {
                    report.rate_limited = true;
                    break;
                }
                limit = granted as usize;
            }
            let actions = dlq.redrive_due(now, limit, &self.config.policy).await?;
            let done = self.settle(family, &actions, &mut report).await;
            if let Some(rate) = &self.rate {
                // Only redrives spend the budget; what this batch did not redrive goes back.
                let used = actions
                    .iter()
                    .filter(|a| matches!(a.outcome, DueOutcome::Redriven { .. }))
                    .count();
                rate.give_back(&self.services.redis, now, (limit - used) as u32)
                    .await?;
                if limit < self.config.batch_size {
                    report.rate_limited = true;
                }
            }
            if actions.len() >= limit {
                report.full = true;
            }
            done?;
        }
        Ok(report)
    }

    /// Counts, logs and records one batch's actions.
    async fn settle(
        &self,
        family: &'static str,
        actions: &[DueAction],
        report: &mut SweepReport,
    ) -> Result<(), RequeueError> {
        let mut redriven = Vec::new();
        let mut parked = Vec::new();
        for action in actions {
            match (&action.outcome, &action.item) {
                (DueOutcome::Redriven { enqueued }, Some(item)) => {
                    redriven.push((item, *enqueued));
                }
                (DueOutcome::Redriven { .. }, None) => {
                    // dlq-core logged the raw text; the message is on the queue regardless.
                    report.redriven += 1;
                }
                (DueOutcome::Parked, item) => {
                    report.parked += 1;
                    if let Some(item) = item {
                        parked.push(item);
                    }
                }
                (DueOutcome::Deferred { .. }, _) => report.deferred += 1,
                (DueOutcome::Malformed, _) => report.malformed += 1,
            }
        }
        report.redriven += redriven.len() as u64;
        for (item, enqueued) in &redriven {
            tracing::info!(job_id = ?item.job_id, source_id = ?item.source_id, dlq = family,
                retry_count = item.retry_count + 1, enqueued, "redriven");
        }
        for item in &parked {
            tracing::warn!(job_id = ?item.job_id, source_id = ?item.source_id, dlq = family,
                retry_count = item.retry_count, error = %item.error,
                "parked: redrive limit reached; only a person retries it now");
        }
        crate::metrics::record_sweep(family, redriven.len() as u64, parked.len() as u64);
        if !self.config.bookkeeping {
            return Ok(());
        }
        let db = &self.services.db;
        let result = async {
            if !redriven.is_empty() {
                bookkeeping::record_redriven(db, family, &redriven).await?;
            }
            if !parked.is_empty() {
                bookkeeping::record_parked(db, family, &parked).await?;
            }
            Ok::<_, RequeueError>(())
        }
        .await;
        if let Err(err) = &result {
            // The Redis side is done and cannot be undone; the statuses catch up when the
            // workers process the redriven messages (parks stay visible in the DLQ).
            tracing::error!(error = %err, dlq = family, redriven = redriven.len(),
                parked = parked.len(), "redrive bookkeeping failed");
            metrics::counter!("requeue_bookkeeping_failures_total", "family" => family)
                .increment(1);
        }
        result
    }

    /// Sweeps until `cancel` fires: at once again after a full batch, else after the
    /// configured interval (or at the next second when the rate limit stopped it). An error
    /// is logged and retried after a back-off that doubles up to 30 s.
    pub async fn run(&self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        while !cancel.is_cancelled() {
            let pause = match self.sweep().await {
                Ok(report) => {
                    backoff = Duration::from_millis(500);
                    if report.rate_limited {
                        Duration::from_millis(1000 - (now_ms_local() % 1000) as u64)
                            .min(self.config.interval)
                    } else if report.full {
                        Duration::ZERO
                    } else {
                        self.config.interval
                    }
                }
                Err(err) => {
                    tracing::error!(
                        error = format!("{err:#}"),
                        retry_in_ms = backoff.as_millis() as u64,
                        "redrive sweep failed"
                    );
                    let pause = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    pause
                }
            };
            if pause.is_zero() {
                // Let the other tasks (probes, reconciler) run between back-to-back batches.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Local milliseconds within the second, only to aim the rate limiter's wait at the next
/// window; a skew costs at most one interval.
fn now_ms_local() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}
