//! The runner the daemons use, waiting for work: a message sent to an idle runner starts at
//! once (no wake-up lost across many rounds), and shutdown drains while the runner is
//! blocked in its wait. The block timeout is far longer than each bound checked, so passing
//! shows the wake-up, not the timeout.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::TestRedis;
use pipeline_ops::messages::SourceMessage;
use pipeline_ops::worker::{self, Failure, Handler, RunnerOptions};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use work_queue::{Delivery, FamilyKeys, QueueOptions, WorkQueue};

const LONG_BLOCK: Duration = Duration::from_secs(20);
const PROMPT: Duration = Duration::from_secs(3);

/// Reports each message it starts; fails nothing, so the (never connected) database is unused.
struct Report {
    db: sqlx::PgPool,
    started: mpsc::UnboundedSender<Uuid>,
}

impl Handler for Report {
    type Message = SourceMessage;

    fn db(&self) -> &sqlx::PgPool {
        &self.db
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
        db: sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://127.0.0.1/unused")?,
        started: tx,
    });
    let cancel = CancellationToken::new();
    let runner = tokio::spawn(worker::run(
        queue.clone(),
        handler,
        RunnerOptions {
            concurrency,
            reserve_batch: 8,
            drain_timeout: Duration::from_secs(5),
        },
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
        uri: None,
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
