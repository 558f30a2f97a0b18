//! Many handles at once: all, any, first success, fallback, completion
//! order, ordered map, bursts and polling jobs, and the losers they
//! cancel.

mod common;

use common::*;
use crossbeam_channel::bounded as channel;
use reqpool::{Completions, Error, Pending, Pool};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[test]
fn wait_all_keeps_order_and_every_error() {
    let pool = Pool::new(4);
    let jobs: Vec<Pending<u32>> = (0..10)
        .map(|i| {
            pool.submit(move |_| {
                if i % 3 == 0 {
                    Err(Error::other(format!("bad {i}")))
                } else {
                    Ok(i)
                }
            })
        })
        .collect();
    let results = bounded(LIMIT, move || reqpool::wait_all(jobs));
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v as usize, i),
            Err(e) => assert_eq!(e.to_string(), format!("bad {i}")),
        }
    }
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 4);
}

#[test]
fn wait_any_delivers_each_of_50_exactly_once() {
    let pool = Pool::new(8);
    let jobs: Vec<Pending<usize>> = (0..50)
        .map(|i| {
            pool.submit(move |_| {
                // Finish in a scrambled order; every seventh job panics.
                std::thread::sleep(Duration::from_micros(((i * 7919) % 13) as u64 * 300));
                if i % 7 == 0 {
                    panic!("job {i} panicked");
                }
                Ok(i)
            })
        })
        .collect();
    let seen = bounded(LIMIT, move || {
        let mut ids: Vec<usize> = (0..50).collect();
        let mut rest = jobs;
        let mut seen = vec![0usize; 50];
        while !rest.is_empty() {
            let any = reqpool::wait_any(rest).unwrap();
            let id = ids.remove(any.index);
            match any.result {
                Ok(v) => assert_eq!(v, id),
                Err(e) => assert_eq!(e.to_string(), format!("job panicked: job {id} panicked")),
            }
            seen[id] += 1;
            rest = any.rest;
            assert_eq!(rest.len(), ids.len());
        }
        seen
    });
    assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
    assert_eq!(pool.stats().panicked, 8);
}

#[test]
fn wait_any_of_nothing_is_an_error() {
    let err = reqpool::wait_any(Vec::<Pending<u8>>::new()).unwrap_err();
    assert!(matches!(err, Error::Usage { .. }));
}

#[test]
fn first_success_returns_every_error_when_all_fail() {
    let server = Server::start();
    let pool = Pool::new(3);
    let tiers = vec![
        pool.get_json::<serde_json::Value>(&server.url("/status?code=404")),
        pool.get_json::<serde_json::Value>(&server.url("/status?code=503")),
        pool.get_json::<serde_json::Value>(&server.url("/text")),
    ];
    let all = bounded(LIMIT, move || reqpool::first_success(tiers)).unwrap_err();
    let mut by_index: Vec<_> = all.errors.iter().map(|(i, e)| (*i, e.status())).collect();
    by_index.sort();
    assert_eq!(by_index, [(0, Some(404)), (1, Some(503)), (2, None)]);
    assert!(all.errors.iter().any(|(i, e)| *i == 2 && e.is_decode()));
    assert!(all.to_string().starts_with("all 3 handles failed"), "{all}");
}

#[test]
fn first_success_cancels_the_queued_rest() {
    let server = Server::start();
    // Pool one has one worker, held by a blocker; five requests queue behind
    // it. The winner runs on pool two.
    let one = Pool::new(1);
    let two = Pool::new(1);
    let (release, gate) = channel::<()>(0);
    let (started_tx, started_rx) = channel::<()>(1);
    let mut handles = vec![one.submit(move |_| {
        started_tx.send(()).unwrap();
        gate.recv().map_err(Error::other)?;
        Err::<serde_json::Value, _>(Error::other("blocker"))
    })];
    // The blocker holds the worker before the rest is queued.
    started_rx.recv_timeout(LIMIT).unwrap();
    for _ in 0..5 {
        handles.push(one.get_json(&server.url("/never")));
    }
    handles.push(two.get_json(&server.url("/json")));
    let (index, value) = bounded(LIMIT, move || reqpool::first_success(handles)).unwrap();
    assert_eq!((index, &value["count"]), (6, &serde_json::json!(1)));
    release.send(()).unwrap();
    let report = bounded(LIMIT, move || one.shutdown());
    assert_eq!(report.abandoned, 0);
    assert_eq!(
        server.shared.hits("/never"),
        0,
        "a cancelled request reached the server"
    );
}

