//! Chunk search: "which pages say X?".
//!
//! A [`Searcher`] embeds the query with the configured embedder (the one the extraction
//! worker stores vectors with: [`embedder_from_settings`]) and ranks chunks three ways
//! ([`Mode`]): Postgres full-text search, exact vector similarity over an in-memory
//! [`VectorIndex`], or both fused by reciprocal rank fusion (the default): each chunk scores
//! `sum over the two lists of 1 / (60 + rank)`, so a chunk near the top of either list ranks
//! high and one in both ranks highest, without comparing the lists' incomparable scores.
//!
//! Environment variables read here: `PIPELINE_EMBEDDING_API_KEY` (through
//! [`Settings::embedding_api_key`], for the `openai` backend).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use embedder::{
    EmbedError, Embedder, EmbedderConfig, HashingConfig, MiniLmConfig, OpenAiConfig, Precision,
};
use pipeline_core::probes::Components;
use pipeline_core::settings::{EmbeddingBackend, MiniLmPrecision};
use pipeline_core::{Settings, SettingsError};
use pipeline_store::search::{self, ChunkHit};
use pipeline_store::vector_index::VectorIndex;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The constant of reciprocal rank fusion (60, as in Cormack et al. 2009).
pub const RRF_K: f32 = 60.0;

/// Most results one search returns.
pub const MAX_K: usize = 100;

/// The name under which the vector index reports to `/ready`.
pub const INDEX_COMPONENT: &str = "vector_index";

/// Refreshes `index` from `db` and reports the outcome to `health`: a refresh that fails
/// makes the process unready, with the reason, until one succeeds.
async fn refresh_reporting(
    index: &VectorIndex,
    db: &sqlx::PgPool,
    health: &Components,
) -> Result<usize, SearchError> {
    match index.refresh(db).await {
        Ok(n) => {
            health.healthy(INDEX_COMPONENT);
            Ok(n)
        }
        Err(e) => {
            health.failing(INDEX_COMPONENT, format!("refresh failed: {e}"));
            Err(e.into())
        }
    }
}

/// Why the embedder or a search failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The embedding API key could not be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The embedder could not be built or could not embed the query.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// A database query failed.
    #[error(transparent)]
    Store(#[from] pipeline_store::StoreError),
}

/// The embedder the `[embedding]` settings describe. `api_key` is used by `openai` only.
///
/// # Errors
/// [`EmbedError::Config`] when the model files are missing (the message names the install
/// command) or the `openai` settings are unusable.
pub fn embedder_from_settings(
    settings: &Settings,
    api_key: Option<secrecy::SecretString>,
) -> Result<Embedder, EmbedError> {
    let e = &settings.embedding;
    let cfg = match e.backend {
        EmbeddingBackend::Minilm => EmbedderConfig::Minilm(MiniLmConfig {
            model_dir: e.minilm.model_dir.clone().into(),
            max_tokens: e.minilm.max_tokens,
            batch_size: e.batch_size,
            precision: match e.minilm.precision {
                MiniLmPrecision::F32 => Precision::F32,
                MiniLmPrecision::Int8 => Precision::Int8,
            },
        }),
        EmbeddingBackend::Hashing => EmbedderConfig::Hashing(HashingConfig {
            dims: e.hashing.dims,
            ..HashingConfig::default()
        }),
        EmbeddingBackend::Openai => EmbedderConfig::Openai(OpenAiConfig {
            url: openai_base(&e.openai.url),
            model: e.openai.model.clone(),
            dims: e.openai.dims,
            batch_size: e.batch_size,
            timeout_ms: e.openai.timeout_ms,
            send_dimensions: false,
        }),
    };
    Embedder::from_config(cfg, api_key)
}

/// The model name the `[embedding]` settings store vectors under, without loading the
/// model (what `pipelinectl reembed` compares stored vectors with).
pub fn model_name(settings: &Settings) -> String {
    let e = &settings.embedding;
    match e.backend {
        EmbeddingBackend::Minilm => embedder::MINILM_MODEL.to_owned(),
        EmbeddingBackend::Hashing => embedder::HashingEmbedder::new(HashingConfig {
            dims: e.hashing.dims,
            ..HashingConfig::default()
        })
        .model()
        .to_owned(),
        EmbeddingBackend::Openai => e.openai.model.clone(),
    }
}

/// The configured URL is the server's base ("/v1/embeddings" is appended, as the defaults
/// file says); a URL that already ends in `/v1` or `/embeddings` is taken as it is.
fn openai_base(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/v1") || url.ends_with("/embeddings") {
        url.to_owned()
    } else {
        format!("{url}/v1")
    }
}

/// How chunks are ranked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Full-text and vector ranks fused by reciprocal rank fusion.
    #[default]
    Hybrid,
    /// Postgres full-text search only (`ts_rank_cd`).
    FullText,
    /// Vector similarity only (cosine).
    Vector,
}

