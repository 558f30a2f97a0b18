//! Side by side, each peer in a child process of its own against one
//! server (tokio, in this process), medians of interleaved runs:
//!
//! - **throughput**: `N` POSTs with a JSON body and a parsed JSON reply
//!   (default 20,000), at no delay, with 16 and 2 workers: requests a
//!   second, the client's CPU per request, its peak RSS. Peers: `reqwest`
//!   on tokio (one client, as many tasks as workers, on a 2-thread
//!   runtime), `hand_rolled` (std threads sharing one ureq agent, jobs in
//!   and replies out over channels: the code a user would write),
//!   `reqpool` (`Pool::new(workers)`, every request dispatched, then
//!   every handle waited on);
//! - **memory**: reqpool's dispatch-all with handles kept, 20,000 POSTs of
//!   64 KiB, `max_queued(64)`: peak RSS;
//! - **bulk**: reqpool at 16 workers, `N / 10` POSTs of 64 KiB and as
//!   many GETs of 256 KiB: requests a second and CPU per request, to see
//!   what the connections' buffer sizes cost (`REQPOOL_READ_BUFFER`,
//!   `REQPOOL_WRITE_BUFFER`: bytes, for the pool of this row only).
//!
//! `cargo bench -p reqpool-benches --bench peers` (`RUNS=5`, `N=20000`,
//! `WORKERS=16,2`). The README's table comes from one such run.

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "support/peer_server.rs"]
mod peer_server;

#[path = "support/child.rs"]
mod child;

#[path = "support/work.rs"]
mod work;

use child::{env, median, usage};
use work::{body, hand_rolled, plain_agent};

use std::time::{Duration, Instant};

const ROLE: &str = "PEERS_CHILD";

