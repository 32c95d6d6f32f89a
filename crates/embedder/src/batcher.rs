//! Batching across callers.
//!
//! Extraction workers embed a handful of chunks per page, but an embeddings server's cost is
//! mostly per request: one request of 32 texts takes about as long as one of a single text.
//! The batcher is a tokio task behind a channel: it takes the first waiting request, keeps
//! gathering until the batch holds `max_batch` texts or `max_wait` has passed, calls the
//! embedder once with each distinct text of the batch, and answers each caller with its own
//! slice of the result (or, since a batch is all-or-nothing, with the batch's error).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

use crate::{EmbedError, Embedder};

/// Settings of a [`Batcher`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatcherConfig {
    /// Most texts in one batch. A single request with more texts is not split here; it
    /// goes alone (and the backend splits it by its own batch size).
    pub max_batch: usize,
    /// Longest time the first request of a batch waits for company, in milliseconds.
    pub max_wait_ms: u64,
    /// Requests that may wait in the channel before callers wait to enqueue (back-pressure).
    pub queue_capacity: usize,
    /// Batches sent to the backend at the same time.
    pub max_in_flight: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_wait_ms: 20,
            queue_capacity: 1024,
            max_in_flight: 2,
        }
    }
}

type Reply = Result<Vec<Vec<f32>>, EmbedError>;

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Reply>,
}

/// Handle to the batching task. Clone it freely; the task stops (after answering what it
/// holds) when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    model: Arc<str>,
    dims: usize,
}

impl Batcher {
    /// Starts the batching task on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(embedder: Embedder, cfg: BatcherConfig) -> Self {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let model = Arc::from(embedder.model());
        let dims = embedder.dims();
        tokio::spawn(run(embedder, cfg, rx));
        Self { tx, model, dims }
    }

    /// The embedder's model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The embedder's vector length.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Embeds `texts` as part of some batch; returns their vectors in order.
    ///
    /// # Errors
    /// The error of the batch the texts were in, or [`EmbedError::BatcherClosed`].
    pub async fn embed(&self, texts: Vec<String>) -> Reply {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { texts, reply })
            .await
            .map_err(|_| EmbedError::BatcherClosed)?;
        rx.await.map_err(|_| EmbedError::BatcherClosed)?
    }
}

async fn run(embedder: Embedder, cfg: BatcherConfig, mut rx: mpsc::Receiver<Job>) {
    let max_batch = cfg.max_batch.max(1);
    let max_wait = Duration::from_millis(cfg.max_wait_ms);
    let slots = Arc::new(Semaphore::new(cfg.max_in_flight.max(1)));
    let mut in_flight = JoinSet::new();
    // A request that did not fit in the previous batch opens the next one.
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        let mut size = first.texts.len();
        let mut jobs = vec![first];
        let deadline = Instant::now() + max_wait;
        while size < max_batch {
            match timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) if size + job.texts.len() > max_batch => {
                    carry = Some(job);
                    break;
                }
                Ok(Some(job)) => {
                    size += job.texts.len();
                    jobs.push(job);
                }
                // Closed (the next recv ends the loop) or the window is over.
                Ok(None) | Err(_) => break,
            }
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let embedder = embedder.clone();
        in_flight.spawn(async move {
            run_batch(&embedder, jobs).await;
            drop(permit);
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

async fn run_batch(embedder: &Embedder, jobs: Vec<Job>) {
    let total: usize = jobs.iter().map(|j| j.texts.len()).sum();
    // Each distinct text once: concurrent pages of one site often share texts, and the
    // model's cost is per text. `slots[i]` is the distinct text that input `i` maps to.
    let mut texts: Vec<String> = Vec::with_capacity(total);
    let mut slots: Vec<usize> = Vec::with_capacity(total);
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(total);
    let mut callers = Vec::with_capacity(jobs.len());
    for job in &jobs {
        for text in &job.texts {
            let next = texts.len();
            let slot = *index.entry(text.as_str()).or_insert(next);
            if slot == next {
                texts.push(text.clone());
            }
            slots.push(slot);
        }
    }
    drop(index);
    for job in jobs {
        callers.push((job.texts.len(), job.reply));
    }
    tracing::debug!(
        texts = total,
        distinct = texts.len(),
        callers = callers.len(),
        "embedding batch"
    );
    // Recorded here, where batches form; a process without a metrics recorder pays nothing.
    metrics::histogram!("pipeline_embedding_batch_size").record(texts.len() as f64);
    if total > texts.len() {
        metrics::counter!("pipeline_embedding_batch_duplicates_total")
            .increment((total - texts.len()) as u64);
    }
    let started = std::time::Instant::now();
    let result = embedder.embed(&texts).await.and_then(|distinct| {
        if distinct.len() != texts.len() {
            return Err(EmbedError::Count {
                expected: texts.len(),
                got: distinct.len(),
            });
        }
        Ok(slots
            .iter()
            .map(|&slot| distinct[slot].clone())
            .collect::<Vec<_>>())
    });
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!("pipeline_embedding_batch_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(vectors) => {
            let mut vectors = vectors.into_iter();
            for (n, reply) in callers {
                // A caller that gave up (dropped its future) is not an error for the others.
                let _ = reply.send(Ok(vectors.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, texts = texts.len(), "embedding batch failed");
            for (_, reply) in callers {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
