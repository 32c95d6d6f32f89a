//! Crawls: creating a crawl job with its start page, the crawls a fetched page belongs to,
//! and admitting the links a page discovered (de-duplicated per crawl, under the page and
//! query-variant caps). Progress, cancellation and discovery paths are in
//! [`crate::crawl_status`].
//!
//! Crash safety: the scrape worker admits a page's links *before* it stores the page, so a
//! crash anywhere redelivers a message whose page is still `queued`; the second admission
//! inserts nothing new (the primary key `(job_id, url)` of `crawl_pages`) and hands back
//! every page this parent discovered that is still `queued`, which the worker enqueues again
//! (enqueueing is idempotent by source id). A crawl's job cannot end while a parent is not
//! terminal, and a parent becomes terminal only after its links are sources of the job.

use std::collections::{HashMap, HashSet};

use sqlx::PgPool;
use uuid::Uuid;

use crate::jobs::{CreatedJob, JobSource, ProjectRef, ensure_project_in, refresh_in};
use crate::progress::Progress;
use crate::status::JobStatus;
use crate::{Actor, Result, StoreError};

/// A [`CrawlSettings`] from any query row that selects the `crawls` settings columns under
/// their own names (each `query!` row is a type of its own, so a function cannot take them).
macro_rules! crawl_settings {
    ($row:expr) => {
        $crate::crawls::CrawlSettings {
            start_url: $row.start_url,
            scope: $row.scope,
            scope_prefix: $row.scope_prefix,
            include_patterns: $row.include_patterns,
            exclude_patterns: $row.exclude_patterns,
            max_depth: $row.max_depth,
            max_pages: $row.max_pages,
            follow_nofollow: $row.follow_nofollow,
            sitemaps: $row.sitemaps,
            max_query_variants: $row.max_query_variants,
            max_path_depth: $row.max_path_depth,
            tracking_params: $row.tracking_params,
        }
    };
}
pub(crate) use crawl_settings;

/// A crawl's settings as stored (validated by the caller).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CrawlSettings {
    /// The start URL, normalized.
    pub start_url: String,
    /// `host`, `domain` or `prefix`.
    pub scope: String,
    /// The scope's anchor for `prefix` (the prefix); `None` otherwise.
    pub scope_prefix: Option<String>,
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    pub max_depth: i32,
    pub max_pages: i32,
    pub follow_nofollow: bool,
    pub sitemaps: bool,
    pub max_query_variants: i32,
    pub max_path_depth: i32,
    pub tracking_params: Vec<String>,
}

/// What to create for a crawl.
#[derive(Debug, Clone)]
pub struct NewCrawl<'a> {
    pub project: ProjectRef<'a>,
    pub source_group: Option<&'a str>,
    pub settings: &'a CrawlSettings,
    /// For a recrawl: the crawl it repeats.
    pub recrawl_of: Option<Uuid>,
    /// Who started it (recorded on the start page's `enqueued` event).
    pub actor: Actor,
    /// Most model tokens the crawl's pages may spend in the schema stage
    /// (`jobs.model_token_cap`); a recrawl carries the crawl's own.
    pub model_token_cap: Option<i64>,
    /// `high`, `normal` or `low` (`jobs.priority`); a recrawl carries the crawl's own.
    pub priority: &'a str,
    /// `never`, `auto` or `always` (`jobs.render`); `None`: the scrape worker's default. A
    /// recrawl carries the crawl's own.
    pub render: Option<&'a str>,
}

/// Creates the crawl job, its `crawls` row and its start page (a source of the job at depth
/// 0), in one transaction. The caller enqueues the start page; if it crashes first, the
/// reconciler finds the `queued` source.
pub async fn create(pool: &PgPool, new: &NewCrawl<'_>) -> Result<CreatedJob> {
    let mut tx = pool.begin().await?;
    let created = create_in(&mut tx, new).await?;
    tx.commit().await?;
    Ok(created)
}

