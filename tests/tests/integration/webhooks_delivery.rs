//! Webhook delivery end to end, against receivers this test runs on loopback: events written
//! by the triggers in the transaction of the change they report, relayed to the `webhooks`
//! queue, sent signed, retried, dead-lettered, redriven, reconciled after Redis lost them,
//! and delivered without loss when the `webhook-worker` binary is killed with SIGKILL
//! mid-burst. Needs the binaries built first (`cargo build --workspace --bins`) for the last.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use integration_tests::{TestDb, TestRedis, binary, redis_url, settings_for};
use pipeline_ops::webhooks::{self as ops, EndpointInput};
use pipeline_ops::{Family, Services};
use pipeline_runner::run_next;
use pipeline_store::jobs::{self, NewScrapeJob, ProjectRef};
use pipeline_store::sources::{self, Transition};
use pipeline_store::webhooks;
use pipeline_store::{Actor, SourceStatus};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use uuid::Uuid;
use webhook_worker::{Relay, WebhookHandler, send_options, sign};

/// What the receivers saw, per path.
#[derive(Default)]
struct Seen {
    /// Requests per path, in arrival order: (delivery id header, signature valid, body).
    requests: HashMap<String, Vec<(String, bool, Value)>>,
    /// Per path: answers still to give before answering 200 (`flaky`).
    failures_left: HashMap<String, u32>,
}

#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    secret: Arc<Mutex<String>>,
    /// Milliseconds each `/slow` answer takes.
    slow_ms: u64,
}

/// Receivers on loopback: `/ok/{x}` answers 200; `/flaky/{x}` answers 500 until its
/// failures are spent, then 200; `/hang/{x}` never answers while `hang` is set; `/slow/{x}`
/// answers 200 after `slow_ms`; `/gone/{x}` answers 410. Each records what it got and
/// whether the signature verified with the current secret.
async fn receivers(slow_ms: u64) -> (SocketAddr, Receiver, Arc<Mutex<bool>>) {
    let rx = Receiver {
        seen: Arc::default(),
        secret: Arc::new(Mutex::new(String::new())),
        slow_ms,
    };
    let hang = Arc::new(Mutex::new(true));
    let hang_flag = hang.clone();
    let app = Router::new()
        .route(
            "/{mode}/{name}",
            post(
                move |State(rx): State<Receiver>,
                      Path((mode, name)): Path<(String, String)>,
                      headers: HeaderMap,
                      body: Bytes| {
                    let hang = hang_flag.clone();
                    async move {
                        let path = format!("/{mode}/{name}");
                        let secret = rx.secret.lock().unwrap().clone();
                        let sig = headers
                            .get(sign::SIGNATURE_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let now = chrono::Utc::now().timestamp();
                        let valid = sign::verify(&secret, &sig, &body, now, 300);
                        let id = headers
                            .get(sign::DELIVERY_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let fail = {
                            let mut seen = rx.seen.lock().unwrap();
                            seen.requests
                                .entry(path.clone())
                                .or_default()
                                .push((id, valid, value));
                            match seen.failures_left.get_mut(&path) {
                                Some(n) if *n > 0 && mode == "flaky" => {
                                    *n -= 1;
                                    true
                                }
                                _ => false,
                            }
                        };
                        match mode.as_str() {
                            "flaky" if fail => (StatusCode::INTERNAL_SERVER_ERROR, "try later"),
                            "hang" if *hang.lock().unwrap() => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                (StatusCode::OK, "late")
                            }
                            "slow" => {
                                tokio::time::sleep(Duration::from_millis(rx.slow_ms)).await;
                                (StatusCode::OK, "ok")
                            }
                            "gone" => (StatusCode::GONE, "no such hook"),
                            _ => (StatusCode::OK, "ok"),
                        }
                    }
                },
            ),
        )
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx, hang)
}

