//! The outbox on Redis Streams (feature `redis`) against a real
//! `redis-server` started on a free port in a temporary folder, with
//! in-process HTTP servers, several consumers, and a child process killed
//! with SIGKILL. `cargo test --features redis --test redis` (needs
//! Debian's `redis-server`; without it each test says so and passes).
#![cfg(feature = "redis")]

mod common;

use common::*;
use reqpool::{Error, Outbox, Pool, StorageKind};
use serde_json::json;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

/// A raw connection to the test's Redis, to look behind the outbox.
fn raw(r: &RedisServer) -> redis::Connection {
    redis::Client::open(r.url())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap()
}

#[test]
fn a_job_is_delivered_once_with_its_key_and_its_reply_is_kept() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(4);
    let outbox = Outbox::redis(&r.url(), "calls", &pool).unwrap();
    let url = server.url("/orders");
    let id = outbox.enqueue(order(&pool, &url, 17)).unwrap();
    assert_eq!(outbox.enqueue(order(&pool, &url, 17)).unwrap(), id);
    let unkeyed = outbox
        .enqueue(pool.post(&url).json_body(&json!({"order": 18})))
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let reply = outbox.reply(id).unwrap().expect("delivered");
    assert_eq!(reply.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        (v["key"].as_str(), v["body"]["order"].as_i64()),
        (Some("order-17"), Some(17))
    );
    assert!(outbox.reply(unkeyed).unwrap().is_some());
    {
        let keys = keys.lock().unwrap();
        assert_eq!(keys.get("order-17"), Some(&1));
        assert_eq!(keys.len(), 2, "{keys:?}");
    }
    let s = outbox.stats().unwrap();
    assert_eq!((s.pending, s.in_flight, s.delivered, s.dead), (0, 0, 2, 0));
    // Another process (here: another outbox) with the same key sends
    // nothing again.
    drop(outbox);
    let outbox = Outbox::options()
        .consumer("second")
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    assert_eq!(outbox.enqueue(order(&pool, &url, 17)).unwrap(), id);
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(keys.lock().unwrap().get("order-17"), Some(&1));
    // Forgotten: its reply and key are gone; the key is new again.
    assert!(outbox.forget(id).unwrap());
    assert!(!outbox.forget(id).unwrap());
    assert_eq!(outbox.reply(id).unwrap(), None);
    assert_ne!(outbox.enqueue(order(&pool, &url, 17)).unwrap(), id);
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(keys.lock().unwrap().get("order-17"), Some(&2));
}

#[test]
fn a_final_status_is_a_dead_letter_that_can_be_requeued() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    common::a_final_status_is_a_dead_letter_that_can_be_requeued(&|options, pool| {
        options.redis(&r.url(), "calls", pool).unwrap()
    });
}

#[test]
fn a_410_pauses_its_endpoint_until_resumed() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    common::a_410_pauses_its_endpoint_until_resumed(&|options, pool| {
        options.redis(&r.url(), "calls", pool).unwrap()
    });
}

#[test]
fn a_host_that_keeps_failing_is_retried_across_deliveries_then_dead() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    common::a_host_that_keeps_failing_is_retried_across_deliveries_then_dead(&|options, pool| {
        options.redis(&r.url(), "calls", pool).unwrap()
    });
}

#[test]
fn the_pools_own_verdicts_never_kill_a_job() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let n = AtomicUsize::new(0);
    common::the_pools_own_verdicts_never_kill_a_job(&|options, pool| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        options.redis(&r.url(), &format!("calls{i}"), pool).unwrap()
    });
}

#[test]
fn secrets_never_reach_redis_and_credentials_are_added_at_delivery() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::builder()
        .bearer_from(|_| Ok("tok-SECRET-2".to_string()))
        .before_attempt(|a| {
            a.secret_header("X-Signature", "sig-SECRET-3");
            Ok(())
        })
        .build()
        .unwrap();
    let outbox = Outbox::redis(&r.url(), "calls", &pool).unwrap();
    let url = server.url("/orders");
    for (what, req) in [
        ("bearer", pool.post(&url).bearer_auth("tok-SECRET-1")),
        (
            "secret header",
            pool.post(&url).secret_header("X-Key", "tok-SECRET-1"),
        ),
        (
            "url credentials",
            pool.post("http://u:tok-SECRET-1@127.0.0.1:1/orders"),
        ),
        (
            "secret query",
            pool.post(&url).query("api_key", "tok-SECRET-1"),
        ),
    ] {
        let e = outbox.enqueue(req).unwrap_err();
        assert!(matches!(e, Error::Usage { .. }), "{what}: {e}");
        assert!(!e.to_string().contains("tok-SECRET-1"), "{e}");
    }
    assert_eq!(outbox.stats().unwrap(), Default::default());
    for i in 0..5 {
        outbox.enqueue(order(&pool, &url, i)).unwrap();
    }
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(keys.lock().unwrap().len(), 5);
    let bytes = r.snapshot();
    // The snapshot holds the data (the keys of delivered jobs), not the
    // secrets.
    assert!(
        bytes.windows(7).any(|w| w == b"order-3"),
        "an empty snapshot"
    );
    for secret in [&b"tok-SECRET-1"[..], b"tok-SECRET-2", b"sig-SECRET-3"] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    }
}

#[test]
fn hook_secrets_echoed_in_a_reply_are_not_kept() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    common::hook_secrets_echoed_in_a_reply_are_not_kept(
        &|options, pool| options.redis(&r.url(), "calls", pool).unwrap(),
        &|| r.snapshot(),
    );
}

#[test]
fn a_dead_consumers_jobs_are_taken_over_after_its_lease() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(4);
    let producer = Outbox::options()
        .deliver(false)
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    let url = server.url("/orders");
    for i in 0..10 {
        producer.enqueue(order(&pool, &url, i)).unwrap();
    }
    // A consumer takes every entry and dies without answering.
    let mut c = raw(&r);
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(&[
            "GROUP", "reqpool", "ghost", "COUNT", "100", "STREAMS", "{calls}", ">",
        ])
        .query(&mut c)
        .unwrap();
    let s = producer.stats().unwrap();
    assert_eq!((s.pending, s.in_flight), (0, 10));
    let t0 = Instant::now();
    let outbox = Outbox::options()
        .lease(Duration::from_millis(500))
        .consumer("alive")
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    eprintln!("taken over and delivered in {:?}", t0.elapsed());
    let keys = keys.lock().unwrap();
    assert_eq!(keys.len(), 10);
    assert!(keys.values().all(|&n| n == 1), "{keys:?}");
    assert_eq!(outbox.stats().unwrap().delivered, 10);
}

