//! Retries and hedging: `Retry-After` in seconds and as a date, waits
//! off the workers and within the limit, a POST re-sent only when it
//! provably never left (or with a key), the retry budget, and hedged
//! copies that win, measure, and never copy a POST.

mod common;

use common::*;
use crossbeam_channel::bounded as channel;
use reqpool::{Error, Hedge, Phase, Pool, Retry, TransportKind};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A server whose `/flaky` fails with `status` (and `Retry-After` if given)
/// `failures` times, then answers 200; it records each request's headers.
fn flaky(
    status: u16,
    failures: usize,
    retry_after: Option<String>,
) -> (Server, Arc<Mutex<Vec<String>>>) {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = keys.clone();
    let count = AtomicUsize::new(0);
    let server = Server::with_handler(move |req, _| {
        seen.lock().unwrap().push(req.key());
        if count.fetch_add(1, Ordering::SeqCst) < failures {
            let mut r = Reply::json(status, json!({"error": "try later"}));
            if let Some(ra) = &retry_after {
                r = r.header("Retry-After", ra);
            }
            r
        } else {
            Reply::json(200, json!({"ok": true}))
        }
    });
    (server, keys)
}

#[test]
fn retry_after_seconds_then_success() {
    let (server, _) = flaky(503, 1, Some("1".into()));
    let pool = Pool::builder().retry(fast_retry()).build().unwrap();
    let v: serde_json::Value = bounded(LIMIT, move || {
        pool.get_json(&server.url("/flaky"))
            .wait()
            .map(|v| (v, server))
    })
    .map(|(v, server)| {
        assert_eq!(server.shared.hits("/flaky"), 2);
        v
    })
    .unwrap();
    assert_eq!(v["ok"], true);
}

#[test]
fn retry_after_http_date_then_success() {
    let when = std::time::SystemTime::now() + Duration::from_secs(1);
    let date = common::http_date(when);
    let (server, _) = flaky(429, 1, Some(date));
    let pool = Pool::builder().retry(fast_retry()).build().unwrap();
    let url = server.url("/flaky");
    let r = bounded(LIMIT, move || {
        pool.get_json::<serde_json::Value>(&url).wait()
    });
    assert_eq!(r.unwrap()["ok"], true);
    assert_eq!(server.shared.hits("/flaky"), 2);
}

