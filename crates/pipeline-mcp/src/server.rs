//! The MCP server: the tools and resources, each a call of the pipeline API.
//!
//! A tool's input is parsed into a checked value first ([`crate::params`]); a wrong input, an
//! API answer of 4xx (its `detail`), and an API that cannot be reached all come back as tool
//! errors (`isError: true` with the message), which the assistant reads and can act on. Only
//! an unknown tool or arguments that are not the tool's schema at all are protocol errors.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListResourceTemplatesResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::api::{ApiClient, ApiError};
use crate::bound::{self, MAX_HIT_CHARS, MAX_RESULT_BYTES};
use crate::params::{
    Crawl, CrawlParams, DlqRetry, DlqRetryParams, JobStatus, JobStatusParams, Search, SearchParams,
    SourceResource, Submit, SubmitParams, TraceTarget, TraceUrl, TraceUrlParams,
};

/// Most sources `trace_url` reads from a job to find a URL (ten pages of 1,000).
pub const MAX_TRACE_SCAN: usize = 10_000;

/// Most sources and refused URLs a `submit` answer lists (the counts are always whole).
const MAX_LISTED: usize = 50;

/// The key a caller of the HTTP transport presented (`Authorization: Bearer`), put in the
/// request's extensions by [`crate::http`]'s guard before any MCP handling.
#[derive(Clone)]
pub struct CallerKey(pub SecretString);

/// Where the API key of a call comes from.
#[derive(Clone)]
pub enum Keys {
    /// One key for every call (stdio: the process's own setting; `None` for an API that
    /// serves loopback clients without a key).
    Fixed(Option<SecretString>),
    /// Each HTTP request's own key ([`CallerKey`]); a call without one is refused.
    PerCaller,
}

/// The MCP server over one pipeline API.
#[derive(Clone)]
pub struct PipelineMcp {
    api: ApiClient,
    keys: Keys,
    tool_router: ToolRouter<Self>,
}

impl PipelineMcp {
    /// A server calling `api` with keys from `keys`.
    pub fn new(api: ApiClient, keys: Keys) -> Self {
        Self {
            api,
            keys,
            tool_router: Self::tool_router(),
        }
    }

    /// The key for a call made in `ctx`.
    fn key(&self, ctx: &RequestContext<RoleServer>) -> Result<Option<SecretString>, String> {
        match &self.keys {
            Keys::Fixed(key) => Ok(key.clone()),
            Keys::PerCaller => ctx
                .extensions
                .get::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<CallerKey>())
                .map(|k| Some(k.0.clone()))
                .ok_or_else(|| "no API key came with the request".to_owned()),
        }
    }
}

/// A tool error with `message`.
fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// A tool error for a failed API call; failures that are not the caller's are logged too.
fn api_failure(tool: &str, err: &ApiError) -> CallToolResult {
    if !err.is_client_error() {
        tracing::warn!(tool, error = %err, "pipeline API call failed");
    }
    tool_error(err.to_string())
}

/// A tool result holding `value` as JSON text, bounded.
fn json_result(value: &Value, hint: &str) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(bound::json_text(value, hint))])
}

/// Keeps the first `max` items of the array `obj[key]` and, when it was longer, records the
/// whole count as `<key>_total`.
fn trim_array(obj: &mut Value, key: &str, max: usize) {
    if let Some(items) = obj.get_mut(key).and_then(Value::as_array_mut)
        && items.len() > max
    {
        let total = items.len();
        items.truncate(max);
        obj[format!("{key}_total")] = total.into();
    }
}

/// Runs `$call`, or returns the tool error for a wrong input or a failed call.
macro_rules! checked {
    ($parsed:expr) => {
        match $parsed {
            Ok(v) => v,
            Err(msg) => return Ok(tool_error(format!("invalid input: {msg}"))),
        }
    };
}

macro_rules! called {
    ($tool:literal, $call:expr) => {
        match $call.await {
            Ok(v) => v,
            Err(err) => return Ok(api_failure($tool, &err)),
        }
    };
}

