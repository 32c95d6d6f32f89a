//! `pipelinectl reembed`: gives every chunk a vector of the configured model, in the
//! background. Each extracted source with a chunk whose vector is missing or from another
//! model gets an extraction message; the extraction workers re-run it and embed only those
//! chunks (a chunk whose vector is already of the model is kept). Resumable: a second run
//! finds only what is still missing, and a source already queued is not queued twice.
//! `--status` prints the progress without queueing anything.

use crate::output::outln;
use crate::output::{self, CmdResult};
use anyhow::Context;
use pipeline_ops::messages::{Priority, SourceMessage};
use pipeline_ops::{Family, Services};

const PAGE: i64 = 1000;

/// Extraction messages for `sources` (`(source, job)`), at most `room` of them: the sources
/// newly queued, and how many were queued already (a source is in a family's queue at most
/// once). One enqueue per source, so each one's outcome is known (the caller records events
/// for the new ones); these are operator commands over pages of at most [`PAGE`] sources.
pub(crate) async fn queue_extractions(
    services: &Services,
    sources: &[(uuid::Uuid, Option<uuid::Uuid>)],
    room: u64,
) -> anyhow::Result<(Vec<(uuid::Uuid, Option<uuid::Uuid>)>, u64)> {
    let queue = services.queue(Family::Extraction);
    let (mut queued, mut already) = (Vec::new(), 0u64);
    let take = usize::try_from(room).unwrap_or(usize::MAX);
    let ids: Vec<uuid::Uuid> = sources.iter().take(take).map(|s| s.0).collect();
    let lanes = pipeline_store::sources::lanes_of(&services.db, &ids)
        .await
        .context("reading the sources' projects")?;
    for &(source_id, job_id) in sources.iter().take(take) {
        // Operator re-runs are backfills: the project's lane at `low`, behind its live work.
        let msg = SourceMessage {
            source_id,
            job_id,
            url: None,
            project_id: lanes.get(&source_id).map(|l| l.0),
            priority: Priority::Low,
            render: None,
        };
        if queue
            .enqueue_in(&msg.lane(), &msg.id(), &msg.body())
            .await
            .context("queueing an extraction message")?
        {
            queued.push((source_id, job_id));
        } else {
            already += 1;
        }
    }
    Ok((queued, already))
}

/// Arguments of `pipelinectl reembed`.
#[derive(Debug, clap::Args)]
pub struct ReembedArgs {
    /// Only this project (name or id).
    #[arg(long)]
    pub project: Option<String>,
    /// The model the vectors must be of (default: the configured embedder's model; the
    /// workers embed with theirs, so set them to the same).
    #[arg(long)]
    pub model: Option<String>,
    /// Only print how many chunks still lack a vector of the model.
    #[arg(long)]
    pub status: bool,
}

/// Queues the sources to re-embed (or, with `--status`, prints the progress).
pub async fn run(services: &Services, args: ReembedArgs, as_json: bool) -> CmdResult {
    let db = &services.db;
    let project = crate::search::project(db, args.project.as_deref()).await?;
    let model = args
        .model
        .unwrap_or_else(|| pipeline_search::model_name(&services.settings));
    let mut queued = 0u64;
    let mut already = 0u64;
    if !args.status {
        let mut after = None;
        loop {
            let page = pipeline_store::search::sources_to_reembed(db, &model, project, after, PAGE)
                .await
                .context("listing the sources to re-embed")?;
            let (new, old) = queue_extractions(services, &page, u64::MAX).await?;
            queued += new.len() as u64;
            already += old;
            if (page.len() as i64) < PAGE {
                break;
            }
            after = page.last().map(|p| p.0);
        }
    }
    let (missing, total) = pipeline_store::search::reembed_progress(db, &model, project)
        .await
        .context("counting chunks")?;
    if as_json {
        return output::print_json(&serde_json::json!({
            "model": model,
            "sources_queued": queued,
            "sources_already_queued": already,
            "chunks_without_model": missing,
            "chunks": total,
        }));
    }
    if !args.status {
        outln!(
            "model {model}: {queued} source(s) queued for re-embedding, {already} already queued"
        );
    }
    outln!(
        "{} of {total} chunk(s) have a vector of {model}; {missing} to go (run `pipelinectl reembed --status` to follow)",
        total - missing
    );
    Ok(())
}
