//! Sources as documents: the Markdown and metadata the extraction worker stores with each
//! page ([`NewDocument`], written by [`crate::extractions::store_analysis`] in the
//! transaction that stores the content and chunks), one source's document as the API and
//! the CLI show it ([`get`]), and the pages `pipelinectl reextract` sends back to the
//! extraction workers ([`to_reextract`], [`progress`]).
//!
//! Times are stored as an instant (`published_at`, `modified_at`) plus the UTC offset the
//! page wrote them with (`*_offset_seconds`), and read back as a
//! `DateTime<FixedOffset>`, so the page's timezone survives the round trip
//! (docs/documents.md).

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::status::SourceStatus;
use crate::{Result, StoreError};

/// What one extraction says about its page, as the `sources` columns take it.
#[derive(Debug, Clone, Default)]
pub struct NewDocument<'a> {
    /// The main content as Markdown (`sources.markdown`; stored even when empty, so a NULL
    /// means "not extracted since the column exists").
    pub markdown: &'a str,
    /// Authors, in the page's order.
    pub authors: &'a [String],
    /// The authors as one line.
    pub byline: Option<&'a str>,
    /// First published, with the page's offset.
    pub published: Option<DateTime<FixedOffset>>,
    /// Last modified, with the page's offset.
    pub modified: Option<DateTime<FixedOffset>>,
    /// The language tag.
    pub language: Option<&'a str>,
    /// `declared` or `detected` (with `language`).
    pub language_source: Option<&'a str>,
    /// The site's name.
    pub site_name: Option<&'a str>,
    /// The page's description.
    pub description: Option<&'a str>,
    /// The canonical URL.
    pub canonical_url: Option<&'a str>,
    /// The main image's URL.
    pub image_url: Option<&'a str>,
}

/// An instant and its offset in seconds east of UTC, as the columns hold them.
pub(crate) fn split_time(t: Option<DateTime<FixedOffset>>) -> (Option<DateTime<Utc>>, Option<i32>) {
    match t {
        Some(t) => (
            Some(t.with_timezone(&Utc)),
            Some(t.offset().local_minus_utc()),
        ),
        None => (None, None),
    }
}

/// The instant back in the offset it was written with (UTC when the offset is missing or
/// out of range).
pub(crate) fn join_time(
    at: Option<DateTime<Utc>>,
    offset: Option<i32>,
) -> Option<DateTime<FixedOffset>> {
    let at = at?;
    let offset = offset
        .and_then(FixedOffset::east_opt)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC is a valid offset"));
    Some(at.with_timezone(&offset))
}

/// Stores a document's columns in the caller's transaction (the one that stores the page's
/// content and chunks).
pub(crate) async fn store_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    source_id: Uuid,
    doc: &NewDocument<'_>,
) -> Result<()> {
    let (published_at, published_offset) = split_time(doc.published);
    let (modified_at, modified_offset) = split_time(doc.modified);
    sqlx::query!(
        "UPDATE sources SET markdown = $2, authors = $3, byline = $4,
                published_at = $5, published_offset_seconds = $6,
                modified_at = $7, modified_offset_seconds = $8,
                language = $9, language_source = $10, site_name = $11, description = $12,
                canonical_url = $13, image_url = $14
         WHERE id = $1",
        source_id,
        doc.markdown,
        doc.authors,
        doc.byline,
        published_at,
        published_offset,
        modified_at,
        modified_offset,
        doc.language,
        doc.language_source,
        doc.site_name,
        doc.description,
        doc.canonical_url,
        doc.image_url,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One source as a document: where it is, and what its last extraction said about it.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentRow {
    /// The source.
    pub id: Uuid,
    /// Its project.
    pub project_id: Uuid,
    /// Its URL.
    pub url: String,
    /// Its status.
    pub status: SourceStatus,
    /// The job that created it.
    pub created_by_job_id: Option<Uuid>,
    /// The fetched body's content type.
    pub content_type: Option<String>,
    /// When it was last fetched.
    pub fetched_at: Option<DateTime<Utc>>,
    /// Its title.
    pub title: Option<String>,
    /// Authors, in the page's order (`None`: not extracted since the column exists).
    pub authors: Option<Vec<String>>,
    /// The authors as one line.
    pub byline: Option<String>,
    /// First published (instant).
    pub published_at: Option<DateTime<Utc>>,
    /// Its offset, seconds east of UTC.
    pub published_offset_seconds: Option<i32>,
    /// Last modified (instant).
    pub modified_at: Option<DateTime<Utc>>,
    /// Its offset, seconds east of UTC.
    pub modified_offset_seconds: Option<i32>,
    /// The language tag.
    pub language: Option<String>,
    /// `declared` or `detected`.
    pub language_source: Option<String>,
    /// The site's name.
    pub site_name: Option<String>,
    /// The description.
    pub description: Option<String>,
    /// The canonical URL.
    pub canonical_url: Option<String>,
    /// The main image.
    pub image_url: Option<String>,
    /// Size of the Markdown in bytes (`None`: not extracted since the column exists).
    pub markdown_bytes: Option<i32>,
    /// The Markdown, when asked for.
    pub markdown: Option<String>,
}

impl DocumentRow {
    /// When the page was first published, in the offset it wrote.
    pub fn published(&self) -> Option<DateTime<FixedOffset>> {
        join_time(self.published_at, self.published_offset_seconds)
    }

    /// When the page was last modified, in the offset it wrote.
    pub fn modified(&self) -> Option<DateTime<FixedOffset>> {
        join_time(self.modified_at, self.modified_offset_seconds)
    }
}

/// One source's document; its Markdown only when `with_markdown` (it can be megabytes).
pub async fn get(pool: &PgPool, id: Uuid, with_markdown: bool) -> Result<DocumentRow> {
    sqlx::query_as!(
        DocumentRow,
        r#"SELECT id, project_id, uri AS url, status AS "status: SourceStatus",
                  created_by_job_id, content_type, fetched_at, title, authors, byline,
                  published_at, published_offset_seconds, modified_at, modified_offset_seconds,
                  language, language_source, site_name, description, canonical_url, image_url,
                  octet_length(markdown) AS markdown_bytes,
                  CASE WHEN $2 THEN markdown END AS markdown
           FROM sources WHERE id = $1"#,
        id,
        with_markdown,
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("source {id}")))
}

/// Which sources a re-extraction covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The sources a job asked for (it created them, or asked for them again).
    Job(Uuid),
    /// A project's sources.
    Project(Uuid),
    /// Every source.
    All,
}

