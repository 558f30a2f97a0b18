//! The price of each layer, itemised: the same `N` POSTs (a small JSON
//! body, every reply parsed) through successive layers, each in a child
//! process of its own against one server (tokio, in this process), with
//! the same number of workers. For each rung: the client's CPU per
//! request (user + system) and the heap allocations per request (a
//! counting allocator in the child), medians of interleaved runs.
//!
//! The rungs, each adding one layer to the one before:
//!
//! 1. `hand_rolled`: `W` std threads sharing one ureq agent, jobs in and
//!    replies out over channels (the code a user would write);
//! 2. `submit_plain`: the same ureq call in a `Pool::submit` closure, on a
//!    plain agent: + the pool's queue, task, handle and stats;
//! 3. `submit_guarded`: the closure uses the pool's own agent
//!    (`Pool::agent`): + the guard that caps every socket wait by the
//!    job's limit;
//! 4. `send`: `pool.post(url).json_body(..).send()`, the reply parsed by
//!    the caller: + the request path (prepare, attempts, redaction,
//!    response capture);
//! 5. `send_policies`: as 4 on a pool with a host cap, a rate and a
//!    breaker that never bind: + host policies configured but idle;
//! 6. `json`: `pool.post_json`: + decoding on the worker;
//! 7. `fire`: `pool.post(..).fire()` then `flush`: no handle kept.
//!
//! `cargo bench -p reqpool-benches --bench ladder` (`RUNS=3`, `N=20000`,
//! `TLS=1` over HTTPS to the test kit's TLS server with a private CA,
//! `WORKERS=16,2`). The README's ladder comes from one such run. To look
//! inside one rung (with `perf` or `heaptrack`), `LADDER_SERVE=60` only
//! serves for 60 s and prints the server's URL; then run the bench binary
//! with `LADDER_CHILD=<rung> URL=<url>/json` under the tool. Instructions
//! per request, which a loaded machine does not change, come from
//! valgrind's callgrind: the same child with `N=1000` and `N=3000`, the
//! difference of the two totals over 2,000.

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "support/peer_server.rs"]
mod peer_server;

#[path = "support/child.rs"]
mod child;

#[path = "support/work.rs"]
mod work;

