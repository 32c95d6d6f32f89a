//! A crawl seen from outside: its progress, its cancellation, and a page's discovery path
//! back to the start URL.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::crawls::CrawlSettings;
use crate::progress::Progress;
use crate::{Actor, Result, StoreError};

/// The error text of a page that robots.txt refused (the scrape worker's `RobotsDisallowed`).
pub const ROBOTS_ERROR_PREFIX: &str = "disallowed by robots.txt";

/// Distinct URLs a crawl refused, by reason.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Skipped {
    pub scope: i64,
    pub pattern: i64,
    pub depth: i64,
    pub limit: i64,
    pub trap: i64,
    pub nofollow: i64,
    /// Pages robots.txt disallowed (they are sources of the crawl, dead-lettered as
    /// permanent failures, exactly as a submitted URL would be).
    pub robots: i64,
}

/// A crawl's progress.
#[derive(Debug, Clone, Serialize)]
pub struct CrawlProgress {
    pub job_id: Uuid,
    /// The job's status: `queued`, `running`, or an end (`completed`, `failed`,
    /// `completed_with_errors`) once nothing in scope remains.
    pub status: String,
    /// The job ended: every page of the crawl is terminal.
    pub ended: bool,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub settings: CrawlSettings,
    /// Distinct URLs seen: pages plus refused URLs.
    pub discovered: i64,
    /// Pages accepted (sources of the crawl).
    pub pages: i64,
    /// Pages waiting to be fetched (queued or retrying).
    pub queued: i64,
    /// Pages fetched by this crawl.
    pub fetched: i64,
    /// Pages extracted.
    pub extracted: i64,
    /// Pages that failed (dead-lettered, parked, discarded), robots.txt refusals apart.
    pub failed: i64,
    pub skipped: Skipped,
}

/// The progress of crawl `job_id`.
pub async fn progress(pool: &PgPool, job_id: Uuid) -> Result<CrawlProgress> {
    let c = sqlx::query!(
        "SELECT c.start_url, c.scope, c.scope_prefix, c.include_patterns, c.exclude_patterns,
                c.max_depth, c.max_pages, c.follow_nofollow, c.sitemaps, c.max_query_variants,
                c.max_path_depth, c.tracking_params, c.cancelled_at, c.created_at, j.status
           FROM crawls c JOIN jobs j ON j.id = c.job_id WHERE c.job_id = $1",
        job_id,
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("crawl {job_id}")))?;
    let robots_like = format!("%{ROBOTS_ERROR_PREFIX}%");
    let p = sqlx::query!(
        r#"SELECT count(*) AS "pages!",
                  count(*) FILTER (WHERE s.status IN ('queued', 'retrying')) AS "queued!",
                  count(*) FILTER (WHERE s.fetched_at >= $2) AS "fetched!",
                  count(*) FILTER (WHERE s.status = 'extracted') AS "extracted!",
                  count(*) FILTER (WHERE s.status IN ('dead_lettered', 'parked', 'discarded')
                                     AND s.last_error NOT LIKE $3) AS "failed!",
                  count(*) FILTER (WHERE s.status IN ('dead_lettered', 'parked', 'discarded')
                                     AND s.last_error LIKE $3) AS "robots!"
             FROM crawl_pages p JOIN sources s ON s.id = p.source_id
            WHERE p.job_id = $1 AND p.via <> 'redirect'"#,
        job_id,
        c.created_at,
        robots_like,
    )
    .fetch_one(pool)
    .await?;
    let mut skipped = Skipped {
        robots: p.robots,
        ..Skipped::default()
    };
    let reasons = sqlx::query!(
        r#"SELECT reason, count(*) AS "n!" FROM crawl_skips WHERE job_id = $1 GROUP BY reason"#,
        job_id,
    )
    .fetch_all(pool)
    .await?;
    let mut refused = 0;
    for r in reasons {
        refused += r.n;
        match r.reason.as_str() {
            "scope" => skipped.scope = r.n,
            "pattern" => skipped.pattern = r.n,
            "depth" => skipped.depth = r.n,
            "limit" => skipped.limit = r.n,
            "trap" => skipped.trap = r.n,
            _ => skipped.nofollow = r.n,
        }
    }
    let ended = !matches!(c.status.as_str(), "queued" | "running");
    Ok(CrawlProgress {
        job_id,
        status: c.status,
        ended,
        cancelled_at: c.cancelled_at,
        settings: crate::crawls::crawl_settings!(c),
        discovered: p.pages + refused,
        pages: p.pages,
        queued: p.queued,
        fetched: p.fetched,
        extracted: p.extracted,
        failed: p.failed,
        skipped,
    })
}

