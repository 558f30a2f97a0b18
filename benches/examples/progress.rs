//! A batch of 300 requests with a live progress bar (done / failed / in
//! flight), fed by the completion iterator: no polling of the pool.
//!
//! `cargo run --example progress`

#[path = "../../tests/common/mod.rs"]
mod common;

use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

const REQUESTS: usize = 300;

fn main() {
    let server = common::Server::start();
    let pool = reqpool::Pool::new(16);
    let mut set = reqpool::Completions::new().timeout(Duration::from_secs(60));
    for i in 0..REQUESTS {
        // Every 25th request hits a failing endpoint; delays vary 5–50 ms.
        let url = if i % 25 == 0 {
            server.url("/status?code=503")
        } else {
            server.url(&format!("/delay?ms={}", 5 + (i * 37) % 46))
        };
        set.push(i, pool.get_json::<serde_json::Value>(&url));
    }

    let bar = ProgressBar::new(REQUESTS as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}]")
            .expect("valid template"),
    );
    let start = Instant::now();
    let mut first_error = None;
    while let Some((i, result)) = set.next() {
        if let Err(e) = result {
            first_error.get_or_insert((i, e));
        }
        let p = set.progress();
        bar.set_position(p.done as u64);
        bar.set_message(format!("failed {} · in flight {}", p.failed, p.in_flight));
    }
    bar.finish();
    let p = set.progress();
    let stats = pool.stats();
    println!(
        "{} done, {} failed in {:.2} s; pool: {} succeeded, {} failed",
        p.done,
        p.failed,
        start.elapsed().as_secs_f64(),
        stats.succeeded,
        stats.failed
    );
    if let Some((i, e)) = first_error {
        println!("first failure: request #{i}: {e}");
    }
}
