//! Crawl jobs against a generated loopback site (`integration_tests::site`): the crawl
//! fetches exactly the in-scope pages robots.txt allows, follows a redirect into scope,
//! skips nofollow links, another host and the traps, reads the site's sitemaps (robots.txt
//! `Sitemap:` line, a sitemap index, a gzipped sitemap, `/sitemap.xml`) and fetches the
//! pages only they list, respects the depth and page caps, creates no duplicate sources,
//! fetches no page and no sitemap twice, and ends. The scrape and extraction
//! workers run in process, step by step (`run_next`), against real Postgres and Redis.

use std::time::Duration;

use integration_tests::site::{SITEMAP_FILES, SITEMAP_ONLY_PAGES, Site};
use integration_tests::{TestDb, TestRedis, settings_for};
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::crawl::{self, CrawlRequest};
use pipeline_runner::run_next;
use pipeline_store::crawl_status::{self, CrawlProgress};
use uuid::Uuid;

struct Env {
    site: Site,
    services: Services,
    scrape: scrape_worker::ScrapeHandler,
    extract: extraction_worker::ExtractionHandler,
    _redis: TestRedis,
    _db: TestDb,
}

async fn env(pages: usize) -> anyhow::Result<Env> {
    env_with(pages, |_| {}).await
}

async fn env_with(
    pages: usize,
    tweak: impl FnOnce(&mut pipeline_core::Settings),
) -> anyhow::Result<Env> {
    pipeline_core::install_crypto_provider();
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let mut settings = settings_for(&db, &redis);
    settings.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
    settings.scrape.per_host_min_delay_ms = 0;
    settings.scrape.per_host_max_concurrency = 16;
    settings.queue.max_attempts = 2;
    settings.queue.backoff_base_ms = 50;
    tweak(&mut settings);
    let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
    let scrape = scrape_worker::handler_for(&services)?;
    let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
    let extract = extraction_worker::handler(&services, batcher);
    Ok(Env {
        site: Site::start(pages, Duration::ZERO).await,
        services,
        scrape,
        extract,
        _redis: redis,
        _db: db,
    })
}

impl Env {
    async fn crawl(&self, tweak: impl FnOnce(&mut CrawlRequest)) -> anyhow::Result<Uuid> {
        let mut req = CrawlRequest {
            url: self.site.url("/p/0.html"),
            max_query_variants: Some(5),
            max_path_depth: Some(6),
            ..CrawlRequest::default()
        };
        tweak(&mut req);
        Ok(
            crawl::start(&self.services, &req, pipeline_store::Actor::Cli)
                .await?
                .job_id,
        )
    }

    /// Runs both workers until the crawl's job ends; at most 120 s.
    async fn run_to_end(&self, job: Uuid) -> anyhow::Result<CrawlProgress> {
        integration_tests::site::crawl_to_end(&self.services, &self.scrape, &self.extract, job)
            .await
    }

    /// The paths (with query) fetched, sorted: pages and sitemap files; robots.txt left out.
    /// Fails if any was fetched twice.
    fn fetched_once(&self) -> Vec<String> {
        let hits = self.site.hits();
        let twice: Vec<_> = hits
            .iter()
            .filter(|(p, n)| **n > 1 && p.as_str() != "/robots.txt")
            .collect();
        assert!(twice.is_empty(), "fetched more than once: {twice:?}");
        let mut v: Vec<String> = hits.into_keys().filter(|p| p != "/robots.txt").collect();
        v.sort();
        v
    }

    /// The pages fetched (sitemap files left out), each once.
    fn pages_fetched_once(&self) -> Vec<String> {
        self.fetched_once()
            .into_iter()
            .filter(|p| !SITEMAP_FILES.contains(&p.as_str()))
            .collect()
    }

    /// (sources of the job, distinct URIs among them, max crawl depth).
    async fn sources_of(&self, job: Uuid) -> anyhow::Result<(i64, i64, i32)> {
        let r: (i64, i64, Option<i32>) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT s.uri), max(p.depth)
               FROM crawl_pages p JOIN sources s ON s.id = p.source_id
              WHERE p.job_id = $1 AND p.via <> 'redirect'",
        )
        .bind(job)
        .fetch_one(&self.services.db)
        .await?;
        Ok((r.0, r.1, r.2.unwrap_or(0)))
    }
}

