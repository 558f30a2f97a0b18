//! Metrics through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`): whatever recorder the program installed
//! (Prometheus, OpenTelemetry, StatsD, …) gets the pool's requests,
//! attempts and latencies per host and outcome, its queue, and, from
//! `watch_outbox` (with an outbox store, feature `sqlite` or `redis`), an outbox's counts. Without a recorder every call is
//! a no-op.
//!
//! Names and units follow OpenTelemetry's HTTP client conventions where
//! one exists; an exporter turns the dots into its own separator
//! (`http_client_request_duration` in Prometheus).
//!
//! | name | kind | unit | labels | what |
//! |---|---|---|---|---|
//! | `http.client.request.duration` | histogram | s | `http.request.method`, `server.address`, `server.port`, `http.response.status_code` or `error.type` | each attempt on the wire (a retry, a redirect hop, a hedged copy, a poll) |
//! | `reqpool.requests` | counter | | method, address, port, `reqpool.outcome` (`ok`, `error`, `written` for a detached fire), status or `error.type` | requests made through the request builder that ran, at their end (one refused before it ran, by an open circuit or a deadline passed in the queue, is in `reqpool.jobs` only) |
//! | `reqpool.retries` | counter | | method, address, port | attempts followed by another (a backoff, a `Retry-After`, a fresh connection, a new token) |
//! | `reqpool.breaker.state` | gauge | | `server.address`, `server.port` | 0 closed, 1 open, 2 half-open (one probe) |
//! | `reqpool.jobs` | counter | | `reqpool.outcome` (`ok`, `error`, `panicked`) | every job the pool ran (closures too) |
//! | `reqpool.job.duration` | histogram | s | | a job's run, first start to end, its waits between attempts included |
//! | `reqpool.queue.wait` | histogram | s | | the time a job waited for a worker |
//! | `reqpool.jobs.queued`, `.running`, `.scheduled` | gauge | | | jobs waiting for a worker, running (in flight), waiting between two steps |
//! | `reqpool.rate_limit.waits` | counter | | | waits for a token of a host's rate limit |
//! | `reqpool.rate_limit.waiting` | gauge | | | jobs waiting for one now |
//!
//! The outbox's metrics, recorded by the watcher of `watch_outbox` (with an outbox store, feature `sqlite` or `redis`)
//! (each with the label `reqpool.outbox`, the name it was given):
//! `reqpool.outbox.jobs` (gauge, label `state`: `pending`, `in_flight`,
//! `dead`), `reqpool.outbox.delivered` (counter), `reqpool.outbox.oldest_due.age`
//! (gauge, s; 0 when nothing is due), `reqpool.outbox.store_errors`,
//! `reqpool.outbox.panics`, `reqpool.outbox.lost` (counters),
//! `reqpool.outbox.delivering` (gauge, 1 or 0), `reqpool.outbox.paused`
//! (gauge: endpoints a `410 Gone` paused in this process) and
//! `reqpool.outbox.watch.failures` (counter: reads of the store the
//! watcher could not make).

use crate::error::Error;
use crate::host_key::HostKey;
use metrics::{Label, counter, gauge, histogram};
use std::time::{Duration, Instant};

/// The labels of one request: its method and host (the host key's name
/// and port: never a user or a password).
#[derive(Clone, Debug)]
pub(crate) struct Target {
    labels: [Label; 3],
}

impl Target {
    pub(crate) fn of(method: &str, url: &str) -> Target {
        let (address, port) = HostKey::of_url(url).map_or((String::new(), String::new()), |k| {
            (k.host().to_string(), k.port().to_string())
        });
        Target {
            labels: [
                Label::new("http.request.method", method.to_string()),
                Label::new("server.address", address),
                Label::new("server.port", port),
            ],
        }
    }

    fn with(&self, more: impl IntoIterator<Item = Label>) -> Vec<Label> {
        self.labels.iter().cloned().chain(more).collect()
    }
}

/// The label of an answer or a failure: the status code, or
/// `error.type` (a status, or a short class of the failure); none for a
/// success without a status (a poll job's end, a detached fire).
fn result_label(status: Option<u16>, err: Option<&Error>) -> Option<Label> {
    match (status, err) {
        (_, Some(e)) => Some(Label::new("error.type", crate::error::error_type(e))),
        (Some(code), None) if code > 0 => {
            Some(Label::new("http.response.status_code", code.to_string()))
        }
        _ => None,
    }
}

/// An attempt that began at `started` was answered `status`, or failed.
pub(crate) fn attempt_ended(
    t: &Target,
    started: Instant,
    status: Option<u16>,
    err: Option<&Error>,
) {
    let labels = t.with(result_label(status, err));
    histogram!("http.client.request.duration", labels).record(started.elapsed().as_secs_f64());
}

/// Another attempt follows this one.
pub(crate) fn retried(t: &Target) {
    counter!("reqpool.retries", t.with([])).increment(1);
}

/// A request ended: `Ok` with its last status, or an error.
pub(crate) fn request_ended(t: &Target, ok: bool, status: Option<u16>, err: Option<&Error>) {
    // A detached fire ends once written, with no status.
    let outcome = match (ok, status) {
        (true, Some(0)) => "written",
        (true, _) => "ok",
        (false, _) => "error",
    };
    let outcome = Label::new("reqpool.outcome", outcome);
    counter!(
        "reqpool.requests",
        t.with(std::iter::once(outcome).chain(result_label(status, err)))
    )
    .increment(1);
}

