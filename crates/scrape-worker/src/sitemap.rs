//! Reading a site's sitemaps for a crawl: the `Sitemap:` lines of its robots.txt and
//! `/sitemap.xml`, following sitemap indexes, decompressing gzipped sitemaps, all bounded.
//!
//! The worker that handles a crawl's start page reads them (see `discover`), through the
//! same fetcher as pages: the address policy, robots.txt and per-host politeness apply to
//! every sitemap request. Sitemap files are not sources: nothing about them is stored but
//! the pages they list (and the log lines and metrics below).
//!
//! Bounds ([`SitemapLimits`], documented in `docs/crawl.md`): files fetched, nesting of
//! indexes, bytes read per file, bytes after decompression per file (a gzip bomb costs at
//! most that), locations read in all, and time. Each file is fetched at most once per
//! reading, so an index that lists itself or another index that lists it back ends. A file
//! that fails (HTTP error, timeout, corrupt gzip, not a sitemap) is logged and skipped; the
//! others still count.

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::time::{Duration, Instant};

use extract_core::sitemap::{self, Sitemap, SitemapKind};
use url::Url;

use crate::fetch::Fetcher;

/// Bounds of one reading of a site's sitemaps (`[crawl]` `sitemap_*` settings; the defaults
/// are the shipped configuration's).
#[derive(Debug, Clone)]
pub struct SitemapLimits {
    /// Sitemap files fetched at most, indexes included.
    pub max_files: usize,
    /// Levels of sitemap indexes followed: the files robots.txt names and `/sitemap.xml`
    /// are level 0; a file listed by an index one level deeper; an index at this level is
    /// not followed.
    pub max_index_depth: u32,
    /// Bytes read of one file as received (after any `Content-Encoding`).
    pub max_fetch_bytes: u64,
    /// Bytes of one file after gunzip. The protocol allows 50 MB; a larger file is read up
    /// to this and the locations before the cut are kept.
    pub max_xml_bytes: u64,
    /// Locations (page URLs) read in all.
    pub max_locs: usize,
    /// Time the whole reading may take; files not fetched by then are left.
    pub budget: Duration,
}

impl Default for SitemapLimits {
    fn default() -> Self {
        Self {
            max_files: 50,
            max_index_depth: 2,
            max_fetch_bytes: 10 * 1024 * 1024,
            max_xml_bytes: 10 * 1024 * 1024,
            max_locs: 50_000,
            budget: Duration::from_secs(120),
        }
    }
}

impl SitemapLimits {
    /// The bounds of the `[crawl]` settings.
    pub fn from_settings(c: &pipeline_core::settings::CrawlingSettings) -> Self {
        Self {
            max_files: c.sitemap_max_files,
            max_index_depth: c.sitemap_max_index_depth,
            max_fetch_bytes: c.sitemap_max_file_bytes,
            max_xml_bytes: c.sitemap_max_unzipped_bytes,
            max_locs: c.sitemap_max_urls,
            budget: Duration::from_secs(c.sitemap_budget_secs),
        }
    }
}

/// What a reading did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Files fetched (successfully or not).
    pub files: usize,
    /// Files that could not be fetched or decompressed.
    pub failed: usize,
    /// Files that were neither a urlset, an index nor a text sitemap.
    pub not_sitemaps: usize,
    /// Files cut at a byte bound, or truncated at the location bound.
    pub cut: usize,
    /// Sitemap URLs not fetched: not http(s), on another host than the index naming them,
    /// too deep, or left when a bound was reached.
    pub ignored_files: usize,
    /// Page locations handed to the caller.
    pub locs: usize,
    /// Why the reading stopped before every file was read, if it did.
    pub stopped: Option<&'static str>,
}

