//! Enqueue, reserve, ack, leases and fencing.

use std::time::Duration;

use serde_json::json;
use work_queue::{AckOutcome, DeadLetterOutcome, ErrorKind, QueueOptions, RetryOutcome};

use crate::common::{TestRedis, fast_options};

#[tokio::test]
async fn reserve_is_fifo_and_ack_removes_the_message() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    for i in 0..5 {
        assert!(
            q.enqueue(&format!("m{i}"), &json!({ "n": i }))
                .await
                .unwrap()
        );
    }
    let batch = q.reserve(3).await.unwrap();
    let ids: Vec<&str> = batch.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["m0", "m1", "m2"]);
    assert_eq!(batch[1].json().unwrap(), json!({ "n": 1 }));
    assert!(
        batch
            .iter()
            .all(|d| d.deliveries == 1 && d.attempts == 0 && d.redrives == 0)
    );
    let mut tokens: Vec<u64> = batch.iter().map(|d| d.token).collect();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "every delivery gets its own token");

    let depth = q.depth().await.unwrap();
    assert_eq!((depth.ready, depth.leased, depth.delayed), (2, 3, 0));

    assert_eq!(q.ack(&batch[0]).await.unwrap(), AckOutcome::Acked);
    let rest: Vec<_> = batch[1..].iter().collect();
    assert_eq!(
        q.ack_many(&rest).await.unwrap(),
        [AckOutcome::Acked, AckOutcome::Acked]
    );
    assert!(!q.contains("m0").await.unwrap());
    assert!(q.contains("m3").await.unwrap());
    // A second ack of the same delivery finds nothing to finish.
    assert_eq!(q.ack(&batch[0]).await.unwrap(), AckOutcome::LeaseLost);

    let next = q.reserve(10).await.unwrap();
    let ids: Vec<&str> = next.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["m3", "m4"]);
}

#[tokio::test]
async fn enqueue_of_a_queued_id_is_a_no_op() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    assert!(q.enqueue("same", &json!({ "v": 1 })).await.unwrap());
    assert!(!q.enqueue("same", &json!({ "v": 2 })).await.unwrap());
    // Still a no-op while the message is held by a worker.
    let held = q.reserve(10).await.unwrap();
    assert_eq!(held.len(), 1);
    assert!(!q.enqueue("same", &json!({ "v": 3 })).await.unwrap());
    assert_eq!(q.depth().await.unwrap().total(), 1);
    assert_eq!(
        held[0].json().unwrap(),
        json!({ "v": 1 }),
        "first body wins"
    );
    assert_eq!(q.ack(&held[0]).await.unwrap(), AckOutcome::Acked);
    // Once finished, the id can be queued again.
    assert!(q.enqueue("same", &json!({ "v": 4 })).await.unwrap());
    assert!(
        q.enqueue("", &json!(null)).await.is_err(),
        "empty ids are refused"
    );
}

fn short_lease() -> QueueOptions {
    QueueOptions {
        visibility_timeout: Duration::from_millis(300),
        ..fast_options()
    }
}

