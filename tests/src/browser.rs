//! A real browser for console tests: Debian's `chromium` driven by `chromedriver` over
//! WebDriver (fantoccini). The driver is started on a free loopback port and killed by its
//! pid when the [`Browser`] is dropped.
//!
//! Without chromium the tests fail and name the install command, unless
//! `PIPELINE_SKIP_BROWSER_TESTS=1` says to skip them (then they print that they skipped).
//! Screenshots go to `target/console-screenshots/` (not committed).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use fantoccini::{Client, ClientBuilder};

/// The browser binary (override: `PIPELINE_CHROMIUM`).
fn chromium() -> PathBuf {
    std::env::var_os("PIPELINE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// The driver binary (override: `PIPELINE_CHROMEDRIVER`).
fn chromedriver() -> PathBuf {
    std::env::var_os("PIPELINE_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromedriver".into())
}

/// A headless chromium under chromedriver.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless chromium of `width`×`height`. `Ok(None)` only when
    /// chromium is missing and `PIPELINE_SKIP_BROWSER_TESTS=1` asks to skip.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Option<Self>> {
        let (browser, driver) = (chromium(), chromedriver());
        if !browser.exists() || !driver.exists() {
            if std::env::var("PIPELINE_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
                eprintln!("SKIPPED: no chromium (PIPELINE_SKIP_BROWSER_TESTS=1)");
                return Ok(None);
            }
            anyhow::bail!(
                "the console's browser tests need {} and {}: install them with \
                 `apt-get install -y chromium chromium-driver` (the README's test command \
                 does), or set PIPELINE_SKIP_BROWSER_TESTS=1 to skip these tests",
                browser.display(),
                driver.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", driver.display()))?;
        let mut guard = DriverGuard(Some(child));
        let url = format!("http://127.0.0.1:{port}");
        let caps: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": browser,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--no-first-run",
                        format!("--window-size={width},{height}"),
                    ],
                },
            }))?;
        let mut last = None;
        for _ in 0..100 {
            let hyper = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(hyper)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    let shots =
                        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
                    std::fs::create_dir_all(&shots)?;
                    return Ok(Some(Self {
                        client,
                        driver: guard.0.take().expect("held until here"),
                        shots,
                    }));
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("chromedriver did not start a session: {last:?}")
    }

    /// Saves a PNG of the window as `<name>.png`; returns its path.
    pub async fn shot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        anyhow::ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the WebDriver session (the driver is killed on drop).
    pub async fn close(self) -> anyhow::Result<()> {
        self.client.clone().close().await?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Killed by its own pid; the browser it started exits with it.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Kills the driver if the session never started.
struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
