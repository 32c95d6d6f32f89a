//! What a crawl follows: URL normalization, scope, include/exclude patterns, depth and path
//! traps. Pure functions of a crawl's settings and a link, so every rule is tested here
//! without a server; the page cap and the query-variant cap need the crawl's counts and are
//! decided in the store ([`pipeline_store::crawls::admit`]) under the crawl's row lock.

use regex::Regex;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::submit::MAX_URL_LEN;

/// Which URLs belong to a crawl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// The start URL's host exactly (any scheme and port): the default.
    #[default]
    Host,
    /// Any host under the start URL's registrable domain (`docs.example.co.uk` and
    /// `www.example.co.uk` share `example.co.uk`), by the public suffix list.
    Domain,
    /// URLs that start with a prefix (by default the start URL up to its last `/`).
    Prefix,
}

impl ScopeKind {
    /// The word stored in `crawls.scope`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Domain => "domain",
            Self::Prefix => "prefix",
        }
    }

    /// Parses a stored word.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Host, Self::Domain, Self::Prefix]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Why a link is not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Outside the crawl's scope.
    Scope,
    /// Refused by an include or exclude pattern.
    Pattern,
    /// Deeper than the crawl's maximum depth.
    Depth,
    /// The crawl's page cap was reached.
    Limit,
    /// A trap cap: too many path segments, or too many query variants of one path.
    Trap,
    /// Marked `rel=nofollow` and the crawl does not follow those.
    Nofollow,
}

impl SkipReason {
    /// The word stored in `crawl_skips.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scope => "scope",
            Self::Pattern => "pattern",
            Self::Depth => "depth",
            Self::Limit => "limit",
            Self::Trap => "trap",
            Self::Nofollow => "nofollow",
        }
    }
}

/// A crawl's rules, compiled once per page.
#[derive(Debug, Clone)]
pub struct Rules {
    scope: ScopeKind,
    /// For [`ScopeKind::Host`]: the host; [`ScopeKind::Domain`]: the registrable domain;
    /// [`ScopeKind::Prefix`]: the prefix.
    anchor: String,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    /// Links deeper than this are skipped (the start URL is depth 0).
    pub max_depth: u32,
    /// Links with more path segments than this are skipped as a trap.
    pub max_path_depth: u32,
    /// Follow links marked `rel=nofollow`.
    pub follow_nofollow: bool,
    tracking: Vec<String>,
}

/// Compiles one include or exclude pattern: a glob over the whole normalized URL, where `*`
/// matches any run of characters (`/` included) and every other character is itself
/// (`*/private/*`, `https://example.com/docs/*`). Any string is a valid pattern, so a
/// request can only be refused for a pattern's length, never for its syntax.
///
/// # Errors
/// Only when the compiled expression exceeds its size bound (a pattern far longer than a
/// request may carry).
pub fn compile_pattern(p: &str) -> Result<Regex, String> {
    let body: Vec<String> = p.split('*').map(regex::escape).collect();
    regex::RegexBuilder::new(&format!("^{}$", body.join(".*")))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| format!("pattern `{p}` is too large: {e}"))
}

/// The registrable domain of a host (`a.b.example.co.uk` → `example.co.uk`); an IP address
/// or a bare suffix is its own domain.
pub fn registrable_domain(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&host).map_or(host.clone(), str::to_string)
}

/// The scope anchor for a start URL: its host, its registrable domain, or the prefix (given,
/// else the start URL up to its last `/`).
///
/// # Errors
/// When the start URL has no host, or lies outside the given prefix.
pub fn scope_anchor(start: &Url, scope: ScopeKind, prefix: Option<&str>) -> Result<String, String> {
    let host = start.host_str().ok_or("the start URL has no host")?;
    match scope {
        ScopeKind::Host => Ok(host.to_ascii_lowercase()),
        ScopeKind::Domain => Ok(registrable_domain(host)),
        ScopeKind::Prefix => {
            let prefix = match prefix {
                Some(p) => p.to_string(),
                None => {
                    let s = start.as_str();
                    let path_start = s.len() - start[url::Position::BeforePath..].len();
                    let cut = s[path_start..]
                        .find(['?', '#'])
                        .map_or(s.len(), |i| path_start + i);
                    let slash = s[..cut].rfind('/').unwrap_or(cut);
                    s[..=slash.min(s.len() - 1)].to_string()
                }
            };
            if !start.as_str().starts_with(&prefix) {
                return Err(format!(
                    "the start URL {start} is outside the prefix {prefix}"
                ));
            }
            Ok(prefix)
        }
    }
}

/// Inputs of [`Rules::new`].
#[derive(Debug, Clone)]
pub struct RulesSpec<'a> {
    pub scope: ScopeKind,
    /// From [`scope_anchor`].
    pub anchor: &'a str,
    pub include: &'a [String],
    pub exclude: &'a [String],
    pub max_depth: u32,
    pub max_path_depth: u32,
    pub follow_nofollow: bool,
    pub tracking_params: &'a [String],
}

