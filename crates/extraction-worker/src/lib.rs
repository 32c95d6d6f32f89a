//! The extraction worker: consumes the extraction queue and turns each scraped source into
//! extractions (one per chunk of its main text), vectors and entities.
//!
//! Per delivery ([`ExtractionHandler`]):
//! 1. load the source's stored body; extract the main text and title, cut it into sections
//!    and overlapping chunks, and find entities (`extract-core`, in `spawn_blocking`);
//! 2. in one short transaction: the cleaned text into `sources.content`, one `extractions`
//!    row per chunk (upserted on `(source_id, extraction_type, chunk_index)`; chunks beyond
//!    the new last one deleted), the entities and their links, with `entities_status`;
//! 3. embed the chunks still without a vector: each distinct text once, from the
//!    [`EmbeddingCache`] when the same model embedded the same text before, else through the
//!    process's one [`Batcher`], which gathers texts across concurrent deliveries; no
//!    transaction is open meanwhile;
//! 4. in one transaction: the vectors, `embeddings_created = true`, and the source's
//!    `extracted` status with its `succeeded` event.
//!
//! An embedding failure leaves the rows with `embeddings_created = false` and the source
//! not done; the runner retries transient failures and then dead-letters, and a redriven
//! message embeds only what is still missing.
//!
//! Environment variables read here: `PIPELINE_EMBEDDING_API_KEY` (through
//! [`Settings::embedding_api_key`]).

mod analyze;
mod cache;
mod handler;

use std::sync::Arc;
use std::time::Duration;

use embedder::{Batcher, BatcherConfig, EmbedError, Embedder};
use extract_core::{ChunkOptions, Limits};
use pipeline_core::settings::EmbeddingBackend;
use pipeline_core::{Settings, SettingsError, Sources};
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_runner::RunnerOptions;
use tokio_util::sync::CancellationToken;

pub use analyze::{Analysis, Body, analyze, analyze_body, analyze_pdf};
pub use cache::{EmbeddingCache, TextKey, text_key};
pub use handler::ExtractionHandler;

/// Why the worker could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The embedding API key could not be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The embedding settings are unusable.
    #[error(transparent)]
    Embedder(#[from] EmbedError),
}

pub use pipeline_search::embedder_from_settings;

/// The process's batcher over the configured embedder (one per process, shared by every
/// delivery). Reads the API key from the process environment.
///
/// # Errors
/// As [`embedder_from_settings`], or an unreadable key file.
pub fn batcher_from_settings(settings: &Settings) -> Result<Batcher, BuildError> {
    let key = settings.embedding_api_key(&Sources::from_process())?;
    let embedder = embedder_from_settings(settings, key)?;
    Ok(spawn_batcher(settings, embedder))
}

/// Starts a batcher over `embedder` with the `[embedding]` batch size and window.
pub fn spawn_batcher(settings: &Settings, embedder: Embedder) -> Batcher {
    Batcher::spawn(
        embedder,
        BatcherConfig {
            max_batch: settings.embedding.batch_size,
            max_wait_ms: settings.embedding.batch_window_ms,
            ..BatcherConfig::default()
        },
    )
}

/// The chunk bounds of the `[extraction]` settings.
pub fn chunk_options(settings: &Settings) -> ChunkOptions {
    ChunkOptions {
        max_chars: settings.extraction.chunk_max_chars,
        overlap_chars: settings.extraction.chunk_overlap_chars,
    }
}

/// What one page may cost, from the `[extraction]` settings.
pub fn limits(settings: &Settings) -> Limits {
    let e = &settings.extraction;
    Limits {
        max_input_bytes: e.max_html_bytes,
        max_depth: e.max_depth,
        max_elements: e.max_elements,
        max_attributes: e.max_attributes,
        max_attributes_per_element: e.max_attributes_per_element,
        max_text_bytes: e.max_text_bytes,
        max_chunks: e.max_chunks,
        max_entities: e.max_entities,
        max_work: e.max_work_units,
        time_budget_ms: e.time_budget_ms,
        max_pdf_pages: e.max_pdf_pages,
        max_pdf_decoded_bytes: e.max_pdf_decoded_bytes,
    }
}

/// The handler for `services`, embedding through `batcher`, with the configured limits.
pub fn handler(services: &Services, batcher: Batcher) -> ExtractionHandler {
    ExtractionHandler::new(
        services.db.clone(),
        services.progress.clone(),
        services.queue(Family::Facts).clone(),
        batcher,
        chunk_options(&services.settings),
    )
    .with_limits(
        limits(&services.settings),
        Duration::from_millis(services.settings.extraction.abandon_grace_ms),
    )
    .with_max_abandoned(max_abandoned(&services.settings))
    .with_cache(embedding_cache(services))
}

/// The embedding cache of the `[embedding]` settings: `cache.max_entries` vectors per
/// model, off for the `hashing` backend (hashing a text costs less than looking it up).
pub fn embedding_cache(services: &Services) -> EmbeddingCache {
    let e = &services.settings.embedding;
    let max_entries = match e.backend {
        EmbeddingBackend::Hashing => 0,
        EmbeddingBackend::Minilm | EmbeddingBackend::Openai => e.cache.max_entries,
    };
    EmbeddingCache::new(services.db.clone(), max_entries)
}

/// `extraction.max_abandoned`, the concurrency when unset.
pub fn max_abandoned(settings: &Settings) -> usize {
    let e = &settings.extraction;
    e.max_abandoned.unwrap_or(e.concurrency)
}

/// The runner options of the `[extraction]`, `[queue]` and `[shutdown]` settings.
pub fn runner_options(settings: &Settings) -> RunnerOptions {
    RunnerOptions {
        concurrency: settings.extraction.concurrency,
        reserve_batch: settings.queue.reserve_batch,
        drain_timeout: settings.shutdown.drain_timeout(),
    }
}

/// Consumes the extraction queue until `cancel` fires, then drains within the configured
/// timeout. Returns whether the drain was complete.
pub async fn run(services: &Services, batcher: Batcher, cancel: CancellationToken) -> bool {
    let queue = services.queue(Family::Extraction).clone();
    let handler = Arc::new(handler(services, batcher));
    let opts = runner_options(&services.settings);
    pipeline_runner::run(queue, handler, opts, services.activity.clone(), cancel).await
}
