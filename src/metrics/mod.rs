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

// The pool records through `record` directly (`hosts`, `stats` and
// `trace` sit below the outbox, which `watch` reads).
pub(crate) mod record;
#[cfg(any(feature = "sqlite", feature = "redis"))]
mod watch;

#[cfg(any(feature = "sqlite", feature = "redis"))]
pub use watch::{OutboxWatcher, watch_outbox};

/// Describes reqpool's metrics to the installed recorder (units and help
/// texts), the outbox's included when an outbox store is built in; an
/// exporter shows them with each metric. Call it once after installing
/// the recorder; metrics work without it.
pub fn describe() {
    record::describe_pool();
    #[cfg(any(feature = "sqlite", feature = "redis"))]
    watch::describe();
}
