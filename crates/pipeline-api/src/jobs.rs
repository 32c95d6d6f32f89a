//! Submissions, jobs and source trails.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use pipeline_ops::submit::{self, SubmitError, SubmitRequest};
use pipeline_store::JobStatus;
use pipeline_store::jobs::{self, JobFilter};
use pipeline_store::sources;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::model::{
    EventBody, InvalidUrlBody, JobBody, JobDetail, JobsPage, JobsQuery, QueuedSource,
    ScrapeAccepted, ScrapeRequest, SourceBody, SourceEvents,
};

/// The largest jobs page.
const MAX_JOBS_LIMIT: i64 = 1000;

const JOB_STATUSES: [JobStatus; 5] = [
    JobStatus::Queued,
    JobStatus::Running,
    JobStatus::Completed,
    JobStatus::Failed,
    JobStatus::CompletedWithErrors,
];

/// Submits URLs: one job, one source per valid distinct URL, one scrape message each. Invalid
/// URLs are listed one by one in the answer and recorded on the job, never dropped silently.
#[utoipa::path(
    post, path = "/api/v1/scrape", tag = "jobs", request_body = ScrapeRequest,
    responses(
        (status = 202, description = "Job recorded and its sources queued", body = ScrapeAccepted),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "`project_id` names no project", body = ErrorBody),
        (status = 422, description = "Malformed body, no URLs or too many", body = ErrorBody),
        (status = 503, description = "The job was recorded but Redis refused the messages; the reconciler will enqueue them", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn scrape(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ScrapeRequest>,
) -> Result<(StatusCode, Json<ScrapeAccepted>), ApiError> {
    let req = SubmitRequest {
        urls: body.urls,
        project_id: body.project_id,
        project_name: body.project,
        source_group: body.source_group,
    };
    let outcome = submit::submit(&state.services, &req)
        .await
        .map_err(|e| match e {
            SubmitError::Invalid(msg) => ApiError::unprocessable(msg),
            SubmitError::UnknownProject(id) => {
                ApiError::not_found(format!("project {id} not found"))
            }
            e @ SubmitError::Enqueue { .. } => {
                tracing::error!(error = %e, "submission enqueue failed");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
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
                    uri: s.uri,
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
        }),
    ))
}

/// Jobs, newest first, filtered by type and status.
#[utoipa::path(
    get, path = "/api/v1/jobs", tag = "jobs", params(JobsQuery),
    responses(
        (status = 200, description = "A page of jobs, newest first", body = JobsPage),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 422, description = "`limit` outside 1..=1000, a negative offset or an unknown status", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> Result<Json<JobsPage>, ApiError> {
    let limit = q.limit.unwrap_or(crate::model::DEFAULT_LIMIT as i64);
    if !(1..=MAX_JOBS_LIMIT).contains(&limit) {
        return Err(ApiError::unprocessable(format!(
            "limit must be between 1 and {MAX_JOBS_LIMIT}, got {limit}"
        )));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::unprocessable(format!(
            "offset must not be negative, got {offset}"
        )));
    }
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = &status
        && !JOB_STATUSES.iter().any(|j| j.as_str() == s)
    {
        let known: Vec<&str> = JOB_STATUSES.iter().map(|j| j.as_str()).collect();
        return Err(ApiError::unprocessable(format!(
            "unknown job status `{s}`; expected one of {}",
            known.join(", ")
        )));
    }
    let rows = jobs::list(
        &state.services.db,
        &JobFilter {
            job_type: q.job_type.filter(|t| !t.is_empty()),
            status,
            limit,
            offset,
        },
    )
    .await?;
    let next_offset = (rows.len() as i64 == limit).then_some(offset + limit);
    Ok(Json(JobsPage {
        items: rows.into_iter().map(JobBody::from).collect(),
        next_offset,
    }))
}

/// One job: its status, counts by outcome and its sources with their statuses.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<JobDetail>, ApiError> {
    let job = jobs::get(&state.services.db, id).await?;
    let sources = jobs::sources(&state.services.db, id).await?;
    Ok(Json(JobDetail {
        job: job.into(),
        sources: sources.into_iter().map(SourceBody::from).collect(),
    }))
}

/// A source and its event trail, oldest first: which job created it, every attempt, error,
/// DLQ move and redrive.
#[utoipa::path(
    get, path = "/api/v1/sources/{id}/events", tag = "jobs",
    params(("id" = Uuid, Path, description = "Source id")),
    responses(
        (status = 200, description = "The source and its events", body = SourceEvents),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such source", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn source_events(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<SourceEvents>, ApiError> {
    let source = sources::get(&state.services.db, id).await?;
    let events = sources::events(&state.services.db, id).await?;
    Ok(Json(SourceEvents {
        source: source.into(),
        events: events.into_iter().map(EventBody::from).collect(),
    }))
}
