//! Lanes: fair share between lanes, priorities within a lane, caps and start rates, and
//! that a lane survives retries, lease expiry and a trip through the DLQ.

use std::time::Duration;

use serde_json::json;
use work_queue::{
    AckOutcome, DeadLetterOutcome, ErrorKind, Lane, LaneLimits, LaneState, Priority, RetryOutcome,
};

use crate::common::{TestRedis, fast_options};

fn lane(key: &str) -> Lane {
    Lane::new(key, Priority::Normal)
}

/// Reserves and acks one message at a time until none is ready; returns ids in order.
async fn drain_one_by_one(q: &work_queue::WorkQueue) -> Vec<String> {
    let mut order = Vec::new();
    loop {
        let batch = q.reserve(1).await.unwrap();
        let Some(d) = batch.first() else { break };
        order.push(d.id.clone());
        assert_eq!(q.ack(d).await.unwrap(), AckOutcome::Acked);
    }
    order
}

#[tokio::test]
async fn a_small_lane_waits_behind_one_turn_of_a_big_one_not_its_backlog() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    let big: Vec<(String, Lane, serde_json::Value)> = (0..500)
        .map(|i| (format!("a{i}"), lane("A"), json!({})))
        .collect();
    q.enqueue_bulk_in(&big).await.unwrap();
    // A has been served for a while before B arrives.
    for d in q.reserve(100).await.unwrap() {
        assert_eq!(q.ack(&d).await.unwrap(), AckOutcome::Acked);
    }
    for i in 0..10 {
        q.enqueue_in(&lane("B"), &format!("b{i}"), &json!({}))
            .await
            .unwrap();
    }
    let order = drain_one_by_one(&q).await;
    assert_eq!(order.len(), 400 + 10);
    let last_b = order.iter().rposition(|id| id.starts_with('b')).unwrap();
    // Equal weights: A and B alternate, so B's ten are done within the first 21 serves.
    assert!(
        last_b <= 20,
        "B's last message served at {last_b}: {order:?}"
    );
    // Within a lane, first in, first out.
    let a: Vec<&String> = order.iter().filter(|id| id.starts_with('a')).collect();
    let wanted: Vec<String> = (100..500).map(|i| format!("a{i}")).collect();
    assert!(a.iter().zip(&wanted).all(|(x, y)| *x == y));
}

#[tokio::test]
async fn a_batch_is_shared_between_lanes_and_weights_set_the_shares() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    q.set_lane_limits(
        "heavy",
        &LaneLimits {
            weight: 3,
            ..LaneLimits::default()
        },
    )
    .await
    .unwrap();
    let mut items = Vec::new();
    for key in ["heavy", "light"] {
        for i in 0..300 {
            items.push((format!("{key}-{i}"), lane(key), json!({})));
        }
    }
    q.enqueue_bulk_in(&items).await.unwrap();
    let batch = q.reserve(200).await.unwrap();
    let heavy = batch.iter().filter(|d| d.id.starts_with("heavy")).count();
    let light = batch.len() - heavy;
    assert_eq!(batch.len(), 200);
    // 3 : 1, give or take one turn.
    assert!((149..=151).contains(&heavy), "heavy {heavy}, light {light}");
    let limits = q.lane_limits("heavy").await.unwrap();
    assert_eq!(limits.weight, 3);
}

#[tokio::test]
async fn a_lane_coming_back_from_idle_gets_no_credit_for_it() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    q.enqueue_in(&lane("B"), "b0", &json!({})).await.unwrap();
    let items: Vec<_> = (0..300)
        .map(|i| (format!("a{i}"), lane("A"), json!({})))
        .collect();
    q.enqueue_bulk_in(&items).await.unwrap();
    // B is served once, then A alone for a long while.
    for d in q.reserve(201).await.unwrap() {
        assert_eq!(q.ack(&d).await.unwrap(), AckOutcome::Acked);
    }
    // B comes back: it alternates with A instead of taking 200 turns in a row.
    let more: Vec<_> = (1..50)
        .map(|i| (format!("b{i}"), lane("B"), json!({})))
        .collect();
    q.enqueue_bulk_in(&more).await.unwrap();
    let batch = q.reserve(20).await.unwrap();
    let b = batch.iter().filter(|d| d.id.starts_with('b')).count();
    assert!((9..=11).contains(&b), "B took {b} of 20");
}

