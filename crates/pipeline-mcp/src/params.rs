//! The tools' inputs: what the assistant may send (the JSON Schema each tool publishes is
//! derived from these types, bounds included) and their parsing into checked values.
//!
//! The API validates everything again; checking here as well lets a wrong input come back
//! at once as a tool error that names the field, without a round trip, and keeps the
//! server's own requests (the search depth, the pages read for a trace) bounded.

use rmcp::schemars::{self, JsonSchema};
use serde::Deserialize;
use uuid::Uuid;

/// Longest search query, in characters (the API's bound).
pub const MAX_QUERY_CHARS: usize = 1000;
/// Most search hits one call returns (the API's bound on `k`).
pub const MAX_SEARCH_LIMIT: u32 = 100;
/// Search hits returned when `limit` is not given.
pub const DEFAULT_SEARCH_LIMIT: u32 = 10;
/// Most URLs one `submit` takes (the API takes 10,000; an assistant's list is shorter, and
/// the answer stays readable).
pub const MAX_SUBMIT_URLS: usize = 1000;
/// Longest URL, in bytes (the API refuses longer ones once normalized).
pub const MAX_URL_BYTES: usize = 2048;
/// Longest project name or source group, in characters (the API's bound).
pub const MAX_NAME_CHARS: usize = 200;
/// Most include or exclude patterns of a crawl (the API's bound).
pub const MAX_PATTERNS: usize = 50;
/// Deepest crawl (the API's bound).
pub const MAX_CRAWL_DEPTH: u32 = 100;
/// Most pages of a crawl (the API's bound).
pub const MAX_CRAWL_PAGES: u32 = 100_000;
/// Most sources listed by `job_status`.
pub const MAX_JOB_SOURCES: u32 = 100;
/// Sources listed by `job_status` when `sources` is not given.
pub const DEFAULT_JOB_SOURCES: u32 = 20;
/// Most events `trace_url` returns (the API's page bound).
pub const MAX_TRACE_EVENTS: u32 = 1000;
/// Events `trace_url` returns when `limit` is not given.
pub const DEFAULT_TRACE_EVENTS: u32 = 100;
/// Longest DLQ item id, in characters.
pub const MAX_ITEM_ID_CHARS: usize = 200;
/// Largest `limit` of a bulk redrive (the API's bound).
pub const MAX_RETRY_ALL: u64 = 1_000_000_000;

/// How search ranks chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// Full-text and vector ranks fused (the default).
    Hybrid,
    /// Postgres full-text search only.
    FullText,
    /// Vector similarity only.
    Vector,
}

impl SearchMode {
    /// The API's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hybrid => "hybrid",
            Self::FullText => "full_text",
            Self::Vector => "vector",
        }
    }
}

/// `search` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// What to look for (1..=1000 characters, not blank).
    #[schemars(length(min = 1, max = 1000))]
    pub query: String,
    /// Only chunks of this project (a UUID).
    pub project_id: Option<String>,
    /// Only chunks of pages this job created (a UUID); applied to the API's best 100 hits.
    pub job_id: Option<String>,
    /// Hits to return, 1..=100 (default 10).
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// `hybrid` (default), `full_text` or `vector`.
    pub mode: Option<SearchMode>,
}

/// A checked `search`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The query.
    pub query: String,
    /// The project filter.
    pub project_id: Option<Uuid>,
    /// The job filter (applied by this server to the API's hits).
    pub job_id: Option<Uuid>,
    /// Hits to return.
    pub limit: u32,
    /// The ranking.
    pub mode: SearchMode,
}

impl Search {
    /// Hits asked of the API: all it gives when hits are filtered by job here, else `limit`.
    pub fn api_k(&self) -> u32 {
        if self.job_id.is_some() {
            MAX_SEARCH_LIMIT
        } else {
            self.limit
        }
    }
}

impl TryFrom<SearchParams> for Search {
    type Error = String;

