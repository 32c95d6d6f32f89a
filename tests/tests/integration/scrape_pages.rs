//! The fixture page server answers what its routes promise.

use integration_tests::pages::PageServer;
use reqwest::StatusCode;

#[tokio::test]
async fn fixture_routes_answer_as_documented() -> anyhow::Result<()> {
    let server = PageServer::start().await;
    pipeline_core::install_crypto_provider();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    let ok = client.get(server.url("/ok/7")).send().await?;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.text().await?.contains("<title>Page 7</title>"));

    let missing = client.get(server.url("/status/404")).send().await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    server.set_failures("/flaky", 2);
    for expected in [500, 500, 200] {
        let r = client.get(server.url("/flaky")).send().await?;
        assert_eq!(r.status().as_u16(), expected);
    }
    assert_eq!(server.hits("/flaky"), 3);

    let hop = client.get(server.url("/loop/1")).send().await?;
    assert_eq!(hop.status(), StatusCode::FOUND);
    assert_eq!(hop.headers()["location"], "/loop/2");

    let huge = client.get(server.url("/huge/300000")).send().await?;
    assert_eq!(huge.bytes().await?.len(), 300_000);

    let bin = client.get(server.url("/binary")).send().await?;
    assert_eq!(bin.headers()["content-type"], "application/octet-stream");

    let robots = client.get(server.url("/robots.txt")).send().await?;
    assert!(robots.text().await?.contains("Disallow: /private/"));
    server.set_robots(None);
    let robots = client.get(server.url("/robots.txt")).send().await?;
    assert_eq!(robots.status(), StatusCode::NOT_FOUND);

    let limited = client.get(server.url("/rate-limited/3")).send().await?;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "3");
    Ok(())
}
