//! Scale: 10,000 requests that each take 100 ms on the server, through a
//! pool of 1,000 workers with 64 KiB stacks. The ideal is
//! ceil(10,000 / 1,000) x 100 ms = 1 s. Prints the ratio to the ideal and
//! the peak RSS of the process (the in-process server's 1,000 connection
//! threads included).
//!
//! `cargo run --release --example scale`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

const WORKERS: usize = 1000;
const REQUESTS: usize = 10_000;
const DELAY_MS: u64 = 100;

fn main() {
    let server = common::Server::start();
    let url = server.url(&format!("/delay?ms={DELAY_MS}"));
    let pool = reqpool::Pool::builder()
        .workers(WORKERS)
        .stack_size(64 * 1024)
        .build()
        .expect("pool");
    let rss_idle = common::peak_rss_kib();
    let body = serde_json::json!({"tag": "scale", "items": [{"id": 1}]});

    for round in ["warm-up (opens the 1,000 connections)", "measured"] {
        let start = Instant::now();
        let all: Vec<_> = (0..REQUESTS)
            .map(|_| pool.post_json::<serde_json::Value>(&url, &body))
            .collect();
        let results = reqpool::wait_all(all);
        let failed = results.iter().filter(|r| r.is_err()).count();
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            println!("  first failure: {e}");
        }
        let wall = start.elapsed().as_secs_f64();
        let ideal = (REQUESTS.div_ceil(WORKERS) as f64) * DELAY_MS as f64 / 1000.0;
        println!(
            "{round}: {REQUESTS} requests in {wall:.3} s, ideal {ideal:.3} s, ratio {:.3}, failed {failed}",
            wall / ideal
        );
    }
    let s = pool.stats();
    println!(
        "queue time p50 {:?} p99 {:?}; network time p50 {:?} p99 {:?}",
        s.queue_time.p50, s.queue_time.p99, s.run_time.p50, s.run_time.p99
    );
    println!(
        "peak RSS {:.1} MiB (pool built: {:.1} MiB); server connections {}",
        common::peak_rss_kib() as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        server
            .shared
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    );
}