    fn try_from(p: SearchParams) -> Result<Self, String> {
        if p.query.trim().is_empty() {
            return Err("query must not be blank".into());
        }
        let chars = p.query.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(format!(
                "query is {chars} characters; at most {MAX_QUERY_CHARS}"
            ));
        }
        if p.query.contains('\0') {
            return Err("query must not hold NUL".into());
        }
        Ok(Self {
            query: p.query,
            project_id: uuid_opt("project_id", p.project_id.as_deref())?,
            job_id: uuid_opt("job_id", p.job_id.as_deref())?,
            limit: within(
                "limit",
                p.limit.unwrap_or(DEFAULT_SEARCH_LIMIT),
                1,
                MAX_SEARCH_LIMIT,
            )?,
            mode: p.mode.unwrap_or(SearchMode::Hybrid),
        })
    }
}

/// `submit` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitParams {
    /// The http(s) URLs to scrape, 1..=1000. The API checks each one; refused URLs are
    /// listed in the answer with their reason.
    #[schemars(length(min = 1, max = 1000))]
    pub urls: Vec<String>,
    /// The project by name (created when missing).
    #[schemars(length(max = 200))]
    pub project: Option<String>,
    /// The project by id (a UUID; the project must exist).
    pub project_id: Option<String>,
    /// A free-form group name stored on each page.
    #[schemars(length(max = 200))]
    pub source_group: Option<String>,
}

/// A checked `submit`: the API's request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Submit {
    /// `POST /api/v1/scrape`'s body.
    pub body: serde_json::Value,
}

impl TryFrom<SubmitParams> for Submit {
    type Error = String;

    fn try_from(p: SubmitParams) -> Result<Self, String> {
        if p.urls.is_empty() {
            return Err("urls must hold at least one URL".into());
        }
        if p.urls.len() > MAX_SUBMIT_URLS {
            return Err(format!(
                "{} URLs given; at most {MAX_SUBMIT_URLS} per call",
                p.urls.len()
            ));
        }
        // Each URL is judged by the API (reported per URL); only the length is bounded
        // here, so a huge string is not sent at all.
        if let Some(long) = p.urls.iter().find(|u| u.len() > MAX_URL_BYTES) {
            return Err(format!(
                "a URL of {} bytes; at most {MAX_URL_BYTES}",
                long.len()
            ));
        }
        let mut body = serde_json::json!({ "urls": p.urls });
        if let Some(id) = uuid_opt("project_id", p.project_id.as_deref())? {
            body["project_id"] = id.to_string().into();
        }
        if let Some(name) = p.project {
            body["project"] = name_field("project", name)?.into();
        }
        if let Some(group) = p.source_group {
            body["source_group"] = name_field("source_group", group)?.into();
        }
        Ok(Self { body })
    }
}

/// Which pages a crawl may visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CrawlScope {
    /// The start URL's host (the default).
    Host,
    /// The start URL's registrable domain and its subdomains.
    Domain,
    /// URLs under the start URL's path.
    Prefix,
}

/// `crawl` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrawlParams {
    /// The start URL (http or https).
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// `host` (default), `domain` or `prefix`.
    pub scope: Option<CrawlScope>,
    /// Globs over the whole URL (`*` matches anything); a page must match one. At most 50.
    #[schemars(length(max = 50))]
    pub include: Option<Vec<String>>,
    /// Globs over the whole URL; a matching page is skipped. At most 50.
    #[schemars(length(max = 50))]
    pub exclude: Option<Vec<String>>,
    /// Links followed from the start URL, 0..=100 (default 10).
    #[schemars(range(max = 100))]
    pub max_depth: Option<u32>,
    /// Most pages, 1..=100000 (default 1000).
    #[schemars(range(min = 1, max = 100000))]
    pub max_pages: Option<u32>,
    /// Read the start host's sitemaps (default true).
    pub sitemaps: Option<bool>,
    /// The project by name (created when missing).
    #[schemars(length(max = 200))]
    pub project: Option<String>,
    /// The project by id (a UUID; the project must exist).
    pub project_id: Option<String>,
}

/// A checked `crawl`: the API's request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Crawl {
    /// `POST /api/v1/crawl`'s body.
    pub body: serde_json::Value,
}

impl TryFrom<CrawlParams> for Crawl {
    type Error = String;