#[tokio::test]
async fn high_goes_first_within_its_lane_and_low_waits_within_the_bound() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    // One priority step worth 5 enqueues of the lane.
    q.set_priority_lead(5).await.unwrap();
    let p = |prio| Lane::new("P", prio);
    q.enqueue_in(&p(Priority::Low), "low", &json!({}))
        .await
        .unwrap();
    for i in 0..3 {
        q.enqueue_in(&p(Priority::Normal), &format!("n{i}"), &json!({}))
            .await
            .unwrap();
    }
    q.enqueue_in(&p(Priority::High), "h0", &json!({}))
        .await
        .unwrap();
    assert_eq!(q.reserve(1).await.unwrap()[0].id, "h0");
    // A stream of high work: the low message is overtaken by at most 2 x lead (10) messages
    // queued after it, so it is served by the time the lane has queued 11 after it.
    let mut order = Vec::new();
    for i in 1..40 {
        q.enqueue_in(&p(Priority::High), &format!("h{i}"), &json!({}))
            .await
            .unwrap();
        let d = q.reserve(1).await.unwrap().remove(0);
        order.push(d.id.clone());
        if d.id == "low" {
            break;
        }
    }
    assert!(order.contains(&"low".to_owned()), "low starved: {order:?}");
    let low_at = order.iter().position(|id| id == "low").unwrap();
    assert!(low_at <= 12, "low served after {low_at} more: {order:?}");
}