#[tool_router]
impl PipelineMcp {
    /// Hybrid search over the pipeline's extracted chunks.
    #[tool(
        description = "Search the pages the pipeline has extracted (hybrid: full-text and \
                       vector similarity fused). Returns the best chunks with their text, \
                       score, page URL and title, source id and job id. Filters: project_id, \
                       job_id. limit 1..=100 (default 10); chunk texts over 4,000 characters \
                       are cut.",
        annotations(read_only_hint = true)
    )]
    async fn search(
        &self,
        Parameters(p): Parameters<SearchParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let s: Search = checked!(Search::try_from(p));
        let key = checked!(self.key(&ctx));
        let mut query = vec![
            ("q", s.query.clone()),
            ("k", s.api_k().to_string()),
            ("mode", s.mode.as_str().to_owned()),
        ];
        if let Some(project) = s.project_id {
            query.push(("project_id", project.to_string()));
        }
        let answer = called!("search", self.api.get(key.as_ref(), &["search"], &query));
        let job = s.job_id.map(|j| Value::String(j.to_string()));
        let hits: Vec<Value> = answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|hit| job.as_ref().is_none_or(|j| &hit["job_id"] == j))
            .take(s.limit as usize)
            .cloned()
            .map(|mut hit| {
                if let Some(clipped) = hit["text"]
                    .as_str()
                    .and_then(|t| bound::clip_chars(t, MAX_HIT_CHARS))
                {
                    hit["text"] = clipped.into();
                    hit["text_truncated"] = true.into();
                }
                hit
            })
            .collect();
        let out = json!({
            "model": answer["model"],
            "mode": answer["mode"],
            "count": hits.len(),
            "hits": hits,
        });
        Ok(json_result(&out, "ask for fewer hits (limit)"))
    }

    /// Submits URLs to scrape.
    #[tool(
        description = "Submit URLs (1..=1000, http or https) for the pipeline to scrape, \
                       extract and index. Returns the job id (follow it with job_status), the \
                       project id, the queued sources and any URL the pipeline refused with \
                       its reason."
    )]
    async fn submit(
        &self,
        Parameters(p): Parameters<SubmitParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let s: Submit = checked!(Submit::try_from(p));
        let key = checked!(self.key(&ctx));
        let mut answer = called!(
            "submit",
            self.api.post(key.as_ref(), &["scrape"], &[], Some(&s.body))
        );
        trim_array(&mut answer, "sources", MAX_LISTED);
        trim_array(&mut answer, "invalid", MAX_LISTED);
        Ok(json_result(&answer, "job_status lists the job's sources"))
    }

    /// Starts a crawl.
    #[tool(
        description = "Start a crawl from one URL: links are followed within the scope \
                       (host, domain or prefix), include/exclude globs, max_depth (0..=100) \
                       and max_pages (1..=100000). Returns the crawl's job id (follow it with \
                       job_status)."
    )]
    async fn crawl(
        &self,
        Parameters(p): Parameters<CrawlParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let c: Crawl = checked!(Crawl::try_from(p));
        let key = checked!(self.key(&ctx));
        let answer = called!(
            "crawl",
            self.api.post(key.as_ref(), &["crawl"], &[], Some(&c.body))
        );
        Ok(json_result(
            &answer,
            "job_status shows the crawl's progress",
        ))
    }

    /// A job's status and progress.
    #[tool(
        description = "A job's status (queued, running, completed, failed, \
                       completed_with_errors), its counts by outcome, and its first sources \
                       with their statuses (sources: 0..=100, default 20).",
        annotations(read_only_hint = true)
    )]
    async fn job_status(
        &self,
        Parameters(p): Parameters<JobStatusParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let j: JobStatus = checked!(JobStatus::try_from(p));
        let key = checked!(self.key(&ctx));
        let mut answer = called!(
            "job_status",
            self.api
                .get(key.as_ref(), &["jobs", &j.job_id.to_string()], &[])
        );
        trim_array(&mut answer, "sources", j.sources as usize);
        trim_array(&mut answer, "invalid_urls", MAX_LISTED);
        Ok(json_result(&answer, "ask for fewer sources"))
    }

    /// The trail of one page.
    #[tool(
        description = "The trail of one page (source): the job that created it, every \
                       fetch and extraction attempt, errors, dead-lettering and redrives, \
                       oldest first. Give source_id, or url with the job_id that submitted \
                       or crawled it (the API looks sources up by id or within a job). \
                       limit: events, 1..=1000 (default 100).",
        annotations(read_only_hint = true)
    )]
    async fn trace_url(
        &self,
        Parameters(p): Parameters<TraceUrlParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let t: TraceUrl = checked!(TraceUrl::try_from(p));
        let key = checked!(self.key(&ctx));
        let source_id = match t.target {
            TraceTarget::Source(id) => id.to_string(),
            TraceTarget::UrlInJob { url, job_id } => {
                match self.find_in_job(key.as_ref(), job_id, &url).await {
                    Ok(Some(id)) => id,
                    Ok(None) => {
                        return Ok(tool_error(format!(
                            "no source with URL {url} among the first {MAX_TRACE_SCAN} \
                             sources of job {job_id}"
                        )));
                    }
                    Err(err) => return Ok(api_failure("trace_url", &err)),
                }
            }
        };
        let answer = called!(
            "trace_url",
            self.api.get(
                key.as_ref(),
                &["sources", &source_id, "events"],
                &[("limit", t.limit.to_string())]
            )
        );
        Ok(json_result(&answer, "ask for fewer events (limit)"))
    }

    /// DLQ counts.
    #[tool(
        description = "Counts of the dead-letter queues (items that failed all their \
                       attempts) per family: scrape, extraction, facts; parked items shown \
                       apart.",
        annotations(read_only_hint = true)
    )]
    async fn dlq_stats(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let key = checked!(self.key(&ctx));
        let answer = called!(
            "dlq_stats",
            self.api.get(key.as_ref(), &["dlq", "stats"], &[])
        );
        Ok(json_result(&answer, ""))
    }

    /// Redrives DLQ items.
    #[tool(
        description = "Retry dead-lettered work: with item_id, that item of the family's \
                       DLQ goes back into its work queue at once; without it, the family's \
                       items are redriven oldest first, up to limit (default: all)."
    )]
    async fn dlq_retry(
        &self,
        Parameters(p): Parameters<DlqRetryParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let r: DlqRetry = checked!(DlqRetry::try_from(p));
        let key = checked!(self.key(&ctx));
        let answer = match r {
            DlqRetry::One { family, item_id } => called!(
                "dlq_retry",
                self.api.post(
                    key.as_ref(),
                    &["dlq", family.as_str(), &item_id, "retry"],
                    &[],
                    None
                )
            ),
            DlqRetry::All { family, limit } => {
                let query: Vec<_> = limit
                    .map(|l| ("limit", l.to_string()))
                    .into_iter()
                    .collect();
                called!(
                    "dlq_retry",
                    self.api.post(
                        key.as_ref(),
                        &["dlq", family.as_str(), "retry-all"],
                        &query,
                        None
                    )
                )
            }
        };
        let mut answer = answer;
        trim_array(&mut answer, "malformed", MAX_LISTED);
        Ok(json_result(&answer, ""))
    }
}

