//! The schema stage's tables (migration `facts`): every version of a project's extraction
//! schema, the values each page gave for it (`facts`, each with its quote), what the stage
//! did per page (`fact_runs`), the model tokens a job spent, and the consolidated records
//! read through the `knowledge` views.
//!
//! A run replaces its page's values in the transaction that moves the page on, so a
//! redelivered message leaves no duplicates, and a page's values always come from one run.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::progress::Progress;
use crate::sources::{self, Transition};
use crate::status::SourceStatus;
use crate::{Actor, Result, StoreError};

/// A schema to store as a project's next version.
#[derive(Debug, Clone)]
pub struct NewSchema<'a> {
    /// The schema's name (its top-level record's entity).
    pub name: &'a str,
    /// `markup` or `llm`.
    pub backend: &'a str,
    /// The validated schema as canonical JSON.
    pub schema: &'a Value,
    /// The schema as the user wrote it.
    pub source_text: &'a str,
    /// The shipped template it came from.
    pub template: Option<&'a str>,
}

/// One stored version of a project's schema.
#[derive(Debug, Clone, Serialize)]
pub struct StoredSchema {
    pub project_id: Uuid,
    pub version: i32,
    pub name: String,
    pub backend: String,
    pub schema: Value,
    pub source_text: String,
    pub template: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Makes `new` the project's current schema. A schema equal to the current one (same
/// canonical JSON and backend) keeps its version; anything else becomes a new version, so
/// records keep naming the version that made them. Returns the current version and whether
/// it is new. The project row is locked, so two writers get consecutive versions.
pub async fn put_schema(
    pool: &PgPool,
    project_id: Uuid,
    new: &NewSchema<'_>,
) -> Result<(StoredSchema, bool)> {
    let mut tx = pool.begin().await?;
    let current = sqlx::query_scalar!(
        "SELECT schema_version FROM projects WHERE id = $1 FOR NO KEY UPDATE",
        project_id,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("project {project_id}")))?;
    if let Some(version) = current {
        let same = sqlx::query_scalar!(
            r#"SELECT (schema = $3 AND backend = $4) AS "same!" FROM project_schemas
                WHERE project_id = $1 AND version = $2"#,
            project_id,
            version,
            new.schema,
            new.backend,
        )
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(false);
        if same {
            tx.commit().await?;
            let stored = schema_version(pool, project_id, version).await?;
            return stored
                .map(|s| (s, false))
                .ok_or_else(|| StoreError::NotFound(format!("schema version {version}")));
        }
    }
    let stored = sqlx::query_as!(
        StoredSchema,
        "INSERT INTO project_schemas (project_id, version, name, backend, schema, source_text,
                                      template)
         SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5, $6
           FROM project_schemas WHERE project_id = $1
         RETURNING project_id, version, name, backend, schema, source_text, template, created_at",
        project_id,
        new.name,
        new.backend,
        new.schema,
        new.source_text,
        new.template,
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE projects SET schema_version = $2 WHERE id = $1",
        project_id,
        stored.version,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((stored, true))
}

/// The project's current schema, if it has one.
pub async fn current_schema(pool: &PgPool, project_id: Uuid) -> Result<Option<StoredSchema>> {
    Ok(sqlx::query_as!(
        StoredSchema,
        "SELECT s.project_id, s.version, s.name, s.backend, s.schema, s.source_text, s.template,
                s.created_at
           FROM projects p
           JOIN project_schemas s ON s.project_id = p.id AND s.version = p.schema_version
          WHERE p.id = $1",
        project_id,
    )
    .fetch_optional(pool)
    .await?)
}

/// One version of the project's schema.
pub async fn schema_version(
    pool: &PgPool,
    project_id: Uuid,
    version: i32,
) -> Result<Option<StoredSchema>> {
    Ok(sqlx::query_as!(
        StoredSchema,
        "SELECT project_id, version, name, backend, schema, source_text, template, created_at
           FROM project_schemas WHERE project_id = $1 AND version = $2",
        project_id,
        version,
    )
    .fetch_optional(pool)
    .await?)
}

