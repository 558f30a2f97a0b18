//! Real servers' edges: a request answered once is never blindly sent
//! again, redirects resolve by RFC 3986 and count against their own host,
//! the breaker sees a host that answers 503, no wait outlives its limit
//! whatever the server asks for, and bad sizes are errors, not panics.
//! Table-driven over the ways in where a rule applies to requests.

mod common;

use common::{Fault, FaultServer, LIMIT, Reply, Server, bounded, closed_port_url};
use crossbeam_channel::{Receiver, bounded as channel};
use reqpool::{Breaker, Error, Pending, Phase, Pool, Retry};
use serde_json::{Value, json};
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Every way a POST reaches the pool.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    Json,
    Send,
    Fire,
    FireDetached,
    Poll,
    Burst,
    Submit,
}

const PATHS: [Path; 7] = [
    Path::Json,
    Path::Send,
    Path::Fire,
    Path::FireDetached,
    Path::Poll,
    Path::Burst,
    Path::Submit,
];

/// Retries that do not wait long.
fn fast_retry() -> Retry {
    Retry::standard()
        .max_attempts(4)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
}

/// A pool whose fired jobs report their errors on the returned channel.
fn pool_with(b: reqpool::Builder) -> (Pool, Receiver<Error>) {
    let (tx, rx) = channel(256);
    let pool = b
        .on_error(move |e| {
            let _ = tx.try_send(clone_error(e));
        })
        .build()
        .unwrap();
    (pool, rx)
}

/// Enough of an error to assert on, from a hook that only borrows it.
fn clone_error(e: &Error) -> Error {
    match e.last_attempt() {
        Error::Timeout { phase, .. } => Error::Timeout {
            phase: *phase,
            method: String::new(),
            url: String::new(),
        },
        Error::CircuitOpen { host, retry_in } => Error::CircuitOpen {
            host: host.clone(),
            retry_in: *retry_in,
        },
        other => Error::other(other.to_string()),
    }
}

/// Sends `method url` (a JSON body unless `body` is false) through `path`
/// and blocks until its outcome is known.
fn send_through(
    pool: &Pool,
    errors: &Receiver<Error>,
    path: Path,
    method: &str,
    url: &str,
    body: bool,
) -> Result<(), Error> {
    let req = || {
        let r = pool.request(method, url);
        if body {
            r.json_body(&json!({"order": 17}))
        } else {
            r
        }
    };
    let wait = |p: Pending<()>| bounded(LIMIT, move || p.wait());
    match path {
        Path::Json => wait(req().json::<Value>().map(drop)),
        Path::Send => wait(req().send().map(drop)),
        Path::Fire | Path::FireDetached => {
            while errors.try_recv().is_ok() {}
            if path == Path::Fire {
                req().fire()?;
            } else {
                req().fire_detached()?;
            }
            let p = pool.clone();
            assert_eq!(bounded(LIMIT, move || p.flush()), 0);
            errors.try_recv().map_or(Ok(()), Err)
        }
        Path::Poll => wait(
            req()
                .poll()
                .every(Duration::from_millis(5))
                .until(|_| true)
                .map(drop),
        ),
        Path::Burst | Path::Submit => {
            let (method, url) = (method.to_string(), url.to_string());
            let call = move |agent: &reqpool::ureq::Agent| -> Result<(), Error> {
                let r = match method.as_str() {
                    "POST" if body => agent.post(&url).send_json(json!({"order": 17})),
                    "POST" => agent.post(&url).send_empty(),
                    _ => agent.get(&url).call(),
                };
                r.map(drop).map_err(Error::other)
            };
            if path == Path::Submit {
                wait(pool.submit(call))
            } else {
                let mut p = pool
                    .burst(1, LIMIT, |_| Ok(()), move |agent, ()| call(agent))
                    .unwrap();
                wait(p.remove(0))
            }
        }
    }
}

/// The hits on `path`, once there are at least `want` (or the server's
/// wait has passed): a detached fire is done once written, before the
/// server has read it.
fn hits_when(server: &Server, path: &str, want: usize) -> usize {
    let stop = Instant::now() + common::SERVER_WAIT;
    loop {
        let n = server.shared.hits(path);
        if n >= want || Instant::now() > stop {
            return n;
        }
        std::thread::yield_now();
    }
}

