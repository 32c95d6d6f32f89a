//! `pipelinectl submit`, `jobs list`, `jobs show`, `jobs sources`. Lists are summaries and
//! pages (a job of 100,000 URLs prints its first page and the command for the next), the
//! same bounds and validation as the API.

use crate::output::outln;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use pipeline_ops::Services;
use pipeline_ops::submit::{self, SubmitError, SubmitRequest};
use pipeline_store::JobStatus;
use pipeline_store::facts::{self, JobFacts};
use pipeline_store::job_settings::{self, JobSettings};
use pipeline_store::jobs::{self, JobFilter, JobSummary};
use pipeline_store::sources::SourceRow;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::output::{CmdResult, Failure, clip, opt, print_json, print_table, time};

/// `submit` arguments.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// URLs to scrape.
    urls: Vec<String>,
    /// A file of URLs, one per line (`-` reads stdin). Blank lines are skipped, and so is a
    /// comment: from a `#` at the start of a line or after a blank to the end of the line
    /// (a `#` inside a URL is its fragment). A bad line is reported with its number; the
    /// others are still submitted.
    #[arg(long)]
    file: Option<PathBuf>,
    /// The project name (created when missing; default `default`).
    #[arg(long)]
    project: Option<String>,
    /// A group name stored on each source.
    #[arg(long)]
    source_group: Option<String>,
    /// Most model tokens (prompt + completion) the job's pages may spend in the schema
    /// stage's `llm` backend; pages past the cap keep what they had (outcome `capped`).
    /// Greater than 0; leave it out for no cap.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    token_cap: Option<i64>,
    /// The job's priority within its project: high, normal (default) or low. Within a
    /// project, higher priority work is served first.
    #[arg(long, value_parser = crate::output::parse_priority)]
    priority: Option<pipeline_ops::messages::Priority>,
    /// Whether the scrape worker renders the job's pages in a headless browser: never, auto
    /// or always. Leave it out for the worker's `render.default` (docs/rendering.md).
    #[arg(long, value_name = "MODE", value_parser = crate::output::parse_render)]
    render: Option<pipeline_ops::messages::RenderMode>,
}

/// `jobs` subcommands.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Lists jobs, newest first.
    List {
        /// Only jobs of this type (e.g. `scrape`).
        #[arg(long = "type")]
        job_type: Option<String>,
        /// Only jobs in this status.
        #[arg(long)]
        status: Option<String>,
        /// Jobs per page, 1..=1000.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Jobs to skip.
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Shows one job: status, counts, its first sources and refused URLs.
    Show {
        /// The job id.
        id: String,
        /// Sources (and refused URLs) shown, 1..=1000.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Lists a job's sources, a page at a time.
    Sources {
        /// The job id.
        id: String,
        /// Sources per page, 1..=1000.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Sources to skip.
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
}

/// The URLs to submit: the arguments, then the file's lines, with where each came from.
struct UrlList {
    urls: Vec<String>,
    /// `file line N` for each URL read from the file, by URL (a refused URL is reported
    /// with its line).
    lines: std::collections::HashMap<String, Vec<usize>>,
    /// The file's lines that hold no URL that could be read, with the reason.
    unreadable: Vec<(usize, String)>,
    /// How the file is named in messages.
    file_name: String,
}

/// One line of a URL file: `None` for a blank or comment line, else the URL. A comment
/// starts with a `#` at the start of the line or after a blank; a `#` inside a URL is its
/// fragment (`https://example.com/#intro`).
fn url_of_line(line: &str) -> Option<&str> {
    let mut end = line.len();
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            end = i;
            break;
        }
    }
    let url = line[..end].trim();
    (!url.is_empty()).then_some(url)
}

/// Splits a URL file into URLs, keeping each line's number; a line that is not UTF-8 is
/// reported by number and the others are still read.
fn parse_url_file(bytes: &[u8], into: &mut UrlList) {
    // A UTF-8 byte-order mark (some editors write one) is not part of the first URL.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let number = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(line) => {
                if let Some(url) = url_of_line(line) {
                    into.urls.push(url.to_owned());
                    into.lines.entry(url.to_owned()).or_default().push(number);
                }
            }
            Err(e) => into.unreadable.push((
                number,
                format!(
                    "not UTF-8 text (invalid byte at column {})",
                    e.valid_up_to() + 1
                ),
            )),
        }
    }
}

