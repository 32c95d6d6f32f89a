//! The automatic redrive loop: each sweep asks every family's DLQ for its due items
//! (`Dlq::redrive_due`, one atomic script per batch, safe with any number of replicas),
//! then records what happened in Postgres, one transaction per batch.

use std::time::Duration;

use dlq_core::{DueAction, DueOutcome};
use pipeline_ops::{Family, Services};
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

/// Most batches per family in one sweep (the sweep ends earlier when a batch is not full).
pub const BATCHES_PER_SWEEP: usize = 8;

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

    /// Waits until the job-progress refreshes of every redrive so far have run.
    pub async fn flush_progress(&self) {
        self.services.progress.settled().await;
    }

    /// The configuration in use.
    pub fn config(&self) -> &RequeueConfig {
        &self.config
    }

    /// One sweep: up to [`BATCHES_PER_SWEEP`] batches per family, each atomic in Redis,
    /// each recorded in one Postgres transaction. The bookkeeping of a batch runs while
    /// Redis redrives the next one (Postgres and Redis work at once, as they would with two
    /// replicas); when the sweep returns, every batch it redrove is recorded.
    pub async fn sweep(&self) -> Result<SweepReport, RequeueError> {
        let now = redis_now_ms(&self.services.redis).await?;
        let mut report = SweepReport::default();
        for family in Family::ALL {
            let dlq = self.services.dlq(family);
            // Whatever stops the family's batches, the last one redriven is recorded.
            let mut last = None;
            let swept = self
                .sweep_family(family, dlq, now, &mut report, &mut last)
                .await;
            let recorded = self.record(family, last).await;
            let budget_spent = swept?;
            recorded?;
            if budget_spent {
                break;
            }
        }
        // While full batches keep coming the refreshes run in the background, coalesced;
        // a sweep that found the backlog done leaves every job it touched up to date.
        if !report.full {
            self.flush_progress().await;
        }
        Ok(report)
    }

    /// Up to [`BATCHES_PER_SWEEP`] batches of one family; each batch's bookkeeping runs
    /// beside the next batch's script. Leaves the last batch, not yet recorded, in `last`.
    /// Returns whether the rate budget of this second is spent (no family gets more).
    async fn sweep_family(
        &self,
        family: Family,
        dlq: &dlq_core::Dlq,
        now: i64,
        report: &mut SweepReport,
        last: &mut Option<Vec<DueAction>>,
    ) -> Result<bool, RequeueError> {
        for _ in 0..BATCHES_PER_SWEEP {
            let Some(limit) = self.claim_budget(now).await? else {
                report.rate_limited = true;
                return Ok(true);
            };
            let (actions, recorded) = tokio::join!(
                dlq.redrive_due(now, limit, &self.config.policy),
                self.record(family, last.take()),
            );
            let actions = actions?;
            self.account(family, &actions, report);
            let full = actions.len() >= limit;
            let actions = last.insert(actions);
            self.give_back_budget(now, limit, actions).await?;
            recorded?;
            report.rate_limited |= limit < self.config.batch_size;
            if !full || report.rate_limited {
                return Ok(false);
            }
        }
        report.full = true;
        Ok(false)
    }

    /// The batch size this sweep may use: the configured one without a rate limit, else
    /// what the current second still grants (`None`: nothing).
    async fn claim_budget(&self, now: i64) -> Result<Option<usize>, RequeueError> {
        let Some(rate) = &self.rate else {
            return Ok(Some(self.config.batch_size));
        };
        let want = u32::try_from(self.config.batch_size).unwrap_or(u32::MAX);
        let granted = rate.claim(&self.services.redis, now, want).await?;
        Ok((granted > 0).then_some(granted as usize))
    }

    /// Only redrives spend the rate budget: what a batch of `limit` did not redrive goes
    /// back.
    async fn give_back_budget(
        &self,
        now: i64,
        limit: usize,
        actions: &[DueAction],
    ) -> Result<(), RequeueError> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        let used = actions
            .iter()
            .filter(|a| matches!(a.outcome, DueOutcome::Redriven { .. }))
            .count();
        rate.give_back(&self.services.redis, now, (limit - used) as u32)
            .await
    }

    /// Counts and logs one batch's actions.
    fn account(&self, family: Family, actions: &[DueAction], report: &mut SweepReport) {
        let (mut redriven, mut parked) = (0u64, 0u64);
        for action in actions {
            match (&action.outcome, &action.item) {
                (DueOutcome::Redriven { enqueued }, item) => {
                    redriven += 1;
                    // Without an item dlq-core logged the raw text; the message is on the
                    // queue regardless.
                    if let Some(item) = item {
                        tracing::info!(
                            job_id = item.job_id.map(tracing::field::display),
                            source_id = item.source_id.map(tracing::field::display),
                            dlq = family.as_str(),
                            retry_count = item.retry_count + 1,
                            enqueued,
                            "redriven"
                        );
                    }
                }
                (DueOutcome::Parked, item) => {
                    parked += 1;
                    if let Some(item) = item {
                        tracing::warn!(job_id = item.job_id.map(tracing::field::display), source_id = item.source_id.map(tracing::field::display),
                            dlq = family.as_str(), retry_count = item.retry_count, error = %item.error,
                            "parked: redrive limit reached; only a person retries it now");
                    }
                }
                (DueOutcome::Deferred { .. }, _) => report.deferred += 1,
                (DueOutcome::Malformed, _) => report.malformed += 1,
            }
        }
        report.redriven += redriven;
        report.parked += parked;
        crate::metrics::record_sweep(family, redriven, parked);
    }

    /// Records one batch's redrives and parks in Postgres (nothing for `None`), then
    /// releases the redriven messages, which the DLQ held back until now: a worker cannot
    /// start one (and write its events) before its `redriven` event is committed. A failed
    /// booking still releases them; the Redis side is done either way.
    async fn record(
        &self,
        family: Family,
        actions: Option<Vec<DueAction>>,
    ) -> Result<(), RequeueError> {
        let Some(actions) = actions else {
            return Ok(());
        };
        let booked = self.book(family, &actions).await;
        let ids: Vec<&str> = actions
            .iter()
            .filter(|a| matches!(a.outcome, DueOutcome::Redriven { .. }))
            .map(|a| a.id.as_str())
            .collect();
        self.services.dlq(family).release(&ids).await?;
        booked
    }

    /// The Postgres side of [`Self::record`].
    async fn book(&self, family: Family, actions: &[DueAction]) -> Result<(), RequeueError> {
        if !self.config.bookkeeping {
            return Ok(());
        }
        let mut redriven = Vec::new();
        let mut parked = Vec::new();
        for action in actions {
            match (&action.outcome, &action.item) {
                (DueOutcome::Redriven { enqueued }, Some(item)) => {
                    redriven.push((item, *enqueued));
                }
                (DueOutcome::Parked, Some(item)) => parked.push(item),
                _ => {}
            }
        }
        let db = &self.services.db;
        let result = async {
            if !redriven.is_empty() {
                let outcome = bookkeeping::record_redriven(db, family, &redriven).await?;
                // A redrive moves a source from a transient `dead_lettered` back to waiting:
                // neither is terminal, so it cannot finish a job and only its counters move.
                // The refresh is deferred and coalesced the way stored pages' are (a batch of
                // 1,000 items touches up to 1,000 jobs); parks can finish a job and are
                // refreshed at once.
                self.services
                    .progress
                    .refresh_in_background(db, outcome.jobs);
            }
            if !parked.is_empty() {
                let outcome = bookkeeping::record_parked(db, family, &parked).await?;
                self.services
                    .progress
                    .refresh_after_commit(db, &outcome.jobs)
                    .await?;
            }
            Ok::<_, RequeueError>(())
        }
        .await;
        if let Err(err) = &result {
            // The Redis side is done and cannot be undone; the statuses catch up when the
            // workers process the redriven messages (parks stay visible in the DLQ).
            tracing::error!(error = %err, dlq = family.as_str(), redriven = redriven.len(),
                parked = parked.len(), "redrive bookkeeping failed");
            metrics::counter!("pipeline_requeue_bookkeeping_failures_total", "family" => family.as_str())
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
                        unreachable = self.services.unreachable(&err).map(tracing::field::display),
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
        self.flush_progress().await;
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
