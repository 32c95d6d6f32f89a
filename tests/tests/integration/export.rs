//! Streaming export over the real HTTP API and the real `pipelinectl`: every kind as JSON
//! Lines and CSV, the filters (project, job, time, status), vectors on and off, a resume
//! from any row's cursor that yields exactly the rows after it, batches past the 1,000-row
//! query size, clear 422s for invalid parameters, and the CLI writing the same bytes as the
//! API.

use std::collections::HashSet;
use std::process::Output;

use integration_tests::api::ApiEnv;
use integration_tests::{binary, redis_url};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// What [`seed`] made.
struct Seeded {
    project_a: Uuid,
    project_b: Uuid,
    job_1: Uuid,
    /// The sources of job 1 (project A): extracted, extracted, dead_lettered.
    a_sources: Vec<Uuid>,
    /// The source of job 2 (project B).
    b_source: Uuid,
}

const TRICKY: &str = "Price, \"quoted\" and\na second line";

/// Two projects: A with job 1 (three sources, three chunks each, vectors on the first
/// source's chunks, entities, a record from two pages) and B with job 2 (one source).
async fn seed(pool: &PgPool) -> anyhow::Result<Seeded> {
    let project_a = Uuid::now_v7();
    let project_b = Uuid::now_v7();
    for (p, name) in [(project_a, "alpha"), (project_b, "beta")] {
        sqlx::query("INSERT INTO projects (id, name) VALUES ($1, $2)")
            .bind(p)
            .bind(name)
            .execute(pool)
            .await?;
    }
    let job_1 = Uuid::now_v7();
    let job_2 = Uuid::now_v7();
    for (j, p) in [(job_1, project_a), (job_2, project_b)] {
        sqlx::query(
            "INSERT INTO jobs (id, project_id, type, status) VALUES ($1, $2, 'scrape', 'running')",
        )
        .bind(j)
        .bind(p)
        .execute(pool)
        .await?;
    }
    let mut a_sources = Vec::new();
    let mut all = Vec::new();
    for (i, status) in ["extracted", "extracted", "dead_lettered"]
        .iter()
        .enumerate()
    {
        let id = Uuid::now_v7();
        a_sources.push(id);
        all.push((
            id,
            project_a,
            job_1,
            format!("https://a.example/{i}"),
            *status,
        ));
    }
    let b_source = Uuid::now_v7();
    all.push((
        b_source,
        project_b,
        job_2,
        "https://b.example/0".into(),
        "extracted",
    ));
    for (n, (id, p, j, url, status)) in all.iter().enumerate() {
        // One hour apart, so time filters can pick rows.
        sqlx::query(
            "INSERT INTO sources (id, project_id, uri, status, title, authors, created_at,
                                  created_by_job_id)
             VALUES ($1, $2, $3, $4, $5, $6, '2026-11-01T00:00:00Z'::timestamptz + make_interval(hours => $7), $8)",
        )
        .bind(id)
        .bind(p)
        .bind(url)
        .bind(status)
        .bind(format!("Page {n}, \"titled\""))
        .bind(vec!["Ada Lovelace".to_owned(), "Alan Turing".to_owned()])
        .bind(n as i32)
        .bind(j)
        .execute(pool)
        .await?;
        sqlx::query("INSERT INTO job_sources (job_id, source_id) VALUES ($1, $2)")
            .bind(j)
            .bind(id)
            .execute(pool)
            .await?;
        for c in 0..3 {
            let text = if n == 0 && c == 1 {
                TRICKY.to_owned()
            } else {
                format!("chunk {c} of page {n}")
            };
            let mut data = json!({"text": text, "heading_path": ["Guide", "Install"]});
            if n == 1 {
                data["page"] = json!(c + 1);
            }
            let x = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO extractions (id, source_id, project_id, extraction_type, data,
                                          chunk_index, created_by_job_id, created_at)
                 VALUES ($1, $2, $3, 'text_chunk', $4, $5, $6,
                         '2026-11-01T00:00:00Z'::timestamptz + make_interval(hours => $7))",
            )
            .bind(x)
            .bind(id)
            .bind(p)
            .bind(&data)
            .bind(c)
            .bind(j)
            .bind(n as i32)
            .execute(pool)
            .await?;
            if n == 0 {
                sqlx::query(
                    "INSERT INTO extraction_embeddings (extraction_id, model, dims, embedding)
                     VALUES ($1, 'hashing-3', 3, $2)",
                )
                .bind(x)
                .bind(vec![0.5f32, -0.25, c as f32])
                .execute(pool)
                .await?;
                sqlx::query("UPDATE extractions SET embeddings_created = true WHERE id = $1")
                    .bind(x)
                    .execute(pool)
                    .await?;
            }
            // Entities: "Acme" in every chunk of page 0, "Paris" in the first chunk of pages 0
            // and 1.
            let mut names = Vec::new();
            if n == 0 {
                names.push(("org", "Acme"));
            }
            if (n == 0 || n == 1) && c == 0 {
                names.push(("place", "Paris"));
            }
            for (kind, name) in names {
                sqlx::query(
                    "INSERT INTO entities (id, project_id, kind, name, normalized)
                     VALUES ($1, $2, $3, $4, lower($4)) ON CONFLICT DO NOTHING",
                )
                .bind(Uuid::now_v7())
                .bind(p)
                .bind(kind)
                .bind(name)
                .execute(pool)
                .await?;
                sqlx::query(
                    "INSERT INTO extraction_entities (extraction_id, entity_id)
                     SELECT $1, id FROM entities WHERE project_id = $2 AND normalized = lower($3)",
                )
                .bind(x)
                .bind(p)
                .bind(name)
                .execute(pool)
                .await?;
            }
        }
    }
    // Records of project A: product sku-1 from pages 0 and 1 (a conflict on price), and
    // product sku-2 from page 2; an ungrounded value that is no fact.
    for (source, key, field, value, grounded) in [
        (a_sources[0], "sku-1", "price", json!(10), true),
        (a_sources[1], "sku-1", "price", json!(12), true),
        (a_sources[1], "sku-1", "name", json!("Widget, large"), true),
        (a_sources[2], "sku-2", "name", json!("Gadget"), true),
        (a_sources[2], "sku-3", "name", json!("Ghost"), false),
    ] {
        sqlx::query(
            "INSERT INTO facts (project_id, source_id, job_id, schema_version, entity, entity_key,
                                field, value, list_item, quote, origin, grounded)
             VALUES ($1, $2, $3, 1, 'product', $4, $5, $6, false, 'quote', 'json_ld', $7)",
        )
        .bind(project_a)
        .bind(source)
        .bind(job_1)
        .bind(key)
        .bind(field)
        .bind(&value)
        .bind(grounded)
        .execute(pool)
        .await?;
    }
    Ok(Seeded {
        project_a,
        project_b,
        job_1,
        a_sources,
        b_source,
    })
}

