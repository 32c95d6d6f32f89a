//! The real `pipelinectl` binary's schema commands against real Postgres and Redis:
//! `projects create` with a template or a schema file (an invalid one refused with every
//! error's path, nothing created), `projects schema`, `templates`, `records` filtered with
//! `--where` over values inserted with SQL, one record's quotes, a page's values in `sources
//! show`, and `submit --token-cap`.

use std::process::Output;

use integration_tests::api::ApiEnv;
use integration_tests::{binary, redis_url};
use uuid::Uuid;

/// Runs `pipelinectl` on the test's database and Redis prefix, with `stdin` on its input.
async fn ctl_in(env: &ApiEnv, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(binary("pipelinectl"))
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .args(args)
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .env_remove("PIPELINE_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await?;
    }
    drop(input);
    Ok(child.wait_with_output().await?)
}

async fn ctl(env: &ApiEnv, args: &[&str]) -> anyhow::Result<Output> {
    ctl_in(env, args, None).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Stores one value of `source` as the schema stage would.
#[allow(clippy::too_many_arguments)]
async fn insert_fact(
    env: &ApiEnv,
    source: Uuid,
    entity: &str,
    key: Option<&str>,
    field: &str,
    value: serde_json::Value,
    quote: &str,
    grounded: bool,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO facts (project_id, source_id, schema_version, entity, entity_key, field,
                            value, list_item, quote, origin, chunk_index, confidence, grounded)
         SELECT project_id, id, 1, $2, $3, $4, $5, false, $6, 'llm', 0, 0.9, $7
           FROM sources WHERE id = $1",
    )
    .bind(source)
    .bind(entity)
    .bind(key)
    .bind(field)
    .bind(value)
    .bind(quote)
    .bind(grounded)
    .execute(&env.services.db)
    .await?;
    Ok(())
}

