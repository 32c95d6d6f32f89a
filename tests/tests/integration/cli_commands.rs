//! The real `pipelinectl` binary against real Postgres and Redis: submit with refused URLs,
//! jobs list/show, trace, dlq stats/list/retry/retry-all/purge, exit codes and messages.

use std::process::Output;

use dlq_core::ErrorKind;
use integration_tests::api::ApiEnv;
use integration_tests::{binary, redis_url};
use pipeline_store::sources;
use uuid::Uuid;

/// Runs `pipelinectl` on the test's database and Redis prefix.
async fn ctl(env: &ApiEnv, args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(binary("pipelinectl"))
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .args(args)
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
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

#[tokio::test]
async fn submit_jobs_and_trace() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let out = ctl(
        &env,
        &[
            "submit",
            "https://example.com/a",
            "ftp://example.com/nope",
            "https://example.com/b",
            "--project",
            "cli",
            "--source-group",
            "g1",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let first = stdout(&out).lines().next().unwrap_or_default().to_owned();
    let job_id: Uuid = first
        .strip_prefix("job ")
        .unwrap_or_else(|| panic!("first line names the job: {first:?}"))
        .parse()?;
    assert!(
        stderr(&out).contains("invalid URL `ftp://example.com/nope`"),
        "{}",
        stderr(&out)
    );
    let sources_of_job =
        pipeline_store::jobs::sources_page(&env.services.db, job_id, 1000, 0).await?;
    assert_eq!(sources_of_job.len(), 2);
    assert_eq!(sources_of_job[0].source_group.as_deref(), Some("g1"));

    // --file and --json; every URL refused is exit 2 with the job still named.
    let dir = std::env::temp_dir().join(format!("ctl-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("urls.txt");
    std::fs::write(
        &file,
        "# comment\nhttps://example.com/c\n\nhttps://example.com/a\n",
    )?;
    let out = ctl(
        &env,
        &["submit", "--file", file.to_str().unwrap(), "--json"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["sources"].as_array().unwrap().len(), 2);
    let out = ctl(&env, &["submit", "mailto:x@example.com"]).await?;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("every URL was refused"),
        "{}",
        stderr(&out)
    );
    let out = ctl(&env, &["submit"]).await?;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no URLs given"));
    std::fs::remove_dir_all(&dir)?;

    let out = ctl(&env, &["jobs", "show", &job_id.to_string()]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&job_id.to_string()));
    assert!(text.contains("https://example.com/a") && text.contains("https://example.com/b"));
    assert!(
        text.contains("ftp://example.com/nope"),
        "refused URLs shown: {text}"
    );
    let out = ctl(&env, &["jobs", "show", &Uuid::new_v4().to_string()]).await?;
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("not found"));
    let out = ctl(&env, &["jobs", "show", "nope"]).await?;
    assert_eq!(code(&out), 2);

    let out = ctl(&env, &["jobs", "list", "--json"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    let out = ctl(&env, &["jobs", "list", "--limit", "0"]).await?;
    assert_eq!(code(&out), 2);
    // Projects by name, with what they hold (the submissions above used `cli` and the
    // default project).
    let out = ctl(&env, &["projects", "--json"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let projects: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let cli_project = projects["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cli")
        .cloned()
        .unwrap_or_else(|| panic!("no `cli` project in {projects}"));
    assert!(cli_project["jobs"].as_i64() >= Some(1), "{cli_project}");
    assert!(cli_project["sources"].as_i64() >= Some(2), "{cli_project}");
    // The same validation as the API: an unknown status is an error naming the known ones,
    // not an empty list.
    let out = ctl(&env, &["jobs", "list", "--status", "done"]).await?;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("unknown job status `done`")
            && stderr(&out).contains("completed_with_errors"),
        "{}",
        stderr(&out)
    );
    // Pages: a full page says where the next one starts; the last says there is none.
    let out = ctl(&env, &["jobs", "list", "--limit", "2", "--json"]).await?;
    let page: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_offset"], 2);
    assert!(
        page["items"][0].get("payload").is_none(),
        "lists are summaries"
    );
    let out = ctl(
        &env,
        &["jobs", "list", "--limit", "2", "--offset", "2", "--json"],
    )
    .await?;
    let page: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["next_offset"].is_null());
    let out = ctl(
        &env,
        &["jobs", "sources", &job_id.to_string(), "--limit", "1"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("more: pipelinectl jobs sources {job_id}")),
        "{}",
        stdout(&out)
    );

    let source_id = sources_of_job[0].id;
    let out = ctl(&env, &["trace", &source_id.to_string()]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("enqueued") && text.contains(&job_id.to_string()),
        "{text}"
    );
    assert!(text.contains("created this source"), "{text}");
    let out = ctl(&env, &["trace", &sources_of_job[0].url, "--json"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let traced: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    // The URL was submitted in two projects (`cli`, then the default one): both are traced.
    let traced_ids: Vec<&str> = traced
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["source"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(traced_ids.len(), 2, "{traced}");
    assert!(traced_ids.contains(&source_id.to_string().as_str()));
    let out = ctl(&env, &["trace", "https://example.com/never"]).await?;
    assert_eq!(code(&out), 3);

    // Redis down: the trail is in Postgres, so the trace still answers, and says the queue
    // state is unknown.
    let out = tokio::process::Command::new(binary("pipelinectl"))
        .args(["trace", &source_id.to_string()])
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env_remove("PIPELINE_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("queues     unknown"), "{text}");
    assert!(text.contains("enqueued"), "{text}");
    Ok(())
}

#[tokio::test]
async fn dlq_commands() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (_, source_id) = env
        .dead_lettered_source("https://example.com/dlq", ErrorKind::Permanent)
        .await?;
    let id = source_id.to_string();
    let (_, old) = env
        .dead_lettered_source("https://example.com/old", ErrorKind::Permanent)
        .await?;

    let out = ctl(&env, &["dlq", "stats", "--json"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(stats["scrape"], 2);
    assert_eq!(stats["extraction"], 0);

    let out = ctl(&env, &["dlq", "list", "scrape"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&id) && stdout(&out).contains("HTTP 503"));
    for bad in ["0", "1001"] {
        let out = ctl(&env, &["dlq", "list", "scrape", "--limit", bad]).await?;
        assert_eq!(code(&out), 2, "limit {bad}");
        assert!(
            stderr(&out).contains("between 1 and 1000"),
            "{}",
            stderr(&out)
        );
    }
    let out = ctl(&env, &["dlq", "list", "nosuch"]).await?;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains(
            "unknown family `nosuch` (expected one of: scrape, extraction, facts, webhooks)"
        ),
        "{}",
        stderr(&out)
    );

    let out = ctl(&env, &["dlq", "retry", "scrape", &id]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        env.services
            .queue(pipeline_ops::Family::Scrape)
            .contains(&id)
            .await?
    );
    let out = ctl(&env, &["dlq", "retry", "scrape", &id]).await?;
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("no item"), "{}", stderr(&out));
    let events = sources::events(&env.services.db, source_id).await?;
    let last = events.last().unwrap();
    assert_eq!(
        (
            last.kind.as_str(),
            last.stage.as_deref(),
            last.actor.as_deref()
        ),
        ("redriven", Some("scrape"), Some("cli"))
    );

    let out = ctl(
        &env,
        &["dlq", "retry-all", "scrape", "--limit", "5", "--json"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let bulk: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(bulk["redriven"], 1, "the other item");
    assert_eq!(sources::get(&env.services.db, old).await?.status, "queued");
    // Both back in the DLQ, as a worker would put them after another failure.
    let scrape = env.services.queue(pipeline_ops::Family::Scrape);
    for d in scrape.reserve(10).await? {
        let moved = scrape
            .dead_letter(&d, "HTTP 503 again", ErrorKind::Permanent)
            .await?;
        assert_eq!(moved, work_queue::DeadLetterOutcome::DeadLettered);
    }

    // Discard one, recorded in its trail.
    let out = ctl(&env, &["dlq", "discard", "scrape", &id]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        sources::get(&env.services.db, source_id).await?.status,
        "discarded"
    );
    let out = ctl(&env, &["dlq", "discard", "scrape", &id]).await?;
    assert_eq!(code(&out), 3, "already gone");

    // Purge: a bare number is refused, a dry run only counts, and without a terminal it
    // will not purge unless told --yes.
    let out = ctl(&env, &["dlq", "purge", "scrape", "--older-than", "5"]).await?;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no unit"), "{}", stderr(&out));
    let out = ctl(
        &env,
        &[
            "dlq",
            "purge",
            "scrape",
            "--older-than",
            "0s",
            "--dry-run",
            "--json",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(dry["would_purge"], 1);
    let out = ctl(&env, &["dlq", "purge", "scrape", "--older-than", "0s"]).await?;
    assert_eq!(code(&out), 2, "no terminal and no --yes");
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(
        env.services
            .dlq(pipeline_ops::Family::Scrape)
            .stats()
            .await?
            .total,
        1,
        "nothing purged without confirmation"
    );
    let out = ctl(
        &env,
        &[
            "dlq",
            "purge",
            "scrape",
            "--older-than",
            "0s",
            "--yes",
            "--json",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let purged: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(purged["purged"], 1);
    assert_eq!(
        sources::get(&env.services.db, old).await?.status,
        "discarded"
    );
    let out = ctl(&env, &["dlq", "purge", "scrape", "--older-than", "3x"]).await?;
    assert_eq!(code(&out), 2);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_redis_is_named_once_without_its_password() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    // A port nothing listens on: bound, read, released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let out = tokio::process::Command::new(binary("pipelinectl"))
        .args(["dlq", "stats"])
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", format!("redis://:hunter2@127.0.0.1:{port}/5"))
        .env("PIPELINE__REDIS__CONNECT_TIMEOUT_MS", "500")
        .env_remove("PIPELINE_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .await?;
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains(&format!("cannot reach redis at 127.0.0.1:{port}/5")),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "no password in messages: {err}");
    let cause = if err.contains("refused") {
        "refused"
    } else {
        "timed out"
    };
    assert_eq!(err.matches(cause).count(), 1, "the cause once: {err}");
    Ok(())
}
