//! A pool's life: building it, fire-and-forget with accounting, flush,
//! shutdown (now, with a timeout, inside a job), a bounded queue, the
//! drain at exit however the pool is held (in child processes), stats.

mod common;

use std::sync::LazyLock;

use common::*;
use crossbeam_channel::bounded as channel;
use reqpool::{Error, Pending, Pool};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[test]
fn zero_workers_is_an_error_not_a_panic() {
    let err = Pool::builder().workers(0).build().unwrap_err();
    assert!(matches!(err, Error::Usage { .. }));
    assert!(err.to_string().contains("at least one worker"));
}

#[test]
fn threads_the_os_refuses_are_an_error_not_a_panic() {
    // A stack no machine can map: the first spawn fails.
    let e = Pool::builder()
        .workers(4)
        .stack_size(usize::MAX / 2)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::Usage { .. }), "{e}");
    assert!(e.to_string().contains("could not start"), "{e}");
}

#[test]
fn threads_start_as_jobs_need_them_up_to_the_pool_size() {
    // A pool starts a few threads and adds more when jobs wait: 300 jobs
    // that each wait for all the others run at once, on 300 threads.
    let pool = Pool::new(300);
    let hold = hold_workers(&pool, 300);
    // And no more than the size: one more job waits for a free worker.
    let extra = pool.submit(|_| Ok(7));
    assert!(!extra.is_finished());
    drop(hold);
    assert_eq!(bounded(LIMIT, move || extra.wait().unwrap()), 7);
    // Jobs that come one by one reuse the threads there are.
    let pool = Pool::new(10_000);
    for i in 0..100 {
        assert_eq!(pool.submit(move |_| Ok(i)).wait().unwrap(), i);
    }
}

