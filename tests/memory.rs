//! Memory that ends with the job: a finished job's request (URL, headers,
//! a 64 KiB body, its closure) is dropped when the job ends, and its
//! `Pending` keeps only the result. Its own test binary, so that the peak
//! RSS it reads is this test's alone.

mod common;

use common::*;
use reqpool::{Pending, Pool};
use serde_json::Value;

#[test]
fn twenty_thousand_64_kib_posts_kept_as_handles_stay_flat() {
    const N: usize = 20_000;
    const BODY: usize = 64 * 1024;
    let server = Server::start();
    let pool = Pool::builder().workers(8).max_queued(64).build().unwrap();
    let url = server.url("/json");
    let before = peak_rss_kib();
    let handles: Vec<Pending<Value>> = bounded(LIMIT * 4, {
        let pool = pool.clone();
        move || {
            (0..N)
                .map(|i| {
                    let body = vec![b'a' + (i % 26) as u8; BODY];
                    pool.post(&url).body(body).json::<Value>()
                })
                .collect()
        }
    });
    // Every handle kept until all are done: the pattern the README leads
    // with (dispatch everything, collect later).
    let handles = bounded(LIMIT, move || {
        while !handles.iter().all(Pending::is_finished) {
            std::thread::yield_now();
        }
        handles
    });
    let grew_mib = (peak_rss_kib() - before) / 1024;
    let ok = reqpool::wait_all(handles)
        .iter()
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(ok, N);
    // 20,000 bodies of 64 KiB are 1,250 MiB: kept by their handles, the
    // peak would be that much higher.
    assert!(grew_mib < 200, "peak RSS grew by {grew_mib} MiB");
    eprintln!("peak RSS grew by {grew_mib} MiB for {N} POSTs of 64 KiB, handles kept");
}
