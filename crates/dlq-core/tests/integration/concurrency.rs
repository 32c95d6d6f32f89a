//! Concurrent callers: exactly one winner per item.

use std::collections::HashMap;

use chrono::{Duration as ChronoDuration, Utc};
use dlq_core::{DueOutcome, ErrorKind, RedrivePolicy};
use futures::future::join_all;

use crate::common::{TestDlq, item};

#[tokio::test]
async fn fifty_concurrent_pops_of_one_id_give_exactly_one_item() {
    let t = TestDlq::new();
    let pushed = item("only", ErrorKind::Transient);
    t.dlq.push(&pushed).await.unwrap();

    let results = join_all((0..50).map(|_| {
        let dlq = t.dlq.clone();
        tokio::spawn(async move { dlq.pop("only").await.unwrap() })
    }))
    .await;
    let got: Vec<_> = results.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), 1, "exactly one caller gets the item");
    assert_eq!(got[0], pushed, "the item comes back as it was pushed");
    let stats = t.dlq.stats().await.unwrap();
    assert_eq!((stats.total, stats.transient), (0, 0));
    assert_eq!(t.dlq.get("only").await.unwrap(), None);
}

#[tokio::test]
async fn fifty_concurrent_redrives_of_one_id_enqueue_it_exactly_once() {
    let t = TestDlq::new();
    let mut pushed = item("r1", ErrorKind::Permanent);
    pushed.retry_count = 2;
    t.dlq.push(&pushed).await.unwrap();

    let results = join_all((0..50).map(|_| {
        let dlq = t.dlq.clone();
        tokio::spawn(async move { dlq.redrive("r1").await.unwrap() })
    }))
    .await;
    let got: Vec<_> = results.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), 1);
    assert!(got[0].enqueued);
    assert_eq!(got[0].item, pushed);
    assert_eq!(t.ready_ids().await, ["r1"]);

    // The work message is what the contract says: the payload as body, the redrive counted.
    let msg: HashMap<String, String> = t.cmd("HGETALL", &[&t.keys.msg("r1")]).await;
    let body: serde_json::Value = serde_json::from_str(&msg["body"]).unwrap();
    assert_eq!(body, pushed.payload);
    assert_eq!(msg["redrives"], "3");
    assert_eq!(msg["attempts"], "0");
    assert_eq!(msg["deliveries"], "0");
    assert!(msg["enqueued_at"].parse::<i64>().unwrap() > 0);
    assert_eq!(t.dlq.stats().await.unwrap().total, 0);
}

#[tokio::test]
async fn two_concurrent_redrive_due_callers_redrive_1000_items_exactly_once() {
    let t = TestDlq::new();
    t.fill("due", 1000, Utc::now() - ChronoDuration::hours(1))
        .await;
    let policy = RedrivePolicy {
        max_redrives: 5,
        base: std::time::Duration::from_millis(10),
        cap: std::time::Duration::from_secs(1),
        jitter: 0.5,
    };
    let now = Utc::now().timestamp_millis();
    let workers = (0..2).map(|_| {
        let dlq = t.dlq.clone();
        let policy = policy.clone();
        tokio::spawn(async move {
            let mut redriven = Vec::new();
            loop {
                let actions = dlq.redrive_due(now, 37, &policy).await.unwrap();
                if actions.is_empty() {
                    return redriven;
                }
                for a in actions {
                    assert_eq!(a.outcome, DueOutcome::Redriven { enqueued: true }, "{a:?}");
                    assert_eq!(a.item.as_ref().map(|i| i.id.as_str()), Some(a.id.as_str()));
                    redriven.push(a.id);
                }
                tokio::task::yield_now().await;
            }
        })
    });
    let per_worker: Vec<Vec<String>> = join_all(workers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let mut all: Vec<String> = per_worker.concat();
    assert_eq!(all.len(), 1000);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1000, "no item redriven twice");

    let mut ready = t.ready_ids().await;
    assert_eq!(ready.len(), 1000);
    ready.sort();
    assert_eq!(ready, all);
    assert_eq!(t.dlq.stats().await.unwrap().total, 0);
}
