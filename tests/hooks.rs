//! The pool's per-attempt hooks: `before_attempt` on every way in and on
//! every kind of attempt (first try, retry, redirect hop, hedged copy),
//! its errors and secrets; `bearer_from` with one refresh after a 401
//! (a POST too), shared by the requests that got it, and a request's own
//! `bearer_auth` first.

mod common;

use common::*;
use reqpool::{Attempt, Error, Hedge, Pool, Retry};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server that records every request and answers with `answer`.
fn recording(
    answer: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static,
) -> (Server, Arc<Mutex<Vec<Req>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let server = Server::with_handler(move |req, _| {
        let n = {
            let mut seen = s.lock().unwrap();
            seen.push(req.clone());
            seen.len()
        };
        answer(req, n)
    });
    (server, seen)
}

/// A signature of what the hook sees: method, number, body length.
fn sign(a: &mut Attempt<'_>) -> Result<(), Error> {
    let sig = format!("{} {} {}", a.method(), a.number(), a.body().len());
    a.header("X-Sig", &sig);
    Ok(())
}

#[test]
fn before_attempt_runs_on_every_way_in_through_the_request_builder() {
    let (server, seen) = recording(|_, _| Reply::json(200, json!({})));
    let (pool, errors) = pool_with(Pool::builder().workers(2).before_attempt(sign));
    let url = server.url("/x");
    for path in PATHS {
        seen.lock().unwrap().clear();
        send_through(&pool, &errors, path, "POST", &url, true).unwrap();
        // A detached fire is done once written: wait for the handler.
        let s = Arc::clone(&seen);
        bounded(LIMIT, move || {
            while s.lock().unwrap().is_empty() {
                std::thread::yield_now();
            }
        });
        let got = seen.lock().unwrap();
        let sig = got.first().and_then(|r| r.headers.get("x-sig").cloned());
        // Closures use the agent directly: no hook.
        let hooked = !matches!(path, Path::Burst | Path::Submit);
        // The hook saw the exact body the server got.
        let want = hooked.then(|| format!("POST 1 {}", got[0].body.len()));
        assert_eq!(sig, want, "{path:?}");
    }
}

#[test]
fn every_kind_of_attempt_is_hooked_with_its_number() {
    // A retry: 503 once, then 200.
    let (server, seen) = recording(|req, n| match (req.path.as_str(), n) {
        ("/flaky", 1) => Reply::json(503, json!({})),
        ("/moved", _) => Reply::text(307, "text/plain", "").header("Location", "/flaky"),
        _ => Reply::json(200, json!({})),
    });
    let fast = Retry::standard().backoff(Duration::from_millis(1), Duration::from_millis(5));
    let pool = Pool::builder()
        .retry(fast)
        .before_attempt(sign)
        .build()
        .unwrap();
    let sigs = |seen: &Mutex<Vec<Req>>| -> Vec<(String, String)> {
        let seen = seen.lock().unwrap();
        let sig = |r: &Req| r.headers.get("x-sig").cloned().unwrap_or_default();
        seen.iter().map(|r| (r.path.clone(), sig(r))).collect()
    };
    let url = server.url("/flaky");
    let r = pool.get(&url).json::<Value>();
    bounded(LIMIT, move || r.wait()).unwrap();
    assert_eq!(
        sigs(&seen),
        [
            ("/flaky".into(), "GET 1 0".into()),
            ("/flaky".into(), "GET 2 0".into())
        ]
    );
    // A redirect hop: the hop has its attempt's number.
    seen.lock().unwrap().clear();
    let r = pool.get(&server.url("/moved")).json::<Value>();
    bounded(LIMIT, move || r.wait()).unwrap();
    let got = sigs(&seen);
    assert_eq!(got[0], ("/moved".into(), "GET 1 0".into()));
    assert!(
        got[1..].iter().all(|(_, s)| s.starts_with("GET ")),
        "{got:?}"
    );
    // A hedged copy is hooked as its own first attempt.
    let (slow, seen) = recording(|_, n| {
        if n == 1 {
            std::thread::sleep(Duration::from_millis(300));
        }
        Reply::json(200, json!({}))
    });
    let pool = Pool::builder()
        .hedge(Hedge::after(Duration::from_millis(20)))
        .before_attempt(sign)
        .build()
        .unwrap();
    let r = pool.get(&slow.url("/h")).json::<Value>();
    bounded(LIMIT, move || r.wait()).unwrap();
    let both = sigs(&seen);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both.iter().all(|(_, s)| s == "GET 1 0"), "{both:?}");
}

