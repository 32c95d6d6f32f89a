//! `pipelinectl crawl URL...` (one crawl job per start URL), `crawl-status JOB`,
//! `crawl-cancel JOB` and `recrawl JOB`.

use std::time::{Duration, Instant};

use clap::Args;
use pipeline_ops::Services;
use pipeline_ops::crawl::rules::ScopeKind;
use pipeline_ops::crawl::{self, CrawlRequest};
use pipeline_ops::submit::SubmitError;
use pipeline_store::crawl_schedules;
use pipeline_store::crawl_status::{self, CrawlProgress};
use uuid::Uuid;

use crate::output::{
    CmdResult, EXIT_ENDED_FAILED, EXIT_ENDED_WITH_ERRORS, EXIT_INTERRUPTED, EXIT_WAIT_RAN_OUT,
    Failure, outln, print_json,
};

/// Arguments of `pipelinectl crawl`.
#[derive(Debug, Args)]
pub struct CrawlArgs {
    /// Start URLs: one crawl job each.
    #[arg(required = true)]
    urls: Vec<String>,
    /// Which URLs belong to the crawl: `host` (default), `domain` (registrable domain) or
    /// `prefix` (the start URL up to its last `/`).
    #[arg(long, value_parser = parse_scope)]
    scope: Option<ScopeKind>,
    /// Follow only URLs matching one of these globs (`*` matches anything); repeatable.
    #[arg(long)]
    include: Vec<String>,
    /// Skip URLs matching any of these globs; repeatable.
    #[arg(long)]
    exclude: Vec<String>,
    /// Links followed from the start URL (default 10).
    #[arg(long)]
    max_depth: Option<u32>,
    /// Most pages (default 1000).
    #[arg(long)]
    max_pages: Option<u32>,
    /// Follow links marked rel=nofollow.
    #[arg(long)]
    follow_nofollow: bool,
    /// Do not read the start host's sitemaps (robots.txt `Sitemap:` lines, /sitemap.xml);
    /// by default their pages join the crawl under the same rules as links.
    #[arg(long)]
    no_sitemaps: bool,
    /// Trap cap: distinct query strings per path (default 20).
    #[arg(long)]
    max_query_variants: Option<u32>,
    /// Trap cap: path segments per URL (default 12).
    #[arg(long)]
    max_path_depth: Option<u32>,
    /// Query parameters stripped from URLs (replaces the default list); repeatable.
    #[arg(long = "tracking-param")]
    tracking_params: Vec<String>,
    /// The project name (created when missing; default `default`).
    #[arg(long)]
    project: Option<String>,
    /// A group name stored on each page's source.
    #[arg(long)]
    source_group: Option<String>,
    /// Most model tokens (prompt + completion) each crawl's pages may spend in the schema
    /// stage's `llm` backend; pages past the cap keep what they had (outcome `capped`). A
    /// recrawl keeps the cap. Greater than 0; leave it out for no cap.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    token_cap: Option<i64>,
    /// The crawls' priority within their project: high, normal (default) or low. A recrawl
    /// keeps it.
    #[arg(long, value_parser = crate::output::parse_priority)]
    priority: Option<pipeline_ops::messages::Priority>,
    /// Whether the scrape worker renders the crawl's pages in a headless browser: never,
    /// auto or always. Leave it out for the worker's `render.default` (docs/rendering.md).
    /// Every page the crawl discovers, and a recrawl, keep it.
    #[arg(long, value_name = "MODE", value_parser = crate::output::parse_render)]
    render: Option<pipeline_ops::messages::RenderMode>,
    /// Wait until the crawl ends, printing its progress; at most this many seconds.
    #[arg(long, value_name = "SECS")]
    wait: Option<u64>,
}

fn parse_scope(s: &str) -> Result<ScopeKind, String> {
    ScopeKind::parse(s).ok_or_else(|| format!("unknown scope `{s}`: host, domain or prefix"))
}

/// Starts one crawl per start URL.
pub async fn start(services: &Services, args: CrawlArgs, as_json: bool) -> CmdResult {
    let mut started = Vec::new();
    for url in &args.urls {
        let req = CrawlRequest {
            url: url.clone(),
            scope: args.scope,
            include: args.include.clone(),
            exclude: args.exclude.clone(),
            max_depth: args.max_depth,
            max_pages: args.max_pages,
            follow_nofollow: args.follow_nofollow,
            sitemaps: Some(!args.no_sitemaps),
            max_query_variants: args.max_query_variants,
            max_path_depth: args.max_path_depth,
            tracking_params: (!args.tracking_params.is_empty())
                .then(|| args.tracking_params.clone()),
            project_id: None,
            project: args.project.clone(),
            source_group: args.source_group.clone(),
            model_token_cap: args.token_cap,
            priority: args.priority,
            render: args.render,
        };
        let s = crawl::start(services, &req, pipeline_store::Actor::Cli)
            .await
            .map_err(|e| match e {
                SubmitError::Invalid(msg) => Failure::usage(format!("{url}: {msg}")),
                other => anyhow::Error::new(other).into(),
            })?;
        if !as_json {
            outln!("crawl job {} from {}", s.job_id, s.settings.start_url);
            if let Some(cap) = args.token_cap {
                outln!("model token cap {cap} (the schema stage's llm backend)");
            }
            if let Some(render) = s.render {
                outln!("render {render}");
            }
        }
        started.push(s);
    }
    if let Some(secs) = args.wait {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut ended = Vec::new();
        for s in &started {
            ended.push(wait(services, s.job_id, deadline, as_json).await?);
        }
        if as_json {
            print_json(&ended)?;
        }
        return ended_exit(&ended);
    }
    if as_json {
        print_json(&started)?;
    }
    Ok(())
}

