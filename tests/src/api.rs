//! The admin API under test: the real router served on 127.0.0.1 (a free port) over the
//! test's own database and Redis prefix, a client that sends the key, and a helper that puts
//! a real source into a DLQ the way a worker does.

use std::time::Duration;

use dlq_core::ErrorKind;
use pipeline_core::Settings;
use pipeline_ops::Services;
use pipeline_ops::submit::{SubmitRequest, submit};
use pipeline_store::SourceStatus;
use pipeline_store::sources::{self, Transition};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{TestDb, TestRedis, http_client, settings_for};

/// The key the test API accepts.
pub const TEST_KEY: &str = "test-key-0123456789";

/// A running API over a fresh database and Redis prefix.
pub struct ApiEnv {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The services the API runs on (tests use them to set up and check state).
    pub services: Services,
    /// An HTTP client.
    pub client: reqwest::Client,
    cancel: CancellationToken,
    /// The test's Redis prefix (dropped after the server handles above).
    pub redis: TestRedis,
    /// The test's database (dropped last).
    pub db: TestDb,
}

impl ApiEnv {
    /// Starts the API with [`TEST_KEY`]; `tweak` adjusts the settings first.
    pub async fn start(tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<Self> {
        let db = TestDb::migrated().await?;
        let redis = TestRedis::new()?;
        let mut settings = settings_for(&db, &redis);
        tweak(&mut settings);
        let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
        let cancel = CancellationToken::new();
        let (addr, _task) = pipeline_api::serve(
            services.clone(),
            Some(TEST_KEY.to_owned().into()),
            "127.0.0.1:0".parse()?,
            cancel.clone(),
        )
        .await?;
        Ok(Self {
            base: format!("http://{addr}"),
            services,
            client: http_client(),
            cancel,
            redis,
            db,
        })
    }

    /// A request with the key.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("X-API-Key", TEST_KEY)
    }

    /// A request without any key.
    pub fn req_no_key(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// GET with the key, returning the status and the JSON body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        json_of(self.req(Method::GET, path).send().await?).await
    }

    /// POST with the key and no body.
    pub async fn post(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        json_of(self.req(Method::POST, path).send().await?).await
    }

    /// Submits URLs straight through the library (not the API).
    pub async fn submit(&self, urls: &[&str]) -> anyhow::Result<(Uuid, Vec<Uuid>)> {
        let out = submit(
            &self.services,
            &SubmitRequest {
                urls: urls.iter().map(|u| u.to_string()).collect(),
                project_id: None,
                project_name: None,
                source_group: None,
                model_token_cap: None,
                priority: Default::default(),
                render: None,
            },
            pipeline_store::Actor::Cli,
        )
        .await?;
        Ok((
            out.job_id,
            out.sources.iter().map(|s| s.source_id).collect(),
        ))
    }

    /// Submits `url` and moves its scrape message into the scrape DLQ as a worker does
    /// (reserve, dead-letter, source `dead_lettered` with its event). Returns (job, source).
    pub async fn dead_lettered_source(
        &self,
        url: &str,
        kind: ErrorKind,
    ) -> anyhow::Result<(Uuid, Uuid)> {
        let (job_id, ids) = self.submit(&[url]).await?;
        let source_id = ids[0];
        let queue = self.services.queue(pipeline_ops::Family::Scrape);
        let deliveries = queue.reserve(1).await?;
        anyhow::ensure!(
            deliveries.len() == 1 && deliveries[0].id == source_id.to_string(),
            "expected the submitted message, got {deliveries:?}"
        );
        let moved = queue
            .dead_letter(&deliveries[0], "HTTP 503 from origin", kind)
            .await?;
        anyhow::ensure!(
            moved == work_queue::DeadLetterOutcome::DeadLettered,
            "dead-letter refused: {moved:?}"
        );
        sources::transition(
            &self.services.db,
            &self.services.progress,
            &Transition {
                source_id,
                job_id: Some(job_id),
                to: SourceStatus::DeadLettered,
                event: "dead_lettered",
                stage: "scrape",
                actor: pipeline_store::Actor::ScrapeWorker,
                attempt: Some(1),
                detail: json!({"error": "HTTP 503 from origin", "kind": kind.as_str(),
                    "attempts": 1, "dlq": "scrape"}),
                error: Some((kind.as_str(), "HTTP 503 from origin")),
            },
        )
        .await?;
        Ok((job_id, source_id))
    }
}

impl Drop for ApiEnv {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The status and JSON body of a response (`Null` when the body is not JSON).
pub async fn json_of(resp: Response) -> anyhow::Result<(u16, serde_json::Value)> {
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    ))
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