/// The answer's status, content type and body.
async fn export(env: &ApiEnv, path_and_query: &str) -> anyhow::Result<(u16, String, String)> {
    let resp = env
        .req(Method::GET, &format!("/api/v1/export/{path_and_query}"))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, ct, resp.text().await?))
}

/// The rows of a JSON Lines export and its trailer (which must be the last line).
fn jsonl(body: &str) -> (Vec<Value>, Value) {
    assert!(
        body.ends_with('\n'),
        "every line ends with a newline: {body:?}"
    );
    let mut lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let trailer = lines.pop().expect("a trailer line");
    assert_eq!(trailer["end"], json!(true), "{trailer}");
    assert_eq!(trailer["rows"], json!(lines.len()), "{trailer}");
    for row in &lines {
        assert!(row["cursor"].is_string(), "every row has its cursor: {row}");
    }
    (lines, trailer)
}

/// A small RFC 4180 reader: quoted fields with doubled quotes and line breaks.
fn csv(body: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                c => field.push(c),
            }
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "the last line ends with a newline"
    );
    rows
}

fn col(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

#[tokio::test]
async fn every_kind_as_json_lines_with_filters() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let s = seed(&env.db.pool).await?;
    let a = s.project_a;

    // Sources: every one by default, ordered by id, with metadata and status.
    let (code, ct, body) = export(&env, "sources").await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(ct, "application/x-ndjson");
    let (rows, trailer) = jsonl(&body);
    assert_eq!(trailer["more"], json!(false));
    assert_eq!(trailer["cursor"], rows[3]["cursor"]);
    let ids: Vec<Uuid> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let mut expected = s.a_sources.clone();
    expected.push(s.b_source);
    expected.sort();
    assert_eq!(ids, expected);
    let first = rows
        .iter()
        .find(|r| r["id"] == json!(s.a_sources[0]))
        .unwrap();
    assert_eq!(first["url"], "https://a.example/0");
    assert_eq!(first["status"], "extracted");
    assert_eq!(first["job_id"], json!(s.job_1));
    assert_eq!(first["authors"], json!(["Ada Lovelace", "Alan Turing"]));
    assert_eq!(first["created_at"], "2026-11-01T00:00:00Z");

    // Filters: project, job, status, time range; together.
    let (_, _, body) = export(&env, &format!("sources?project_id={}", s.project_b)).await?;
    assert_eq!(jsonl(&body).0.len(), 1);
    let (_, _, body) = export(&env, &format!("sources?job_id={}", s.job_1)).await?;
    assert_eq!(jsonl(&body).0.len(), 3);
    let (_, _, body) = export(&env, "sources?status=dead_lettered").await?;
    let (rows, _) = jsonl(&body);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], json!(s.a_sources[2]));
    let (_, _, body) = export(
        &env,
        "sources?since=2026-11-01T01:00:00Z&until=2026-11-01T03:00:00%2B00:00",
    )
    .await?;
    let ids: HashSet<Value> = jsonl(&body).0.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(
        ids,
        HashSet::from([json!(s.a_sources[1]), json!(s.a_sources[2])])
    );
    let (_, _, body) = export(
        &env,
        &format!(
            "sources?project_id={a}&job_id={}&status=extracted&since=2026-11-01T01:00:00Z",
            s.job_1
        ),
    )
    .await?;
    let (rows, _) = jsonl(&body);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], json!(s.a_sources[1]));

    // Chunks: by source and index, with page and heading trail; no vectors unless asked.
    let (code, _, body) = export(&env, &format!("chunks?project_id={a}")).await?;
    assert_eq!(code, 200, "{body}");
    let (rows, _) = jsonl(&body);
    assert_eq!(rows.len(), 9);
    let keys: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["source_id"].as_str().unwrap().to_owned(),
                r["chunk_index"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "chunks come by source, then index");
    assert!(
        rows.iter().all(|r| r.get("embedding").is_none()),
        "no vectors unless asked"
    );
    assert!(rows.iter().any(|r| r["text"] == TRICKY));
    assert!(rows.iter().any(|r| r["page"] == json!(2)));
    assert_eq!(rows[0]["heading_trail"], "Guide › Install");
    let (_, _, body) = export(&env, &format!("chunks?project_id={a}&vectors=true")).await?;
    let (rows, _) = jsonl(&body);
    let with: Vec<&Value> = rows.iter().filter(|r| !r["embedding"].is_null()).collect();
    assert_eq!(with.len(), 3, "page 0's chunks have vectors");
    assert!(
        rows.iter().all(|r| r.get("embedding").is_some()),
        "null when a chunk has none"
    );
    assert_eq!(with[0]["embedding"]["model"], "hashing-3");
    assert_eq!(with[0]["embedding"]["dims"], 3);
    assert_eq!(with[2]["embedding"]["vector"], json!([0.5, -0.25, 2.0]));
    let (_, _, body) = export(&env, "chunks?status=dead_lettered").await?;
    assert_eq!(jsonl(&body).0.len(), 3);
    let (_, _, body) = export(&env, "chunks?until=2026-11-01T01:00:00Z").await?;
    assert_eq!(jsonl(&body).0.len(), 3);

    // Entities per source: Acme (3 chunks) and Paris on page 0, Paris on page 1.
    let (_, _, body) = export(&env, &format!("entities?job_id={}", s.job_1)).await?;
    let (rows, _) = jsonl(&body);
    let got: HashSet<(Value, Value, Value)> = rows
        .iter()
        .map(|r| {
            (
                r["source_id"].clone(),
                r["name"].clone(),
                r["chunks"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        HashSet::from([
            (json!(s.a_sources[0]), json!("Acme"), json!(3)),
            (json!(s.a_sources[0]), json!("Paris"), json!(1)),
            (json!(s.a_sources[1]), json!("Paris"), json!(1)),
        ])
    );
    let (_, _, body) = export(&env, &format!("entities?project_id={}", s.project_b)).await?;
    assert_eq!(jsonl(&body).0.len(), 0);

    // Records: consolidated over pages, conflicts kept, ungrounded values left out.
    let (_, _, body) = export(&env, &format!("records?project_id={a}")).await?;
    let (rows, _) = jsonl(&body);
    assert_eq!(rows.len(), 2, "{body}");
    assert_eq!(rows[0]["record_key"], "sku-1");
    assert_eq!(rows[0]["fields"]["name"], "Widget, large");
    assert_eq!(rows[0]["conflicts"], json!(["price"]));
    assert_eq!(rows[0]["sources"], 2);
    assert_eq!(rows[1]["record_key"], "sku-2");
    let (_, _, body) = export(&env, "records?status=dead_lettered").await?;
    let (rows, _) = jsonl(&body);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["record_key"], "sku-2");
    Ok(())
}

#[tokio::test]
async fn every_kind_as_csv() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let s = seed(&env.db.pool).await?;
    let a = s.project_a;
    for (kind, rows_expected) in [
        ("sources", 3),
        ("chunks", 9),
        ("entities", 3),
        ("records", 2),
    ] {
        let (code, ct, body) = export(&env, &format!("{kind}?project_id={a}&format=csv")).await?;
        assert_eq!(code, 200, "{body}");
        assert!(ct.starts_with("text/csv"), "{ct}");
        let table = csv(&body);
        let header = &table[0];
        assert_eq!(
            header.last().map(String::as_str),
            Some("cursor"),
            "{header:?}"
        );
        assert_eq!(table.len() - 1, rows_expected, "{kind}: {body}");
        assert!(
            table.iter().all(|r| r.len() == header.len()),
            "{kind}: ragged rows"
        );
        assert!(!body.contains("\"end\""), "no trailer in CSV");
    }
    // Quoting: commas, quotes and line breaks survive; lists and vectors are JSON.
    let (_, _, body) = export(
        &env,
        &format!("chunks?project_id={a}&format=csv&vectors=true"),
    )
    .await?;
    let table = csv(&body);
    let h = table[0].clone();
    let tricky = table
        .iter()
        .find(|r| r[col(&h, "text")] == TRICKY)
        .expect("the tricky chunk");
    let vector: Vec<f32> = serde_json::from_str(&tricky[col(&h, "vector")])?;
    assert_eq!(vector, vec![0.5, -0.25, 1.0]);
    assert_eq!(tricky[col(&h, "embedding_dims")], "3");
    let without = table
        .iter()
        .skip(1)
        .filter(|r| r[col(&h, "vector")].is_empty())
        .count();
    assert_eq!(without, 6, "chunks without vectors leave the column empty");
    let (_, _, body) = export(&env, &format!("chunks?project_id={a}&format=csv")).await?;
    assert!(
        !csv(&body)[0].contains(&"vector".to_owned()),
        "no vector column unless asked"
    );
    let (_, _, body) = export(&env, &format!("sources?project_id={a}&format=csv")).await?;
    let table = csv(&body);
    let h = table[0].clone();
    let page0 = table
        .iter()
        .find(|r| r[col(&h, "id")] == s.a_sources[0].to_string())
        .expect("page 0");
    assert_eq!(page0[col(&h, "title")], "Page 0, \"titled\"");
    let authors: Vec<String> = serde_json::from_str(&page0[col(&h, "authors")])?;
    assert_eq!(authors, ["Ada Lovelace", "Alan Turing"]);
    assert_eq!(page0[col(&h, "source_group")], "", "null is an empty field");
    let (_, _, body) = export(&env, &format!("records?project_id={a}&format=csv")).await?;
    let table = csv(&body);
    let fields: Value = serde_json::from_str(&table[1][col(&table[0], "fields")])?;
    assert_eq!(fields["name"], "Widget, large");
    Ok(())
}