fn read_urls(args: &SubmitArgs) -> CmdResult<UrlList> {
    let mut list = UrlList {
        urls: args.urls.clone(),
        lines: Default::default(),
        unreadable: Vec::new(),
        file_name: String::new(),
    };
    if let Some(path) = &args.file {
        let stdin = path.as_os_str() == "-";
        let bytes = if stdin {
            list.file_name = "stdin".into();
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| Failure::usage(format!("cannot read URLs from stdin: {e}")))?;
            buf
        } else {
            list.file_name = path.display().to_string();
            std::fs::read(path).map_err(|e| {
                Failure::usage(format!("cannot read URL file {}: {e}", path.display()))
            })?
        };
        parse_url_file(&bytes, &mut list);
        for (line, why) in &list.unreadable {
            eprintln!("{} line {line}: {why}; skipped", list.file_name);
        }
        if list.urls.is_empty() {
            let what = if bytes.iter().all(u8::is_ascii_whitespace) {
                "is empty"
            } else {
                "holds no URL (only blank, comment or unreadable lines)"
            };
            return Err(Failure::usage(format!("{} {what}", list.file_name)));
        }
    }
    if list.urls.is_empty() {
        return Err(Failure::usage(
            "no URLs given: pass them as arguments or with --file",
        ));
    }
    Ok(list)
}

/// Submits URLs; prints the job id and each refused URL. Exit 0 when at least one URL was
/// queued; 2 when every URL was refused (the job is still recorded, as failed).
pub async fn submit(services: &Services, args: SubmitArgs, as_json: bool) -> CmdResult {
    let list = read_urls(&args)?;
    let req = SubmitRequest {
        urls: list.urls.clone(),
        project_id: None,
        project_name: args.project.clone(),
        source_group: args.source_group.clone(),
        model_token_cap: args.token_cap,
        priority: args.priority.unwrap_or_default(),
        render: args.render,
    };
    let outcome = submit::submit(services, &req, pipeline_store::Actor::Cli)
        .await
        .map_err(|e| match e {
            SubmitError::Invalid(msg) => Failure::usage(msg),
            other => anyhow::Error::new(other).into(),
        })?;
    if as_json {
        print_json(&outcome)?;
    } else {
        outln!("job {}", outcome.job_id);
        outln!(
            "queued {} source(s) in project {}{}",
            outcome.sources.len(),
            outcome.project_id,
            if outcome.already_queued > 0 {
                format!(" ({} were already queued)", outcome.already_queued)
            } else {
                String::new()
            }
        );
        if let Some(cap) = args.token_cap {
            outln!("model token cap {cap} (the schema stage's llm backend)");
        }
        if let Some(render) = args.render {
            outln!("render {render}");
        }
        for bad in &outcome.invalid {
            match list.lines.get(&bad.url) {
                Some(lines) => {
                    let numbers: Vec<String> = lines.iter().map(usize::to_string).collect();
                    eprintln!(
                        "{} line {}: invalid URL `{}`: {}",
                        list.file_name,
                        numbers.join(", "),
                        bad.url,
                        bad.reason
                    );
                }
                None => eprintln!("invalid URL `{}`: {}", bad.url, bad.reason),
            }
        }
        if !outcome.invalid.is_empty() {
            eprintln!(
                "{} URL(s) refused (recorded on job {})",
                outcome.invalid.len(),
                outcome.job_id
            );
        }
    }
    if !list.unreadable.is_empty() && !as_json {
        eprintln!(
            "{} line(s) of {} could not be read (listed above); the other lines were submitted",
            list.unreadable.len(),
            list.file_name
        );
    }
    if outcome.sources.is_empty() {
        return Err(Failure::usage(format!(
            "every URL was refused; job {} is recorded as failed",
            outcome.job_id
        )));
    }
    Ok(())
}

/// Runs one `jobs` subcommand.
pub async fn run(services: &Services, cmd: JobsCommand, as_json: bool) -> CmdResult {
    match cmd {
        JobsCommand::List {
            job_type,
            status,
            limit,
            offset,
        } => list(services, job_type, status, limit, offset, as_json).await,
        JobsCommand::Show { id, limit } => show(services, &id, limit, as_json).await,
        JobsCommand::Sources { id, limit, offset } => {
            sources(services, &id, limit, offset, as_json).await
        }
    }
}

/// The page bounds the API uses too.
fn check_page(limit: i64, offset: i64) -> CmdResult {
    if !(1..=1000).contains(&limit) {
        return Err(Failure::usage(format!(
            "--limit must be between 1 and 1000, got {limit}"
        )));
    }
    if !(0..=1_000_000_000).contains(&offset) {
        return Err(Failure::usage(format!(
            "--offset must be between 0 and 1000000000, got {offset}"
        )));
    }
    Ok(())
}

/// The offset of the next page, when this one was full.
fn next_offset(offset: i64, limit: i64, got: usize) -> Option<i64> {
    (got as i64 == limit).then_some(offset + limit)
}

fn count(counts: &Option<Value>, key: &str) -> String {
    counts
        .as_ref()
        .and_then(|c| c.get(key))
        .and_then(Value::as_i64)
        .map_or_else(|| "-".into(), |n| n.to_string())
}

