//! Link discovery for crawls: the links of a fetched page that belongs to a crawl become
//! sources of the crawl's job, enqueued like any scrape message (so robots.txt and per-host
//! politeness apply to them exactly as to submitted URLs).
//!
//! The handler calls [`discover`] after the fetch and before it stores the page: while the
//! page is not stored its message is redelivered after a crash, and a second discovery
//! inserts nothing new but enqueues again whatever this page discovered that is still
//! `queued` (see `pipeline_store::crawls`).
//!
//! For a crawl's start page (depth 0) of a crawl that reads sitemaps, the same step reads
//! the start host's sitemaps ([`crate::sitemap`]) and admits their pages with the page's
//! links, in one admission: links first (so a page both linked and listed keeps its link),
//! then the sitemaps' pages at depth 1, `via = sitemap`, judged by the same rules. The
//! crash-safety argument above covers them unchanged: they are discovered from the start
//! page, before it is stored; a redelivery reads the sitemaps again and admits nothing new.

use extract_core::links::{PageLinks, links};
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::crawl::rules::{Rules, path_key};
use pipeline_ops::crawl::rules_of;
use pipeline_ops::messages::{SourceMessage, render_of_column};
use pipeline_runner::Failure;
use pipeline_store::crawls::{self, Candidate, PageCrawl, Skip};
use url::Url;
use uuid::Uuid;

use crate::fetch::{Fetcher, Page};
use crate::sitemap::{SitemapLimits, read_sitemaps};

/// Reads the links of a fetched page, off the async threads (parsing is CPU work and the
/// DOM is not `Send`). Non-HTML pages and pages over the guard's limits have none (the
/// extraction worker reports the latter).
async fn page_links(page: &Page) -> PageLinks {
    if !matches!(
        page.content_type.as_str(),
        "text/html" | "application/xhtml+xml"
    ) {
        return PageLinks::default();
    }
    let body = page.body.clone();
    tokio::task::spawn_blocking(move || {
        match extract_core::html::check(&body, &extract_core::Limits::default()) {
            Ok(checked) => links(&checked),
            Err(e) => {
                tracing::warn!(error = %e, "page too expensive to read links from");
                PageLinks::default()
            }
        }
    })
    .await
    .unwrap_or_default()
}

/// What the rules make of one page's links for one crawl: candidates (before the caps) and
/// refusals, each URL once.
pub fn judge_links(
    rules: &Rules,
    page_url: &Url,
    found: &PageLinks,
    depth: i32,
) -> (Vec<Candidate>, Vec<Skip>) {
    let base = found
        .base
        .as_deref()
        .and_then(|b| page_url.join(b).ok())
        .unwrap_or_else(|| page_url.clone());
    let mut seen = std::collections::HashSet::new();
    let (mut accept, mut skip) = (Vec::new(), Vec::new());
    for link in &found.links {
        let Some(url) = rules.normalize(&base, &link.href) else {
            metrics::counter!("pipeline_crawl_links_total", "outcome" => "unusable").increment(1);
            continue;
        };
        if !seen.insert(url.to_string()) {
            continue;
        }
        match rules.judge(&url, depth.max(0) as u32, link.nofollow) {
            Ok(()) => accept.push(Candidate {
                path_key: path_key(&url),
                url: url.into(),
                depth,
                via: link.kind.as_str().into(),
                sitemap: None,
            }),
            Err(reason) => {
                metrics::counter!("pipeline_crawl_links_total", "outcome" => reason.as_str())
                    .increment(1);
                skip.push(Skip {
                    url: url.into(),
                    reason: reason.as_str(),
                });
            }
        }
    }
    (accept, skip)
}