#[tokio::test]
async fn a_crawl_fetches_exactly_the_allowed_in_scope_pages_and_ends() -> anyhow::Result<()> {
    let env = env(500).await?;
    let job = env.crawl(|_| {}).await?;
    let p = env.run_to_end(job).await?;

    let mut want = env.site.expected_full_crawl();
    want.extend(SITEMAP_FILES.iter().map(|f| f.to_string()));
    want.sort();
    assert_eq!(env.fetched_once(), want);
    // 525 pages fetched (512 reached by links, the redirect's target being the page of
    // `/go/landing`, and 13 only through the sitemaps), plus /private/a.html, a source that
    // robots.txt refused.
    assert_eq!(p.pages, 526, "{p:?}");
    assert_eq!(p.fetched, 525, "{p:?}");
    assert_eq!(p.extracted, 525, "{p:?}");
    assert_eq!(p.skipped.robots, 1, "{p:?}");
    assert_eq!(p.skipped.nofollow, 1, "{p:?}");
    // The other host's start page, linked from the start page and listed in the sitemap:
    // one URL, counted once.
    assert_eq!(p.skipped.scope, 1, "{p:?}");
    // The calendar's sixth month and the seventh path segment.
    assert_eq!(p.skipped.trap, 2, "{p:?}");
    assert_eq!(p.skipped.limit, 0, "{p:?}");
    assert_eq!(p.failed, 0, "{p:?}");
    assert_eq!(
        p.status, "completed_with_errors",
        "robots.txt refused one page"
    );
    let (sources, distinct, _) = env.sources_of(job).await?;
    assert_eq!((sources, distinct), (526, 526), "no duplicate sources");

    // The deepest tree page's discovery path runs back to the start URL, one level a step.
    let deepest: Uuid = sqlx::query_scalar("SELECT id FROM sources WHERE uri = $1")
        .bind(env.site.url("/p/300.html"))
        .fetch_one(&env.services.db)
        .await?;
    let (in_job, path) = crawl_status::discovery_path(&env.services.db, deepest, None).await?;
    assert_eq!(in_job, Some(job));
    let urls: Vec<String> = path.iter().map(|s| s.url.clone()).collect();
    let want: Vec<String> = [0, 1, 3, 8, 17, 36, 74, 149, 300]
        .iter()
        .map(|i| env.site.url(&format!("/p/{i}.html")))
        .collect();
    assert_eq!(urls, want);
    assert_eq!(path[0].via, "start");
    assert!(path.iter().enumerate().all(|(d, s)| s.depth == d as i32));

    // A page only the gzipped sitemap lists: found from the start page, via that sitemap.
    let steps = |uri: String| {
        let db = env.services.db.clone();
        async move {
            let id: Uuid = sqlx::query_scalar("SELECT id FROM sources WHERE uri = $1")
                .bind(&uri)
                .fetch_one(&db)
                .await?;
            let (_, path) = crawl_status::discovery_path(&db, id, Some(job)).await?;
            anyhow::Ok(
                path.into_iter()
                    .map(|s| (s.url, s.depth, s.via, s.sitemap))
                    .collect::<Vec<_>>(),
            )
        }
    };
    let start = (env.site.url("/p/0.html"), 0, "start".to_string(), None);
    let gz = Some(env.site.url("/sitemaps/pages.xml.gz"));
    assert_eq!(
        steps(env.site.url("/sitemap-only/3.html")).await?,
        [
            start.clone(),
            (
                env.site.url("/sitemap-only/3.html"),
                1,
                "sitemap".into(),
                gz.clone()
            )
        ]
    );
    // ... and a link of such a page is followed like any other.
    assert_eq!(
        steps(env.site.url("/sitemap-only/next.html")).await?,
        [
            start.clone(),
            (
                env.site.url("/sitemap-only/1.html"),
                1,
                "sitemap".into(),
                gz.clone()
            ),
            (
                env.site.url("/sitemap-only/next.html"),
                2,
                "link".into(),
                None
            ),
        ]
    );
    assert_eq!(
        steps(env.site.url("/sitemap-only/plain.html")).await?,
        [
            start.clone(),
            (
                env.site.url("/sitemap-only/plain.html"),
                1,
                "sitemap".into(),
                Some(env.site.url("/sitemap.xml"))
            )
        ]
    );
    // A page both linked from the start page and listed keeps its link.
    assert_eq!(
        steps(env.site.url("/p/1.html")).await?,
        [start, (env.site.url("/p/1.html"), 1, "link".into(), None)]
    );
    Ok(())
}