use child::{env, median, usage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use work::body;

/// Counts every allocation (and reallocation) of the process, and, while
/// `TRACK` is set, the bytes live.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static TRACK: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicI64 = AtomicI64::new(0);

fn track(bytes: usize, sign: i64) {
    if TRACK.load(Ordering::Relaxed) {
        LIVE.fetch_add(sign * bytes as i64, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        track(layout.size(), 1);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(layout.size(), -1);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        track(layout.size(), 1);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        track(new_size, 1);
        track(layout.size(), -1);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROLE: &str = "LADDER_CHILD";

const RUNGS: [(&str, &str); 7] = [
    ("hand_rolled", "threads + ureq, channels"),
    ("submit_plain", "+ pool: queue, task, handle, stats"),
    ("submit_guarded", "+ the guard on every socket wait"),
    ("send", "+ the request path"),
    ("send_policies", "+ host policies, idle"),
    ("json", "+ decoding on the worker"),
    ("fire", "fire + flush, no handle"),
];

/// `n` ureq POSTs as closure jobs of `pool`, each on `agent`.
fn submit_all(pool: &reqpool::Pool, agent: &ureq::Agent, url: &str, n: usize) {
    // One URL and body for all, as the hand-rolled threads keep theirs.
    let (url, body): (std::sync::Arc<str>, _) = (url.into(), std::sync::Arc::new(body()));
    let all: Vec<_> = (0..n)
        .map(|_| {
            let (agent, url, body) = (agent.clone(), url.clone(), body.clone());
            pool.submit(move |_| {
                let v: serde_json::Value = agent
                    .post(&*url)
                    .send_json(&*body)?
                    .body_mut()
                    .read_json()?;
                Ok(v)
            })
        })
        .collect();
    for p in all {
        std::hint::black_box(p.wait().unwrap());
    }
}

fn send_all(pool: &reqpool::Pool, url: &str, n: usize) {
    let body = body();
    let all: Vec<_> = (0..n)
        .map(|_| pool.post(url).json_body(&body).send())
        .collect();
    for p in all {
        let v: serde_json::Value = p.wait().unwrap().json().unwrap();
        std::hint::black_box(v);
    }
}

/// The CA the server's certificate comes from, with `TLS=1` (PEM, from
/// the file the parent wrote).
fn ca() -> Option<&'static str> {
    static CA: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    CA.get_or_init(|| std::fs::read_to_string(std::env::var("LADDER_CA").ok()?).ok())
        .as_deref()
}

/// The plain ureq agent of the hand-rolled threads and `submit_plain`,
/// trusting the CA over TLS.
fn agent(workers: usize) -> ureq::Agent {
    let Some(pem) = ca() else {
        return work::plain_agent(workers);
    };
    let cert = ureq::tls::Certificate::from_pem(pem.as_bytes()).unwrap();
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
                .build(),
        )
        .max_idle_connections_per_host(workers)
        .build()
        .into()
}

/// A pool of `workers`, trusting the CA over TLS.
fn builder(workers: usize) -> reqpool::Builder {
    let b = reqpool::Pool::builder().workers(workers);
    match ca() {
        Some(pem) => b.tls_root_certs_pem(pem),
        None => b,
    }
}

fn pool(workers: usize) -> reqpool::Pool {
    builder(workers).build().unwrap()
}

fn rung(name: &str, url: &str, n: usize, workers: usize) {
    match name {
        "hand_rolled" => work::hand_rolled(&agent(workers), url, n, workers),
        "submit_plain" => submit_all(&pool(workers), &agent(workers), url, n),
        "submit_guarded" => {
            let pool = pool(workers);
            let agent = pool.agent().clone();
            submit_all(&pool, &agent, url, n);
        }
        "send" => send_all(&pool(workers), url, n),
        "send_policies" => {
            let pool = builder(workers)
                .max_per_host(workers * 4)
                .max_rate_per_host(1_000_000, Duration::from_secs(1))
                .max_rate_burst(1_000_000)
                .circuit_breaker(reqpool::Breaker::new().failures(1_000))
                .build()
                .unwrap();
            send_all(&pool, url, n);
        }
        "json" => work::reqpool_json(&pool(workers), url, n),
        "fire" => {
            let pool = pool(workers);
            let body = body();
            for _ in 0..n {
                pool.post(url).json_body(&body).fire().unwrap();
            }
            assert_eq!(pool.flush(), 0);
            assert_eq!(pool.stats().fired_failed, 0);
        }
        other => panic!("no rung {other}"),
    }
}

/// Heap bytes each finished handle keeps until it is waited on: `n`
/// closures returning a `u64`, then `n` sent POSTs (their response
/// included), all done before any handle is read.
fn kept(url: &str, n: usize) {
    fn held<T: Send + 'static>(
        pool: &reqpool::Pool,
        n: usize,
        make: impl Fn() -> reqpool::Pending<T>,
    ) -> f64 {
        let done = pool.stats().succeeded;
        // The handles themselves (32 bytes each) are the caller's.
        let mut all = Vec::with_capacity(n);
        TRACK.store(true, Ordering::SeqCst);
        let before = LIVE.load(Ordering::SeqCst);
        all.extend((0..n).map(|_| make()));
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while pool.stats().succeeded < done + n as u64 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let bytes = (LIVE.load(Ordering::SeqCst) - before) as f64 / n as f64;
        TRACK.store(false, Ordering::SeqCst);
        for p in all {
            std::hint::black_box(p.wait().unwrap());
        }
        bytes
    }
    let pool = pool(16);
    let body = body();
    // The connections are open and the stats' histograms made first.
    send_all(&pool, url, 64);
    let closure = held(&pool, n, || pool.submit(|_| Ok(0u64)));
    let sent = held(&pool, n, || pool.post(url).json_body(&body).send());
    println!("RESULT {closure} {sent}");
}

fn as_child(name: &str) {
    let url = std::env::var("URL").unwrap();
    if name == "kept" {
        return kept(&url, env("N", 20_000));
    }
    let n: usize = env("N", 20_000);
    let workers: usize = env("W", 16);
    // The first requests open the connections: not counted.
    rung(name, &url, workers * 4, workers);
    let (_, cpu0) = usage();
    let a0 = ALLOCS.load(Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    rung(name, &url, n, workers);
    let wall = t0.elapsed().as_secs_f64();
    let (_, cpu) = usage();
    let allocs = ALLOCS.load(Ordering::Relaxed) - a0;
    println!("RESULT {wall} {} {allocs}", cpu - cpu0);
}

fn main() {
    if let Ok(name) = std::env::var(ROLE) {
        return as_child(&name);
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    if let Ok(secs) = std::env::var("LADDER_SERVE") {
        println!("{}/json", peer_server::start(Duration::ZERO));
        std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(60)));
        return;
    }
    let runs: usize = env("RUNS", 3);
    let n: usize = env("N", 20_000);
    let sizes: Vec<usize> = child::list("WORKERS", "16,2");
    // `TLS=1`: over HTTPS, to the test kit's TLS server (a thread per
    // connection, rustls) with a private CA the children trust.
    let tls = std::env::var("TLS").is_ok_and(|v| v == "1");
    let (url, _tls_server, ca_file) = if tls {
        let ca = common::TestCa::new();
        let server = common::TlsServer::start(&ca, None, common::default_routes);
        let file =
            std::env::temp_dir().join(format!("reqpool-ladder-ca-{}.pem", std::process::id()));
        std::fs::write(&file, &ca.ca_pem).unwrap();
        (server.url("/json"), Some(server), Some(file))
    } else {
        (
            format!("{}/json", peer_server::start(Duration::ZERO)),
            None,
            None,
        )
    };
    let ca_env = ca_file
        .as_ref()
        .map_or(String::new(), |f| f.display().to_string());
    let over = if tls { " over TLS" } else { "" };
    println!("ladder: {n} POSTs at no delay{over}, medians of {runs} interleaved runs");
    let held = child::run_child(&[
        (ROLE, "kept".to_owned()),
        ("URL", url.clone()),
        ("N", n.to_string()),
        ("LADDER_CA", ca_env.clone()),
    ]);
    println!(
        "a finished handle not yet waited on keeps {:.0} bytes (a closure's u64), {:.0} bytes (a sent POST, its response included)",
        held[0], held[1]
    );
    println!(
        "| workers | rung | adds | req/s | CPU µs per request | × hand-rolled | allocations per request |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for &w in &sizes {
        let mut got: Vec<Vec<Vec<f64>>> = vec![Vec::new(); RUNGS.len()];
        for _ in 0..runs {
            for (i, (name, _)) in RUNGS.iter().enumerate() {
                got[i].push(child::run_child(&[
                    (ROLE, (*name).to_owned()),
                    ("URL", url.clone()),
                    ("N", n.to_string()),
                    ("W", w.to_string()),
                    ("LADDER_CA", ca_env.clone()),
                ]));
            }
        }
        let med = |i: usize, f: &dyn Fn(&Vec<f64>) -> f64| median(got[i].iter().map(f).collect());
        let per = n as f64;
        let base_cpu = med(0, &|r| r[1] / per * 1e6);
        for (i, (name, adds)) in RUNGS.iter().enumerate() {
            let cpu = med(i, &|r| r[1] / per * 1e6);
            println!(
                "| {w} | {name} | {adds} | {:.0} | {cpu:.1} | {:.2} | {:.1} |",
                med(i, &|r| per / r[0]),
                cpu / base_cpu,
                med(i, &|r| r[2] / per),
            );
        }
    }
    if let Some(f) = ca_file {
        let _ = std::fs::remove_file(f);
    }
}
