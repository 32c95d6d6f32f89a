//! Queue state and control: per-family counts and ready work per project
//! (`GET /api/v1/queues`), the live daemons (`GET /api/v1/workers`), and pausing and
//! resuming a family's workers. The console and
//! `pipelinectl` read and change the same state through `pipeline_ops`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use pipeline_ops::heartbeat::{self, Beat};
use pipeline_ops::pause;
use pipeline_ops::queues::{FamilyLanes, FamilyQueues, LaneState, MAX_LANES_SHOWN, ProjectLane};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ErrorBody, FamilyPath};

/// Who the pause flag names for changes made through the API.
const ACTOR: pipeline_store::Actor = pipeline_store::Actor::Api;

/// Who paused a family, and when.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PausedBody {
    /// Who asked (`api`, `cli`, `console`).
    pub by: String,
    /// When (RFC 3339, UTC).
    pub at: DateTime<Utc>,
}

impl From<pause::Paused> for PausedBody {
    fn from(p: pause::Paused) -> Self {
        Self { by: p.by, at: p.at }
    }
}

/// A family's DLQ by kind.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DlqCounts {
    /// Unparked items that failed transiently (automatic redrive pending).
    pub transient: u64,
    /// Unparked items that failed permanently (wait for a person).
    pub permanent: u64,
    /// Items automatic redrive gave up on.
    pub parked: u64,
}

/// One family's queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FamilyQueuesBody {
    /// A queue family: `scrape`, `extraction`, `facts` or `webhooks`.
    pub family: String,
    /// Messages waiting for a worker.
    pub ready: u64,
    /// Messages a worker holds now (leased).
    pub in_flight: u64,
    /// Messages waiting for their retry backoff.
    pub delayed: u64,
    /// The family's DLQ.
    pub dlq: DlqCounts,
    /// Whether its workers are paused.
    pub paused: bool,
    /// Who paused it and when (absent while it runs).
    pub paused_by: Option<PausedBody>,
    /// Ready work per project (its lane), most ready first: every lane with ready messages
    /// or counted messages in flight, at most 100.
    pub lanes: Vec<LaneBody>,
    /// Whether more lanes have work than `lanes` lists.
    pub lanes_truncated: bool,
}

/// Whether a project's lane is being served.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LaneStateBody {
    /// Taking its turns.
    Serving,
    /// Waiting for its start rate (`per_second`).
    Held,
    /// At its cap of messages in flight (`max_in_flight`).
    Capped,
}

/// One project's work in a family's queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LaneBody {
    /// The project; `null` for the default lane (messages that belong to no project).
    pub project_id: Option<Uuid>,
    /// Its ready messages.
    pub ready: u64,
    /// Its messages in flight counted against its cap (0 unless it has `max_in_flight`).
    pub in_flight: u64,
    /// `serving`, `held` (waiting for its start rate) or `capped` (at its cap).
    pub state: LaneStateBody,
}

impl From<ProjectLane> for LaneBody {
    fn from(l: ProjectLane) -> Self {
        Self {
            project_id: l.project_id,
            ready: l.ready,
            in_flight: l.in_flight,
            state: match l.state {
                LaneState::Held => LaneStateBody::Held,
                LaneState::Capped => LaneStateBody::Capped,
                _ => LaneStateBody::Serving,
            },
        }
    }
}

impl FamilyQueuesBody {
    fn new(f: FamilyQueues, lanes: FamilyLanes) -> Self {
        Self {
            family: f.family.as_str().to_owned(),
            ready: f.ready,
            in_flight: f.in_flight,
            delayed: f.delayed,
            dlq: DlqCounts {
                transient: f.dlq_transient,
                permanent: f.dlq_permanent,
                parked: f.dlq_parked,
            },
            paused: f.paused.is_some(),
            paused_by: f.paused.map(Into::into),
            lanes: lanes.lanes.into_iter().map(Into::into).collect(),
            lanes_truncated: lanes.truncated,
        }
    }
}

/// Every family's queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueuesBody {
    /// In pipeline order.
    pub families: Vec<FamilyQueuesBody>,
}

/// One live daemon, from its last heartbeat.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerBody {
    /// Unique per process.
    pub id: String,
    /// The binary (`scrape-worker`, `extraction-worker`, `requeue-daemon`, `pipeline-api`).
    pub kind: String,
    /// Its host.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Its version.
    pub version: String,
    /// The family it works on (workers).
    pub family: Option<String>,
    /// Deliveries it may process at once (0: takes no deliveries).
    pub concurrency: u64,
    /// Deliveries in progress at its last heartbeat.
    pub in_flight: u64,
    /// Whether its family was paused at its last heartbeat.
    pub paused: bool,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_heartbeat: DateTime<Utc>,
}

