//! A cheap look at raw HTML before parsing it. The HTML5 tree builder's cost grows with the
//! square of nesting depth (tens of seconds for 50,000 nested elements), so a page nested
//! absurdly deep is not parsed at all: its tags are stripped and its text kept.

/// Estimated depth above which a page is not parsed. Real pages stay under a few hundred
/// even counted this crudely.
pub(crate) const MAX_ESTIMATED_DEPTH: usize = 3000;

/// Elements that have no end tag or whose end tag is often left out; they do not count.
const NOT_NESTING: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr", "p", "li", "td", "th", "tr", "dt", "dd", "option", "!doctype",
];

/// Largest open-minus-closed tag count seen while scanning `html`.
pub(crate) fn estimated_depth(html: &str) -> usize {
    let bytes = html.as_bytes();
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut i = 0;
    while let Some(off) = memchr(b'<', &bytes[i..]) {
        i += off + 1;
        if bytes[i..].starts_with(b"!--") {
            i = find(bytes, i, b"-->").unwrap_or(bytes.len());
            continue;
        }
        let closing = bytes.get(i) == Some(&b'/');
        let start = if closing { i + 1 } else { i };
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'!' || *b == b'-'))
            .map_or(bytes.len(), |p| start + p);
        if end == start {
            continue;
        }
        let name = html[start..end].to_ascii_lowercase();
        if NOT_NESTING.contains(&name.as_str()) {
            continue;
        }
        // Script and style bodies are not markup, whatever they contain.
        if !closing && (name == "script" || name == "style") {
            let close = if name == "script" {
                &b"</script"[..]
            } else {
                &b"</style"[..]
            };
            i = find_ignore_case(bytes, end, close).unwrap_or(bytes.len());
            continue;
        }
        let self_closing = !closing
            && memchr(b'>', &bytes[end..]).is_some_and(|gt| gt > 0 && bytes[end + gt - 1] == b'/');
        if closing {
            depth = depth.saturating_sub(1);
        } else if !self_closing {
            depth += 1;
            deepest = deepest.max(depth);
        }
    }
    deepest
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == needle)
}

/// Position just past the first `needle` at or after `from`.
fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p + needle.len())
}

/// Position of the first `needle` (ASCII, any case) at or after `from`.
fn find_ignore_case(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay[from..]
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| from + p)
}

/// The text of `html` with tags, comments, scripts and styles removed, one paragraph per
/// line of source; for pages too deep to parse.
pub(crate) fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let Some(lt) = html[i..].find('<') else {
            out.push_str(&html[i..]);
            break;
        };
        out.push_str(&html[i..i + lt]);
        i += lt;
        let skip_to = if lower[i..].starts_with("<!--") {
            lower[i..].find("-->").map(|p| i + p + 3)
        } else if lower[i..].starts_with("<script") {
            lower[i..].find("</script").map(|p| i + p + 8)
        } else if lower[i..].starts_with("<style") {
            lower[i..].find("</style").map(|p| i + p + 7)
        } else {
            None
        };
        i = skip_to.unwrap_or(i);
        match html[i..].find('>') {
            Some(gt) => {
                out.push(' ');
                i += gt + 1;
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_not_siblings_or_void_elements() {
        assert_eq!(estimated_depth("<div><p>a<p>b<br><img src=x/></div>"), 1);
        assert_eq!(
            estimated_depth("<div><span><b>x</b></span></div><div></div>"),
            3
        );
        assert_eq!(estimated_depth(&"<div>".repeat(5000)), 5000);
        assert_eq!(estimated_depth("<!-- <div><div> --> <x-y/>"), 0);
        assert_eq!(
            estimated_depth("<SCRIPT>var s = '<div><div>';</script><b>x</b>"),
            1
        );
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
