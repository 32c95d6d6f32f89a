//! The words for where a source and a job are. DESIGN keeps these words for these meanings.
//!
//! Both are stored as `text` with a `CHECK` constraint listing exactly these words (migration
//! `status_constraints`); `sqlx::Type` maps them, so the query macros decode a status column
//! straight into the enum (`status AS "status: SourceStatus"`). Statuses are bound as
//! [`SourceStatus::as_str`]: a `text` parameter the macros check, where binding the enum
//! would cost a per-connection lookup of the type by name.

use serde::{Deserialize, Serialize};

/// Where a source is in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum SourceStatus {
    /// Waiting in the scrape queue.
    Queued,
    /// A transient failure waits for its next attempt (in a queue's retry schedule or DLQ).
    Retrying,
    /// Fetched; waiting in the extraction queue.
    Scraped,
    /// Extracted, and its project has an extraction schema: waiting in the facts queue.
    FactsPending,
    /// Done: extractions, embeddings and entities stored (and, for a project with a schema,
    /// its records).
    Extracted,
    /// In a DLQ: a permanent failure waits for a person; a transient one for the redrive.
    DeadLettered,
    /// Automatic redrive gave up; only a person retries it.
    Parked,
    /// A person dropped it.
    Discarded,
}

impl SourceStatus {
    /// Every status.
    pub const ALL: [SourceStatus; 8] = [
        Self::Queued,
        Self::Retrying,
        Self::Scraped,
        Self::FactsPending,
        Self::Extracted,
        Self::DeadLettered,
        Self::Parked,
        Self::Discarded,
    ];

    /// The word stored in `sources.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Scraped => "scraped",
            Self::FactsPending => "facts_pending",
            Self::Extracted => "extracted",
            Self::DeadLettered => "dead_lettered",
            Self::Parked => "parked",
            Self::Discarded => "discarded",
        }
    }

    /// Parses a stored word.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Statuses in which the reconciler expects progress (something must still happen).
    pub const IN_FLIGHT: [SourceStatus; 4] = [
        Self::Queued,
        Self::Retrying,
        Self::Scraped,
        Self::FactsPending,
    ];
}

impl std::fmt::Display for SourceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Compares with a stored word, so a status reads `status == "scraped"` in checks and tests.
impl PartialEq<&str> for SourceStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum JobStatus {
    /// Created, nothing processed yet.
    Queued,
    /// Some sources are still in flight.
    Running,
    /// Every source extracted.
    Completed,
    /// No source extracted; all ended in failure states.
    Failed,
    /// All sources terminal, some extracted and some not.
    CompletedWithErrors,
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 5] = [
        Self::Queued,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::CompletedWithErrors,
    ];

    /// Parses a stored word.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The word stored in `jobs.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::CompletedWithErrors => "completed_with_errors",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Compares with a stored word (`status == "completed"`).
impl PartialEq<&str> for JobStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
