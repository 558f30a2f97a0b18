//! The test kit: in-process servers on 127.0.0.1 (port 0) and what tests,
//! examples and benches share.
//!
//! - `server`: a small HTTP/1.1 server with keep-alive that routes to a
//!   handler; `routes`: the endpoints the tests use.
//! - `fault`: a raw `TcpListener` that misbehaves on purpose.
//! - `tls`: a private CA and a TLS server (in the `benches` package only).
//! - `paths`: every way a request reaches a pool, as one table.
//! - `child`: this test binary run again as a child process, temp folders.
//! - `peers`: the hand-rolled pool that benches compare against.
//! - `redis`: a real `redis-server` on a free port (feature `redis`).
//! - `stores`: outbox tests run on every store (feature `outbox`).
//! - `spans`: a `tracing` subscriber that keeps every span (feature
//!   `tracing`).
//!
//! Every thread here stops by itself: reads time out after 10 s of silence.
// Each test binary, example and bench uses a different part of it, and
// `pub` here is for those users, not for a public API.
#![allow(dead_code, unreachable_pub, unused_imports)]

mod child;
mod fault;
mod paths;
mod peers;
#[cfg(feature = "redis")]
mod redis;
mod routes;
mod server;
#[cfg(feature = "tracing")]
mod spans;
#[cfg(any(feature = "sqlite", feature = "redis"))]
mod stores;
// The TLS kit needs rcgen and rustls: only the `benches` package (which
// has them, and feature `tls-kit`) compiles it.
#[cfg(feature = "tls-kit")]
mod tls;

pub use child::*;
pub use fault::*;
pub use paths::*;
pub use peers::*;
#[cfg(feature = "redis")]
pub use redis::*;
pub use routes::*;
pub use server::*;
#[cfg(feature = "tracing")]
pub use spans::*;
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub use stores::*;
#[cfg(feature = "tls-kit")]
pub use tls::*;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The bound on any wait of a test: a bug fails the test instead of
/// hanging CI.
pub const LIMIT: Duration = Duration::from_secs(30);

/// How long any server-side wait may last before it gives up.
pub const SERVER_WAIT: Duration = Duration::from_secs(10);

/// Runs `f` on a thread and fails the test if it takes longer than `limit`
/// (the thread is left behind; the test process ends anyway).
pub fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not finish within {limit:?}: probably a hang")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the checked code panicked"),
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) of `t`, rounded up to
/// the next second.
pub fn http_date(t: std::time::SystemTime) -> String {
    httpdate::fmt_http_date(t + Duration::from_secs(1))
}

/// The peak resident set size of this process (VmHWM), in KiB; 0 off Linux.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// User + system CPU time of this process so far, in seconds; 0 off Linux.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // utime, stime in clock ticks (100 Hz)
}

/// The resident set size of this process now (VmRSS), in KiB; 0 off Linux.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// The threads of this process now; 0 off Linux.
pub fn os_threads() -> u64 {
    status_kib("Threads:")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Workers of a pool held busy by closures until `release` (or drop).
pub struct Hold {
    release: Option<crossbeam_channel::Sender<()>>,
    /// The holding jobs: `Ok(())` once released.
    pub jobs: Vec<reqpool::Pending<()>>,
}

impl Hold {
    /// Lets the holding jobs end.
    pub fn release(&mut self) {
        self.release = None;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
    }
}

/// Holds `n` workers of `pool` with jobs that wait until the `Hold` is
/// released (at most `LIMIT`); returns once all `n` run, so what is
/// submitted next queues behind them.
pub fn hold_workers(pool: &reqpool::Pool, n: usize) -> Hold {
    let (release, gate) = crossbeam_channel::bounded::<()>(0);
    let (started_tx, started) = crossbeam_channel::bounded::<()>(n);
    let jobs = (0..n)
        .map(|_| {
            let (gate, started) = (gate.clone(), started_tx.clone());
            pool.submit(move |_| {
                started.send(()).map_err(reqpool::Error::other)?;
                match gate.recv_timeout(LIMIT) {
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        Err(reqpool::Error::other("held past LIMIT"))
                    }
                    _ => Ok(()),
                }
            })
        })
        .collect();
    for _ in 0..n {
        started.recv_timeout(LIMIT).expect("a holding job started");
    }
    Hold {
        release: Some(release),
        jobs,
    }
}