impl PipelineMcp {
    /// The id of the source of `job_id` whose URL is `url` (compared as parsed URLs, so
    /// `https://Example.org` finds `https://example.org/`), reading at most
    /// [`MAX_TRACE_SCAN`] sources.
    async fn find_in_job(
        &self,
        key: Option<&SecretString>,
        job_id: uuid::Uuid,
        url: &str,
    ) -> Result<Option<String>, ApiError> {
        const PAGE: usize = 1000;
        let want = url::Url::parse(url).ok();
        let same = |candidate: &str| match &want {
            Some(w) => url::Url::parse(candidate).is_ok_and(|c| &c == w),
            None => candidate == url,
        };
        let job = job_id.to_string();
        let mut offset = 0;
        while offset < MAX_TRACE_SCAN {
            let page = self
                .api
                .get(
                    key,
                    &["jobs", &job, "sources"],
                    &[("limit", PAGE.to_string()), ("offset", offset.to_string())],
                )
                .await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if let Some(found) = items
                .iter()
                .find(|s| s["url"].as_str().is_some_and(same))
                .and_then(|s| s["id"].as_str())
            {
                return Ok(Some(found.to_owned()));
            }
            if page["next_offset"].is_null() || items.is_empty() {
                break;
            }
            offset += PAGE;
        }
        Ok(None)
    }