#[tokio::test]
async fn a_cursor_resumes_with_exactly_the_rows_after_it() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let s = seed(&env.db.pool).await?;
    // 2,500 more chunks on one more page, so the export crosses the 1,000-row batches.
    let big = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO sources (id, project_id, uri, status) VALUES ($1, $2, 'https://a.example/big', 'extracted')",
    )
    .bind(big)
    .bind(s.project_a)
    .execute(&env.db.pool)
    .await?;
    sqlx::query(
        "INSERT INTO extractions (id, source_id, project_id, extraction_type, data, chunk_index)
         SELECT gen_random_uuid(), $1, $2, 'text_chunk', jsonb_build_object('text', 'row ' || i), i
           FROM generate_series(0, 2499) AS i",
    )
    .bind(big)
    .bind(s.project_a)
    .execute(&env.db.pool)
    .await?;

    for kind in ["sources", "chunks", "entities", "records"] {
        let (_, _, body) = export(&env, kind).await?;
        let (all, _) = jsonl(&body);
        assert!(all.len() >= 2, "{kind}");
        let unique: HashSet<&str> = all.iter().map(|r| r["cursor"].as_str().unwrap()).collect();
        assert_eq!(unique.len(), all.len(), "{kind}: no row twice");
        // A client cut off after row k resumes with row k's cursor.
        let cuts = [0, all.len() / 2, all.len() - 2, all.len() - 1];
        for k in cuts {
            let cursor = all[k]["cursor"].as_str().unwrap();
            let (code, _, body) = export(&env, &format!("{kind}?cursor={cursor}")).await?;
            assert_eq!(code, 200, "{body}");
            let (rest, trailer) = jsonl(&body);
            assert_eq!(rest.len(), all.len() - k - 1, "{kind} after row {k}");
            assert!(
                rest == all[k + 1..],
                "{kind} after row {k}: the rows after it"
            );
            assert_eq!(trailer["more"], json!(false));
        }
    }

    // Chunks: 2,512 in all, page by page with a limit: the trailer says there is more and
    // its cursor continues; the pages join into the whole export, with no gap or repeat.
    let (_, _, body) = export(&env, "chunks").await?;
    let (all, _) = jsonl(&body);
    assert_eq!(all.len(), 2512);
    let mut joined = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("chunks?limit=1000&cursor={c}"),
            None => "chunks?limit=1000".into(),
        };
        let (_, _, body) = export(&env, &q).await?;
        let (rows, trailer) = jsonl(&body);
        joined.extend(rows);
        if trailer["more"] == json!(false) {
            break;
        }
        cursor = Some(trailer["cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(joined.len(), all.len());
    assert!(joined == all, "the pages join into the whole export");
    // A limit of exactly the rows left says there is no more; one less says there is.
    for (limit, more) in [(2512, false), (2511, true), (1000, true)] {
        let (_, _, body) = export(&env, &format!("chunks?limit={limit}")).await?;
        let (rows, trailer) = jsonl(&body);
        assert_eq!(rows.len(), limit, "limit {limit}");
        assert_eq!(trailer["more"], json!(more), "limit {limit}");
    }

    // CSV: the cursor column resumes the same way.
    let (_, _, body) = export(&env, "sources?format=csv").await?;
    let table = csv(&body);
    let c = col(&table[0], "cursor");
    let (_, _, body) = export(&env, &format!("sources?format=csv&cursor={}", table[2][c])).await?;
    let rest = csv(&body);
    assert_eq!(rest[0], table[0], "the header again");
    assert_eq!(rest[1..], table[3..]);
    Ok(())
}

#[tokio::test]
async fn invalid_parameters_are_422_with_the_reason() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let s = seed(&env.db.pool).await?;
    let (_, _, body) = export(&env, "chunks").await?;
    let chunk_cursor = jsonl(&body).0[0]["cursor"].as_str().unwrap().to_owned();
    for (query, says) in [
        ("sources?project_id=nope".to_owned(), "project_id"),
        ("sources?status=done".into(), "status must be one of"),
        ("sources?format=xml".into(), "format must be jsonl or csv"),
        (
            "sources?vectors=true".into(),
            "vectors applies to chunks only",
        ),
        ("chunks?vectors=maybe".into(), "vectors"),
        ("sources?cursor=garbage".into(), "invalid cursor"),
        (
            format!("sources?cursor={chunk_cursor}"),
            "belongs to a chunks export",
        ),
        (
            "sources?since=yesterday".into(),
            "since must be an RFC 3339 time",
        ),
        (
            "sources?since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z".into(),
            "since must be before until",
        ),
        ("sources?limit=0".into(), "limit must be"),
        ("records?limit=-5".into(), "limit must be"),
    ] {
        let (code, body) = env.get(&format!("/api/v1/export/{query}")).await?;
        assert_eq!(code, 422, "{query}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{query}: {detail}");
    }
    let (code, _) = env.get("/api/v1/export/pages").await?;
    assert_eq!(code, 404);
    let code = env
        .req_no_key(Method::GET, "/api/v1/export/sources")
        .send()
        .await?
        .status()
        .as_u16();
    assert_eq!(code, 401);
    // Every route is in the OpenAPI document with its parameters.
    let (_, doc) = env.get("/openapi.json").await?;
    for kind in ["sources", "chunks", "entities", "records"] {
        let op = &doc["paths"][format!("/api/v1/export/{kind}")]["get"];
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"cursor") && names.contains(&"since"),
            "{kind}: {names:?}"
        );
        assert_eq!(
            names.contains(&"vectors"),
            kind == "chunks",
            "{kind}: {names:?}"
        );
        assert!(
            op["responses"]["200"]["content"]["text/csv"].is_object(),
            "{kind}"
        );
    }
    let _ = s;
    Ok(())
}