#[test]
fn a_hook_error_fails_the_attempt_unsent_and_bad_headers_are_invalid() {
    let (server, seen) = recording(|_, _| Reply::json(200, json!({})));
    let pool = Pool::builder()
        .before_attempt(|_| Err(Error::other("no signing key")))
        .build()
        .unwrap();
    let r = pool.post(&server.url("/x")).json_body(&json!({})).send();
    let err = bounded(LIMIT, move || r.wait()).unwrap_err();
    assert!(err.to_string().contains("no signing key"), "{err}");
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
    let pool = Pool::builder()
        .before_attempt(|a| {
            a.header("bad name", "x");
            Ok(())
        })
        .build()
        .unwrap();
    let r = pool.get(&server.url("/x")).send();
    let err = bounded(LIMIT, move || r.wait()).unwrap_err();
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err:?}");
    assert!(err.to_string().contains("before_attempt"), "{err}");
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
}

#[test]
fn secrets_from_the_hooks_never_show_even_when_echoed() {
    const SIG: &str = "s1gn4ture-v@lue/+";
    const TOKEN: &str = "t0ken+/=value";
    // Every request header echoed back in a 500's body and headers.
    let (server, _) = recording(|req, _| {
        let mut reply = Reply::json(500, json!({"headers": req.headers}));
        for (k, v) in &req.headers {
            reply = reply.header(&format!("x-echo-{k}"), v);
        }
        reply
    });
    let debug = Arc::new(Mutex::new(String::new()));
    let d = Arc::clone(&debug);
    let pool = Pool::builder()
        .before_attempt(move |a| {
            a.secret_header("X-Sig", SIG).header("X-Plain", "shown");
            *d.lock().unwrap() = format!("{a:?}");
            Ok(())
        })
        .bearer_from(|_| Ok(TOKEN.to_string()))
        .build()
        .unwrap();
    let r = pool.get(&server.url("/x")).json::<Value>();
    let err = bounded(LIMIT, move || r.wait()).unwrap_err();
    assert_eq!(err.status(), Some(500));
    for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
        for secret in [SIG, TOKEN, "s1gn4ture-v%40lue%2F%2B", "t0ken%2B%2F%3Dvalue"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    // The server's words stay as they came, and what is not secret shows.
    let body = err.body_text().unwrap_or_default();
    assert!(body.contains(SIG) && body.contains("shown"), "{body}");
    assert_eq!(err.header("x-echo-x-sig"), Some(SIG));
    // The attempt's own Debug hides the secret and shows the rest.
    let debug = debug.lock().unwrap().clone();
    assert!(!debug.contains(SIG) && debug.contains("shown"), "{debug}");
}

/// A server that takes `Bearer t1` for its first `rotate_after` requests
/// and `Bearer t2` after them (401 otherwise), with a count of the tokens
/// issued (for `source`) and of the requests served.
fn token_world(rotate_after: usize) -> (Server, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&served);
    let server = Server::with_handler(move |req, _| {
        let n = s.fetch_add(1, Ordering::SeqCst) + 1;
        let valid = if n > rotate_after { "t2" } else { "t1" };
        match req.headers.get("authorization") {
            Some(a) if *a == format!("Bearer {valid}") => Reply::json(200, json!({"auth": a})),
            _ => Reply::json(401, json!({"detail": "token expired"})),
        }
    });
    (server, issued, served)
}

/// A token source that hands out `t1`, `t2`, … and checks the host.
fn source(
    issued: &Arc<AtomicUsize>,
) -> impl Fn(&str) -> Result<String, Error> + Send + Sync + use<> {
    let issued = Arc::clone(issued);
    move |host| {
        assert_eq!(host, "127.0.0.1");
        Ok(format!("t{}", issued.fetch_add(1, Ordering::SeqCst) + 1))
    }
}