    fn try_from(p: CrawlParams) -> Result<Self, String> {
        let url = url::Url::parse(&p.url).map_err(|e| format!("url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("url must be http or https, not {}", url.scheme()));
        }
        if p.url.len() > MAX_URL_BYTES {
            return Err(format!("url is over {MAX_URL_BYTES} bytes"));
        }
        let mut body = serde_json::json!({ "url": p.url });
        if let Some(scope) = p.scope {
            body["scope"] = match scope {
                CrawlScope::Host => "host",
                CrawlScope::Domain => "domain",
                CrawlScope::Prefix => "prefix",
            }
            .into();
        }
        for (field, patterns) in [("include", p.include), ("exclude", p.exclude)] {
            if let Some(patterns) = patterns {
                if patterns.len() > MAX_PATTERNS {
                    return Err(format!(
                        "{field}: {} patterns; at most {MAX_PATTERNS}",
                        patterns.len()
                    ));
                }
                body[field] = patterns.into();
            }
        }
        if let Some(depth) = p.max_depth {
            body["max_depth"] = within("max_depth", depth, 0, MAX_CRAWL_DEPTH)?.into();
        }
        if let Some(pages) = p.max_pages {
            body["max_pages"] = within("max_pages", pages, 1, MAX_CRAWL_PAGES)?.into();
        }
        if let Some(sitemaps) = p.sitemaps {
            body["sitemaps"] = sitemaps.into();
        }
        if let Some(id) = uuid_opt("project_id", p.project_id.as_deref())? {
            body["project_id"] = id.to_string().into();
        }
        if let Some(name) = p.project {
            body["project"] = name_field("project", name)?.into();
        }
        Ok(Self { body })
    }
}

/// `job_status` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobStatusParams {
    /// The job's id (a UUID), as `submit` or `crawl` returned it.
    pub job_id: String,
    /// How many of its sources to list with their statuses, 0..=100 (default 20).
    #[schemars(range(max = 100))]
    pub sources: Option<u32>,
}

/// A checked `job_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobStatus {
    /// The job.
    pub job_id: Uuid,
    /// Sources to list.
    pub sources: u32,
}

impl TryFrom<JobStatusParams> for JobStatus {
    type Error = String;

    fn try_from(p: JobStatusParams) -> Result<Self, String> {
        Ok(Self {
            job_id: uuid("job_id", &p.job_id)?,
            sources: within(
                "sources",
                p.sources.unwrap_or(DEFAULT_JOB_SOURCES),
                0,
                MAX_JOB_SOURCES,
            )?,
        })
    }
}

/// `trace_url` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceUrlParams {
    /// The source's id (a UUID), as search hits and job listings give it.
    pub source_id: Option<String>,
    /// The page's URL; needs `job_id` (the API finds sources by id, so the URL is looked
    /// up among that job's sources).
    pub url: Option<String>,
    /// The job that submitted or crawled `url` (a UUID).
    pub job_id: Option<String>,
    /// Events to return, oldest first, 1..=1000 (default 100).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
}

/// Which source a trace is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceTarget {
    /// By id.
    Source(Uuid),
    /// By URL among one job's sources.
    UrlInJob {
        /// The URL as given.
        url: String,
        /// The job.
        job_id: Uuid,
    },
}

/// A checked `trace_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceUrl {
    /// The source.
    pub target: TraceTarget,
    /// Events to return.
    pub limit: u32,
}

impl TryFrom<TraceUrlParams> for TraceUrl {
    type Error = String;

    fn try_from(p: TraceUrlParams) -> Result<Self, String> {
        let limit = within(
            "limit",
            p.limit.unwrap_or(DEFAULT_TRACE_EVENTS),
            1,
            MAX_TRACE_EVENTS,
        )?;
        let target = match (p.source_id, p.url, p.job_id) {
            (Some(id), None, _) => TraceTarget::Source(uuid("source_id", &id)?),
            (None, Some(url), Some(job)) => {
                if url.len() > MAX_URL_BYTES {
                    return Err(format!("url is over {MAX_URL_BYTES} bytes"));
                }
                TraceTarget::UrlInJob {
                    url,
                    job_id: uuid("job_id", &job)?,
                }
            }
            (None, Some(_), None) => {
                return Err(
                    "url needs job_id: the pipeline API looks sources up by id or \
                     within a job, not by URL alone (search hits and submit answers carry \
                     both ids)"
                        .into(),
                );
            }
            (Some(_), Some(_), _) => return Err("give source_id or url, not both".into()),
            (None, None, _) => return Err("give source_id, or url with job_id".into()),
        };
        Ok(Self { target, limit })
    }
}

