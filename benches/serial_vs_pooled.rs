//! The same batch of POSTs to a local server that answers after a fixed
//! delay: one after another (serial) against dispatch-all-then-collect
//! through pools of several sizes.
//!
//! `cargo bench --bench serial_vs_pooled`; groups are per server delay
//! (`serial_vs_pooled_5ms`, `_20ms`), ids are `serial/N` and `pooled-W/N`
//! for N requests through W workers.

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "support/config.rs"]
mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let server = common::Server::start();
    for delay_ms in [5u64, 20] {
        grid(c, &server, delay_ms);
    }
}

fn grid(c: &mut Criterion, server: &common::Server, delay_ms: u64) {
    let url = server.url(&format!("/delay?ms={delay_ms}"));
    let body = serde_json::json!({"tag": "bench", "items": [{"id": 1}]});
    let mut group = c.benchmark_group(format!("serial_vs_pooled_{delay_ms}ms"));
    for n in [8usize, 32] {
        let pool = reqpool::Pool::new(1);
        group.bench_with_input(BenchmarkId::new("serial", n), &n, |b, &n| {
            b.iter(|| {
                for _ in 0..n {
                    let r: serde_json::Value = pool.post_json(&url, &body).wait().unwrap();
                    black_box(r);
                }
            })
        });
        for workers in [4usize, 16] {
            let pool = reqpool::Pool::new(workers);
            group.bench_with_input(
                BenchmarkId::new(format!("pooled-{workers}"), n),
                &n,
                |b, &n| {
                    b.iter(|| {
                        let pending: Vec<_> = (0..n)
                            .map(|_| pool.post_json::<serde_json::Value>(&url, &body))
                            .collect();
                        for p in pending {
                            black_box(p.wait().unwrap());
                        }
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::config(10);
    targets = bench
}
criterion_main!(benches);
