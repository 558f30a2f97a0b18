//! What the outbox costs past one Redis: enqueue rates into a Redis that
//! writes every change to disk (`appendfsync always`), one `enqueue` at a
//! time against `enqueue_all`; a local Redis Cluster (three masters, a
//! replica each, all on this machine) against one server, enqueue (with
//! `WAIT` for a replica) and delivery; delivery with order keys; and an
//! outbox over 1, 3 and 6 shards of the cluster.
//!
//! `cargo run --release --features redis --example past_one_redis`
//! (`JOBS=20000` to change the batch). Starts its own `redis-server`s and
//! cluster (Debian's `redis-server` and `redis-cli`) on free ports.

#[path = "../tests/common/mod.rs"]
mod common;

use reqpool::{Outbox, OutboxOptions, Pool};
use std::time::{Duration, Instant};

/// Jobs a second from one thread: `n` jobs, one `enqueue` each, or in
/// one `enqueue_all`.
fn enqueue_rate(outbox: &Outbox, pool: &Pool, url: &str, n: usize, all: bool, tag: &str) -> f64 {
    let job = |i: usize| {
        pool.post(url)
            .json_body(&serde_json::json!({"i": i}))
            .idempotency_key(&format!("{tag}-{i}"))
    };
    let t0 = Instant::now();
    if all {
        let ids = outbox.enqueue_all((0..n).map(job));
        assert!(
            ids.iter().all(Result::is_ok),
            "{:?}",
            ids.iter().find(|r| r.is_err())
        );
    } else {
        for i in 0..n {
            outbox.enqueue(job(i)).expect("enqueue");
        }
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Jobs a second delivered by one consumer of 16 workers from a full
/// outbox (`n` jobs, `keys` order keys, 0 for none).
fn delivery_rate(
    open: &dyn Fn(OutboxOptions, &Pool, &str) -> Outbox,
    url: &str,
    n: usize,
    keys: usize,
    tag: &str,
) -> f64 {
    let pool = Pool::new(16);
    let producer = open(Outbox::options().deliver(false), &pool, tag);
    let before = producer.stats().expect("stats").delivered;
    let job = |i: usize| {
        pool.post(url)
            .json_body(&serde_json::json!({"i": i}))
            .idempotency_key(&format!("{tag}-{i}"))
    };
    if keys == 0 {
        let ids = producer.enqueue_all((0..n).map(job));
        assert!(ids.iter().all(Result::is_ok));
    } else {
        for i in 0..n {
            producer
                .enqueue_ordered(&format!("k{}", i % keys), job(i))
                .expect("enqueue");
        }
    }
    drop(producer);
    let t0 = Instant::now();
    let consumer = open(Outbox::options().keep_replies(false), &pool, tag);
    assert_eq!(consumer.flush_timeout(Duration::from_secs(600)), 0);
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let s = consumer.stats().expect("stats");
    assert_eq!(
        (s.delivered - before, s.pending, s.dead),
        (n as u64, 0, 0),
        "{tag}"
    );
    rate
}

/// Jobs a second delivered by three consumers (16 workers each, in
/// this process) from a full outbox of `n` jobs.
fn three_consumers(
    open: &dyn Fn(OutboxOptions, &Pool, &str) -> Outbox,
    url: &str,
    n: usize,
    tag: &str,
) -> f64 {
    let pool = Pool::new(16);
    let producer = open(Outbox::options().deliver(false), &pool, tag);
    let before = producer.stats().expect("stats").delivered;
    let ids = producer.enqueue_all((0..n).map(|i| {
        pool.post(url)
            .json_body(&serde_json::json!({"i": i}))
            .idempotency_key(&format!("{tag}-{i}"))
    }));
    assert!(ids.iter().all(Result::is_ok));
    drop(producer);
    let pools: Vec<Pool> = (0..3).map(|_| Pool::new(16)).collect();
    let t0 = Instant::now();
    let consumers: Vec<Outbox> = pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            open(
                Outbox::options()
                    .keep_replies(false)
                    .consumer(&format!("c{i}")),
                p,
                tag,
            )
        })
        .collect();
    for c in &consumers {
        assert_eq!(c.flush_timeout(Duration::from_secs(600)), 0);
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let s = consumers[0].stats().expect("stats");
    assert_eq!(
        (s.delivered - before, s.pending, s.dead),
        (n as u64, 0, 0),
        "{tag}"
    );
    rate
}

fn main() {
    let n: usize = std::env::var("JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at start: {}",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    let server = common::Server::start();
    let url = server.url("/echo");

    // 1. Enqueue into one Redis with appendfsync always.
    let Some(aof) = common::RedisServer::start_with(true) else {
        eprintln!("redis-server is not installed: nothing to measure");
        return;
    };
    let pool = Pool::new(1);
    let outbox = Outbox::options()
        .deliver(false)
        .redis(&aof.url(), "aof", &pool)
        .expect("open");
    let single = enqueue_rate(&outbox, &pool, &url, (n / 10).max(100), false, "one");
    let all = enqueue_rate(&outbox, &pool, &url, n, true, "all");
    println!(
        "one Redis, appendfsync always, one thread: enqueue {single:.0} jobs/s, enqueue_all {all:.0} jobs/s ({:.1}x)",
        all / single
    );
    drop(outbox);
    drop(aof);

    // 2. One Redis (no persistence) against a local cluster.
    let Some(one) = common::RedisServer::start() else {
        return;
    };
    let Some(cluster) = common::RedisCluster::start() else {
        eprintln!("redis-cli is not installed: no cluster to measure");
        return;
    };
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    // Each measure on an outbox of its own (named by its tag).
    let on_one =
        |o: OutboxOptions, p: &Pool, name: &str| o.redis(&one.url(), name, p).expect("open");
    let on_cluster =
        |o: OutboxOptions, p: &Pool, name: &str| o.redis_cluster(&nodes, name, p).expect("open");
    for (name, open) in [
        (
            "one Redis",
            &on_one as &dyn Fn(OutboxOptions, &Pool, &str) -> Outbox,
        ),
        ("cluster 3+3", &on_cluster),
    ] {
        let producer = open(Outbox::options().deliver(false), &pool, "enqueue");
        let single = enqueue_rate(&producer, &pool, &url, (n / 10).max(100), false, "e1");
        let all = enqueue_rate(&producer, &pool, &url, n, true, "eall");
        drop(producer);
        let delivery = delivery_rate(open, &url, n, 0, "d");
        let ordered = delivery_rate(open, &url, n, 100, "o");
        println!(
            "{name}: enqueue {single:.0} jobs/s, enqueue_all {all:.0} jobs/s; one consumer (16 workers, 0 ms server) delivers {delivery:.0} jobs/s, with 100 order keys {ordered:.0} jobs/s"
        );
    }

    // 3. Shards on the cluster: enqueue_all from one thread, and one or
    // three consumers (16 workers each) delivering.
    for shards in [1, 3, 6] {
        let open = |o: OutboxOptions, p: &Pool, name: &str| {
            o.shards(shards)
                .redis_cluster(&nodes, &format!("{name}-{shards}"), p)
                .expect("open")
        };
        let producer = open(Outbox::options().deliver(false), &pool, "enqueue");
        let all = enqueue_rate(&producer, &pool, &url, n, true, "s");
        drop(producer);
        let one = delivery_rate(&open, &url, n, 0, "one");
        let three = three_consumers(&open, &url, n, "three");
        println!(
            "cluster, {shards} shard(s): enqueue_all {all:.0} jobs/s; one consumer delivers {one:.0} jobs/s, three {three:.0} jobs/s"
        );
    }
}