/// Decompresses `bytes` when they are gzip, known by their magic number whatever the file's
/// name or content type says (a `.gz` sitemap, or one served gzipped without saying so),
/// and leaves anything else as it is. At most `cap` bytes come out, so a gzip bomb costs
/// `cap`; the `bool` says the output was cut. A gzip stream that breaks off (a file cut at
/// the fetch bound) keeps what came out before the break, as cut.
///
/// # Errors
/// A stream that is not gzip after its magic number, with nothing decompressed.
pub fn gunzip_capped(bytes: Vec<u8>, cap: u64) -> std::io::Result<(Vec<u8>, bool)> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok((bytes, false));
    }
    let mut out = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(&bytes[..])
        .take(cap.saturating_add(1))
        .read_to_end(&mut out);
    match read {
        Ok(_) => {
            let cut = out.len() as u64 > cap;
            out.truncate(cap as usize);
            Ok((out, cut))
        }
        Err(_) if !out.is_empty() => {
            out.truncate(cap as usize);
            Ok((out, true))
        }
        Err(e) => Err(e),
    }
}

/// Decompresses (when gzip) and parses one fetched file, off the async threads.
async fn read_file(
    bytes: Vec<u8>,
    limits: &SitemapLimits,
    max_locs: usize,
) -> Result<(Sitemap, bool), String> {
    let cap = limits.max_xml_bytes;
    tokio::task::spawn_blocking(move || -> Result<(Sitemap, bool), String> {
        let (xml, cut) = gunzip_capped(bytes, cap).map_err(|e| format!("corrupt gzip: {e}"))?;
        let text = String::from_utf8_lossy(&xml);
        Ok((sitemap::parse(&text, max_locs), cut))
    })
    .await
    .map_err(|e| format!("parsing the sitemap panicked: {e}"))?
}

