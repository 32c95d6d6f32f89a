//! The one way into the DOM. Every parse of fetched HTML in the workspace goes through
//! [`check`] (or [`parse_guarded`], which is `check` then parse): a linear scan of the raw
//! bytes that estimates what the parse would cost (size, nesting depth, elements,
//! attributes) and refuses the page before html5ever, Readability or trafilatura see it.
//!
//! Why a pre-scan and not a check on the tree: the tree builder's cost grows with the
//! square of nesting depth (tens of seconds for 50,000 nested elements) and with the
//! square of one element's attribute count (duplicates are checked pairwise), so by the
//! time a tree exists the cost is paid. The scan reads every byte once (no search is
//! repeated from the same place), so its own cost is bounded by the input size.
//!
//! `clippy.toml` forbids `dom_query::Document::from`, `trafilatura::extract` and
//! `dom_smoothie::Readability::new` everywhere else, so a new caller cannot skip the guard.
#![allow(clippy::disallowed_methods)]

use dom_query::Document;

use crate::limits::{Exceeded, Limits, TooExpensive};

/// Elements that have no end tag, or whose end tag is often left out, or that the tree
/// builder closes itself: they do not add depth.
const NOT_NESTING: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr", "p", "li", "td", "th", "tr", "dt", "dd", "option", "optgroup", "keygen",
    "frame", "basefont", "bgsound",
];

/// Elements that the tree builder closes when another of the same name opens inside them
/// (an `<a>` in an `<a>` becomes its sibling): repeated, they do not nest.
const NOT_SELF_NESTING: &[&str] = &[
    "a", "button", "form", "nobr", "h1", "h2", "h3", "h4", "h5", "h6", "select",
];

/// Elements whose content is text, not markup, up to their end tag.
const RAW_TEXT: &[&str] = &[
    "script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes",
];

/// How far down the open-element stack an end tag may match: sloppy pages leave a few
/// inline elements open (`<div><span>x</div>`); a stray `</x>` that matches nothing near the
/// top is ignored, as the tree builder ignores it, so it cannot hide nesting.
const END_TAG_REACH: usize = 16;

/// What the scan of one document found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of the document.
    pub bytes: usize,
    /// Estimated deepest nesting of elements (stops counting just past the limit).
    pub depth: usize,
    /// Start tags.
    pub elements: usize,
    /// Attributes, all elements together.
    pub attributes: usize,
    /// Attributes of the element that has most.
    pub max_attributes_per_element: usize,
}

/// HTML that passed the guard: the only value the parsers and extractors accept.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'a> {
    html: &'a str,
    scan: Scan,
}

impl<'a> Checked<'a> {
    /// The markup, for extractors that parse it themselves (bounded by the same check).
    pub fn as_str(&self) -> &'a str {
        self.html
    }

    /// What the scan found.
    pub fn scan(&self) -> Scan {
        self.scan
    }

    /// Parses the checked markup.
    pub fn parse(&self) -> Document {
        Document::from(self.html)
    }
}

/// Scans `html` and accepts it if every estimate is within `limits`.
///
/// # Errors
/// [`TooExpensive`] naming the first limit over: size, depth ([`Exceeded::Depth`]: the
/// caller may still read the text with [`strip_tags`]), elements or attributes.
pub fn check<'a>(html: &'a str, limits: &Limits) -> Result<Checked<'a>, TooExpensive> {
    if html.len() > limits.max_input_bytes {
        return Err(TooExpensive::new(
            Exceeded::InputBytes,
            format!(
                "{} bytes of HTML, over the cap of {}",
                html.len(),
                limits.max_input_bytes
            ),
        ));
    }
    let scan = scan(html, limits.max_depth);
    if scan.depth > limits.max_depth {
        return Err(TooExpensive::new(
            Exceeded::Depth,
            format!("markup nested deeper than {} levels", limits.max_depth),
        ));
    }
    if scan.elements > limits.max_elements {
        return Err(TooExpensive::new(
            Exceeded::Elements,
            format!(
                "{} elements, over the cap of {}",
                scan.elements, limits.max_elements
            ),
        ));
    }
    if scan.attributes > limits.max_attributes {
        return Err(TooExpensive::new(
            Exceeded::Attributes,
            format!(
                "{} attributes, over the cap of {}",
                scan.attributes, limits.max_attributes
            ),
        ));
    }
    if scan.max_attributes_per_element > limits.max_attributes_per_element {
        return Err(TooExpensive::new(
            Exceeded::Attributes,
            format!(
                "an element with {} attributes, over the cap of {}",
                scan.max_attributes_per_element, limits.max_attributes_per_element
            ),
        ));
    }
    Ok(Checked { html, scan })
}

/// Parses `html` into a document if [`check`] accepts it: the guarded entry into the DOM.
///
/// # Errors
/// As [`check`].
pub fn parse_guarded(html: &str, limits: &Limits) -> Result<Document, TooExpensive> {
    check(html, limits).map(|c| c.parse())
}