async fn list(
    services: &Services,
    job_type: Option<String>,
    status: Option<String>,
    limit: i64,
    offset: i64,
    as_json: bool,
) -> CmdResult {
    check_page(limit, offset)?;
    let status = match status {
        None => None,
        Some(s) => Some(JobStatus::parse(&s).ok_or_else(|| {
            let known: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
            Failure::usage(format!(
                "unknown job status `{s}` (expected one of: {})",
                known.join(", ")
            ))
        })?),
    };
    let rows = jobs::list_summaries(
        &services.db,
        &JobFilter {
            job_type,
            status,
            limit,
            offset,
        },
    )
    .await?;
    let next = next_offset(offset, limit, rows.len());
    let ids: Vec<Uuid> = rows.iter().map(|j| j.id).collect();
    let settings = job_settings::of_jobs(&services.db, &ids).await?;
    let no_settings = JobSettings::default();
    let settings_of = |id: &Uuid| settings.get(id).unwrap_or(&no_settings);
    if as_json {
        let items: Vec<Value> = rows
            .iter()
            .map(|j| with_settings(j, settings_of(&j.id)))
            .collect();
        return print_json(&json!({ "items": items, "next_offset": next }));
    }
    if rows.is_empty() {
        outln!("no jobs");
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.job_type.clone(),
                j.status.to_string(),
                settings_of(&j.id).priority.clone(),
                count(&j.result, "total"),
                count(&j.result, "extracted"),
                count(&j.result, "failed"),
                count(&j.result, "invalid_urls"),
                time(&j.created_at),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "TYPE",
            "STATUS",
            "PRIORITY",
            "SOURCES",
            "EXTRACTED",
            "FAILED",
            "INVALID",
            "CREATED",
        ],
        &table,
    );
    if let Some(next) = next {
        outln!("\nmore: pipelinectl jobs list --limit {limit} --offset {next}");
    }
    Ok(())
}

/// Parses a UUID argument, with a clear message.
pub fn parse_id(what: &str, text: &str) -> CmdResult<Uuid> {
    Uuid::parse_str(text.trim())
        .map_err(|e| Failure::usage(format!("`{text}` is not a {what} id (a UUID): {e}")))
}

/// A job summary as JSON with its priority and render mode (`jobs.priority`, `jobs.render`;
/// null: the worker's default) beside its other fields.
fn with_settings(j: &JobSummary, settings: &JobSettings) -> Value {
    let mut v = json!(j);
    if let Value::Object(fields) = &mut v {
        fields.insert("priority".into(), json!(settings.priority));
        fields.insert("render".into(), json!(settings.render));
    }
    v
}

fn print_job_header(j: &JobSummary, settings: &JobSettings) {
    outln!("job        {}", j.id);
    outln!("type       {}", j.job_type);
    outln!("status     {}", j.status);
    outln!("priority   {}", settings.priority);
    outln!(
        "render     {}",
        settings.render.as_deref().unwrap_or("worker default")
    );
    outln!("project    {}", opt(&j.project_id));
    if let Some(group) = &j.source_group {
        outln!("group      {group}");
    }
    outln!("created    {}", time(&j.created_at));
    outln!(
        "started    {}",
        j.started_at.as_ref().map_or("-".into(), time)
    );
    outln!(
        "completed  {}",
        j.completed_at.as_ref().map_or("-".into(), time)
    );
    if let Some(err) = &j.error {
        outln!("error      {err}");
    }
    if let Some(Value::Object(counts)) = &j.result {
        let parts: Vec<String> = counts
            .iter()
            .filter(|(_, v)| v.as_i64() != Some(0))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        outln!("counts     {}", parts.join(" "));
    }
}

/// The schema stage's totals for the job: pages, capped pages, values, model tokens.
fn print_job_facts(f: &JobFacts) {
    let tokens = match f.model_token_cap {
        Some(cap) => format!("{} of a cap of {cap}", f.model_tokens_used),
        None => format!("{} (no cap)", f.model_tokens_used),
    };
    outln!(
        "facts      {} page(s) done, {} capped; {} value(s) grounded, {} ungrounded; \
         model tokens {tokens}",
        f.pages,
        f.capped_pages,
        f.grounded,
        f.ungrounded
    );
}

fn print_sources(sources: &[SourceRow]) {
    let rows: Vec<Vec<String>> = sources
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.status.to_string(),
                clip(&s.url, 80),
                clip(s.last_error.as_deref().unwrap_or_default(), 80),
            ]
        })
        .collect();
    print_table(&["SOURCE", "STATUS", "URL", "LAST ERROR"], &rows);
}

