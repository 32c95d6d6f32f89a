//! Entries that cannot be parsed are reported, never crash a listing, never vanish.

use chrono::Utc;
use dlq_core::{DlqError, DueOutcome, ErrorKind, ListedItem, RedrivePolicy};

use crate::common::{TestDlq, item};

/// Writes entries the way a foreign or older producer might have: one with broken JSON, one
/// whose index entry has no stored item at all.
async fn plant_malformed(t: &TestDlq) {
    let seq: u64 = t.cmd("INCR", &[&t.keys.dlq_seq()]).await;
    let now = Utc::now().timestamp_millis().to_string();
    let _: () = t
        .cmd(
            "HSET",
            &[
                &t.keys.dlq_item("broken"),
                "item",
                "{\"id\": \"broken\", oops",
                "payload",
                "{}",
            ],
        )
        .await;
    for key in [t.keys.dlq_order(), t.keys.dlq_time(), t.keys.dlq_due()] {
        let score = if key == t.keys.dlq_order() {
            seq.to_string()
        } else {
            now.clone()
        };
        let _: () = t.cmd("ZADD", &[&key, &score, "broken"]).await;
    }
    let seq: u64 = t.cmd("INCR", &[&t.keys.dlq_seq()]).await;
    let _: () = t
        .cmd("ZADD", &[&t.keys.dlq_order(), &seq.to_string(), "orphan"])
        .await;
}

#[tokio::test]
async fn malformed_entries_are_listed_with_their_raw_text() {
    let t = TestDlq::new();
    t.dlq
        .push(&item("good0", ErrorKind::Transient))
        .await
        .unwrap();
    plant_malformed(&t).await;
    t.dlq
        .push(&item("good1", ErrorKind::Transient))
        .await
        .unwrap();

    let page = t.dlq.list(10, None).await.unwrap();
    let kinds: Vec<(&str, bool)> = page
        .items
        .iter()
        .map(|i| (i.id(), matches!(i, ListedItem::Malformed(_))))
        .collect();
    assert_eq!(
        kinds,
        [
            ("good1", false),
            ("orphan", true),
            ("broken", true),
            ("good0", false)
        ]
    );
    let ListedItem::Malformed(broken) = &page.items[2] else {
        unreachable!()
    };
    assert_eq!(broken.raw.as_deref(), Some("{\"id\": \"broken\", oops"));
    let json = serde_json::to_value(&page.items[2]).unwrap();
    assert_eq!(json["malformed"], true);
    assert_eq!(json["raw"], "{\"id\": \"broken\", oops");

    // Pagination walks through them too.
    let p1 = t.dlq.list(2, None).await.unwrap();
    let p2 = t.dlq.list(2, p1.next_cursor.as_deref()).await.unwrap();
    assert_eq!(
        p2.items.iter().map(|i| i.id()).collect::<Vec<_>>(),
        ["broken", "good0"]
    );
}

#[tokio::test]
async fn malformed_entries_never_vanish_through_pop_redrive_or_automatic_redrive() {
    let t = TestDlq::new();
    plant_malformed(&t).await;

    for id in ["broken", "orphan"] {
        assert!(
            matches!(t.dlq.get(id).await, Err(DlqError::Malformed { .. })),
            "get {id}"
        );
        assert!(
            matches!(t.dlq.pop(id).await, Err(DlqError::Malformed { .. })),
            "pop {id}"
        );
        assert!(
            matches!(t.dlq.redrive(id).await, Err(DlqError::Malformed { .. })),
            "redrive {id}"
        );
    }
    let bulk = t.dlq.redrive_all(None, None).await.unwrap();
    assert!(bulk.redriven.is_empty());
    assert_eq!(bulk.malformed.len(), 2);

    let now = Utc::now().timestamp_millis() + 1000;
    let actions = t
        .dlq
        .redrive_due(now, 10, &RedrivePolicy::default())
        .await
        .unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(
        (actions[0].id.as_str(), &actions[0].outcome),
        ("broken", &DueOutcome::Malformed)
    );
    assert!(
        t.dlq
            .redrive_due(now, 10, &RedrivePolicy::default())
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        t.ready_ids().await.is_empty(),
        "nothing malformed reached the work queue"
    );
    assert_eq!(
        t.dlq.list(10, None).await.unwrap().items.len(),
        2,
        "both still listed"
    );
    assert_eq!(t.dlq.stats().await.unwrap().total, 2);

    // A person can discard them; discard hands back what was stored.
    let gone = t.dlq.discard("broken").await.unwrap().unwrap();
    let ListedItem::Malformed(m) = gone else {
        panic!("expected malformed")
    };
    assert_eq!(m.raw.as_deref(), Some("{\"id\": \"broken\", oops"));
    assert!(t.dlq.discard("orphan").await.unwrap().is_some());
    assert_eq!(t.dlq.stats().await.unwrap().total, 0);
}