#[test]
fn retry_after_beyond_the_deadline_ends_at_once() {
    let (server, _) = flaky(503, 10, Some("3600".into()));
    let pool = Pool::builder()
        .retry(fast_retry())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = server.url("/flaky");
    let err = bounded(LIMIT, move || {
        pool.get_json::<serde_json::Value>(&url).wait()
    })
    .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert!(
        matches!(
            &err,
            Error::GaveUp {
                reason: reqpool::GaveUpReason::BeyondDeadline {
                    retry_after: true,
                    ..
                },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("retry-after of 3600.0s is beyond the time limit"),
        "{err}"
    );
    assert_eq!(server.shared.hits("/flaky"), 1);
}

#[test]
fn final_error_lists_every_attempt() {
    let (server, _) = flaky(502, 10, None);
    let pool = Pool::builder()
        .retry(fast_retry().max_attempts(3))
        .build()
        .unwrap();
    let url = server.url("/flaky");
    let err = bounded(LIMIT, move || {
        pool.get_json::<serde_json::Value>(&url).wait()
    })
    .unwrap_err();
    assert_eq!(err.attempts(), 3);
    assert!(
        matches!(&err, Error::GaveUp { reason, .. } if *reason == reqpool::GaveUpReason::AttemptsExhausted)
    );
    assert!(
        err.to_string()
            .starts_with("gave up after 3 attempts (no attempts left); attempt 1: http status 502")
    );
    assert_eq!(server.shared.hits("/flaky"), 3);
}

#[test]
fn post_is_not_resent_after_a_reset_but_is_with_an_idempotency_key() {
    let fault = FaultServer::start(Fault::Reset);
    let pool = Pool::builder().retry(fast_retry()).build().unwrap();
    let url = fault.url("/reset");
    let err = bounded(LIMIT, {
        let (pool, url) = (pool.clone(), url.clone());
        move || pool.post_json::<serde_json::Value>(&url, &json!({})).wait()
    })
    .unwrap_err();
    assert!(err.maybe_sent(), "{err:?}");
    assert!(
        matches!(err.transport_kind(), Some(TransportKind::Reset)),
        "{err:?}"
    );
    assert_eq!(
        fault.connections.load(Ordering::SeqCst),
        1,
        "a POST was re-sent"
    );

    let err = bounded(LIMIT, move || {
        pool.post(&url)
            .idempotency_key("order-42")
            .json_body(&json!({}))
            .json::<serde_json::Value>()
            .wait()
    })
    .unwrap_err();
    assert_eq!(err.attempts(), 3);
    assert_eq!(fault.connections.load(Ordering::SeqCst), 1 + 3);
}

#[test]
fn idempotency_key_is_the_same_on_every_attempt() {
    let (server, keys) = flaky(503, 2, None);
    let pool = Pool::builder().retry(fast_retry()).build().unwrap();
    let url = server.url("/flaky");
    let v = bounded(LIMIT, {
        let (pool, url) = (pool.clone(), url.clone());
        move || {
            pool.post(&url)
                .idempotency_key("k-123")
                .json_body(&json!({"n": 1}))
                .json::<serde_json::Value>()
                .wait()
        }
    })
    .unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(*keys.lock().unwrap(), ["k-123", "k-123", "k-123"]);
}

#[test]
fn post_without_a_key_is_not_retried_on_503() {
    let (server, _) = flaky(503, 2, None);
    let pool = Pool::builder().retry(fast_retry()).build().unwrap();
    let url = server.url("/flaky");
    let err = bounded(LIMIT, move || {
        pool.post_json::<serde_json::Value>(&url, &json!({})).wait()
    })
    .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(
        matches!(
            &err,
            Error::GaveUp {
                reason: reqpool::GaveUpReason::MaybeSent,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.shared.hits("/flaky"), 1);
}

#[test]
fn refused_post_is_retried_because_it_never_left() {
    let pool = Pool::builder().retry(fast_retry()).build().unwrap();
    let url = common::closed_port_url("/x");
    let err = bounded(LIMIT, move || {
        pool.post_json::<serde_json::Value>(&url, &json!({})).wait()
    })
    .unwrap_err();
    assert_eq!(err.attempts(), 3, "{err}");
    assert!(!err.maybe_sent());
}

#[test]
fn stale_keep_alive_connection_is_not_an_error_for_get() {
    // The server answers the first request on each connection, then closes
    // that connection when a second request arrives on it: the race of a
    // keep-alive connection closed by the server just as it is reused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let conns = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            conns.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                if common::read_request(&mut reader).is_none() {
                    return;
                }
                let body = br#"{"ok":true}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
                // Wait for the reuse, then close without answering.
                let _ = common::read_request(&mut reader);
            });
        }
    });
    let pool = Pool::new(1); // retries off: the fresh-connection retry is not a policy
    let url = format!("http://{addr}/x");
    let results = bounded(LIMIT, {
        let pool = pool.clone();
        move || {
            (0..3)
                .map(|_| pool.get_json::<serde_json::Value>(&url).wait())
                .collect::<Vec<_>>()
        }
    });
    for r in results {
        assert_eq!(r.unwrap()["ok"], true);
    }
    assert!(connections.load(Ordering::SeqCst) >= 3);
}

#[test]
fn retry_budget_stops_hammering_a_failing_server() {
    let (server, _) = flaky(503, usize::MAX, None);
    let pool = Pool::builder()
        .workers(4)
        .retry(fast_retry().max_attempts(5))
        .retry_budget(0.1, 5)
        .build()
        .unwrap();
    let url = server.url("/flaky");
    let errors = bounded(LIMIT, move || {
        let all: Vec<_> = (0..50)
            .map(|_| pool.get_json::<serde_json::Value>(&url))
            .collect();
        reqpool::wait_all(all)
    });
    let hits = server.shared.hits("/flaky");
    // 50 first attempts, 5 tokens to start with, 0.1 per first attempt.
    assert!(
        hits <= 50 + 5 + 5,
        "{hits} requests: the budget did not hold"
    );
    assert!(hits > 50, "no retry at all");
    let exhausted = errors
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_err_and(|e| e.to_string().contains("retry budget exhausted"))
        })
        .count();
    assert!(exhausted > 0);
}

/// `/slow-once`: the first request waits `first` before answering
/// "first"; later ones answer "later" at once.
fn slow_once(first: Duration) -> Server {
    let n = AtomicUsize::new(0);
    Server::with_handler(move |_, _| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(first);
            Reply::json(200, json!({"copy": "first"}))
        } else {
            Reply::json(200, json!({"copy": "later"}))
        }
    })
}

#[test]
fn hedging_wins_against_a_slow_first_attempt() {
    let server = slow_once(Duration::from_secs(2));
    let pool = Pool::builder()
        .workers(2)
        .hedge(Hedge::after(Duration::from_millis(50)))
        .build()
        .unwrap();
    let url = server.url("/slow-once");
    let v = bounded(LIMIT, move || {
        pool.get_json::<serde_json::Value>(&url).wait()
    })
    .unwrap();
    assert_eq!(v["copy"], "later");
    assert_eq!(server.shared.requests.load(Ordering::SeqCst), 2);
}

