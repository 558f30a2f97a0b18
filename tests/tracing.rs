//! `tracing` spans (feature `tracing`): a job span per request whose
//! parent is the span that was current where it was submitted (although
//! it runs on a worker), an attempt span per attempt inside it, with the
//! OpenTelemetry HTTP client field names, recorded by a subscriber.
//! `cargo test --features tracing --test tracing`.
#![cfg(feature = "tracing")]

mod common;

use common::*;
use reqpool::{Pool, Retry};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn recorder() -> &'static Recorder {
    Recorder::installed()
}

/// The spans whose `url.full` contains `marker`, with the spans by id.
fn spans_for(marker: &str) -> (Vec<(u64, SpanRec)>, BTreeMap<u64, SpanRec>) {
    let all = recorder().spans();
    let mut mine: Vec<(u64, SpanRec)> = all
        .iter()
        .filter(|(_, s)| s.fields.get("url.full").is_some_and(|u| u.contains(marker)))
        .map(|(id, s)| (*id, s.clone()))
        .collect();
    mine.sort_by_key(|(id, _)| *id);
    (mine, all)
}

/// The spans of `spans` named `name`.
fn named<'a>(spans: &'a [(u64, SpanRec)], name: &str) -> Vec<&'a (u64, SpanRec)> {
    spans.iter().filter(|(_, s)| s.name == name).collect()
}

#[test]
fn a_job_span_is_a_child_of_the_submitters_span_with_an_attempt_inside() {
    recorder();
    let server = Server::start();
    let pool = Pool::new(2);
    let url = format!("{}?api_key=s3cret-k3y&page=2", server.url("/echo"));
    let caller = tracing::info_span!("nightly_batch");
    let caller_id = caller.id().unwrap().into_u64();
    let job = caller.in_scope(|| pool.post(&url).json_body(&json!({"a": 1})).json::<Value>());
    bounded(LIMIT, move || job.wait()).unwrap();
    let (mine, all) = spans_for("/echo?");
    let (job, attempts) = (named(&mine, "reqpool.job"), named(&mine, "reqpool.attempt"));
    assert_eq!((job.len(), attempts.len()), (1, 1), "{mine:#?}");
    let (job_id, job) = job[0];
    assert_eq!(
        job.parent,
        Some(caller_id),
        "the caller's span is the parent"
    );
    assert_eq!(all[&caller_id].name, "nightly_batch");
    let f = &job.fields;
    assert_eq!(f["http.request.method"], "POST");
    assert_eq!(f["server.address"], "127.0.0.1");
    assert_eq!(f["reqpool.outcome"], "ok");
    assert_eq!(f["http.response.status_code"], "200");
    assert_eq!(f["reqpool.attempts"], "1");
    assert!(f["reqpool.queue_wait_ms"].parse::<f64>().unwrap() >= 0.0);
    // The URL is redacted: a secret-looking query value never shows.
    assert!(!f["url.full"].contains("s3cret-k3y"), "{}", f["url.full"]);
    assert!(f["url.full"].contains("page=2"), "{}", f["url.full"]);
    let (_, attempt) = attempts[0];
    assert_eq!(
        attempt.parent,
        Some(*job_id),
        "the attempt is inside the job"
    );
    assert_eq!(attempt.fields["http.request.resend_count"], "0");
    assert_eq!(attempt.fields["http.response.status_code"], "200");
    assert_eq!(attempt.fields["http.response.body.size"], "7");
}

#[test]
fn retries_are_attempt_spans_with_their_reasons() {
    recorder();
    let n = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&n);
    let server = Server::with_handler(move |_, _| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::json(503, json!({}))
        } else {
            Reply::json(200, json!({"ok": true}))
        }
    });
    let pool = Pool::builder()
        .retry(Retry::standard().backoff(Duration::from_millis(1), Duration::from_millis(5)))
        .build()
        .unwrap();
    let job = pool.get(&server.url("/retried")).json::<Value>();
    bounded(LIMIT, move || job.wait()).unwrap();
    let (mine, _) = spans_for("/retried");
    let (job, attempts) = (named(&mine, "reqpool.job"), named(&mine, "reqpool.attempt"));
    assert_eq!((job.len(), attempts.len()), (1, 2), "{mine:#?}");
    assert_eq!(job[0].1.fields["reqpool.attempts"], "2");
    let (first, second) = (&attempts[0].1.fields, &attempts[1].1.fields);
    assert_eq!(first["http.request.resend_count"], "0");
    assert_eq!(first["http.response.status_code"], "503");
    assert_eq!(first["error.type"], "503");
    assert!(first["reqpool.retry"].starts_with("after "), "{first:?}");
    assert_eq!(second["http.request.resend_count"], "1");
    assert_eq!(second["http.response.status_code"], "200");
    assert!(attempts.iter().all(|(_, a)| a.parent == Some(job[0].0)));
}

#[test]
fn a_fired_job_and_a_failure_are_traced_too() {
    recorder();
    let pool = Pool::new(1);
    let caller = tracing::info_span!("fire_and_forget");
    let caller_id = caller.id().unwrap().into_u64();
    caller.in_scope(|| pool.get(&closed_port_url("/refused-here")).fire().unwrap());
    assert_eq!(bounded(LIMIT, move || pool.flush()), 0);
    let (mine, _) = spans_for("/refused-here");
    let job = named(&mine, "reqpool.job")[0];
    assert_eq!(job.1.parent, Some(caller_id));
    assert_eq!(job.1.fields["reqpool.outcome"], "error");
    assert_eq!(job.1.fields["error.type"], "connection_refused");
}