#[test]
fn a_live_consumer_keeps_its_lease_while_a_request_runs() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    // The request takes 1.5 s, three leases of 500 ms: the other consumer
    // must not take it over and send it again.
    let url = server.url("/orders?ms=1500");
    let a_pool = Pool::new(2);
    let b_pool = Pool::new(2);
    let a = Outbox::options()
        .lease(Duration::from_millis(500))
        .consumer("a")
        .redis(&r.url(), "calls", &a_pool)
        .unwrap();
    a.enqueue(order(&a_pool, &url, 1)).unwrap();
    let t0 = Instant::now();
    while keys.lock().unwrap().is_empty() {
        assert!(t0.elapsed() < LIMIT, "never sent");
        std::thread::yield_now();
    }
    let b = Outbox::options()
        .lease(Duration::from_millis(500))
        .consumer("b")
        .redis(&r.url(), "calls", &b_pool)
        .unwrap();
    assert_eq!(b.flush_timeout(LIMIT), 0);
    assert_eq!(keys.lock().unwrap().get("order-1"), Some(&1));
    drop((a, b));
}

#[test]
fn a_record_reqpool_did_not_write_is_a_dead_letter_with_a_reason() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(2);
    let outbox = Outbox::redis(&r.url(), "calls", &pool).unwrap();
    let mut c = raw(&r);
    for fields in [
        vec![("hello", "world")],
        vec![
            ("job", "x"),
            ("key", "k"),
            ("method", "POST"),
            ("url", "u"),
            ("headers", "[]"),
            ("attempts", "0"),
            ("due", "0"),
        ],
        vec![
            ("job", "7"),
            ("key", "k"),
            ("method", "POST"),
            ("url", "u"),
            ("headers", "{"),
            ("attempts", "0"),
            ("due", "0"),
        ],
    ] {
        let _: String = redis::cmd("XADD")
            .arg("{calls}")
            .arg("*")
            .arg(&fields)
            .query(&mut c)
            .unwrap();
    }
    // And a job after them still goes out.
    outbox
        .enqueue(order(&pool, &server.url("/orders"), 1))
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(keys.lock().unwrap().len(), 1);
    let dead = outbox.dead().unwrap();
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(dead[0].last_error.contains("no `job` field"), "{dead:?}");
    assert!(
        dead[1].last_error.contains("`job` is not a number"),
        "{dead:?}"
    );
    assert!(dead[2].last_error.contains("`headers`"), "{dead:?}");
    assert!(dead[0].request.starts_with("entry "), "{dead:?}");
    // A URL that cannot be sent is a dead letter too, not a panic.
    let _: String = redis::cmd("XADD")
        .arg("{calls}")
        .arg("*")
        .arg(&[
            ("job", "8"),
            ("key", "k8"),
            ("method", "GET"),
            ("url", "not a url"),
            ("headers", "[]"),
            ("attempts", "0"),
            ("due", "0"),
        ])
        .query(&mut c)
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(outbox.dead().unwrap().len(), 4);
}

#[test]
fn bad_settings_and_an_unreachable_server_get_clear_errors() {
    let pool = Pool::new(1);
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t0 = Instant::now();
    let e = Outbox::redis(
        &format!("redis://:pw-SECRET@127.0.0.1:{port}/"),
        "calls",
        &pool,
    )
    .unwrap_err();
    assert_eq!(e.storage_kind(), Some(StorageKind::Unreachable), "{e}");
    assert!(!e.to_string().contains("pw-SECRET"), "{e}");
    assert!(!format!("{e:?}").contains("pw-SECRET"), "{e:?}");
    assert!(t0.elapsed() < LIMIT);
    let e = Outbox::redis("http://127.0.0.1/", "calls", &pool).unwrap_err();
    assert!(matches!(e, Error::Usage { .. }), "{e}");
    let Some(r) = RedisServer::start() else {
        return;
    };
    for (what, opts) in [
        ("empty name", Outbox::options()),
        (
            "rate of 0",
            Outbox::options().shared_rate_per_host(0, Duration::from_secs(1)),
        ),
        (
            "rate per 0",
            Outbox::options().shared_rate_per_host(5, Duration::ZERO),
        ),
        ("empty group", Outbox::options().group("")),
        ("no shard", Outbox::options().shards(0)),
        ("too many shards", Outbox::options().shards(1025)),
    ] {
        let name = if what == "empty name" { "" } else { "calls" };
        let e = opts.redis(&r.url(), name, &pool).unwrap_err();
        assert!(matches!(e, Error::Usage { .. }), "{what}: {e}");
    }
    // A name that would break the keys' hash tag; a cluster of no node.
    for name in ["{calls}", "ca}lls"] {
        let e = Outbox::redis(&r.url(), name, &pool).unwrap_err();
        assert!(matches!(e, Error::Usage { .. }), "{name}: {e}");
        assert!(e.to_string().contains("hash tag"), "{e}");
    }
    let e = Outbox::options()
        .redis_cluster(&[], "calls", &pool)
        .unwrap_err();
    assert!(matches!(e, Error::Usage { .. }), "{e}");
    // A key of that name that is not a stream.
    let mut c = raw(&r);
    denied_logins(&r, &pool);
    let _: () = redis::cmd("SET")
        .arg("{taken}")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let e = Outbox::redis(&r.url(), "taken", &pool).unwrap_err();
    assert_eq!(e.storage_kind(), Some(StorageKind::Io), "{e}");
    // Huge and tiny settings are taken.
    let outbox = Outbox::options()
        .lease(Duration::MAX)
        .shared_rate_per_host(u32::MAX, Duration::MAX)
        .max_queued(usize::MAX)
        .redis(&r.url(), "big", &pool)
        .unwrap();
    drop(outbox);
    let outbox = Outbox::options()
        .lease(Duration::ZERO)
        .shared_rate_per_host(1, Duration::from_nanos(1))
        .redis(&r.url(), "small", &pool)
        .unwrap();
    assert!(format!("{outbox:?}").contains("small"));
}