struct Setup {
    services: Services,
    redis: TestRedis,
    db: TestDb,
    project_id: Uuid,
}

async fn setup() -> anyhow::Result<Setup> {
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let mut settings = settings_for(&db, &redis);
    settings.queue.backoff_base_ms = 20;
    settings.queue.backoff_cap_ms = 100;
    settings.queue.max_attempts = 3;
    settings.webhooks.timeout_ms = 500;
    settings.webhooks.allow_private_hosts = vec!["127.0.0.1".into()];
    settings.webhooks.reconcile_after_secs = 0;
    let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
    let project_id: Uuid =
        sqlx::query_scalar("INSERT INTO projects (id, name) VALUES ($1, 'hooks') RETURNING id")
            .bind(Uuid::now_v7())
            .fetch_one(&db.pool)
            .await?;
    Ok(Setup {
        services,
        redis,
        db,
        project_id,
    })
}

impl Setup {
    async fn endpoint(&self, url: String, events: &[&str]) -> anyhow::Result<(Uuid, String)> {
        let created = ops::create(
            &self.services,
            self.project_id,
            &EndpointInput {
                url,
                events: events.iter().map(|e| (*e).to_owned()).collect(),
                secret: None,
                description: None,
            },
        )
        .await?;
        Ok((created.endpoint.id, created.secret))
    }

    fn handler(&self) -> WebhookHandler {
        WebhookHandler::new(self.db.pool.clone(), &send_options(&self.services.settings))
            .expect("an HTTP client")
    }

