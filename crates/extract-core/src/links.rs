//! The links of a page, as a crawler follows them: anchors (`<a href>`, `<area href>`), the
//! canonical URL (`<link rel=canonical>`) and the next page of a series (`rel=next` on a
//! `<link>` or an `<a>`). Each link keeps its `href` as written (resolved later against the
//! page's final URL, or its `<base href>`), what kind it is, and whether the page asked
//! crawlers not to follow it (`rel=nofollow` on the link, or `nofollow` in the page's
//! `<meta name=robots>`).
//!
//! The page enters the DOM only through the guard ([`crate::html::check`]), like every
//! other parse of fetched HTML; a page over the guard's limits gives no links and the
//! caller says so.

use crate::html::Checked;

/// Most links read from one page; the rest are ignored (a page with more is a trap or a
/// sitemap in disguise, and the crawl's page cap would stop it anyway).
pub const MAX_LINKS_PER_PAGE: usize = 5_000;

/// Longest `href` kept, in bytes; longer ones cannot become a stored URL anyway.
pub const MAX_HREF_BYTES: usize = 4_096;

/// How a link was found on its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// `<a href>` or `<area href>`.
    Anchor,
    /// `<link rel=canonical href>`.
    Canonical,
    /// `rel=next` on a `<link>` or an `<a>`.
    Next,
}

impl LinkKind {
    /// The word stored for it (`crawl_pages.via`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anchor => "link",
            Self::Canonical => "canonical",
            Self::Next => "next",
        }
    }
}

/// One link of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The `href` as written, trimmed.
    pub href: String,
    /// How it was found.
    pub kind: LinkKind,
    /// The page asked crawlers not to follow it.
    pub nofollow: bool,
}

/// The page's links in document order (canonical and `rel=next` `<link>`s first), and its
/// `<base href>` if it declares one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageLinks {
    /// The `href` of the first `<base>`, which relative links resolve against.
    pub base: Option<String>,
    /// The links, at most [`MAX_LINKS_PER_PAGE`].
    pub links: Vec<Link>,
}

/// Reads the links of checked markup.
pub fn links(html: &Checked<'_>) -> PageLinks {
    let doc = html.parse();
    let page_nofollow = doc
        .select("meta[name][content]")
        .nodes()
        .iter()
        .filter(|n| {
            n.attr("name").is_some_and(|name| {
                name.eq_ignore_ascii_case("robots") || name.eq_ignore_ascii_case("googlebot")
            })
        })
        .filter_map(|n| n.attr("content"))
        .any(|c| has_token(&c, "nofollow") || has_token(&c, "none"));
    let base = doc
        .select("base[href]")
        .nodes()
        .first()
        .and_then(|n| n.attr("href"))
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());

    let mut out = Vec::new();
    let mut push = |href: Option<String>, kind: LinkKind, rel: &str| {
        let Some(href) = href else { return };
        let href = href.trim();
        if href.is_empty() || href.len() > MAX_HREF_BYTES || out.len() >= MAX_LINKS_PER_PAGE {
            return;
        }
        out.push(Link {
            href: href.to_string(),
            kind,
            nofollow: page_nofollow || has_token(rel, "nofollow"),
        });
    };
    for node in doc.select("link[href][rel]").nodes() {
        let rel = node.attr("rel").map(|r| r.to_string()).unwrap_or_default();
        if has_token(&rel, "canonical") {
            push(
                node.attr("href").map(|h| h.to_string()),
                LinkKind::Canonical,
                &rel,
            );
        } else if has_token(&rel, "next") {
            push(
                node.attr("href").map(|h| h.to_string()),
                LinkKind::Next,
                &rel,
            );
        }
    }
    for node in doc.select("a[href], area[href]").nodes() {
        let rel = node.attr("rel").map(|r| r.to_string()).unwrap_or_default();
        let kind = if has_token(&rel, "next") {
            LinkKind::Next
        } else {
            LinkKind::Anchor
        };
        push(node.attr("href").map(|h| h.to_string()), kind, &rel);
    }
    PageLinks { base, links: out }
}

/// Whether a space- or comma-separated attribute value holds `token` (ASCII case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .any(|t| t.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;
    use crate::html::check;

    fn read(html: &str) -> PageLinks {
        links(&check(html, &Limits::default()).unwrap())
    }

    #[test]
    fn anchors_canonical_and_next_with_nofollow() {
        let page = read(
            r#"<html><head><base href="/docs/">
            <link rel="canonical" href="https://ex.com/a">
            <link rel="next" href="p2"><link rel="stylesheet" href="s.css"></head>
            <body><a href=" b ">b</a><a href="c" rel="NoFollow noopener">c</a>
            <a href="">empty</a><a>none</a><a href="p3" rel="next">next</a>
            <map><area href="d"></map></body></html>"#,
        );
        assert_eq!(page.base.as_deref(), Some("/docs/"));
        let got: Vec<(&str, LinkKind, bool)> = page
            .links
            .iter()
            .map(|l| (l.href.as_str(), l.kind, l.nofollow))
            .collect();
        assert_eq!(
            got,
            vec![
                ("https://ex.com/a", LinkKind::Canonical, false),
                ("p2", LinkKind::Next, false),
                ("b", LinkKind::Anchor, false),
                ("c", LinkKind::Anchor, true),
                ("p3", LinkKind::Next, false),
                ("d", LinkKind::Anchor, false),
            ]
        );
    }

    #[test]
    fn meta_robots_nofollow_marks_every_link() {
        let page = read(
            r#"<head><meta name="ROBOTS" content="noindex, nofollow"></head>
            <a href="x">x</a>"#,
        );
        assert_eq!(page.links.len(), 1);
        assert!(page.links[0].nofollow);
    }

    #[test]
    fn links_are_capped_per_page() {
        let html: String = (0..MAX_LINKS_PER_PAGE + 10)
            .map(|i| format!("<a href=\"/p{i}\">p</a>"))
            .collect();
        assert_eq!(read(&html).links.len(), MAX_LINKS_PER_PAGE);
    }
}
