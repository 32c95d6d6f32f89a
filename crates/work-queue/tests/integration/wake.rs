//! Waiting for work: the blocking wake-up loses nothing and still notices what comes due by
//! the clock alone. Every wait here has a block timeout far longer than the bound each test
//! checks, so work noticed within the bound was noticed by a wake-up, not by the timeout.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use work_queue::{QueueOptions, RetryOutcome, WorkQueue};

use crate::common::{TestRedis, fast_options};

/// Far longer than any bound below.
const LONG_BLOCK: Duration = Duration::from_secs(20);
/// What a wake-up must beat; a lost one would take `LONG_BLOCK`.
const PROMPT: Duration = Duration::from_secs(3);

fn long_block(visibility: Duration) -> QueueOptions {
    QueueOptions {
        block_timeout: LONG_BLOCK,
        visibility_timeout: visibility,
        backoff_cap: Duration::from_secs(1),
        ..fast_options()
    }
}

/// A worker loop on its own waiter that acks each message and reports its id.
fn spawn_worker(q: &WorkQueue, cancel: &CancellationToken) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (q, cancel) = (q.clone(), cancel.clone());
    tokio::spawn(async move {
        let mut waiter = q.waiter();
        while !cancel.is_cancelled() {
            for d in waiter.reserve_wait(1, &cancel).await.expect("reserve") {
                let acked = q.ack(&d).await.expect("ack");
                assert_eq!(acked, work_queue::AckOutcome::Acked);
                let _ = tx.send(d.id);
            }
        }
    });
    rx
}

#[tokio::test]
async fn no_wake_up_is_lost_when_work_arrives_while_the_worker_goes_idle() {
    let t = TestRedis::new();
    let q = t.queue("scrape", long_block(Duration::from_secs(30)));
    let cancel = CancellationToken::new();
    let mut got = spawn_worker(&q, &cancel);
    // Each round enqueues at a slightly different moment after the worker finished the
    // previous message, so some land between its empty reserve and its blocking pop.
    for round in 0..300u64 {
        tokio::time::sleep(Duration::from_micros((round * 37) % 1500)).await;
        let id = format!("m{round}");
        q.enqueue(&id, &json!({ "round": round })).await.unwrap();
        let seen = timeout(PROMPT, got.recv())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the idle worker never woke"));
        assert_eq!(seen.as_deref(), Some(id.as_str()));
    }
    cancel.cancel();
}

#[tokio::test]
async fn a_burst_wakes_every_waiting_worker_in_turn() {
    let t = TestRedis::new();
    let q = t.queue("scrape", long_block(Duration::from_secs(30)));
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for _ in 0..4 {
        let mut got = spawn_worker(&q, &cancel);
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(id) = got.recv().await {
                let _ = tx.send(id);
            }
        });
    }
    for round in 0..20 {
        let items: Vec<(String, serde_json::Value)> = (0..25)
            .map(|i| (format!("r{round}-{i}"), json!({})))
            .collect();
        q.enqueue_bulk(&items).await.unwrap();
        for _ in 0..items.len() {
            timeout(PROMPT, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("round {round}: work left waiting"))
                .unwrap();
        }
    }
    assert_eq!(q.depth().await.unwrap().total(), 0);
    cancel.cancel();
}

