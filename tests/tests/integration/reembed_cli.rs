//! `pipelinectl reembed` through the real binary: after the model changes (here the hashing
//! embedder's dimensions, which change its model name), it queues the sources whose chunks
//! lack a vector of the new model, the extraction worker re-embeds them, and a second run
//! finds nothing left; `--status` reports the progress.

use std::time::Duration;

use integration_tests::extraction::{Env, article_page};
use integration_tests::{binary, redis_url};
use serde_json::Value;

async fn reembed(env: &Env, dims: &str, args: &[&str]) -> anyhow::Result<Value> {
    let out = tokio::process::Command::new(binary("pipelinectl"))
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("PIPELINE__EMBEDDING__HASHING__DIMS", dims)
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .args(["--json", "reembed"])
        .args(args)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test]
async fn reembed_moves_every_chunk_to_the_new_model() -> anyhow::Result<()> {
    let env = Env::new(|s| {
        s.extraction.chunk_max_chars = 400;
        s.extraction.chunk_overlap_chars = 50;
    })
    .await?;
    let handler = env.handler()?;
    for url in ["https://a.example/one", "https://a.example/two"] {
        let (source, job) = env
            .scraped_source(url, &article_page(), "text/html")
            .await?;
        env.enqueue(source, job).await?;
    }
    assert_eq!(env.drain(&handler, Duration::from_secs(60)).await?, 2);

    // Under the current model nothing is to do.
    let same = reembed(&env, "384", &[]).await?;
    assert_eq!(same["sources_queued"], 0, "{same}");
    assert_eq!(same["chunks_without_model"], 0);
    let chunks = same["chunks"].as_i64().unwrap_or(0);
    assert!(chunks >= 4, "{same}");

    // The model changes: every chunk is to re-embed; --status only reports.
    let status = reembed(&env, "64", &["--status"]).await?;
    assert_eq!(status["model"], "hashing-v1-n2-d64");
    assert_eq!(status["chunks_without_model"], chunks);
    assert_eq!(
        env.queue().depth().await?.total(),
        0,
        "--status queues nothing"
    );
    let first = reembed(&env, "64", &["--project", "extraction-tests"]).await?;
    assert_eq!(first["sources_queued"], 2, "{first}");
    // Run again before the workers got to it: nothing is queued twice.
    let again = reembed(&env, "64", &[]).await?;
    assert_eq!(
        (
            again["sources_queued"].clone(),
            again["sources_already_queued"].clone()
        ),
        (Value::from(0), Value::from(2)),
        "{again}"
    );

    // The workers (now configured with the new model) re-embed in the background.
    let new_env_handler = {
        let mut settings = (*env.services.settings).clone();
        settings.embedding.hashing.dims = 64;
        let embedder = extraction_worker::embedder_from_settings(&settings, None)?;
        let batcher = extraction_worker::spawn_batcher(&settings, embedder);
        extraction_worker::handler(&env.services, batcher)
    };
    assert_eq!(
        env.drain(&new_env_handler, Duration::from_secs(60)).await?,
        2
    );
    let done = reembed(&env, "64", &[]).await?;
    assert_eq!(done["sources_queued"], 0, "{done}");
    assert_eq!(done["chunks_without_model"], 0);
    let (rows, dims): (i64, Option<i32>) = sqlx::query_as(
        "SELECT count(*), max(dims) FROM extraction_embeddings WHERE model = 'hashing-v1-n2-d64'",
    )
    .fetch_one(&env.db.pool)
    .await?;
    assert_eq!((rows, dims), (chunks, Some(64)));
    Ok(())
}
