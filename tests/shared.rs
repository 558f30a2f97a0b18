//! Shared flights: identical GETs asked for with `shared()` while one is
//! in flight ride it; every handle gets the answer or the same error.

mod common;

use common::*;
use crossbeam_channel::{Receiver, Sender, bounded as channel};
use reqpool::{Error, Pending, Pool};
use serde_json::{Value, json};
use std::thread;
use std::time::Duration;

/// A server whose `/held` answers only when the test says so: each
/// arrival is reported on `arrived`, and waits for one message on
/// `release` (or the server's wait) before answering.
fn held_server() -> (Server, Receiver<()>, Sender<()>) {
    let (arrived_tx, arrived) = channel::<()>(1000);
    let (release, release_rx) = channel::<()>(1000);
    let server = Server::with_handler(move |req, _| {
        let _ = arrived_tx.send(());
        if req.path == "/held" {
            let _ = release_rx.recv_timeout(SERVER_WAIT);
        }
        Reply::json(200, json!({"config": 42, "path": req.path}))
    });
    (server, arrived, release)
}

/// Starts the first shared request, waits until the server holds it,
/// then has `riders` threads ask for the same; returns every handle, the
/// first one first, once all of them are in.
fn ride_together(
    pool: &Pool,
    url: &str,
    arrived: &Receiver<()>,
    riders: usize,
) -> Vec<Pending<Value>> {
    let first = pool.get(url).shared().json::<Value>();
    arrived
        .recv_timeout(LIMIT)
        .expect("the first request reaches the server");
    let threads: Vec<_> = (0..riders)
        .map(|_| {
            let (pool, url) = (pool.clone(), url.to_string());
            thread::spawn(move || pool.get(&url).shared().json::<Value>())
        })
        .collect();
    let mut all = vec![first];
    all.extend(threads.into_iter().map(|t| t.join().unwrap()));
    all
}

#[test]
fn a_hundred_threads_asking_for_the_same_get_send_one_request() {
    let (server, arrived, release) = held_server();
    let pool = Pool::new(8);
    let url = server.url("/held");
    let handles = ride_together(&pool, &url, &arrived, 99);
    release.send(()).unwrap();
    let results = bounded(LIMIT, move || reqpool::wait_all(handles));
    assert_eq!(results.len(), 100);
    for r in results {
        assert_eq!(r.unwrap()["config"], 42);
    }
    assert_eq!(server.shared.hits("/held"), 1, "one request at the server");
}

#[test]
fn cancelling_the_first_handle_leaves_the_others_served() {
    let (server, arrived, release) = held_server();
    let pool = Pool::new(8);
    let url = server.url("/held");
    let mut handles = ride_together(&pool, &url, &arrived, 99);
    let first = handles.remove(0);
    assert!(first.cancel(), "the first handle gives up its seat");
    // A dropped handle leaves the others served too.
    drop(handles.pop());
    release.send(()).unwrap();
    let results = bounded(LIMIT, move || reqpool::wait_all(handles));
    assert_eq!(results.len(), 98);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|v| v["config"] == 42))
    );
    assert!(first.wait().unwrap_err().is_cancelled());
    assert_eq!(server.shared.hits("/held"), 1);
}

#[test]
fn when_every_handle_is_cancelled_the_request_is_cut_off() {
    let (server, arrived, _release) = held_server();
    let pool = Pool::new(1);
    let url = server.url("/held");
    let handles = ride_together(&pool, &url, &arrived, 3);
    for h in &handles {
        assert!(h.cancel());
    }
    // The one worker is free again: another request goes through.
    let other = pool.get(&server.url("/other")).json::<Value>();
    bounded(LIMIT, move || other.wait()).unwrap();
    assert_eq!(server.shared.hits("/held"), 1);
}

#[test]
fn a_timeout_reaches_every_handle() {
    let (server, arrived, _release) = held_server();
    let pool = Pool::builder()
        .workers(2)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = server.url("/held");
    let handles = ride_together(&pool, &url, &arrived, 9);
    let results = bounded(LIMIT, move || reqpool::wait_all(handles));
    assert_eq!(results.len(), 10);
    for r in results {
        let e = r.unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert!(e.to_string().contains("/held"), "{e}");
    }
    assert_eq!(server.shared.hits("/held"), 1);
}

#[test]
fn a_panic_reaches_every_handle() {
    let (server, _arrived, _release) = held_server();
    let (go, gate) = channel::<()>(1);
    let pool = Pool::builder()
        .workers(2)
        .before_attempt(move |_| {
            // Holds the flight until every rider is in, then panics.
            let _ = gate.recv_timeout(LIMIT);
            panic!("the signer broke")
        })
        .build()
        .unwrap();
    let url = server.url("/x");
    let handles: Vec<_> = (0..10)
        .map(|_| pool.get(&url).shared().json::<Value>())
        .collect();
    go.send(()).unwrap();
    let results = bounded(LIMIT, move || reqpool::wait_all(handles));
    for r in results {
        let e = r.unwrap_err();
        assert!(matches!(e.last_attempt(), Error::Panicked { .. }), "{e}");
    }
    assert_eq!(server.shared.hits("/x"), 0);
}

#[test]
fn only_identical_gets_share() {
    let (server, arrived, release) = held_server();
    let pool = Pool::new(8);
    let url = server.url("/held");
    // Same URL, another token: another request. A POST is never shared,
    // and a GET without `shared()` goes on its own.
    let first = pool.get(&url).shared().bearer_auth("a").json::<Value>();
    arrived.recv_timeout(LIMIT).unwrap();
    let other_token = pool.get(&url).shared().bearer_auth("b").json::<Value>();
    let not_shared = pool.get(&url).bearer_auth("a").json::<Value>();
    let post = pool.post(&url).shared().bearer_auth("a").json::<Value>();
    for _ in 0..3 {
        arrived.recv_timeout(LIMIT).unwrap();
    }
    for _ in 0..4 {
        release.send(()).unwrap();
    }
    let all = vec![first, other_token, not_shared, post];
    let results = bounded(LIMIT, move || reqpool::wait_all(all));
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(server.shared.hits("/held"), 4);
    // A flight that landed is not a cache: the next one is sent.
    release.send(()).unwrap();
    let again = pool.get(&url).shared().bearer_auth("a").json::<Value>();
    bounded(LIMIT, move || again.wait()).unwrap();
    assert_eq!(server.shared.hits("/held"), 5);
}
