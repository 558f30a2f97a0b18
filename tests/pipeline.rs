//! One pipeline: the same rules on every way in (`json`, `send`, `fire`, a
//! poll job, a burst party, a `submit` closure) and under every helper that
//! waits. Table-driven over the paths.

mod common;

use common::{Fault, FaultServer, LIMIT, Reply, Server, bounded};
use crossbeam_channel::{Receiver, bounded as channel};
use reqpool::{Completions, Error, Hedge, Pending, Phase, Pool, Retry};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Every way a request reaches the pool.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    Json,
    Send,
    Fire,
    Poll,
    Burst,
    Submit,
}

const PATHS: [Path; 6] = [
    Path::Json,
    Path::Send,
    Path::Fire,
    Path::Poll,
    Path::Burst,
    Path::Submit,
];

/// A pool whose fired jobs report their errors on the returned channel.
fn pool_with(b: reqpool::Builder) -> (Pool, Receiver<String>) {
    let (tx, rx) = channel(64);
    let pool = b
        .on_error(move |e| {
            let _ = tx.send(e.to_string());
        })
        .build()
        .unwrap();
    (pool, rx)
}

/// Sends a GET of `url` through `path`; the returned closure blocks until
/// its outcome is known (for `fire`: the error hook, or a flush).
fn through(
    pool: &Pool,
    errors: &Receiver<String>,
    path: Path,
    url: &str,
    timeout: Duration,
) -> Box<dyn FnOnce() -> Result<(), String> + Send> {
    let url = url.to_string();
    let outcome = |p: Pending<()>| -> Box<dyn FnOnce() -> Result<(), String> + Send> {
        Box::new(move || p.wait().map_err(|e| e.to_string()))
    };
    match path {
        Path::Json => outcome(pool.get(&url).json::<Value>().map(drop)),
        Path::Send => outcome(pool.get(&url).send().map(drop)),
        Path::Fire => {
            pool.get(&url).fire().unwrap();
            let (pool, errors) = (pool.clone(), errors.clone());
            Box::new(move || {
                pool.flush();
                match errors.try_recv() {
                    Ok(e) => Err(e),
                    Err(_) => Ok(()),
                }
            })
        }
        Path::Poll => outcome(
            pool.get(&url)
                .poll()
                .timeout(timeout)
                .status_url(|_| Some(".".to_string()))
                .every(Duration::from_millis(10))
                .until(|_| true)
                .map(drop),
        ),
        Path::Burst => {
            let mut parties = pool
                .burst(1, LIMIT, |_| Ok(()), move |agent, ()| fetch(agent, &url))
                .unwrap();
            outcome(parties.remove(0))
        }
        Path::Submit => outcome(pool.submit(move |agent| fetch(agent, &url))),
    }
}

/// What a closure job does with the agent: a GET, body read to the end.
fn fetch(agent: &reqpool::ureq::Agent, url: &str) -> Result<(), Error> {
    let mut resp = agent.get(url).call().map_err(Error::other)?;
    resp.body_mut()
        .read_to_string()
        .map(drop)
        .map_err(Error::other)
}

#[test]
fn a_silent_server_cannot_hold_any_path_past_its_limit() {
    let fault = FaultServer::start(Fault::Silent);
    let timeout = Duration::from_millis(400);
    for path in PATHS {
        let (pool, errors) = pool_with(Pool::builder().workers(2).timeout(timeout));
        let wait = through(&pool, &errors, path, &fault.url("/silent"), timeout);
        let t0 = Instant::now();
        let r = bounded(LIMIT, wait);
        let took = t0.elapsed();
        assert!(r.is_err(), "{path:?} succeeded against a silent server");
        // The limit plus the grace of a waiter, with room for a slow machine.
        assert!(
            took < timeout + Duration::from_secs(2),
            "{path:?} took {took:?}"
        );
        // The worker is free again: a quick job runs.
        let quick = pool.submit(|_| Ok(1));
        assert_eq!(bounded(LIMIT, move || quick.wait()).unwrap(), 1, "{path:?}");
    }
}