#[tokio::test]
async fn a_capped_lane_never_has_more_in_flight_and_resumes_on_ack() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    q.set_lane_limits(
        "capped",
        &LaneLimits {
            max_in_flight: Some(4),
            ..LaneLimits::default()
        },
    )
    .await
    .unwrap();
    let mut items: Vec<_> = (0..20)
        .map(|i| (format!("c{i}"), lane("capped"), json!({})))
        .collect();
    items.extend((0..20).map(|i| (format!("f{i}"), lane("free"), json!({}))));
    q.enqueue_bulk_in(&items).await.unwrap();
    let first = q.reserve(30).await.unwrap();
    let capped: Vec<_> = first.iter().filter(|d| d.id.starts_with('c')).collect();
    assert_eq!(capped.len(), 4, "the cap holds within one batch");
    assert_eq!(first.len(), 24, "the other lane fills the rest");
    assert!(q.reserve(10).await.unwrap().is_empty());
    let lanes = q.lanes().await.unwrap();
    let c = lanes.iter().find(|l| l.lane == "capped").unwrap();
    assert_eq!((c.ready, c.in_flight, c.state), (16, 4, LaneState::Capped));

    // One finishes (ack), one fails (retry), one dead-letters: three slots free up.
    assert_eq!(q.ack(capped[0]).await.unwrap(), AckOutcome::Acked);
    assert!(matches!(
        q.retry_later(capped[1], "flaky").await.unwrap(),
        RetryOutcome::Scheduled { .. }
    ));
    assert_eq!(
        q.dead_letter(capped[2], "bad", ErrorKind::Permanent)
            .await
            .unwrap(),
        DeadLetterOutcome::DeadLettered
    );
    let next = q.reserve(10).await.unwrap();
    assert_eq!(
        next.len(),
        3,
        "{:?}",
        next.iter().map(|d| &d.id).collect::<Vec<_>>()
    );
    let lanes = q.lanes().await.unwrap();
    let c = lanes.iter().find(|l| l.lane == "capped").unwrap();
    assert_eq!(c.in_flight, 4);

    // Lifting the cap places the lane again at once.
    q.set_lane_limits("capped", &LaneLimits::default())
        .await
        .unwrap();
    assert!(!q.reserve(100).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lease_that_runs_out_frees_its_slot() {
    let t = TestRedis::new();
    let mut opts = fast_options();
    opts.visibility_timeout = Duration::from_millis(200);
    let q = t.queue("scrape", opts);
    q.set_lane_limits(
        "x",
        &LaneLimits {
            max_in_flight: Some(1),
            ..LaneLimits::default()
        },
    )
    .await
    .unwrap();
    q.enqueue_in(&lane("x"), "x1", &json!({})).await.unwrap();
    q.enqueue_in(&lane("x"), "x2", &json!({})).await.unwrap();
    let held = q.reserve(5).await.unwrap();
    assert_eq!(held.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The holder died: its lease runs out, the slot frees, and the lane is served again
    // (the reclaimed message first: it keeps its rank).
    let again = q.reserve(5).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, held[0].id);
}

#[tokio::test]
async fn a_start_rate_spaces_the_starts() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    q.set_lane_limits(
        "slow",
        &LaneLimits {
            start_interval: Some(Duration::from_millis(200)),
            burst: 2,
            ..LaneLimits::default()
        },
    )
    .await
    .unwrap();
    let items: Vec<_> = (0..6)
        .map(|i| (format!("s{i}"), lane("slow"), json!({})))
        .collect();
    q.enqueue_bulk_in(&items).await.unwrap();
    let burst = q.reserve(10).await.unwrap();
    assert_eq!(burst.len(), 2, "the burst");
    assert!(q.reserve(10).await.unwrap().is_empty());
    let lanes = q.lanes().await.unwrap();
    assert_eq!(lanes[0].state, LaneState::Held);
    // The waiter wakes up for the held lane by itself.
    let cancel = tokio_util::sync::CancellationToken::new();
    let started = std::time::Instant::now();
    let next = q.reserve_wait(10, &cancel).await.unwrap();
    assert_eq!(next.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn lane_and_priority_survive_a_trip_through_the_dlq() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    let d = t.dlq("scrape");
    q.set_priority_lead(1_000).await.unwrap();
    let items: Vec<_> = (0..5)
        .map(|i| (format!("n{i}"), lane("P"), json!({})))
        .collect();
    q.enqueue_bulk_in(&items).await.unwrap();
    q.enqueue_in(&Lane::new("P", Priority::High), "urgent", &json!({}))
        .await
        .unwrap();
    let first = q.reserve(1).await.unwrap().remove(0);
    assert_eq!(first.id, "urgent");
    assert_eq!(
        q.dead_letter(&first, "boom", ErrorKind::Transient)
            .await
            .unwrap(),
        DeadLetterOutcome::DeadLettered
    );
    assert!(d.redrive("urgent").await.unwrap().unwrap().enqueued);
    // Back in lane P, at high priority: ahead of the normal messages again.
    assert_eq!(q.reserve(1).await.unwrap()[0].id, "urgent");
    let lanes = q.lanes().await.unwrap();
    assert_eq!(lanes.len(), 1);
    assert_eq!((lanes[0].lane.as_str(), lanes[0].ready), ("P", 5));
}

#[tokio::test]
async fn ids_queued_by_a_version_before_lanes_are_served() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    let keys = t.keys("scrape");
    // What the previous version left: ids in the ready list, oldest at the right.
    let mut pipe = redis::pipe();
    for i in 0..3 {
        pipe.hset_multiple(
            keys.msg(&format!("old{i}")),
            &[
                ("body", "{}"),
                ("deliveries", "0"),
                ("enqueued_at", &format!("{}", 1000 + i)),
            ],
        )
        .ignore()
        .lpush(keys.ready(), format!("old{i}"))
        .ignore();
    }
    let _: () = pipe.query_async(&mut t.conn()).await.unwrap();
    q.enqueue("new", &json!({})).await.unwrap();
    assert_eq!(q.depth().await.unwrap().ready, 4);
    let order: Vec<String> = q
        .reserve(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(order, ["old0", "old1", "old2", "new"]);
}

#[tokio::test]
async fn bad_lane_keys_and_limits_are_refused() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    let err = q
        .enqueue_in(&lane("a|b"), "x", &json!({}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lane key"), "{err}");
    for bad in [
        LaneLimits {
            weight: 0,
            ..LaneLimits::default()
        },
        LaneLimits {
            max_in_flight: Some(0),
            ..LaneLimits::default()
        },
        LaneLimits {
            burst: 0,
            ..LaneLimits::default()
        },
    ] {
        assert!(q.set_lane_limits("p", &bad).await.is_err(), "{bad:?}");
    }
    assert!("urgent".parse::<Priority>().is_err());
    assert_eq!("high".parse::<Priority>().unwrap(), Priority::High);
}

#[tokio::test]
async fn bookkeeping_changed_behind_the_queue_is_repaired() {
    let t = TestRedis::new();
    let q = t.queue("scrape", fast_options());
    let keys = t.keys("scrape");
    q.set_lane_limits(
        "x",
        &LaneLimits {
            max_in_flight: Some(1),
            ..LaneLimits::default()
        },
    )
    .await
    .unwrap();
    for i in 0..3 {
        q.enqueue_in(&lane("x"), &format!("x{i}"), &json!({}))
            .await
            .unwrap();
    }
    q.enqueue_in(&lane("y"), "y0", &json!({})).await.unwrap();
    let held = q.reserve(10).await.unwrap();
    assert_eq!(held.len(), 2, "one of x (its cap), one of y");
    // Damage: the in-flight message of x vanishes by hand (its count stays at 1, so x would
    // stay capped for ever), and lane y loses its place on the rota.
    let x_held = held.iter().find(|d| d.id.starts_with('x')).unwrap();
    let _: () = redis::pipe()
        .del(keys.msg(&x_held.id))
        .zrem(keys.leases(), &x_held.id)
        .hset_multiple(
            keys.msg("y1"),
            &[
                ("body", "{}"),
                ("deliveries", "0"),
                ("lane", "y"),
                ("rank", "9"),
            ],
        )
        .ignore()
        .zadd(keys.lane("y"), "y1", 9)
        .ignore()
        .hincr(keys.lanes(), "n", 1)
        .ignore()
        .query_async(&mut t.conn())
        .await
        .unwrap();
    assert!(
        q.reserve(10).await.unwrap().is_empty(),
        "x capped, y unplaced"
    );
    assert_eq!(q.repair_lanes().await.unwrap(), (1, 2));
    let ids: Vec<String> = q
        .reserve(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&"y1".to_owned()));
    assert_eq!(
        q.repair_lanes().await.unwrap(),
        (0, 0),
        "nothing left to repair"
    );
}