#[test]
fn fallback_runs_tiers_one_after_another() {
    let server = Server::start();
    let pool = Pool::new(2);
    let urls = ["/status?code=404", "/status?code=503", "/json", "/never"].map(|p| server.url(p));
    let tiers = urls.iter().map(|u| {
        let pool = pool.clone();
        move || pool.get_json::<serde_json::Value>(u)
    });
    let (tier, _) = reqpool::fallback(tiers).unwrap();
    assert_eq!(tier, 2);
    assert_eq!(server.shared.hits("/never"), 0);
}

#[test]
fn completions_yield_in_finish_order_and_can_grow() {
    let pool = Pool::new(2);
    let (release, gate) = channel::<()>(0);
    let mut set = Completions::new();
    set.push(
        "slow",
        pool.submit(move |_| gate.recv().map(|_| 1).map_err(Error::other)),
    );
    set.push("fast", pool.submit(|_| Ok(2)));
    let (first, r) = set.next().unwrap();
    assert_eq!((first, r.unwrap()), ("fast", 2));
    set.push("added", pool.submit(|_| Ok(3)));
    let (second, _) = set.next().unwrap();
    assert_eq!(second, "added");
    release.send(()).unwrap();
    let (third, _) = set.next().unwrap();
    assert_eq!(third, "slow");
    assert!(set.next().is_none());
    let p = set.progress();
    assert_eq!((p.total, p.done, p.failed, p.in_flight), (3, 3, 0, 0));
}

#[test]
fn completions_stop_at_their_deadline() {
    let pool = Pool::new(1);
    let (release, gate) = channel::<()>(0);
    let (started_tx, started_rx) = channel::<()>(1);
    let blocker = pool.submit(move |_| {
        started_tx.send(()).unwrap();
        gate.recv().map_err(Error::other)
    });
    started_rx.recv_timeout(LIMIT).unwrap();
    let mut set = Completions::new().timeout(Duration::from_millis(100));
    set.push(0, blocker);
    set.push(1, pool.submit(|_| Ok(())));
    assert!(bounded(LIMIT, move || {
        let r = set.next().is_none();
        assert_eq!(set.progress().in_flight, 2);
        // The queued job, and the blocker in flight.
        assert_eq!(set.cancel_rest(), 2);
        r
    }));
    drop(release);
    let report = bounded(LIMIT, move || pool.shutdown_now());
    assert_eq!(report.abandoned, 0);
}

#[test]
fn map_ordered_reads_the_input_lazily() {
    let pool = Pool::new(4);
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let items = (0..1_000_000u64).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let window = 8;
    let mut results = pool.map_ordered(items, window, |pool, n| pool.submit(move |_| Ok(n * 2)));
    for expected in 0..100u64 {
        assert_eq!(results.next().unwrap().unwrap(), expected * 2);
        let ahead = pulled.load(Ordering::SeqCst) as u64 - (expected + 1);
        assert!(ahead <= window as u64, "pulled {ahead} items ahead");
    }
}

#[test]
fn map_ordered_over_requests_keeps_input_order() {
    let server = Server::start();
    let pool = Pool::new(4);
    let url = server.url("/echo");
    let out: Vec<serde_json::Value> = pool
        .map_ordered(0..20, 6, |pool, i| {
            pool.post_json(&url, &serde_json::json!({ "i": i }))
        })
        .collect::<Result<_, _>>()
        .unwrap();
    let order: Vec<i64> = out.iter().map(|v| v["i"].as_i64().unwrap()).collect();
    assert_eq!(order, (0..20).collect::<Vec<_>>());
}

