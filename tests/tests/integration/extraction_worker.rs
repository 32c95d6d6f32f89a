//! The extraction worker with the hashing embedder: extractions, vectors, entities, status
//! and events for fixture pages; idempotent redelivery; changed chunking; partial entity
//! failures; refused content.

use std::time::Duration;

use integration_tests::extraction::{BROKEN_JSONLD_PAGE, Env, article_page};
use serde_json::Value;

const DRAIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_page_becomes_chunks_vectors_and_entities() -> anyhow::Result<()> {
    let env = Env::new(|s| {
        s.extraction.chunk_max_chars = 400;
        s.extraction.chunk_overlap_chars = 50;
    })
    .await?;
    let handler = env.handler()?;
    let (source_id, job_id) = env
        .scraped_source(
            "https://blog.example/lessons",
            &article_page(),
            "text/html; charset=utf-8",
        )
        .await?;
    assert!(env.enqueue(source_id, job_id).await?);
    assert_eq!(env.drain(&handler, DRAIN).await?, 1);

    let c = env.counts(source_id).await?;
    assert!(
        c.extractions >= 5,
        "a long article gives several chunks: {c:?}"
    );
    assert_eq!(c.embedded, c.extractions, "every chunk has its vector");
    assert_eq!(c.embeddings, c.extractions);

    // The rows say what the chunk is: text, heading path, offsets into sources.content.
    let (content, title, status): (String, Option<String>, String) =
        sqlx::query_as("SELECT content, title, status FROM sources WHERE id = $1")
            .bind(source_id)
            .fetch_one(&env.db.pool)
            .await?;
    assert_eq!(status, "extracted");
    assert!(
        title
            .as_deref()
            .is_some_and(|t| t.starts_with("Lessons from the queue")),
        "{title:?}"
    );
    assert!(content.contains("The storage team measured"));
    assert!(
        !content.contains("Copyright Example Media"),
        "boilerplate left out"
    );
    let rows: Vec<(i32, Value, String, bool, Option<String>, Option<uuid::Uuid>)> = sqlx::query_as(
        "SELECT chunk_index, data, extraction_type, entities_extracted, entities_status,
                created_by_job_id
         FROM extractions WHERE source_id = $1 ORDER BY chunk_index",
    )
    .bind(source_id)
    .fetch_all(&env.db.pool)
    .await?;
    let chars: Vec<char> = content.chars().collect();
    for (i, (index, data, kind, extracted, entities_status, created_by)) in rows.iter().enumerate()
    {
        assert_eq!(*index as usize, i);
        assert_eq!(kind, "text_chunk");
        assert!(*extracted);
        assert_eq!(entities_status.as_deref(), Some("complete"));
        assert_eq!(*created_by, Some(job_id));
        let start = data["char_start"].as_u64().unwrap() as usize;
        let end = data["char_end"].as_u64().unwrap() as usize;
        let text = data["text"].as_str().unwrap();
        assert_eq!(chars[start..end].iter().collect::<String>(), text);
        assert!(text.chars().count() <= 400);
        assert_eq!(data["chunk_index"].as_u64(), Some(i as u64));
        assert!(data["heading_path"].is_array());
    }
    let results_chunk = rows
        .iter()
        .find(|r| r.1["text"].as_str().unwrap().contains("network team"))
        .expect("a chunk of the Results section");
    assert!(
        results_chunk.1["heading_path"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "Results"),
        "{}",
        results_chunk.1
    );

    // Vectors: the hashing model, its dimensions, unit length.
    let (model, dims, norm): (String, i32, f64) = sqlx::query_as(
        "SELECT e.model, e.dims, sqrt((SELECT sum(v * v) FROM unnest(e.embedding) v))::float8
         FROM extraction_embeddings e JOIN extractions x ON x.id = e.extraction_id
         WHERE x.source_id = $1 LIMIT 1",
    )
    .bind(source_id)
    .fetch_one(&env.db.pool)
    .await?;
    assert_eq!(model, "hashing-v1-n2-d384");
    assert_eq!(dims, 384);
    assert!((norm - 1.0).abs() < 1e-3, "{norm}");

    // Entities: the JSON-LD publisher on chunk 0; the e-mail on the chunk that has it.
    let links: Vec<(String, String, i32, String)> = sqlx::query_as(
        "SELECT n.kind, n.normalized, x.chunk_index, x.data->>'text'
         FROM extraction_entities l JOIN entities n ON n.id = l.entity_id
         JOIN extractions x ON x.id = l.extraction_id WHERE x.source_id = $1",
    )
    .bind(source_id)
    .fetch_all(&env.db.pool)
    .await?;
    assert!(
        links
            .iter()
            .any(|(k, n, i, _)| k == "organization" && n == "Example Media" && *i == 0),
        "{links:?}"
    );
    let email: Vec<_> = links
        .iter()
        .filter(|(k, n, _, _)| k == "email" && n == "editors@example.org")
        .collect();
    assert!(!email.is_empty(), "{links:?}");
    assert!(
        email
            .iter()
            .all(|(_, _, _, text)| text.contains("editors@example.org"))
    );
    assert!(
        links
            .iter()
            .any(|(k, n, _, _)| k == "phone" && n == "+15550102030")
    );

    // The trail and the job.
    let events = env.event_kinds(source_id).await?;
    assert_eq!(events.last().map(String::as_str), Some("succeeded"));
    assert!(events.contains(&"started".to_owned()));
    let last = pipeline_store::sources::events(&env.db.pool, source_id)
        .await?
        .pop()
        .unwrap();
    assert_eq!(last.stage.as_deref(), Some("extraction"));
    let detail = last.detail.unwrap();
    assert_eq!(detail["chunks"].as_i64(), Some(c.extractions));
    assert_eq!(detail["embedded"].as_i64(), Some(c.extractions));
    assert_eq!(detail["entities_status"], "complete");
    assert!(detail["entities"].as_i64().unwrap() >= 3);
    let job = pipeline_store::jobs::get(&env.db.pool, job_id).await?;
    assert_eq!(job.status, "completed");
    Ok(())
}

