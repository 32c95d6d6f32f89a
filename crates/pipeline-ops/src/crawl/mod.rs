//! Crawl jobs: a start URL, a scope, and the links the scrape worker discovers within it.
//!
//! [`start`] checks a [`CrawlRequest`] (shared by `POST /api/v1/crawl` and `pipelinectl
//! crawl`), records the crawl job with its start page and enqueues it. From there the scrape
//! worker reads each fetched page's links and admits those the crawl's [`rules`] and caps
//! accept (`pipeline_store::crawls::admit`); robots.txt and per-host politeness apply to
//! them exactly as to submitted URLs, because they are ordinary scrape messages. When the
//! crawl reads sitemaps, the worker that handles the start page also reads the start host's
//! sitemaps and admits their pages through the same rules.

pub mod rules;

use pipeline_store::Actor;
use pipeline_store::crawl_schedules;
use pipeline_store::crawls::{self, CrawlSettings, NewCrawl};
use pipeline_store::jobs::{DEFAULT_PROJECT, ProjectRef};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Family;
use crate::Services;
use crate::messages::{Priority, RenderMode, SourceMessage, render_of_column};
use crate::submit::{SubmitError, validate_name, validate_token_cap, validate_url};
use rules::{ScopeKind, compile_pattern, scope_anchor};

/// Default maximum depth (links followed from the start URL).
pub const DEFAULT_MAX_DEPTH: u32 = 10;
/// Largest maximum depth accepted.
pub const MAX_MAX_DEPTH: u32 = 100;
/// Default maximum pages of one crawl.
pub const DEFAULT_MAX_PAGES: u32 = 1_000;
/// Largest maximum pages accepted.
pub const MAX_MAX_PAGES: u32 = 100_000;
/// Default cap on distinct query strings of one path (a calendar's `?month=` explosion).
pub const DEFAULT_MAX_QUERY_VARIANTS: u32 = 20;
/// Default cap on path segments (`/a/b/a/b/...` traps).
pub const DEFAULT_MAX_PATH_DEPTH: u32 = 12;
/// Whether a crawl reads the start host's sitemaps unless the request says otherwise: yes,
/// as hosted crawlers do (a site's sitemap lists the pages its owner wants found, including
/// pages no link reaches).
pub const DEFAULT_SITEMAPS: bool = true;
/// What a start URL looks like (the API documents the same pattern): http or https; a host
/// name of letters, digits and single hyphens whose last label starts with a letter, or a
/// dotted IPv4 address; an optional port (0..=65535); then printable ASCII. Every string it
/// matches is a URL the crawl accepts, so the API's schema and its answers agree.
pub const START_URL_PATTERN: &str = r"^[Hh][Tt][Tt][Pp][Ss]?://(([A-Za-z0-9]+(-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*|((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?#][!-~]*)?$";
/// Longest start URL, in characters (printable ASCII, so the normalized URL, where some
/// characters become `%XX`, stays within the 2,048 bytes a source URL may have).
pub const MAX_START_URL_CHARS: usize = 600;

fn start_url_pattern() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(START_URL_PATTERN).expect("the start URL pattern compiles"))
}

/// Most include or exclude patterns of one crawl.
pub const MAX_PATTERNS: usize = 50;
/// Longest pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 500;
/// Query parameters removed from discovered URLs unless the request names its own list: a
/// name ending in `*` is a prefix.
pub const DEFAULT_TRACKING_PARAMS: &[&str] = &[
    "utm_*", "gclid", "dclid", "fbclid", "msclkid", "mc_cid", "mc_eid", "_ga", "_gl", "yclid",
];

