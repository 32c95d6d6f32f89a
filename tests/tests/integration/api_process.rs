//! The `pipeline-api` binary: serves with a key on the configured address, refuses a public
//! bind without a key (exit 2, clear message), and exits 0 on SIGTERM.

use std::time::Duration;

use integration_tests::api::{ApiEnv, wait_for};
use integration_tests::{binary, http_client, redis_url};

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn command(env: &ApiEnv, bind: &str, key: Option<&str>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary("pipeline-api"));
    cmd.env("DATABASE_URL", &env.db.url)
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .env("PIPELINE__API__BIND", bind)
        .env_remove("PIPELINE_CONFIG")
        .env_remove("PIPELINE_API_KEY")
        .kill_on_drop(true);
    if let Some(k) = key {
        cmd.env("PIPELINE_API_KEY", k);
    }
    cmd
}

#[tokio::test]
async fn refuses_public_bind_without_key() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let out = command(&env, "0.0.0.0:0", None).output().await?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no API key is configured"), "{err}");
    Ok(())
}

#[tokio::test]
async fn serves_with_key_and_stops_on_sigterm() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let port = free_port()?;
    let mut child = command(&env, &format!("127.0.0.1:{port}"), Some("k1,k2")).spawn()?;
    let client = http_client();
    let base = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(60), || async {
        Ok(client
            .get(format!("{base}/health"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success()))
    })
    .await?;
    for (key, want) in [(Some("k2"), 200), (Some("k3"), 401), (None, 401)] {
        let mut req = client.get(format!("{base}/api/v1/dlq/stats"));
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        assert_eq!(req.send().await?.status().as_u16(), want, "key {key:?}");
    }
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert_eq!(status.code(), Some(0));
    Ok(())
}