#[tokio::test]
async fn redelivery_creates_no_duplicates_and_embeds_nothing_again() -> anyhow::Result<()> {
    let env = Env::new(|s| s.extraction.chunk_max_chars = 300).await?;
    let handler = env.handler()?;
    let (source_id, job_id) = env
        .scraped_source("https://blog.example/again", &article_page(), "text/html")
        .await?;
    env.enqueue(source_id, job_id).await?;
    env.drain(&handler, DRAIN).await?;
    let first = env.counts(source_id).await?;
    let ids_before: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM extractions WHERE source_id = $1 ORDER BY chunk_index")
            .bind(source_id)
            .fetch_all(&env.db.pool)
            .await?;

    // The same message again (a redelivery after a lost ack, or a manual retry).
    assert!(env.enqueue(source_id, job_id).await?);
    env.drain(&handler, DRAIN).await?;
    let second = env.counts(source_id).await?;
    assert_eq!(first, second);
    let ids_after: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM extractions WHERE source_id = $1 ORDER BY chunk_index")
            .bind(source_id)
            .fetch_all(&env.db.pool)
            .await?;
    assert_eq!(ids_before, ids_after, "the same rows, updated in place");
    let last = pipeline_store::sources::events(&env.db.pool, source_id)
        .await?
        .pop()
        .unwrap();
    assert_eq!(last.kind, "succeeded");
    assert_eq!(last.detail.unwrap()["embedded"], 0, "nothing was missing");
    let succeeded = pipeline_store::sources::events(&env.db.pool, source_id)
        .await?
        .iter()
        .filter(|e| e.kind == "succeeded" && e.stage.as_deref() == Some("extraction"))
        .count();
    assert_eq!(succeeded, 2, "each delivery's outcome is in the trail");
    Ok(())
}

#[tokio::test]
async fn changed_chunking_removes_the_chunks_beyond_the_new_end() -> anyhow::Result<()> {
    let small = Env::new(|s| {
        s.extraction.chunk_max_chars = 200;
        s.extraction.chunk_overlap_chars = 0;
    })
    .await?;
    let (source_id, job_id) = small
        .scraped_source("https://blog.example/rechunk", &article_page(), "text/html")
        .await?;
    small.enqueue(source_id, job_id).await?;
    small.drain(&small.handler()?, DRAIN).await?;
    let before = small.counts(source_id).await?;

    // Same database and queue, larger chunks: fewer rows, all embedded, none left over.
    let mut settings = (*small.services.settings).clone();
    settings.extraction.chunk_max_chars = 2000;
    let services = pipeline_ops::Services::with_pools(
        settings,
        small.db.pool.clone(),
        small.redis.pool.clone(),
    )?;
    let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
    let large = extraction_worker::handler(&services, batcher);
    small.enqueue(source_id, job_id).await?;
    small.drain(&large, DRAIN).await?;
    let after = small.counts(source_id).await?;
    assert!(
        after.extractions < before.extractions,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.embedded, after.extractions);
    assert_eq!(after.embeddings, after.extractions);
    let max: i32 =
        sqlx::query_scalar("SELECT max(chunk_index) FROM extractions WHERE source_id = $1")
            .bind(source_id)
            .fetch_one(&small.db.pool)
            .await?;
    assert_eq!(i64::from(max) + 1, after.extractions);
    Ok(())
}