#[tokio::test]
async fn a_crawl_without_sitemaps_reads_none() -> anyhow::Result<()> {
    let env = env(500).await?;
    let job = env
        .crawl(|r| {
            r.max_depth = Some(2);
            r.sitemaps = Some(false);
        })
        .await?;
    let p = env.run_to_end(job).await?;
    assert!(!p.settings.sitemaps);
    let fetched = env.fetched_once();
    assert!(
        fetched
            .iter()
            .all(|f| !f.starts_with("/sitemap") && !SITEMAP_FILES.contains(&f.as_str())),
        "{fetched:?}"
    );
    assert!(fetched.contains(&"/p/6.html".to_string()), "{fetched:?}");
    let via_sitemap: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crawl_pages WHERE job_id = $1 AND via = 'sitemap'",
    )
    .bind(job)
    .fetch_one(&env.services.db)
    .await?;
    assert_eq!(via_sitemap, 0);
    Ok(())
}

#[tokio::test]
async fn the_sitemap_bounds_come_from_the_settings() -> anyhow::Result<()> {
    // One file: robots.txt's sitemap index is read, the files it lists are not.
    let env = env_with(100, |s| s.crawl.sitemap_max_files = 1).await?;
    let job = env.crawl(|_| {}).await?;
    env.run_to_end(job).await?;
    let sitemaps: Vec<String> = env
        .fetched_once()
        .into_iter()
        .filter(|f| SITEMAP_FILES.contains(&f.as_str()))
        .collect();
    assert_eq!(sitemaps, ["/sitemap_index.xml"]);
    Ok(())
}

#[tokio::test]
async fn the_depth_cap_stops_the_crawl_at_its_depth() -> anyhow::Result<()> {
    let env = env(500).await?;
    let job = env.crawl(|r| r.max_depth = Some(2)).await?;
    let p = env.run_to_end(job).await?;
    let mut want: Vec<String> = (0..=6).map(|i| format!("/p/{i}.html")).collect();
    want.extend([
        "/calendar?month=1".into(),
        "/calendar?month=2".into(),
        "/deep/a/".into(),
        "/deep/a/a/".into(),
        "/go/landing".into(),
        "/landing.html".into(),
    ]);
    // The sitemaps' pages are at depth 1 (the link of one of them at depth 2), and the
    // sitemap files are read whatever the depth cap above 0.
    want.extend(SITEMAP_ONLY_PAGES.iter().map(|s| s.to_string()));
    want.extend(SITEMAP_FILES.iter().map(|s| s.to_string()));
    want.sort();
    assert_eq!(env.fetched_once(), want);
    let (sources, distinct, max_depth) = env.sources_of(job).await?;
    assert_eq!(max_depth, 2);
    assert_eq!(sources, distinct);
    assert!(p.skipped.depth > 0, "{p:?}");
    Ok(())
}

#[tokio::test]
async fn the_page_cap_bounds_the_crawl() -> anyhow::Result<()> {
    let env = env(500).await?;
    let job = env.crawl(|r| r.max_pages = Some(50)).await?;
    let p = env.run_to_end(job).await?;
    let (sources, distinct, _) = env.sources_of(job).await?;
    assert_eq!((sources, distinct), (50, 50));
    assert_eq!(p.pages, 50, "{p:?}");
    assert!(p.skipped.limit > 0, "{p:?}");
    // Every page fetched once; at most the 50 pages plus a redirect's target.
    let fetched = env.pages_fetched_once();
    assert!(fetched.len() <= 51, "{} fetched", fetched.len());
    Ok(())
}

