//! PDF documents end to end: a server on 127.0.0.1 serves PDFs; they are submitted, fetched
//! by the scrape worker and read by the extraction worker (both runners in process, real
//! Postgres and Redis). A 3-page PDF ends `extracted` with each page's text in `content`,
//! chunks that carry their page, its Info title and author in the source's columns, and its
//! bytes kept as fetched; one served as `application/octet-stream` under a `.pdf` URL is
//! read the same way. An encrypted PDF and a decompression bomb end `dead_lettered` in the
//! extraction DLQ with a permanent error naming the reason, and a `.pdf` URL whose body is
//! no PDF fails at the fetch.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use integration_tests::{TestDb, TestRedis, settings_for};
use pipeline_ops::Services;
use pipeline_ops::submit::{SubmitRequest, submit};
use pipeline_ops::{Actor, Family};
use pipeline_store::sources;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PAGES: [&str; 3] = [
    "Rivers carry water from the hills to the sea along courses that change every century.",
    "Mountains hold snow through the summer and feed the rivers with it in the dry months.",
    "Forests of oak and beech cover the valleys where the rivers slow down near the coast.",
];
const TITLE: &str = "A Field Report on Landscapes";
const AUTHOR: &str = "Ada Surveyor";

/// A hostile PDF kept in the fuzz corpus.
fn kept(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus-regressions/pdf")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Serves `(path, content type, body)` on 127.0.0.1 until `stop` is cancelled; returns the
/// base URL.
async fn serve(
    files: Vec<(&'static str, &'static str, Vec<u8>)>,
    stop: CancellationToken,
) -> anyhow::Result<String> {
    let mut app = Router::new();
    for (path, content_type, body) in files {
        app = app.route(
            path,
            get(move || {
                let body = body.clone();
                async move { ([(header::CONTENT_TYPE, content_type)], body).into_response() }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        // Serving errors only end the fixture; the test then fails on its own assertions.
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok(base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pdfs_are_read_page_by_page_and_hostile_ones_are_dead_lettered() -> anyhow::Result<()> {
    pipeline_core::install_crypto_provider();
    let report = extract_core::pdf::write_text_pdf(&PAGES, Some(TITLE), Some(AUTHOR));
    let notes = extract_core::pdf::write_text_pdf(
        &["Notes served without a proper type are still a document."],
        Some("Notes"),
        None,
    );
    let stop = CancellationToken::new();
    let base = serve(
        vec![
            ("/report.pdf", "application/pdf", report.clone()),
            ("/files/notes.pdf", "application/octet-stream", notes),
            (
                "/secret.pdf",
                "application/pdf",
                kept("encrypted-user-password.pdf"),
            ),
            (
                "/bomb.pdf",
                "application/pdf",
                kept("flate-bomb-two-layers.pdf"),
            ),
            (
                "/fake.pdf",
                "application/octet-stream",
                b"no PDF here".to_vec(),
            ),
        ],
        stop.clone(),
    )
    .await?;
    let _stop_server = stop.drop_guard();

    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let mut s = settings_for(&db, &redis);
    s.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
    s.scrape.per_host_min_delay_ms = 0;
    s.scrape.per_host_max_concurrency = 0;
    s.scrape.respect_robots_txt = false;
    s.queue.max_attempts = 1;
    s.embedding.batch_window_ms = 5;
    let services = Services::with_pools(s, db.pool.clone(), redis.pool.clone())?;

    let paths = [
        "/report.pdf",
        "/files/notes.pdf",
        "/secret.pdf",
        "/bomb.pdf",
        "/fake.pdf",
    ];
    let out = submit(
        &services,
        &SubmitRequest {
            urls: paths.iter().map(|p| format!("{base}{p}")).collect(),
            project_id: None,
            project_name: None,
            source_group: None,
            model_token_cap: None,
            priority: Default::default(),
            render: None,
        },
        Actor::Cli,
    )
    .await?;
    let ids: HashMap<&str, Uuid> = paths
        .iter()
        .map(|p| {
            let url = format!("{base}{p}");
            let id = out.sources.iter().find(|s| s.url == url).unwrap().source_id;
            (*p, id)
        })
        .collect();

    let cancel = CancellationToken::new();
    let scrape = tokio::spawn(scrape_worker::run(services.clone(), cancel.clone()));
    let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
    let extraction = {
        let (services, cancel) = (services.clone(), cancel.clone());
        tokio::spawn(async move { extraction_worker::run(&services, batcher, cancel).await })
    };
    let started = Instant::now();
    let mut settled: HashMap<&str, sources::SourceRow> = HashMap::new();
    while settled.len() < paths.len() && started.elapsed() < Duration::from_secs(90) {
        for path in paths {
            if settled.contains_key(path) {
                continue;
            }
            let row = sources::get(&services.db, ids[path]).await?;
            if matches!(row.status.as_str(), "extracted" | "dead_lettered") {
                settled.insert(path, row);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    let _ = scrape.await;
    let _ = extraction.await;
    for path in paths {
        assert!(settled.contains_key(path), "{path} did not settle in 90 s");
    }

    // The 3-page report: text per page, chunks citing pages 1..3, the Info title and author.
    let row = &settled["/report.pdf"];
    assert_eq!(row.status.as_str(), "extracted", "{:?}", row.last_error);
    assert_eq!(row.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(row.title.as_deref(), Some(TITLE));
    let (content, raw_content, raw_bytes, byline): (
        Option<String>,
        Option<String>,
        Option<Vec<u8>>,
        Option<String>,
    ) = sqlx::query_as("SELECT content, raw_content, raw_bytes, byline FROM sources WHERE id = $1")
        .bind(ids["/report.pdf"])
        .fetch_one(&db.pool)
        .await?;
    let content = content.unwrap_or_default();
    for page in PAGES {
        assert!(content.contains(page), "{page:?} not in {content:?}");
    }
    assert_eq!(
        raw_bytes.as_deref(),
        Some(report.as_slice()),
        "bytes kept as fetched"
    );
    assert_eq!(raw_content.as_deref(), Some(""));
    assert_eq!(byline.as_deref(), Some(AUTHOR));
    let chunks: Vec<(Uuid, Option<i32>, String)> = sqlx::query_as(
        "SELECT id, (data ->> 'page')::int, data ->> 'text' FROM extractions
          WHERE source_id = $1 ORDER BY chunk_index",
    )
    .bind(ids["/report.pdf"])
    .fetch_all(&db.pool)
    .await?;
    let cited: BTreeSet<i32> = chunks.iter().filter_map(|c| c.1).collect();
    assert_eq!(cited, BTreeSet::from([1, 2, 3]), "{chunks:?}");
    for (_, page, text) in &chunks {
        let page = page.expect("every chunk of a PDF has its page");
        assert!(
            PAGES[page as usize - 1].contains(text.trim()),
            "chunk {text:?} is not on page {page}"
        );
    }
    // Search hits read the page from the chunk.
    let ids_of_chunks: Vec<Uuid> = chunks.iter().map(|c| c.0).collect();
    let hits = pipeline_store::search::chunks(&db.pool, &ids_of_chunks).await?;
    let hit_pages: BTreeSet<i32> = hits.iter().filter_map(|h| h.page).collect();
    assert_eq!(hit_pages, BTreeSet::from([1, 2, 3]));

    // Served as application/octet-stream under a .pdf URL, with a %PDF- header: a PDF.
    let row = &settled["/files/notes.pdf"];
    assert_eq!(row.status.as_str(), "extracted", "{:?}", row.last_error);
    assert_eq!(row.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(row.title.as_deref(), Some("Notes"));

    // Hostile PDFs: permanent failures in the extraction DLQ, their reason in the error.
    let dlq = services.dlq(Family::Extraction).list(100, None).await?;
    for (path, reason) in [
        ("/secret.pdf", "encrypted PDF"),
        ("/bomb.pdf", "a PDF stream decodes to more than"),
    ] {
        let row = &settled[path];
        assert_eq!(row.status.as_str(), "dead_lettered", "{path}");
        assert_eq!(row.last_error_kind.as_deref(), Some("permanent"), "{path}");
        let error = row.last_error.as_deref().unwrap_or_default();
        assert!(error.contains(reason), "{path}: {error}");
        let item = dlq
            .items
            .iter()
            .find_map(|i| match i {
                dlq_core::ListedItem::Ok(item) if item.source_id == Some(ids[path]) => Some(item),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{path} is not in the extraction DLQ"));
        assert!(item.error.contains(reason), "{path}: {}", item.error);
        assert_eq!(item.error_kind, dlq_core::ErrorKind::Permanent, "{path}");
    }
    assert!(
        settled["/bomb.pdf"]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("too expensive to extract"),
    );

    // A .pdf URL served as octet-stream whose body is no PDF is refused at the fetch.
    let row = &settled["/fake.pdf"];
    assert_eq!(row.status.as_str(), "dead_lettered");
    assert_eq!(row.last_error_kind.as_deref(), Some("permanent"));
    let error = row.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("without a %PDF- header"), "{error}");
    Ok(())
}