/// The exit of a waiting command from how its crawls ended: 0 when every one completed,
/// [`EXIT_ENDED_FAILED`] when one failed or was cancelled, else [`EXIT_ENDED_WITH_ERRORS`]
/// when one completed with errors. The message names each crawl that did not complete.
fn ended_exit(ended: &[CrawlProgress]) -> CmdResult {
    let failed: Vec<&CrawlProgress> = ended
        .iter()
        .filter(|p| p.status == "failed" || p.cancelled_at.is_some())
        .collect();
    let with_errors: Vec<&CrawlProgress> = ended
        .iter()
        .filter(|p| p.status != "completed" && !failed.iter().any(|f| f.job_id == p.job_id))
        .collect();
    let describe = |ps: &[&CrawlProgress]| {
        ps.iter()
            .map(|p| {
                let how = if p.cancelled_at.is_some() {
                    "was cancelled"
                } else {
                    "ended"
                };
                format!(
                    "crawl {} {how} {} ({} of {} pages failed; see `pipelinectl jobs show {}`)",
                    p.job_id, p.status, p.failed, p.pages, p.job_id
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if !failed.is_empty() {
        return Err(Failure::new(EXIT_ENDED_FAILED, describe(&failed)));
    }
    if !with_errors.is_empty() {
        return Err(Failure::new(EXIT_ENDED_WITH_ERRORS, describe(&with_errors)));
    }
    Ok(())
}

/// Polls a crawl's progress until it ends, printing each change (with a note while a family
/// it needs is paused). `deadline` passing fails with [`EXIT_WAIT_RAN_OUT`]; Ctrl-C ends the
/// process with [`EXIT_INTERRUPTED`], saying that the crawl goes on and how to cancel it.
async fn wait(
    services: &Services,
    job_id: Uuid,
    deadline: Instant,
    as_json: bool,
) -> CmdResult<CrawlProgress> {
    let mut last = String::new();
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let p = crawl_status::progress(&services.db, job_id).await?;
        let mut line = progress_line(&p);
        if !p.ended {
            line.push_str(&paused_note(services).await);
        }
        if !as_json && line != last {
            outln!("{line}");
            last = line;
        }
        if p.ended {
            return Ok(p);
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                EXIT_WAIT_RAN_OUT,
                format!(
                    "crawl {job_id} still running when --wait ran out; it goes on \
                     (follow it: pipelinectl crawl-status {job_id})"
                ),
            ));
        }
        tokio::select! {
            _ = &mut interrupted => {
                eprintln!(
                    "interrupted: crawl {job_id} goes on without this command; follow it with \
                     `pipelinectl crawl-status {job_id}`, stop it with `pipelinectl crawl-cancel {job_id}`"
                );
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// `; scrape paused by cli at ... (resume: pipelinectl resume scrape)` for each paused
/// family, or nothing. A Redis error is reported the same way, since a crawl whose queues
/// cannot be read makes no progress either.
async fn paused_note(services: &Services) -> String {
    let mut note = String::new();
    // The stages a crawl's pages go through; paused webhooks hold no page back.
    for family in pipeline_ops::Family::STAGES {
        match pipeline_ops::pause::state(&services.redis, services.queue(family).keys()).await {
            Ok(None) => {}
            Ok(Some(flag)) => note.push_str(&format!(
                "; {family} paused by {} at {}, nothing moves until `pipelinectl resume {family}`",
                flag.by,
                crate::output::time(&flag.at)
            )),
            Err(e) => note.push_str(&format!("; {family} pause state unknown ({e})")),
        }
    }
    note
}

fn progress_line(p: &CrawlProgress) -> String {
    let s = &p.skipped;
    format!(
        "{} {}: discovered {}, pages {}, queued {}, fetched {}, extracted {}, failed {}; \
         skipped scope {} pattern {} depth {} limit {} trap {} nofollow {} robots {}",
        p.job_id,
        p.status,
        p.discovered,
        p.pages,
        p.queued,
        p.fetched,
        p.extracted,
        p.failed,
        s.scope,
        s.pattern,
        s.depth,
        s.limit,
        s.trap,
        s.nofollow,
        s.robots
    )
}

fn job_id(raw: &str) -> CmdResult<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| Failure::usage(format!("`{raw}` is not a job id")))
}

/// `crawl-status JOB`.
pub async fn status(services: &Services, raw: &str, as_json: bool) -> CmdResult {
    let p = crawl_status::progress(&services.db, job_id(raw)?)
        .await
        .map_err(not_found)?;
    if as_json {
        return print_json(&p);
    }
    outln!("{}", progress_line(&p));
    if let Some(at) = p.cancelled_at {
        outln!("cancelled at {}", crate::output::time(&at));
    }
    Ok(())
}

/// `recrawl JOB [--wait SECS]`.
pub async fn recrawl(
    services: &Services,
    raw: &str,
    wait_secs: Option<u64>,
    as_json: bool,
) -> CmdResult {
    let id = job_id(raw)?;
    let s = crawl::recrawl(services, id, pipeline_store::Actor::Cli)
        .await
        .map_err(|e| match e {
            e @ crawl::RecrawlError::NotFound(_) => Failure::not_found(e.to_string()),
            e @ crawl::RecrawlError::Running(..) => Failure::usage(e.to_string()),
            other => anyhow::Error::new(other).into(),
        })?;
    if let Some(secs) = wait_secs {
        let ended = wait(
            services,
            s.job_id,
            Instant::now() + Duration::from_secs(secs),
            as_json,
        )
        .await?;
        if as_json {
            print_json(&ended)?;
        }
        return ended_exit(std::slice::from_ref(&ended));
    }
    if as_json {
        return print_json(&s);
    }
    outln!(
        "recrawl job {} of crawl {id} from {}",
        s.job_id,
        s.settings.start_url
    );
    Ok(())
}

/// `crawl-schedule JOB [--every INTERVAL | --off]`.
pub async fn schedule(
    services: &Services,
    raw: &str,
    every: Option<&str>,
    off: bool,
    as_json: bool,
) -> CmdResult {
    let id = job_id(raw)?;
    let db = &services.db;
    let (schedule, verb) = if let Some(every) = every {
        let secs = interval_secs(every).map_err(Failure::usage)?;
        let s = crawl_schedules::set(db, id, secs)
            .await
            .map_err(not_found)?;
        (s, "set")
    } else if off {
        match crawl_schedules::delete(db, id).await? {
            Some(s) => (s, "removed"),
            None => return Err(Failure::not_found(format!("crawl {id} has no schedule"))),
        }
    } else {
        match crawl_schedules::get(db, id).await? {
            Some(s) => (s, "is"),
            None => return Err(Failure::not_found(format!("crawl {id} has no schedule"))),
        }
    };
    if as_json {
        return print_json(&schedule);
    }
    outln!(
        "schedule of crawl {id} {verb}: every {} s, next run due {}, {} run(s) so far, latest {}",
        schedule.every_secs,
        crate::output::time(&schedule.next_run_at),
        schedule.runs,
        schedule.last_job_id
    );
    Ok(())
}

/// An interval: whole seconds, or a whole number with `s`, `m`, `h` or `d`, within the
/// schedule's bounds.
fn interval_secs(raw: &str) -> Result<u32, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&raw[..i], c.to_ascii_lowercase()),
        _ => (raw, 's'),
    };
    let scale: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        other => {
            return Err(format!(
                "--every {raw}: unknown unit `{other}` (use s, m, h or d)"
            ));
        }
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("--every {raw}: expected a whole number with s, m, h or d, such as 90m or 1d")
    })?;
    let (min, max) = (
        crawl_schedules::MIN_EVERY_SECS,
        crawl_schedules::MAX_EVERY_SECS,
    );
    match n.checked_mul(scale).and_then(|s| u32::try_from(s).ok()) {
        Some(s) if (min..=max).contains(&s) => Ok(s),
        _ => Err(format!(
            "--every {raw}: the interval must be from {min} s to {max} s (365 days)"
        )),
    }
}

/// `crawl-cancel JOB`.
pub async fn cancel(services: &Services, raw: &str, as_json: bool) -> CmdResult {
    let id = job_id(raw)?;
    let discarded = crawl_status::cancel(
        &services.db,
        &services.progress,
        id,
        pipeline_store::Actor::Cli,
    )
    .await
    .map_err(not_found)?;
    if as_json {
        return print_json(&serde_json::json!({"job_id": id, "discarded": discarded}));
    }
    outln!("crawl {id} cancelled; {discarded} waiting page(s) discarded");
    Ok(())
}

fn not_found(e: pipeline_store::StoreError) -> Failure {
    match e {
        pipeline_store::StoreError::NotFound(what) => Failure::not_found(format!("no {what}")),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::interval_secs;

    #[test]
    fn intervals() {
        assert_eq!(interval_secs("3600"), Ok(3600));
        assert_eq!(interval_secs("90m"), Ok(5400));
        assert_eq!(interval_secs("12H"), Ok(43_200));
        assert_eq!(interval_secs("1d"), Ok(86_400));
        assert_eq!(interval_secs("365d"), Ok(31_536_000));
        for bad in ["59", "366d", "", "d", "1.5h", "-1h", "1w", "99999999999d"] {
            assert!(interval_secs(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