/// [`create`] inside the caller's transaction (a scheduled recrawl advances its schedule in
/// the same one).
pub async fn create_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    new: &NewCrawl<'_>,
) -> Result<CreatedJob> {
    let s = new.settings;
    let project_id = match new.project {
        ProjectRef::Id(id) => sqlx::query_scalar!("SELECT id FROM projects WHERE id = $1", id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project {id}")))?,
        ProjectRef::Name(name) => ensure_project_in(tx, name).await?,
    };
    let job_id = Uuid::now_v7();
    let payload = serde_json::to_value(s).expect("crawl settings serialise");
    sqlx::query!(
        "INSERT INTO jobs (id, project_id, type, status, payload, result, model_token_cap,
                           priority)
         VALUES ($1, $2, 'crawl', $3, $4, '{}', $5, $6)",
        job_id,
        project_id,
        JobStatus::Queued.as_str(),
        &payload,
        new.model_token_cap,
        new.priority,
    )
    .execute(&mut **tx)
    .await?;
    crate::job_settings::set_render_in(tx, job_id, new.render).await?;
    sqlx::query!(
        "INSERT INTO crawls (job_id, project_id, start_url, scope, scope_prefix,
                             include_patterns, exclude_patterns, max_depth, max_pages,
                             follow_nofollow, sitemaps, max_query_variants, max_path_depth,
                             tracking_params, pages, recrawl_of)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15)",
        job_id,
        project_id,
        s.start_url,
        s.scope,
        s.scope_prefix,
        &s.include_patterns,
        &s.exclude_patterns,
        s.max_depth,
        s.max_pages,
        s.follow_nofollow,
        s.sitemaps,
        s.max_query_variants,
        s.max_path_depth,
        &s.tracking_params,
        new.recrawl_of,
    )
    .execute(&mut **tx)
    .await?;
    let start = Candidate {
        url: s.start_url.clone(),
        path_key: path_key_of(&s.start_url),
        depth: 0,
        via: "start".into(),
        sitemap: None,
    };
    let mut pages = write_pages(
        tx,
        job_id,
        project_id,
        new.source_group,
        FoundBy::Start(new.actor),
        &[start],
        &[],
    )
    .await?
    .pages;
    refresh_in(tx, job_id).await?;
    let start = pages
        .pop()
        .ok_or_else(|| StoreError::NotFound("start page".into()))?;
    Ok(CreatedJob {
        job_id,
        project_id,
        sources: vec![start],
    })
}

/// How the pages [`write_pages`] writes were found: the crawl's start page, started by an
/// actor, or the links of a fetched page (admitted by the scrape worker that fetched it).
#[derive(Debug, Clone, Copy)]
enum FoundBy {
    Start(Actor),
    Page(Uuid),
}

/// The URL up to its query (for the start URL, which the caller already normalized).
fn path_key_of(url: &str) -> String {
    url.split_once('?').map_or(url, |(p, _)| p).to_string()
}

/// A crawl that a fetched page belongs to, with the page's place in it.
#[derive(Debug, Clone)]
pub struct PageCrawl {
    pub job_id: Uuid,
    pub project_id: Uuid,
    /// The page's depth in this crawl.
    pub depth: i32,
    pub settings: CrawlSettings,
    /// The crawl is a recrawl: its pages are fetched conditionally (see the scrape worker).
    pub recrawl: bool,
}

/// The crawls, neither cancelled nor ended, that include `source_id` as a page. Usually
/// none (a submitted URL) or one. An ended crawl is not reopened when another job fetches
/// one of its pages again. A page's `redirect` row (its final URL) is not a second
/// membership: without that, a redelivered redirected page would be discovered twice per
/// crawl (and a redirected start page would read its sitemaps twice).
pub async fn crawls_of_source(pool: &PgPool, source_id: Uuid) -> Result<Vec<PageCrawl>> {
    let rows = sqlx::query!(
        "SELECT c.job_id, c.project_id, p.depth, c.start_url, c.scope, c.scope_prefix,
                c.include_patterns, c.exclude_patterns, c.max_depth, c.max_pages,
                c.follow_nofollow, c.sitemaps, c.max_query_variants, c.max_path_depth,
                c.tracking_params, c.recrawl_of IS NOT NULL AS \"recrawl!\"
           FROM crawl_pages p JOIN crawls c ON c.job_id = p.job_id JOIN jobs j ON j.id = c.job_id
          WHERE p.source_id = $1 AND p.via <> 'redirect' AND c.cancelled_at IS NULL
            AND j.status IN ('queued', 'running')
          ORDER BY c.job_id",
        source_id,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PageCrawl {
            job_id: r.job_id,
            project_id: r.project_id,
            depth: r.depth,
            recrawl: r.recrawl,
            settings: crawl_settings!(r),
        })
        .collect())
}