#[test]
fn percentile_hedging_uses_the_hosts_measured_latency() {
    // 25 fast answers teach the pool this host's p90; then a request whose
    // first copy is slow (2 s) is hedged after about that p90, and the
    // second copy answers first.
    let slow_done = AtomicUsize::new(0);
    let server = Server::with_handler(move |req, _| {
        if req.path == "/slow-once" && slow_done.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_secs(2));
            return Reply::json(200, json!({"copy": "first"}));
        }
        Reply::json(200, json!({"copy": "later"}))
    });
    let pool = Pool::builder()
        .workers(2)
        .hedge(Hedge::percentile(0.9))
        .build()
        .unwrap();
    for _ in 0..25 {
        let _: serde_json::Value = pool.get_json(&server.url("/p")).wait().unwrap();
    }
    let url = server.url("/slow-once");
    let v: serde_json::Value = bounded(LIMIT, move || pool.get_json(&url).wait()).unwrap();
    assert_eq!(v["copy"], "later", "the hedge did not win");
    assert_eq!(server.shared.hits("/slow-once"), 2);
}

#[test]
fn percentile_hedging_needs_samples_first() {
    // With fewer than 20 measured requests to the host, nothing is hedged.
    let server = slow_once(Duration::from_millis(300));
    let pool = Pool::builder()
        .workers(2)
        .hedge(Hedge::percentile(0.5))
        .build()
        .unwrap();
    let url = server.url("/slow-once");
    let v: serde_json::Value = bounded(LIMIT, move || pool.get_json(&url).wait()).unwrap();
    assert_eq!(v["copy"], "first");
    assert_eq!(server.shared.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn a_retry_after_of_a_year_holds_no_wait_past_its_limit() {
    let server = Server::with_handler(|req, _| match req.path.as_str() {
        "/pause" => Reply::json(503, json!({})).header("Retry-After", "31536000"),
        _ => Reply::json(200, json!({})),
    });
    let (pool, errors) = pool_with(Pool::builder().workers(2).adaptive_rate(true));
    let _ = pool.get(&server.url("/pause")).send().wait();
    let url = server.url("/x");
    for path in [Path::Json, Path::Send, Path::Fire, Path::Poll] {
        let t0 = Instant::now();
        let r = match path {
            Path::Json => pool
                .get(&url)
                .timeout(Duration::from_millis(300))
                .json::<Value>()
                .wait()
                .map(drop),
            Path::Send => pool
                .get(&url)
                .timeout(Duration::from_millis(300))
                .send()
                .wait()
                .map(drop),
            Path::Fire => {
                pool.get(&url)
                    .timeout(Duration::from_millis(300))
                    .fire()
                    .unwrap();
                assert_eq!(pool.flush_timeout(LIMIT), 0);
                errors.try_recv().map_or(Ok(()), Err)
            }
            _ => pool
                .get(&url)
                .timeout(Duration::from_millis(300))
                .poll()
                .timeout(Duration::from_millis(300))
                .until(|_| true)
                .wait()
                .map(drop),
        };
        let took = t0.elapsed();
        let e = r.expect_err("the host is paused");
        assert_eq!(e.timeout_phase(), Some(Phase::Throttled), "{path:?}: {e}");
        assert!(!e.maybe_sent(), "{path:?}");
        assert!(took < Duration::from_secs(5), "{path:?} waited {took:?}");
    }
    assert_eq!(
        server.shared.hits("/x"),
        0,
        "nothing was sent to the paused host"
    );
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
fn a_retry_after_waits_in_the_timer_off_the_workers() {
    // One worker; `a` and `b` are answered 503 with Retry-After: 1 once,
    // `c` every time. While they wait their second, the worker runs other
    // jobs, the waits count as scheduled, and a job between attempts can
    // be cancelled.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, arrived) = channel::<()>(16);
    let s = seen.clone();
    let server = Server::with_handler(move |req, _| {
        let who = req.q("who").unwrap_or("").to_string();
        let again = {
            let mut seen = s.lock().unwrap();
            let again = seen.contains(&who);
            seen.push(who.clone());
            again
        };
        let _ = tx.send(());
        if who == "c" || !again {
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
    let get = |who: &str| {
        pool.get(&server.url("/r"))
            .query("who", who)
            .json::<Value>()
    };
    let (a, b, c) = (get("a"), get("b"), get("c"));
    for _ in 0..3 {
        arrived.recv_timeout(LIMIT).unwrap();
    }
    let quick = pool.submit(|_| Ok(7));
    assert_eq!(bounded(LIMIT, move || quick.wait()).unwrap(), 7);
    assert_eq!(pool.stats().scheduled, 3);
    assert!(c.cancel(), "a job between attempts can be cancelled");
    assert!(c.wait().unwrap_err().is_cancelled());
    let (a, b) = bounded(LIMIT, move || (a.wait(), b.wait()));
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    // Each retry came after the other's first try, not before.
    let order: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|w| *w != "c")
        .cloned()
        .collect();
    assert_eq!(order, ["a", "b", "a", "b"]);
    assert_eq!(pool.stats().scheduled, 0);
}