/// Every version of the project's schema, newest first (at most 1,000).
pub async fn schema_history(pool: &PgPool, project_id: Uuid) -> Result<Vec<StoredSchema>> {
    Ok(sqlx::query_as!(
        StoredSchema,
        "SELECT project_id, version, name, backend, schema, source_text, template, created_at
           FROM project_schemas WHERE project_id = $1 ORDER BY version DESC LIMIT 1000",
        project_id,
    )
    .fetch_all(pool)
    .await?)
}

/// Removes the project's schema (its pages skip the stage from now on); the versions and
/// the records they made stay. Returns whether the project exists.
pub async fn clear_schema(pool: &PgPool, project_id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE projects SET schema_version = NULL WHERE id = $1",
        project_id
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A project by name or id.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectInfo {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The current schema version, if the project has a schema.
    pub schema_version: Option<i32>,
}

/// Creates a project; `None` when the name is taken.
pub async fn create_project(pool: &PgPool, name: &str) -> Result<Option<ProjectInfo>> {
    Ok(sqlx::query_as!(
        ProjectInfo,
        "INSERT INTO projects (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING
         RETURNING id, name, created_at, schema_version",
        Uuid::now_v7(),
        name,
    )
    .fetch_optional(pool)
    .await?)
}

/// The project with this id, or else this name.
pub async fn find_project(pool: &PgPool, id_or_name: &str) -> Result<Option<ProjectInfo>> {
    let id = Uuid::parse_str(id_or_name).ok();
    Ok(sqlx::query_as!(
        ProjectInfo,
        "SELECT id, name, created_at, schema_version FROM projects
          WHERE id = $1 OR ($1 IS NULL AND name = $2)",
        id,
        id_or_name,
    )
    .fetch_optional(pool)
    .await?)
}

// ---------------------------------------------------------------------------------------
// The worker's side.

/// What the stage reads of one page.
#[derive(Debug, Clone)]
pub struct FactsInput {
    pub project_id: Uuid,
    pub url: String,
    pub status: SourceStatus,
    /// The fetched body (a page's HTML; empty for a PDF).
    pub raw_content: Option<String>,
    pub content_type: Option<String>,
    /// The cleaned main text the extraction stored.
    pub content: Option<String>,
    /// The project's current schema version (`None`: no schema any more).
    pub schema_version: Option<i32>,
    /// The family whose stage failed last (`retrying` or `dead_lettered` pages).
    pub last_error_stage: Option<String>,
}

impl FactsInput {
    /// Whether the page waits for the facts stage: `facts_pending`, or a facts failure
    /// waiting for its retry. Anything else (a page submitted again and queued for a new
    /// fetch, extracted, discarded) means the message is stale: it must not move the page.
    pub fn waits_for_facts(&self) -> bool {
        match self.status {
            SourceStatus::FactsPending => true,
            SourceStatus::Retrying | SourceStatus::DeadLettered => {
                self.last_error_stage.as_deref() == Some("facts")
            }
            _ => false,
        }
    }
}

/// The page the stage works on, with its project's current schema version.
pub async fn load_input(pool: &PgPool, source_id: Uuid) -> Result<Option<FactsInput>> {
    Ok(sqlx::query_as!(
        FactsInput,
        r#"SELECT s.project_id, s.uri AS url, s.status AS "status: SourceStatus",
                  s.raw_content, s.content_type, s.content, p.schema_version,
                  s.last_error_stage
             FROM sources s JOIN projects p ON p.id = s.project_id
            WHERE s.id = $1"#,
        source_id,
    )
    .fetch_optional(pool)
    .await?)
}

/// One chunk of a page's text.
#[derive(Debug, Clone)]
pub struct ChunkText {
    pub chunk_index: i32,
    pub text: String,
}

/// The page's chunks in order.
pub async fn chunks(pool: &PgPool, source_id: Uuid) -> Result<Vec<ChunkText>> {
    Ok(sqlx::query_as!(
        ChunkText,
        r#"SELECT chunk_index AS "chunk_index!", COALESCE(data ->> 'text', '') AS "text!"
             FROM extractions
            WHERE source_id = $1 AND chunk_index IS NOT NULL
            ORDER BY chunk_index"#,
        source_id,
    )
    .fetch_all(pool)
    .await?)
}

/// The job's model tokens left under its cap: `None` when it has no cap (or no job).
pub async fn tokens_left(pool: &PgPool, job_id: Option<Uuid>) -> Result<Option<i64>> {
    let Some(job_id) = job_id else {
        return Ok(None);
    };
    Ok(sqlx::query_scalar!(
        "SELECT model_token_cap - model_tokens_used FROM jobs WHERE id = $1",
        job_id,
    )
    .fetch_optional(pool)
    .await?
    .flatten())
}

/// Adds a request's tokens to what the job spent; returns what is left under its cap.
pub async fn spend_tokens(pool: &PgPool, job_id: Option<Uuid>, tokens: i64) -> Result<Option<i64>> {
    let Some(job_id) = job_id else {
        return Ok(None);
    };
    Ok(sqlx::query_scalar!(
        "UPDATE jobs SET model_tokens_used = model_tokens_used + $2 WHERE id = $1
         RETURNING model_token_cap - model_tokens_used",
        job_id,
        tokens,
    )
    .fetch_optional(pool)
    .await?
    .flatten())
}

/// One value to store.
#[derive(Debug, Clone)]
pub struct NewFact {
    pub entity: String,
    pub entity_key: Option<String>,
    pub field: String,
    pub value: Value,
    pub list_item: bool,
    pub quote: String,
    pub origin: String,
    pub chunk_index: Option<i32>,
    pub confidence: Option<f32>,
    pub grounded: bool,
}

/// What one run of the stage did on a page.
#[derive(Debug, Clone)]
pub struct FactRun<'a> {
    pub source_id: Uuid,
    pub job_id: Option<Uuid>,
    pub attempt: i32,
    pub schema_version: i32,
    pub backend: &'a str,
    /// `complete` or `capped`.
    pub outcome: &'a str,
    pub records: i32,
    pub dropped: i32,
    pub requests: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The `succeeded` event's detail.
    pub detail: Value,
    /// Keep the page's stored values and run instead of replacing them: the job's token cap
    /// was reached before anything was asked, so there is nothing to replace them with (a
    /// first run still records its `capped` run).
    pub keep_values: bool,
}