/// One search result.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The chunk and its page.
    pub chunk: ChunkHit,
    /// The ranking score: the fused score (hybrid), `ts_rank_cd` (full text) or the cosine
    /// (vector). Higher is better; comparable within one answer only.
    pub score: f32,
    /// The chunk's full-text rank (1 = best), if it was a full-text candidate.
    pub text_rank: Option<usize>,
    /// The chunk's vector rank (1 = best), if it was a vector candidate.
    pub vector_rank: Option<usize>,
}

/// Embeds queries and ranks chunks. Cheap to clone.
#[derive(Clone)]
pub struct Searcher {
    embedder: Embedder,
    index: Arc<VectorIndex>,
    /// Where and how often to refresh once searches start (see [`Self::spawn_refresher`]).
    refresher: Option<(sqlx::PgPool, Duration)>,
    /// Where each refresh's outcome is reported (as [`INDEX_COMPONENT`]).
    health: Components,
    refreshing: Arc<std::sync::atomic::AtomicBool>,
}

impl Searcher {
    /// A searcher over `embedder`'s vectors; its index is empty until [`Self::refresh`].
    pub fn new(embedder: Embedder) -> Self {
        let index = Arc::new(VectorIndex::new(embedder.model()));
        Self {
            embedder,
            index,
            refresher: None,
            health: Components::default(),
            refreshing: Arc::default(),
        }
    }

    /// The model whose vectors are searched.
    pub fn model(&self) -> &str {
        self.embedder.model()
    }

    /// The in-memory index.
    pub fn index(&self) -> &Arc<VectorIndex> {
        &self.index
    }

    /// Reads new vectors from Postgres into the index (all of them the first time).
    ///
    /// # Errors
    /// The database error.
    pub async fn refresh(&self, db: &sqlx::PgPool) -> Result<usize, SearchError> {
        refresh_reporting(&self.index, db, &self.health).await
    }

    /// Loads the index from Postgres now (in the background, again every `every` until a
    /// load succeeds: the database may still be starting, or waiting for its migrations),
    /// and refreshes it every `every` from the first search on, until the last clone of the
    /// index is dropped. A process that never searches costs the database one query once
    /// loaded. Each outcome is reported to `health` as [`INDEX_COMPONENT`] (a failure makes
    /// `/ready` answer 503) and a failure is logged; the next tick tries again.
    pub fn spawn_refresher(&mut self, db: sqlx::PgPool, every: Duration, health: Components) {
        self.health = health.clone();
        let weak = Arc::downgrade(&self.index);
        let pool = db.clone();
        tokio::spawn(async move {
            let mut logged = false;
            loop {
                let Some(index) = weak.upgrade() else { return };
                if index.is_loaded().await {
                    return;
                }
                match refresh_reporting(&index, &pool, &health).await {
                    Ok(_) => return,
                    // Once: a database still waiting for migrations fails every second.
                    Err(e) if !logged => {
                        tracing::warn!(error = %e, "vector index load failed; trying again");
                        logged = true;
                    }
                    Err(_) => {}
                }
                drop(index);
                tokio::time::sleep(every).await;
            }
        });
        self.refresher = Some((db, every));
    }

