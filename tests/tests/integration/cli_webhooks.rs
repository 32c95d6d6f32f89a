//! The real `pipelinectl webhooks` commands against real Postgres and Redis: an endpoint
//! added (its secret printed once, nowhere else), refused input with the field named and
//! exit 2, the list and one endpoint in tables and JSON, a change that rotates the secret,
//! a test ping followed to its delivery (payload and trail), deliveries filtered, replays
//! (exit 2 while pending) and removal.

use std::process::Output;

use integration_tests::api::ApiEnv;
use integration_tests::{binary, redis_url};
use pipeline_store::Actor;
use pipeline_store::webhooks::{self as store, Attempt};
use serde_json::Value;
use uuid::Uuid;

async fn ctl(env: &ApiEnv, args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(binary("pipelinectl"))
        .args(args)
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env_remove("PIPELINE_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .await?)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The value after `label` on its line of `text`.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` line in {text}"))
        .trim()
        .to_owned()
}

async fn stored_secret(env: &ApiEnv, id: Uuid) -> anyhow::Result<String> {
    Ok(
        sqlx::query_scalar("SELECT secret FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .fetch_one(&env.services.db)
            .await?,
    )
}

#[tokio::test]
async fn webhooks_commands_show_the_secret_once_and_follow_deliveries() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let out = ctl(&env, &["projects", "create", "shop"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // Added: the secret printed once, with the endpoint.
    let out = ctl(
        &env,
        &[
            "webhooks",
            "add",
            "--project",
            "shop",
            "--url",
            "https://hooks.example.com/in",
            "--events",
            "item.parked,job.completed",
            "--description",
            "ops channel",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let id: Uuid = field(&text, "webhook ").parse()?;
    let secret = field(&text, "secret ");
    assert!(secret.starts_with("whsec_"), "{text}");
    assert_eq!(secret, stored_secret(&env, id).await?);
    assert_eq!(field(&text, "events "), "job.completed, item.parked");
    assert!(text.contains("not shown again"), "{text}");

    // Refused input: exit 2 with the field named; an unknown project is exit 3.
    for (args, says) in [
        (
            vec!["--url", "http://127.0.0.1:9/", "--events", "job.failed"],
            "url: 127.0.0.1 is not a public address",
        ),
        (
            vec!["--url", "https://e.com/", "--events", "job.done"],
            "events: unknown event `job.done`",
        ),
        (
            vec![
                "--url",
                "https://e.com/",
                "--events",
                "job.failed",
                "--secret",
                "short",
            ],
            "secret: must be 16 to 256 bytes",
        ),
    ] {
        let mut all = vec!["webhooks", "add", "--project", "shop"];
        all.extend(args);
        let out = ctl(&env, &all).await?;
        assert_eq!(code(&out), 2, "{all:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{all:?}: {}", stderr(&out));
    }
    let out = ctl(
        &env,
        &[
            "webhooks",
            "add",
            "--project",
            "nope",
            "--url",
            "https://e.com/",
            "--events",
            "job.failed",
        ],
    )
    .await?;
    assert_eq!(code(&out), 3, "{}", stderr(&out));

    // The list and one endpoint, as tables and as JSON: never the secret.
    let out = ctl(&env, &["webhooks", "list", "--project", "shop"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("ID "), "{text}");
    assert!(text.contains(&id.to_string()) && text.contains("https://hooks.example.com/in"));
    assert!(!text.contains(&secret), "{text}");
    let out = ctl(&env, &["--json", "webhooks", "list", "--project", "shop"]).await?;
    let list: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(list["webhooks"][0]["id"], id.to_string(), "{list}");
    assert_eq!(list["webhooks"][0]["deliveries"]["pending"], 0, "{list}");
    assert!(!stdout(&out).contains(&secret) && !stdout(&out).contains("\"secret\""));
    let out = ctl(&env, &["webhooks", "show", &id.to_string()]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(field(&stdout(&out), "description "), "ops channel");
    assert!(!stdout(&out).contains(&secret));

    // A change that rotates the secret prints the new one, once.
    let out = ctl(
        &env,
        &[
            "webhooks",
            "update",
            &id.to_string(),
            "--disable",
            "--rotate-secret",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let rotated = field(&text, "secret ");
    assert_ne!(rotated, secret);
    assert_eq!(rotated, stored_secret(&env, id).await?);
    assert_eq!(field(&text, "enabled "), "no (disabled)");
    let out = ctl(&env, &["webhooks", "show", &id.to_string()]).await?;
    assert!(!stdout(&out).contains(&rotated));
    let out = ctl(&env, &["webhooks", "update", &id.to_string()]).await?;
    assert_eq!(code(&out), 2, "nothing to change: {}", stderr(&out));
    let out = ctl(
        &env,
        &[
            "webhooks",
            "update",
            &id.to_string(),
            "--enable",
            "--events",
            "job.failed",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(field(&stdout(&out), "events "), "job.failed");
    assert!(!stdout(&out).contains("secret "), "{}", stdout(&out));

    // A test ping, followed to its delivery.
    let out = ctl(&env, &["webhooks", "test", &id.to_string()]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ping: Uuid = stdout(&out).lines().next().unwrap_or("").trim().parse()?;
    let out = ctl(&env, &["webhooks", "delivery", &ping.to_string()]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(field(&text, "event "), "ping");
    assert_eq!(field(&text, "status "), "pending");
    assert!(
        text.contains(&format!("\"endpoint_id\": \"{id}\"")),
        "{text}"
    );
    assert!(text.contains("not attempted yet"), "{text}");

    // Pending: a replay is refused (it is on its way).
    let out = ctl(&env, &["webhooks", "replay", &ping.to_string()]).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("still pending"), "{}", stderr(&out));

    // The worker fails once, then delivers: the trail shows both attempts.
    for (n, status, error) in [(1, 502, Some("HTTP 502 from the receiver")), (2, 200, None)] {
        store::record_attempt(
            &env.services.db,
            ping,
            &Attempt {
                attempt: n,
                http_status: Some(status),
                latency_ms: 40,
                error,
                actor: Actor::WebhookWorker,
            },
        )
        .await?;
    }
    let out = ctl(&env, &["webhooks", "delivery", &ping.to_string()]).await?;
    let text = stdout(&out);
    assert_eq!(field(&text, "status "), "delivered");
    assert!(text.contains("HTTP 502 from the receiver"), "{text}");
    assert!(text.contains("40 ms"), "{text}");
    let out = ctl(&env, &["--json", "webhooks", "delivery", &ping.to_string()]).await?;
    let d: Value = serde_json::from_slice(&out.stdout)?;
    let kinds: Vec<&str> = d["trail"]
        .as_array()
        .expect("trail")
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["attempt", "attempt", "delivered"], "{d}");
    assert_eq!(d["payload"]["type"], "ping");

    // Deliveries, filtered; bad filters are exit 2.
    let out = ctl(&env, &["webhooks", "deliveries", &id.to_string()]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&ping.to_string()), "{}", stdout(&out));
    let out = ctl(
        &env,
        &[
            "webhooks",
            "deliveries",
            &id.to_string(),
            "--status",
            "pending",
        ],
    )
    .await?;
    assert_eq!(stdout(&out).trim(), "no deliveries");
    for bad in [
        &["--status", "sent"][..],
        &["--limit", "0"],
        &["--limit", "201"],
    ] {
        let mut all = vec!["webhooks", "deliveries"];
        let id = id.to_string();
        all.push(&id);
        all.extend(bad);
        let out = ctl(&env, &all).await?;
        assert_eq!(code(&out), 2, "{all:?}: {}", stderr(&out));
    }

    // Delivered: replayed with the same id.
    let out = ctl(&env, &["--json", "webhooks", "replay", &ping.to_string()]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(r["outcome"], "replayed", "{r}");
    assert_eq!(r["delivery_id"], ping.to_string());
    let out = ctl(&env, &["webhooks", "delivery", &ping.to_string()]).await?;
    assert_eq!(field(&stdout(&out), "status "), "pending");
    assert!(stdout(&out).contains("replayed"), "{}", stdout(&out));

    // Unknown ids are exit 3, malformed ones exit 2.
    let nobody = Uuid::now_v7().to_string();
    for args in [
        vec!["webhooks", "show", &nobody],
        vec!["webhooks", "test", &nobody],
        vec!["webhooks", "delivery", &nobody],
        vec!["webhooks", "replay", &nobody],
    ] {
        let out = ctl(&env, &args).await?;
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
    }
    let out = ctl(&env, &["webhooks", "show", "not-an-id"]).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // Removed, with its deliveries.
    let out = ctl(&env, &["webhooks", "remove", &id.to_string()]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = ctl(&env, &["webhooks", "show", &id.to_string()]).await?;
    assert_eq!(code(&out), 3);
    let out = ctl(&env, &["webhooks", "list", "--project", "shop"]).await?;
    assert!(stdout(&out).starts_with("no webhooks"), "{}", stdout(&out));
    Ok(())
}
