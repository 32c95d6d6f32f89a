//! The work of one extraction delivery. The runner decodes the message and records
//! failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use embedder::Batcher;
use extract_core::{ChunkOptions, ExtractError, Limits};
use pipeline_ops::Family;
use pipeline_ops::ledger::SourceLedger;
use pipeline_ops::messages::SourceMessage;
use pipeline_runner::{Failure, FailureLog, Handler};
use pipeline_store::extractions::{self, Finish, Finished};
use pipeline_store::progress::Progress;
use pipeline_store::sources;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;
use work_queue::{Delivery, WorkQueue};

use crate::analyze::{Analysis, Body, analyze_body};
use crate::cache::{EmbeddingCache, TextKey, text_key};

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

/// Abandoned threads allowed by [`ExtractionHandler::new`] (the default concurrency).
pub const DEFAULT_MAX_ABANDONED: usize = 8;

/// `pipeline_extraction_waiting_on_abandoned`: deliveries held back by the bound on
/// abandoned threads, down again however the wait ends (shutdown drops it).
struct WaitingGauge;

impl WaitingGauge {
    fn new() -> Self {
        metrics::gauge!("pipeline_extraction_waiting_on_abandoned").increment(1.0);
        Self
    }
}

impl Drop for WaitingGauge {
    fn drop(&mut self) {
        metrics::gauge!("pipeline_extraction_waiting_on_abandoned").decrement(1.0);
    }
}

/// Processes extraction deliveries: extract, chunk, store, find entities, embed (through the
/// process's one [`Batcher`]), and mark the source `extracted` (or `facts_pending`, queued
/// for the schema stage, when its project has an extraction schema).
#[derive(Debug, Clone)]
pub struct ExtractionHandler {
    db: PgPool,
    progress: Progress,
    ledger: SourceLedger,
    /// The facts queue, for pages of projects with an extraction schema.
    facts: WorkQueue,
    batcher: Batcher,
    /// Vectors of texts embedded before (off unless [`ExtractionHandler::with_cache`]).
    cache: EmbeddingCache,
    chunking: ChunkOptions,
    limits: Limits,
    abandon_grace: Duration,
    /// Abandoned threads still running, shared by every clone of the handler.
    abandoned: Arc<watch::Sender<usize>>,
    max_abandoned: usize,
}

impl ExtractionHandler {
    /// A handler writing to `db` (refreshing job progress through `progress`), handing pages
    /// of projects with a schema to the `facts` queue, embedding through `batcher`, chunking
    /// with `chunking`, with the default [`Limits`] (see [`ExtractionHandler::with_limits`]).
    pub fn new(
        db: PgPool,
        progress: Progress,
        facts: WorkQueue,
        batcher: Batcher,
        chunking: ChunkOptions,
    ) -> Self {
        Self {
            ledger: SourceLedger::new(db.clone(), progress.clone()),
            cache: EmbeddingCache::new(db.clone(), 0),
            db,
            progress,
            facts,
            batcher,
            chunking,
            limits: Limits::default(),
            abandon_grace: Duration::from_secs(10),
            abandoned: Arc::new(watch::Sender::new(0)),
            max_abandoned: DEFAULT_MAX_ABANDONED,
        }
    }

    /// The same handler reusing the vectors of texts embedded before, through `cache`.
    pub fn with_cache(mut self, cache: EmbeddingCache) -> Self {
        self.cache = cache;
        self
    }

    /// The same handler starting no extraction while `max` abandoned threads (see
    /// [`ExtractionHandler::with_limits`]) are still running (at least 1). Extractions
    /// already running may still be abandoned, so at most `max` + concurrency - 1 such
    /// threads exist at once.
    pub fn with_max_abandoned(mut self, max: usize) -> Self {
        self.max_abandoned = max.max(1);
        self
    }