#[tokio::test]
async fn a_broken_json_ld_block_is_a_visible_partial_entity_failure() -> anyhow::Result<()> {
    let env = Env::new(|_| {}).await?;
    let handler = env.handler()?;
    let (source_id, job_id) = env
        .scraped_source(
            "https://shop.example/widget",
            BROKEN_JSONLD_PAGE,
            "text/html",
        )
        .await?;
    env.enqueue(source_id, job_id).await?;
    env.drain(&handler, DRAIN).await?;

    assert_eq!(
        env.status(source_id).await?,
        "extracted",
        "the rest is kept"
    );
    let statuses: Vec<(Option<String>, bool)> = sqlx::query_as(
        "SELECT entities_status, entities_extracted FROM extractions WHERE source_id = $1",
    )
    .bind(source_id)
    .fetch_all(&env.db.pool)
    .await?;
    assert!(!statuses.is_empty());
    assert!(
        statuses
            .iter()
            .all(|(s, e)| s.as_deref() == Some("partial") && *e),
        "{statuses:?}"
    );
    // Countable: how many extractions of the project have a partial entity result.
    let partial: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT source_id) FROM extractions WHERE entities_status = 'partial'",
    )
    .fetch_one(&env.db.pool)
    .await?;
    assert_eq!(partial, 1);
    // The good block's entities are stored; the broken one is named in the trail.
    let names: Vec<String> = sqlx::query_scalar("SELECT normalized FROM entities ORDER BY 1")
        .fetch_all(&env.db.pool)
        .await?;
    assert!(names.contains(&"Widget 3000".to_owned()), "{names:?}");
    assert!(
        names.contains(&"sales@acme.example".to_owned()),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("Broken")), "{names:?}");
    let detail = pipeline_store::sources::events(&env.db.pool, source_id)
        .await?
        .pop()
        .unwrap()
        .detail
        .unwrap();
    assert_eq!(detail["entities_status"], "partial");
    assert!(
        detail["entity_failures"][0]
            .as_str()
            .unwrap()
            .contains("json-ld block 2"),
        "{detail}"
    );
    Ok(())
}

#[tokio::test]
async fn refused_content_is_dead_lettered_at_once_and_plain_text_passes() -> anyhow::Result<()> {
    let env = Env::new(|_| {}).await?;
    let handler = env.handler()?;
    let (pdf, job_a) = env
        .scraped_source(
            "https://files.example/a.pdf",
            "%PDF-1.4 binary",
            "application/pdf",
        )
        .await?;
    let (empty, job_b) = env
        .scraped_source(
            "https://files.example/empty",
            "<html><body><script>x()</script></body></html>",
            "text/html",
        )
        .await?;
    let (text, job_c) = env
        .scraped_source(
            "https://files.example/notes.txt",
            "Plain notes.\n\nWrite to ops@files.example when the disk fills up.",
            "text/plain",
        )
        .await?;
    for (s, j) in [(pdf, job_a), (empty, job_b), (text, job_c)] {
        env.enqueue(s, j).await?;
    }
    env.drain(&handler, DRAIN).await?;

    let dlq = env.services.dlq(pipeline_ops::Family::Extraction);
    for (source, why) in [
        (pdf, "unsupported content type"),
        (empty, "no text content"),
    ] {
        assert_eq!(env.status(source).await?, "dead_lettered");
        let item = dlq.get(&source.to_string()).await?.expect("in the DLQ");
        assert_eq!(item.attempts, 1, "permanent: no retries");
        assert_eq!(item.error_kind, work_queue::ErrorKind::Permanent);
        assert!(item.error.contains(why), "{}", item.error);
        assert_eq!(item.source_id, Some(source));
        let row = pipeline_store::sources::get(&env.db.pool, source).await?;
        assert_eq!(row.last_error_kind.as_deref(), Some("permanent"));
        assert_eq!(env.counts(source).await?.extractions, 0);
    }
    assert_eq!(env.status(text).await?, "extracted");
    let content: String = sqlx::query_scalar("SELECT content FROM sources WHERE id = $1")
        .bind(text)
        .fetch_one(&env.db.pool)
        .await?;
    assert_eq!(
        content,
        "Plain notes.\n\nWrite to ops@files.example when the disk fills up."
    );
    assert_eq!(env.counts(text).await?.links, 1);
    Ok(())
}

/// A message for a source that does not exist fails permanently at its first attempt, as
/// in the scrape worker. Before, recording `started` for it failed on the trail's foreign
/// key, a database error: retried, dead-lettered as transient, redriven until parked.
#[tokio::test]
async fn a_message_for_a_missing_source_is_a_permanent_failure_at_once() -> anyhow::Result<()> {
    let env = Env::new(|_| {}).await?;
    let handler = env.handler()?;
    let (_, job) = env
        .scraped_source("https://files.example/real", "<p>real</p>", "text/html")
        .await?;
    let ghost = uuid::Uuid::now_v7();
    env.enqueue(ghost, job).await?;
    assert_eq!(
        env.drain(&handler, DRAIN).await?,
        1,
        "one delivery, no retry"
    );
    let item = env
        .services
        .dlq(pipeline_ops::Family::Extraction)
        .get(&ghost.to_string())
        .await?
        .expect("in the DLQ");
    assert_eq!(item.attempts, 1, "permanent: no retries");
    assert_eq!(item.error_kind, work_queue::ErrorKind::Permanent);
    assert!(item.error.contains("not found"), "{}", item.error);
    Ok(())
}
