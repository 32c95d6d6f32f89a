//! Submitting work: one job, one source per URL, one scrape message per source.
//!
//! Shared by `pipelinectl submit` and `POST /api/v1/scrape`.

use pipeline_store::Actor;
use pipeline_store::jobs::{self, CreatedJob, InvalidUrl, NewScrapeJob, ProjectRef};
use serde::Serialize;
use uuid::Uuid;

use crate::Family;
use crate::Services;
use crate::messages::{Priority, RenderMode, SourceMessage};

/// Longest URL accepted, in bytes of its normalized form (what the unique index on
/// `(project_id, uri)` stores: percent-encoding can make a URL nine times longer than typed,
/// and a btree entry over ~2,700 bytes fails the whole insert).
pub const MAX_URL_LEN: usize = 2048;
/// Longest project name or source group, in characters (at most 4 bytes each, well inside
/// what a btree index entry holds).
pub const MAX_NAME_CHARS: usize = 200;
/// Longest refused URL recorded on the job and echoed in the answer, in characters; the
/// rest is cut (a refused URL can be anything a client sends).
pub const MAX_REFUSED_URL_CHARS: usize = 300;
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
    /// Most model tokens the job's pages may spend in the schema stage (`llm` backend);
    /// `None`: no cap.
    pub model_token_cap: Option<i64>,
    /// The job's priority within its project's lane of every queue family.
    pub priority: Priority,
    /// Whether the scrape worker renders the job's pages in a headless browser; `None`: the
    /// worker's `render.default`.
    pub render: Option<RenderMode>,
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

/// Why a URL is refused at submission. The text (`Display`) is what the submitter sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlRefusal {
    /// Nothing but whitespace.
    #[error("empty URL")]
    Empty,
    /// Postgres text cannot hold NUL, and the URL parser would silently drop tabs and
    /// newlines or encode other controls: a URL with any is refused as typed.
    #[error("contains control characters")]
    ControlCharacters,
    /// Longer than [`MAX_URL_LEN`] bytes as typed.
    #[error("longer than {MAX_URL_LEN} bytes")]
    TooLong,
    /// Longer than [`MAX_URL_LEN`] bytes once normalized (percent-encoding can grow it).
    #[error("longer than {MAX_URL_LEN} bytes once normalized ({0} bytes)")]
    TooLongNormalized(usize),
    /// The URL parser refused it.
    #[error("not a valid URL: {0}")]
    Unparsable(#[from] url::ParseError),
    /// Not http or https.
    #[error("scheme `{0}` is not http or https")]
    Scheme(String),
    /// No host (or an empty one).
    #[error("URL has no host")]
    NoHost,
    /// A user name or password in the URL.
    #[error("URLs with credentials are refused")]
    Credentials,
}

/// A URL as the pipeline stores it: absolute http(s) with a host, no credentials, no
/// fragment, normalized by the URL parser, at most [`MAX_URL_LEN`] bytes. Made only by
/// [`validate_url`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidUrl(url::Url);

impl ValidUrl {
    /// The normalized text (what `sources.uri` holds).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The parsed URL.
    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    /// The normalized text, owned.
    pub fn into_string(self) -> String {
        self.0.into()
    }
}

impl std::fmt::Display for ValidUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks one URL: absolute http(s) with a host, at most [`MAX_URL_LEN`] characters. Address
/// checks (private, loopback, ...) happen at fetch time, after DNS resolution.
pub fn validate_url(raw: &str) -> Result<ValidUrl, UrlRefusal> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(UrlRefusal::Empty);
    }
    if trimmed.chars().any(char::is_control) {
        return Err(UrlRefusal::ControlCharacters);
    }
    if trimmed.len() > MAX_URL_LEN {
        return Err(UrlRefusal::TooLong);
    }
    let mut url = url::Url::parse(trimmed)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlRefusal::Scheme(url.scheme().to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlRefusal::NoHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::Credentials);
    }
    url.set_fragment(None);
    let len = url.as_str().len();
    if len > MAX_URL_LEN {
        return Err(UrlRefusal::TooLongNormalized(len));
    }
    Ok(ValidUrl(url))
}

