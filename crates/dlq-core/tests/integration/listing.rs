//! Ordering, limit bounds and cursor pagination.

use std::collections::HashSet;

use chrono::Utc;
use dlq_core::{DlqError, ErrorKind, ListedItem};

use crate::common::{TestDlq, ids, item};

#[tokio::test]
async fn lists_newest_first_even_within_one_millisecond_and_pages_exactly() {
    let t = TestDlq::new();
    let same_instant = Utc::now();
    for i in 0..5 {
        let mut it = item(&format!("i{i}"), ErrorKind::Permanent);
        it.failed_at = same_instant;
        t.dlq.push(&it).await.unwrap();
    }

    let all = t.dlq.list(10, None).await.unwrap();
    assert_eq!(ids(&all), ["i4", "i3", "i2", "i1", "i0"]);
    assert_eq!(
        all.next_cursor, None,
        "a page that holds everything has no next page"
    );

    let p1 = t.dlq.list(2, None).await.unwrap();
    assert_eq!(ids(&p1), ["i4", "i3"]);
    let p2 = t.dlq.list(2, p1.next_cursor.as_deref()).await.unwrap();
    assert_eq!(ids(&p2), ["i2", "i1"]);
    let p3 = t.dlq.list(2, p2.next_cursor.as_deref()).await.unwrap();
    assert_eq!(ids(&p3), ["i0"]);
    assert_eq!(p3.next_cursor, None);

    // A page that ends exactly at the last item has no cursor either.
    let exact = t.dlq.list(5, None).await.unwrap();
    assert_eq!(exact.items.len(), 5);
    assert_eq!(exact.next_cursor, None);
}

#[tokio::test]
async fn limit_outside_1_to_1000_is_rejected_and_bad_cursors_too() {
    let t = TestDlq::new();
    t.fill("x", 3, Utc::now()).await;
    for bad in [0usize, 1001, 100_000] {
        match t.dlq.list(bad, None).await {
            Err(DlqError::InvalidLimit { got }) => assert_eq!(got, bad),
            other => panic!("limit {bad}: expected InvalidLimit, got {other:?}"),
        }
    }
    assert_eq!(t.dlq.list(1, None).await.unwrap().items.len(), 1);
    assert_eq!(t.dlq.list(1000, None).await.unwrap().items.len(), 3);
    for bad in ["", "garbage", "c", "123"] {
        assert!(
            matches!(
                t.dlq.list(10, Some(bad)).await,
                Err(DlqError::InvalidCursor(_))
            ),
            "cursor {bad:?}"
        );
    }
}

#[tokio::test]
async fn cursor_pagination_over_10000_items_visits_each_exactly_once() {
    let t = TestDlq::new();
    t.fill("p", 10_000, Utc::now()).await;
    let mut seen = HashSet::new();
    let mut visited = 0usize;
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = t.dlq.list(333, cursor.as_deref()).await.unwrap();
        pages += 1;
        // Items arriving during the walk are newer than the cursor: never visited, and they
        // do not shift the pages (an offset-based listing would repeat items here).
        if pages == 3 {
            t.fill("late", 50, Utc::now()).await;
        }
        for listed in &page.items {
            let ListedItem::Ok(it) = listed else {
                panic!("malformed entry {listed:?}")
            };
            visited += 1;
            assert!(seen.insert(it.id.clone()), "{} visited twice", it.id);
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(visited, 10_000);
    assert!(seen.iter().all(|id| id.starts_with('p')));
    assert_eq!(pages, 10_000usize.div_ceil(333));
    assert_eq!(t.dlq.stats().await.unwrap().total, 10_050);
}