/// Runs `pipelinectl` on the test's database.
async fn ctl(env: &ApiEnv, args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(binary("pipelinectl"))
        .args(args)
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .env_remove("PIPELINE_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .await?)
}

#[tokio::test]
async fn the_cli_writes_what_the_api_serves() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let s = seed(&env.db.pool).await?;
    let a = s.project_a.to_string();
    let dir = std::env::temp_dir().join(format!("export-test-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;

    // JSON Lines on stdout, the project by name: the API's bytes.
    let out = ctl(
        &env,
        &["export", "chunks", "--project", "alpha", "--vectors"],
    )
    .await?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, _, api) = export(&env, &format!("chunks?project_id={a}&vectors=true")).await?;
    assert_eq!(String::from_utf8(out.stdout)?, api);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("9 chunks rows"), "{stderr}");

    // CSV to a file, with filters.
    let file = dir.join("sources.csv");
    let out = ctl(
        &env,
        &[
            "export",
            "sources",
            "--job",
            &s.job_1.to_string(),
            "--status",
            "extracted",
            "--since",
            "2026-11-01T00:00:00Z",
            "--until",
            "2026-11-02T00:00:00Z",
            "--format",
            "csv",
            "--output",
            file.to_str().unwrap(),
        ],
    )
    .await?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&file)?;
    let (_, _, api) = export(
        &env,
        &format!(
            "sources?job_id={}&status=extracted&since=2026-11-01T00:00:00Z&until=2026-11-02T00:00:00Z&format=csv",
            s.job_1
        ),
    )
    .await?;
    assert_eq!(written, api);
    assert_eq!(csv(&written).len(), 3, "header and two sources");

    // Resume with the cursor of the first record.
    let (_, _, body) = export(&env, "records").await?;
    let (all, _) = jsonl(&body);
    let cursor = all[0]["cursor"].as_str().unwrap();
    let out = ctl(&env, &["export", "records", "--cursor", cursor]).await?;
    assert_eq!(out.status.code(), Some(0));
    let (rest, _) = jsonl(&String::from_utf8(out.stdout)?);
    assert!(rest == all[1..], "the records after the first");

    // Invalid arguments: exit 2 with the reason; an unknown project: exit 3.
    for (args, says) in [
        (
            vec!["export", "sources", "--vectors"],
            "--vectors applies to chunks only",
        ),
        (
            vec!["export", "sources", "--since", "soon"],
            "--since must be an RFC 3339",
        ),
        (
            vec!["export", "sources", "--status", "done"],
            "--status must be one of",
        ),
        (
            vec!["export", "chunks", "--cursor", "nope"],
            "invalid cursor",
        ),
        (vec!["export", "pages"], "invalid value"),
    ] {
        let out = ctl(&env, &args).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let out = ctl(&env, &["export", "sources", "--project", "gamma"]).await?;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The seed, plus project B's big page: ~20 MB of JSON (5,000 chunks with 384-dimension
/// vectors, more than socket buffers hold); the answer to its chunks' export with vectors.
async fn big_export(env: &ApiEnv) -> anyhow::Result<reqwest::Response> {
    let s = seed(&env.db.pool).await?;
    let big = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO sources (id, project_id, uri, status) VALUES ($1, $2, 'https://b.example/big', 'extracted')",
    )
    .bind(big)
    .bind(s.project_b)
    .execute(&env.db.pool)
    .await?;
    sqlx::query(
        "INSERT INTO extractions (id, source_id, project_id, extraction_type, data, chunk_index)
         SELECT gen_random_uuid(), $1, $2, 'text_chunk', jsonb_build_object('text', 'row ' || i), i
           FROM generate_series(0, 4999) AS i",
    )
    .bind(big)
    .bind(s.project_b)
    .execute(&env.db.pool)
    .await?;
    sqlx::query(
        "INSERT INTO extraction_embeddings (extraction_id, model, dims, embedding)
         SELECT x.id, 'm', 384, ARRAY(SELECT random()::real FROM generate_series(1, 384)
                                       WHERE x.id IS NOT NULL)
           FROM extractions x WHERE x.source_id = $1",
    )
    .bind(big)
    .execute(&env.db.pool)
    .await?;
    let resp = env
        .req(
            Method::GET,
            &format!(
                "/api/v1/export/chunks?project_id={}&vectors=true",
                s.project_b
            ),
        )
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    Ok(resp)
}