    /// Waits while the abandoned threads are at the bound: each holds a blocking-pool
    /// thread and its page's memory, so a stream of poison pages must not add more.
    async fn wait_for_abandoned(&self) {
        let mut running = self.abandoned.subscribe();
        let now = *running.borrow_and_update();
        if now < self.max_abandoned {
            return;
        }
        metrics::counter!("pipeline_extraction_abandoned_waits_total").increment(1);
        let _waiting = WaitingGauge::new();
        tracing::warn!(
            abandoned = now,
            max_abandoned = self.max_abandoned,
            "abandoned extraction threads at the bound; not starting new extractions until one finishes"
        );
        let started = Instant::now();
        // The handler holds the sender, so the channel cannot close while we wait.
        let _ = running.wait_for(|&n| n < self.max_abandoned).await;
        tracing::info!(
            waited_ms = started.elapsed().as_millis() as u64,
            "an abandoned extraction thread finished; extracting again"
        );
    }

    /// The same handler with what one page may cost: `limits`, and how long past the time
    /// budget the worker still waits for a parser that cannot be interrupted.
    pub fn with_limits(mut self, limits: Limits, abandon_grace: Duration) -> Self {
        self.limits = limits;
        self.abandon_grace = abandon_grace;
        self
    }

    /// Runs [`analyze_body`] on a blocking thread, and stops waiting for it at the time budget
    /// plus the grace. The budget's own checks end our loops on time; html5ever,
    /// Readability and trafilatura cannot look at a clock, so a page that keeps one of them
    /// busy past the deadline is failed here and its slot freed, while the thread runs on
    /// until it returns (counted in `pipeline_extraction_abandoned_total` and
    /// `pipeline_extraction_abandoned_running`).
    async fn analyze_bounded(
        &self,
        body: Body,
        uri: String,
        content_type: String,
    ) -> Result<Analysis, Failure> {
        let (chunking, limits) = (self.chunking, self.limits);
        // Who finished first: the thread (RUNNING -> FINISHED) or the waiter giving up
        // (RUNNING -> ABANDONED). Exactly one transition wins, so the gauge of abandoned
        // threads goes up once and down once.
        let state = Arc::new(AtomicU8::new(RUNNING));
        let thread_state = state.clone();
        let abandoned = self.abandoned.clone();
        let mut task = tokio::task::spawn_blocking(move || {
            let result = analyze_body(&body, Some(&uri), &content_type, chunking, &limits);
            if thread_state
                .compare_exchange(RUNNING, FINISHED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                metrics::gauge!("pipeline_extraction_abandoned_running").decrement(1.0);
                abandoned.send_modify(|n| *n -= 1);
            }
            result
        });
        let wait =
            Duration::from_millis(self.limits.time_budget_ms).saturating_add(self.abandon_grace);
        let joined = match tokio::time::timeout(wait, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                // Counted before the transition, so the thread's decrement (which only
                // follows a won transition) never comes first.
                self.abandoned.send_modify(|n| *n += 1);
                if state
                    .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    metrics::counter!("pipeline_extraction_abandoned_total").increment(1);
                    metrics::gauge!("pipeline_extraction_abandoned_running").increment(1.0);
                    tracing::warn!(
                        waited_ms = wait.as_millis() as u64,
                        "extraction still running past its budget; thread abandoned"
                    );
                    return Err(Failure::permanent(format!(
                        "too expensive to extract: still running after {} ms (time budget {} ms)",
                        wait.as_millis(),
                        self.limits.time_budget_ms
                    )));
                }
                // The thread finished just as the wait ended: its result is there.
                self.abandoned.send_modify(|n| *n -= 1);
                task.await
            }
        };
        joined
            .map_err(|e| Failure::transient(format!("extraction task failed: {e}")))?
            .map_err(refused)
    }

    async fn process(&self, delivery: &Delivery, msg: SourceMessage) -> Result<(), Failure> {
        // Before anything is recorded: a held-back page has not started.
        self.wait_for_abandoned().await;
        let source_id = msg.source_id;
        let attempt = (delivery.attempts + 1) as i32;
        // The row first: a message for a source that does not exist fails permanently, as
        // in the scrape worker (recording `started` first failed on the trail's foreign key,
        // a database error, so such a message was retried and redriven until parked).
        let source = extractions::load_source(&self.db, source_id)
            .await
            .map_err(|e| database(&e))?
            .ok_or_else(|| Failure::permanent(format!("source {source_id} not found")))?;
        sources::record_event(
            &self.db,
            &sources::NewEvent {
                job_id: msg.job_id,
                source_id,
                kind: "started",
                stage: Family::Extraction.as_str(),
                actor: pipeline_store::Actor::ExtractionWorker,
                attempt: Some(attempt),
                detail: &json!({ "deliveries": delivery.deliveries, "redrives": delivery.redrives }),
            },
        )
        .await
        .map_err(|e| database(&e))?;
        // A PDF's body is its bytes (`raw_bytes`); a page's is its text.
        let body = Body::from_stored(source.raw_content.clone(), source.raw_bytes.clone())
            .ok_or_else(|| {
                Failure::permanent("the source has no stored content (it was never fetched)")
            })?;
        let url = source.url.clone();
        let content_type = source.content_type.clone().unwrap_or_default();
        // HTML trees are not Send, and parsing is CPU work: off the async threads.
        let analysis = self.analyze_bounded(body, url, content_type).await?;
        record_analysis_metrics(&analysis);

        let model = self.batcher.model().to_owned();
        let stored = extractions::store_analysis(
            &self.db,
            source_id,
            &source,
            msg.job_id,
            &analysis.rows(),
            &model,
        )
        .await
        .map_err(|e| database(&e))?;

        // Only what is still missing is embedded: a retry after an embedding failure, or a
        // redelivery after a crash, does not pay for vectors it already has.
        let texts: Vec<String> = stored
            .missing
            .iter()
            .map(|m| analysis.chunks[m.chunk_index].embedding_text(analysis.title.as_deref()))
            .collect();
        let started = Instant::now();
        let (vectors, cached) = self.embed(&model, texts).await?;
        if !stored.missing.is_empty() {
            metrics::histogram!("pipeline_embedding_seconds")
                .record(started.elapsed().as_secs_f64());
        }

        let status = analysis.entities.status();
        let ids: Vec<Uuid> = stored.missing.iter().map(|m| m.extraction_id).collect();
        let detail = json!({
            "chunks": stored.chunks,
            "embedded": ids.len(),
            "embedded_from_cache": cached,
            "entities": stored.entities,
            "entities_status": status.as_str(),
            "entity_failures": analysis.entities.failures,
            "title": analysis.title,
            "extractor": analysis.extractor.as_str(),
            "model": model,
        });
        let finished = extractions::finish(
            &self.db,
            &self.progress,
            &Finish {
                source_id,
                job_id: msg.job_id,
                attempt,
                model: &model,
                dims: self.batcher.dims(),
                extraction_ids: &ids,
                vectors: &vectors,
                detail,
            },
        )
        .await
        .map_err(|e| database(&e))?;
        if finished == Finished::FactsPending {
            // After the commit: a crash before this enqueue leaves the source
            // `facts_pending`, and the reconciler enqueues it.
            self.facts
                .enqueue_in(&msg.lane(), &msg.id(), &msg.body())
                .await
                .map_err(|e| Failure::transient(format!("enqueueing facts: {e}")))?;
        }
        tracing::info!(
            facts = finished == Finished::FactsPending,
            chunks = stored.chunks,
            embedded = ids.len(),
            from_cache = cached,
            entities = stored.entities,
            entities_status = status.as_str(),
            "source extracted"
        );
        Ok(())
    }
}

