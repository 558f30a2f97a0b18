//! One queue, many machines: an outbox on a Redis stream delivered by
//! three consumer processes (8 workers each), one of which is killed with
//! SIGKILL a third of the way through 6,000 keyed POSTs. Prints what
//! reached the server once, twice or never, and how long the survivors
//! took to take over the dead consumer's jobs. Then the rate that three
//! consumers share (`shared_rate_per_host(100, 1 s)`), and throughput: one
//! consumer against plain `fire`, three consumers against one. Last, one
//! job at a time from another process (every 25 ms): the time from its
//! enqueue to its arrival at the server, and what the consumer then costs
//! idle for 10 s. `PHASES=34` runs only those parts; `FAST_ONLY=1` skips
//! the 20 ms-server part of 3.
//!
//! `cargo run --release --features redis --example many_machines`
//! (starts its own `redis-server` on a free port; `REDIS_URL=redis://…`
//! uses yours: the stream names start with `many-machines-`).

#[path = "../tests/common/mod.rs"]
mod common;

use reqpool::{Outbox, Pool};
use serde_json::json;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the consumer processes get from the parent.
const ROLE: &str = "MANY_MACHINES_CONSUMER";

/// Each consumer's lease: how soon a dead one's jobs are taken over.
const LEASE: Duration = Duration::from_secs(3);

/// The consumer process: deliver stream `STREAM` with `WORKERS` workers
/// until it is empty (or killed).
fn consumer() {
    let var = |k: &str| std::env::var(k).expect(k);
    let pool = Pool::new(var("WORKERS").parse().unwrap());
    if let Ok(url) = std::env::var("FIRE") {
        // The yardstick: the same POSTs fired by a pool of the same size,
        // in a process of its own like a consumer.
        let n: usize = var("N").parse().unwrap();
        for i in 0..n {
            let _ = pool.post(&url).json_body(&json!({"item": i})).fire();
        }
        pool.flush_timeout(Duration::from_secs(300));
        eprintln!(
            "   (plain fire: {:.1} µs CPU per request)",
            common::cpu_seconds() / n as f64 * 1e6
        );
        return;
    }
    let mut options = Outbox::options()
        .consumer(&var("NAME"))
        .lease(LEASE)
        .keep_replies(false)
        .retention(Duration::ZERO);
    if let Ok(rate) = std::env::var("RATE") {
        options = options.shared_rate_per_host(rate.parse().unwrap(), Duration::from_secs(1));
    }
    let outbox = options
        .redis(&var("REDIS"), &var("STREAM"), &pool)
        .expect("open the outbox");
    if let Ok(n) = std::env::var("IDLE_AFTER") {
        // 4.: deliver `n` jobs as they come, then sit idle for 10 s.
        let n: u64 = n.parse().unwrap();
        let t0 = Instant::now();
        while outbox.stats().map_or(0, |s| s.delivered) < n {
            assert!(t0.elapsed() < Duration::from_secs(120), "not delivered");
            std::thread::sleep(Duration::from_millis(10));
        }
        let cpu0 = common::cpu_seconds();
        std::thread::sleep(Duration::from_secs(10));
        eprintln!(
            "   (idle consumer: {:.0} ms CPU over 10 s)",
            (common::cpu_seconds() - cpu0) * 1e3
        );
        return;
    }
    outbox.flush_timeout(Duration::from_secs(300));
    if let Ok(n) = std::env::var("CPU") {
        let n: f64 = n.parse().unwrap_or(1.0);
        eprintln!(
            "   (consumer {}: {:.2} s CPU, {:.1} µs per job)",
            var("NAME"),
            common::cpu_seconds(),
            common::cpu_seconds() / n * 1e6
        );
    }
}

/// Arrivals at the server, per idempotency key.
type Seen = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

fn server(delay: Duration) -> (common::Server, Seen) {
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let server = common::Server::with_handler(move |req, _| {
        let key = req
            .headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default();
        s.lock()
            .unwrap()
            .entry(key)
            .or_default()
            .push(Instant::now());
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        common::Reply::json(200, json!({"ok": true}))
    });
    (server, seen)
}

/// Writes `n` keyed POSTs to `stream` from this process (a producer only).
fn fill(redis: &str, stream: &str, url: &str, n: usize) {
    let pool = Pool::new(1);
    let producer = Outbox::options()
        .deliver(false)
        .redis(redis, stream, &pool)
        .expect("open the producer");
    for i in 0..n {
        producer
            .enqueue(
                pool.post(url)
                    .json_body(&json!({"item": i}))
                    .idempotency_key(&format!("{stream}-{i}")),
            )
            .expect("enqueue");
    }
}

fn spawn(redis: &str, stream: &str, name: &str, workers: usize, rate: Option<u32>) -> Child {
    spawn_counting(redis, stream, name, workers, rate, None)
}

