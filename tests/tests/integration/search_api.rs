//! Search end to end: pages go through the extraction worker (hashing vectors), then
//! `GET /api/v1/search` over the real HTTP API finds the right page's chunks, with text,
//! URL, title and job, in every mode; new pages are found without a restart; bad
//! parameters are 422. `pipelinectl search` is run as a process over the same database.

use std::time::Duration;

use integration_tests::api::{TEST_KEY, json_of, wait_for};
use integration_tests::binary;
use integration_tests::extraction::Env;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DRAIN: Duration = Duration::from_secs(60);

fn page(title: &str, paragraphs: &[&str]) -> String {
    let body: String = paragraphs.iter().map(|p| format!("<p>{p}</p>\n")).collect();
    format!(
        "<!doctype html><html><head><title>{title}</title></head><body>\
         <nav><a href=\"/\">Home</a></nav><article><h1>{title}</h1>\n{body}</article>\
         <footer>Example footer</footer></body></html>"
    )
}

const BREAD: &[&str] = &[
    "Sourdough bread rises with a starter of wild yeast and lactic bacteria instead of \
     commercial yeast, which gives the loaf its sour taste and open crumb.",
    "Feed the starter with flour and water the evening before baking; it is ready when it \
     has doubled and smells pleasantly sour.",
    "Bake the dough in a preheated cast iron pot at a high temperature for a crisp crust.",
];
const RIVER: &[&str] = &[
    "The river burst its banks after three days of heavy rain and flooded the lower town, \
     where water stood a metre deep in the streets.",
    "Emergency crews evacuated two hundred residents by boat while engineers reinforced \
     the levee with sandbags through the night.",
    "Hydrologists expect the flood to recede slowly as the upstream reservoirs release water.",
];
const CHESS: &[&str] = &[
    "The chess grandmaster sacrificed her queen on move twenty to open the king's file and \
     won the tournament final with a mating attack.",
    "Commentators called the queen sacrifice the boldest move of the championship.",
    "Endgame technique decided the other games of the round.",
];

async fn get(client: &reqwest::Client, base: &str, query: &str) -> anyhow::Result<(u16, Value)> {
    let resp = client
        .get(format!("{base}/api/v1/search?{query}"))
        .header("X-API-Key", TEST_KEY)
        .send()
        .await?;
    json_of(resp).await
}

#[tokio::test]
async fn search_finds_the_page_that_says_it() -> anyhow::Result<()> {
    let env = Env::new(|s| {
        s.extraction.chunk_max_chars = 300;
        s.extraction.chunk_overlap_chars = 30;
    })
    .await?;
    let handler = env.handler()?;
    let mut jobs = Vec::new();
    for (url, title, text) in [
        (
            "https://food.example/sourdough",
            "Baking sourdough bread",
            BREAD,
        ),
        (
            "https://news.example/flood",
            "River floods the lower town",
            RIVER,
        ),
    ] {
        let (source, job) = env
            .scraped_source(url, &page(title, text), "text/html")
            .await?;
        env.enqueue(source, job).await?;
        jobs.push(job);
    }
    assert_eq!(env.drain(&handler, DRAIN).await?, 2);

    let (base, cancel) = serve(&env).await?;
    let client = integration_tests::http_client();

    for mode in ["hybrid", "full_text", "vector"] {
        let (status, body) = get(
            &client,
            &base,
            &format!("q=sourdough+starter&k=3&mode={mode}"),
        )
        .await?;
        assert_eq!(status, 200, "{mode}: {body}");
        let results = body["results"].as_array().expect("results");
        assert!(!results.is_empty(), "{mode}: {body}");
        let top = &results[0];
        assert_eq!(
            top["url"], "https://food.example/sourdough",
            "{mode}: {body}"
        );
        assert_eq!(top["title"], "Baking sourdough bread");
        assert_eq!(top["job_id"], jobs[0].to_string());
        assert!(
            top["text"].as_str().unwrap_or("").contains("starter"),
            "{top}"
        );
        assert!(results.len() <= 3);
        assert_eq!(body["mode"], mode);
        assert_eq!(body["model"], "hashing-v1-n2-d384");
        let scores: Vec<f64> = results
            .iter()
            .map(|r| r["score"].as_f64().unwrap_or(0.0))
            .collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "best first: {scores:?}"
        );
    }
    let (_, body) = get(&client, &base, "q=flooded+levee").await?;
    assert_eq!(body["results"][0]["url"], "https://news.example/flood");
    assert_eq!(body["results"][0]["job_id"], jobs[1].to_string());
    // Another project has none of these chunks.
    let (status, body) = get(
        &client,
        &base,
        &format!("q=sourdough&project_id={}", Uuid::now_v7()),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(body["results"].as_array().map(Vec::len), Some(0), "{body}");

    // A page extracted while the API runs is found without a restart (vector mode: only
    // the in-memory index can answer it).
    let (source, job) = env
        .scraped_source(
            "https://games.example/final",
            &page("Chess final", CHESS),
            "text/html",
        )
        .await?;
    env.enqueue(source, job).await?;
    assert_eq!(env.drain(&handler, DRAIN).await?, 1);
    let found = wait_for(Duration::from_secs(10), || async {
        let (_, body) = get(&client, &base, "q=queen+sacrifice+grandmaster&mode=vector").await?;
        Ok((body["results"][0]["url"] == "https://games.example/final").then_some(body))
    })
    .await?;
    assert_eq!(found["results"][0]["job_id"], job.to_string());

    // Bad parameters are refused, each with its reason.
    for (query, needle) in [
        ("q=bread&k=0", "k must be within 1..=100"),
        ("q=bread&k=101", "k must be within 1..=100"),
        ("q=+++", "q must not be blank"),
        // A group separator and a byte-order mark are blank too, as the pattern says.
        ("q=%1D+%EF%BB%BF", "q must not be blank"),
        ("q=bread&mode=magic", "mode"),
        ("q=bread&project_id=nope", "project_id"),
        ("k=3", "q"),
        ("q=bread%00crumbs", "NUL"),
    ] {
        let (status, body) = get(&client, &base, query).await?;
        assert_eq!(status, 422, "{query}: {body}");
        assert!(
            body["detail"].as_str().unwrap_or("").contains(needle),
            "{query}: {body}"
        );
    }
    let long = "a".repeat(1001);
    let (status, _) = get(&client, &base, &format!("q={long}")).await?;
    assert_eq!(status, 422);

    // The CLI ranks the same way, straight from Postgres.
    let out = tokio::process::Command::new(binary("pipelinectl"))
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", integration_tests::redis_url())
        .args([
            "--json",
            "search",
            "flooded levee",
            "--project",
            "extraction-tests",
            "-k",
            "2",
        ])
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        body["results"][0]["url"], "https://news.example/flood",
        "{body}"
    );
    assert_eq!(body["results"].as_array().map(Vec::len), Some(2));
    let out = tokio::process::Command::new(binary("pipelinectl"))
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", integration_tests::redis_url())
        .args(["search", "bread", "--project", "no-such-project"])
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(3), "unknown project: not found");
    cancel.cancel();
    Ok(())
}