/// A refused login is `Denied`, whichever way it is refused, and the
/// password given is never shown; the right one connects.
fn denied_logins(r: &RedisServer, pool: &Pool) {
    let mut admin = raw(r);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("pw-RIGHT")
        .query(&mut admin)
        .unwrap();
    let port = r.port;
    for url in [
        format!("redis://:pw-WRONG@127.0.0.1:{port}/"),
        format!("redis://nobody:pw-WRONG@127.0.0.1:{port}/"),
        format!("redis://127.0.0.1:{port}/"),
    ] {
        let e = Outbox::redis(&url, "calls", pool).unwrap_err();
        assert_eq!(e.storage_kind(), Some(StorageKind::Denied), "{url}: {e}");
        assert!(!format!("{e} {e:?}").contains("pw-WRONG"), "{e:?}");
    }
    let right = format!("redis://:pw-RIGHT@127.0.0.1:{port}/");
    drop(Outbox::redis(&right, "calls", pool).unwrap());
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("")
        .query(&mut admin)
        .unwrap();
}

#[test]
fn a_full_stream_refuses_new_jobs_on_both_stores() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    #[cfg(feature = "sqlite")]
    let dir = TempDir::new("full");
    let pool = Pool::new(1);
    let url = "http://127.0.0.1:1/orders";
    #[allow(unused_mut)] // without feature `sqlite`, Redis alone
    let mut stores = vec![
        Outbox::options()
            .deliver(false)
            .max_queued(3)
            .redis(&r.url(), "calls", &pool)
            .unwrap(),
    ];
    #[cfg(feature = "sqlite")]
    stores.push(
        Outbox::options()
            .deliver(false)
            .max_queued(3)
            .open(dir.file("calls.db"), &pool)
            .unwrap(),
    );
    for outbox in &stores {
        let first = outbox.enqueue(order(&pool, url, 0)).unwrap();
        for i in 1..3 {
            outbox.enqueue(order(&pool, url, i)).unwrap();
        }
        let e = outbox.enqueue(order(&pool, url, 3)).unwrap_err();
        assert!(matches!(e, Error::QueueFull), "{outbox:?}: {e}");
        // A known key still gets its job.
        assert_eq!(outbox.enqueue(order(&pool, url, 0)).unwrap(), first);
        assert_eq!(outbox.stats().unwrap().pending, 3);
    }
}

