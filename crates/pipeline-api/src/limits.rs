//! A project's share and limits per queue family: its weight against other projects with
//! ready work, its cap of messages in flight, its start rate. Read, set and cleared through
//! [`pipeline_ops::limits`] (the same checks as the CLI): an invalid value is a 422 that
//! names the field. The work queue's README ("Fair share") says what the queue does with
//! them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use pipeline_ops::Family;
use pipeline_ops::limits::{self as ops, FamilyLimits, LimitsError, LimitsInput};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody, clip};
use crate::schemas::project_of;

/// `PUT /api/v1/projects/{project}/limits/{family}` body. The row is replaced: an absent
/// (or `null`) field takes its default (weight 1, no cap, no rate, burst 1).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"weight": 2, "max_in_flight": 4, "per_minute": 60, "burst": 5}))]
pub struct LimitsRequest {
    /// The project's share against other projects with ready work in the family: a
    /// project of weight 2 is served two messages for every one of a project of weight 1.
    #[schema(minimum = 1, maximum = 1000)]
    pub weight: Option<u32>,
    /// At most this many of the project's messages in flight at once, across every worker.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub max_in_flight: Option<u32>,
    /// At most this many starts per second on average, from 1/86400 (one a day) to 1000.
    /// Give this or `per_minute`, not both.
    #[schema(minimum = 0.000_011_574_074_074_074_073, maximum = 1000)]
    pub per_second: Option<f64>,
    /// At most this many starts per minute on average, from 1/1440 to 60000 (stored as
    /// `per_minute / 60` per second). Give this or `per_second`, not both.
    #[schema(minimum = 0.000_694_444_444_444_444_5, maximum = 60000)]
    pub per_minute: Option<f64>,
    /// Starts allowed at once by the rate (default 1).
    #[schema(minimum = 1, maximum = 10000)]
    pub burst: Option<u32>,
}

/// One project's limits in one family.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FamilyLimitsBody {
    /// A queue family: `scrape`, `extraction`, `facts` or `webhooks`.
    pub family: String,
    /// The project's share against other projects with ready work (1..=1000).
    pub weight: u32,
    /// Its cap of messages in flight; `null`: none.
    pub max_in_flight: Option<u32>,
    /// Its start rate per second; `null`: none.
    pub per_second: Option<f64>,
    /// Starts allowed at once by the rate.
    pub burst: u32,
    /// Whether limits are stored (`false`: these are the defaults).
    pub stored: bool,
    /// When they last changed (`null` for the defaults).
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<FamilyLimits> for FamilyLimitsBody {
    fn from(f: FamilyLimits) -> Self {
        Self {
            family: f.family.as_str().to_owned(),
            weight: f.limits.weight,
            max_in_flight: f.limits.max_in_flight,
            per_second: f.limits.per_second,
            burst: f.limits.burst,
            stored: f.stored,
            updated_at: f.updated_at,
        }
    }
}

/// A project's limits in every family.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectLimitsBody {
    /// The project's id (its lane's key in every queue).
    pub project_id: Uuid,
    /// Its name.
    pub project: String,
    /// Every family, in pipeline order.
    pub families: Vec<FamilyLimitsBody>,
}

/// The path of one family's limits.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitsPath {
    project: String,
    family: String,
}

impl From<LimitsError> for ApiError {
    fn from(err: LimitsError) -> Self {
        match err {
            LimitsError::Invalid(e) => {
                ApiError::unprocessable(crate::error::clip_to(&e.to_string(), 300))
            }
            LimitsError::Store(e) => e.into(),
            LimitsError::Queue(e) if dlq_core::is_unreachable(&e) => {
                tracing::warn!(error = %e, "Redis unavailable");
                ApiError::unavailable(
                    "the queue store is unavailable; the limits are stored and the requeue \
                     daemon applies them within a pass",
                )
            }
            other => ApiError::internal("queue limits operation failed", &other),
        }
    }
}

fn family_of(word: &str) -> Result<Family, ApiError> {
    word.parse::<Family>().map_err(|_| {
        ApiError::not_found(format!(
            "unknown family `{}` (expected one of: {})",
            clip(word),
            Family::names()
        ))
    })
}

/// A project's share and limits in every queue family (defaults where none are set).
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/limits", tag = "queues",
    params(("project" = String, Path, description = "Project id or name")),
    responses(
        (status = 200, description = "Every family, in pipeline order", body = ProjectLimitsBody),
        (status = 404, description = "No such project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<ProjectLimitsBody>, ApiError> {
    let p = project_of(&state, &project).await?;
    let families = ops::show(&state.services, p.id).await?;
    Ok(Json(ProjectLimitsBody {
        project_id: p.id,
        project: p.name,
        families: families.into_iter().map(Into::into).collect(),
    }))
}

/// Sets a project's share and limits in one family (replacing what was set: absent fields
/// take their defaults). Stored in Postgres, then applied to the project's lane on every
/// shard of the family's queue; a lane waiting at its cap or rate is placed again under the
/// new limits at once.
#[utoipa::path(
    put, path = "/api/v1/projects/{project}/limits/{family}", tag = "queues",
    params(
        ("project" = String, Path, description = "Project id or name"),
        ("family" = String, Path, description = "A queue family: `scrape`, `extraction`, `facts` or `webhooks`"),
    ),
    request_body = LimitsRequest,
    responses(
        (status = 200, description = "The limits in force", body = FamilyLimitsBody),
        (status = 404, description = "No such project, or unknown family", body = ErrorBody),
        (status = 422, description = "A value out of range, or both `per_second` and `per_minute` (the field is named)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn set(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<LimitsPath>,
    ApiJson(body): ApiJson<LimitsRequest>,
) -> Result<Json<FamilyLimitsBody>, ApiError> {
    let family = family_of(&path.family)?;
    let p = project_of(&state, &path.project).await?;
    let input = LimitsInput {
        weight: body.weight,
        max_in_flight: body.max_in_flight,
        per_second: body.per_second,
        per_minute: body.per_minute,
        burst: body.burst,
    };
    let set = ops::set(&state.services, p.id, family, &input).await?;
    Ok(Json(set.into()))
}

/// Clears a project's limits in one family: back to weight 1 with no cap and no rate, in
/// Postgres and in the queue at once. Clearing limits that were never set is not an error.
#[utoipa::path(
    delete, path = "/api/v1/projects/{project}/limits/{family}", tag = "queues",
    params(
        ("project" = String, Path, description = "Project id or name"),
        ("family" = String, Path, description = "A queue family: `scrape`, `extraction`, `facts` or `webhooks`"),
    ),
    responses(
        (status = 204, description = "The project has the default share and no limits in the family"),
        (status = 404, description = "No such project, or unknown family", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn clear(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<LimitsPath>,
) -> Result<StatusCode, ApiError> {
    let family = family_of(&path.family)?;
    let p = project_of(&state, &path.project).await?;
    ops::clear(&state.services, p.id, family).await?;
    Ok(StatusCode::NO_CONTENT)
}