impl Scope {
    /// `(job, project)` filters of the queries (`None`: no filter).
    fn filters(self) -> (Option<Uuid>, Option<Uuid>) {
        match self {
            Scope::Job(j) => (Some(j), None),
            Scope::Project(p) => (None, Some(p)),
            Scope::All => (None, None),
        }
    }
}

/// Extracted sources with a stored body in `scope`, after `after` in id order, at most
/// `limit`, each with the job that created it: those without Markdown yet (extracted before
/// the documents migration), or every one with `all`.
pub async fn to_reextract(
    db: &PgPool,
    scope: Scope,
    all: bool,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(Uuid, Option<Uuid>)>> {
    let (job, project) = scope.filters();
    Ok(sqlx::query!(
        "SELECT s.id, s.created_by_job_id FROM sources s
         WHERE s.status = 'extracted' AND s.raw_content IS NOT NULL
           AND ($1 OR s.markdown IS NULL)
           AND ($2::uuid IS NULL
                OR EXISTS (SELECT 1 FROM job_sources js WHERE js.job_id = $2 AND js.source_id = s.id))
           AND ($3::uuid IS NULL OR s.project_id = $3)
           AND ($4::uuid IS NULL OR s.id > $4)
         ORDER BY s.id
         LIMIT $5",
        all,
        job,
        project,
        after,
        limit,
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| (r.id, r.created_by_job_id))
    .collect())
}

/// Extracted sources with a stored body in `scope`, and how many of them have no Markdown
/// yet: the progress of a re-extraction that fills the columns.
pub async fn progress(db: &PgPool, scope: Scope) -> Result<(i64, i64)> {
    let (job, project) = scope.filters();
    let r = sqlx::query!(
        r#"SELECT count(*) AS "extracted!", count(*) FILTER (WHERE s.markdown IS NULL) AS "missing!"
         FROM sources s
         WHERE s.status = 'extracted' AND s.raw_content IS NOT NULL
           AND ($1::uuid IS NULL
                OR EXISTS (SELECT 1 FROM job_sources js WHERE js.job_id = $1 AND js.source_id = s.id))
           AND ($2::uuid IS NULL OR s.project_id = $2)"#,
        job,
        project,
    )
    .fetch_one(db)
    .await?;
    Ok((r.extracted, r.missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_keeps_its_offset_through_the_columns() {
        let t = DateTime::parse_from_rfc3339("2024-03-05T10:00:00+05:30").unwrap();
        let (at, offset) = split_time(Some(t));
        assert_eq!(offset, Some(19_800));
        assert_eq!(at.unwrap().to_rfc3339(), "2024-03-05T04:30:00+00:00");
        let back = join_time(at, offset).unwrap();
        assert_eq!(back.to_rfc3339(), "2024-03-05T10:00:00+05:30");
        assert_eq!(join_time(at, None).unwrap().offset().local_minus_utc(), 0);
        assert_eq!(split_time(None), (None, None));
    }
}