/// What a client asks for. Every field but `url` is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlRequest {
    /// The start URL.
    pub url: String,
    /// `host` (default), `domain`, or `prefix` (the start URL up to its last `/`).
    #[serde(default)]
    pub scope: Option<ScopeKind>,
    /// Globs over the whole normalized URL (`*` matches anything); when any is given, a URL
    /// must match one.
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs over the whole normalized URL; a URL matching any is skipped.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub max_depth: Option<u32>,
    #[serde(default)]
    pub max_pages: Option<u32>,
    /// Follow links marked `rel=nofollow` (default no).
    #[serde(default)]
    pub follow_nofollow: bool,
    /// Read the start host's sitemaps (robots.txt `Sitemap:` lines and `/sitemap.xml`,
    /// following sitemap indexes and gzipped sitemaps) and admit their pages under the same
    /// rules as links (default [`DEFAULT_SITEMAPS`]).
    #[serde(default)]
    pub sitemaps: Option<bool>,
    #[serde(default)]
    pub max_query_variants: Option<u32>,
    #[serde(default)]
    pub max_path_depth: Option<u32>,
    /// Query parameters to strip (default [`DEFAULT_TRACKING_PARAMS`]).
    #[serde(default)]
    pub tracking_params: Option<Vec<String>>,
    /// The project by id; else by name; else the default project.
    #[serde(default)]
    pub project_id: Option<Uuid>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub source_group: Option<String>,
    /// Most model tokens the crawl's pages may spend in the schema stage
    /// (`jobs.model_token_cap`), greater than 0; `None`: no cap. A recrawl keeps it.
    #[serde(default)]
    pub model_token_cap: Option<i64>,
    /// The crawl's priority within its project (default `normal`); recrawls keep it.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Whether the scrape worker renders the crawl's pages in a headless browser (`None`:
    /// the worker's `render.default`); every page the crawl discovers, and recrawls, keep it.
    #[serde(default)]
    pub render: Option<RenderMode>,
}

/// Checks a request and turns it into the settings stored with the crawl.
///
/// # Errors
/// [`SubmitError::Invalid`] naming the first bad field.
pub fn settings_of(req: &CrawlRequest) -> Result<CrawlSettings, SubmitError> {
    let bad = |m: String| SubmitError::Invalid(m);
    if req.url.chars().count() > MAX_START_URL_CHARS || !start_url_pattern().is_match(&req.url) {
        return Err(bad(format!(
            "url: not an absolute http(s) URL of at most {MAX_START_URL_CHARS} characters \
             matching {START_URL_PATTERN}"
        )));
    }
    let start = validate_url(&req.url).map_err(|e| bad(format!("url: {e}")))?;
    let start_url = start.as_url();
    let scope = req.scope.unwrap_or_default();
    let anchor = scope_anchor(start_url, scope, None).map_err(bad)?;
    for (what, list) in [("include", &req.include), ("exclude", &req.exclude)] {
        if list.len() > MAX_PATTERNS {
            return Err(bad(format!("{what}: at most {MAX_PATTERNS} patterns")));
        }
        for p in list {
            if p.chars().count() > MAX_PATTERN_CHARS {
                return Err(bad(format!(
                    "{what}: a pattern is longer than {MAX_PATTERN_CHARS} characters"
                )));
            }
            if p.contains('\0') {
                return Err(bad(format!("{what}: a pattern contains NUL")));
            }
            compile_pattern(p).map_err(|e| bad(format!("{what}: {e}")))?;
        }
    }
    let ranged = |what: &str, v: Option<u32>, default: u32, lo: u32, hi: u32| {
        let v = v.unwrap_or(default);
        if (lo..=hi).contains(&v) {
            Ok(v as i32)
        } else {
            Err(bad(format!("{what} must be within {lo}..={hi}, got {v}")))
        }
    };
    let tracking_params = match &req.tracking_params {
        Some(list) => {
            if list.len() > MAX_PATTERNS {
                return Err(bad(format!("tracking_params: at most {MAX_PATTERNS}")));
            }
            if list
                .iter()
                .any(|t| t.is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control))
            {
                return Err(bad(
                    "tracking_params: each is 1 to 100 characters, no control characters".into(),
                ));
            }
            list.clone()
        }
        None => DEFAULT_TRACKING_PARAMS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    if let Some(name) = &req.project {
        validate_name("project", name)?;
    }
    if let Some(group) = &req.source_group {
        validate_name("source_group", group)?;
    }
    validate_token_cap(req.model_token_cap)?;
    Ok(CrawlSettings {
        start_url: start.into_string(),
        scope: scope.as_str().into(),
        scope_prefix: (scope == ScopeKind::Prefix).then_some(anchor),
        include_patterns: req.include.clone(),
        exclude_patterns: req.exclude.clone(),
        max_depth: ranged(
            "max_depth",
            req.max_depth,
            DEFAULT_MAX_DEPTH,
            0,
            MAX_MAX_DEPTH,
        )?,
        max_pages: ranged(
            "max_pages",
            req.max_pages,
            DEFAULT_MAX_PAGES,
            1,
            MAX_MAX_PAGES,
        )?,
        follow_nofollow: req.follow_nofollow,
        sitemaps: req.sitemaps.unwrap_or(DEFAULT_SITEMAPS),
        max_query_variants: ranged(
            "max_query_variants",
            req.max_query_variants,
            DEFAULT_MAX_QUERY_VARIANTS,
            1,
            10_000,
        )?,
        max_path_depth: ranged(
            "max_path_depth",
            req.max_path_depth,
            DEFAULT_MAX_PATH_DEPTH,
            1,
            1_000,
        )?,
        tracking_params,
    })
}