/// An ended crawl, as a recrawl repeats it.
#[derive(Debug, Clone)]
pub struct Ended {
    pub project_id: Uuid,
    /// The job's status: a recrawl needs an end (`completed`, `failed`,
    /// `completed_with_errors`).
    pub status: String,
    pub settings: CrawlSettings,
    /// The job's model token cap (`jobs.model_token_cap`), which a recrawl keeps.
    pub model_token_cap: Option<i64>,
    /// The job's priority (`jobs.priority`), which a recrawl keeps.
    pub priority: String,
    /// The job's render mode (`jobs.render`; `None`: the worker's default), which a recrawl
    /// keeps.
    pub render: Option<String>,
}

/// The crawl `job_id` with its settings, its job's status, token cap, priority and render
/// mode, for a recrawl.
pub async fn for_recrawl(conn: &mut sqlx::PgConnection, job_id: Uuid) -> Result<Ended> {
    let r = sqlx::query!(
        "SELECT c.project_id, j.status, c.start_url, c.scope, c.scope_prefix,
                c.include_patterns, c.exclude_patterns, c.max_depth, c.max_pages,
                c.follow_nofollow, c.sitemaps, c.max_query_variants, c.max_path_depth,
                c.tracking_params, j.model_token_cap, j.priority
           FROM crawls c JOIN jobs j ON j.id = c.job_id WHERE c.job_id = $1",
        job_id,
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("crawl {job_id}")))?;
    let render = crate::job_settings::of_job(conn, job_id)
        .await?
        .and_then(|s| s.render);
    Ok(Ended {
        project_id: r.project_id,
        status: r.status,
        model_token_cap: r.model_token_cap,
        priority: r.priority,
        render,
        settings: crawl_settings!(r),
    })
}

/// A link the crawl's rules accepted, before the caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The normalized URL.
    pub url: String,
    /// The URL without its query.
    pub path_key: String,
    pub depth: i32,
    /// `link`, `canonical`, `next`, `redirect`, `sitemap`.
    pub via: String,
    /// For `via = sitemap`: the sitemap file that listed the URL.
    pub sitemap: Option<String>,
}

/// A link the crawl refused, with the reason word (`crawl_skips.reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub url: String,
    pub reason: &'static str,
}

/// What [`decide`] made of a page's candidates.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub accept: Vec<Candidate>,
    pub skip: Vec<Skip>,
}

/// The caps, as a pure function: candidates already in the crawl (`known`) are neither
/// accepted nor skipped; a path whose distinct query variants (`variants`, per path key,
/// counting the bare path) reached `max_query_variants` refuses more as a `trap`; past
/// `remaining` pages every candidate is refused as `limit`. Candidates are taken in order,
/// and the first of duplicates wins.
pub fn decide(
    candidates: &[Candidate],
    known: &HashSet<String>,
    variants: &HashMap<String, i64>,
    mut remaining: i64,
    max_query_variants: i64,
) -> Decision {
    let mut variants = variants.clone();
    let mut seen = HashSet::new();
    let mut out = Decision::default();
    for c in candidates {
        if known.contains(&c.url) || !seen.insert(c.url.clone()) {
            continue;
        }
        let n = variants.entry(c.path_key.clone()).or_insert(0);
        if c.url != c.path_key && *n >= max_query_variants {
            out.skip.push(Skip {
                url: c.url.clone(),
                reason: "trap",
            });
        } else if remaining <= 0 {
            out.skip.push(Skip {
                url: c.url.clone(),
                reason: "limit",
            });
        } else {
            *n += 1;
            remaining -= 1;
            out.accept.push(c.clone());
        }
    }
    out
}

/// What an admission did.
#[derive(Debug, Default)]
pub struct Admitted {
    /// Pages new to the crawl.
    pub new_pages: usize,
    /// Links refused (by the rules before, or the caps here), recorded once per URL.
    pub skipped: usize,
    /// Pages discovered from this parent that wait in `queued` (new ones, and those of an
    /// earlier delivery whose enqueue may have been lost): enqueue them all.
    pub to_enqueue: Vec<JobSource>,
    /// The crawl was cancelled: nothing was admitted.
    pub cancelled: bool,
}