/// Runs trafilatura, which parses the markup itself, on checked markup only.
pub(crate) fn trafilatura_extract(
    html: &Checked,
    opts: &trafilatura::Options,
) -> Result<trafilatura::ExtractResult, trafilatura::TrafilaturaError> {
    trafilatura::extract(html.html, opts)
}

/// One piece of markup found by [`Tags`].
enum Item {
    /// A start or end tag.
    Tag(Tag),
    /// A comment, doctype or processing instruction, `<` to `>`.
    Other((usize, usize)),
    /// The text of a raw-text element (`script`, `style`, `title`...), named.
    RawBody(&'static str, (usize, usize)),
}

/// A start or end tag.
struct Tag {
    name: (usize, usize),
    closing: bool,
    self_closing: bool,
    attributes: usize,
    /// From its `<` to just past its `>`.
    span: (usize, usize),
}

/// The markup of a document, in one pass: every byte looked at a bounded number of times
/// (a search that finds nothing ends the document, as it does for the tree builder).
struct Tags<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The body of this raw-text element comes next.
    raw_text: Option<&'static str>,
}

impl<'a> Tags<'a> {
    fn new(html: &'a str) -> Self {
        Self {
            bytes: html.as_bytes(),
            pos: 0,
            raw_text: None,
        }
    }
}

impl Iterator for Tags<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        let bytes = self.bytes;
        if let Some(name) = self.raw_text.take() {
            let from = self.pos;
            self.pos = find_end_tag(bytes, from, name).unwrap_or(bytes.len());
            return Some(Item::RawBody(name, (from, self.pos)));
        }
        loop {
            let lt = self.pos + memchr(b'<', &bytes[self.pos..])?;
            let mut i = lt + 1;
            if bytes[i..].starts_with(b"!--") {
                // An unterminated comment runs to the end, for the tree builder too.
                self.pos = find(bytes, i + 3, b"-->").unwrap_or(bytes.len());
                return Some(Item::Other((lt, self.pos)));
            }
            if matches!(bytes.get(i), Some(b'!' | b'?')) {
                self.pos = memchr(b'>', &bytes[i..]).map_or(bytes.len(), |p| i + p + 1);
                return Some(Item::Other((lt, self.pos)));
            }
            let closing = bytes.get(i) == Some(&b'/');
            if closing {
                i += 1;
            }
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'-' | b':' | b'_'))
            {
                i += 1;
            }
            if i == start || !bytes[start].is_ascii_alphabetic() {
                // "a < b": text, not a tag.
                self.pos = lt + 1;
                continue;
            }
            let (end, attributes, self_closing) = scan_attributes(bytes, i);
            self.pos = end;
            if !closing && !self_closing {
                let name = &bytes[start..i];
                self.raw_text = RAW_TEXT
                    .iter()
                    .find(|r| name.eq_ignore_ascii_case(r.as_bytes()))
                    .copied();
            }
            return Some(Item::Tag(Tag {
                name: (start, i),
                closing,
                self_closing,
                attributes,
                span: (lt, end),
            }));
        }
    }
}

/// From just after a tag name to just after its `>`: the attribute count and whether the
/// tag ends with `/>`. Quoted values may hold `>`; an unterminated one runs to the end.
fn scan_attributes(bytes: &[u8], mut i: usize) -> (usize, usize, bool) {
    let mut count = 0;
    let mut in_token = false;
    let mut value_next = false;
    let mut last = 0u8;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'>' => return (i + 1, count, last == b'/'),
            b'"' | b'\'' => {
                i = memchr(b, &bytes[i + 1..]).map_or(bytes.len(), |p| i + 1 + p + 1);
                in_token = true;
                value_next = false;
                last = b;
                continue;
            }
            b'=' => {
                value_next = true;
                in_token = false;
            }
            b if b.is_ascii_whitespace() => in_token = false,
            b'/' => in_token = false,
            _ => {
                if !in_token {
                    if !value_next {
                        count += 1;
                    }
                    value_next = false;
                    in_token = true;
                }
            }
        }
        last = b;
        i += 1;
    }
    (bytes.len(), count, false)
}

/// Scans `html`: size, estimated depth (counting stops just past `max_depth`), elements
/// and attributes.
pub(crate) fn scan(html: &str, max_depth: usize) -> Scan {
    let bytes = html.as_bytes();
    let mut out = Scan {
        bytes: bytes.len(),
        ..Scan::default()
    };
    // Open elements as name spans; never longer than max_depth + 1.
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let same = |a: (usize, usize), b: (usize, usize)| {
        bytes[a.0..a.1].eq_ignore_ascii_case(&bytes[b.0..b.1])
    };
    let is = |n: (usize, usize), list: &[&str]| {
        let name = &bytes[n.0..n.1];
        list.iter().any(|l| name.eq_ignore_ascii_case(l.as_bytes()))
    };
    for item in Tags::new(html) {
        let Item::Tag(tag) = item else { continue };
        if tag.closing {
            let reach = stack.len().saturating_sub(END_TAG_REACH);
            if let Some(at) = (reach..stack.len())
                .rev()
                .find(|&k| same(stack[k], tag.name))
            {
                stack.truncate(at);
            }
            continue;
        }
        out.elements += 1;
        out.attributes += tag.attributes;
        out.max_attributes_per_element = out.max_attributes_per_element.max(tag.attributes);
        if tag.self_closing || is(tag.name, NOT_NESTING) || is(tag.name, RAW_TEXT) {
            continue;
        }
        if is(tag.name, NOT_SELF_NESTING) && stack.last().is_some_and(|top| same(*top, tag.name)) {
            continue;
        }
        if stack.len() <= max_depth {
            stack.push(tag.name);
            out.depth = out.depth.max(stack.len());
        }
    }
    out
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == needle)
}

