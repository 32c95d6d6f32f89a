//! The API's request and response bodies. They are the types the handlers really return
//! (converted from the store and DLQ types), so the OpenAPI schemas derived from them cannot
//! drift from the answers.

use chrono::{DateTime, Utc};
use dlq_core::{DlqItem, ListedItem};
use pipeline_ops::messages::RenderMode;
use pipeline_store::JobStatus;
use pipeline_store::job_settings::JobSettings;
use pipeline_store::jobs::JobSummary;
use pipeline_store::sources::SourceRow;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Default page size of the lists.
pub const DEFAULT_LIMIT: usize = 100;

/// One DLQ item: the original service's fields plus kind, counts and payload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DlqItemBody {
    /// Item id (the source id for pipeline messages).
    pub id: String,
    /// The source the message was about.
    pub source_id: Option<Uuid>,
    /// The job on whose behalf it ran.
    pub job_id: Option<Uuid>,
    /// The last error.
    pub error: String,
    /// When the last attempt failed (RFC 3339, UTC).
    pub failed_at: DateTime<Utc>,
    /// How many times it already came back from the DLQ.
    pub retry_count: u32,
    /// The queue family.
    pub dlq_type: String,
    /// `transient` or `permanent`.
    pub error_kind: String,
    /// Failed attempts in its last life.
    pub attempts: u32,
    /// Whether automatic redrive gave up on it.
    pub parked: bool,
    /// When it was parked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parked_at: Option<DateTime<Utc>>,
    /// The worker that gave up on it.
    pub worker_id: Option<String>,
    /// The work message a redrive enqueues. One whose JSON is longer than
    /// [`MAX_PAYLOAD_BYTES`] is shown as a string: the start of its JSON and `…`, with
    /// `payload_truncated` set (a redrive still enqueues the whole stored message).
    pub payload: Value,
    /// Whether `payload` was cut to keep the answer bounded.
    pub payload_truncated: bool,
}

/// Longest payload shown whole, in bytes of JSON: every field of an item is bounded, so a
/// page of DLQ items is bounded by its `limit` (a 20-item page of 1 MB payloads was 20 MB).
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Longest identifier-like field shown (item id, worker id, family), in characters: these
/// come from messages, which anyone who can write to Redis can write.
pub const MAX_NAME_CHARS: usize = 200;

/// `payload`, or the start of its JSON as a string when it is over [`MAX_PAYLOAD_BYTES`];
/// and whether it was cut.
fn bounded_payload(payload: Value) -> (Value, bool) {
    let json = payload.to_string();
    if json.len() <= MAX_PAYLOAD_BYTES {
        return (payload, false);
    }
    let mut end = MAX_PAYLOAD_BYTES;
    while !json.is_char_boundary(end) {
        end -= 1;
    }
    (Value::String(format!("{}…", &json[..end])), true)
}

impl From<DlqItem> for DlqItemBody {
    fn from(i: DlqItem) -> Self {
        let (payload, payload_truncated) = bounded_payload(i.payload);
        Self {
            id: clip_long(i.id, MAX_NAME_CHARS),
            source_id: i.source_id,
            job_id: i.job_id,
            error: clip_long(i.error, MAX_ERROR_CHARS),
            failed_at: i.failed_at,
            retry_count: i.retry_count,
            dlq_type: clip_long(i.dlq_type, MAX_NAME_CHARS),
            error_kind: i.error_kind.as_str().to_owned(),
            attempts: i.attempts,
            parked: i.parked,
            parked_at: i.parked_at,
            worker_id: clip_opt(i.worker_id, MAX_NAME_CHARS),
            payload,
            payload_truncated,
        }
    }
}

/// A stored entry that cannot be parsed: listed with its raw text, never hidden.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MalformedBody {
    /// Item id.
    pub id: String,
    /// Always `true`.
    pub malformed: bool,
    /// The stored text, if any.
    pub raw: Option<String>,
    /// Why it cannot be parsed.
    pub reason: String,
}

/// One entry of a DLQ listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DlqEntry {
    /// A well-formed item.
    Item(DlqItemBody),
    /// An entry that cannot be parsed.
    Malformed(MalformedBody),
}

impl From<ListedItem> for DlqEntry {
    fn from(l: ListedItem) -> Self {
        match l {
            ListedItem::Ok(item) => Self::Item(item.into()),
            ListedItem::Malformed(m) => Self::Malformed(MalformedBody {
                id: clip_long(m.id, MAX_NAME_CHARS),
                malformed: true,
                raw: clip_opt(m.raw, MAX_ERROR_CHARS),
                reason: clip_long(m.reason, MAX_ERROR_CHARS),
            }),
        }
    }
}

