//! The extraction worker against a real OpenAI-compatible embeddings server: failures leave
//! visible `embeddings_created = false` rows and end in the DLQ; a redrive completes the
//! work without duplicates and embeds only what is missing; texts of many sources share
//! batches; a text embedded once is taken from the embedding cache afterwards, and the
//! cache keeps to its bound.

use std::time::Duration;

use integration_tests::extraction::{EmbeddingServer, Env, Mode, article_page};
use pipeline_core::settings::EmbeddingBackend;
use pipeline_ops::Family;

const DRAIN: Duration = Duration::from_secs(60);
const DIMS: usize = 8;

async fn env_with(server: &EmbeddingServer, timeout_ms: u64) -> anyhow::Result<Env> {
    env_with_cache(server, timeout_ms, 0).await
}

/// `max_entries` cached vectors (0: no cache, so every text missing a vector reaches the
/// server, which is what most tests here count).
async fn env_with_cache(
    server: &EmbeddingServer,
    timeout_ms: u64,
    max_entries: u64,
) -> anyhow::Result<Env> {
    let url = server.url();
    Env::new(move |s| {
        s.embedding.cache.max_entries = max_entries;
        s.embedding.backend = EmbeddingBackend::Openai;
        s.embedding.openai.url = url;
        s.embedding.openai.model = "test-embed".into();
        s.embedding.openai.timeout_ms = timeout_ms;
        s.embedding.openai.dims = DIMS;
        s.extraction.chunk_max_chars = 400;
    })
    .await
}

/// Distinct embedding texts among a source's chunks (all, or those of `indexes`): what a
/// worker sends to the server, as texts repeated within a page go once.
async fn distinct_texts(env: &Env, source: uuid::Uuid, indexes: &[i32]) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(DISTINCT (data->>'heading_path') || E'\\n' || (data->>'text'))
           FROM extractions
          WHERE source_id = $1 AND (cardinality($2::int[]) = 0 OR chunk_index = ANY($2))",
    )
    .bind(source)
    .bind(indexes)
    .fetch_one(&env.db.pool)
    .await?)
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
    // The page repeats paragraphs: each distinct text is sent once.
    assert_eq!(
        server.inputs() as i64,
        distinct_texts(&env, source_id, &[]).await?
    );

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
    assert_eq!(
        (server.inputs() - before) as i64,
        distinct_texts(&env, source_id, &[1, 2]).await?,
        "only the two missing chunks"
    );
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

#[tokio::test]
async fn identical_texts_are_embedded_once_per_model() -> anyhow::Result<()> {
    let server = EmbeddingServer::start(DIMS).await?;
    let env = env_with_cache(&server, 5_000, 1_000).await?;
    let handler = env.handler()?;
    // The same article under two URLs: every chunk of the second has the text (title,
    // headings and chunk) of one of the first.
    let (first, job) = env
        .scraped_source("https://blog.example/a", &article_page(), "text/html")
        .await?;
    env.enqueue(first, job).await?;
    env.drain(&handler, DRAIN).await?;
    let chunks = env.counts(first).await?.extractions;
    assert!(chunks >= 3, "{chunks} chunks");
    let distinct = distinct_texts(&env, first, &[]).await?;
    assert_eq!(server.inputs() as i64, distinct);

    let (second, job) = env
        .scraped_source(
            "https://blog.example/a?ref=feed",
            &article_page(),
            "text/html",
        )
        .await?;
    env.enqueue(second, job).await?;
    env.drain(&handler, DRAIN).await?;
    assert_eq!(env.status(second).await?, "extracted");
    let c = env.counts(second).await?;
    assert_eq!((c.extractions, c.embedded), (chunks, chunks));
    assert_eq!(
        server.inputs() as i64,
        distinct,
        "no text went to the server again"
    );
    // Each chunk of the copy has the vector of the same chunk of the original.
    let differing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM extractions a
           JOIN extractions b ON b.chunk_index = a.chunk_index AND b.source_id = $2
           JOIN extraction_embeddings ea ON ea.extraction_id = a.id
           JOIN extraction_embeddings eb ON eb.extraction_id = b.id
          WHERE a.source_id = $1
            AND (ea.embedding IS DISTINCT FROM eb.embedding OR eb.model <> 'test-embed')",
    )
    .bind(first)
    .bind(second)
    .fetch_one(&env.db.pool)
    .await?;
    assert_eq!(differing, 0);
    let detail = pipeline_store::sources::events(&env.db.pool, second)
        .await?
        .pop()
        .and_then(|e| e.detail)
        .expect("the succeeded event's detail");
    assert_eq!(detail["embedded"], chunks);
    assert_eq!(detail["embedded_from_cache"], chunks);
    let (rows, hits): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(hits), 0)::bigint FROM embedding_cache
          WHERE model = 'test-embed'",
    )
    .fetch_one(&env.db.pool)
    .await?;
    assert_eq!((rows, hits), (distinct, distinct));
    Ok(())
}

#[tokio::test]
async fn the_cache_keeps_its_bound_and_another_model_misses() -> anyhow::Result<()> {
    let server = EmbeddingServer::start(DIMS).await?;
    let env = env_with_cache(&server, 5_000, 2).await?;
    let handler = env.handler()?;
    let (source, job) = env
        .scraped_source("https://blog.example/bound", &article_page(), "text/html")
        .await?;
    env.enqueue(source, job).await?;
    env.drain(&handler, DRAIN).await?;
    let chunks = env.counts(source).await?.extractions;
    assert!(chunks > 2, "{chunks} chunks");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM embedding_cache")
        .fetch_one(&env.db.pool)
        .await?;
    assert_eq!(
        rows, 2,
        "the least recently used rows beyond the bound are deleted"
    );

    // Vectors are cached per model: a worker of another model embeds every chunk again.
    let cache = extraction_worker::EmbeddingCache::new(env.db.pool.clone(), 2);
    let keys: Vec<extraction_worker::TextKey> = ["a", "b"]
        .iter()
        .map(|t| extraction_worker::text_key(t))
        .collect();
    let (a, b): (&[f32], &[f32]) = (&[1.0, 0.0], &[0.0, 1.0]);
    cache
        .put("other-model", 2, &[(keys[0], a), (keys[1], b)])
        .await?;
    let found = cache.get("other-model", 2, &keys).await?;
    assert_eq!(
        found.get(&keys[1]).map(Vec::as_slice),
        Some(&[0.0, 1.0][..])
    );
    assert!(cache.get("test-embed", 2, &keys).await?.is_empty());
    assert!(
        cache.get("other-model", 3, &keys).await?.is_empty(),
        "wrong dims miss"
    );
    Ok(())
}