/// Admits the links `parent` discovered for crawl `job_id`: under the crawl's row lock,
/// [`decide`] over the crawl's known URLs and query-variant counts, then the accepted pages
/// become sources of the job (an existing source of the project joins it, re-queued, as a
/// submission does), with their crawl page rows and `enqueued` events; the refusals
/// (`skips` from the rules, plus the caps' own) are recorded once per URL. A URL accepted
/// later (found again at a smaller depth) drops its earlier refusal.
pub async fn admit(
    pool: &PgPool,
    progress: &Progress,
    job_id: Uuid,
    parent: Uuid,
    source_group: Option<&str>,
    candidates: &[Candidate],
    skips: &[Skip],
) -> Result<Admitted> {
    let mut tx = pool.begin().await?;
    let Some(crawl) = sqlx::query!(
        "SELECT project_id, pages, max_pages, max_query_variants, cancelled_at IS NOT NULL AS \"cancelled!\"
           FROM crawls WHERE job_id = $1 FOR UPDATE",
        job_id,
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Err(StoreError::NotFound(format!("crawl {job_id}")));
    };
    if crawl.cancelled {
        return Ok(Admitted {
            cancelled: true,
            ..Admitted::default()
        });
    }
    let urls: Vec<&str> = candidates.iter().map(|c| c.url.as_str()).collect();
    let keys: Vec<&str> = candidates.iter().map(|c| c.path_key.as_str()).collect();
    // A statement of its own, after the lock: a statement that began before the lock was
    // granted would not see the admission it waited for.
    let seen = sqlx::query!(
        r#"SELECT ARRAY(SELECT url FROM crawl_pages WHERE job_id = $1 AND url = ANY($2))
                      AS "known!",
                  COALESCE(array_agg(v.path_key), '{}') AS "keys!",
                  COALESCE(array_agg(v.n), '{}') AS "counts!"
             FROM (SELECT path_key, count(*) AS n FROM crawl_pages
                    WHERE job_id = $1 AND path_key = ANY($3) GROUP BY path_key) v"#,
        job_id,
        &urls as &[&str],
        &keys as &[&str],
    )
    .fetch_one(&mut *tx)
    .await?;
    let known: HashSet<String> = seen.known.into_iter().collect();
    let variants: HashMap<String, i64> = seen.keys.into_iter().zip(seen.counts).collect();
    let decision = decide(
        candidates,
        &known,
        &variants,
        i64::from(crawl.max_pages) - i64::from(crawl.pages),
        i64::from(crawl.max_query_variants),
    );
    let all_skips: Vec<&Skip> = skips.iter().chain(&decision.skip).collect();
    let written = write_pages(
        &mut tx,
        job_id,
        crawl.project_id,
        source_group,
        FoundBy::Page(parent),
        &decision.accept,
        &all_skips,
    )
    .await?;
    let (new_pages, skipped, to_enqueue) = (written.pages.len(), written.skipped, written.waiting);
    tx.commit().await?;
    if new_pages > 0 {
        // In the background, coalesced per job, as for a stored page: waiting here put one
        // job refresh (an aggregate over every page of the crawl) on each page's path, and
        // the crawl cannot look ended meanwhile, since the page admitting these links is
        // not terminal until it is stored (whose refresh comes after this commit).
        progress.refresh_in_background(pool, vec![job_id]);
    }
    Ok(Admitted {
        new_pages,
        skipped,
        to_enqueue,
        cancelled: false,
    })
}