#[test]
fn a_panicking_error_hook_does_not_stall_flush() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let pool = Pool::builder()
        .workers(2)
        .on_error(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            panic!("hook bug");
        })
        .build()
        .unwrap();
    let url = closed_port_url("/x");
    for _ in 0..5 {
        pool.get(&url).fire().unwrap();
    }
    let p = pool.clone();
    assert_eq!(bounded(LIMIT, move || p.flush()), 0);
    assert_eq!(pool.flush_timeout(Duration::ZERO), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(pool.stats().fired_failed, 5);
    // The workers are all still there.
    assert_eq!(pool.submit(|_| Ok(3)).wait().unwrap(), 3);
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
fn dropping_the_last_handle_drains_queued_work() {
    let pool = Pool::new(1);
    let (tx, rx) = channel::<usize>(100);
    for i in 0..50 {
        let tx = tx.clone();
        drop(pool.submit(move |_| {
            tx.send(i).unwrap();
            Ok(())
        }));
    }
    bounded(LIMIT, move || drop(pool));
    assert_eq!(rx.len(), 50, "every queued job ran before drop returned");
}

#[test]
fn every_pending_resolves_after_the_pool_is_gone() {
    let pool = Pool::builder()
        .workers(1)
        .drain_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let (release, gate) = channel::<()>(0);
    let first = pool.submit(move |_| gate.recv().map_err(Error::other));
    let rest: Vec<Pending<u32>> = (0..10).map(|i| pool.submit(move |_| Ok(i))).collect();
    drop(pool);
    release.send(()).unwrap();
    first.wait().unwrap();
    let got = bounded(LIMIT, move || {
        rest.into_iter().map(|p| p.wait().unwrap()).sum::<u32>()
    });
    assert_eq!(got, 45);
}

#[test]
fn shutdown_closes_the_pool() {
    let pool = Pool::new(2);
    let done = pool.submit(|_| Ok(1));
    let report = pool.shutdown();
    assert_eq!(report.abandoned, 0);
    assert_eq!(done.wait().unwrap(), 1);
    let late = pool.submit(|_| Ok(2));
    assert!(matches!(late.wait(), Err(Error::Closed)));
    assert!(matches!(pool.fire(|_| Ok(())), Err(Error::Closed)));
}

#[test]
fn shutdown_now_cancels_the_queue_at_once() {
    let pool = Pool::new(2);
    // Both workers hold a busy job before anything else is queued, so the
    // shutdown cannot cancel the busy jobs themselves.
    let mut hold = hold_workers(&pool, 2);
    let queued: Vec<Pending<u32>> = (0..1000).map(|i| pool.submit(move |_| Ok(i))).collect();
    let p2 = pool.clone();
    let shut = std::thread::spawn(move || p2.shutdown_now());
    // The queued jobs resolve while both workers are still busy.
    let cancelled = bounded(LIMIT, move || {
        queued
            .into_iter()
            .filter(|p| {
                matches!(
                    p.wait_timeout(Duration::from_secs(10)),
                    Some(Err(Error::Cancelled))
                )
            })
            .count()
    });
    hold.release();
    for b in std::mem::take(&mut hold.jobs) {
        b.wait().unwrap();
    }
    let report = bounded(LIMIT, move || shut.join().unwrap());
    assert_eq!(cancelled, 1000);
    assert_eq!(report.cancelled, 1000);
    assert_eq!(report.finished, 2);
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
fn shutdown_now_cancels_jobs_parked_behind_a_host_cap() {
    let slow = holding();
    let pool = Pool::builder().workers(2).max_per_host(1).build().unwrap();
    let mut all: Vec<_> = (0..3)
        .map(|_| pool.get_json::<serde_json::Value>(&slow.server.url("/hold")))
        .collect();
    // One request holds the host's only slot; wait until it is inside.
    let t0 = std::time::Instant::now();
    while slow.server.shared.requests.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < LIMIT, "the first request never arrived");
        std::thread::yield_now();
    }
    let p2 = pool.clone();
    let shut = std::thread::spawn(move || p2.shutdown_now());
    let parked: Vec<_> = all.drain(1..).collect();
    for p in parked {
        assert!(matches!(p.wait_timeout(LIMIT), Some(Err(Error::Cancelled))));
    }
    {
        let (lock, cv) = &*slow.gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    // The one in flight is cut off too.
    let err = bounded(LIMIT, move || all.pop().unwrap().wait()).unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    let report = bounded(LIMIT, move || shut.join().unwrap());
    assert_eq!(
        (report.cancelled, report.finished, report.abandoned),
        (3, 0, 0)
    );
}

#[test]
fn shutdown_timeout_interrupts_requests_stuck_on_the_network() {
    // One worker; and 600 workers, which the pool spreads over two agents
    // (one per 512): 32 stuck requests fill the 32 threads it starts,
    // seats of both agents.
    for (workers, stuck) in [(1, 1), (600, 32)] {
        let fault = common::FaultServer::start(common::Fault::Silent);
        let pool = Pool::new(workers); // 30 s request limit
        let all: Vec<_> = (0..stuck)
            .map(|_| pool.get_json::<serde_json::Value>(&fault.url("/x")))
            .collect();
        // Make sure the requests are on the wire before shutting down.
        let t0 = std::time::Instant::now();
        while fault.connections.load(Ordering::SeqCst) < stuck {
            assert!(t0.elapsed() < LIMIT, "requests never connected");
            std::thread::yield_now();
        }
        let report = bounded(LIMIT, {
            let pool = pool.clone();
            move || pool.shutdown_timeout(Duration::from_millis(100))
        });
        assert_eq!(report.abandoned, 0, "{workers}: {report:?}");
        for p in all {
            let err = bounded(LIMIT, move || p.wait()).unwrap_err();
            assert!(err.transport_kind().is_some(), "{err:?}");
            assert!(
                err.to_string().contains("cut off by shutdown_timeout"),
                "{workers}: {err}"
            );
        }
    }
}

#[test]
fn bounded_queue_try_submit_reports_full() {
    let pool = Pool::builder().workers(1).max_queued(2).build().unwrap();
    let hold = hold_workers(&pool, 1);
    let a = pool.try_submit(|_| Ok(1));
    let b = pool.try_submit(|_| Ok(2));
    let c = pool.try_submit(|_| Ok(3));
    assert!(matches!(c.wait(), Err(Error::QueueFull)));
    drop(hold);
    assert_eq!(a.wait().unwrap() + b.wait().unwrap(), 3);
}

#[test]
fn try_send_reports_a_full_queue_at_once() {
    let server = Server::start();
    let pool = Pool::builder().workers(1).max_queued(1).build().unwrap();
    let hold = hold_workers(&pool, 1);
    let queued = pool.get(&server.url("/json")).try_send();
    let refused = pool
        .get(&server.url("/json"))
        .try_json::<serde_json::Value>();
    assert!(matches!(refused.wait(), Err(Error::QueueFull)));
    drop(hold);
    assert_eq!(bounded(LIMIT, move || queued.wait()).unwrap().status(), 200);
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

/// The stats are counted per thread and added up when read: read while
/// 8 threads submit and 16 workers finish jobs, no gauge ever reads more
/// than was submitted (a gauge that moved between two shards mid-read
/// must not wrap below zero), and at the end every job is counted once,
/// with its latencies.
#[test]
fn stats_read_while_many_threads_count_stay_sane_and_add_up() {
    const THREADS: u64 = 8;
    const EACH: u64 = 2_000;
    let pool = Pool::new(16);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (pool, done) = (pool.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let s = pool.stats();
                let live = s.queued + s.running + s.scheduled;
                assert!(live <= THREADS * EACH, "{s:?}");
                assert!(s.succeeded <= THREADS * EACH, "{s:?}");
                reads += 1;
            }
            reads
        })
    };
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let all: Vec<_> = (0..EACH).map(|i| pool.submit(move |_| Ok(t * i))).collect();
                all.into_iter().map(|p| p.wait().unwrap()).sum::<u64>()
            })
        })
        .collect();
    let sum = bounded(LIMIT, move || {
        producers
            .into_iter()
            .map(|p| p.join().unwrap())
            .sum::<u64>()
    });
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads = reader.join().unwrap();
    assert_eq!(
        sum,
        (0..THREADS)
            .map(|t| t * (0..EACH).sum::<u64>())
            .sum::<u64>()
    );
    assert!(reads > 0);
    let s = pool.stats();
    assert_eq!(s.submitted, THREADS * EACH);
    assert_eq!(s.succeeded, THREADS * EACH);
    assert_eq!((s.queued, s.running, s.scheduled), (0, 0, 0));
    assert_eq!(s.run_time.count, THREADS * EACH);
    assert_eq!(s.queue_time.count, THREADS * EACH);
}