async fn show(services: &Services, id: &str, limit: i64, as_json: bool) -> CmdResult {
    let id = parse_id("job", id)?;
    check_page(limit, 0)?;
    let job = jobs::get_summary(&services.db, id).await?;
    let sources = jobs::sources_page(&services.db, id, limit, 0).await?;
    let invalid = jobs::invalid_urls_page(&services.db, id, limit, 0).await?;
    let sources_next = next_offset(0, limit, sources.len());
    let invalid_next = next_offset(0, limit, invalid.len());
    let job_facts = facts::job_facts(&services.db, id).await?;
    let has_facts = job_facts.pages > 0
        || job_facts.model_tokens_used > 0
        || job_facts.model_token_cap.is_some();
    let settings = job_settings::of_job(&services.db, id)
        .await?
        .unwrap_or_default();
    if as_json {
        return print_json(&json!({
            "job": with_settings(&job, &settings),
            "facts": has_facts.then_some(&job_facts),
            "sources": sources,
            "sources_next_offset": sources_next,
            "invalid_urls": invalid,
            "invalid_urls_next_offset": invalid_next,
        }));
    }
    print_job_header(&job, &settings);
    if has_facts {
        print_job_facts(&job_facts);
    }
    if !invalid.is_empty() {
        outln!("\nrefused URLs:");
        for bad in &invalid {
            outln!("  {}: {}", clip(&bad.url, 100), bad.reason);
        }
        if invalid_next.is_some() {
            outln!("  ... more (the API pages them: GET /api/v1/jobs/{id}/invalid-urls)");
        }
    }
    outln!();
    if sources.is_empty() {
        outln!("no sources");
        return Ok(());
    }
    print_sources(&sources);
    if let Some(next) = sources_next {
        outln!("\nmore: pipelinectl jobs sources {id} --offset {next}");
    }
    Ok(())
}

async fn sources(
    services: &Services,
    id: &str,
    limit: i64,
    offset: i64,
    as_json: bool,
) -> CmdResult {
    let id = parse_id("job", id)?;
    check_page(limit, offset)?;
    // A missing job is "not found", not an empty page.
    jobs::get_summary(&services.db, id).await?;
    let page = jobs::sources_page(&services.db, id, limit, offset).await?;
    let next = next_offset(offset, limit, page.len());
    if as_json {
        return print_json(&json!({"items": page, "next_offset": next}));
    }
    if page.is_empty() {
        outln!("no sources at offset {offset}");
        return Ok(());
    }
    print_sources(&page);
    if let Some(next) = next {
        outln!("\nmore: pipelinectl jobs sources {id} --limit {limit} --offset {next}");
    }
    Ok(())
}

/// `pipelinectl projects`: projects by name with their job and source counts.
pub async fn projects(services: &Services, limit: i64, offset: i64, as_json: bool) -> CmdResult {
    check_page(limit, offset)?;
    let page = jobs::projects_page(&services.db, limit, offset).await?;
    let next = next_offset(offset, limit, page.len());
    if as_json {
        return print_json(&json!({"items": page, "next_offset": next}));
    }
    if page.is_empty() {
        outln!("no projects");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                clip(&p.name, 60),
                p.jobs.to_string(),
                p.sources.to_string(),
                time(&p.created_at),
            ]
        })
        .collect();
    print_table(&["ID", "NAME", "JOBS", "SOURCES", "CREATED"], &rows);
    if let Some(next) = next {
        outln!("\nmore: pipelinectl projects --limit {limit} --offset {next}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> UrlList {
        let mut list = UrlList {
            urls: Vec::new(),
            lines: Default::default(),
            unreadable: Vec::new(),
            file_name: "urls.txt".into(),
        };
        parse_url_file(bytes, &mut list);
        list
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_and_fragments_kept() {
        let list = parse(
            b"\xEF\xBB\xBF# a list\r\n\
              https://example.com/1   # the first\n\
              \n   \t\n\
              https://example.com/2#intro\n\
              https://example.com/3\t# tab before the comment\n\
              #https://example.com/commented-out\n",
        );
        assert_eq!(
            list.urls,
            [
                "https://example.com/1",
                "https://example.com/2#intro",
                "https://example.com/3"
            ]
        );
        assert_eq!(list.lines["https://example.com/2#intro"], [5]);
        assert!(list.unreadable.is_empty());
    }

    #[test]
    fn a_line_that_is_not_utf8_is_reported_by_number_and_the_rest_is_read() {
        let list =
            parse(b"https://example.com/a\nhttps://example.com/\xff\xfe\nhttps://example.com/c");
        assert_eq!(
            list.urls,
            ["https://example.com/a", "https://example.com/c"]
        );
        assert_eq!(list.unreadable.len(), 1);
        assert_eq!(list.unreadable[0].0, 2);
        assert!(
            list.unreadable[0].1.contains("not UTF-8"),
            "{:?}",
            list.unreadable
        );
        assert_eq!(list.lines["https://example.com/c"], [3]);
    }
}
