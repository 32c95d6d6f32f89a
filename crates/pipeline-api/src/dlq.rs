//! The DLQ endpoints. Retry, retry-all and delete go through `pipeline_ops::dlq_ops`, so the
//! item really goes back into its work queue (one atomic script) and the source's status and
//! event trail record who did it, as they do for the requeue daemon and the CLI.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use pipeline_ops::Family;
use pipeline_ops::dlq_ops;

use crate::AppState;
use crate::error::{ApiError, ApiQuery, DlqItemPath, ErrorBody, FamilyPath};
use crate::model::{
    DEFAULT_LIMIT, DlqEntry, DlqPage, ListQuery, MAX_RETRY_ALL_LIMIT, PurgeBody, PurgeQuery,
    RetriedItem, RetryAllBody, RetryAllQuery, RetryQuery,
};

/// Who the event trail names for changes made through the API.
const ACTOR: pipeline_store::Actor = pipeline_store::Actor::Api;

/// The family a path names; 404 for any other word (quoted back clipped: it is client input).
/// Counts per DLQ kind (parked items included), with the parked counts apart.
#[utoipa::path(
    get, path = "/api/v1/dlq/stats", tag = "dlq",
    responses(
        (status = 200, description = "`{kind}`: items (parked included); `{kind}_parked`: parked items; `{kind}_transient`, `{kind}_permanent`: active items by error kind; `{kind}_dropped`: dropped by the retention bound",
            body = BTreeMap<String, u64>,
            example = json!({"scrape": 3, "scrape_parked": 1, "extraction": 0, "extraction_parked": 0})),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn stats(State(state): State<AppState>) -> Result<Json<BTreeMap<String, u64>>, ApiError> {
    let mut out = BTreeMap::new();
    for family in Family::ALL {
        let kind = family.as_str();
        let s = state.services.dlq(family).stats().await?;
        out.insert(kind.to_owned(), s.total);
        out.insert(format!("{kind}_parked"), s.parked);
        out.insert(format!("{kind}_transient"), s.transient);
        out.insert(format!("{kind}_permanent"), s.permanent);
        out.insert(format!("{kind}_dropped"), s.dropped);
    }
    Ok(Json(out))
}

async fn list_family(
    state: &AppState,
    family: Family,
    q: ListQuery,
) -> Result<Json<DlqPage>, ApiError> {
    let dlq = state.services.dlq(family);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    dlq_core::check_limit(limit)?;
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    let page = dlq.list(limit, cursor).await?;
    Ok(Json(DlqPage {
        items: page.items.into_iter().map(DlqEntry::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A DLQ by kind, newest first (an unknown kind is 404).
#[utoipa::path(
    get, path = "/api/v1/dlq/{kind}", tag = "dlq",
    params(("kind" = String, Path, description = "DLQ kind: a queue family (`scrape`, `extraction`, `facts`, `webhooks`)"), ListQuery),
    responses(
        (status = 200, description = "A page of items, newest first", body = DlqPage),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "Unknown kind", body = ErrorBody),
        (status = 422, description = "`limit` outside 1..=1000 or an invalid cursor", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    FamilyPath(family): FamilyPath,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<DlqPage>, ApiError> {
    list_family(&state, family, q).await
}

/// Redrives one item into its work queue now (whatever its redrive count or error kind) and
/// returns it. Of concurrent retries of one item exactly one gets it; the others get 404.
/// With `priority`, the message goes back at that priority within its project's lane
/// (the job's own priority is unchanged); without, at the priority it had.
#[utoipa::path(
    post, path = "/api/v1/dlq/{kind}/{item_id}/retry", tag = "dlq",
    params(
        ("kind" = String, Path, description = "DLQ kind: a queue family (`scrape`, `extraction`, `facts`, `webhooks`)"),
        ("item_id" = String, Path, description = "Item id (the source id)"),
        RetryQuery,
    ),
    responses(
        (status = 200, description = "The item, now back in its work queue", body = RetriedItem),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "Unknown kind, or no such item (also when a concurrent retry took it)", body = ErrorBody),
        (status = 409, description = "The entry cannot be parsed; delete it instead", body = ErrorBody),
        (status = 422, description = "A `priority` other than `high`, `normal` or `low`", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn retry(
    State(state): State<AppState>,
    DlqItemPath(family, item_id): DlqItemPath,
    ApiQuery(q): ApiQuery<RetryQuery>,
) -> Result<Json<RetriedItem>, ApiError> {
    let priority = q.priority.map(Into::into);
    match dlq_ops::retry_as(&state.services, family, &item_id, priority, ACTOR).await? {
        Some(outcome) => {
            tracing::info!(dlq = %family, item_id, job_id = outcome.item.job_id.map(tracing::field::display),
                source_id = outcome.item.source_id.map(tracing::field::display), enqueued = outcome.enqueued,
                "DLQ item retried through the API");
            Ok(Json(RetriedItem {
                item: outcome.item.into(),
                enqueued: outcome.enqueued,
            }))
        }
        None => Err(ApiError::not_found(format!(
            "no item `{}` in the {family} DLQ",
            crate::error::clip(&item_id)
        ))),
    }
}

/// Redrives up to `limit` items (all by default), oldest first, parked and permanent ones
/// included; items that fail again meanwhile are not redriven twice by one call.
#[utoipa::path(
    post, path = "/api/v1/dlq/{kind}/retry-all", tag = "dlq",
    params(("kind" = String, Path, description = "DLQ kind: a queue family (`scrape`, `extraction`, `facts`, `webhooks`)"), RetryAllQuery),
    responses(
        (status = 200, description = "How many items were redriven", body = RetryAllBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "Unknown kind", body = ErrorBody),
        (status = 422, description = "`limit` outside 1..=1000000000", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn retry_all(
    State(state): State<AppState>,
    FamilyPath(family): FamilyPath,
    ApiQuery(q): ApiQuery<RetryAllQuery>,
) -> Result<Json<RetryAllBody>, ApiError> {
    if let Some(limit) = q.limit
        && !(1..=MAX_RETRY_ALL_LIMIT).contains(&limit)
    {
        return Err(ApiError::unprocessable(format!(
            "limit must be between 1 and {MAX_RETRY_ALL_LIMIT} (leave it out to redrive every item)"
        )));
    }
    let bulk = dlq_ops::retry_all(&state.services, family, q.limit, None, ACTOR).await?;
    tracing::info!(dlq = %family, redriven = bulk.redriven.len(),
        malformed = bulk.malformed.len(), "DLQ bulk retry through the API");
    Ok(Json(RetryAllBody {
        redriven: bulk.redriven.len(),
        malformed: bulk.malformed.into_iter().map(|m| m.id).collect(),
    }))
}

/// Discards one item for good (the source becomes `discarded`, with an event) and returns
/// what was stored.
#[utoipa::path(
    delete, path = "/api/v1/dlq/{kind}/{item_id}", tag = "dlq",
    params(
        ("kind" = String, Path, description = "DLQ kind: a queue family (`scrape`, `extraction`, `facts`, `webhooks`)"),
        ("item_id" = String, Path, description = "Item id (the source id)"),
    ),
    responses(
        (status = 200, description = "The discarded entry", body = DlqEntry),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "Unknown kind, or no such item", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    DlqItemPath(family, item_id): DlqItemPath,
) -> Result<Json<DlqEntry>, ApiError> {
    match dlq_ops::discard(&state.services, family, &item_id, ACTOR).await? {
        Some(listed) => Ok(Json(listed.into())),
        None => Err(ApiError::not_found(format!(
            "no item `{}` in the {family} DLQ",
            crate::error::clip(&item_id)
        ))),
    }
}

/// Discards every item that failed more than `older_than` ago (each source becomes
/// `discarded`, with an event naming the API), or with `dry_run=true` only counts them: the
/// same operation as `pipelinectl dlq purge`, whose terminal confirmation is the dry run here.
#[utoipa::path(
    post, path = "/api/v1/dlq/{kind}/purge", tag = "dlq",
    params(("kind" = String, Path, description = "DLQ kind: a queue family (`scrape`, `extraction`, `facts`, `webhooks`)"), PurgeQuery),
    responses(
        (status = 200, description = "How many items matched and how many were removed", body = PurgeBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "Unknown kind", body = ErrorBody),
        (status = 422, description = "`older_than` missing, without a unit (`30d`, `12h`, `45m`, `90s`, `2w`) or over 6 digits", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn purge(
    State(state): State<AppState>,
    FamilyPath(family): FamilyPath,
    ApiQuery(q): ApiQuery<PurgeQuery>,
) -> Result<Json<PurgeBody>, ApiError> {
    let older_than = dlq_ops::parse_age(&q.older_than).map_err(|reason| {
        ApiError::unprocessable(format!("older_than: {}", crate::error::clip(&reason)))
    })?;
    let dry_run = q.dry_run.unwrap_or(false);
    let done = dlq_ops::purge(&state.services, family, older_than, dry_run, ACTOR).await?;
    Ok(Json(PurgeBody {
        matched: done.matched,
        purged: done.purged,
        dry_run,
    }))
}
