//! Peak memory with 100,000 jobs pushed by a producer that outruns the
//! workers: unbounded queue against `max_queued(64)`. Each variant runs in
//! its own process so its peak RSS (VmHWM, Linux) is its own.
//!
//! `cargo run --release --example queue_memory`

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

const JOBS: usize = 100_000;

fn main() {
    if let Some(mode) = std::env::args().nth(1) {
        child(&mode);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    println!("{JOBS} jobs (each holds a 256-byte payload and runs ~20 µs) through 4 workers");
    for mode in ["unbounded", "bounded"] {
        let out = Command::new(&exe).arg(mode).output().expect("run child");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

fn child(mode: &str) {
    let mut b = reqpool::Pool::builder().workers(4);
    if mode == "bounded" {
        b = b.max_queued(64);
    }
    let pool = b.build().expect("pool");
    let base = common::peak_rss_kib();
    let start = Instant::now();
    for i in 0..JOBS {
        let payload = vec![i as u8; 256];
        pool.fire(move |_| {
            let until = Instant::now() + Duration::from_micros(20);
            while Instant::now() < until {
                std::hint::black_box(&payload);
            }
            Ok(())
        })
        .expect("fire");
    }
    let queued_at_end = pool.stats().queued;
    pool.flush();
    println!(
        "{mode:>9}: peak RSS {:.1} MiB (+{:.1} MiB over the idle pool), queued when the producer finished: {queued_at_end}, total {:.2} s",
        common::peak_rss_kib() as f64 / 1024.0,
        (common::peak_rss_kib() - base) as f64 / 1024.0,
        start.elapsed().as_secs_f64()
    );
}
