//! The runner the daemons use, waiting for work: a message sent to an idle runner starts at
//! once (no wake-up lost across many rounds), and shutdown drains while the runner is
//! blocked in its wait. Then a backlog of work shorter than a round trip, which the runner
//! reserves ahead of its slots and of its last batch: each message runs once, and a stop
//! in the middle leaves nothing leased. The block timeout is far longer than each bound checked, so passing
//! shows the wake-up, not the timeout.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::TestRedis;
use pipeline_ops::messages::SourceMessage;
use pipeline_runner::{self as worker, Failure, Handler, RunnerOptions};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use work_queue::{Delivery, FamilyKeys, QueueOptions, WorkQueue};

const LONG_BLOCK: Duration = Duration::from_secs(20);
const PROMPT: Duration = Duration::from_secs(3);

/// Reports each message it starts; fails nothing, so the (never connected) database is unused.
struct Report {
    ledger: pipeline_ops::ledger::SourceLedger,
    started: mpsc::UnboundedSender<Uuid>,
}

impl Handler for Report {
    type Message = SourceMessage;

    fn failure_log(&self) -> &dyn pipeline_runner::FailureLog {
        &self.ledger
    }

    async fn handle(&self, _delivery: &Delivery, msg: SourceMessage) -> Result<(), Failure> {
        let _ = self.started.send(msg.source_id);
        Ok(())
    }
}

struct Running {
    queue: WorkQueue,
    started: mpsc::UnboundedReceiver<Uuid>,
    cancel: CancellationToken,
    runner: tokio::task::JoinHandle<bool>,
}

fn start(redis: &TestRedis, concurrency: usize) -> anyhow::Result<Running> {
    start_with(redis, concurrency, 8)
}

fn start_with(
    redis: &TestRedis,
    concurrency: usize,
    reserve_batch: usize,
) -> anyhow::Result<Running> {
    let opts = QueueOptions {
        block_timeout: LONG_BLOCK,
        ..QueueOptions::default()
    };
    let queue = WorkQueue::new(
        redis.pool.clone(),
        FamilyKeys::new(&redis.prefix, "scrape"),
        opts,
    )?;
    let (tx, started) = mpsc::unbounded_channel();
    let handler = Arc::new(Report {
        ledger: pipeline_ops::ledger::SourceLedger::new(
            sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://127.0.0.1/unused")?,
            pipeline_store::progress::Progress::new(),
        ),
        started: tx,
    });
    let cancel = CancellationToken::new();
    let runner = tokio::spawn(worker::run(
        queue.clone(),
        handler,
        RunnerOptions {
            concurrency,
            reserve_batch,
            drain_timeout: Duration::from_secs(5),
        },
        pipeline_runner::Activity::default(),
        cancel.clone(),
    ));
    Ok(Running {
        queue,
        started,
        cancel,
        runner,
    })
}

fn message() -> SourceMessage {
    SourceMessage {
        source_id: Uuid::new_v4(),
        job_id: None,
        url: None,
        project_id: None,
        priority: Default::default(),
        render: None,
    }
}

#[tokio::test]
async fn an_idle_runner_starts_each_message_at_once() -> anyhow::Result<()> {
    let redis = TestRedis::new()?;
    let mut r = start(&redis, 4)?;
    for round in 0..200u64 {
        // Vary the moment, so some messages land while the runner goes from its empty
        // reserve to its wait.
        tokio::time::sleep(Duration::from_micros((round * 53) % 2000)).await;
        let msg = message();
        r.queue.enqueue(&msg.id(), &msg.body()).await?;
        let seen = timeout(PROMPT, r.started.recv())
            .await
            .map_err(|_| anyhow::anyhow!("round {round}: the idle runner never woke"))?;
        assert_eq!(seen, Some(msg.source_id));
    }
    r.cancel.cancel();
    assert!(r.runner.await?, "drained");
    Ok(())
}

#[tokio::test]
async fn shutdown_drains_while_the_runner_is_blocked_waiting() -> anyhow::Result<()> {
    let redis = TestRedis::new()?;
    let mut r = start(&redis, 8)?;
    let msg = message();
    r.queue.enqueue(&msg.id(), &msg.body()).await?;
    assert_eq!(
        timeout(PROMPT, r.started.recv()).await?,
        Some(msg.source_id)
    );
    // Now blocked in its wait, with a block timeout of 20 s.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    r.cancel.cancel();
    let drained = timeout(PROMPT, r.runner).await??;
    assert!(drained, "the drain finished");
    assert!(stopping.elapsed() < PROMPT);
    assert_eq!(r.queue.depth().await?.total(), 0, "the message was acked");
    Ok(())
}

/// Enqueues `n` messages in bulk and returns their ids.
async fn backlog(queue: &WorkQueue, n: usize) -> anyhow::Result<std::collections::HashSet<Uuid>> {
    let msgs: Vec<SourceMessage> = (0..n).map(|_| message()).collect();
    let items: Vec<(String, serde_json::Value)> = msgs.iter().map(|m| (m.id(), m.body())).collect();
    queue.enqueue_bulk(&items).await?;
    Ok(msgs.iter().map(|m| m.source_id).collect())
}

#[tokio::test]
async fn a_backlog_of_fast_work_reserved_ahead_runs_each_message_once() -> anyhow::Result<()> {
    let redis = TestRedis::new()?;
    // Two slots and batches of 32: once the work is seen to be fast, the runner reserves a
    // whole batch for two slots and the next batch while handing out this one.
    let mut r = start_with(&redis, 2, 32)?;
    let ids = backlog(&r.queue, 3_000).await?;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < ids.len() {
        let id = timeout(PROMPT, r.started.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("runner stopped"))?;
        assert!(ids.contains(&id), "a message nobody sent");
        assert!(seen.insert(id), "{id} ran twice");
    }
    r.cancel.cancel();
    assert!(timeout(PROMPT, r.runner).await??, "drained");
    assert!(r.started.try_recv().is_err(), "nothing ran after the last");
    assert_eq!(r.queue.depth().await?.total(), 0, "every message acked");
    Ok(())
}

#[tokio::test]
async fn a_stop_amid_fast_work_reserved_ahead_leaves_nothing_leased() -> anyhow::Result<()> {
    // Rounds whose stop finds a batch reserved ahead are the point; not every stop does.
    for round in 0..10 {
        // A fresh key prefix each round, deleted at its end.
        let redis = TestRedis::new()?;
        let mut r = start_with(&redis, 2, 32)?;
        let ids = backlog(&r.queue, 2_000).await?;
        let mut seen = std::collections::HashSet::new();
        // Stop at a different point each round, with batches in flight.
        while seen.len() < 300 + round * 150 {
            let id = timeout(PROMPT, r.started.recv()).await?.expect("running");
            assert!(seen.insert(id), "{id} ran twice");
        }
        r.cancel.cancel();
        assert!(timeout(PROMPT, r.runner).await??, "round {round}: drained");
        while let Ok(id) = r.started.try_recv() {
            assert!(seen.insert(id), "{id} ran twice");
        }
        let depth = r.queue.depth().await?;
        // What was reserved (ahead or not) ran within the drain; the rest waits, ready.
        assert_eq!(
            depth.leased, 0,
            "round {round}: a reserved batch was left leased"
        );
        assert_eq!(depth.delayed, 0);
        assert_eq!(
            depth.ready as usize + seen.len(),
            ids.len(),
            "round {round}: every message ran once or is still ready"
        );
    }
    Ok(())
}