/// A page of a DLQ, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DlqPage {
    /// The entries.
    pub items: Vec<DlqEntry>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Query of a DLQ listing.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page (empty: the first page).
    #[param(pattern = "^(c[0-9a-fA-F]{1,16})?$")]
    pub cursor: Option<String>,
}

/// A redriven item and whether it was put on the work queue (`false`: it was already there).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetriedItem {
    /// The item as it was in the DLQ.
    #[serde(flatten)]
    pub item: DlqItemBody,
    /// `true` when enqueued; `false` when the message was already queued.
    pub enqueued: bool,
}

/// Query of a bulk redrive.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RetryAllQuery {
    /// Redrive at most this many items, oldest first (default: all).
    #[param(minimum = 1, maximum = 1000000000)]
    pub limit: Option<u64>,
}

/// `POST /api/v1/dlq/{kind}/purge` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PurgeQuery {
    /// Age with its unit: `30d`, `12h`, `45m`, `90s`, `2w` (a bare number is refused).
    #[param(example = "30d", pattern = "^[0-9]{1,6}[smhdw]$")]
    pub older_than: String,
    /// Only count what would be purged (default false).
    pub dry_run: Option<bool>,
}

/// What a purge found and did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PurgeBody {
    /// Items older than the age when the DLQ was read.
    pub matched: u64,
    /// Items removed (0 on a dry run; malformed entries of that age included).
    pub purged: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Query of a retry.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RetryQuery {
    /// Put the message back at this priority within its project's lane (default: the
    /// priority it had).
    #[param(inline)]
    pub priority: Option<PriorityBody>,
}

/// Largest `limit` of a bulk redrive.
pub const MAX_RETRY_ALL_LIMIT: u64 = 1_000_000_000;

/// What a bulk redrive did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetryAllBody {
    /// Items redriven into the work queue.
    pub redriven: usize,
    /// Ids of entries skipped because they cannot be parsed (they stay in the DLQ).
    pub malformed: Vec<String>,
}

/// A job's priority within its project: within a project's lane of every queue family,
/// `high` work is served before `normal`, and `normal` before `low` (a `low` message is
/// overtaken by a bounded number of later ones; the work queue's README, "Fair share",
/// gives the bound). Projects share the queue fairly whatever their priorities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriorityBody {
    /// Before the project's `normal` and `low` work.
    High,
    /// The default.
    #[default]
    Normal,
    /// After the project's other work, within the bound.
    Low,
}

impl From<PriorityBody> for pipeline_ops::messages::Priority {
    fn from(p: PriorityBody) -> Self {
        match p {
            PriorityBody::High => Self::High,
            PriorityBody::Normal => Self::Normal,
            PriorityBody::Low => Self::Low,
        }
    }
}

/// Read by hand so that anything but the three words (another word, a number, an object)
/// is refused with one message that names them.
impl<'de> Deserialize<'de> for PriorityBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Word;
        impl serde::de::Visitor<'_> for Word {
            type Value = PriorityBody;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a priority: `high`, `normal` or `low`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PriorityBody, E> {
                match v {
                    "high" => Ok(PriorityBody::High),
                    "normal" => Ok(PriorityBody::Normal),
                    "low" => Ok(PriorityBody::Low),
                    other => Err(E::custom(format!(
                        "unknown priority `{}`: expected `high`, `normal` or `low`",
                        crate::error::clip(other)
                    ))),
                }
            }
        }
        d.deserialize_str(Word)
    }
}

impl PriorityBody {
    /// The priority a `jobs.priority` value names (`normal` for anything else: the column's
    /// check allows only the three words).
    pub fn of_column(word: &str) -> Self {
        match word {
            "high" => Self::High,
            "low" => Self::Low,
            _ => Self::Normal,
        }
    }
}

/// Whether the scrape worker renders a job's pages in headless Chromium before extraction
/// (docs/rendering.md): `never` (the HTML the server sent is extracted as it is), `auto`
/// (rendered when the HTML has almost no text but scripts that build it), `always` (every
/// HTML page). A job that does not say gets the worker's `render.default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RenderBody {
    /// Never rendered.
    Never,
    /// Rendered when the page needs it.
    Auto,
    /// Every HTML page rendered.
    Always,
}

impl From<RenderBody> for RenderMode {
    fn from(r: RenderBody) -> Self {
        match r {
            RenderBody::Never => Self::Never,
            RenderBody::Auto => Self::Auto,
            RenderBody::Always => Self::Always,
        }
    }
}

