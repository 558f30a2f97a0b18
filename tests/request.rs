//! One request against real servers: transport failures, time limits,
//! URLs as users write them, connections shared, and bad input that fails
//! at once without a worker.

mod common;

use common::*;
use reqpool::{Error, Phase, Pool, TransportKind};
use serde_json::{Value, json};
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[test]
fn connection_refused_is_a_connect_error() {
    let pool = Pool::new(1);
    let err = bounded(LIMIT, move || {
        pool.get_json::<serde_json::Value>(&closed_port_url("/x"))
            .wait()
    })
    .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(err.transport_kind(), Some(TransportKind::Refused));
    assert!(
        err.to_string()
            .starts_with("connection refused (GET http://127.0.0.1:"),
        "{err}"
    );
}

#[test]
fn silent_server_times_out_within_the_limit() {
    let fault = FaultServer::start(Fault::Silent);
    let pool = Pool::builder()
        .workers(1)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = bounded(LIMIT, {
        let url = fault.url("/slow");
        move || pool.get_json::<serde_json::Value>(&url).wait()
    })
    .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.timeout_phase(), Some(Phase::Deadline));
    assert!(
        err.to_string()
            .starts_with("timed out at the time limit (GET"),
        "{err}"
    );
}

#[test]
fn per_request_timeout_overrides_the_pool() {
    let fault = FaultServer::start(Fault::Silent);
    let pool = Pool::new(1); // 30 s by default
    let err = bounded(LIMIT, {
        let url = fault.url("/slow");
        move || {
            pool.get(&url)
                .timeout(Duration::from_millis(200))
                .send()
                .wait()
        }
    })
    .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[test]
fn trickling_server_is_bounded_by_the_total_limit() {
    // One byte every 50 ms: each read succeeds, so only a total limit stops it.
    let fault = FaultServer::start(Fault::Trickle(50));
    let pool = Pool::builder()
        .workers(1)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = bounded(LIMIT, {
        let url = fault.url("/t");
        move || pool.get_json::<serde_json::Value>(&url).wait()
    })
    .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[test]
fn close_mid_body_is_a_transport_error() {
    let fault = FaultServer::start(Fault::CloseMidBody);
    let pool = Pool::new(1);
    let err = bounded(LIMIT, {
        let url = fault.url("/m");
        move || pool.get_json::<serde_json::Value>(&url).wait()
    })
    .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
}

#[test]
fn invalid_url_resolves_at_once_without_a_worker() {
    let pool = Pool::new(1);
    for bad in ["127.0.0.1:80/x", "ftp://h/x", "http:///x", "not a url", ""] {
        let p = pool.get_json::<serde_json::Value>(bad);
        assert!(p.is_finished(), "{bad}");
        let err = p.wait().unwrap_err();
        assert!(
            matches!(err, Error::InvalidRequest { .. }),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(pool.stats().submitted, 0);
}

#[test]
fn unserializable_body_resolves_at_once() {
    use std::collections::HashMap;
    let pool = Pool::new(1);
    // JSON object keys must be strings: a map keyed by tuples fails.
    let mut bad = HashMap::new();
    bad.insert((1, 2), "x");
    let err = pool
        .post_json::<serde_json::Value>("http://127.0.0.1:9/x", &bad)
        .wait()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err:?}");
    assert!(err.to_string().contains("does not serialize"), "{err}");
    assert_eq!(pool.stats().submitted, 0);
}

#[test]
fn bad_header_resolves_at_once() {
    let pool = Pool::new(1);
    let err = pool
        .get("http://127.0.0.1:9/")
        .header("bad header", "x")
        .send()
        .wait()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err:?}");
}

#[test]
fn requests_really_overlap() {
    // The server answers only when all N requests are inside it at once, so
    // this passes only if the pool runs them concurrently.
    const N: usize = 8;
    let server = Server::start();
    let pool = Pool::new(N);
    let url = server.url(&format!("/barrier?n={N}"));
    let results = bounded(LIMIT, move || {
        let pending: Vec<_> = (0..N)
            .map(|_| pool.get_json::<serde_json::Value>(&url))
            .collect();
        pending
            .into_iter()
            .map(|p| p.wait().map(|d| d["count"].as_u64().unwrap_or(0)))
            .collect::<Vec<_>>()
    });
    for r in results {
        assert_eq!(r.unwrap(), 1);
    }
}

#[test]
fn connections_are_reused_across_workers() {
    let server = Server::start();
    let pool = Pool::new(4);
    let url = server.url("/json");
    let all: Vec<_> = (0..200)
        .map(|_| pool.get_json::<serde_json::Value>(&url))
        .collect();
    for p in all {
        p.wait().unwrap();
    }
    let conns = server
        .shared
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        conns <= 4,
        "{conns} connections for 200 requests on 4 workers"
    );
}

#[test]
fn default_agent_never_uses_the_timeouts_that_spawn_a_resolver_thread() {
    // ureq 3.5 resolves the host on a new OS thread for every request when
    // a global, per-call or resolve timeout is set (~6x less throughput).
    // The pool bounds requests per phase instead; keep it that way.
    let pool = Pool::new(2);
    let t = pool.agent().config().timeouts();
    assert!(t.global.is_none(), "{t:?}");
    assert!(t.per_call.is_none(), "{t:?}");
    assert!(t.resolve.is_none(), "{t:?}");
    assert!(pool.agent().config().max_idle_connections_per_host() >= 2);
    assert!(pool.agent().config().proxy().is_none());
}

#[test]
fn lowercase_methods_display_query_values_and_forms() {
    let server = common::Server::with_handler(|req, _| {
        common::Reply::json(
            200,
            serde_json::json!({
                "method": req.method,
                "query": req.query,
                "type": req.headers.get("content-type"),
                "body": String::from_utf8_lossy(&req.body),
            }),
        )
    });
    let pool = Pool::new(2);
    let v: serde_json::Value = pool
        .request("post", &server.url("/f"))
        .query("page", 2)
        .query("ratio", 0.5)
        .form(&[("user", "ada lovelace"), ("n", "1&2")])
        .json()
        .wait()
        .unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["query"]["page"], "2");
    assert_eq!(v["query"]["ratio"], "0.5");
    assert_eq!(v["type"], "application/x-www-form-urlencoded");
    assert_eq!(v["body"], "user=ada%20lovelace&n=1%262");
    let err = pool
        .request("BAD METHOD", &server.url("/f"))
        .send()
        .wait()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err:?}");
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

