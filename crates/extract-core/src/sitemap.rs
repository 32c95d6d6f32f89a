//! Sitemaps as a crawler reads them (<https://www.sitemaps.org/protocol.html>): a `<urlset>`
//! lists pages (`<url><loc>`), a `<sitemapindex>` lists further sitemaps
//! (`<sitemap><loc>`), and a text sitemap lists one URL a line.
//!
//! This is a small tolerant scanner, not a general XML parser, on purpose: a sitemap needs
//! only the root element's name and the text of `<loc>` elements, and a scanner that never
//! expands entities (no DTD, no `<!ENTITY>`: only the five predefined entities and character
//! references are decoded), never recurses and stops at a count of `<loc>`s costs one linear
//! pass whatever the input. Namespace prefixes are ignored (`<sm:loc>` is a `<loc>`).
//! Malformed markup ends the scan with what was read before it, and says why.
//!
//! The caller fetches and decompresses the file (bounded) and decides what to do with the
//! locations; nothing here judges a URL beyond "it is not empty".

/// What kind of file a sitemap turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SitemapKind {
    /// `<urlset>`: its locations are pages.
    UrlSet,
    /// `<sitemapindex>`: its locations are further sitemaps.
    Index,
    /// A text sitemap: one URL a line.
    Text,
    /// Neither (an HTML error page served with 200, an RSS feed, garbage).
    NotASitemap,
}

impl SitemapKind {
    /// A word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UrlSet => "urlset",
            Self::Index => "sitemapindex",
            Self::Text => "text",
            Self::NotASitemap => "not a sitemap",
        }
    }
}

/// One sitemap file, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sitemap {
    /// What the file is.
    pub kind: SitemapKind,
    /// The `<loc>` texts (or text lines), trimmed and unescaped, in document order, at most
    /// the `max_locs` asked for.
    pub locs: Vec<String>,
    /// More locations followed than `max_locs`; they were not read.
    pub truncated: bool,
    /// Why the scan stopped early on malformed markup (what was read before is kept).
    pub malformed: Option<String>,
}

/// Longest `<loc>` kept, in bytes (a stored URL is at most 2,048 bytes; sitemaps allow
/// fewer). Longer ones are dropped.
pub const MAX_LOC_BYTES: usize = 4_096;

/// Deepest element nesting followed; a sitemap needs 3 (`urlset`/`url`/`loc`).
const MAX_NESTING: usize = 64;

