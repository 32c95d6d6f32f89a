//! The extraction worker against a real OpenAI-compatible embeddings server: failures leave
//! visible `embeddings_created = false` rows and end in the DLQ; a redrive completes the
//! work without duplicates and embeds only what is missing; texts of many sources share
//! batches.

use std::time::Duration;

use integration_tests::extraction::{EmbeddingServer, Env, Mode, article_page};
use pipeline_core::settings::EmbeddingBackend;
use pipeline_ops::Family;

const DRAIN: Duration = Duration::from_secs(60);
const DIMS: usize = 8;

async fn env_with(server: &EmbeddingServer, timeout_ms: u64) -> anyhow::Result<Env> {
    let url = server.url();
    Env::new(move |s| {
        s.embedding.backend = EmbeddingBackend::Openai;
        s.embedding.openai.url = url;
        s.embedding.openai.model = "test-embed".into();
        s.embedding.openai.timeout_ms = timeout_ms;
        s.embedding.openai.dims = DIMS;
        s.extraction.chunk_max_chars = 400;
    })
    .await
}

#[tokio::test]
async fn server_down_then_up_dead_letters_then_redrive_completes() -> anyhow::Result<()> {
    let server = EmbeddingServer::start(DIMS).await?;
    let env = env_with(&server, 5_000).await?;
    let handler = env.handler()?;
    let (source_id, job_id) = env
        .scraped_source("https://blog.example/down", &article_page(), "text/html")
        .await?;
    server.set_mode(Mode::Fail500);
    env.enqueue(source_id, job_id).await?;
    env.drain(&handler, DRAIN).await?;

    // The extractions exist and say they have no vectors; nothing pretends to be done.
    let down = env.counts(source_id).await?;
    assert!(down.extractions > 1, "{down:?}");
    assert_eq!((down.embedded, down.embeddings), (0, 0));
    assert_eq!(env.status(source_id).await?, "dead_lettered");
    let dlq = env.services.dlq(Family::Extraction);
    let item = dlq.get(&source_id.to_string()).await?.expect("in the DLQ");
    assert_eq!(item.attempts, 2, "retried, then dead-lettered");
    assert_eq!(item.error_kind, work_queue::ErrorKind::Transient);
    assert!(item.error.contains("500"), "{}", item.error);
    assert_eq!(item.job_id, Some(job_id));
    let events = env.event_kinds(source_id).await?;
    assert!(events.contains(&"failed".to_owned()), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("dead_lettered"));
    assert!(!events[2..].contains(&"succeeded".to_owned()), "{events:?}");
    assert_eq!(server.requests().len(), 2, "one request per attempt");

    // The server recovers; a redrive reprocesses the message.
    server.set_mode(Mode::Ok);
    let redriven = pipeline_ops::dlq_ops::retry(
        &env.services,
        Family::Extraction,
        &source_id.to_string(),
        pipeline_store::Actor::Cli,
    )
    .await?
    .expect("redriven");
    assert!(redriven.enqueued);
    assert_eq!(env.status(source_id).await?, "scraped");
    env.drain(&handler, DRAIN).await?;

    let up = env.counts(source_id).await?;
    assert_eq!(up.extractions, down.extractions, "no duplicate extractions");
    assert_eq!(up.embedded, up.extractions);
    assert_eq!(up.embeddings, up.extractions);
    assert_eq!(up.links, down.links, "no duplicate links");
    assert_eq!(up.entities, down.entities, "no duplicate entities");
    assert_eq!(env.status(source_id).await?, "extracted");
    assert!(dlq.get(&source_id.to_string()).await?.is_none());
    let (model, dims): (String, i32) = sqlx::query_as(
        "SELECT DISTINCT e.model, e.dims FROM extraction_embeddings e
         JOIN extractions x ON x.id = e.extraction_id WHERE x.source_id = $1",
    )
    .bind(source_id)
    .fetch_one(&env.db.pool)
    .await?;
    assert_eq!((model.as_str(), dims), ("test-embed", DIMS as i32));
    let job = pipeline_store::jobs::get(&env.db.pool, job_id).await?;
    assert_eq!(job.status, "completed");
    Ok(())
}