    /// Relays and runs the queue in process until `done` holds or 20 s pass.
    async fn drive(
        &self,
        handler: &WebhookHandler,
        done: impl AsyncFn(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let relay = Relay::new(self.services.clone());
        let queue = self.services.queue(Family::Webhooks);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(self).await {
            anyhow::ensure!(Instant::now() < deadline, "not done within 20 s");
            relay.relay_once().await?;
            if run_next(queue, handler, 16).await? == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    async fn scalar(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// Deliveries with status `status`.
    async fn in_status(&self, status: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = $1")
            .bind(status)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    async fn trail(&self, delivery: Uuid) -> Vec<(String, Option<i32>, Option<i32>)> {
        sqlx::query_as(
            "SELECT kind, attempt, http_status FROM webhook_delivery_events
              WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(delivery)
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
    }

    /// A scrape job of `urls` in the project, its sources moved to `to` through the
    /// store's own transition, and the job's progress refreshed: the path a worker takes.
    async fn job_ending(&self, urls: &[&str], to: SourceStatus) -> anyhow::Result<Uuid> {
        let urls: Vec<String> = urls.iter().map(|u| (*u).to_owned()).collect();
        let job = jobs::create_scrape_job(
            &self.db.pool,
            &NewScrapeJob {
                actor: Actor::Cli,
                model_token_cap: None,
                project: ProjectRef::Id(self.project_id),
                source_group: None,
                urls: &urls,
                invalid: &[],
                priority: "normal",
                render: None,
            },
        )
        .await?;
        for s in &job.sources {
            let (event, error) = match to {
                SourceStatus::Extracted => ("succeeded", None),
                _ => ("dead_lettered", Some(("permanent", "HTTP 404"))),
            };
            sources::transition(
                &self.db.pool,
                &self.services.progress,
                &Transition {
                    source_id: s.source_id,
                    job_id: Some(job.job_id),
                    to,
                    event,
                    stage: "scrape",
                    actor: Actor::ScrapeWorker,
                    attempt: Some(1),
                    detail: json!({"error": "HTTP 404", "kind": "permanent"}),
                    error,
                },
            )
            .await?;
        }
        pipeline_store::progress::refresh(&self.db.pool, job.job_id).await?;
        Ok(job.job_id)
    }
}

#[tokio::test]
async fn events_are_written_with_their_change_and_delivered_signed_once() -> anyhow::Result<()> {
    let s = setup().await?;
    let (addr, rx, _) = receivers(0).await;
    let (_, secret) = s
        .endpoint(
            format!("http://{addr}/ok/a"),
            &[
                "job.completed",
                "job.failed",
                "page.extracted",
                "item.dead_lettered",
            ],
        )
        .await?;
    *rx.secret.lock().unwrap() = secret;
    // A second endpoint that wants only parks sees none of these; a third that wants job
    // ends gets its own deliveries of them (its own ids).
    s.endpoint(format!("http://{addr}/ok/b"), &["item.parked"])
        .await?;
    s.endpoint(
        format!("http://{addr}/ok/c"),
        &["job.completed", "job.failed"],
    )
    .await?;

    let ok_job = s
        .job_ending(
            &["https://a.example/1", "https://a.example/2"],
            SourceStatus::Extracted,
        )
        .await?;
    let failed_job = s
        .job_ending(&["https://a.example/3"], SourceStatus::DeadLettered)
        .await?;
    // 2 pages extracted + job.completed + 1 item.dead_lettered + job.failed, and the two
    // job ends again for the third endpoint.
    assert_eq!(s.scalar("SELECT count(*) FROM webhook_deliveries").await, 7);

    let handler = s.handler();
    s.drive(&handler, async |s| s.in_status("delivered").await == 7)
        .await?;

    let seen = rx.seen.lock().unwrap();
    assert_eq!(seen.requests["/ok/c"].len(), 2);
    assert!(
        seen.requests["/ok/c"]
            .iter()
            .all(|(id, _, _)| seen.requests["/ok/a"]
                .iter()
                .all(|(other, _, _)| other != id)),
        "each endpoint's delivery has its own id"
    );
    let got = &seen.requests["/ok/a"];
    assert_eq!(got.len(), 5, "each delivery sent once");
    assert!(
        got.iter().all(|(_, valid, _)| *valid),
        "every signature verifies"
    );
    assert!(!seen.requests.contains_key("/ok/b"));
    let types: Vec<&str> = got
        .iter()
        .map(|(_, _, b)| b["type"].as_str().unwrap())
        .collect();
    for t in [
        "job.completed",
        "job.failed",
        "page.extracted",
        "item.dead_lettered",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    let completed = got
        .iter()
        .find(|(_, _, b)| b["type"] == "job.completed")
        .unwrap();
    assert_eq!(completed.2["data"]["job_id"], json!(ok_job));
    assert_eq!(completed.2["data"]["progress"]["extracted"], json!(2));
    assert_eq!(
        completed.0,
        completed.2["id"].as_str().unwrap(),
        "the idempotency id is the payload's id"
    );
    let failed = got
        .iter()
        .find(|(_, _, b)| b["type"] == "job.failed")
        .unwrap();
    assert_eq!(failed.2["data"]["job_id"], json!(failed_job));
    let dead = got
        .iter()
        .find(|(_, _, b)| b["type"] == "item.dead_lettered")
        .unwrap();
    assert_eq!(dead.2["data"]["url"], "https://a.example/3");
    assert_eq!(dead.2["data"]["error"], "HTTP 404");
    for (_, _, body) in got {
        assert!(
            !body.to_string().contains("whsec_"),
            "no payload carries the secret"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_one_delivery_after_three_attempts() -> anyhow::Result<()> {
    let s = setup().await?;
    let (addr, rx, _) = receivers(0).await;
    let (endpoint, secret) = s
        .endpoint(format!("http://{addr}/flaky/x"), &["job.completed"])
        .await?;
    *rx.secret.lock().unwrap() = secret;
    rx.seen
        .lock()
        .unwrap()
        .failures_left
        .insert("/flaky/x".into(), 2);
    let delivery = webhooks::ping(&s.db.pool, endpoint)
        .await?
        .expect("the endpoint exists");
    let handler = s.handler();
    s.drive(&handler, async |s| s.in_status("delivered").await == 1)
        .await?;
    let got = rx.seen.lock().unwrap().requests["/flaky/x"].clone();
    assert_eq!(got.len(), 3, "two 500s, then the 200");
    assert!(
        got.iter()
            .all(|(id, valid, _)| *valid && *id == delivery.to_string())
    );
    assert_eq!(
        s.trail(delivery).await,
        vec![
            ("attempt".into(), Some(1), Some(500)),
            ("attempt".into(), Some(2), Some(500)),
            ("attempt".into(), Some(3), Some(200)),
            ("delivered".into(), Some(3), None),
        ]
    );
    let d = webhooks::get_delivery(&s.db.pool, delivery).await?.unwrap();
    assert_eq!(d.delivery.attempts, 3);
    assert!(
        d.events
            .iter()
            .all(|e| e.kind != "attempt" || e.latency_ms.is_some())
    );
    Ok(())
}

/// An allow-list entry naming a host with a port (`localhost:PORT`) lets deliveries reach
/// that host on that port only: the same port rule as page fetches.
#[tokio::test]
async fn an_allow_entry_with_a_port_allows_that_port_only() -> anyhow::Result<()> {
    let s = setup().await?;
    let (addr, rx, _) = receivers(0).await;
    let (endpoint, secret) = s
        .endpoint(
            format!("http://localhost:{}/ok/port", addr.port()),
            &["job.completed"],
        )
        .await?;
    *rx.secret.lock().unwrap() = secret;
    let handler_with = |entry: String| {
        let mut opts = send_options(&s.services.settings);
        opts.allow_private_hosts = vec![entry];
        WebhookHandler::new(s.db.pool.clone(), &opts).expect("an HTTP client")
    };

    // Another port named: refused where the name is resolved, for good (dead-lettered at
    // the first attempt), and the receiver never hears of it.
    let refused = webhooks::ping(&s.db.pool, endpoint)
        .await?
        .expect("the endpoint exists");
    let other_port = addr.port().checked_add(1).unwrap_or(1);
    let handler = handler_with(format!("localhost:{other_port}"));
    s.drive(&handler, async |s| s.in_status("dead_lettered").await == 1)
        .await?;
    assert_eq!(
        s.trail(refused).await.first().cloned(),
        Some(("attempt".into(), Some(1), None))
    );
    let error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM webhook_deliveries WHERE id = $1")
            .bind(refused)
            .fetch_one(&s.db.pool)
            .await?;
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("not a public address")),
        "{error:?}"
    );
    assert!(!rx.seen.lock().unwrap().requests.contains_key("/ok/port"));

    // Its own port named: delivered.
    let delivered = webhooks::ping(&s.db.pool, endpoint)
        .await?
        .expect("the endpoint exists");
    let handler = handler_with(format!("localhost:{}", addr.port()));
    s.drive(&handler, async |s| s.in_status("delivered").await == 1)
        .await?;
    let got = rx.seen.lock().unwrap().requests["/ok/port"].clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].1, "signed");
    assert_eq!(got[0].0, delivered.to_string());
    Ok(())
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_bounded_dead_lettered_and_redriven() -> anyhow::Result<()>
{
    let s = setup().await?;
    let (addr, rx, hang) = receivers(0).await;
    let (endpoint, secret) = s
        .endpoint(format!("http://{addr}/hang/x"), &["job.completed"])
        .await?;
    *rx.secret.lock().unwrap() = secret;
    let delivery = webhooks::ping(&s.db.pool, endpoint).await?.unwrap();
    let handler = s.handler();
    let started = Instant::now();
    s.drive(&handler, async |s| s.in_status("dead_lettered").await == 1)
        .await?;
    // Three attempts of at most 500 ms each, plus short backoffs.
    assert!(started.elapsed() < Duration::from_secs(10));
    let attempts: Vec<_> = s
        .trail(delivery)
        .await
        .into_iter()
        .filter(|(k, _, _)| k == "attempt")
        .collect();
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts.iter().all(|(_, _, status)| status.is_none()),
        "no answer, no status"
    );
    let dlq = s.services.dlq(Family::Webhooks);
    assert!(
        dlq.get(&delivery.to_string()).await?.is_some(),
        "the delivery is in the webhooks DLQ"
    );

    // The receiver recovers; a redrive (as the API, the CLI and the daemon do it) delivers.
    *hang.lock().unwrap() = false;
    let redriven = pipeline_ops::dlq_ops::retry(
        &s.services,
        Family::Webhooks,
        &delivery.to_string(),
        Actor::Cli,
    )
    .await?;
    assert!(redriven.is_some());
    let status: String = sqlx::query_scalar("SELECT status FROM webhook_deliveries WHERE id = $1")
        .bind(delivery)
        .fetch_one(&s.db.pool)
        .await?;
    assert_eq!(status, "pending", "the redrive is booked on the delivery");
    s.drive(&handler, async |s| s.in_status("delivered").await == 1)
        .await?;
    let kinds: Vec<String> = s.trail(delivery).await.into_iter().map(|t| t.0).collect();
    assert_eq!(
        kinds,
        [
            "attempt",
            "attempt",
            "attempt",
            "dead_lettered",
            "redriven",
            "attempt",
            "delivered"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn refused_addresses_and_4xx_dead_letter_at_once_and_replay_resends() -> anyhow::Result<()> {
    let s = setup().await?;
    let (addr, rx, _) = receivers(0).await;
    let (gone, secret) = s
        .endpoint(format!("http://{addr}/gone/x"), &["job.completed"])
        .await?;
    *rx.secret.lock().unwrap() = secret;
    // Registration refuses a private address that is not allowed; an endpoint stored before
    // the operator narrowed the allow list meets the same guard at every delivery. Its
    // address is loopback too: a listener there would be reached if the guard let it.
    let refused = ops::create(
        &s.services,
        s.project_id,
        &EndpointInput {
            url: format!("http://127.0.0.2:{}/ok/never", addr.port()),
            events: vec!["job.completed".into()],
            ..EndpointInput::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("not a public address"),
        "{refused}"
    );
    let private: Uuid = sqlx::query_scalar(
        "INSERT INTO webhook_endpoints (id, project_id, url, events, secret)
         VALUES ($1, $2, $3, '{job.completed}', 'an-old-secret-value') RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(s.project_id)
    .bind(format!("http://127.0.0.2:{}/ok/never", addr.port()))
    .fetch_one(&s.db.pool)
    .await?;
    let d_gone = webhooks::ping(&s.db.pool, gone).await?.unwrap();
    let d_private = webhooks::ping(&s.db.pool, private).await?.unwrap();
    let handler = s.handler();
    s.drive(&handler, async |s| s.in_status("dead_lettered").await == 2)
        .await?;
    let g = webhooks::get_delivery(&s.db.pool, d_gone).await?.unwrap();
    assert_eq!(g.delivery.attempts, 1, "a 410 is not retried");
    assert_eq!(g.delivery.last_status, Some(410));
    assert!(g.delivery.last_error.unwrap().contains("no such hook"));
    let p = webhooks::get_delivery(&s.db.pool, d_private)
        .await?
        .unwrap();
    assert!(
        p.delivery
            .last_error
            .as_deref()
            .unwrap()
            .contains("not a public address"),
        "{:?}",
        p.delivery.last_error
    );
    assert!(
        !rx.seen.lock().unwrap().requests.contains_key("/ok/never"),
        "nothing reached the refused receiver"
    );

    // Replay of a delivered one resends it with the same id.
    let (ok, secret) = s
        .endpoint(format!("http://{addr}/ok/r"), &["job.completed"])
        .await?;
    *rx.secret.lock().unwrap() = secret;
    let d_ok = webhooks::ping(&s.db.pool, ok).await?.unwrap();
    s.drive(&handler, async |s| s.in_status("delivered").await == 1)
        .await?;
    assert_eq!(
        ops::replay(&s.services, d_ok, Actor::Cli).await?,
        ops::Replay::Replayed
    );
    assert_eq!(
        ops::replay(&s.services, d_ok, Actor::Cli).await?,
        ops::Replay::AlreadyPending
    );
    s.drive(&handler, async |_| {
        rx.seen
            .lock()
            .unwrap()
            .requests
            .get("/ok/r")
            .map_or(0, Vec::len)
            == 2
    })
    .await?;
    let got = rx.seen.lock().unwrap().requests["/ok/r"].clone();
    assert_eq!(got[0].0, got[1].0, "a replay keeps the idempotency id");
    Ok(())
}

#[tokio::test]
async fn a_delivery_whose_message_redis_lost_is_queued_again() -> anyhow::Result<()> {
    let s = setup().await?;
    let (addr, rx, _) = receivers(0).await;
    let (endpoint, secret) = s
        .endpoint(format!("http://{addr}/ok/lost"), &["job.completed"])
        .await?;
    *rx.secret.lock().unwrap() = secret;
    let delivery = webhooks::ping(&s.db.pool, endpoint).await?.unwrap();
    let relay = Relay::new(s.services.clone());
    assert_eq!(relay.relay_once().await?, 1);
    // Redis loses everything under the test's prefix (a restart without persistence).
    s.redis
        .target
        .delete_matching_blocking(&format!("{}*", s.redis.prefix))
        .map_err(anyhow::Error::msg)?;
    let depth = s.services.queue(Family::Webhooks).depth().await?;
    assert_eq!(depth.ready + depth.leased + depth.delayed, 0);
    let report = relay.reconcile_once().await?;
    assert_eq!(report.requeued, vec![delivery]);
    let handler = s.handler();
    s.drive(&handler, async |s| s.in_status("delivered").await == 1)
        .await?;
    let kinds: Vec<String> = s.trail(delivery).await.into_iter().map(|t| t.0).collect();
    assert_eq!(kinds, ["reconciled", "attempt", "delivered"]);
    Ok(())
}

fn spawn_worker(s: &Setup) -> anyhow::Result<Child> {
    let logs = std::env::var_os("TEST_LOG").is_some();
    let out = || {
        if logs {
            Stdio::inherit()
        } else {
            Stdio::null()
        }
    };
    Command::new(binary("webhook-worker"))
        .env("DATABASE_URL", &s.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &s.redis.prefix)
        .env("PIPELINE__WEBHOOKS__ALLOW_PRIVATE_HOSTS", "127.0.0.1")
        .env("PIPELINE__WEBHOOKS__CONCURRENCY", "8")
        .env("PIPELINE__WEBHOOKS__RELAY_INTERVAL_MS", "100")
        .env("PIPELINE__QUEUE__VISIBILITY_TIMEOUT_SECS", "2")
        .env("PIPELINE__QUEUE__BLOCK_TIMEOUT_MS", "200")
        .env("PIPELINE__SHUTDOWN__DRAIN_TIMEOUT_SECS", "5")
        .env("PIPELINE__PROBES__HOST", "127.0.0.1")
        .env("PIPELINE__PROBES__WEBHOOK_WORKER_PORT", "0")
        .env("RUST_LOG", if logs { "info" } else { "error" })
        .stdout(out())
        .stderr(out())
        .kill_on_drop(true)
        .spawn()
        .map_err(Into::into)
}

/// 200 events to a receiver taking 20 ms each; the worker is killed with SIGKILL once some
/// are delivered, and a second one finishes: every event reaches the receiver (at least
/// once; each id is in Postgres as delivered).
#[tokio::test]
async fn a_killed_worker_loses_no_event() -> anyhow::Result<()> {
    const EVENTS: usize = 200;
    let s = setup().await?;
    let (addr, rx, _) = receivers(20).await;
    let (endpoint, secret) = s
        .endpoint(format!("http://{addr}/slow/burst"), &["job.completed"])
        .await?;
    *rx.secret.lock().unwrap() = secret;
    let mut ids = Vec::new();
    for _ in 0..EVENTS {
        ids.push(webhooks::ping(&s.db.pool, endpoint).await?.unwrap());
    }
    let delivered = || async { s.in_status("delivered").await as usize };
    let mut first = spawn_worker(&s)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = delivered().await;
        if n >= EVENTS / 5 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {n} delivered in 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().await?; // SIGKILL, to this test's own child only
    first.wait().await?;
    let at_kill = delivered().await;
    assert!(at_kill < EVENTS, "the burst was over before the kill");

    let mut second = spawn_worker(&s)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered().await < EVENTS {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {EVENTS} delivered after the restart",
            delivered().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.kill().await?;
    second.wait().await?;
    let seen = rx.seen.lock().unwrap();
    let got: std::collections::HashSet<String> = seen.requests["/slow/burst"]
        .iter()
        .map(|(id, valid, _)| {
            assert!(valid);
            id.clone()
        })
        .collect();
    for id in &ids {
        assert!(
            got.contains(&id.to_string()),
            "delivery {id} never reached the receiver"
        );
    }
    Ok(())
}

/// The DLQ and the delivery rows disagree when a booking did not land: a redriven message
/// for a row still `dead_lettered` is sent (not dropped), and a `pending` row whose item
/// sits in the DLQ is booked `dead_lettered` by the reconciliation.
#[tokio::test]
async fn unbooked_redrives_and_dead_letters_are_repaired() -> anyhow::Result<()> {
    let s = setup().await?;
    let (addr, rx, _) = receivers(0).await;
    let (endpoint, secret) = s
        .endpoint(format!("http://{addr}/gone/x"), &["job.completed"])
        .await?;
    *rx.secret.lock().unwrap() = secret;
    let delivery = webhooks::ping(&s.db.pool, endpoint).await?.unwrap();
    let handler = s.handler();
    s.drive(&handler, async |s| s.in_status("dead_lettered").await == 1)
        .await?;

    // The row says pending (the dead-letter's booking was lost) while the DLQ holds it.
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', enqueued_at = now() - interval '1 hour'
          WHERE id = $1",
    )
    .bind(delivery)
    .execute(&s.db.pool)
    .await?;
    let relay = Relay::new(s.services.clone());
    let report = relay.reconcile_once().await?;
    assert_eq!((report.examined, report.held), (1, 1));
    assert!(
        report.requeued.is_empty(),
        "the DLQ holds it: nothing is queued twice"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM webhook_deliveries WHERE id = $1")
        .bind(delivery)
        .fetch_one(&s.db.pool)
        .await?;
    assert_eq!(status, "dead_lettered");

    // A redrive whose booking never lands (its process died): the message reaches the
    // worker while the row still says dead_lettered, and is sent, not acked unsent.
    let dlq = s.services.dlq(Family::Webhooks);
    assert!(dlq.redrive(&delivery.to_string()).await?.is_some());
    dlq.release(&[delivery.to_string().as_str()]).await?;
    s.drive(&handler, async |_| {
        rx.seen
            .lock()
            .unwrap()
            .requests
            .get("/gone/x")
            .map_or(0, Vec::len)
            == 2
    })
    .await?;
    let kinds: Vec<String> = s.trail(delivery).await.into_iter().map(|t| t.0).collect();
    assert_eq!(
        kinds,
        [
            "attempt",
            "dead_lettered",
            "dead_lettered",
            "redriven",
            "attempt",
            "dead_lettered"
        ]
    );
    Ok(())
}
