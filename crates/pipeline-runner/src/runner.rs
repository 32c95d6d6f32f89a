//! The runner's loop: reserve in batches, process with bounded concurrency, keep leases
//! alive, settle every delivery (ack, retry with backoff, or dead-letter), catch panics,
//! and drain on shutdown.
//!
//! The runner owns the whole protocol, so the stages cannot settle or record messages
//! differently: it decodes the body into the handler's [`Handler::Message`] (a body that
//! does not decode is dead-lettered as permanent without reaching the handler), opens the
//! delivery's span (family, message, source, job, URL, attempt) that every log line about
//! it carries, and hands every settled failure to the stage's [`FailureLog`]. A [`Handler`]
//! only does the work.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;
use work_queue::{
    AckOutcome, DeadLetterOutcome, Delivery, ErrorKind, Held, RetryOutcome, WorkQueue,
};

use crate::acks::{AckResult, Acker};
use crate::{Activity, Failure, FailureLog, FailureRecord, Outcome, Settled, WorkMessage};

/// The work of one family.
pub trait Handler: Send + Sync + 'static {
    /// The body this handler takes, decoded by the runner.
    type Message: WorkMessage;

    /// Processes one delivery; `Ok` means its results are stored and it may be acked.
    fn handle(
        &self,
        delivery: &Delivery,
        msg: Self::Message,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Where the runner records this stage's settled failures.
    fn failure_log(&self) -> &dyn FailureLog;

    /// Waits for background work the handler started that must finish before the process
    /// stops (deferred job-progress refreshes). The runner awaits it when it drains and at
    /// the end of [`run_next`]. Nothing by default.
    fn settled(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
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

/// Processes one delivery end to end: decode, handle (panics caught), then settle and record,
/// counting it in `activity`.
pub async fn process<H: Handler>(
    queue: &WorkQueue,
    handler: &H,
    delivery: Delivery,
    activity: &Activity,
) {
    process_with(queue, handler, delivery, None, None, activity).await;
}

/// Handler time below which the runner reserves ahead of its free slots (see [`Pace`]).
const FAST_WORK: Duration = Duration::from_millis(1);

/// How long the handler takes, as a moving average, so the runner can tell work shorter
/// than a Redis round trip from real work.
///
/// When every delivery takes longer than [`FAST_WORK`] (fetching a page, extracting one),
/// the runner reserves only as many messages as it has free slots: nothing waits leased
/// while another runs, and replicas share a backlog fairly. When the work is shorter,
/// the reserve round trip is most of a delivery's cost, so the runner reserves a whole
/// `reserve_batch` and lets the extras wait for a slot; the wait that adds is at most
/// `reserve_batch` times the average handler time, a few milliseconds, far inside a lease.
/// It also puts the next reserve in flight as soon as every slot is busy, so the next
/// batch is there when this one is handed out instead of a round trip later. Deliveries
/// that wait for a slot are held with their leases renewed ([`Held`]), in case the work
/// stopped being fast since the reserve.
#[derive(Debug, Default)]
struct Pace {
    /// Exponential moving average of handler time, in microseconds (weight 1/8).
    avg_micros: AtomicU64,
    /// Whether any delivery was measured yet (the first reserve does not reserve ahead).
    measured: std::sync::atomic::AtomicBool,
}

impl Pace {
    fn record(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let avg = if self.measured.swap(true, Ordering::Relaxed) {
            let old = self.avg_micros.load(Ordering::Relaxed);
            old - old / 8 + sample / 8
        } else {
            sample
        };
        // Racing updates may drop a sample; an average needs none of them exactly.
        self.avg_micros.store(avg, Ordering::Relaxed);
    }

    fn fast(&self) -> bool {
        self.measured.load(Ordering::Relaxed)
            && self.avg_micros.load(Ordering::Relaxed) < FAST_WORK.as_micros() as u64
    }
}

/// What the runner's tasks share: the gathered acks, the handler's pace, the family's
/// metric handles and the process's activity.
#[derive(Clone, Debug)]
struct Shared {
    acker: Acker,
    pace: Arc<Pace>,
    meters: Arc<Meters>,
    activity: Activity,
}

/// A family's per-delivery metrics, registered once per runner: a handle costs an atomic
/// update, where the macros build the labels and look the series up on every call.
#[derive(Debug)]
struct Meters {
    in_flight: metrics::Gauge,
    duration: metrics::Histogram,
    /// `pipeline_messages_total` by outcome, in the order of [`Outcome::ALL`].
    outcomes: Vec<metrics::Counter>,
}

impl Meters {
    fn new(family: &str) -> Self {
        let family = family.to_owned();
        Self {
            in_flight: metrics::gauge!("pipeline_in_flight", "family" => family.clone()),
            duration: metrics::histogram!("pipeline_message_duration_seconds", "family" => family.clone()),
            outcomes: Outcome::ALL
                .iter()
                .map(|o| metrics::counter!("pipeline_messages_total", "family" => family.clone(), "outcome" => o.as_str()))
                .collect(),
        }
    }

    fn count(&self, outcome: Outcome) {
        let i = Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .expect("ALL lists every outcome");
        self.outcomes[i].increment(1);
    }
}

/// [`process`], acking through the runner's gathered acks when `acker` is given, and
/// giving back `permit` as soon as the handler succeeded: the ack then overlaps the next
/// delivery's work instead of holding its slot for a round trip.
async fn process_with<H: Handler>(
    queue: &WorkQueue,
    handler: &H,
    delivery: Delivery,
    shared: Option<&Shared>,
    permit: Option<OwnedSemaphorePermit>,
    activity: &Activity,
) {
    let acker = shared.map(|s| &s.acker);
    let own_meters;
    let meters = match shared {
        Some(s) => s.meters.as_ref(),
        None => {
            own_meters = Meters::new(queue.family());
            &own_meters
        }
    };
    let family = queue.family();
    let started = Instant::now();
    // Held until settled, so an exit that cuts the drain short can name what it hands back.
    let _busy = activity.in_flight(family, &delivery.id);
    meters.in_flight.increment(1.0);
    let decoded = delivery.parse::<H::Message>();
    let span = tracing::info_span!(
        "message",
        family,
        message_id = delivery.id.as_str(),
        source_id = tracing::field::Empty,
        job_id = tracing::field::Empty,
        url = tracing::field::Empty,
        attempt = delivery.attempts + 1,
        deliveries = delivery.deliveries,
    );
    let ids = match &decoded {
        Ok(msg) => {
            span.record("source_id", tracing::field::display(msg.source_id()));
            if let Some(job) = msg.job_id() {
                span.record("job_id", tracing::field::display(job));
            }
            if let Some(url) = msg.url() {
                span.record("url", url);
            }
            Some((msg.source_id(), msg.job_id()))
        }
        Err(_) => None,
    };
    let result = async {
        match decoded {
            Ok(msg) => handle_caught(handler, &delivery, msg, queue).await,
            Err(e) => Err(Failure::permanent(format!(
                "malformed message (in the {family} queue): {e}"
            ))),
        }
    }
    .instrument(span.clone())
    .await;
    if let Some(shared) = shared {
        shared.pace.record(started.elapsed());
    }
    let outcome = async {
        match &result {
            Ok(()) => match ack(queue, acker, permit, delivery).await {
                Ok(AckOutcome::Acked) => Outcome::Succeeded,
                Ok(AckOutcome::LeaseLost) => {
                    tracing::warn!("lease lost before ack; another worker redoes it (idempotently)");
                    Outcome::LeaseLost
                }
                Err(err) => {
                    tracing::error!(error = %err, "ack failed; the message will be redelivered after its lease");
                    Outcome::AckFailed
                }
            },
            Err(failure) => {
                // Boxed: the rare path's futures (Redis settle, Postgres record) would
                // otherwise make every delivery's task carry their size (see `task`).
                let outcome =
                    Box::pin(settle_failure(queue, handler, &delivery, ids, failure)).await;
                drop(permit);
                outcome
            }
        }
    }
    .instrument(span)
    .await;
    meters.in_flight.decrement(1.0);
    meters.count(outcome);
    activity.record(family, outcome);
    meters.duration.record(started.elapsed().as_secs_f64());
}

/// Acks a handled delivery, after giving back its slot.
async fn ack(
    queue: &WorkQueue,
    acker: Option<&Acker>,
    permit: Option<OwnedSemaphorePermit>,
    delivery: Delivery,
) -> AckResult {
    drop(permit);
    match acker {
        Some(acker) => acker.ack(delivery).await,
        None => queue.ack(&delivery).await.map_err(|e| e.to_string()),
    }
}

/// Runs the handler with the lease kept alive; a panic becomes a transient failure.
async fn handle_caught<H: Handler>(
    handler: &H,
    delivery: &Delivery,
    msg: H::Message,
    queue: &WorkQueue,
) -> Result<(), Failure> {
    let work = AssertUnwindSafe(handler.handle(delivery, msg)).catch_unwind();
    queue.leased(delivery, work).await.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(panic = %what, "handler panicked");
        Err(Failure::transient(format!("worker panicked: {what}")))
    })
}

