//! Workers only do I/O: waits between steps off the workers, cancellation
//! in flight, and fire without waiting for the reply.

mod common;

use common::{LIMIT, Reply, Server, bounded};
use crossbeam_channel::{Receiver, bounded as channel};
use reqpool::{Error, Pool, Retry};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A server whose `/hang` tells the test when a request is in and then
/// answers only after 20 s; `/json` answers at once.
fn hanging_server() -> (Server, Receiver<()>) {
    let (tx, rx) = channel(64);
    let server = Server::with_handler(move |req, shared| {
        if req.path == "/hang" {
            let _ = tx.send(());
            std::thread::sleep(Duration::from_secs(20));
        }
        common::default_routes(req, shared)
    });
    (server, rx)
}

#[test]
fn cancel_stops_a_request_in_flight_on_every_path_and_frees_the_worker() {
    let (server, arrived) = hanging_server();
    let url = server.url("/hang");
    let pool = Pool::builder().workers(1).build().unwrap();
    type Start = Box<dyn Fn() -> reqpool::Pending<()>>;
    let paths: Vec<(&str, Start)> = vec![
        (
            "json",
            Box::new({
                let (p, u) = (pool.clone(), url.clone());
                move || p.get_json::<Value>(&u).map(drop)
            }),
        ),
        (
            "send",
            Box::new({
                let (p, u) = (pool.clone(), url.clone());
                move || p.get(&u).send().map(drop)
            }),
        ),
        (
            "poll",
            Box::new({
                let (p, u) = (pool.clone(), url.clone());
                move || p.get(&u).poll().until(|_| true).map(drop)
            }),
        ),
        (
            "submit",
            Box::new({
                let (p, u) = (pool.clone(), url.clone());
                move || {
                    let u = u.clone();
                    p.submit(move |agent| agent.get(&u).call().map(drop).map_err(Error::other))
                }
            }),
        ),
    ];
    for (name, start) in paths {
        let job = start();
        arrived
            .recv_timeout(LIMIT)
            .expect("the request reached the server");
        assert!(job.cancel(), "{name}: not cancelled");
        let err = bounded(LIMIT, move || job.wait()).unwrap_err();
        assert!(err.is_cancelled(), "{name}: {err:?}");
        // The one worker is free again long before the server answers.
        let quick = pool.get_json::<Value>(&server.url("/json"));
        assert!(
            bounded(Duration::from_secs(10), move || quick.wait()).is_ok(),
            "{name}"
        );
    }
    let s = pool.stats();
    assert_eq!((s.cancelled, s.running), (4, 0), "{s:?}");
}

#[test]
fn first_success_and_hedging_cancel_their_losers_in_flight() {
    let (server, arrived) = hanging_server();
    let pool = Pool::new(2);
    let slow = pool.get_json::<Value>(&server.url("/hang"));
    arrived.recv_timeout(LIMIT).unwrap();
    let fast = pool.get_json::<Value>(&server.url("/json"));
    let (i, _) = bounded(LIMIT, move || reqpool::first_success(vec![slow, fast])).unwrap();
    assert_eq!(i, 1);
    // Both workers are free: two more requests run at once.
    let url = server.url("/barrier?n=2");
    let both = bounded(Duration::from_secs(15), {
        let pool = pool.clone();
        move || reqpool::wait_all((0..2).map(|_| pool.get_json::<Value>(&url)))
    });
    assert!(both.iter().all(Result::is_ok), "{both:?}");
}

#[test]
fn shutdown_now_cancels_requests_in_flight() {
    let (server, arrived) = hanging_server();
    let pool = Pool::new(1);
    let running = pool.get_json::<Value>(&server.url("/hang"));
    arrived.recv_timeout(LIMIT).unwrap();
    let queued = pool.get_json::<Value>(&server.url("/json"));
    let p = pool.clone();
    let report = bounded(Duration::from_secs(10), move || p.shutdown_now());
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert!(running.wait().unwrap_err().is_cancelled());
    assert!(queued.wait().unwrap_err().is_cancelled());
    assert_eq!(pool.stats().cancelled, 2);
}

