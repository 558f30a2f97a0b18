//! Redis stopped mid-batch for 0.5, 2, 5, 30 and 120 s and started again
//! with its append-only file, under a consumer that is delivering: how
//! long after Redis came back delivery resumed, what was lost, what was
//! sent twice, and what `Outbox::health()` said during the outage.
//!
//! `cargo run --release --features redis --example outages`
//! (`OUTAGES=0.5,2` for other lengths, in seconds). Starts its own
//! `redis-server` (Debian's package) on a free port.

#[path = "../tests/common/mod.rs"]
mod common;

use reqpool::{Outbox, Pool};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

const JOBS: usize = 2_000;

fn main() {
    let lengths: Vec<f64> = std::env::var("OUTAGES")
        .unwrap_or_else(|_| "0.5,2,5,30,120".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let Some(mut redis) = common::RedisServer::start_with(true) else {
        eprintln!("redis-server is not installed: nothing to measure");
        return;
    };
    let (server, keys) = common::keyed_server(Arc::new(AtomicUsize::new(200)));
    let sent = |k: &std::sync::Mutex<std::collections::HashMap<String, usize>>| -> usize {
        k.lock().unwrap().values().sum()
    };
    let pool = Pool::new(8);
    let outbox = Outbox::options()
        .lease(Duration::from_secs(5))
        .redis(&redis.url(), "outages", &pool)
        .expect("open the outbox");
    let url = server.url("/orders?ms=5");
    println!(
        "| outage | jobs | lost | sent twice | delivering again after Redis is back | health during the outage |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    for (round, secs) in lengths.iter().enumerate() {
        keys.lock().unwrap().clear();
        for i in 0..JOBS {
            outbox
                .enqueue(common::order(&pool, &url, round * JOBS + i))
                .expect("enqueue");
        }
        while sent(&keys) < JOBS / 10 {
            std::thread::sleep(Duration::from_millis(1));
        }
        redis.kill();
        std::thread::sleep(Duration::from_secs_f64(*secs));
        let h = outbox.health();
        let before = sent(&keys);
        redis.start_again();
        let back = Instant::now();
        while sent(&keys) == before && back.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let resumed = back.elapsed();
        let left = outbox.flush_timeout(Duration::from_secs(300));
        let k = keys.lock().unwrap();
        let twice = k.values().filter(|&&n| n > 1).count();
        let lost = JOBS - k.len();
        println!(
            "| {secs} s | {JOBS} | {lost} | {twice} | {:.0} ms | delivering {}, {} store errors, last progress {:.1} s before, left after: {left} |",
            resumed.as_secs_f64() * 1000.0,
            h.delivering,
            h.store_errors,
            h.since_progress.map_or(f64::NAN, |d| d.as_secs_f64()),
        );
    }
}
