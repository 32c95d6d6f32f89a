//! The schema stage over the real HTTP API: projects created from a template or a schema
//! (an invalid one answered 422 with every problem's path), versions that change only when
//! the schema does, removal, the templates, records filtered by `where` and paged by cursor
//! (values inserted with SQL: the worker has its own tests), one record's quotes, a page's
//! values, a job's `facts` totals and its token cap, and `where` on search.

use integration_tests::api::{ApiEnv, json_of};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

async fn send(env: &ApiEnv, method: Method, path: &str, body: Value) -> (u16, Value) {
    json_of(
        env.req(method, path)
            .json(&body)
            .send()
            .await
            .expect("request"),
    )
    .await
    .expect("answer")
}

async fn get(env: &ApiEnv, path: &str) -> (u16, Value) {
    env.get(path).await.expect("request")
}

/// Submits `urls` to `project` over the API; returns the job and source ids.
async fn scrape(env: &ApiEnv, project: &str, urls: &[&str], cap: Option<i64>) -> (Uuid, Vec<Uuid>) {
    let mut body = json!({"urls": urls, "project": project});
    if let Some(cap) = cap {
        body["model_token_cap"] = json!(cap);
    }
    let (status, body) = send(env, Method::POST, "/api/v1/scrape", body).await;
    assert_eq!(status, 202, "{body}");
    let job = body["job_id"].as_str().expect("job").parse().expect("uuid");
    let sources = body["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| s["source_id"].as_str().expect("id").parse().expect("uuid"))
        .collect();
    (job, sources)
}

/// One stored value, as the worker writes it.
#[allow(clippy::too_many_arguments)]
async fn fact(
    env: &ApiEnv,
    project: Uuid,
    source: Uuid,
    job: Uuid,
    entity: &str,
    key: Option<&str>,
    field: &str,
    value: Value,
    quote: &str,
    grounded: bool,
) {
    sqlx::query(
        "INSERT INTO facts (project_id, source_id, job_id, schema_version, entity, entity_key,
                            field, value, list_item, quote, origin, grounded)
         VALUES ($1, $2, $3, 1, $4, $5, $6, $7, false, $8, 'json-ld', $9)",
    )
    .bind(project)
    .bind(source)
    .bind(job)
    .bind(entity)
    .bind(key)
    .bind(field)
    .bind(value)
    .bind(quote)
    .bind(grounded)
    .execute(&env.services.db)
    .await
    .expect("insert fact");
}

#[tokio::test]
async fn projects_get_schemas_from_templates_or_text_with_versions() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;

    // From a template.
    let (status, body) = send(
        &env,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "shop", "template": "product"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["project"]["name"], "shop");
    assert_eq!(body["project"]["schema_version"], 1);
    assert_eq!(body["schema"]["version"], 1);
    assert_eq!(body["schema"]["template"], "product");
    assert_eq!(body["schema"]["schema"]["name"], "product");

    // The name is taken.
    let (status, body) = send(
        &env,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "shop"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    // An unknown template names the choices; template and schema together are refused.
    let (status, body) = send(
        &env,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "x", "template": "nope"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("product"),
        "{body}"
    );
    let (status, _) = send(
        &env,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "x", "template": "product", "schema": "name: x"}),
    )
    .await;
    assert_eq!(status, 422);

    // An invalid schema: every problem with its path, and nothing created.
    let (status, body) = send(
        &env,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "bad", "schema": {"name": "Bad Name", "fields": {"price": {"type": "money"}}}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("the schema is invalid: "),
        "{body}"
    );
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"fields.price.type"), "{body}");
    assert!(paths.contains(&"name"), "{body}");
    assert!(body["errors"].as_array().unwrap().len() >= 2);
    let (status, _) = get(&env, "/api/v1/projects/bad/schema").await;
    assert_eq!(status, 404);

    // From YAML text, by name and by id.
    let yaml = "name: note\nfields:\n  title: {type: text, required: true}\n";
    let (status, body) = send(
        &env,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "notes", "schema": yaml}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["project"]["id"].as_str().unwrap().to_owned();
    let (status, body) = get(&env, &format!("/api/v1/projects/{id}/schema")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["source_text"], yaml);
    assert_eq!(body["backend"], "markup");

    // The same schema again keeps its version; a change makes version 2.
    let (status, body) = send(
        &env,
        Method::PUT,
        "/api/v1/projects/notes/schema",
        json!({"schema": yaml}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["version"].clone(), body["created"].clone()),
        (json!(1), json!(false))
    );
    // A JSON document (sent as text here: the fields' order is the client's).
    let resp = env
        .req(Method::PUT, "/api/v1/projects/notes/schema")
        .header("Content-Type", "application/json")
        .body(r#"{"schema": {"name": "note", "fields": {"title": {"type": "text"}, "pages": "integer"}}}"#)
        .send()
        .await?;
    let (status, body) = json_of(resp).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["version"].clone(), body["created"].clone()),
        (json!(2), json!(true))
    );
    // The document's field order is kept.
    let text = body["source_text"].as_str().unwrap();
    assert!(text.find("title") < text.find("pages"), "{text}");
    let (status, body) = send(
        &env,
        Method::PUT,
        "/api/v1/projects/notes/schema",
        json!({}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = send(
        &env,
        Method::PUT,
        "/api/v1/projects/notes/schema",
        json!({"schema": "name: note\nfields: {title: {type: nope}}\n"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["path"], "fields.title.type", "{body}");
    let (status, _) = send(
        &env,
        Method::PUT,
        "/api/v1/projects/nobody/schema",
        json!({"template": "article"}),
    )
    .await;
    assert_eq!(status, 404);

    // Versions, newest first.
    let (status, body) = get(&env, "/api/v1/projects/notes/schema/versions").await;
    assert_eq!(status, 200, "{body}");
    let versions: Vec<i64> = body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![2, 1]);

    // Removal: no current schema, the versions stay.
    let resp = env
        .req(Method::DELETE, "/api/v1/projects/notes/schema")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 204);
    let (status, _) = get(&env, "/api/v1/projects/notes/schema").await;
    assert_eq!(status, 404);
    let (_, body) = get(&env, "/api/v1/projects/notes/schema/versions").await;
    assert_eq!(body["versions"].as_array().unwrap().len(), 2);
    // A second removal finds no schema to remove, as GET finds none.
    let resp = env
        .req(Method::DELETE, "/api/v1/projects/notes/schema")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 404);
    let resp = env
        .req(Method::DELETE, "/api/v1/projects/nobody/schema")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 404);
    Ok(())
}

