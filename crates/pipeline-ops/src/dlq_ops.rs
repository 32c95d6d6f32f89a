//! DLQ operations with their Postgres bookkeeping, shared by the requeue daemon, the API and
//! the CLI: whoever redrives, parks or discards an item also moves its source's status and
//! writes the event, the same way (for the `webhooks` family: its delivery's status and
//! trail).

use std::num::NonZeroU32;

use dlq_core::{BulkRedrive, DlqItem, ListedItem, RedriveOutcome};
use pipeline_store::sources::{self, Transition};
use pipeline_store::webhooks::{self, Mark};
use pipeline_store::{Actor, SourceStatus};
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

/// How long a redriven message is held back for its redrive to be booked in Postgres (see
/// [`dlq_core::DlqOptions::redrive_hold_ms`]). Every redrive here and in the requeue daemon
/// books, then releases at once; the hold only matters when the process dies in between,
/// and then delays the message by this much.
pub const REDRIVE_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

/// Records a redrive: source back to its queue's waiting status, event `redriven`.
pub async fn record_redriven(
    services: &Services,
    family: Family,
    outcome: &RedriveOutcome,
    actor: Actor,
) -> Result<(), DlqOpError> {
    let Some(to) = family.waiting_status() else {
        return book_delivery(services, Mark::Redriven, &outcome.item, actor).await;
    };
    let Some(source_id) = source_of(&outcome.item) else {
        return Ok(());
    };
    sources::transition(
        &services.db,
        &services.progress,
        &Transition {
            source_id,
            job_id: outcome.item.job_id,
            to,
            event: "redriven",
            stage: family.as_str(),
            actor,
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
    actor: Actor,
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
    actor: Actor,
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
    actor: Actor,
    to: SourceStatus,
    event: &str,
) -> Result<(), DlqOpError> {
    if !family.is_stage() {
        let mark = if to == SourceStatus::Parked {
            Mark::Parked
        } else {
            Mark::Discarded
        };
        return book_delivery(services, mark, item, actor).await;
    }
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
        &services.progress,
        &Transition {
            source_id,
            job_id: item.job_id,
            to,
            event,
            stage: family.as_str(),
            actor,
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

/// Books a DLQ change of the `webhooks` family on its delivery (the item id is the
/// delivery id; the trail is the delivery's, not a source's).
async fn book_delivery(
    services: &Services,
    mark: Mark,
    item: &DlqItem,
    actor: Actor,
) -> Result<(), DlqOpError> {
    let Ok(id) = Uuid::parse_str(&item.id) else {
        return Ok(());
    };
    let error = (mark != Mark::Redriven).then(|| item.error.clone());
    webhooks::mark(&services.db, mark, &[id], &[error], actor).await?;
    Ok(())
}

/// Redrives one item now (whatever its redrive count or kind) and records it. `None` when the
/// item is not in the DLQ (also when a concurrent retry took it first).
pub async fn retry(
    services: &Services,
    family: Family,
    id: &str,
    actor: Actor,
) -> Result<Option<RedriveOutcome>, DlqOpError> {
    retry_as(services, family, id, None, actor).await
}

/// [`retry`] at another priority within the message's project lane (`None`: the priority
/// its message had).
pub async fn retry_as(
    services: &Services,
    family: Family,
    id: &str,
    priority: Option<work_queue::Priority>,
    actor: Actor,
) -> Result<Option<RedriveOutcome>, DlqOpError> {
    let dlq = services.dlq(family);
    let code = priority.map(work_queue::Priority::code);
    let Some(outcome) = dlq.redrive_as(id, code).await? else {
        return Ok(None);
    };
    metrics::counter!("pipeline_dlq_redriven_total", "family" => family.as_str(), "by" => actor.as_str())
        .increment(1);
    // Booked, then released: the trail shows `redriven` before anything a worker writes.
    // A failed booking still releases (the message is out of the DLQ either way).
    let booked = record_redriven(services, family, &outcome, actor).await;
    dlq.release(&[outcome.item.id.as_str()]).await?;
    booked?;
    Ok(Some(outcome))
}

/// Redrives up to `limit` items (all when `None`) at most `rate` per second, recording each.
pub async fn retry_all(
    services: &Services,
    family: Family,
    limit: Option<u64>,
    rate: Option<NonZeroU32>,
    actor: Actor,
) -> Result<BulkRedrive, DlqOpError> {
    let dlq = services.dlq(family);
    let bulk = dlq.redrive_all(limit, rate).await?;
    metrics::counter!("pipeline_dlq_redriven_total", "family" => family.as_str(), "by" => actor.as_str())
        .increment(bulk.redriven.len() as u64);
    // Each redrive is booked before its message is released (see `retry`).
    let mut booked = Ok(());
    for outcome in &bulk.redriven {
        booked = booked.and(record_redriven(services, family, outcome, actor).await);
    }
    let ids: Vec<&str> = bulk.redriven.iter().map(|o| o.item.id.as_str()).collect();
    dlq.release(&ids).await?;
    booked?;
    Ok(bulk)
}

/// Removes one item for good and records it. `None` when it is not in the DLQ.
pub async fn discard(
    services: &Services,
    family: Family,
    id: &str,
    actor: Actor,
) -> Result<Option<ListedItem>, DlqOpError> {
    let Some(listed) = services.dlq(family).discard(id).await? else {
        return Ok(None);
    };
    if let ListedItem::Ok(item) = &listed {
        record_discarded(services, family, item, actor).await?;
    }
    Ok(Some(listed))
}

/// What [`purge`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    /// Items older than the age when the DLQ was read (malformed entries not included: they
    /// carry no readable time until the final sweep removes them).
    pub matched: u64,
    /// Items removed (0 on a dry run). Can exceed `matched` by the malformed entries the
    /// final sweep removed, or fall short of it when a concurrent retry took an item first.
    pub purged: u64,
}

/// Removes every item of `family`'s DLQ that failed more than `older_than` ago, recording a
/// `discarded` event in each item's source trail (a bare [`dlq_core::Dlq::purge`] would
/// leave those sources `dead_lettered` with no word), then sweeps what is left of that age
/// (entries too malformed to name a source). With `dry_run` it only counts.
///
/// Walks the DLQ a page at a time (newest first, stable cursor), so memory stays bounded
/// whatever its size; items that arrive meanwhile are newer than the cutoff and untouched.
pub async fn purge(
    services: &Services,
    family: Family,
    older_than: chrono::Duration,
    dry_run: bool,
    actor: Actor,
) -> Result<Purged, DlqOpError> {
    if older_than < chrono::Duration::zero() {
        return Err(dlq_core::DlqError::InvalidArgument(format!(
            "purge age must not be negative, got {older_than}"
        ))
        .into());
    }
    let dlq = services.dlq(family);
    let cutoff = chrono::Utc::now() - older_than;
    let mut out = Purged {
        matched: 0,
        purged: 0,
    };
    let mut cursor: Option<String> = None;
    loop {
        let page = dlq
            .list(dlq_core::MAX_LIST_LIMIT, cursor.as_deref())
            .await?;
        for listed in &page.items {
            let ListedItem::Ok(item) = listed else {
                continue;
            };
            if item.failed_at >= cutoff {
                continue;
            }
            out.matched += 1;
            if !dry_run && discard(services, family, &item.id, actor).await?.is_some() {
                out.purged += 1;
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if !dry_run {
        out.purged += dlq.purge(older_than).await?;
        tracing::info!(
            dlq = family.as_str(),
            matched = out.matched,
            purged = out.purged,
            by = %actor,
            "DLQ purged"
        );
    }
    Ok(out)
}

/// Parses an age with its unit: `30d`, `12h`, `45m`, `90s`, `2w`. The unit is required: a
/// bare `5` read as seconds once purged a whole DLQ that its operator meant to keep for five
/// days. Shared by the CLI's `--older-than` and the API's `older_than`.
pub fn parse_age(text: &str) -> Result<chrono::Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => {
            return Err(format!(
                "`{t}` has no unit; write e.g. {t}d, {t}h, {t}m or {t}s"
            ));
        }
    };
    if num.len() > MAX_AGE_DIGITS {
        return Err(format!(
            "`{t}` is too large (at most {MAX_AGE_DIGITS} digits before the unit)"
        ));
    }
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not an age like 30d, 12h, 45m or 90s"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("unknown unit in `{t}`; use s, m, h, d or w")),
    };
    Ok(chrono::Duration::seconds(n * secs))
}

/// Digits [`parse_age`] accepts before the unit: 999999 weeks (about 19,000 years) is far past
/// any retention, and small enough that `now - age` cannot overflow. A digit count, not a
/// time, so the API can state the same bound as a pattern (`^[0-9]{1,6}[smhdw]$`).
pub const MAX_AGE_DIGITS: usize = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_need_a_unit_and_a_sane_size() {
        assert_eq!(parse_age("30d").unwrap(), chrono::Duration::days(30));
        assert_eq!(parse_age("12h").unwrap(), chrono::Duration::hours(12));
        assert_eq!(parse_age(" 90s ").unwrap(), chrono::Duration::seconds(90));
        assert_eq!(parse_age("2w").unwrap(), chrono::Duration::weeks(2));
        let bare = parse_age("5").unwrap_err();
        assert!(bare.contains("no unit"), "{bare}");
        assert!(parse_age("3x").unwrap_err().contains("unknown unit"));
        assert!(parse_age("d").is_err());
        assert!(parse_age("-5d").is_err());
        assert!(
            parse_age("99999999999999999d")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_age("36600000d").unwrap_err().contains("too large"));
    }
}
