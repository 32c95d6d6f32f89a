//! Crawl jobs: start one, follow its progress, cancel it, repeat it (now or on a schedule),
//! and read a page's discovery path.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use pipeline_ops::crawl::{self, CrawlRequest};
use pipeline_ops::submit::SubmitError;
use pipeline_store::{crawl_schedules, crawl_status};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};

/// Which URLs belong to a crawl.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeBody {
    /// The start URL's host (default).
    Host,
    /// Any host of the start URL's registrable domain (public suffix list).
    Domain,
    /// URLs starting with the start URL up to its last `/`.
    Prefix,
}

/// A JSON number that is a whole number (`94` or `94.0`: JSON Schema counts both as integers,
/// so a client generated from the OpenAPI document may send either), as a `u32`.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(u) = n.as_u64() {
        return u32::try_from(u)
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{n} is too large")));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => {
            Ok(Some(f as u32))
        }
        _ => Err(D::Error::custom(format!(
            "{n} is not a whole number from 0 to {}",
            u32::MAX
        ))),
    }
}

/// A crawl to start. Every field but `url` is optional.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrawlRequestBody {
    /// The start URL: http or https; a host name (letters, digits, single hyphens; the last
    /// label starts with a letter) or a dotted IPv4 address; an optional port; then
    /// printable ASCII. At most 600 characters.
    #[schema(
        max_length = 600,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://(([A-Za-z0-9]+(-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*|((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?#][!-~]*)?$"
    )]
    pub url: String,
    /// `host` (default), `domain` or `prefix`.
    pub scope: Option<ScopeBody>,
    /// Globs over the whole normalized URL (`*` matches anything, every other character is
    /// itself); when any is given, a page must match one.
    #[schema(max_items = 50, inline)]
    pub include: Option<Vec<Pattern>>,
    /// Globs over the whole normalized URL; a URL matching any is skipped.
    #[schema(max_items = 50, inline)]
    pub exclude: Option<Vec<Pattern>>,
    /// Links followed from the start URL (default 10).
    #[schema(minimum = 0, maximum = 100)]
    #[serde(default, deserialize_with = "whole_number")]
    pub max_depth: Option<u32>,
    /// Most pages (default 1000).
    #[schema(minimum = 1, maximum = 100000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub max_pages: Option<u32>,
    /// Follow links marked `rel=nofollow` (default false).
    pub follow_nofollow: Option<bool>,
    /// Read the start host's sitemaps (default true): the `Sitemap:` lines of its
    /// robots.txt and `/sitemap.xml`, following sitemap indexes and gzipped sitemaps (at
    /// most 50 sitemap files, 2 levels of indexes, 10 MiB each after decompression, 50,000
    /// URLs in all). Their pages are admitted at depth 1 under the same scope, patterns and
    /// caps as links, and their discovery path says `via: sitemap`.
    pub sitemaps: Option<bool>,
    /// Trap cap: distinct query strings accepted per path (default 20).
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub max_query_variants: Option<u32>,
    /// Trap cap: path segments per URL (default 12).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub max_path_depth: Option<u32>,
    /// Query parameters removed from discovered URLs (a trailing `*` makes a prefix);
    /// default `utm_*`, `gclid`, `fbclid` and other common trackers.
    #[schema(max_items = 50, inline)]
    pub tracking_params: Option<Vec<TrackingParam>>,
    /// The project by id (must exist).
    pub project_id: Option<Uuid>,
    /// The project by name (created when missing). At most 200 characters, no control
    /// characters.
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub project: Option<String>,
    /// A free-form group name stored on each page's source.
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub source_group: Option<String>,
    /// Most model tokens the crawl's pages may spend in the schema stage (`llm` backend),
    /// greater than 0; absent: no cap. Pages past the cap keep the values found so far. A
    /// recrawl (now or scheduled) keeps the crawl's cap.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "crate::model::whole_i64")]
    pub model_token_cap: Option<i64>,
    /// The crawl's priority within its project (default `normal`); a recrawl (now or
    /// scheduled) keeps it.
    pub priority: Option<crate::model::PriorityBody>,
    /// Whether the crawl's pages are rendered in a headless browser: `never`, `auto` or
    /// `always`; absent or null: the scrape worker's `render.default`. Every page the crawl
    /// discovers, and a recrawl (now or scheduled), keep it.
    pub render: Option<crate::model::RenderBody>,
}