#[test]
fn fire_detached_is_done_once_written() {
    // The server keeps every body, then takes 5 s to answer.
    let bodies = Arc::new(AtomicUsize::new(0));
    let b = bodies.clone();
    let server = Server::with_handler(move |req, _| {
        if req.json().is_some_and(|v| v["n"].is_number()) {
            b.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_secs(5));
        Reply::json(200, json!({}))
    });
    let pool = Pool::new(2);
    for n in 0..20 {
        pool.post(&server.url("/ingest"))
            .json_body(&json!({ "n": n }))
            .fire_detached()
            .unwrap();
    }
    // Done long before one reply could come (5 s each, 2 workers: 50 s).
    let p = pool.clone();
    assert_eq!(bounded(Duration::from_secs(4), move || p.flush()), 0);
    let s = pool.stats();
    assert_eq!((s.fired, s.fired_failed), (20, 0), "{s:?}");
    // Every body arrives (the server reads it before it sleeps).
    let deadline = std::time::Instant::now() + LIMIT;
    while bodies.load(Ordering::SeqCst) < 20 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(bodies.load(Ordering::SeqCst), 20);
    // A refused connection is a failure, reported like fire's.
    pool.post(&common::closed_port_url("/x"))
        .fire_detached()
        .unwrap();
    pool.flush();
    assert_eq!(pool.stats().fired_failed, 1);
}

#[test]
fn a_poll_job_waits_between_polls_off_the_workers() {
    // 8 poll jobs, each done on its 3rd poll, 50 ms apart, through one
    // worker: while one waits, the others poll.
    let polls = Arc::new(AtomicUsize::new(0));
    let p2 = polls.clone();
    let server = Server::with_handler(move |req, _| {
        if req.method == "POST" {
            return Reply::json(
                202,
                json!({"status_url": format!("/s/{}", req.q("id").unwrap_or("0"))}),
            );
        }
        let n = p2.fetch_add(1, Ordering::SeqCst);
        Reply::json(200, json!({"n": n}))
    });
    let pool = Pool::new(1);
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        u32,
    >::new()));
    let jobs: Vec<_> = (0..8)
        .map(|i| {
            let seen = seen.clone();
            pool.post(&server.url("/start"))
                .query("id", i)
                .poll()
                .every(Duration::from_millis(50))
                .until(move |_| {
                    let mut s = seen.lock().unwrap();
                    let c = s.entry(i.to_string()).or_default();
                    *c += 1;
                    *c >= 3
                })
        })
        .collect();
    let results = bounded(LIMIT, move || reqpool::wait_all(jobs));
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The polls of different jobs interleave: the first job's third poll
    // came after other jobs had polled.
    let firsts: Vec<u64> = results
        .iter()
        .map(|r| r.as_ref().unwrap()["n"].as_u64().unwrap())
        .collect();
    assert!(
        firsts.iter().max().unwrap() - firsts.iter().min().unwrap() < 8,
        "{firsts:?}"
    );
    assert_eq!(pool.stats().scheduled, 0);
}

#[test]
fn retry_after_waits_in_the_timer_and_shows_in_stats() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let (tx, rx) = channel::<()>(4);
    let server = Server::with_handler(move |_, _| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = tx.send(());
            Reply::json(503, json!({})).header("Retry-After", "1")
        } else {
            Reply::json(200, json!({"ok": true}))
        }
    });
    let pool = Pool::builder()
        .workers(1)
        .retry(Retry::standard())
        .build()
        .unwrap();
    let job = pool.get_json::<Value>(&server.url("/r"));
    rx.recv_timeout(LIMIT).unwrap();
    // While it waits its second, the worker runs other jobs, and the job
    // is counted as scheduled.
    let quick = pool.submit(|_| Ok(7));
    assert_eq!(bounded(LIMIT, move || quick.wait()).unwrap(), 7);
    assert_eq!(pool.stats().scheduled, 1);
    assert!(job.cancel(), "a job between attempts can be cancelled");
    assert!(job.wait().unwrap_err().is_cancelled());
    assert_eq!(pool.stats().scheduled, 0);
}
