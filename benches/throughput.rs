//! Requests per second against the in-process server answering at once:
//! a serial loop on one ureq agent against the pool at 1, 4 and 16 workers.
//! Each iteration is 1,000 POSTs with a JSON body and a JSON reply.
//!
//! `cargo bench --bench throughput` (criterion reports elements/s).

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

const BATCH: u64 = 1000;

fn bench(c: &mut Criterion) {
    let server = common::Server::start();
    let url = server.url("/json");
    let body = serde_json::json!({"tag": "bench", "items": [{"id": 1}]});
    let mut g = c.benchmark_group("throughput");
    g.throughput(Throughput::Elements(BATCH));

    // The baseline: one agent, one thread, the same per-phase limits.
    let t = Some(Duration::from_secs(30));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_connect(t)
        .timeout_send_request(t)
        .timeout_send_body(t)
        .timeout_recv_response(t)
        .timeout_recv_body(t)
        .build()
        .into();
    g.bench_function("serial_ureq", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let v: serde_json::Value = agent
                    .post(&url)
                    .send_json(&body)
                    .unwrap()
                    .body_mut()
                    .read_json()
                    .unwrap();
                black_box(v);
            }
        })
    });

    for workers in [1usize, 4, 16] {
        let pool = reqpool::Pool::new(workers);
        g.bench_with_input(BenchmarkId::new("pooled", workers), &workers, |b, _| {
            b.iter(|| {
                let all: Vec<_> = (0..BATCH)
                    .map(|_| pool.post_json::<serde_json::Value>(&url, &body))
                    .collect();
                for p in all {
                    black_box(p.wait().unwrap());
                }
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
