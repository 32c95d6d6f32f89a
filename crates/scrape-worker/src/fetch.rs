//! The safe, polite fetcher: one HTTP client per process (connection pooling; one more per
//! port that an `allow_private_hosts` entry names, see [`crate::guard`]), redirects
//! followed by hand so every hop is checked, robots.txt, per-host limits, a body cap
//! enforced while streaming, content-type filtering and charset decoding.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline_core::settings::ScrapeSettings;
use reqwest::header::{
    CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, LOCATION, RETRY_AFTER,
};
use reqwest::{Response, StatusCode};
use url::Url;

use extract_core::pdf::{PDF_MEDIA_TYPE, looks_like_pdf};

use crate::FetchError;
use crate::decode::{decode_body, html_title, looks_binary, looks_like_html, media_type};
use crate::guard::{AddressPolicy, Blocked, GuardedResolver};
use crate::politeness::{HostLimiter, HostSlot};
use crate::robots::RobotsCache;

/// How the fetcher behaves (from `[scrape]`).
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Longest a TCP/TLS connect may take.
    pub connect_timeout: Duration,
    /// Longest one request (headers and body) may take.
    pub request_timeout: Duration,
    /// Longest wait for the next bytes of a response.
    pub read_timeout: Duration,
    /// Longest the whole fetch may take: every hop and the body.
    pub fetch_timeout: Duration,
    /// Redirects followed at most.
    pub max_redirects: usize,
    /// Largest body accepted (decompressed bytes).
    pub max_body_bytes: u64,
    /// Media types accepted, lowercased.
    pub allowed_content_types: Vec<String>,
    /// The User-Agent header; its product token (before `/`) is the robots.txt agent.
    pub user_agent: String,
    /// Honour robots.txt.
    pub respect_robots_txt: bool,
    /// How long a host's robots.txt is cached.
    pub robots_cache_ttl: Duration,
    /// Hosts or IPs allowed to resolve to non-public addresses.
    pub allow_private_hosts: Vec<String>,
}

impl From<&ScrapeSettings> for FetchOptions {
    fn from(s: &ScrapeSettings) -> Self {
        Self {
            connect_timeout: Duration::from_millis(s.connect_timeout_ms),
            request_timeout: Duration::from_millis(s.request_timeout_ms),
            read_timeout: Duration::from_millis(s.read_timeout_ms),
            fetch_timeout: Duration::from_millis(s.fetch_timeout_ms),
            max_redirects: s.max_redirects,
            max_body_bytes: s.max_body_bytes,
            allowed_content_types: s
                .allowed_content_types
                .iter()
                .map(|t| media_type(t))
                .collect(),
            user_agent: s.user_agent.clone(),
            respect_robots_txt: s.respect_robots_txt,
            robots_cache_ttl: Duration::from_secs(s.robots_cache_ttl_secs),
            allow_private_hosts: s.allow_private_hosts.clone(),
        }
    }
}

/// A fetched page, ready to store.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where the page was finally fetched from (after redirects).
    pub final_url: Url,
    /// The HTTP status (2xx).
    pub status: u16,
    /// The media type, lowercased, without parameters.
    pub content_type: String,
    /// The body decoded to UTF-8; empty for a binary document (see `raw`).
    pub body: String,
    /// The body byte for byte, for a binary document (a PDF), which text cannot hold.
    pub raw: Option<Vec<u8>>,
    /// The HTML title, if any.
    pub title: Option<String>,
    /// Body size in bytes as received (after decompression).
    pub bytes: usize,
    /// Redirects followed.
    pub redirects: usize,
    /// The response's `ETag`, if any.
    pub etag: Option<String>,
    /// The response's `Last-Modified`, if any.
    pub last_modified: Option<String>,
}

impl Page {
    /// The body as stored: the bytes of a binary document, else the decoded text's bytes.
    pub fn stored_bytes(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or(self.body.as_bytes())
    }
}

