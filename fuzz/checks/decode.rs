//! A fetched body (any bytes) under any Content-Type, through what the scrape worker does
//! with it before storing: media type, charset decoding, binary and HTML sniffing, title.
//! Input: the Content-Type up to the first newline, the body after it; the first byte's
//! low bit says whether the body is treated as HTML.
//!
//! Shared by the fuzz target of the same name and by the test that replays the kept inputs
//! (`fuzz/corpus-regressions/decode/`), so the two cannot check different things.

use scrape_worker::decode::{
    charset_param, decode_body, html_title, looks_binary, looks_like_html, media_type,
};

/// Runs one input through the steps and checks; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let content_type = String::from_utf8_lossy(head);
    let is_html = data.first().is_some_and(|b| b & 1 == 1);

    let media = media_type(&content_type);
    assert!(!media.contains(';'));
    assert_eq!(media.trim(), media);
    assert!(!media.bytes().any(|b| b.is_ascii_uppercase()));
    let _ = charset_param(&content_type);
    let _ = looks_binary(body, &content_type);
    let _ = looks_like_html(body);

    // Postgres text cannot hold NUL: the decoder promises none, whatever the charset.
    let text = decode_body(body, &content_type, is_html);
    assert!(!text.contains('\0'));

    // A body that is UTF-8 and declared so comes back as it was, less a BOM and NULs.
    if let Ok(s) = std::str::from_utf8(body) {
        let same = decode_body(body, "text/plain; charset=utf-8", false);
        assert_eq!(
            same,
            s.strip_prefix('\u{feff}').unwrap_or(s).replace('\0', "")
        );
    }

    if let Some(title) = html_title(&text) {
        assert!(!title.is_empty());
        assert!(title.chars().count() <= 1000);
        assert_eq!(title.trim(), title);
        assert!(!title.contains("  "));
    }
}
