//! What the pool adds to a job: submit -> wait of a no-op closure, and of a
//! batch of 1,000, against the floor of a bare crossbeam-channel round trip
//! between two threads.
//!
//! `cargo bench --bench overhead`

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

#[path = "support/config.rs"]
mod support;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use crossbeam_channel::bounded;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("overhead");

    // The floor: one message to another thread and one back.
    let (to_tx, to_rx) = bounded::<u64>(1);
    let (back_tx, back_rx) = bounded::<u64>(1);
    let echo = std::thread::spawn(move || {
        while let Ok(v) = to_rx.recv() {
            if back_tx.send(v).is_err() {
                break;
            }
        }
    });
    g.bench_function("channel_round_trip", |b| {
        b.iter(|| {
            to_tx.send(black_box(1)).unwrap();
            black_box(back_rx.recv().unwrap())
        })
    });

    let pool = reqpool::Pool::new(1);
    g.bench_function("submit_wait_noop", |b| {
        b.iter(|| black_box(pool.submit(|_| Ok(black_box(1u64))).wait().unwrap()))
    });

    let pool4 = reqpool::Pool::new(4);
    g.bench_function("batch_1000_noop", |b| {
        b.iter_batched(
            || (),
            |()| {
                let all: Vec<_> = (0..1000u64).map(|i| pool4.submit(move |_| Ok(i))).collect();
                for p in all {
                    black_box(p.wait().unwrap());
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    drop(to_tx);
    let _ = echo.join();
}

criterion_group! {
    name = benches;
    config = support::config(100);
    targets = bench
}
criterion_main!(benches);