/// Redis at `maxmemory` (`noeviction`) while 8 threads enqueue, sharing
/// commits: each enqueue is `Ok` and in the stream, or `Full` and not in
/// it. The job that crosses the limit is written; those after it in the
/// same commit are refused one by one, never with the ones before.
/// Three rounds, each a new limit, so that the crossing falls inside a
/// commit more than once.
#[test]
fn at_maxmemory_each_enqueue_is_queued_whole_or_refused_as_full() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let pool = Pool::new(1);
    let outbox = Outbox::options()
        .deliver(false)
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    let mut c = raw(&r);
    let url = "http://127.0.0.1:1/orders";
    let body = "x".repeat(16 * 1024);
    let mut ok = std::collections::HashSet::new();
    let mut refused = 0;
    for round in 0..3 {
        let info: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
        let used: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        for (k, v) in [
            ("maxmemory-policy", "noeviction".to_string()),
            ("maxmemory", (used + 1024 * 1024).to_string()),
        ] {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(k)
                .arg(v)
                .query(&mut c)
                .unwrap();
        }
        let results: Vec<Result<reqpool::JobId, Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (outbox, pool, body) = (&outbox, &pool, &body);
                    s.spawn(move || {
                        let mut out = Vec::new();
                        // Until its first refusal (bounded: 200 jobs of
                        // 16 KiB are three times the limit).
                        for i in 0..200 {
                            let req = pool
                                .post(url)
                                .json_body(&json!({"pad": body}))
                                .idempotency_key(&format!("m-{round}-{t}-{i}"));
                            let r = outbox.enqueue(req);
                            let stop = r.is_err();
                            out.push(r);
                            if stop {
                                break;
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        for r in results {
            match r {
                Ok(id) => assert!(ok.insert(id.0), "{id} given twice"),
                Err(e) => {
                    assert_eq!(e.storage_kind(), Some(StorageKind::Full), "{e}");
                    refused += 1;
                }
            }
        }
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg("0")
            .query(&mut c)
            .unwrap();
    }
    assert!(refused >= 3 && !ok.is_empty(), "{refused} refused");
    type Entry = (String, std::collections::HashMap<String, String>);
    let entries: Vec<Entry> = redis::cmd("XRANGE")
        .arg("{calls}")
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    let queued: std::collections::HashSet<i64> = entries
        .iter()
        .map(|(_, f)| f["job"].parse().unwrap())
        .collect();
    let under_err = queued.difference(&ok).count();
    assert_eq!(under_err, 0, "jobs queued by a failed enqueue");
    assert_eq!(queued, ok, "every acknowledged job is queued");
}

/// A delivered job's key and reply expire: after a day by default (their
/// time to live says so), after `retention` when it is set, leaving only
/// the stream, its id sequence and its delivered count however many jobs
/// went through.
#[test]
fn delivered_jobs_expire_after_a_day_by_default_or_after_retention() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let (server, _) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let url = server.url("/orders");
    let pool = Pool::new(4);
    let mut c = raw(&r);
    let outbox = Outbox::redis(&r.url(), "calls", &pool).unwrap();
    let id = outbox.enqueue(order(&pool, &url, 1)).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert!(outbox.reply(id).unwrap().is_some());
    let day = reqpool::OutboxOptions::REDIS_RETENTION.as_millis() as i64;
    assert_eq!(day, 24 * 3600 * 1000);
    for key in [
        "{calls}:key:order-1".to_string(),
        format!("{{calls}}:done:{}", id.0),
    ] {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut c).unwrap();
        assert!(ttl > day - 60_000 && ttl <= day, "{key}: {ttl} ms to live");
    }
    drop(outbox);
    let outbox = Outbox::options()
        .retention(Duration::from_millis(200))
        .redis(&r.url(), "short", &pool)
        .unwrap();
    let jobs = 1_000;
    for i in 0..jobs {
        outbox.enqueue(order(&pool, &url, i)).unwrap();
    }
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(outbox.stats().unwrap().delivered, jobs as u64);
    // Redis drops expired keys by itself; bounded.
    let start = Instant::now();
    let left = loop {
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("{short}*").query(&mut c).unwrap();
        keys.sort();
        if keys.len() <= 3 || start.elapsed() > LIMIT {
            break keys;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        left,
        ["{short}", "{short}:delivered", "{short}:seq"],
        "after {jobs} jobs"
    );
}

/// Redis restarted without its data: new jobs get ids past the old ones,
/// so `reply` of an old id finds nothing rather than a new job's answer.
#[test]
fn ids_are_never_given_twice_even_after_redis_lost_its_data() {
    let Some(mut r) = RedisServer::start() else {
        return;
    };
    let (server, _) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let url = server.url("/orders");
    let pool = Pool::new(2);
    let outbox = Outbox::redis(&r.url(), "calls", &pool).unwrap();
    let old: Vec<i64> = (0..3)
        .map(|i| outbox.enqueue(order(&pool, &url, i)).unwrap().0)
        .collect();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert!(outbox.reply(reqpool::JobId(old[0])).unwrap().is_some());
    r.restart();
    // The first call after the restart may find the connection broken
    // (Unreachable); the next connects again. Bounded.
    let start = Instant::now();
    let mut new = Vec::new();
    for i in 10..13 {
        let id = loop {
            match outbox.enqueue(order(&pool, &url, i)) {
                Ok(id) => break id.0,
                Err(e) => {
                    assert_eq!(e.storage_kind(), Some(StorageKind::Unreachable), "{e}");
                    assert!(start.elapsed() < LIMIT, "{e}");
                }
            }
        };
        new.push(id);
    }
    let last_old = *old.iter().max().unwrap();
    assert!(new.iter().all(|&id| id > last_old), "{old:?} then {new:?}");
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    for &id in &old {
        assert_eq!(outbox.reply(reqpool::JobId(id)).unwrap(), None, "{id}");
    }
    for (&id, i) in new.iter().zip(10..) {
        let reply = outbox.reply(reqpool::JobId(id)).unwrap().expect("kept");
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["key"], format!("order-{i}"));
    }
}

#[test]
fn a_redis_restart_loses_nothing_with_an_append_only_file() {
    let Some(mut r) = RedisServer::start_with(true) else {
        return;
    };
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(4);
    let outbox = Outbox::options()
        .lease(Duration::from_secs(1))
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    let url = server.url("/orders?ms=5");
    for i in 0..100 {
        outbox.enqueue(order(&pool, &url, i)).unwrap();
    }
    // Killed while jobs are in flight, back with its file: the consumer
    // reconnects, writes the answers it kept, and carries on.
    let t0 = Instant::now();
    while keys.lock().unwrap().len() < 20 {
        assert!(t0.elapsed() < LIMIT, "nothing delivered");
        std::thread::yield_now();
    }
    r.restart();
    let e = outbox.enqueue(order(&pool, &url, 100));
    // The first call after the cut may find the old connection broken.
    if let Err(e) = e {
        assert_eq!(e.storage_kind(), Some(StorageKind::Unreachable), "{e}");
        outbox.enqueue(order(&pool, &url, 100)).unwrap();
    }
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let keys = keys.lock().unwrap();
    assert_eq!(keys.len(), 101, "lost jobs");
    let twice = keys.values().filter(|&&n| n > 1).count();
    eprintln!("sent twice after the restart: {twice}");
    assert!(twice <= 8, "{twice}");
    let s = outbox.stats().unwrap();
    assert_eq!((s.pending, s.in_flight, s.dead), (0, 0, 0));
}

/// Redis down for longer than the dispatcher's longest backoff (2 s), and
/// briefly: while it lasts the consumer's health says so (its last error,
/// a growing time since progress); once Redis is back (with its
/// append-only file) every job is delivered, none more than twice. Before
/// the dispatcher's backoff was fixed, an outage over ~1.6 s stopped it
/// for good with a panic nobody saw.
#[test]
fn delivery_resumes_after_redis_outages_of_any_length() {
    for outage in [Duration::from_millis(500), Duration::from_secs(5)] {
        let Some(mut r) = RedisServer::start_with(true) else {
            return;
        };
        let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
        let sent = |keys: &std::sync::Mutex<std::collections::HashMap<String, usize>>| {
            keys.lock().unwrap().values().sum::<usize>()
        };
        let pool = Pool::new(4);
        let outbox = Outbox::options()
            .lease(Duration::from_secs(1))
            .redis(&r.url(), "calls", &pool)
            .unwrap();
        let url = server.url("/orders?ms=10");
        for i in 0..400 {
            outbox.enqueue(order(&pool, &url, i)).unwrap();
        }
        let t0 = Instant::now();
        while sent(&keys) < 20 {
            assert!(t0.elapsed() < LIMIT, "nothing delivered");
            std::thread::yield_now();
        }
        r.kill();
        let t0 = Instant::now();
        while outbox.health().last_error.is_none() {
            assert!(t0.elapsed() < LIMIT, "the outage is not seen");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The fault itself: Redis stays down this long.
        std::thread::sleep(outage);
        let h = outbox.health();
        assert!(h.delivering, "{h:?}");
        assert!(h.store_errors > 0, "{h:?}");
        assert!(h.since_progress.unwrap() >= outage / 2, "{h:?}");
        let before = sent(&keys);
        r.start_again();
        let back = Instant::now();
        while sent(&keys) == before {
            assert!(back.elapsed() < LIMIT, "no delivery after Redis came back");
            std::thread::sleep(Duration::from_millis(1));
        }
        eprintln!(
            "outage {outage:?}: delivering again {:?} after Redis came back",
            back.elapsed()
        );
        assert_eq!(outbox.flush_timeout(LIMIT), 0);
        let keys = keys.lock().unwrap();
        assert_eq!(keys.len(), 400, "lost jobs");
        let most = keys.values().copied().max().unwrap();
        assert!(most <= 2, "a job was sent {most} times");
        let twice = keys.values().filter(|&&n| n > 1).count();
        eprintln!("outage {outage:?}: sent twice {twice}");
        let h = outbox.health();
        assert!(h.delivering && h.since_progress.unwrap() < LIMIT, "{h:?}");
        assert_eq!(h.panics, 0);
    }
}

#[test]
fn consumers_share_one_rate_per_host() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let url = server.url("/orders");
    let pools = [Pool::new(4), Pool::new(4)];
    let outboxes: Vec<Outbox> = pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Outbox::options()
                .consumer(&format!("c{i}"))
                .shared_rate_per_host(20, Duration::from_secs(1))
                .redis(&r.url(), "calls", p)
                .unwrap()
        })
        .collect();
    let t0 = Instant::now();
    for i in 0..21 {
        outboxes[i % 2].enqueue(order(&pools[0], &url, i)).unwrap();
    }
    assert_eq!(outboxes[0].flush_timeout(LIMIT), 0);
    // 21 requests at 20/s for both together: the first goes at once, the
    // last no sooner than 1 s later (a lower bound: a slow machine only
    // makes it longer).
    let took = t0.elapsed();
    eprintln!("21 jobs at 20/s shared by 2 consumers: {took:?}");
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert_eq!(keys.lock().unwrap().len(), 21);
}