fn reqwest_peer(url: &str, n: usize, workers: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(n));
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let (client, url, left) = (client.clone(), url.to_owned(), left.clone());
                tokio::spawn(async move {
                    let body = serde_json::to_vec(&body()).unwrap();
                    while left
                        .fetch_update(
                            std::sync::atomic::Ordering::AcqRel,
                            std::sync::atomic::Ordering::Acquire,
                            |l| l.checked_sub(1),
                        )
                        .is_ok()
                    {
                        let r = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await
                            .unwrap();
                        let bytes = r.bytes().await.unwrap();
                        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                        std::hint::black_box(v);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Dispatch-all with handles kept: `n` POSTs of 64 KiB, `max_queued(64)`.
fn memory(url: &str, n: usize, workers: usize) {
    let pool = reqpool::Pool::builder()
        .workers(workers)
        .max_queued(64)
        .build()
        .unwrap();
    let big = vec![b'x'; 64 * 1024];
    let all: Vec<_> = (0..n)
        .map(|_| pool.post(url).body(big.clone()).send())
        .collect();
    // Every handle was kept until here: now each answer is read.
    for p in all {
        assert_eq!(p.wait().map(|r| r.status()).unwrap_or(0), 200);
    }
}

/// `n` POSTs of 64 KiB (`upload`) or GETs of 256 KiB through reqpool,
/// on connections with the buffers the environment asks for.
fn bulk(url: &str, n: usize, workers: usize, upload: bool) {
    let mut b = reqpool::Pool::builder().workers(workers);
    if let Ok(v) = std::env::var("REQPOOL_READ_BUFFER") {
        b = b.read_buffer(v.parse().unwrap());
    }
    if let Ok(v) = std::env::var("REQPOOL_WRITE_BUFFER") {
        b = b.write_buffer(v.parse().unwrap());
    }
    let pool = b.build().unwrap();
    let big = vec![b'x'; 64 * 1024];
    let all: Vec<_> = (0..n)
        .map(|_| match upload {
            true => pool.post(url).body(big.clone()).send(),
            false => pool.get(url).send(),
        })
        .collect();
    for p in all {
        assert_eq!(p.wait().map(|r| r.status()).unwrap_or(0), 200);
    }
}

fn as_child(peer: &str) {
    let url = std::env::var("URL").unwrap();
    let n: usize = env("N", 20_000);
    let workers: usize = env("W", 16);
    let t0 = Instant::now();
    match peer {
        "reqwest" => reqwest_peer(&url, n, workers),
        "hand_rolled" => hand_rolled(&plain_agent(workers), &url, n, workers),
        "memory" => memory(&url, n, workers),
        "upload" => bulk(&url, n, workers, true),
        "download" => bulk(&url, n, workers, false),
        _ => work::reqpool_json(&reqpool::Pool::new(workers), &url, n),
    }
    let wall = t0.elapsed().as_secs_f64();
    let (rss, cpu) = usage();
    println!("RESULT {wall} {rss} {cpu}");
}

fn run(peer: &str, url: &str, n: usize, workers: usize) -> (f64, f64, f64) {
    let v = child::run_child(&[
        (ROLE, peer.to_owned()),
        ("URL", url.to_owned()),
        ("N", n.to_string()),
        ("W", workers.to_string()),
    ]);
    (v[0], v[1], v[2])
}

fn main() {
    if let Ok(peer) = std::env::var(ROLE) {
        return as_child(&peer);
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let runs: usize = env("RUNS", 5);
    let n: usize = env("N", 20_000);
    let sizes: Vec<usize> = child::list("WORKERS", "16,2");
    let base = peer_server::start(Duration::ZERO);
    let url = format!("{base}/json");
    let peers = ["reqwest", "hand_rolled", "reqpool"];
    println!(
        "throughput: {n} POSTs at no delay, medians of {runs} interleaved runs, client CPU and peak RSS"
    );
    println!("| workers | peer | req/s | CPU per request | peak RSS |");
    println!("|---|---|---:|---:|---:|");
    for &w in &sizes {
        let mut got: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); peers.len()];
        for _ in 0..runs {
            for (i, p) in peers.iter().enumerate() {
                got[i].push(run(p, &url, n, w));
            }
        }
        let med: Vec<(f64, f64, f64)> = got
            .iter()
            .map(|g| {
                (
                    median(g.iter().map(|r| n as f64 / r.0).collect()),
                    median(g.iter().map(|r| r.2 / n as f64 * 1e6).collect()),
                    median(g.iter().map(|r| r.1 / 1024.0).collect()),
                )
            })
            .collect();
        for (p, m) in peers.iter().zip(&med) {
            println!(
                "| {w} | {p} | {:.0} | {:.1} µs | {:.1} MiB |",
                m.0, m.1, m.2
            );
        }
        let me = med[2];
        for (p, m) in peers.iter().zip(&med).take(2) {
            println!(
                "  reqpool ÷ {p} at {w} workers: req/s {:.2}, CPU per request {:.2}, peak RSS {:.2}",
                me.0 / m.0,
                me.1 / m.1,
                me.2 / m.2
            );
        }
    }
    let bulk_n = (n / 10).max(1);
    for (what, path) in [("upload", "/upload"), ("download", "/download")] {
        let got: Vec<(f64, f64, f64)> = (0..runs)
            .map(|_| run(what, &format!("{base}{path}"), bulk_n, 16))
            .collect();
        println!(
            "bulk {what}: {bulk_n} requests, 16 workers: {:.0} req/s, {:.1} µs CPU per request (medians of {runs})",
            median(got.iter().map(|r| bulk_n as f64 / r.0).collect()),
            median(got.iter().map(|r| r.2 / bulk_n as f64 * 1e6).collect()),
        );
    }
    let rss: Vec<f64> = (0..runs.min(3))
        .map(|_| run("memory", &format!("{base}/upload"), n, 16).1 / 1024.0)
        .collect();
    println!(
        "memory: {n} POSTs of 64 KiB, max_queued(64), 16 workers, handles kept: peak RSS {:.1} MiB (median of {})",
        median(rss.clone()),
        rss.len()
    );
}
