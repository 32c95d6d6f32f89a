//! What users see of fair share, priorities and limits per project, over the real API, CLI
//! and console with Postgres and Redis: a priority given on submit, crawl and DLQ retry
//! (refused when it is not a priority), shown on the job and carried by the message into
//! its project's lane; a project's limits per family read, set, refused and cleared through
//! the API and `pipelinectl`, applied to the lane in Redis and restored by `sync_all` after
//! Redis lost them; ready counts per project in `GET /api/v1/queues`, `pipelinectl queues`
//! and the console's queue page.

use std::time::Duration;

use dlq_core::ErrorKind;
use integration_tests::api::{ApiEnv, json_of};
use integration_tests::{binary, redis_url};
use pipeline_ops::Family;
use reqwest::header::COOKIE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;
use uuid::Uuid;
use work_queue::{LaneLimits, LaneState};

use crate::console_http::{client, session};

async fn send(env: &ApiEnv, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = env.req(method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    json_of(req.send().await.expect("request"))
        .await
        .expect("answer")
}

async fn project(env: &ApiEnv, name: &str) -> Uuid {
    let (status, body) = send(
        env,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["project"]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid")
}

/// The `prio` code (`h`, `n`, `l`) and lane of message `id` in `family`'s queue.
async fn message_lane(env: &ApiEnv, family: Family, id: &str) -> (Option<String>, Option<String>) {
    let queue = env.services.queue(family);
    let shards = queue.shards_in_use().await.expect("shards");
    let mut con = env.services.redis.get();
    for shard in 0..shards {
        let (prio, lane): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(queue.keys().shard(shard).msg(id))
            .arg("prio")
            .arg("lane")
            .query_async(&mut con)
            .await
            .expect("HMGET");
        if prio.is_some() {
            return (prio, lane);
        }
    }
    (None, None)
}

#[tokio::test]
async fn a_priority_is_taken_on_submit_crawl_and_retry_shown_on_the_job_and_carried_by_the_message()
-> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let shop = project(&env, "shop").await;

    // Submit at high priority: the job says so, and the message waits in the project's lane.
    let (status, accepted) = send(
        &env,
        Method::POST,
        "/api/v1/scrape",
        Some(
            json!({"urls": ["https://example.com/urgent"], "project": "shop", "priority": "high"}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["priority"], "high");
    let job: Uuid = accepted["job_id"].as_str().expect("job").parse()?;
    let source = accepted["sources"][0]["source_id"]
        .as_str()
        .expect("source")
        .to_owned();
    let (_, shown) = env.get(&format!("/api/v1/jobs/{job}")).await?;
    assert_eq!(shown["priority"], "high", "{shown}");
    let (_, list) = env.get("/api/v1/jobs").await?;
    let listed = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|j| j["id"] == job.to_string())
        .expect("the job is listed");
    assert_eq!(listed["priority"], "high");
    assert_eq!(
        message_lane(&env, Family::Scrape, &source).await,
        (Some("h".into()), Some(shop.to_string()))
    );
    let lanes = env.services.queue(Family::Scrape).lanes().await?;
    assert_eq!(lanes.len(), 1, "{lanes:?}");
    assert_eq!(lanes[0].lane, shop.to_string());
    assert_eq!(lanes[0].ready, 1);
    assert_eq!(lanes[0].state, LaneState::Serving);

    // Without one: normal. Anything else is refused, naming the choices.
    let (status, plain) = send(
        &env,
        Method::POST,
        "/api/v1/scrape",
        Some(json!({"urls": ["https://example.com/plain"], "project": "shop"})),
    )
    .await;
    assert_eq!(status, 202, "{plain}");
    let (_, shown) = env
        .get(&format!(
            "/api/v1/jobs/{}",
            plain["job_id"].as_str().unwrap()
        ))
        .await?;
    assert_eq!(shown["priority"], "normal");
    for bad in [json!("urgent"), json!(1), json!("HIGH")] {
        let (status, body) = send(
            &env,
            Method::POST,
            "/api/v1/scrape",
            Some(json!({"urls": ["https://example.com/x"], "priority": bad})),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("high") && detail.contains("low"),
            "{bad}: {detail}"
        );
    }

    // A crawl at low priority.
    let (status, crawl) = send(
        &env,
        Method::POST,
        "/api/v1/crawl",
        Some(json!({"url": "https://example.org/", "project": "shop", "priority": "low"})),
    )
    .await;
    assert_eq!(status, 202, "{crawl}");
    assert_eq!(crawl["priority"], "low");
    let (_, shown) = env
        .get(&format!(
            "/api/v1/jobs/{}",
            crawl["job_id"].as_str().unwrap()
        ))
        .await?;
    assert_eq!(shown["priority"], "low");
    let start = crawl["source_id"].as_str().unwrap().to_owned();
    assert_eq!(
        message_lane(&env, Family::Scrape, &start)
            .await
            .0
            .as_deref(),
        Some("l")
    );
    let (status, body) = send(
        &env,
        Method::POST,
        "/api/v1/crawl",
        Some(json!({"url": "https://example.net/", "priority": "soon"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    Ok(())
}

#[tokio::test]
async fn a_dlq_retry_may_change_the_messages_priority_and_refuses_other_words() -> anyhow::Result<()>
{
    let env = ApiEnv::start(|_| {}).await?;
    let (_, source) = env
        .dead_lettered_source("https://example.com/failed", ErrorKind::Permanent)
        .await?;
    let (status, body) = env
        .post(&format!(
            "/api/v1/dlq/scrape/{source}/retry?priority=urgent"
        ))
        .await?;
    assert_eq!(status, 422, "{body}");
    // Still in the DLQ after the refusal.
    let (status, body) = env
        .post(&format!("/api/v1/dlq/scrape/{source}/retry?priority=high"))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        message_lane(&env, Family::Scrape, &source.to_string())
            .await
            .0
            .as_deref(),
        Some("h")
    );
    Ok(())
}

#[tokio::test]
async fn limits_are_read_set_refused_and_cleared_through_the_api_and_reach_redis()
-> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let shop = project(&env, "shop").await;
    let queue = env.services.queue(Family::Scrape);

    let (status, body) = env.get("/api/v1/projects/shop/limits").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["project_id"], shop.to_string());
    let families: Vec<&str> = body["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["family"].as_str().unwrap())
        .collect();
    assert_eq!(families, ["scrape", "extraction", "facts", "webhooks"]);
    assert!(
        body["families"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["stored"] == false && f["weight"] == 1 && f["max_in_flight"].is_null())
    );

    let (status, set) = send(
        &env,
        Method::PUT,
        &format!("/api/v1/projects/{shop}/limits/scrape"),
        Some(json!({"weight": 3, "max_in_flight": 4, "per_minute": 120, "burst": 2})),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["weight"], 3);
    assert_eq!(set["max_in_flight"], 4);
    assert_eq!(set["per_second"], 2.0);
    assert_eq!(set["stored"], true);
    assert_eq!(
        queue.lane_limits(&shop.to_string()).await?,
        LaneLimits {
            weight: 3,
            max_in_flight: Some(4),
            start_interval: Some(Duration::from_millis(500)),
            burst: 2,
        }
    );
    let (_, body) = env.get("/api/v1/projects/shop/limits").await?;
    assert_eq!(body["families"][0]["stored"], true);
    assert_eq!(body["families"][0]["max_in_flight"], 4);

    // Refusals name the field; nothing changes.
    for (bad, field) in [
        (json!({"weight": 0}), "weight"),
        (json!({"weight": 1001}), "weight"),
        (json!({"max_in_flight": 0}), "max_in_flight"),
        (json!({"per_second": 0}), "per_second"),
        (json!({"per_second": 1001}), "per_second"),
        (json!({"per_second": 1, "per_minute": 60}), "per_minute"),
        (json!({"burst": 0}), "burst"),
        (json!({"weight": -1}), "-1"),
        (json!({"speed": 3}), "speed"),
    ] {
        let (status, body) = send(
            &env,
            Method::PUT,
            "/api/v1/projects/shop/limits/scrape",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(field),
            "{bad}: {body}"
        );
    }
    assert_eq!(queue.lane_limits(&shop.to_string()).await?.weight, 3);
    let (status, _) = send(
        &env,
        Method::PUT,
        "/api/v1/projects/nobody/limits/scrape",
        Some(json!({"weight": 2})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = send(
        &env,
        Method::PUT,
        "/api/v1/projects/shop/limits/scrap",
        Some(json!({"weight": 2})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("scrape, extraction")
    );
    let resp = env
        .req_no_key(Method::PUT, "/api/v1/projects/shop/limits/scrape")
        .json(&json!({"weight": 9}))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = env
        .req_no_key(Method::DELETE, "/api/v1/projects/shop/limits/scrape")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(queue.lane_limits(&shop.to_string()).await?.weight, 3);

    // Cleared: the defaults, in Postgres and in Redis at once.
    let resp = env
        .req(Method::DELETE, "/api/v1/projects/shop/limits/scrape")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 204);
    assert!(queue.lane_limits(&shop.to_string()).await?.is_default());
    let (_, body) = env.get("/api/v1/projects/shop/limits").await?;
    assert_eq!(body["families"][0]["stored"], false);
    let (status, _) = env.get("/api/v1/projects/nobody/limits").await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn sync_all_restores_the_limits_after_redis_lost_them() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let shop = project(&env, "shop").await;
    let input = pipeline_ops::limits::LimitsInput {
        weight: Some(5),
        max_in_flight: Some(2),
        ..Default::default()
    };
    pipeline_ops::limits::set(&env.services, shop, Family::Extraction, &input).await?;
    let queue = env.services.queue(Family::Extraction);
    let expected = LaneLimits {
        weight: 5,
        max_in_flight: Some(2),
        ..LaneLimits::default()
    };
    assert_eq!(queue.lane_limits(&shop.to_string()).await?, expected);

    // Redis forgets everything under the test's prefix (a restart without persistence).
    let keys = env.redis.keys().await?;
    assert!(!keys.is_empty());
    let mut con = env.services.redis.get();
    for k in &keys {
        let _: i64 = redis::cmd("DEL").arg(k).query_async(&mut con).await?;
    }
    assert!(queue.lane_limits(&shop.to_string()).await?.is_default());

    let report = pipeline_ops::limits::sync_all(&env.services).await?;
    assert_eq!(report.applied, 1);
    assert_eq!(queue.lane_limits(&shop.to_string()).await?, expected);
    Ok(())
}

#[tokio::test]
async fn the_queues_answer_and_the_console_show_ready_work_per_project() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let a = project(&env, "alpha").await;
    let b = project(&env, "beta").await;
    for (name, urls) in [
        (
            "alpha",
            vec![
                "https://a.example/1",
                "https://a.example/2",
                "https://a.example/3",
            ],
        ),
        ("beta", vec!["https://b.example/1"]),
    ] {
        let (status, body) = send(
            &env,
            Method::POST,
            "/api/v1/scrape",
            Some(json!({"urls": urls, "project": name, "priority": "low"})),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, body) = env.get("/api/v1/queues").await?;
    assert_eq!(status, 200, "{body}");
    let scrape = &body["families"][0];
    assert_eq!(scrape["family"], "scrape");
    assert_eq!(scrape["ready"], 4);
    assert_eq!(scrape["lanes_truncated"], false);
    assert_eq!(
        scrape["lanes"],
        json!([
            {"project_id": a, "ready": 3, "in_flight": 0, "state": "serving"},
            {"project_id": b, "ready": 1, "in_flight": 0, "state": "serving"},
        ])
    );
    assert_eq!(body["families"][1]["lanes"], json!([]));

    // The console: the per-project table, then the most-ready project's messages with their
    // priority; another project's by its link.
    let (cookie, _) = session(&env).await?;
    let get = |path: String| {
        let cookie = cookie.clone();
        let base = env.base.clone();
        async move {
            let resp = client()
                .get(format!("{base}{path}"))
                .header(COOKIE, cookie)
                .send()
                .await?;
            anyhow::Ok((resp.status(), resp.text().await?))
        }
    };
    let (status, page) = get("/ui/queues/scrape?state=ready".into()).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"lanes\""), "{page}");
    let alpha_row = page
        .split(&format!("data-lane=\"{a}\""))
        .nth(1)
        .expect("alpha's row");
    assert!(alpha_row.contains(">alpha</a>") && alpha_row.contains(">3</td>"));
    assert!(page.contains(&format!("data-lane=\"{b}\"")));
    assert!(page.contains("3 messages ready for alpha"), "{page}");
    assert_eq!(page.matches("<td class=\"priority\">low</td>").count(), 3);
    let (_, page) = get(format!("/ui/queues/scrape?state=ready&lane={b}")).await?;
    assert!(page.contains("1 message ready for beta"), "{page}");

    // The job page and the jobs list show the priority.
    let (_, jobs) = env.get("/api/v1/jobs").await?;
    let job = jobs["items"][0]["id"].as_str().unwrap().to_owned();
    let (_, page) = get(format!("/ui/jobs/{job}")).await?;
    assert!(page.contains("<dd id=\"job-priority\">low</dd>"), "{page}");
    let (_, page) = get("/ui/jobs".into()).await?;
    assert!(page.contains("<td class=\"priority\">low</td>"));
    // The forms offer it, normal by default.
    let (_, page) = get("/ui/submit".into()).await?;
    assert!(page.contains("id=\"scrape-priority\"") && page.contains("id=\"crawl-priority\""));
    assert_eq!(
        page.matches("<option value=\"normal\" selected>").count(),
        2
    );
    Ok(())
}

/// `pipelinectl` on the test's database and Redis prefix.
async fn ctl(env: &ApiEnv, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let out = Command::new(binary("pipelinectl"))
        .args(args)
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .env_remove("PIPELINE_CONFIG")
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn pipelinectl_sets_shows_and_clears_limits_and_takes_priorities() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let shop = project(&env, "shop").await;
    let queue = env.services.queue(Family::Scrape);

    let (code, out, err) = ctl(
        &env,
        &[
            "limits",
            "set",
            "shop",
            "--family",
            "scrape",
            "--max-in-flight",
            "4",
            "--per-second",
            "10",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("scrape"), "{out}");
    let lane = queue.lane_limits(&shop.to_string()).await?;
    assert_eq!(lane.max_in_flight, Some(4));
    assert_eq!(lane.start_interval, Some(Duration::from_millis(100)));

    let (code, out, err) = ctl(&env, &["limits", "show", "shop"]).await?;
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("scrape"))
        .expect("a scrape row");
    assert!(row.contains('4') && row.contains("10/s"), "{out}");
    let (code, out, _) = ctl(&env, &["--json", "limits", "show", "shop"]).await?;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["families"][0]["max_in_flight"], 4);

    // Refusals: exit 2 with the field named; an unknown project exits 3.
    for (args, needle) in [
        (vec!["--weight", "0"], "weight"),
        (vec!["--burst", "0"], "burst"),
        (vec!["--per-minute", "0"], "per_minute"),
        (
            vec!["--per-second", "1", "--per-minute", "60"],
            "--per-minute",
        ),
    ] {
        let mut all = vec!["limits", "set", "shop", "--family", "scrape"];
        all.extend(args.iter().copied());
        let (code, _, err) = ctl(&env, &all).await?;
        assert_eq!(code, 2, "{all:?}: {err}");
        assert!(err.contains(needle), "{all:?}: {err}");
    }
    let (code, _, err) = ctl(&env, &["limits", "set", "shop", "--family", "scrap"]).await?;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = ctl(&env, &["limits", "show", "nobody"]).await?;
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        queue.lane_limits(&shop.to_string()).await?.max_in_flight,
        Some(4)
    );

    let (code, out, err) = ctl(&env, &["limits", "clear", "shop", "--family", "scrape"]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cleared"), "{out}");
    assert!(queue.lane_limits(&shop.to_string()).await?.is_default());

    // Priorities: submit takes one and the job shows it; a wrong word is a usage error.
    let (code, out, err) = ctl(
        &env,
        &[
            "--json",
            "submit",
            "--project",
            "shop",
            "--priority",
            "high",
            "https://example.com/a",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let job = serde_json::from_str::<Value>(&out)?["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let (code, out, _) = ctl(&env, &["jobs", "show", &job]).await?;
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("priority") && l.contains("high")),
        "{out}"
    );
    let (_, out, _) = ctl(&env, &["--json", "jobs", "list"]).await?;
    assert_eq!(
        serde_json::from_str::<Value>(&out)?["items"][0]["priority"],
        "high"
    );
    let (code, _, err) = ctl(
        &env,
        &["submit", "--priority", "urgent", "https://example.com/b"],
    )
    .await?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("high, normal or low"), "{err}");

    // `queues` breaks the scrape family down by project.
    let (code, out, err) = ctl(&env, &["queues"]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("scrape by project:"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("shop") && l.contains(" 1 ")),
        "{out}"
    );
    Ok(())
}
