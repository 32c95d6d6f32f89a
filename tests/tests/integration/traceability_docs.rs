//! Every SQL block of docs/traceability.md, run against a real pipeline run (the scrape and
//! extraction workers and the requeue daemon over real Postgres, Redis and HTTP), with its
//! answer checked; then, over realistic row counts, the single-job and single-source
//! queries must read `sources` and `job_events` through indexes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use integration_tests::pages::PageServer;
use integration_tests::requeue::{Pipeline, World, e2e_settings, eventually};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// The doc's SQL blocks by their `-- name:` line, in order.
fn doc_queries() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/traceability.md");
    let text = std::fs::read_to_string(path).expect("docs/traceability.md");
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim_end()) {
            (None, "```sql") => block = Some(String::new()),
            (Some(b), "```") => {
                let sql = std::mem::take(b);
                block = None;
                let name = sql
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("-- name: "))
                    .unwrap_or_else(|| panic!("an SQL block without `-- name:`: {sql}"))
                    .trim()
                    .to_owned();
                out.push((name, sql));
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(block.is_none(), "an unclosed SQL block in the doc");
    out
}

/// The query with psql's `:'var'` replaced by quoted literals, as psql would.
fn bind(sql: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = sql.trim().trim_end_matches(';').to_owned();
    for (k, v) in vars {
        out = out.replace(&format!(":'{k}'"), &format!("'{}'", v.replace('\'', "''")));
    }
    assert!(!out.contains(":'"), "an unbound psql variable in {out}");
    out
}

/// The rows of `sql` as JSON objects, in the query's order.
async fn rows(pool: &PgPool, sql: &str) -> anyhow::Result<Vec<Value>> {
    let agg: Option<Value> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT json_agg(to_jsonb(q)) FROM ({sql}) q"
    )))
    .fetch_one(pool)
    .await?;
    Ok(match agg {
        Some(Value::Array(v)) => v,
        _ => Vec::new(),
    })
}

fn col<'a>(rows: &'a [Value], name: &str) -> Vec<&'a Value> {
    rows.iter().map(|r| &r[name]).collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[tokio::test]
