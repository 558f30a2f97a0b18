//! Redirects: resolved by RFC 3986, each hop against its own host, a POST
//! answered by a redirect never sent again, and secrets that never cross
//! to another host.

mod common;

use common::*;
use reqpool::{Breaker, Error, Phase, Pool};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

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
            let (pool, errors) = pool_with(
                Pool::builder()
                    .workers(2)
                    .retry(fast_retry().max_attempts(4)),
            );
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
        .retry(fast_retry().max_attempts(4))
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
        .retry(fast_retry().max_attempts(4))
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

fn redirect_to(to: String) -> Server {
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
    let target = redirect_to(String::new());
    let server = redirect_to(format!("http://{}", target.addr));
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
    let other = redirect_to(String::new());
    let origin = redirect_to(format!("http://{}", other.addr));
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
fn post_answered_with_a_redirect_is_not_resent_as_get() {
    let server = Server::with_handler(|req, _| match req.path.as_str() {
        "/old" => common::Reply::text(302, "text/plain", "").header("Location", "/new?sig=zzz"),
        _ => common::Reply::json(200, serde_json::json!({"method": req.method})),
    });
    let pool = Pool::new(1);
    let err = pool
        .post_json::<serde_json::Value>(&server.url("/old"), &serde_json::json!({}))
        .wait()
        .unwrap_err();
    assert!(matches!(err, Error::Redirect { code: 302, .. }), "{err:?}");
    assert!(err.to_string().contains("/new?sig=***"), "{err}");
    assert_eq!(server.shared.hits("/new"), 0);
    // A GET follows.
    let v: serde_json::Value = pool.get_json(&server.url("/old")).wait().unwrap();
    assert_eq!(v["method"], "GET");
}

#[test]
fn a_servers_redirect_target_follows_the_url_rule() {
    // The target echoes what it got, the Basic credentials ureq made of
    // the target's userinfo included, in a 500.
    let target = Server::with_handler(|req, _| {
        Reply::json(
            500,
            json!({"auth": req.headers.get("authorization"), "path": req.path, "query": req.query}),
        )
    });
    // An `@` in the path after the userinfo must not hide where it ends.
    let location = format!(
        "http://bob:swordfish9@{}/next@x?token=SEKRET&page=2",
        target.addr
    );
    let origin = redirecting(302, location);
    let pool = Pool::new(2);
    let hidden = ["swordfish9", "SEKRET", "Ym9iOnN3b3JkZmlzaDk="];
    // Not followed (a POST): the `Location` shown.
    let err = pool
        .post_json::<Value>(&origin.url("/order"), &json!({}))
        .wait()
        .unwrap_err();
    assert!(matches!(err, Error::Redirect { code: 302, .. }), "{err:?}");
    let shown = format!("{err} | {err:?}");
    assert!(shown.contains("***@127.0.0.1"), "{shown}");
    assert!(shown.contains("page=2"), "{shown}");
    // Followed (a GET), with and without a secret of the caller's own:
    // the target's URL and what its server echoes.
    for secret in [None, Some("k3y-CALLER")] {
        let mut req = pool.get(&origin.url("/order"));
        if let Some(s) = secret {
            req = req.secret_header("X-Api-Key", s);
        }
        let err = req.json::<Value>().wait().unwrap_err();
        assert_eq!(err.status(), Some(500), "{err:?}");
        let followed = format!("{err} | {err:?} | {err:#?}");
        for s in hidden.iter().chain(secret.iter()) {
            assert!(!shown.contains(s), "{s} in {shown}");
            assert!(!followed.contains(s), "{s} in {followed}");
        }
        // The server's words stay its own.
        assert!(err.body_text().unwrap().contains("Ym9iOnN3b3JkZmlzaDk="));
    }
}

#[test]
fn a_poll_jobs_status_url_follows_the_url_rule() {
    // The start answers with a status URL that carries a password and a
    // token; the status answers 500 with what it got, Basic included.
    let status = Server::with_handler(|req, _| {
        Reply::json(
            500,
            json!({"auth": req.headers.get("authorization"), "query": req.query}),
        )
    });
    let status_url = format!(
        "http://bob:swordfish9@{}/status?token=SEKRET&page=2",
        status.addr
    );
    let start =
        Server::with_handler(move |_, _| Reply::json(202, json!({"status_url": status_url})));
    let pool = Pool::new(2);
    let err = bounded(LIMIT, {
        let job = pool.post(&start.url("/jobs")).poll().until(|_| true);
        move || job.wait()
    })
    .unwrap_err();
    assert_eq!(err.status(), Some(500), "{err:?}");
    let shown = format!("{err} | {err:?} | {err:#?}");
    for s in ["swordfish9", "SEKRET", "Ym9iOnN3b3JkZmlzaDk="] {
        assert!(!shown.contains(s), "{s} in {shown}");
    }
    assert!(shown.contains("page=2"), "{shown}");
}
