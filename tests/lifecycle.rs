//! Fire-and-forget, drain on drop (in a child process), shutdown,
//! backpressure, self-deadlock and stats.

mod common;

use common::{LIMIT, Server, bounded, closed_port_url};
use crossbeam_channel::bounded as channel;
use reqpool::{Error, Pending, Pool};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const CHILD_URL: &str = "REQPOOL_CHILD_URL";

/// The child's side: fire 500 POSTs and return without flushing. Does
/// nothing unless the parent test started this binary with `CHILD_URL`.
#[test]
fn child_fires_500_and_returns() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let pool = Pool::builder()
        .workers(4)
        .drain_timeout(Duration::from_secs(20))
        .on_error(|e| println!("HOOK {e}"))
        .build()
        .unwrap();
    for i in 0..500 {
        pool.post(&url)
            .json_body(&serde_json::json!({ "i": i }))
            .fire()
            .unwrap();
    }
    // Returning drops the pool: that alone must deliver every request.
}

fn run_child(url: &str) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let url = url.to_string();
    bounded(LIMIT, move || {
        Command::new(exe)
            .args([
                "--exact",
                "child_fires_500_and_returns",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_URL, url)
            .output()
            .unwrap()
    })
}

#[test]
fn fired_requests_all_arrive_when_main_just_returns() {
    let server = Server::start();
    let out = run_child(&server.url("/echo"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(server.shared.hits("/echo"), 500);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("HOOK"));
}

#[test]
fn fired_failures_reach_the_hook_and_the_child_exits() {
    let out = run_child(&closed_port_url("/gone"));
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hooks = stdout.matches("HOOK connection refused").count();
    assert_eq!(hooks, 500, "{stdout}");
}

#[test]
fn flush_waits_for_fired_jobs_and_counts_them() {
    let server = Server::start();
    let failures = Arc::new(AtomicUsize::new(0));
    let f2 = failures.clone();
    let pool = Pool::builder()
        .workers(4)
        .on_error(move |_| {
            f2.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    for i in 0..40 {
        let path = if i % 4 == 0 {
            "/status?code=500"
        } else {
            "/json"
        };
        pool.get(&server.url(path)).fire().unwrap();
    }
    pool.fire(|_| Err(Error::other("closure failed"))).unwrap();
    assert_eq!(
        bounded(LIMIT, {
            let p = pool.clone();
            move || p.flush()
        }),
        0
    );
    let s = pool.stats();
    assert_eq!((s.fired, s.fired_failed), (41, 11));
    assert_eq!(failures.load(Ordering::SeqCst), 11);
    assert_eq!(server.shared.requests.load(Ordering::SeqCst), 40);
}

#[test]
fn flush_timeout_reports_what_is_left() {
    let pool = Pool::new(1);
    let (release, gate) = channel::<()>(0);
    pool.fire(move |_| gate.recv().map_err(Error::other))
        .unwrap();
    assert_eq!(pool.flush_timeout(Duration::from_millis(30)), 1);
    release.send(()).unwrap();
    assert_eq!(
        bounded(LIMIT, {
            let p = pool.clone();
            move || p.flush()
        }),
        0
    );
}

#[test]
fn flush_and_shutdown_inside_a_job_do_not_wait_on_themselves() {
    let pool = Pool::new(1);
    let p2 = pool.clone();
    let job = pool.submit(move |_| {
        p2.fire(|_| Ok(()))?;
        let left = p2.flush(); // would wait on itself
        let report = p2.shutdown(); // would too
        Ok((left, report.abandoned))
    });
    let (left, abandoned) = bounded(LIMIT, move || job.wait()).unwrap();
    assert_eq!(left, 1);
    assert!(abandoned >= 1);
    assert!(matches!(pool.submit(|_| Ok(())).wait(), Err(Error::Closed)));
}

#[test]
fn shutdown_now_with_1000_queued_behind_2_busy_workers() {
    let pool = Pool::new(2);
    let (release, gate) = channel::<()>(0);
    let (started_tx, started_rx) = channel::<()>(2);
    let mut all: Vec<Pending<u32>> = (0..2)
        .map(|_| {
            let (gate, started) = (gate.clone(), started_tx.clone());
            pool.submit(move |_| {
                started.send(()).unwrap();
                gate.recv().map(|_| 1).map_err(Error::other)
            })
        })
        .collect();
    started_rx.recv_timeout(LIMIT).unwrap();
    started_rx.recv_timeout(LIMIT).unwrap();
    all.extend((0..998).map(|i| pool.submit(move |_| Ok(i))));
    let p2 = pool.clone();
    let shut = std::thread::spawn(move || p2.shutdown_now());
    let mut cancelled = 0;
    // The 998 queued ones resolve while the workers are still busy.
    for p in all.drain(2..) {
        match p.wait_timeout(LIMIT) {
            Some(Err(Error::Cancelled)) => cancelled += 1,
            other => panic!("{other:?}"),
        }
    }
    release.send(()).unwrap();
    release.send(()).unwrap();
    let done: u32 = all.into_iter().map(|p| p.wait().unwrap()).sum();
    let report = bounded(LIMIT, move || shut.join().unwrap());
    assert_eq!((cancelled, done), (998, 2));
    assert_eq!(report.cancelled + report.finished + report.abandoned, 1000);
    assert_eq!((report.cancelled, report.finished), (998, 2));
}

#[test]
fn shutdown_timeout_interrupts_a_request_stuck_on_the_network() {
    let fault = common::FaultServer::start(common::Fault::Silent);
    let pool = Pool::new(1); // 30 s request limit
    let stuck = pool.get_json::<serde_json::Value>(&fault.url("/x"));
    // Make sure the request is on the wire before shutting down.
    let t0 = std::time::Instant::now();
    while fault.connections.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < LIMIT, "request never connected");
        std::thread::yield_now();
    }
    let report = bounded(LIMIT, {
        let pool = pool.clone();
        move || pool.shutdown_timeout(Duration::from_millis(100))
    });
    assert_eq!(report.abandoned, 0, "{report:?}");
    let err = bounded(LIMIT, move || stuck.wait()).unwrap_err();
    assert!(err.transport_kind().is_some(), "{err:?}");
    assert!(
        err.to_string().contains("cut off by shutdown_timeout"),
        "{err}"
    );
}

#[test]
fn bounded_queue_keeps_100k_jobs_flat_and_correct() {
    let pool = Pool::builder().workers(4).max_queued(64).build().unwrap();
    let (tx, rx) = channel::<Pending<u64>>(1024);
    let p2 = pool.clone();
    let producer = std::thread::spawn(move || {
        let mut max_queued = 0;
        for i in 0..100_000u64 {
            tx.send(p2.submit(move |_| Ok(i))).unwrap();
            max_queued = max_queued.max(p2.stats().queued);
        }
        max_queued
    });
    let sum = bounded(LIMIT * 4, move || {
        rx.iter().map(|p| p.wait().unwrap()).sum::<u64>()
    });
    let max_queued = producer.join().unwrap();
    assert_eq!(sum, (0..100_000u64).sum::<u64>());
    assert!(max_queued <= 64, "queue held {max_queued}");
    assert_eq!(pool.stats().succeeded, 100_000);
}

#[test]
fn nested_wait_with_one_worker_resolves() {
    let pool = Pool::new(1);
    let p2 = pool.clone();
    let outer = pool.submit(move |_| {
        let a = p2.submit(|_| Ok(1));
        let b = p2.submit(|_| Ok(2)).map(|x| x * 10);
        Ok(a.wait()? + b.wait()?)
    });
    assert_eq!(bounded(LIMIT, move || outer.wait()).unwrap(), 21);
}

#[test]
fn stats_add_up_after_a_mixed_batch() {
    let server = Server::start();
    let pool = Pool::new(2);
    let (release, gate) = channel::<()>(0);
    let blockers: Vec<Pending<()>> = (0..2)
        .map(|_| {
            let gate = gate.clone();
            pool.submit(move |_| gate.recv().map_err(Error::other))
        })
        .collect();
    let mut jobs: Vec<Pending<serde_json::Value>> = Vec::new();
    for _ in 0..5 {
        jobs.push(pool.get_json(&server.url("/json")));
    }
    for _ in 0..3 {
        jobs.push(pool.get_json(&server.url("/status?code=503")));
    }
    for _ in 0..2 {
        jobs.push(pool.submit(|_| panic!("boom")));
    }
    let to_cancel: Vec<Pending<u8>> = (0..4).map(|_| pool.submit(|_| Ok(0))).collect();
    for c in &to_cancel {
        assert!(c.cancel());
    }
    release.send(()).unwrap();
    release.send(()).unwrap();
    reqpool::wait_all(blockers);
    let results = bounded(LIMIT, move || reqpool::wait_all(jobs));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    let s = pool.stats();
    assert_eq!(s.submitted, 2 + 10 + 4);
    assert_eq!(s.succeeded, 2 + 5);
    assert_eq!(s.failed, 3 + 2);
    assert_eq!(s.panicked, 2);
    assert_eq!(s.cancelled, 4);
    assert_eq!((s.queued, s.running), (0, 0));
    assert_eq!(s.submitted, s.succeeded + s.failed + s.cancelled);
    assert_eq!(s.run_time.count, 12);
    assert_eq!(s.queue_time.count, 12);
    assert!(s.run_time.p50 <= s.run_time.p99 && s.run_time.p99 <= s.run_time.max);
}