const CHILD_URL: &str = "REQPOOL_CHILD_URL";
const CHILD_MODE: &str = "REQPOOL_CHILD_MODE";

static GLOBAL: LazyLock<Pool> = LazyLock::new(|| Pool::new(4));

/// The child's side, for each way of holding a pool: it leaves work
/// behind and returns. Does nothing unless the parent test started this
/// binary with `CHILD_URL`.
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_leaves_work_behind_and_returns() {
    let (Ok(url), Ok(mode)) = (std::env::var(CHILD_URL), std::env::var(CHILD_MODE)) else {
        return;
    };
    match mode.as_str() {
        // 500 fired POSTs, and the pool dropped by returning: that alone
        // must deliver every request.
        "dropped" => {
            let pool = Pool::builder()
                .workers(4)
                .drain_timeout(Duration::from_secs(20))
                .on_error(|e| println!("HOOK {e}"))
                .build()
                .unwrap();
            for i in 0..500 {
                pool.post(&url)
                    .json_body(&json!({ "i": i }))
                    .fire()
                    .unwrap();
            }
        }
        // A pool in a static is never dropped.
        "static" => {
            for i in 0..500 {
                GLOBAL
                    .post(&url)
                    .json_body(&json!({ "i": i }))
                    .fire()
                    .unwrap();
            }
        }
        // Every queued job holds a clone of the pool: dropping main's
        // handle is not the last drop.
        "held" => {
            let pool = Pool::new(1);
            for i in 0..6 {
                let p = pool.clone();
                let url = url.clone();
                pool.fire(move |_| {
                    p.post(&url)
                        .json_body(&json!({ "i": i }))
                        .send()
                        .wait()
                        .map(drop)
                })
                .unwrap();
            }
        }
        _ => panic!("unknown mode {mode}"),
    }
}

fn leave_work_behind(url: &str, mode: &str) -> std::process::Output {
    run_child(
        "child_leaves_work_behind_and_returns",
        &[(CHILD_URL, url), (CHILD_MODE, mode)],
    )
}

#[test]
fn fired_requests_all_arrive_when_main_just_returns() {
    let server = Server::start();
    let out = leave_work_behind(&server.url("/echo"), "dropped");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(server.shared.hits("/echo"), 500);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("HOOK"));
}

#[test]
fn fired_failures_reach_the_hook_and_the_child_exits() {
    let out = leave_work_behind(&closed_port_url("/gone"), "dropped");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hooks = stdout.matches("HOOK connection refused").count();
    assert_eq!(hooks, 500, "{stdout}");
}

#[test]
fn a_pool_in_a_static_loses_nothing_at_exit() {
    let server = Server::start();
    let out = leave_work_behind(&server.url("/echo"), "static");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(server.shared.hits("/echo"), 500);
}

#[test]
fn a_pool_held_by_its_own_jobs_loses_nothing_at_exit() {
    let server = Server::start();
    let out = leave_work_behind(&server.url("/echo"), "held");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(server.shared.hits("/echo"), 6);
}

