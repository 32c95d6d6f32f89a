//! On a real Redis Cluster (3 masters + 3 replicas, `deploy/local/redis-cluster.sh`): the
//! one-slot property of a family's keys, proved by the cluster itself, the whole pipeline
//! end to end, and a master killed mid-run (on a cluster the test starts for itself).
//!
//! These tests are `#[ignore]`d: the test command runs them in its cluster pass with
//! `TEST_REDIS_CLUSTER_NODES` set (see [`integration_tests::require_cluster`]).

use std::collections::HashSet;
use std::time::Duration;

use integration_tests::cluster::OwnCluster;
use integration_tests::pages::PageServer;
use integration_tests::requeue::{Pipeline, World, e2e_settings, eventually};
use integration_tests::{TestRedis, require_cluster};
use pipeline_ops::Family;
use pipeline_redis::FamilyKeys;
use pipeline_store::jobs;

async fn keyslot(conn: &mut pipeline_redis::RedisConn, key: &str) -> anyhow::Result<u16> {
    Ok(redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(conn)
        .await?)
}

#[tokio::test]
#[ignore = "needs a Redis Cluster (TEST_REDIS_CLUSTER_NODES)"]
async fn every_key_of_a_family_hashes_to_the_slot_of_its_tag() -> anyhow::Result<()> {
    require_cluster();
    let redis = TestRedis::new()?;
    assert!(redis.pool.is_cluster());
    let mut conn = redis.pool.get();
    let mut slots = HashSet::new();
    for family in ["scrape", "extraction"] {
        let k = FamilyKeys::new(&redis.prefix, family);
        let tag_slot = keyslot(&mut conn, &k.tag()).await?;
        slots.insert(tag_slot);
        let mut keys = vec![
            k.ready(),
            k.rota(),
            k.lane("0191d5a8-project"),
            k.lanes(),
            k.lane_cfg(),
            k.held(),
            k.capped(),
            k.leases(),
            k.delayed(),
            k.wake(),
            k.token_seq(),
            // Per-message keys are derived from the tag inside the scripts.
            k.msg("0191d5a8-message"),
            k.dlq_item("0191d5a8-item"),
        ];
        keys.extend(k.dlq_script_keys());
        for key in keys {
            assert_eq!(keyslot(&mut conn, &key).await?, tag_slot, "{key}");
        }
    }
    // The two families are two slots: a cluster can put them on two masters.
    assert_eq!(slots.len(), 2);
    Ok(())
}

#[tokio::test]
#[ignore = "needs a Redis Cluster (TEST_REDIS_CLUSTER_NODES)"]
async fn the_cluster_rejects_a_script_that_touches_another_slot() -> anyhow::Result<()> {
    require_cluster();
    let redis = TestRedis::new()?;
    let mut conn = redis.pool.get();
    let scrape = FamilyKeys::new(&redis.prefix, "scrape");
    // A family whose tag lives on another master than scrape's (three masters: one of
    // the first few families is elsewhere).
    let scrape_slot = keyslot(&mut conn, &scrape.tag()).await?;
    let slots: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await?;
    let scrape_owner = master_port_of(&slots, scrape_slot);
    let mut other = None;
    for i in 0..64 {
        let k = FamilyKeys::new(&redis.prefix, &format!("other{i}"));
        let slot = keyslot(&mut conn, &k.tag()).await?;
        if master_port_of(&slots, slot) != scrape_owner {
            other = Some(k);
            break;
        }
    }
    let other = other.expect("a family on another master");

    // Declared keys of two slots: refused before the script runs.
    let declared: redis::RedisResult<()> =
        redis::Script::new("redis.call('SET', KEYS[1], 1); redis.call('SET', KEYS[2], 1)")
            .key(scrape.ready())
            .key(other.ready())
            .invoke_async(&mut conn)
            .await;
    let err = declared.expect_err("keys of two slots in one script");
    assert!(
        err.to_string().to_lowercase().contains("crossslot"),
        "{err}"
    );

    // A key derived inside the script that lives on another master: refused by the node.
    let derived: redis::RedisResult<()> = redis::Script::new(
        "redis.call('SET', ARGV[1] .. ':msg:x', 1); redis.call('SET', KEYS[1], 1)",
    )
    .key(scrape.wake())
    .arg(other.tag())
    .invoke_async(&mut conn)
    .await;
    let err = derived.expect_err("a derived key on another master");
    assert!(err.to_string().contains("non local key"), "{err}");

    // Neither wrote anything: the cluster refused, not half-ran, the script.
    assert!(redis.keys().await?.is_empty());
    Ok(())
}

/// The port of the master serving `slot`, from a `CLUSTER SLOTS` reply.
fn master_port_of(reply: &redis::Value, slot: u16) -> i64 {
    use redis::Value;
    let Value::Array(ranges) = reply else {
        panic!("CLUSTER SLOTS: {reply:?}")
    };
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        let (Some(Value::Int(lo)), Some(Value::Int(hi)), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        if (*lo..=*hi).contains(&i64::from(slot))
            && let Some(Value::Int(port)) = master.get(1)
        {
            return *port;
        }
    }
    panic!("slot {slot} not served: {reply:?}")
}