/// The compiled rules of stored settings.
///
/// # Errors
/// Settings that no longer compile (a pattern stored by hand).
pub fn rules_of(s: &CrawlSettings) -> Result<rules::Rules, String> {
    let scope = ScopeKind::parse(&s.scope).ok_or_else(|| format!("unknown scope {}", s.scope))?;
    let start = url::Url::parse(&s.start_url).map_err(|e| e.to_string())?;
    let anchor = scope_anchor(&start, scope, s.scope_prefix.as_deref())?;
    rules::Rules::new(&rules::RulesSpec {
        scope,
        anchor: &anchor,
        include: &s.include_patterns,
        exclude: &s.exclude_patterns,
        max_depth: s.max_depth.max(0) as u32,
        max_path_depth: s.max_path_depth.max(0) as u32,
        follow_nofollow: s.follow_nofollow,
        tracking_params: &s.tracking_params,
    })
}

/// What starting a crawl did.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    pub job_id: Uuid,
    pub project_id: Uuid,
    /// The start page's source.
    pub source_id: Uuid,
    pub settings: CrawlSettings,
    /// The crawl's render mode (`None`: the worker's `render.default`).
    pub render: Option<RenderMode>,
}

/// Checks the request, records the crawl job and its start page, enqueues the start page.
///
/// # Errors
/// A bad request, an unknown project, Postgres; Redis after the job was recorded (the
/// reconciler enqueues the start page later).
pub async fn start(
    services: &Services,
    req: &CrawlRequest,
    actor: Actor,
) -> Result<Started, SubmitError> {
    let settings = settings_of(req)?;
    let project = match (req.project_id, req.project.as_deref()) {
        (Some(id), _) => ProjectRef::Id(id),
        (None, Some(name)) if !name.trim().is_empty() => ProjectRef::Name(name.trim()),
        _ => ProjectRef::Name(DEFAULT_PROJECT),
    };
    let created = crawls::create(
        &services.db,
        &NewCrawl {
            project,
            source_group: req.source_group.as_deref(),
            settings: &settings,
            recrawl_of: None,
            actor,
            model_token_cap: req.model_token_cap,
            priority: req.priority.unwrap_or_default().as_str(),
            render: req.render.map(RenderMode::as_str),
        },
    )
    .await
    .map_err(|e| match (e, req.project_id) {
        (pipeline_store::StoreError::NotFound(_), Some(id)) => SubmitError::UnknownProject(id),
        (e, _) => SubmitError::Store(e),
    })?;
    let start = &created.sources[0];
    let msg = SourceMessage {
        source_id: start.source_id,
        job_id: Some(created.job_id),
        url: Some(start.url.clone()),
        project_id: Some(created.project_id),
        priority: req.priority.unwrap_or_default(),
        render: req.render,
    };
    services
        .queue(Family::Scrape)
        .enqueue_in(&msg.lane(), &msg.id(), &msg.body())
        .await
        .map_err(|source| SubmitError::Enqueue {
            job_id: created.job_id,
            source,
        })?;
    tracing::info!(job_id = %created.job_id, url = %settings.start_url, "crawl started");
    Ok(Started {
        job_id: created.job_id,
        project_id: created.project_id,
        source_id: start.source_id,
        settings,
        render: req.render,
    })
}