/// A server whose `/order` answers `code` with `Location: target`, and
/// whose other paths answer `200 {}`.
fn redirecting(code: u16, target: String) -> Server {
    Server::with_handler(move |req, _| match req.path.as_str() {
        "/order" => Reply::text(code, "text/plain", "").header("Location", &target),
        _ => Reply::json(200, json!({})),
    })
}

#[test]
fn a_post_answered_with_a_redirect_is_never_sent_again() {
    // Where the redirect points: nothing listening, or a host that answers
    // 503 (both retryable failures, neither proves the order unsent).
    let down = Server::with_handler(|_, _| Reply::json(503, json!({"detail": "down"})));
    let targets = [closed_port_url("/next"), down.url("/next")];
    for target in &targets {
        for (code, follow, body) in [(303, false, false), (303, true, true), (307, true, true)] {
            let origin = redirecting(code, target.clone());
            let (pool, errors) = pool_with(Pool::builder().workers(2).retry(fast_retry()));
            for path in PATHS {
                let url = origin.url("/order");
                let before = origin.shared.hits("/order");
                let r = if follow {
                    // follow_redirects is a builder setting: the table's
                    // request paths all go through RequestBuilder.
                    let p = pool
                        .post(&url)
                        .json_body(&json!({"order": 17}))
                        .follow_redirects(true);
                    match path {
                        Path::Json => bounded(LIMIT, move || p.json::<Value>().wait().map(drop)),
                        Path::Send => bounded(LIMIT, move || p.send().wait().map(drop)),
                        Path::Fire | Path::FireDetached => {
                            if path == Path::Fire {
                                p.fire().unwrap();
                            } else {
                                p.fire_detached().unwrap();
                            }
                            let q = pool.clone();
                            bounded(LIMIT, move || q.flush());
                            errors.try_recv().map_or(Ok(()), Err)
                        }
                        Path::Poll => {
                            bounded(LIMIT, move || p.poll().until(|_| true).wait().map(drop))
                        }
                        Path::Burst | Path::Submit => {
                            send_through(&pool, &errors, path, "POST", &url, body)
                        }
                    }
                } else {
                    send_through(&pool, &errors, path, "POST", &url, body)
                };
                let sent = hits_when(&origin, "/order", before + 1) - before;
                assert_eq!(
                    sent, 1,
                    "{path:?} {code} follow={follow} to {target}: the order reached the server {sent} times ({r:?})"
                );
                if matches!(path, Path::Json | Path::Send | Path::Poll) {
                    let e = r.expect_err("the redirect target fails");
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
}

#[test]
fn an_idempotency_key_lets_a_redirected_post_be_retried() {
    let origin = redirecting(303, closed_port_url("/next"));
    let pool = Pool::builder()
        .workers(1)
        .retry(fast_retry())
        .build()
        .unwrap();
    let r = pool
        .post(&origin.url("/order"))
        .json_body(&json!({"order": 17}))
        .idempotency_key("order-17")
        .follow_redirects(true)
        .send();
    let e = bounded(LIMIT, move || r.wait()).unwrap_err();
    assert_eq!(e.attempts(), 4, "{e}");
    assert_eq!(origin.shared.hits("/order"), 4);
}

#[test]
fn redirects_resolve_by_rfc_3986() {
    let cases: [(&str, &str, &str); 5] = [
        // A login redirect: `://` in the query does not make it absolute.
        (
            "/next?return=https://example.com/x",
            "/next",
            "return=https://example.com/x",
        ),
        ("?page=2", "/dir/page", "page=2"),
        ("../x", "/x", ""),
        ("./a/../b", "/dir/b", ""),
        ("sibling", "/dir/sibling", ""),
    ];
    let server = Server::with_handler(move |req, _| {
        if let Some(to) = req.q("to") {
            return Reply::text(302, "text/plain", "").header("Location", to);
        }
        if let Some(i) = req.q("case").and_then(|c| c.parse::<usize>().ok()) {
            return Reply::text(302, "text/plain", "").header("Location", cases[i].0);
        }
        let mut q: Vec<_> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        q.sort();
        Reply::json(200, json!({"path": req.path, "query": q.join("&")}))
    });
    let pool = Pool::new(2);
    for (i, (location, path, query)) in cases.iter().enumerate() {
        let url = server.url(&format!("/dir/page?case={i}"));
        let v: Value = pool.get(&url).json().wait().unwrap();
        assert_eq!(v["path"], *path, "{location}");
        assert_eq!(v["query"], *query, "{location}");
    }
    // Scheme-relative: to another listener.
    let other = Server::start();
    let loc = format!("//{}/json", other.addr);
    let url = format!("{}?to={}", server.url("/dir/page"), loc);
    assert!(pool.get(&url).json::<Value>().wait().is_ok());
    assert_eq!(other.shared.hits("/json"), 1);
    // A redirect without a Location says so, with its status.
    let bare = Server::with_handler(|_, _| Reply::text(302, "text/plain", ""));
    let e = pool
        .get(&bare.url("/x"))
        .json::<Value>()
        .wait()
        .unwrap_err();
    assert_eq!(e.status(), Some(302), "{e}");
    assert!(e.to_string().contains("no location"), "{e}");
    // A Location that does not resolve is a redirect error, not a retry.
    let bad = redirecting(302, "http://127.0.0.1:99999/x".into());
    let e = pool
        .get(&bad.url("/order"))
        .retry(fast_retry())
        .send()
        .wait()
        .unwrap_err();
    assert!(matches!(e, Error::Redirect { code: 302, .. }), "{e}");
    assert_eq!(bad.shared.hits("/order"), 1);
}

#[test]
fn each_redirect_hop_counts_against_its_own_host() {
    let failing = Server::with_handler(|_, _| Reply::json(500, json!({"detail": "broken"})));
    let origin = redirecting(302, failing.url("/x"));
    let pool = Pool::builder()
        .workers(1)
        .circuit_breaker(
            Breaker::new()
                .failures(2)
                .cool_down(Duration::from_secs(600)),
        )
        .build()
        .unwrap();
    for _ in 0..4 {
        let _ = pool.get(&origin.url("/order")).send().wait();
    }
    // B's circuit opened after its two failures; the later hops to it
    // failed fast without connecting.
    assert_eq!(failing.shared.hits("/x"), 2);
    assert_eq!(origin.shared.hits("/order"), 4);
    let e = pool.get(&origin.url("/order")).send().wait().unwrap_err();
    assert!(e.is_circuit_open(), "{e}");
    // A is healthy: it is not blamed for B.
    assert!(pool.get(&origin.url("/fine")).send().wait().is_ok());
    let e = pool.get(&failing.url("/x")).send().wait().unwrap_err();
    assert!(e.is_circuit_open(), "{e}");
}

#[test]
fn a_redirect_hop_waits_for_its_own_hosts_rate_limit() {
    let target = Server::start();
    let origin = redirecting(302, target.url("/json"));
    let pool = Pool::builder()
        .workers(2)
        .max_rate_per_host(1, Duration::from_secs(3600))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    // The target's one token of the hour goes to a direct request.
    assert!(pool.get(&target.url("/json")).send().wait().is_ok());
    // The hop to it would wait an hour: it fails unsent, at once.
    let p = pool.get(&origin.url("/order")).send();
    let e = bounded(LIMIT, move || p.wait()).unwrap_err();
    assert_eq!(e.timeout_phase(), Some(Phase::Throttled), "{e}");
    assert_eq!(origin.shared.hits("/order"), 1);
    assert_eq!(
        target.shared.hits("/json"),
        1,
        "the hop went past the limit"
    );
    // A token due within the limit is waited for off the workers.
    let target = Server::start();
    let origin = redirecting(302, target.url("/json"));
    let pool = Pool::builder()
        .workers(1)
        .max_rate_per_host(1, Duration::from_millis(200))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(pool.get(&target.url("/json")).send().wait().is_ok());
    let t0 = Instant::now();
    let hop = pool.get(&origin.url("/order")).send();
    let r = bounded(LIMIT, move || hop.wait());
    assert!(r.is_ok(), "{r:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(target.shared.hits("/json"), 2);
}

#[test]
fn the_breaker_sees_a_host_that_answers_503_on_every_path() {
    for (status, count_429, reaching) in [(503, false, 2), (429, true, 2), (429, false, 7)] {
        for path in PATHS {
            let server = Server::with_handler(move |_, _| Reply::json(status, json!({})));
            let (pool, errors) = pool_with(
                Pool::builder().workers(1).circuit_breaker(
                    Breaker::new()
                        .failures(2)
                        .count_429(count_429)
                        .cool_down(Duration::MAX),
                ),
            );
            let url = server.url("/x");
            for _ in 0..7 {
                let _ = send_through(&pool, &errors, path, "GET", &url, false);
            }
            let hits = if path == Path::FireDetached {
                hits_when(&server, "/x", 7)
            } else {
                server.shared.hits("/x")
            };
            // Closures use the agent directly: the breaker is the request
            // builder's, and a closure is never refused. A detached fire
            // never reads the answer, so it cannot see a 503.
            let want = if matches!(path, Path::Burst | Path::Submit | Path::FireDetached) {
                7
            } else {
                reaching
            };
            assert_eq!(hits, want, "{status} count_429={count_429} {path:?}");
        }
    }
}

#[test]
fn a_cool_down_of_max_keeps_the_circuit_open() {
    let server = Server::with_handler(|_, _| Reply::json(503, json!({})));
    let pool = Pool::builder()
        .workers(1)
        .circuit_breaker(Breaker::new().failures(1).cool_down(Duration::MAX))
        .build()
        .unwrap();
    let _ = pool.get(&server.url("/x")).send().wait();
    let e = pool.get(&server.url("/x")).send().wait().unwrap_err();
    match e {
        Error::CircuitOpen { retry_in, .. } => assert!(retry_in > Duration::from_secs(1 << 40)),
        e => panic!("{e}"),
    }
    assert_eq!(server.shared.hits("/x"), 1);
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
fn a_rate_limit_wait_counts_against_the_timeout() {
    let server = Server::start();
    let pool = Pool::builder()
        .workers(2)
        .max_rate_per_host(1, Duration::from_secs(3600))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let url = server.url("/json");
    assert!(pool.get(&url).send().wait().is_ok());
    let t0 = Instant::now();
    let e = bounded(LIMIT, {
        let p = pool.get(&url).send();
        move || p.wait()
    })
    .unwrap_err();
    assert_eq!(e.timeout_phase(), Some(Phase::Throttled), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // A token due within the limit is waited for, and the request succeeds.
    let pool = Pool::builder()
        .workers(2)
        .max_rate_per_host(1, Duration::from_millis(100))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..3 {
        assert!(pool.get(&url).send().wait().is_ok());
    }
}

#[test]
fn a_rate_period_that_is_not_a_rate_is_refused_at_build() {
    for per in [
        Duration::MAX,
        Duration::ZERO,
        Duration::from_secs(367 * 86_400),
    ] {
        let e = Pool::builder()
            .max_rate_per_host(10, per)
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::Usage { .. }), "{per:?}: {e}");
    }
    assert!(
        Pool::builder()
            .max_rate_per_host(10_000, Duration::from_secs(86_400))
            .build()
            .is_ok()
    );
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
fn a_fresh_connection_closed_before_any_response_is_tried_once() {
    let server = FaultServer::start(Fault::Reset);
    let pool = Pool::new(1);
    let e = pool.get(&server.url("/x")).send().wait().unwrap_err();
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "{e}");
    assert!(!e.to_string().contains("reused"), "{e}");
}

/// A raw server that answers every request with `head` and `body`.
fn raw_server(response: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(common::SERVER_WAIT));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if common::read_request(&mut reader).is_some() {
                h.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(&response);
            }
        }
    });
    (url, hits)
}

#[test]
fn failures_that_repeat_the_same_way_are_not_retried() {
    let huge = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        "a".repeat(70 * 1024)
    );
    let gzip = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\nContent-Type: application/json\r\n\r\nnot gzip!".to_vec();
    for (what, response) in [("huge header", huge.into_bytes()), ("bad gzip", gzip)] {
        let (url, hits) = raw_server(response);
        let pool = Pool::builder()
            .workers(1)
            .retry(fast_retry())
            .build()
            .unwrap();
        let e = pool.get(&url).send().wait().unwrap_err();
        assert!(!e.is_retryable(), "{what}: {e}");
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{what}: {e}");
    }
}

