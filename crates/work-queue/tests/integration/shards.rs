//! A family spread over several shards: messages land in their id's shard, workers reserve
//! from (and are woken by) every shard, the DLQ reads across the shards with a stable
//! cursor, and lowering the shard count drains the old shards before retiring them. On a
//! cluster (the test command's cluster pass) every script here runs against shards on
//! different slots, so a script that touched another shard's key would be refused.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use dlq_core::{Dlq, DlqOptions, Filter, KindFilter};
use serde_json::json;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use work_queue::{ErrorKind, QueueOptions, WorkQueue, shard_of};

use crate::common::{TestRedis, fast_options, pool_of};

const JOB: &str = "0b6f3f8e-2a1d-4c5b-8e7f-9a8b7c6d5e4f";

fn sharded(shards: u16) -> QueueOptions {
    QueueOptions {
        shards,
        block_timeout: Duration::from_secs(20),
        ..fast_options()
    }
}

/// A queue over a pool big enough for a waiter's one connection per shard.
fn queue(t: &TestRedis, shards: u16) -> WorkQueue {
    WorkQueue::new(pool_of(8), t.keys("scrape"), sharded(shards)).expect("valid options")
}

fn dlq(t: &TestRedis) -> Dlq {
    Dlq::new(pool_of(2), t.keys("scrape"), DlqOptions::default())
}

/// Ready messages of the default lane under `key` (its sorted set).
async fn ready_in(t: &TestRedis, key: &str) -> u64 {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(&mut t.conn())
        .await
        .unwrap()
}

/// Reserves (through a waiter) and acks until `n` messages were seen; returns their ids.
async fn drain(q: &WorkQueue, n: usize) -> Vec<String> {
    let cancel = CancellationToken::new();
    let mut waiter = q.waiter();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < n {
        assert!(Instant::now() < deadline, "drained {} of {n}", seen.len());
        for d in waiter.reserve_wait(50, &cancel).await.unwrap() {
            assert_eq!(q.ack(&d).await.unwrap(), work_queue::AckOutcome::Acked);
            seen.push(d.id);
        }
    }
    seen
}

#[tokio::test]
async fn messages_land_in_their_shard_and_every_shard_is_served() {
    let t = TestRedis::new();
    let q = queue(&t, 3);
    let items: Vec<(String, serde_json::Value)> = (0..600)
        .map(|i| (format!("src-{i}"), json!({ "i": i })))
        .collect();
    let half = items.len() / 2;
    // Half one by one, half in bulk: both paths route by id.
    for (id, body) in &items[..half] {
        assert!(q.enqueue(id, body).await.unwrap());
    }
    let outcome = q.enqueue_bulk(&items[half..]).await.unwrap();
    assert_eq!(outcome.enqueued, (items.len() - half) as u64);
    // Queued at most once per family, whichever path and shard.
    assert!(!q.enqueue(&items[0].0, &items[0].1).await.unwrap());
    assert_eq!(
        q.enqueue_bulk(&items[..10]).await.unwrap().already_queued,
        10
    );

    let mut expected = [0u64; 3];
    for (id, _) in &items {
        expected[usize::from(shard_of(id, 3))] += 1;
    }
    for shard in 0..3u16 {
        let ready = ready_in(&t, &t.keys("scrape").shard(shard).lane("")).await;
        assert_eq!(ready, expected[usize::from(shard)], "shard {shard}");
        assert!(
            ready > 100,
            "shard {shard} holds {ready} of 600: uneven spread"
        );
    }
    assert_eq!(q.depth().await.unwrap().ready, 600);
    assert!(q.contains("src-7").await.unwrap());

    let seen = drain(&q, items.len()).await;
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), items.len(), "each message once");
    assert_eq!(q.depth().await.unwrap().total(), 0);
}

