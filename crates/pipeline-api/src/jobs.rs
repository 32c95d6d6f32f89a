//! Submissions, jobs and source trails.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use pipeline_ops::submit::{self, SubmitError, SubmitRequest};
use pipeline_store::job_settings;
use pipeline_store::jobs::{self, JobFilter};
use pipeline_store::sources;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::model::{
    EventsQuery, InvalidUrlBody, InvalidUrlsPage, JobBody, JobDetail, JobsPage, JobsQuery,
    MAX_OFFSET, PageQuery, ProjectBody, ProjectsPage, QueuedSource, ScrapeAccepted, ScrapeRequest,
    SourceBody, SourceEvents, SourcesPage,
};

/// The largest jobs page.
const MAX_JOBS_LIMIT: i64 = 1000;

/// Longest `type` filter, in characters.
const MAX_TYPE_CHARS: usize = 64;

/// Submits URLs: one job, one source per valid distinct URL, one scrape message each. Invalid
/// URLs are listed one by one in the answer and recorded on the job, never dropped silently.
#[utoipa::path(
    post, path = "/api/v1/scrape", tag = "jobs", request_body = ScrapeRequest,
    responses(
        (status = 202, description = "Job recorded and its sources queued", body = ScrapeAccepted),
        (status = 404, description = "`project_id` names no project", body = ErrorBody),
        (status = 422, description = "Not a JSON object, not the schema, no URLs or too many, a project or source group that is too long or holds control characters, a `model_token_cap` below 1, a `priority` other than `high`, `normal` or `low`, or a `render` other than `never`, `auto` or `always`", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn scrape(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ScrapeRequest>,
) -> Result<(StatusCode, Json<ScrapeAccepted>), ApiError> {
    let priority = body.priority.unwrap_or_default();
    let render = body.render;
    let req = SubmitRequest {
        urls: body.urls,
        project_id: body.project_id,
        project_name: body.project,
        source_group: body.source_group,
        model_token_cap: body.model_token_cap,
        priority: priority.into(),
        render: body.render.map(Into::into),
    };
    let outcome = submit::submit(&state.services, &req, pipeline_store::Actor::Api)
        .await
        .map_err(|e| match e {
            SubmitError::Invalid(msg) => ApiError::unprocessable(msg),
            SubmitError::UnknownProject(id) => {
                ApiError::not_found(format!("project {id} not found"))
            }
            e @ SubmitError::Enqueue { .. } => {
                tracing::error!(error = %e, "submission enqueue failed");
                ApiError::unavailable(
                    "the job was recorded but the queue is unavailable; \
                     the reconciler will enqueue its sources",
                )
            }
            SubmitError::Store(e) => e.into(),
            other => ApiError::internal("submission failed", &other),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ScrapeAccepted {
            job_id: outcome.job_id,
            project_id: outcome.project_id,
            sources: outcome
                .sources
                .into_iter()
                .map(|s| QueuedSource {
                    source_id: s.source_id,
                    url: s.url,
                    created: s.created,
                })
                .collect(),
            invalid: outcome
                .invalid
                .into_iter()
                .map(|i| InvalidUrlBody {
                    url: i.url,
                    reason: i.reason,
                })
                .collect(),
            already_queued: outcome.already_queued,
            priority,
            render,
        }),
    ))
}

/// `limit` within 1..=1000 (default 100) and `offset` within 0..=[`MAX_OFFSET`].
fn page_bounds(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(crate::model::DEFAULT_LIMIT as i64);
    if !(1..=MAX_JOBS_LIMIT).contains(&limit) {
        return Err(ApiError::unprocessable(format!(
            "limit must be between 1 and {MAX_JOBS_LIMIT}, got {limit}"
        )));
    }
    let offset = offset.unwrap_or(0);
    if !(0..=MAX_OFFSET).contains(&offset) {
        return Err(ApiError::unprocessable(format!(
            "offset must be between 0 and {MAX_OFFSET}, got {offset}"
        )));
    }
    Ok((limit, offset))
}

fn next_offset(len: usize, limit: i64, offset: i64) -> Option<i64> {
    (len as i64 == limit).then_some(offset + limit)
}

/// Jobs, newest first, filtered by type and status. Summaries only: a job's URLs and refused
/// URLs are paged on its own routes.
#[utoipa::path(
    get, path = "/api/v1/jobs", tag = "jobs", params(JobsQuery),
    responses(
        (status = 200, description = "A page of jobs, newest first", body = JobsPage),
        (status = 422, description = "`limit` outside 1..=1000, `offset` outside 0..=1000000000, an unknown status, or a type with control characters or over 64 characters", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> Result<Json<JobsPage>, ApiError> {
    let (limit, offset) = page_bounds(q.limit, q.offset)?;
    let job_type = q.job_type.filter(|t| !t.is_empty());
    if let Some(t) = &job_type
        && (t.chars().any(char::is_control) || t.chars().count() > MAX_TYPE_CHARS)
    {
        return Err(ApiError::unprocessable(format!(
            "type must be at most {MAX_TYPE_CHARS} characters without control characters"
        )));
    }
    let rows = jobs::list_summaries(
        &state.services.db,
        &JobFilter {
            job_type,
            status: q.status.map(Into::into),
            limit,
            offset,
        },
    )
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|j| j.id).collect();
    let settings = job_settings::of_jobs(&state.services.db, &ids).await?;
    Ok(Json(JobsPage {
        next_offset: next_offset(rows.len(), limit, offset),
        items: rows
            .into_iter()
            .map(|j| {
                let s = settings.get(&j.id);
                JobBody::new(j, s)
            })
            .collect(),
    }))
}

/// One job: its status, counts by outcome, the first page of its sources and of the URLs
/// its submission refused, and what the schema stage did for its pages (`facts`).
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<JobDetail>, ApiError> {
    let db = &state.services.db;
    let limit = crate::model::DEFAULT_LIMIT as i64;
    let job = jobs::get_summary(db, id).await?;
    let sources = jobs::sources_page(db, id, limit, 0).await?;
    let invalid = jobs::invalid_urls_page(db, id, limit, 0).await?;
    let facts = pipeline_store::facts::job_facts(db, id).await?;
    let settings = job_settings::of_job(db, id).await?;
    Ok(Json(JobDetail {
        facts: facts.into(),
        job: JobBody::new(job, settings.as_ref()),
        sources_next_offset: next_offset(sources.len(), limit, 0),
        sources: sources.into_iter().map(SourceBody::from).collect(),
        invalid_urls_next_offset: next_offset(invalid.len(), limit, 0),
        invalid_urls: invalid.into_iter().map(InvalidUrlBody::from).collect(),
    }))
}

/// A page of a job's sources with their statuses, in creation order.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}/sources", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id"), PageQuery),
    responses(
        (status = 200, description = "A page of the job's sources", body = SourcesPage),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 422, description = "The id is not a UUID, `limit` outside 1..=1000 or `offset` outside 0..=1000000000", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn job_sources(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<SourcesPage>, ApiError> {
    let (limit, offset) = page_bounds(q.limit, q.offset)?;
    let db = &state.services.db;
    jobs::get_summary(db, id).await?;
    let rows = jobs::sources_page(db, id, limit, offset).await?;
    Ok(Json(SourcesPage {
        next_offset: next_offset(rows.len(), limit, offset),
        items: rows.into_iter().map(SourceBody::from).collect(),
    }))
}

/// A page of the URLs a job's submission refused, each with its reason, in submission order.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}/invalid-urls", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id"), PageQuery),
    responses(
        (status = 200, description = "A page of refused URLs", body = InvalidUrlsPage),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 422, description = "The id is not a UUID, `limit` outside 1..=1000 or `offset` outside 0..=1000000000", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn job_invalid_urls(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<InvalidUrlsPage>, ApiError> {
    let (limit, offset) = page_bounds(q.limit, q.offset)?;
    let db = &state.services.db;
    jobs::get_summary(db, id).await?;
    let rows = jobs::invalid_urls_page(db, id, limit, offset).await?;
    Ok(Json(InvalidUrlsPage {
        next_offset: next_offset(rows.len(), limit, offset),
        items: rows.into_iter().map(InvalidUrlBody::from).collect(),
    }))
}

/// A source and a page of its event trail, oldest first: which job created it, every
/// attempt, error, DLQ move and redrive.
#[utoipa::path(
    get, path = "/api/v1/sources/{id}/events", tag = "jobs",
    params(("id" = Uuid, Path, description = "Source id"), EventsQuery),
    responses(
        (status = 200, description = "The source and its events", body = SourceEvents),
        (status = 404, description = "No such source", body = ErrorBody),
        (status = 422, description = "The id is not a UUID, `limit` outside 1..=1000 or a negative `after`", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn source_events(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<SourceEvents>, ApiError> {
    let (limit, _) = page_bounds(q.limit, None)?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::unprocessable(format!(
            "after must not be negative, got {after}"
        )));
    }
    let source = sources::get(&state.services.db, id).await?;
    let events = sources::events_page(&state.services.db, id, after, limit).await?;
    let next_after = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(SourceEvents {
        source: source.into(),
        events,
        next_after,
    }))
}

/// Projects by name, with their job and source counts.
#[utoipa::path(
    get, path = "/api/v1/projects", tag = "jobs", params(PageQuery),
    responses(
        (status = 200, description = "A page of projects, by name", body = ProjectsPage),
        (status = 422, description = "`limit` outside 1..=1000 or `offset` outside 0..=1000000000", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn projects(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ProjectsPage>, ApiError> {
    let (limit, offset) = page_bounds(q.limit, q.offset)?;
    let rows = jobs::projects_page(&state.services.db, limit, offset).await?;
    Ok(Json(ProjectsPage {
        next_offset: next_offset(rows.len(), limit, offset),
        items: rows
            .into_iter()
            .map(|p| ProjectBody {
                id: p.id,
                name: p.name,
                created_at: p.created_at,
                jobs: p.jobs,
                sources: p.sources,
            })
            .collect(),
    }))
}
