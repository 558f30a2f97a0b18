//! Metrics (feature `metrics`): the Prometheus exporter's recorder is
//! installed, requests go through every way in, through retries, an
//! open circuit, a rate limit and an outbox, and the exporter's text is
//! read back. `cargo test --features metrics,sqlite --test metrics`.
//!
//! One recorder per process: the tests share it and each looks at the
//! labels of its own server's port.
#![cfg(feature = "metrics")]

mod common;

use common::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reqpool::{Breaker, Pool};
use serde_json::json;
use std::sync::OnceLock;
use std::time::Duration;

fn exporter() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let h = PrometheusBuilder::new().install_recorder().unwrap();
        reqpool::metrics::describe();
        h
    })
}

/// The sum of the samples of `name` whose labels hold each of `with`.
fn sample(name: &str, with: &[&str]) -> f64 {
    exporter()
        .render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| with.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn port_of(url: &str) -> String {
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    format!("server_port=\"{port}\"")
}

#[test]
fn every_way_in_through_the_request_builder_is_counted_per_host_and_outcome() {
    exporter();
    let server = Server::with_handler(|req, _| match req.path.as_str() {
        "/missing" => Reply::json(404, json!({})),
        _ => Reply::json(200, json!({})),
    });
    let (pool, errors) = pool_with(Pool::builder().workers(2));
    let port = port_of(&server.url("/"));
    for path in PATHS {
        send_through(&pool, &errors, path, "POST", &server.url("/ok"), true).unwrap();
    }
    hits_when(&server, "/ok", PATHS.len());
    let missing = pool.get(&server.url("/missing")).send();
    assert_eq!(
        bounded(LIMIT, move || missing.wait()).unwrap_err().status(),
        Some(404)
    );
    // Every way through the request builder, not the closures (they use
    // the agent directly); a detached fire ends once written.
    let hooked = PATHS.len() - 2;
    let p = port.clone();
    bounded(LIMIT, move || {
        while sample("reqpool_requests", &[&p, "http_request_method=\"POST\""]) < hooked as f64 {
            std::thread::yield_now();
        }
    });
    let post = "http_request_method=\"POST\"";
    let ok = [post, &port, "reqpool_outcome=\"ok\""];
    assert_eq!(sample("reqpool_requests", &ok), (hooked - 1) as f64);
    assert_eq!(
        sample(
            "reqpool_requests",
            &[post, &port, "reqpool_outcome=\"written\""]
        ),
        1.0
    );
    // json, send, fire and the poll's first request were answered 200.
    let answered = [post, &port, "http_response_status_code=\"200\""];
    assert_eq!(
        sample("http_client_request_duration_count", &answered),
        (hooked - 1) as f64
    );
    let err = ["reqpool_outcome=\"error\"", "error_type=\"404\"", &port];
    assert_eq!(sample("reqpool_requests", &err), 1.0);
    assert_eq!(
        sample(
            "http_client_request_duration_count",
            &[&port, "error_type=\"404\""]
        ),
        1.0
    );
    // The pool's own: jobs and their queue wait, in seconds.
    assert!(sample("reqpool_jobs", &["reqpool_outcome=\"ok\""]) >= PATHS.len() as f64);
    assert!(sample("reqpool_queue_wait_count", &[]) >= PATHS.len() as f64);
    let text = exporter().render();
    assert!(
        text.contains("# TYPE http_client_request_duration summary"),
        "{text}"
    );
}

#[test]
fn retries_an_open_circuit_and_rate_limit_waits_are_counted() {
    exporter();
    // A 503 then a 200: one retry.
    let flaky = Server::with_handler(|_, shared| {
        if shared.requests.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            Reply::json(503, json!({}))
        } else {
            Reply::json(200, json!({}))
        }
    });
    let pool = Pool::builder()
        .retry(fast_retry())
        .max_rate_per_host(1_000, Duration::from_secs(1))
        .build()
        .unwrap();
    let port = port_of(&flaky.url("/"));
    let waits_before = sample("reqpool_rate_limit_waits", &[]);
    let jobs: Vec<_> = (0..5).map(|_| pool.get(&flaky.url("/x")).send()).collect();
    for r in bounded(LIMIT, move || reqpool::wait_all(jobs)) {
        r.unwrap();
    }
    assert_eq!(sample("reqpool_retries", &[&port]), 1.0);
    assert_eq!(
        sample(
            "http_client_request_duration_count",
            &[&port, "error_type=\"503\""]
        ),
        1.0
    );
    // The bucket starts with one token: the others waited for theirs.
    assert!(sample("reqpool_rate_limit_waits", &[]) > waits_before);

    // A refused port opens its circuit after 2 failures.
    let refused = closed_port_url("/x");
    let pool = Pool::builder()
        .circuit_breaker(
            Breaker::new()
                .failures(2)
                .cool_down(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = pool.get(&refused).send();
        assert!(bounded(LIMIT, move || r.wait()).is_err());
    }
    let port = port_of(&refused);
    assert_eq!(sample("reqpool_breaker_state", &[&port]), 1.0);
    assert!(
        sample(
            "reqpool_requests",
            &[&port, "error_type=\"connection_refused\""]
        ) >= 2.0
    );
}

#[cfg(feature = "sqlite")]
#[test]
fn an_outboxs_counts_come_from_its_watcher() {
    use std::sync::Arc;
    exporter();
    let dir = TempDir::new("metrics");
    let server = Server::with_handler(|req, _| match req.path.as_str() {
        "/gone" => Reply::json(410, json!({})),
        _ => Reply::json(200, json!({})),
    });
    let pool = Pool::new(2);
    let outbox = Arc::new(reqpool::Outbox::open(dir.file("calls.db"), &pool).unwrap());
    outbox
        .enqueue(pool.post(&server.url("/gone")).body("{}"))
        .unwrap();
    for i in 0..5 {
        outbox
            .enqueue(pool.post(&server.url("/ok")).json_body(&json!({"i": i})))
            .unwrap();
    }
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let watcher =
        reqpool::watch_outbox(Arc::clone(&outbox), "test-outbox", Duration::from_millis(5))
            .unwrap();
    assert!(watcher.is_running());
    let label = "reqpool_outbox=\"test-outbox\"";
    bounded(LIMIT, move || {
        while sample("reqpool_outbox_delivered", &[label]) < 5.0 {
            std::thread::yield_now();
        }
    });
    assert_eq!(
        sample("reqpool_outbox_jobs", &[label, "state=\"dead\""]),
        1.0
    );
    assert_eq!(
        sample("reqpool_outbox_jobs", &[label, "state=\"pending\""]),
        0.0
    );
    assert_eq!(sample("reqpool_outbox_delivering", &[label]), 1.0);
    assert_eq!(sample("reqpool_outbox_store_errors", &[label]), 0.0);
    assert_eq!(watcher.restarts(), 0);
    // A zero period is refused.
    let e = reqpool::watch_outbox(outbox, "x", Duration::ZERO).unwrap_err();
    assert!(matches!(e, reqpool::Error::Usage { .. }), "{e}");
    drop(watcher);
}

#[test]
fn labels_carry_no_secret_of_a_url() {
    exporter();
    let server = Server::with_handler(|req, _| match req.path.as_str() {
        "/fail" => Reply::json(500, json!({})),
        _ => Reply::json(200, json!({})),
    });
    let base = server.url("/");
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let pool = Pool::builder().retry(fast_retry()).build().unwrap();
    let urls = [
        format!("http://alice:hunter2-pw@{hostport}/ok?token=tok-SECRET-1&page=2"),
        format!("http://tok-SECRET-2@{hostport}/fail?api_key=tok-SECRET-3"),
        format!("http://{hostport}/ok?access_token=tok-SECRET-4#frag-SECRET-5"),
    ];
    for url in &urls {
        let r = pool.get(url).send();
        let _ = bounded(LIMIT, move || r.wait());
    }
    let text = exporter().render();
    for secret in ["hunter2", "alice", "SECRET"] {
        assert!(
            !text.contains(secret),
            "{secret} in the metrics:\n{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(sample("reqpool_requests", &[&port_of(&base)]) >= 3.0);
}

#[cfg(feature = "sqlite")]
#[test]
fn an_outbox_named_by_its_store_url_shows_no_password() {
    use std::sync::Arc;
    exporter();
    let dir = TempDir::new("metrics-name");
    let pool = Pool::new(1);
    let outbox = Arc::new(reqpool::Outbox::open(dir.file("calls.db"), &pool).unwrap());
    // A name a program may well pass: the store's URL, password included.
    let name = "redis://:hunter2-metrics@127.0.0.1:6379/0?password=pw2-metrics";
    let watcher =
        reqpool::watch_outbox(Arc::clone(&outbox), name, Duration::from_millis(5)).unwrap();
    bounded(LIMIT, move || {
        while !exporter()
            .render()
            .lines()
            .any(|l| l.starts_with("reqpool_outbox_delivering") && l.contains("127.0.0.1:6379"))
        {
            std::thread::yield_now();
        }
    });
    drop(watcher);
    let text = exporter().render();
    for secret in ["hunter2-metrics", "pw2-metrics"] {
        assert!(
            !text.contains(secret),
            "{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