impl ExtractionHandler {
    /// Vectors for `texts`, in order, and how many came from the cache: each distinct text
    /// is looked up in the cache, the others go to the batcher once each (a page may repeat
    /// a text), and what the model computed is stored for the next page.
    async fn embed(
        &self,
        model: &str,
        texts: Vec<String>,
    ) -> Result<(Vec<Vec<f32>>, usize), Failure> {
        if texts.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let dims = self.batcher.dims();
        let keys: Vec<TextKey> = if self.cache.enabled() {
            texts.iter().map(|t| text_key(t)).collect()
        } else {
            Vec::new()
        };
        let mut known = if self.cache.enabled() {
            // The cache only saves work: when it cannot be read, the model computes the
            // vectors instead (the failure is logged, not the delivery's).
            self.cache.get(model, dims, &keys).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "embedding cache lookup failed; embedding every text");
                Default::default()
            })
        } else {
            Default::default()
        };
        let cached = keys.iter().filter(|k| known.contains_key(*k)).count();
        // The texts to compute: not cached, each distinct one once.
        let mut todo: Vec<String> = Vec::new();
        let mut todo_keys: Vec<TextKey> = Vec::new();
        if self.cache.enabled() {
            let mut seen = std::collections::HashSet::new();
            for (text, key) in texts.iter().zip(&keys) {
                if !known.contains_key(key) && seen.insert(*key) {
                    todo.push(text.clone());
                    todo_keys.push(*key);
                }
            }
        } else {
            todo = texts;
        }
        if self.cache.enabled() {
            metrics::counter!("pipeline_embedding_cache_total", "outcome" => "hit")
                .increment(cached as u64);
            metrics::counter!("pipeline_embedding_cache_total", "outcome" => "miss")
                .increment((keys.len() - cached) as u64);
        }
        let computed = self.batcher.embed(todo).await.map_err(|e| {
            let kind = if e.is_transient() {
                "transient"
            } else {
                "permanent"
            };
            metrics::counter!("pipeline_embedding_failures_total", "kind" => kind).increment(1);
            let message = format!("embedding failed: {e}");
            if e.is_transient() {
                Failure::transient(message)
            } else {
                Failure::permanent(message)
            }
        })?;
        if !self.cache.enabled() {
            return Ok((computed, 0));
        }
        let entries: Vec<(TextKey, &[f32])> = todo_keys
            .iter()
            .zip(&computed)
            .map(|(k, v)| (*k, v.as_slice()))
            .collect();
        // As for the lookup: a vector not stored only costs a later page a model call.
        if let Err(e) = self.cache.put(model, dims, &entries).await {
            tracing::warn!(error = %e, "embedding cache insert failed");
        }
        drop(entries);
        known.extend(todo_keys.into_iter().zip(computed));
        let vectors = keys
            .iter()
            .map(|k| known.get(k).cloned())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Failure::permanent("embedding failed: a text got no vector"))?;
        Ok((vectors, cached))
    }
}