/// An include or exclude glob.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(value_type = String, pattern = r"^[^\u0000]{0,500}$")]
pub struct Pattern(pub String);

/// A tracking parameter name.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(value_type = String, pattern = r"^[^\u0000-\u001f\u007f-\u009f]{1,100}$")]
pub struct TrackingParam(pub String);

impl From<CrawlRequestBody> for CrawlRequest {
    fn from(b: CrawlRequestBody) -> Self {
        Self {
            url: b.url,
            scope: b.scope.map(|s| match s {
                ScopeBody::Host => crawl::rules::ScopeKind::Host,
                ScopeBody::Domain => crawl::rules::ScopeKind::Domain,
                ScopeBody::Prefix => crawl::rules::ScopeKind::Prefix,
            }),
            include: b
                .include
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.0)
                .collect(),
            exclude: b
                .exclude
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.0)
                .collect(),
            max_depth: b.max_depth,
            max_pages: b.max_pages,
            follow_nofollow: b.follow_nofollow.unwrap_or(false),
            sitemaps: b.sitemaps,
            max_query_variants: b.max_query_variants,
            max_path_depth: b.max_path_depth,
            tracking_params: b
                .tracking_params
                .map(|v| v.into_iter().map(|t| t.0).collect()),
            project_id: b.project_id,
            project: b.project,
            source_group: b.source_group,
            model_token_cap: b.model_token_cap,
            priority: b.priority.map(Into::into),
            render: b.render.map(Into::into),
        }
    }
}

/// A crawl's settings, as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CrawlSettingsBody {
    pub start_url: String,
    pub scope: String,
    pub scope_prefix: Option<String>,
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    pub max_depth: i32,
    pub max_pages: i32,
    pub follow_nofollow: bool,
    pub sitemaps: bool,
    pub max_query_variants: i32,
    pub max_path_depth: i32,
    pub tracking_params: Vec<String>,
}

impl From<pipeline_store::crawls::CrawlSettings> for CrawlSettingsBody {
    fn from(s: pipeline_store::crawls::CrawlSettings) -> Self {
        Self {
            start_url: s.start_url,
            scope: s.scope,
            scope_prefix: s.scope_prefix,
            include_patterns: s.include_patterns,
            exclude_patterns: s.exclude_patterns,
            max_depth: s.max_depth,
            max_pages: s.max_pages,
            follow_nofollow: s.follow_nofollow,
            sitemaps: s.sitemaps,
            max_query_variants: s.max_query_variants,
            max_path_depth: s.max_path_depth,
            tracking_params: s.tracking_params,
        }
    }
}

/// A started crawl.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CrawlAccepted {
    /// The crawl's job.
    pub job_id: Uuid,
    pub project_id: Uuid,
    /// The start page's source.
    pub source_id: Uuid,
    pub settings: CrawlSettingsBody,
    /// The crawl's priority within its project.
    pub priority: crate::model::PriorityBody,
    /// The crawl's render mode; null: the scrape worker's `render.default`.
    pub render: Option<crate::model::RenderBody>,
}

/// Distinct URLs a crawl refused, by reason.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkippedBody {
    pub scope: i64,
    pub pattern: i64,
    pub depth: i64,
    pub limit: i64,
    pub trap: i64,
    pub nofollow: i64,
    /// Pages robots.txt disallowed (dead-lettered as permanent failures).
    pub robots: i64,
}

/// A crawl's progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CrawlProgressBody {
    pub job_id: Uuid,
    /// The job's status; an end (`completed`, `failed`, `completed_with_errors`) once
    /// nothing in scope remains.
    pub status: String,
    pub ended: bool,
    pub cancelled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub settings: CrawlSettingsBody,
    /// Distinct URLs seen (pages plus refused URLs).
    pub discovered: i64,
    /// Pages accepted.
    pub pages: i64,
    /// Pages waiting to be fetched.
    pub queued: i64,
    pub fetched: i64,
    pub extracted: i64,
    /// Pages that failed, robots.txt refusals apart.
    pub failed: i64,
    pub skipped: SkippedBody,
}

