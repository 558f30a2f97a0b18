//! A batch against a server that answers 429 above 20 requests a second,
//! without and with the pool's per-host rate limit: requests sent, 429s
//! received, total time. Then a circuit breaker against a refused port.
//!
//! `cargo run --release --example rate_limited`

#[path = "../tests/common/mod.rs"]
mod common;

use common::Server;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const N: usize = 60;

fn batch(name: &str, retry_after: bool, builder: reqpool::Builder) {
    let (server, sent, throttled) = common::window_limited_server(20, retry_after);
    let pool = builder
        .workers(8)
        .retry(reqpool::Retry::standard().max_attempts(10))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let results =
        reqpool::wait_all((0..N).map(|_| pool.get_json::<serde_json::Value>(&server.url("/api"))));
    let took = t0.elapsed();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let arrivals = server.shared.arrivals("/api");
    let span = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    println!(
        "{name:<34} {ok}/{N} ok, {} requests sent, {} answered 429 ({:.0}%), {took:.2?} ({:.2} x 60/20 s), server saw {:.1} req/s",
        sent.load(Ordering::SeqCst),
        throttled.load(Ordering::SeqCst),
        100.0 * throttled.load(Ordering::SeqCst) as f64 / sent.load(Ordering::SeqCst) as f64,
        took.as_secs_f64() / 3.0,
        (arrivals.len() - 1) as f64 / span.as_secs_f64(),
    );
}

/// 60 requests with `max_rate_per_host(20, 1 s)` to a plain server, with 5
/// requests to a second host in the same pool.
fn plain_rate() {
    let a = Server::start();
    let b = Server::start();
    let pool = reqpool::Pool::builder()
        .workers(8)
        .max_rate_per_host(20, Duration::from_secs(1))
        .build()
        .unwrap();
    let t0 = Instant::now();
    drop(reqpool::wait_all((0..N).map(|_| {
        pool.get_json::<serde_json::Value>(&a.url("/json"))
    })));
    let took_a = t0.elapsed();
    let arrivals = a.shared.arrivals("/json");
    let span = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    // The second host, while the first is throttled.
    let pending_a: Vec<_> = (0..N)
        .map(|_| pool.get_json::<serde_json::Value>(&a.url("/again")))
        .collect();
    let t1 = Instant::now();
    let b_ok =
        reqpool::wait_all((0..5).map(|_| pool.get_json::<serde_json::Value>(&b.url("/json"))))
            .iter()
            .filter(|r| r.is_ok())
            .count();
    let took_b = t1.elapsed();
    drop(reqpool::wait_all(pending_a));
    println!(
        "max_rate_per_host(20, 1 s), plain server: 60 requests in {took_a:.2?}, server saw {:.1} req/s; \
         meanwhile {b_ok}/5 requests to a second host took {took_b:.2?} (its own 20/s; alone: 0.20 s)",
        (arrivals.len() - 1) as f64 / span.as_secs_f64()
    );
}

fn main() {
    plain_rate();
    for retry_after in [true, false] {
        println!(
            "server answers 429 {} Retry-After:",
            if retry_after { "with" } else { "without" }
        );
        batch(
            "no limit (retries only)",
            retry_after,
            reqpool::Pool::builder(),
        );
        batch(
            "max_rate_per_host(20, 1 s)",
            retry_after,
            reqpool::Pool::builder().max_rate_per_host(20, Duration::from_secs(1)),
        );
        for _ in 0..5 {
            batch(
                "adaptive_rate(true), no set rate",
                retry_after,
                reqpool::Pool::builder().adaptive_rate(true),
            );
        }
        for _ in 0..5 {
            batch(
                "the same + adaptive_concurrency",
                retry_after,
                reqpool::Pool::builder()
                    .adaptive_rate(true)
                    .adaptive_concurrency(reqpool::AdaptiveConcurrency::new()),
            );
        }
    }

    // A circuit breaker against a port where nothing listens.
    let pool = reqpool::Pool::builder()
        .circuit_breaker(
            reqpool::Breaker::new()
                .failures(5)
                .cool_down(Duration::from_millis(500)),
        )
        .build()
        .unwrap();
    let url = common::closed_port_url("/down");
    while !pool
        .get_json::<serde_json::Value>(&url)
        .wait()
        .unwrap_err()
        .is_circuit_open()
    {}
    let t0 = Instant::now();
    let fast = reqpool::wait_all((0..100).map(|_| pool.get_json::<serde_json::Value>(&url)))
        .iter()
        .filter(|r| r.as_ref().is_err_and(reqpool::Error::is_circuit_open))
        .count();
    println!(
        "circuit breaker: after 5 refused attempts, {fast}/100 further requests failed fast in {:.2?} in total",
        t0.elapsed()
    );
}
