//! The queries behind chunk search: full-text candidates, the vectors written since a point
//! in time (to keep an in-memory index fresh), and the chunks' details for an answer.
//!
//! Full-text search uses the generated `extractions.search_tsv` column (English stemming,
//! GIN index) and `websearch_to_tsquery`, so user text ("quoted phrases", `-exclusions`,
//! `or`) never fails to parse.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Result;

/// One stored vector, as the in-memory index takes it.
#[derive(Debug, Clone)]
pub struct VectorRow {
    /// The chunk (extraction) it belongs to.
    pub extraction_id: Uuid,
    /// The chunk's project.
    pub project_id: Uuid,
    /// The vector.
    pub embedding: Vec<f32>,
    /// When it was written (the index's watermark).
    pub created_at: DateTime<Utc>,
}

/// The vectors of `model` written at or after `since` (all of them for `None`), in
/// `(created_at, extraction_id)` order, at most `limit`, after the keyset `after`.
pub async fn vectors_since(
    db: &sqlx::PgPool,
    model: &str,
    since: Option<DateTime<Utc>>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<VectorRow>> {
    let (after_at, after_id) = after.unzip();
    Ok(sqlx::query_as!(
        VectorRow,
        r#"SELECT e.extraction_id AS "extraction_id!", x.project_id AS "project_id!",
                e.embedding AS "embedding!", e.created_at AS "created_at!"
         FROM extraction_embeddings e JOIN extractions x ON x.id = e.extraction_id
         WHERE e.model = $1
           AND ($2::timestamptz IS NULL OR e.created_at >= $2)
           AND ($3::timestamptz IS NULL OR (e.created_at, e.extraction_id) > ($3, $4::uuid))
         ORDER BY e.created_at, e.extraction_id
         LIMIT $5"#,
        model,
        since,
        after_at,
        after_id,
        limit,
    )
    .fetch_all(db)
    .await?)
}

/// Most matches of one full-text query that are ranked. Ranking reads every matched row's
/// `tsvector`, so a broad query (a common word over 100k chunks) would cost a scan of most of
/// the table; past this many matches the candidates are the first found, and the vector side
/// of a hybrid search carries the meaning. This bounds the ranking (reading and scoring
/// `tsvector`s); the GIN lookup itself still visits every match's index entry.
pub const FULL_TEXT_CANDIDATES: i64 = 2000;

/// The best `limit` chunks for `query` by full-text rank (`ts_rank_cd`), best first, in
/// `project` or in every project.
///
/// Chunks that match every word come first. When they are fewer than `limit`, chunks that
/// match any of the words follow (ranked, so those with more of the words come first): a
/// query such as a page's title seldom has every word in one chunk. Each of the two
/// queries ranks at most [`FULL_TEXT_CANDIDATES`] matches.
pub async fn full_text(
    db: &sqlx::PgPool,
    project: Option<Uuid>,
    query: &str,
    limit: i64,
) -> Result<Vec<(Uuid, f32)>> {
    let mut hits = ranked(db, project, query, limit).await?;
    if (hits.len() as i64) < limit
        && let Some(any) = any_word_query(query)
    {
        for (id, rank) in ranked(db, project, &any, limit).await? {
            if (hits.len() as i64) >= limit {
                break;
            }
            if !hits.iter().any(|(seen, _)| *seen == id) {
                hits.push((id, rank));
            }
        }
    }
    Ok(hits)
}

/// One `websearch_to_tsquery` query, its first [`FULL_TEXT_CANDIDATES`] matches ranked.
async fn ranked(
    db: &sqlx::PgPool,
    project: Option<Uuid>,
    query: &str,
    limit: i64,
) -> Result<Vec<(Uuid, f32)>> {
    Ok(sqlx::query!(
        r#"SELECT m.id AS "id!", ts_rank_cd(m.search_tsv, q) AS "rank!"
         FROM (SELECT x.id, x.search_tsv
               FROM extractions x, websearch_to_tsquery('english', $1) q0
               WHERE x.search_tsv @@ q0 AND ($2::uuid IS NULL OR x.project_id = $2)
               LIMIT $4) m,
              websearch_to_tsquery('english', $1) q
         ORDER BY 2 DESC, m.id
         LIMIT $3"#,
        query,
        project,
        limit,
        FULL_TEXT_CANDIDATES,
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| (r.id, r.rank))
    .collect())
}

/// The words of `query` joined with `or` (web-search syntax), for a match on any of them;
/// `None` when that would be the same query (fewer than two words). Excluded words (`-x`)
/// stay out, and quoting and punctuation go.
fn any_word_query(query: &str) -> Option<String> {
    let words: Vec<&str> = query
        .split_whitespace()
        .filter(|w| !w.starts_with('-'))
        .flat_map(|w| w.split(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("or"))
        .collect();
    (words.len() >= 2).then(|| words.join(" or "))
}

#[cfg(test)]
mod tests {
    use super::any_word_query;

    #[test]
    fn any_word_queries_keep_the_words_only() {
        assert_eq!(any_word_query("rust"), None);
        assert_eq!(
            any_word_query("The \"Rust\" book, 2nd ed."),
            Some("The or Rust or book or 2nd or ed".to_owned())
        );
        assert_eq!(
            any_word_query("tokio -async runtime or threads"),
            Some("tokio or runtime or threads".to_owned())
        );
        assert_eq!(any_word_query("-a -b c"), None);
    }
}

/// A chunk with what a search answer shows about it.
#[derive(Debug, Clone)]
pub struct ChunkHit {
    /// The chunk (extraction) id.
    pub extraction_id: Uuid,
    /// Its project.
    pub project_id: Uuid,
    /// Its source (page).
    pub source_id: Uuid,
    /// Position of the chunk in the page.
    pub chunk_index: i32,
    /// The chunk's text.
    pub text: String,
    /// The page's URL.
    pub url: String,
    /// The page's title, if it has one.
    pub title: Option<String>,
    /// The job that created the source (kept even when later jobs asked for it too).
    pub job_id: Option<Uuid>,
    /// The headings the chunk falls under, "Guide › Install › Linux" (`None` before the
    /// page's first heading).
    pub heading_trail: Option<String>,
    /// When the page was first published (instant; see [`ChunkHit::published`]).
    pub published_at: Option<DateTime<Utc>>,
    /// The UTC offset the page wrote `published_at` with, seconds east of UTC.
    pub published_offset_seconds: Option<i32>,
    /// The page's language tag.
    pub language: Option<String>,
    /// The page's site name.
    pub site_name: Option<String>,
    /// The page of a PDF the chunk comes from (1-based); `None` for a web page's chunks.
    pub page: Option<i32>,
}

impl ChunkHit {
    /// When the page was first published, in the offset it wrote.
    pub fn published(&self) -> Option<DateTime<chrono::FixedOffset>> {
        crate::documents::join_time(self.published_at, self.published_offset_seconds)
    }
}

/// The chunks of `ids` that still exist (a chunk deleted since it was indexed is left out),
/// in no particular order.
pub async fn chunks(db: &sqlx::PgPool, ids: &[Uuid]) -> Result<Vec<ChunkHit>> {
    Ok(sqlx::query_as!(
        ChunkHit,
        r#"SELECT x.id AS "extraction_id!", x.project_id AS "project_id!",
                x.source_id AS "source_id!", x.chunk_index AS "chunk_index!",
                coalesce(x.data ->> 'text', '') AS "text!", s.uri AS "url!", s.title,
                s.created_by_job_id AS job_id, x.heading_trail, s.published_at,
                s.published_offset_seconds, s.language, s.site_name,
                (x.data ->> 'page')::int AS page
         FROM extractions x JOIN sources s ON s.id = x.source_id
         WHERE x.id = ANY($1)"#,
        ids,
    )
    .fetch_all(db)
    .await?)
}

/// The id of the project named `name`, if there is one.
pub async fn project_id(db: &sqlx::PgPool, name: &str) -> Result<Option<Uuid>> {
    Ok(
        sqlx::query_scalar!("SELECT id FROM projects WHERE name = $1", name)
            .fetch_optional(db)
            .await?,
    )
}

/// Extracted sources (in `project`, or all) with at least one chunk whose vector is missing
/// or from another model than `model`, after `after` in id order, at most `limit`: the
/// sources a re-embedding pass sends back to the extraction worker. With the job that
/// created each source.
pub async fn sources_to_reembed(
    db: &sqlx::PgPool,
    model: &str,
    project: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(Uuid, Option<Uuid>)>> {
    Ok(sqlx::query!(
        "SELECT s.id, s.created_by_job_id FROM sources s
         WHERE s.status = 'extracted'
           AND ($2::uuid IS NULL OR s.project_id = $2)
           AND ($3::uuid IS NULL OR s.id > $3)
           AND EXISTS (SELECT 1 FROM extractions x
                       LEFT JOIN extraction_embeddings e ON e.extraction_id = x.id
                       WHERE x.source_id = s.id AND x.extraction_type = 'text_chunk'
                         AND e.model IS DISTINCT FROM $1)
         ORDER BY s.id
         LIMIT $4",
        model,
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

/// Chunks (in `project`, or all) without a vector of `model`, and all chunks: the progress
/// of a re-embedding pass.
pub async fn reembed_progress(
    db: &sqlx::PgPool,
    model: &str,
    project: Option<Uuid>,
) -> Result<(i64, i64)> {
    let r = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE e.model IS DISTINCT FROM $1) AS "missing!",
                count(*) AS "all!"
         FROM extractions x LEFT JOIN extraction_embeddings e ON e.extraction_id = x.id
         WHERE x.extraction_type = 'text_chunk' AND ($2::uuid IS NULL OR x.project_id = $2)"#,
        model,
        project,
    )
    .fetch_one(db)
    .await?;
    Ok((r.missing, r.all))
}
