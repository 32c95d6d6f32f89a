//! Retries, the DLQ, malformed and orphaned messages.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use work_queue::{DeadLetterOutcome, ErrorKind, QueueOptions, RetryOutcome};

use crate::common::{TestRedis, fast_options};

const SOURCE: &str = "7d0c2a52-4d37-4a8e-9f6e-3c2b1a0f9e81";
const JOB: &str = "0b6f3f8e-2a1d-4c5b-8e7f-9a8b7c6d5e4f";

#[tokio::test]
async fn transient_failures_back_off_then_land_in_the_dlq_with_their_attempts() {
    let t = TestRedis::new();
    // Backoffs long enough that "not reservable before its backoff" holds on a loaded
    // machine (with 10 ms a slow reserve could already find the retry due); the waits below
    // stay under the block timeout, so reserve_wait picks each retry up when it is due.
    let opts = QueueOptions {
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_millis(400),
        block_timeout: Duration::from_secs(2),
        ..fast_options()
    }; // max_attempts 3
    let q = t.queue("scrape", opts);
    let body = json!({ "source_id": SOURCE, "job_id": JOB });
    q.enqueue("src", &body).await.unwrap();
    let cancel = CancellationToken::new();

    let mut outcomes = Vec::new();
    for expected_attempts in 0..3 {
        let d = q.reserve_wait(1, &cancel).await.unwrap().remove(0);
        assert_eq!(d.attempts, expected_attempts);
        let outcome = q.retry_later(&d, "HTTP 503").await.unwrap();
        if let RetryOutcome::Scheduled { delay, .. } = outcome {
            assert!(
                q.reserve(1).await.unwrap().is_empty(),
                "waits for its backoff"
            );
            assert_eq!(q.depth().await.unwrap().delayed, 1);
            assert!(delay >= Duration::from_millis(100) && delay <= Duration::from_millis(400));
        }
        outcomes.push(outcome);
    }
    assert!(matches!(
        outcomes[..],
        [
            RetryOutcome::Scheduled { attempts: 1, .. },
            RetryOutcome::Scheduled { attempts: 2, .. },
            RetryOutcome::DeadLettered { attempts: 3 }
        ]
    ));
    assert!(!q.contains("src").await.unwrap());
    assert_eq!(q.depth().await.unwrap().total(), 0);

    let item = t
        .dlq("scrape")
        .get("src")
        .await
        .unwrap()
        .expect("in the DLQ");
    assert_eq!(item.error, "HTTP 503");
    assert_eq!(item.error_kind, ErrorKind::Transient);
    assert_eq!(item.attempts, 3);
    assert_eq!(item.retry_count, 0);
    assert_eq!(item.dlq_type, "scrape");
    assert_eq!(item.source_id, Some(SOURCE.parse().unwrap()));
    assert_eq!(item.job_id, Some(JOB.parse().unwrap()));
    assert_eq!(item.worker_id.as_deref(), Some("test-worker"));
    assert!(!item.parked);
    assert_eq!(item.payload, body);
}

#[tokio::test]
async fn a_permanent_failure_skips_the_retries() {
    let t = TestRedis::new();
    let q = t.queue("extraction", fast_options());
    let body = json!({ "source_id": SOURCE, "job_id": JOB, "extra": [1, 2] });
    q.enqueue("src", &body).await.unwrap();
    let d = q.reserve(1).await.unwrap().remove(0);
    assert_eq!(
        q.dead_letter(&d, "HTTP 404", ErrorKind::Permanent)
            .await
            .unwrap(),
        DeadLetterOutcome::DeadLettered
    );
    assert_eq!(q.depth().await.unwrap().total(), 0);
    let item = t
        .dlq("extraction")
        .get("src")
        .await
        .unwrap()
        .expect("in the DLQ");
    assert_eq!(item.error, "HTTP 404");
    assert_eq!(item.error_kind, ErrorKind::Permanent);
    assert_eq!(item.attempts, 1);
    assert_eq!(item.dlq_type, "extraction");
    assert_eq!(item.payload, body);
    assert!(
        t.dlq("scrape").get("src").await.unwrap().is_none(),
        "only its own family's DLQ"
    );
}

#[tokio::test]
async fn a_malformed_body_reaches_the_worker_and_can_be_dead_lettered() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    assert!(q.enqueue_raw("bad", "{not json").await.unwrap());
    let d = q.reserve(1).await.unwrap().remove(0);
    assert_eq!(d.body, "{not json");
    assert!(d.json().is_err());
    let outcome = q
        .dead_letter(&d, "malformed message", ErrorKind::Permanent)
        .await
        .unwrap();
    assert_eq!(outcome, DeadLetterOutcome::DeadLettered);
    let item = t
        .dlq("scrape")
        .get("bad")
        .await
        .unwrap()
        .expect("in the DLQ");
    assert_eq!(item.error, "malformed message");
    assert_eq!(item.source_id, None);
    assert_eq!(
        item.payload,
        json!("{not json"),
        "kept verbatim as a JSON string"
    );
}