impl From<crawl_status::CrawlProgress> for CrawlProgressBody {
    fn from(p: crawl_status::CrawlProgress) -> Self {
        let s = p.skipped;
        Self {
            job_id: p.job_id,
            status: p.status,
            ended: p.ended,
            cancelled_at: p.cancelled_at,
            settings: p.settings.into(),
            discovered: p.discovered,
            pages: p.pages,
            queued: p.queued,
            fetched: p.fetched,
            extracted: p.extracted,
            failed: p.failed,
            skipped: SkippedBody {
                scope: s.scope,
                pattern: s.pattern,
                depth: s.depth,
                limit: s.limit,
                trap: s.trap,
                nofollow: s.nofollow,
                robots: s.robots,
            },
        }
    }
}

/// A cancelled crawl.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CrawlCancelled {
    pub job_id: Uuid,
    /// Pages that were waiting and are now `discarded`.
    pub discarded: u64,
}

/// One page of a discovery path.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PathStepBody {
    pub source_id: Uuid,
    pub url: String,
    pub depth: i32,
    /// `start`, `link`, `canonical`, `next` or `sitemap`.
    pub via: String,
    /// For `via = sitemap`: the sitemap file that listed the page (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sitemap: Option<String>,
}

/// A page's discovery path, from the start URL down to the page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiscoveryPath {
    /// The crawl (the newest that includes the page); null when none does.
    pub job_id: Option<Uuid>,
    pub steps: Vec<PathStepBody>,
}