/// Records that `source_id`, a page of crawl `job_id` at `depth`, was fetched from `final_url`
/// after redirects: the final URL joins the crawl's known URLs (pointing at the same source,
/// `via = redirect`), so a later link to it is not fetched again. Idempotent.
pub async fn record_redirect(
    pool: &PgPool,
    job_id: Uuid,
    source_id: Uuid,
    final_url: &str,
    path_key: &str,
    depth: i32,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO crawl_pages (job_id, url, path_key, source_id, depth, discovered_from, via)
         VALUES ($1, $2, $3, $4, $5, $4, 'redirect')
         ON CONFLICT (job_id, url) DO NOTHING",
        job_id,
        final_url,
        path_key,
        source_id,
        depth,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// What [`write_pages`] wrote.
struct Written {
    /// The accepted pages' sources, in the order of `pages`.
    pages: Vec<JobSource>,
    /// Refusals recorded (a URL refused before, or already a page, is not recorded again).
    skipped: usize,
    /// Every page `parent` discovered in this crawl that waits in `queued`: the new ones and
    /// those of an earlier delivery whose enqueue may have been lost, by URL.
    waiting: Vec<JobSource>,
}

/// Writes what an admission decided, in one statement (the crawl's row lock is held from the
/// caller's `FOR UPDATE` to its commit, so every round trip here would hold it longer):
/// accepted pages become sources (upserted per project and URL, the crawl's first discovery
/// recorded on a new one) with their job membership, crawl page rows and `enqueued` events;
/// the crawl's page counter moves on (not for the start page, counted when the crawl is
/// created); earlier refusals of these URLs are cleared; `skips` are recorded once per URL
/// unless already a page. Sources are upserted in URL order, so two admissions sharing URLs
/// lock them in the same order.
async fn write_pages(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    job_id: Uuid,
    project_id: Uuid,
    source_group: Option<&str>,
    found: FoundBy,
    pages: &[Candidate],
    skips: &[&Skip],
) -> Result<Written> {
    let (parent, actor) = match found {
        FoundBy::Start(actor) => (None, actor),
        FoundBy::Page(parent) => (Some(parent), Actor::ScrapeWorker),
    };
    let mut sorted: Vec<&Candidate> = pages.iter().collect();
    sorted.sort_by(|a, b| a.url.cmp(&b.url));
    let ids: Vec<Uuid> = sorted.iter().map(|_| Uuid::now_v7()).collect();
    let urls: Vec<&str> = sorted.iter().map(|c| c.url.as_str()).collect();
    let keys: Vec<&str> = sorted.iter().map(|c| c.path_key.as_str()).collect();
    let depths: Vec<i32> = sorted.iter().map(|c| c.depth).collect();
    let vias: Vec<&str> = sorted.iter().map(|c| c.via.as_str()).collect();
    // '' for none: the array stays text[] of non-nulls, and SQL turns '' back into NULL.
    let sitemaps: Vec<&str> = sorted
        .iter()
        .map(|c| c.sitemap.as_deref().unwrap_or(""))
        .collect();
    let skip_urls: Vec<&str> = skips.iter().map(|s| s.url.as_str()).collect();
    let skip_reasons: Vec<&str> = skips.iter().map(|s| s.reason).collect();
    // One snapshot for every part: `waiting` reads the earlier pages from the table and the
    // new ones from `page`; the refusals cannot name a page accepted here (a URL is either).
    let row = sqlx::query!(
        r#"WITH input AS (
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[],
                                    $6::text[])
                      WITH ORDINALITY AS u(id, url, key, depth, via, sitemap, ord)
           ), ins AS (
               INSERT INTO sources (id, project_id, uri, source_group, status,
                                    created_by_job_id, discovered_from_source_id, crawl_depth)
               SELECT i.id, $8, i.url, $9, 'queued', $7, $10, i.depth FROM input i ORDER BY i.ord
               ON CONFLICT (project_id, uri) DO UPDATE
                  SET status = 'queued', updated_at = now(),
                      source_group = COALESCE(EXCLUDED.source_group, sources.source_group)
               RETURNING id, uri, (xmax = 0) AS created
           ), page AS (
               SELECT ins.id, ins.created, i.url, i.key, i.depth, i.via, i.sitemap, i.ord
                 FROM ins JOIN input i ON i.url = ins.uri
           ), member AS (
               INSERT INTO job_sources (job_id, source_id)
               SELECT $7, id FROM page ON CONFLICT DO NOTHING
           ), crawl_page AS (
               INSERT INTO crawl_pages (job_id, url, path_key, source_id, depth, discovered_from,
                                        via, sitemap_url)
               SELECT $7, url, key, id, depth, $10, via, NULLIF(sitemap, '') FROM page
           ), event AS (
               INSERT INTO job_events (job_id, source_id, kind, stage, actor, detail)
               SELECT $7, id, 'enqueued', 'scrape', $13,
                      jsonb_build_object('url', url, 'created', created, 'depth', depth,
                                         'via', via, 'discovered_from', $10::uuid)
                      || CASE WHEN sitemap = '' THEN '{}'::jsonb
                              ELSE jsonb_build_object('sitemap', sitemap) END
                 FROM page
           ), counted AS (
               UPDATE crawls SET pages = pages + (SELECT count(*) FROM page)::int
                WHERE job_id = $7 AND $10::uuid IS NOT NULL AND EXISTS (SELECT 1 FROM page)
           ), unrefused AS (
               DELETE FROM crawl_skips WHERE job_id = $7 AND url = ANY($2)
           ), refused AS (
               INSERT INTO crawl_skips (job_id, url, reason, discovered_from)
               SELECT $7, r.url, r.reason, $10
                 FROM unnest($11::text[], $12::text[]) AS r(url, reason)
                WHERE NOT EXISTS (SELECT 1 FROM crawl_pages p WHERE p.job_id = $7 AND p.url = r.url)
               ON CONFLICT (job_id, url) DO NOTHING
               RETURNING 1
           ), waiting AS (
               SELECT s.id, s.uri FROM crawl_pages p JOIN sources s ON s.id = p.source_id
                WHERE p.job_id = $7 AND p.discovered_from = $10 AND p.source_id <> $10
                  AND s.status = 'queued'
               UNION
               SELECT id, url FROM page WHERE id IS DISTINCT FROM $10
           )
           SELECT ARRAY(SELECT id FROM page ORDER BY ord) AS "page_ids!",
                  ARRAY(SELECT url FROM page ORDER BY ord) AS "page_urls!",
                  ARRAY(SELECT created FROM page ORDER BY ord) AS "page_created!",
                  ARRAY(SELECT id FROM waiting ORDER BY uri) AS "waiting_ids!",
                  ARRAY(SELECT uri FROM waiting ORDER BY uri) AS "waiting_urls!",
                  (SELECT count(*) FROM refused) AS "skipped!""#,
        &ids,
        &urls as &[&str],
        &keys as &[&str],
        &depths,
        &vias as &[&str],
        &sitemaps as &[&str],
        job_id,
        project_id,
        source_group,
        parent,
        &skip_urls as &[&str],
        &skip_reasons as &[&str],
        actor.as_str(),
    )
    .fetch_one(&mut **tx)
    .await?;
    let by_url: HashMap<&str, (Uuid, bool)> = row
        .page_urls
        .iter()
        .zip(row.page_ids.iter().zip(&row.page_created))
        .map(|(u, (id, created))| (u.as_str(), (*id, *created)))
        .collect();
    let pages = pages
        .iter()
        .map(|c| {
            let (source_id, created) = by_url[c.url.as_str()];
            JobSource {
                source_id,
                url: c.url.clone(),
                created,
            }
        })
        .collect();
    let waiting = row
        .waiting_ids
        .into_iter()
        .zip(row.waiting_urls)
        .map(|(source_id, url)| JobSource {
            source_id,
            url,
            created: false,
        })
        .collect();
    Ok(Written {
        pages,
        skipped: row.skipped as usize,
        waiting,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(url: &str) -> Candidate {
        Candidate {
            url: url.into(),
            path_key: path_key_of(url),
            depth: 1,
            via: "link".into(),
            sitemap: None,
        }
    }

    #[test]
    fn caps_table() {
        let known: HashSet<String> = ["https://e.com/known".to_string()].into();
        let variants: HashMap<String, i64> = [("https://e.com/cal".to_string(), 1)].into();
        let cands = [
            c("https://e.com/known"),
            c("https://e.com/a"),
            c("https://e.com/a"),
            c("https://e.com/cal?m=1"),
            c("https://e.com/cal?m=2"),
            c("https://e.com/cal"),
            c("https://e.com/b"),
            c("https://e.com/c"),
        ];
        let d = decide(&cands, &known, &variants, 4, 2);
        let accepted: Vec<&str> = d.accept.iter().map(|c| c.url.as_str()).collect();
        assert_eq!(
            accepted,
            [
                "https://e.com/a",
                "https://e.com/cal?m=1",
                "https://e.com/cal",
                "https://e.com/b"
            ]
        );
        let skipped: Vec<(&str, &str)> =
            d.skip.iter().map(|s| (s.url.as_str(), s.reason)).collect();
        assert_eq!(
            skipped,
            [
                ("https://e.com/cal?m=2", "trap"),
                ("https://e.com/c", "limit")
            ]
        );
    }

    #[test]
    fn nothing_left_means_every_new_link_is_a_limit_skip() {
        let d = decide(
            &[c("https://e.com/x")],
            &HashSet::new(),
            &HashMap::new(),
            0,
            5,
        );
        assert!(d.accept.is_empty());
        assert_eq!(d.skip[0].reason, "limit");
    }
}
