//! The schema stage end to end: pages served on 127.0.0.1 are submitted, fetched by the
//! scrape worker, extracted by the extraction worker and answered by the facts worker (all
//! three runners in process; real Postgres, Redis and HTTP).
//!
//! - A project made from the `product` template (markup backend) gets the product's record
//!   from its JSON-LD, with the offer as an entity record, every value quoted and grounded.
//! - A project without a schema never enters the stage: its page ends `extracted` with no
//!   `facts_pending` step and no values.
//! - An `llm` project asks the loopback model server (it stands in for an OpenAI-compatible
//!   chat server): a value whose quote is in the page is a fact; one whose quote is invented
//!   is stored apart as ungrounded and never shows in the records view. A job capped at one
//!   token asks once, stops, and says so (`capped`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use chat_client::loopback::{ModelServer, Reply, SeenRequest};
use integration_tests::{TestDb, TestRedis, settings_for};
use pipeline_ops::schemas::{self, SchemaSource};
use pipeline_ops::submit::{SubmitRequest, submit};
use pipeline_ops::{Actor, Services};
use pipeline_store::facts::{self, Condition, RecordFilter};
use pipeline_store::sources;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PRODUCT: &str = r#"<!doctype html><html lang="en"><head><title>Widget Pro</title>
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "Product", "name": "Widget Pro",
 "brand": {"@type": "Brand", "name": "Acme"}, "sku": "WP-100",
 "description": "A widget for professionals.",
 "offers": {"@type": "Offer", "price": "19.99", "priceCurrency": "USD",
            "availability": "https://schema.org/InStock"}}
</script></head><body><main><h1>Widget Pro</h1>
<p>A widget for professionals. It turns, it clicks, and it lasts for years in the workshop
where it is used every day by people who need a widget that does not break.</p>
<p>Buy it today for 19.99 USD from the Acme store, with free shipping on every order.</p>
</main></body></html>"#;

const RIVER: &str = r#"<!doctype html><html lang="en"><head><title>The Danube</title></head>
<body><main><h1>The Danube</h1>
<p>The Danube flows through ten countries on its way from the Black Forest to the Black Sea.
It is 2850 km long, the second longest river in Europe after the Volga.</p>
<p>Ships carry grain, steel and tourists on it, and its delta is a reserve for birds.</p>
</main></body></html>"#;

