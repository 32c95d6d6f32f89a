//! Webhooks over the real HTTP API, Postgres and Redis: endpoints registered, listed,
//! changed and removed (the secret in the creation's answer only), input refused with the
//! field named (a non-public address included, unless the operator allows it), a test
//! `ping` written as a delivery, deliveries listed by status and paged, one delivery's
//! payload and trail, and replays of each status (the DLQ's redrive for dead-lettered
//! ones). The worker that sends deliveries has its own tests; here its bookkeeping is made
//! through the store, as it makes it.

use dlq_core::ErrorKind;
use integration_tests::api::{ApiEnv, json_of};
use pipeline_ops::Family;
use pipeline_store::Actor;
use pipeline_store::webhooks::{self as store, Attempt, Mark};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

pub(crate) async fn send(env: &ApiEnv, method: Method, path: &str, body: Value) -> (u16, Value) {
    json_of(
        env.req(method, path)
            .json(&body)
            .send()
            .await
            .expect("request"),
    )
    .await
    .expect("answer")
}

async fn get(env: &ApiEnv, path: &str) -> (u16, Value) {
    env.get(path).await.expect("request")
}

/// Creates project `name` over the API; returns its id.
pub(crate) async fn project(env: &ApiEnv, name: &str) -> Uuid {
    let (status, body) = send(env, Method::POST, "/api/v1/projects", json!({"name": name})).await;
    assert_eq!(status, 201, "{body}");
    body["project"]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid")
}

fn id_of(v: &Value, field: &str) -> Uuid {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .parse()
        .expect("uuid")
}

async fn stored_secret(env: &ApiEnv, id: Uuid) -> String {
    sqlx::query_scalar("SELECT secret FROM webhook_endpoints WHERE id = $1")
        .bind(id)
        .fetch_one(&env.services.db)
        .await
        .expect("secret")
}