#[tokio::test]
async fn a_waiting_worker_wakes_for_work_in_any_shard() {
    let t = TestRedis::new();
    let q = queue(&t, 3);
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (wq, wc) = (q.clone(), cancel.clone());
    let worker = tokio::spawn(async move {
        let mut waiter = wq.waiter();
        while !wc.is_cancelled() {
            for d in waiter.reserve_wait(1, &wc).await.expect("reserve") {
                assert_eq!(
                    wq.ack(&d).await.expect("ack"),
                    work_queue::AckOutcome::Acked
                );
                let _ = tx.send((d.id, d.shard));
            }
        }
    });
    // Ids that land in each shard in turn; the block timeout (20 s) is far longer than
    // the bound, so each was picked up by its shard's wake-up.
    let mut per_shard: HashMap<u16, u32> = HashMap::new();
    let mut i = 0;
    for round in 0..90u16 {
        let want = round % 3;
        let id = loop {
            i += 1;
            let id = format!("w{i}");
            if shard_of(&id, 3) == want {
                break id;
            }
        };
        tokio::time::sleep(Duration::from_micros(u64::from(round) * 53 % 1500)).await;
        q.enqueue(&id, &json!({})).await.unwrap();
        let (got, shard) = timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("round {round}: no wake-up for shard {want}"))
            .unwrap();
        assert_eq!((got.as_str(), shard), (id.as_str(), want));
        *per_shard.entry(shard).or_default() += 1;
    }
    assert_eq!(per_shard.len(), 3);
    cancel.cancel();
    timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker stops when cancelled")
        .unwrap();
}

#[tokio::test]
async fn the_dlq_lists_every_shard_newest_first_with_a_stable_cursor() {
    let t = TestRedis::new();
    let q = queue(&t, 3);
    let n = 90;
    for i in 0..n {
        q.enqueue(&format!("dead-{i}"), &json!({ "job_id": JOB, "i": i }))
            .await
            .unwrap();
    }
    let cancel = CancellationToken::new();
    let mut waiter = q.waiter();
    let mut dead = 0;
    while dead < n {
        for d in waiter.reserve_wait(7, &cancel).await.unwrap() {
            let kind = if dead % 2 == 0 {
                ErrorKind::Permanent
            } else {
                ErrorKind::Transient
            };
            assert_eq!(
                q.dead_letter(&d, "HTTP 404", kind).await.unwrap(),
                work_queue::DeadLetterOutcome::DeadLettered
            );
            dead += 1;
        }
    }
    let d = dlq(&t);
    assert_eq!(d.shards().await.unwrap(), 3);
    let stats = d.stats().await.unwrap();
    assert_eq!(stats.total, n as u64);
    assert_eq!(stats.permanent + stats.transient, n as u64);
    // Every shard holds some of the items.
    for shard in 0..3u16 {
        let order: u64 = redis::cmd("ZCARD")
            .arg(t.keys("scrape").shard(shard).dlq_order())
            .query_async(&mut t.conn())
            .await
            .unwrap();
        assert!(order > 0, "shard {shard} has no DLQ items");
    }

    // Pages of 7: every item exactly once, newest first by failed_at.
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = d.list(7, cursor.as_deref()).await.unwrap();
        listed.extend(page.items.into_iter().map(|i| i.into_result().unwrap()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(listed.len(), n);
    let ids: HashSet<&str> = listed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids.len(), n, "no item twice");
    assert!(
        listed.windows(2).all(|w| w[0].failed_at >= w[1].failed_at),
        "newest first"
    );

    // The filtered view pages through the shards the same way.
    let filter = Filter {
        kind: KindFilter::Permanent,
        job_id: Some(JOB.parse().unwrap()),
    };
    let mut permanent = HashSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let page = d.browse(5, cursor.as_deref(), &filter).await.unwrap();
        for item in page.items {
            assert!(permanent.insert(item.id().to_owned()), "listed twice");
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(permanent.len() as u64, stats.permanent);

    // By id, whatever the shard: get, redrive, and the message is back in its shard.
    let id = "dead-5";
    assert!(d.get(id).await.unwrap().is_some());
    let redriven = d.redrive(id).await.unwrap().expect("in the DLQ");
    assert!(redriven.enqueued);
    assert!(q.contains(id).await.unwrap());
    let back = drain(&q, 1).await;
    assert_eq!(back, vec![id.to_owned()]);
    // Retry-all reaches every shard.
    let all = d.redrive_all(None, None).await.unwrap();
    assert_eq!(all.redriven.len(), n - 1);
    assert_eq!(d.stats().await.unwrap().total, 0);
    assert_eq!(drain(&q, n - 1).await.len(), n - 1);
}

#[tokio::test]
async fn lowering_the_shard_count_drains_the_old_shards_then_retires_them() {
    let t = TestRedis::new();
    let old = queue(&t, 3);
    let n = 300;
    let items: Vec<(String, serde_json::Value)> = (0..n)
        .map(|i| (format!("m-{i}"), json!({ "i": i })))
        .collect();
    old.enqueue_bulk(&items).await.unwrap();
    // One message waits in the DLQ of a shard that is about to be retired.
    let in_shard_2 = items
        .iter()
        .map(|(id, _)| id.clone())
        .find(|id| shard_of(id, 3) == 2)
        .unwrap();
    let cancel = CancellationToken::new();
    let mut dead = None;
    let mut waiter = old.waiter();
    let mut held = Vec::new();
    while dead.is_none() {
        for d in waiter.reserve_wait(50, &cancel).await.unwrap() {
            if d.id == in_shard_2 {
                assert_eq!(
                    old.dead_letter(&d, "HTTP 503", ErrorKind::Transient)
                        .await
                        .unwrap(),
                    work_queue::DeadLetterOutcome::DeadLettered
                );
                dead = Some(d.id.clone());
            } else {
                held.push(d);
            }
        }
    }
    // The rest of what the old handle reserved is in flight: its leases stay in the old
    // shards until acked below.
    drop(waiter);

    // The new configuration: one shard. It still reserves from all three while the two
    // above hold anything.
    let new = queue(&t, 1);
    assert_eq!(new.refresh_shards().await.unwrap(), 3);
    let fresh = ("after-1", json!({ "new": true }));
    new.enqueue(fresh.0, &fresh.1).await.unwrap();
    assert_eq!(
        ready_in(&t, &t.keys("scrape").lane("")).await,
        items.iter().filter(|(id, _)| shard_of(id, 3) == 0).count() as u64
            - held.iter().filter(|d| d.shard == 0).count() as u64
            + 1,
        "new messages go to shard 0"
    );
    let remaining = n - 1 - held.len() + 1;
    let mut seen: HashSet<String> = drain(&new, remaining).await.into_iter().collect();
    for d in &held {
        // The old handle's holders finish their work in the old shards.
        assert_eq!(old.ack(d).await.unwrap(), work_queue::AckOutcome::Acked);
        seen.insert(d.id.clone());
    }
    assert_eq!(
        seen.len(),
        n,
        "{} of {n} old messages, plus the new one",
        seen.len()
    );
    assert!(seen.contains(fresh.0));

    // Shard 2's DLQ still holds an item: the shards are not retired yet.
    assert_eq!(new.refresh_shards().await.unwrap(), 3);
    let d = dlq(&t);
    assert_eq!(d.stats().await.unwrap().total, 1);
    assert!(d.redrive(&in_shard_2).await.unwrap().is_some());
    assert_eq!(drain(&new, 1).await, vec![in_shard_2]);

    // Everything above shard 0 is empty now: the next refresh retires it.
    assert_eq!(new.refresh_shards().await.unwrap(), 1);
    assert_eq!(d.shards().await.unwrap(), 1);
    assert_eq!(new.depth().await.unwrap().total(), 0);
    // The old configuration, should a process of it remain, raises the count again
    // rather than strand its messages.
    assert_eq!(old.refresh_shards().await.unwrap(), 3);
}

/// An id of `prefix`-`n` form whose home among `shards` is `shard`.
fn id_in(prefix: &str, shard: u16, shards: u16) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| shard_of(id, shards) == shard)
        .expect("some id lands in every shard")
}