/// Replaces the page's values with `facts`, records the run, and moves the page to
/// `extracted` with a `succeeded` event of stage `facts`, in one transaction; then refreshes
/// its jobs' progress. Returns `false`, changing nothing, when the source does not exist or
/// no longer waits for this stage.
pub async fn store_run(
    pool: &PgPool,
    progress: &Progress,
    run: &FactRun<'_>,
    facts: &[NewFact],
) -> Result<bool> {
    let grounded = facts.iter().filter(|f| f.grounded).count() as i32;
    let ungrounded = facts.len() as i32 - grounded;
    let mut tx = pool.begin().await?;
    // Only a page that still waits for this stage: one submitted again meanwhile (queued
    // for a new fetch) must not be moved on with values of its old content.
    let project_id = sqlx::query_scalar!(
        "SELECT project_id FROM sources
          WHERE id = $1
            AND (status = 'facts_pending'
                 OR (status IN ('retrying', 'dead_lettered') AND last_error_stage = 'facts'))
          FOR NO KEY UPDATE",
        run.source_id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(project_id) = project_id else {
        return Ok(false);
    };
    if !run.keep_values {
        sqlx::query!("DELETE FROM facts WHERE source_id = $1", run.source_id)
            .execute(&mut *tx)
            .await?;
    }
    if !run.keep_values && !facts.is_empty() {
        let entity: Vec<&str> = facts.iter().map(|f| f.entity.as_str()).collect();
        let key: Vec<Option<&str>> = facts.iter().map(|f| f.entity_key.as_deref()).collect();
        let field: Vec<&str> = facts.iter().map(|f| f.field.as_str()).collect();
        let value: Vec<Value> = facts.iter().map(|f| f.value.clone()).collect();
        let list_item: Vec<bool> = facts.iter().map(|f| f.list_item).collect();
        let quote: Vec<&str> = facts.iter().map(|f| f.quote.as_str()).collect();
        let origin: Vec<&str> = facts.iter().map(|f| f.origin.as_str()).collect();
        let chunk: Vec<Option<i32>> = facts.iter().map(|f| f.chunk_index).collect();
        let confidence: Vec<Option<f32>> = facts.iter().map(|f| f.confidence).collect();
        let grounded: Vec<bool> = facts.iter().map(|f| f.grounded).collect();
        sqlx::query!(
            "INSERT INTO facts (project_id, source_id, job_id, schema_version, entity, entity_key,
                                field, value, list_item, quote, origin, chunk_index, confidence,
                                grounded)
             SELECT $1, $2, $3, $4, u.* FROM unnest($5::text[], $6::text[], $7::text[],
                    $8::jsonb[], $9::bool[], $10::text[], $11::text[], $12::int[], $13::real[],
                    $14::bool[]) AS u",
            project_id,
            run.source_id,
            run.job_id,
            run.schema_version,
            &entity as &[&str],
            &key as &[Option<&str>],
            &field as &[&str],
            &value,
            &list_item,
            &quote as &[&str],
            &origin as &[&str],
            &chunk as &[Option<i32>],
            &confidence as &[Option<f32>],
            &grounded,
        )
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query!(
        "INSERT INTO fact_runs (source_id, project_id, job_id, schema_version, backend, outcome,
                               records, grounded, ungrounded, dropped, requests, prompt_tokens,
                               completion_tokens)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (source_id) DO UPDATE SET
             project_id = EXCLUDED.project_id, job_id = EXCLUDED.job_id,
             schema_version = EXCLUDED.schema_version, backend = EXCLUDED.backend,
             outcome = EXCLUDED.outcome, records = EXCLUDED.records,
             grounded = EXCLUDED.grounded, ungrounded = EXCLUDED.ungrounded,
             dropped = EXCLUDED.dropped, requests = EXCLUDED.requests,
             prompt_tokens = EXCLUDED.prompt_tokens,
             completion_tokens = EXCLUDED.completion_tokens, finished_at = now()
         WHERE NOT $14",
        run.source_id,
        project_id,
        run.job_id,
        run.schema_version,
        run.backend,
        run.outcome,
        run.records,
        grounded,
        ungrounded,
        run.dropped,
        run.requests,
        run.prompt_tokens,
        run.completion_tokens,
        run.keep_values,
    )
    .execute(&mut *tx)
    .await?;
    let jobs = sources::transition_in(
        &mut tx,
        &Transition {
            source_id: run.source_id,
            job_id: run.job_id,
            to: SourceStatus::Extracted,
            event: "succeeded",
            stage: "facts",
            actor: Actor::FactsWorker,
            attempt: Some(run.attempt),
            detail: run.detail.clone(),
            error: None,
        },
    )
    .await?;
    tx.commit().await?;
    progress.after_transition(pool, jobs).await
}