#[tokio::test]
async fn projects_templates_and_schemas() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;

    // The templates, and one's YAML to copy.
    let out = ctl(&env, &["templates"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for name in ["article", "company", "product", "job_posting", "event"] {
        assert!(stdout(&out).contains(name), "{}", stdout(&out));
    }
    let out = ctl(&env, &["templates", "article"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("name: article"),
        "{}",
        stdout(&out)
    );
    let out = ctl(&env, &["templates", "nope"]).await?;
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("unknown template `nope`") && stderr(&out).contains("product"),
        "{}",
        stderr(&out)
    );

    // A project from a template.
    let out = ctl(
        &env,
        &["projects", "create", "news", "--template", "article"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let id: Uuid = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("project "))
        .unwrap_or_else(|| panic!("the first line names the project: {text}"))
        .trim()
        .parse()?;
    assert!(text.contains("article version 1"), "{text}");
    let version: Option<i32> =
        sqlx::query_scalar("SELECT schema_version FROM projects WHERE id = $1")
            .bind(id)
            .fetch_one(&env.services.db)
            .await?;
    assert_eq!(version, Some(1));
    // The name is taken now; an unknown template names the choices.
    let out = ctl(
        &env,
        &["projects", "create", "news", "--template", "article"],
    )
    .await?;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let out = ctl(&env, &["projects", "create", "other", "--template", "nope"]).await?;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("expected one of: article, company"),
        "{}",
        stderr(&out)
    );

    // An invalid schema file: every error with its path, exit 2, nothing created.
    let dir = std::env::temp_dir().join(format!("ctl-schema-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: thing\nbackend: psychic\nfields:\n  price:\n    type: money\n",
    )?;
    let out = ctl(
        &env,
        &[
            "projects",
            "create",
            "bad",
            "--schema",
            bad.to_str().unwrap(),
        ],
    )
    .await?;
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("the schema is invalid"), "{err}");
    assert!(err.contains("backend"), "the backend's path: {err}");
    assert!(err.contains("fields.price"), "the field's path: {err}");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM projects WHERE name = 'bad')")
            .fetch_one(&env.services.db)
            .await?;
    assert!(!exists, "an invalid schema creates no project");
    let out = ctl(
        &env,
        &[
            "projects",
            "create",
            "bad",
            "--schema",
            "/nonexistent/schema.yaml",
        ],
    )
    .await?;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("cannot read schema file"),
        "{}",
        stderr(&out)
    );

    // A schema from stdin (JSON), then the same again (unchanged), then a template.
    let product = template_text("product");
    let out = ctl_in(
        &env,
        &["projects", "create", "shop", "--schema", "-"],
        Some(&product),
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = ctl_in(
        &env,
        &["projects", "schema", "shop", "--set", "-"],
        Some(&product),
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("version 1 unchanged"),
        "{}",
        stdout(&out)
    );
    let out = ctl(
        &env,
        &["projects", "schema", "shop", "--template", "company"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("version 2") && stdout(&out).contains("a new version"),
        "{}",
        stdout(&out)
    );
    let out = ctl(&env, &["projects", "schema", "shop"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("version   2"), "{text}");
    assert!(text.contains("template  company"), "{text}");
    assert!(text.contains("name: company"), "the source text: {text}");
    let out = ctl(
        &env,
        &["projects", "schema", "shop", "--versions", "--json"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["items"].as_array().map(Vec::len), Some(2), "{json}");
    let out = ctl(&env, &["projects", "schema", "shop", "--remove"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = ctl(&env, &["projects", "schema", "shop"]).await?;
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("has no schema"), "{}", stderr(&out));
    let out = ctl(&env, &["projects", "schema", "nowhere"]).await?;
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("project nowhere not found"),
        "{}",
        stderr(&out)
    );

    // Bare `projects` still lists, and so does `projects list`.
    for args in [
        &["projects", "--json"][..],
        &["projects", "list", "--json"][..],
    ] {
        let out = ctl(&env, args).await?;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let names: Vec<&str> = json["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"news") && names.contains(&"shop"), "{json}");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A shipped template's text, as JSON (the files take YAML or JSON).
fn template_text(name: &str) -> String {
    let out = std::process::Command::new(binary("pipelinectl"))
        .args(["templates", name, "--json"])
        .env_remove("PIPELINE_CONFIG")
        .output()
        .expect("pipelinectl runs");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let text = json["text"].as_str().expect("the text").to_owned();
    assert!(text.contains(&format!("name: {name}")), "{text}");
    text
}

#[tokio::test]
async fn records_sources_and_token_caps() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let out = ctl(
        &env,
        &["projects", "create", "shop", "--template", "product"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // A cap of 0 is refused; a positive one is stored on the job.
    let out = ctl(
        &env,
        &[
            "submit",
            "https://example.com/x",
            "--project",
            "shop",
            "--token-cap",
            "0",
        ],
    )
    .await?;
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("model_token_cap is 0"),
        "{}",
        stderr(&out)
    );
    let out = ctl(
        &env,
        &[
            "submit",
            "https://shop.example/cheap",
            "https://shop.example/dear",
            "--project",
            "shop",
            "--token-cap",
            "5000",
            "--json",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let job: Uuid = json["job_id"].as_str().unwrap().parse()?;
    let cap: Option<i64> = sqlx::query_scalar("SELECT model_token_cap FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&env.services.db)
        .await?;
    assert_eq!(cap, Some(5000));
    let ids: Vec<Uuid> = json["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source_id"].as_str().unwrap().parse().unwrap())
        .collect();
    let (cheap, dear) = (ids[0], ids[1]);

    insert_fact(
        &env,
        cheap,
        "product",
        Some("kettle"),
        "name",
        "Kettle".into(),
        "Kettle",
        true,
    )
    .await?;
    insert_fact(
        &env,
        cheap,
        "product",
        Some("kettle"),
        "price",
        9.into(),
        "Only 9 EUR",
        true,
    )
    .await?;
    insert_fact(
        &env,
        dear,
        "product",
        Some("toaster"),
        "name",
        "Toaster".into(),
        "Toaster <Pro>",
        true,
    )
    .await?;
    insert_fact(
        &env,
        dear,
        "product",
        Some("toaster"),
        "price",
        49.into(),
        "49 EUR",
        true,
    )
    .await?;
    insert_fact(
        &env,
        dear,
        "product",
        Some("toaster"),
        "brand",
        "Acme".into(),
        "made by Acme?",
        false,
    )
    .await?;

    let out = ctl(&env, &["records", "shop"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("kettle") && text.contains("toaster"),
        "{text}"
    );
    assert!(text.contains("price=9"), "{text}");
    assert!(
        !text.contains("Acme"),
        "an ungrounded value is no fact: {text}"
    );

    let out = ctl(&env, &["records", "shop", "--where", "price>=10", "--json"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let keys: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["record_key"].as_str())
        .collect();
    assert_eq!(keys, ["toaster"], "{json}");
    let out = ctl(
        &env,
        &[
            "records",
            "shop",
            "--where",
            "price<10",
            "--where",
            "name=KETTLE",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("kettle") && !stdout(&out).contains("toaster"));
    let out = ctl(&env, &["records", "shop", "--source", &dear.to_string()]).await?;
    assert!(stdout(&out).contains("toaster") && !stdout(&out).contains("kettle"));

    // One record: each value with its quote, origin and page.
    let out = ctl(
        &env,
        &["records", "shop", "--entity", "product", "--key", "toaster"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("price = 49"), "{text}");
    assert!(text.contains("\"49 EUR\""), "{text}");
    assert!(text.contains("llm, chunk 0"), "{text}");
    assert!(text.contains("https://shop.example/dear"), "{text}");
    let out = ctl(
        &env,
        &["records", "shop", "--entity", "product", "--key", "nope"],
    )
    .await?;
    assert_eq!(code(&out), 3);

    // Bad input: a condition, a project, a source id.
    let out = ctl(&env, &["records", "shop", "--where", "price~10"]).await?;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no operator"), "{}", stderr(&out));
    let out = ctl(&env, &["records", "shop", "--where", "Price>1"]).await?;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("not a field name"),
        "{}",
        stderr(&out)
    );
    let out = ctl(&env, &["records", "nowhere"]).await?;
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("project nowhere not found"),
        "{}",
        stderr(&out)
    );
    let out = ctl(&env, &["records", "shop", "--source", "x"]).await?;
    assert_eq!(code(&out), 2);

    // A page's values, the ungrounded one apart.
    let out = ctl(&env, &["sources", "show", &dear.to_string()]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let (facts, rest) = text
        .split_once("ungrounded  1 value(s)")
        .unwrap_or_else(|| panic!("an ungrounded list: {text}"));
    assert!(facts.contains("\"Toaster <Pro>\""), "{text}");
    assert!(!facts.contains("Acme"), "{text}");
    assert!(
        rest.contains("brand = Acme") && rest.contains("\"made by Acme?\""),
        "{text}"
    );
    let out = ctl(&env, &["sources", "show", &dear.to_string(), "--json"]).await?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["values"].as_array().map(Vec::len), Some(2), "{json}");
    assert_eq!(
        json["ungrounded_values"].as_array().map(Vec::len),
        Some(1),
        "{json}"
    );

    // The job's stage totals: its cap shows.
    let out = ctl(&env, &["jobs", "show", &job.to_string()]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("model tokens 0 of a cap of 5000"),
        "{}",
        stdout(&out)
    );
    Ok(())
}