#[tokio::test]
async fn a_cancelled_crawl_follows_no_more_links_and_ends() -> anyhow::Result<()> {
    let env = env(500).await?;
    let job = env.crawl(|_| {}).await?;
    // Fetch the start page and its children, then cancel.
    for _ in 0..2 {
        run_next(env.services.queue(Family::Scrape), &env.scrape, 16).await?;
    }
    let before = crawl_status::progress(&env.services.db, job).await?;
    let discarded = crawl_status::cancel(
        &env.services.db,
        &env.services.progress,
        job,
        pipeline_store::Actor::Cli,
    )
    .await?;
    assert!(discarded > 0, "{before:?}");
    assert_eq!(
        crawl_status::cancel(
            &env.services.db,
            &env.services.progress,
            job,
            pipeline_store::Actor::Cli
        )
        .await?,
        0
    );
    let p = env.run_to_end(job).await?;
    assert!(p.cancelled_at.is_some());
    assert_eq!(p.pages, before.pages, "no page admitted after the cancel");
    assert!(p.fetched <= before.pages - discarded as i64, "{p:?}");
    Ok(())
}

#[tokio::test]
async fn admitting_the_same_links_twice_adds_nothing() -> anyhow::Result<()> {
    // What a redelivered scrape message does: the same page's links admitted again.
    let env = env(10).await?;
    let job = env.crawl(|_| {}).await?;
    let start: Uuid = sqlx::query_scalar("SELECT source_id FROM crawl_pages WHERE job_id = $1")
        .bind(job)
        .fetch_one(&env.services.db)
        .await?;
    let cands: Vec<pipeline_store::crawls::Candidate> = ["/p/1.html", "/p/2.html"]
        .iter()
        .map(|p| pipeline_store::crawls::Candidate {
            url: env.site.url(p),
            path_key: env.site.url(p),
            depth: 1,
            via: "link".into(),
            sitemap: None,
        })
        .collect();
    let first = pipeline_store::crawls::admit(
        &env.services.db,
        &env.services.progress,
        job,
        start,
        None,
        &cands,
        &[],
    )
    .await?;
    let again = pipeline_store::crawls::admit(
        &env.services.db,
        &env.services.progress,
        job,
        start,
        None,
        &cands,
        &[],
    )
    .await?;
    assert_eq!(first.new_pages, 2);
    assert_eq!(again.new_pages, 0);
    // The second delivery still hands back both waiting pages to enqueue (the first
    // delivery's enqueue may have been lost with its process).
    assert_eq!(again.to_enqueue.len(), 2);
    let (sources, distinct, _) = env.sources_of(job).await?;
    assert_eq!((sources, distinct), (3, 3));
    let pages: i32 = sqlx::query_scalar("SELECT pages FROM crawls WHERE job_id = $1")
        .bind(job)
        .fetch_one(&env.services.db)
        .await?;
    assert_eq!(pages, 3);
    Ok(())
}

#[tokio::test]
async fn a_redirected_page_belongs_to_its_crawl_once() -> anyhow::Result<()> {
    // The start URL redirects; after its first delivery the crawl knows the final URL as a
    // `redirect` row of the same source. A redelivery must still see one crawl, not two
    // (which would discover its links, and read its sitemaps, twice).
    let env = env(10).await?;
    let job = env.crawl(|r| r.url = env.site.url("/go/landing")).await?;
    run_next(env.services.queue(Family::Scrape), &env.scrape, 1).await?;
    let start: Uuid =
        sqlx::query_scalar("SELECT source_id FROM crawl_pages WHERE job_id = $1 AND via = 'start'")
            .bind(job)
            .fetch_one(&env.services.db)
            .await?;
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crawl_pages WHERE job_id = $1 AND source_id = $2")
            .bind(job)
            .bind(start)
            .fetch_one(&env.services.db)
            .await?;
    assert_eq!(rows, 2, "the start row and the redirect row");
    let crawls = pipeline_store::crawls::crawls_of_source(&env.services.db, start).await?;
    assert_eq!(crawls.len(), 1, "{crawls:?}");
    assert_eq!(crawls[0].job_id, job);
    assert_eq!(crawls[0].depth, 0);
    Ok(())
}