/// Reads a sitemap: its kind and at most `max_locs` locations.
pub fn parse(body: &str, max_locs: usize) -> Sitemap {
    let s = body.trim_start_matches('\u{feff}').trim_start();
    if !s.starts_with('<') {
        return parse_text(s, max_locs);
    }
    let mut out = Sitemap {
        kind: SitemapKind::NotASitemap,
        locs: Vec::new(),
        truncated: false,
        malformed: None,
    };
    // Local names of the open elements.
    let mut stack: Vec<&str> = Vec::new();
    // The text of the `<loc>` being read, when its place is the one the root calls for.
    let mut loc: Option<String> = None;
    let mut loc_too_long = false;
    let mut i = 0;
    let stop = |out: &mut Sitemap, why: &str| out.malformed = Some(why.to_string());
    while i < s.len() {
        let Some(lt) = s[i..].find('<').map(|n| i + n) else {
            break;
        };
        if let Some(buf) = loc.as_mut() {
            push_text(buf, &unescape(&s[i..lt]), &mut loc_too_long);
        }
        let rest = &s[lt..];
        if rest.starts_with("<!--") {
            match rest.find("-->") {
                Some(n) => i = lt + n + 3,
                None => {
                    stop(&mut out, "unterminated comment");
                    break;
                }
            }
            continue;
        }
        if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            match cdata.find("]]>") {
                Some(n) => {
                    if let Some(buf) = loc.as_mut() {
                        push_text(buf, &cdata[..n], &mut loc_too_long);
                    }
                    i = lt + "<![CDATA[".len() + n + 3;
                }
                None => {
                    stop(&mut out, "unterminated CDATA section");
                    break;
                }
            }
            continue;
        }
        if rest.starts_with("<?") || rest.starts_with("<!") {
            // A declaration, processing instruction or DOCTYPE: skipped, never interpreted
            // (an internal DTD subset's `]` and `>` are skipped over as well).
            let end = if rest.starts_with("<?") {
                rest.find("?>").map(|n| n + 2)
            } else if let Some(open) = rest.find('[').filter(|o| rest.find('>') > Some(*o)) {
                rest[open..].find("]>").map(|n| open + n + 2)
            } else {
                rest.find('>').map(|n| n + 1)
            };
            match end {
                Some(n) => i = lt + n,
                None => {
                    stop(&mut out, "unterminated declaration");
                    break;
                }
            }
            continue;
        }
        let Some(gt) = tag_end(rest) else {
            stop(&mut out, "unterminated tag");
            break;
        };
        let tag = &rest[1..gt];
        i = lt + gt + 1;
        if let Some(name) = tag.strip_prefix('/') {
            let name = local_name(name.trim());
            if name == "loc"
                && let Some(text) = loc.take()
            {
                let text = text.trim();
                if !text.is_empty() && !loc_too_long {
                    if out.locs.len() == max_locs {
                        out.truncated = true;
                        break;
                    }
                    out.locs.push(text.to_string());
                }
                loc_too_long = false;
            }
            // Tolerant closing: pop to the matching element if it is open, else ignore.
            if let Some(at) = stack.iter().rposition(|n| *n == name) {
                stack.truncate(at);
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let name = local_name(
            tag.split(|c: char| c.is_ascii_whitespace() || c == '/')
                .next()
                .unwrap_or_default(),
        );
        if stack.is_empty() && out.kind == SitemapKind::NotASitemap && out.locs.is_empty() {
            out.kind = match name {
                "urlset" => SitemapKind::UrlSet,
                "sitemapindex" => SitemapKind::Index,
                _ => return out,
            };
        }
        if self_closing {
            continue;
        }
        if stack.len() >= MAX_NESTING {
            stop(&mut out, "elements nested too deep");
            break;
        }
        let entry = match out.kind {
            SitemapKind::Index => "sitemap",
            _ => "url",
        };
        // A fresh `<loc>` drops an unclosed one before it (malformed, but recoverable).
        loc = (name == "loc" && stack.len() == 2 && stack[1] == entry).then(String::new);
        loc_too_long = false;
        stack.push(name);
    }
    if out.malformed.is_none() && !out.truncated && loc.is_some() {
        out.malformed = Some("the file ends inside a <loc>".into());
    }
    out
}

fn parse_text(s: &str, max_locs: usize) -> Sitemap {
    let mut out = Sitemap {
        kind: SitemapKind::Text,
        locs: Vec::new(),
        truncated: false,
        malformed: None,
    };
    for line in s.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let lower = line.get(..8).unwrap_or(line).to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            // A text sitemap holds URLs only; anything else means it is not one.
            if out.locs.is_empty() {
                out.kind = SitemapKind::NotASitemap;
                return out;
            }
            continue;
        }
        if line.len() > MAX_LOC_BYTES {
            continue;
        }
        if out.locs.len() == max_locs {
            out.truncated = true;
            break;
        }
        out.locs.push(line.to_string());
    }
    if out.locs.is_empty() {
        out.kind = SitemapKind::NotASitemap;
    }
    out
}

/// Appends to a `<loc>`'s text, remembering (instead of growing past the bound) when it
/// is too long to be a URL.
fn push_text(buf: &mut String, text: &str, too_long: &mut bool) {
    if buf.len() + text.len() > MAX_LOC_BYTES {
        *too_long = true;
    } else {
        buf.push_str(text);
    }
}

/// Where a tag that starts `rest` (at `<`) ends: the first `>` outside quoted attribute
/// values.
fn tag_end(rest: &str) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (n, b) in rest.bytes().enumerate().skip(1) {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return Some(n),
            _ => {}
        }
    }
    None
}