fn is_http(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

/// Reads the sitemaps of `site`'s host: the `Sitemap:` lines of its robots.txt (wherever
/// they point: the site's owner names them), then `/sitemap.xml` on the host; an index's
/// entries are followed when they are on the index's own host (as the protocol requires).
/// Each page location goes to `keep(loc, sitemap_url)`, in document order, which answers
/// whether to go on (false once the caller has all it can use, e.g. the crawl's page cap).
pub async fn read_sitemaps(
    fetcher: &Fetcher,
    site: &Url,
    limits: &SitemapLimits,
    mut keep: impl FnMut(&str, &Url) -> bool + Send,
) -> Report {
    let deadline = Instant::now() + limits.budget;
    let mut report = Report::default();
    let mut queue: VecDeque<(Url, u32)> = VecDeque::new();
    let mut seen: HashSet<String> = HashSet::new();
    for line in fetcher.robots_sitemaps(site).await {
        match Url::parse(line.trim()) {
            Ok(url) if is_http(&url) => {
                if seen.insert(url.to_string()) {
                    queue.push_back((url, 0));
                }
            }
            _ => {
                tracing::warn!(sitemap = %line, "robots.txt names a sitemap that is not an http(s) URL; ignored");
                report.ignored_files += 1;
            }
        }
    }
    if let Ok(url) = site.join("/sitemap.xml")
        && seen.insert(url.to_string())
    {
        queue.push_back((url, 0));
    }
    while let Some((url, depth)) = queue.pop_front() {
        if report.files >= limits.max_files || Instant::now() >= deadline {
            report.stopped = Some(if report.files >= limits.max_files {
                "sitemap file cap reached"
            } else {
                "sitemap time budget spent"
            });
            report.ignored_files += 1 + queue.len();
            tracing::warn!(
                site = %site, left = 1 + queue.len(), reason = report.stopped,
                "sitemaps left unread"
            );
            break;
        }
        report.files += 1;
        let bytes = match fetcher.fetch_sitemap(&url, limits.max_fetch_bytes).await {
            Ok((bytes, cut)) => {
                if cut {
                    report.cut += 1;
                    tracing::warn!(sitemap = %url, bytes = limits.max_fetch_bytes, "sitemap larger than the fetch bound; cut");
                }
                bytes
            }
            Err(err) => {
                report.failed += 1;
                metrics::counter!("pipeline_crawl_sitemap_files_total", "outcome" => "failed")
                    .increment(1);
                tracing::warn!(sitemap = %url, error = %err, "sitemap unavailable; skipped");
                continue;
            }
        };
        let room = limits.max_locs.saturating_sub(report.locs);
        let (parsed, cut) = match read_file(bytes, limits, room).await {
            Ok(read) => read,
            Err(err) => {
                report.failed += 1;
                metrics::counter!("pipeline_crawl_sitemap_files_total", "outcome" => "failed")
                    .increment(1);
                tracing::warn!(sitemap = %url, error = %err, "sitemap unreadable; skipped");
                continue;
            }
        };
        if cut || parsed.truncated {
            report.cut += 1;
        }
        tracing::info!(
            sitemap = %url,
            kind = parsed.kind.as_str(),
            locs = parsed.locs.len(),
            cut_at_bytes = cut,
            truncated = parsed.truncated,
            malformed = parsed.malformed.as_deref(),
            "sitemap read"
        );
        match parsed.kind {
            SitemapKind::NotASitemap => {
                report.not_sitemaps += 1;
                metrics::counter!("pipeline_crawl_sitemap_files_total", "outcome" => "not_a_sitemap")
                    .increment(1);
            }
            SitemapKind::Index => {
                metrics::counter!("pipeline_crawl_sitemap_files_total", "outcome" => "index")
                    .increment(1);
                if depth >= limits.max_index_depth {
                    report.ignored_files += parsed.locs.len();
                    tracing::warn!(sitemap = %url, depth, "sitemap index nested too deep; its entries are not followed");
                    continue;
                }
                for loc in &parsed.locs {
                    let child = url.join(loc).ok().filter(|c| {
                        is_http(c)
                            && c.host_str()
                                .zip(url.host_str())
                                .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
                    });
                    match child {
                        Some(child) => {
                            if seen.insert(child.to_string()) {
                                queue.push_back((child, depth + 1));
                            }
                        }
                        None => {
                            report.ignored_files += 1;
                            tracing::warn!(sitemap = %url, entry = %loc, "sitemap index entry not http(s) or on another host; ignored");
                        }
                    }
                }
            }
            SitemapKind::UrlSet | SitemapKind::Text => {
                metrics::counter!("pipeline_crawl_sitemap_files_total", "outcome" => "urlset")
                    .increment(1);
                for loc in &parsed.locs {
                    report.locs += 1;
                    if !keep(loc, &url) {
                        report.stopped = Some("the crawl has all the pages it can take");
                        report.ignored_files += queue.len();
                        return report;
                    }
                }
                if report.locs >= limits.max_locs {
                    report.stopped = Some("sitemap location cap reached");
                    report.ignored_files += queue.len();
                    tracing::warn!(site = %site, max_locs = limits.max_locs, "sitemap location cap reached");
                    return report;
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_is_known_by_its_magic_and_bounded() {
        let xml = b"<urlset><url><loc>https://e.com/a</loc></url></urlset>".to_vec();
        assert_eq!(
            gunzip_capped(xml.clone(), 1024).unwrap(),
            (xml.clone(), false)
        );
        assert_eq!(
            gunzip_capped(gzip(&xml), 1024).unwrap(),
            (xml.clone(), false)
        );

        // A bomb: 64 MiB of zeros in about 64 KiB; only the cap comes out.
        let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
        assert!(bomb.len() < 200 * 1024, "{}", bomb.len());
        let (out, cut) = gunzip_capped(bomb, 1024 * 1024).unwrap();
        assert_eq!(out.len(), 1024 * 1024);
        assert!(cut);

        // A stream cut short keeps what came out before the cut.
        let mut long = String::from("<urlset>");
        for i in 0..2_000 {
            long += &format!("<url><loc>https://e.com/page/{i}</loc></url>");
        }
        let packed = gzip(long.as_bytes());
        let (out, cut) = gunzip_capped(packed[..packed.len() / 2].to_vec(), 1 << 20).unwrap();
        assert!(cut);
        let parsed = sitemap::parse(&String::from_utf8_lossy(&out), 10_000);
        assert!(parsed.locs.len() > 100, "{}", parsed.locs.len());
        assert_eq!(parsed.locs[0], "https://e.com/page/0");

        // Garbage after the magic number is an error, not a panic.
        assert!(gunzip_capped(vec![0x1f, 0x8b, 0, 0, 0], 1024).is_err());
    }
}
