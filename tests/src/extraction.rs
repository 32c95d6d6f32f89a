//! Support for the extraction worker's tests: a scraped source stored the way the scrape
//! worker leaves it, a drain of the extraction queue, row counts, fixture pages, and a real
//! OpenAI-compatible embeddings server on 127.0.0.1 that can answer, fail with 500, stall
//! past the client's timeout, or return the wrong number of vectors.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use extraction_worker::ExtractionHandler;
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::messages::SourceMessage;
use pipeline_store::SourceStatus;
use pipeline_store::jobs::{self, NewScrapeJob, ProjectRef};
use pipeline_store::sources::{self, Fetched};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{TestDb, TestRedis, settings_for};

/// A test's database, Redis prefix and services, with short retry settings.
pub struct Env {
    /// The test's database (dropped with the value).
    pub db: TestDb,
    /// The test's Redis prefix (keys deleted with the value).
    pub redis: TestRedis,
    /// The services over both.
    pub services: Services,
}

impl Env {
    /// A fresh environment; `tweak` adjusts the settings (backend, chunk sizes) first.
    pub async fn new(tweak: impl FnOnce(&mut pipeline_core::Settings)) -> anyhow::Result<Self> {
        let db = TestDb::migrated().await?;
        let redis = TestRedis::new()?;
        let mut settings = settings_for(&db, &redis);
        settings.queue.max_attempts = 2;
        settings.queue.backoff_base_ms = 20;
        settings.queue.backoff_cap_ms = 100;
        settings.queue.visibility_timeout_secs = 30;
        settings.embedding.batch_window_ms = 5;
        tweak(&mut settings);
        let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
        Ok(Self {
            db,
            redis,
            services,
        })
    }

    /// The handler of this environment, with its own batcher over the configured embedder.
    pub fn handler(&self) -> anyhow::Result<ExtractionHandler> {
        let settings = &self.services.settings;
        let embedder = extraction_worker::embedder_from_settings(settings, None)?;
        let batcher = extraction_worker::spawn_batcher(settings, embedder);
        Ok(extraction_worker::handler(&self.services, batcher))
    }

    /// A source with `body` stored as the scrape worker stores it (status `scraped`), and
    /// its job. Nothing is enqueued.
    pub async fn scraped_source(
        &self,
        url: &str,
        body: &str,
        content_type: &str,
    ) -> anyhow::Result<(Uuid, Uuid)> {
        let urls = vec![url.to_owned()];
        let created = jobs::create_scrape_job(
            &self.db.pool,
            &NewScrapeJob {
                actor: pipeline_store::Actor::Cli,
                project: ProjectRef::Name("extraction-tests"),
                source_group: None,
                urls: &urls,
                invalid: &[],
                model_token_cap: None,
                priority: "normal",
                render: None,
            },
        )
        .await?;
        let source_id = created.sources[0].source_id;
        sources::store_fetched(
            &self.db.pool,
            &self.services.progress,
            source_id,
            Some(created.job_id),
            Some(1),
            &Fetched {
                raw_content: body,
                raw_bytes: None,
                title: None,
                content_type,
                http_status: 200,
                etag: None,
                last_modified: None,
                content_sha256: None,
            },
            json!({}),
        )
        .await?;
        Ok((source_id, created.job_id))
    }

    /// Enqueues the extraction message of a source; `false` if it was queued already.
    pub async fn enqueue(&self, source_id: Uuid, job_id: Uuid) -> anyhow::Result<bool> {
        let msg = SourceMessage {
            source_id,
            job_id: Some(job_id),
            url: None,
            project_id: None,
            priority: Default::default(),
            render: None,
        };
        Ok(self.queue().enqueue(&msg.id(), &msg.body()).await?)
    }

    /// The extraction queue.
    pub fn queue(&self) -> &work_queue::WorkQueue {
        self.services.queue(Family::Extraction)
    }

    /// Processes deliveries until the queue holds nothing (retries included, waiting for
    /// their backoff), or `timeout` passes. Returns how many deliveries were processed.
    pub async fn drain(
        &self,
        handler: &ExtractionHandler,
        timeout: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut processed = 0;
        loop {
            let n = pipeline_runner::run_next(self.queue(), handler, 16).await?;
            processed += n;
            if n == 0 {
                if self.queue().depth().await?.total() == 0 {
                    return Ok(processed);
                }
                anyhow::ensure!(Instant::now() < deadline, "the queue did not drain in time");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// `SELECT count(*)` with one uuid parameter.
    pub async fn count(&self, sql: &str, id: Uuid) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(id)
            .fetch_one(&self.db.pool)
            .await?)
    }

    /// Row counts of a source: (extractions, embedded extractions, embeddings, entity links).
    pub async fn counts(&self, source_id: Uuid) -> anyhow::Result<Counts> {
        Ok(Counts {
            extractions: self
                .count("SELECT count(*) FROM extractions WHERE source_id = $1", source_id)
                .await?,
            embedded: self
                .count(
                    "SELECT count(*) FROM extractions WHERE source_id = $1 AND embeddings_created",
                    source_id,
                )
                .await?,
            embeddings: self
                .count(
                    "SELECT count(*) FROM extraction_embeddings e JOIN extractions x
                     ON x.id = e.extraction_id WHERE x.source_id = $1",
                    source_id,
                )
                .await?,
            links: self
                .count(
                    "SELECT count(*) FROM extraction_entities l JOIN extractions x
                     ON x.id = l.extraction_id WHERE x.source_id = $1",
                    source_id,
                )
                .await?,
            entities: self.count("SELECT count(*) FROM entities WHERE project_id = (SELECT project_id FROM sources WHERE id = $1)", source_id).await?,
        })
    }

    /// The source's status.
    pub async fn status(&self, source_id: Uuid) -> anyhow::Result<SourceStatus> {
        Ok(sources::get(&self.db.pool, source_id).await?.status)
    }

    /// The kinds of the source's events, oldest first.
    pub async fn event_kinds(&self, source_id: Uuid) -> anyhow::Result<Vec<String>> {
        Ok(sources::events(&self.db.pool, source_id)
            .await?
            .into_iter()
            .map(|e| e.kind)
            .collect())
    }
}

/// Row counts of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// `extractions` rows.
    pub extractions: i64,
    /// Of which `embeddings_created`.
    pub embedded: i64,
    /// `extraction_embeddings` rows.
    pub embeddings: i64,
    /// `extraction_entities` rows.
    pub links: i64,
    /// `entities` rows of the project.
    pub entities: i64,
}

