//! What a new operator met first with `pipelinectl`, each a test that failed before its fix:
//! a closed output pipe (`| head`) panicked with exit 101; a URL file's trailing comment
//! became part of a URL and one non-UTF-8 byte refused the whole file; `crawl --wait`
//! exited 0 for a failed crawl and said nothing useful on Ctrl-C; an unreachable Postgres
//! was "pool timed out" without a name; `--check-config` printed a Rust `Debug` struct and
//! accepted a database URL that is not one.

use std::process::{Output, Stdio};
use std::time::Duration;

use integration_tests::api::ApiEnv;
use integration_tests::pages::PageServer;
use integration_tests::{binary, redis_url};
use pipeline_ops::Family;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use uuid::Uuid;

/// `pipelinectl` on the test's database and Redis prefix, loopback pages allowed.
fn ctl(env: &ApiEnv, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary("pipelinectl"));
    cmd.args(args)
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("PIPELINE__SCRAPE__ALLOW_PRIVATE_HOSTS", "127.0.0.1")
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .env_remove("PIPELINE_CONFIG")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn run(env: &ApiEnv, args: &[&str]) -> anyhow::Result<Output> {
    Ok(ctl(env, args).output().await?)
}

#[tokio::test]
async fn a_closed_output_pipe_ends_the_command_quietly() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let out = run(
        &env,
        &["submit", "https://example.com/a", "https://example.com/b"],
    )
    .await?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for args in [
        &["jobs", "list"][..],
        &["--json", "jobs", "list"],
        &["queues"],
        &["trace", "https://example.com/a"],
    ] {
        let mut child = ctl(&env, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // The reader goes away before the command writes (it connects to Postgres first),
        // as `head -1` does after its line.
        drop(child.stdout.take());
        let out = child.wait_with_output().await?;
        let err = text(&out.stderr);
        assert!(!err.contains("panic"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
        assert!(err.trim().is_empty(), "{args:?}: quiet, not {err:?}");
    }
    Ok(())
}

#[tokio::test]
async fn url_files_skip_comments_report_bad_lines_by_number_and_submit_the_rest()
-> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let dir = std::env::temp_dir().join(format!("ctl-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("urls.txt");
    let mut bytes = b"# docs to fetch\n\
        https://example.com/1 # the first\n\
        \n\
        https://example.com/2#intro\n"
        .to_vec();
    bytes.extend_from_slice(b"https://example.com/\xff\xfe-latin\n");
    bytes.extend_from_slice(b"ftp://example.com/nope\n   \nhttps://example.com/3\t# last\n");
    std::fs::write(&file, &bytes)?;
    let out = run(&env, &["submit", "--file", file.to_str().unwrap()]).await?;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("line 5: not UTF-8"), "{err}");
    assert!(
        err.contains("line 6: invalid URL `ftp://example.com/nope`"),
        "{err}"
    );
    let job: Uuid = text(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("job "))
        .expect("the job is named")
        .parse()?;
    let mut urls: Vec<String> = pipeline_store::jobs::sources_page(&env.services.db, job, 100, 0)
        .await?
        .into_iter()
        .map(|s| s.url)
        .collect();
    urls.sort();
    assert_eq!(
        urls,
        // The fragment stays in the file's line, and submit drops it as for any URL.
        [
            "https://example.com/1",
            "https://example.com/2",
            "https://example.com/3"
        ]
    );

    // An empty standard input is called that, not "no file given".
    let mut child = ctl(&env, &["submit", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("stdin").shutdown().await?;
    let out = child.wait_with_output().await?;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("stdin is empty"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn crawl_wait_exits_by_how_the_crawl_ended_and_says_what_goes_on() -> anyhow::Result<()> {
    let env = ApiEnv::start(|s| {
        s.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
        s.scrape.per_host_min_delay_ms = 0;
        s.queue.max_attempts = 1;
    })
    .await?;
    let server = PageServer::start().await;

    // No worker runs and the scrape family is paused: the progress says so, `--wait`
    // runs out (6), and the crawl goes on.
    pipeline_ops::pause::pause(&env.services, Family::Scrape, pipeline_store::Actor::Cli).await?;
    let out = run(&env, &["crawl", &server.url("/ok/paused"), "--wait", "2"]).await?;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(6), "{stdout}{stderr}");
    assert!(
        stdout.contains("scrape paused by cli") && stdout.contains("pipelinectl resume scrape"),
        "{stdout}"
    );
    assert!(
        stderr.contains("still running when --wait ran out"),
        "{stderr}"
    );

    // Ctrl-C: 130, and how to follow or cancel the crawl that goes on.
    let child = ctl(
        &env,
        &["crawl", &server.url("/ok/interrupted"), "--wait", "60"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    let pid = child.id().expect("running");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .await?;
    assert!(status.success());
    let out = child.wait_with_output().await?;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("goes on") && stderr.contains("pipelinectl crawl-cancel"),
        "{stderr}"
    );
    pipeline_ops::pause::resume(&env.services, Family::Scrape, pipeline_store::Actor::Cli).await?;

    // A crawl whose start page is gone for good ends `failed`: exit 5, not 0. The scrape
    // worker runs in this process.
    let handler = scrape_worker::handler_for(&env.services)?;
    let services = env.services.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let n = pipeline_runner::run_next(services.queue(Family::Scrape), &handler, 8)
                    .await
                    .unwrap_or(0);
                if n == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    };
    let gone = server.url("/status/404");
    let out = run(
        &env,
        &["crawl", &gone, "--token-cap", "700", "--wait", "60"],
    )
    .await?;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{}{stderr}", text(&out.stdout));
    assert!(stderr.contains("ended failed"), "{stderr}");
    stop.cancel();
    worker.await?;

    // `--token-cap` lands on the crawl's job, and its recrawl keeps it; 0 is refused (2)
    // and records nothing.
    let (job, cap): (Uuid, Option<i64>) = sqlx::query_as(
        "SELECT j.id, j.model_token_cap FROM crawls c JOIN jobs j ON j.id = c.job_id
          WHERE c.start_url = $1",
    )
    .bind(&gone)
    .fetch_one(&env.services.db)
    .await?;
    assert_eq!(cap, Some(700));
    let out = run(&env, &["--json", "recrawl", &job.to_string()]).await?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let again: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let again: Uuid = again["job_id"].as_str().expect("a job id").parse()?;
    let cap: Option<i64> = sqlx::query_scalar("SELECT model_token_cap FROM jobs WHERE id = $1")
        .bind(again)
        .fetch_one(&env.services.db)
        .await?;
    assert_eq!(cap, Some(700), "the recrawl keeps the crawl's cap");
    let crawls = || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE type = 'crawl'")
            .fetch_one(&env.services.db)
    };
    let before = crawls().await?;
    let out = run(
        &env,
        &["crawl", &server.url("/ok/capped"), "--token-cap", "0"],
    )
    .await?;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}{stderr}", text(&out.stdout));
    assert!(stderr.contains("model_token_cap is 0"), "{stderr}");
    assert_eq!(crawls().await?, before, "a refused cap records no crawl");
    Ok(())
}

#[tokio::test]
async fn connection_and_configuration_errors_name_what_is_wrong() -> anyhow::Result<()> {
    // Postgres that cannot be reached: named (without the password), with the reason.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let out = Command::new(binary("pipelinectl"))
        .args(["jobs", "list"])
        .env(
            "DATABASE_URL",
            format!("postgres://pipeline:hunter2@127.0.0.1:{port}/pipeline"),
        )
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__DATABASE__ACQUIRE_TIMEOUT_SECS", "1")
        .env_remove("PIPELINE_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .await?;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot reach postgres at 127.0.0.1:{port}/pipeline as pipeline"
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("refused"), "the cause: {err}");
    assert!(!err.contains("hunter2"), "{err}");

    // A database URL that is not one, or has a misspelt scheme: a configuration error
    // (exit 2) naming the variable, at start-up and in --check-config.
    for (value, needle) in [
        ("not a url at all", "is not a URL"),
        (
            "postgress://pipeline:hunter2@127.0.0.1/pipeline",
            "has the scheme `postgress`",
        ),
    ] {
        for (bin, args) in [
            ("pipelinectl", &["jobs", "list"][..]),
            ("scrape-worker", &["--check-config"][..]),
        ] {
            let out = Command::new(binary(bin))
                .args(args)
                .env("DATABASE_URL", value)
                .env_remove("PIPELINE_CONFIG")
                .output()
                .await?;
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{bin} {value}: {err}");
            assert!(err.contains("database.url (from DATABASE_URL)"), "{err}");
            assert!(err.contains(needle), "{bin} {value}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    // --check-config prints TOML that parses, secrets masked, and names the database.
    let out = Command::new(binary("requeue-daemon"))
        .arg("--check-config")
        .env(
            "DATABASE_URL",
            "postgres://pipeline:hunter2@db.example:5432/pipeline",
        )
        .env("REDIS_URL", "redis://:sesame@cache.example:6379/2")
        .env_remove("PIPELINE_CONFIG")
        .output()
        .await?;
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !shown.contains("hunter2") && !shown.contains("sesame"),
        "{shown}"
    );
    assert!(!shown.contains("SecretBox"), "{shown}");
    assert!(
        shown.contains("# database: postgres at db.example:5432/pipeline as pipeline"),
        "{shown}"
    );
    let table: toml::Table = shown.parse()?;
    assert_eq!(
        table["database"]["url"].as_str(),
        Some("postgres://pipeline:***@db.example:5432/pipeline")
    );
    assert_eq!(
        table["redis"]["url"].as_str(),
        Some("redis://:***@cache.example:6379/2")
    );
    assert_eq!(table["queue"]["max_attempts"].as_integer(), Some(4));

    // Without DATABASE_URL, the compiled-in default is named as such.
    let out = Command::new(binary("pipelinectl"))
        .args(["jobs", "list"])
        .env_remove("DATABASE_URL")
        .env_remove("PIPELINE__DATABASE__URL")
        .env_remove("PIPELINE_CONFIG")
        .env("PIPELINE__DATABASE__ACQUIRE_TIMEOUT_SECS", "1")
        .env("REDIS_URL", redis_url())
        .output()
        .await?;
    let err = text(&out.stderr);
    assert!(
        err.contains("note: DATABASE_URL is not set; using postgres at 127.0.0.1:5432/pipeline")
            && err.contains("compiled-in default"),
        "{err}"
    );
    Ok(())
}

/// A command run on a database that was never migrated says to migrate, not only
/// `relation "jobs" does not exist`.
#[tokio::test]
async fn an_unmigrated_database_is_called_that() -> anyhow::Result<()> {
    let db = integration_tests::TestDb::empty().await?;
    let out = Command::new(binary("pipelinectl"))
        .args(["jobs", "list"])
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis_url())
        .env_remove("PIPELINE_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .await?;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("run `pipelinectl migrate`"), "{err}");
    Ok(())
}
