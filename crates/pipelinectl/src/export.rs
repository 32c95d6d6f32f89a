//! `pipelinectl export KIND`: sources, chunks, entities or records as JSON Lines or CSV, to
//! standard output or `--output FILE`, through the same [`pipeline_store::export`] as the
//! API's `/api/v1/export/{kind}` (same rows, order, cursors and trailer). Needs Postgres
//! only.
//!
//! Progress goes to stderr every few seconds for a long export (rows written and the rate),
//! and a summary with the last cursor at the end. A failure half-way names the cursor of the
//! last row written, so `--cursor` resumes right after it.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use pipeline_core::Settings;
use pipeline_store::SourceStatus;
use pipeline_store::export::{Cursor, Exporter, Filter, Format, Kind, Request};

use crate::jobs::parse_id;
use crate::output::{CmdResult, EXIT_CLOSED_PIPE, Failure};

/// How often progress is reported on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// `export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// What to export: sources, chunks, entities or records.
    #[arg(value_parser = ["sources", "chunks", "entities", "records"])]
    kind: String,
    /// Only this project's rows (its name or id).
    #[arg(long)]
    project: Option<String>,
    /// Only rows of the sources this job asked for (records: with a value from one).
    #[arg(long)]
    job: Option<String>,
    /// Only rows whose time is at or after this RFC 3339 instant (sources and chunks:
    /// created_at; entities: first_seen; records: updated_at).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only rows whose time is before this RFC 3339 instant.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only rows of sources in this status (queued, extracted, dead_lettered, ...).
    #[arg(long)]
    status: Option<String>,
    /// jsonl (one object per line, then a trailer line) or csv (a header row).
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
    format: String,
    /// Chunks: add each chunk's embedding model, dimensions and vector.
    #[arg(long)]
    vectors: bool,
    /// Resume after the row that carried this cursor (same kind and filters).
    #[arg(long)]
    cursor: Option<String>,
    /// Stop after this many rows.
    #[arg(long)]
    limit: Option<u64>,
    /// Write here instead of standard output (created or truncated).
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<std::path::PathBuf>,
}

fn time(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, Failure> {
    v.map(|v| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                Failure::usage(format!(
                    "--{name} must be an RFC 3339 time such as 2026-12-01T00:00:00Z, got `{v}`"
                ))
            })
    })
    .transpose()
}

/// Runs the export.
pub async fn run(settings: &Settings, args: ExportArgs) -> CmdResult {
    let kind = Kind::parse(&args.kind).ok_or_else(|| Failure::usage("unknown kind"))?;
    let format = Format::parse(&args.format).ok_or_else(|| Failure::usage("unknown format"))?;
    let status = match args.status.as_deref() {
        None => None,
        Some(s) => Some(SourceStatus::parse(s).ok_or_else(|| {
            Failure::usage(format!(
                "--status must be one of {}, got `{s}`",
                SourceStatus::ALL.map(|s| s.as_str()).join(", ")
            ))
        })?),
    };
    let cursor = match args.cursor.as_deref() {
        None => None,
        Some(c) => Some(Cursor::parse(c).map_err(Failure::usage)?),
    };
    let job_id = match args.job.as_deref() {
        None => None,
        Some(j) => Some(parse_id("job", j)?),
    };
    let pool = pipeline_core::pools::pg_pool(settings).map_err(anyhow::Error::from)?;
    let project_id = match args.project.as_deref() {
        None => None,
        Some(p) => Some(
            pipeline_store::facts::find_project(&pool, p)
                .await
                .context("finding the project")?
                .ok_or_else(|| Failure::not_found(format!("no project named or with id `{p}`")))?
                .id,
        ),
    };
    let request = Request {
        kind,
        format,
        filter: Filter {
            project_id,
            job_id,
            since: time("since", args.since.as_deref())?,
            until: time("until", args.until.as_deref())?,
            status,
        },
        vectors: args.vectors,
        cursor,
        limit: args.limit,
    };
    request.check().map_err(|m| {
        Failure::usage(
            m.replace("vectors applies", "--vectors applies")
                .replace("since must", "--since must")
                .replace("limit must", "--limit must"),
        )
    })?;

    let (mut out, target): (Box<dyn Write>, String) = match &args.output {
        Some(path) => (
            Box::new(std::io::BufWriter::with_capacity(
                1 << 16,
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            )),
            path.display().to_string(),
        ),
        None => (
            Box::new(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )),
            "standard output".into(),
        ),
    };
    let mut exporter = Exporter::new(pool, request);
    let started = Instant::now();
    let mut reported = started;
    loop {
        let piece = match exporter.next_chunk().await {
            Ok(Some(piece)) => piece,
            Ok(None) => break,
            Err(e) => {
                let _ = out.flush();
                return Err(Failure::from(anyhow::Error::new(e).context(format!(
                    "export stopped after {} rows{}",
                    exporter.rows(),
                    resume_hint(&exporter)
                ))));
            }
        };
        if let Err(e) = out.write_all(&piece) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(i32::from(EXIT_CLOSED_PIPE));
            }
            return Err(Failure::from(anyhow::Error::new(e).context(format!(
                "writing to {target} after {} rows{}",
                exporter.rows(),
                resume_hint(&exporter)
            ))));
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "export: {} {kind} rows in {secs:.0} s ({:.0} rows/s)",
                exporter.rows(),
                exporter.rows() as f64 / secs
            );
        }
    }
    if let Err(e) = out.flush() {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(EXIT_CLOSED_PIPE));
        }
        return Err(Failure::from(
            anyhow::Error::new(e).context(format!("writing to {target}")),
        ));
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "export: {} {kind} rows to {target} in {secs:.1} s{}",
        exporter.rows(),
        exporter
            .cursor()
            .map(|c| format!("; last cursor {c}"))
            .unwrap_or_default()
    );
    Ok(())
}

fn resume_hint(exporter: &Exporter) -> String {
    match exporter.cursor() {
        Some(c) => format!("; resume with --cursor {c}"),
        None => String::new(),
    }
}