impl From<Beat> for WorkerBody {
    fn from(b: Beat) -> Self {
        Self {
            id: b.id,
            kind: b.kind,
            host: b.host,
            pid: b.pid,
            version: b.version,
            family: b.family,
            concurrency: b.concurrency,
            in_flight: b.in_flight,
            paused: b.paused,
            started_at: b.started_at,
            last_heartbeat: b.last_beat,
        }
    }
}

/// The live daemons.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkersBody {
    /// By kind, host and pid.
    pub workers: Vec<WorkerBody>,
}

/// A family's pause state after a pause or resume.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PauseBody {
    /// The family.
    pub family: String,
    /// Whether its workers are paused now.
    pub paused: bool,
    /// Who paused it and when (absent while it runs).
    pub paused_by: Option<PausedBody>,
}

fn redis_down(err: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %err, "Redis unavailable");
    ApiError::unavailable("the queue is unavailable; retry later")
}

/// Every family's queue: ready, in flight, delayed, DLQ by kind, whether it is paused, and
/// its ready work per project (`lanes`).
#[utoipa::path(
    get, path = "/api/v1/queues", tag = "queues",
    responses((status = 200, description = "Per family, in pipeline order", body = QueuesBody)),
    security(("api_key" = []))
)]
pub async fn queues(State(state): State<AppState>) -> Result<Json<QueuesBody>, ApiError> {
    let snapshot = pipeline_ops::queues::snapshot(&state.services)
        .await
        .map_err(redis_down)?;
    let mut families = Vec::with_capacity(snapshot.len());
    for f in snapshot {
        let lanes = pipeline_ops::queues::lanes(&state.services, f.family, MAX_LANES_SHOWN)
            .await
            .map_err(redis_down)?;
        families.push(FamilyQueuesBody::new(f, lanes));
    }
    Ok(Json(QueuesBody { families }))
}

/// Every live daemon, from the heartbeats they write every 5 s with a 15 s TTL: a daemon
/// that died drops off within 15 s.
#[utoipa::path(
    get, path = "/api/v1/workers", tag = "queues",
    responses((status = 200, description = "The live daemons", body = WorkersBody)),
    security(("api_key" = []))
)]
pub async fn workers(State(state): State<AppState>) -> Result<Json<WorkersBody>, ApiError> {
    let beats = heartbeat::live(
        &state.services.redis,
        &state.services.settings.redis.key_prefix,
    )
    .await
    .map_err(redis_down)?;
    Ok(Json(WorkersBody {
        workers: beats.into_iter().map(Into::into).collect(),
    }))
}

/// Pauses a family: its workers stop reserving within about a second (a reserve already
/// waiting may still take one batch); work in flight finishes. Pausing a paused family
/// keeps the first pause's record.
#[utoipa::path(
    post, path = "/api/v1/queues/{family}/pause", tag = "queues",
    params(("family" = String, Path, description = "A queue family: `scrape`, `extraction`, `facts` or `webhooks`")),
    responses(
        (status = 200, description = "The family is paused", body = PauseBody),
        (status = 404, description = "Unknown family", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn pause_family(
    State(state): State<AppState>,
    FamilyPath(family): FamilyPath,
) -> Result<Json<PauseBody>, ApiError> {
    let flag = pause::pause(&state.services, family, ACTOR)
        .await
        .map_err(redis_down)?;
    Ok(Json(PauseBody {
        family: family.as_str().to_owned(),
        paused: true,
        paused_by: Some(flag.into()),
    }))
}

/// Resumes a family: its workers reserve again within about a second.
#[utoipa::path(
    post, path = "/api/v1/queues/{family}/resume", tag = "queues",
    params(("family" = String, Path, description = "A queue family: `scrape`, `extraction`, `facts` or `webhooks`")),
    responses(
        (status = 200, description = "The family runs", body = PauseBody),
        (status = 404, description = "Unknown family", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn resume_family(
    State(state): State<AppState>,
    FamilyPath(family): FamilyPath,
) -> Result<Json<PauseBody>, ApiError> {
    pause::resume(&state.services, family, ACTOR)
        .await
        .map_err(redis_down)?;
    Ok(Json(PauseBody {
        family: family.as_str().to_owned(),
        paused: false,
        paused_by: None,
    }))
}
