//! The extraction worker's writes, in two short transactions per source: the extractions,
//! content, Markdown, metadata and entities first; then, after the embedding call (never inside a transaction),
//! the vectors together with `embeddings_created` and the source's `extracted` status.
//!
//! Every write is an upsert keyed on a unique constraint, so a redelivered message rewrites
//! the same rows instead of adding copies.

use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::Result;
use crate::documents::NewDocument;
use crate::sources::{self, Transition};
use crate::status::SourceStatus;

/// The `extraction_type` of a chunk of the main text.
pub const TEXT_CHUNK: &str = "text_chunk";

/// What the worker reads of a source.
#[derive(Debug, Clone)]
pub struct SourceContent {
    /// The source's project (entities are unique per project).
    pub project_id: Uuid,
    /// The page's URL (resolves relative links).
    pub url: String,
    /// The fetched body.
    pub raw_content: Option<String>,
    /// The fetched body byte for byte, when it is a binary document (a PDF).
    pub raw_bytes: Option<Vec<u8>>,
    /// Its HTTP content type.
    pub content_type: Option<String>,
    /// The job that created the source.
    pub created_by_job_id: Option<Uuid>,
}

/// Reads the stored content of a source; `None` when there is no such source.
pub async fn load_source(db: &PgPool, source_id: Uuid) -> Result<Option<SourceContent>> {
    Ok(sqlx::query_as!(
        SourceContent,
        "SELECT project_id, uri AS url, raw_content, raw_bytes, content_type, created_by_job_id
         FROM sources WHERE id = $1",
        source_id,
    )
    .fetch_optional(db)
    .await?)
}

/// What the analysis of one page produced, as the rows to store.
#[derive(Debug, Clone)]
pub struct NewAnalysis<'a> {
    /// The whole cleaned main text (`sources.content`).
    pub text: &'a str,
    /// The document's title, when found (a stored title is kept otherwise).
    pub title: Option<&'a str>,
    /// Each chunk's `data` document (JSON text); its position is its chunk index.
    pub chunks: Vec<String>,
    /// The entities found.
    pub entities: Vec<NewEntity<'a>>,
    /// For each entity (same order), the chunk indexes it is linked to.
    pub links: &'a [Vec<usize>],
    /// The page's Markdown and metadata, stored with its content.
    pub document: NewDocument<'a>,
    /// `complete`, `partial` or `failed` (`extractions.entities_status`).
    pub entities_status: &'a str,
    /// Whether any entity extractor ran to the end (`extractions.entities_extracted`).
    pub entities_extracted: bool,
}

/// An entity to upsert (unique per project, kind and normalized value).
#[derive(Debug, Clone)]
pub struct NewEntity<'a> {
    /// Its kind (`email`, `url`, ...).
    pub kind: &'a str,
    /// The name as found.
    pub name: &'a str,
    /// The normalized value it is unique on.
    pub normalized: &'a str,
    /// Its `data` document.
    pub data: String,
}

/// A chunk still without a current vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    /// Its `extractions` row.
    pub extraction_id: Uuid,
    /// Its position in the document.
    pub chunk_index: usize,
}

/// What the first transaction stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Chunks (extraction rows) of the source.
    pub chunks: usize,
    /// Entities linked to the source.
    pub entities: usize,
    /// Chunks to embed: without a vector, or with one from another model.
    pub missing: Vec<Missing>,
}

/// Stores the content, the Markdown and metadata, one extraction per chunk, the entities
/// and their links, and returns the chunks that still need a vector from `model`. One
/// transaction.
pub async fn store_analysis(
    db: &PgPool,
    source_id: Uuid,
    source: &SourceContent,
    job_id: Option<Uuid>,
    analysis: &NewAnalysis<'_>,
    model: &str,
) -> Result<Stored> {
    let mut tx = db.begin().await?;
    sqlx::query!(
        "UPDATE sources SET content = $2, title = COALESCE($3, title), updated_at = now()
         WHERE id = $1",
        source_id,
        analysis.text,
        analysis.title,
    )
    .execute(&mut *tx)
    .await?;
    crate::documents::store_in(&mut tx, source_id, &analysis.document).await?;

    let ids = upsert_chunks(&mut tx, source_id, source, job_id, analysis).await?;
    let entities = upsert_entities(&mut tx, source.project_id, &analysis.entities).await?;
    link_entities(&mut tx, source_id, &ids, &entities, analysis.links).await?;

    let missing = sqlx::query!(
        "SELECT x.id, x.chunk_index FROM extractions x
         LEFT JOIN extraction_embeddings e ON e.extraction_id = x.id
         WHERE x.source_id = $1 AND x.extraction_type = $2
           AND (NOT x.embeddings_created OR e.model IS DISTINCT FROM $3)
         ORDER BY x.chunk_index",
        source_id,
        TEXT_CHUNK,
        model,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Stored {
        chunks: ids.len(),
        entities: entities.len(),
        missing: missing
            .into_iter()
            .map(|r| Missing {
                extraction_id: r.id,
                chunk_index: r.chunk_index as usize,
            })
            .collect(),
    })
}

