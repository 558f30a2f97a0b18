//! The pool and its handles, with closure jobs: results, panics, cancel,
//! waiting, drop, nesting, and the auto-traits the docs promise.

mod common;

use common::{LIMIT, bounded};
use crossbeam_channel::bounded as channel;
use reqpool::{Error, Pending, Pool};
use std::time::Duration;

#[test]
fn zero_workers_is_an_error_not_a_panic() {
    let err = Pool::builder().workers(0).build().unwrap_err();
    assert!(matches!(err, Error::Usage { .. }));
    assert!(err.to_string().contains("at least one worker"));
}

#[test]
fn a_panicking_job_resolves_and_the_pool_keeps_its_workers() {
    let pool = Pool::new(2);
    let boom: Pending<u32> = pool.submit(|_| panic!("boom {}", 7));
    let err = boom.wait().unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.to_string(), "job panicked: boom 7");
    // Both workers still run jobs at once: each job waits for the other.
    let (a_tx, a_rx) = channel::<()>(1);
    let (b_tx, b_rx) = channel::<()>(1);
    let a = pool.submit(move |_| {
        a_tx.send(()).unwrap();
        b_rx.recv_timeout(Duration::from_secs(10))
            .map_err(Error::other)
    });
    let b = pool.submit(move |_| {
        b_tx.send(()).unwrap();
        a_rx.recv_timeout(Duration::from_secs(10))
            .map_err(Error::other)
    });
    a.wait().unwrap();
    b.wait().unwrap();
    assert_eq!(pool.stats().panicked, 1);
}

#[test]
fn cancel_before_start_means_it_never_runs() {
    let pool = Pool::new(1);
    let (release, gate) = channel::<()>(0);
    let busy = pool.submit(move |_| gate.recv().map_err(Error::other));
    let (ran_tx, ran_rx) = channel::<()>(1);
    let queued = pool.submit(move |_| {
        ran_tx.send(()).unwrap();
        Ok(())
    });
    assert!(queued.cancel());
    assert!(!queued.cancel(), "a second cancel changes nothing");
    assert!(queued.wait().unwrap_err().is_cancelled());
    release.send(()).unwrap();
    busy.wait().unwrap();
    // The worker is free and took the cancelled job off the queue: it did
    // not run.
    pool.submit(|_| Ok(())).wait().unwrap();
    assert!(ran_rx.try_recv().is_err());
    assert_eq!(pool.stats().cancelled, 1);
}

#[test]
fn cancel_of_a_running_closure_resolves_at_once_and_after_the_end_does_nothing() {
    let pool = Pool::new(1);
    let (started_tx, started_rx) = channel::<()>(1);
    let (release, gate) = channel::<()>(0);
    let job = pool.submit(move |_| {
        started_tx.send(()).unwrap();
        gate.recv().map_err(Error::other)?;
        Ok(5)
    });
    started_rx.recv_timeout(LIMIT).unwrap();
    assert!(job.cancel());
    assert!(job.wait().unwrap_err().is_cancelled());
    // The closure itself runs on to its end; then the worker is free.
    release.send(()).unwrap();
    let done = pool.submit(|_| Ok(6));
    assert_eq!(done.wait_timeout(LIMIT).unwrap().unwrap(), 6);
    assert!(!done.cancel(), "a finished job cannot be cancelled");
    let s = pool.stats();
    assert_eq!((s.cancelled, s.succeeded, s.running), (1, 1, 0));
}

#[test]
fn wait_timeout_then_wait() {
    let pool = Pool::new(1);
    let (release, gate) = channel::<()>(0);
    let job = pool.submit(move |_| gate.recv().map(|_| "late").map_err(Error::other));
    assert!(job.wait_timeout(Duration::from_millis(20)).is_none());
    assert!(job.try_wait().is_none());
    assert!(!job.is_finished());
    release.send(()).unwrap();
    assert_eq!(bounded(LIMIT, move || job.wait()).unwrap(), "late");
}

