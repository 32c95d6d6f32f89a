//! A submitted URL (any text) through the submit check, then a redirect's Location (the
//! second line) resolved against it as the fetcher does, then the fetch-time address check.
//! A URL the check accepts must be accepted again unchanged (what is stored is its own
//! normal form), within the length limit, http(s), with a host, no credentials, no fragment.
//!
//! Shared by the fuzz target of the same name and by the test that replays the kept inputs
//! (`fuzz/corpus-regressions/url_normalize/`), so the two cannot check different things.

use pipeline_ops::submit::{MAX_URL_LEN, validate_url};
use scrape_worker::guard::AddressPolicy;

/// Runs one input through the steps and checks; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let (raw, location) = input.split_once('\n').unwrap_or((&input, ""));
    let Ok(valid) = validate_url(raw) else {
        return;
    };
    let normal = valid.as_str();
    assert_eq!(
        validate_url(normal).as_ref().map(|again| again.as_str()),
        Ok(normal),
        "from {raw:?}"
    );
    assert!(
        normal.len() <= MAX_URL_LEN,
        "{} bytes from {raw:?}",
        normal.len()
    );
    let url = url::Url::parse(normal).expect("a validated URL parses");
    assert!(matches!(url.scheme(), "http" | "https"));
    assert!(url.host_str().is_some_and(|h| !h.is_empty()));
    assert!(url.username().is_empty() && url.password().is_none());
    assert!(url.fragment().is_none());

    let policy = AddressPolicy::new(&[]);
    let _ = policy.check_url(&url);
    if let Ok(next) = url.join(location) {
        let _ = policy.check_url(&next);
    }
}