/// Fetches pages; cheap to share (`Arc`) across tasks.
pub struct Fetcher {
    /// The client for every port no `allow_private_hosts` entry names.
    client: reqwest::Client,
    /// A client per port that an entry names (`127.0.0.1:8080`), whose resolver applies the
    /// entries of that port: a resolver sees the name, never the port (see `guard`).
    port_clients: HashMap<u16, reqwest::Client>,
    policy: Arc<AddressPolicy>,
    opts: FetchOptions,
    limiter: Option<HostLimiter>,
    robots: Option<RobotsCache>,
}

/// The media type of bytes of unknown kind.
const OCTET_STREAM: &str = "application/octet-stream";

/// robots.txt bodies larger than this are cut (as the major crawlers do with 500 KiB).
const ROBOTS_MAX_BYTES: u64 = 512 * 1024;
/// Redirects followed when fetching robots.txt.
const ROBOTS_MAX_REDIRECTS: usize = 5;

impl Fetcher {
    /// A fetcher; `limiter` is `None` when politeness is disabled.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (e.g. no TLS crypto provider installed).
    pub fn new(opts: FetchOptions, limiter: Option<HostLimiter>) -> Result<Self, FetchError> {
        let policy = Arc::new(
            AddressPolicy::parse(&opts.allow_private_hosts)
                .map_err(|e| FetchError::Client(format!("scrape.allow_private_hosts: {e}")))?,
        );
        let build = |resolver: GuardedResolver| {
            reqwest::Client::builder()
                .user_agent(opts.user_agent.clone())
                .connect_timeout(opts.connect_timeout)
                .timeout(opts.request_timeout)
                .read_timeout(opts.read_timeout)
                // Redirects are followed by hand so each hop passes the address and robots
                // checks.
                .redirect(reqwest::redirect::Policy::none())
                // A proxy would resolve names itself, bypassing the address check.
                .no_proxy()
                .dns_resolver(Arc::new(resolver))
                .build()
                .map_err(|e| FetchError::Client(e.to_string()))
        };
        let client = build(GuardedResolver::new(policy.clone()))?;
        let port_clients = policy
            .ports()
            .into_iter()
            .map(|port| Ok((port, build(GuardedResolver::at_port(policy.clone(), port))?)))
            .collect::<Result<_, FetchError>>()?;
        let robots = opts.respect_robots_txt.then(|| {
            let agent = opts
                .user_agent
                .split('/')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            RobotsCache::new(agent, opts.robots_cache_ttl)
        });
        Ok(Self {
            client,
            port_clients,
            policy,
            opts,
            limiter,
            robots,
        })
    }

    /// The address policy every connection of this fetcher obeys (the browser's guard
    /// proxy obeys the same one).
    pub fn policy(&self) -> Arc<AddressPolicy> {
        self.policy.clone()
    }

