//! Client CPU per request and peak RSS for the dispatch-all pattern,
//! reqpool beside a hand-rolled pool (N std threads sharing one ureq
//! agent, jobs and results over channels), each measured in a child
//! process of its own so the peaks do not mix.
//!
//! `cargo run --release --example cost -- [requests] [workers]`
//! (defaults: 20,000 requests, 16 workers). CPU time is the process's
//! user + system time from `/proc/self/stat`, the server's threads
//! included (the same server in both), so compare the two lines.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

fn run(which: &str, n: usize, workers: usize) {
    let server = common::Server::start();
    let url = server.url("/json");
    let body = serde_json::json!({"tag": "bench", "items": [{"id": 1}]});
    let (cpu0, t0) = (common::cpu_seconds(), Instant::now());
    match which {
        "reqpool" => {
            let pool = reqpool::Pool::new(workers);
            let all: Vec<_> = (0..n)
                .map(|_| pool.post_json::<serde_json::Value>(&url, &body))
                .collect();
            for p in all {
                p.wait().unwrap();
            }
        }
        _ => {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .max_idle_connections_per_host(workers)
                .build()
                .into();
            common::HandRolled::start(workers, &agent, &url, &body).run(n);
        }
    }
    let (cpu, took) = (common::cpu_seconds() - cpu0, t0.elapsed());
    println!(
        "{which:<11} {n} requests, {workers} workers: {:.0} req/s, {:.1} µs CPU per request (server included), peak RSS {:.1} MiB",
        n as f64 / took.as_secs_f64(),
        cpu / n as f64 * 1e6,
        common::peak_rss_kib() as f64 / 1024.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let n = args[2].parse().unwrap();
        let w = args[3].parse().unwrap();
        run(&args[1], n, w);
        return;
    }
    let n = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000usize);
    let w = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16usize);
    let exe = std::env::current_exe().unwrap();
    for which in [
        "hand-rolled",
        "reqpool",
        "hand-rolled",
        "reqpool",
        "hand-rolled",
        "reqpool",
    ] {
        let out = std::process::Command::new(&exe)
            .args(["--child", which, &n.to_string(), &w.to_string()])
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