#[test]
fn a_429_pauses_the_host_for_every_consumer() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let hits = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let h = hits.clone();
    let server = Server::with_handler(move |_, _| {
        let mut h = h.lock().unwrap();
        h.push(Instant::now());
        if h.len() == 1 {
            Reply::text(429, "text/plain", "slow down").header("Retry-After", "2")
        } else {
            Reply::text(200, "text/plain", "ok")
        }
    });
    let pool = Pool::builder()
        .retry(reqpool::Retry::none())
        .build()
        .unwrap();
    let outbox = Outbox::options()
        .shared_rate_per_host(1000, Duration::from_secs(1))
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    outbox.enqueue(order(&pool, &server.url("/a"), 1)).unwrap();
    // The pause is shared once the first consumer has written the 429's
    // answer (its host's pause key is in Redis), not when the server
    // sent it: wait for that.
    let pause = format!("{{calls}}:pause:http://{}", server.addr);
    let mut c = raw(&r);
    let t0 = Instant::now();
    while !redis::cmd("EXISTS")
        .arg(&pause)
        .query::<bool>(&mut c)
        .unwrap()
    {
        assert!(t0.elapsed() < LIMIT, "the 429 never paused {pause}");
        std::thread::yield_now();
    }
    // Another consumer's job to the same host waits out the pause.
    let pool2 = Pool::new(2);
    let other = Outbox::options()
        .consumer("other")
        .shared_rate_per_host(1000, Duration::from_secs(1))
        .redis(&r.url(), "calls", &pool2)
        .unwrap();
    other.enqueue(order(&pool2, &server.url("/b"), 2)).unwrap();
    assert_eq!(other.flush_timeout(LIMIT), 0);
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let hits = hits.lock().unwrap();
    assert_eq!(hits.len(), 3, "the 429, the other job, the retry");
    let gap = hits[1] - hits[0];
    assert!(gap >= Duration::from_millis(1900), "{gap:?}");
}

const CHILD_URL: &str = "REQPOOL_REDIS_CHILD_URL";
const CHILD_REDIS: &str = "REQPOOL_REDIS_CHILD_REDIS";
const JOBS: usize = 300;

/// The child's side of the crash test: a consumer of 4 workers that
/// delivers until killed.
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_consumes_until_killed() {
    let (Ok(redis), Ok(_)) = (std::env::var(CHILD_REDIS), std::env::var(CHILD_URL)) else {
        return; // only in the child (run by its parent test)
    };
    let pool = Pool::new(4);
    let outbox = Outbox::options()
        .consumer("child")
        .lease(Duration::from_millis(1000))
        .redis(&redis, "calls", &pool)
        .unwrap();
    outbox.flush_timeout(Duration::from_secs(120));
}

#[test]
fn a_killed_consumer_loses_nothing_and_its_jobs_go_to_the_others() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let url = server.url("/orders?ms=20");
    let pool = Pool::new(4);
    let producer = Outbox::options()
        .deliver(false)
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    for i in 0..JOBS {
        producer.enqueue(order(&pool, &url, i)).unwrap();
    }
    let mut child = spawn_child(
        "child_consumes_until_killed",
        &[(CHILD_REDIS, r.url().as_str()), (CHILD_URL, &url)],
    );
    let t0 = Instant::now();
    while keys.lock().unwrap().len() < JOBS / 5 {
        assert!(t0.elapsed() < LIMIT, "the child delivered nothing");
        std::thread::yield_now();
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    let seen_at_kill = keys.lock().unwrap().len();
    assert!(seen_at_kill < JOBS, "the child finished before the kill");
    let outbox = Outbox::options()
        .consumer("survivor")
        .lease(Duration::from_millis(1000))
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let keys = keys.lock().unwrap();
    assert_eq!(keys.len(), JOBS, "lost jobs");
    let twice = keys.values().filter(|&&n| n > 1).count();
    eprintln!("killed after {seen_at_kill} of {JOBS}; sent twice: {twice}");
    // At most what the child had in flight (4 workers) and answered but
    // not yet acknowledged.
    assert!(twice <= 8, "{twice} sent twice");
    let s = outbox.stats().unwrap();
    assert_eq!((s.pending, s.in_flight, s.dead), (0, 0, 0));
}

const POISON_REDIS: &str = "REQPOOL_REDIS_POISON_REDIS";

/// The child's side of the poison test: a consumer of one worker, at most
/// 3 attempts, a short lease; delivers until done or killed.
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_consumes_with_three_attempts() {
    let Ok(redis) = std::env::var(POISON_REDIS) else {
        return; // only in the child (run by its parent test)
    };
    let pool = Pool::new(1);
    let outbox = Outbox::options()
        .max_attempts(3)
        .lease(Duration::from_millis(300))
        .redis(&redis, "calls", &pool)
        .unwrap();
    outbox.flush_timeout(Duration::from_secs(60));
}

/// A job whose delivery kills its consumer (the server has the test
/// SIGKILL the child when it arrives), consumers restarted in a loop:
/// taken over, it goes alone; each stop while alone counts as an attempt,
/// so it is dead after `max_attempts` with the reason, and every other job
/// is delivered. Before: it was delivered at every take-over (6 times under
/// `max_attempts(3)`), and only 3 of 20 other jobs ever went.
#[test]
fn a_job_that_kills_its_consumer_ends_at_max_attempts_and_blocks_nothing() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let poison = Poison::start();
    let pool = Pool::new(1);
    let producer = Outbox::options()
        .deliver(false)
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    poison.fill(&producer, &pool);
    let runs = poison.run_until_done(&|| {
        spawn_child(
            "child_consumes_with_three_attempts",
            &[(POISON_REDIS, r.url().as_str())],
        )
    });
    let outbox = Outbox::options()
        .max_attempts(3)
        .lease(Duration::from_millis(300))
        .consumer("last")
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    // Its first stop came beside other jobs (unproven), then 3 alone.
    poison.check(&outbox, runs, 3..=4);
}

#[test]
fn a_retry_goes_at_its_time_not_after_the_backlog() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    common::a_retry_goes_at_its_time_not_after_the_backlog(&|options, pool| {
        options.redis(&r.url(), "calls", pool).unwrap()
    });
}

