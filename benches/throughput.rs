//! Requests per second against in-process servers answering at once, over
//! http and over https (the https server closes each connection after 20
//! requests, so new connections and TLS session resumption count), for:
//!
//! - `serial_ureq`: one ureq agent on one thread;
//! - `hand_rolled/N`: N std threads sharing one ureq agent, jobs in and
//!   results out over crossbeam channels — the code a user would write;
//! - `pooled/N`: reqpool with N workers.
//!
//! Each iteration is 1,000 POSTs with a JSON body and a parsed JSON reply.
//! `cargo bench --bench throughput` (criterion reports elements/s); the
//! ratios in the README come from one such run.
//!
//! The https group uses rustls. For the platform's TLS library on both
//! sides (the hand-rolled agent and the pool):
//! `REQPOOL_BENCH_TLS=native cargo bench --features native-tls --bench throughput -- https`.

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "support/config.rs"]
mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const BATCH: u64 = 1000;

/// True if the https group runs on native-tls (see the module docs).
fn native() -> bool {
    std::env::var("REQPOOL_BENCH_TLS").is_ok_and(|v| v == "native")
}

fn agent(ca: Option<&common::TestCa>, workers: usize) -> ureq::Agent {
    let idle = workers.max(3);
    match ca {
        Some(ca) if native() => common::tls_agent(ca, ureq::tls::TlsProvider::NativeTls, idle),
        Some(ca) => common::tls_agent(ca, ureq::tls::TlsProvider::Rustls, idle),
        None => ureq::Agent::config_builder()
            .proxy(None)
            .max_idle_connections_per_host(idle)
            .build()
            .into(),
    }
}

fn group(c: &mut Criterion, name: &str, url: &str, ca: Option<&common::TestCa>) {
    let body = serde_json::json!({"tag": "bench", "items": [{"id": 1}]});
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(BATCH));
    let serial = agent(ca, 1);
    g.bench_function("serial_ureq", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let v: serde_json::Value = serial
                    .post(url)
                    .send_json(&body)
                    .unwrap()
                    .body_mut()
                    .read_json()
                    .unwrap();
                black_box(v);
            }
        })
    });
    for workers in [2usize, 16] {
        let hand = common::HandRolled::start(workers, &agent(ca, workers), url, &body);
        g.bench_with_input(
            BenchmarkId::new("hand_rolled", workers),
            &workers,
            |b, _| b.iter(|| hand.run(BATCH as usize)),
        );
        let mut builder = reqpool::Pool::builder().workers(workers);
        if let Some(ca) = ca {
            builder = builder.tls_root_certs_pem(&ca.ca_pem).tls_native(native());
        }
        let pool = builder.build().unwrap();
        g.bench_with_input(BenchmarkId::new("pooled", workers), &workers, |b, _| {
            b.iter(|| {
                let all: Vec<_> = (0..BATCH)
                    .map(|_| pool.post_json::<serde_json::Value>(url, &body))
                    .collect();
                for p in all {
                    black_box(p.wait().unwrap());
                }
            })
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    let server = common::Server::start();
    group(c, "throughput", &server.url("/json"), None);
    let ca = common::TestCa::new();
    let tls = common::TlsServer::start(&ca, Some(20), common::default_routes);
    let name = if native() {
        "throughput_https_native"
    } else {
        "throughput_https"
    };
    group(c, name, &tls.url("/json"), Some(&ca));
}

criterion_group! {
    name = benches;
    config = support::config(10);
    targets = bench
}
criterion_main!(benches);