#[tokio::test]
async fn a_busy_worker_keeps_no_wake_up_from_an_idle_one() {
    let t = TestRedis::new();
    let q = queue(&t, 3);
    let cancel = CancellationToken::new();
    // A waits on all three shards, takes the message that arrives in shard 0, and then is
    // busy with it (it does not come back for more).
    let (aq, ac) = (q.clone(), cancel.clone());
    let a = tokio::spawn(async move {
        let mut waiter = aq.waiter();
        loop {
            let got = waiter.reserve_wait(1, &ac).await.expect("reserve");
            if !got.is_empty() {
                return (waiter, got);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.enqueue(&id_in("a", 0, 3), &json!({})).await.unwrap();
    let (a_waiter, a_got) = timeout(Duration::from_secs(3), a).await.unwrap().unwrap();
    assert_eq!(a_got[0].shard, 0);

    // B is idle; work for shard 1 and then shard 2 must reach it at once, not wait for A
    // (whose waits on those shards must have ended when it took its work).
    let mut b = q.waiter();
    for shard in [1, 2] {
        let id = id_in("b", shard, 3);
        let (bq, bid) = (q.clone(), id.clone());
        let enqueue = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            bq.enqueue(&bid, &json!({})).await.unwrap();
        });
        let started = Instant::now();
        let got = loop {
            let got = b.reserve_wait(1, &cancel).await.unwrap();
            if !got.is_empty() {
                break got;
            }
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "no wake-up for shard {shard}"
            );
        };
        assert_eq!(got[0].id, id);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "shard {shard}: picked up after {:?}",
            started.elapsed()
        );
        enqueue.await.unwrap();
    }
    drop(a_waiter);
}
