//! Job progress, refreshed after the source transitions that change it.
//!
//! A job's counters and status are recomputed from its sources' statuses
//! ([`crate::jobs::refresh_in`]) under the job's row lock. That lock used to be taken at the
//! start of every source transition, so every transition of a job's sources waited for the
//! previous one's whole transaction, commit included: a scrape worker with 64 pages in
//! flight spent most of its time queued on a few job rows. Now a transition commits the
//! source's status and event without touching the job, and the job is refreshed afterwards
//! in its own short transaction.
//!
//! Within one [`Progress`] handle (one per process, carried by `Services`) the refreshes of
//! one job are coalesced: a caller whose transition has
//! committed waits for a refresh that *started* after its commit (so it saw that commit),
//! and one refresh serves every caller that asked while the previous one ran. Across
//! processes the refreshes still serialise on the row lock, and each recomputes from the
//! committed truth, so the last one to run is right whatever the order. When a process
//! dies between its commit and its refresh, the requeue daemon's reconciler refreshes the
//! jobs left `queued` or `running` without progress ([`stale_jobs`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// The refresh state of one job in this process.
#[derive(Default)]
struct Slot {
    /// Serialises this process's refreshes of the job.
    running: tokio::sync::Mutex<()>,
    /// Counters, under the registry's lock: requests made, requests covered by a refresh
    /// that has finished.
    counts: Mutex<(u64, u64)>,
}

/// How long a background refresh waits before it runs, so that one refresh serves every
/// page of a job stored meanwhile.
pub const BACKGROUND_LAG: Duration = Duration::from_millis(500);