#[test]
fn burst_larger_than_the_pool_fails_at_once() {
    let pool = Pool::new(4);
    let err = pool
        .burst(5, LIMIT, |_| Ok(()), |_, ()| Ok(()))
        .map(|_: Vec<Pending<()>>| ())
        .unwrap_err();
    assert!(matches!(err, Error::Usage { .. }));
    assert!(
        err.to_string().contains("a burst of 5 needs 5 workers"),
        "{err}"
    );
}

#[test]
fn burst_fires_every_party_after_all_prepared() {
    let server = Server::start();
    let pool = Pool::new(8);
    let url = server.url("/json");
    let prepared = Arc::new(AtomicUsize::new(0));
    let p2 = prepared.clone();
    let fired = pool
        .burst(
            8,
            LIMIT,
            move |party| {
                std::thread::sleep(Duration::from_millis(party as u64 * 5));
                p2.fetch_add(1, Ordering::SeqCst);
                Ok(party)
            },
            move |agent, party| {
                // Every preparation finished before any request goes out.
                let ready = prepared.load(Ordering::SeqCst);
                let v: serde_json::Value = agent
                    .get(&url)
                    .call()
                    .map_err(Error::other)?
                    .body_mut()
                    .read_json()
                    .map_err(Error::other)?;
                Ok((party, ready, v["count"].as_u64()))
            },
        )
        .unwrap();
    let results = bounded(LIMIT, move || reqpool::wait_all(fired));
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), (i, 8, Some(1)));
    }
    assert_eq!(server.shared.hits("/json"), 8);
}

#[test]
fn a_failing_preparation_releases_the_others_with_an_error() {
    let pool = Pool::new(4);
    let fired = pool
        .burst(
            4,
            LIMIT,
            |party| {
                if party == 2 {
                    panic!("no token for party 2");
                }
                Ok(party)
            },
            |_, party| Ok(party),
        )
        .unwrap();
    let results = bounded(LIMIT, move || reqpool::wait_all(fired));
    for (i, r) in results.into_iter().enumerate() {
        let e = r.unwrap_err();
        if i == 2 {
            assert!(e.is_panic(), "{e}");
        } else {
            assert!(
                e.to_string().contains("party 2 panicked while preparing"),
                "{e}"
            );
        }
    }
}

#[test]
fn a_burst_that_cannot_gather_gives_up_in_time() {
    // One worker is busy, so only 3 of 4 parties can ever be running.
    let pool = Pool::new(4);
    let (release, gate) = channel::<()>(0);
    let busy = pool.submit(move |_| gate.recv().map_err(Error::other));
    let fired = pool
        .burst(4, Duration::from_millis(200), Ok, |_, p| Ok(p))
        .unwrap();
    let results = bounded(LIMIT, move || {
        let mut set = Completions::new();
        for (i, p) in fired.into_iter().enumerate() {
            set.push(i, p);
        }
        // The three running parties fail at the release timeout.
        let first_three: Vec<_> = (0..3).map(|_| set.next().unwrap().1).collect();
        (first_three, set)
    });
    assert!(results.0.iter().all(Result::is_err));
    release.send(()).unwrap();
    busy.wait().unwrap();
    let mut set = results.1;
    assert!(set.next().unwrap().1.is_err(), "the late party fails too");
}

fn task_server(polls_until_done: usize) -> Server {
    let polls = AtomicUsize::new(0);
    Server::with_handler(
        move |req, _| match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/tasks") => Reply::json(
                202,
                serde_json::json!({"id": "t1", "status_url": "/tasks/t1"}),
            ),
            ("GET", "/tasks/t1") => {
                let n = polls.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= polls_until_done {
                    Reply::json(
                        200,
                        serde_json::json!({"state": "done", "result": 42, "polls": n}),
                    )
                } else {
                    Reply::json(200, serde_json::json!({"state": "running", "polls": n}))
                }
            }
            _ => Reply::json(404, serde_json::json!({"detail": "Not Found"})),
        },
    )
}