/// Upserts one row per chunk and removes chunks beyond the new last one (the chunking
/// changed). A chunk whose data changed loses its vector. Returns the row ids by chunk index.
async fn upsert_chunks(
    tx: &mut Transaction<'_, Postgres>,
    source_id: Uuid,
    source: &SourceContent,
    job_id: Option<Uuid>,
    analysis: &NewAnalysis<'_>,
) -> Result<Vec<Uuid>> {
    let n = analysis.chunks.len();
    let new_ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let indexes: Vec<i32> = (0..n as i32).collect();
    let rows = sqlx::query!(
        "INSERT INTO extractions (id, source_id, project_id, extraction_type, data, chunk_index,
                                  entities_extracted, entities_status, created_by_job_id)
         SELECT u.id, $1, $2, $3, u.data::jsonb, u.idx, $7, $8, $9
         FROM UNNEST($4::uuid[], $5::text[], $6::int[]) AS u(id, data, idx)
         ON CONFLICT (source_id, extraction_type, chunk_index) DO UPDATE SET
             data = EXCLUDED.data,
             embeddings_created = extractions.embeddings_created
                                  AND extractions.data = EXCLUDED.data,
             entities_extracted = EXCLUDED.entities_extracted,
             entities_status = EXCLUDED.entities_status,
             created_by_job_id = COALESCE(extractions.created_by_job_id,
                                          EXCLUDED.created_by_job_id)
         RETURNING id, chunk_index",
        source_id,
        source.project_id,
        TEXT_CHUNK,
        &new_ids,
        &analysis.chunks,
        &indexes,
        analysis.entities_extracted,
        analysis.entities_status,
        job_id.or(source.created_by_job_id),
    )
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query!(
        "DELETE FROM extractions WHERE source_id = $1 AND extraction_type = $2 AND chunk_index >= $3",
        source_id,
        TEXT_CHUNK,
        n as i32,
    )
    .execute(&mut **tx)
    .await?;
    // A vector of text that changed is not a vector of this chunk any more.
    sqlx::query!(
        "DELETE FROM extraction_embeddings e USING extractions x
         WHERE e.extraction_id = x.id AND x.source_id = $1 AND NOT x.embeddings_created",
        source_id,
    )
    .execute(&mut **tx)
    .await?;
    let mut ids = vec![Uuid::nil(); n];
    for r in rows {
        if let Some(slot) = ids.get_mut(r.chunk_index as usize) {
            *slot = r.id;
        }
    }
    Ok(ids)
}

/// Upserts the entities (unique per project, kind and normalized value) and returns their
/// ids in the order of `found`.
async fn upsert_entities(
    tx: &mut Transaction<'_, Postgres>,
    project_id: Uuid,
    found: &[NewEntity<'_>],
) -> Result<Vec<Uuid>> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    // Insert in one global order, so concurrent workers naming the same entities take their
    // row locks in the same order and cannot deadlock.
    let mut order: Vec<usize> = (0..found.len()).collect();
    order.sort_by(|&a, &b| {
        (found[a].kind, found[a].normalized).cmp(&(found[b].kind, found[b].normalized))
    });
    let ids: Vec<Uuid> = order.iter().map(|_| Uuid::now_v7()).collect();
    let kinds: Vec<&str> = order.iter().map(|&i| found[i].kind).collect();
    let names: Vec<&str> = order.iter().map(|&i| found[i].name).collect();
    let normalized: Vec<&str> = order.iter().map(|&i| found[i].normalized).collect();
    let data: Vec<&str> = order.iter().map(|&i| found[i].data.as_str()).collect();
    sqlx::query!(
        "INSERT INTO entities (id, project_id, kind, name, normalized, data)
         SELECT u.id, $1, u.kind, u.name, u.normalized, u.data::jsonb
         FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
              AS u(id, kind, name, normalized, data)
         ON CONFLICT (project_id, kind, normalized) DO NOTHING",
        project_id,
        &ids,
        &kinds as &[&str],
        &names as &[&str],
        &normalized as &[&str],
        &data as &[&str],
    )
    .execute(&mut **tx)
    .await?;
    let rows = sqlx::query!(
        "SELECT e.id, e.kind, e.normalized FROM entities e
         JOIN UNNEST($2::text[], $3::text[]) AS u(kind, normalized)
           ON e.kind = u.kind AND e.normalized = u.normalized
         WHERE e.project_id = $1",
        project_id,
        &kinds as &[&str],
        &normalized as &[&str],
    )
    .fetch_all(&mut **tx)
    .await?;
    let by_key: std::collections::HashMap<(String, String), Uuid> = rows
        .into_iter()
        .map(|r| ((r.kind, r.normalized), r.id))
        .collect();
    Ok(found
        .iter()
        .map(|e| {
            by_key
                .get(&(e.kind.to_owned(), e.normalized.to_owned()))
                .copied()
                .unwrap_or_default()
        })
        .collect())
}