#[tokio::test]
async fn a_retry_comes_due_on_time_while_the_worker_is_blocked() {
    let t = TestRedis::new();
    let q = t.queue("scrape", long_block(Duration::from_secs(30)));
    q.enqueue("r", &json!({})).await.unwrap();
    let d = q.reserve(1).await.unwrap().remove(0);
    let backoff = Duration::from_millis(300);
    let scheduled = Instant::now();
    let outcome = q.retry_after(&d, "later", backoff).await.unwrap();
    assert!(
        matches!(outcome, RetryOutcome::Scheduled { .. }),
        "{outcome:?}"
    );
    clear_marker(&t, &q).await;

    let cancel = CancellationToken::new();
    let got = q.waiter().reserve_wait(1, &cancel).await.unwrap();
    let waited = scheduled.elapsed();
    assert_eq!(
        got.len(),
        1,
        "the retry was delivered before the block timeout"
    );
    assert_eq!((got[0].id.as_str(), got[0].attempts), ("r", 1));
    assert!(
        waited >= backoff - Duration::from_millis(50) && waited < PROMPT,
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_retry_scheduled_while_the_worker_is_blocked_shortens_its_wait() {
    let t = TestRedis::new();
    let q = t.queue("scrape", long_block(Duration::from_secs(30)));
    // Another replica holds the message; the worker then waits, knowing only its 30 s lease.
    q.enqueue("r", &json!({})).await.unwrap();
    let d = q.reserve(1).await.unwrap().remove(0);
    let cancel = CancellationToken::new();
    let mut got = spawn_worker(&q, &cancel);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The replica fails it with a short backoff: due long before the worker's wait ends.
    let outcome = q
        .retry_after(&d, "later", Duration::from_millis(200))
        .await
        .unwrap();
    assert!(
        matches!(outcome, RetryOutcome::Scheduled { .. }),
        "{outcome:?}"
    );
    let seen = timeout(PROMPT, got.recv()).await.expect("retry noticed");
    assert_eq!(seen.as_deref(), Some("r"));
    cancel.cancel();
}

/// Clears the wake-up marker, so only a due time can end a wait in time.
async fn clear_marker(t: &TestRedis, q: &WorkQueue) {
    let _: () = redis::cmd("DEL")
        .arg(q.keys().wake())
        .query_async(&mut t.conn())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_lease_is_reclaimed_on_time_while_the_worker_is_blocked() {
    let t = TestRedis::new();
    let visibility = Duration::from_millis(400);
    let q = t.queue("scrape", long_block(visibility));
    // A replica reserved the message and died.
    q.enqueue("orphan", &json!({})).await.unwrap();
    assert_eq!(q.reserve(1).await.unwrap().len(), 1);
    let leased_at = Instant::now();
    clear_marker(&t, &q).await;

    let cancel = CancellationToken::new();
    let got = q.waiter().reserve_wait(1, &cancel).await.unwrap();
    let waited = leased_at.elapsed();
    assert_eq!(got.len(), 1, "reclaimed before the block timeout");
    assert_eq!((got[0].id.as_str(), got[0].deliveries), ("orphan", 2));
    assert!(
        waited >= visibility - Duration::from_millis(50) && waited < PROMPT,
        "{waited:?}"
    );
}

#[tokio::test]
async fn the_first_lease_taken_while_a_worker_waits_is_reclaimed_on_time() {
    let t = TestRedis::new();
    let visibility = Duration::from_millis(400);
    let q = t.queue("scrape", long_block(visibility));
    let cancel = CancellationToken::new();
    let mut got = spawn_worker(&q, &cancel);
    // Let the worker reach its wait (knowing of no lease), then put a message where only a
    // replica that dies after reserving it will see it: straight into the ready list, which
    // no worker of this crate would do, so the worker hears of nothing but the lease.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let keys = q.keys();
    let _: () = redis::pipe()
        .hset_multiple(keys.msg("orphan"), &[("body", "{}"), ("deliveries", "0")])
        .ignore()
        .lpush(keys.ready(), "orphan")
        .ignore()
        .query_async(&mut t.conn())
        .await
        .unwrap();
    let leased_at = Instant::now();
    assert_eq!(q.reserve(1).await.unwrap().len(), 1);
    let seen = timeout(PROMPT, got.recv()).await.expect("lease reclaimed");
    assert_eq!(seen.as_deref(), Some("orphan"));
    assert!(leased_at.elapsed() >= visibility - Duration::from_millis(50));
    cancel.cancel();
}

#[tokio::test]
async fn a_cancelled_wait_returns_at_once_and_leaves_the_marker_for_others() {
    let t = TestRedis::new();
    let q = t.queue("scrape", long_block(Duration::from_secs(30)));
    let cancel = CancellationToken::new();
    let mut waiter = q.waiter();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    assert!(waiter.reserve_wait(1, &cancel).await.unwrap().is_empty());
    assert!(started.elapsed() < PROMPT);

    // The next worker still finds the work that arrived meanwhile.
    q.enqueue("after", &json!({})).await.unwrap();
    let fresh = CancellationToken::new();
    let got = timeout(PROMPT, q.waiter().reserve_wait(1, &fresh))
        .await
        .expect("picked up")
        .unwrap();
    assert_eq!(got[0].id, "after");
}

#[tokio::test]
async fn an_idle_wait_ends_with_its_own_pop_so_the_next_pop_waits_a_whole_block_timeout() {
    let t = TestRedis::new();
    let block = Duration::from_millis(300);
    let q = t.queue(
        "scrape",
        QueueOptions {
            block_timeout: block,
            ..fast_options()
        },
    );
    let cancel = CancellationToken::new();
    let mut waiter = q.waiter();
    for round in 0..5 {
        let started = Instant::now();
        let got = waiter.reserve_wait(8, &cancel).await.unwrap();
        assert!(got.is_empty(), "round {round}");
        assert!(started.elapsed() >= block, "round {round}: ended early");
        // Redis answers a timed-out pop a little late. A wait that ended by its own timer
        // left the pop in flight, and the next wait's pop got only what was left of its
        // block timeout (so idle rounds shrank until one sent two pops).
        let state = format!("{waiter:?}");
        assert!(
            state.contains("popping: 0"),
            "round {round}: a pop was left in flight: {state}"
        );
    }
}
