//! The rules that hold on every way in, table-driven over `PATHS`: no
//! path outlives its limit however the server stalls, a request is never
//! sent twice unless provably unsent, cancel stops it in flight, a
//! deadline holds under every helper that waits, and any duration is
//! legal.

mod common;

use common::*;
use crossbeam_channel::bounded as channel;
use reqpool::{Breaker, Completions, Error, Hedge, Phase, Pool, Retry};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[test]
fn a_silent_server_cannot_hold_any_path_past_its_limit() {
    let fault = FaultServer::start(Fault::Silent);
    let timeout = Duration::from_millis(400);
    for path in PATHS {
        let (pool, errors) = pool_with(Pool::builder().workers(2).timeout(timeout));
        let wait = through(
            &pool,
            &errors,
            path,
            &Call::get(&fault.url("/silent")).timeout(timeout),
        );
        let t0 = Instant::now();
        let r = bounded(LIMIT, wait);
        let took = t0.elapsed();
        // A detached fire is done once written: it never waits for a reply.
        assert_eq!(
            r.is_ok(),
            path == Path::FireDetached,
            "{path:?} against a silent server: {r:?}"
        );
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

/// A limit that runs out before any byte of a request was written says
/// where it was spent and that the request was not sent, on every way in
/// that goes through the pool's request path: while the host's rate made
/// it wait (`Throttled`), and while its connection was being opened
/// (`Connect`, against a listener whose accept queue is full, so that a
/// new connection is never accepted).
#[test]
fn a_limit_spent_before_anything_was_written_says_where_and_unsent_on_every_path() {
    let ways = [Path::Json, Path::Send, Path::Fire, Path::Poll];
    let server = Server::start();
    let timeout = Duration::from_millis(300);
    for path in ways {
        // One request a minute: the first takes the token, the second's
        // would come after its limit.
        let (pool, errors) = pool_with(
            Pool::builder()
                .workers(2)
                .timeout(timeout)
                .max_rate_per_host(1, Duration::from_secs(60)),
        );
        let first = send_through(
            &pool,
            &errors,
            Path::Send,
            "GET",
            &server.url("/json"),
            false,
        );
        assert!(first.is_ok(), "{path:?}: {first:?}");
        let call = Call::new("POST", &server.url("/json"), true).timeout(timeout);
        let e = bounded(LIMIT, through(&pool, &errors, path, &call))
            .expect_err("the second waits past its limit");
        assert!(
            matches!(
                e.last_attempt(),
                Error::Timeout {
                    phase: Phase::Throttled,
                    ..
                }
            ),
            "{path:?}: {e:?}"
        );
        assert!(!e.maybe_sent(), "{path:?}: {e:?}");
    }
    assert_eq!(
        server.shared.hits("/json"),
        ways.len(),
        "only the first of each was sent"
    );

    // A listener that never accepts, its queue filled: a connect hangs.
    let full = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = full.local_addr().unwrap();
    let mut held = Vec::new();
    while held.len() < 4096 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => held.push(s),
            Err(_) => break, // the queue is full
        }
    }
    let url = format!("http://{addr}/x");
    for path in ways {
        let (pool, errors) = pool_with(Pool::builder().workers(1).timeout(timeout));
        let call = Call::new("POST", &url, true).timeout(timeout);
        let t0 = Instant::now();
        let e = bounded(LIMIT, through(&pool, &errors, path, &call)).expect_err("never connected");
        assert!(
            matches!(
                e.last_attempt(),
                Error::Timeout {
                    phase: Phase::Connect,
                    ..
                }
            ),
            "{path:?}: {e:?}"
        );
        assert!(!e.maybe_sent(), "{path:?}: {e:?}");
        assert!(t0.elapsed() < timeout + Duration::from_secs(2), "{path:?}");
    }
    drop(full);
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
        let wait = through(
            &pool,
            &errors,
            path,
            &Call::get(&fault.url("/trickle")).timeout(timeout),
        );
        let t0 = Instant::now();
        let r = bounded(LIMIT, wait);
        assert_eq!(r.is_ok(), path == Path::FireDetached, "{path:?}: {r:?}");
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

fn assert_queue_timeout(e: &Error, what: &str) {
    assert_eq!(e.timeout_phase(), Some(Phase::Queued), "{what}: {e:?}");
    assert!(e.to_string().contains("/json"), "{what}: {e}");
}

#[test]
fn a_queued_request_resolves_at_its_deadline_under_every_helper() {
    let server = Server::start();
    let url = server.url("/json");
    let pool = Pool::new(1);
    let hold = hold_workers(&pool, 1);
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
    drop(hold);
}

#[test]
fn cancel_stops_a_request_in_flight_on_every_path_and_frees_the_worker() {
    let (server, arrived) = hanging_server();
    let url = server.url("/hang");
    let pool = Pool::builder().workers(1).build().unwrap();
    type Start = Box<dyn Fn() -> reqpool::Pending<()>>;
    let paths: Vec<(&str, Start)> = vec![
        (
            "json",
            Box::new({
                let (p, u) = (pool.clone(), url.clone());
                move || p.get_json::<Value>(&u).map(drop)
            }),
        ),
        (
            "send",
            Box::new({
                let (p, u) = (pool.clone(), url.clone());
                move || p.get(&u).send().map(drop)
            }),
        ),
        (
            "poll",
            Box::new({
                let (p, u) = (pool.clone(), url.clone());
                move || p.get(&u).poll().until(|_| true).map(drop)
            }),
        ),
        (
            "submit",
            Box::new({
                let (p, u) = (pool.clone(), url.clone());
                move || {
                    let u = u.clone();
                    p.submit(move |agent| agent.get(&u).call().map(drop).map_err(Error::other))
                }
            }),
        ),
    ];
    for (name, start) in paths {
        let job = start();
        arrived
            .recv_timeout(LIMIT)
            .expect("the request reached the server");
        assert!(job.cancel(), "{name}: not cancelled");
        let err = bounded(LIMIT, move || job.wait()).unwrap_err();
        assert!(err.is_cancelled(), "{name}: {err:?}");
        // The one worker is free again long before the server answers.
        let quick = pool.get_json::<Value>(&server.url("/json"));
        assert!(
            bounded(Duration::from_secs(10), move || quick.wait()).is_ok(),
            "{name}"
        );
    }
    let s = pool.stats();
    assert_eq!((s.cancelled, s.running), (4, 0), "{s:?}");
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
                b = b.retry(fast_retry().max_attempts(4));
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