#[tokio::test]
async fn an_expired_lease_is_delivered_again_and_counted() {
    let t = TestRedis::new();
    let q = t.queue("scrape", short_lease());
    q.enqueue("job", &json!({})).await.unwrap();
    let first = q.reserve(1).await.unwrap();
    assert_eq!(first.len(), 1);
    // The holder "dies": no ack, no renew. Before the lease ends nobody else gets it.
    assert!(q.reserve(1).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = q.reserve(1).await.unwrap();
    assert_eq!(second.len(), 1, "redelivered after the visibility timeout");
    assert_eq!(second[0].id, "job");
    assert_eq!(second[0].deliveries, 2);
    assert_ne!(second[0].token, first[0].token);
}

#[tokio::test]
async fn a_stale_holder_cannot_touch_the_new_holders_message() {
    let t = TestRedis::new();
    let q = t.queue("scrape", short_lease());
    q.enqueue("job", &json!({ "source_id": "x" }))
        .await
        .unwrap();
    let stale = q.reserve(1).await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fresh = q.reserve(1).await.unwrap().remove(0);

    assert_eq!(q.ack(&stale).await.unwrap(), AckOutcome::LeaseLost);
    assert!(!q.renew(&stale).await.unwrap());
    assert_eq!(
        q.retry_later(&stale, "late").await.unwrap(),
        RetryOutcome::LeaseLost
    );
    assert_eq!(
        q.dead_letter(&stale, "late", ErrorKind::Permanent)
            .await
            .unwrap(),
        DeadLetterOutcome::LeaseLost
    );
    assert!(
        q.contains("job").await.unwrap(),
        "the message is still there"
    );
    assert_eq!(q.depth().await.unwrap().leased, 1);
    assert!(t.dlq("scrape").get("job").await.unwrap().is_none());
    assert_eq!(q.ack(&fresh).await.unwrap(), AckOutcome::Acked);
    assert!(!q.contains("job").await.unwrap());
}

#[tokio::test]
async fn a_late_ack_counts_while_nobody_else_took_the_message() {
    // The fence is the token, not the clock: a holder that overran its lease but whose
    // message no other worker reserved meanwhile still finishes it, which saves a
    // pointless redelivery. Reclaimed work also goes ahead of newer work.
    let t = TestRedis::new();
    let q = t.queue("scrape", short_lease());
    q.enqueue("a", &json!({})).await.unwrap();
    let late = q.reserve(1).await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(q.ack(&late).await.unwrap(), AckOutcome::Acked);
    assert!(
        q.reserve(1).await.unwrap().is_empty(),
        "not delivered again"
    );

    q.enqueue("b", &json!({})).await.unwrap();
    let held = q.reserve(1).await.unwrap().remove(0);
    q.enqueue("c", &json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = q.reserve(1).await.unwrap().remove(0);
    assert_eq!(next.id, "b", "reclaimed work goes ahead of newer work");
    assert_eq!(q.ack(&held).await.unwrap(), AckOutcome::LeaseLost);
}

#[tokio::test]
async fn renew_keeps_a_long_job_to_its_holder() {
    let t = TestRedis::new();
    let q = t.queue("scrape", short_lease());
    q.enqueue("long", &json!({})).await.unwrap();
    let held = q.reserve(1).await.unwrap().remove(0);
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(q.renew(&held).await.unwrap());
        assert!(
            q.reserve(1).await.unwrap().is_empty(),
            "nobody else gets it"
        );
    }
    // 600 ms in, twice the visibility timeout, and the holder still owns it.
    assert_eq!(q.ack(&held).await.unwrap(), AckOutcome::Acked);
}

#[tokio::test]
async fn keep_alive_renews_in_the_background_and_reports_a_lost_lease() {
    let t = TestRedis::new();
    let q = t.queue("scrape", short_lease());
    q.enqueue("long", &json!({})).await.unwrap();
    let held = q.reserve(1).await.unwrap().remove(0);
    let keeper = q.keep_alive(&held);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(q.reserve(1).await.unwrap().is_empty(), "still held");
    assert!(!keeper.is_lost());
    drop(keeper);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = q.reserve(1).await.unwrap();
    assert_eq!(taken.len(), 1, "renewal stopped with the keeper");

    // The first holder's keeper finds out that the lease moved on.
    let stale = q.keep_alive(&held);
    tokio::time::timeout(Duration::from_secs(2), stale.lost().cancelled())
        .await
        .expect("lost fires");
    assert_eq!(q.ack(&taken[0]).await.unwrap(), AckOutcome::Acked);
}

#[tokio::test]
async fn a_held_batch_keeps_the_leases_of_what_still_waits_and_only_of_that() {
    let t = TestRedis::new();
    let q = t.queue("scrape", short_lease());
    for id in ["a", "b", "c"] {
        q.enqueue(id, &json!({})).await.unwrap();
    }
    let mut held = q.hold(q.reserve(3).await.unwrap());
    assert_eq!(held.len(), 3);
    // "a" leaves the batch at once: from then on nobody renews its lease.
    let a = held.next().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let taken = q.reserve(3).await.unwrap();
    assert_eq!(
        ids(&taken),
        ["a"],
        "only the delivery that left the batch ran out"
    );
    assert_eq!(q.ack(&a).await.unwrap(), AckOutcome::LeaseLost);
    assert_eq!(q.ack(&taken[0]).await.unwrap(), AckOutcome::Acked);
    // The two still waiting were renewed past twice the visibility timeout.
    let (b, c) = (held.next().unwrap(), held.next().unwrap());
    assert!(held.is_empty());
    assert_eq!(q.ack(&b).await.unwrap(), AckOutcome::Acked);
    // Dropping the batch (now empty) stops the renewals; "c" is the caller's to keep.
    drop(held);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = q.reserve(3).await.unwrap();
    assert_eq!(ids(&again), ["c"], "not renewed once it left the batch");
    assert_eq!(q.ack(&c).await.unwrap(), AckOutcome::LeaseLost);
    assert_eq!(q.ack(&again[0]).await.unwrap(), AckOutcome::Acked);
}

fn ids(batch: &[work_queue::Delivery]) -> Vec<&str> {
    batch.iter().map(|d| d.id.as_str()).collect()
}