#[tokio::test]
async fn a_hash_without_body_is_delivered_empty_and_an_orphan_id_is_dropped() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    let keys = t.keys("scrape");
    let mut con = t.conn();
    // Damage from outside the queue's scripts: an id whose hash is gone, and a hash that
    // lost its body.
    let _: () = redis::pipe()
        .lpush(keys.ready(), "ghost")
        .hset(keys.msg("hollow"), "deliveries", 0)
        .lpush(keys.ready(), "hollow")
        .query_async(&mut con)
        .await
        .unwrap();
    let batch = q.reserve(10).await.unwrap();
    assert_eq!(batch.len(), 1, "the orphan id is dropped, not delivered");
    assert_eq!(batch[0].id, "hollow");
    assert_eq!(batch[0].body, "");
    assert!(batch[0].json().is_err());
    assert_eq!(q.depth().await.unwrap().ready, 0);
}

#[tokio::test]
async fn retry_after_honours_the_servers_wait_up_to_the_cap() {
    let t = TestRedis::new();
    let opts = QueueOptions {
        backoff_cap: Duration::from_millis(400),
        ..fast_options()
    };
    let q = t.queue("scrape", opts);
    q.enqueue("limited", &json!({})).await.unwrap();
    let d = q.reserve(1).await.unwrap().remove(0);
    let outcome = q
        .retry_after(&d, "HTTP 429", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        RetryOutcome::Scheduled {
            attempts: 1,
            delay: Duration::from_millis(300)
        }
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        q.reserve(1).await.unwrap().is_empty(),
        "not before Retry-After"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let again = q.reserve(1).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].attempts, again[0].deliveries), (1, 2));

    // A Retry-After beyond the cap is clamped to it.
    let outcome = q
        .retry_after(&again[0], "HTTP 429", Duration::from_secs(86_400))
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        RetryOutcome::Scheduled { delay, .. } if delay == Duration::from_millis(400)
    ));
}

#[tokio::test]
async fn a_redriven_message_is_reserved_again_with_its_redrive_count() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    let dlq = t.dlq("scrape");
    let body = json!({ "source_id": SOURCE, "job_id": JOB });
    q.enqueue("src", &body).await.unwrap();
    let d = q.reserve(1).await.unwrap().remove(0);
    assert!(matches!(
        q.retry_later(&d, "timeout").await.unwrap(),
        RetryOutcome::Scheduled { attempts: 1, .. }
    ));
    tokio::time::sleep(Duration::from_millis(60)).await;
    let d = q.reserve(1).await.unwrap().remove(0);
    let outcome = q
        .dead_letter(&d, "HTTP 500", ErrorKind::Transient)
        .await
        .unwrap();
    assert_eq!(outcome, DeadLetterOutcome::DeadLettered);
    assert_eq!(dlq.get("src").await.unwrap().unwrap().attempts, 2);

    let redriven = dlq
        .redrive("src")
        .await
        .unwrap()
        .expect("it was in the DLQ");
    assert!(redriven.enqueued);
    assert!(dlq.get("src").await.unwrap().is_none(), "out of the DLQ");
    assert!(dlq.redrive("src").await.unwrap().is_none(), "only once");

    let again = q.reserve(1).await.unwrap().remove(0);
    assert_eq!(again.id, "src");
    assert_eq!(again.json().unwrap(), body);
    assert_eq!(
        (again.redrives, again.attempts, again.deliveries),
        (1, 0, 1)
    );

    // Its next dead-lettering records the redrive, so the requeue policy can count it.
    let outcome = q
        .dead_letter(&again, "HTTP 500", ErrorKind::Transient)
        .await
        .unwrap();
    assert_eq!(outcome, DeadLetterOutcome::DeadLettered);
    assert_eq!(dlq.get("src").await.unwrap().unwrap().retry_count, 1);
}

/// A held redrive (see `DlqOptions::redrive_hold_ms`) whose caller never releases it (it
/// died before booking the redrive) is reserved anyway once the hold has passed: the
/// message waits, it is not lost.
#[tokio::test]
async fn a_held_redrive_that_is_never_released_is_reserved_after_its_hold() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    let dlq = t.dlq_with(
        "scrape",
        dlq_core::DlqOptions {
            redrive_hold_ms: 300,
            ..dlq_core::DlqOptions::default()
        },
    );
    q.enqueue("src", &json!({ "source_id": SOURCE }))
        .await
        .unwrap();
    let d = q.reserve(1).await.unwrap().remove(0);
    assert_eq!(
        q.dead_letter(&d, "HTTP 500", ErrorKind::Transient)
            .await
            .unwrap(),
        DeadLetterOutcome::DeadLettered
    );
    assert!(dlq.redrive("src").await.unwrap().is_some());
    assert!(q.reserve(1).await.unwrap().is_empty(), "held back");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = q.reserve(1).await.unwrap();
    assert_eq!(
        again.len(),
        1,
        "ready once the hold passed, without a release"
    );
    assert_eq!(again[0].id, "src");
}