impl Rules {
    /// Compiles a crawl's rules.
    ///
    /// # Errors
    /// A pattern that does not compile.
    pub fn new(spec: &RulesSpec<'_>) -> Result<Self, String> {
        let compile = |ps: &[String]| -> Result<Vec<Regex>, String> {
            ps.iter().map(|p| compile_pattern(p)).collect()
        };
        Ok(Self {
            scope: spec.scope,
            anchor: spec.anchor.to_string(),
            include: compile(spec.include)?,
            exclude: compile(spec.exclude)?,
            max_depth: spec.max_depth,
            max_path_depth: spec.max_path_depth,
            follow_nofollow: spec.follow_nofollow,
            tracking: spec.tracking_params.to_vec(),
        })
    }

    /// Resolves `href` against `base` and normalizes it: http(s) only, no credentials,
    /// scheme and host lowercased and default ports dropped (the URL parser does both), no
    /// fragment, tracking parameters removed (a name ending in `*` is a prefix), an empty
    /// query dropped. `None` for anything that cannot be a page of a crawl (`mailto:`,
    /// `javascript:`, a malformed or over-long URL).
    pub fn normalize(&self, base: &Url, href: &str) -> Option<Url> {
        if href.chars().any(char::is_control) {
            return None;
        }
        let mut url = base.join(href).ok()?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none_or(str::is_empty)
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return None;
        }
        url.set_fragment(None);
        if let Some(q) = url.query().map(str::to_owned) {
            let kept: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| !self.is_tracking(k))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let removed = kept.len() != url::form_urlencoded::parse(q.as_bytes()).count();
            if kept.is_empty() {
                url.set_query(None);
            } else if removed {
                url.query_pairs_mut().clear().extend_pairs(kept);
            }
        }
        // A host written with a trailing dot is the same host.
        if let Some(h) = url
            .host_str()
            .filter(|h| h.ends_with('.'))
            .map(str::to_string)
        {
            url.set_host(Some(h.trim_end_matches('.'))).ok()?;
        }
        (url.as_str().len() <= MAX_URL_LEN).then_some(url)
    }

    fn is_tracking(&self, key: &str) -> bool {
        self.tracking.iter().any(|t| match t.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == t,
        })
    }

    /// Whether `url` is in the crawl's scope.
    pub fn in_scope(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        match self.scope {
            ScopeKind::Host => host.eq_ignore_ascii_case(&self.anchor),
            ScopeKind::Domain => registrable_domain(host) == self.anchor,
            ScopeKind::Prefix => url.as_str().starts_with(&self.anchor),
        }
    }

    /// Judges a normalized link found at `depth` (its parent's depth plus one): `Ok` when
    /// the crawl may accept it (the page and query-variant caps still apply), else why not.
    /// Checked in this order: nofollow, scope, patterns, path depth, depth.
    pub fn judge(&self, url: &Url, depth: u32, nofollow: bool) -> Result<(), SkipReason> {
        if nofollow && !self.follow_nofollow {
            return Err(SkipReason::Nofollow);
        }
        if !self.in_scope(url) {
            return Err(SkipReason::Scope);
        }
        let s = url.as_str();
        if self.exclude.iter().any(|r| r.is_match(s))
            || (!self.include.is_empty() && !self.include.iter().any(|r| r.is_match(s)))
        {
            return Err(SkipReason::Pattern);
        }
        if path_depth(url) > self.max_path_depth {
            return Err(SkipReason::Trap);
        }
        if depth > self.max_depth {
            return Err(SkipReason::Depth);
        }
        Ok(())
    }
}

/// Non-empty path segments of a URL (`/a//b/` has 2).
pub fn path_depth(url: &Url) -> u32 {
    url.path_segments()
        .map_or(0, |s| s.filter(|p| !p.is_empty()).count())
        .try_into()
        .unwrap_or(u32::MAX)
}

