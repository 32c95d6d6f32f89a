//! Pages as documents, end to end: a page with known metadata and structure goes through the
//! extraction worker, and its Markdown and metadata are in the `sources` columns, in
//! `GET /api/v1/sources/{id}`, in `pipelinectl sources show` and `trace`; its chunks carry
//! their heading trail into the columns, the API's search hits and `pipelinectl search`.
//! `pipelinectl reextract` rebuilds the columns of pages extracted before they existed
//! (simulated by emptying them) from the stored body, without fetching, and without
//! embedding unchanged chunks again.

use std::time::Duration;

use integration_tests::api::{TEST_KEY, json_of};
use integration_tests::extraction::Env;
use integration_tests::{binary, http_client, redis_url};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const URL: &str = "https://docs.example/guide/install";

/// A guide page: every metadata source the tests check, and headings three levels deep
/// with a list, a table and a code block under them.
fn guide_page() -> String {
    let para = |topic: &str| {
        format!(
            "<p>This part of the guide explains {topic} in enough detail that an operator who \
             has never seen the daemon before can follow along, step by step, and knows what \
             to expect from every command before running it on a real machine.</p>"
        )
    };
    format!(
        r#"<!DOCTYPE html><html lang="en-GB"><head>
<title>Installing widgetd | Example Guides</title>
<meta name="author" content="Ada Lovelace">
<meta name="description" content="How to install and run widgetd on Linux and macOS.">
<meta property="og:site_name" content="Example Guides">
<meta property="og:image" content="/img/widgetd.png">
<meta property="article:published_time" content="2024-03-05T10:00:00+01:00">
<meta property="article:modified_time" content="2024-04-01T08:30:00-05:00">
<link rel="canonical" href="https://docs.example/guide/install/">
</head><body><nav><a href="/">Home</a> <a href="/guide/">Guide</a></nav>
<article><h1>Widgetd guide</h1>{intro}
<h2>Install</h2>{install}
<h3>Linux</h3>{linux}
<p>On Debian, run the package manager, then check the <a href="/guide/check">service</a>:</p>
<pre><code class="language-sh">sudo apt-get install widgetd
systemctl status widgetd</code></pre>
<ul><li>Debian 12</li><li>Ubuntu 24.04</li></ul>
<h3>macOS</h3>{macos}
<table><thead><tr><th>System</th><th>Package</th></tr></thead>
<tbody><tr><td>Linux</td><td>deb</td></tr><tr><td>macOS</td><td>brew</td></tr></tbody></table>
<h2>Run</h2>{run}
</article><footer>Copyright Example Guides</footer></body></html>"#,
        intro = para("what widgetd is"),
        install = para("the ways to install"),
        linux = para("the Linux packages"),
        macos = para("the macOS formula"),
        run = para("starting the service"),
    )
}

async fn pipelinectl(env: &Env, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(tokio::process::Command::new(binary("pipelinectl"))
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .args(args)
        .output()
        .await?)
}