    /// The checks of a request for `url` without making it: the address rule, robots.txt
    /// and a politeness slot on its host, held until the returned value is dropped. A
    /// browser's navigation to a page takes this first, so a rendered page costs its host
    /// the same as a fetch.
    ///
    /// # Errors
    /// A refused address, a disallowing robots.txt, or no slot within the wait bound.
    pub async fn page_slot(&self, url: &Url) -> Result<Option<HostSlot>, FetchError> {
        self.policy.check_url(url)?;
        if let Some(cache) = &self.robots
            && !cache.allowed(self, url).await
        {
            return Err(FetchError::RobotsDisallowed(url.to_string()));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        match &self.limiter {
            Some(limiter) => Ok(Some(limiter.acquire(&host).await?)),
            None => Ok(None),
        }
    }

    /// Fetches `url`: checks, robots.txt, politeness, redirects, content type, body cap,
    /// decoding, all within `fetch_timeout`. Every failure is classified (see
    /// [`FetchError::is_transient`]).
    pub async fn fetch(&self, url: &str) -> Result<Page, FetchError> {
        self.fetch_if_changed(url, None, None)
            .await?
            .ok_or_else(|| {
                FetchError::Malformed("unexpected status 304 to an unconditional request".into())
            })
    }

    /// [`Self::fetch`] with `If-None-Match: etag` and `If-Modified-Since: last_modified`
    /// (each when given and a valid header value): `Ok(None)` when the server answers
    /// `304 Not Modified` to such a request.
    pub async fn fetch_if_changed(
        &self,
        url: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<Option<Page>, FetchError> {
        let mut conditions = HeaderMap::new();
        if let Some(v) = etag.and_then(|v| HeaderValue::from_str(v).ok()) {
            conditions.insert(IF_NONE_MATCH, v);
        }
        if let Some(v) = last_modified.and_then(|v| HeaderValue::from_str(v).ok()) {
            conditions.insert(IF_MODIFIED_SINCE, v);
        }
        // The per-request timeout restarts on every redirect hop and a read timeout only
        // bounds silence, so a server trickling a byte at a time, or a chain of slow
        // redirects, is bounded here as a whole.
        match tokio::time::timeout(
            self.opts.fetch_timeout,
            self.fetch_unbounded(url, &conditions),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(format!(
                "the whole fetch took over {} ms",
                self.opts.fetch_timeout.as_millis()
            ))),
        }
    }

    async fn fetch_unbounded(
        &self,
        url: &str,
        conditions: &HeaderMap,
    ) -> Result<Option<Page>, FetchError> {
        let url = Url::parse(url).map_err(|e| FetchError::InvalidUrl(format!("{url}: {e}")))?;
        let (resp, final_url, slot, redirects) = self
            .follow(url, self.opts.max_redirects, true, conditions)
            .await?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED && !conditions.is_empty() {
            return Ok(None);
        }
        let header_text = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header_text(ETAG);
        let last_modified = header_text(LAST_MODIFIED);
        if !status.is_success() {
            return Err(status_error(&resp));
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // A server that does not know a PDF's type often sends `application/octet-stream`:
        // such a body is read when its URL names a PDF, and kept when it starts like one.
        let maybe_pdf = header_type
            .as_deref()
            .is_some_and(|ct| media_type(ct) == OCTET_STREAM)
            && self.allows(PDF_MEDIA_TYPE)
            && final_url.path().to_ascii_lowercase().ends_with(".pdf");
        // Refuse a wrong type before downloading it.
        if let Some(ct) = &header_type {
            let mt = media_type(ct);
            if !self.allows(&mt) && !maybe_pdf {
                return Err(FetchError::ContentType(mt));
            }
        }
        let bytes = read_capped(resp, self.opts.max_body_bytes).await?;
        drop(slot);
        let (content_type, header) = match header_type {
            Some(_) if maybe_pdf && looks_like_pdf(&bytes) => {
                (PDF_MEDIA_TYPE.to_owned(), PDF_MEDIA_TYPE.to_owned())
            }
            Some(_) if maybe_pdf => {
                return Err(FetchError::ContentType(format!(
                    "{OCTET_STREAM} without a %PDF- header"
                )));
            }
            Some(ct) => (media_type(&ct), ct),
            // No Content-Type: accept only what clearly is HTML, if HTML is allowed.
            None if looks_like_html(&bytes) => ("text/html".to_owned(), "text/html".to_owned()),
            None => return Err(FetchError::ContentType("none declared".into())),
        };
        if !self.allows(&content_type) {
            return Err(FetchError::ContentType(content_type));
        }
        if content_type == PDF_MEDIA_TYPE {
            // A PDF is bytes, not text: decoding would lose it. Kept as received, for the
            // extraction worker's PDF reader, which bounds what a hostile one costs.
            if !looks_like_pdf(&bytes) {
                return Err(FetchError::ContentType(format!(
                    "{PDF_MEDIA_TYPE} without a %PDF- header"
                )));
            }
            return Ok(Some(Page {
                final_url,
                status: status.as_u16(),
                content_type,
                title: None,
                bytes: bytes.len(),
                body: String::new(),
                raw: Some(bytes),
                redirects,
                etag,
                last_modified,
            }));
        }
        let is_html = content_type.contains("html");
        if looks_binary(&bytes, &header) {
            return Err(FetchError::ContentType(format!(
                "binary content declared as {content_type}"
            )));
        }
        let body = decode_body(&bytes, &header, is_html);
        let title = if is_html { html_title(&body) } else { None };
        Ok(Some(Page {
            final_url,
            status: status.as_u16(),
            content_type,
            title,
            bytes: bytes.len(),
            body,
            raw: None,
            redirects,
            etag,
            last_modified,
        }))
    }

    /// The client for `url`'s port: one whose resolver applies that port's entries.
    fn client_for(&self, url: &Url) -> &reqwest::Client {
        url.port_or_known_default()
            .and_then(|port| self.port_clients.get(&port))
            .unwrap_or(&self.client)
    }

    /// Whether a media type is among the accepted ones.
    fn allows(&self, media_type: &str) -> bool {
        self.opts
            .allowed_content_types
            .iter()
            .any(|t| t == media_type)
    }

    /// Sends GET requests from `start`, following up to `max_redirects` redirects, each hop
    /// checked (scheme, address, robots.txt when `robots`) and made within a host slot.
    /// Returns the first non-redirect response, where it came from, its slot and the hop count.
    async fn follow(
        &self,
        start: Url,
        max_redirects: usize,
        robots: bool,
        headers: &HeaderMap,
    ) -> Result<(Response, Url, Option<HostSlot>, usize), FetchError> {
        let mut url = start;
        let mut hops = 0;
        loop {
            self.policy.check_url(&url)?;
            if robots && let Some(cache) = &self.robots {
                // Boxed: fetching robots.txt goes through `follow` again.
                let allowed = Box::pin(cache.allowed(self, &url)).await;
                if !allowed {
                    return Err(FetchError::RobotsDisallowed(url.to_string()));
                }
            }
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            let slot = match &self.limiter {
                Some(limiter) => Some(limiter.acquire(&host).await?),
                None => None,
            };
            let resp = self
                .client_for(&url)
                .get(url.clone())
                .headers(headers.clone())
                .send()
                .await
                .map_err(classify)?;
            let status = resp.status();
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                return Ok((resp, url, slot, hops));
            }
            let next = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| FetchError::Malformed(format!("{status} without a Location")))
                .and_then(|loc| {
                    url.join(loc)
                        .map_err(|e| FetchError::Malformed(format!("bad Location {loc:?}: {e}")))
                })?;
            drop(resp);
            drop(slot);
            hops += 1;
            if hops > max_redirects {
                return Err(FetchError::TooManyRedirects(max_redirects));
            }
            url = next;
        }
    }

