//! docs/crawl.md's first example, a crawl of the quick start's demo site from its home page
//! with `pipelinectl crawl ... --wait`, run as written against the `demo-pages` binary (on a
//! free port instead of 8780) and the pipeline's workers: the crawl reaches every page the
//! site has, extracts all but the one that is gone, and the command ends with exit code 4
//! (ended `completed_with_errors`), as the README's exit codes say.

use std::process::Stdio;
use std::time::Duration;

use integration_tests::requeue::{Pipeline, World, e2e_settings, eventually, free_port};
use integration_tests::{binary, http_client, redis_url};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/crawl.md");
/// The command docs/crawl.md shows.
const COMMAND: &str = "pipelinectl crawl http://127.0.0.1:8780/ --wait 120";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crawl_of_the_demo_site_in_the_docs_reaches_every_page() -> anyhow::Result<()> {
    let doc = std::fs::read_to_string(DOC)?;
    assert!(doc.contains(COMMAND), "docs/crawl.md shows `{COMMAND}`");

    let port = free_port();
    let _site = tokio::process::Command::new(binary("demo-pages"))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let client = http_client();
    eventually(Duration::from_secs(20), "the demo site answers", || {
        let url = format!("{base}/robots.txt");
        let client = client.clone();
        async move { Ok(client.get(url).send().await.ok().map(|_| ())) }
    })
    .await?;

    let w = World::new(e2e_settings).await?;
    let pipeline = Pipeline::start(&w)?;
    let args: Vec<String> = COMMAND
        .replace("8780", &port.to_string())
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    let out = tokio::time::timeout(
        Duration::from_secs(150),
        tokio::process::Command::new(binary("pipelinectl"))
            .args(&args)
            .env_remove("PIPELINE_CONFIG")
            .env("DATABASE_URL", &w.db.url)
            .env("REDIS_URL", redis_url())
            .env("PIPELINE__REDIS__KEY_PREFIX", &w.redis.prefix)
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    pipeline.stop().await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("ended completed_with_errors (1 of 7 pages failed"),
        "{stderr}"
    );

    let mut pages: Vec<(String, String)> =
        sqlx::query_as("SELECT uri, status FROM sources ORDER BY uri")
            .fetch_all(&w.db.pool)
            .await?;
    for (uri, _) in &mut pages {
        *uri = uri.replacen(&base, "", 1);
    }
    let expected: Vec<(String, String)> = [
        ("/", "extracted"),
        ("/about", "extracted"),
        ("/articles/1", "extracted"),
        ("/articles/2", "extracted"),
        ("/articles/3", "extracted"),
        ("/flaky", "extracted"),
        ("/gone", "dead_lettered"),
    ]
    .iter()
    .map(|(u, s)| ((*u).to_owned(), (*s).to_owned()))
    .collect();
    assert_eq!(pages, expected, "{stdout}");
    Ok(())
}