#[tokio::test]
async fn a_wrong_reply_is_permanent_and_a_stall_is_transient() -> anyhow::Result<()> {
    let server = EmbeddingServer::start(DIMS).await?;
    let env = env_with(&server, 300).await?;
    let handler = env.handler()?;
    let dlq = env.services.dlq(Family::Extraction);

    server.set_mode(Mode::WrongCount);
    let (wrong, job) = env
        .scraped_source("https://blog.example/wrong", &article_page(), "text/html")
        .await?;
    env.enqueue(wrong, job).await?;
    env.drain(&handler, DRAIN).await?;
    let item = dlq.get(&wrong.to_string()).await?.expect("in the DLQ");
    assert_eq!(item.error_kind, work_queue::ErrorKind::Permanent);
    assert_eq!(item.attempts, 1, "a malformed reply is not retried");
    assert!(item.error.contains("vectors for"), "{}", item.error);
    assert_eq!(env.counts(wrong).await?.embedded, 0);

    server.set_mode(Mode::Stall(Duration::from_secs(2)));
    let (slow, job) = env
        .scraped_source("https://blog.example/slow", &article_page(), "text/html")
        .await?;
    env.enqueue(slow, job).await?;
    env.drain(&handler, DRAIN).await?;
    let item = dlq.get(&slow.to_string()).await?.expect("in the DLQ");
    assert_eq!(item.error_kind, work_queue::ErrorKind::Transient);
    assert_eq!(item.attempts, 2);
    assert!(item.error.contains("timed out"), "{}", item.error);
    assert_eq!(env.counts(slow).await?.embedded, 0);
    assert_eq!(env.status(slow).await?, "dead_lettered");
    Ok(())
}

#[tokio::test]
async fn a_retry_embeds_only_the_missing_chunks() -> anyhow::Result<()> {
    let server = EmbeddingServer::start(DIMS).await?;
    let env = env_with(&server, 5_000).await?;
    let handler = env.handler()?;
    let (source_id, job_id) = env
        .scraped_source("https://blog.example/missing", &article_page(), "text/html")
        .await?;
    env.enqueue(source_id, job_id).await?;
    env.drain(&handler, DRAIN).await?;
    let full = env.counts(source_id).await?;
    assert_eq!(server.inputs() as i64, full.extractions);

    // Two chunks lose their vectors (as if a crash had split the work).
    sqlx::query(
        "WITH gone AS (UPDATE extractions SET embeddings_created = false
                       WHERE source_id = $1 AND chunk_index IN (1, 2) RETURNING id)
         DELETE FROM extraction_embeddings WHERE extraction_id IN (SELECT id FROM gone)",
    )
    .bind(source_id)
    .execute(&env.db.pool)
    .await?;
    let before = server.inputs();
    env.enqueue(source_id, job_id).await?;
    env.drain(&handler, DRAIN).await?;
    assert_eq!(server.inputs() - before, 2, "only the two missing chunks");
    assert_eq!(env.counts(source_id).await?, full);
    Ok(())
}

#[tokio::test]
async fn texts_of_concurrent_sources_share_batches() -> anyhow::Result<()> {
    let server = EmbeddingServer::start(DIMS).await?;
    let url = server.url();
    let env = Env::new(move |s| {
        s.embedding.backend = EmbeddingBackend::Openai;
        s.embedding.openai.url = url;
        s.embedding.openai.dims = DIMS;
        s.embedding.batch_size = 64;
        s.embedding.batch_window_ms = 200;
    })
    .await?;
    let handler = env.handler()?;
    let mut ids = Vec::new();
    for i in 0..6 {
        let page = format!(
            "<html><head><title>Note {i}</title></head><body><article><h1>Note {i}</h1>\
             <p>Short note number {i} about batching texts across many sources at once.</p>\
             </article></body></html>"
        );
        let (s, j) = env
            .scraped_source(&format!("https://notes.example/{i}"), &page, "text/html")
            .await?;
        env.enqueue(s, j).await?;
        ids.push(s);
    }
    // One step reserves all six and processes them concurrently.
    let n = pipeline_runner::run_next(env.queue(), &handler, 16).await?;
    assert_eq!(n, 6);
    let mut chunks = 0;
    for s in &ids {
        assert_eq!(env.status(*s).await?, "extracted");
        let c = env.counts(*s).await?;
        assert_eq!(c.embedded, c.extractions);
        chunks += c.extractions;
    }
    assert_eq!(server.inputs() as i64, chunks);
    assert!(
        server.requests().len() < ids.len(),
        "texts of several sources went in one request: {:?}",
        server.requests()
    );
    Ok(())
}