/// Runs `pipelinectl` and returns its standard output; fails unless it exits 0.
async fn ctl_ok(env: &Env, args: &[&str]) -> anyhow::Result<String> {
    let out = pipelinectl(env, args).await?;
    anyhow::ensure!(
        out.status.success(),
        "pipelinectl {args:?} exited {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The metadata columns of a source, as text, for comparing before and after.
async fn columns(env: &Env, source_id: Uuid) -> anyhow::Result<Vec<Option<String>>> {
    let row: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT markdown, array_to_string(authors, '|'), byline,
                to_char(published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'),
                published_offset_seconds::text,
                to_char(modified_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'),
                modified_offset_seconds::text, language, language_source, site_name,
                canonical_url, image_url
         FROM sources WHERE id = $1",
    )
    .bind(source_id)
    .fetch_one(&env.db.pool)
    .await?;
    Ok(vec![
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, row.10, row.11,
    ])
}

#[tokio::test]
async fn markdown_metadata_and_heading_trails_reach_every_reader() -> anyhow::Result<()> {
    let env = Env::new(|s| {
        s.extraction.chunk_max_chars = 400;
        s.extraction.chunk_overlap_chars = 0;
    })
    .await?;
    let page = guide_page();
    // What extract-core makes of the page: the worker must store exactly this.
    let expected = extraction_worker::analyze(
        &page,
        Some(URL),
        "text/html",
        extraction_worker::chunk_options(&env.services.settings),
        &extraction_worker::limits(&env.services.settings),
    )?;
    let (source_id, job_id) = env.scraped_source(URL, &page, "text/html").await?;
    env.enqueue(source_id, job_id).await?;
    let handler = env.handler()?;
    assert_eq!(env.drain(&handler, Duration::from_secs(60)).await?, 1);

    // The columns.
    let cols = columns(&env, source_id).await?;
    let markdown = cols[0].clone().expect("markdown stored");
    assert_eq!(markdown, expected.markdown);
    // The structure the page gives (which headings the main-content choice keeps is
    // extract-core's business; the level of those it keeps is not).
    for part in [
        "### Linux",
        "```sh\nsudo apt-get install widgetd",
        "- Debian 12",
        "| System | Package |",
        "](https://docs.example/guide/check)",
    ] {
        assert!(markdown.contains(part), "{part:?} not in:\n{markdown}");
    }
    assert_eq!(
        cols[1..],
        [
            Some("Ada Lovelace".to_owned()),
            Some("Ada Lovelace".to_owned()),
            Some("2024-03-05T09:00:00".to_owned()),
            Some("3600".to_owned()),
            Some("2024-04-01T13:30:00".to_owned()),
            Some("-18000".to_owned()),
            Some("en-GB".to_owned()),
            Some("declared".to_owned()),
            Some("Example Guides".to_owned()),
            Some("https://docs.example/guide/install/".to_owned()),
            Some("https://docs.example/img/widgetd.png".to_owned()),
        ]
    );
    let description: Option<String> =
        sqlx::query_scalar("SELECT description FROM sources WHERE id = $1")
            .bind(source_id)
            .fetch_one(&env.db.pool)
            .await?;
    assert_eq!(
        description.as_deref(),
        Some("How to install and run widgetd on Linux and macOS.")
    );
    // The chunk holding the install command falls under Install › Linux.
    let linux_chunk = expected
        .chunks
        .iter()
        .find(|c| c.text.contains("apt-get"))
        .expect("a chunk with the command");
    let trail = linux_chunk.heading_trail();
    assert!(
        trail.ends_with(" › Linux") && trail.starts_with("Widgetd guide › "),
        "{trail}"
    );
    let stored: Option<String> = sqlx::query_scalar(
        "SELECT heading_trail FROM extractions WHERE source_id = $1 AND data ->> 'text' LIKE '%apt-get%'
         ORDER BY chunk_index LIMIT 1",
    )
    .bind(source_id)
    .fetch_one(&env.db.pool)
    .await?;
    assert_eq!(stored.as_deref(), Some(trail.as_str()));
    // trace.sources shows the metadata too.
    let (site, bytes): (Option<String>, Option<i32>) =
        sqlx::query_as("SELECT site_name, markdown_bytes FROM trace.sources WHERE source_id = $1")
            .bind(source_id)
            .fetch_one(&env.db.pool)
            .await?;
    assert_eq!(site.as_deref(), Some("Example Guides"));
    assert_eq!(bytes, Some(markdown.len() as i32));

    // The API.
    let cancel = CancellationToken::new();
    let (addr, _server) = pipeline_api::serve(
        env.services.clone(),
        Some(TEST_KEY.to_owned().into()),
        "127.0.0.1:0".parse()?,
        cancel.clone(),
    )
    .await?;
    let client = http_client();
    let get = |path: String| {
        let req = client
            .get(format!("http://{addr}{path}"))
            .header("X-API-Key", TEST_KEY);
        async move { json_of(req.send().await?).await }
    };
    let (status, doc) = get(format!("/api/v1/sources/{source_id}")).await?;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["url"], URL);
    assert_eq!(doc["status"], "extracted");
    assert_eq!(doc["extracted"], true);
    assert_eq!(doc["markdown_bytes"], markdown.len());
    assert!(doc.get("markdown").is_none(), "Markdown only on request");
    let m = &doc["metadata"];
    assert_eq!(m["authors"], serde_json::json!(["Ada Lovelace"]));
    assert_eq!(m["published"], "2024-03-05T10:00:00+01:00");
    assert_eq!(m["modified"], "2024-04-01T08:30:00-05:00");
    assert_eq!(m["language"], "en-GB");
    assert_eq!(m["language_source"], "declared");
    assert_eq!(m["site_name"], "Example Guides");
    assert_eq!(m["canonical_url"], "https://docs.example/guide/install/");
    assert_eq!(m["image_url"], "https://docs.example/img/widgetd.png");
    let (status, with_md) = get(format!("/api/v1/sources/{source_id}?include=markdown")).await?;
    assert_eq!(status, 200, "{with_md}");
    assert_eq!(with_md["markdown"], markdown.as_str());
    let (status, bad) = get(format!("/api/v1/sources/{source_id}?include=html")).await?;
    assert_eq!(status, 422, "{bad}");
    assert!(bad["detail"].is_string(), "{bad}");
    let (status, missing) = get(format!("/api/v1/sources/{}", Uuid::now_v7())).await?;
    assert_eq!(status, 404, "{missing}");
    assert!(
        missing["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not found"),
        "{missing}"
    );
    let (status, not_id) = get("/api/v1/sources/not-a-uuid".to_owned()).await?;
    assert_eq!(status, 422, "{not_id}");
    // Search hits say where in the page they are.
    let (status, found) = get("/api/v1/search?q=apt-get&mode=full_text".to_owned()).await?;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found["results"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    let hit = &found["results"][0];
    assert_eq!(hit["source_id"], source_id.to_string(), "{found}");
    assert_eq!(hit["heading_trail"], trail.as_str(), "{found}");
    assert_eq!(hit["published"], "2024-03-05T10:00:00+01:00");
    assert_eq!(hit["language"], "en-GB");
    assert_eq!(hit["site_name"], "Example Guides");
    cancel.cancel();

    // The CLI.
    let id = source_id.to_string();
    let shown = ctl_ok(&env, &["sources", "show", &id]).await?;
    for line in [
        "authors     Ada Lovelace",
        "published   2024-03-05T10:00:00+01:00",
        "modified    2024-04-01T08:30:00-05:00",
        "language    en-GB (declared)",
        "site        Example Guides",
        "canonical   https://docs.example/guide/install/",
    ] {
        assert!(shown.contains(line), "{line:?} not in:\n{shown}");
    }
    assert!(
        shown.contains(&format!("markdown    {} bytes", markdown.len())),
        "{shown}"
    );
    let md_out = ctl_ok(&env, &["sources", "show", &id, "--markdown"]).await?;
    assert_eq!(md_out, format!("{markdown}\n"));
    let json_out: Value =
        serde_json::from_str(&ctl_ok(&env, &["--json", "sources", "show", &id]).await?)?;
    assert_eq!(
        json_out["metadata"], doc["metadata"],
        "the CLI's JSON is the API's"
    );
    let bad_id = pipelinectl(&env, &["sources", "show", "nope"]).await?;
    assert_eq!(bad_id.status.code(), Some(2));
    let unknown = pipelinectl(&env, &["sources", "show", &Uuid::now_v7().to_string()]).await?;
    assert_eq!(unknown.status.code(), Some(3));
    let searched = ctl_ok(&env, &["search", "apt-get", "--mode", "full-text"]).await?;
    assert!(searched.contains(&trail), "{trail:?} not in:\n{searched}");
    let traced = ctl_ok(&env, &["trace", &id]).await?;
    for line in [
        "site       Example Guides",
        "published  2024-03-05T10:00:00+01:00",
    ] {
        assert!(traced.contains(line), "{line:?} not in:\n{traced}");
    }
    Ok(())
}

#[tokio::test]
async fn reextract_fills_pages_extracted_before_the_columns() -> anyhow::Result<()> {
    let env = Env::new(|_| {}).await?;
    let handler = env.handler()?;
    let page = guide_page();
    let mut ids = Vec::new();
    for url in [URL, "https://docs.example/guide/again"] {
        let (source_id, job_id) = env.scraped_source(url, &page, "text/html").await?;
        env.enqueue(source_id, job_id).await?;
        ids.push((source_id, job_id));
    }
    assert_eq!(env.drain(&handler, Duration::from_secs(60)).await?, 2);
    let filled = columns(&env, ids[0].0).await?;
    assert!(filled.iter().all(Option::is_some), "{filled:?}");
    let vectors_before: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT extraction_id, created_at FROM extraction_embeddings ORDER BY extraction_id",
    )
    .fetch_all(&env.db.pool)
    .await?;
    assert!(!vectors_before.is_empty());

    // Pages extracted before the columns existed.
    sqlx::query(
        "UPDATE sources SET markdown = NULL, authors = NULL, byline = NULL, published_at = NULL,
                published_offset_seconds = NULL, modified_at = NULL,
                modified_offset_seconds = NULL, language = NULL, language_source = NULL,
                site_name = NULL, description = NULL, canonical_url = NULL, image_url = NULL",
    )
    .execute(&env.db.pool)
    .await?;

    // Bad input first: no scope, an unknown job.
    assert_eq!(
        pipelinectl(&env, &["reextract"]).await?.status.code(),
        Some(2)
    );
    let unknown = pipelinectl(&env, &["reextract", "--job", &Uuid::now_v7().to_string()]).await?;
    assert_eq!(unknown.status.code(), Some(3));
    let status: Value =
        serde_json::from_str(&ctl_ok(&env, &["--json", "reextract", "--all", "--status"]).await?)?;
    assert_eq!(
        (
            status["extracted"].clone(),
            status["without_markdown"].clone()
        ),
        (Value::from(2), Value::from(2)),
        "{status}"
    );
    assert_eq!(
        env.queue().depth().await?.total(),
        0,
        "--status queues nothing"
    );

    // One job's pages, then the rest; a second run before the workers queues nothing twice.
    let job: Value = serde_json::from_str(
        &ctl_ok(
            &env,
            &["--json", "reextract", "--job", &ids[0].1.to_string()],
        )
        .await?,
    )?;
    assert_eq!(job["sources_queued"], 1, "{job}");
    let all = ctl_ok(&env, &["reextract", "--all"]).await?;
    assert!(
        all.contains("1 page(s) queued for re-extraction, 1 already queued"),
        "{all}"
    );
    // Each page queued once has one `enqueued` event by the CLI, saying why.
    for (source_id, _) in &ids {
        let events = pipeline_store::sources::events(&env.db.pool, *source_id).await?;
        let queued: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "enqueued" && e.stage.as_deref() == Some("extraction"))
            .collect();
        assert_eq!(queued.len(), 1, "{source_id}: {events:?}");
        assert_eq!(queued[0].actor.as_deref(), Some("cli"));
        assert_eq!(queued[0].detail.as_ref().unwrap()["reason"], "reextract");
    }
    assert_eq!(env.drain(&handler, Duration::from_secs(60)).await?, 2);
    for (source_id, _) in &ids {
        assert_eq!(columns(&env, *source_id).await?, filled, "{source_id}");
    }
    // The same text gives the same chunks: no vector was computed again.
    let vectors_after: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT extraction_id, created_at FROM extraction_embeddings ORDER BY extraction_id",
    )
    .fetch_all(&env.db.pool)
    .await?;
    assert_eq!(vectors_after, vectors_before);

    let done: Value =
        serde_json::from_str(&ctl_ok(&env, &["--json", "reextract", "--all"]).await?)?;
    assert_eq!(
        (
            done["sources_queued"].clone(),
            done["without_markdown"].clone()
        ),
        (Value::from(0), Value::from(0)),
        "{done}"
    );
    // --force re-extracts pages that have their columns, within --limit.
    let forced: Value = serde_json::from_str(
        &ctl_ok(
            &env,
            &["--json", "reextract", "--all", "--force", "--limit", "1"],
        )
        .await?,
    )?;
    assert_eq!(forced["sources_queued"], 1, "{forced}");
    assert_eq!(env.drain(&handler, Duration::from_secs(60)).await?, 1);
    Ok(())
}