#[test]
fn a_trickling_server_cannot_hold_any_path_past_its_limit() {
    // The head just before the limit, then the body one byte every 30 ms
    // (6 s): each of ureq's own phase budgets would allow it.
    let fault = FaultServer::start(Fault::SlowBody {
        head_ms: 450,
        ms: 30,
    });
    let timeout = Duration::from_millis(600);
    for path in PATHS {
        let (pool, errors) = pool_with(Pool::builder().workers(1).timeout(timeout));
        let wait = through(&pool, &errors, path, &fault.url("/trickle"), timeout);
        let t0 = Instant::now();
        let r = bounded(LIMIT, wait);
        assert!(r.is_err(), "{path:?} succeeded");
        // The one worker is free by the limit: a job queued behind it runs.
        let quick = pool.submit(|_| Ok(Instant::now()));
        let ran_at = bounded(LIMIT, move || quick.wait()).unwrap();
        let freed = ran_at - t0;
        assert!(
            freed < timeout + Duration::from_secs(2),
            "{path:?}: worker busy for {freed:?}"
        );
    }
}

/// A server that records the most requests it had in flight at once.
fn concurrency_server() -> (Server, Arc<AtomicUsize>) {
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let (n, m) = (now.clone(), max.clone());
    let server = Server::with_handler(move |_, _| {
        let c = n.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(c, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(40));
        n.fetch_sub(1, Ordering::SeqCst);
        Reply::json(200, json!({"ok": true}))
    });
    (server, max)
}

#[test]
fn the_host_cap_holds_on_every_request_path() {
    for path in [Path::Json, Path::Send, Path::Fire, Path::Poll] {
        let (server, max) = concurrency_server();
        let (pool, errors) = pool_with(Pool::builder().workers(4).max_per_host(1));
        let waits: Vec<_> = (0..6)
            .map(|_| through(&pool, &errors, path, &server.url("/x"), LIMIT))
            .collect();
        for w in waits {
            assert_eq!(bounded(LIMIT, w), Ok(()), "{path:?}");
        }
        assert_eq!(max.load(Ordering::SeqCst), 1, "{path:?} broke the host cap");
    }
}