const PAGES: usize = 2_000;
/// Every tenth page fails once: dead-lettered (one attempt allowed), then redriven.
const FLAKY_EVERY: usize = 10;

#[tokio::test]
#[ignore = "needs a Redis Cluster (TEST_REDIS_CLUSTER_NODES)"]
async fn two_thousand_pages_through_scrape_extraction_dlq_and_redrive_on_a_cluster()
-> anyhow::Result<()> {
    require_cluster();
    let w = World::new(|s| {
        e2e_settings(s);
        // Every failure goes straight to the DLQ, so each retry is the daemon's redrive.
        s.queue.max_attempts = 1;
        // Each family over three shards: three slots, spread over the masters.
        s.queue.shards = SHARDS;
    })
    .await?;
    assert!(w.redis.pool.is_cluster());
    let pages = PageServer::start().await;
    let urls: Vec<String> = (0..PAGES)
        .map(|i| {
            if i % FLAKY_EVERY == 0 {
                let path = format!("/flaky/{i}");
                pages.set_failures(&path, 1);
                pages.url(&path)
            } else {
                pages.url(&format!("/ok/{i}"))
            }
        })
        .collect();
    let flaky = PAGES / FLAKY_EVERY;
    let (job, _) = w.submit(urls).await?;
    // Every shard holds a part of the submitted pages, on masters of its own.
    let spread = shard_spread(&w, Family::Scrape).await?;
    assert_eq!(spread.iter().sum::<u64>(), PAGES as u64, "{spread:?}");
    assert!(spread.iter().all(|&n| n > 0), "a shard unused: {spread:?}");
    let pipeline = Pipeline::start(&w)?;

    let count = |status: &'static str| sources_with(&w, status);
    eventually(
        Duration::from_secs(600),
        "every source extracted",
        || async { Ok((count("extracted").await? == PAGES as i64).then_some(())) },
    )
    .await?;
    pipeline.stop().await?;

    assert_eq!(jobs::get(&w.db.pool, job).await?.status, "completed");
    assert_each_page_once(&w, PAGES).await?;
    // Each flaky page went through the DLQ and back exactly once.
    let dead = w.event_counts("dead_lettered").await?;
    let redriven = w.event_counts("redriven").await?;
    assert_eq!(dead.len(), flaky, "sources dead-lettered");
    assert_eq!(redriven.len(), flaky, "sources redriven");
    assert!(dead.iter().chain(&redriven).all(|(_, n)| *n == 1));
    for family in [Family::Scrape, Family::Extraction] {
        assert_eq!(w.services.dlq(family).stats().await?.total, 0);
        let depth = w.services.queue(family).depth().await?;
        assert_eq!((depth.ready, depth.leased, depth.delayed), (0, 0, 0));
    }
    Ok(())
}

const SHARDS: u16 = 3;

/// Sources of the world's database in `status`.
async fn sources_with(w: &World, status: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM sources WHERE status = $1")
            .bind(status)
            .fetch_one(&w.db.pool)
            .await?,
    )
}

/// Exactly `pages` sources, each extracted at least once and no chunk stored twice.
async fn assert_each_page_once(w: &World, pages: usize) -> anyhow::Result<()> {
    let sources: i64 = sqlx::query_scalar("SELECT count(*) FROM sources")
        .fetch_one(&w.db.pool)
        .await?;
    assert_eq!(sources, pages as i64);
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (source_id, extraction_type, chunk_index)) FROM extractions",
    )
    .fetch_one(&w.db.pool)
    .await?;
    assert!(rows >= pages as i64);
    assert_eq!(rows, distinct, "duplicated extraction rows");
    Ok(())
}

/// Messages ready in each of `family`'s shards.
async fn shard_spread(w: &World, family: Family) -> anyhow::Result<Vec<u64>> {
    let keys = w.services.queue(family).keys().clone();
    let mut conn = w.redis.pool.get();
    let mut spread = Vec::new();
    for shard in 0..SHARDS {
        // Ready messages of every lane of the shard.
        let n: Option<u64> = redis::cmd("HGET")
            .arg(keys.shard(shard).lanes())
            .arg("n")
            .query_async(&mut conn)
            .await?;
        spread.push(n.unwrap_or(0));
    }
    Ok(spread)
}

const RESHARD_PAGES: usize = 1_500;