const RA_REDIS: &str = "REQPOOL_REDIS_RA_REDIS";
const RA_URL: &str = "REQPOOL_REDIS_RA_URL";

/// The child's side of the Retry-After test: a consumer with a short
/// lease that enqueues one job and delivers.
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_enqueues_one_job_and_consumes() {
    let (Ok(redis), Ok(url)) = (std::env::var(RA_REDIS), std::env::var(RA_URL)) else {
        return; // only in the child (run by its parent test)
    };
    let pool = Pool::new(1);
    let outbox = Outbox::options()
        .consumer("child")
        .lease(Duration::from_millis(500))
        .redis(&redis, "calls", &pool)
        .unwrap();
    outbox
        .enqueue(pool.post(&url).idempotency_key("retry-me"))
        .unwrap();
    outbox.flush_timeout(Duration::from_secs(60));
}

/// A `Retry-After` the server gave is kept across a kill: the consumer is
/// killed 300 ms after a 503 with `Retry-After: 2`; the one that takes
/// the job over sends it no sooner than 2 s after the 503 (its time kept
/// in Redis, on Redis's clock). Before: the wait was the pool's, inside
/// the delivery, and the job went again at the take-over.
#[test]
fn a_retry_after_survives_a_kill() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    common::a_retry_after_survives_a_kill(
        &|url| {
            spawn_child(
                "child_enqueues_one_job_and_consumes",
                &[(RA_REDIS, r.url().as_str()), (RA_URL, url)],
            )
        },
        &|pool| {
            Outbox::options()
                .consumer("survivor")
                .lease(Duration::from_millis(500))
                .redis(&r.url(), "calls", pool)
                .unwrap()
        },
    );
}

/// Entries written by the layout before the metadata field (a field for
/// each part) are still delivered after an upgrade: in the stream, dead
/// (listed, requeued), and parked behind an order key. Written here with
/// raw `XADD`/`HSET`, as that version wrote them.
#[test]
fn entries_of_the_layout_before_the_metadata_field_are_still_delivered() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let status = Arc::new(AtomicUsize::new(200));
    let (server, keys) = keyed_server(status.clone());
    let pool = Pool::new(2);
    // A producer makes the stream and its group, as the old version did.
    let producer = Outbox::options()
        .deliver(false)
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    let url = server.url("/orders");
    let mut c = raw(&r);
    let old = |job: &str, key: &str, order: Option<&str>, n: i64| {
        let mut f: Vec<(String, Vec<u8>)> = [
            ("job", job),
            ("key", key),
            ("method", "POST"),
            ("url", url.as_str()),
            ("headers", r#"[["content-type","application/json"]]"#),
            ("attempts", "0"),
            ("due", "0"),
            ("tries", "0"),
            ("stops", "0"),
            ("created", "1700000000000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        if let Some(o) = order {
            f.push(("order".into(), o.as_bytes().to_vec()));
        }
        f.push(("body".into(), json!({"order": n}).to_string().into_bytes()));
        f
    };
    let xadd = |c: &mut redis::Connection, f: &[(String, Vec<u8>)]| {
        let _: String = redis::cmd("XADD")
            .arg("{calls}")
            .arg("*")
            .arg(f)
            .query(c)
            .unwrap();
    };
    // One plain job, and two of one order key: the second parked.
    xadd(&mut c, &old("901", "old-1", None, 1));
    let _: i64 = redis::cmd("RPUSH")
        .arg("{calls}:order:line")
        .arg(&["903", "904"])
        .query(&mut c)
        .unwrap();
    xadd(&mut c, &old("903", "old-3", Some("line"), 3));
    let _: i64 = redis::cmd("HSET")
        .arg("{calls}:park:904")
        .arg(old("904", "old-4", Some("line"), 4))
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("INCR")
        .arg("{calls}:parked")
        .query(&mut c)
        .unwrap();
    assert_eq!(producer.stats().unwrap().pending, 3);
    let outbox = Outbox::redis(&r.url(), "calls", &pool).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    for (id, n) in [(901, 1), (903, 3), (904, 4)] {
        let reply = outbox
            .reply(reqpool::JobId(id))
            .unwrap()
            .expect("delivered");
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["body"]["order"].as_i64(), Some(n), "{v}");
    }
    // A final status: the old entry is a dead letter, listed as one, and
    // requeued.
    status.store(422, std::sync::atomic::Ordering::SeqCst);
    xadd(&mut c, &old("902", "old-2", None, 2));
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let dead = outbox.dead().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].id.0, dead[0].key.as_str()), (902, "old-2"));
    assert!(
        dead[0].request.starts_with("POST http://127.0.0.1"),
        "{dead:?}"
    );
    assert_eq!(dead[0].attempts, 1);
    status.store(200, std::sync::atomic::Ordering::SeqCst);
    assert!(outbox.requeue(reqpool::JobId(902)).unwrap());
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let reply = outbox
        .reply(reqpool::JobId(902))
        .unwrap()
        .expect("delivered");
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["body"]["order"].as_i64(), Some(2), "{v}");
    let keys = keys.lock().unwrap();
    for k in ["old-1", "old-3", "old-4"] {
        assert_eq!(keys.get(k), Some(&1), "{keys:?}");
    }
    assert_eq!(keys.get("old-2"), Some(&2), "{keys:?}");
    let s = outbox.stats().unwrap();
    assert_eq!((s.pending, s.in_flight, s.delivered, s.dead), (0, 0, 4, 0));
}

/// Times and counts in an entry are checked when read: a hand-written
/// entry due at `i64::MAX` with `attempts` past `u32::MAX` is delivered
/// now (it was held in flight for good, or refused).
#[test]
fn stored_times_and_counts_written_by_hand_are_not_trusted() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(2);
    let outbox = Outbox::redis(&r.url(), "calls", &pool).unwrap();
    let url = server.url("/orders");
    let mut c = raw(&r);
    let _: String = redis::cmd("XADD")
        .arg("{calls}")
        .arg("*")
        .arg(&[
            ("job", "900"),
            ("key", "by-hand"),
            ("method", "POST"),
            ("url", url.as_str()),
            ("headers", "[]"),
            ("attempts", "99999999999"),
            ("due", "9223372036854775807"),
        ])
        .query(&mut c)
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(keys.lock().unwrap().get("by-hand"), Some(&1));
    assert_eq!(outbox.stats().unwrap().delivered, 1);
}

