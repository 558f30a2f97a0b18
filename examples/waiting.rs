//! What waiting costs the workers: figures for the scheduler, cancellation
//! in flight and detached fires, against local servers.
//!
//! - 200 poll jobs, each done on the server after 2 s, polled every 200 ms
//!   through 4 workers (ideal: 2 s);
//! - 100 requests each answered `503, Retry-After: 1` once, 4 workers
//!   (ideal: 1 s);
//! - `cancel()` of a request waiting on a silent server: the time until the
//!   server sees the connection closed, and until the worker runs its next
//!   job;
//! - 50 `fire_detached` POSTs to a server that answers after 5 s, 2 workers:
//!   the time `flush()` takes, and the bodies the server received.
//!
//! `cargo run --release --example waiting` (3 runs each; medians).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Reply, Server};
use serde_json::json;
use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn poll_jobs() -> Duration {
    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let s = started.clone();
    let server = Server::with_handler(move |req, _| {
        let id = req.q("id").unwrap_or("0").to_string();
        if req.method == "POST" {
            s.lock().unwrap().insert(id.clone(), Instant::now());
            return Reply::json(202, json!({"status_url": format!("/status?id={id}")}));
        }
        let t0 = s.lock().unwrap()[&id];
        let done = t0.elapsed() >= Duration::from_secs(2);
        Reply::json(200, json!({"done": done}))
    });
    let pool = reqpool::Pool::new(4);
    let t0 = Instant::now();
    let jobs: Vec<_> = (0..200)
        .map(|i| {
            pool.post(&server.url("/tasks"))
                .query("id", i)
                .poll()
                .every(Duration::from_millis(200))
                .until(|s| s["done"] == true)
        })
        .collect();
    let ok = reqpool::wait_all(jobs).iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 200);
    t0.elapsed()
}

fn retry_after() -> Duration {
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let s = seen.clone();
    let server = Server::with_handler(move |req, _| {
        let id = req.q("id").unwrap_or("0").to_string();
        let mut s = s.lock().unwrap();
        let n = s.entry(id).or_default();
        *n += 1;
        if *n == 1 {
            Reply::json(503, json!({})).header("Retry-After", "1")
        } else {
            Reply::json(200, json!({"ok": true}))
        }
    });
    let pool = reqpool::Pool::builder()
        .workers(4)
        .retry(reqpool::Retry::standard())
        .build()
        .unwrap();
    let t0 = Instant::now();
    let jobs: Vec<_> = (0..100)
        .map(|i| {
            pool.get(&server.url("/r"))
                .query("id", i)
                .json::<serde_json::Value>()
        })
        .collect();
    let ok = reqpool::wait_all(jobs).iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 100);
    t0.elapsed()
}

/// (cancel → server sees the close, cancel → the worker runs its next job)
fn cancel_to_free() -> (Duration, Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived_tx, arrived) = crossbeam_channel::bounded(1);
    let (closed_tx, closed) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf); // the request
        arrived_tx.send(()).unwrap();
        // Silent: wait for the client to close.
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        closed_tx.send(Instant::now()).unwrap();
    });
    let pool = reqpool::Pool::new(1);
    let job = pool.get_json::<serde_json::Value>(&format!("http://{addr}/silent"));
    let next = pool.submit(|_| Ok(Instant::now()));
    arrived.recv().unwrap();
    let t0 = Instant::now();
    assert!(job.cancel());
    let freed = next.wait().unwrap() - t0;
    let closed = closed.recv().unwrap() - t0;
    (closed, freed)
}

/// (flush time, bodies received by then + shortly after)
fn detached() -> (Duration, usize) {
    let bodies = Arc::new(AtomicUsize::new(0));
    let b = bodies.clone();
    let server = Server::with_handler(move |req, _| {
        if req.json().is_some() {
            b.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_secs(5));
        Reply::json(200, json!({}))
    });
    let pool = reqpool::Pool::new(2);
    let t0 = Instant::now();
    for n in 0..50 {
        pool.post(&server.url("/ingest"))
            .json_body(&json!({ "n": n }))
            .fire_detached()
            .unwrap();
    }
    assert_eq!(pool.flush(), 0);
    let took = t0.elapsed();
    let stop = Instant::now() + Duration::from_secs(5);
    while bodies.load(Ordering::SeqCst) < 50 && Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(5));
    }
    (took, bodies.load(Ordering::SeqCst))
}

fn main() {
    let polls = median((0..3).map(|_| poll_jobs()).collect());
    println!(
        "200 poll jobs x 2 s, every 200 ms, 4 workers: {polls:.2?} ({:.2} x the 2 s ideal)",
        polls.as_secs_f64() / 2.0
    );
    let retries = median((0..3).map(|_| retry_after()).collect());
    println!("100 requests with one 503 Retry-After: 1, 4 workers: {retries:.2?}");
    let runs: Vec<_> = (0..3).map(|_| cancel_to_free()).collect();
    let closed = median(runs.iter().map(|r| r.0).collect());
    let freed = median(runs.iter().map(|r| r.1).collect());
    println!(
        "cancel() in flight: server sees the close after {closed:.2?}, the worker runs its next job after {freed:.2?}"
    );
    let runs: Vec<_> = (0..3).map(|_| detached()).collect();
    let flush = median(runs.iter().map(|r| r.0).collect());
    let min_bodies = runs.iter().map(|r| r.1).min().unwrap();
    println!(
        "50 fire_detached to a 5 s server, 2 workers: flush() after {flush:.2?}, at least {min_bodies} of 50 bodies received"
    );
}