/// Moves a page whose project no longer has a schema on to `extracted` (a `succeeded`
/// event whose detail says it was skipped, so the stage run ends like any other).
pub async fn skip(
    pool: &PgPool,
    progress: &Progress,
    source_id: Uuid,
    job_id: Option<Uuid>,
    attempt: i32,
) -> Result<bool> {
    sources::transition(
        pool,
        progress,
        &Transition {
            source_id,
            job_id,
            to: SourceStatus::Extracted,
            event: "succeeded",
            stage: "facts",
            actor: Actor::FactsWorker,
            attempt: Some(attempt),
            detail: serde_json::json!({ "skipped": "the project has no extraction schema" }),
            error: None,
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Reading.

/// A comparison in a record filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    /// The operator as written (`=`, `!=`, `<`, `<=`, `>`, `>=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// `field op value`: a record matches when one of its grounded values of `field` does.
/// Numbers compare as numbers when both sides are numbers; everything else compares as text
/// (equality ignores case; ranges on ISO dates work because they sort as text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    pub value: String,
}

impl Condition {
    /// Parses `field=value`, `field!=value`, `field>=10`, `field<2024-01-01`, …
    pub fn parse(s: &str) -> std::result::Result<Condition, String> {
        let at = s
            .find(['=', '!', '<', '>'])
            .ok_or_else(|| format!("`{s}` has no operator (=, !=, <, <=, >, >=)"))?;
        let field = s[..at].trim();
        let rest = &s[at..];
        let (op, len) = if rest.starts_with("!=") {
            (Op::Ne, 2)
        } else if rest.starts_with("<=") {
            (Op::Le, 2)
        } else if rest.starts_with(">=") {
            (Op::Ge, 2)
        } else if rest.starts_with('<') {
            (Op::Lt, 1)
        } else if rest.starts_with('>') {
            (Op::Gt, 1)
        } else if rest.starts_with('=') {
            (Op::Eq, 1)
        } else {
            return Err(format!("`{s}`: `!` must be followed by `=`"));
        };
        let value = rest[len..].trim();
        let valid_name = !field.is_empty()
            && field.len() <= 64
            && field
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid_name {
            return Err(format!(
                "`{s}`: `{field}` is not a field name (lower-case letters, digits, _)"
            ));
        }
        if value.is_empty() || value.len() > 1000 {
            return Err(format!("`{s}`: the value must be 1..=1000 characters"));
        }
        Ok(Condition {
            field: field.to_owned(),
            op,
            value: value.to_owned(),
        })
    }
}

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub project_id: Uuid,
    pub entity: Option<String>,
    /// Only records a value of this page belongs to.
    pub source_id: Option<Uuid>,
    pub conditions: Vec<Condition>,
    /// Records after this `(entity, record_key)` (the previous page's last).
    pub after: Option<(String, String)>,
    pub limit: i64,
}

/// A consolidated record.
#[derive(Debug, Clone, Serialize)]
pub struct RecordRow {
    pub entity: String,
    pub record_key: String,
    /// Field to value; a list field or a conflicting field holds every value (an array).
    pub fields: Value,
    /// The fields with more than one value where the schema expects one.
    pub conflicts: Vec<String>,
    /// Pages that gave values.
    pub sources: i64,
    pub schema_version: i32,
}

/// Records of a project that match `filter`, by entity and key.
pub async fn records(pool: &PgPool, filter: &RecordFilter) -> Result<Vec<RecordRow>> {
    let fields: Vec<&str> = filter.conditions.iter().map(|c| c.field.as_str()).collect();
    let ops: Vec<&str> = filter.conditions.iter().map(|c| c.op.as_str()).collect();
    let values: Vec<&str> = filter.conditions.iter().map(|c| c.value.as_str()).collect();
    let (after_entity, after_key) = filter.after.clone().unzip();
    Ok(sqlx::query_as!(
        RecordRow,
        r#"SELECT r.entity AS "entity!", r.record_key AS "record_key!", r.fields AS "fields!",
                  r.conflicts AS "conflicts!", r.sources AS "sources!",
                  r.schema_version AS "schema_version!"
             FROM knowledge.records r
            WHERE r.project_id = $1
              AND ($2::text IS NULL OR r.entity = $2)
              AND ($3::uuid IS NULL OR EXISTS (
                      SELECT 1 FROM facts f
                       WHERE f.source_id = $3 AND f.project_id = r.project_id
                         AND f.entity = r.entity AND f.record_key = r.record_key))
              AND ($7::text IS NULL OR (r.entity, r.record_key) > ($7, $8))
              AND NOT EXISTS (
                  SELECT 1 FROM unnest($4::text[], $5::text[], $6::text[]) AS c(field, op, val)
                   WHERE NOT EXISTS (
                       SELECT 1 FROM facts f
                        WHERE f.project_id = r.project_id AND f.entity = r.entity
                          AND f.record_key = r.record_key AND f.grounded AND f.field = c.field
                          AND pipeline_fact_matches(f.value, c.op, c.val)))
            ORDER BY r.entity, r.record_key
            LIMIT $9"#,
        filter.project_id,
        filter.entity,
        filter.source_id,
        &fields as &[&str],
        &ops as &[&str],
        &values as &[&str],
        after_entity,
        after_key,
        filter.limit,
    )
    .fetch_all(pool)
    .await?)
}

/// One consolidated record of a project, if it has grounded values.
pub async fn record(
    pool: &PgPool,
    project_id: Uuid,
    entity: &str,
    record_key: &str,
) -> Result<Option<RecordRow>> {
    Ok(sqlx::query_as!(
        RecordRow,
        r#"SELECT r.entity AS "entity!", r.record_key AS "record_key!", r.fields AS "fields!",
                  r.conflicts AS "conflicts!", r.sources AS "sources!",
                  r.schema_version AS "schema_version!"
             FROM knowledge.records r
            WHERE r.project_id = $1 AND r.entity = $2 AND r.record_key = $3"#,
        project_id,
        entity,
        record_key,
    )
    .fetch_optional(pool)
    .await?)
}

/// One stored value with where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct FactRow {
    pub entity: String,
    pub record_key: String,
    pub field: String,
    pub value: Value,
    pub list_item: bool,
    pub quote: String,
    pub origin: String,
    pub chunk_index: Option<i32>,
    pub confidence: Option<f32>,
    pub grounded: bool,
    pub source_id: Uuid,
    pub url: String,
    pub schema_version: i32,
}

