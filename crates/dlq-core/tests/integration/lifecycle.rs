//! Push, stats, park, discard, purge, retention.

use chrono::{Duration as ChronoDuration, Utc};
use dlq_core::{DlqError, DlqOptions, ErrorKind, ListedItem, RedrivePolicy};

use crate::common::{TestDlq, ids, item};

#[tokio::test]
async fn stats_count_kinds_and_parked_apart() {
    let t = TestDlq::new();
    for i in 0..3 {
        t.dlq
            .push(&item(&format!("t{i}"), ErrorKind::Transient))
            .await
            .unwrap();
    }
    for i in 0..2 {
        t.dlq
            .push(&item(&format!("p{i}"), ErrorKind::Permanent))
            .await
            .unwrap();
    }
    t.dlq.park("t0").await.unwrap().expect("t0 exists");
    t.dlq.park("p0").await.unwrap().expect("p0 exists");
    let s = t.dlq.stats().await.unwrap();
    assert_eq!(s.kind, "scrape");
    assert_eq!((s.total, s.parked, s.active), (5, 2, 3));
    assert_eq!((s.transient, s.permanent, s.dropped), (2, 1, 0));
}

#[tokio::test]
async fn push_of_an_existing_id_replaces_it_and_rejects_other_kinds() {
    let t = TestDlq::new();
    let first = t.dlq.push(&item("a", ErrorKind::Transient)).await.unwrap();
    assert!(!first.replaced);
    t.dlq.push(&item("b", ErrorKind::Transient)).await.unwrap();
    let mut again = item("a", ErrorKind::Permanent);
    again.error = "second failure".into();
    let second = t.dlq.push(&again).await.unwrap();
    assert!(second.replaced);
    assert!(second.seq > first.seq);
    let page = t.dlq.list(10, None).await.unwrap();
    assert_eq!(ids(&page), ["a", "b"], "one entry per id, the newest first");
    assert_eq!(
        t.dlq.get("a").await.unwrap().unwrap().error,
        "second failure"
    );
    let s = t.dlq.stats().await.unwrap();
    assert_eq!((s.total, s.transient, s.permanent), (2, 1, 1));

    let mut wrong = item("c", ErrorKind::Transient);
    wrong.dlq_type = "extraction".into();
    assert!(matches!(
        t.dlq.push(&wrong).await,
        Err(DlqError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn park_keeps_the_item_listed_and_out_of_automatic_redrive() {
    let t = TestDlq::new();
    let mut old = item("old", ErrorKind::Transient);
    old.failed_at = Utc::now() - ChronoDuration::hours(2);
    t.dlq.push(&old).await.unwrap();

    let parked = t.dlq.park("old").await.unwrap().unwrap();
    let ListedItem::Ok(parked) = parked else {
        panic!("malformed")
    };
    assert!(parked.parked);
    assert!(parked.parked_at.is_some());
    // Parking twice changes nothing.
    let again = t.dlq.park("old").await.unwrap().unwrap();
    assert_eq!(again.item().unwrap().parked_at, parked.parked_at);
    assert!(t.dlq.park("nope").await.unwrap().is_none());

    let listed = t.dlq.list(10, None).await.unwrap();
    assert!(listed.items[0].item().unwrap().parked);
    let now = Utc::now().timestamp_millis();
    let actions = t
        .dlq
        .redrive_due(now, 10, &RedrivePolicy::default())
        .await
        .unwrap();
    assert!(
        actions.is_empty(),
        "parked items are not redriven automatically: {actions:?}"
    );

    // A person can still redrive it, whatever its state.
    let out = t.dlq.redrive("old").await.unwrap().unwrap();
    assert!(out.enqueued && out.item.parked);
    assert_eq!(t.ready_ids().await, ["old"]);
    assert_eq!(t.dlq.stats().await.unwrap().parked, 0);
}

#[tokio::test]
async fn discard_removes_and_returns_the_item() {
    let t = TestDlq::new();
    let pushed = item("d", ErrorKind::Transient);
    t.dlq.push(&pushed).await.unwrap();
    t.dlq.park("d").await.unwrap();
    let gone = t.dlq.discard("d").await.unwrap().unwrap();
    assert_eq!(gone.id(), "d");
    assert_eq!(gone.item().unwrap().payload, pushed.payload);
    assert!(t.dlq.discard("d").await.unwrap().is_none());
    assert!(t.dlq.get("d").await.unwrap().is_none());
    let s = t.dlq.stats().await.unwrap();
    assert_eq!((s.total, s.parked, s.transient), (0, 0, 0));
    assert!(t.ready_ids().await.is_empty(), "discard enqueues nothing");
}

#[tokio::test]
async fn purge_removes_only_items_older_than_the_age_parked_included() {
    let t = TestDlq::new();
    let two_days_ago = Utc::now() - ChronoDuration::days(2);
    t.fill("old", 1500, two_days_ago).await;
    t.fill("new", 20, Utc::now()).await;
    t.dlq.park("old7").await.unwrap();
    t.dlq.park("new3").await.unwrap();

    assert!(matches!(
        t.dlq.purge(ChronoDuration::seconds(-1)).await,
        Err(DlqError::InvalidArgument(_))
    ));
    let removed = t.dlq.purge(ChronoDuration::days(1)).await.unwrap();
    assert_eq!(removed, 1500, "batches of 1000 until done");
    let s = t.dlq.stats().await.unwrap();
    assert_eq!((s.total, s.parked, s.transient), (20, 1, 19));
    let page = t.dlq.list(1000, None).await.unwrap();
    assert!(ids(&page).iter().all(|id| id.starts_with("new")));
    assert_eq!(t.dlq.purge(ChronoDuration::days(1)).await.unwrap(), 0);
}

#[tokio::test]
async fn retention_drops_the_oldest_counts_and_reports_them() {
    let t = TestDlq::with_options(DlqOptions {
        max_items: Some(3),
        ..DlqOptions::default()
    });
    let mut dropped = Vec::new();
    for i in 0..5 {
        let out = t
            .dlq
            .push(&item(&format!("k{i}"), ErrorKind::Transient))
            .await
            .unwrap();
        dropped.extend(out.dropped);
    }
    assert_eq!(dropped, ["k0", "k1"]);
    let page = t.dlq.list(10, None).await.unwrap();
    assert_eq!(ids(&page), ["k4", "k3", "k2"]);
    let s = t.dlq.stats().await.unwrap();
    assert_eq!((s.total, s.transient, s.dropped), (3, 3, 2));
    assert!(t.dlq.get("k0").await.unwrap().is_none());
    // Nothing of a dropped item is left behind in any index.
    let due: u64 = t.cmd("ZCARD", &[&t.keys.dlq_due()]).await;
    let time: u64 = t.cmd("ZCARD", &[&t.keys.dlq_time()]).await;
    let item_key: u64 = t.cmd("EXISTS", &[&t.keys.dlq_item("k0")]).await;
    assert_eq!((due, time, item_key), (3, 3, 0));
}

#[tokio::test]
async fn without_retention_nothing_is_ever_dropped() {
    let t = TestDlq::new();
    t.fill("n", 2000, Utc::now()).await;
    let s = t.dlq.stats().await.unwrap();
    assert_eq!((s.total, s.dropped), (2000, 0));
}
