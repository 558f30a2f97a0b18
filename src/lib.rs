//! Dispatch slow HTTP calls to a pool of worker threads now, collect the
//! answers later — from plain synchronous code, without an async runtime.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize)]
//! struct Job<'a> { tag: &'a str, items: Vec<Item> }
//! #[derive(Serialize)]
//! struct Item { id: u32 }
//! #[derive(Deserialize)]
//! struct Reply { result: String }
//!
//! let pool = reqpool::Pool::new(8);
//! let url = "http://127.0.0.1:8000/process";
//!
//! // Dispatch: each call returns at once; the POSTs run on the workers.
//! let replies: Vec<_> = ["a", "b", "c"]
//!     .iter()
//!     .map(|tag| pool.post_json::<Reply>(url, &Job { tag, items: vec![Item { id: 1 }, Item { id: 2 }] }))
//!     .collect();
//!
//! do_local_work(); // overlaps with the requests
//!
//! // Collect: wait() blocks until that answer (or its typed error) is there.
//! for reply in replies {
//!     match reply.wait() {
//!         Ok(r) => println!("{}", r.result),
//!         Err(reqpool::Error::Status { code: 422, body, .. }) => eprintln!("rejected: {body}"),
//!         Err(e) => eprintln!("failed: {e}"),
//!     }
//! }
//! # fn do_local_work() {}
//! ```
//!
//! A [`Pool`] owns a fixed number of worker threads and one shared
//! [`ureq::Agent`], so keep-alive connections are reused across workers.
//! Every submit method — [`Pool::post_json`], [`Pool::get_json`],
//! [`Pool::request`] for everything else, [`Pool::submit`] for any closure —
//! returns a [`Pending<T>`] at once.
//!
//! # Many at once
//!
//! [`wait_all`] (submission order, every error kept), [`wait_any`] (the
//! first to finish and the rest), [`first_success`] (cancels what has not
//! started; every error if nothing succeeds), [`fallback`] (tiers one after
//! another), [`Completions`] (completion order, tags, deadline, progress,
//! a set that grows while you iterate), [`Pool::map_ordered`] (a lazy
//! input, results in order, bounded in flight), [`Pool::burst`] (parallel
//! preparation, then a simultaneous release that cannot deadlock) and
//! [`RequestBuilder::poll`] (start a server-side task and poll it to the end).
//!
//! # Fire-and-forget, shutdown, backpressure
//!
//! [`Pool::fire`] and [`RequestBuilder::fire`] run a job nobody waits for,
//! with accounting in [`Pool::stats`], failures to an
//! [`on_error`](Builder::on_error) hook and the `log` facade, and
//! [`Pool::flush`] to wait for them. [`Pool::shutdown`],
//! [`Pool::shutdown_now`] and [`Pool::shutdown_timeout`] close the pool;
//! [`Builder::max_queued`] bounds the queue so a fast producer blocks
//! instead of filling memory.
//!
//! # Retries, hedging, per-host caps
//!
//! Off by default; see [`Retry`] (attempts, full-jitter backoff,
//! `Retry-After`, POST only when provably unsent or with an
//! `Idempotency-Key`, a pool-wide retry budget), [`Hedge`] (a second copy
//! of a slow idempotent request) and [`Builder::max_per_host`].
//!
//! # Blocking
//!
//! [`Pending::wait`] blocks the calling thread until its job has finished;
//! [`Pending::wait_timeout`] and [`Pending::try_wait`] bound or avoid the
//! wait. Every job has a time limit (30 s from its start unless set),
//! enforced on the socket of every request it makes, and every wait form
//! gives up shortly after it, so no server can hang the caller.
//!
//! Waiting on a job from inside another job of the same pool is the classic
//! thread-pool deadlock (every worker waiting for a job that needs a free
//! worker). Here, any wait (a `Pending`'s, [`wait_any`], [`first_success`],
//! [`Completions`], …) on a job that has not started yet runs it inline on
//! the waiting worker instead, and [`Pool::flush`] and [`Pool::shutdown`]
//! called from a job do not wait on themselves.
//!
//! # Errors
//!
//! Everything that can go wrong is one [`Error`]: the server's error status
//! with its body (raw, and parsed when it is JSON), a timeout with the phase
//! that ran out, a transport failure (refused, DNS, reset), a reply that does
//! not decode, a request that could not be built, a cancelled or panicked
//! job, a closed pool. Its `Display` names the request, with credentials and
//! secret query values redacted; the caller's secrets never appear in a
//! `Display` or `Debug`, even where a server echoes them.
//!
//! | what happened | error |
//! |---|---|
//! | status 400 and up | [`Error::Status`] `{ code, body, json, .. }` |
//! | invalid URL, bad header, body that does not serialize | [`Error::InvalidRequest`] (at once, no worker used) |
//! | nothing listens / DNS fails / connection reset | [`Error::Transport`] with a [`TransportKind`] |
//! | too slow (connect, response, body, queue, deadline) | [`Error::Timeout`] with a [`Phase`] |
//! | reply is not the JSON asked for | [`Error::Decode`] with a snippet of the body |
//! | reply larger than the cap | [`Error::TooLarge`] |
//! | redirect on a request with a body, without a `Location`, or to one that does not resolve | [`Error::Redirect`] |
//! | the job panicked | [`Error::Panicked`] with the message |
//! | [`Pending::cancel`], `shutdown_now`, a loser of `first_success` | [`Error::Cancelled`] |
//! | the pool was shut down | [`Error::Closed`] |
//! | a configuration or usage mistake | [`Error::Usage`] |
//! | a burst called off | [`Error::Aborted`] |
//! | the server answered with nothing that fits | [`Error::NoMatch`] |
//! | retried and failed | [`Error::GaveUp`] with a [`GaveUpReason`] |
//!
//! # Panics in jobs
//!
//! A job that panics resolves its `Pending` with [`Error::Panicked`] and the
//! panic message; the pool keeps all its workers.
//!
//! # Dropping
//!
//! Dropping a [`Pending`] does not cancel its job: it still runs, and the
//! result is discarded. Dropping the last [`Pool`] handle blocks (up to the
//! [drain timeout](Builder::drain_timeout)) until queued and fire-and-forget
//! jobs are done, so work queued at the end of `main` is not lost; a pool
//! still alive at process exit (in a `static`, or held by its own jobs) is
//! drained at exit the same way.
//!
//! # Time limits
//!
//! A job's [`timeout`](Builder::timeout) runs from the moment a worker
//! starts it and covers all of it: every attempt, redirect and wait between
//! attempts of a request, a whole poll job, a closure. An opt-in
//! [`deadline`](Builder::deadline) runs from submission and includes the
//! queue. The limit is enforced on the socket: every connection of the
//! pool's agent caps each read and write at what is left of the limit of
//! the job running on that thread, so no server can hold a worker past it.
//! `Duration::MAX` is legal anywhere. ureq's `timeout_global` is never
//! used: in ureq 3.5 it resolves the host on a freshly spawned thread for
//! every request, which cuts throughput about six times.
//!
//! # Cargo features
//!
//! - `sqlite` (or its older name `outbox`): `Outbox` on a SQLite file
//!   (`Outbox::open`), requests written before `enqueue` returns and
//!   delivered with an `Idempotency-Key` until the server answered —
//!   across crashes and restarts; `Outbox::health` says whether delivery
//!   runs. SQLite is bundled (compiled from source).
//! - `redis`: the same `Outbox` on a Redis stream (`Outbox::redis`),
//!   shared by many processes on many machines, with leases, dead letters
//!   and a rate shared by every consumer. It compiles no SQLite; enable
//!   both features for both stores.
//! - `tracing`: a span per job and per attempt, with OpenTelemetry's HTTP
//!   client field names; an outbox delivery is a child of the span that
//!   enqueued it.
//! - `webhooks`: `reqpool::webhooks`, Standard Webhooks signatures
//!   (`webhook-id`, `webhook-timestamp`, `webhook-signature`, HMAC-SHA256
//!   with `whsec_` secrets) added to each attempt by a `before_attempt`
//!   hook, and the receiver's `Verifier`.
//! - `metrics`: `reqpool::metrics`, the pool's requests, attempts,
//!   latencies, queue, retries, breaker states and rate-limit waits
//!   through the `metrics` facade (OpenTelemetry's HTTP client names),
//!   and `watch_outbox` for an outbox's counts.
//! - `native-tls`, `platform-verifier`: the platform's TLS library or
//!   trust store instead of rustls with webpki roots.
//!
//! # ureq in the API
//!
//! [`ureq::Agent`] appears in this API ([`Pool::submit`],
//! [`Builder::agent`]); it is re-exported as [`reqpool::ureq`](ureq) so
//! you can name the exact version linked. A ureq major release is a
//! reqpool major release.
//!
//! # MSRV
//!
//! Rust 1.85. Raising it is a minor release, never a patch release.

