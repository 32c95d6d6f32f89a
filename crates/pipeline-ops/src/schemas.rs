//! Projects and their extraction schemas, the one way for the API, the console and the CLI:
//! a schema is parsed and validated (`facts-core`) before anything is stored, and stored as
//! the project's next version only when it differs from the current one.

use facts_core::{Schema, SchemaErrors};
use pipeline_store::StoreError;
use pipeline_store::facts::{self, NewSchema, ProjectInfo, StoredSchema};
use sqlx::PgPool;
use uuid::Uuid;

use crate::submit::{SubmitError, validate_name};

/// Where a schema comes from.
#[derive(Debug, Clone, Copy)]
pub enum SchemaSource<'a> {
    /// A template shipped with the pipeline, by name.
    Template(&'a str),
    /// The schema's text, YAML or JSON.
    Text(&'a str),
}

/// Why a project or schema could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaWriteError {
    /// No template has that name.
    #[error("unknown template `{0}` (expected one of: {names})", names = template_names())]
    UnknownTemplate(String),
    /// The schema does not validate; every problem with its path.
    #[error("the schema is invalid:\n{0}")]
    Invalid(SchemaErrors),
    /// A bad project name.
    #[error("{0}")]
    BadName(String),
    /// No such project.
    #[error("project {0} not found")]
    UnknownProject(String),
    /// The name is taken.
    #[error("a project named `{0}` already exists")]
    NameTaken(String),
    /// Postgres failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis refused the facts messages of a re-run (its pages wait as `facts_pending`, and
    /// the reconciler enqueues them).
    #[error(
        "enqueueing facts messages failed ({0}); the pages wait as facts_pending and the reconciler enqueues them"
    )]
    Enqueue(String),
}

/// Every template's name, comma-separated.
pub fn template_names() -> String {
    facts_core::templates()
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A parsed schema with the text and template it came from.
#[derive(Debug, Clone)]
pub struct CheckedSchema {
    pub schema: Schema,
    pub text: String,
    pub template: Option<String>,
}

/// Parses and validates a schema from `source`.
pub fn check(source: SchemaSource<'_>) -> Result<CheckedSchema, SchemaWriteError> {
    let (text, template) = match source {
        SchemaSource::Template(name) => {
            let t = facts_core::template(name)
                .ok_or_else(|| SchemaWriteError::UnknownTemplate(name.to_owned()))?;
            (t.text, Some(t.name.to_owned()))
        }
        SchemaSource::Text(text) => (text, None),
    };
    let schema = Schema::parse(text).map_err(SchemaWriteError::Invalid)?;
    // The worker reads the stored canonical JSON, which YAML anchors can make much larger
    // than the text: it must pass the same checks, or every page would fail on it.
    Schema::parse(&schema.to_json().to_string()).map_err(SchemaWriteError::Invalid)?;
    Ok(CheckedSchema {
        schema,
        text: text.to_owned(),
        template,
    })
}

/// Makes `source` the project's schema (a new version unless it equals the current one).
/// Returns the current version and whether it is new.
pub async fn set_schema(
    db: &PgPool,
    project_id: Uuid,
    source: SchemaSource<'_>,
) -> Result<(StoredSchema, bool), SchemaWriteError> {
    let checked = check(source)?;
    store(db, project_id, &checked).await
}

async fn store(
    db: &PgPool,
    project_id: Uuid,
    checked: &CheckedSchema,
) -> Result<(StoredSchema, bool), SchemaWriteError> {
    let json = checked.schema.to_json();
    facts::put_schema(
        db,
        project_id,
        &NewSchema {
            name: &checked.schema.name,
            backend: checked.schema.backend.as_str(),
            schema: &json,
            source_text: &checked.text,
            template: checked.template.as_deref(),
        },
    )
    .await
    .map_err(|e| match e {
        StoreError::NotFound(_) => SchemaWriteError::UnknownProject(project_id.to_string()),
        e => SchemaWriteError::Store(e),
    })
}

/// Creates a project, with a schema when `source` gives one (checked before the project is
/// created, so an invalid schema creates nothing).
pub async fn create_project(
    db: &PgPool,
    name: &str,
    source: Option<SchemaSource<'_>>,
) -> Result<(ProjectInfo, Option<StoredSchema>), SchemaWriteError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(SchemaWriteError::BadName(
            "the project name is empty".into(),
        ));
    }
    validate_name("project", name).map_err(|e| match e {
        SubmitError::Invalid(m) => SchemaWriteError::BadName(m),
        e => SchemaWriteError::BadName(e.to_string()),
    })?;
    let checked = source.map(check).transpose()?;
    let mut project = facts::create_project(db, name)
        .await?
        .ok_or_else(|| SchemaWriteError::NameTaken(name.to_owned()))?;
    let stored = match &checked {
        Some(c) => {
            let (stored, _) = store(db, project.id, c).await?;
            project.schema_version = Some(stored.version);
            Some(stored)
        }
        None => None,
    };
    Ok((project, stored))
}

/// The project named by `id_or_name` (a UUID, else a name).
pub async fn find_project(db: &PgPool, id_or_name: &str) -> Result<ProjectInfo, SchemaWriteError> {
    facts::find_project(db, id_or_name)
        .await?
        .ok_or_else(|| SchemaWriteError::UnknownProject(id_or_name.to_owned()))
}

/// Pages moved per transaction by [`rerun`].
const RERUN_BATCH: i64 = 500;

/// What [`rerun`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RerunOutcome {
    /// Pages queued for the schema stage again.
    pub queued: u64,
    /// Of those, pages whose facts message was already waiting (not queued twice).
    pub already_queued: u64,
}

/// Runs the schema stage again for the project's extracted pages: those whose records were
/// made by another schema version than the current one (after a schema change), or every
/// extracted page with `all`. Each page moves to `facts_pending` with an `enqueued` event,
/// then its facts message is enqueued; a crash in between leaves pages `facts_pending`,
/// which the reconciler enqueues. The pages' jobs count them as in flight again until the
/// stage is done.
pub async fn rerun(
    services: &crate::Services,
    project_id: Uuid,
    all: bool,
    actor: pipeline_store::Actor,
) -> Result<RerunOutcome, SchemaWriteError> {
    let mut outcome = RerunOutcome::default();
    let mut after = None;
    loop {
        let batch =
            facts::queue_reruns(&services.db, project_id, all, after, RERUN_BATCH, actor).await?;
        let Some(last) = batch.last() else {
            break;
        };
        after = Some(last.source_id);
        // A rerun is a backfill: it waits in the project's lane at `low`, behind the
        // project's live work (within the starvation bound of the queue's README).
        let messages: Vec<_> = batch
            .iter()
            .map(|r| {
                let m = crate::messages::SourceMessage {
                    source_id: r.source_id,
                    job_id: r.job_id,
                    url: None,
                    project_id: Some(project_id),
                    priority: crate::messages::Priority::Low,
                    render: None,
                };
                (m.id(), m.lane(), m.body())
            })
            .collect();
        let bulk = services
            .queue(crate::Family::Facts)
            .enqueue_bulk_in(&messages)
            .await
            .map_err(|e| SchemaWriteError::Enqueue(e.to_string()))?;
        let mut jobs: Vec<Uuid> = batch.iter().filter_map(|r| r.job_id).collect();
        jobs.sort_unstable();
        jobs.dedup();
        services
            .progress
            .refresh_after_commit(&services.db, &jobs)
            .await?;
        outcome.queued += batch.len() as u64;
        outcome.already_queued += bulk.already_queued;
        if (batch.len() as i64) < RERUN_BATCH {
            break;
        }
    }
    Ok(outcome)
}
