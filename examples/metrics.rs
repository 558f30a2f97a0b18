//! The pool's and an outbox's metrics scraped as Prometheus text: the
//! `metrics-exporter-prometheus` recorder is installed, a batch runs
//! against a local server that fails some requests, the exporter's text
//! is served at `/metrics` on 127.0.0.1 and scraped once, like
//! Prometheus would. It also times the same batch before the recorder
//! is installed (the facade's calls are then no-ops) and after.
//!
//! `cargo run --release --features metrics,sqlite --example metrics`
//! (`REQUESTS=n` for another batch size).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Reply, Server, TempDir};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use reqpool::{Breaker, Error, Outbox, Pool, Retry};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `n` GETs (a tenth of the answers are 503s, retried), and the time.
fn batch(pool: &Pool, url: &str, n: usize) -> Duration {
    let t = Instant::now();
    let jobs: Vec<_> = (0..n)
        .map(|i| pool.get(&format!("{url}?i={i}")).send())
        .collect();
    let failed = reqpool::wait_all(jobs)
        .iter()
        .filter(|r| r.is_err())
        .count();
    if failed > 0 {
        println!("{failed} of {n} failed after 3 attempts (503 each time)");
    }
    t.elapsed()
}

fn main() -> Result<(), Error> {
    let n: usize = std::env::var("REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let server = Server::with_handler(move |req, _| {
        let k = h.fetch_add(1, Ordering::Relaxed);
        match req.path.as_str() {
            "/gone" => Reply::json(410, json!({})),
            _ if k % 10 == 9 => Reply::json(503, json!({})),
            _ => Reply::json(200, json!({"ok": true})),
        }
    });
    let pool = Pool::builder()
        .workers(8)
        .retry(Retry::standard().backoff(Duration::from_millis(1), Duration::from_millis(5)))
        .circuit_breaker(Breaker::new().failures(50))
        .build()?;
    let url = server.url("/items");
    batch(&pool, &url, 200); // warm up
    let without = batch(&pool, &url, n);

    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration".into()),
            &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("reqpool.queue.wait".into()),
                &[0.0001, 0.001, 0.01, 0.1, 1.0],
            )
        })
        .map_err(Error::other)?
        .install_recorder()
        .map_err(Error::other)?;
    reqpool::metrics::describe();
    let with = batch(&pool, &url, n);

    // An outbox with one dead job (a 410) and the rest delivered.
    let dir = TempDir::new("metrics-example");
    let outbox = Arc::new(Outbox::open(dir.file("calls.db"), &pool)?);
    outbox.enqueue(pool.post(&server.url("/gone")).body("{}"))?;
    for i in 0..20 {
        outbox.enqueue(pool.post(&url).json_body(&json!({"i": i})))?;
    }
    outbox.flush_timeout(Duration::from_secs(30));
    let watcher = reqpool::watch_outbox(Arc::clone(&outbox), "calls", Duration::from_millis(100))?;

    // The exporter's text, served at /metrics, scraped once.
    let h = handle.clone();
    let exporter = Server::with_handler(move |_, _| {
        let text = h.render();
        Reply::text(200, "text/plain; version=0.0.4", &text)
    });
    // The watcher's first round ran at once; one more period for a second.
    std::thread::sleep(Duration::from_millis(150));
    let t = Instant::now();
    let scraped = pool.get(&exporter.url("/metrics")).send().wait()?;
    let took = t.elapsed();
    let text = String::from_utf8_lossy(scraped.body()).into_owned();
    let shown = [
        "http_client_request_duration_count",
        "reqpool_requests",
        "reqpool_retries",
        "reqpool_breaker_state",
        "reqpool_jobs{",
        "reqpool_jobs_running",
        "reqpool_queue_wait_count",
        "reqpool_outbox_jobs",
        "reqpool_outbox_delivered",
    ];
    for line in text.lines() {
        if shown.iter().any(|s| line.starts_with(s)) {
            println!("{line}");
        }
    }
    println!(
        "{n} GETs (a tenth of the answers 503, retried), 8 workers: {:.0}/s before the recorder, {:.0}/s with it; \
         the scrape: {} lines, {} bytes, {:.1} ms; watcher running: {}",
        n as f64 / without.as_secs_f64(),
        n as f64 / with.as_secs_f64(),
        text.lines().count(),
        text.len(),
        took.as_secs_f64() * 1e3,
        watcher.is_running(),
    );
    Ok(())
}