#[tokio::test]
async fn a_slow_reader_gets_the_whole_export_past_the_idle_timeout() -> anyhow::Result<()> {
    // A connection counts as busy until the export's body is sent: the API's idle timer
    // (100 ms here) must not close it while a client that reads slowly holds the stream
    // back, however long that takes.
    let env = ApiEnv::start(|s| s.api.idle_timeout_ms = 100).await?;
    let resp = big_export(&env).await?;
    let mut body = resp.bytes_stream();
    let mut bytes = Vec::new();
    let mut pauses = 0;
    while let Some(piece) = futures::StreamExt::next(&mut body).await {
        bytes.extend_from_slice(&piece?);
        if pauses < 4 {
            // Slower than the idle timeout, while the server waits for room to write.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            pauses += 1;
        }
    }
    let (rows, trailer) = jsonl(std::str::from_utf8(&bytes)?);
    assert_eq!(rows.len(), 5003, "every chunk of project B");
    assert_eq!(trailer["more"], json!(false));
    assert!(bytes.len() > 10_000_000, "{} bytes", bytes.len());
    Ok(())
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_cut_off_and_the_api_stays_open() -> anyhow::Result<()> {
    // A client that stops reading altogether has its connection closed after ten idle
    // periods with a piece waiting, so stalled readers cannot hold the API's connections.
    let env = ApiEnv::start(|s| s.api.idle_timeout_ms = 100).await?;
    let resp = big_export(&env).await?;
    let mut body = resp.bytes_stream();
    let mut bytes = Vec::new();
    if let Some(piece) = futures::StreamExt::next(&mut body).await {
        bytes.extend_from_slice(&piece?);
    }
    // Nothing read for 2.5 s: more than ten idle periods (100 ms here) with a piece waiting.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut cut = false;
    while let Some(piece) = futures::StreamExt::next(&mut body).await {
        match piece {
            Ok(p) => bytes.extend_from_slice(&p),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        cut || !text.contains(r#""end":true"#),
        "the stalled export was not cut off ({} bytes)",
        bytes.len()
    );
    // The API answers new requests.
    let again = env
        .req(Method::GET, "/api/v1/export/sources?limit=1")
        .send()
        .await?;
    assert_eq!(again.status().as_u16(), 200);
    Ok(())
}
