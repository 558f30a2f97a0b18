//! The README's guarantees, tried with ordinary code: nested helpers in a
//! one-worker pool, nothing lost at exit however the pool is held, no
//! secret in any output, eager `wait_all`, continuations with their own
//! budget.

mod common;

use common::{LIMIT, Reply, Server, bounded};
use reqpool::{Completions, Error, Pool};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::LazyLock;
use std::time::Duration;

const CHILD_URL: &str = "REQPOOL_PROMISE_URL";
const CHILD_MODE: &str = "REQPOOL_PROMISE_MODE";

static GLOBAL: LazyLock<Pool> = LazyLock::new(|| Pool::new(4));

/// The child's side, for each way of holding a pool. Does nothing unless
/// the parent test started this binary with `CHILD_URL`.
#[test]
fn child_leaves_work_behind_and_returns() {
    let (Ok(url), Ok(mode)) = (std::env::var(CHILD_URL), std::env::var(CHILD_MODE)) else {
        return;
    };
    match mode.as_str() {
        // A pool in a static is never dropped.
        "static" => {
            for i in 0..500 {
                GLOBAL
                    .post(&url)
                    .json_body(&json!({ "i": i }))
                    .fire()
                    .unwrap();
            }
        }
        // Every queued job holds a clone of the pool: dropping main's
        // handle is not the last drop.
        "held" => {
            let pool = Pool::new(1);
            for i in 0..6 {
                let p = pool.clone();
                let url = url.clone();
                pool.fire(move |_| {
                    p.post(&url)
                        .json_body(&json!({ "i": i }))
                        .send()
                        .wait()
                        .map(drop)
                })
                .unwrap();
            }
        }
        _ => panic!("unknown mode {mode}"),
    }
}

fn run_child(url: &str, mode: &str) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let (url, mode) = (url.to_string(), mode.to_string());
    bounded(LIMIT, move || {
        Command::new(exe)
            .args([
                "--exact",
                "child_leaves_work_behind_and_returns",
                "--test-threads=1",
            ])
            .env(CHILD_URL, url)
            .env(CHILD_MODE, mode)
            .output()
            .unwrap()
    })
}

#[test]
fn a_pool_in_a_static_loses_nothing_at_exit() {
    let server = Server::start();
    let out = run_child(&server.url("/echo"), "static");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(server.shared.hits("/echo"), 500);
}

#[test]
fn a_pool_held_by_its_own_jobs_loses_nothing_at_exit() {
    let server = Server::start();
    let out = run_child(&server.url("/echo"), "held");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(server.shared.hits("/echo"), 6);
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
fn no_secret_in_any_output_even_when_the_server_echoes_it() {
    // The server puts everything it got into its error body.
    let server = Server::with_handler(|req, _| {
        let all = format!("{req:?}");
        let code = if req.path == "/ok" { 200 } else { 401 };
        Reply::text(code, "text/plain", &format!("invalid api_key: {all}"))
    });
    let secrets = [
        "sk-QUERY-123",
        "hdr-SECRET-456",
        "tok-BEARER-789",
        "pw-USER-000",
    ];
    let pool = Pool::builder()
        .retry(
            reqpool::Retry::standard()
                .statuses(&[401])
                .backoff(Duration::from_millis(1), Duration::from_millis(2)),
        )
        .build()
        .unwrap();
    let base = server.url("/");
    let with_user = base.replace("http://", "http://alice:pw-USER-000@");
    for path in ["fail", "ok"] {
        let req = pool
            .get(&format!("{with_user}{path}"))
            .query("api_key", "sk-QUERY-123")
            .secret_header("X-Api-Key", "hdr-SECRET-456")
            .bearer_auth("tok-BEARER-789");
        let err = bounded(LIMIT, move || req.json::<Value>().wait()).unwrap_err();
        let shown = format!("{err} {err:?} {err:#?}");
        for s in secrets {
            assert!(!shown.contains(s), "{path}: {s} in {shown}");
        }
        // The server's own words are its own: kept as it sent them.
        if let Some(body) = err.body_text() {
            assert!(body.contains("invalid api_key: Req"), "{body}");
            assert!(body.contains("sk-QUERY-123"), "{body}");
        }
    }
    // A URL that does not parse.
    let err = pool
        .get("alice:pw-USER-000@127.0.0.1/x")
        .send()
        .wait()
        .unwrap_err();
    let shown = format!("{err} {err:?} {err:#?}");
    assert!(!shown.contains("pw-USER-000"), "{shown}");
}

#[test]
fn wait_all_submits_a_lazy_iterator_before_it_waits() {
    // The server answers only when all 6 requests are in: submitted one by
    // one as the previous finished, they would never all be.
    let server = Server::start();
    let pool = Pool::new(6);
    let url = server.url("/barrier?n=6");
    let results = bounded(LIMIT, move || {
        reqpool::wait_all((0..6).map(|_| pool.get_json::<Value>(&url)))
    });
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
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
