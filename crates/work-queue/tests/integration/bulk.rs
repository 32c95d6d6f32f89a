//! Bulk enqueue, concurrent consumers and the bounded wait.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use work_queue::{AckOutcome, BulkOutcome};

use crate::common::{TestRedis, fast_options};

#[tokio::test]
async fn bulk_enqueue_is_chunked_and_idempotent() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    let items: Vec<(String, serde_json::Value)> = (0..10_000)
        .map(|i| (format!("id-{i}"), json!({ "n": i })))
        .collect();
    let first = q.enqueue_bulk(&items).await.unwrap();
    assert_eq!(
        first,
        BulkOutcome {
            enqueued: 10_000,
            already_queued: 0
        }
    );
    // A re-run (as after a timeout) completes without duplicates.
    let again = q.enqueue_bulk(&items).await.unwrap();
    assert_eq!(
        again,
        BulkOutcome {
            enqueued: 0,
            already_queued: 10_000
        }
    );
    // Repeats within one call and a mix of old and new ids.
    let mixed = vec![
        ("id-1".to_owned(), json!(1)),
        ("new".to_owned(), json!(2)),
        ("new".to_owned(), json!(3)),
    ];
    assert_eq!(
        q.enqueue_bulk(&mixed).await.unwrap(),
        BulkOutcome {
            enqueued: 1,
            already_queued: 2
        }
    );
    assert_eq!(q.depth().await.unwrap().ready, 10_001);
    // FIFO across chunk boundaries.
    let head = q.reserve(1000).await.unwrap();
    assert!(
        head.iter()
            .enumerate()
            .all(|(i, d)| d.id == format!("id-{i}"))
    );
    let next = q.reserve(1).await.unwrap();
    assert_eq!(next[0].id, "id-1000");
}

#[tokio::test]
async fn eight_consumers_process_every_message_exactly_once() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    let items: Vec<(String, serde_json::Value)> =
        (0..5_000).map(|i| (format!("m{i}"), json!(i))).collect();
    q.enqueue_bulk(&items).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let q = q.clone();
        tasks.spawn(async move {
            let mut seen = Vec::new();
            // Bounded: 5,000 messages in batches of 7 need far fewer rounds than this.
            for _ in 0..5_000 {
                let batch = q.reserve(7).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                let refs: Vec<_> = batch.iter().collect();
                let acked = q.ack_many(&refs).await.unwrap();
                assert!(acked.iter().all(|a| *a == AckOutcome::Acked));
                seen.extend(batch.into_iter().map(|d| d.id));
            }
            seen
        });
    }
    let mut all = Vec::new();
    while let Some(seen) = tasks.join_next().await {
        all.extend(seen.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 5_000, "no message processed twice");
    assert_eq!(unique.len(), 5_000, "every message processed");
    assert_eq!(q.depth().await.unwrap().total(), 0);
}

#[tokio::test]
async fn reserve_wait_is_bounded_and_notices_cancellation_and_new_work() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options()); // block_timeout 500 ms
    let cancel = CancellationToken::new();

    let started = Instant::now();
    assert!(q.reserve_wait(1, &cancel).await.unwrap().is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );

    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    assert!(q.reserve_wait(1, &cancel).await.unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_millis(300));

    let fresh = CancellationToken::new();
    let producer = q.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        producer.enqueue("late", &json!({})).await.unwrap();
    });
    let got = q.reserve_wait(5, &fresh).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, "late");
}