const LLM_SCHEMA: &str = r#"
name: river
backend: llm
fields:
  name: {type: text, required: true, description: The river's name}
  length_km: {type: integer, description: Its length in kilometres}
  countries: {type: integer, description: How many countries it flows through}
"#;

async fn serve(pages: Vec<(&'static str, &'static str)>, stop: CancellationToken) -> String {
    let mut app = Router::new();
    for (path, body) in pages {
        app = app.route(
            path,
            get(move || async move {
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        // Serving errors only end the fixture; the test fails on its own assertions.
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    base
}

/// The model: names the river with a true quote, gives its length with a quote the page
/// does not hold, and the countries with a true one.
fn answer(_: &SeenRequest) -> Reply {
    Reply::Json(json!({
        "river": {
            "name": {"value": "Danube", "quote": "The Danube flows through ten countries", "confidence": 0.9},
            "length_km": {"value": 2850, "quote": "It measures 2850 kilometres", "confidence": 0.4},
            "countries": {"value": 10, "quote": "flows through ten countries", "confidence": null}
        }
    }))
}

async fn submit_to(
    services: &Services,
    project_id: Uuid,
    urls: Vec<String>,
    cap: Option<i64>,
) -> anyhow::Result<pipeline_ops::submit::SubmitOutcome> {
    Ok(submit(
        services,
        &SubmitRequest {
            urls,
            project_id: Some(project_id),
            project_name: None,
            source_group: None,
            model_token_cap: cap,
            priority: Default::default(),
            render: None,
        },
        Actor::Cli,
    )
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_answer_their_projects_schemas_with_grounded_quotes() -> anyhow::Result<()> {
    pipeline_core::install_crypto_provider();
    let stop = CancellationToken::new();
    let base = serve(vec![("/widget", PRODUCT), ("/danube", RIVER)], stop.clone()).await;
    let _stop_server = stop.drop_guard();
    let asked = Arc::new(AtomicUsize::new(0));
    let model = {
        let asked = asked.clone();
        ModelServer::start_fn(move |req: &SeenRequest| {
            asked.fetch_add(1, Ordering::SeqCst);
            answer(req)
        })
        .await
    };

    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let mut s = settings_for(&db, &redis);
    s.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
    s.scrape.per_host_min_delay_ms = 0;
    s.scrape.per_host_max_concurrency = 0;
    s.scrape.respect_robots_txt = false;
    s.queue.max_attempts = 1;
    s.embedding.batch_window_ms = 5;
    s.facts.llm.url = model.url().to_string();
    s.facts.llm.model = "loopback".into();
    // Small chunks and requests, so the river page takes several requests and a capped
    // job stops between them.
    s.extraction.chunk_max_chars = 120;
    s.extraction.chunk_overlap_chars = 20;
    s.facts.llm.max_input_tokens = 40;
    let services = Services::with_pools(s, db.pool.clone(), redis.pool.clone())?;

    let (shop, product_schema) =
        schemas::create_project(&db.pool, "shop", Some(SchemaSource::Template("product"))).await?;
    assert_eq!(product_schema.as_ref().map(|s| s.version), Some(1));
    let (plain, none) = schemas::create_project(&db.pool, "plain", None).await?;
    assert!(none.is_none());
    let (rivers, _) =
        schemas::create_project(&db.pool, "rivers", Some(SchemaSource::Text(LLM_SCHEMA))).await?;

    let widget = format!("{base}/widget");
    let danube = format!("{base}/danube");
    let shop_job = submit_to(&services, shop.id, vec![widget.clone()], None).await?;
    let plain_job = submit_to(&services, plain.id, vec![widget.clone()], None).await?;
    let river_job = submit_to(&services, rivers.id, vec![danube.clone()], None).await?;
    let ids = [
        shop_job.sources[0].source_id,
        plain_job.sources[0].source_id,
        river_job.sources[0].source_id,
    ];

    let cancel = CancellationToken::new();
    let scrape = tokio::spawn(scrape_worker::run(services.clone(), cancel.clone()));
    let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
    let extraction = {
        let (services, cancel) = (services.clone(), cancel.clone());
        tokio::spawn(async move { extraction_worker::run(&services, batcher, cancel).await })
    };
    let chat = facts_worker::chat_client_from_settings(&services.settings)?;
    let facts_run = {
        let (services, cancel) = (services.clone(), cancel.clone());
        tokio::spawn(async move { facts_worker::run(&services, chat, cancel).await })
    };

    let wait_for = |ids: Vec<Uuid>| {
        let db = db.pool.clone();
        async move {
            let started = Instant::now();
            loop {
                let mut done = 0;
                for id in &ids {
                    let row = sources::get(&db, *id).await?;
                    if matches!(row.status.as_str(), "extracted" | "dead_lettered") {
                        done += 1;
                    }
                }
                if done == ids.len() {
                    return anyhow::Ok(());
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(90),
                    "sources did not settle in 90 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_for(ids.to_vec()).await?;

    // Markup: the product and its offer, every value grounded with its quote.
    let shop_row = sources::get(&db.pool, ids[0]).await?;
    assert_eq!(
        shop_row.status.as_str(),
        "extracted",
        "{:?}",
        shop_row.last_error
    );
    let values = facts::source_facts(&db.pool, ids[0], 1000).await?;
    let value_of = |entity: &str, field: &str| {
        values
            .iter()
            .find(|v| v.entity == entity && v.field == field)
            .map(|v| (v.value.clone(), v.quote.clone(), v.grounded))
    };
    let (name, quote, grounded) = value_of("product", "name").expect("the product's name");
    assert_eq!(name, json!("Widget Pro"));
    assert!(grounded && quote.contains("Widget Pro"), "{quote:?}");
    assert_eq!(
        value_of("product", "brand").map(|v| v.0),
        Some(json!("Acme"))
    );
    assert_eq!(value_of("offers", "price").map(|v| v.0), Some(json!(19.99)));
    assert_eq!(
        value_of("offers", "availability").map(|v| v.0),
        Some(json!("in_stock"))
    );
    assert!(
        values.iter().all(|v| v.grounded),
        "markup values are declared by the page"
    );
    let trail: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, stage FROM job_events WHERE source_id = $1 ORDER BY id")
            .bind(ids[0])
            .fetch_all(&db.pool)
            .await?;
    assert!(
        trail.contains(&("succeeded".into(), "facts".into())),
        "the stage is in the trail: {trail:?}"
    );
    // The records view consolidates; a filter on a field finds the product.
    let found = facts::records(
        &db.pool,
        &RecordFilter {
            project_id: shop.id,
            entity: Some("product".into()),
            conditions: vec![Condition::parse("brand=acme").unwrap()],
            limit: 10,
            ..RecordFilter::default()
        },
    )
    .await?;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].fields["name"], json!("Widget Pro"));
    let none_found = facts::records(
        &db.pool,
        &RecordFilter {
            project_id: shop.id,
            conditions: vec![Condition::parse("rating>4").unwrap()],
            limit: 10,
            ..RecordFilter::default()
        },
    )
    .await?;
    assert!(none_found.is_empty(), "{none_found:?}");

    // No schema: no stage, no values.
    let plain_row = sources::get(&db.pool, ids[1]).await?;
    assert_eq!(plain_row.status.as_str(), "extracted");
    assert!(facts::source_facts(&db.pool, ids[1], 10).await?.is_empty());
    let plain_stages: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT stage FROM job_events WHERE source_id = $1")
            .bind(ids[1])
            .fetch_all(&db.pool)
            .await?;
    assert!(
        !plain_stages.contains(&"facts".to_owned()),
        "{plain_stages:?}"
    );

    // llm: the invented quote is kept apart, never a fact.
    let river_row = sources::get(&db.pool, ids[2]).await?;
    assert_eq!(
        river_row.status.as_str(),
        "extracted",
        "{:?}",
        river_row.last_error
    );
    let river = facts::source_facts(&db.pool, ids[2], 1000).await?;
    let length = river
        .iter()
        .find(|v| v.field == "length_km")
        .expect("length");
    assert!(!length.grounded, "the length's quote is not in the page");
    let name = river.iter().find(|v| v.field == "name").expect("name");
    assert!(name.grounded && name.origin == "model" && name.chunk_index.is_some());
    assert_eq!(name.confidence, Some(0.9));
    let records = facts::records(
        &db.pool,
        &RecordFilter {
            project_id: rivers.id,
            limit: 10,
            ..RecordFilter::default()
        },
    )
    .await?;
    assert_eq!(records.len(), 1, "one record for the page: {records:?}");
    assert_eq!(records[0].fields["name"], json!("Danube"));
    assert_eq!(records[0].fields["countries"], json!(10));
    assert!(
        records[0].fields.get("length_km").is_none(),
        "an ungrounded value is not a fact: {:?}",
        records[0].fields
    );
    let (runs_requests, ungrounded): (i32, i32) =
        sqlx::query_as("SELECT requests, ungrounded FROM fact_runs WHERE source_id = $1")
            .bind(ids[2])
            .fetch_one(&db.pool)
            .await?;
    assert!(
        runs_requests >= 2,
        "the page took several requests: {runs_requests}"
    );
    assert!(ungrounded >= 1);
    let spent = facts::job_facts(&db.pool, river_job.job_id).await?;
    assert!(spent.model_tokens_used > 0 && spent.model_token_cap.is_none());

    // A job capped at one token: the first request spends past the cap, the rest is not
    // asked, and the page ends `capped` with what it got.
    let before = asked.load(Ordering::SeqCst);
    sqlx::query("UPDATE sources SET status = 'extracted' WHERE id = $1")
        .bind(ids[2])
        .execute(&db.pool)
        .await?;
    let capped_job = {
        // The same URL in a new project, so the page is fetched and extracted again.
        let (rivers2, _) = schemas::create_project(
            &db.pool,
            "rivers-capped",
            Some(SchemaSource::Text(LLM_SCHEMA)),
        )
        .await?;
        submit_to(&services, rivers2.id, vec![danube.clone()], Some(1)).await?
    };
    wait_for(vec![capped_job.sources[0].source_id]).await?;
    assert_eq!(
        asked.load(Ordering::SeqCst) - before,
        1,
        "one request, then the cap"
    );
    let (outcome,): (String,) =
        sqlx::query_as("SELECT outcome FROM fact_runs WHERE source_id = $1")
            .bind(capped_job.sources[0].source_id)
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(outcome, "capped");
    let job = facts::job_facts(&db.pool, capped_job.job_id).await?;
    assert_eq!(job.capped_pages, 1);
    assert_eq!(job.model_token_cap, Some(1));
    assert!(job.model_tokens_used > 1);

    cancel.cancel();
    let _ = scrape.await;
    let _ = extraction.await;
    let _ = facts_run.await;
    model.shutdown().await;
    Ok(())
}

/// A schema change makes a new version; putting the same schema again does not; an invalid
/// schema names every error's path and stores nothing.
#[tokio::test]
async fn schemas_are_versioned_and_validated_on_write() -> anyhow::Result<()> {
    let db = TestDb::migrated().await?;
    let (p, first) = schemas::create_project(
        &db.pool,
        "versions",
        Some(SchemaSource::Template("article")),
    )
    .await?;
    assert_eq!(first.unwrap().version, 1);
    let (again, new) =
        schemas::set_schema(&db.pool, p.id, SchemaSource::Template("article")).await?;
    assert_eq!((again.version, new), (1, false));
    let (changed, new) =
        schemas::set_schema(&db.pool, p.id, SchemaSource::Text(LLM_SCHEMA)).await?;
    assert_eq!((changed.version, new), (2, true));
    assert_eq!(changed.backend, "llm");

    let bad = "name: x\nfields:\n  price: {type: money}\n  kind: {type: enum, values: []}\n";
    let err = schemas::set_schema(&db.pool, p.id, SchemaSource::Text(bad))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("fields.price.type"), "{text}");
    assert!(text.contains("fields.kind.values"), "{text}");
    let current = facts::current_schema(&db.pool, p.id).await?.unwrap();
    assert_eq!(current.version, 2, "an invalid schema stores nothing");
    let err = schemas::create_project(&db.pool, "other", Some(SchemaSource::Template("nope")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("article"), "{err}");
    assert!(
        facts::find_project(&db.pool, "other").await?.is_none(),
        "a refused schema creates no project"
    );
    let err = schemas::create_project(&db.pool, "versions", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    Ok(())
}

/// After a schema change, `rerun` sends the pages whose records an older version made
/// through the stage again (and only those, unless `all`); a recrawl that finds a page
/// unchanged sends it through the stage when its records are not the current version's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_change_reruns_the_pages_an_older_version_answered() -> anyhow::Result<()> {
    pipeline_core::install_crypto_provider();
    let stop = CancellationToken::new();
    let base = serve(vec![("/widget", PRODUCT)], stop.clone()).await;
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
    let (shop, _) =
        schemas::create_project(&db.pool, "shop", Some(SchemaSource::Template("article"))).await?;
    let job = submit_to(&services, shop.id, vec![format!("{base}/widget")], None).await?;
    let id = job.sources[0].source_id;

    let cancel = CancellationToken::new();
    let scrape = tokio::spawn(scrape_worker::run(services.clone(), cancel.clone()));
    let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
    let extraction = {
        let (services, cancel) = (services.clone(), cancel.clone());
        tokio::spawn(async move { extraction_worker::run(&services, batcher, cancel).await })
    };
    let chat = facts_worker::chat_client_from_settings(&services.settings)?;
    let facts_run = {
        let (services, cancel) = (services.clone(), cancel.clone());
        tokio::spawn(async move { facts_worker::run(&services, chat, cancel).await })
    };
    let run_version = || {
        let db = db.pool.clone();
        async move {
            let started = Instant::now();
            loop {
                let row = sources::get(&db, id).await?;
                if row.status.as_str() == "extracted" {
                    let v: Option<i32> = sqlx::query_scalar(
                        "SELECT schema_version FROM fact_runs WHERE source_id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&db)
                    .await?;
                    return anyhow::Ok(v);
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "stuck in {}",
                    row.status
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(run_version().await?, Some(1));

    // Version 2: the page's records are version 1's, so a rerun takes it, once.
    let (v2, _) = schemas::set_schema(&db.pool, shop.id, SchemaSource::Template("product")).await?;
    assert_eq!(v2.version, 2);
    let out = schemas::rerun(&services, shop.id, false, Actor::Cli).await?;
    assert_eq!(out.queued, 1);
    assert_eq!(run_version().await?, Some(2));
    let values = facts::source_facts(&db.pool, id, 100).await?;
    assert!(
        values.iter().all(|v| v.schema_version == 2),
        "a run replaces the page's values: {values:?}"
    );
    assert!(values.iter().any(|v| v.entity == "product"));
    let out = schemas::rerun(&services, shop.id, false, Actor::Cli).await?;
    assert_eq!(
        out.queued, 0,
        "every page is answered by the current version"
    );
    let out = schemas::rerun(&services, shop.id, true, Actor::Cli).await?;
    assert_eq!(out.queued, 1, "--all takes every extracted page");
    assert_eq!(run_version().await?, Some(2));
    cancel.cancel();
    let _ = scrape.await;
    let _ = extraction.await;
    let _ = facts_run.await;

    // An unchanged recrawl: current records stay; a newer schema sends the page on.
    let unchanged = || {
        sources::store_unchanged(
            &db.pool,
            &services.progress,
            id,
            Some(job.job_id),
            Some(1),
            json!({"content": "unchanged"}),
        )
    };
    assert_eq!(
        unchanged().await?,
        pipeline_store::extractions::Finished::Extracted
    );
    schemas::set_schema(&db.pool, shop.id, SchemaSource::Template("company")).await?;
    assert_eq!(
        unchanged().await?,
        pipeline_store::extractions::Finished::FactsPending
    );
    Ok(())
}

/// A run stores only for a page that still waits for the stage (a page submitted again
/// meanwhile is left to its new fetch), and a run capped before anything was asked keeps
/// the page's values.
#[tokio::test]
async fn a_run_moves_only_a_waiting_page_and_a_capped_one_keeps_its_values() -> anyhow::Result<()> {
    let db = TestDb::migrated().await?;
    let progress = pipeline_store::progress::Progress::default();
    let (p, _) =
        schemas::create_project(&db.pool, "runs", Some(SchemaSource::Template("article"))).await?;
    let source: Uuid = sqlx::query_scalar(
        "INSERT INTO sources (id, project_id, uri, status) VALUES ($1, $2, 'https://a.example/', 'facts_pending') RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(p.id)
    .fetch_one(&db.pool)
    .await?;
    let fact = |value: &str| facts::NewFact {
        entity: "article".into(),
        entity_key: None,
        field: "headline".into(),
        value: json!(value),
        list_item: false,
        quote: value.into(),
        origin: "json-ld".into(),
        chunk_index: None,
        confidence: None,
        grounded: true,
    };
    let run = |keep_values: bool| facts::FactRun {
        source_id: source,
        job_id: None,
        attempt: 1,
        schema_version: 1,
        backend: "llm",
        outcome: if keep_values { "capped" } else { "complete" },
        records: 1,
        dropped: 0,
        requests: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        detail: json!({}),
        keep_values,
    };
    assert!(facts::store_run(&db.pool, &progress, &run(false), &[fact("First")]).await?);
    let headline = || async {
        let v: Vec<serde_json::Value> =
            sqlx::query_scalar("SELECT value FROM facts WHERE source_id = $1")
                .bind(source)
                .fetch_all(&db.pool)
                .await?;
        anyhow::Ok(v)
    };
    assert_eq!(headline().await?, vec![json!("First")]);

    // Submitted again: queued for a new fetch. A late run changes nothing.
    sqlx::query("UPDATE sources SET status = 'queued' WHERE id = $1")
        .bind(source)
        .execute(&db.pool)
        .await?;
    assert!(!facts::store_run(&db.pool, &progress, &run(false), &[fact("Stale")]).await?);
    assert_eq!(
        sources::get(&db.pool, source).await?.status.as_str(),
        "queued"
    );
    assert_eq!(headline().await?, vec![json!("First")]);

    // Capped before asking: the values and the run stay; the page moves on.
    sqlx::query("UPDATE sources SET status = 'facts_pending' WHERE id = $1")
        .bind(source)
        .execute(&db.pool)
        .await?;
    assert!(facts::store_run(&db.pool, &progress, &run(true), &[]).await?);
    assert_eq!(headline().await?, vec![json!("First")]);
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM fact_runs WHERE source_id = $1")
        .bind(source)
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(outcome, "complete", "the earlier run stands");
    assert_eq!(
        sources::get(&db.pool, source).await?.status.as_str(),
        "extracted"
    );
    Ok(())
}
