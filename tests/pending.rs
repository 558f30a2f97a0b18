//! One handle: its result, a panic, cancel, waits with and without a
//! limit, continuations, drop, nested waits that cannot deadlock, a job
//! waiting on itself, and the auto-traits the docs promise.

mod common;

use common::*;
use crossbeam_channel::bounded as channel;
use reqpool::{Completions, Error, Pending, Pool};
use serde_json::{Value, json};
use std::time::Duration;

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
fn every_helper_makes_progress_inside_a_job_of_a_one_worker_pool() {
    let server = Server::start();
    let pool = Pool::new(1);
    let url = server.url("/json");
    let p = pool.clone();
    let job = pool.submit(move |_| {
        let get = || p.get_json::<Value>(&url);
        let any = reqpool::wait_any(vec![get(), get()])?;
        any.result?;
        reqpool::wait_all(any.rest)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        reqpool::first_success(vec![get(), get()]).map_err(Error::other)?;
        reqpool::fallback([
            Box::new(|| p.submit(|_| Err::<Value, _>(Error::other("tier 0: none"))))
                as Box<dyn FnOnce() -> reqpool::Pending<Value>>,
            Box::new(get),
        ])
        .map_err(Error::other)?;
        let mut set = Completions::new();
        set.push(1, get());
        set.push(2, p.submit(|_| Ok(json!(2))));
        let n = set.by_ref().filter(|(_, r)| r.is_ok()).count();
        let ordered: Vec<_> = p
            .map_ordered(0..3, 2, |pool, _| pool.get_json::<Value>(&url))
            .collect::<Result<_, _>>()?;
        let nested = p.submit(|_| Ok(7)).map(|x| x + 1).wait()?;
        Ok((n, ordered.len(), nested))
    });
    assert_eq!(bounded(LIMIT, move || job.wait()).unwrap(), (2, 3, 8));
}

#[test]
fn retries_inside_a_nested_wait_still_happen() {
    // The inner request waits between attempts; the outer job runs it
    // inline and must see it through.
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    let server = Server::with_handler(move |_, _| {
        if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::json(503, json!({})).header("Retry-After", "0")
        } else {
            Reply::json(200, json!({"ok": true}))
        }
    });
    let pool = Pool::builder()
        .workers(1)
        .retry(reqpool::Retry::standard())
        .build()
        .unwrap();
    let (p, url) = (pool.clone(), server.url("/r"));
    let job = pool.submit(move |_| p.get_json::<Value>(&url).wait());
    assert_eq!(bounded(LIMIT, move || job.wait()).unwrap()["ok"], true);
}

#[test]
fn a_continuation_has_its_own_time_budget() {
    let server = Server::start();
    let pool = Pool::builder()
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    let slow = server.url("/delay?ms=400");
    let (p1, p2, s1, s2) = (pool.clone(), pool.clone(), slow.clone(), slow.clone());
    let chain = pool
        .get_json::<Value>(&slow)
        .and_then(move |_| p1.get_json::<Value>(&s1).wait())
        .and_then(move |_| p2.get_json::<Value>(&s2).wait());
    // Three 400 ms calls in a row: more than one 700 ms budget, each
    // within its own.
    assert!(bounded(LIMIT, move || chain.wait()).is_ok());
}

#[test]
fn a_result_taken_by_wait_timeout_is_not_reported_as_a_shutdown() {
    let pool = Pool::new(1);
    let job = pool.submit(|_| Ok(1));
    assert_eq!(job.wait_timeout(LIMIT).unwrap().unwrap(), 1);
    let err = job.wait().unwrap_err();
    assert!(matches!(err, Error::Usage { .. }), "{err:?}");
    assert!(err.to_string().contains("already taken"), "{err}");
}

#[test]
fn a_job_waiting_on_its_own_pending_is_told_so() {
    let pool = Pool::builder()
        .workers(1)
        .timeout(Duration::MAX)
        .build()
        .unwrap();
    for timed in [false, true] {
        let (tx, rx) = channel::<Pending<u32>>(1);
        let (said_tx, said_rx) = channel::<String>(1);
        let job = pool.submit(move |_| {
            let me = rx.recv().map_err(Error::other)?;
            let r = if timed {
                me.wait_timeout(Duration::MAX)
                    .expect("a result or an error")
            } else {
                me.wait()
            };
            let _ = said_tx.send(format!("{r:?}"));
            Ok(0)
        });
        tx.send(job).unwrap();
        let said = said_rx.recv_timeout(LIMIT).expect("the self-wait returned");
        assert!(said.contains("Usage"), "{said}");
    }
    // The one worker is free again.
    assert_eq!(pool.submit(|_| Ok(3)).wait().unwrap(), 3);
}