/// A raw server that writes `response` in `piece`-byte writes, and stops
/// after `stop` bytes if given: closing, or holding the connection open.
fn piecewise_server(response: Vec<u8>, piece: usize, stop: Option<(usize, bool)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(common::SERVER_WAIT));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if common::read_request(&mut reader).is_none() {
                continue;
            }
            let end = stop.map_or(response.len(), |(n, _)| n);
            for chunk in response[..end].chunks(piece) {
                if stream
                    .write_all(chunk)
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    break;
                }
            }
            if stop.is_some_and(|(_, hold)| hold) {
                // Until the client gives up (EOF) or SERVER_WAIT.
                let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
            }
        }
    });
    url
}

#[test]
fn a_long_head_in_pieces_cut_off_or_stalled_ends_as_a_short_one_would() {
    let head = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        "a".repeat(40 * 1024)
    )
    .into_bytes();
    let pool = Pool::builder()
        .workers(1)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let get = |url: String| {
        let p = pool.get(&url).send();
        bounded(LIMIT, move || p.wait())
    };
    // In 1 KiB writes: read whole.
    let r = get(piecewise_server(head.clone(), 1024, None)).unwrap();
    assert_eq!(r.header("x-big").map(str::len), Some(40 * 1024));
    // Closed 30 KiB into the head: a transport error, maybe sent.
    let e = get(piecewise_server(
        head.clone(),
        1024,
        Some((30 * 1024, false)),
    ))
    .unwrap_err();
    assert!(
        matches!(e, Error::Transport { .. }) && e.maybe_sent(),
        "{e:?}"
    );
    // Stalled 30 KiB into the head: the job's limit ends it.
    let e = get(piecewise_server(head, 1024, Some((30 * 1024, true)))).unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
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
            .retry(fast_retry().max_attempts(4))
            .build()
            .unwrap();
        let e = pool.get(&url).send().wait().unwrap_err();
        assert!(!e.is_retryable(), "{what}: {e}");
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{what}: {e}");
    }
}

#[test]
fn a_response_head_longer_than_the_read_buffer_says_so_and_the_buffer_can_grow() {
    let head = |kib: usize| {
        format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\n{{}}",
            "a".repeat(kib * 1024)
        )
        .into_bytes()
    };
    // Up to 64 KiB by default (see responses.rs); past it, an error that
    // says so, unless the read buffer is raised.
    let (url, _) = raw_server(head(70));
    let pool = Pool::builder().workers(1).build().unwrap();
    let e = pool.get(&url).send().wait().unwrap_err();
    assert!(e.to_string().contains("larger than the"), "{e}");
    let pool = Pool::builder()
        .workers(1)
        .read_buffer(128 * 1024)
        .build()
        .unwrap();
    assert_eq!(pool.get(&url).send().wait().unwrap().status(), 200);
    let e = Pool::builder().read_buffer(100).build().unwrap_err();
    assert!(matches!(e, Error::Usage { .. }), "{e}");
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

/// A server that answers the lengths of what it got.
fn lengths_server() -> Server {
    Server::with_handler(|req, _| {
        let len = |h: &str| req.headers.get(h).map_or(0, String::len);
        Reply::json(
            200,
            json!({
                "q": req.q("q").map_or(0, str::len),
                "authorization": len("authorization"),
                "cookie": len("cookie"),
            }),
        )
    })
}

