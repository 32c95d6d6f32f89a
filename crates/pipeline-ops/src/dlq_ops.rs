//! DLQ operations with their Postgres bookkeeping, shared by the requeue daemon, the API and
//! the CLI: whoever redrives, parks or discards an item also moves its source's status and
//! writes the event, the same way.

use std::num::NonZeroU32;

use dlq_core::{BulkRedrive, DlqItem, ListedItem, RedriveOutcome};
use pipeline_store::SourceStatus;
use pipeline_store::sources::{self, Transition};
use serde_json::json;
use uuid::Uuid;

use crate::Family;
use crate::Services;

/// A DLQ operation's failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DlqOpError {
    /// Redis or the DLQ refused.
    #[error(transparent)]
    Dlq(#[from] dlq_core::DlqError),
    /// Postgres failed after the Redis change (the item moved; its status is stale until the
    /// worker or the reconciler writes the next one).
    #[error("bookkeeping failed: {0}")]
    Store(#[from] pipeline_store::StoreError),
}

/// The source an item is about: its `source_id`, else its id when that is a UUID.
pub fn source_of(item: &DlqItem) -> Option<Uuid> {
    item.source_id.or_else(|| Uuid::parse_str(&item.id).ok())
}

/// Records a redrive: source back to its queue's waiting status, event `redriven`.
pub async fn record_redriven(
    services: &Services,
    family: Family,
    outcome: &RedriveOutcome,
    actor: &str,
) -> Result<(), DlqOpError> {
    let Some(source_id) = source_of(&outcome.item) else {
        return Ok(());
    };
    sources::transition(
        &services.db,
        &Transition {
            source_id,
            job_id: outcome.item.job_id,
            to: family.waiting_status(),
            event: "redriven",
            stage: actor,
            attempt: None,
            detail: json!({
                "dlq": family,
                "retry_count": outcome.item.retry_count + 1,
                "previous_error": outcome.item.error,
                "error_kind": outcome.item.error_kind,
                "enqueued": outcome.enqueued,
            }),
            error: None,
        },
    )
    .await?;
    Ok(())
}

/// Records a park: status `parked`, event `parked`.
pub async fn record_parked(
    services: &Services,
    family: Family,
    item: &DlqItem,
    actor: &str,
) -> Result<(), DlqOpError> {
    record_terminal(
        services,
        family,
        item,
        actor,
        SourceStatus::Parked,
        "parked",
    )
    .await
}

/// Records a discard: status `discarded`, event `discarded`.
pub async fn record_discarded(
    services: &Services,
    family: Family,
    item: &DlqItem,
    actor: &str,
) -> Result<(), DlqOpError> {
    record_terminal(
        services,
        family,
        item,
        actor,
        SourceStatus::Discarded,
        "discarded",
    )
    .await
}

async fn record_terminal(
    services: &Services,
    family: Family,
    item: &DlqItem,
    actor: &str,
    to: SourceStatus,
    event: &str,
) -> Result<(), DlqOpError> {
    let Some(source_id) = source_of(item) else {
        return Ok(());
    };
    let kind = if item.error_kind == dlq_core::ErrorKind::Transient {
        "transient"
    } else {
        "permanent"
    };
    sources::transition(
        &services.db,
        &Transition {
            source_id,
            job_id: item.job_id,
            to,
            event,
            stage: actor,
            attempt: Some(item.attempts as i32),
            detail: json!({
                "dlq": family,
                "retry_count": item.retry_count,
                "error": item.error,
                "error_kind": kind,
            }),
            error: Some((kind, &item.error)),
        },
    )
    .await?;
    Ok(())
}

/// Redrives one item now (whatever its redrive count or kind) and records it. `None` when the
/// item is not in the DLQ (also when a concurrent retry took it first).
pub async fn retry(
    services: &Services,
    family: Family,
    id: &str,
    actor: &str,
) -> Result<Option<RedriveOutcome>, DlqOpError> {
    let Some(outcome) = services.dlq(family).redrive(id).await? else {
        return Ok(None);
    };
    metrics::counter!("pipeline_dlq_redriven_total", "family" => family.as_str(), "by" => actor.to_owned())
        .increment(1);
    record_redriven(services, family, &outcome, actor).await?;
    Ok(Some(outcome))
}

/// Redrives up to `limit` items (all when `None`) at most `rate` per second, recording each.
pub async fn retry_all(
    services: &Services,
    family: Family,
    limit: Option<u64>,
    rate: Option<NonZeroU32>,
    actor: &str,
) -> Result<BulkRedrive, DlqOpError> {
    let bulk = services.dlq(family).redrive_all(limit, rate).await?;
    metrics::counter!("pipeline_dlq_redriven_total", "family" => family.as_str(), "by" => actor.to_owned())
        .increment(bulk.redriven.len() as u64);
    for outcome in &bulk.redriven {
        record_redriven(services, family, outcome, actor).await?;
    }
    Ok(bulk)
}

/// Removes one item for good and records it. `None` when it is not in the DLQ.
pub async fn discard(
    services: &Services,
    family: Family,
    id: &str,
    actor: &str,
) -> Result<Option<ListedItem>, DlqOpError> {
    let Some(listed) = services.dlq(family).discard(id).await? else {
        return Ok(None);
    };
    if let ListedItem::Ok(item) = &listed {
        record_discarded(services, family, item, actor).await?;
    }
    Ok(Some(listed))
}