/// `sm:loc` → `loc`.
fn local_name(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// Decodes the five predefined entities and character references; anything else (an
/// undeclared entity, a stray `&`) stays as written.
fn unescape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('&') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|n| *n <= 10).and_then(|semi| {
            let name = &rest[1..semi];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| name.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urlset_with_namespaces_entities_cdata_and_comments() {
        let xml = "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
            <!-- generated -->\n\
            <urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" xmlns:image=\"x>y\">\n\
              <url><loc> https://e.com/a?x=1&amp;y=2 </loc><lastmod>2026-01-01</lastmod></url>\n\
              <url><loc><![CDATA[https://e.com/b]]></loc></url>\n\
              <url><image:image><image:loc>https://e.com/img.png</image:loc></image:image>\n\
                   <loc>https://e.com/&#99;&#x64;</loc></url>\n\
              <url><loc></loc></url>\n\
              <loc>https://e.com/not-in-a-url</loc>\n\
              <url><sm:loc>https://e.com/prefixed</sm:loc></url>\n\
            </urlset>";
        let s = parse(xml, 100);
        assert_eq!(s.kind, SitemapKind::UrlSet);
        assert_eq!(
            s.locs,
            [
                "https://e.com/a?x=1&y=2",
                "https://e.com/b",
                "https://e.com/cd",
                "https://e.com/prefixed"
            ]
        );
        assert!(!s.truncated);
        assert_eq!(s.malformed, None);
    }

    #[test]
    fn an_index_lists_sitemaps() {
        let xml = "<sitemapindex><sitemap><loc>https://e.com/s1.xml.gz</loc></sitemap>\
                   <sitemap><loc>https://e.com/s2.xml</loc><lastmod>x</lastmod></sitemap>\
                   </sitemapindex>";
        let s = parse(xml, 100);
        assert_eq!(s.kind, SitemapKind::Index);
        assert_eq!(s.locs, ["https://e.com/s1.xml.gz", "https://e.com/s2.xml"]);
    }

    #[test]
    fn the_loc_cap_truncates() {
        let mut xml = String::from("<urlset>");
        for i in 0..10 {
            xml += &format!("<url><loc>https://e.com/{i}</loc></url>");
        }
        xml += "</urlset>";
        let s = parse(&xml, 3);
        assert_eq!(s.locs.len(), 3);
        assert!(s.truncated);
        assert_eq!(parse(&xml, 10).locs.len(), 10);
        assert!(!parse(&xml, 10).truncated);
    }

    #[test]
    fn hostile_and_malformed_input_is_bounded_and_keeps_what_came_before() {
        // Cut in the middle: the complete entries before the cut are kept.
        let cut = "<urlset><url><loc>https://e.com/a</loc></url><url><loc>https://e.c";
        let s = parse(cut, 100);
        assert_eq!(s.locs, ["https://e.com/a"]);
        assert!(s.malformed.is_some());
        let s = parse("<urlset><url><loc>https://e.com/a</loc></url><url", 100);
        assert_eq!(s.locs, ["https://e.com/a"]);
        assert_eq!(s.malformed.as_deref(), Some("unterminated tag"));
        // Entities are never expanded beyond the predefined ones.
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
                    <!ENTITY lol2 \"&lol;&lol;&lol;\">]>\
                    <urlset><url><loc>https://e.com/&lol2;</loc></url></urlset>";
        let s = parse(bomb, 100);
        assert_eq!(s.kind, SitemapKind::UrlSet);
        assert_eq!(s.locs, ["https://e.com/&lol2;"]);
        // Deep nesting stops the scan instead of growing without bound.
        let deep = format!("<urlset>{}", "<a>".repeat(10_000));
        let s = parse(&deep, 100);
        assert_eq!(s.malformed.as_deref(), Some("elements nested too deep"));
        // A huge <loc> is dropped, not kept.
        let long = format!(
            "<urlset><url><loc>https://e.com/{}</loc></url><url><loc>https://e.com/ok</loc></url></urlset>",
            "a".repeat(MAX_LOC_BYTES)
        );
        assert_eq!(parse(&long, 100).locs, ["https://e.com/ok"]);
        // Not a sitemap at all.
        for body in [
            "<!doctype html><html><body>Not found</body></html>",
            "<rss><channel></channel></rss>",
            "{\"json\": true}",
            "",
        ] {
            let s = parse(body, 100);
            assert_eq!(s.kind, SitemapKind::NotASitemap, "{body}");
            assert!(s.locs.is_empty(), "{body}");
        }
        // Non-http locations are returned as written: the caller's URL rules refuse them.
        let s = parse(
            "<urlset><url><loc>ftp://e.com/x</loc></url><url><loc>javascript:x</loc></url></urlset>",
            100,
        );
        assert_eq!(s.locs, ["ftp://e.com/x", "javascript:x"]);
        // Stray ampersands and unknown entities stay as written.
        assert_eq!(
            unescape("a&b&zz;&#xZZ;&#1114112;"),
            "a&b&zz;&#xZZ;&#1114112;"
        );
    }

    #[test]
    fn text_sitemaps() {
        let s = parse("https://e.com/a\r\n\n  http://e.com/b  \nnot a url\n", 100);
        assert_eq!(s.kind, SitemapKind::Text);
        assert_eq!(s.locs, ["https://e.com/a", "http://e.com/b"]);
        let s = parse("https://e.com/a\nhttps://e.com/b\nhttps://e.com/c\n", 2);
        assert_eq!(s.locs.len(), 2);
        assert!(s.truncated);
        assert_eq!(
            parse("Hello there\nhttps://e.com/", 10).kind,
            SitemapKind::NotASitemap
        );
    }
}