    /// The `Sitemap:` lines of the robots.txt of `url`'s origin: from the robots.txt cache
    /// when robots.txt is honoured (no second request), else read for this alone. An
    /// unavailable or unparsable robots.txt names no sitemaps.
    pub async fn robots_sitemaps(&self, url: &Url) -> Vec<String> {
        if let Some(cache) = &self.robots {
            return cache.rules(self, url).await.sitemaps().to_vec();
        }
        match self.fetch_robots(url).await {
            Ok(Some(body)) => crate::robots::RobotsRules::parse("*", &body)
                .0
                .sitemaps()
                .to_vec(),
            Ok(None) => Vec::new(),
            Err(err) => {
                tracing::warn!(%url, error = %err, "robots.txt unavailable; no sitemaps from it");
                Vec::new()
            }
        }
    }

    /// Fetches a sitemap file with the same checks as a page (address, robots.txt,
    /// politeness, redirects, the whole-fetch timeout) but any content type, reading at most
    /// `cap` bytes (decoded from any `Content-Encoding`; a `.gz` file's own gzip is left to
    /// the caller). Returns the bytes and whether the body was cut at `cap`.
    pub async fn fetch_sitemap(&self, url: &Url, cap: u64) -> Result<(Vec<u8>, bool), FetchError> {
        let fetch = async {
            let (resp, _, slot, _) = self
                .follow(
                    url.clone(),
                    self.opts.max_redirects,
                    true,
                    &HeaderMap::new(),
                )
                .await?;
            if !resp.status().is_success() {
                return Err(status_error(&resp));
            }
            let mut body = read_capped_truncating(resp, cap.saturating_add(1)).await?;
            drop(slot);
            let cut = body.len() as u64 > cap;
            body.truncate(cap as usize);
            Ok((body, cut))
        };
        match tokio::time::timeout(self.opts.fetch_timeout, fetch).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(format!(
                "the sitemap fetch took over {} ms",
                self.opts.fetch_timeout.as_millis()
            ))),
        }
    }

    /// Fetches `/robots.txt` of `url`'s origin: `Ok(Some(body))` on 2xx, `Ok(None)` on
    /// 4xx (no rules), `Err` on anything else (the caller decides what that means).
    pub(crate) async fn fetch_robots(&self, origin: &Url) -> Result<Option<Vec<u8>>, FetchError> {
        let robots_url = origin
            .join("/robots.txt")
            .map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
        let (resp, _, slot, _) = self
            .follow(robots_url, ROBOTS_MAX_REDIRECTS, false, &HeaderMap::new())
            .await?;
        let status = resp.status();
        if status.is_client_error() {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(status_error(&resp));
        }
        let body = read_capped_truncating(resp, ROBOTS_MAX_BYTES).await?;
        drop(slot);
        Ok(Some(body))
    }
}

