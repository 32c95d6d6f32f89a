//! Postgres bookkeeping of automatic redrives and parks: one transaction per batch.
//!
//! The words and details are those of `pipeline_ops::dlq_ops::{record_redriven,
//! record_parked}` (a redrive from the API or the CLI reads the same in a trail); only the
//! batching differs, because a transaction per item would bound the daemon at a few hundred
//! items per second.

use std::time::Duration;

use dlq_core::{DlqItem, ErrorKind};
use pipeline_ops::Family;
use pipeline_ops::dlq_ops::source_of;
use pipeline_store::batch::{BatchOutcome, transition_many};
use pipeline_store::sources::Transition;
use pipeline_store::webhooks::{self, Mark};
use pipeline_store::{Actor, SourceStatus};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::RequeueError;

/// Who records the daemon's events (`job_events.actor`).
pub const ACTOR: Actor = Actor::RequeueDaemon;

/// Statuses a source in a DLQ can have. The bookkeeping moves a source only from these: if a
/// worker already took the redriven message and wrote a newer status, that status stays (the
/// `redriven` event is still written).
const IN_DLQ: [SourceStatus; 3] = [
    SourceStatus::DeadLettered,
    SourceStatus::Retrying,
    SourceStatus::Parked,
];

/// Attempts per batch: a deadlock with a worker's transaction or a dropped connection
/// should not leave a batch unrecorded.
const ATTEMPTS: u32 = 3;

fn kind_word(kind: ErrorKind) -> &'static str {
    kind.as_str()
}

/// Records redrives (`enqueued` says whether each was put on the queue) of `family`.
pub async fn record_redriven(
    db: &PgPool,
    family: Family,
    redriven: &[(&DlqItem, bool)],
) -> Result<BatchOutcome, RequeueError> {
    let Some(to) = family.waiting_status() else {
        let items: Vec<&DlqItem> = redriven.iter().map(|(item, _)| *item).collect();
        return book_deliveries(db, Mark::Redriven, &items).await;
    };
    let details: Vec<_> = redriven
        .iter()
        .map(|(item, enqueued)| {
            json!({
                "dlq": family,
                "retry_count": item.retry_count + 1,
                "previous_error": item.error,
                "error_kind": kind_word(item.error_kind),
                "enqueued": enqueued,
            })
        })
        .collect();
    let ts: Vec<Transition<'_>> = redriven
        .iter()
        .zip(details)
        .filter_map(|((item, _), detail)| {
            Some(Transition {
                source_id: source_of(item)?,
                job_id: item.job_id,
                to,
                event: "redriven",
                stage: family.as_str(),
                actor: ACTOR,
                attempt: None,
                detail,
                error: None,
            })
        })
        .collect();
    apply(db, &ts).await
}

/// Records parks of `family`: status `parked`, event `parked`, the last error kept.
pub async fn record_parked(
    db: &PgPool,
    family: Family,
    parked: &[&DlqItem],
) -> Result<BatchOutcome, RequeueError> {
    if !family.is_stage() {
        return book_deliveries(db, Mark::Parked, parked).await;
    }
    let ts: Vec<Transition<'_>> = parked
        .iter()
        .filter_map(|item| {
            Some(Transition {
                source_id: source_of(item)?,
                job_id: item.job_id,
                to: SourceStatus::Parked,
                event: "parked",
                stage: family.as_str(),
                actor: ACTOR,
                attempt: Some(item.attempts as i32),
                detail: json!({
                    "dlq": family,
                    "retry_count": item.retry_count,
                    "error": item.error,
                    "error_kind": kind_word(item.error_kind),
                    "reason": "redrive limit reached",
                }),
                error: Some((kind_word(item.error_kind), item.error.as_str())),
            })
        })
        .collect();
    apply(db, &ts).await
}

/// Books redrives or parks of the `webhooks` family on their deliveries (item id =
/// delivery id), in one transaction.
async fn book_deliveries(
    db: &PgPool,
    mark: Mark,
    items: &[&DlqItem],
) -> Result<BatchOutcome, RequeueError> {
    let (ids, errors): (Vec<Uuid>, Vec<Option<String>>) = items
        .iter()
        .filter_map(|item| {
            let id = Uuid::parse_str(&item.id).ok()?;
            Some((id, (mark != Mark::Redriven).then(|| item.error.clone())))
        })
        .unzip();
    let mut attempt = 1;
    loop {
        match webhooks::mark(db, mark, &ids, &errors, ACTOR).await {
            Ok(moved) => {
                return Ok(BatchOutcome {
                    changed: moved,
                    events: moved,
                    jobs: Vec::new(),
                });
            }
            Err(err) if attempt < ATTEMPTS => {
                tracing::warn!(error = %err, attempt, items = ids.len(),
                    "webhook delivery bookkeeping failed; trying again");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

async fn apply(db: &PgPool, ts: &[Transition<'_>]) -> Result<BatchOutcome, RequeueError> {
    let mut attempt = 1;
    loop {
        match transition_many(db, ts, &IN_DLQ).await {
            Ok(outcome) => return Ok(outcome),
            Err(err) if attempt < ATTEMPTS => {
                tracing::warn!(error = %err, attempt, items = ts.len(),
                    "redrive bookkeeping failed; trying again");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(err) => return Err(err.into()),
        }
    }
}