/// As `spawn`; with `jobs`, the consumer says its CPU per job of those.
fn spawn_counting(
    redis: &str,
    stream: &str,
    name: &str,
    workers: usize,
    rate: Option<u32>,
    jobs: Option<usize>,
) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    if let Some(n) = jobs {
        cmd.env("CPU", n.to_string());
    }
    cmd.env(ROLE, "1")
        .env("REDIS", redis)
        .env("STREAM", stream)
        .env("NAME", name)
        .env("WORKERS", workers.to_string())
        .stdout(Stdio::null());
    if let Some(r) = rate {
        cmd.env("RATE", r.to_string());
    }
    cmd.spawn().expect("start a consumer")
}

/// Runs `consumers` processes of `workers` workers over a stream filled
/// with `n` jobs; returns the wall time from their start to the last
/// one's end.
fn run(
    redis: &str,
    stream: &str,
    url: &str,
    n: usize,
    consumers: usize,
    workers: usize,
    rate: Option<u32>,
) -> Duration {
    fill(redis, stream, url, n);
    let cpu0 = redis_cpu(redis);
    let t0 = Instant::now();
    let children: Vec<Child> = (0..consumers)
        .map(|i| {
            let name = format!("{stream}-c{i}");
            spawn_counting(redis, stream, &name, workers, rate, Some(n / consumers))
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a consumer failed");
    }
    let wall = t0.elapsed();
    eprintln!(
        "   ({stream}: redis-server CPU {:.1} µs per job)",
        (redis_cpu(redis) - cpu0) / n as f64 * 1e6
    );
    wall
}

/// Seconds of CPU the Redis server used so far.
fn redis_cpu(redis: &str) -> f64 {
    let mut c = redis::Client::open(redis)
        .unwrap()
        .get_connection()
        .unwrap();
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut c).unwrap();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

fn main() {
    if std::env::var(ROLE).is_ok() {
        return consumer();
    }
    let own = if std::env::var("REDIS_URL").is_err() {
        Some(common::RedisServer::start().expect(
            "redis-server is not installed (apt-get install redis-server), or set REDIS_URL",
        ))
    } else {
        None
    };
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| own.as_ref().unwrap().url());
    let tag = std::process::id();

    let phase = |n: &str| std::env::var("PHASES").map_or(true, |p| p.contains(n));
    if phase("1") {
        kill_one(&redis, tag);
    }
    if phase("2") {
        shared_rate(&redis, tag);
    }
    if phase("3") {
        throughput(&redis, tag);
    }
    if phase("4") {
        idle(&redis, tag);
    }
}

