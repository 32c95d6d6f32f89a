//! Submitting work: one job, one source per URL, one scrape message per source.
//!
//! Shared by `pipelinectl submit` and `POST /api/v1/scrape`.

use pipeline_store::jobs::{self, CreatedJob, InvalidUrl, NewScrapeJob, ProjectRef};
use serde::Serialize;
use uuid::Uuid;

use crate::Family;
use crate::Services;
use crate::messages::SourceMessage;

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Most URLs in one submission.
pub const MAX_URLS: usize = 10_000;

/// What to submit.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    /// The URLs, as given.
    pub urls: Vec<String>,
    /// The project by id; else by name; else the default project.
    pub project_id: Option<Uuid>,
    /// The project by name (created when missing).
    pub project_name: Option<String>,
    /// A free-form group name stored on each source.
    pub source_group: Option<String>,
}

/// What a submission did.
#[derive(Debug, Clone, Serialize)]
pub struct SubmitOutcome {
    /// The job created.
    pub job_id: Uuid,
    /// The project it belongs to.
    pub project_id: Uuid,
    /// Sources queued (one per valid, distinct URL).
    pub sources: Vec<pipeline_store::jobs::JobSource>,
    /// URLs refused, each with its reason. They are recorded on the job too.
    pub invalid: Vec<InvalidUrl>,
    /// Sources that were already waiting in the scrape queue (not queued twice).
    pub already_queued: u64,
}

/// Why a submission failed as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// Nothing to submit, or too much.
    #[error("{0}")]
    Invalid(String),
    /// The project id names no project.
    #[error("project {0} not found")]
    UnknownProject(Uuid),
    /// Postgres failed.
    #[error(transparent)]
    Store(pipeline_store::StoreError),
    /// Redis failed after the job was recorded; the reconciler will enqueue its sources.
    #[error(
        "job {job_id} recorded but enqueueing failed ({source}); the reconciler will enqueue its sources"
    )]
    Enqueue {
        /// The recorded job.
        job_id: Uuid,
        /// The queue error.
        source: work_queue::QueueError,
    },
}

/// Checks one URL: absolute http(s) with a host, at most [`MAX_URL_LEN`] characters. Address
/// checks (private, loopback, ...) happen at fetch time, after DNS resolution.
pub fn validate_url(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("empty URL".into());
    }
    if trimmed.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} characters"));
    }
    let url = url::Url::parse(trimmed).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URLs with credentials are refused".into());
    }
    let mut url = url;
    url.set_fragment(None);
    let url = url.to_string();
    // Parsing percent-encodes and punycodes, so the stored form can be longer than what
    // was given; the limit is on what is stored.
    if url.len() > MAX_URL_LEN {
        return Err(format!(
            "longer than {MAX_URL_LEN} characters once normalised"
        ));
    }
    Ok(url)
}

/// Splits URLs into valid, distinct ones (in order) and refused ones with reasons.
pub fn partition_urls(urls: &[String]) -> (Vec<String>, Vec<InvalidUrl>) {
    let mut valid: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut invalid = Vec::new();
    for raw in urls {
        match validate_url(raw) {
            Ok(url) => {
                if seen.insert(url.clone()) {
                    valid.push(url);
                }
            }
            Err(reason) => invalid.push(InvalidUrl {
                url: raw.clone(),
                reason,
            }),
        }
    }
    (valid, invalid)
}

/// Records the job and its sources in Postgres, then enqueues one scrape message per source.
pub async fn submit(
    services: &Services,
    req: &SubmitRequest,
) -> Result<SubmitOutcome, SubmitError> {
    if req.urls.is_empty() {
        return Err(SubmitError::Invalid("no URLs given".into()));
    }
    if req.urls.len() > MAX_URLS {
        return Err(SubmitError::Invalid(format!(
            "{} URLs given; at most {MAX_URLS} per submission",
            req.urls.len()
        )));
    }
    let (valid, invalid) = partition_urls(&req.urls);
    let project = match (req.project_id, req.project_name.as_deref()) {
        (Some(id), _) => ProjectRef::Id(id),
        (None, Some(name)) if !name.trim().is_empty() => ProjectRef::Name(name.trim()),
        _ => ProjectRef::Name(jobs::DEFAULT_PROJECT),
    };
    let created: CreatedJob = jobs::create_scrape_job(
        &services.db,
        &NewScrapeJob {
            project,
            source_group: req.source_group.as_deref(),
            urls: &valid,
            invalid: &invalid,
        },
    )
    .await
    .map_err(|e| match (e, req.project_id) {
        (pipeline_store::StoreError::NotFound(_), Some(id)) => SubmitError::UnknownProject(id),
        (e, _) => SubmitError::Store(e),
    })?;

    let messages: Vec<(String, serde_json::Value)> = created
        .sources
        .iter()
        .map(|s| {
            let m = SourceMessage {
                source_id: s.source_id,
                job_id: Some(created.job_id),
                uri: Some(s.uri.clone()),
            };
            (m.id(), m.body())
        })
        .collect();
    let queue = services.queue(Family::Scrape);
    let bulk = queue
        .enqueue_bulk(&messages)
        .await
        .map_err(|source| SubmitError::Enqueue {
            job_id: created.job_id,
            source,
        })?;
    metrics::counter!("pipeline_submitted_sources_total").increment(bulk.enqueued);
    tracing::info!(
        job_id = %created.job_id,
        sources = created.sources.len(),
        invalid = invalid.len(),
        already_queued = bulk.already_queued,
        "job submitted"
    );
    Ok(SubmitOutcome {
        job_id: created.job_id,
        project_id: created.project_id,
        sources: created.sources,
        invalid,
        already_queued: bulk.already_queued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_one_by_one() {
        let urls: Vec<String> = [
            "https://example.com/a",
            "ftp://example.com/x",
            "not a url",
            "https://example.com/a#frag",
            "",
            "http://user:pw@example.com/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (valid, invalid) = partition_urls(&urls);
        assert_eq!(valid, vec!["https://example.com/a"]);
        assert_eq!(invalid.len(), 4);
        assert!(invalid[0].reason.contains("scheme"));
    }
}