#[test]
fn polling_job_ends_when_the_task_is_done() {
    let server = task_server(3);
    let pool = Pool::new(2);
    let done = pool
        .post(&server.url("/tasks"))
        .json_body(&serde_json::json!({"n": 1}))
        .poll()
        .every(Duration::from_millis(10))
        .timeout(LIMIT)
        .until(|s| s["state"] == "done");
    let status = bounded(LIMIT, move || done.wait()).unwrap();
    assert_eq!(status["result"], 42);
    assert_eq!(status["polls"], 3);
    assert_eq!(server.shared.hits("/tasks/t1"), 3);
}

#[test]
fn polling_job_times_out() {
    let server = task_server(usize::MAX);
    let pool = Pool::new(1);
    let done = pool
        .post(&server.url("/tasks"))
        .json_body(&serde_json::json!({}))
        .poll()
        .every(Duration::from_millis(20))
        .timeout(Duration::from_millis(200))
        .until(|s| s["state"] == "done");
    let err = bounded(LIMIT, move || done.wait()).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(server.shared.hits("/tasks/t1") >= 2);
}

#[test]
fn polling_job_without_a_status_url_is_a_decode_error() {
    let server = Server::start();
    let pool = Pool::new(1);
    let err = pool
        .get(&server.url("/json"))
        .poll()
        .until(|_| true)
        .wait()
        .unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    assert!(err.to_string().contains("no status url"), "{err}");
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
fn first_success_and_hedging_cancel_their_losers_in_flight() {
    let (server, arrived) = hanging_server();
    let pool = Pool::new(2);
    let slow = pool.get_json::<Value>(&server.url("/hang"));
    arrived.recv_timeout(LIMIT).unwrap();
    let fast = pool.get_json::<Value>(&server.url("/json"));
    let (i, _) = bounded(LIMIT, move || reqpool::first_success(vec![slow, fast])).unwrap();
    assert_eq!(i, 1);
    // Both workers are free: two more requests run at once.
    let url = server.url("/barrier?n=2");
    let both = bounded(Duration::from_secs(15), {
        let pool = pool.clone();
        move || reqpool::wait_all((0..2).map(|_| pool.get_json::<Value>(&url)))
    });
    assert!(both.iter().all(Result::is_ok), "{both:?}");
}

#[test]
fn a_poll_job_waits_between_polls_off_the_workers() {
    // 8 poll jobs, each done on its 3rd poll, 50 ms apart, through one
    // worker: while one waits, the others poll.
    let polls = Arc::new(AtomicUsize::new(0));
    let p2 = polls.clone();
    let server = Server::with_handler(move |req, _| {
        if req.method == "POST" {
            return Reply::json(
                202,
                json!({"status_url": format!("/s/{}", req.q("id").unwrap_or("0"))}),
            );
        }
        let n = p2.fetch_add(1, Ordering::SeqCst);
        Reply::json(200, json!({"n": n}))
    });
    let pool = Pool::new(1);
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        u32,
    >::new()));
    let jobs: Vec<_> = (0..8)
        .map(|i| {
            let seen = seen.clone();
            pool.post(&server.url("/start"))
                .query("id", i)
                .poll()
                .every(Duration::from_millis(50))
                .until(move |_| {
                    let mut s = seen.lock().unwrap();
                    let c = s.entry(i.to_string()).or_default();
                    *c += 1;
                    *c >= 3
                })
        })
        .collect();
    let results = bounded(LIMIT, move || reqpool::wait_all(jobs));
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The polls of different jobs interleave: the first job's third poll
    // came after other jobs had polled.
    let firsts: Vec<u64> = results
        .iter()
        .map(|r| r.as_ref().unwrap()["n"].as_u64().unwrap())
        .collect();
    assert!(
        firsts.iter().max().unwrap() - firsts.iter().min().unwrap() < 8,
        "{firsts:?}"
    );
    assert_eq!(pool.stats().scheduled, 0);
}