/// The error for a non-success final response.
fn status_error(resp: &Response) -> FetchError {
    let status = resp.status().as_u16();
    if (300..400).contains(&status) {
        return FetchError::Malformed(format!("unexpected status {status}"));
    }
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    FetchError::Status {
        status,
        retry_after,
    }
}

/// Retry-After as delta-seconds or an HTTP date; capped at a day.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let secs = match value.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => {
            // The three date forms HTTP allows, through the crate hyper already uses.
            let when = httpdate::parse_http_date(value).ok()?;
            when.duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
                .as_secs()
        }
    };
    Some(Duration::from_secs(secs.min(86_400)))
}

/// Reads the body, failing as soon as it grows past `cap` (the declared length is checked
/// first, so an honest server's oversized body is not downloaded at all).
async fn read_capped(mut resp: Response, cap: u64) -> Result<Vec<u8>, FetchError> {
    if let Some(len) = declared_length(&resp)
        && len > cap
    {
        return Err(FetchError::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(classify)? {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(FetchError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads at most `cap` bytes and drops the rest (robots.txt: a cut file still has rules).
async fn read_capped_truncating(mut resp: Response, cap: u64) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(classify)? {
        let room = (cap as usize).saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() as u64 >= cap {
            break;
        }
    }
    Ok(body)
}

fn declared_length(resp: &Response) -> Option<u64> {
    // With compression the header counts encoded bytes; the decoded body is what is capped,
    // so the header is only trusted when the body is not encoded.
    if resp
        .headers()
        .contains_key(reqwest::header::CONTENT_ENCODING)
    {
        return None;
    }
    resp.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Classifies an HTTP client error: a refused address found in the error chain, an
/// answer that is not HTTP we accept (a header bomb: more or larger headers than the
/// client parses; garbage instead of a status line), a timeout, or a connection problem.
fn classify(err: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(blocked) = e.downcast_ref::<Blocked>() {
            return FetchError::BlockedAddress(blocked.0.clone());
        }
        // The same server sends the same headers next time: permanent, not a retry.
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_parse()
        {
            let what = if h.is_parse_too_large() {
                "response headers too large"
            } else {
                "invalid HTTP response"
            };
            return FetchError::Malformed(format!("{what}: {}", error_chain(&err)));
        }
        source = e.source();
    }
    let text = error_chain(&err);
    if err.is_timeout() {
        FetchError::Timeout(text)
    } else {
        FetchError::Connect(text)
    }
}

/// The error and its causes, joined (reqwest's own message omits the cause).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Time since `start` in seconds, for histograms.
pub(crate) fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("bogus"), None);
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        // A date a minute and a half ahead: waited for, give or take the clock.
        let ahead = std::time::SystemTime::now() + Duration::from_secs(90);
        let date = httpdate::HttpDate::from(ahead).to_string();
        let waited = parse_retry_after(&date).expect("a date parses");
        assert!((80..=90).contains(&waited.as_secs()), "{waited:?}");
    }
}