/// A DLQ family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Fetching pages.
    Scrape,
    /// Extraction, embeddings and entities.
    Extraction,
    /// The schema (facts) stage.
    Facts,
}

impl Family {
    /// The API's name of the family.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scrape => "scrape",
            Self::Extraction => "extraction",
            Self::Facts => "facts",
        }
    }
}

/// `dlq_retry` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DlqRetryParams {
    /// The DLQ: `scrape`, `extraction` or `facts`.
    pub family: Family,
    /// One item's id (from the DLQ listing); without it, the family's items are redriven,
    /// oldest first, up to `limit`.
    #[schemars(length(min = 1, max = 200))]
    pub item_id: Option<String>,
    /// With no `item_id`: redrive at most this many items (default: all).
    #[schemars(range(min = 1, max = 1000000000))]
    pub limit: Option<u64>,
}

/// A checked `dlq_retry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqRetry {
    /// One item.
    One {
        /// Its family.
        family: Family,
        /// Its id.
        item_id: String,
    },
    /// A bulk redrive.
    All {
        /// The family.
        family: Family,
        /// At most this many.
        limit: Option<u64>,
    },
}

impl TryFrom<DlqRetryParams> for DlqRetry {
    type Error = String;

    fn try_from(p: DlqRetryParams) -> Result<Self, String> {
        match (p.item_id, p.limit) {
            (Some(_), Some(_)) => Err("limit applies to a bulk redrive: give item_id or \
                 limit, not both"
                .into()),
            (Some(id), None) => {
                let chars = id.chars().count();
                if chars == 0 || chars > MAX_ITEM_ID_CHARS || id.chars().any(char::is_control) {
                    return Err(format!(
                        "item_id must be 1..={MAX_ITEM_ID_CHARS} characters without control \
                         characters"
                    ));
                }
                Ok(Self::One {
                    family: p.family,
                    item_id: id,
                })
            }
            (None, limit) => Ok(Self::All {
                family: p.family,
                limit: limit
                    .map(|l| within("limit", l, 1, MAX_RETRY_ALL))
                    .transpose()?,
            }),
        }
    }
}

/// A resource this server serves, parsed from its URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceResource {
    /// `pipeline://sources/{id}/markdown`: the page's Markdown.
    Markdown(Uuid),
    /// `pipeline://sources/{id}`: the page's status and metadata (JSON).
    Document(Uuid),
}

/// The URI scheme and prefix of the resources.
pub const SOURCE_URI_PREFIX: &str = "pipeline://sources/";

impl SourceResource {
    /// Parses a resource URI.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri
            .strip_prefix(SOURCE_URI_PREFIX)
            .ok_or_else(|| format!("unknown resource {uri:?}: expected {SOURCE_URI_PREFIX}..."))?;
        let (id, kind) = match rest.split_once('/') {
            Some((id, kind)) => (id, Some(kind)),
            None => (rest, None),
        };
        let id = uuid("source id", id)?;
        match kind {
            None => Ok(Self::Document(id)),
            Some("markdown") => Ok(Self::Markdown(id)),
            Some(other) => Err(format!(
                "unknown resource kind {other:?}: pipeline://sources/{{id}} or \
                 pipeline://sources/{{id}}/markdown"
            )),
        }
    }
}

fn uuid(field: &str, s: &str) -> Result<Uuid, String> {
    Uuid::parse_str(s.trim()).map_err(|_| format!("{field} must be a UUID, got {s:?}"))
}

fn uuid_opt(field: &str, s: Option<&str>) -> Result<Option<Uuid>, String> {
    s.map(|s| uuid(field, s)).transpose()
}

fn within<T: PartialOrd + std::fmt::Display>(
    field: &str,
    v: T,
    min: T,
    max: T,
) -> Result<T, String> {
    if v < min || v > max {
        return Err(format!("{field} must be between {min} and {max}, got {v}"));
    }
    Ok(v)
}

