//! The reconciler: Postgres is the source of truth. A source that still waits for something
//! (`queued`, `retrying`, `scraped`, or `dead_lettered` with a transient error) whose last
//! progress is older than a threshold, and that no work queue (ready, leased or delayed) and
//! no DLQ holds, was lost by Redis (a restart without persistence, a failover, a flush): it
//! is enqueued again, with a `reconciled` event saying why.
//!
//! Each sweep also refreshes the progress of jobs still `queued` or `running` without a
//! change for as long: a process that died between a source's commit and its job's refresh
//! ([`pipeline_store::progress`]) leaves the job's counters behind, and this settles them.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::messages::{SourceMessage, render_of_column};
use pipeline_store::SourceStatus;
use pipeline_store::batch::{StuckClaim, claim_stuck};
use pipeline_store::progress;
use pipeline_store::sources::{self, StuckSource};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bookkeeping::ACTOR;
use crate::config::RequeueConfig;
use crate::error::RequeueError;

/// What one reconcile sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Stuck sources examined.
    pub examined: u64,
    /// Sources some queue or DLQ still holds (slow, not lost).
    pub held: u64,
    /// Sources enqueued again, per family.
    pub reconciled: Vec<(String, Uuid)>,
    /// Jobs whose progress was refreshed.
    pub jobs_refreshed: u64,
}

/// The family whose queue a stuck source belongs in.
pub fn family_of(source: &StuckSource) -> Family {
    match source.status {
        SourceStatus::Scraped => Family::Extraction,
        SourceStatus::FactsPending => Family::Facts,
        // A `retrying` or `dead_lettered` source waits for the stage that failed, as its
        // failure recorded it; sources that failed before that was recorded: extraction once
        // the page was fetched, scrape before.
        SourceStatus::Retrying | SourceStatus::DeadLettered => {
            match source.last_error_stage.as_deref().map(str::parse::<Family>) {
                Some(Ok(family)) => family,
                _ if source.fetched_at.is_some() => Family::Extraction,
                _ => Family::Scrape,
            }
        }
        _ => Family::Scrape,
    }
}

/// A position in the reconciler's `(updated_at, id)` walk over waiting sources.
type Cursor = (DateTime<Utc>, Uuid);

/// Finds lost sources and enqueues them again.
#[derive(Clone)]
pub struct Reconciler {
    services: Services,
    config: RequeueConfig,
    /// Where the next sweep starts: after the last source the previous one examined, so
    /// sources a queue or DLQ legitimately holds for long (a redrive hours away) cannot hide
    /// lost ones behind them. Back to the start after a sweep that reached the end.
    cursor: Arc<Mutex<Option<Cursor>>>,
}

impl Reconciler {
    /// A reconciler over `services` with `config`.
    pub fn new(services: Services, config: RequeueConfig) -> Self {
        Self {
            services,
            config,
            cursor: Arc::default(),
        }
    }

    /// One sweep over at most `reconcile_batch` stuck sources, oldest first from where the
    /// previous sweep stopped, then over as many stale jobs.
    pub async fn sweep(&self) -> Result<ReconcileReport, RequeueError> {
        // The queues' own lane bookkeeping first: a lane left unserved by state changed
        // outside the queue's scripts would hold its sources, and they would look held here.
        for family in Family::ALL {
            if let Err(e) = self.services.queue(family).repair_lanes().await {
                tracing::warn!(family = family.as_str(), error = %e, "lane repair failed; next pass");
            }
        }
        let mut report = self.sweep_sources().await?;
        let after = self.config.reconcile_after.as_secs() as i64;
        let db = &self.services.db;
        let stale = progress::stale_jobs(db, after, self.config.reconcile_batch as i64).await?;
        for job_id in &stale {
            progress::refresh(db, *job_id).await?;
        }
        report.jobs_refreshed = stale.len() as u64;
        Ok(report)
    }