#[test]
fn a_401_gets_a_new_token_and_one_more_send_even_for_a_post() {
    let (server, issued, served) = token_world(0);
    // t1 is already expired: the first send gets 401, the second t2.
    let pool = Pool::builder()
        .retry(Retry::none())
        .bearer_from(source(&issued))
        .build()
        .unwrap();
    let r = pool
        .post(&server.url("/orders"))
        .json_body(&json!({"order": 17}))
        .json::<Value>();
    let v = bounded(LIMIT, move || r.wait()).unwrap();
    assert_eq!(v["auth"], "Bearer t2");
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    assert_eq!(served.load(Ordering::SeqCst), 2);
    // A second 401 with the new token is the answer: no loop.
    let (server, issued, served) = token_world(0);
    let pool = Pool::builder()
        .bearer_from(|_| Ok("never-valid".to_string()))
        .build()
        .unwrap();
    let r = pool
        .post(&server.url("/orders"))
        .json_body(&json!({}))
        .send();
    let err = bounded(LIMIT, move || r.wait()).unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(served.load(Ordering::SeqCst), 2);
    assert_eq!(issued.load(Ordering::SeqCst), 0);
}

#[test]
fn requests_that_get_a_401_together_share_one_refresh() {
    // The server never takes t1: eight requests sent with it all get a
    // 401 and want a new token.
    let (server, issued, served) = token_world(0);
    let pool = Pool::builder()
        .workers(8)
        .bearer_from(source(&issued))
        .build()
        .unwrap();
    let url = server.url("/x");
    let all: Vec<_> = (0..8).map(|_| pool.get(&url).json::<Value>()).collect();
    let results = bounded(LIMIT, move || reqpool::wait_all(all));
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // t1 once, t2 once: one refresh for all eight.
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    assert!(served.load(Ordering::SeqCst) <= 16);
}

