//! Helpers of the requeue daemon's tests: sources in Postgres whose messages sit in a DLQ,
//! exactly as a worker leaves them after its last failed attempt.

use std::time::Duration;

use dlq_core::ErrorKind;
use pipeline_core::Settings;
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::messages::SourceMessage;
use pipeline_ops::submit::{SubmitRequest, submit};
use pipeline_store::SourceStatus;
use pipeline_store::sources::{self, Transition};
use requeue_daemon::RequeueConfig;
use serde_json::json;
use uuid::Uuid;
use work_queue::Delivery;

use crate::{TestDb, TestRedis, settings_for};

/// A test's database, Redis prefix and services.
pub struct World {
    /// The database (dropped last).
    pub db: TestDb,
    /// The Redis prefix.
    pub redis: TestRedis,
    /// Services over both.
    pub services: Services,
}

impl World {
    /// A fresh world whose settings `tune` adjusts first.
    pub async fn new(tune: impl FnOnce(&mut Settings)) -> anyhow::Result<Self> {
        Self::on(TestRedis::new()?, tune).await
    }

    /// A fresh world on `redis` (a test's own Redis), whose settings `tune` adjusts first.
    pub async fn on(redis: TestRedis, tune: impl FnOnce(&mut Settings)) -> anyhow::Result<Self> {
        let db = TestDb::migrated().await?;
        let mut settings = settings_for(&db, &redis);
        settings.requeue.redrive_base_delay_secs = 0;
        settings.requeue.rate_per_sec = 0;
        settings.queue.backoff_base_ms = 10;
        settings.queue.backoff_cap_ms = 50;
        tune(&mut settings);
        let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
        Ok(Self {
            db,
            redis,
            services,
        })
    }

    /// The requeue configuration of these settings.
    pub fn config(&self) -> RequeueConfig {
        RequeueConfig::from_settings(&self.services.settings.requeue)
    }