#[test]
fn urls_the_http_layer_refuses_fail_at_submit() {
    let pool = Pool::new(1);
    for url in [
        "http://127.0.0.1:99999/",
        "http:///x",
        "http://127.0.0.1/a\r\nX-Injected: 1",
    ] {
        let p = pool.get(url).send();
        assert!(p.is_finished(), "{url:?} queued");
        let e = p.wait().unwrap_err();
        assert!(matches!(e, Error::InvalidRequest { .. }), "{url:?}: {e}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    let s = pool.stats();
    assert_eq!(s.succeeded + s.failed, 0);
}

#[test]
fn urls_go_out_as_users_write_them() {
    let server = Server::with_handler(|req, _| {
        Reply::json(
            200,
            json!({
                "path": req.path,
                "q": req.q("q"),
                "page": req.q("page"),
                "content_length": req.headers.get("content-length"),
                "transfer_encoding": req.headers.get("transfer-encoding"),
                "user_agent": req.headers.get("user-agent"),
            }),
        )
    });
    let pool = Pool::new(1);
    let url = format!("http://{}/café menu", server.addr);
    let v: Value = pool.get(&url).json().wait().unwrap();
    assert_eq!(v["path"], "/caf%C3%A9%20menu");
    // A fragment is not sent, and does not swallow a query parameter.
    let url = server.url("/p?q=1#section");
    let v: Value = pool.get(&url).query("page", 2).json().wait().unwrap();
    assert_eq!(
        (v["q"].as_str(), v["page"].as_str()),
        (Some("1"), Some("2"))
    );
    // No body, no body headers on a GET; a POST without a body says
    // Content-Length: 0, never an empty chunked body.
    assert_eq!(v["content_length"], Value::Null);
    let v: Value = pool.post(&server.url("/p")).json().wait().unwrap();
    assert_eq!(v["content_length"], "0");
    assert_eq!(v["transfer_encoding"], Value::Null);
    // An explicit user agent wins over a custom agent's default.
    let agent: reqpool::ureq::Agent = reqpool::ureq::Agent::config_builder().build().into();
    let pool = Pool::builder()
        .workers(1)
        .agent(agent)
        .user_agent("mine/1")
        .build()
        .unwrap();
    let v: Value = pool.get(&server.url("/p")).json().wait().unwrap();
    assert_eq!(v["user_agent"], "mine/1");
}

#[test]
fn an_error_status_keeps_its_headers_without_secrets() {
    let server = Server::with_handler(|req, _| {
        let echo = req
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        Reply::json(401, json!({"detail": "expired"}))
            .header(
                "WWW-Authenticate",
                r#"Bearer realm="api", error="invalid_token""#,
            )
            .header("X-Echo", &echo)
            .header("X-Request-Id", "req-42")
            .header("Set-Cookie", "session=s3cr3t-cookie; HttpOnly")
    });
    let pool = Pool::new(1);
    let r = pool
        .get(&server.url("/me?key=q-secret-9"))
        .bearer_auth("tok-secret-1234")
        .send()
        .wait();
    let e = r.unwrap_err();
    assert_eq!(
        e.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="invalid_token""#)
    );
    assert_eq!(e.header("X-Request-Id"), Some("req-42"));
    // The accessors give the server's words as sent; Display and Debug
    // leave the secrets out.
    assert_eq!(
        e.header("set-cookie"),
        Some("session=s3cr3t-cookie; HttpOnly")
    );
    assert_eq!(e.header("x-echo"), Some("Bearer tok-secret-1234"));
    assert_eq!(e.header("no-such"), None);
    let shown = format!("{e} {e:?} {e:#?}");
    for secret in ["tok-secret-1234", "q-secret-9", "s3cr3t-cookie"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn gzip_deflate_and_br_bodies_are_decoded_and_others_named() {
    use std::io::Write as _;
    let zlib = {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(br#"{"ok":true,"via":"deflate"}"#).unwrap();
        e.finish().unwrap()
    };
    let raw_deflate = {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(br#"{"ok":true,"via":"raw deflate"}"#).unwrap();
        e.finish().unwrap()
    };
    let gzip = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(br#"{"ok":true,"via":"gzip"}"#).unwrap();
        e.finish().unwrap()
    };
    // `{"ok":true,"via":"br"}`, compressed by Python's brotli module.
    let br: Vec<u8> = vec![
        139, 10, 128, 123, 34, 111, 107, 34, 58, 116, 114, 117, 101, 44, 34, 118, 105, 97, 34, 58,
        34, 98, 114, 34, 125, 3,
    ];
    let seen_accept = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = seen_accept.clone();
    let server = Server::with_handler(move |req, _| {
        *seen.lock().unwrap() = req
            .headers
            .get("accept-encoding")
            .cloned()
            .unwrap_or_default();
        let (enc, body) = match req.path.as_str() {
            "/deflate" => ("deflate", zlib.clone()),
            "/raw-deflate" => ("deflate", raw_deflate.clone()),
            "/gzip" => ("gzip", gzip.clone()),
            "/br" => ("br", br.clone()),
            _ => ("zstd", vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0]),
        };
        let mut reply = Reply::json(200, json!({})).header("Content-Encoding", enc);
        reply.body = body;
        reply
    });
    let pool = Pool::new(1);
    for (path, via) in [
        ("/deflate", "deflate"),
        ("/raw-deflate", "raw deflate"),
        ("/gzip", "gzip"),
        ("/br", "br"),
    ] {
        let v: Value = pool.get(&server.url(path)).json().wait().unwrap();
        assert_eq!(v["via"], via, "{path}");
        let resp = pool.get(&server.url(path)).send().wait().unwrap();
        assert_eq!(resp.header("content-encoding"), None, "{path}: decoded");
    }
    assert_eq!(*seen_accept.lock().unwrap(), "gzip, deflate, br");
    let e = pool
        .get(&server.url("/zstd"))
        .json::<Value>()
        .wait()
        .unwrap_err();
    assert!(e.to_string().contains("zstd-encoded"), "{e}");
}

mod at_most_once {
    //! The promise behind every rule above, as a property: a POST that
    //! reached a server reaches it at most once, whatever redirect, retry,
    //! hedge and cancel are combined with it.

    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    struct World {
        origin: Server,
        targets: Vec<String>,
        _down: Server,
        _ok: Server,
        _reset: FaultServer,
    }

    fn world() -> &'static World {
        static W: OnceLock<World> = OnceLock::new();
        W.get_or_init(|| {
            let down = Server::with_handler(|_, _| Reply::json(503, json!({})));
            let ok = Server::start();
            let reset = FaultServer::start(Fault::Reset);
            let origin = Server::with_handler(|req, _| {
                let code: u16 = req.q("code").and_then(|c| c.parse().ok()).unwrap_or(0);
                match (code, req.q("to")) {
                    (0, _) | (_, None) => Reply::json(503, json!({"detail": "busy"})),
                    (code, Some(to)) => Reply::text(code, "text/plain", "").header("Location", to),
                }
            });
            World {
                targets: vec![
                    closed_port_url("/next"),
                    down.url("/next"),
                    reset.url("/next"),
                    ok.url("/json"),
                ],
                origin,
                _down: down,
                _ok: ok,
                _reset: reset,
            }
        })
    }

    static CASE: AtomicUsize = AtomicUsize::new(0);

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn a_post_that_reached_a_server_reaches_it_at_most_once(
            code in prop::sample::select(vec![0u16, 301, 302, 303, 307, 308]),
            target in 0usize..4,
            follow in any::<bool>(),
            body in any::<bool>(),
            retry in any::<bool>(),
            hedge in any::<bool>(),
            cancel_after_us in prop::option::of(0u64..3_000),
            path in prop::sample::select(vec![Path::Json, Path::Send, Path::Fire, Path::FireDetached]),
        ) {
            let w = world();
            let case = CASE.fetch_add(1, Ordering::SeqCst);
            let route = format!("/order{case}");
            let url = format!(
                "{}?code={code}&to={}",
                w.origin.url(&route),
                w.targets[target]
            );
            let mut b = Pool::builder().workers(2);
            if retry {
                b = b.retry(fast_retry());
            }
            if hedge {
                b = b.hedge(reqpool::Hedge::after(Duration::from_millis(1)));
            }
            let pool = b.build().unwrap();
            let mut req = pool.post(&url).follow_redirects(follow);
            if body {
                req = req.json_body(&json!({"order": case}));
            }
            match path {
                Path::Fire => {
                    req.fire().unwrap();
                }
                Path::FireDetached => {
                    req.fire_detached().unwrap();
                }
                _ => {
                    let p = if path == Path::Json {
                        req.json::<Value>().map(drop)
                    } else {
                        req.send().map(drop)
                    };
                    if let Some(us) = cancel_after_us {
                        std::thread::sleep(Duration::from_micros(us));
                        p.cancel();
                    }
                    let _ = bounded(LIMIT, move || p.wait());
                }
            }
            // Dropping the pool waits for everything it still runs.
            bounded(LIMIT, move || drop(pool));
            let sent = w.origin.shared.hits(&route);
            prop_assert!(sent <= 1, "sent {sent} times: {url} follow={follow} body={body} retry={retry} hedge={hedge} cancel={cancel_after_us:?} {path:?}");
        }
    }
}

mod every_duration {
    //! Every duration setting at its edges (zero, 1 ns, `MAX`, anything in
    //! between) on every way in: no panic, no wait past the limit, a
    //! result or a typed error.

    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn server() -> &'static Server {
        static S: OnceLock<Server> = OnceLock::new();
        S.get_or_init(Server::start)
    }

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_nanos(1)),
            Just(Duration::MAX),
            (0u64..2_000).prop_map(Duration::from_millis),
            any::<u64>().prop_map(Duration::from_nanos),
            (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// `timeout` stays short so that the test is bounded: with a
        /// limit of a century a job may rightly sleep for years. The
        /// property is that nothing outlives the limit that is set.
        #[test]
        fn no_duration_setting_panics_or_hangs(
            timeout in prop_oneof![
                Just(Duration::ZERO),
                Just(Duration::from_nanos(1)),
                (0u64..2_000).prop_map(Duration::from_millis),
            ],
            deadline in duration(),
            connect in duration(),
            response in duration(),
            drain in duration(),
            hedge in duration(),
            base in duration(),
            cap in duration(),
            cool_down in duration(),
            rate_per in prop::option::of(duration()),
            wait in duration(),
        ) {
            let mut b = Pool::builder()
                .workers(2)
                .timeout(timeout)
                .deadline(deadline)
                .connect_timeout(connect)
                .response_timeout(response)
                .drain_timeout(drain)
                .hedge(reqpool::Hedge::after(hedge))
                .retry(Retry::standard().backoff(base, cap))
                .circuit_breaker(Breaker::new().cool_down(cool_down));
            if let Some(per) = rate_per {
                b = b.max_rate_per_host(1_000, per);
            }
            let pool = match b.build() {
                Ok(p) => p,
                Err(Error::Usage { .. }) => {
                    // Only a period that is not a rate is refused.
                    prop_assert!(rate_per.is_some_and(|p| p.is_zero() || p > Duration::from_secs(366 * 86_400)));
                    return Ok(());
                }
                Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            };
            let (_, errors) = channel::<Error>(1);
            let url = server().url("/json");
            for path in PATHS {
                let pool = pool.clone();
                let (url, errors) = (url.clone(), errors.clone());
                // Bounded: the shortest limit of this case, plus slack.
                let r = bounded(LIMIT, move || match path {
                    Path::Json => pool
                        .get(&url)
                        .json::<Value>()
                        .wait_timeout(wait)
                        .map(|r| r.map(drop)),
                    _ => Some(send_through(&pool, &errors, path, "GET", &url, false)),
                });
                if let Some(Err(e)) = r {
                    prop_assert!(!e.to_string().is_empty());
                    prop_assert!(!e.is_panic(), "{path:?}: {e}");
                }
            }
            let flush = pool.clone();
            prop_assert_eq!(bounded(LIMIT, move || flush.flush_timeout(wait)), 0);
            bounded(LIMIT, move || drop(pool));
        }
    }
}
