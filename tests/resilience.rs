//! Faults, retries, hedging, per-host caps, limits, redirects and secrets,
//! against real servers on 127.0.0.1.

mod common;

use common::{Fault, FaultServer, LIMIT, Reply, Server, Shared, bounded};
use reqpool::{Error, Hedge, Pool, Retry, TransportKind};
use serde_json::json;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

fn fast_retry() -> Retry {
    Retry::standard().backoff(Duration::from_millis(1), Duration::from_millis(5))
}

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
        seen.lock().unwrap().push(
            req.headers
                .get("idempotency-key")
                .cloned()
                .unwrap_or_default(),
        );
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
fn hedging_is_never_used_for_post() {
    let server = slow_once(Duration::from_millis(300));
    let pool = Pool::builder()
        .workers(2)
        .hedge(Hedge::after(Duration::from_millis(20)))
        .build()
        .unwrap();
    let url = server.url("/slow-once");
    let v = bounded(LIMIT, {
        let pool = pool.clone();
        move || pool.post_json::<serde_json::Value>(&url, &json!({})).wait()
    })
    .unwrap();
    assert_eq!(v["copy"], "first");
    assert_eq!(server.shared.requests.load(Ordering::SeqCst), 1);
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

/// A server whose `/hold` requests wait until released, counting how many
/// are inside at once.
struct Holding {
    server: Server,
    gate: Arc<(Mutex<bool>, Condvar)>,
    max_inside: Arc<AtomicUsize>,
}

fn holding() -> Holding {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let (g, i, m) = (gate.clone(), inside.clone(), max_inside.clone());
    let server = Server::with_handler(move |_, _: &Shared| {
        let now = i.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        let (lock, cv) = &*g;
        let open = cv
            .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(10), |open| !*open)
            .unwrap();
        drop(open);
        i.fetch_sub(1, Ordering::SeqCst);
        Reply::json(200, json!({"held": true}))
    });
    Holding {
        server,
        gate,
        max_inside,
    }
}

