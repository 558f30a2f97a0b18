//! 100 threads ask for the same configuration from a server that takes
//! 100 ms to answer, through an 8-worker pool: each request on its own,
//! then with `shared()`. Requests at the server, wall time, results.
//!
//! `cargo run --release --example shared_flight`

#[path = "../tests/common/mod.rs"]
mod common;

use common::Server;
use std::thread;
use std::time::Instant;

fn run(name: &str, shared: bool) {
    let server = Server::start();
    let pool = reqpool::Pool::new(8);
    let url = server.url("/delay?ms=100");
    let t0 = Instant::now();
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (pool, url) = (pool.clone(), url.clone());
            thread::spawn(move || {
                let req = pool.get(&url);
                let req = if shared { req.shared() } else { req };
                req.json::<serde_json::Value>().wait()
            })
        })
        .collect();
    let ok = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(Result::is_ok)
        .count();
    println!(
        "{name:<10} {ok}/100 results, {} requests at the server, {:.2?}",
        server.shared.hits("/delay"),
        t0.elapsed()
    );
}

fn main() {
    for _ in 0..3 {
        run("alone", false);
        run("shared()", true);
    }
}