    async fn sweep_sources(&self) -> Result<ReconcileReport, RequeueError> {
        let after = self.config.reconcile_after.as_secs() as i64;
        let cursor = *self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.config.reconcile_batch as i64;
        let stuck = sources::stuck(&self.services.db, after, limit, cursor).await?;
        *self.cursor.lock().unwrap_or_else(|e| e.into_inner()) = if stuck.len() as i64 >= limit {
            stuck.last().map(|s| (s.updated_at, s.id))
        } else {
            None
        };
        let mut report = ReconcileReport {
            examined: stuck.len() as u64,
            ..ReconcileReport::default()
        };
        if stuck.is_empty() {
            return Ok(report);
        }
        let held = self.held(&stuck).await?;
        let now = Utc::now();
        let mut claims = Vec::new();
        for (source, held) in stuck.iter().zip(held) {
            if held {
                report.held += 1;
                continue;
            }
            let idle = (now - source.updated_at).num_seconds().max(0);
            claims.push(StuckClaim {
                source_id: source.id,
                job_id: source.created_by_job_id,
                seen_updated_at: source.updated_at,
                stage: family_of(source).as_str(),
                detail: json!({
                    "reason": format!("no queue, lease or DLQ held it for {idle} s"),
                    "family": family_of(source),
                    "status": source.status,
                }),
            });
        }
        // Claim first, enqueue second: a source a worker moved on meanwhile (or another
        // replica claimed) is not enqueued, and a crash in between only delays the source by
        // one threshold (its fresh updated_at makes it stuck again later).
        let claimed = claim_stuck(&self.services.db, "reconciled", ACTOR, &claims).await?;
        // Each source goes back to its project's lane at its job's priority, with its job's
        // render mode.
        let lanes = if claimed.is_empty() {
            Default::default()
        } else {
            sources::lanes_of(&self.services.db, &claimed).await?
        };
        for family in Family::STAGES {
            let batch: Vec<_> = stuck
                .iter()
                .filter(|s| family_of(s) == family && claimed.contains(&s.id))
                .map(|s| {
                    let lane = lanes.get(&s.id);
                    let msg = SourceMessage {
                        source_id: s.id,
                        job_id: s.created_by_job_id,
                        url: None,
                        project_id: lane.map(|l| l.0),
                        priority: lane.and_then(|l| l.1.parse().ok()).unwrap_or_default(),
                        render: render_of_column(lane.and_then(|l| l.2.as_deref())),
                    };
                    (msg.id(), msg.lane(), msg.body())
                })
                .collect();
            if batch.is_empty() {
                continue;
            }
            self.services.queue(family).enqueue_bulk_in(&batch).await?;
            metrics::counter!("pipeline_requeue_reconciled_total", "family" => family.as_str())
                .increment(batch.len() as u64);
            for s in stuck
                .iter()
                .filter(|s| family_of(s) == family && claimed.contains(&s.id))
            {
                tracing::warn!(job_id = s.created_by_job_id.map(tracing::field::display), source_id = %s.id, family = family.as_str(),
                    status = %s.status, "reconciled: nothing in Redis held this source; enqueued again");
                report.reconciled.push((family.as_str().to_owned(), s.id));
            }
        }
        Ok(report)
    }

    /// Whether any work queue or DLQ holds each source: one pipelined round trip per shard
    /// in use of each stage, sent concurrently (on a cluster each shard's slot may be on
    /// another master, and a pipeline goes to one node). A message lives in its id's shard
    /// (or in another one while an earlier, higher shard count drains), its DLQ item in the
    /// shard its message was in, so every shard in use is asked. The message hash exists
    /// while a message is ready, leased or delayed, and the DLQ's order index holds every
    /// DLQ entry, parked ones included.
    async fn held(&self, stuck: &[StuckSource]) -> Result<Vec<bool>, RequeueError> {
        let ids: Vec<String> = stuck.iter().map(|s| s.id.to_string()).collect();
        let mut lanes = Vec::new();
        for family in Family::STAGES {
            let queue = self.services.queue(family);
            let dlq = self.services.dlq(family);
            let shards = queue.shards_in_use().await?.max(dlq.shards().await?);
            for i in 0..shards {
                lanes.push((queue.keys().shard(i), dlq.keys().shard(i)));
            }
        }
        let per_lane = futures::future::try_join_all(lanes.iter().map(|(queue, dlq)| {
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("EXISTS").arg(queue.msg(id));
                pipe.cmd("ZSCORE").arg(dlq.dlq_order()).arg(id);
            }
            let mut conn = self.services.redis.get();
            async move { pipe.query_async::<Vec<redis::Value>>(&mut conn).await }
        }))
        .await?;
        // Two replies per source in each lane's answer, in `stuck` order.
        Ok((0..stuck.len())
            .map(|i| {
                per_lane
                    .iter()
                    .any(|replies| replies[2 * i..2 * i + 2].iter().any(held_reply))
            })
            .collect())
    }

    /// Sweeps every `reconcile_interval` until `cancel` fires; a full batch sweeps again at
    /// once. Errors are logged and retried on the next tick.
    pub async fn run(&self, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            let again = match self.sweep().await {
                Ok(report) => report.examined as usize >= self.config.reconcile_batch,
                Err(err) => {
                    tracing::error!(
                        error = format!("{err:#}"),
                        unreachable = self.services.unreachable(&err).map(tracing::field::display),
                        "reconcile sweep failed"
                    );
                    false
                }
            };
            if again {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.config.reconcile_interval) => {}
            }
        }
    }
}

/// `EXISTS` answers 1, `ZSCORE` a score, when the key or member is there.
fn held_reply(v: &redis::Value) -> bool {
    match v {
        redis::Value::Int(n) => *n > 0,
        redis::Value::Nil => false,
        _ => true,
    }
}