#[test]
fn a_panicking_hook_or_source_fails_its_request_and_the_next_one_is_fine() {
    let (server, seen) = recording(|_, _| Reply::json(200, json!({})));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let pool = Pool::builder()
        .workers(1)
        .bearer_from(move |_| {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("the token cache is corrupt");
            }
            Ok("t".to_string())
        })
        .before_attempt(|a| {
            if a.url().contains("boom") {
                panic!("the signer failed");
            }
            Ok(())
        })
        .build()
        .unwrap();
    for (path, want) in [("/x", "token cache"), ("/boom", "signer failed")] {
        let r = pool.get(&server.url(path)).send();
        let err = bounded(LIMIT, move || r.wait()).unwrap_err();
        assert!(err.is_panic() && err.to_string().contains(want), "{err}");
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
    // The worker and the token source live on.
    let r = pool.get(&server.url("/x")).send();
    assert_eq!(bounded(LIMIT, move || r.wait()).unwrap().status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn a_requests_own_bearer_auth_wins_and_a_source_error_fails_it() {
    let (server, seen) = recording(|_, _| Reply::json(200, json!({})));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let pool = Pool::builder()
        .bearer_from(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Err(Error::other("the token endpoint is down"))
        })
        .build()
        .unwrap();
    let r = pool.get(&server.url("/x")).bearer_auth("mine").send();
    bounded(LIMIT, move || r.wait()).unwrap();
    let auth = seen.lock().unwrap()[0]
        .headers
        .get("authorization")
        .cloned();
    assert_eq!(auth.as_deref(), Some("Bearer mine"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let r = pool.get(&server.url("/x")).send();
    let err = bounded(LIMIT, move || r.wait()).unwrap_err();
    assert!(err.to_string().contains("token endpoint is down"), "{err}");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "nothing sent without a token"
    );
}

#[test]
fn a_token_source_that_hangs_for_one_host_delays_no_other() {
    // One server, two host names: the source hangs for 127.0.0.1 (until
    // the test ends, at most LIMIT) and answers at once for localhost.
    let (server, seen) = recording(|_, _| Reply::json(200, json!({})));
    let (release, gate) = crossbeam_channel::bounded::<()>(0);
    let asked_a = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&asked_a);
    let pool = Pool::builder()
        .workers(2)
        .bearer_from(move |host| {
            if host == "127.0.0.1" {
                a.fetch_add(1, Ordering::SeqCst);
                let _ = gate.recv_timeout(LIMIT);
                return Ok("t-A".to_string());
            }
            Ok("t-B".to_string())
        })
        .build()
        .unwrap();
    let url_a = server.url("/a");
    let url_b = url_a.replace("127.0.0.1", "localhost").replace("/a", "/b");
    let limit = Duration::from_millis(400);
    // Three times as many requests to A as there are workers.
    let t0 = std::time::Instant::now();
    let to_a: Vec<_> = (0..6)
        .map(|_| pool.get(&url_a).timeout(limit).send())
        .collect();
    // B's request is not held up by A's: its workers are free.
    let b = pool.get(&url_b).send();
    let b_wait = bounded(Duration::from_secs(5), move || {
        let t = std::time::Instant::now();
        b.wait().map(|_| t.elapsed())
    })
    .unwrap();
    // A's requests fail with a timeout of their own limit (all at once:
    // they waited off the workers), naming their URL; A's source was asked
    // once.
    let results = bounded(LIMIT, move || reqpool::wait_all(to_a));
    let a_wait = t0.elapsed();
    for r in &results {
        let e = r.as_ref().unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        assert!(e.to_string().contains("/a"), "{e}");
    }
    assert_eq!(asked_a.load(Ordering::SeqCst), 1);
    eprintln!(
        "host B waited {b_wait:?}; six requests to A with a 400 ms limit ended after {a_wait:?}"
    );
    assert!(b_wait < Duration::from_secs(1), "B waited {b_wait:?}");
    assert!(a_wait < limit * 3, "A's requests ended after {a_wait:?}");
    let sent: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(sent, ["/b"], "nothing went to A without a token");
    // Once the source answers, A's token is kept and used.
    drop(release);
    let r = pool.get(&url_a).send();
    assert_eq!(bounded(LIMIT, move || r.wait()).unwrap().status(), 200);
    let auth = seen
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .headers
        .get("authorization")
        .cloned();
    assert_eq!(auth.as_deref(), Some("Bearer t-A"));
    assert_eq!(asked_a.load(Ordering::SeqCst), 1);
}

#[test]
fn a_token_that_is_not_a_header_value_fails_its_request_and_is_not_kept() {
    for bad in ["t0ken\n", "t0ken\r\nX-Evil: 1", "t\u{f6}k\u{e9}n"] {
        let (server, seen) = recording(|_, _| Reply::json(200, json!({})));
        let asked = Arc::new(AtomicUsize::new(0));
        let a = Arc::clone(&asked);
        let pool = Pool::builder()
            .workers(1)
            .bearer_from(move |_| {
                Ok(match a.fetch_add(1, Ordering::SeqCst) {
                    0 => bad.to_string(),
                    _ => "good".to_string(),
                })
            })
            .build()
            .unwrap();
        let r = pool.get(&server.url("/x")).send();
        let e = bounded(LIMIT, move || r.wait()).unwrap_err();
        assert!(
            matches!(e, Error::InvalidRequest { .. }) && !e.maybe_sent(),
            "{bad:?}: {e:?}"
        );
        assert!(seen.lock().unwrap().is_empty(), "{bad:?}: nothing sent");
        // The next request asks again, and goes with the new token.
        let r = pool.get(&server.url("/x")).send();
        assert_eq!(bounded(LIMIT, move || r.wait()).unwrap().status(), 200);
        assert_eq!(asked.load(Ordering::SeqCst), 2, "{bad:?}");
        let auth = seen.lock().unwrap()[0]
            .headers
            .get("authorization")
            .cloned();
        assert_eq!(auth.as_deref(), Some("Bearer good"));
    }
}

#[test]
fn a_hooks_authorization_header_is_a_secret_by_its_name() {
    const AUTH: &str = "Bearer auth-SECRET-1";
    let (server, _) =
        recording(|req, _| Reply::json(400, json!({"got": req.headers.get("authorization")})));
    let pool = Pool::builder()
        .before_attempt(|a| {
            a.header("Authorization", AUTH)
                .header("Cookie", "sid=cookie-SECRET-2");
            Ok(())
        })
        .build()
        .unwrap();
    let r = pool.get(&server.url("/x")).send();
    let err = bounded(LIMIT, move || r.wait()).unwrap_err();
    assert_eq!(err.status(), Some(400));
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