/// An article with a title, a JSON-LD organization, several sections and contact details.
pub fn article_page() -> String {
    let para = |topic: &str| {
        format!(
            "<p>The {topic} team measured throughput, latency and error rates for a whole \
             quarter, and wrote down what they learned about queues, leases and retries so \
             that the next team would not have to learn it again the hard way.</p>"
        )
    };
    let mut body = String::new();
    for (h, topic) in [
        ("Background", "platform"),
        ("Method", "storage"),
        ("Results", "network"),
    ] {
        body.push_str(&format!("<h2>{h}</h2>"));
        for _ in 0..4 {
            body.push_str(&para(topic));
        }
    }
    format!(
        r#"<!DOCTYPE html><html><head><title>Lessons from the queue | Example Blog</title>
<script type="application/ld+json">{{"@type":"NewsArticle","headline":"Lessons from the queue",
"publisher":{{"@type":"Organization","name":"Example Media"}}}}</script></head>
<body><nav><a href="/">Home</a> <a href="/about">About</a></nav>
<article><h1>Lessons from the queue</h1>{body}
<h2>Contact</h2><p>Questions go to editors@example.org or +1 (555) 010-2030.</p></article>
<footer>Copyright Example Media</footer></body></html>"#
    )
}

/// A product page whose second JSON-LD block does not parse.
pub const BROKEN_JSONLD_PAGE: &str = r#"<!DOCTYPE html>
<html><head><title>Widget 3000 - Shop</title>
<script type="application/ld+json">{"@type": "Product", "name": "Widget 3000", "brand": {"@type": "Brand", "name": "Acme"}}</script>
<script type="application/ld+json">{"@type": "Organization", "name": "Broken Co", </script>
</head><body><p>The Widget 3000 is our best widget yet. Questions? Mail sales@acme.example.</p></body></html>"#;

/// How the embeddings server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One vector per input.
    Ok,
    /// 500 Internal Server Error.
    Fail500,
    /// Sleeps this long, then answers.
    Stall(Duration),
    /// One vector fewer than inputs.
    WrongCount,
}

/// A real OpenAI-compatible `/v1/embeddings` server on 127.0.0.1.
#[derive(Clone)]
pub struct EmbeddingServer {
    /// Its address.
    pub addr: SocketAddr,
    /// Vector length it answers with.
    pub dims: usize,
    mode: Arc<Mutex<Mode>>,
    inputs: Arc<Mutex<Vec<usize>>>,
}

impl EmbeddingServer {
    /// Starts a server answering `dims`-long vectors.
    pub async fn start(dims: usize) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = Self {
            addr: listener.local_addr()?,
            dims,
            mode: Arc::new(Mutex::new(Mode::Ok)),
            inputs: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(server.clone());
        tokio::spawn(async move {
            // The server lives as long as the test's runtime.
            let _ = axum::serve(listener, app).await;
        });
        Ok(server)
    }

    /// Its base URL, as `embedding.openai.url` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches how the next requests are answered.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("mode lock") = mode;
    }

    /// The number of inputs of every request received, answered or not.
    pub fn requests(&self) -> Vec<usize> {
        self.inputs.lock().expect("inputs lock").clone()
    }

    /// Total inputs received.
    pub fn inputs(&self) -> usize {
        self.requests().iter().sum()
    }
}

async fn embeddings(
    State(s): State<EmbeddingServer>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let inputs = body["input"].as_array().map(Vec::len).unwrap_or(0);
    s.inputs.lock().expect("inputs lock").push(inputs);
    let mode = *s.mode.lock().expect("mode lock");
    let n = match mode {
        Mode::Fail500 => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "model not loaded"})),
            );
        }
        Mode::Stall(wait) => {
            tokio::time::sleep(wait).await;
            inputs
        }
        Mode::WrongCount => inputs.saturating_sub(1),
        Mode::Ok => inputs,
    };
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let mut v = vec![0.0f32; s.dims];
            v[i % s.dims] = 1.0;
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    (
        StatusCode::OK,
        Json(json!({"object": "list", "data": data, "model": body["model"]})),
    )
}
