//! Inputs the fuzzer found interesting for the scrape worker's readers of outside bytes
//! (`fuzz/corpus-regressions/decode/` and `robots/`), run through the same steps and checks
//! as the `decode` and `robots` fuzz targets on every test run.

use std::path::{Path, PathBuf};

use scrape_worker::RobotsRules;
use scrape_worker::decode::{
    charset_param, decode_body, html_title, looks_binary, looks_like_html, media_type,
};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus-regressions")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .expect("the regression corpus exists")
        .map(|e| {
            let path = e.expect("a readable directory").path();
            let data = std::fs::read(&path).expect("a readable file");
            (path, data)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} is empty", dir.display());
    inputs
}

/// Splits at the first newline, as the targets do.
fn split(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = data.iter().position(|&b| b == b'\n')?;
    Some((&data[..at], &data[at + 1..]))
}

#[test]
fn fuzz_regressions_decode() {
    for (path, data) in corpus("decode") {
        let (head, body) = split(&data).unwrap_or((&data, &[]));
        let content_type = String::from_utf8_lossy(head);
        let is_html = data.first().is_some_and(|b| b & 1 == 1);
        let media = media_type(&content_type);
        assert!(
            !media.contains(';') && media.trim() == media,
            "{}",
            path.display()
        );
        let _ = (
            charset_param(&content_type),
            looks_binary(body, &content_type),
        );
        let _ = looks_like_html(body);
        let text = decode_body(body, &content_type, is_html);
        assert!(!text.contains('\0'), "{}", path.display());
        if let Ok(s) = std::str::from_utf8(body) {
            let same = decode_body(body, "text/plain; charset=utf-8", false);
            let expected = s.strip_prefix('\u{feff}').unwrap_or(s).replace('\0', "");
            assert_eq!(same, expected, "{}", path.display());
        }
        if let Some(title) = html_title(&text) {
            assert!(
                !title.is_empty() && title.chars().count() <= 1000,
                "{}",
                path.display()
            );
            assert!(
                title.trim() == title && !title.contains("  "),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn fuzz_regressions_robots() {
    for (path, data) in corpus("robots") {
        let (url_path, body) = split(&data).unwrap_or((&[], &data));
        let (rules, _) = RobotsRules::parse("pipeline-scraper", body);
        let Ok(url) = url::Url::parse("https://example.com/")
            .and_then(|base| base.join(&String::from_utf8_lossy(url_path)))
        else {
            continue;
        };
        let allowed = rules.allows(&url);
        assert_eq!(rules.allows(&url), allowed, "{}", path.display());
        // The parser follows Google's in accepting misspelt keys (`diasllow`, `disalow`), so
        // "no rule" cannot mean "no `allow`"; every accepted spelling has an `l`, though.
        if !body.iter().any(|b| b.eq_ignore_ascii_case(&b'l')) {
            assert!(allowed, "{}: {url} refused without a rule", path.display());
        }
    }
}
