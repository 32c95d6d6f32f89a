//! `GET /api/v1/sources/{id}`: one source as a document: where it is, its metadata (authors,
//! dates with the page's own UTC offset, language, site, description, canonical URL, main
//! image) and, with `?include=markdown`, its Markdown.
//!
//! The Markdown is left out unless asked for: a page's Markdown can be megabytes, and most
//! callers want the metadata. `markdown_bytes` says how large it is either way. Every
//! metadata value is bounded where it is read (`extract_core::metadata`: 2,000 characters a
//! value, 20 authors); the Markdown is cut at [`MAX_MARKDOWN_BYTES`] (with
//! `markdown_truncated` set), so every answer is bounded.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, FixedOffset, Utc};
use pipeline_store::documents::{self, DocumentRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::model::MAX_TITLE_CHARS;

/// Largest Markdown returned whole, in bytes; a longer one is cut at a character boundary
/// and `markdown_truncated` set. The default cap on a fetched body is 8 MiB, so only a
/// page whose links grew a lot when made absolute comes near it.
pub const MAX_MARKDOWN_BYTES: usize = 8 * 1024 * 1024;

/// Query of `GET /sources/{id}`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SourceQuery {
    /// `markdown` to add the page's Markdown to the answer.
    pub include: Option<Include>,
}

/// What `include` may add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Include {
    /// The page's Markdown.
    Markdown,
}

/// What a page says about itself, as its last extraction read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MetadataBody {
    /// The page's title.
    pub title: Option<String>,
    /// Authors' names, in the page's order.
    pub authors: Vec<String>,
    /// The authors as one line.
    pub byline: Option<String>,
    /// When the page was first published, RFC 3339 with the UTC offset the page wrote
    /// (`+00:00` when it gave none; midnight UTC for a date alone).
    pub published: Option<DateTime<FixedOffset>>,
    /// When the page was last modified, as `published`.
    pub modified: Option<DateTime<FixedOffset>>,
    /// A BCP 47 tag as declared (`en-US`), or the ISO 639-1 code of the detected language.
    pub language: Option<String>,
    /// `declared` (by the page) or `detected` (in its text).
    pub language_source: Option<String>,
    /// The site's or publication's name.
    pub site_name: Option<String>,
    /// The page's description (declared, else the start of its text).
    pub description: Option<String>,
    /// The page's canonical address.
    pub canonical_url: Option<String>,
    /// The page's main image.
    pub image_url: Option<String>,
}

/// One source as a document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SourceDocument {
    /// Source id.
    pub id: Uuid,
    /// Its project.
    pub project_id: Uuid,
    /// Its URL.
    pub url: String,
    /// `queued`, `retrying`, `scraped`, `facts_pending`, `extracted`, `dead_lettered`, `parked`,
    /// `discarded`.
    pub status: String,
    /// The job that created it.
    pub created_by_job_id: Option<Uuid>,
    /// The fetched body's content type.
    pub content_type: Option<String>,
    /// When it was last fetched.
    pub fetched_at: Option<DateTime<Utc>>,
    /// Whether its Markdown and metadata are stored: false until it is extracted, and for
    /// pages extracted before they were kept (`pipelinectl reextract` fills them).
    pub extracted: bool,
    /// The metadata (empty fields until `extracted`).
    pub metadata: MetadataBody,
    /// Size of the whole Markdown in bytes (`null` while not `extracted`).
    pub markdown_bytes: Option<i64>,
    /// The Markdown, with `include=markdown` (`null` while not `extracted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub markdown: Option<String>,
    /// Whether `markdown` was cut at 8 MiB.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub markdown_truncated: bool,
}

impl From<DocumentRow> for SourceDocument {
    fn from(d: DocumentRow) -> Self {
        let (published, modified) = (d.published(), d.modified());
        let (markdown, markdown_truncated) = match d.markdown {
            Some(m) if m.len() > MAX_MARKDOWN_BYTES => {
                let mut end = MAX_MARKDOWN_BYTES;
                while !m.is_char_boundary(end) {
                    end -= 1;
                }
                (Some(m[..end].to_owned()), true)
            }
            m => (m, false),
        };
        Self {
            id: d.id,
            project_id: d.project_id,
            url: d.url,
            status: d.status.to_string(),
            created_by_job_id: d.created_by_job_id,
            content_type: d.content_type,
            fetched_at: d.fetched_at,
            extracted: d.markdown_bytes.is_some(),
            metadata: MetadataBody {
                title: d.title.map(clip_title),
                authors: d.authors.unwrap_or_default(),
                byline: d.byline,
                published,
                modified,
                language: d.language,
                language_source: d.language_source,
                site_name: d.site_name,
                description: d.description,
                canonical_url: d.canonical_url,
                image_url: d.image_url,
            },
            markdown_bytes: d.markdown_bytes.map(i64::from),
            markdown,
            markdown_truncated,
        }
    }
}

/// A title cut to [`MAX_TITLE_CHARS`] characters, as in the other answers (titles come from
/// fetched pages).
fn clip_title(t: String) -> String {
    if t.chars().count() <= MAX_TITLE_CHARS {
        return t;
    }
    let mut cut: String = t.chars().take(MAX_TITLE_CHARS).collect();
    cut.push('…');
    cut
}

/// A source as a document: status, metadata and, with `include=markdown`, its Markdown.
#[utoipa::path(
    get, path = "/api/v1/sources/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "Source id"), SourceQuery),
    responses(
        (status = 200, description = "The source, its metadata and (on request) its Markdown", body = SourceDocument),
        (status = 404, description = "No such source", body = ErrorBody),
        (status = 422, description = "The id is not a UUID, or `include` is not `markdown`", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<SourceQuery>,
) -> Result<Json<SourceDocument>, ApiError> {
    let with_markdown = q.include == Some(Include::Markdown);
    let doc = documents::get(&state.services.db, id, with_markdown).await?;
    Ok(Json(doc.into()))
}
