//! How long a trickling server holds a worker past a 1 s time limit.
//!
//! The server sends the head after 0.9 s, then a 200-byte body one byte
//! every 50 ms (10 s in all): each of ureq's phases alone is within 1 s. A pool of one worker runs the request with `timeout(1 s)`;
//! a second job queued behind it records when the worker took it. The
//! overrun is that moment minus the limit. Run with
//! `cargo run --release --example overrun`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Fault, FaultServer};
use std::time::{Duration, Instant};

fn main() {
    let fault = FaultServer::start(Fault::SlowBody {
        head_ms: 900,
        ms: 50,
    });
    let limit = Duration::from_secs(1);
    let mut overruns = Vec::new();
    for _ in 0..5 {
        let pool = reqpool::Pool::builder()
            .workers(1)
            .timeout(limit)
            .build()
            .expect("pool");
        let t0 = Instant::now();
        let req = pool.get_json::<serde_json::Value>(&fault.url("/trickle"));
        let next = pool.submit(|_| Ok(Instant::now()));
        let err = req
            .wait()
            .expect_err("a trickled reply cannot beat the limit");
        let freed = next.wait().expect("the next job runs") - t0;
        overruns.push(freed.saturating_sub(limit));
        println!("error: {err}; worker free after {freed:?}");
    }
    overruns.sort();
    println!("median overrun past the 1 s limit: {:?}", overruns[2]);
}