#[tokio::test]
async fn a_recrawl_after_changing_10_pages_re_extracts_those_10() -> anyhow::Result<()> {
    let env = env(100).await?;
    let first = env.crawl(|r| r.sitemaps = Some(false)).await?;
    let p = env.run_to_end(first).await?;
    // 100 tree pages, 5 calendar months, 5 deep paths, the redirect and the page behind it.
    assert_eq!(p.extracted, 112, "{p:?}");

    let changed = [3usize, 7, 12, 20, 33, 41, 56, 64, 78, 99];
    env.site.change_pages(&changed);
    env.site.clear_hits();
    let again = crawl::recrawl(&env.services, first, pipeline_store::Actor::Cli)
        .await?
        .job_id;
    assert!(
        matches!(
            crawl::recrawl(&env.services, again, pipeline_store::Actor::Cli).await,
            Err(crawl::RecrawlError::Running(..))
        ),
        "a crawl that has not ended is not repeated"
    );
    let q = env.run_to_end(again).await?;
    assert_eq!((q.pages, q.extracted), (p.pages, p.extracted), "{q:?}");

    let uris = |sql: &'static str| {
        let db = env.services.db.clone();
        async move {
            let mut v: Vec<String> = sqlx::query_scalar(sql).bind(again).fetch_all(&db).await?;
            v.sort();
            anyhow::Ok(v)
        }
    };
    let mut want: Vec<String> = changed
        .iter()
        .map(|i| env.site.url(&format!("/p/{i}.html")))
        .collect();
    want.sort();
    // Exactly the changed pages were extracted again, and their scrape events say so.
    assert_eq!(
        uris(
            "SELECT s.uri FROM job_events e JOIN sources s ON s.id = e.source_id
              WHERE e.job_id = $1 AND e.kind = 'succeeded' AND e.stage = 'extraction'"
        )
        .await?,
        want
    );
    assert_eq!(
        uris(
            "SELECT s.uri FROM job_events e JOIN sources s ON s.id = e.source_id
              WHERE e.job_id = $1 AND e.kind = 'succeeded' AND e.stage = 'scrape'
                AND e.detail->>'content' = 'changed'"
        )
        .await?,
        want
    );
    // Every other page is `unchanged`: the 90 tree pages by a 304 to their ETag, the pages
    // without an ETag by their content hash.
    let unchanged = uris(
        "SELECT s.uri FROM job_events e JOIN sources s ON s.id = e.source_id
          WHERE e.job_id = $1 AND e.kind = 'unchanged'",
    )
    .await?;
    assert_eq!(unchanged.len(), 102, "{unchanged:?}");
    assert!(unchanged.iter().all(|u| !want.contains(u)));
    assert_eq!(env.site.not_modified(), 90);
    let by_hash: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_events WHERE job_id = $1 AND kind = 'unchanged'
            AND detail->>'known_by' = 'the same content hash'",
    )
    .bind(again)
    .fetch_one(&env.services.db)
    .await?;
    assert_eq!(by_hash, 12);
    let recrawl_of: Option<Uuid> =
        sqlx::query_scalar("SELECT recrawl_of FROM crawls WHERE job_id = $1")
            .bind(again)
            .fetch_one(&env.services.db)
            .await?;
    assert_eq!(recrawl_of, Some(first));
    Ok(())
}

