//! The console's Records section on a source's page, over plain HTTP against a real API,
//! Postgres and Redis: the page's values by record and field with their quotes (escaped),
//! origin and chunk; ungrounded values in a list of their own; the project's schema.

use integration_tests::api::ApiEnv;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use uuid::Uuid;

use crate::console_http::{client, session};

async fn insert_fact(
    env: &ApiEnv,
    source: Uuid,
    (field, value, quote, chunk): (&str, serde_json::Value, &str, i32),
    grounded: bool,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO facts (project_id, source_id, schema_version, entity, entity_key, field,
                            value, list_item, quote, origin, chunk_index, confidence, grounded)
         SELECT project_id, id, 1, 'product', 'kettle <k1>', $2, $3, false, $4, 'llm', $5,
                0.75, $6
           FROM sources WHERE id = $1",
    )
    .bind(source)
    .bind(field)
    .bind(value)
    .bind(quote)
    .bind(chunk)
    .bind(grounded)
    .execute(&env.services.db)
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_source_shows_its_records_with_escaped_quotes_and_ungrounded_values_apart()
-> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (_, ids) = env.submit(&["https://shop.example/kettle"]).await?;
    let source = ids[0];
    // The default project gets a schema, as `projects schema default --template product`.
    let project: Uuid = sqlx::query_scalar("SELECT project_id FROM sources WHERE id = $1")
        .bind(source)
        .fetch_one(&env.services.db)
        .await?;
    pipeline_ops::schemas::set_schema(
        &env.services.db,
        project,
        pipeline_ops::schemas::SchemaSource::Template("product"),
    )
    .await?;
    insert_fact(
        &env,
        source,
        (
            "name",
            "Kettle <b>Pro</b>".into(),
            "<script>alert(1)</script> Kettle",
            0,
        ),
        true,
    )
    .await?;
    insert_fact(
        &env,
        source,
        ("price", 9.into(), "only 9 € & free \"shipping\"", 2),
        true,
    )
    .await?;
    insert_fact(
        &env,
        source,
        ("brand", "Acme".into(), "made by Acme?", 1),
        false,
    )
    .await?;

    let (cookie, _) = session(&env).await?;
    let resp = client()
        .get(format!("{}/ui/sources/{source}", env.base))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await?;
    let at = html
        .find("<h2 id=\"records\">Records</h2>")
        .expect("a Records section");
    let records = &html[at..];
    assert!(
        records.contains("product version 1 (markup backend, template product)"),
        "{records}"
    );
    // Quotes and values escaped once; nothing of the page's markup runs.
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(
        records.contains("<q>&lt;script&gt;alert(1)&lt;/script&gt; Kettle</q>"),
        "{records}"
    );
    assert!(
        records.contains("Kettle &lt;b&gt;Pro&lt;/b&gt;"),
        "{records}"
    );
    assert!(
        records.contains("<q>only 9 € &amp; free &quot;shipping&quot;</q>"),
        "{records}"
    );
    assert!(
        records.contains("<code>kettle &lt;k1&gt;</code>"),
        "{records}"
    );
    assert!(records.contains("<td>#2</td>"), "the chunk: {records}");
    assert!(
        records.contains("llm <small>(0.75)</small>"),
        "the origin: {records}"
    );
    // The ungrounded value only in its own, labelled list.
    let (facts, ungrounded) = records
        .split_once("<h3 id=\"ungrounded\">Ungrounded values")
        .expect("an ungrounded list");
    assert!(!facts.contains("Acme"), "{facts}");
    assert!(ungrounded.contains("not facts"), "{ungrounded}");
    assert!(ungrounded.contains("<q>made by Acme?</q>"), "{ungrounded}");

    // The job page names the project's schema.
    let job = sqlx::query_scalar::<_, Uuid>("SELECT created_by_job_id FROM sources WHERE id = $1")
        .bind(source)
        .fetch_one(&env.services.db)
        .await?;
    let html = client()
        .get(format!("{}/ui/jobs/{job}", env.base))
        .header(COOKIE, &cookie)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        html.contains("product version 1 (markup backend)"),
        "{html}"
    );
    Ok(())
}