impl From<RenderMode> for RenderBody {
    fn from(r: RenderMode) -> Self {
        match r {
            RenderMode::Never => Self::Never,
            RenderMode::Auto => Self::Auto,
            RenderMode::Always => Self::Always,
        }
    }
}

/// Read by hand so that anything but the three words (another word, a number, an object)
/// is refused with one message that names them.
impl<'de> Deserialize<'de> for RenderBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Word;
        impl serde::de::Visitor<'_> for Word {
            type Value = RenderBody;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a render mode: `never`, `auto` or `always`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RenderBody, E> {
                v.parse::<RenderMode>().map(RenderBody::from).map_err(|_| {
                    E::custom(format!(
                        "unknown render mode `{}`: expected `never`, `auto` or `always`",
                        crate::error::clip(v)
                    ))
                })
            }
        }
        d.deserialize_str(Word)
    }
}

impl RenderBody {
    /// The render mode a `jobs.render` value names (`None` for NULL: the worker's default).
    pub fn of_column(value: Option<&str>) -> Option<Self> {
        pipeline_ops::messages::render_of_column(value).map(Self::from)
    }
}

/// `POST /api/v1/scrape` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrapeRequest {
    /// The URLs to scrape (http or https), 1 to 10,000. Each is checked on its own: one
    /// that is not an absolute http(s) URL, holds control characters or is over 2,048
    /// bytes once normalized is listed in `invalid` and the others go ahead.
    #[schema(min_items = 1, max_items = 10000)]
    pub urls: Vec<String>,
    /// The project by id (must exist).
    pub project_id: Option<Uuid>,
    /// The project by name (created when missing); used when `project_id` is absent.
    /// At most 200 characters, no control characters.
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub project: Option<String>,
    /// A free-form group name stored on each source. At most 200 characters, no control
    /// characters.
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub source_group: Option<String>,
    /// Most model tokens the job's pages may spend in the schema stage (`llm` backend),
    /// greater than 0; absent: no cap. Pages past the cap keep the values found so far.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "whole_i64")]
    pub model_token_cap: Option<i64>,
    /// The job's priority within its project (default `normal`).
    pub priority: Option<PriorityBody>,
    /// Whether the job's pages are rendered in a headless browser: `never`, `auto` or
    /// `always`; absent or null: the scrape worker's `render.default`.
    pub render: Option<RenderBody>,
}

/// A refused URL and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvalidUrlBody {
    /// The URL as given.
    pub url: String,
    /// Why it was refused.
    pub reason: String,
}

impl From<pipeline_store::jobs::InvalidUrl> for InvalidUrlBody {
    fn from(i: pipeline_store::jobs::InvalidUrl) -> Self {
        Self {
            url: i.url,
            reason: i.reason,
        }
    }
}

/// A source queued by a submission.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueuedSource {
    /// Source id.
    pub source_id: Uuid,
    /// Its normalized URL.
    pub url: String,
    /// `false` when the URL already had a source in the project (it joins the job).
    pub created: bool,
}

/// The answer to a submission.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScrapeAccepted {
    /// The job created.
    pub job_id: Uuid,
    /// Its project.
    pub project_id: Uuid,
    /// The sources queued (one per valid, distinct URL).
    pub sources: Vec<QueuedSource>,
    /// URLs refused, each with its reason (also recorded on the job).
    pub invalid: Vec<InvalidUrlBody>,
    /// Sources that were already waiting in the scrape queue.
    pub already_queued: u64,
    /// The job's priority within its project.
    pub priority: PriorityBody,
    /// The job's render mode; null: the scrape worker's `render.default`.
    pub render: Option<RenderBody>,
}

/// Query of the jobs list.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only jobs of this type (e.g. `scrape`); at most 64 characters, no control characters.
    #[serde(rename = "type")]
    #[param(
        rename = "type",
        max_length = 64,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub job_type: Option<String>,
    /// Only jobs in this status.
    #[param(inline)]
    pub status: Option<JobStatusFilter>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Jobs to skip (default 0).
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<i64>,
}

/// A job status to filter on.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatusFilter {
    /// No source has moved yet.
    Queued,
    /// Some sources are in progress.
    Running,
    /// Every source extracted and no URL refused.
    Completed,
    /// No source extracted.
    Failed,
    /// Some extracted, some failed or refused.
    CompletedWithErrors,
}

impl From<JobStatusFilter> for JobStatus {
    fn from(s: JobStatusFilter) -> Self {
        match s {
            JobStatusFilter::Queued => Self::Queued,
            JobStatusFilter::Running => Self::Running,
            JobStatusFilter::Completed => Self::Completed,
            JobStatusFilter::Failed => Self::Failed,
            JobStatusFilter::CompletedWithErrors => Self::CompletedWithErrors,
        }
    }
}

