//! Inputs the fuzzer found interesting for URL validation and queue message decoding
//! (`fuzz/corpus-regressions/url_normalise/` and `queue_message/`), run through the same
//! steps and checks as the `url_normalise` and `queue_message` fuzz targets.

use std::path::{Path, PathBuf};

use dlq_core::DlqItem;
use pipeline_ops::messages::SourceMessage;
use pipeline_ops::submit::{MAX_URL_LEN, validate_url};
use work_queue::Delivery;

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

#[test]
fn fuzz_regressions_url_normalise() {
    for (path, data) in corpus("url_normalise") {
        let input = String::from_utf8_lossy(&data);
        let (raw, location) = input.split_once('\n').unwrap_or((&input, ""));
        let Ok(normal) = validate_url(raw) else {
            continue;
        };
        assert_eq!(
            validate_url(&normal).as_deref(),
            Ok(normal.as_str()),
            "{}",
            path.display()
        );
        assert!(normal.len() <= MAX_URL_LEN, "{}", path.display());
        let url = url::Url::parse(&normal).expect("a validated URL parses");
        assert!(
            matches!(url.scheme(), "http" | "https"),
            "{}",
            path.display()
        );
        assert!(
            url.host_str().is_some_and(|h| !h.is_empty()),
            "{}",
            path.display()
        );
        assert!(
            url.username().is_empty() && url.password().is_none(),
            "{}",
            path.display()
        );
        assert!(url.fragment().is_none(), "{}", path.display());
        let _ = url.join(location);
    }
}

#[test]
fn fuzz_regressions_queue_message() {
    for (path, data) in corpus("queue_message") {
        let body = Delivery::body_from_stored(data.clone());
        if let Ok(s) = std::str::from_utf8(&data) {
            assert_eq!(body, s, "{}", path.display());
        }
        let delivery = Delivery {
            id: "00000000-0000-0000-0000-000000000001".into(),
            token: 1,
            body,
            deliveries: 1,
            attempts: 0,
            redrives: 0,
        };
        let _ = delivery.json();
        if let Ok(msg) = delivery.parse::<SourceMessage>() {
            let again: SourceMessage = serde_json::from_value(msg.body()).expect("decodes");
            assert_eq!(again, msg, "{}", path.display());
        }
        if let Ok(item) = serde_json::from_str::<DlqItem>(&delivery.body)
            && let Ok(encoded) = item.encode()
        {
            let mut back: DlqItem = serde_json::from_str(&encoded.item_json).expect("decodes");
            back.payload = serde_json::from_str(&encoded.payload).expect("decodes");
            back.parked = item.parked;
            back.parked_at = item.parked_at;
            assert_eq!(back, item, "{}", path.display());
        }
    }
}