async fn every_query_in_the_traceability_doc_answers_a_real_run() -> anyhow::Result<()> {
    let w = World::new(|s| {
        e2e_settings(s);
        // Every failure goes to the DLQ at once, so each retry is a redrive.
        s.queue.max_attempts = 1;
        s.requeue.max_redrives = 2;
        // A redrive that comes at once can overtake the worker's own record of the failure
        // (the runner settles in Redis first, then writes Postgres), and a worker now starts
        // a redriven message the moment it is queued: the trail then interleaves two runs.
        // A second of delay keeps the runs apart, as the shipped 30 s base does.
        s.requeue.redrive_base_delay_secs = 1;
    })
    .await?;
    let pages = PageServer::start().await;
    pages.set_failures("/flaky/twice", 2);
    pages.set_failures("/flaky/broken", 1_000);
    let paths = [
        "/ok/1",
        "/ok/2",
        "/flaky/twice",
        "/status/404",
        "/flaky/broken",
    ];
    let (job, ids) = w
        .submit(paths.iter().map(|p| pages.url(p)).collect())
        .await?;
    let (ok1, flaky, gone, broken) = (ids[0], ids[2], ids[3], ids[4]);
    // A second job asks for /ok/1 again: the source keeps its creating job and joins this one.
    let (job2, _) = w
        .submit(vec![pages.url("/ok/1"), pages.url("/ok/3")])
        .await?;

    let pipeline = Pipeline::start(&w)?;
    eventually(Duration::from_secs(90), "both jobs finished", || async {
        let statuses: Vec<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE id = ANY($1) ORDER BY id")
                .bind(vec![job, job2])
                .fetch_all(&w.db.pool)
                .await?;
        Ok((statuses == ["completed_with_errors", "completed"]).then_some(()))
    })
    .await?;
    pipeline.stop().await?;

    let db = &w.db.pool;
    let vars = BTreeMap::from([
        ("job_id", job.to_string()),
        ("source_id", String::new()),
        ("url", pages.url("/ok/1")),
    ]);
    let with_source = |id: Uuid| {
        let mut v = vars.clone();
        v.insert("source_id", id.to_string());
        v
    };
    let queries = doc_queries();
    let names: BTreeSet<&str> = queries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), queries.len(), "two SQL blocks share a name");
    let sql_of = |name: &str| -> &str {
        &queries
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("the doc lost the query `{name}`"))
            .1
    };
    let mut checked = BTreeSet::new();

    // which-job-created
    let r = rows(db, &bind(sql_of("which-job-created"), &with_source(ok1))).await?;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(s(&r[0]["created_by_job_id"]), job.to_string());
    assert_eq!(r[0]["created_by_job_type"], "scrape");
    assert_eq!(r[0]["status"], "extracted");
    assert_eq!(r[0]["job_ids"], json!([job, job2]));
    checked.insert("which-job-created");

    // source-by-url
    let r = rows(db, &bind(sql_of("source-by-url"), &vars)).await?;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(s(&r[0]["source_id"]), ok1.to_string());
    assert_eq!(r[0]["project"], "requeue-tests");
    assert_eq!(r[0]["outcome"], "done");
    assert_eq!(s(&r[0]["created_by_job_id"]), job.to_string());
    checked.insert("source-by-url");

    // source-timeline: the same trail as the store's own reader (the API's trace route).
    let r = rows(db, &bind(sql_of("source-timeline"), &with_source(flaky))).await?;
    let kinds: Vec<&str> = col(&r, "kind").into_iter().map(s).collect();
    assert_eq!(kinds, w.event_kinds(flaky).await?, "{r:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "dead_lettered").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "redriven").count(), 2);
    assert_eq!(kinds.first(), Some(&"enqueued"));
    assert_eq!(kinds.last(), Some(&"succeeded"));
    let dl = r.iter().find(|e| e["kind"] == "dead_lettered").unwrap();
    assert_eq!(dl["error_kind"], "transient", "{dl}");
    assert!(!s(&dl["error"]).is_empty());
    checked.insert("source-timeline");

    // source-dlq-history: three failures, two redrives by the daemon, then parked.
    let r = rows(
        db,
        &bind(sql_of("source-dlq-history"), &with_source(broken)),
    )
    .await?;
    let actions: Vec<&str> = col(&r, "action").into_iter().map(s).collect();
    // A redriven message stays held back until its redrive is booked, so the history is in
    // the order things happened: failure, redrive, failure, redrive, failure, park.
    let count = |a: &str| actions.iter().filter(|x| **x == a).count();
    assert_eq!(
        (count("dead_lettered"), count("redriven"), count("parked")),
        (3, 2, 1),
        "{r:?}"
    );
    assert_eq!(
        actions,
        [
            "dead_lettered",
            "redriven",
            "dead_lettered",
            "redriven",
            "dead_lettered",
            "parked"
        ],
        "{r:?}"
    );
    assert!(r.iter().all(|e| e["dlq"] == "scrape"), "{r:?}");
    assert_eq!(r[0]["actor"], "scrape-worker");
    let redrives: Vec<(&serde_json::Value, &serde_json::Value)> = r
        .iter()
        .filter(|e| e["action"] == "redriven")
        .map(|e| (&e["actor"], &e["redrive_count"]))
        .collect();
    assert_eq!(
        redrives,
        [
            (&json!("requeue-daemon"), &json!(1)),
            (&json!("requeue-daemon"), &json!(2))
        ]
    );
    assert_eq!(
        (&r[5]["actor"], &r[5]["redrive_count"]),
        (&json!("requeue-daemon"), &json!(2))
    );
    checked.insert("source-dlq-history");

    // job-summary
    let job_events: i64 = sqlx::query_scalar("SELECT count(*) FROM job_events WHERE job_id = $1")
        .bind(job)
        .fetch_one(db)
        .await?;
    let r = rows(db, &bind(sql_of("job-summary"), &vars)).await?;
    assert_eq!(r.len(), 1, "{r:?}");
    let j = &r[0];
    assert_eq!(j["status"], "completed_with_errors", "{j}");
    assert_eq!(
        [
            &j["sources_total"],
            &j["extracted"],
            &j["failed"],
            &j["in_flight"],
            &j["parked"]
        ],
        [&json!(5), &json!(3), &json!(2), &json!(0), &json!(1)],
        "{j}"
    );
    // flaky: 2 failures, 404: 1, broken: 3; two redrives each for flaky and broken.
    assert_eq!(
        (&j["failure_events"], &j["redrives"]),
        (&json!(6), &json!(4)),
        "{j}"
    );
    assert_eq!(j["events"], job_events, "{j}");
    checked.insert("job-summary");

    // job-failures: the whole trail of exactly the sources that failed.
    let r = rows(db, &bind(sql_of("job-failures"), &vars)).await?;
    let failed: BTreeSet<String> = col(&r, "source_id")
        .into_iter()
        .map(|v| s(v).to_owned())
        .collect();
    let expect: BTreeSet<String> = [flaky, gone, broken].iter().map(Uuid::to_string).collect();
    assert_eq!(failed, expect);
    let trail: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_events WHERE source_id = ANY($1)")
            .bind(vec![flaky, gone, broken])
            .fetch_one(db)
            .await?;
    assert_eq!(r.len() as i64, trail);
    checked.insert("job-failures");

    // failed-permanently-last-day
    let r = rows(db, &bind(sql_of("failed-permanently-last-day"), &vars)).await?;
    let got: Vec<(&str, &str, i64)> = r
        .iter()
        .map(|x| {
            (
                s(&x["status"]),
                s(&x["last_error_kind"]),
                x["sources"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("dead_lettered", "permanent", 1),
            ("parked", "transient", 1)
        ],
        "{r:?}"
    );
    assert!(s(&r[0]["example_error"]).contains("404"), "{r:?}");
    checked.insert("failed-permanently-last-day");

    // job-redriven-pages and redriven-pages-last-day
    let expect = [
        (pages.url("/flaky/broken"), 2, "parked"),
        (pages.url("/flaky/twice"), 2, "extracted"),
    ];
    let r = rows(db, &bind(sql_of("job-redriven-pages"), &vars)).await?;
    let got: Vec<(String, i64, &str)> = r
        .iter()
        .map(|x| {
            (
                s(&x["uri"]).to_owned(),
                x["redrives"].as_i64().unwrap(),
                s(&x["status_now"]),
            )
        })
        .collect();
    assert_eq!(got, expect, "{r:?}");
    checked.insert("job-redriven-pages");
    let r = rows(db, &bind(sql_of("redriven-pages-last-day"), &vars)).await?;
    let got: Vec<(String, i64)> = r
        .iter()
        .map(|x| (s(&x["uri"]).to_owned(), x["redrives"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        got,
        expect
            .iter()
            .map(|(u, n, _)| (u.clone(), *n))
            .collect::<Vec<_>>()
    );
    checked.insert("redriven-pages-last-day");

    // slowest-stage-last-hour: one scrape run per request to the pages, one extraction run
    // per page stored.
    let scrape_runs: usize = [
        "/ok/1",
        "/ok/2",
        "/ok/3",
        "/flaky/twice",
        "/status/404",
        "/flaky/broken",
    ]
    .iter()
    .map(|p| pages.hits(p))
    .sum();
    assert_eq!(scrape_runs, 10);
    let r = rows(db, &bind(sql_of("slowest-stage-last-hour"), &vars)).await?;
    let runs: BTreeMap<&str, i64> = r
        .iter()
        .map(|x| (s(&x["stage"]), x["runs"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        runs,
        BTreeMap::from([("scrape", 10), ("extraction", 4)]),
        "{r:?}"
    );
    for x in &r {
        let (p50, p95, max) = (
            x["p50_ms"].as_f64().unwrap(),
            x["p95_ms"].as_f64().unwrap(),
            x["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 <= p50 && p50 <= p95 && p95 <= max, "{x}");
    }
    let p95: Vec<f64> = col(&r, "p95_ms")
        .into_iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        p95.windows(2).all(|w| w[0] >= w[1]),
        "not slowest first: {r:?}"
    );
    checked.insert("slowest-stage-last-hour");

    // job-stage-time: job 1's runs (the shared /ok/1 ran once, on behalf of job 1).
    let r = rows(db, &bind(sql_of("job-stage-time"), &vars)).await?;
    let runs: Vec<(&str, i64)> = r
        .iter()
        .map(|x| (s(&x["stage"]), x["runs"].as_i64().unwrap()))
        .collect();
    assert_eq!(runs, [("extraction", 3), ("scrape", 9)], "{r:?}");
    assert!(
        r.iter()
            .all(|x| x["working"].is_string() && x["waiting"].is_string()),
        "{r:?}"
    );
    checked.insert("job-stage-time");

    assert_eq!(
        names, checked,
        "every SQL block of the doc must be run and checked here"
    );

    // The plans, over realistic row counts: the planner rightly reads a table of a few rows
    // sequentially, so the real run alone proves nothing about indexes.
    add_filler(db).await?;
    let nonempty: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT tableoid::regclass::text FROM job_events")
            .fetch_all(db)
            .await?;
    let single = [
        ("which-job-created", with_source(ok1)),
        ("source-by-url", vars.clone()),
        ("source-timeline", with_source(flaky)),
        ("source-dlq-history", with_source(broken)),
        ("job-summary", vars.clone()),
        ("job-failures", vars.clone()),
        ("job-redriven-pages", vars.clone()),
        ("job-stage-time", vars.clone()),
    ];
    for (name, v) in &single {
        let sql = bind(sql_of(name), v);
        let plan: Value =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (FORMAT JSON) {sql}")))
                .fetch_one(db)
                .await?;
        let mut scans = Vec::new();
        seq_scans(&plan, &mut scans);
        // A sequential scan of an empty partition (next month's, the default) costs nothing
        // and is what the planner should pick there.
        let bad: Vec<&String> = scans
            .iter()
            .filter(|t| *t == "sources" || nonempty.contains(t))
            .collect();
        assert!(
            bad.is_empty(),
            "`{name}` scans {bad:?} sequentially:\n{plan:#}"
        );
    }
    Ok(())
}

/// Tables scanned sequentially anywhere in an `EXPLAIN (FORMAT JSON)` plan.
fn seq_scans(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if m.get("Node Type").and_then(Value::as_str) == Some("Seq Scan")
                && let Some(rel) = m.get("Relation Name").and_then(Value::as_str)
            {
                out.push(rel.to_owned());
            }
            m.values().for_each(|x| seq_scans(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| seq_scans(x, out)),
        _ => {}
    }
}

/// 20,000 other sources of 500 jobs with ten events each, then ANALYZE.
async fn add_filler(db: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "INSERT INTO projects (id, name) VALUES ('00000000-0000-0000-0000-00000000f111', 'filler');
         INSERT INTO jobs (id, project_id, type, status, result)
         SELECT ('00000000-0000-0000-0001-' || lpad(to_hex(j), 12, '0'))::uuid,
                '00000000-0000-0000-0000-00000000f111', 'scrape', 'completed',
                '{\"total\": 100, \"extracted\": 100, \"terminal\": 100}'
           FROM generate_series(1, 500) j;
         INSERT INTO sources (id, project_id, uri, status, created_by_job_id, created_at, updated_at)
         SELECT ('00000000-0000-0000-0002-' || lpad(to_hex(i), 12, '0'))::uuid,
                '00000000-0000-0000-0000-00000000f111', 'https://filler.example/' || i,
                'extracted', ('00000000-0000-0000-0001-' || lpad(to_hex(1 + i % 500), 12, '0'))::uuid,
                now() - interval '2 days', now() - interval '2 days'
           FROM generate_series(1, 20000) i;
         INSERT INTO job_sources (job_id, source_id)
         SELECT created_by_job_id, id FROM sources WHERE project_id = '00000000-0000-0000-0000-00000000f111';
         INSERT INTO job_events (job_id, source_id, kind, stage, attempt, detail, at)
         SELECT s.created_by_job_id, s.id,
                (ARRAY['enqueued','started','succeeded','started','succeeded'])[1 + k % 5],
                (ARRAY['submit','scrape','scrape','extraction','extraction'])[1 + k % 5],
                1, '{}'::jsonb, now() - interval '30 minutes' + k * interval '1 second'
           FROM sources s, generate_series(0, 9) k
          WHERE s.project_id = '00000000-0000-0000-0000-00000000f111';
         ANALYZE;",
    )
    .execute(db)
    .await?;
    Ok(())
}