    async fn read_source(
        &self,
        uri: &str,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, ErrorData> {
        let resource =
            SourceResource::parse(uri).map_err(|msg| ErrorData::invalid_params(msg, None))?;
        let key = self
            .key(ctx)
            .map_err(|msg| ErrorData::invalid_request(msg, None))?;
        let (id, markdown) = match resource {
            SourceResource::Markdown(id) => (id, true),
            SourceResource::Document(id) => (id, false),
        };
        let query: &[(&str, String)] = if markdown {
            &[("include", "markdown".to_owned())]
        } else {
            &[]
        };
        let doc = match self
            .api
            .get(key.as_ref(), &["sources", &id.to_string()], query)
            .await
        {
            Ok(doc) => doc,
            Err(ApiError::Status { status, detail }) if status.as_u16() == 404 => {
                return Err(ErrorData::resource_not_found(detail, None));
            }
            Err(err) => {
                if !err.is_client_error() {
                    tracing::warn!(error = %err, "pipeline API call failed (resource)");
                }
                return Err(ErrorData::internal_error(err.to_string(), None));
            }
        };
        let (text, mime) = if markdown {
            let Some(md) = doc["markdown"].as_str() else {
                return Err(ErrorData::resource_not_found(
                    format!(
                        "source {id} has no Markdown yet (status {})",
                        doc["status"].as_str().unwrap_or("unknown")
                    ),
                    None,
                ));
            };
            let mut md = md.to_owned();
            if doc["markdown_truncated"].as_bool() == Some(true) {
                md.push_str("\n[truncated by the API at 8 MiB]");
            }
            (
                bound::bounded(md, "the page's Markdown is longer than one read"),
                "text/markdown",
            )
        } else {
            (bound::json_text(&doc, ""), "application/json")
        };
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, uri).with_mime_type(mime),
        ]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PipelineMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new(
            "pipeline-mcp",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(format!(
            "Tools and resources of a web-scraping and extraction pipeline. `search` finds \
             extracted chunks; `submit` and `crawl` start jobs, followed with `job_status`; \
             `trace_url` shows what happened to one page; `dlq_stats` and `dlq_retry` look \
             after failed work. A page's Markdown is the resource \
             pipeline://sources/{{id}}/markdown. Results are cut at {MAX_RESULT_BYTES} bytes \
             and say so."
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("pipeline://sources/{id}/markdown", "source-markdown")
                .with_title("A page's Markdown")
                .with_description(
                    "The page's main content as Markdown (headings, lists, tables, code, \
                     links), once the pipeline extracted it; cut at 64 KiB.",
                )
                .with_mime_type("text/markdown"),
            ResourceTemplate::new("pipeline://sources/{id}", "source")
                .with_title("A page's status and metadata")
                .with_description(
                    "The source as JSON: URL, status, the job that created it, and its \
                     metadata (title, authors, dates, language, site, description).",
                )
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        Ok(self.read_source(&request.uri, &context).await?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_array_keeps_the_count() {
        let mut v = json!({"sources": [1, 2, 3], "invalid": [1]});
        trim_array(&mut v, "sources", 2);
        trim_array(&mut v, "invalid", 2);
        assert_eq!(
            v,
            json!({"sources": [1, 2], "sources_total": 3, "invalid": [1]})
        );
    }
}