/// The job-progress refreshes of one process (or of one runner in it): which jobs have a
/// refresh requested or running, and the background refreshes not finished yet. A cheap
/// handle (clones share the state); [`crate`]'s writers that change a job's sources take
/// it, and `Services` carries one, so two pipelines in one process (tests, an all-in-one
/// binary) coalesce and settle only their own refreshes.
#[derive(Clone, Default)]
pub struct Progress {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("background", &self.inner.background.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// Every job with a refresh requested or running. Job ids are UUIDs, unique across
    /// databases, so one handle may serve several pools.
    registry: Mutex<HashMap<Uuid, Arc<Slot>>>,
    /// Background refreshes started by [`Progress::refresh_in_background`] and not
    /// finished yet.
    background: AtomicUsize,
    /// Woken when `background` falls to zero.
    idle: tokio::sync::Notify,
    /// Jobs with a background refresh scheduled that has not started yet.
    scheduled: Mutex<HashSet<Uuid>>,
    /// Bumped by [`Progress::settled`] to start every scheduled refresh at once.
    flush: tokio::sync::watch::Sender<u64>,
}

impl Progress {
    /// A handle with nothing requested yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refreshes the progress of `job_ids` in a background task, for a transition that
    /// cannot finish a job (a page stored as `scraped` still waits for extraction): the
    /// worker moves on without waiting for the job row. The task waits [`BACKGROUND_LAG`]
    /// first, and a job that already has one waiting is not scheduled again: under load a
    /// job's row is written about twice a second instead of once per stored page, and its
    /// `scraped` count lags by at most that much. A job whose refresh was skipped is still
    /// covered, because the waiting refresh starts after this call's commit. A failure is
    /// logged; the reconciler refreshes jobs whose progress went stale.
    /// [`settled`](Self::settled) starts the waiting refreshes and waits for them (workers
    /// call it when they drain).
    pub fn refresh_in_background(&self, pool: &PgPool, job_ids: Vec<Uuid>) {
        let inner = &self.inner;
        let job_ids: Vec<Uuid> = {
            let mut waiting = inner.scheduled.lock().unwrap_or_else(|e| e.into_inner());
            job_ids.into_iter().filter(|j| waiting.insert(*j)).collect()
        };
        if job_ids.is_empty() {
            return;
        }
        inner.background.fetch_add(1, Ordering::SeqCst);
        let pool = pool.clone();
        let this = self.clone();
        // Subscribed before the task exists, so a flush sent before it first polls still
        // counts.
        let mut flushed = inner.flush.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(BACKGROUND_LAG) => {}
                _ = flushed.changed() => {}
            }
            let inner = &this.inner;
            // From here on a new request schedules a refresh of its own: this one may
            // already have read the job's sources.
            {
                let mut waiting = inner.scheduled.lock().unwrap_or_else(|e| e.into_inner());
                for j in &job_ids {
                    waiting.remove(j);
                }
            }
            if let Err(err) = this.refresh_after_commit(&pool, &job_ids).await {
                tracing::warn!(error = %err, jobs = ?job_ids, "refreshing job progress failed; the reconciler will refresh it");
            }
            if inner.background.fetch_sub(1, Ordering::SeqCst) == 1 {
                inner.idle.notify_waiters();
            }
        });
    }

    /// Background refreshes of this handle started and not finished yet.
    pub fn pending(&self) -> usize {
        self.inner.background.load(Ordering::SeqCst)
    }

    /// Starts every waiting background refresh of this handle and waits until all have
    /// finished.
    pub async fn settled(&self) {
        let inner = &self.inner;
        inner.flush.send_modify(|n| *n = n.wrapping_add(1));
        loop {
            let notified = inner.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a task finishing in between still wakes us.
            notified.as_mut().enable();
            if inner.background.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// What a caller does after committing a transition that returned `jobs` (`None`: the
    /// source does not exist): refreshes those jobs ([`refresh_after_commit`](Self::refresh_after_commit))
    /// and says whether the source existed.
    pub async fn after_transition(&self, pool: &PgPool, jobs: Option<Vec<Uuid>>) -> Result<bool> {
        match jobs {
            Some(jobs) => {
                self.refresh_after_commit(pool, &jobs).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Refreshes the progress of `job_ids`, to be called after the transaction that changed
    /// their sources has committed. Returns once a refresh of each job that began after
    /// this call has finished.
    pub async fn refresh_after_commit(&self, pool: &PgPool, job_ids: &[Uuid]) -> Result<()> {
        for job_id in job_ids {
            self.refresh_one(pool, *job_id).await?;
        }
        Ok(())
    }

    async fn refresh_one(&self, pool: &PgPool, job_id: Uuid) -> Result<()> {
        let registry = &self.inner.registry;
        let (slot, ticket) = {
            let mut map = registry.lock().unwrap_or_else(|e| e.into_inner());
            let slot = map.entry(job_id).or_default().clone();
            let mut counts = slot.counts.lock().unwrap_or_else(|e| e.into_inner());
            counts.0 += 1;
            let ticket = counts.0;
            drop(counts);
            (slot, ticket)
        };
        let result = {
            let _running = slot.running.lock().await;
            let (requested, covered) = *slot.counts.lock().unwrap_or_else(|e| e.into_inner());
            if covered >= ticket {
                // A refresh that began after this request finished while we waited.
                Ok(())
            } else {
                // Every request made so far is covered by this refresh: it starts now, after
                // their commits.
                let target = requested;
                let result = refresh(pool, job_id).await;
                if result.is_ok() {
                    let mut counts = slot.counts.lock().unwrap_or_else(|e| e.into_inner());
                    counts.1 = counts.1.max(target);
                }
                result
            }
        };
        // Forget the job when nobody else asked meanwhile (the check and the request both
        // run under the registry's lock).
        let mut map = registry.lock().unwrap_or_else(|e| e.into_inner());
        let counts = *slot.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.0 == ticket && Arc::strong_count(&slot) <= 2 {
            map.remove(&job_id);
        }
        result
    }
}

/// Recomputes one job's progress in its own transaction: one statement that locks the row,
/// aggregates and updates ([`crate::jobs::refresh_in`]).
pub async fn refresh(pool: &PgPool, job_id: Uuid) -> Result<()> {
    sqlx::query!("SELECT FROM pipeline_refresh_job_progress($1)", job_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Jobs still `queued` or `running` whose row has not changed for `older_than_secs`, oldest
/// first, at most `limit`: the reconciler refreshes them, which settles a job whose last
/// refresh was lost with its process.
pub async fn stale_jobs(pool: &PgPool, older_than_secs: i64, limit: i64) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        "SELECT id FROM jobs
         WHERE status IN ('queued', 'running') AND updated_at < now() - make_interval(secs => $1)
         ORDER BY updated_at LIMIT $2",
        older_than_secs as f64,
        limit,
    )
    .fetch_all(pool)
    .await?)
}