async fn settle_failure<H: Handler>(
    queue: &WorkQueue,
    handler: &H,
    delivery: &Delivery,
    ids: Option<(Uuid, Option<Uuid>)>,
    failure: &Failure,
) -> Outcome {
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
            tracing::warn!(
                error = failure.message(),
                "lease lost before settling a failure; another worker holds it"
            );
            Outcome::LeaseLost
        }
        Ok(settled) => {
            let (outcome, attempts, delay_ms) = match settled {
                Settled::RetryScheduled { attempts, delay } => (
                    Outcome::RetryScheduled,
                    attempts,
                    Some(delay.as_millis() as u64),
                ),
                Settled::DeadLettered { attempts, .. } => (Outcome::DeadLettered, attempts, None),
                Settled::LeaseLost => unreachable!("handled above"),
            };
            tracing::warn!(
                error = failure.message(),
                error_kind = failure.kind().as_str(),
                outcome = outcome.as_str(),
                attempts,
                retry_in_ms = delay_ms,
                "delivery failed"
            );
            handler
                .failure_log()
                .record(FailureRecord {
                    family: queue.family(),
                    message_id: &delivery.id,
                    ids,
                    failure,
                    settled,
                })
                .await;
            outcome
        }
        Err(err) => {
            tracing::error!(error = %err, "could not settle a failure; the message will be redelivered after its lease");
            Outcome::SettleFailed
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
    // A step is not a runner: its counts go nowhere.
    let activity = Activity::default();
    futures::future::join_all(
        deliveries
            .into_iter()
            .map(|d| process(queue, handler, d, &activity)),
    )
    .await;
    handler.settled().await;
    Ok(n)
}