/// The values of one page (ungrounded ones included, flagged), by record and field.
pub async fn source_facts(pool: &PgPool, source_id: Uuid, limit: i64) -> Result<Vec<FactRow>> {
    Ok(sqlx::query_as!(
        FactRow,
        r#"SELECT f.entity, f.record_key AS "record_key!", f.field, f.value, f.list_item,
                  f.quote, f.origin, f.chunk_index, f.confidence, f.grounded, f.source_id,
                  s.uri AS url, f.schema_version
             FROM facts f JOIN sources s ON s.id = f.source_id
            WHERE f.source_id = $1
            ORDER BY f.entity, f.record_key, f.field, f.id
            LIMIT $2"#,
        source_id,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// The grounded values of one record, over every page, with their quotes.
pub async fn record_facts(
    pool: &PgPool,
    project_id: Uuid,
    entity: &str,
    record_key: &str,
    limit: i64,
) -> Result<Vec<FactRow>> {
    Ok(sqlx::query_as!(
        FactRow,
        r#"SELECT f.entity, f.record_key AS "record_key!", f.field, f.value, f.list_item,
                  f.quote, f.origin, f.chunk_index, f.confidence, f.grounded, f.source_id,
                  s.uri AS url, f.schema_version
             FROM facts f JOIN sources s ON s.id = f.source_id
            WHERE f.project_id = $1 AND f.entity = $2 AND f.record_key = $3 AND f.grounded
            ORDER BY f.field, f.id
            LIMIT $4"#,
        project_id,
        entity,
        record_key,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// The sources of a project with a record matching every condition (for filtering search
/// hits by record fields), at most `limit`.
pub async fn matching_sources(
    pool: &PgPool,
    project_id: Uuid,
    conditions: &[Condition],
    limit: i64,
) -> Result<Vec<Uuid>> {
    let fields: Vec<&str> = conditions.iter().map(|c| c.field.as_str()).collect();
    let ops: Vec<&str> = conditions.iter().map(|c| c.op.as_str()).collect();
    let values: Vec<&str> = conditions.iter().map(|c| c.value.as_str()).collect();
    Ok(sqlx::query_scalar!(
        r#"SELECT DISTINCT f0.source_id AS "source_id!"
             FROM facts f0
            WHERE f0.project_id = $1 AND f0.grounded
              AND NOT EXISTS (
                  SELECT 1 FROM unnest($2::text[], $3::text[], $4::text[]) AS c(field, op, val)
                   WHERE NOT EXISTS (
                       SELECT 1 FROM facts f
                        WHERE f.project_id = f0.project_id AND f.entity = f0.entity
                          AND f.record_key = f0.record_key AND f.grounded
                          AND f.field = c.field
                          AND pipeline_fact_matches(f.value, c.op, c.val)))
            LIMIT $5"#,
        project_id,
        &fields as &[&str],
        &ops as &[&str],
        &values as &[&str],
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// What the stage did for a job's pages.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobFacts {
    /// Pages the stage finished.
    pub pages: i64,
    /// Pages it stopped asking the model for because the job's token cap was reached.
    pub capped_pages: i64,
    pub grounded: i64,
    pub ungrounded: i64,
    pub model_tokens_used: i64,
    pub model_token_cap: Option<i64>,
}

/// The stage's totals for a job.
pub async fn job_facts(pool: &PgPool, job_id: Uuid) -> Result<JobFacts> {
    Ok(sqlx::query_as!(
        JobFacts,
        r#"SELECT count(r.source_id) AS "pages!",
                  count(r.source_id) FILTER (WHERE r.outcome = 'capped') AS "capped_pages!",
                  COALESCE(sum(r.grounded), 0)::bigint AS "grounded!",
                  COALESCE(sum(r.ungrounded), 0)::bigint AS "ungrounded!",
                  j.model_tokens_used, j.model_token_cap
             FROM jobs j LEFT JOIN fact_runs r ON r.job_id = j.id
            WHERE j.id = $1
            GROUP BY j.id"#,
        job_id,
    )
    .fetch_optional(pool)
    .await?
    .unwrap_or_default())
}

/// A page moved back in front of the schema stage by [`queue_reruns`].
#[derive(Debug, Clone)]
pub struct Rerun {
    pub source_id: Uuid,
    pub job_id: Option<Uuid>,
}

/// Moves up to `limit` `extracted` pages of the project back to `facts_pending`, each with
/// an `enqueued` event (stage `facts`, `actor`), for the caller to enqueue: the pages whose
/// records were made by another schema version than the current one (or that have none),
/// or every extracted page with `all`. Nothing when the project has no schema. Pages come
/// in id order after `after` (the previous batch's last), so a page the stage finishes
/// while the caller goes on is not picked twice; rows another transaction holds are skipped
/// (they are being worked on).
pub async fn queue_reruns(
    pool: &PgPool,
    project_id: Uuid,
    all: bool,
    after: Option<Uuid>,
    limit: i64,
    actor: Actor,
) -> Result<Vec<Rerun>> {
    let rows = sqlx::query_as!(
        Rerun,
        r#"WITH picked AS (
               SELECT s.id, s.created_by_job_id, p.schema_version AS version
                 FROM sources s
                 JOIN projects p ON p.id = s.project_id
                 LEFT JOIN fact_runs r ON r.source_id = s.id
                WHERE s.project_id = $1 AND s.status = 'extracted'
                  AND p.schema_version IS NOT NULL
                  AND ($2 OR r.schema_version IS DISTINCT FROM p.schema_version)
                  AND ($5::uuid IS NULL OR s.id > $5)
                ORDER BY s.id
                LIMIT $3
                FOR UPDATE OF s SKIP LOCKED
           ), moved AS (
               UPDATE sources s SET status = 'facts_pending', updated_at = now()
                 FROM picked WHERE s.id = picked.id
               RETURNING s.id, picked.created_by_job_id, picked.version
           ), events AS (
               INSERT INTO job_events (job_id, source_id, kind, stage, actor, detail)
               SELECT created_by_job_id, id, 'enqueued', 'facts', $4,
                      jsonb_build_object('reason', 'rerun', 'schema_version', version)
                 FROM moved
           )
           SELECT id AS "source_id!", created_by_job_id AS job_id FROM moved ORDER BY id"#,
        project_id,
        all,
        limit,
        actor.as_str(),
        after,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows)
}