#[test]
fn map_runs_after_the_job() {
    let pool = Pool::new(2);
    let p = pool
        .submit(|_| Ok(20))
        .map(|x| x + 1)
        .and_then(|x| Ok(x * 2));
    assert_eq!(p.wait().unwrap(), 42);
    let failed: Pending<i32> = pool.submit(|_| Err(Error::other("nope")));
    assert!(matches!(failed.map(|x| x + 1).wait(), Err(Error::Other(_))));
    let panicky = pool
        .submit(|_| Ok(1))
        .map(|_: i32| -> i32 { panic!("in map") });
    assert!(panicky.wait().unwrap_err().is_panic());
}

#[test]
fn dropping_a_pending_does_not_cancel() {
    let pool = Pool::new(1);
    let (tx, rx) = channel::<u32>(1);
    drop(pool.submit(move |_| {
        tx.send(9).unwrap();
        Ok(())
    }));
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 9);
}

#[test]
fn nested_wait_on_one_worker_does_not_deadlock() {
    // With one worker, a job that submits a second job and waits on it hangs
    // in every hand-rolled pool; here the inner job runs inline.
    let pool = Pool::new(1);
    let p2 = pool.clone();
    let outer = pool.submit(move |_| {
        let inner = p2.submit(|_| Ok(20));
        Ok(inner.wait()? + 1)
    });
    assert_eq!(bounded(LIMIT, move || outer.wait()).unwrap(), 21);
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
    let (release, gate) = channel::<()>(0);
    let (started_tx, started_rx) = channel::<()>(2);
    let busy: Vec<Pending<()>> = (0..2)
        .map(|_| {
            let (gate, started) = (gate.clone(), started_tx.clone());
            pool.submit(move |_| {
                started.send(()).unwrap();
                gate.recv().map_err(Error::other)
            })
        })
        .collect();
    // Both workers hold a busy job before anything else is queued, so the
    // shutdown cannot cancel the busy jobs themselves.
    started_rx.recv_timeout(LIMIT).unwrap();
    started_rx.recv_timeout(LIMIT).unwrap();
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
    release.send(()).unwrap();
    release.send(()).unwrap();
    for b in busy {
        b.wait().unwrap();
    }
    let report = shut.join().unwrap();
    assert_eq!(cancelled, 1000);
    assert_eq!(report.cancelled, 1000);
    assert_eq!(report.finished, 2);
}

#[test]
fn bounded_queue_try_submit_reports_full() {
    let pool = Pool::builder().workers(1).max_queued(2).build().unwrap();
    let (release, gate) = channel::<()>(0);
    let (started_tx, started_rx) = channel::<()>(1);
    let busy = pool.submit(move |_| {
        started_tx.send(()).unwrap();
        gate.recv().map_err(Error::other)
    });
    started_rx.recv_timeout(LIMIT).unwrap();
    let a = pool.try_submit(|_| Ok(1));
    let b = pool.try_submit(|_| Ok(2));
    let c = pool.try_submit(|_| Ok(3));
    assert!(matches!(c.wait(), Err(Error::QueueFull)));
    release.send(()).unwrap();
    busy.wait().unwrap();
    assert_eq!(a.wait().unwrap() + b.wait().unwrap(), 3);
}

#[test]
fn debug_needs_no_debug_on_t() {
    struct Opaque;
    let pool = Pool::new(1);
    let p = pool.submit(|_| Ok(Opaque));
    let shown = format!("{p:?}");
    assert!(shown.starts_with("Pending { state: "), "{shown}");
    assert!(format!("{pool:?}").starts_with("Pool { workers: 1"));
    let _ = p.wait();
}

#[test]
fn auto_traits_are_as_documented() {
    fn send_sync<X: Send + Sync>() {}
    fn send<X: Send>() {}
    fn clone<X: Clone>() {}
    fn static_<X: 'static>() {}
    send_sync::<Pool>();
    clone::<Pool>();
    send::<Pending<Vec<u8>>>();
    send::<Pending<std::cell::Cell<u8>>>();
    send_sync::<Error>();
    static_::<Error>();
    send_sync::<reqpool::Response>();
    assert!(
        std::mem::size_of::<Error>() <= 128,
        "{}",
        std::mem::size_of::<Error>()
    );
    // A handle is three pointers' worth and a flag; keep it small.
    assert!(
        std::mem::size_of::<Pending<u64>>() <= 64,
        "{}",
        std::mem::size_of::<Pending<u64>>()
    );
}