#[test]
fn a_hedged_request_keeps_its_winners_outcome() {
    recorder();
    let n = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&n);
    // The first copy hangs for 20 s; the hedged copy answers at once.
    let server = Server::with_handler(move |_, _| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_secs(20));
        }
        Reply::json(200, json!({"ok": true}))
    });
    let pool = Pool::builder()
        .workers(2)
        .hedge(reqpool::Hedge::after(Duration::from_millis(20)))
        .build()
        .unwrap();
    let job = pool.get(&server.url("/hedged")).json::<Value>();
    bounded(LIMIT, move || job.wait()).unwrap();
    // Once both copies are over (the loser cancelled), the span closes.
    let closed = bounded(LIMIT, move || {
        loop {
            let (mine, _) = spans_for("/hedged");
            if let Some((_, job)) = named(&mine, "reqpool.job").first()
                && job.closed.is_some()
            {
                return job.clone();
            }
            std::thread::yield_now();
        }
    });
    assert_eq!(closed.fields["reqpool.outcome"], "ok", "{closed:?}");
    assert_eq!(closed.fields["http.response.status_code"], "200");
}

#[test]
fn every_way_in_through_the_request_builder_is_traced_under_its_caller() {
    recorder();
    let server = Server::start();
    let (pool, errors) = pool_with(Pool::builder().workers(2));
    for path in PATHS {
        let marker = format!("/traced-{path:?}");
        let caller = tracing::info_span!("caller");
        let caller_id = caller.id().unwrap().into_u64();
        let url = server.url(&marker);
        // The default routes answer an unknown path 404: the outcome is an
        // error, which is traced as well as a success.
        let _ = caller.in_scope(|| send_through(&pool, &errors, path, "POST", &url, true));
        let (mine, _) = spans_for(&marker);
        let jobs = named(&mine, "reqpool.job");
        if matches!(path, Path::Burst | Path::Submit) {
            // Closures use the agent directly: no spans of ours.
            assert!(mine.is_empty(), "{path:?}: {mine:#?}");
            continue;
        }
        assert_eq!(jobs.len(), 1, "{path:?}: {mine:#?}");
        let (job_id, job) = jobs[0];
        assert_eq!(job.parent, Some(caller_id), "{path:?}");
        let attempts = named(&mine, "reqpool.attempt");
        assert!(!attempts.is_empty(), "{path:?}");
        assert!(
            attempts.iter().all(|(_, a)| a.parent == Some(*job_id)),
            "{path:?}"
        );
    }
}

/// Traces cross the outbox's queue: a job enqueued inside a span is
/// delivered in a `reqpool.outbox.delivery` span (with the job's id and
/// attempt) that is that span's child, with the job span inside it —
/// every delivery of it, also a retry. Before: deliveries were root spans,
/// and the enqueuer's trace ended at `enqueue`.
#[cfg(feature = "sqlite")]
#[test]
fn an_outbox_delivery_is_a_child_of_the_span_that_enqueued_it() {
    recorder();
    let status = Arc::new(AtomicUsize::new(503));
    let (server, keys) = keyed_server(status.clone());
    let dir = TempDir::new("traced");
    let pool = Pool::new(2);
    let outbox = reqpool::Outbox::open(dir.file("calls.db"), &pool).unwrap();
    let url = format!("{}?traced-outbox=1", server.url("/orders"));
    let caller = tracing::info_span!("checkout");
    let caller_id = caller.id().unwrap().into_u64();
    let id = caller
        .in_scope(|| outbox.enqueue(pool.post(&url).idempotency_key("traced-1")))
        .unwrap();
    // The first delivery is answered 503, the second 200.
    let t0 = std::time::Instant::now();
    while keys.lock().unwrap().get("traced-1").is_none() {
        assert!(t0.elapsed() < LIMIT, "never delivered");
        std::thread::yield_now();
    }
    status.store(200, Ordering::SeqCst);
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let all = recorder().spans();
    let deliveries: Vec<_> = all
        .iter()
        .filter(|(_, s)| {
            s.name == "reqpool.outbox.delivery"
                && s.fields.get("reqpool.job_id") == Some(&id.0.to_string())
        })
        .collect();
    assert_eq!(deliveries.len(), 2, "{deliveries:#?}");
    for (d, span) in &deliveries {
        assert_eq!(span.parent, Some(caller_id), "{span:?}");
        let jobs: Vec<_> = all
            .values()
            .filter(|s| s.name == "reqpool.job" && s.parent == Some(**d))
            .collect();
        assert_eq!(jobs.len(), 1, "a job span inside each delivery");
        assert!(jobs[0].fields["url.full"].contains("traced-outbox"));
    }
    let attempts: Vec<_> = deliveries
        .iter()
        .map(|(_, s)| s.fields["reqpool.attempt"].clone())
        .collect();
    assert_eq!(attempts, ["1", "2"]);
}
