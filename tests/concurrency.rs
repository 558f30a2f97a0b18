//! Adaptive concurrency per host, in scenarios like Vector's: servers
//! whose latency is constant, grows with the load, or queues; a burst of
//! 429s. The server notes how many requests it holds at each arrival.

mod common;

use common::*;
use reqpool::{AdaptiveConcurrency, Pool};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The scenarios measure latency: one at a time, not against each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a scenario server saw: at each arrival, when and how many
/// requests it held (this one included).
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    arrivals: Mutex<Vec<(Instant, usize)>>,
}

impl Load {
    fn enter(&self) -> usize {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.arrivals.lock().unwrap().push((Instant::now(), n));
        n
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    /// In flight at each arrival from `from` on.
    fn since(&self, from: Instant) -> Vec<usize> {
        let a = self.arrivals.lock().unwrap();
        a.iter()
            .filter(|(t, _)| *t >= from)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// A server whose answer takes `latency(in flight)`.
fn server(latency: fn(usize) -> Duration) -> (Server, Arc<Load>) {
    let load = Arc::new(Load::default());
    let l = load.clone();
    let server = Server::with_handler(move |_, _| {
        let n = l.enter();
        // The scenario itself: the server's latency under this load.
        thread::sleep(latency(n));
        l.leave();
        Reply::json(200, json!({}))
    });
    (server, load)
}

/// Sends `n` requests at once through a 64-worker pool with adaptive
/// concurrency; returns the pool (to read its limit) once all are done.
fn drive(url: &str, n: usize, how: AdaptiveConcurrency) -> Pool {
    let pool = Pool::builder()
        .workers(64)
        .adaptive_concurrency(how)
        .build()
        .unwrap();
    let handles: Vec<_> = (0..n).map(|_| pool.get(url).send()).collect();
    let results = bounded(Duration::from_secs(120), move || reqpool::wait_all(handles));
    assert!(results.iter().all(Result::is_ok));
    pool
}

fn mean(v: &[usize]) -> f64 {
    v.iter().sum::<usize>() as f64 / v.len().max(1) as f64
}

#[test]
fn against_a_constant_100_ms_the_limit_reaches_30_within_35_windows() {
    let _alone = alone();
    const RTT: Duration = Duration::from_millis(100);
    let (server, load) = server(|_| RTT);
    let t0 = Instant::now();
    let pool = drive(&server.url("/x"), 1200, AdaptiveConcurrency::new());
    let arrivals = load.arrivals.lock().unwrap().clone();
    let (at, _) = arrivals
        .iter()
        .find(|(_, n)| *n >= 30)
        .expect("30 in flight at some point");
    // A window is a round trip as the pool sees it (100 ms and what a
    // loaded machine adds).
    let stats = pool.stats();
    let rtt = stats.run_time.p50.max(RTT);
    let windows = (*at - t0).as_secs_f64() / rtt.as_secs_f64();
    let limit = stats.host_limits[0].1;
    eprintln!("30 in flight after {windows:.1} windows of {rtt:?}; limit at the end {limit}");
    assert!(windows <= 35.0, "{windows:.1} windows");
    assert!(limit >= 30, "{limit}");
}

#[test]
fn a_server_slower_above_10_in_flight_settles_the_limit_at_9_to_12() {
    let _alone = alone();
    // 50 ms, and 10 % more for each request above 10 in flight.
    let (server, load) = server(|n| {
        let over = n.saturating_sub(10).min(40) as i32;
        Duration::from_secs_f64(0.05 * 1.1f64.powi(over))
    });
    let t0 = Instant::now();
    let pool = drive(&server.url("/x"), 1500, AdaptiveConcurrency::new());
    // Settled: from window 30 (1.5 s) on.
    let settled = load.since(t0 + Duration::from_millis(1500));
    let (lo, hi) = (
        *settled.iter().min().unwrap(),
        *settled.iter().max().unwrap(),
    );
    let m = mean(&settled);
    eprintln!(
        "in flight after 30 windows: {lo}..={hi}, mean {m:.1}; limit at the end {:?}",
        pool.stats().host_limits
    );
    // 9 to 12 on a quiet machine; a loaded one adds noise to the signal.
    assert!((9.0..=13.0).contains(&m), "mean {m:.1} ({lo}..={hi})");
}

#[test]
fn a_server_that_queues_above_5_is_kept_at_about_5_in_flight() {
    let _alone = alone();
    // Five at a time, 50 ms each; the rest wait their turn.
    static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
    let (server, load) = server(|_| {
        let (m, cv) = &SLOTS;
        let mut busy = cv
            .wait_timeout_while(m.lock().unwrap(), SERVER_WAIT, |b| *b >= 5)
            .unwrap()
            .0;
        *busy += 1;
        drop(busy);
        thread::sleep(Duration::from_millis(50));
        *m.lock().unwrap() -= 1;
        cv.notify_one();
        Duration::ZERO
    });
    let t0 = Instant::now();
    let pool = drive(&server.url("/x"), 600, AdaptiveConcurrency::new());
    let settled = load.since(t0 + Duration::from_millis(20 * 50));
    let m = mean(&settled);
    eprintln!(
        "in flight after 20 windows: {}..={}, mean {m:.2}; limit at the end {:?}",
        settled.iter().min().unwrap(),
        settled.iter().max().unwrap(),
        pool.stats().host_limits
    );
    assert!(m <= 6.0, "mean {m:.2}");
}

#[test]
fn a_burst_of_50_429s_is_one_cut() {
    let _alone = alone();
    // 50 requests held together, then all answered 429 at once.
    let held = Arc::new((Mutex::new(0usize), Condvar::new()));
    let h = held.clone();
    let server = Server::with_handler(move |req, _| {
        if req.path == "/burst" {
            let (m, cv) = &*h;
            let mut n = m.lock().unwrap();
            *n += 1;
            cv.notify_all();
            let _ = cv.wait_timeout_while(n, SERVER_WAIT, |n| *n < 50).unwrap();
            return Reply::json(429, json!({}));
        }
        thread::sleep(Duration::from_millis(20));
        Reply::json(200, json!({}))
    });
    let pool = Pool::builder()
        .workers(64)
        .adaptive_concurrency(AdaptiveConcurrency::new().initial(60))
        .build()
        .unwrap();
    // A baseline first: rounds of 50 requests answered in 20 ms.
    for _ in 0..10 {
        let warm: Vec<_> = (0..50)
            .map(|_| pool.get(&server.url("/ok")).send())
            .collect();
        bounded(LIMIT, move || reqpool::wait_all(warm));
    }
    let before = pool.stats().host_limits[0].1;
    let burst: Vec<_> = (0..50)
        .map(|_| pool.get(&server.url("/burst")).send())
        .collect();
    let results = bounded(LIMIT, move || reqpool::wait_all(burst));
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().err().and_then(|e| e.status()) == Some(429))
    );
    // A few more answers, one after the other, end the burst's window.
    for _ in 0..3 {
        let after = pool.get(&server.url("/ok")).send();
        bounded(LIMIT, move || after.wait()).unwrap();
    }
    let limit = pool.stats().host_limits[0].1;
    eprintln!("limit {before} before the burst, {limit} after");
    // One cut: nine tenths (of this limit, or of one more if the window
    // before grew it); two would leave 81 %.
    assert!(
        limit < before && limit >= before * 9 / 10,
        "{before} -> {limit}"
    );
}

#[test]
fn the_limit_holds_on_every_way_in_through_the_request_builder() {
    // A ceiling of 1: never more than one request in flight to the host,
    // however it was sent. (A `fire_detached` request is done, and leaves
    // its slot, once written; closure jobs are not counted.)
    let _alone = alone();
    for path in [Path::Json, Path::Send, Path::Fire, Path::Poll] {
        let (server, load) = server(|_| Duration::from_millis(20));
        let (pool, errors) = pool_with(
            Pool::builder()
                .workers(8)
                .adaptive_concurrency(AdaptiveConcurrency::new().ceiling(1)),
        );
        let outcomes: Vec<_> = (0..6)
            .map(|_| through(&pool, &errors, path, &Call::get(&server.url("/x"))))
            .collect();
        bounded(LIMIT, move || {
            for o in outcomes {
                o().unwrap();
            }
        });
        let seen = hits_when(&server, "/x", 6);
        let most = load.since(Instant::now() - LIMIT).into_iter().max();
        assert_eq!(most, Some(1), "{path:?}: {seen} requests");
        assert_eq!(pool.stats().host_limits.len(), 1, "{path:?}");
    }
}
