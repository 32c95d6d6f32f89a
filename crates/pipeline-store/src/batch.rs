//! Many status transitions in one transaction, for callers that settle work in batches (the
//! requeue daemon redrives and parks up to a thousand DLQ items per script call; a
//! transaction per item would cap it at a few hundred items per second).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::sources::Transition;
use crate::status::SourceStatus;
use crate::{Actor, Result};

/// What [`transition_many`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Sources whose status changed.
    pub changed: u64,
    /// Events written (one per transition whose source exists).
    pub events: u64,
    /// The jobs that include the sources, in id order: the caller refreshes their progress
    /// after this returns ([`crate::progress::Progress::refresh_after_commit`]), at once or coalesced
    /// over several batches.
    pub jobs: Vec<Uuid>,
}

/// Applies `ts` in one transaction: the events and the status changes. No job row is locked
/// (see [`crate::progress`]). Two batches over overlapping sources could lock them in
/// different orders; the requeue daemon never builds such batches (a DLQ item is taken by
/// one replica only, and a source has one item per family), and Postgres would abort one
/// of the two, which its caller retries.
///
/// The event of every transition whose source exists is written. The status changes only
/// when the source's current status is one of `only_from` (empty: always). That guard lets
/// a caller record something that already happened in Redis without overwriting a newer
/// status: a redriven message may be picked up and finished by a worker before the
/// redrive's bookkeeping commits, and its `redriven` event must not set it back to `queued`.
///
/// Each source should appear at most once in `ts`.
pub async fn transition_many(
    pool: &PgPool,
    ts: &[Transition<'_>],
    only_from: &[SourceStatus],
) -> Result<BatchOutcome> {
    if ts.is_empty() {
        return Ok(BatchOutcome::default());
    }
    let n = ts.len();
    let mut ids = Vec::with_capacity(n);
    let mut job_ids: Vec<Option<Uuid>> = Vec::with_capacity(n);
    let mut to = Vec::with_capacity(n);
    let mut events = Vec::with_capacity(n);
    let mut stages = Vec::with_capacity(n);
    let mut actors = Vec::with_capacity(n);
    let mut attempts: Vec<Option<i32>> = Vec::with_capacity(n);
    let mut details = Vec::with_capacity(n);
    let mut error_kinds: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(n);
    for t in ts {
        ids.push(t.source_id);
        job_ids.push(t.job_id);
        to.push(t.to.as_str());
        events.push(t.event);
        stages.push(t.stage);
        actors.push(t.actor.as_str());
        attempts.push(t.attempt);
        details.push(t.detail.clone());
        error_kinds.push(t.error.map(|(k, _)| k));
        errors.push(t.error.map(|(_, m)| m));
    }
    let guard: Vec<&str> = only_from.iter().map(|s| s.as_str()).collect();

    let mut tx = pool.begin().await?;
    let changed = sqlx::query!(
        "UPDATE sources s
         SET status = u.to_status, updated_at = now(), last_error_kind = u.kind, last_error = u.msg
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(id, to_status, kind, msg)
         WHERE s.id = u.id AND (cardinality($5::text[]) = 0 OR s.status = ANY($5))",
        &ids,
        &to as &[&str],
        &error_kinds as &[Option<&str>],
        &errors as &[Option<&str>],
        &guard as &[&str],
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let written = sqlx::query!(
        "INSERT INTO job_events (job_id, source_id, kind, stage, actor, attempt, detail)
         SELECT u.job_id, u.id, u.kind, u.stage, u.actor, u.attempt, u.detail
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int4[], $6::jsonb[],
                     $7::text[])
              WITH ORDINALITY AS u(id, job_id, kind, stage, attempt, detail, actor, ord)
         WHERE EXISTS (SELECT 1 FROM sources s WHERE s.id = u.id)
         ORDER BY u.ord",
        &ids,
        &job_ids as &[Option<Uuid>],
        &events as &[&str],
        &stages as &[&str],
        &attempts as &[Option<i32>],
        &details,
        &actors as &[&str],
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let jobs = sqlx::query_scalar!(
        "SELECT DISTINCT job_id FROM job_sources WHERE source_id = ANY($1) ORDER BY job_id",
        &ids,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(BatchOutcome {
        changed,
        events: written,
        jobs,
    })
}

/// A stuck source the reconciler wants to enqueue again, as [`crate::sources::stuck`] saw it.
#[derive(Debug, Clone)]
pub struct StuckClaim {
    /// The source.
    pub source_id: Uuid,
    /// The job the event is about, when known.
    pub job_id: Option<Uuid>,
    /// The `updated_at` the reconciler saw: the claim fails if it changed since.
    pub seen_updated_at: DateTime<Utc>,
    /// The queue family it goes back to (the event's `stage`).
    pub stage: &'static str,
    /// Detail of the event.
    pub detail: serde_json::Value,
}

/// Claims stuck sources for the reconciler, in one transaction: each source whose
/// `updated_at` is still the one seen gets `updated_at = now()` and a `kind` event; the
/// others (a worker made progress meanwhile, or another replica claimed them) are left
/// alone. Returns the claimed source ids; only those may be enqueued again. The fresh
/// `updated_at` also keeps the next sweep from picking them at once.
pub async fn claim_stuck(
    pool: &PgPool,
    kind: &str,
    actor: Actor,
    entries: &[StuckClaim],
) -> Result<Vec<Uuid>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = entries.iter().map(|e| e.source_id).collect();
    let seen: Vec<DateTime<Utc>> = entries.iter().map(|e| e.seen_updated_at).collect();
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query_scalar!(
        "UPDATE sources s SET updated_at = now()
         FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, seen)
         WHERE s.id = u.id AND s.updated_at = u.seen
         RETURNING s.id",
        &ids,
        &seen,
    )
    .fetch_all(&mut *tx)
    .await?;
    let chosen: Vec<&StuckClaim> = entries
        .iter()
        .filter(|e| claimed.contains(&e.source_id))
        .collect();
    let ids: Vec<Uuid> = chosen.iter().map(|e| e.source_id).collect();
    let job_ids: Vec<Option<Uuid>> = chosen.iter().map(|e| e.job_id).collect();
    let details: Vec<serde_json::Value> = chosen.iter().map(|e| e.detail.clone()).collect();
    let stages: Vec<&str> = chosen.iter().map(|e| e.stage).collect();
    sqlx::query!(
        "INSERT INTO job_events (job_id, source_id, kind, stage, actor, detail)
         SELECT u.job_id, u.id, $3, u.stage, $4, u.detail
         FROM unnest($1::uuid[], $2::uuid[], $5::jsonb[], $6::text[])
              WITH ORDINALITY AS u(id, job_id, detail, stage, ord)
         ORDER BY u.ord",
        &ids,
        &job_ids as &[Option<Uuid>],
        kind,
        actor.as_str(),
        &details,
        &stages as &[&str],
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids)
}
