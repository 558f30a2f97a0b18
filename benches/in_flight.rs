//! Requests held in flight at once: N requests (2,000 and 10,000), each
//! answered after 3 s, one worker (thread or task) per request, three
//! rounds, against an in-process tokio server that holds every connection
//! cheaply. Peers, each in its own child process (so that its peak RSS and
//! CPU are its own):
//!
//! - `reqwest`: reqwest on a tokio runtime (2 threads), one task each;
//! - `hand_rolled`: N std threads sharing one ureq agent (default
//!   configuration, idle pool sized to N);
//! - `reqpool`: `Pool::new(N)`, N × 3 `send()`s, then every `wait()`.
//!
//! Prints per peer and size: wall ÷ ideal, errors, peak RSS, KiB per
//! request in flight, CPU; medians over `RUNS` (default 3) interleaved
//! runs, and reqpool's ratios to the peers.
//!
//! `cargo bench -p reqpool-benches --bench in_flight` (`SIZES=2000`,
//! `HOLD_MS=3000`, `ROUNDS=3`, `RUNS=3`, `PEERS=reqpool,hand_rolled`).
//! Needs `ulimit -n` of at least 2 × N + 100.

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "support/peer_server.rs"]
mod peer_server;

#[path = "support/child.rs"]
mod child;

use child::{env, median, usage};

use std::time::{Duration, Instant};

const PEER: &str = "IN_FLIGHT_PEER";

/// What one peer's run measured.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: f64,
    errors: usize,
    rss_kib: f64,
    cpu: f64,
}

/// The child: one peer, `n` at once, `rounds` each; prints its figures.
fn as_child(peer: &str, url: &str, n: usize, rounds: usize) {
    let t0 = Instant::now();
    let errors = match peer {
        "reqwest" => reqwest_peer(url, n, rounds),
        "hand_rolled" => hand_rolled(url, n, rounds),
        _ => reqpool_peer(url, n, rounds),
    };
    let wall = t0.elapsed().as_secs_f64();
    let (rss, cpu) = usage();
    println!("RESULT {wall} {errors} {rss} {cpu}");
}

fn reqpool_peer(url: &str, n: usize, rounds: usize) -> usize {
    // Knobs for experiments: `REQPOOL_READ_BUFFER`, `REQPOOL_WRITE_BUFFER`,
    // `REQPOOL_STACK` (bytes).
    let mut b = reqpool::Pool::builder().workers(n);
    if let Ok(v) = std::env::var("REQPOOL_READ_BUFFER") {
        b = b.read_buffer(v.parse().unwrap());
    }
    if let Ok(v) = std::env::var("REQPOOL_WRITE_BUFFER") {
        b = b.write_buffer(v.parse().unwrap());
    }
    if let Ok(v) = std::env::var("REQPOOL_STACK") {
        b = b.stack_size(v.parse().unwrap());
    }
    let pool = b.build().unwrap();
    let pending: Vec<_> = (0..n * rounds).map(|_| pool.get(url).send()).collect();
    pending
        .into_iter()
        .map(|p| p.wait())
        .filter(Result::is_err)
        .count()
}

fn hand_rolled(url: &str, n: usize, rounds: usize) -> usize {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_idle_connections(n)
        .max_idle_connections_per_host(n)
        .build()
        .into();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (agent, url) = (agent.clone(), url.to_owned());
            std::thread::spawn(move || {
                (0..rounds)
                    .filter(|_| {
                        agent
                            .get(&url)
                            .call()
                            .and_then(|mut r| r.body_mut().read_to_vec())
                            .is_err()
                    })
                    .count()
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap_or(rounds))
        .sum()
}

fn reqwest_peer(url: &str, n: usize, rounds: usize) -> usize {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(n)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (client, url) = (client.clone(), url.to_owned());
                tokio::spawn(async move {
                    let mut errors = 0;
                    for _ in 0..rounds {
                        let ok = match client.get(&url).send().await {
                            Ok(r) => r.bytes().await.is_ok(),
                            Err(_) => false,
                        };
                        errors += usize::from(!ok);
                    }
                    errors
                })
            })
            .collect();
        let mut errors = 0;
        for t in tasks {
            errors += t.await.unwrap_or(rounds);
        }
        errors
    })
}

fn run_peer(peer: &str, url: &str, n: usize, rounds: usize) -> Run {
    let v = child::run_child(&[
        (PEER, peer.to_owned()),
        ("URL", url.to_owned()),
        ("N", n.to_string()),
        ("ROUNDS", rounds.to_string()),
    ]);
    Run {
        wall: v[0],
        errors: v[1] as usize,
        rss_kib: v[2],
        cpu: v[3],
    }
}

fn main() {
    if let Ok(peer) = std::env::var(PEER) {
        let url = std::env::var("URL").unwrap();
        return as_child(&peer, &url, env("N", 2000), env("ROUNDS", 3));
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // cargo test --benches / --list: nothing to list
    }
    let hold = Duration::from_millis(env("HOLD_MS", 3000));
    let rounds: usize = env("ROUNDS", 3);
    let runs: usize = env("RUNS", 3);
    let sizes: Vec<usize> = child::list("SIZES", "2000,10000");
    let peers: Vec<String> = child::list("PEERS", "reqwest,hand_rolled,reqpool");
    let url = format!("{}/hold", peer_server::start(hold));
    let ideal = hold.as_secs_f64() * rounds as f64;
    println!(
        "in flight: {rounds} rounds of requests held {} ms, one worker each; medians of {runs} interleaved runs",
        hold.as_millis()
    );
    println!("| held at once | peer | wall ÷ ideal | errors | peak RSS | KiB per request | CPU |");
    println!("|---|---|---|---|---|---|---|");
    for &n in &sizes {
        let mut all: Vec<(String, Vec<Run>)> =
            peers.iter().map(|p| (p.clone(), Vec::new())).collect();
        for _ in 0..runs {
            for (peer, got) in &mut all {
                got.push(run_peer(peer, &url, n, rounds));
            }
        }
        let mut med = Vec::new();
        for (peer, got) in &all {
            let wall = median(got.iter().map(|r| r.wall / ideal).collect());
            let errors = median(got.iter().map(|r| r.errors as f64).collect());
            let rss = median(got.iter().map(|r| r.rss_kib).collect());
            let cpu = median(got.iter().map(|r| r.cpu).collect());
            println!(
                "| {n} | {peer} | {wall:.2} | {errors:.0} | {:.0} MiB | {:.1} | {cpu:.1} s |",
                rss / 1024.0,
                rss / n as f64
            );
            med.push((peer.clone(), wall, rss, cpu));
        }
        if let Some(&(_, w, r, c)) = med.iter().find(|m| m.0 == "reqpool") {
            for (peer, pw, pr, pc) in med.iter().filter(|m| m.0 != "reqpool") {
                println!(
                    "  reqpool ÷ {peer} at {n}: wall {:.2}, peak RSS {:.2}, CPU {:.2}",
                    w / pw,
                    r / pr,
                    c / pc
                );
            }
        }
    }
}