/// Position just past the first `needle` at or after `from`.
fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p + needle.len())
}

/// Position of the `<` of the first `</name` (any case) at or after `from`.
fn find_end_tag(hay: &[u8], from: usize, name: &str) -> Option<usize> {
    let n = name.len() + 2;
    hay.get(from..)?
        .windows(n)
        .position(|w| w[0] == b'<' && w[1] == b'/' && w[2..].eq_ignore_ascii_case(name.as_bytes()))
        .map(|p| from + p)
}

/// The text of `html` with tags, comments, scripts and styles removed; for pages too deep
/// to parse. Linear in the input, like the scan.
pub(crate) fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut text_from = 0;
    for item in Tags::new(html) {
        let (span, keep_body) = match item {
            Item::Tag(tag) => (tag.span, false),
            Item::Other(span) => (span, false),
            // Script and style bodies are code; a title or textarea is text.
            Item::RawBody(name, span) => (span, !matches!(name, "script" | "style")),
        };
        out.push_str(&html[text_from..span.0]);
        if keep_body {
            out.push_str(&html[span.0..span.1]);
        } else {
            out.push(' ');
        }
        text_from = span.1;
    }
    out.push_str(&html[text_from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(html: &str) -> usize {
        scan(html, usize::MAX).depth
    }

    #[test]
    fn depth_counts_nesting_not_siblings_or_void_elements() {
        assert_eq!(depth("<div><p>a<p>b<br><img src=x/></div>"), 1);
        assert_eq!(depth("<div><span><b>x</b></span></div><div></div>"), 3);
        assert_eq!(depth(&"<div>".repeat(5000)), 5000);
        assert_eq!(depth("<!-- <div><div> --> <x-y/>"), 0);
        assert_eq!(depth("<SCRIPT>var s = '<div><div>';</script><b>x</b>"), 1);
        assert_eq!(depth("<title><div><div></title><b>x</b>"), 1);
        // Sloppy closing still closes; stray end tags do not hide nesting.
        assert_eq!(depth("<div><span>x</div><div><span>y</div>"), 2);
        assert_eq!(depth(&"<div></x>".repeat(100)), 100);
        // Repeated anchors are siblings in the tree.
        assert_eq!(depth(&"<a href=x>y".repeat(100)), 1);
    }

    #[test]
    fn elements_and_attributes_are_counted() {
        let s = scan(
            r#"<div id=a class="x > y" hidden data-x='1'><a href=b>c</a></div>"#,
            100,
        );
        assert_eq!(s.elements, 2);
        assert_eq!(s.attributes, 5);
        assert_eq!(s.max_attributes_per_element, 4);
        assert_eq!(scan("a < b and c<d", 100).elements, 1);
    }

    #[test]
    fn the_scan_is_linear_on_unterminated_constructs() {
        // Each of these made an earlier scanner search to the end from every `<`.
        for unit in ["<a", "<!--", "<script>", "<a b=\"", "<!x"] {
            let html = unit.repeat(200_000);
            let t = std::time::Instant::now();
            let _ = scan(&html, 3000);
            let _ = strip_tags(&html);
            assert!(t.elapsed().as_secs() < 5, "{unit:?}: {:?}", t.elapsed());
        }
    }

    #[test]
    fn limits_refuse_before_parsing() {
        let limits = Limits {
            max_elements: 10,
            ..Limits::default()
        };
        let err = check(&"<b>x</b>".repeat(11), &limits).unwrap_err();
        assert_eq!(err.kind, Exceeded::Elements);
        let many = format!(
            "<div {}>x</div>",
            (0..2000)
                .map(|i| format!("a{i}=1"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(
            check(&many, &Limits::default()).unwrap_err().kind,
            Exceeded::Attributes
        );
        assert_eq!(
            check(&"<div>".repeat(4000), &Limits::default())
                .unwrap_err()
                .kind,
            Exceeded::Depth
        );
        assert!(parse_guarded("<p>fine</p>", &Limits::default()).is_ok());
    }

    #[test]
    fn tags_scripts_and_comments_are_stripped() {
        let text = strip_tags(
            "<div>Hello <b>world</b><script>var a = '<p>';</script><!-- c --></div>tail",
        );
        assert_eq!(
            text.split_whitespace().collect::<Vec<_>>(),
            ["Hello", "world", "tail"]
        );
    }
}
