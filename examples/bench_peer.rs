//! reqpool as a peer of the side-by-side benchmark in `../shared/bench/`:
//!
//! ```sh
//! cargo build --release --example bench_peer
//! target/release/examples/bench_peer URL M N
//! ```
//!
//! POSTs `{"tag":"bench","items":[{"id":1}]}` to URL M times through a pool
//! of N workers (dispatch all, then collect), parses every reply, and prints
//! `peer=reqpool M=<M> N=<N> wall_s=<secs> ok=<count> err=<count>`. The
//! timer starts after the pool is built. A reply counts as ok only if it is
//! 200 with the body `{"status":"completed","count":1}`. Per-request limit
//! 30 s; only loopback URLs; no proxy from the environment.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct Item {
    id: u64,
}

#[derive(Serialize)]
struct BenchRequest {
    tag: &'static str,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct BenchResponse {
    status: String,
    count: u64,
}

fn usage() -> ! {
    eprintln!("usage: bench_peer URL M N   (URL must be http://127.0.0.1:PORT/..., M>=1, N>=1)");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        usage();
    }
    let url = args[1].clone();
    if !(url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:")) {
        eprintln!("bench_peer: refusing non-loopback URL {url}");
        usage();
    }
    let m: usize = args[2].parse().unwrap_or_else(|_| usage());
    let n: usize = args[3].parse().unwrap_or_else(|_| usage());
    if m == 0 || n == 0 {
        usage();
    }

    let pool = reqpool::Pool::builder()
        .workers(n)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|e| {
            eprintln!("bench_peer: {e}");
            std::process::exit(2)
        });

    let start = Instant::now();
    let pending: Vec<_> = (0..m)
        .map(|_| {
            let body = BenchRequest {
                tag: "bench",
                items: vec![Item { id: 1 }],
            };
            pool.post_json::<BenchResponse>(&url, &body)
        })
        .collect();
    let (mut ok, mut err, mut first_err) = (0usize, 0usize, None);
    for p in pending {
        match p.wait() {
            Ok(r) if r.status == "completed" && r.count == 1 => ok += 1,
            Ok(r) => {
                err += 1;
                first_err.get_or_insert(format!("unexpected reply: {} {}", r.status, r.count));
            }
            Err(e) => {
                err += 1;
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    let wall = start.elapsed();
    if let Some(e) = first_err {
        eprintln!("reqpool: first error: {e}");
    }
    println!(
        "peer=reqpool M={m} N={n} wall_s={:.6} ok={ok} err={err}",
        wall.as_secs_f64()
    );
}