/// Links entities to chunks idempotently, and drops links of this source that the new
/// analysis no longer makes (the page or the chunking changed).
async fn link_entities(
    tx: &mut Transaction<'_, Postgres>,
    source_id: Uuid,
    chunk_ids: &[Uuid],
    entity_ids: &[Uuid],
    links: &[Vec<usize>],
) -> Result<()> {
    let mut pairs: Vec<(Uuid, Uuid)> = Vec::new();
    for (entity_id, chunks) in entity_ids.iter().zip(links) {
        if entity_id.is_nil() {
            continue;
        }
        for &i in chunks {
            if let Some(&x) = chunk_ids.get(i).filter(|x| !x.is_nil()) {
                pairs.push((x, *entity_id));
            }
        }
    }
    pairs.sort();
    pairs.dedup();
    let (xs, es): (Vec<Uuid>, Vec<Uuid>) = pairs.into_iter().unzip();
    sqlx::query!(
        "DELETE FROM extraction_entities l USING extractions x
         WHERE l.extraction_id = x.id AND x.source_id = $1
           AND (l.extraction_id, l.entity_id) NOT IN
               (SELECT * FROM UNNEST($2::uuid[], $3::uuid[]))",
        source_id,
        &xs,
        &es,
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
        "INSERT INTO extraction_entities (extraction_id, entity_id)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[])
         ON CONFLICT DO NOTHING",
        &xs,
        &es,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The vectors of the chunks that lacked one, plus the source's final transition.
#[derive(Debug)]
pub struct Finish<'a> {
    /// The source.
    pub source_id: Uuid,
    /// The job the message ran for.
    pub job_id: Option<Uuid>,
    /// The delivery attempt (1-based).
    pub attempt: i32,
    /// The embedding model.
    pub model: &'a str,
    /// Vector length.
    pub dims: usize,
    /// The embedded chunks' rows.
    pub extraction_ids: &'a [Uuid],
    /// Their vectors, in the same order.
    pub vectors: &'a [Vec<f32>],
    /// The `succeeded` event's detail.
    pub detail: Value,
}

/// Where [`finish`] left a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// No such source.
    Missing,
    /// Done: `extracted`.
    Extracted,
    /// Its project has an extraction schema: `facts_pending`, and the caller enqueues its
    /// facts message (the reconciler does, if the caller dies first).
    FactsPending,
}

/// Stores the vectors, sets `embeddings_created` on their rows and moves the source to
/// `extracted`, or to `facts_pending` when its project has an extraction schema, all in
/// one transaction; then refreshes the progress of the source's jobs.
pub async fn finish(
    db: &PgPool,
    progress: &crate::progress::Progress,
    f: &Finish<'_>,
) -> Result<Finished> {
    let mut tx = db.begin().await?;
    // One statement: the body this extraction came from (a recrawl that finds it again skips
    // extraction) and whether the project has a schema, read inside the transaction, so a
    // schema set after this commit applies to the next run.
    let has_schema = sqlx::query_scalar!(
        r#"UPDATE sources s SET extracted_sha256 = s.content_sha256
             FROM projects p
            WHERE s.id = $1 AND p.id = s.project_id
        RETURNING p.schema_version IS NOT NULL AS "has!""#,
        f.source_id,
    )
    .fetch_optional(&mut *tx)
    .await?
    .unwrap_or(false);
    let to = if has_schema {
        SourceStatus::FactsPending
    } else {
        SourceStatus::Extracted
    };
    if !f.extraction_ids.is_empty() {
        // One flat array and a slice per row: Postgres cannot unnest an array of arrays.
        let flat: Vec<f32> = f.vectors.iter().flatten().copied().collect();
        sqlx::query!(
            "INSERT INTO extraction_embeddings (extraction_id, model, dims, embedding)
             SELECT ($1::uuid[])[i], $2, $3::int, ($4::real[])[(i - 1) * $3 + 1 : i * $3]
             FROM generate_subscripts($1::uuid[], 1) AS i
             ON CONFLICT (extraction_id) DO UPDATE SET
                 model = EXCLUDED.model, dims = EXCLUDED.dims,
                 embedding = EXCLUDED.embedding, created_at = now()",
            f.extraction_ids,
            f.model,
            f.dims as i32,
            &flat,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE extractions SET embeddings_created = true WHERE id = ANY($1)",
            f.extraction_ids,
        )
        .execute(&mut *tx)
        .await?;
    }
    let jobs = sources::transition_in(
        &mut tx,
        &Transition {
            source_id: f.source_id,
            job_id: f.job_id,
            to,
            event: "succeeded",
            stage: "extraction",
            actor: crate::Actor::ExtractionWorker,
            attempt: Some(f.attempt),
            detail: f.detail.clone(),
            error: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(match progress.after_transition(db, jobs).await? {
        false => Finished::Missing,
        true if has_schema => Finished::FactsPending,
        true => Finished::Extracted,
    })
}
