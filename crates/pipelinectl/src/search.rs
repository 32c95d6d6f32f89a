//! `pipelinectl search`: the chunks that best answer a query, straight from Postgres (the
//! vectors are loaded into memory for the one query), ranked as the API ranks them; each
//! with its page, the section it falls under ("Guide › Install › Linux") and the job.

use crate::output::outln;
use anyhow::Context;
use pipeline_ops::Services;
use pipeline_search::{MAX_K, Mode, Searcher};
use uuid::Uuid;

use crate::output::{self, CmdResult, Failure};

/// Arguments of `pipelinectl search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// The text to look for.
    pub query: String,
    /// Only this project (name or id).
    #[arg(long)]
    pub project: Option<String>,
    /// Results, 1..=100.
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// Ranking: hybrid (full-text fused with vectors), full-text or vector.
    #[arg(long, value_enum, default_value_t = ModeArg::Hybrid)]
    pub mode: ModeArg,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// Full-text and vector ranks fused by reciprocal rank fusion.
    Hybrid,
    /// Postgres full-text search only.
    FullText,
    /// Vector similarity only.
    Vector,
}

/// Runs the search and prints a table (or JSON).
pub async fn run(services: &Services, args: SearchArgs, as_json: bool) -> CmdResult {
    if !(1..=MAX_K).contains(&args.k) {
        return Err(Failure::usage(format!("-k must be within 1..={MAX_K}")));
    }
    let query = args.query.trim();
    if query.is_empty() {
        return Err(Failure::usage("the query must not be blank"));
    }
    let db = &services.db;
    let project = project(db, args.project.as_deref()).await?;
    let mode = match args.mode {
        ModeArg::Hybrid => Mode::Hybrid,
        ModeArg::FullText => Mode::FullText,
        ModeArg::Vector => Mode::Vector,
    };
    let key = services
        .settings
        .embedding_api_key(&pipeline_core::Sources::from_process())
        .map_err(|e| Failure::usage(e.to_string()))?;
    let embedder = if mode == Mode::FullText {
        // No vectors needed: a missing model must not stop a full-text search.
        embedder::Embedder::Hashing(embedder::HashingEmbedder::new(Default::default()))
    } else {
        pipeline_search::embedder_from_settings(&services.settings, key)
            .map_err(|e| Failure::usage(e.to_string()))?
    };
    let searcher = Searcher::new(embedder);
    let hits = searcher
        .search(db, query, project, args.k, mode)
        .await
        .context("searching")?;
    if as_json {
        let items: Vec<serde_json::Value> = hits
            .iter()
            .map(|h| {
                serde_json::json!({
                    "score": h.score,
                    "text": h.chunk.text,
                    "url": h.chunk.url,
                    "title": h.chunk.title,
                    "job_id": h.chunk.job_id,
                    "heading_trail": h.chunk.heading_trail,
                    "published": h.chunk.published(),
                    "language": h.chunk.language,
                    "site_name": h.chunk.site_name,
                    "page": h.chunk.page,
                    "source_id": h.chunk.source_id,
                    "project_id": h.chunk.project_id,
                    "extraction_id": h.chunk.extraction_id,
                    "chunk_index": h.chunk.chunk_index,
                    "text_rank": h.text_rank,
                    "vector_rank": h.vector_rank,
                })
            })
            .collect();
        return output::print_json(&serde_json::json!({
            "model": searcher.model(),
            "results": items,
        }));
    }
    if hits.is_empty() {
        outln!("no chunk matches");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = hits
        .iter()
        .enumerate()
        .map(|(i, h)| {
            vec![
                (i + 1).to_string(),
                format!("{:.4}", h.score),
                output::clip(&h.chunk.title.clone().unwrap_or_default(), 30),
                output::clip(&h.chunk.url, 40),
                output::opt(&h.chunk.job_id),
                output::clip(&section(&h.chunk), 40),
                output::clip(&h.chunk.text.replace(['\n', '\t'], " "), 60),
            ]
        })
        .collect();
    output::print_table(
        &["#", "SCORE", "TITLE", "URL", "JOB", "SECTION", "TEXT"],
        &rows,
    );
    Ok(())
}

/// Where in its page a hit falls: its heading trail, else the page of a PDF, else `-`.
fn section(chunk: &pipeline_store::search::ChunkHit) -> String {
    match (&chunk.heading_trail, chunk.page) {
        (Some(trail), _) => trail.clone(),
        (None, Some(page)) => format!("page {page}"),
        (None, None) => "-".into(),
    }
}

/// `--project` (a name or an id) as an id; an unknown name is "not found" (exit 3).
pub async fn project(db: &sqlx::PgPool, project: Option<&str>) -> Result<Option<Uuid>, Failure> {
    let Some(p) = project else { return Ok(None) };
    if let Ok(id) = Uuid::parse_str(p) {
        return Ok(Some(id));
    }
    let id = pipeline_store::search::project_id(db, p)
        .await
        .context("looking up the project")?
        .ok_or_else(|| Failure::not_found(format!("no project named `{p}`")))?;
    Ok(Some(id))
}