/// Redis restarted without its data mid-batch: the consumer makes the
/// stream and group again, says how many jobs it held were lost (an
/// `error` line and `health().lost`), and delivers what comes next.
/// Before: nothing said anything.
#[test]
fn a_stream_lost_with_a_restart_is_made_again_and_the_loss_is_counted() {
    let Some(mut r) = RedisServer::start() else {
        return;
    };
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(4);
    let outbox = Outbox::options()
        .lease(Duration::from_secs(1))
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    let url = server.url("/orders?ms=20");
    for i in 0..300 {
        outbox.enqueue(order(&pool, &url, i)).unwrap();
    }
    let t0 = Instant::now();
    while keys.lock().unwrap().len() < 20 {
        assert!(t0.elapsed() < LIMIT, "nothing delivered");
        std::thread::yield_now();
    }
    r.restart(); // no append-only file: everything is gone
    let t0 = Instant::now();
    while outbox.health().lost == 0 {
        assert!(t0.elapsed() < LIMIT, "the loss was not seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    let lost = outbox.health().lost;
    eprintln!("lost with the restart, as this consumer counted: {lost}");
    let e = outbox.enqueue(order(&pool, &url, 1000));
    if e.is_err() {
        outbox.enqueue(order(&pool, &url, 1000)).unwrap();
    }
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(keys.lock().unwrap().get("order-1000"), Some(&1));
    assert_eq!(outbox.health().panics, 0);
}

/// The shared rate holds in every sliding window, also after a stall:
/// the server stops answering for 0.5 s, and once it is back no more than
/// `n` plus the documented burst (one interval: 1 request) go in any 1 s.
/// Before: 264 and 292 in one sliding second for 200/s.
#[test]
fn the_shared_rate_holds_in_every_window_after_a_stall() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let arrivals: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let stall: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let (a, st) = (arrivals.clone(), stall.clone());
    let server = Server::with_handler(move |_, _| {
        let n = {
            let mut a = a.lock().unwrap();
            a.push(Instant::now());
            a.len()
        };
        let until = {
            let mut s = st.lock().unwrap();
            if n == 60 {
                *s = Some(Instant::now() + Duration::from_millis(500));
            }
            *s
        };
        if let Some(u) = until {
            // The stall: answers wait until it ends.
            std::thread::sleep(u.saturating_duration_since(Instant::now()));
        }
        Reply::text(200, "text/plain", "ok")
    });
    let pool = Pool::new(16);
    let outbox = Outbox::options()
        .shared_rate_per_host(100, Duration::from_secs(1))
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    let url = server.url("/orders");
    for i in 0..260 {
        outbox.enqueue(order(&pool, &url, i)).unwrap();
    }
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let a = arrivals.lock().unwrap().clone();
    assert_eq!(a.len(), 260);
    let most = (0..a.len())
        .map(|i| {
            a[i..]
                .iter()
                .take_while(|&&t| t - a[i] < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    let most_100ms = (0..a.len())
        .map(|i| {
            a[i..]
                .iter()
                .take_while(|&&t| t - a[i] < Duration::from_millis(100))
                .count()
        })
        .max()
        .unwrap();
    eprintln!("100/s with a 0.5 s stall: at most {most} in any 1 s, {most_100ms} in any 100 ms");
    // The limiter releases at most 101 in any second (its tolerance is
    // one interval); the server sees arrivals, which a loaded machine's
    // scheduling can bunch by a few. The bug this guards against let
    // 264-292 through.
    assert!(most <= 105, "{most} in one sliding second");
}

#[test]
fn enqueue_all_gives_each_job_its_own_outcome() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    common::enqueue_all_gives_each_job_its_own_outcome(&|options, pool| {
        options.redis(&r.url(), "calls", pool).unwrap()
    });
}

/// The outbox on a real Redis Cluster (three masters, a replica each):
/// two consumers deliver 10,000 jobs while a producer enqueues them in
/// batches; the master of the outbox's slot is killed (`SIGKILL`)
/// mid-batch. Its replica takes over; the consumers and the producer
/// follow the slot to it (a batch that failed meanwhile, for want of a
/// master or of a replica to hold it, is enqueued again with its keys);
/// the killed node comes back as the new master's replica. Nothing is
/// lost; what is sent twice is at most what the
/// consumers held when the master died (each at most its prefetch, 64
/// here) and what was acknowledged in the instant before.
#[test]
fn a_cluster_failover_loses_no_job_and_consumers_follow_the_slot() {
    const N: usize = 10_000;
    const BATCH: usize = 500;
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let url = server.url("/orders");
    let started = Instant::now();
    let consumers: Vec<(Pool, Outbox)> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let pool = Pool::new(8);
            let outbox = Outbox::options()
                .consumer(name)
                .lease(Duration::from_secs(2))
                .redis_cluster(&nodes, "calls", &pool)
                .unwrap();
            (pool, outbox)
        })
        .collect();
    let pool = Pool::new(1);
    let producer = Outbox::options()
        .deliver(false)
        .redis_cluster(&nodes, "calls", &pool)
        .unwrap();
    let old = cluster.master_of("{calls}");
    let mut killed_at = None;
    let mut new = old;
    let mut retried = 0;
    for start in (0..N).step_by(BATCH) {
        if killed_at.is_none() && start >= N / 3 {
            // Mid-batch: the consumers are delivering what came before.
            killed_at = Some(keys.lock().unwrap().len());
            cluster.kill(old);
            new = cluster.wait_for_failover("{calls}", old, LIMIT);
            cluster.start_again(old);
        }
        // A batch that failed (the slot had no master yet) goes again
        // with its keys: what got in is not added twice.
        let t0 = Instant::now();
        loop {
            let ids = producer.enqueue_all((start..start + BATCH).map(|i| order(&pool, &url, i)));
            if ids.iter().all(Result::is_ok) {
                break;
            }
            retried += 1;
            assert!(
                t0.elapsed() < LIMIT,
                "no enqueue after the failover: {:?}",
                ids.iter().find(|r| r.is_err())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for (_, outbox) in &consumers {
        assert_eq!(outbox.flush_timeout(LIMIT), 0, "{outbox:?}");
    }
    let keys = keys.lock().unwrap();
    let sent: usize = keys.values().sum();
    let lost = (0..N)
        .filter(|i| !keys.contains_key(&format!("order-{i}")))
        .count();
    let twice = sent - keys.len();
    eprintln!(
        "cluster: {N} jobs, master {old} killed after {} delivered, {new} took over; \
         lost {lost}, sent twice {twice}, batches enqueued again {retried}, {:?}",
        killed_at.unwrap_or(0),
        started.elapsed()
    );
    assert_eq!(lost, 0, "lost jobs");
    assert!(twice <= 2 * 64 + BATCH, "{twice} sent twice");
    let s = consumers[0].1.stats().unwrap();
    assert_eq!((s.pending, s.in_flight, s.dead), (0, 0, 0), "{s:?}");
    assert!(s.delivered >= N as u64 - twice as u64, "{s:?}");
}

const ORDER_REDIS: &str = "REQPOOL_REDIS_ORDER_REDIS";
const ORDER_URL: &str = "REQPOOL_REDIS_ORDER_URL";
const ORDER_DONE: &str = "REQPOOL_REDIS_ORDER_DONE";

/// The child's side of the order-key test: enqueues the jobs, delivers
/// until killed.
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_enqueues_ordered_and_consumes() {
    let (Ok(redis), Ok(url), Ok(done)) = (
        std::env::var(ORDER_REDIS),
        std::env::var(ORDER_URL),
        std::env::var(ORDER_DONE),
    ) else {
        return; // only in the child (run by its parent test)
    };
    let pool = Pool::new(16);
    let outbox = ordered_options()
        .consumer("child")
        .lease(Duration::from_millis(1000))
        .redis(&redis, "calls", &pool)
        .unwrap();
    enqueue_ordered_jobs(&outbox, &pool, &url, std::path::Path::new(&done));
    outbox.flush_timeout(Duration::from_secs(120));
}

/// Per-key order on Redis, across random 503s, two consumers and one of
/// them killed: see `common::per_key_order_holds_across_503s_and_a_kill`.
#[test]
fn per_key_order_holds_across_503s_and_a_kill() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    common::per_key_order_holds_across_503s_and_a_kill(
        &|url, done| {
            spawn_child(
                "child_enqueues_ordered_and_consumes",
                &[
                    (ORDER_REDIS, r.url().as_str()),
                    (ORDER_URL, url),
                    (ORDER_DONE, done.to_str().unwrap()),
                ],
            )
        },
        &|pool| {
            ordered_options()
                .consumer("survivor")
                .lease(Duration::from_millis(1000))
                .redis(&r.url(), "calls", pool)
                .unwrap()
        },
        true,
    );
}

/// The dead-letter rules on an outbox over 3 shards: the dead letter's id
/// finds its shard for `requeue` and `reply`.
#[test]
fn a_final_status_is_a_dead_letter_that_can_be_requeued_across_shards() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    common::a_final_status_is_a_dead_letter_that_can_be_requeued(&|options, pool| {
        options.shards(3).redis(&r.url(), "calls", pool).unwrap()
    });
}

/// One outbox over 3 streams (`{calls:0}` … `{calls:2}`): 600 jobs spread
/// over every shard by key, a known key found again, two consumers that
/// each read every shard, 60 dead letters (a 422) listed across the
/// shards and requeued by id, every reply found by id; `stats` and
/// `flush_timeout` across them.
#[test]
fn a_sharded_outbox_places_by_key_and_answers_across_its_shards() {
    const N: usize = 600;
    let Some(r) = RedisServer::start() else {
        return;
    };
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let rf = refuse.clone();
    let server = Server::with_handler(move |req, _| {
        let key = req.key();
        let bad = key
            .strip_prefix("order-")
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i % 10 == 0);
        if bad && rf.load(std::sync::atomic::Ordering::SeqCst) {
            return Reply::json(422, json!({"no": key}));
        }
        Reply::json(200, json!({"key": key}))
    });
    let open = |consumer: &str, pool: &Pool| {
        Outbox::options()
            .shards(3)
            .consumer(consumer)
            .redis(&r.url(), "calls", pool)
            .unwrap()
    };
    let pool = Pool::new(1);
    let producer = Outbox::options()
        .shards(3)
        .deliver(false)
        .redis(&r.url(), "calls", &pool)
        .unwrap();
    let ids: Vec<_> = producer
        .enqueue_all((0..N).map(|i| order(&pool, &server.url("/orders"), i)))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // A known key is found again, on its shard.
    assert_eq!(
        producer
            .enqueue(order(&pool, &server.url("/orders"), 7))
            .unwrap(),
        ids[7]
    );
    let mut c = raw(&r);
    let per_shard: Vec<u64> = (0..3)
        .map(|s| {
            redis::cmd("XLEN")
                .arg(format!("{{calls:{s}}}"))
                .query(&mut c)
                .unwrap()
        })
        .collect();
    eprintln!("jobs per shard: {per_shard:?}");
    assert_eq!(per_shard.iter().sum::<u64>(), N as u64);
    assert!(per_shard.iter().all(|&n| n > N as u64 / 6), "{per_shard:?}");
    assert_eq!(producer.stats().unwrap().pending, N as u64);
    let (pa, pb) = (Pool::new(4), Pool::new(4));
    let (a, b) = (open("a", &pa), open("b", &pb));
    assert_eq!(a.flush_timeout(LIMIT), 0);
    assert_eq!(b.flush_timeout(LIMIT), 0);
    // Each consumer read every shard (each is a consumer of its group).
    for s in 0..3 {
        let consumers: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(format!("{{calls:{s}}}"))
            .arg("reqpool")
            .query(&mut c)
            .unwrap();
        let mut names: Vec<String> = consumers
            .iter()
            .filter_map(|m| redis::from_redis_value_ref::<String>(m.get("name")?).ok())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b"], "shard {s}");
    }
    let dead = a.dead().unwrap();
    assert_eq!(dead.len(), N / 10, "{dead:?}");
    let s = a.stats().unwrap();
    assert_eq!(
        (s.pending, s.in_flight, s.delivered, s.dead),
        (0, 0, (N - N / 10) as u64, (N / 10) as u64)
    );
    refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    for d in &dead {
        assert!(ids.contains(&d.id), "{d:?}");
        assert!(b.requeue(d.id).unwrap(), "{d:?}");
    }
    assert_eq!(a.flush_timeout(LIMIT), 0);
    for (i, id) in ids.iter().enumerate() {
        let reply = a
            .reply(*id)
            .unwrap()
            .unwrap_or_else(|| panic!("no reply for job {i}"));
        assert_eq!(reply.status, 200, "job {i}");
    }
    let s = b.stats().unwrap();
    assert_eq!(
        (s.pending, s.in_flight, s.delivered, s.dead),
        (0, 0, N as u64, 0)
    );
}