#[test]
fn a_batch_far_larger_than_the_workers_succeeds_under_its_timeout() {
    // 24 calls of 150 ms through 2 workers: 1.8 s of queue, each call well
    // inside a 1 s timeout that starts when a worker takes it.
    let server = Server::start();
    let pool = Pool::builder()
        .workers(2)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let url = server.url("/delay?ms=150");
    let jobs: Vec<_> = (0..24).map(|_| pool.get_json::<Value>(&url)).collect();
    let results = bounded(LIMIT, move || reqpool::wait_all(jobs));
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn duration_max_is_legal_everywhere() {
    let server = Server::start();
    let max = Duration::MAX;
    let pool = Pool::builder()
        .workers(2)
        .timeout(max)
        .deadline(max)
        .connect_timeout(max)
        .response_timeout(max)
        .drain_timeout(max)
        .hedge(Hedge::after(max))
        .retry(Retry::standard().backoff(max, max))
        .build()
        .unwrap();
    let url = server.url("/json");
    let r = pool.get(&url).timeout(max).deadline(max).json::<Value>();
    assert!(r.wait_timeout(max).unwrap().is_ok());
    let p = pool.get_json::<Value>(&url);
    assert!(p.wait_deadline(Instant::now() + LIMIT).unwrap().is_ok());
    let poll = pool
        .get(&url)
        .poll()
        .status_url(|_| Some("/json".into()))
        .every(max)
        .timeout(max)
        .until(|_| false);
    // The next poll would be past the end of time: a timeout, not a panic.
    assert!(
        bounded(LIMIT, move || poll.wait())
            .unwrap_err()
            .is_timeout()
    );
    let parties = pool.burst(2, max, |_| Ok(()), |_, ()| Ok(())).unwrap();
    assert!(reqpool::wait_all(parties).into_iter().all(|r| r.is_ok()));
    let mut set = Completions::new().timeout(max);
    set.push(0, pool.get_json::<Value>(&url));
    assert!(set.next_timeout(max).unwrap().1.is_ok());
    assert_eq!(pool.flush_timeout(max), 0);
    assert_eq!(pool.shutdown_timeout(max).abandoned, 0);
}

/// One worker held by a closure until the returned sender is dropped.
fn blocked_pool() -> (Pool, crossbeam_channel::Sender<()>) {
    let pool = Pool::new(1);
    let (tx, rx) = channel::<()>(0);
    let (started_tx, started) = channel::<()>(1);
    let _ = pool.submit(move |_| {
        started_tx.send(()).unwrap();
        let _ = rx.recv_timeout(LIMIT);
        Ok(())
    });
    started.recv_timeout(LIMIT).unwrap();
    (pool, tx)
}

fn assert_queue_timeout(e: &Error, what: &str) {
    assert_eq!(e.timeout_phase(), Some(Phase::Queued), "{what}: {e:?}");
    assert!(e.to_string().contains("/json"), "{what}: {e}");
}

#[test]
fn a_queued_request_resolves_at_its_deadline_under_every_helper() {
    let server = Server::start();
    let url = server.url("/json");
    let (pool, release) = blocked_pool();
    let short = Duration::from_millis(100);
    let late = || pool.get(&url).deadline(short).json::<Value>();
    let t0 = Instant::now();
    assert_queue_timeout(&late().wait().unwrap_err(), "wait");
    assert_queue_timeout(
        &late().wait_timeout(LIMIT).unwrap().unwrap_err(),
        "wait_timeout",
    );
    assert_queue_timeout(
        &late()
            .wait_deadline(Instant::now() + LIMIT)
            .unwrap()
            .unwrap_err(),
        "wait_deadline",
    );
    let any = reqpool::wait_any(vec![late()]).unwrap();
    assert_queue_timeout(any.result.as_ref().unwrap_err(), "wait_any");
    let all = reqpool::wait_all(vec![late(), late()]);
    assert_queue_timeout(all[1].as_ref().unwrap_err(), "wait_all");
    let failed = reqpool::first_success(vec![late()]).unwrap_err();
    assert_queue_timeout(&failed.errors[0].1, "first_success");
    let failed = reqpool::fallback([|| late()]).unwrap_err();
    assert_queue_timeout(&failed.errors[0].1, "fallback");
    let mut set = Completions::new();
    set.push("a", late());
    assert_queue_timeout(set.next().unwrap().1.as_ref().unwrap_err(), "Completions");
    let mut ordered = pool.map_ordered(0..1, 4, |p, _| p.get(&url).deadline(short).json::<Value>());
    assert_queue_timeout(&ordered.next().unwrap().unwrap_err(), "map_ordered");
    // All of that while the only worker was busy the whole time.
    assert!(t0.elapsed() < LIMIT);
    drop(release);
}

#[test]
fn hedging_never_sends_a_post_twice() {
    let server = Server::start();
    let pool = Pool::builder()
        .workers(4)
        .hedge(Hedge::after(Duration::from_millis(20)))
        .retry(Retry::standard().non_idempotent(true))
        .build()
        .unwrap();
    let url = server.url("/delay?ms=200");
    let r = pool.post(&url).json_body(&json!({})).json::<Value>();
    bounded(LIMIT, move || r.wait()).unwrap();
    assert_eq!(server.shared.hits("/delay"), 1);
    // A GET is hedged, through fire as through json.
    pool.get(&url).fire().unwrap();
    assert_eq!(bounded(LIMIT, move || pool.flush()), 0);
    assert_eq!(server.shared.hits("/delay"), 3);
}

#[test]
fn retry_waits_off_the_workers() {
    // One worker, two requests that are each answered 503 with
    // Retry-After: 1 once: while one waits its second, the other runs, so
    // the server sees the second request before the first one's retry.
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, s) = (count.clone(), seen.clone());
    let server = Server::with_handler(move |req, _| {
        let who = req.q("who").unwrap_or("").to_string();
        s.lock().unwrap().push(who.clone());
        let n = c.fetch_add(1, Ordering::SeqCst);
        if n < 2 {
            Reply::json(503, json!({})).header("Retry-After", "1")
        } else {
            Reply::json(200, json!({"who": who}))
        }
    });
    let pool = Pool::builder()
        .workers(1)
        .retry(Retry::standard())
        .build()
        .unwrap();
    let a = pool
        .get(&server.url("/r"))
        .query("who", "a")
        .json::<Value>();
    let b = pool
        .get(&server.url("/r"))
        .query("who", "b")
        .json::<Value>();
    let stats = pool.clone();
    let (a, b) = bounded(LIMIT, move || (a.wait(), b.wait()));
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(*seen.lock().unwrap(), ["a", "b", "a", "b"]);
    assert_eq!(stats.stats().scheduled, 0);
}
