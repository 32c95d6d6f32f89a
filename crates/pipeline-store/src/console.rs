//! Reads of the operator console that the other modules do not already answer: a job's
//! sources filtered by status with keyset paging, and a source's extraction (main text,
//! chunks, entities). Each is bounded (a page, a capped text) and index-backed.

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;
use crate::sources::{SourceRow, query_source_rows};

/// Most characters of a source's main text the console shows.
pub const MAX_TEXT_CHARS: i32 = 20_000;

/// A page of a job's sources in id order (creation order: ids are UUIDv7), after the source
/// id `after`, optionally only those with `status`. Walks the `job_sources` primary key from
/// `after`, so any page costs the same, however deep.
pub async fn job_sources_after(
    pool: &PgPool,
    job_id: Uuid,
    status: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<SourceRow>> {
    Ok(query_source_rows!(
        with "WITH page AS (
                SELECT s.* FROM job_sources js JOIN sources s ON s.id = js.source_id
                 WHERE js.job_id = $1 AND js.source_id > $2
                   AND ($3::text IS NULL OR s.status = $3)
                 ORDER BY js.source_id LIMIT $4)",
        "FROM page ORDER BY id",
        job_id,
        after.unwrap_or(Uuid::nil()),
        status,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// One chunk of a source's main text.
#[derive(Debug, Clone, Serialize)]
pub struct Chunk {
    /// Its position.
    pub chunk_index: i32,
    /// Its text.
    pub text: Option<String>,
    /// The headings above it.
    pub heading_path: Option<Value>,
    /// Whether its embedding is stored.
    pub embeddings_created: bool,
    /// `complete`, `partial` or `failed`.
    pub entities_status: Option<String>,
}

/// An entity found in a source.
#[derive(Debug, Clone, Serialize)]
pub struct FoundEntity {
    /// Its kind (`person`, `organization`, `email`, ...).
    pub kind: String,
    /// Its name as found.
    pub name: String,
    /// In how many of the source's chunks.
    pub chunks: i64,
}

/// What the extraction worker made of a source.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Extraction {
    /// The main text (at most [`MAX_TEXT_CHARS`] characters).
    pub text: Option<String>,
    /// The main text's full length in characters.
    pub text_chars: i64,
    /// A page of its chunks, in order.
    pub chunks: Vec<Chunk>,
    /// How many chunks it has.
    pub chunk_count: i64,
    /// The entities found (most frequent first, at most `limit`).
    pub entities: Vec<FoundEntity>,
}

/// The extraction of `source_id`: main text (capped), the first `limit` chunks and the top
/// `limit` entities. Three index lookups on the source id.
pub async fn extraction(pool: &PgPool, source_id: Uuid, limit: i64) -> Result<Extraction> {
    let text = sqlx::query!(
        r#"SELECT left(content, $2) AS text,
                  COALESCE(char_length(content), 0)::bigint AS "chars!"
           FROM sources WHERE id = $1"#,
        source_id,
        MAX_TEXT_CHARS,
    )
    .fetch_optional(pool)
    .await?;
    let (text, text_chars) = text.map_or((None, 0), |r| (r.text, r.chars));
    let chunks = sqlx::query_as!(
        Chunk,
        r#"SELECT chunk_index AS "chunk_index!", data ->> 'text' AS text,
                data -> 'heading_path' AS heading_path,
                embeddings_created AS "embeddings_created!", entities_status
           FROM extractions WHERE source_id = $1 ORDER BY extraction_type, chunk_index LIMIT $2"#,
        source_id,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let chunk_count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM extractions WHERE source_id = $1"#,
        source_id
    )
    .fetch_one(pool)
    .await?;
    let entities = sqlx::query_as!(
        FoundEntity,
        r#"SELECT e.kind AS "kind!", e.name AS "name!", count(*) AS "chunks!"
           FROM extractions x
           JOIN extraction_entities xe ON xe.extraction_id = x.id
           JOIN entities e ON e.id = xe.entity_id
          WHERE x.source_id = $1
          GROUP BY e.id, e.kind, e.name ORDER BY count(*) DESC, e.name LIMIT $2"#,
        source_id,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(Extraction {
        text,
        text_chars,
        chunks,
        chunk_count,
        entities,
    })
}

/// The names of the projects `ids` (ids with no project are left out), in one round trip:
/// what a list of jobs shows beside each.
pub async fn project_names(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, String>> {
    let rows = sqlx::query!("SELECT id, name FROM projects WHERE id = ANY($1)", ids)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.name)).collect())
}

/// Jobs whose id ends with the hex digits `suffix` (what the console shows of an id), newest
/// first, at most `limit`. A scan of the jobs table's ids: jobs are few next to sources, and
/// the scan stops at `limit` matches.
pub async fn jobs_with_id_suffix(pool: &PgPool, suffix: &str, limit: i64) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT id AS "id!" FROM jobs
            WHERE replace(id::text, '-', '') LIKE '%' || $1
            ORDER BY id DESC LIMIT $2"#,
        suffix,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// Work done in one stage and time bucket, from the event trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// The bucket's start, in unix seconds.
    pub start: i64,
    /// Attempts that succeeded.
    pub succeeded: i64,
    /// Attempts that failed (retried or dead-lettered).
    pub failed: i64,
    /// Attempts whose failure sent the message to a DLQ.
    pub dead_lettered: i64,
}

/// Work done per `stage` (a queue family's name) and `bucket_secs`-long bucket since `from`
/// (unix seconds), counted from `job_events`: the history the console charts beyond the last
/// hour, which its per-minute Redis counters keep. Partition pruning and the BRIN index on
/// `at` confine the scan to the range; its cost is a pass over the range's events, so the
/// statement is given `timeout` and fails rather than run on.
pub async fn work_history(
    pool: &PgPool,
    from: i64,
    bucket_secs: i64,
    timeout: std::time::Duration,
) -> Result<Vec<(String, Bucket)>> {
    let mut tx = pool.begin().await?;
    // `SET LOCAL` through set_config (which takes a parameter): it ends with the transaction.
    sqlx::query_scalar!(
        r#"SELECT set_config('statement_timeout', $1, true) AS "set!""#,
        timeout.as_millis().to_string(),
    )
    .fetch_one(&mut *tx)
    .await?;
    let rows = sqlx::query!(
        r#"SELECT stage AS "stage!",
                  (floor(extract(epoch FROM at) / $2) * $2)::bigint AS "start!",
                  count(*) FILTER (WHERE kind = 'succeeded') AS "succeeded!",
                  count(*) FILTER (WHERE kind IN ('failed', 'dead_lettered')) AS "failed!",
                  count(*) FILTER (WHERE kind = 'dead_lettered') AS "dead_lettered!"
             FROM job_events
            WHERE at >= to_timestamp($1) AND stage IS NOT NULL
              AND kind IN ('succeeded', 'failed', 'dead_lettered')
            GROUP BY 1, 2 ORDER BY 1, 2"#,
        from as f64,
        bucket_secs as f64,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.stage,
                Bucket {
                    start: r.start,
                    succeeded: r.succeeded,
                    failed: r.failed,
                    dead_lettered: r.dead_lettered,
                },
            )
        })
        .collect())
}
