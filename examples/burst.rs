//! A synchronized burst: 16 jobs each prepare for a random 10–200 ms (a
//! blocking step), then all 16 requests are released together. The server
//! records when each request arrives; the spread between the first and the
//! last arrival is what the burst is for.
//!
//! `cargo run --example burst`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

const PARTIES: usize = 16;
const RUNS: usize = 5;

fn main() {
    let server = common::Server::start();
    let pool = reqpool::Pool::new(PARTIES);
    // Open the connections first, so the burst measures the release, not
    // TCP handshakes.
    let warm: Vec<_> = (0..PARTIES)
        .map(|_| pool.get_json::<serde_json::Value>(&server.url(&format!("/barrier?n={PARTIES}"))))
        .collect();
    reqpool::wait_all(warm);

    let mut spreads = Vec::new();
    for run in 0..RUNS {
        let url = server.url(&format!("/json?run={run}"));
        let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ (run as u64);
        let delays: Vec<u64> = (0..PARTIES)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                10 + seed % 191
            })
            .collect();
        let longest = *delays.iter().max().unwrap();
        let started = Instant::now();
        let fired = pool
            .burst(
                PARTIES,
                Duration::from_secs(5),
                move |party| {
                    std::thread::sleep(Duration::from_millis(delays[party]));
                    Ok(party)
                },
                move |agent, _party| {
                    agent.get(&url).call().map_err(reqpool::Error::other)?;
                    Ok(())
                },
            )
            .expect("16 parties fit 16 workers");
        let failed = reqpool::wait_all(fired)
            .into_iter()
            .filter(Result::is_err)
            .count();
        let arrivals = server.shared.arrivals("/json");
        let (first, last) = (
            arrivals.iter().min().unwrap(),
            arrivals.iter().max().unwrap(),
        );
        let spread = *last - *first;
        spreads.push(spread);
        println!(
            "run {run}: longest preparation {} ms, all {PARTIES} released after {:.0} ms, arrival spread {:.3} ms{}",
            longest,
            (*first - started).as_secs_f64() * 1e3,
            spread.as_secs_f64() * 1e3,
            if failed > 0 {
                format!(" ({failed} failed)")
            } else {
                String::new()
            }
        );
        server.shared.log.lock().unwrap().clear();
    }
    spreads.sort();
    println!(
        "median arrival spread over {RUNS} runs: {:.3} ms",
        spreads[RUNS / 2].as_secs_f64() * 1e3
    );

    // More parties than workers: refused at once rather than deadlocking.
    match pool.burst(PARTIES + 1, Duration::from_secs(1), Ok, |_, p| Ok(p)) {
        Ok(_) => println!("unexpected: a burst of 17 on 16 workers was accepted"),
        Err(e) => println!("a burst of {}: {e}", PARTIES + 1),
    }
}
