//! `pipelinectl reextract`: rebuilds stored pages' Markdown and metadata from the body
//! already in `sources.raw_content`, without fetching anything again.
//!
//! Each page is sent back to the extraction workers as an ordinary extraction message (the
//! path a scraped page takes), so a re-extraction is an extraction: content, Markdown,
//! metadata and chunks are written again in one transaction, with the same delivery
//! guarantees, events in the trail and failure handling. Chunks whose text did not change
//! keep their vectors (only changed chunks are embedded again), so re-extracting pages that
//! extract-core reads as before costs their extraction, not their embeddings.
//!
//! By default only extracted pages without Markdown are queued (pages extracted before the
//! columns existed): a second run resumes, and a page already queued is not queued twice.
//! `--force` queues every extracted page of the scope (after extract-core changed). Pages
//! not extracted (queued, failed, parked) are left alone: their own messages or a person's
//! retry extract them. `--status` only prints the progress.

use anyhow::Context;
use pipeline_ops::{Family, Services};
use pipeline_store::documents::{self, Scope};

use crate::jobs::parse_id;
use crate::output::{self, CmdResult, Failure, outln};

/// Sources read per query.
const PAGE: i64 = 1000;

/// Arguments of `pipelinectl reextract`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["job", "project", "all"])))]
pub struct ReextractArgs {
    /// The sources this job asked for.
    #[arg(long)]
    pub job: Option<String>,
    /// A project's sources (name or id).
    #[arg(long)]
    pub project: Option<String>,
    /// Every source.
    #[arg(long)]
    pub all: bool,
    /// Queue at most this many sources.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Also re-extract pages that already have Markdown (by default only those without).
    #[arg(long)]
    pub force: bool,
    /// Only print how many extracted pages of the scope still lack Markdown.
    #[arg(long, conflicts_with_all = ["force", "limit"])]
    pub status: bool,
}

/// Queues the pages to re-extract (or, with `--status`, prints the progress).
pub async fn run(services: &Services, args: ReextractArgs, as_json: bool) -> CmdResult {
    let db = &services.db;
    let scope = if let Some(job) = &args.job {
        let id = parse_id("job", job)?;
        // A typo in an id should say "no such job", not "0 pages".
        pipeline_store::jobs::get_summary(db, id).await?;
        Scope::Job(id)
    } else if let Some(project) = args.project.as_deref() {
        let id = crate::search::project(db, Some(project))
            .await?
            .ok_or_else(|| Failure::not_found(format!("no project `{project}`")))?;
        Scope::Project(id)
    } else if args.all {
        Scope::All
    } else {
        return Err(Failure::usage("give --job ID, --project NAME|ID or --all"));
    };
    let limit = args.limit.unwrap_or(u64::MAX);
    let (mut queued, mut already) = (0u64, 0u64);
    if !args.status {
        let mut after = None;
        'pages: loop {
            let page = documents::to_reextract(db, scope, args.force, after, PAGE)
                .await
                .context("listing the pages to re-extract")?;
            let room = limit.saturating_sub(queued + already);
            let (enqueued, old) = crate::reembed::queue_extractions(services, &page, room).await?;
            queued += enqueued.len() as u64;
            already += old;
            let full = (page.len() as u64) > room;
            // Each queued page's trail says why it is extracted again, and by whom.
            pipeline_store::sources::record_events_for(
                db,
                &enqueued,
                "enqueued",
                Family::Extraction.as_str(),
                pipeline_store::Actor::Cli,
                &serde_json::json!({ "reason": "reextract", "force": args.force }),
            )
            .await
            .context("recording the queued pages in their trails")?;
            if full {
                break 'pages;
            }
            if !as_json && !page.is_empty() {
                eprintln!("queued {queued}, already queued {already}...");
            }
            if (page.len() as i64) < PAGE {
                break;
            }
            after = page.last().map(|p| p.0);
        }
    }
    let (extracted, missing) = documents::progress(db, scope)
        .await
        .context("counting the pages")?;
    if as_json {
        return output::print_json(&serde_json::json!({
            "sources_queued": queued,
            "sources_already_queued": already,
            "extracted": extracted,
            "without_markdown": missing,
        }));
    }
    if !args.status {
        outln!(
            "{queued} page(s) queued for re-extraction, {already} already queued; \
             the extraction workers rebuild them from the stored bodies"
        );
    }
    outln!(
        "{} of {extracted} extracted page(s) have Markdown and metadata; {missing} to go \
         (`pipelinectl reextract ... --status` to follow{})",
        extracted - missing,
        if args.force || missing > 0 {
            ""
        } else {
            "; --force re-extracts pages that have them"
        }
    );
    Ok(())
}