fn name_field(field: &str, v: String) -> Result<String, String> {
    let chars = v.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "{field} is {chars} characters; at most {MAX_NAME_CHARS}"
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("{field} must not hold control characters"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse<P: serde::de::DeserializeOwned>(v: serde_json::Value) -> P {
        serde_json::from_value(v).expect("the input deserializes")
    }

    #[test]
    fn search_defaults_and_bounds() {
        let s = Search::try_from(parse::<SearchParams>(json!({"query": "rust"}))).unwrap();
        assert_eq!(s.limit, DEFAULT_SEARCH_LIMIT);
        assert_eq!(s.mode, SearchMode::Hybrid);
        assert_eq!(s.api_k(), DEFAULT_SEARCH_LIMIT);
        for limit in [0, 101] {
            let err =
                Search::try_from(parse::<SearchParams>(json!({"query": "q", "limit": limit})))
                    .unwrap_err();
            assert!(err.contains("limit must be between 1 and 100"), "{err}");
        }
        let job = Uuid::new_v4();
        let s = Search::try_from(parse::<SearchParams>(
            json!({"query": "q", "limit": 3, "job_id": job.to_string(), "mode": "full_text"}),
        ))
        .unwrap();
        assert_eq!((s.limit, s.api_k(), s.job_id), (3, 100, Some(job)));
        assert_eq!(s.mode.as_str(), "full_text");
    }

    #[test]
    fn search_refuses_blank_long_and_bad_ids() {
        for (input, want) in [
            (json!({"query": "  \n"}), "blank"),
            (json!({"query": "é".repeat(1001)}), "1001 characters"),
            (json!({"query": "a\u{0}b"}), "NUL"),
            (
                json!({"query": "q", "project_id": "nope"}),
                "project_id must be a UUID",
            ),
        ] {
            let err = Search::try_from(parse::<SearchParams>(input)).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        // 1000 multi-byte characters are within the bound (characters, not bytes).
        assert!(
            Search::try_from(parse::<SearchParams>(json!({"query": "é".repeat(1000)}))).is_ok()
        );
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        assert!(serde_json::from_value::<SearchParams>(json!({"query": "q", "k": 5})).is_err());
        assert!(
            serde_json::from_value::<SearchParams>(json!({"query": "q", "limit": -1})).is_err()
        );
        assert!(serde_json::from_value::<SubmitParams>(json!({"urls": "http://a"})).is_err());
        assert!(serde_json::from_value::<DlqRetryParams>(json!({"family": "other"})).is_err());
    }

    #[test]
    fn submit_builds_the_api_body() {
        let s = Submit::try_from(parse::<SubmitParams>(json!({
            "urls": ["https://example.org/a", "not a url"],
            "project": "docs",
            "source_group": "g",
        })))
        .unwrap();
        // Invalid URLs go to the API, which lists each with its reason.
        assert_eq!(
            s.body,
            json!({"urls": ["https://example.org/a", "not a url"], "project": "docs", "source_group": "g"})
        );
        for (input, want) in [
            (json!({"urls": []}), "at least one"),
            (
                json!({"urls": vec!["http://a/"; MAX_SUBMIT_URLS + 1]}),
                "1001 URLs",
            ),
            (
                json!({"urls": [format!("http://a/{}", "x".repeat(MAX_URL_BYTES))]}),
                "bytes",
            ),
            (
                json!({"urls": ["http://a/"], "project": "x".repeat(201)}),
                "project is 201",
            ),
            (
                json!({"urls": ["http://a/"], "source_group": "a\nb"}),
                "control",
            ),
            (
                json!({"urls": ["http://a/"], "project_id": "1"}),
                "project_id must be a UUID",
            ),
        ] {
            let err = Submit::try_from(parse::<SubmitParams>(input)).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn crawl_checks_url_and_bounds() {
        let c = Crawl::try_from(parse::<CrawlParams>(json!({
            "url": "https://example.org/", "scope": "domain", "max_depth": 0, "max_pages": 5,
            "include": ["*docs*"], "sitemaps": false,
        })))
        .unwrap();
        assert_eq!(
            c.body,
            json!({"url": "https://example.org/", "scope": "domain", "max_depth": 0,
                   "max_pages": 5, "include": ["*docs*"], "sitemaps": false})
        );
        for (input, want) in [
            (json!({"url": "ftp://example.org/"}), "http or https"),
            (json!({"url": "example"}), "url:"),
            (json!({"url": "http://a/", "max_depth": 101}), "max_depth"),
            (json!({"url": "http://a/", "max_pages": 0}), "max_pages"),
            (
                json!({"url": "http://a/", "exclude": vec!["*"; 51]}),
                "exclude: 51",
            ),
        ] {
            let err = Crawl::try_from(parse::<CrawlParams>(input)).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn job_status_and_trace_targets() {
        let id = Uuid::new_v4();
        let j = JobStatus::try_from(parse::<JobStatusParams>(json!({"job_id": id.to_string()})))
            .unwrap();
        assert_eq!((j.job_id, j.sources), (id, DEFAULT_JOB_SOURCES));
        assert!(
            JobStatus::try_from(parse::<JobStatusParams>(
                json!({"job_id": id.to_string(), "sources": 101})
            ))
            .is_err()
        );

        let t = TraceUrl::try_from(parse::<TraceUrlParams>(
            json!({"source_id": id.to_string()}),
        ))
        .unwrap();
        assert_eq!((t.target, t.limit), (TraceTarget::Source(id), 100));
        let t = TraceUrl::try_from(parse::<TraceUrlParams>(
            json!({"url": "http://a/", "job_id": id.to_string(), "limit": 5}),
        ))
        .unwrap();
        assert_eq!(
            t.target,
            TraceTarget::UrlInJob {
                url: "http://a/".into(),
                job_id: id
            }
        );
        for (input, want) in [
            (json!({"url": "http://a/"}), "url needs job_id"),
            (json!({}), "give source_id"),
            (
                json!({"source_id": id.to_string(), "url": "http://a/"}),
                "not both",
            ),
            (json!({"source_id": id.to_string(), "limit": 0}), "limit"),
        ] {
            let err = TraceUrl::try_from(parse::<TraceUrlParams>(input)).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn dlq_retry_one_or_all() {
        assert_eq!(
            DlqRetry::try_from(parse::<DlqRetryParams>(
                json!({"family": "scrape", "item_id": "7"})
            ))
            .unwrap(),
            DlqRetry::One {
                family: Family::Scrape,
                item_id: "7".into()
            }
        );
        assert_eq!(
            DlqRetry::try_from(parse::<DlqRetryParams>(
                json!({"family": "facts", "limit": 3})
            ))
            .unwrap(),
            DlqRetry::All {
                family: Family::Facts,
                limit: Some(3)
            }
        );
        for input in [
            json!({"family": "scrape", "item_id": "7", "limit": 1}),
            json!({"family": "scrape", "item_id": ""}),
            json!({"family": "scrape", "limit": 0}),
        ] {
            assert!(DlqRetry::try_from(parse::<DlqRetryParams>(input)).is_err());
        }
    }

    #[test]
    fn resource_uris() {
        let id = Uuid::new_v4();
        assert_eq!(
            SourceResource::parse(&format!("pipeline://sources/{id}/markdown")),
            Ok(SourceResource::Markdown(id))
        );
        assert_eq!(
            SourceResource::parse(&format!("pipeline://sources/{id}")),
            Ok(SourceResource::Document(id))
        );
        assert!(SourceResource::parse(&format!("pipeline://sources/{id}/html")).is_err());
        assert!(SourceResource::parse("pipeline://sources/x/markdown").is_err());
        assert!(SourceResource::parse("file:///etc/passwd").is_err());
    }

    #[test]
    fn schemas_publish_the_bounds() {
        let schema = serde_json::to_value(schemars::schema_for!(SearchParams)).unwrap();
        let limit = &schema["properties"]["limit"];
        assert_eq!(
            (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
            (Some(1), Some(100))
        );
        assert_eq!(schema["required"], json!(["query"]));
        assert_eq!(schema["properties"]["query"]["maxLength"], 1000);
    }
}
