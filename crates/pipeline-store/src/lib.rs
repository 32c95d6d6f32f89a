//! The Postgres system of record: the schema migrator, and the queries every process shares
//! about projects, jobs, sources, extractions and their event trail, and chunk search
//! ([`search`], [`vector_index`]). Every statement the workspace runs against the schema
//! lives here, checked at compile time by sqlx's query macros (against the committed
//! `.sqlx/` data when `SQLX_OFFLINE=true`).
//!
//! Postgres is the source of truth: Redis only carries work. A source's status and its event
//! trail change together: [`sources::transition`] (one source, in its own transaction),
//! [`sources::transition_in`] (inside the caller's transaction) and
//! [`batch::transition_many`] (many sources) write the status and the event in the same
//! transaction, and the progress of the jobs that include the source is refreshed once it
//! has committed ([`progress`]).

pub mod batch;
pub mod console;
pub mod crawl_schedules;
pub mod crawl_status;
pub mod crawls;
pub mod documents;
pub mod events;
pub mod export;
pub mod extractions;
pub mod facts;
pub mod job_settings;
pub mod jobs;
pub mod migrate;
pub mod progress;
pub mod queue_limits;
pub mod search;
pub mod sources;
pub mod status;
pub mod vector_index;
pub mod webhooks;

pub use migrate::{MIGRATOR, SchemaStatus, migrate, schema_status};
pub use status::{JobStatus, SourceStatus};

/// A database error from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The row asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
}

/// Store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who recorded an event (`job_events.actor`), beside the queue family it is about
/// (`job_events.stage`): a daemon, or a person through one of the interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Actor {
    /// The HTTP API.
    Api,
    /// `pipelinectl`.
    Cli,
    /// The operator console.
    Console,
    /// A scrape worker (its runs, and the pages its crawls discover).
    ScrapeWorker,
    /// An extraction worker.
    ExtractionWorker,
    /// A facts worker (the schema stage).
    FactsWorker,
    /// A webhook worker (deliveries to the endpoints projects registered).
    WebhookWorker,
    /// The requeue daemon (automatic redrives, parks, reconciles, scheduled recrawls).
    RequeueDaemon,
}

impl Actor {
    /// The column value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Actor::Api => "api",
            Actor::Cli => "cli",
            Actor::Console => "console",
            Actor::ScrapeWorker => "scrape-worker",
            Actor::ExtractionWorker => "extraction-worker",
            Actor::FactsWorker => "facts-worker",
            Actor::WebhookWorker => "webhook-worker",
            Actor::RequeueDaemon => "requeue-daemon",
        }
    }

    /// The queue family a worker works on (`job_events.stage` of its runs); `None` for the
    /// others.
    pub const fn family(self) -> Option<&'static str> {
        match self {
            Actor::ScrapeWorker => Some("scrape"),
            Actor::ExtractionWorker => Some("extraction"),
            Actor::FactsWorker => Some("facts"),
            Actor::WebhookWorker => Some("webhooks"),
            _ => None,
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