/// Largest `offset` of the offset-paged lists.
pub const MAX_OFFSET: i64 = 1_000_000_000;

/// Query of the pages under a job (`/jobs/{id}/sources`, `/jobs/{id}/invalid-urls`).
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Entries to skip (default 0).
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<i64>,
}

/// Query of a source's event trail.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Only events with an id above this one (the `next_after` of the previous page).
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

/// Longest error text in an answer, in characters (errors come from remote servers).
pub const MAX_ERROR_CHARS: usize = 1000;
/// Longest page title in an answer, in characters (titles come from fetched pages).
pub const MAX_TITLE_CHARS: usize = 500;

fn clip_opt(s: Option<String>, max: usize) -> Option<String> {
    s.map(|s| clip_long(s, max))
}

fn clip_long(s: String, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => {
            let mut s = s;
            s.truncate(i);
            s.push('…');
            s
        }
        None => s,
    }
}

/// A job as lists show it: its status and counts, never its submitted URLs (those are on
/// `/jobs/{id}/sources` and `/jobs/{id}/invalid-urls`), so a list's size is bounded by its
/// length whatever was submitted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobBody {
    /// Job id.
    pub id: Uuid,
    /// Its project.
    pub project_id: Option<Uuid>,
    /// Its type (`scrape`).
    #[serde(rename = "type")]
    pub job_type: String,
    /// `queued`, `running`, `completed`, `failed` or `completed_with_errors`.
    pub status: String,
    /// Its priority within its project.
    pub priority: PriorityBody,
    /// Its render mode; null: the scrape worker's `render.default`.
    pub render: Option<RenderBody>,
    /// The submission's source group.
    pub source_group: Option<String>,
    /// Counts by outcome (`total`, `terminal`, `failed`, `invalid_urls`, one per status).
    pub counts: Option<Value>,
    /// A job-level error (at most 1,000 characters).
    pub error: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When its first source moved.
    pub started_at: Option<DateTime<Utc>>,
    /// When its last source became terminal.
    pub completed_at: Option<DateTime<Utc>>,
}

impl JobBody {
    /// A job with its priority and render mode (`jobs.priority`, `jobs.render`; a job
    /// without settings, which cannot be, shows the defaults).
    pub fn new(j: JobSummary, settings: Option<&JobSettings>) -> Self {
        let defaults = JobSettings::default();
        let settings = settings.unwrap_or(&defaults);
        Self {
            id: j.id,
            project_id: j.project_id,
            job_type: j.job_type,
            status: j.status.to_string(),
            priority: PriorityBody::of_column(&settings.priority),
            render: RenderBody::of_column(settings.render.as_deref()),
            source_group: clip_opt(j.source_group, MAX_TITLE_CHARS),
            counts: j.result,
            error: clip_opt(j.error, MAX_ERROR_CHARS),
            created_at: j.created_at,
            updated_at: j.updated_at,
            started_at: j.started_at,
            completed_at: j.completed_at,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobsPage {
    /// The jobs.
    pub items: Vec<JobBody>,
    /// The `offset` of the next page; `null` when this page was not full.
    pub next_offset: Option<i64>,
}

/// A source (without its bodies).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SourceBody {
    /// Source id.
    pub id: Uuid,
    /// Its project.
    pub project_id: Uuid,
    /// Its URL.
    pub url: String,
    /// Its group.
    pub source_group: Option<String>,
    /// `queued`, `retrying`, `scraped`, `facts_pending`, `extracted`, `dead_lettered`, `parked`,
    /// `discarded`.
    pub status: String,
    /// Page title once fetched.
    pub title: Option<String>,
    /// Content type once fetched.
    pub content_type: Option<String>,
    /// HTTP status once fetched.
    pub http_status: Option<i32>,
    /// When it was fetched.
    pub fetched_at: Option<DateTime<Utc>>,
    /// The last error.
    pub last_error: Option<String>,
    /// `transient` or `permanent`.
    pub last_error_kind: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The job that created it.
    pub created_by_job_id: Option<Uuid>,
}

impl From<SourceRow> for SourceBody {
    fn from(s: SourceRow) -> Self {
        Self {
            id: s.id,
            project_id: s.project_id,
            url: s.url,
            source_group: clip_opt(s.source_group, MAX_TITLE_CHARS),
            status: s.status.to_string(),
            title: clip_opt(s.title, MAX_TITLE_CHARS),
            content_type: s.content_type,
            http_status: s.http_status,
            fetched_at: s.fetched_at,
            last_error: clip_opt(s.last_error, MAX_ERROR_CHARS),
            last_error_kind: s.last_error_kind,
            created_at: s.created_at,
            updated_at: s.updated_at,
            created_by_job_id: s.created_by_job_id,
        }
    }
}

/// A job with the first page of its sources and of its refused URLs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobDetail {
    /// The job, its status and counts.
    #[serde(flatten)]
    pub job: JobBody,
    /// Its first sources (up to 100) with their statuses.
    pub sources: Vec<SourceBody>,
    /// The `offset` of the next page on `/jobs/{id}/sources`; `null` when that was all.
    pub sources_next_offset: Option<i64>,
    /// The first URLs its submission refused (up to 100).
    pub invalid_urls: Vec<InvalidUrlBody>,
    /// The `offset` of the next page on `/jobs/{id}/invalid-urls`; `null` when that was all.
    pub invalid_urls_next_offset: Option<i64>,
    /// What the schema stage did for the job's pages.
    pub facts: JobFactsBody,
}

/// The schema stage's totals for a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobFactsBody {
    /// Pages the stage finished.
    pub pages: i64,
    /// Pages it stopped asking the model for because the job's token cap was reached.
    pub capped_pages: i64,
    /// Grounded values stored.
    pub grounded: i64,
    /// Values whose quote is not in their page (kept apart, never in records).
    pub ungrounded: i64,
    /// Model tokens the job's pages spent.
    pub model_tokens_used: i64,
    /// The job's token cap; `null`: none.
    pub model_token_cap: Option<i64>,
    /// Whether the cap cut the stage short: a page was capped, or the tokens reached it.
    pub capped: bool,
}