const CHILD_CREW: &str = "REQPOOL_TEST_CREW";

/// Threads fit the work: 2,000 held jobs on a pool of 10,000 start 2,000
/// threads (not a doubling past them), and once idle for the keep-alive
/// time the pool is back to its first 32, its memory with it. Run in a
/// child process, whose threads and memory are its own.
#[test]
fn threads_fit_the_work_and_leave_when_idle() {
    if std::env::var(CHILD_CREW).as_deref() == Ok("burst") {
        return crew_in_child();
    }
    let out = run_child(
        "threads_fit_the_work_and_leave_when_idle",
        &[(CHILD_CREW, "burst")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("CREW "), "{stdout}");
    for line in stdout.lines().filter(|l| l.contains("CREW ")) {
        eprintln!("{line}");
    }
}

fn crew_in_child() {
    const HELD: usize = 2_000;
    let keep_alive = Duration::from_millis(300);
    let os_before = os_threads();
    let pool = Pool::builder()
        .workers(10_000)
        .thread_keep_alive(keep_alive)
        .build()
        .unwrap();
    // Warm: the first 32 threads have run a job each.
    drop(hold_workers(&pool, 32));
    let rss_idle = rss_kib();
    assert_eq!(pool.stats().threads, 32);
    // Two bursts: the second finds the memory the first gave back.
    let mut after = Vec::new();
    for round in 0..2 {
        let hold = hold_workers(&pool, HELD);
        let os_held = os_threads();
        let rss_held = rss_kib();
        let stats = pool.stats();
        assert_eq!(stats.threads, HELD, "{stats:?}");
        assert!(stats.threads_peak <= HELD + 2, "{stats:?}");
        assert!(
            os_held <= os_before + HELD as u64 + 4,
            "{os_before} -> {os_held}"
        );
        drop(hold);
        // Back to the floor once idle (bounded: the keep-alive, and LIMIT).
        let t0 = std::time::Instant::now();
        while pool.stats().threads > 32 || os_threads() > os_before + 32 + 2 {
            assert!(t0.elapsed() < LIMIT, "still {:?}", pool.stats());
            std::thread::sleep(Duration::from_millis(20));
        }
        let back = t0.elapsed();
        let rss_after = rss_kib();
        println!(
            "CREW round {round}: held {HELD} on {os_held} OS threads (peak {}), back to {} \
             after {back:?} idle (keep-alive {keep_alive:?}); RSS idle {rss_idle} KiB, \
             held {rss_held} KiB, after {rss_after} KiB",
            pool.stats().threads_peak,
            pool.stats().threads
        );
        // Most of what the burst took is given back (the allocator keeps
        // some freed heap for reuse).
        let took = rss_held.saturating_sub(rss_idle);
        assert!(
            rss_after <= rss_idle + took / 4,
            "RSS {rss_idle} -> {rss_held} -> {rss_after} KiB"
        );
        after.push(rss_after);
    }
    // A second burst does not leave more behind than the first.
    assert!(
        after[1] <= after[0] + after[0] / 10,
        "RSS after each burst: {after:?} KiB"
    );
    // More threads still come when work waits.
    let hold = hold_workers(&pool, 100);
    assert_eq!(pool.stats().threads, 100);
    drop(hold);
}

/// A pool of `u32::MAX` workers costs its first threads, not an agent per
/// 512 of its workers (8.4 million of them), until they are needed. In a
/// child process, whose memory is its own.
#[test]
fn a_huge_pool_costs_nothing_until_used() {
    if std::env::var(CHILD_CREW).as_deref() == Ok("huge") {
        let server = Server::start();
        let rss_before = rss_kib();
        let t0 = std::time::Instant::now();
        let pool = Pool::builder().workers(u32::MAX as usize).build().unwrap();
        let built = t0.elapsed();
        let v: Value = pool.get_json(&server.url("/json")).wait().unwrap();
        assert!(v.is_object());
        let rss_after = rss_kib();
        println!("HUGE built in {built:?}; RSS {rss_before} -> {rss_after} KiB");
        assert!(
            rss_after < rss_before + 16 * 1024,
            "{rss_before} -> {rss_after} KiB"
        );
        return;
    }
    let out = run_child(
        "a_huge_pool_costs_nothing_until_used",
        &[(CHILD_CREW, "huge")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in stdout.lines().filter(|l| l.contains("HUGE ")) {
        eprintln!("{line}");
    }
}