/// Cancels crawl `job_id`: no link is admitted from now on, and the crawl's own pages that
/// still wait to be fetched are `discarded` (with a `discarded` event saying why), so the
/// job ends once the pages already being fetched are done. Pages the crawl shares with
/// another job are left to that job. Returns how many pages were discarded; cancelling
/// twice discards nothing more.
pub async fn cancel(pool: &PgPool, progress: &Progress, job_id: Uuid, actor: Actor) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let found = sqlx::query_scalar!(
        "UPDATE crawls SET cancelled_at = COALESCE(cancelled_at, now()) WHERE job_id = $1
         RETURNING job_id",
        job_id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Err(StoreError::NotFound(format!("crawl {job_id}")));
    }
    let discarded = sqlx::query!(
        "WITH d AS (
             UPDATE sources s SET status = 'discarded', updated_at = now(),
                    last_error_kind = 'permanent', last_error = 'crawl cancelled'
               FROM crawl_pages p
              WHERE p.job_id = $1 AND p.source_id = s.id AND s.created_by_job_id = $1
                AND s.status IN ('queued', 'retrying')
             RETURNING s.id
         )
         INSERT INTO job_events (job_id, source_id, kind, stage, actor, detail)
         SELECT $1, d.id, 'discarded', 'scrape', $2, $3 FROM d",
        job_id,
        actor.as_str(),
        json!({"reason": "crawl cancelled"}),
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    progress.refresh_after_commit(pool, &[job_id]).await?;
    Ok(discarded)
}

/// One page on a discovery path.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PathStep {
    pub source_id: Uuid,
    pub url: String,
    pub depth: i32,
    /// How the previous page led here: `start`, `link`, `canonical`, `next`, or `sitemap`
    /// (the start page's site listed it in a sitemap).
    pub via: String,
    /// For `via = sitemap`: the sitemap file that listed the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sitemap: Option<String>,
}

/// Most steps a discovery path is followed (a path is at most a crawl's depth long; this
/// bounds the walk whatever the rows say).
pub const MAX_PATH_STEPS: i32 = 1_000;

/// The discovery path of `source_id` in crawl `job_id` (else in the newest crawl that
/// includes it), from the start URL down to the page. Empty when no crawl includes it.
pub async fn discovery_path(
    pool: &PgPool,
    source_id: Uuid,
    job_id: Option<Uuid>,
) -> Result<(Option<Uuid>, Vec<PathStep>)> {
    let job = match job_id {
        Some(j) => Some(j),
        None => {
            sqlx::query_scalar!(
                "SELECT job_id FROM crawl_pages WHERE source_id = $1 AND via <> 'redirect'
              ORDER BY job_id DESC LIMIT 1",
                source_id,
            )
            .fetch_optional(pool)
            .await?
        }
    };
    let Some(job) = job else {
        return Ok((None, Vec::new()));
    };
    let rows = sqlx::query!(
        r#"WITH RECURSIVE up (source_id, url, depth, via, sitemap_url, discovered_from, n) AS (
               SELECT p.source_id, p.url, p.depth, p.via, p.sitemap_url, p.discovered_from, 0
                 FROM crawl_pages p
                WHERE p.job_id = $1 AND p.source_id = $2 AND p.via <> 'redirect'
               UNION ALL
               SELECT p.source_id, p.url, p.depth, p.via, p.sitemap_url, p.discovered_from,
                      up.n + 1
                 FROM up JOIN crawl_pages p
                   ON p.job_id = $1 AND p.source_id = up.discovered_from AND p.via <> 'redirect'
                WHERE up.n < $3
           )
           SELECT source_id AS "source_id!", url AS "url!", depth AS "depth!", via AS "via!",
                  sitemap_url
             FROM up ORDER BY n DESC"#,
        job,
        source_id,
        MAX_PATH_STEPS,
    )
    .fetch_all(pool)
    .await?;
    Ok((
        Some(job),
        rows.into_iter()
            .map(|r| PathStep {
                source_id: r.source_id,
                url: r.url,
                depth: r.depth,
                via: r.via,
                sitemap: r.sitemap_url,
            })
            .collect(),
    ))
}