    /// Submits `urls` as one job; returns the job id and the source ids in `urls` order.
    pub async fn submit(&self, urls: Vec<String>) -> anyhow::Result<(Uuid, Vec<Uuid>)> {
        let out = submit(
            &self.services,
            &SubmitRequest {
                urls: urls.clone(),
                project_id: None,
                project_name: Some("requeue-tests".into()),
                source_group: None,
                model_token_cap: None,
                priority: Default::default(),
                render: None,
            },
            pipeline_store::Actor::Cli,
        )
        .await?;
        let ids = urls
            .iter()
            .map(|u| {
                out.sources
                    .iter()
                    .find(|s| s.url == *u)
                    .map(|s| s.source_id)
                    .ok_or_else(|| anyhow::anyhow!("no source for {u}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((out.job_id, ids))
    }

    /// Takes every scrape message off the queue and dead-letters it with `kind`, recording
    /// `dead_lettered` the way a worker does. Returns how many.
    pub async fn dead_letter_all(&self, kind: ErrorKind, error: &str) -> anyhow::Result<usize> {
        let held = self.reserve_all().await?;
        self.dead_letter(&held, kind, error).await?;
        Ok(held.len())
    }

    /// Reserves every message of the scrape queue (as a worker about to fail them would).
    pub async fn reserve_all(&self) -> anyhow::Result<Vec<Delivery>> {
        let queue = self.services.queue(Family::Scrape);
        let mut all = Vec::new();
        loop {
            let batch = queue.reserve(1000).await?;
            if batch.is_empty() {
                return Ok(all);
            }
            all.extend(batch);
        }
    }

    /// Dead-letters `held` with `kind`, recording `dead_lettered` as a worker does.
    pub async fn dead_letter(
        &self,
        held: &[Delivery],
        kind: ErrorKind,
        error: &str,
    ) -> anyhow::Result<()> {
        let queue = self.services.queue(Family::Scrape);
        for d in held {
            let outcome = queue.dead_letter(d, error, kind).await?;
            anyhow::ensure!(
                outcome == work_queue::DeadLetterOutcome::DeadLettered,
                "lease lost while dead-lettering {}",
                d.id
            );
            let body: SourceMessage = d.parse()?;
            sources::transition(
                &self.db.pool,
                &self.services.progress,
                &Transition {
                    source_id: body.source_id,
                    job_id: body.job_id,
                    to: SourceStatus::DeadLettered,
                    event: "dead_lettered",
                    stage: "scrape",
                    actor: pipeline_store::Actor::ScrapeWorker,
                    attempt: Some(d.attempts as i32 + 1),
                    detail: json!({"error": error, "kind": kind.as_str(), "dlq": Family::Scrape}),
                    error: Some((kind.as_str(), error)),
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Deletes every key under the test's prefix in one atomic script: what Redis losing
    /// its data looks like to this test (FLUSHALL, or a restart without persistence, is
    /// atomic too), without touching other tests' keys (a real FLUSHALL would wipe every
    /// test running in parallel on the shared Redis). A deletion in several round trips
    /// would leave states no real loss produces, such as a message's hash without its
    /// place in any queue.
    pub async fn lose_redis_data(&self) -> anyhow::Result<usize> {
        let mut conn = self.redis.pool.get();
        let deleted: usize = redis::Script::new(
            r"
            local keys = redis.call('KEYS', ARGV[1])
            for i = 1, #keys, 1000 do
                redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys)))
            end
            return #keys
            ",
        )
        .arg(format!("{}*", self.redis.prefix))
        .invoke_async(&mut conn)
        .await?;
        Ok(deleted)
    }

    /// Count of events of `kind` per source, for the sources that have any.
    pub async fn event_counts(&self, kind: &str) -> anyhow::Result<Vec<(Uuid, i64)>> {
        Ok(
            sqlx::query_as("SELECT source_id, count(*) FROM job_events WHERE kind = $1 GROUP BY 1")
                .bind(kind)
                .fetch_all(&self.db.pool)
                .await?,
        )
    }

    /// The kinds of a source's events, oldest first.
    pub async fn event_kinds(&self, source: Uuid) -> anyhow::Result<Vec<String>> {
        Ok(sources::events(&self.db.pool, source)
            .await?
            .into_iter()
            .map(|e| e.kind)
            .collect())
    }

    /// A source's status.
    pub async fn status(&self, source: Uuid) -> anyhow::Result<SourceStatus> {
        Ok(sources::get(&self.db.pool, source).await?.status)
    }
}

/// `n` distinct URLs under `base`.
pub fn urls(base: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{base}/ok/{i}")).collect()
}

/// A port nobody listens on right now (bound and released), for a child's probe server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if started.elapsed() > timeout {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The scrape worker, the extraction worker and the requeue daemon running in this process
/// over one world's services, until dropped or [`Pipeline::stop`]ped.
pub struct Pipeline {
    cancel: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the three daemons' loops.
    pub fn start(w: &World) -> anyhow::Result<Self> {
        Self::on(&w.services, w.config())
    }

    /// Starts the three daemons' loops over `services` (another configuration of a world's
    /// database and Redis, say), the requeue daemon with `config`.
    pub fn on(services: &Services, config: RequeueConfig) -> anyhow::Result<Self> {
        // The scrape worker's HTTP client needs the process's TLS provider.
        pipeline_core::install_crypto_provider();
        let cancel = tokio_util::sync::CancellationToken::new();
        let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
        let mut tasks = Vec::new();
        let (s, c) = (services.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(err) = scrape_worker::run(s, c).await {
                panic!("scrape worker failed: {err:#}");
            }
        }));
        let (s, c) = (services.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            extraction_worker::run(&s, batcher, c).await;
        }));
        let (s, c) = (services.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            requeue_daemon::run(&s, config, c, Duration::from_secs(10)).await;
        }));
        Ok(Self { cancel, tasks })
    }

    /// Stops every loop and waits for them.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            task.await?;
        }
        Ok(())
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Settings for end-to-end runs against the fixture server on 127.0.0.1: short leases and
/// backoffs, a fast daemon, no politeness delay.
pub fn e2e_settings(s: &mut Settings) {
    s.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
    s.scrape.per_host_min_delay_ms = 0;
    s.scrape.per_host_max_concurrency = 64;
    s.queue.visibility_timeout_secs = 10;
    s.queue.block_timeout_ms = 200;
    s.requeue.interval_ms = 100;
    s.shutdown.drain_timeout_secs = 10;
}