/// `queue.shards` lowered from 3 to 1 mid-run, as a rolling deploy does it: processes of
/// the new configuration start while the old ones still run, then the old ones stop.
#[tokio::test]
#[ignore = "needs a Redis Cluster (TEST_REDIS_CLUSTER_NODES)"]
async fn lowering_the_shard_count_mid_run_loses_nothing() -> anyhow::Result<()> {
    require_cluster();
    let w = World::new(|s| {
        e2e_settings(s);
        s.queue.max_attempts = 1;
        s.queue.shards = SHARDS;
    })
    .await?;
    let pages = PageServer::start().await;
    let urls: Vec<String> = (0..RESHARD_PAGES)
        .map(|i| {
            if i % FLAKY_EVERY == 0 {
                let path = format!("/flaky/{i}");
                pages.set_failures(&path, 1);
                pages.url(&path)
            } else {
                pages.url(&format!("/ok/{i}"))
            }
        })
        .collect();
    let flaky = RESHARD_PAGES / FLAKY_EVERY;
    let (job, _) = w.submit(urls).await?;
    assert!(
        shard_spread(&w, Family::Scrape)
            .await?
            .iter()
            .all(|&n| n > 0)
    );
    let old = Pipeline::start(&w)?;
    let count = |status: &'static str| sources_with(&w, status);
    eventually(
        Duration::from_secs(300),
        "some sources extracted under three shards",
        || async { Ok((count("extracted").await? >= 200).then_some(())) },
    )
    .await?;

    // The new configuration starts beside the old, then the old stops.
    let mut settings = (*w.services.settings).clone();
    settings.queue.shards = 1;
    let services =
        pipeline_ops::Services::with_pools(settings, w.db.pool.clone(), w.redis.pool.clone())?;
    let new = Pipeline::on(&services, w.config())?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.stop().await?;
    let extracted_then = count("extracted").await?;
    assert!(
        extracted_then < RESHARD_PAGES as i64,
        "the run finished before the change"
    );

    eventually(
        Duration::from_secs(600),
        "every source extracted under one shard",
        || async { Ok((count("extracted").await? == RESHARD_PAGES as i64).then_some(())) },
    )
    .await?;
    new.stop().await?;

    assert_eq!(jobs::get(&w.db.pool, job).await?.status, "completed");
    assert_each_page_once(&w, RESHARD_PAGES).await?;
    let dead = w.event_counts("dead_lettered").await?;
    let redriven = w.event_counts("redriven").await?;
    assert_eq!(dead.len(), flaky, "sources dead-lettered");
    assert_eq!(redriven.len(), flaky, "sources redriven");
    // Nothing left anywhere, and the shards above one are retired.
    for family in [Family::Scrape, Family::Extraction] {
        let queue = services.queue(family);
        assert_eq!(
            queue.refresh_shards().await?,
            1,
            "{family:?} shards retired"
        );
        assert_eq!(queue.depth().await?.total(), 0);
        assert_eq!(services.dlq(family).stats().await?.total, 0);
    }
    Ok(())
}

const FAILOVER_PAGES: usize = 3_000;
/// Ports of the cluster the failover test starts and harms (not the shared one).
const FAILOVER_BASE_PORT: u16 = 7200;

#[tokio::test]
#[ignore = "starts and kills a Redis Cluster of its own (run in the test command's cluster pass)"]
async fn a_master_killed_mid_run_fails_over_and_every_source_is_extracted() -> anyhow::Result<()> {
    let cluster = OwnCluster::start(FAILOVER_BASE_PORT)?;
    let w = World::on(TestRedis::on(cluster.target())?, |s| {
        e2e_settings(s);
        // What the failed master acknowledged but never replicated, the reconciler restores.
        s.requeue.reconcile_after_secs = 5;
        s.requeue.reconcile_interval_secs = 1;
        s.requeue.reconcile_batch = 500;
    })
    .await?;
    let pages = PageServer::start().await;
    let urls: Vec<String> = (0..FAILOVER_PAGES)
        .map(|i| pages.url(&format!("/ok/{i}")))
        .collect();
    let (job, _) = w.submit(urls).await?;
    let pipeline = Pipeline::start(&w)?;
    let count = |status: &'static str| sources_with(&w, status);
    eventually(
        Duration::from_secs(300),
        "some sources extracted",
        || async { Ok((count("extracted").await? >= 300).then_some(())) },
    )
    .await?;

    // Kill the master that holds the scrape queue, mid-run.
    let mut conn = w.redis.pool.get();
    let scrape = w.services.queue(Family::Scrape).keys().tag();
    let slot = keyslot(&mut conn, &scrape).await?;
    let slots: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await?;
    let victim = u16::try_from(master_port_of(&slots, slot))?;
    cluster.kill(victim)?;
    let extracted_then = count("extracted").await?;
    assert!(
        extracted_then < FAILOVER_PAGES as i64,
        "the run finished before the kill"
    );

    eventually(
        Duration::from_secs(600),
        "every source extracted after the failover",
        || async { Ok((count("extracted").await? == FAILOVER_PAGES as i64).then_some(())) },
    )
    .await?;
    pipeline.stop().await?;

    // The replica took the slot over: a new master serves it.
    let slots: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await?;
    let now_serving = master_port_of(&slots, slot);
    assert_ne!(
        now_serving,
        i64::from(victim),
        "the killed master still serves the slot"
    );

    assert_eq!(jobs::get(&w.db.pool, job).await?.status, "completed");
    assert_each_page_once(&w, FAILOVER_PAGES).await?;
    drop(w);
    drop(cluster);
    Ok(())
}