impl From<pipeline_store::facts::JobFacts> for JobFactsBody {
    fn from(f: pipeline_store::facts::JobFacts) -> Self {
        Self {
            capped: f.capped_pages > 0
                || f.model_token_cap
                    .is_some_and(|cap| f.model_tokens_used >= cap),
            pages: f.pages,
            capped_pages: f.capped_pages,
            grounded: f.grounded,
            ungrounded: f.ungrounded,
            model_tokens_used: f.model_tokens_used,
            model_token_cap: f.model_token_cap,
        }
    }
}

/// A page of a job's sources, in creation order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SourcesPage {
    /// The sources.
    pub items: Vec<SourceBody>,
    /// The `offset` of the next page; `null` when this page was not full.
    pub next_offset: Option<i64>,
}

/// A page of the URLs a submission refused, in submission order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvalidUrlsPage {
    /// The refused URLs.
    pub items: Vec<InvalidUrlBody>,
    /// The `offset` of the next page; `null` when this page was not full.
    pub next_offset: Option<i64>,
}

/// One event of a source's trail: the store's row, as it is.
pub use pipeline_store::sources::EventRow as EventBody;

/// A source and its event trail, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SourceEvents {
    /// The source.
    pub source: SourceBody,
    /// Its events, oldest first (a page of up to `limit`).
    pub events: Vec<EventBody>,
    /// Pass as `after` for the next page; `null` when this page was not full.
    pub next_after: Option<i64>,
}

/// A project, with how much it holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectBody {
    /// Project id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Jobs submitted to it.
    pub jobs: i64,
    /// Sources it holds.
    pub sources: i64,
}

/// A page of projects.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectsPage {
    /// The projects, by name.
    pub items: Vec<ProjectBody>,
    /// The `offset` of the next page; `null` when this page was not full.
    pub next_offset: Option<i64>,
}

/// A JSON number that is a whole number (`5000` or `5000.0`: JSON Schema counts both as
/// integers, so a client generated from the OpenAPI document may send either), as an `i64`.
pub(crate) fn whole_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        // Exactly representable whole numbers only (below 2^53).
        Some(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => Ok(Some(f as i64)),
        _ => Err(D::Error::custom(format!("{n} is not a whole number"))),
    }
}

#[cfg(test)]
mod whole_number_tests {
    #[test]
    fn token_caps_may_be_written_as_floats() {
        let body: super::ScrapeRequest =
            serde_json::from_str(r#"{"urls": ["http://a.example/"], "model_token_cap": 606463.0}"#)
                .unwrap();
        assert_eq!(body.model_token_cap, Some(606_463));
        let err = serde_json::from_str::<super::ScrapeRequest>(
            r#"{"urls": ["http://a.example/"], "model_token_cap": 1.5}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a whole number"), "{err}");
    }
}