    fn start_refreshing(&self) {
        let Some((db, every)) = self.refresher.clone() else {
            return;
        };
        if self
            .refreshing
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let weak = Arc::downgrade(&self.index);
        let health = self.health.clone();
        tokio::spawn(async move {
            loop {
                let Some(index) = weak.upgrade() else { return };
                match refresh_reporting(&index, &db, &health).await {
                    Ok(n) if n > 0 => tracing::debug!(rows = n, "vector index refreshed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "vector index refresh failed"),
                }
                drop(index);
                tokio::time::sleep(every).await;
            }
        });
    }

    /// The best `k` chunks for `query`, best first, in `project` or in every project.
    /// The index is loaded first if it never was.
    ///
    /// # Errors
    /// Embedding the query or a database query failed.
    pub async fn search(
        &self,
        db: &sqlx::PgPool,
        query: &str,
        project: Option<Uuid>,
        k: usize,
        mode: Mode,
    ) -> Result<Vec<Hit>, SearchError> {
        self.search_in(db, query, project, None, k, mode).await
    }

    /// As [`Searcher::search`], keeping only chunks of the pages in `sources` when it is
    /// given. The filter applies to the candidates: each list then reads the best
    /// [`FILTERED_DEPTH`] chunks instead of a few times `k`, so a page that ranks below
    /// that in both lists is not found.
    ///
    /// # Errors
    /// Embedding the query or a database query failed.
    pub async fn search_in(
        &self,
        db: &sqlx::PgPool,
        query: &str,
        project: Option<Uuid>,
        sources: Option<&std::collections::HashSet<Uuid>>,
        k: usize,
        mode: Mode,
    ) -> Result<Vec<Hit>, SearchError> {
        let k = k.clamp(1, MAX_K);
        // Each list gets more candidates than asked for: fusion promotes chunks that are
        // only moderately ranked in one list but present in both.
        let depth = if sources.is_some() {
            FILTERED_DEPTH
        } else {
            (k * 4).max(50)
        };
        let text = if mode == Mode::Vector {
            Vec::new()
        } else {
            search::full_text(db, project, query, depth as i64).await?
        };
        let vector = if mode == Mode::FullText {
            Vec::new()
        } else {
            if !self.index.is_loaded().await {
                self.refresh(db).await?;
            }
            self.start_refreshing();
            let q = self.embedder.embed(&[query.to_owned()]).await?;
            let q = q.into_iter().next().unwrap_or_default();
            self.index.search(project, &q, depth).await
        };
        let ranked = fuse(&text, &vector, mode);
        let wanted: Vec<Uuid> = ranked.iter().map(|r| r.0).collect();
        let mut chunks: HashMap<Uuid, ChunkHit> = search::chunks(db, &wanted)
            .await?
            .into_iter()
            .map(|c| (c.extraction_id, c))
            .collect();
        Ok(ranked
            .into_iter()
            // A chunk deleted since it was indexed (the page was re-chunked) drops out here.
            .filter_map(|(id, score, t, v)| {
                let chunk = chunks.remove(&id)?;
                // The index spans projects only when asked to; this guards a stale entry.
                if project.is_some_and(|p| p != chunk.project_id) {
                    return None;
                }
                if sources.is_some_and(|s| !s.contains(&chunk.source_id)) {
                    return None;
                }
                Some(Hit {
                    chunk,
                    score,
                    text_rank: t,
                    vector_rank: v,
                })
            })
            .take(k)
            .collect())
    }
}

/// Candidates each list reads when hits are restricted to some pages
/// ([`Searcher::search_in`]).
pub const FILTERED_DEPTH: usize = 1000;

type Ranked = (Uuid, f32, Option<usize>, Option<usize>);

/// Orders the candidates of both lists (each best first) by the mode's score.
fn fuse(text: &[(Uuid, f32)], vector: &[(Uuid, f32)], mode: Mode) -> Vec<Ranked> {
    let mut by_id: HashMap<Uuid, Ranked> = HashMap::new();
    for (rank, (id, score)) in text.iter().enumerate() {
        let e = by_id.entry(*id).or_insert((*id, 0.0, None, None));
        e.2 = Some(rank + 1);
        e.1 = match mode {
            Mode::FullText => *score,
            _ => 1.0 / (RRF_K + (rank + 1) as f32),
        };
    }
    for (rank, (id, score)) in vector.iter().enumerate() {
        let e = by_id.entry(*id).or_insert((*id, 0.0, None, None));
        e.3 = Some(rank + 1);
        e.1 = match mode {
            Mode::Vector => *score,
            _ => e.1 + 1.0 / (RRF_K + (rank + 1) as f32),
        };
    }
    let mut out: Vec<Ranked> = by_id.into_values().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_prefers_chunks_in_both_lists() {
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        let text = [(ids[0], 0.9), (ids[1], 0.5), (ids[2], 0.1)];
        let vector = [(ids[3], 0.99), (ids[2], 0.8), (ids[0], 0.7)];
        let fused = fuse(&text, &vector, Mode::Hybrid);
        // ids[0]: text 1 + vector 3; ids[2]: text 3 + vector 2; both beat single-list hits.
        assert_eq!(fused[0].0, ids[0]);
        assert_eq!(fused[1].0, ids[2]);
        assert_eq!((fused[0].2, fused[0].3), (Some(1), Some(3)));
        let expected = 1.0 / 61.0 + 1.0 / 63.0;
        assert!((fused[0].1 - expected).abs() < 1e-6);
        assert_eq!(fused.len(), 4);

        let only_text = fuse(&text, &[], Mode::FullText);
        assert_eq!(only_text[0], (ids[0], 0.9, Some(1), None));
        let only_vector = fuse(&[], &vector, Mode::Vector);
        assert_eq!(only_vector[0], (ids[3], 0.99, None, Some(1)));
    }

    #[test]
    fn openai_url_gets_v1_once() {
        assert_eq!(openai_base("http://h:8000"), "http://h:8000/v1");
        assert_eq!(openai_base("http://h:8000/"), "http://h:8000/v1");
        assert_eq!(
            openai_base("https://api.openai.com/v1"),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            openai_base("http://h/v1/embeddings"),
            "http://h/v1/embeddings"
        );
    }
}