/// How often a paused worker looks again whether its family was resumed.
const PAUSE_RECHECK: Duration = Duration::from_millis(250);

/// A reserve put in flight while the last batch is handed out, on the shared multiplexed
/// connection (the reply is not waited for by a blocking command). Its batch is held
/// with its leases renewed from the moment it arrives (see [`Held`]).
struct Ahead(tokio::task::JoinHandle<work_queue::Result<Held>>);

impl Ahead {
    async fn batch(self) -> Result<Held, String> {
        match self.0.await {
            Ok(reserved) => reserved.map_err(|e| e.to_string()),
            Err(e) => Err(format!("reserve ahead did not finish: {e}")),
        }
    }
}

/// What the runner's loop needs to reserve and to hand deliveries out to slots.
struct Dispatch<'a, H: Handler> {
    queue: &'a WorkQueue,
    handler: &'a Arc<H>,
    shared: Shared,
    permits: &'a Arc<Semaphore>,
    tracker: &'a TaskTracker,
}

impl<H: Handler> Dispatch<'_, H> {
    /// How many to reserve with one slot in hand: only free slots' worth, unless the work is
    /// shorter than a round trip (see `Pace`) and the slots are fewer than a batch: with a
    /// batch's worth of slots, free slots fill a batch anyway, and reserving ahead would
    /// only make messages wait.
    fn want(&self, opts: &RunnerOptions) -> usize {
        if self.reserves_ahead(opts) {
            opts.reserve_batch.max(1)
        } else {
            (self.permits.available_permits() + 1).min(opts.reserve_batch.max(1))
        }
    }

    /// Whether the work is shorter than a round trip (see `Pace`) and the slots are fewer
    /// than a batch: then the runner reserves a whole batch, and the next one early.
    fn reserves_ahead(&self, opts: &RunnerOptions) -> bool {
        self.shared.pace.fast() && opts.concurrency < opts.reserve_batch
    }

    /// Reserves up to `want`, waiting for work when there is none (see [`Waiter`]). A batch
    /// larger than the free slots is held with its leases renewed while it waits.
    ///
    /// [`Waiter`]: work_queue::Waiter
    async fn reserve_wait(
        &self,
        waiter: &mut work_queue::Waiter,
        want: usize,
        cancel: &CancellationToken,
    ) -> Result<Held, String> {
        let batch = waiter
            .reserve_wait(want, cancel)
            .await
            .map_err(|e| e.to_string())?;
        Ok(if batch.len() > self.permits.available_permits() + 1 {
            self.queue.hold(batch)
        } else {
            Held::now(batch)
        })
    }

    /// Puts a reserve of up to `want` in flight without waiting for it.
    fn reserve_ahead(&self, want: usize) -> Ahead {
        let queue = self.queue.clone();
        Ahead(tokio::spawn(async move {
            let batch = queue.reserve(want).await?;
            Ok(queue.hold(batch))
        }))
    }

    /// Hands every delivery of `batch` to a slot, `first` for the first one; calls
    /// `on_full` each time a delivery has to wait for a slot.
    async fn hand_out(&self, batch: Held, first: OwnedSemaphorePermit, mut on_full: impl FnMut()) {
        let mut first = Some(first);
        for delivery in batch {
            let permit = match first.take() {
                Some(p) => p,
                None => match self.permits.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        on_full();
                        self.permits
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("the semaphore is never closed")
                    }
                },
            };
            self.tracker.spawn(task(
                self.queue.clone(),
                self.handler.clone(),
                delivery,
                self.shared.clone(),
                permit,
            ));
        }
    }
}