/// The circuit of `host` (a host key, `scheme://name:port`) is now
/// closed, open or half-open.
pub(crate) fn breaker(host: &str, open: bool, probing: bool) {
    let (address, port) = HostKey::of_url(host).map_or((String::new(), String::new()), |k| {
        (k.host().to_string(), k.port().to_string())
    });
    let state = if probing {
        2.0
    } else if open {
        1.0
    } else {
        0.0
    };
    gauge!("reqpool.breaker.state", "server.address" => address, "server.port" => port.to_string())
        .set(state);
}

/// How a job moved between the pool's states.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Move {
    Queued,
    Started,
    Slept,
    Resumed,
    /// Ended without running again, from the queue or a sleep.
    Skipped {
        scheduled: bool,
    },
}

pub(crate) fn moved(m: Move) {
    let (from, to) = match m {
        Move::Queued => (None, Some(Gauge::Queued)),
        Move::Started => (Some(Gauge::Queued), Some(Gauge::Running)),
        Move::Slept => (Some(Gauge::Running), Some(Gauge::Scheduled)),
        Move::Resumed => (Some(Gauge::Scheduled), Some(Gauge::Running)),
        Move::Skipped { scheduled: true } => (Some(Gauge::Scheduled), None),
        Move::Skipped { scheduled: false } => (Some(Gauge::Queued), None),
    };
    shift(from, to);
}

/// The job gauges, in the order `COUNTS` keeps them.
#[derive(Clone, Copy)]
enum Gauge {
    Queued,
    Running,
    Scheduled,
    Waiting,
}

const GAUGES: [&str; 4] = [
    "reqpool.jobs.queued",
    "reqpool.jobs.running",
    "reqpool.jobs.scheduled",
    "reqpool.rate_limit.waiting",
];

/// Every pool's jobs in each gauge's state, counted whether or not a
/// recorder is installed, so that a recorder installed late is *set* to
/// the true count: a job queued before it was installed and started after
/// would otherwise be decremented out of a gauge it never entered (-1).
/// One lock, so that the last value set is the last value counted.
static COUNTS: std::sync::Mutex<[i64; 4]> = std::sync::Mutex::new([0; 4]);

/// Moves one job out of `from` into `to`, and sets both gauges.
fn shift(from: Option<Gauge>, to: Option<Gauge>) {
    let mut counts = crate::sync::lock(&COUNTS);
    for (g, by) in [(from, -1), (to, 1)] {
        if let Some(g) = g {
            let n = &mut counts[g as usize];
            *n = n.saturating_add(by);
            gauge!(GAUGES[g as usize]).set((*n).max(0) as f64);
        }
    }
}

/// A job ran to its end (`outcome`: `ok`, `error`, `panicked`, or
/// `cancelled`, which was counted when it was cancelled).
pub(crate) fn job_ended(queue_wait: Duration, run: Duration, outcome: &'static str) {
    shift(Some(Gauge::Running), None);
    if outcome == "cancelled" {
        return;
    }
    counter!("reqpool.jobs", "reqpool.outcome" => outcome).increment(1);
    histogram!("reqpool.queue.wait").record(queue_wait.as_secs_f64());
    histogram!("reqpool.job.duration").record(run.as_secs_f64());
}

/// A job began (true) or ended (false) waiting for a rate-limit token.
pub(crate) fn throttled(waiting: bool) {
    if waiting {
        counter!("reqpool.rate_limit.waits").increment(1);
        shift(None, Some(Gauge::Waiting));
    } else {
        shift(Some(Gauge::Waiting), None);
    }
}

/// Describes the pool's metrics to the installed recorder (units and help
/// texts); an exporter shows them with each metric. Call it once after
/// installing the recorder; metrics work without it. (An outbox's
/// watcher describes the outbox's when it starts.)
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "http.client.request.duration",
        Unit::Seconds,
        "Duration of each HTTP request attempt on the wire"
    );
    describe_counter!(
        "reqpool.requests",
        "Requests made through the request builder, at their end"
    );
    describe_counter!("reqpool.retries", "Attempts followed by another");
    describe_gauge!(
        "reqpool.breaker.state",
        "Circuit per host: 0 closed, 1 open, 2 half-open"
    );
    describe_counter!("reqpool.jobs", "Jobs the pool ran, by outcome");
    describe_histogram!(
        "reqpool.job.duration",
        Unit::Seconds,
        "A job's run, first start to end"
    );
    describe_histogram!(
        "reqpool.queue.wait",
        Unit::Seconds,
        "Time a job waited for a worker"
    );
    describe_gauge!("reqpool.jobs.queued", "Jobs waiting for a worker");
    describe_gauge!("reqpool.jobs.running", "Jobs running (in flight)");
    describe_gauge!("reqpool.jobs.scheduled", "Jobs waiting between two steps");
    describe_counter!(
        "reqpool.rate_limit.waits",
        "Waits for a token of a host's rate limit"
    );
    describe_gauge!(
        "reqpool.rate_limit.waiting",
        "Jobs waiting for a rate-limit token now"
    );
}
