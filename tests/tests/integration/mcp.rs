//! `pipeline-mcp` driven by a real MCP client, the Python `mcp` SDK from PyPI
//! (`tests/mcp/client.py`, in the environment `deploy/local/mcp-client.sh` installs), over
//! stdio and streamable HTTP, in front of a real `pipeline-api` process over the test's own
//! database and Redis prefix: the tools are listed, `search` finds an extracted page,
//! `submit` creates a job that is then in Postgres, `job_status` and `trace_url` follow it,
//! a bound and the API's 404 come back as tool errors, the page's Markdown is read as a
//! resource, and HTTP refuses a request without a key (401) while a wrong key comes back as
//! the API's refusal.
//!
//! Without the client environment the test prints that it skipped, unless `CI=true`, where
//! it fails (deploy/local/test.sh installs the environment first).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use integration_tests::api::{TEST_KEY, wait_for};
use integration_tests::extraction::Env;
use integration_tests::{binary, http_client, redis_url};
use serde_json::Value;
use uuid::Uuid;

const BREAD_URL: &str = "https://food.example/sourdough";

const BREAD: &str = "<!doctype html><html><head><title>Baking sourdough bread</title></head>\
    <body><article><h1>Baking sourdough bread</h1>\
    <p>Sourdough bread rises with a starter of wild yeast and lactic bacteria instead of \
    commercial yeast, which gives the loaf its sour taste and open crumb.</p>\
    <p>Feed the starter with flour and water the evening before baking; it is ready when it \
    has doubled and smells pleasantly sour.</p></article></body></html>";

