//! robots.txt, fetched through the same safe client and cached per origin in the process.
//!
//! Rules: a 2xx answer is parsed for our agent token (falling back to `*`); a 4xx (404
//! included) means no rules, everything allowed; a 5xx, a timeout or an unreachable host
//! also allows, cached for at most a minute so the file is asked again soon. (RFC 9309
//! suggests treating an unreachable robots.txt as "disallow all"; allowing keeps a flaky
//! robots.txt from dead-lettering whole sites, and the page fetch itself then fails or not
//! on its own merits.) Concurrent fetches of one origin share one robots.txt request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use texting_robots::Robot;
use tokio::sync::OnceCell;
use url::Url;

use crate::fetch::Fetcher;

/// How long an unreachable robots.txt counts as "allow all" before it is asked again.
const FAILURE_TTL: Duration = Duration::from_secs(60);

/// The rules of one robots.txt for one agent, as the fetcher applies them.
pub struct RobotsRules(Rules);

enum Rules {
    AllowAll,
    Parsed(Box<Robot>),
}

impl RobotsRules {
    /// Rules for `agent` (its product token, e.g. `pipeline-scraper`; `*` groups apply when
    /// no group names it) from a fetched robots.txt `body`, which may be cut, binary or
    /// otherwise not a robots.txt. A body the parser refuses allows everything; its
    /// complaint comes back alongside, for the log.
    pub fn parse(agent: &str, body: &[u8]) -> (Self, Option<String>) {
        match Robot::new(agent, body) {
            Ok(robot) => (Self(Rules::Parsed(Box::new(robot))), None),
            Err(err) => (Self(Rules::AllowAll), Some(err.to_string())),
        }
    }

    /// Rules that allow everything (no robots.txt, or none reachable).
    pub fn allow_all() -> Self {
        Self(Rules::AllowAll)
    }

    /// Whether these rules let the agent fetch `url`.
    pub fn allows(&self, url: &Url) -> bool {
        match &self.0 {
            Rules::AllowAll => true,
            Rules::Parsed(robot) => robot.allowed(url.as_str()),
        }
    }

    /// The `Sitemap:` lines of the file, as written (they apply to every agent).
    pub fn sitemaps(&self) -> &[String] {
        match &self.0 {
            Rules::AllowAll => &[],
            Rules::Parsed(robot) => &robot.sitemaps,
        }
    }
}

struct Entry {
    created: Instant,
    ttl: OnceCell<Duration>,
    rules: OnceCell<Arc<RobotsRules>>,
}

/// A per-origin robots.txt cache with a time to live.
pub struct RobotsCache {
    agent: String,
    ttl: Duration,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

impl RobotsCache {
    /// A cache for the agent token `agent` (e.g. `pipeline-scraper`).
    pub fn new(agent: String, ttl: Duration) -> Self {
        Self {
            agent,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entry(&self, origin: &str) -> Arc<Entry> {
        let mut entries = self.entries.lock().expect("robots cache lock");
        let fresh = |e: &Arc<Entry>| e.ttl.get().is_none_or(|ttl| e.created.elapsed() < *ttl);
        match entries.get(origin) {
            Some(e) if fresh(e) => e.clone(),
            _ => {
                // Drop expired entries now and then so the map does not grow without bound.
                if entries.len() > 10_000 {
                    entries.retain(|_, e| fresh(e));
                }
                let e = Arc::new(Entry {
                    created: Instant::now(),
                    ttl: OnceCell::new(),
                    rules: OnceCell::new(),
                });
                entries.insert(origin.to_owned(), e.clone());
                e
            }
        }
    }

    /// Whether our agent may fetch `url`.
    pub async fn allowed(&self, fetcher: &Fetcher, url: &Url) -> bool {
        self.rules(fetcher, url).await.allows(url)
    }

    /// The rules of `url`'s origin, fetched once per time to live.
    pub async fn rules(&self, fetcher: &Fetcher, url: &Url) -> Arc<RobotsRules> {
        let origin = url.origin().ascii_serialization();
        let entry = self.entry(&origin);
        let rules = entry
            .rules
            .get_or_init(|| async {
                let (rules, ttl) = match fetcher.fetch_robots(url).await {
                    Ok(Some(body)) => {
                        let (rules, refused) = RobotsRules::parse(&self.agent, &body);
                        if let Some(err) = refused {
                            tracing::warn!(%origin, error = %err, "unparsable robots.txt; allowing");
                        }
                        (rules, self.ttl)
                    }
                    Ok(None) => (RobotsRules::allow_all(), self.ttl),
                    Err(err) => {
                        tracing::warn!(%origin, error = %err, "robots.txt unavailable; allowing for now");
                        (RobotsRules::allow_all(), self.ttl.min(FAILURE_TTL))
                    }
                };
                // Only the initialising task sets it; ignoring the error is safe.
                let _ = entry.ttl.set(ttl);
                Arc::new(rules)
            })
            .await;
        rules.clone()
    }
}
