//! The worker runner both workers are built on: reserve in batches, process with bounded
//! concurrency, keep leases alive, settle every delivery (ack, retry with backoff, or
//! dead-letter), catch panics, and drain on shutdown.
//!
//! A [`Handler`] does the work of one delivery and the Postgres bookkeeping of failures; the
//! runner owns the queue protocol, so the two workers cannot settle messages differently.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use work_queue::{AckOutcome, DeadLetterOutcome, Delivery, ErrorKind, RetryOutcome, WorkQueue};

/// Why one delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying: timeouts, connection errors, 5xx, 429, a dependency down.
    Transient {
        /// What went wrong.
        message: String,
        /// The earliest retry the remote asked for (Retry-After).
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: invalid input, 4xx, refused content, malformed message.
    Permanent {
        /// What went wrong.
        message: String,
    },
}

impl Failure {
    /// A transient failure without a Retry-After.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }

    /// The error text.
    pub fn message(&self) -> &str {
        match self {
            Self::Transient { message, .. } | Self::Permanent { message } => message,
        }
    }

    /// `transient` or `permanent`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Transient { .. } => ErrorKind::Transient,
            Self::Permanent { .. } => ErrorKind::Permanent,
        }
    }
}

/// What the queue did with a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Scheduled for another attempt after `delay`.
    RetryScheduled {
        /// Failed attempts so far.
        attempts: u32,
        /// Backoff before the next attempt.
        delay: Duration,
    },
    /// Moved to the family's DLQ.
    DeadLettered {
        /// Failed attempts so far.
        attempts: u32,
        /// Transient (retries exhausted) or permanent.
        kind: ErrorKind,
    },
    /// The lease was lost: another worker holds the message; nothing to record.
    LeaseLost,
}

/// The work of one family.
pub trait Handler: Send + Sync + 'static {
    /// Processes one delivery; `Ok` means its results are stored and it may be acked.
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Records a failure in Postgres (source status, events) once the queue has settled it.
    fn on_failure(
        &self,
        delivery: &Delivery,
        failure: &Failure,
        settled: Settled,
    ) -> impl Future<Output = ()> + Send;
}

/// How the runner runs.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Deliveries processed at once.
    pub concurrency: usize,
    /// Most deliveries reserved per round trip.
    pub reserve_batch: usize,
    /// How long in-flight work may take to finish after shutdown begins.
    pub drain_timeout: Duration,
}

/// Processes one delivery end to end: handle (panics caught), then settle and record.
pub async fn process<H: Handler>(queue: &WorkQueue, handler: &H, delivery: Delivery) {
    let family = queue.family().to_owned();
    let started = Instant::now();
    // Held until settled, so an exit that cuts the drain short can name what it hands back.
    let _held = pipeline_core::shutdown::held::hold(&family, &delivery.id);
    metrics::gauge!("pipeline_in_flight", "family" => family.clone()).increment(1.0);
    let keeper = queue.keep_alive(&delivery);
    let result = AssertUnwindSafe(handler.handle(&delivery))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(message_id = %delivery.id, panic = %what, "handler panicked");
            Err(Failure::transient(format!("worker panicked: {what}")))
        });
    drop(keeper);
    let outcome = match &result {
        Ok(()) => match queue.ack(&delivery).await {
            Ok(AckOutcome::Acked) => "succeeded",
            Ok(AckOutcome::LeaseLost) => {
                tracing::warn!(message_id = %delivery.id, "lease lost before ack; another worker redoes it (idempotently)");
                "lease_lost"
            }
            Err(err) => {
                tracing::error!(message_id = %delivery.id, error = %err, "ack failed; the message will be redelivered after its lease");
                "ack_failed"
            }
        },
        Err(failure) => settle_failure(queue, handler, &delivery, failure).await,
    };
    metrics::gauge!("pipeline_in_flight", "family" => family.clone()).decrement(1.0);
    metrics::counter!("pipeline_messages_total", "family" => family.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("pipeline_message_duration_seconds", "family" => family)
        .record(started.elapsed().as_secs_f64());
}