/// Why a recrawl was not started.
#[derive(Debug, thiserror::Error)]
pub enum RecrawlError {
    /// No crawl has this id.
    #[error("crawl {0} not found")]
    NotFound(Uuid),
    /// The crawl has not ended yet.
    #[error("crawl {0} is still {1}: a crawl is repeated once it has ended")]
    Running(Uuid, String),
    /// Recording or enqueueing failed.
    #[error(transparent)]
    Failed(#[from] SubmitError),
}

/// Repeats ended crawl `job_id`: a new crawl job with the same settings, model token cap,
/// priority and render mode (`crawls.recrawl_of` = `job_id`), whose pages are fetched
/// conditionally. A page whose content did not change since its last extraction (a `304`
/// to `If-None-Match` / `If-Modified-Since`, or the same SHA-256) is not extracted again and
/// records an `unchanged` event; a changed page is stored and extracted as usual, its
/// `succeeded` scrape event saying `"content": "changed"`. Its pages' messages carry no URL,
/// so the scrape worker reads the source's validators before it fetches.
///
/// # Errors
/// [`RecrawlError::NotFound`], [`RecrawlError::Running`], or Postgres / Redis.
pub async fn recrawl(
    services: &Services,
    job_id: Uuid,
    actor: Actor,
) -> Result<Started, RecrawlError> {
    let mut conn = services
        .db
        .acquire()
        .await
        .map_err(|e| SubmitError::Store(e.into()))?;
    let ended = match crawls::for_recrawl(&mut conn, job_id).await {
        Ok(e) => e,
        Err(pipeline_store::StoreError::NotFound(_)) => return Err(RecrawlError::NotFound(job_id)),
        Err(e) => return Err(SubmitError::Store(e).into()),
    };
    drop(conn);
    if matches!(ended.status.as_str(), "queued" | "running") {
        return Err(RecrawlError::Running(job_id, ended.status));
    }
    let created = crawls::create(
        &services.db,
        &NewCrawl {
            project: ProjectRef::Id(ended.project_id),
            source_group: None,
            settings: &ended.settings,
            recrawl_of: Some(job_id),
            actor,
            model_token_cap: ended.model_token_cap,
            priority: &ended.priority,
            render: ended.render.as_deref(),
        },
    )
    .await
    .map_err(SubmitError::Store)?;
    let start = &created.sources[0];
    let render = render_of_column(ended.render.as_deref());
    enqueue_recrawl_start(
        services,
        created.job_id,
        start.source_id,
        created.project_id,
        &ended.priority,
        render,
    )
    .await
    .map_err(|source| SubmitError::Enqueue {
        job_id: created.job_id,
        source,
    })?;
    tracing::info!(job_id = %created.job_id, recrawl_of = %job_id, "recrawl started");
    Ok(Started {
        job_id: created.job_id,
        project_id: created.project_id,
        source_id: start.source_id,
        settings: ended.settings,
        render,
    })
}

/// Enqueues a recrawl's start page. Its message carries no URL: the scrape worker reads the
/// source's validators first and fetches conditionally.
async fn enqueue_recrawl_start(
    services: &Services,
    job_id: Uuid,
    source_id: Uuid,
    project_id: Uuid,
    priority: &str,
    render: Option<RenderMode>,
) -> Result<(), work_queue::QueueError> {
    let msg = SourceMessage {
        source_id,
        job_id: Some(job_id),
        url: None,
        project_id: Some(project_id),
        priority: priority.parse().unwrap_or_default(),
        render,
    };
    services
        .queue(Family::Scrape)
        .enqueue_in(&msg.lane(), &msg.id(), &msg.body())
        .await
        .map(|_| ())
}

/// Starts the scheduled recrawls that are due (`pipeline_store::crawl_schedules`), at most
/// `limit`: the runs are created and their schedules moved on in one transaction, then their
/// start pages are enqueued. A start page that cannot be enqueued is logged and left
/// `queued`, where the reconciler finds it. The requeue daemon calls this every
/// `crawl.schedule_check_secs`; any number of replicas may.
///
/// # Errors
/// Postgres.
pub async fn start_due_recrawls(
    services: &Services,
    limit: i64,
) -> Result<Vec<crawl_schedules::StartedRun>, pipeline_store::StoreError> {
    let mut tx = services.db.begin().await?;
    let started = crawl_schedules::start_due_in(&mut tx, limit).await?;
    tx.commit().await?;
    for run in &started {
        match enqueue_recrawl_start(
            services,
            run.job_id,
            run.source_id,
            run.project_id,
            &run.priority,
            render_of_column(run.render.as_deref()),
        )
        .await
        {
            Ok(()) => tracing::info!(
                job_id = %run.job_id,
                recrawl_of = %run.recrawl_of,
                schedule = %run.crawl_job_id,
                "scheduled recrawl started"
            ),
            Err(e) => tracing::warn!(
                job_id = %run.job_id,
                error = %e,
                "scheduled recrawl recorded but its start page could not be enqueued; \
                 the reconciler will"
            ),
        }
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(url: &str) -> CrawlRequest {
        CrawlRequest {
            url: url.into(),
            ..CrawlRequest::default()
        }
    }

    #[test]
    fn defaults_and_bad_fields() {
        let s = settings_of(&req("https://Docs.Example.com/guide/#x")).unwrap();
        assert_eq!(s.start_url, "https://docs.example.com/guide/");
        assert_eq!(s.scope, "host");
        assert_eq!(s.max_depth, DEFAULT_MAX_DEPTH as i32);
        assert_eq!(s.max_pages, DEFAULT_MAX_PAGES as i32);
        assert!(
            s.sitemaps,
            "sitemaps are read unless the request says not to"
        );
        let off = settings_of(&CrawlRequest {
            sitemaps: Some(false),
            ..req("https://e.com/")
        })
        .unwrap();
        assert!(!off.sitemaps);
        assert!(s.tracking_params.iter().any(|t| t == "utm_*"));

        let err = |r: CrawlRequest| settings_of(&r).unwrap_err().to_string();
        assert!(err(req("ftp://x/")).starts_with("url:"));
        assert!(
            err(CrawlRequest {
                max_pages: Some(0),
                ..req("https://e.com/")
            })
            .contains("max_pages")
        );
        assert!(
            err(CrawlRequest {
                exclude: vec!["x".repeat(MAX_PATTERN_CHARS + 1)],
                ..req("https://e.com/")
            })
            .contains("exclude")
        );
        for cap in [0, -5] {
            assert!(
                err(CrawlRequest {
                    model_token_cap: Some(cap),
                    ..req("https://e.com/")
                })
                .contains(&format!("model_token_cap is {cap}"))
            );
        }
        assert!(
            settings_of(&CrawlRequest {
                model_token_cap: Some(1),
                ..req("https://e.com/")
            })
            .is_ok()
        );
        assert!(settings_of(&req("http://127.0.0.1:65535/")).is_ok());
        assert!(err(req("http://127.0.0.1:65536/")).starts_with("url:"));
        assert!(err(req("http://01.2.3.4/")).starts_with("url:"));
        assert!(err(req("http://a--b.com/")).starts_with("url:"));
        assert!(err(req("https://e.com/a b")).starts_with("url:"));
        assert!(err(req(&format!("https://e.com/{}", "a".repeat(600)))).starts_with("url:"));
        let p = settings_of(&CrawlRequest {
            scope: Some(ScopeKind::Prefix),
            ..req("https://e.com/docs/x.html")
        })
        .unwrap();
        assert_eq!(p.scope_prefix.as_deref(), Some("https://e.com/docs/"));
        assert!(rules_of(&p).is_ok());
    }
}