#[tokio::test]
async fn endpoints_are_registered_listed_changed_and_removed_with_the_secret_shown_once()
-> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let project_id = project(&env, "shop").await;

    // By name, with a generated secret; events deduplicated in the catalogue's order.
    let (status, created) = send(
        &env,
        Method::POST,
        "/api/v1/projects/shop/webhooks",
        json!({"url": "https://hooks.example.com/in",
               "events": ["item.parked", "job.completed", "item.parked"],
               "description": "ops channel"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let a = id_of(&created, "id");
    let secret_a = created["secret"].as_str().expect("a secret").to_owned();
    assert!(
        secret_a.starts_with("whsec_") && secret_a.len() == 70,
        "{secret_a}"
    );
    assert_eq!(secret_a, stored_secret(&env, a).await);
    assert_eq!(created["project_id"], project_id.to_string());
    assert_eq!(created["url"], "https://hooks.example.com/in");
    assert_eq!(created["events"], json!(["job.completed", "item.parked"]));
    assert_eq!(created["description"], "ops channel");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["deliveries"]["pending"], 0);

    // By id, with a chosen secret.
    let chosen = "a-chosen-secret-of-some-length";
    let (status, created_b) = send(
        &env,
        Method::POST,
        &format!("/api/v1/projects/{project_id}/webhooks"),
        json!({"url": "http://receiver.example.org:8080/hook", "events": ["job.failed"],
               "secret": chosen}),
    )
    .await;
    assert_eq!(status, 201, "{created_b}");
    assert_eq!(created_b["secret"], chosen);
    let b = id_of(&created_b, "id");

    // The list: both, oldest first, with counts and without any secret.
    store::ping(&env.services.db, a).await?;
    let resp = env
        .req(Method::GET, "/api/v1/projects/shop/webhooks")
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await?;
    assert!(
        !text.contains(&secret_a) && !text.contains(chosen),
        "{text}"
    );
    assert!(!text.contains("\"secret\""), "{text}");
    let list: Value = serde_json::from_str(&text)?;
    let ids: Vec<&str> = list["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.to_string(), b.to_string()]);
    assert_eq!(list["webhooks"][0]["deliveries"]["pending"], 1, "{list}");
    assert_eq!(list["webhooks"][1]["deliveries"]["pending"], 0, "{list}");

    // One, without its secret.
    let resp = env
        .req(Method::GET, &format!("/api/v1/webhooks/{a}"))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await?;
    assert!(
        !text.contains(&secret_a) && !text.contains("\"secret\""),
        "{text}"
    );
    let shown: Value = serde_json::from_str(&text)?;
    assert_eq!(shown["events"], json!(["job.completed", "item.parked"]));
    assert_eq!(shown["deliveries"]["pending"], 1);

    // A PATCH rotates the secret without returning it, and changes the rest.
    let rotated = "the-next-secret-0123456789";
    let resp = env
        .req(Method::PATCH, &format!("/api/v1/webhooks/{a}"))
        .json(
            &json!({"secret": rotated, "events": ["page.extracted"], "enabled": false,
                      "description": "", "url": "https://hooks.example.com/v2"}),
        )
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await?;
    assert!(
        !text.contains(rotated) && !text.contains("\"secret\""),
        "{text}"
    );
    let patched: Value = serde_json::from_str(&text)?;
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["events"], json!(["page.extracted"]));
    assert_eq!(patched["url"], "https://hooks.example.com/v2");
    assert_eq!(patched["description"], "");
    assert_eq!(stored_secret(&env, a).await, rotated);
    // An empty PATCH keeps everything.
    let (status, same) = send(
        &env,
        Method::PATCH,
        &format!("/api/v1/webhooks/{a}"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["url"], "https://hooks.example.com/v2");
    assert_eq!(same["enabled"], false);
    assert_eq!(stored_secret(&env, a).await, rotated);

    // Removal, then 404 everywhere; the deliveries go with it.
    let resp = env
        .req(Method::DELETE, &format!("/api/v1/webhooks/{a}"))
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    for (method, path) in [
        (Method::GET, format!("/api/v1/webhooks/{a}")),
        (Method::DELETE, format!("/api/v1/webhooks/{a}")),
        (Method::POST, format!("/api/v1/webhooks/{a}/test")),
        (Method::GET, format!("/api/v1/webhooks/{a}/deliveries")),
    ] {
        let (status, body) = json_of(env.req(method.clone(), &path).send().await?).await?;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("not found"),
            "{body}"
        );
    }
    let (status, body) = send(
        &env,
        Method::PATCH,
        &format!("/api/v1/webhooks/{a}"),
        json!({"enabled": true}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1")
            .bind(a)
            .fetch_one(&env.services.db)
            .await?;
    assert_eq!(left, 0);
    let (status, list) = get(&env, "/api/v1/projects/shop/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);

    // An unknown project, and ids that are not UUIDs.
    let (status, _) = send(
        &env,
        Method::POST,
        "/api/v1/projects/nope/webhooks",
        json!({"url": "https://e.com/", "events": ["job.failed"]}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(get(&env, "/api/v1/projects/nope/webhooks").await.0, 404);
    assert_eq!(get(&env, "/api/v1/webhooks/not-a-uuid").await.0, 422);
    assert_eq!(
        get(&env, "/api/v1/webhook-deliveries/not-a-uuid").await.0,
        422
    );
    Ok(())
}

#[tokio::test]
async fn invalid_input_is_refused_naming_the_field_and_private_addresses_only_when_allowed()
-> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    project(&env, "shop").await;
    let path = "/api/v1/projects/shop/webhooks";
    let ok_url = "https://hooks.example.com/in";
    for (body, field, says) in [
        (
            json!({"url": "ftp://e.com/", "events": ["job.failed"]}),
            "url",
            "scheme",
        ),
        (
            json!({"url": "not a url", "events": ["job.failed"]}),
            "url",
            "not a URL",
        ),
        (
            json!({"url": "https://u:p@e.com/", "events": ["job.failed"]}),
            "url",
            "credentials",
        ),
        (
            json!({"url": "http://127.0.0.1:9000/", "events": ["job.failed"]}),
            "url",
            "not a public address",
        ),
        (
            json!({"url": "http://[::1]/", "events": ["job.failed"]}),
            "url",
            "not a public address",
        ),
        (
            json!({"url": "http://169.254.169.254/latest", "events": ["job.failed"]}),
            "url",
            "not a public address",
        ),
        (
            json!({"url": "http://10.1.2.3/", "events": ["job.failed"]}),
            "url",
            "not a public address",
        ),
        (
            json!({"url": ok_url, "events": []}),
            "events",
            "at least one",
        ),
        (
            json!({"url": ok_url, "events": ["job.done"]}),
            "events",
            "unknown event `job.done`",
        ),
        (
            json!({"url": ok_url, "events": ["ping"]}),
            "events",
            "unknown event `ping`",
        ),
        (
            json!({"url": ok_url, "events": ["job.failed"], "secret": "short"}),
            "secret",
            "16 to 256",
        ),
        (
            json!({"url": ok_url, "events": ["job.failed"], "secret": "é".repeat(15)}),
            "secret",
            "16 to 256",
        ),
        (
            json!({"url": ok_url, "events": ["job.failed"], "secret": "long-enough-but\u{7}-bell"}),
            "secret",
            "control",
        ),
        (
            json!({"url": ok_url, "events": ["job.failed"], "description": "x".repeat(501)}),
            "description",
            "500",
        ),
        (
            json!({"url": ok_url, "events": ["job.failed"], "description": "a\u{0}b"}),
            "description",
            "NUL",
        ),
    ] {
        let (status, answer) = send(&env, Method::POST, path, body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        let detail = answer["detail"].as_str().expect("detail");
        assert!(
            detail.starts_with(&format!("{field}: ")) && detail.contains(says),
            "{body}: {detail}"
        );
    }
    // Fields the body does not have, and missing ones, are named by the parser.
    let (status, answer) = send(
        &env,
        Method::POST,
        path,
        json!({"url": ok_url, "events": ["job.failed"], "secrets": "x"}),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        answer["detail"].as_str().unwrap().contains("secrets"),
        "{answer}"
    );
    let (status, answer) = send(&env, Method::POST, path, json!({"url": ok_url})).await;
    assert_eq!(status, 422);
    assert!(
        answer["detail"].as_str().unwrap().contains("events"),
        "{answer}"
    );
    // Nothing was registered.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints")
        .fetch_one(&env.services.db)
        .await?;
    assert_eq!(n, 0);

    // A PATCH is checked the same way, and changes nothing when refused.
    let (status, created) = send(
        &env,
        Method::POST,
        path,
        json!({"url": ok_url, "events": ["job.failed"]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = id_of(&created, "id");
    for (body, field) in [
        (json!({"url": "http://192.168.1.1/"}), "url"),
        (json!({"events": []}), "events"),
        (json!({"secret": "tiny"}), "secret"),
    ] {
        let (status, answer) = send(
            &env,
            Method::PATCH,
            &format!("/api/v1/webhooks/{id}"),
            body.clone(),
        )
        .await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(
            answer["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "{answer}"
        );
    }
    let (_, shown) = get(&env, &format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(shown["url"], ok_url);
    let (status, _) = send(
        &env,
        Method::PATCH,
        &format!("/api/v1/webhooks/{id}"),
        json!({"active": true}),
    )
    .await;
    assert_eq!(status, 422);

    // An operator may allow an internal receiver by its address.
    let allowed = ApiEnv::start(|s| {
        s.webhooks.allow_private_hosts = vec!["127.0.0.1".into()];
    })
    .await?;
    project(&allowed, "internal").await;
    let (status, body) = send(
        &allowed,
        Method::POST,
        "/api/v1/projects/internal/webhooks",
        json!({"url": "http://127.0.0.1:9000/hook", "events": ["job.completed"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        &allowed,
        Method::POST,
        "/api/v1/projects/internal/webhooks",
        json!({"url": "http://10.0.0.1/hook", "events": ["job.completed"]}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    Ok(())
}

/// Puts a pending delivery in the `webhooks` DLQ as the worker does when it runs out of
/// attempts: reserve its message, dead-letter it, book it.
async fn dead_letter(env: &ApiEnv, id: Uuid) -> anyhow::Result<()> {
    let queue = env.services.queue(Family::Webhooks);
    queue
        .enqueue(&id.to_string(), &json!({"delivery_id": id}))
        .await?;
    let held = queue.reserve(1).await?;
    anyhow::ensure!(held.len() == 1 && held[0].id == id.to_string(), "{held:?}");
    let moved = queue
        .dead_letter(&held[0], "HTTP 500 from the receiver", ErrorKind::Transient)
        .await?;
    anyhow::ensure!(
        moved == work_queue::DeadLetterOutcome::DeadLettered,
        "dead-letter refused: {moved:?}"
    );
    store::mark(
        &env.services.db,
        Mark::DeadLettered,
        &[id],
        &[Some("HTTP 500 from the receiver".into())],
        Actor::WebhookWorker,
    )
    .await?;
    Ok(())
}

async fn attempt(env: &ApiEnv, id: Uuid, n: i32, status: i32, error: Option<&str>) {
    store::record_attempt(
        &env.services.db,
        id,
        &Attempt {
            attempt: n,
            http_status: Some(status),
            latency_ms: 12 * n,
            error,
            actor: Actor::WebhookWorker,
        },
    )
    .await
    .expect("attempt recorded");
}

#[tokio::test]
async fn test_pings_deliveries_trails_and_replays() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let project_id = project(&env, "shop").await;
    let (_, created) = send(
        &env,
        Method::POST,
        "/api/v1/projects/shop/webhooks",
        json!({"url": "https://hooks.example.com/in", "events": ["job.completed", "job.failed"]}),
    )
    .await;
    let endpoint = id_of(&created, "id");
    let secret = created["secret"].as_str().unwrap().to_owned();

    // A test writes a `ping` delivery, pending, with its payload.
    let (status, body) = env
        .post(&format!("/api/v1/webhooks/{endpoint}/test"))
        .await?;
    assert_eq!(status, 202, "{body}");
    let ping = id_of(&body, "delivery_id");
    let (status, d) = get(&env, &format!("/api/v1/webhook-deliveries/{ping}")).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["event"], "ping");
    assert_eq!(d["status"], "pending");
    assert_eq!(d["attempts"], 0);
    assert_eq!(d["endpoint_id"], endpoint.to_string());
    assert_eq!(d["payload"]["id"], ping.to_string());
    assert_eq!(d["payload"]["type"], "ping");
    assert_eq!(d["payload"]["project_id"], project_id.to_string());
    assert_eq!(d["payload"]["data"]["endpoint_id"], endpoint.to_string());
    assert_eq!(d["trail"], json!([]));
    assert!(!d.to_string().contains(&secret));

    // A job of the project ending writes a `job.completed` delivery (the trigger's).
    let (status, body) = send(
        &env,
        Method::POST,
        "/api/v1/scrape",
        json!({"urls": ["https://shop.example/a"], "project": "shop"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let job = id_of(&body, "job_id");
    sqlx::query("UPDATE jobs SET status = 'completed', completed_at = now() WHERE id = $1")
        .bind(job)
        .execute(&env.services.db)
        .await?;
    let (status, page) = get(&env, &format!("/api/v1/webhooks/{endpoint}/deliveries")).await;
    assert_eq!(status, 200, "{page}");
    let listed = page["deliveries"].as_array().expect("deliveries");
    assert_eq!(listed.len(), 2, "{page}");
    assert_eq!(listed[0]["event"], "job.completed", "newest first: {page}");
    assert_eq!(listed[1]["id"], ping.to_string());
    assert_eq!(page["next_before"], Value::Null);
    let completed = id_of(&listed[0], "id");
    let (_, d) = get(&env, &format!("/api/v1/webhook-deliveries/{completed}")).await;
    assert_eq!(d["payload"]["type"], "job.completed");
    assert_eq!(d["payload"]["data"]["job_id"], job.to_string());
    assert_eq!(d["payload"]["data"]["status"], "completed");

    // The ping fails once then is delivered: its trail has both attempts.
    attempt(&env, ping, 1, 503, Some("HTTP 503 from the receiver")).await;
    attempt(&env, ping, 2, 204, None).await;
    let (_, d) = get(&env, &format!("/api/v1/webhook-deliveries/{ping}")).await;
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["last_status"], 204);
    assert!(d["delivered_at"].is_string(), "{d}");
    let trail = d["trail"].as_array().expect("trail");
    let kinds: Vec<&str> = trail.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["attempt", "attempt", "delivered"], "{d}");
    assert_eq!(trail[0]["http_status"], 503);
    assert_eq!(trail[0]["latency_ms"], 12);
    assert_eq!(trail[0]["error"], "HTTP 503 from the receiver");
    assert_eq!(trail[0]["actor"], "webhook-worker");
    assert_eq!(trail[1]["http_status"], 204);
    assert_eq!(trail[1]["error"], Value::Null);

    // Filters and paging.
    let (_, page) = get(
        &env,
        &format!("/api/v1/webhooks/{endpoint}/deliveries?status=delivered"),
    )
    .await;
    let ids: Vec<&str> = page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [ping.to_string()]);
    let (_, page) = get(
        &env,
        &format!("/api/v1/webhooks/{endpoint}/deliveries?limit=1"),
    )
    .await;
    assert_eq!(page["deliveries"][0]["id"], completed.to_string());
    assert_eq!(page["next_before"], completed.to_string());
    let (_, page) = get(
        &env,
        &format!("/api/v1/webhooks/{endpoint}/deliveries?limit=1&before={completed}"),
    )
    .await;
    assert_eq!(page["deliveries"][0]["id"], ping.to_string());
    for bad in [
        "limit=0",
        "limit=201",
        "limit=x",
        "status=sent",
        "before=nope",
    ] {
        let (status, body) = get(
            &env,
            &format!("/api/v1/webhooks/{endpoint}/deliveries?{bad}"),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let (status, _) = get(
        &env,
        &format!("/api/v1/webhooks/{endpoint}/deliveries?limit=200"),
    )
    .await;
    assert_eq!(status, 200);

    // Replays. Pending: on its way already (409).
    let (status, body) = env
        .post(&format!("/api/v1/webhook-deliveries/{completed}/replay"))
        .await?;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("pending"),
        "{body}"
    );
    // Delivered: pending again, same id, waiting for the relay.
    let (status, body) = env
        .post(&format!("/api/v1/webhook-deliveries/{ping}/replay"))
        .await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"delivery_id": ping, "outcome": "replayed"}));
    let (_, d) = get(&env, &format!("/api/v1/webhook-deliveries/{ping}")).await;
    assert_eq!(d["status"], "pending");
    assert_eq!(d["delivered_at"], Value::Null);
    let last = d["trail"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["kind"].as_str(), last["actor"].as_str()),
        (Some("replayed"), Some("api"))
    );
    let relayed: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT enqueued_at FROM webhook_deliveries WHERE id = $1")
            .bind(ping)
            .fetch_one(&env.services.db)
            .await?;
    assert!(relayed.is_none(), "a replay is relayed again");
    // Dead-lettered: redriven from the DLQ into the queue.
    dead_letter(&env, completed).await?;
    let (_, d) = get(&env, &format!("/api/v1/webhook-deliveries/{completed}")).await;
    assert_eq!(d["status"], "dead_lettered", "{d}");
    let dlq = env.services.dlq(Family::Webhooks);
    assert!(dlq.get_listed(&completed.to_string()).await?.is_some());
    let (status, body) = env
        .post(&format!("/api/v1/webhook-deliveries/{completed}/replay"))
        .await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["outcome"], "redriven");
    assert!(
        dlq.get_listed(&completed.to_string()).await?.is_none(),
        "out of the DLQ"
    );
    let queued = env.services.queue(Family::Webhooks).reserve(10).await?;
    assert!(
        queued.iter().any(|m| m.id == completed.to_string()),
        "back on the queue: {queued:?}"
    );
    let (_, d) = get(&env, &format!("/api/v1/webhook-deliveries/{completed}")).await;
    assert_eq!(d["status"], "pending", "{d}");
    let kinds: Vec<&str> = d["trail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dead_lettered", "redriven"], "{d}");
    // Parked, and no longer held by the DLQ (Redis lost it): sent anew all the same.
    store::mark(
        &env.services.db,
        Mark::Parked,
        &[ping],
        &[None],
        Actor::RequeueDaemon,
    )
    .await?;
    let (status, body) = env
        .post(&format!("/api/v1/webhook-deliveries/{ping}/replay"))
        .await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["outcome"], "redriven");
    let (_, d) = get(&env, &format!("/api/v1/webhook-deliveries/{ping}")).await;
    assert_eq!(d["status"], "pending", "{d}");
    // Unknown and malformed ids.
    let nobody = Uuid::now_v7();
    let (status, _) = env
        .post(&format!("/api/v1/webhook-deliveries/{nobody}/replay"))
        .await?;
    assert_eq!(status, 404);
    let (status, _) = get(&env, &format!("/api/v1/webhook-deliveries/{nobody}")).await;
    assert_eq!(status, 404);
    let (status, _) = env.post("/api/v1/webhook-deliveries/x/replay").await?;
    assert_eq!(status, 422);

    // Counts on the endpoint follow.
    let (_, shown) = get(&env, &format!("/api/v1/webhooks/{endpoint}")).await;
    assert_eq!(shown["deliveries"]["pending"], 2, "{shown}");
    assert_eq!(shown["deliveries"]["delivered"], 0, "{shown}");
    Ok(())
}

/// Every webhook route is in the OpenAPI document with the answers it gives.
#[tokio::test]
async fn the_webhook_routes_are_documented() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (status, doc) = json_of(env.req_no_key(Method::GET, "/openapi.json").send().await?).await?;
    assert_eq!(status, 200);
    for (path, method, statuses) in [
        (
            "/api/v1/projects/{project}/webhooks",
            "post",
            &["201", "404", "422"][..],
        ),
        (
            "/api/v1/projects/{project}/webhooks",
            "get",
            &["200", "404"],
        ),
        ("/api/v1/webhooks/{id}", "get", &["200", "404", "422"]),
        ("/api/v1/webhooks/{id}", "patch", &["200", "404", "422"]),
        ("/api/v1/webhooks/{id}", "delete", &["204", "404", "422"]),
        ("/api/v1/webhooks/{id}/test", "post", &["202", "404", "422"]),
        (
            "/api/v1/webhooks/{id}/deliveries",
            "get",
            &["200", "404", "422"],
        ),
        (
            "/api/v1/webhook-deliveries/{id}",
            "get",
            &["200", "404", "422"],
        ),
        (
            "/api/v1/webhook-deliveries/{id}/replay",
            "post",
            &["202", "404", "409", "422"],
        ),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        for s in statuses {
            assert!(op["responses"][*s].is_object(), "{method} {path} lacks {s}");
        }
    }
    let create = &doc["components"]["schemas"]["CreateWebhookRequest"];
    assert_eq!(create["additionalProperties"], false, "{create}");
    Ok(())
}

/// The verifiers docs/webhooks.md gives receivers (Python, and Node.js where `node` is
/// installed), run as written: they accept the worker's signatures and refuse a changed
/// body, another secret, an old timestamp and a missing header.
#[tokio::test]
async fn the_documented_verifiers_accept_the_workers_signatures() -> anyhow::Result<()> {
    use integration_tests::docs::section_blocks;
    use webhook_worker::sign;

    let blocks = section_blocks(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/webhooks.md"),
        "### Verifying the signature",
    );
    let code_of = |lang: &str, until: &str| -> String {
        let (_, body) = blocks
            .iter()
            .find(|(l, _)| l == lang)
            .unwrap_or_else(|| panic!("no {lang} block"));
        body.split(until).next().unwrap_or_default().to_owned()
    };
    let secret = "whsec_0123456789abcdef0123456789abcdef";
    let body = br#"{"id":"d1","type":"ping","data":{"endpoint_id":"e1"}}"#;
    let now = chrono::Utc::now().timestamp();
    let good = sign::signature(secret, now, body);
    let old = sign::signature(secret, now - 600, body);
    let (_, mac) = good.split_once(",v1=").expect("t=..,v1=..");
    let two = format!("t={now},v1={},v1={mac}", "0".repeat(64));
    // (header, body, secret, expected): the same cases for every language.
    let cases: Vec<(String, Vec<u8>, &str, bool)> = vec![
        (good.clone(), body.to_vec(), secret, true),
        (two, body.to_vec(), secret, true),
        (good.clone(), [&body[..], b" "].concat(), secret, false),
        (good.clone(), body.to_vec(), "whsec_another", false),
        (old, body.to_vec(), secret, false),
        (String::new(), body.to_vec(), secret, false),
    ];
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();

    let python = code_of("python", "# Flask");
    let mut driver = python.clone();
    for (header, b, s, _) in &cases {
        driver.push_str(&format!(
            "print(verify({s:?}, {header:?}, bytes.fromhex({:?})))\n",
            hex(b)
        ));
    }
    let out = std::process::Command::new("python3")
        .args(["-c", &driver])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<bool> = String::from_utf8(out.stdout)?
        .lines()
        .map(|l| l == "True")
        .collect();
    let want: Vec<bool> = cases.iter().map(|c| c.3).collect();
    assert_eq!(got, want, "python");

    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("node is not installed: the Node.js verifier is not run");
        return Ok(());
    }
    let js = code_of("js", "const app = express();")
        .replace("const express = require(\"express\");", "");
    let mut driver = js;
    for (header, b, s, _) in &cases {
        driver.push_str(&format!(
            "console.log(verify({s:?}, {header:?}, Buffer.from({:?}, \"hex\")));\n",
            hex(b)
        ));
    }
    let out = std::process::Command::new("node")
        .args(["-e", &driver])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<bool> = String::from_utf8(out.stdout)?
        .lines()
        .map(|l| l == "true")
        .collect();
    assert_eq!(got, want, "node");
    Ok(())
}