#[tokio::test]
async fn templates_are_listed_and_shown() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (status, body) = get(&env, "/api/v1/schema-templates").await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in ["article", "company", "product", "job_posting", "event"] {
        assert!(names.contains(&name), "{names:?}");
    }
    assert!(
        body[0]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    let (status, body) = get(&env, "/api/v1/schema-templates/product").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["text"].as_str().unwrap().starts_with("name: product"));
    assert_eq!(body["schema"]["name"], "product");
    let (status, body) = get(&env, "/api/v1/schema-templates/nope").await;
    assert_eq!(status, 404);
    assert!(
        body["detail"].as_str().unwrap().contains("article"),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn records_values_and_job_totals() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (status, body) = send(
        &env,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "shop", "template": "product"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let project: Uuid = body["project"]["id"].as_str().unwrap().parse()?;

    // A token cap must be positive.
    for cap in [json!(0), json!(-5), json!("ten")] {
        let (status, body) = send(
            &env,
            Method::POST,
            "/api/v1/scrape",
            json!({"urls": ["https://example.com/a"], "project": "shop", "model_token_cap": cap}),
        )
        .await;
        assert_eq!(status, 422, "{cap}: {body}");
    }
    let (job, sources) = scrape(
        &env,
        "shop",
        &["https://shop.example/pro", "https://shop.example/basic"],
        Some(1000),
    )
    .await;
    let (s1, s2) = (sources[0], sources[1]);

    // The stage's output, as the worker stores it.
    for (source, name, price) in [(s1, "Pro", 25), (s2, "Basic", 5)] {
        fact(
            &env,
            project,
            source,
            job,
            "product",
            Some(name),
            "name",
            json!(name),
            name,
            true,
        )
        .await;
        fact(
            &env,
            project,
            source,
            job,
            "product",
            Some(name),
            "price",
            json!(price),
            &format!("${price}"),
            true,
        )
        .await;
    }
    fact(
        &env,
        project,
        s1,
        job,
        "product",
        Some("Pro"),
        "brand",
        json!("Acme"),
        "made up",
        false,
    )
    .await;
    sqlx::query(
        "INSERT INTO fact_runs (source_id, project_id, job_id, schema_version, backend, outcome,
                                records, grounded, ungrounded, dropped)
         VALUES ($1, $3, $4, 1, 'llm', 'capped', 1, 2, 1, 0),
                ($2, $3, $4, 1, 'llm', 'complete', 1, 2, 0, 0)",
    )
    .bind(s1)
    .bind(s2)
    .bind(project)
    .bind(job)
    .execute(&env.services.db)
    .await?;
    sqlx::query("UPDATE jobs SET model_tokens_used = 1200 WHERE id = $1")
        .bind(job)
        .execute(&env.services.db)
        .await?;

    // Every record, then filtered.
    let (status, body) = get(&env, "/api/v1/projects/shop/records").await;
    assert_eq!(status, 200, "{body}");
    let records = body["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{body}");
    assert_eq!(records[0]["record_key"], "Basic");
    assert_eq!(records[1]["fields"]["price"], 25);
    assert!(
        records[1]["fields"].get("brand").is_none(),
        "ungrounded values stay out"
    );
    assert_eq!(body["next_cursor"], Value::Null);

    let keys = |body: &Value| -> Vec<String> {
        body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["record_key"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body) = get(&env, "/api/v1/projects/shop/records?where=price%3E%3D10").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["Pro"]);
    let (_, body) = get(
        &env,
        &format!("/api/v1/projects/{project}/records?where=price%3E%3D1&where=name%3Dbasic"),
    )
    .await;
    assert_eq!(keys(&body), ["Basic"]);
    let (_, body) = get(&env, "/api/v1/projects/shop/records?where=price%3C1").await;
    assert!(keys(&body).is_empty());
    let (_, body) = get(
        &env,
        &format!("/api/v1/projects/shop/records?source_id={s1}"),
    )
    .await;
    assert_eq!(keys(&body), ["Pro"]);
    let (_, body) = get(&env, "/api/v1/projects/shop/records?entity=offer").await;
    assert!(keys(&body).is_empty());

    // Pages by cursor.
    let (_, first) = get(&env, "/api/v1/projects/shop/records?limit=1").await;
    assert_eq!(keys(&first), ["Basic"]);
    let cursor = first["next_cursor"].as_str().expect("a cursor").to_owned();
    let (status, second) = get(
        &env,
        &format!("/api/v1/projects/shop/records?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(keys(&second), ["Pro"]);

    // Bad parameters.
    for query in [
        "where=price",
        "where=Price%3E1",
        "where=price%3E",
        "where=price!1",
        "cursor=not-a-cursor",
        "cursor=zz",
        "limit=0",
        "limit=1001",
    ] {
        let (status, body) = get(&env, &format!("/api/v1/projects/shop/records?{query}")).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    let many: Vec<String> = (0..17).map(|i| format!("where=f{i}%3D1")).collect();
    let (status, _) = get(
        &env,
        &format!("/api/v1/projects/shop/records?{}", many.join("&")),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = get(&env, "/api/v1/projects/nobody/records").await;
    assert_eq!(status, 404);

    // One record with its quotes.
    let (status, body) = get(&env, "/api/v1/projects/shop/records/product/Pro").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["record"]["fields"]["name"], "Pro");
    let values = body["values"].as_array().unwrap();
    assert_eq!(values.len(), 2, "grounded values only: {body}");
    assert!(
        values
            .iter()
            .any(|v| v["quote"] == "$25" && v["url"] == "https://shop.example/pro")
    );
    let (status, _) = get(&env, "/api/v1/projects/shop/records/product/Nope").await;
    assert_eq!(status, 404);

    // A page's values, ungrounded ones flagged.
    let (status, body) = get(&env, &format!("/api/v1/sources/{s1}/facts")).await;
    assert_eq!(status, 200, "{body}");
    let facts = body["facts"].as_array().unwrap();
    assert_eq!(facts.len(), 3, "{body}");
    assert_eq!(facts.iter().filter(|f| f["grounded"] == false).count(), 1);
    let (status, _) = get(&env, &format!("/api/v1/sources/{}/facts", Uuid::now_v7())).await;
    assert_eq!(status, 404);
    let (status, _) = get(&env, &format!("/api/v1/sources/{s1}/facts?limit=0")).await;
    assert_eq!(status, 422);

    // The job's totals.
    let (status, body) = get(&env, &format!("/api/v1/jobs/{job}")).await;
    assert_eq!(status, 200, "{body}");
    let f = &body["facts"];
    assert_eq!(f["pages"], 2, "{body}");
    assert_eq!(f["capped_pages"], 1);
    assert_eq!(f["grounded"], 4);
    assert_eq!(f["ungrounded"], 1);
    assert_eq!(f["model_tokens_used"], 1200);
    assert_eq!(f["model_token_cap"], 1000);
    assert_eq!(f["capped"], true);

    // Search with `where` needs a project; with one, only matching pages can be hits.
    let (status, body) = get(&env, "/api/v1/search?q=pro&where=price%3E%3D10").await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = get(
        &env,
        &format!("/api/v1/search?q=pro&mode=full_text&project_id={project}&where=price%3E%3D1000"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([]));
    let (status, _) = get(
        &env,
        &format!("/api/v1/search?q=pro&mode=full_text&project_id={project}&where=bad"),
    )
    .await;
    assert_eq!(status, 422);
    Ok(())
}