/// The URL without its query: the query-variant cap counts distinct queries per this key.
pub fn path_key(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(scope: ScopeKind, anchor: &str) -> Rules {
        Rules::new(&RulesSpec {
            scope,
            anchor,
            include: &[],
            exclude: &["*/private/*".to_string()],
            max_depth: 3,
            max_path_depth: 4,
            follow_nofollow: false,
            tracking_params: &["utm_*".to_string(), "gclid".to_string()],
        })
        .unwrap()
    }

    #[test]
    fn normalization_table() {
        let r = rules(ScopeKind::Host, "example.com");
        let base = Url::parse("https://Example.com/docs/intro?x=1").unwrap();
        let table: &[(&str, Option<&str>)] = &[
            ("guide", Some("https://example.com/docs/guide")),
            ("../a#frag", Some("https://example.com/a")),
            ("HTTPS://EXAMPLE.COM:443/b", Some("https://example.com/b")),
            ("http://example.com:80/c", Some("http://example.com/c")),
            (
                "http://example.com:8080/c",
                Some("http://example.com:8080/c"),
            ),
            (
                "/d?utm_source=x&id=2&gclid=y",
                Some("https://example.com/d?id=2"),
            ),
            ("/e?utm_medium=m", Some("https://example.com/e")),
            ("/f?", Some("https://example.com/f")),
            ("//other.org/g", Some("https://other.org/g")),
            ("https://example.com./h", Some("https://example.com/h")),
            ("#top", Some("https://example.com/docs/intro?x=1")),
            ("mailto:a@example.com", None),
            ("javascript:void(0)", None),
            ("ftp://example.com/x", None),
            ("https://u:p@example.com/", None),
            ("http://[::1", None),
            ("/a\nb", None),
        ];
        for (href, want) in table {
            let got = r.normalize(&base, href).map(|u| u.to_string());
            assert_eq!(got.as_deref(), *want, "href {href:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_URL_LEN));
        assert!(r.normalize(&base, &long).is_none());
    }

    #[test]
    fn scopes() {
        let u = |s: &str| Url::parse(s).unwrap();
        let host = rules(ScopeKind::Host, "docs.example.co.uk");
        assert!(host.in_scope(&u("http://docs.example.co.uk:8080/x")));
        assert!(!host.in_scope(&u("https://www.example.co.uk/x")));

        let anchor = registrable_domain("docs.example.co.uk");
        assert_eq!(anchor, "example.co.uk");
        let domain = rules(ScopeKind::Domain, &anchor);
        assert!(domain.in_scope(&u("https://www.example.co.uk/x")));
        assert!(domain.in_scope(&u("https://example.co.uk/x")));
        assert!(!domain.in_scope(&u("https://other.co.uk/x")));
        assert!(!domain.in_scope(&u("https://example.com/x")));

        let start = u("https://ex.com/guide/intro.html?a=1");
        let p = scope_anchor(&start, ScopeKind::Prefix, None).unwrap();
        assert_eq!(p, "https://ex.com/guide/");
        let prefix = rules(ScopeKind::Prefix, &p);
        assert!(prefix.in_scope(&u("https://ex.com/guide/a/b")));
        assert!(!prefix.in_scope(&u("https://ex.com/blog/")));
        assert!(scope_anchor(&start, ScopeKind::Prefix, Some("https://ex.com/api/")).is_err());
        assert_eq!(
            scope_anchor(&u("https://ex.com"), ScopeKind::Prefix, None).unwrap(),
            "https://ex.com/"
        );
    }

    #[test]
    fn judgement_order_and_caps() {
        let r = rules(ScopeKind::Host, "ex.com");
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(r.judge(&u("https://ex.com/a"), 1, false), Ok(()));
        assert_eq!(
            r.judge(&u("https://ex.com/a"), 1, true),
            Err(SkipReason::Nofollow)
        );
        assert_eq!(
            r.judge(&u("https://other.com/a"), 1, false),
            Err(SkipReason::Scope)
        );
        assert_eq!(
            r.judge(&u("https://ex.com/private/a"), 1, false),
            Err(SkipReason::Pattern)
        );
        assert_eq!(
            r.judge(&u("https://ex.com/1/2/3/4/5"), 1, false),
            Err(SkipReason::Trap)
        );
        assert_eq!(r.judge(&u("https://ex.com/1/2/3/4/"), 1, false), Ok(()));
        assert_eq!(
            r.judge(&u("https://ex.com/a"), 4, false),
            Err(SkipReason::Depth)
        );
        let inc = Rules::new(&RulesSpec {
            include: &["https://ex.com/docs/*".to_string()],
            ..RulesSpec {
                scope: ScopeKind::Host,
                anchor: "ex.com",
                include: &[],
                exclude: &[],
                max_depth: 3,
                max_path_depth: 4,
                follow_nofollow: true,
                tracking_params: &[],
            }
        })
        .unwrap();
        assert_eq!(inc.judge(&u("https://ex.com/docs/a"), 1, true), Ok(()));
        assert_eq!(
            inc.judge(&u("https://ex.com/blog/a"), 1, false),
            Err(SkipReason::Pattern)
        );
        // Regex syntax is literal in a glob.
        let g = compile_pattern("*/a(b)?.html").unwrap();
        assert!(g.is_match("https://ex.com/a(b)?.html"));
        assert!(!g.is_match("https://ex.com/ab.html"));
    }

    #[test]
    fn path_keys_and_depths() {
        let u = Url::parse("https://ex.com/cal/2026/?m=1&d=2").unwrap();
        assert_eq!(path_key(&u), "https://ex.com/cal/2026/");
        assert_eq!(path_depth(&u), 2);
        assert_eq!(path_depth(&Url::parse("https://ex.com/").unwrap()), 0);
    }
}