/// Reads the sitemaps of `site`'s host for a crawl's start page and judges their pages by
/// the crawl's rules at depth 1: candidates and refusals, each URL once and none of `seen`
/// (the URLs the page's links already gave, which keep their link). Reading stops once there are as many
/// candidates as the crawl's page cap.
pub async fn sitemap_pages(
    fetcher: &Fetcher,
    rules: &Rules,
    site: &Url,
    max_pages: usize,
    limits: &SitemapLimits,
    seen: &mut std::collections::HashSet<String>,
) -> (Vec<Candidate>, Vec<Skip>) {
    let (mut accept, mut skip) = (Vec::new(), Vec::new());
    if rules.max_depth < 1 {
        tracing::info!("max_depth 0: the crawl's sitemaps are not read");
        return (accept, skip);
    }
    let mut unusable = 0usize;
    let report = read_sitemaps(fetcher, site, limits, |loc, sitemap| {
        let Some(url) = rules.normalize(sitemap, loc) else {
            unusable += 1;
            return true;
        };
        if seen.insert(url.to_string()) {
            match rules.judge(&url, 1, false) {
                Ok(()) => accept.push(Candidate {
                    path_key: path_key(&url),
                    url: url.into(),
                    depth: 1,
                    via: "sitemap".into(),
                    sitemap: Some(sitemap.to_string()),
                }),
                Err(reason) => skip.push(Skip {
                    url: url.into(),
                    reason: reason.as_str(),
                }),
            }
        }
        accept.len() < max_pages
    })
    .await;
    metrics::counter!("pipeline_crawl_links_total", "outcome" => "unusable")
        .increment(unusable as u64);
    tracing::info!(
        site = %site,
        files = report.files,
        failed = report.failed,
        not_sitemaps = report.not_sitemaps,
        cut = report.cut,
        ignored_files = report.ignored_files,
        locs = report.locs,
        candidates = accept.len(),
        refused = skip.len(),
        unusable,
        stopped = report.stopped,
        "sitemaps read"
    );
    (accept, skip)
}

/// The crawls that include `source_id` as a page (usually none), for [`discover`]. The
/// handler asks while the page is being fetched, so a crawled page's links wait for no
/// extra round trip.
pub async fn crawls_of(services: &Services, source_id: Uuid) -> Result<Vec<PageCrawl>, Failure> {
    crawls::crawls_of_source(&services.db, source_id)
        .await
        .map_err(|e| Failure::transient(format!("loading the page's crawls: {e}")))
}

/// Admits the links of `page` (the page of `source_id`) into every crawl of `page_crawls`
/// (from [`crawls_of`]), and enqueues the pages they add; for a crawl's start page, also the
/// pages of the start host's sitemaps when the crawl reads them. A no-op without crawls.
pub async fn discover(
    services: &Services,
    fetcher: &Fetcher,
    source_id: Uuid,
    source_group: Option<&str>,
    page: &Page,
    page_crawls: &[PageCrawl],
) -> Result<(), Failure> {
    if page_crawls.is_empty() {
        return Ok(());
    }
    let found = page_links(page).await;
    for pc in page_crawls {
        discover_in(services, fetcher, source_id, source_group, page, &found, pc).await?;
    }
    Ok(())
}

