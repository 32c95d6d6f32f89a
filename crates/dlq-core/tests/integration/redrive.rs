//! Redrive by id, in bulk, and under the automatic policy.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use dlq_core::{DueOutcome, ErrorKind, RedrivePolicy, RedriveResult};

use crate::common::{TestDlq, item};

#[tokio::test]
async fn redrive_of_an_already_queued_message_does_not_enqueue_it_twice() {
    let t = TestDlq::new();
    t.dlq.push(&item("q", ErrorKind::Transient)).await.unwrap();
    // Someone re-enqueued the message meanwhile (the reconciler, say).
    let _: () = t
        .cmd("HSET", &[&t.keys.msg("q"), "body", "{}", "redrives", "0"])
        .await;
    let _: () = t.cmd("ZADD", &[&t.keys.lane(""), "1", "q"]).await;

    let out = t.dlq.redrive("q").await.unwrap().unwrap();
    assert!(!out.enqueued);
    assert_eq!(t.ready_ids().await, ["q"]);
    assert!(
        t.dlq.get("q").await.unwrap().is_none(),
        "the DLQ entry is gone either way"
    );
    assert!(t.dlq.redrive("q").await.unwrap().is_none());
}

#[tokio::test]
async fn redrive_many_reports_each_id_in_order() {
    let t = TestDlq::new();
    t.fill("m", 150, Utc::now()).await;
    let mut wanted: Vec<String> = (0..150).map(|i| format!("m{i}")).collect();
    wanted.insert(7, "absent".into());
    let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let results = t.dlq.redrive_many(&refs).await.unwrap();
    assert_eq!(results.len(), 151);
    for (id, r) in wanted.iter().zip(&results) {
        match r {
            RedriveResult::Redriven(o) => assert_eq!(&o.item.id, id),
            RedriveResult::NotFound(missing) => assert_eq!(missing, "absent"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(t.ready_ids().await.len(), 150);
}

#[tokio::test]
async fn redrive_all_goes_oldest_first_honours_limit_and_rate() {
    let t = TestDlq::new();
    for i in 0..60 {
        t.dlq
            .push(&item(&format!("b{i:02}"), ErrorKind::Permanent))
            .await
            .unwrap();
    }
    t.dlq.park("b03").await.unwrap();

    let first = t.dlq.redrive_all(Some(5), None).await.unwrap();
    let got: Vec<&str> = first.redriven.iter().map(|o| o.item.id.as_str()).collect();
    assert_eq!(
        got,
        ["b00", "b01", "b02", "b03", "b04"],
        "oldest first, parked included"
    );

    // 50 at 25/s: the first batch goes at once, the second after about a second.
    let started = Instant::now();
    let second = t
        .dlq
        .redrive_all(Some(50), NonZeroU32::new(25))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(second.redriven.len(), 50);
    assert!(
        elapsed >= Duration::from_millis(950),
        "rate not honoured: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "too slow: {elapsed:?}");

    let rest = t.dlq.redrive_all(None, None).await.unwrap();
    assert_eq!(rest.redriven.len(), 5);
    assert_eq!(t.dlq.stats().await.unwrap().total, 0);
    let ready = t.ready_ids().await;
    let expected: Vec<String> = (0..60).map(|i| format!("b{i:02}")).collect();
    assert_eq!(ready, expected, "the work queue receives them oldest first");
}

#[tokio::test]
async fn redrive_due_parks_defers_and_redrives_by_the_policy() {
    let t = TestDlq::new();
    let policy = RedrivePolicy {
        max_redrives: 3,
        base: Duration::from_secs(10),
        cap: Duration::from_secs(60),
        jitter: 0.3,
    };
    let failed = Utc::now() - ChronoDuration::seconds(5);
    let mut exhausted = item("exhausted", ErrorKind::Transient);
    exhausted.retry_count = 3;
    exhausted.failed_at = failed;
    let mut young = item("young", ErrorKind::Transient);
    young.retry_count = 1; // backoff 20 s (+ up to 30 % jitter): not due yet
    young.failed_at = failed;
    let mut ripe = item("ripe", ErrorKind::Transient);
    ripe.failed_at = failed - ChronoDuration::seconds(60);
    let mut permanent = item("permanent", ErrorKind::Permanent);
    permanent.failed_at = failed - ChronoDuration::days(1);
    for it in [&exhausted, &young, &ripe, &permanent] {
        t.dlq.push(it).await.unwrap();
    }

    let now = Utc::now().timestamp_millis();
    let mut actions = t.dlq.redrive_due(now, 100, &policy).await.unwrap();
    actions.sort_by(|a, b| a.id.cmp(&b.id));
    let summary: Vec<(&str, &DueOutcome)> = actions
        .iter()
        .map(|a| (a.id.as_str(), &a.outcome))
        .collect();
    let young_due = policy.due_at_ms("young", failed.timestamp_millis(), 1);
    assert_eq!(
        summary,
        [
            ("exhausted", &DueOutcome::Parked),
            ("ripe", &DueOutcome::Redriven { enqueued: true }),
            (
                "young",
                &DueOutcome::Deferred {
                    until_ms: young_due
                }
            ),
        ],
        "the script's backoff must equal RedrivePolicy::due_at_ms"
    );
    assert!(actions[0].item.as_ref().unwrap().parked);
    assert_eq!(t.ready_ids().await, ["ripe"]);

    // Before the deferred time nothing happens; at it, the item is redriven.
    assert!(
        t.dlq
            .redrive_due(young_due - 1, 100, &policy)
            .await
            .unwrap()
            .is_empty()
    );
    let later = t.dlq.redrive_due(young_due, 100, &policy).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].outcome, DueOutcome::Redriven { enqueued: true });
    let msg_redrives: String = t.cmd("HGET", &[&t.keys.msg("young"), "redrives"]).await;
    assert_eq!(msg_redrives, "2");

    let s = t.dlq.stats().await.unwrap();
    assert_eq!((s.total, s.parked, s.permanent, s.transient), (2, 1, 1, 0));
}

/// With a redrive hold, every redrive (by id, in bulk, automatic) leaves the message held
/// back in the work queue's delayed set, where no worker reserves it, until `release`;
/// a message whose hold runs out is ready by itself, and a release after that changes
/// nothing. This is what lets a caller book the redrive before any worker starts it.
#[tokio::test]
async fn held_redrives_wait_for_their_release() {
    let t = TestDlq::with_options(dlq_core::DlqOptions {
        redrive_hold_ms: 60_000,
        ..dlq_core::DlqOptions::default()
    });
    for id in ["one", "bulk", "auto"] {
        let mut it = item(id, ErrorKind::Transient);
        it.failed_at = Utc::now() - ChronoDuration::hours(1);
        t.dlq.push(&it).await.unwrap();
    }
    let delayed = || async {
        let ids: Vec<String> = t.cmd("ZRANGE", &[&t.keys.delayed(), "0", "-1"]).await;
        ids
    };
    assert!(t.dlq.redrive("one").await.unwrap().is_some());
    let policy = RedrivePolicy {
        max_redrives: 3,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(1),
        jitter: 0.0,
    };
    let auto = t
        .dlq
        .redrive_due(Utc::now().timestamp_millis(), 1, &policy)
        .await
        .unwrap();
    assert_eq!(auto.len(), 1);
    let bulk = t.dlq.redrive_all(None, None).await.unwrap();
    assert_eq!(bulk.redriven.len(), 1);
    assert!(
        t.ready_ids().await.is_empty(),
        "nothing ready before a release"
    );
    let mut held = delayed().await;
    held.sort();
    assert_eq!(held, ["auto", "bulk", "one"]);

    assert_eq!(t.dlq.release(&["one", "absent"]).await.unwrap(), 1);
    assert_eq!(t.ready_ids().await, ["one"]);
    assert_eq!(t.dlq.release(&["one"]).await.unwrap(), 0, "once");

    // A hold that ran out: the message was delivered since, so a late release leaves it.
    let _: () = t
        .cmd("HSET", &[&t.keys.msg("auto"), "deliveries", "1"])
        .await;
    assert_eq!(t.dlq.release(&["auto", "bulk"]).await.unwrap(), 1);
    assert_eq!(t.ready_ids().await, ["one", "bulk"]);
    assert_eq!(delayed().await, ["auto"]);
}
