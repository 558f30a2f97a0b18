//! 50 POSTs through 10 workers against a local server that answers in
//! 100 ms: the pooled batch against the same batch sent one by one.
//!
//! `cargo run --example fan_out`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

const REQUESTS: usize = 50;
const WORKERS: usize = 10;

fn main() {
    let server = common::Server::start();
    let url = server.url("/delay?ms=100");
    let pool = reqpool::Pool::new(WORKERS);
    let body = |i: usize| serde_json::json!({"tag": "fan-out", "items": [{"id": i}]});

    let start = Instant::now();
    for i in 0..REQUESTS {
        let _: serde_json::Value = pool
            .post_json(&url, &body(i))
            .wait()
            .expect("serial request");
    }
    let serial = start.elapsed();

    let start = Instant::now();
    let pending: Vec<_> = (0..REQUESTS)
        .map(|i| pool.post_json::<serde_json::Value>(&url, &body(i)))
        .collect();
    let results = reqpool::wait_all(pending);
    let pooled = start.elapsed();
    let ok = results.iter().filter(|r| r.is_ok()).count();

    println!("{REQUESTS} POSTs, server delay 100 ms, {WORKERS} workers");
    println!("serial: {:.3} s", serial.as_secs_f64());
    println!(
        "pooled: {:.3} s  ({ok}/{REQUESTS} ok)",
        pooled.as_secs_f64()
    );
    println!(
        "ideal pooled: {:.3} s",
        (REQUESTS.div_ceil(WORKERS) as f64) * 0.1
    );
    println!(
        "speed-up: {:.1}x",
        serial.as_secs_f64() / pooled.as_secs_f64()
    );
}