/// The real API on a free loopback port over `env`'s services: its base URL, and the token
/// that stops it.
async fn serve(env: &Env) -> anyhow::Result<(String, CancellationToken)> {
    let cancel = CancellationToken::new();
    let (addr, _task) = pipeline_api::serve(
        env.services.clone(),
        Some(TEST_KEY.to_owned().into()),
        "127.0.0.1:0".parse()?,
        cancel.clone(),
    )
    .await?;
    Ok((format!("http://{addr}"), cancel))
}

/// An API started before any page was extracted (the README's order) finds pages by
/// vector as soon as they are extracted, and `/ready` says whether the index can refresh.
/// Before the fix, the empty index's watermark was an instant Postgres rejects: every
/// refresh failed with "timestamp out of range", vector search stayed empty and `/ready`
/// said 200 throughout.
#[tokio::test]
async fn vector_search_works_from_an_empty_start_and_ready_reports_the_index() -> anyhow::Result<()>
{
    let env = Env::new(|s| {
        s.extraction.chunk_max_chars = 300;
        s.extraction.chunk_overlap_chars = 30;
    })
    .await?;
    let handler = env.handler()?;
    let (base, cancel) = serve(&env).await?;
    let client = integration_tests::http_client();
    let ready = || async {
        let resp = client.get(format!("{base}/ready")).send().await?;
        json_of(resp).await
    };

    // Nothing extracted yet: no hits, and ready.
    let (status, body) = get(&client, &base, "q=sourdough+starter&mode=vector").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(0), "{body}");
    let (status, body) = ready().await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["vector_index"], "ok", "{body}");

    // A page extracted now is found by vector alone, after a few refreshes of an index that
    // started empty.
    let (source, job) = env
        .scraped_source(
            "https://food.example/sourdough",
            &page("Baking sourdough bread", BREAD),
            "text/html",
        )
        .await?;
    env.enqueue(source, job).await?;
    assert_eq!(env.drain(&handler, DRAIN).await?, 1);
    tokio::time::sleep(pipeline_api::search::REFRESH_EVERY * 3).await;
    let found = wait_for(Duration::from_secs(10), || async {
        let (_, body) = get(&client, &base, "q=sourdough+starter&mode=vector").await?;
        Ok((body["results"][0]["url"] == "https://food.example/sourdough").then_some(body))
    })
    .await?;
    assert_eq!(found["results"][0]["job_id"], job.to_string());
    let (status, body) = ready().await?;
    assert_eq!(status, 200, "{body}");

    // An index that cannot refresh makes the API unready, saying why; it recovers by itself.
    sqlx::query("ALTER TABLE extraction_embeddings RENAME TO extraction_embeddings_away")
        .execute(&env.db.pool)
        .await?;
    let unready = wait_for(Duration::from_secs(10), || async {
        let (status, body) = ready().await?;
        Ok((status == 503).then_some(body))
    })
    .await?;
    assert!(
        unready["vector_index"]
            .as_str()
            .is_some_and(|r| r.starts_with("refresh failed")),
        "{unready}"
    );
    sqlx::query("ALTER TABLE extraction_embeddings_away RENAME TO extraction_embeddings")
        .execute(&env.db.pool)
        .await?;
    let back = wait_for(Duration::from_secs(10), || async {
        let (status, body) = ready().await?;
        Ok((status == 200).then_some(body))
    })
    .await?;
    assert_eq!(back["vector_index"], "ok", "{back}");
    cancel.cancel();
    Ok(())
}