/// A refused URL as recorded and echoed: control characters escaped (Postgres `jsonb`
/// cannot hold NUL) and cut to [`MAX_REFUSED_URL_CHARS`].
pub fn refused_url_display(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .take(MAX_REFUSED_URL_CHARS)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_unicode().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if raw.chars().nth(MAX_REFUSED_URL_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Checks a project name or source group: at most [`MAX_NAME_CHARS`] characters, no
/// control characters (Postgres text cannot hold NUL; the others are never meant).
pub fn validate_name(what: &str, value: &str) -> Result<(), SubmitError> {
    if value.chars().any(char::is_control) {
        return Err(SubmitError::Invalid(format!(
            "{what} contains control characters"
        )));
    }
    let chars = value.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(SubmitError::Invalid(format!(
            "{what} is {chars} characters long; at most {MAX_NAME_CHARS}"
        )));
    }
    Ok(())
}

/// Checks a job's model token cap (`jobs.model_token_cap`): absent, or greater than 0.
pub fn validate_token_cap(cap: Option<i64>) -> Result<(), SubmitError> {
    match cap {
        Some(cap) if cap <= 0 => Err(SubmitError::Invalid(format!(
            "model_token_cap is {cap}; it must be greater than 0 (leave it out for no cap)"
        ))),
        _ => Ok(()),
    }
}

/// Splits URLs into valid, distinct ones (in order) and refused ones with reasons.
pub fn partition_urls(urls: &[String]) -> (Vec<String>, Vec<InvalidUrl>) {
    let mut valid: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut invalid = Vec::new();
    for raw in urls {
        match validate_url(raw) {
            Ok(url) => {
                let url = url.into_string();
                if seen.insert(url.clone()) {
                    valid.push(url);
                }
            }
            Err(reason) => invalid.push(InvalidUrl {
                url: refused_url_display(raw),
                reason: reason.to_string(),
            }),
        }
    }
    (valid, invalid)
}

/// Records the job and its sources in Postgres, then enqueues one scrape message per source.
pub async fn submit(
    services: &Services,
    req: &SubmitRequest,
    actor: Actor,
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
    if let Some(name) = &req.project_name {
        validate_name("project", name)?;
    }
    if let Some(group) = &req.source_group {
        validate_name("source_group", group)?;
    }
    validate_token_cap(req.model_token_cap)?;
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
            actor,
            model_token_cap: req.model_token_cap,
            priority: req.priority.as_str(),
            render: req.render.map(RenderMode::as_str),
        },
    )
    .await
    .map_err(|e| match (e, req.project_id) {
        (pipeline_store::StoreError::NotFound(_), Some(id)) => SubmitError::UnknownProject(id),
        (e, _) => SubmitError::Store(e),
    })?;

    let messages: Vec<_> = created
        .sources
        .iter()
        .map(|s| {
            let m = SourceMessage {
                source_id: s.source_id,
                job_id: Some(created.job_id),
                url: Some(s.url.clone()),
                project_id: Some(created.project_id),
                priority: req.priority,
                render: req.render,
            };
            (m.id(), m.lane(), m.body())
        })
        .collect();
    let queue = services.queue(Family::Scrape);
    let bulk = queue
        .enqueue_bulk_in(&messages)
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

    #[test]
    fn lengths_are_bytes_after_normalization_and_controls_are_refused() {
        // 2,000 characters that percent-encode to 3 bytes each pass a length check on the
        // typed form but not on the stored one.
        let long = format!("https://example.com/{}", "\"".repeat(2000));
        let err = validate_url(&long).unwrap_err();
        assert!(matches!(err, UrlRefusal::TooLongNormalized(6020)), "{err}");
        assert!(err.to_string().contains("once normalized"), "{err}");
        let cjk = format!("https://example.com/{}", "漢".repeat(600));
        assert!(
            validate_url(&cjk).is_err(),
            "600 CJK characters are 1,800 bytes, 5,400 encoded"
        );
        assert_eq!(
            validate_url("https://example.com/a\0b"),
            Err(UrlRefusal::ControlCharacters)
        );
        assert!(validate_url("https://example.com/a\u{85}b").is_err());
        assert_eq!(refused_url_display("a\0b"), "a\\u{0}b");
        assert_eq!(
            refused_url_display(&"x".repeat(1000)).chars().count(),
            MAX_REFUSED_URL_CHARS + 1
        );
        assert!(validate_name("project", "docs").is_ok());
        assert!(validate_name("project", "a\0").is_err());
        assert!(validate_name("project", &"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(validate_name("project", &"é".repeat(MAX_NAME_CHARS + 1)).is_err());
    }
}