#[test]
fn per_host_cap_holds_while_other_hosts_flow() {
    let slow = holding();
    let fast = Server::start();
    let pool = Pool::builder().workers(4).max_per_host(1).build().unwrap();
    let held: Vec<_> = (0..3)
        .map(|_| pool.get_json::<serde_json::Value>(&slow.server.url("/hold")))
        .collect();
    let quick: Vec<_> = (0..20)
        .map(|_| pool.get_json::<serde_json::Value>(&fast.url("/json")))
        .collect();
    // Every request to the other host finishes while the slow host holds
    // one request (and its other two wait off the workers).
    let done = bounded(LIMIT, move || reqpool::wait_all(quick));
    assert!(done.iter().all(Result::is_ok));
    assert_eq!(slow.max_inside.load(Ordering::SeqCst), 1);
    {
        let (lock, cv) = &*slow.gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    let held = bounded(LIMIT, move || reqpool::wait_all(held));
    assert!(held.iter().all(Result::is_ok));
    assert_eq!(
        slow.max_inside.load(Ordering::SeqCst),
        1,
        "the cap was exceeded"
    );
    assert_eq!(pool.stats().succeeded, 23);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn gzip_bomb_fails_as_too_large() {
    // 16 MiB of zeros compress to ~16 KiB; the cap counts decoded bytes.
    let bomb = Arc::new(gzip(&vec![0u8; 16 << 20]));
    assert!(bomb.len() < 100_000);
    let server = Server::with_handler(move |_, _| {
        Reply {
            status: 200,
            content_type: "application/json",
            headers: vec![],
            body: bomb.to_vec(),
        }
        .header("Content-Encoding", "gzip")
    });
    let pool = Pool::builder().max_response_bytes(1 << 20).build().unwrap();
    let url = server.url("/bomb");
    let err = bounded(LIMIT, move || pool.get(&url).send().wait()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: 1_048_576,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn body_of_exactly_the_limit_is_accepted_one_more_byte_is_not() {
    let server = Server::with_handler(|req, _| {
        let n: usize = req.q("n").and_then(|v| v.parse().ok()).unwrap_or(0);
        Reply::text(200, "application/octet-stream", &"x".repeat(n))
    });
    let pool = Pool::builder().max_response_bytes(1000).build().unwrap();
    let ok = pool
        .get(&server.url("/bytes?n=1000"))
        .send()
        .wait()
        .unwrap();
    assert_eq!(ok.body().len(), 1000);
    let err = pool
        .get(&server.url("/bytes?n=1001"))
        .send()
        .wait()
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: 1000, .. }),
        "{err:?}"
    );
    // Gzipped, the same rule on decoded bytes.
    let server = Server::with_handler(|req, _| {
        let n: usize = req.q("n").and_then(|v| v.parse().ok()).unwrap_or(0);
        Reply {
            status: 200,
            content_type: "application/octet-stream",
            headers: vec![],
            body: gzip(&vec![b'y'; n]),
        }
        .header("Content-Encoding", "gzip")
    });
    assert_eq!(
        pool.get(&server.url("/g?n=1000"))
            .send()
            .wait()
            .unwrap()
            .body()
            .len(),
        1000
    );
    assert!(matches!(
        pool.get(&server.url("/g?n=1001")).send().wait(),
        Err(Error::TooLarge { .. })
    ));
}

fn redirecting(to: String) -> Server {
    Server::with_handler(move |req, _| match req.path.as_str() {
        "/302" => Reply::text(302, "text/plain", "").header("Location", &format!("{to}/target")),
        "/303" => Reply::text(303, "text/plain", "").header("Location", &format!("{to}/target")),
        "/307" => Reply::text(307, "text/plain", "")
            .header("Location", &format!("{to}/target?token=abc123")),
        "/target" | "/headers" => {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            Reply::json(
                200,
                json!({"method": req.method, "body": String::from_utf8_lossy(&req.body), "headers": headers}),
            )
        }
        _ => Reply::json(404, json!({})),
    })
}

#[test]
fn post_redirects_are_errors_unless_followed() {
    let target = redirecting(String::new());
    let server = redirecting(format!("http://{}", target.addr));
    let pool = Pool::new(2);
    for code in ["302", "307"] {
        let err = pool
            .post_json::<serde_json::Value>(&server.url(&format!("/{code}")), &json!({"a": 1}))
            .wait()
            .unwrap_err();
        assert_eq!(err.status(), Some(code.parse().unwrap()), "{err:?}");
        assert!(matches!(err, Error::Redirect { .. }));
        assert!(!err.to_string().contains("abc123"), "{err}");
    }
    assert_eq!(target.shared.hits("/target"), 0);
    // Followed on request: 307 keeps method and body, 302 keeps the method,
    // 303 becomes a GET.
    let follow = |code: &str| -> serde_json::Value {
        pool.post(&server.url(&format!("/{code}")))
            .json_body(&json!({"a": 1}))
            .follow_redirects(true)
            .json()
            .wait()
            .unwrap()
    };
    let v = follow("307");
    assert_eq!(
        (v["method"].as_str(), v["body"].as_str()),
        (Some("POST"), Some(r#"{"a":1}"#))
    );
    assert_eq!(follow("302")["method"], "POST");
    assert_eq!(follow("303")["method"], "GET");
}

#[test]
fn secret_headers_never_cross_to_another_host() {
    let other = redirecting(String::new());
    let origin = redirecting(format!("http://{}", other.addr));
    let pool = Pool::new(1);
    let v: serde_json::Value = pool
        .get(&origin.url("/302"))
        .header("Authorization", "Bearer t0ken")
        .header("Cookie", "session=c00kie")
        .header("Proxy-Authorization", "Basic cHJveHk=")
        .secret_header("X-Api-Key", "k3y")
        .header("X-Plain", "visible")
        .json()
        .wait()
        .unwrap();
    let h = &v["headers"];
    assert_eq!(h["x-plain"], "visible");
    for secret in [
        "authorization",
        "cookie",
        "proxy-authorization",
        "x-api-key",
    ] {
        assert!(h.get(secret).is_none(), "{secret} crossed hosts: {h}");
    }
    // On the same host they stay.
    let same_host = Server::with_handler(|req, _| match req.path.as_str() {
        "/go" => Reply::text(302, "text/plain", "").header("Location", "/headers"),
        _ => Reply::json(200, json!({"x-api-key": req.headers.get("x-api-key")})),
    });
    let v: serde_json::Value = pool
        .get(&same_host.url("/go"))
        .secret_header("X-Api-Key", "k3y")
        .json()
        .wait()
        .unwrap();
    assert_eq!(v["x-api-key"], "k3y");
}

#[test]
fn secrets_are_absent_from_every_error_form() {
    let url_secrets = ["hunter2", "s3cretval", "alice"];
    let check = |err: &Error| {
        for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
            for s in url_secrets.iter().chain(&["t0ken-abc", "k3y-xyz"]) {
                assert!(!shown.contains(s), "{s} in {shown}");
            }
        }
    };
    let with_secrets = |base: String| {
        format!("{base}?api_key=s3cretval").replace("http://", "http://alice:hunter2@")
    };
    let server = Server::start();
    let silent = FaultServer::start(Fault::Silent);
    let pool = Pool::builder()
        .timeout(Duration::from_millis(300))
        .retry(fast_retry())
        .build()
        .unwrap();
    let targets = [
        with_secrets(server.url("/status")),         // status error
        with_secrets(server.url("/text")),           // decode error
        with_secrets(common::closed_port_url("/x")), // refused, retried
        with_secrets(silent.url("/x")),              // timeout
        with_secrets("http://[::1".to_string()),     // invalid url
    ];
    for url in targets {
        let err = bounded(LIMIT, {
            let pool = pool.clone();
            move || {
                pool.get(&url)
                    .bearer_auth("t0ken-abc")
                    .secret_header("X-Api-Key", "k3y-xyz")
                    .json::<serde_json::Value>()
                    .wait()
            }
        })
        .unwrap_err();
        check(&err);
    }
}

#[test]
fn response_timeout_is_its_own_limit() {
    let silent = FaultServer::start(Fault::Silent);
    let pool = Pool::builder()
        .timeout(Duration::from_secs(15))
        .response_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let url = silent.url("/x");
    let err = bounded(LIMIT, move || {
        pool.get_json::<serde_json::Value>(&url).wait()
    })
    .unwrap_err();
    assert_eq!(
        err.timeout_phase(),
        Some(reqpool::Phase::Response),
        "{err:?}"
    );
}

#[test]
fn tls_to_a_plain_http_server_is_a_tls_error() {
    // A plain-HTTP server that answers the TLS hello with an HTTP error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 512];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let pool = Pool::new(1);
    let url = format!("https://{addr}/json");
    let err = bounded(LIMIT, move || {
        pool.get_json::<serde_json::Value>(&url).wait()
    })
    .unwrap_err();
    assert_eq!(err.transport_kind(), Some(TransportKind::Tls), "{err:?}");
}

#[test]
fn try_send_reports_a_full_queue_at_once() {
    let server = Server::start();
    let pool = Pool::builder().workers(1).max_queued(1).build().unwrap();
    let (release, gate) = crossbeam_channel::bounded::<()>(0);
    let (started_tx, started_rx) = crossbeam_channel::bounded::<()>(1);
    let busy = pool.submit(move |_| {
        started_tx.send(()).unwrap();
        gate.recv().map_err(Error::other)
    });
    started_rx.recv_timeout(LIMIT).unwrap();
    let queued = pool.get(&server.url("/json")).try_send();
    let refused = pool
        .get(&server.url("/json"))
        .try_json::<serde_json::Value>();
    assert!(matches!(refused.wait(), Err(Error::QueueFull)));
    release.send(()).unwrap();
    busy.wait().unwrap();
    assert_eq!(bounded(LIMIT, move || queued.wait()).unwrap().status(), 200);
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