impl Handler for ExtractionHandler {
    type Message = SourceMessage;

    async fn handle(&self, delivery: &Delivery, msg: SourceMessage) -> Result<(), Failure> {
        self.process(delivery, msg).await
    }

    fn failure_log(&self) -> &dyn FailureLog {
        &self.ledger
    }

    /// Job-progress refreshes started in the background finish before a drain ends.
    async fn settled(&self) {
        self.progress.settled().await;
    }
}

/// A database error: worth a retry (connection loss, deadlock, pool timeout).
fn database(e: &dyn std::fmt::Display) -> Failure {
    Failure::transient(format!("database error: {e}"))
}

/// Content extract-core refuses: retrying cannot change a pure function's answer. A page
/// over its budget says so first (`too expensive to extract: ...`), so operators can tell
/// it from content that has nothing to extract.
fn refused(e: ExtractError) -> Failure {
    match e {
        ExtractError::TooExpensive(_) => {
            metrics::counter!("pipeline_extraction_too_expensive_total").increment(1);
            Failure::permanent(e.to_string())
        }
        e => Failure::permanent(format!("extraction refused the content: {e}")),
    }
}

fn record_analysis_metrics(a: &Analysis) {
    let status = a.entities.status().as_str();
    metrics::histogram!("pipeline_extractions_per_source").record(a.chunks.len() as f64);
    metrics::counter!("pipeline_entities_status_total", "status" => status).increment(1);
    if a.entities.status() != extract_core::EntitiesStatus::Complete {
        tracing::warn!(
            entities_status = status,
            failures = ?a.entities.failures,
            "entity extraction incomplete"
        );
    }
}
