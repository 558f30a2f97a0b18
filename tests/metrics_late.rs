//! Metrics with a recorder installed late (feature `metrics`): jobs
//! queued and running before the program installs its recorder end after
//! it. Nothing may panic, and no gauge may go below zero. A process of
//! its own: the recorder is global and this test needs it absent at first.
//! `cargo test --features metrics --test metrics_late`.
#![cfg(feature = "metrics")]

mod common;

use common::*;
use metrics_exporter_prometheus::PrometheusBuilder;
use reqpool::Pool;
use serde_json::json;

/// The value of each sample of gauge `name`.
fn gauges(text: &str, name: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect()
}

#[test]
fn a_recorder_installed_late_panics_nothing_and_no_gauge_goes_negative() {
    let server = Server::with_handler(|_, _| Reply::json(200, json!({})));
    let pool = Pool::new(1);
    // One job running (a held worker), one request queued behind it.
    let mut hold = hold_workers(&pool, 1);
    let queued = pool.get(&server.url("/x")).send();
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    hold.release();
    let r = bounded(LIMIT, move || queued.wait());
    assert_eq!(r.unwrap().status(), 200);
    for job in std::mem::take(&mut hold.jobs) {
        bounded(LIMIT, move || job.wait()).unwrap();
    }
    // A request after, wholly under the recorder.
    let after = pool.get(&server.url("/y")).send();
    bounded(LIMIT, move || after.wait()).unwrap();
    assert_eq!(pool.stats().panicked, 0);
    let text = handle.render();
    for name in [
        "reqpool_jobs_queued",
        "reqpool_jobs_running",
        "reqpool_jobs_scheduled",
    ] {
        for v in gauges(&text, name) {
            assert!(v >= 0.0, "{name} is {v}:\n{text}");
        }
    }
    assert!(!gauges(&text, "reqpool_jobs_running").is_empty(), "{text}");
}