/// Starts a crawl: a job of type `crawl` whose start page is queued at once; the scrape
/// worker follows the links of each page within the scope, depth and caps, and (unless
/// `sitemaps` is false) the pages the start host's sitemaps list.
#[utoipa::path(
    post, path = "/api/v1/crawl", tag = "crawl", request_body = CrawlRequestBody,
    responses(
        (status = 202, description = "Crawl recorded and its start page queued", body = CrawlAccepted),
        (status = 404, description = "`project_id` names no project", body = ErrorBody),
        (status = 422, description = "Not the schema (a start URL that does not match its pattern, a cap out of range, a `model_token_cap` below 1, a `priority` other than `high`, `normal` or `low`, a `render` other than `never`, `auto` or `always`, an unknown field)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn start(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CrawlRequestBody>,
) -> Result<(StatusCode, Json<CrawlAccepted>), ApiError> {
    let priority = body.priority.unwrap_or_default();
    let started = crawl::start(&state.services, &body.into(), pipeline_store::Actor::Api)
        .await
        .map_err(|e| match e {
            SubmitError::Invalid(msg) => ApiError::unprocessable(msg),
            SubmitError::UnknownProject(id) => {
                ApiError::not_found(format!("project {id} not found"))
            }
            e @ SubmitError::Enqueue { .. } => {
                tracing::error!(error = %e, "crawl enqueue failed");
                ApiError::unavailable(
                    "the crawl was recorded but the queue is unavailable; \
                     the reconciler will enqueue its start page",
                )
            }
            SubmitError::Store(e) => e.into(),
            other => ApiError::internal("starting the crawl failed", &other),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(CrawlAccepted {
            job_id: started.job_id,
            project_id: started.project_id,
            source_id: started.source_id,
            settings: started.settings.into(),
            priority,
            render: started.render.map(Into::into),
        }),
    ))
}

/// A crawl's progress: pages discovered, queued, fetched, extracted, failed, and the URLs
/// refused by scope, pattern, depth, page limit, trap caps, nofollow and robots.txt.
#[utoipa::path(
    get, path = "/api/v1/crawl/{id}", tag = "crawl",
    params(("id" = Uuid, Path, description = "The crawl's job id")),
    responses(
        (status = 200, description = "The crawl's progress", body = CrawlProgressBody),
        (status = 404, description = "No such crawl", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CrawlProgressBody>, ApiError> {
    Ok(Json(
        crawl_status::progress(&state.services.db, id).await?.into(),
    ))
}

/// Cancels a crawl: no more links are followed, and its pages still waiting are discarded.
/// Cancelling twice is harmless.
#[utoipa::path(
    post, path = "/api/v1/crawl/{id}/cancel", tag = "crawl",
    params(("id" = Uuid, Path, description = "The crawl's job id")),
    responses(
        (status = 200, description = "Cancelled", body = CrawlCancelled),
        (status = 404, description = "No such crawl", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CrawlCancelled>, ApiError> {
    let discarded = crawl_status::cancel(
        &state.services.db,
        &state.services.progress,
        id,
        pipeline_store::Actor::Api,
    )
    .await?;
    Ok(Json(CrawlCancelled {
        job_id: id,
        discarded,
    }))
}

/// Repeats an ended crawl: a new crawl job with the same settings, priority and render mode
/// (a crawl that named none keeps following the worker's default). Its pages are fetched
/// conditionally (`If-None-Match` / `If-Modified-Since` from the last fetch); a page whose
/// content did not change since its last extraction (a 304, or the same SHA-256) is not
/// extracted again and gets an `unchanged` event; a changed page is extracted again, its
/// scrape `succeeded` event saying `"content": "changed"`.
#[utoipa::path(
    post, path = "/api/v1/crawl/{id}/recrawl", tag = "crawl",
    params(("id" = Uuid, Path, description = "The ended crawl's job id")),
    responses(
        (status = 202, description = "The recrawl's job recorded and its start page queued", body = CrawlAccepted),
        (status = 404, description = "No such crawl", body = ErrorBody),
        (status = 409, description = "The crawl has not ended yet", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn recrawl(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<CrawlAccepted>), ApiError> {
    let started = crawl::recrawl(&state.services, id, pipeline_store::Actor::Api)
        .await
        .map_err(|e| match e {
            e @ crawl::RecrawlError::NotFound(_) => ApiError::not_found(e.to_string()),
            e @ crawl::RecrawlError::Running(..) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            crawl::RecrawlError::Failed(e @ SubmitError::Enqueue { .. }) => {
                tracing::error!(error = %e, "recrawl enqueue failed");
                ApiError::unavailable(
                    "the recrawl was recorded but the queue is unavailable; \
                     the reconciler will enqueue its start page",
                )
            }
            crawl::RecrawlError::Failed(SubmitError::Store(e)) => e.into(),
            other => ApiError::internal("starting the recrawl failed", &other),
        })?;
    // The recrawl keeps the crawl's priority, as stored on its job.
    let priority = pipeline_store::job_settings::of_job(&state.services.db, started.job_id)
        .await?
        .map_or_else(Default::default, |s| {
            crate::model::PriorityBody::of_column(&s.priority)
        });
    Ok((
        StatusCode::ACCEPTED,
        Json(CrawlAccepted {
            job_id: started.job_id,
            project_id: started.project_id,
            source_id: started.source_id,
            settings: started.settings.into(),
            priority,
            render: started.render.map(Into::into),
        }),
    ))
}

/// A page's discovery path back to its crawl's start URL.
#[utoipa::path(
    get, path = "/api/v1/sources/{id}/path", tag = "crawl",
    params(("id" = Uuid, Path, description = "Source id")),
    responses(
        (status = 200, description = "The path, start URL first (empty when no crawl found the page)", body = DiscoveryPath),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn path(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<DiscoveryPath>, ApiError> {
    let (job_id, steps) = crawl_status::discovery_path(&state.services.db, id, None).await?;
    Ok(Json(DiscoveryPath {
        job_id,
        steps: steps
            .into_iter()
            .map(|s| PathStepBody {
                source_id: s.source_id,
                url: s.url,
                depth: s.depth,
                via: s.via,
                sitemap: s.sitemap,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    /// The schema states the same start URL pattern the crawl checks, so a schema-valid
    /// request is never refused for its URL and a schema-invalid one always is.
    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        let body = |v: &str| {
            serde_json::from_str::<super::CrawlRequestBody>(&format!(
                r#"{{"url": "https://example.com/", "max_pages": {v}}}"#
            ))
        };
        assert_eq!(body("94").unwrap().max_pages, Some(94));
        assert_eq!(body("94.0").unwrap().max_pages, Some(94));
        assert_eq!(body("null").unwrap().max_pages, None);
        for bad in ["94.5", "-1", "1e12", "\"3\""] {
            assert!(body(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_caps_may_be_written_as_floats() {
        let body = |v: &str| {
            serde_json::from_str::<super::CrawlRequestBody>(&format!(
                r#"{{"url": "https://example.com/", "model_token_cap": {v}}}"#
            ))
        };
        assert_eq!(body("5000").unwrap().model_token_cap, Some(5000));
        assert_eq!(body("5000.0").unwrap().model_token_cap, Some(5000));
        assert_eq!(body("null").unwrap().model_token_cap, None);
        assert!(body("1.5").is_err());
    }

    #[test]
    fn the_token_cap_is_documented_from_1() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let cap =
            &doc["components"]["schemas"]["CrawlRequestBody"]["properties"]["model_token_cap"];
        assert_eq!(cap["minimum"], 1, "{cap}");
    }

    #[test]
    fn the_documented_url_pattern_is_the_checked_one() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let pattern =
            &doc["components"]["schemas"]["CrawlRequestBody"]["properties"]["url"]["pattern"];
        assert_eq!(pattern, pipeline_ops::crawl::START_URL_PATTERN);
    }
}

/// A whole number (`3600` or `3600.0`) as a `u32`, required.
fn required_whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::Error;
    whole_number(d)?.ok_or_else(|| D::Error::custom("a whole number is required"))
}

/// How often to repeat a crawl.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequestBody {
    /// Seconds between runs: at least 60, at most 31,536,000 (365 days). A run starts when
    /// its time has come and the previous run has ended.
    #[schema(minimum = 60, maximum = 31536000)]
    #[serde(deserialize_with = "required_whole_number")]
    pub every_secs: u32,
}

/// A crawl's recrawl schedule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CrawlSchedule {
    /// The crawl the schedule is set on.
    pub crawl_job_id: Uuid,
    /// Seconds between runs.
    pub every_secs: i32,
    /// When the next run is due (it starts then, or when the previous run ends if later).
    pub next_run_at: chrono::DateTime<chrono::Utc>,
    /// The latest run (the crawl itself until the first recrawl); the next run repeats it.
    pub last_job_id: Uuid,
    /// Runs the schedule started.
    pub runs: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<crawl_schedules::Schedule> for CrawlSchedule {
    fn from(s: crawl_schedules::Schedule) -> Self {
        Self {
            crawl_job_id: s.crawl_job_id,
            every_secs: s.every_secs,
            next_run_at: s.next_run_at,
            last_job_id: s.last_job_id,
            runs: s.runs,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Repeats a crawl every `every_secs` seconds (a recrawl each time, as
/// `POST /api/v1/crawl/{id}/recrawl` starts one), kept in Postgres and started by the requeue
/// daemon. Setting it again replaces the interval; the first run is `every_secs` from now.
#[utoipa::path(
    put, path = "/api/v1/crawl/{id}/schedule", tag = "crawl",
    params(("id" = Uuid, Path, description = "The crawl's job id")),
    request_body = ScheduleRequestBody,
    responses(
        (status = 200, description = "The schedule as set", body = CrawlSchedule),
        (status = 404, description = "No such crawl", body = ErrorBody),
        (status = 422, description = "The id is not a UUID, or every_secs is outside 60..=31536000", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn set_schedule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ScheduleRequestBody>,
) -> Result<Json<CrawlSchedule>, ApiError> {
    let range = crawl_schedules::MIN_EVERY_SECS..=crawl_schedules::MAX_EVERY_SECS;
    if !range.contains(&body.every_secs) {
        return Err(ApiError::unprocessable(format!(
            "every_secs: {} is outside {}..={}",
            body.every_secs,
            range.start(),
            range.end()
        )));
    }
    let s = crawl_schedules::set(&state.services.db, id, body.every_secs).await?;
    Ok(Json(s.into()))
}

/// A crawl's recrawl schedule.
#[utoipa::path(
    get, path = "/api/v1/crawl/{id}/schedule", tag = "crawl",
    params(("id" = Uuid, Path, description = "The crawl's job id")),
    responses(
        (status = 200, description = "The schedule", body = CrawlSchedule),
        (status = 404, description = "The crawl has no schedule", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn show_schedule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CrawlSchedule>, ApiError> {
    match crawl_schedules::get(&state.services.db, id).await? {
        Some(s) => Ok(Json(s.into())),
        None => Err(ApiError::not_found(format!("crawl {id} has no schedule"))),
    }
}

/// Removes a crawl's recrawl schedule and returns it; a run already started goes on.
#[utoipa::path(
    delete, path = "/api/v1/crawl/{id}/schedule", tag = "crawl",
    params(("id" = Uuid, Path, description = "The crawl's job id")),
    responses(
        (status = 200, description = "The removed schedule", body = CrawlSchedule),
        (status = 404, description = "The crawl has no schedule", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete_schedule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CrawlSchedule>, ApiError> {
    match crawl_schedules::delete(&state.services.db, id).await? {
        Some(s) => Ok(Json(s.into())),
        None => Err(ApiError::not_found(format!("crawl {id} has no schedule"))),
    }
}
