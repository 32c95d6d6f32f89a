//! A robots.txt body (any bytes, as fetched and cut) through the scrape worker's rules,
//! then asked about a URL whose path is the input's first line.
//!
//! Shared by the fuzz target of the same name and by the test that replays the kept inputs
//! (`fuzz/corpus-regressions/robots/`), so the two cannot check different things.

use scrape_worker::RobotsRules;

/// Runs one input through the steps and checks; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let (path, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[][..], data),
    };
    let (rules, _) = RobotsRules::parse("pipeline-scraper", body);
    let Ok(url) = url::Url::parse("https://example.com/")
        .and_then(|base| base.join(&String::from_utf8_lossy(path)))
    else {
        return;
    };
    let allowed = rules.allows(&url);
    // Asking twice is the same question (the cache asks many times per parse).
    assert_eq!(rules.allows(&url), allowed);
    // A file without a single rule line cannot forbid anything. The parser follows Google's
    // in accepting misspelt keys (`diasllow`, `disalow`: the first run found that), so the
    // test for "no rule" is weaker: every spelling it accepts has an `l`.
    if !body.iter().any(|b| b.eq_ignore_ascii_case(&b'l')) {
        assert!(allowed, "{url} refused by rules without a rule");
    }
}