/// 4: one job at a time, how soon a consumer delivers a job another
/// process enqueued, and what an idle consumer costs.
fn idle(redis: &str, tag: u32) {
    let n = 100;
    let (srv, seen) = server(Duration::ZERO);
    let url = srv.url("/orders");
    let stream = format!("many-machines-{tag}-idle");
    let pool = Pool::new(1);
    let producer = Outbox::options()
        .deliver(false)
        .redis(redis, &stream, &pool)
        .expect("open the producer");
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .env(ROLE, "1")
        .env("REDIS", redis)
        .env("STREAM", &stream)
        .env("NAME", "idle")
        .env("WORKERS", "4")
        .env("IDLE_AFTER", n.to_string())
        .stdout(Stdio::null());
    let mut child = child.spawn().expect("start a consumer");
    // Once it is up (its first delivery), one job every 25 ms.
    let mut sent = Vec::new();
    for i in 0..n {
        let key = format!("{stream}-{i}");
        sent.push((key.clone(), Instant::now()));
        producer
            .enqueue(
                pool.post(&url)
                    .json_body(&json!({"item": i}))
                    .idempotency_key(&key),
            )
            .expect("enqueue");
        if i == 0 {
            let t0 = Instant::now();
            while seen.lock().unwrap().is_empty() {
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "the consumer never started"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(child.wait().unwrap().success(), "the consumer failed");
    let seen = seen.lock().unwrap();
    let mut ms: Vec<f64> = sent[1..]
        .iter()
        .filter_map(|(k, t)| Some(seen.get(k)?.first()?.duration_since(*t).as_secs_f64() * 1e3))
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q) as usize];
    println!(
        "4. {} POSTs enqueued one at a time every 25 ms by another process: enqueue to arrival median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
}

/// 1. Three consumers, one killed a third of the way in.
fn kill_one(redis: &str, tag: u32) {
    let redis = redis.to_owned();
    let jobs = 6_000;
    let (srv, seen) = server(Duration::from_millis(10));
    let stream = format!("many-machines-{tag}-kill");
    fill(&redis, &stream, &srv.url("/orders"), jobs);
    let t0 = Instant::now();
    let mut children: Vec<Child> = (0..3)
        .map(|i| spawn(&redis, &stream, &format!("c{i}"), 8, None))
        .collect();
    while seen.lock().unwrap().len() < jobs / 3 {
        assert!(t0.elapsed() < Duration::from_secs(120), "nothing delivered");
        std::thread::sleep(Duration::from_millis(1));
    }
    children[0].kill().unwrap();
    let killed_at = Instant::now();
    children[0].wait().unwrap();
    // What the dead one held: its entries' keys.
    let mut conn = redis::Client::open(redis.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    // The stream's key: the outbox's name as its hash tag.
    let key = format!("{{{stream}}}");
    let held: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(&key)
        .arg("reqpool")
        .arg("-")
        .arg("+")
        .arg(100_000)
        .arg("c0")
        .query(&mut conn)
        .unwrap();
    let held_keys: Vec<String> = held
        .iter()
        .filter_map(|(id, ..)| {
            let e: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
                .arg(&key)
                .arg(id)
                .arg(id)
                .query(&mut conn)
                .ok()?;
            // The key is the second item of the entry's metadata (`m`).
            let meta: serde_json::Value = serde_json::from_str(e.first()?.1.get("m")?).ok()?;
            meta.get(1)?.as_str().map(str::to_owned)
        })
        .collect();
    for c in &mut children[1..] {
        assert!(c.wait().unwrap().success(), "a consumer failed");
    }
    let wall = t0.elapsed();
    let seen = seen.lock().unwrap();
    let delivered = seen.len();
    let twice = seen.values().filter(|v| v.len() > 1).count();
    let lost = (0..jobs)
        .filter(|i| !seen.contains_key(&format!("{stream}-{i}")))
        .count();
    let taken_over = held_keys
        .iter()
        .filter_map(|k| seen.get(k)?.last().copied())
        .max()
        .map(|t| t.saturating_duration_since(killed_at));
    println!(
        "1. {jobs} keyed POSTs, 3 consumers x 8 workers, one killed (SIGKILL) after {} had reached the server; lease {LEASE:?}",
        jobs / 3
    );
    println!(
        "   delivered {delivered}, lost {lost}, sent twice {twice} (the killed consumer held {} unanswered)",
        held_keys.len()
    );
    match taken_over {
        Some(t) => println!(
            "   its jobs delivered by the others {:.2} s after the kill (lease + {:.2} s); all done in {:.2} s",
            t.as_secs_f64(),
            t.as_secs_f64() - LEASE.as_secs_f64(),
            wall.as_secs_f64()
        ),
        None => println!(
            "   it held nothing at the kill; all done in {:.2} s",
            wall.as_secs_f64()
        ),
    }
}

/// 2. One rate for all: three consumers, 100/s to one host.
fn shared_rate(redis: &str, tag: u32) {
    let redis = redis.to_owned();
    let (srv, seen) = server(Duration::ZERO);
    let n = 600;
    let stream = format!("many-machines-{tag}-rate");
    let wall = run(&redis, &stream, &srv.url("/orders"), n, 3, 8, Some(100));
    let mut times: Vec<Instant> = seen.lock().unwrap().values().flatten().copied().collect();
    times.sort();
    let mut max_window = 0;
    let mut j = 0;
    for i in 0..times.len() {
        while times[i] - times[j] >= Duration::from_secs(1) {
            j += 1;
        }
        max_window = max_window.max(i - j + 1);
    }
    let span = (times[times.len() - 1] - times[0]).as_secs_f64();
    println!(
        "2. {n} POSTs, 3 consumers sharing shared_rate_per_host(100, 1 s): at most {max_window} in any 1 s window, {:.1}/s on average ({:.2} s, {:.2} s with start-up)",
        (times.len() - 1) as f64 / span,
        span,
        wall.as_secs_f64()
    );
}

/// 3. Throughput: plain fire, one consumer, three (16 workers each).
fn throughput(redis: &str, tag: u32) {
    let redis = redis.to_owned();
    let n = 20_000;
    let (srv, _seen) = server(Duration::ZERO);
    let url = srv.url("/orders");
    let t0 = Instant::now();
    let fired = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "1")
        .env("FIRE", &url)
        .env("N", n.to_string())
        .env("WORKERS", "16")
        .stdout(Stdio::null())
        .status()
        .expect("start the fire process");
    assert!(fired.success(), "the fire process failed");
    let fire = n as f64 / t0.elapsed().as_secs_f64();
    let one = n as f64
        / run(
            &redis,
            &format!("many-machines-{tag}-one"),
            &url,
            n,
            1,
            16,
            None,
        )
        .as_secs_f64();
    println!(
        "3. {n} POSTs at no delay, 16 workers: plain fire {fire:.0}/s, one consumer {one:.0}/s ({:.2} x fire)",
        one / fire
    );
    if std::env::var("FAST_ONLY").is_ok() {
        return;
    }
    // Three against one where the store could be the limit: the server
    // takes 20 ms, so each consumer's 16 workers are the bound.
    let n = 6_000;
    let (srv, _seen) = server(Duration::from_millis(20));
    let url = srv.url("/orders");
    let one = n as f64
        / run(
            &redis,
            &format!("many-machines-{tag}-slow1"),
            &url,
            n,
            1,
            16,
            None,
        )
        .as_secs_f64();
    let three = n as f64
        / run(
            &redis,
            &format!("many-machines-{tag}-slow3"),
            &url,
            n,
            3,
            16,
            None,
        )
        .as_secs_f64();
    println!(
        "   {n} POSTs answered in 20 ms: one consumer {one:.0}/s, three {three:.0}/s ({:.2} x)",
        three / one
    );
}