const TOOLS: [&str; 7] = [
    "crawl",
    "dlq_retry",
    "dlq_stats",
    "job_status",
    "search",
    "submit",
    "trace_url",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// The python of the MCP client environment, or `None` (and a printed reason) when it is
/// missing outside CI.
fn client_python() -> Option<PathBuf> {
    let python = std::env::var_os("MCP_CLIENT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local/mcp-client/bin/python"));
    if python.is_file() {
        return Some(python);
    }
    let msg = format!(
        "no MCP client environment at {}: install it with deploy/local/mcp-client.sh \
         (or set MCP_CLIENT_PYTHON to a python with the `mcp` package)",
        python.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn healthy(base: &str) -> anyhow::Result<()> {
    let client = http_client();
    wait_for(Duration::from_secs(60), || async {
        Ok(client
            .get(format!("{base}/health"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn python_sdk_client_over_stdio_and_http() -> anyhow::Result<()> {
    let Some(python) = client_python() else {
        return Ok(());
    };
    // An extracted page for search to find, and its job.
    let env = Env::new(|s| {
        s.extraction.chunk_max_chars = 300;
        s.extraction.chunk_overlap_chars = 30;
    })
    .await?;
    let handler = env.handler()?;
    let (source, job) = env.scraped_source(BREAD_URL, BREAD, "text/html").await?;
    env.enqueue(source, job).await?;
    assert_eq!(env.drain(&handler, Duration::from_secs(60)).await?, 1);

    // The API as a process, on the test's database and Redis prefix.
    let api_port = free_port()?;
    let api = format!("http://127.0.0.1:{api_port}");
    let _api_child = tokio::process::Command::new(binary("pipeline-api"))
        .env("DATABASE_URL", &env.db.url)
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .env("PIPELINE__API__BIND", format!("127.0.0.1:{api_port}"))
        .env("PIPELINE_API_KEY", TEST_KEY)
        .env("RUST_LOG", "warn")
        .env_remove("PIPELINE_CONFIG")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    healthy(&api).await?;
    // Search answers once the API's index has loaded the page.
    let client = http_client();
    wait_for(Duration::from_secs(60), || async {
        let resp = client
            .get(format!("{api}/api/v1/search?q=sourdough+starter&k=1"))
            .header("X-API-Key", TEST_KEY)
            .send()
            .await?;
        let body: Value = resp.json().await.unwrap_or_default();
        Ok((body["results"][0]["url"] == BREAD_URL).then_some(()))
    })
    .await?;

    // The MCP server's HTTP mode; the stdio one is launched by the client itself.
    let mcp_port = free_port()?;
    let mcp = format!("http://127.0.0.1:{mcp_port}");
    let _mcp_child = tokio::process::Command::new(binary("pipeline-mcp"))
        .args(["--http", &format!("127.0.0.1:{mcp_port}")])
        .env("PIPELINE_API_URL", &api)
        .env_remove("PIPELINE_API_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    healthy(&mcp).await?;

    let submitted = "https://food.example/rye";
    let run = tokio::process::Command::new(&python)
        .arg(repo_root().join("tests/mcp/client.py"))
        .args(["--binary", &binary("pipeline-mcp").display().to_string()])
        .args(["--api-url", &api, "--key", TEST_KEY])
        .args(["--http-url", &format!("{mcp}/mcp")])
        .args(["--query", "sourdough starter", "--url", submitted])
        .args(["--project", "mcp-stdio", "--http-project", "mcp-http"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run).await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    let seen: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("client output is not JSON ({e}): {stderr}"))?;

    for (transport, project) in [("stdio", "mcp-stdio"), ("http", "mcp-http")] {
        let t = &seen[transport];
        let tools: Vec<&str> = t["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(tools, TOOLS, "{transport}");
        assert!(
            t["resource_templates"]
                .as_array()
                .is_some_and(|a| a.iter().any(|u| u == "pipeline://sources/{id}/markdown")),
            "{transport}: {}",
            t["resource_templates"]
        );

        // search: the extracted page, with its source and job.
        let search = &t["search"];
        assert_eq!(search["is_error"], false, "{transport}: {search}");
        let top = &search["json"]["hits"][0];
        assert_eq!(top["url"], BREAD_URL, "{transport}: {search}");
        assert_eq!(top["job_id"], job.to_string());
        assert_eq!(top["source_id"], source.to_string());
        assert!(
            top["text"].as_str().unwrap_or("").contains("starter"),
            "{top}"
        );

        // submit: a job in Postgres under the named project, its one valid URL a source,
        // the other refused with its reason.
        let submit = &t["submit"];
        assert_eq!(submit["is_error"], false, "{transport}: {submit}");
        let job_id: Uuid = submit["json"]["job_id"].as_str().expect("job_id").parse()?;
        let (job_type, project_name, sources): (String, String, Vec<String>) = sqlx::query_as(
            "SELECT j.type, p.name, \
                    ARRAY(SELECT s.uri FROM sources s WHERE s.created_by_job_id = j.id) \
             FROM jobs j JOIN projects p ON p.id = j.project_id WHERE j.id = $1",
        )
        .bind(job_id)
        .fetch_one(&env.db.pool)
        .await?;
        assert_eq!(job_type, "scrape");
        assert_eq!(project_name, project);
        assert_eq!(sources, [submitted]);
        assert_eq!(submit["json"]["invalid"][0]["url"], "not a url", "{submit}");

        // A limit over the bound: a tool error naming it, not a protocol failure.
        let bad = &t["bad_search"];
        assert_eq!(bad["is_error"], true, "{transport}: {bad}");
        assert!(
            bad["text"]
                .as_str()
                .unwrap_or("")
                .contains("limit must be between 1 and 100"),
            "{bad}"
        );

        // job_status of the submitted job.
        let status = &t["job_status"];
        assert_eq!(status["is_error"], false, "{status}");
        assert_eq!(status["json"]["id"], job_id.to_string(), "{status}");
        assert_eq!(status["json"]["status"], "queued", "{status}");
        assert_eq!(status["json"]["counts"]["total"], 1, "{status}");
        assert_eq!(status["json"]["sources"][0]["url"], submitted, "{status}");

        // trace_url by URL within the job: the source and its trail, from the submission.
        let trace = &t["trace_url"];
        assert_eq!(trace["is_error"], false, "{trace}");
        assert_eq!(trace["json"]["source"]["url"], submitted, "{trace}");
        assert_eq!(trace["json"]["events"][0]["kind"], "enqueued", "{trace}");
        assert_eq!(
            trace["json"]["events"][0]["job_id"],
            job_id.to_string(),
            "{trace}"
        );

        // The API's 404 comes back as a tool error with its message.
        let unknown = &t["unknown_job"];
        assert_eq!(unknown["is_error"], true, "{unknown}");
        let text = unknown["text"].as_str().unwrap_or("");
        assert!(
            text.contains("404") && text.contains("not found"),
            "{unknown}"
        );

        let dlq = &t["dlq_stats"];
        assert_eq!(dlq["is_error"], false, "{dlq}");
        assert_eq!(dlq["json"]["scrape"], 0, "{dlq}");

        // The page's Markdown, as a resource.
        let md = &t["markdown"];
        assert_eq!(
            md["uri"],
            format!("pipeline://sources/{source}/markdown"),
            "{md}"
        );
        assert!(
            md["text"].as_str().unwrap_or("").contains("wild yeast"),
            "{md}"
        );
    }

    // HTTP without a key: 401 before any MCP handling; the SDK's client cannot connect.
    assert_eq!(
        seen["http_no_key"]["status"], 401,
        "{}",
        seen["http_no_key"]
    );
    assert_eq!(seen["http_no_key_client"]["connected"], false);
    // A wrong key: the API's own refusal, as a tool error.
    let wrong = &seen["http_wrong_key"];
    assert_eq!(wrong["is_error"], true, "{wrong}");
    assert!(
        wrong["text"].as_str().unwrap_or("").contains("401"),
        "{wrong}"
    );
    Ok(())
}