mod agent;
mod attempt;
mod builder;
mod burst;
mod closure;
mod crew;
mod deadline;
mod error;
mod exchange;
mod flight;
mod hedge;
mod host_key;
mod hosts;
mod lifecycle;
mod many;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(any(feature = "sqlite", feature = "redis"))]
mod outbox;
mod pending;
mod poll;
mod pool;
mod prepare;
#[cfg(test)]
mod proptests;
mod redact;
mod request;
mod resolve;
mod response;
mod retry;
mod send;
mod slot;
mod spill;
mod state;
mod stats;
mod submit;
mod sync;
mod task;
mod timer;
mod tls;
mod trace;
mod urls;
mod wait;
#[cfg(feature = "webhooks")]
pub mod webhooks;
mod wire;
mod worker;

pub use crate::attempt::Attempt;
pub use crate::builder::Builder;
pub use crate::error::{Error, GaveUpReason, Phase, Secrets, StorageKind, TransportKind};
pub use crate::hedge::Hedge;
pub use crate::hosts::{AdaptiveConcurrency, Breaker};
pub use crate::lifecycle::Shutdown;
pub use crate::many::{
    AllFailed, Any, Completions, MapOrdered, Progress, fallback, first_success, wait_all, wait_any,
};
#[cfg(feature = "sqlite")]
pub use crate::outbox::Durability;
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub use crate::outbox::{
    DeadJob, Delivered, JobId, Outbox, OutboxHealth, OutboxOptions, OutboxStats,
};
#[cfg(all(feature = "metrics", any(feature = "sqlite", feature = "redis")))]
pub use crate::outbox::{OutboxWatcher, watch_outbox};
pub use crate::pending::Pending;
pub use crate::poll::PollJob;
pub use crate::pool::Pool;
pub use crate::request::RequestBuilder;
pub use crate::response::Response;
pub use crate::retry::Retry;
pub use crate::stats::{Latency, Stats};
pub use ureq;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