/// One delivery's task. Its future is copied into the task's allocation at every spawn, so
/// it is kept small: the failure path, which needs the large Redis and Postgres futures, is
/// boxed (`process_with`), and a test pins the size.
async fn task<H: Handler>(
    queue: WorkQueue,
    handler: Arc<H>,
    delivery: Delivery,
    shared: Shared,
    permit: OwnedSemaphorePermit,
) {
    let activity = shared.activity.clone();
    process_with(
        &queue,
        handler.as_ref(),
        delivery,
        Some(&shared),
        Some(permit),
        &activity,
    )
    .await;
}

/// Runs until `cancel` fires, then drains within the timeout. Work still running then keeps
/// its lease until it expires, and the queue delivers it again. Returns whether the drain
/// was complete (`false`: work was still running at the timeout). Counts what it does in
/// `activity`, and reserves nothing while `activity` says its family is paused.
pub async fn run<H: Handler>(
    queue: WorkQueue,
    handler: Arc<H>,
    opts: RunnerOptions,
    activity: Activity,
    cancel: CancellationToken,
) -> bool {
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let tracker = TaskTracker::new();
    let mut error_pause = Duration::from_millis(100);
    // The loop's own connection for blocking waits, kept across them (see `Waiter`).
    let mut waiter = queue.waiter();
    let (acker, acks) = Acker::start(queue.clone());
    let shared = Shared {
        acker,
        pace: Arc::default(),
        meters: Arc::new(Meters::new(queue.family())),
        activity: activity.clone(),
    };
    tracing::info!(
        family = queue.family(),
        concurrency = opts.concurrency,
        "worker started"
    );
    activity.runner_started(queue.family(), opts.concurrency);
    let dispatch = Dispatch {
        queue: &queue,
        handler: &handler,
        shared,
        permits: &permits,
        tracker: &tracker,
    };
    // The next batch, reserved while this one is handed out (fast work only, see `Pace`).
    let mut ahead: Option<Ahead> = None;
    while !cancel.is_cancelled() {
        // A paused family reserves nothing; what is in flight finishes. The flag is the
        // process's last look (the pipeline's heartbeat task reads the flags), so this costs
        // no round trip.
        if ahead.is_none() && activity.is_paused(queue.family()) {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(PAUSE_RECHECK) => continue,
            }
        }
        // Wait for a free slot before reserving, so nothing sits leased but unprocessed.
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let want = dispatch.want(&opts);
        let reserved = match ahead.take() {
            Some(next) => match next.batch().await {
                // The queue ran dry meanwhile: wait for work as usual.
                Ok(held) if held.is_empty() => {
                    dispatch.reserve_wait(&mut waiter, want, &cancel).await
                }
                other => other,
            },
            None => dispatch.reserve_wait(&mut waiter, want, &cancel).await,
        };
        let batch = match reserved {
            Ok(batch) => {
                error_pause = Duration::from_millis(100);
                batch
            }
            Err(err) => {
                tracing::error!(error = %err, redis = queue.endpoint(), pause_ms = error_pause.as_millis() as u64, "reserve failed; backing off");
                drop(first);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(error_pause) => {}
                }
                error_pause = (error_pause * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        dispatch
            .hand_out(batch, first, || {
                // Every slot is busy and this batch still has deliveries waiting: put
                // the next reserve in flight now, so that its batch is here by the time
                // this one is handed out, instead of a round trip after. Only for work
                // shorter than a round trip; real work reserves its free slots' worth.
                if ahead.is_none()
                    && dispatch.reserves_ahead(&opts)
                    && !cancel.is_cancelled()
                    && !activity.is_paused(queue.family())
                {
                    ahead = Some(dispatch.reserve_ahead(opts.reserve_batch));
                }
            })
            .await;
    }
    tracker.close();
    let finished = pipeline_core::shutdown::drain_within(opts.drain_timeout, async {
        // A batch reserved ahead is leased to this worker: it is fast work, so it is done
        // within the drain rather than left to wait out its leases.
        if let Some(next) = ahead.take() {
            match next.batch().await {
                Ok(batch) => {
                    let first = permits.clone().acquire_owned().await;
                    let first = first.expect("the semaphore is never closed");
                    dispatch.hand_out(batch, first, || {}).await;
                }
                Err(err) => tracing::warn!(error = %err, "reserve ahead failed at shutdown"),
            }
        }
        // The runner lets go of the gathered acks; the tasks hold the other handles.
        drop(dispatch);
        tracker.wait().await;
        // Every task's ack has its answer by now; the gathering task ends with the last.
        let _ = acks.await;
        handler.settled().await;
    })
    .await;
    tracing::info!(
        family = queue.family(),
        drained = finished,
        "worker stopped"
    );
    finished
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Msg {
        source_id: Uuid,
    }

    impl WorkMessage for Msg {
        fn source_id(&self) -> Uuid {
            self.source_id
        }

        fn job_id(&self) -> Option<Uuid> {
            None
        }
    }

    struct Forget;

    impl FailureLog for Forget {
        fn record<'a>(
            &'a self,
            _: FailureRecord<'a>,
        ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
            Box::pin(async {})
        }
    }

    struct Noop(Forget);

    impl Handler for Noop {
        type Message = Msg;

        async fn handle(&self, _: &Delivery, _: Self::Message) -> Result<(), Failure> {
            Ok(())
        }

        fn failure_log(&self) -> &dyn FailureLog {
            &self.0
        }
    }

    /// The typed outcomes are the series the metrics catalogue registers at zero.
    #[test]
    fn outcomes_are_the_catalogued_series() {
        let words: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            words,
            pipeline_core::metrics::catalogue::MESSAGE_OUTCOMES.to_vec()
        );
    }

    /// The task was 16 KB while the failure path was inlined into it, and copying it at
    /// each spawn was a third of the runner's CPU time on work shorter than a round trip.
    #[tokio::test]
    async fn a_delivery_task_stays_small() {
        // Nothing here connects: the futures are built, never polled.
        let pool =
            work_queue::build_pool("redis://127.0.0.1:1", 1, Duration::from_secs(1)).expect("pool");
        let queue = WorkQueue::new(
            pool,
            work_queue::FamilyKeys::new("size-test", "scrape"),
            work_queue::QueueOptions::default(),
        )
        .expect("queue");
        let (acker, _acks) = Acker::start(queue.clone());
        let shared = Shared {
            acker,
            pace: Arc::default(),
            meters: Arc::new(Meters::new("scrape")),
            activity: Activity::default(),
        };
        let permit = Arc::new(Semaphore::new(1))
            .acquire_owned()
            .await
            .expect("permit");
        let delivery = Delivery {
            id: "m".into(),
            token: 1,
            body: "{}".into(),
            deliveries: 1,
            attempts: 0,
            redrives: 0,
            shard: 0,
        };
        let fut = task(queue, Arc::new(Noop(Forget)), delivery, shared, permit);
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 4096, "a delivery's task is {size} bytes");
    }
}