async fn settle_failure<H: Handler>(
    queue: &WorkQueue,
    handler: &H,
    delivery: &Delivery,
    failure: &Failure,
) -> &'static str {
    let settled = match failure {
        Failure::Transient {
            message,
            retry_after,
        } => {
            let outcome = match retry_after {
                Some(wait) => queue.retry_after(delivery, message, *wait).await,
                None => queue.retry_later(delivery, message).await,
            };
            outcome.map(|o| match o {
                RetryOutcome::Scheduled { attempts, delay } => {
                    Settled::RetryScheduled { attempts, delay }
                }
                RetryOutcome::DeadLettered { attempts } => Settled::DeadLettered {
                    attempts,
                    kind: ErrorKind::Transient,
                },
                RetryOutcome::LeaseLost => Settled::LeaseLost,
            })
        }
        Failure::Permanent { message } => queue
            .dead_letter(delivery, message, ErrorKind::Permanent)
            .await
            .map(|o| match o {
                DeadLetterOutcome::DeadLettered => Settled::DeadLettered {
                    attempts: delivery.attempts + 1,
                    kind: ErrorKind::Permanent,
                },
                DeadLetterOutcome::LeaseLost => Settled::LeaseLost,
            }),
    };
    match settled {
        Ok(Settled::LeaseLost) => {
            tracing::warn!(message_id = %delivery.id, "lease lost before settling a failure; another worker holds it");
            "lease_lost"
        }
        Ok(settled) => {
            tracing::warn!(message_id = %delivery.id, error = failure.message(), ?settled, "delivery failed");
            handler.on_failure(delivery, failure, settled).await;
            match settled {
                Settled::RetryScheduled { .. } => "retry_scheduled",
                _ => "dead_lettered",
            }
        }
        Err(err) => {
            tracing::error!(message_id = %delivery.id, error = %err, "could not settle a failure; the message will be redelivered after its lease");
            "settle_failed"
        }
    }
}

/// One step, for tests and tools: reserves up to `max` deliveries without waiting and
/// processes them all, job progress included. Returns how many it processed (0: the queue
/// had nothing ready).
pub async fn run_next<H: Handler>(
    queue: &WorkQueue,
    handler: &H,
    max: usize,
) -> work_queue::Result<usize> {
    let deliveries = queue.reserve(max).await?;
    let n = deliveries.len();
    futures::future::join_all(deliveries.into_iter().map(|d| process(queue, handler, d))).await;
    pipeline_store::progress::settled().await;
    Ok(n)
}

/// Runs until `cancel` fires, then drains within the timeout. Work still running then keeps
/// its lease until it expires, and the queue delivers it again. Returns whether the drain
/// was complete (`false`: work was still running at the timeout).
pub async fn run<H: Handler>(
    queue: WorkQueue,
    handler: Arc<H>,
    opts: RunnerOptions,
    cancel: CancellationToken,
) -> bool {
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let tracker = TaskTracker::new();
    let mut error_pause = Duration::from_millis(100);
    tracing::info!(
        family = queue.family(),
        concurrency = opts.concurrency,
        "worker started"
    );
    while !cancel.is_cancelled() {
        // Wait for a free slot before reserving, so nothing sits leased but unprocessed.
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let want = (permits.available_permits() + 1).min(opts.reserve_batch.max(1));
        let deliveries = match queue.reserve_wait(want, &cancel).await {
            Ok(d) => {
                error_pause = Duration::from_millis(100);
                d
            }
            Err(err) => {
                tracing::error!(error = %err, pause_ms = error_pause.as_millis() as u64, "reserve failed; backing off");
                drop(first);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(error_pause) => {}
                }
                error_pause = (error_pause * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let mut first = Some(first);
        for delivery in deliveries {
            let permit = match first.take() {
                Some(p) => p,
                None => permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            };
            let queue = queue.clone();
            let handler = handler.clone();
            tracker.spawn(async move {
                process(&queue, handler.as_ref(), delivery).await;
                drop(permit);
            });
        }
    }
    tracker.close();
    let finished = pipeline_core::shutdown::drain_within(opts.drain_timeout, async {
        tracker.wait().await;
        pipeline_store::progress::settled().await;
    })
    .await;
    tracing::info!(
        family = queue.family(),
        drained = finished,
        "worker stopped"
    );
    finished
}
