//! Turning response bytes into stored text: media type, charset, title. Public so that the
//! fuzz targets exercise exactly what the worker runs on fetched bodies.

use encoding_rs::{Encoding, UTF_8};

/// The media type of a Content-Type value, lowercased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The `charset` parameter of a Content-Type value, if any.
pub fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// A charset declared in the first bytes of an HTML document (`<meta charset=...>` or
/// `<meta http-equiv=... content="...; charset=...">`).
fn sniff_meta_charset(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(2048)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let at = text.find("charset=")? + "charset=".len();
    let rest = text[at..].trim_start_matches(['"', '\'', ' ']);
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':'))
        .unwrap_or(rest.len());
    (end > 0).then(|| rest[..end].to_owned())
}

/// Decodes a body to UTF-8: a BOM wins, then the header's charset, then (for HTML) a meta
/// declaration, then UTF-8. Undecodable bytes become U+FFFD; NUL characters are dropped
/// because Postgres text cannot hold them.
pub fn decode_body(bytes: &[u8], content_type: &str, is_html: bool) -> String {
    let declared = charset_param(content_type)
        .or_else(|| is_html.then(|| sniff_meta_charset(bytes)).flatten())
        .and_then(|label| Encoding::for_label(label.as_bytes()))
        .unwrap_or(UTF_8);
    let (text, _, _) = declared.decode(bytes);
    if text.contains('\0') {
        text.replace('\0', "")
    } else {
        text.into_owned()
    }
}

/// Whether a body declared as text is binary: a known binary signature, or control bytes
/// that no text has (the WHATWG sniffing rule's "binary data bytes") in more than one in
/// thirty of its first 1,024 bytes (random or compressed data has about one in ten). A few stray NULs in a page do not make it binary (they are
/// dropped when decoding); UTF-16, whose ASCII has a NUL every other byte, is exempt.
pub fn looks_binary(bytes: &[u8], content_type: &str) -> bool {
    const MAGIC: &[&[u8]] = &[
        b"\x89PNG",
        b"GIF8",
        b"\xff\xd8\xff",
        b"%PDF-",
        b"PK\x03\x04",
        b"\x1f\x8b",
        b"\x7fELF",
        b"RIFF",
        b"\x00\x00\x01\x00",
        b"BZh",
        b"\xfd7zXZ",
        b"7z\xbc\xaf",
    ];
    if MAGIC.iter().any(|m| bytes.starts_with(m)) {
        return true;
    }
    let utf16 = bytes.starts_with(b"\xff\xfe")
        || bytes.starts_with(b"\xfe\xff")
        || charset_param(content_type)
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("utf-16"));
    if utf16 {
        return false;
    }
    let head = &bytes[..bytes.len().min(1024)];
    let binary = head
        .iter()
        .filter(|&&b| matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f))
        .count();
    binary * 30 > head.len()
}

/// Whether bytes of an undeclared type look like HTML.
pub fn looks_like_html(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_ascii_lowercase();
    let head = head.trim_start_matches('\u{feff}').trim_start();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.starts_with("<head")
}

/// The document's `<title>`, whitespace collapsed, basic entities decoded, at most 1000
/// characters; `None` when absent or empty.
pub fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let raw = &html[start..end];
    let text = raw
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&nbsp;", " ");
    let title: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(1000)
        .collect();
    // The cut can fall just after a joining space.
    let title = title.trim_end();
    (!title.is_empty()).then(|| title.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_parts() {
        assert_eq!(media_type("Text/HTML; charset=UTF-8"), "text/html");
        assert_eq!(
            charset_param("text/html; Charset=\"ISO-8859-1\""),
            Some("ISO-8859-1".into())
        );
        assert_eq!(charset_param("text/html"), None);
    }

    #[test]
    fn charsets_are_decoded() {
        let latin1 = b"<p>Caf\xe9</p>";
        assert_eq!(
            decode_body(latin1, "text/html; charset=iso-8859-1", true),
            "<p>Café</p>"
        );
        let meta = b"<html><head><meta charset=\"windows-1252\"></head><p>\x93hi\x94</p>";
        assert!(decode_body(meta, "text/html", true).contains("\u{201c}hi\u{201d}"));
        assert_eq!(decode_body(b"a\0b", "text/plain", false), "ab");
        let bom = b"\xef\xbb\xbfhello";
        assert_eq!(
            decode_body(bom, "text/plain; charset=iso-8859-1", false),
            "hello"
        );
    }

    #[test]
    fn binary_is_told_from_text_with_stray_nuls() {
        assert!(looks_binary(b"\x89PNG\r\n\x1a\n....", "text/html"));
        let noise: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 32) as u8).collect();
        assert!(looks_binary(&noise, "text/html"));
        let mut page = b"<html><body>".repeat(20);
        page.extend_from_slice(b"a\0b\0c");
        assert!(!looks_binary(&page, "text/html"));
        assert!(!looks_binary(
            b"h\0i\0 \0t\0h\0e\0r\0e\0",
            "text/html; charset=utf-16le"
        ));
    }

    #[test]
    fn titles() {
        assert_eq!(
            html_title("<html><head><TITLE lang=en>\n A &amp; B \n</TITLE>"),
            Some("A & B".into())
        );
        assert_eq!(html_title("<title></title>"), None);
        assert_eq!(html_title("<p>no title</p>"), None);
    }
}
