//! The console's Webhooks section over plain HTTP against a real API, Postgres and Redis:
//! a project's endpoints, the form that adds one (the secret shown once, on the answer;
//! refused input named and the form kept; the CSRF token required), an endpoint's
//! deliveries with a test button and enable/disable, and a delivery's payload and trail
//! (escaped) with a replay button.

use integration_tests::api::ApiEnv;
use pipeline_store::Actor;
use pipeline_store::webhooks::{self as store, Attempt};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION};
use uuid::Uuid;

use crate::console_http::{client, session};

const FORM: &str = "application/x-www-form-urlencoded";

async fn page(env: &ApiEnv, cookie: &str, path: &str) -> anyhow::Result<(StatusCode, String)> {
    let resp = client()
        .get(format!("{}{path}", env.base))
        .header(COOKIE, cookie)
        .send()
        .await?;
    Ok((resp.status(), resp.text().await?))
}

async fn post(
    env: &ApiEnv,
    cookie: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(client()
        .post(format!("{}{path}", env.base))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, FORM)
        .body(body.to_owned())
        .send()
        .await?)
}

/// `s` percent-encoded for a form body.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn endpoints_are_added_with_the_secret_shown_once_and_deliveries_replayed()
-> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let project: Uuid = pipeline_ops::schemas::create_project(&env.services.db, "shop", None)
        .await?
        .0
        .id;
    let (cookie, csrf) = session(&env).await?;

    // The section is in the navigation; the project picker lists the project.
    let (status, html) = page(&env, &cookie, "/ui/webhooks").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<a href=\"/ui/webhooks\" aria-current=\"page\">Webhooks</a>"));
    assert!(
        html.contains(&format!("<option value=\"{project}\">shop</option>")),
        "{html}"
    );

    // Without the CSRF token nothing is added.
    let form = format!(
        "project={project}&url={}&events=job.completed&events=item.parked",
        enc("https://hooks.example.com/in?a=1&b=<2>")
    );
    let resp = post(&env, &cookie, "/ui/webhooks", &form).await?;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Refused input: the field named, the form kept, nothing added.
    let refused = format!(
        "csrf={csrf}&project={project}&url={}&events=job.failed&description=kept",
        enc("http://10.0.0.7/hook")
    );
    let resp = post(&env, &cookie, "/ui/webhooks", &refused).await?;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await?;
    assert!(
        html.contains("url: 10.0.0.7 is not a public address"),
        "{html}"
    );
    assert!(html.contains("value=\"http://10.0.0.7/hook\""), "{html}");
    assert!(html.contains("value=\"kept\""), "{html}");
    assert!(html.contains("value=\"job.failed\" checked"), "{html}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints")
        .fetch_one(&env.services.db)
        .await?;
    assert_eq!(n, 0);

    // Added: the secret on the answer, once.
    let resp = post(
        &env,
        &cookie,
        "/ui/webhooks",
        &format!("csrf={csrf}&{form}"),
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let html = resp.text().await?;
    let (id, secret): (Uuid, String) =
        sqlx::query_as("SELECT id, secret FROM webhook_endpoints WHERE project_id = $1")
            .bind(project)
            .fetch_one(&env.services.db)
            .await?;
    assert!(
        html.contains(&format!("<code id=\"webhook-secret\">{secret}</code>")),
        "{html}"
    );
    assert!(
        html.contains("https://hooks.example.com/in?a=1&amp;b=%3C2%3E")
            || html.contains("https://hooks.example.com/in?a=1&amp;b=&lt;2&gt;"),
        "the URL, escaped: {html}"
    );
    // Nowhere else.
    for path in [
        "/ui/webhooks?project=shop".to_owned(),
        format!("/ui/webhooks/{id}"),
    ] {
        let (status, html) = page(&env, &cookie, &path).await?;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!html.contains(&secret), "{path}: {html}");
        assert!(
            html.contains("job.completed, item.parked"),
            "{path}: {html}"
        );
    }

    // A test delivery, then the endpoint's deliveries list it.
    let resp = post(
        &env,
        &cookie,
        &format!("/ui/webhooks/{id}/test"),
        &format!("csrf={csrf}"),
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()[LOCATION],
        format!("/ui/webhooks/{id}?done=ping").as_str()
    );
    let ping: Uuid = sqlx::query_scalar("SELECT id FROM webhook_deliveries WHERE endpoint_id = $1")
        .bind(id)
        .fetch_one(&env.services.db)
        .await?;
    let (_, html) = page(&env, &cookie, &format!("/ui/webhooks/{id}?done=ping")).await?;
    assert!(html.contains("is on its way"), "{html}");
    assert!(
        html.contains(&format!("<tr data-delivery=\"{ping}\">")),
        "{html}"
    );
    assert!(html.contains("pending 1"), "{html}");

    // A pending delivery has no replay button, and a forced replay is refused.
    let (_, html) = page(&env, &cookie, &format!("/ui/webhook-deliveries/{ping}")).await?;
    assert!(!html.contains("/replay\""), "{html}");
    assert!(html.contains("Not attempted yet."), "{html}");
    assert!(
        html.contains(&format!("&quot;endpoint_id&quot;: &quot;{id}&quot;")),
        "{html}"
    );
    let resp = post(
        &env,
        &cookie,
        &format!("/ui/webhook-deliveries/{ping}/replay"),
        &format!("csrf={csrf}"),
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    // Attempts as the worker records them: the trail shows them, escaped.
    for (n, status, error) in [
        (1, 500, Some("HTTP 500: <script>alert(1)</script>")),
        (2, 200, None),
    ] {
        store::record_attempt(
            &env.services.db,
            ping,
            &Attempt {
                attempt: n,
                http_status: Some(status),
                latency_ms: 1234,
                error,
                actor: Actor::WebhookWorker,
            },
        )
        .await?;
    }
    let (_, html) = page(&env, &cookie, &format!("/ui/webhook-deliveries/{ping}")).await?;
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(
        html.contains("HTTP 500: &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("1,234 ms"), "{html}");
    assert!(
        html.contains("<span class=\"badge delivered\">delivered</span>"),
        "{html}"
    );
    assert!(
        html.contains(&format!("action=\"/ui/webhook-deliveries/{ping}/replay\"")),
        "{html}"
    );

    // Replayed: pending again, same id, the trail says who.
    let resp = post(
        &env,
        &cookie,
        &format!("/ui/webhook-deliveries/{ping}/replay"),
        "",
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "the token is needed");
    let resp = post(
        &env,
        &cookie,
        &format!("/ui/webhook-deliveries/{ping}/replay"),
        &format!("csrf={csrf}"),
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let to = resp.headers()[LOCATION].to_str()?.to_owned();
    assert_eq!(to, format!("/ui/webhook-deliveries/{ping}?done=replayed"));
    let (_, html) = page(&env, &cookie, &to).await?;
    assert!(html.contains("Replayed"), "{html}");
    assert!(
        html.contains("<span class=\"badge pending\">pending</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"badge replayed\">replayed</span>"),
        "{html}"
    );
    assert!(html.contains("<td>console</td>"), "{html}");

    // Disabled and enabled again.
    let resp = post(
        &env,
        &cookie,
        &format!("/ui/webhooks/{id}/enabled"),
        &format!("csrf={csrf}&enabled=false"),
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&env, &cookie, &format!("/ui/webhooks/{id}")).await?;
    assert!(
        html.contains("<dd id=\"webhook-enabled\">no</dd>"),
        "{html}"
    );
    let enabled: bool = sqlx::query_scalar("SELECT enabled FROM webhook_endpoints WHERE id = $1")
        .bind(id)
        .fetch_one(&env.services.db)
        .await?;
    assert!(!enabled);

    // Unknown ids and projects are console 404 pages.
    for path in [
        format!("/ui/webhooks/{}", Uuid::now_v7()),
        "/ui/webhooks/nope".to_owned(),
        format!("/ui/webhook-deliveries/{}", Uuid::now_v7()),
        "/ui/webhooks?project=nope".to_owned(),
    ] {
        let (status, _) = page(&env, &cookie, &path).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    Ok(())
}