#[test]
fn request_heads_longer_than_a_connection_buffer_are_sent() {
    let server = lengths_server();
    let token: String = "t".repeat(17 * 1024);
    let t = token.clone();
    let pool = Pool::builder()
        .workers(2)
        .bearer_from(move |_| Ok(t.clone()))
        .build()
        .unwrap();
    let cookie = format!("session={}", "c".repeat(17 * 1024));
    let long_url = |kib: usize| server.url(&format!("/x?q={}", "a".repeat(kib * 1024)));
    // (url, header to add, what the server must have got)
    type Case<'a> = (String, Option<(&'a str, String)>, (&'a str, usize));
    let cases: Vec<Case<'_>> = vec![
        (long_url(20), None, ("q", 20 * 1024)),
        (long_url(60), None, ("q", 60 * 1024)),
        // A 17 KiB token added on the worker by bearer_from…
        (server.url("/x"), None, ("authorization", token.len() + 7)),
        // …and one of the caller's own.
        (
            server.url("/x"),
            Some(("Authorization", format!("Bearer {token}"))),
            ("authorization", token.len() + 7),
        ),
        (
            server.url("/x"),
            Some(("Cookie", cookie.clone())),
            ("cookie", cookie.len()),
        ),
    ];
    for (url, header, (field, want)) in &cases {
        let req = || {
            let r = pool.post(url).json_body(&json!({"k": 1}));
            match header {
                Some((k, v)) => r.header(k, v),
                None => r,
            }
        };
        let v: Value = bounded(LIMIT, {
            let r = req().json::<Value>();
            move || r.wait()
        })
        .unwrap_or_else(|e| panic!("json {field}: {e}"));
        assert_eq!(v[field], *want, "json: {v}");
        let resp = bounded(LIMIT, {
            let r = req().send();
            move || r.wait()
        })
        .unwrap_or_else(|e| panic!("send {field}: {e}"));
        assert_eq!(resp.status(), 200);
        req().fire().unwrap();
    }
    let p = pool.clone();
    assert_eq!(bounded(LIMIT, move || p.flush()), 0);
    let stats = pool.stats();
    assert_eq!(stats.fired_failed, 0, "{stats:?}");
    assert_eq!(
        server.shared.requests.load(Ordering::SeqCst),
        3 * cases.len()
    );
}

#[test]
fn a_request_head_past_the_limit_fails_at_submit() {
    let server = lengths_server();
    let pool = Pool::new(1);
    // A 60 KiB URL and 70 KiB of headers: past the 128 KiB a pool sends.
    let url = server.url(&format!("/x?q={}", "a".repeat(60 * 1024)));
    let hold = hold_workers(&pool, 1);
    let p = pool
        .get(&url)
        .header("X-Big", &"b".repeat(70 * 1024))
        .send();
    // At once, with the one worker busy: no worker used.
    assert!(p.is_finished());
    let e = p.wait().unwrap_err();
    assert!(matches!(e, Error::InvalidRequest { .. }), "{e:?}");
    assert!(!e.maybe_sent(), "{e:?}");
    assert!(e.to_string().contains("request head"), "{e}");
    drop(hold);
    assert_eq!(server.shared.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn long_request_head_lines_are_sent_on_every_way_in() {
    // What the server got: the path, the cookie's length, the query's.
    let (tx, got) = crossbeam_channel::unbounded::<(String, usize, usize)>();
    let server = Server::with_handler(move |req, _| {
        let len = req.headers.get("cookie").map_or(0, String::len);
        let q = req.q("q").map_or(0, str::len);
        let _ = tx.send((req.path.clone(), len, q));
        Reply::json(200, json!({"ok": 1}))
    });
    // Lines over the connection's 8 KiB write buffer: a cookie of 12 KiB
    // (which fit the old 16 KiB buffer), of 40 KiB, a 60 KiB URL.
    let cookie = |kib: usize| format!("s={}", "c".repeat(kib * 1024 - 2));
    type Case = (&'static str, usize, usize);
    let cases: [Case; 4] = [
        ("short", 1, 0),
        ("cookie12", 12, 0),
        ("cookie40", 40, 0),
        ("url60", 0, 60),
    ];
    for path in PATHS {
        let (pool, errors) = pool_with(Pool::builder().workers(2));
        for (name, cookie_kib, q_kib) in cases {
            let at = format!("/{path:?}/{name}");
            let url = match q_kib {
                0 => server.url(&at),
                k => server.url(&format!("{at}?q={}", "a".repeat(k * 1024))),
            };
            let mut call = Call::new("POST", &url, true);
            if cookie_kib > 0 {
                call = call.header("Cookie", &cookie(cookie_kib));
            }
            let wait = through(&pool, &errors, path, &call);
            bounded(LIMIT, wait).unwrap_or_else(|e| panic!("{path:?} {name}: {e}"));
            // A detached fire is over once written: wait for the server.
            let (p, len, q) = got
                .recv_timeout(SERVER_WAIT)
                .unwrap_or_else(|e| panic!("{path:?} {name}: {e}"));
            assert_eq!(
                (p.as_str(), len, q),
                (at.as_str(), cookie_kib * 1024, q_kib * 1024),
                "{path:?} {name}"
            );
            // A poll asks again at the same URL: take what it sent.
            while got.try_recv().is_ok() {}
        }
    }
}