/// Makes the schedule of `crawl` due now.
async fn make_due(env: &Env, crawl: Uuid) -> anyhow::Result<()> {
    sqlx::query("UPDATE crawl_schedules SET next_run_at = now() - interval '1 second' WHERE crawl_job_id = $1")
        .bind(crawl)
        .execute(&env.services.db)
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_scheduled_recrawl_starts_once_when_due_and_never_overlaps() -> anyhow::Result<()> {
    use pipeline_store::crawl_schedules;
    let env = env(20).await?;
    let first = env
        .crawl(|r| {
            r.sitemaps = Some(false);
            r.model_token_cap = Some(3000);
        })
        .await?;
    let cap_of = |job: Uuid| {
        sqlx::query_scalar::<_, Option<i64>>("SELECT model_token_cap FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(&env.services.db)
    };

    // A schedule on a running crawl: nothing is due for an hour.
    let s = crawl_schedules::set(&env.services.db, first, 3600).await?;
    assert_eq!((s.every_secs, s.last_job_id, s.runs), (3600, first, 0));
    assert!(s.next_run_at > chrono::Utc::now() + chrono::Duration::seconds(3590));
    assert!(requeue_daemon::schedules::start_due(&env.services).await? == 0);
    // Due, but the crawl it repeats has not ended: still nothing.
    make_due(&env, first).await?;
    assert_eq!(
        requeue_daemon::schedules::start_due(&env.services).await?,
        0
    );
    let p = env.run_to_end(first).await?;

    // Due and ended: two daemons checking at once start one run between them.
    let (a, b) = tokio::join!(
        requeue_daemon::schedules::start_due(&env.services),
        requeue_daemon::schedules::start_due(&env.services)
    );
    assert_eq!(a? + b?, 1, "one run for one due schedule");
    let s = crawl_schedules::get(&env.services.db, first)
        .await?
        .expect("the schedule");
    assert_eq!(s.runs, 1);
    let second = s.last_job_id;
    assert_ne!(second, first);
    assert!(
        s.next_run_at > chrono::Utc::now() + chrono::Duration::seconds(3590),
        "a late run moves the next one a whole interval on: {s:?}"
    );
    let recrawl_of: Option<Uuid> =
        sqlx::query_scalar("SELECT recrawl_of FROM crawls WHERE job_id = $1")
            .bind(second)
            .fetch_one(&env.services.db)
            .await?;
    assert_eq!(recrawl_of, Some(first));
    assert_eq!(
        cap_of(second).await?,
        Some(3000),
        "a run keeps the crawl's cap"
    );

    // While the run goes on, its next time coming starts nothing.
    make_due(&env, first).await?;
    assert_eq!(
        requeue_daemon::schedules::start_due(&env.services).await?,
        0
    );
    let q = env.run_to_end(second).await?;
    assert_eq!((q.pages, q.extracted), (p.pages, p.extracted), "{q:?}");
    // The next run repeats the latest one, as the daemon's loop starts it.
    let cancel = tokio_util::sync::CancellationToken::new();
    let daemon = tokio::spawn(requeue_daemon::schedules::run(
        env.services.clone(),
        cancel.clone(),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let third = loop {
        let s = crawl_schedules::get(&env.services.db, first)
            .await?
            .expect("the schedule");
        if s.runs == 2 {
            break s.last_job_id;
        }
        assert!(std::time::Instant::now() < deadline, "no second run: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cancel.cancel();
    daemon.await?;
    let recrawl_of: Option<Uuid> =
        sqlx::query_scalar("SELECT recrawl_of FROM crawls WHERE job_id = $1")
            .bind(third)
            .fetch_one(&env.services.db)
            .await?;
    assert_eq!(recrawl_of, Some(second));
    assert_eq!(cap_of(third).await?, Some(3000));
    env.run_to_end(third).await?;

    // Removed: due or not, nothing more starts.
    make_due(&env, first).await?;
    let removed = crawl_schedules::delete(&env.services.db, first).await?;
    assert_eq!(removed.map(|s| s.runs), Some(2));
    assert_eq!(
        requeue_daemon::schedules::start_due(&env.services).await?,
        0
    );
    assert!(
        crawl_schedules::delete(&env.services.db, first)
            .await?
            .is_none()
    );
    Ok(())
}