async fn discover_in(
    services: &Services,
    fetcher: &Fetcher,
    source_id: Uuid,
    source_group: Option<&str>,
    page: &Page,
    found: &PageLinks,
    pc: &PageCrawl,
) -> Result<(), Failure> {
    let db = &services.db;
    let rules = match rules_of(&pc.settings) {
        Ok(r) => r,
        Err(e) => {
            // Settings are checked when the crawl starts; only a row edited by hand gets
            // here. The page itself is fine, so it is stored; its links are not followed.
            tracing::error!(job_id = %pc.job_id, error = %e, "crawl settings do not compile");
            return Ok(());
        }
    };
    // Links resolve against where the page really came from. A redirect that left the
    // crawl's scope gives no links: the page behind it is not part of the crawl.
    let page_url = match rules.normalize(&page.final_url, page.final_url.as_str()) {
        Some(u) => u,
        None => return Ok(()),
    };
    if page.redirects > 0 {
        if !rules.in_scope(&page_url) {
            tracing::info!(final_url = %page_url, "redirected out of the crawl's scope; links not followed");
            return Ok(());
        }
        crawls::record_redirect(
            db,
            pc.job_id,
            source_id,
            page_url.as_str(),
            &path_key(&page_url),
            pc.depth,
        )
        .await
        .map_err(|e| Failure::transient(format!("recording the redirect: {e}")))?;
    }
    let (mut candidates, mut skips) = judge_links(&rules, &page_url, found, pc.depth + 1);
    if pc.depth == 0 && pc.settings.sitemaps {
        // Only accepted links shadow a sitemap's entry: a URL the page refused (a nofollow
        // link, say) that the site's sitemap lists is the owner asking for it after all.
        let mut seen: std::collections::HashSet<String> =
            candidates.iter().map(|c| c.url.clone()).collect();
        seen.insert(page_url.to_string());
        let max_pages = usize::try_from(pc.settings.max_pages).unwrap_or(0);
        let limits = SitemapLimits::from_settings(&services.settings.crawl);
        let (more, refused) =
            sitemap_pages(fetcher, &rules, &page_url, max_pages, &limits, &mut seen).await;
        candidates.extend(more);
        skips.extend(refused);
    }
    let admitted = crawls::admit(
        db,
        &services.progress,
        pc.job_id,
        source_id,
        source_group,
        &candidates,
        &skips,
    )
    .await
    .map_err(|e| Failure::transient(format!("admitting discovered links: {e}")))?;
    metrics::counter!("pipeline_crawl_links_total", "outcome" => "admitted")
        .increment(admitted.new_pages as u64);
    if admitted.cancelled {
        tracing::info!(job_id = %pc.job_id, "crawl cancelled; links not followed");
        return Ok(());
    }
    // The crawl's pages wait in its project's lane at the crawl's priority, and are rendered
    // as the crawl asked (its job's settings, read in one statement).
    let settings = pipeline_store::job_settings::of_job(&services.db, pc.job_id)
        .await
        .map_err(|e| Failure::transient(format!("reading the crawl's priority and render: {e}")))?
        .unwrap_or_default();
    let priority = settings.priority.parse().unwrap_or_default();
    let render = render_of_column(settings.render.as_deref());
    let messages: Vec<_> = admitted
        .to_enqueue
        .iter()
        .map(|s| {
            // A recrawl's pages carry no URL: the worker then reads the source's validators
            // before it fetches (see the handler).
            let m = SourceMessage {
                source_id: s.source_id,
                job_id: Some(pc.job_id),
                url: (!pc.recrawl).then(|| s.url.clone()),
                project_id: Some(pc.project_id),
                priority,
                render,
            };
            (m.id(), m.lane(), m.body())
        })
        .collect();
    if !messages.is_empty() {
        services
            .queue(Family::Scrape)
            .enqueue_bulk_in(&messages)
            .await
            .map_err(|e| Failure::transient(format!("enqueueing discovered pages: {e}")))?;
    }
    tracing::info!(
        job_id = %pc.job_id,
        links = found.links.len(),
        new_pages = admitted.new_pages,
        skipped = admitted.skipped,
        enqueued = messages.len(),
        "links discovered"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use extract_core::links::{Link, LinkKind};
    use pipeline_ops::crawl::rules::{RulesSpec, ScopeKind};

    use super::*;

    #[test]
    fn a_page_links_become_candidates_and_skips_once_each() {
        let rules = Rules::new(&RulesSpec {
            scope: ScopeKind::Host,
            anchor: "site.test",
            include: &[],
            exclude: &["*/private/*".into()],
            max_depth: 3,
            max_path_depth: 4,
            follow_nofollow: false,
            tracking_params: &["utm_*".into()],
        })
        .unwrap();
        let link = |href: &str, kind, nofollow| Link {
            href: href.into(),
            kind,
            nofollow,
        };
        let found = PageLinks {
            base: Some("/docs/".into()),
            links: vec![
                link("a.html", LinkKind::Anchor, false),
                link("a.html?utm_source=x#f", LinkKind::Anchor, false),
                link("/docs/b.html", LinkKind::Next, false),
                link("/p.html", LinkKind::Canonical, false),
                link("/private/x", LinkKind::Anchor, false),
                link("https://other.test/", LinkKind::Anchor, false),
                link("/n.html", LinkKind::Anchor, true),
                link("/1/2/3/4/5", LinkKind::Anchor, false),
                link("mailto:x@site.test", LinkKind::Anchor, false),
            ],
        };
        let page = Url::parse("http://site.test/index.html").unwrap();
        let (cands, skips) = judge_links(&rules, &page, &found, 1);
        let got: Vec<(&str, &str)> = cands
            .iter()
            .map(|c| (c.url.as_str(), c.via.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("http://site.test/docs/a.html", "link"),
                ("http://site.test/docs/b.html", "next"),
                ("http://site.test/p.html", "canonical"),
            ]
        );
        let skipped: Vec<(&str, &str)> = skips.iter().map(|s| (s.url.as_str(), s.reason)).collect();
        assert_eq!(
            skipped,
            [
                ("http://site.test/private/x", "pattern"),
                ("https://other.test/", "scope"),
                ("http://site.test/n.html", "nofollow"),
                ("http://site.test/1/2/3/4/5", "trap"),
            ]
        );
        // One level deeper than the cap: every in-scope link is a depth skip.
        let (cands, skips) = judge_links(&rules, &page, &found, 4);
        assert!(cands.is_empty());
        assert!(skips.iter().any(|s| s.reason == "depth"));
    }
}
