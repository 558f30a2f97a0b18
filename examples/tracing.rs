//! One slow batch item as a span tree: each job's span sits under the
//! caller's span although it ran on a worker, with its time in the queue
//! apart from its attempts, and each retry an attempt span of its own.
//! A tiny subscriber (the test kit's `Recorder`) prints the tree; a real program would export the
//! same spans to Jaeger or any OpenTelemetry backend
//! (`tracing-opentelemetry`), whose HTTP client field names they use.
//!
//! `cargo run --features tracing --example tracing`

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Reply, Server};
use reqpool::{Pool, Retry};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn main() {
    let recorder = common::Recorder::installed();

    // A scoring API: 150 ms a call; item 3 is answered 503 once.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let server = Server::with_handler(move |req, _| {
        let first_of_3 = req.q("item") == Some("3") && c.fetch_add(1, Ordering::SeqCst) == 0;
        std::thread::sleep(Duration::from_millis(150));
        if first_of_3 {
            Reply::json(503, json!({"detail": "busy"}))
        } else {
            Reply::json(200, json!({"score": 0.9}))
        }
    });
    let pool = Pool::builder()
        .workers(2)
        .retry(Retry::standard().backoff(Duration::from_millis(50), Duration::from_millis(50)))
        .build()
        .expect("a pool");

    let batch = tracing::info_span!("nightly_batch", items = 5);
    let batch_id = batch.id().expect("a span").into_u64();
    batch.in_scope(|| {
        let jobs: Vec<_> = (1..=5)
            .map(|i| {
                pool.post(&server.url("/score"))
                    .query("item", i)
                    .json_body(&json!({"item": i}))
                    .idempotency_key(&format!("score-{i}")) // a POST may be retried
                    .json::<Value>()
            })
            .collect();
        for r in reqpool::wait_all(jobs) {
            r.expect("scored");
        }
    });
    drop(batch);
    drop(pool);
    recorder.print_tree(
        batch_id,
        &[
            "http.request.method",
            "url.full",
            "reqpool.queue_wait_ms",
            "reqpool.attempts",
            "http.request.resend_count",
            "http.response.status_code",
            "error.type",
            "reqpool.retry",
            "reqpool.outcome",
        ],
    );
}
