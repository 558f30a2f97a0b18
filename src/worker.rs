//! What a worker does with one job, and which pool and seat a thread
//! belongs to: a job on its way through a worker is cancelled, parked
//! behind its host's cap, put off until its host's rate allows it, refused
//! by an open circuit, or run (the threads themselves are `crew.rs`'s).

use crate::error::Error;
use crate::hosts::{Admit, Admitted};
use crate::task::{Queued, State};
use std::sync::Arc;
use std::time::Instant;

/// What a job on its way to a worker needs of its pool: no more, so that
/// this module does not depend on the pool's insides.
pub(crate) trait Queue: Send + Sync {
    /// True once a `shutdown_now` began: a job taken now is cancelled.
    fn cancelling(&self) -> bool;
    /// True if the pool has per-host policies (a job must be admitted).
    fn caps_hosts(&self) -> bool;
    /// Asks the host's policies whether the job starts now.
    fn admit(&self, host: &Arc<str>, job: Dispatch) -> Admit<Dispatch>;
    /// Holds a job that waits for its host's token until `at`, off the
    /// workers.
    fn throttle(&self, at: Instant, job: Dispatch);
    /// Passes a finished job's host slot on to a parked job, or frees it.
    fn release_host(&self, host: &Arc<str>);
}

thread_local! {
    /// The id of the pool whose worker this thread is (0: none).
    static WORKER_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

thread_local! {
    /// This worker's number in its pool (0 on other threads).
    static SEAT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as worker number `seat` of pool `id`, for good.
pub(crate) fn become_worker_of(id: usize, seat: usize) {
    WORKER_OF.with(|w| w.set(id));
    SEAT.with(|s| s.set(seat));
}

/// The number of the worker on this thread (0 on other threads).
pub(crate) fn seat() -> usize {
    SEAT.with(std::cell::Cell::get)
}

/// True if the calling thread is a worker of pool `id`: a wait there on a
/// queued job of that pool must run it instead.
pub(crate) fn on_worker_of(id: usize) -> bool {
    id != 0 && WORKER_OF.with(std::cell::Cell::get) == id
}

/// One queued job on its way to a worker.
pub(crate) struct Dispatch {
    inner: Arc<dyn Queue>,
    pub(crate) task: Arc<dyn Queued>,
    /// The job holds a slot of its host's cap.
    holds_slot: bool,
    /// The job holds a token of its host's rate limit.
    has_token: bool,
}

impl Admitted for Dispatch {
    fn has_token(&self) -> bool {
        self.has_token
    }
    fn set_token(&mut self) {
        self.has_token = true;
    }
    fn holds_slot(&self) -> bool {
        self.holds_slot
    }
    fn set_slot(&mut self) {
        self.holds_slot = true;
    }
    fn started(&self) -> bool {
        self.task.begun()
    }
    fn start_clock(&self) -> Option<std::time::Instant> {
        self.task.start_clock().instant()
    }
}

impl Dispatch {
    pub(crate) fn new(inner: Arc<dyn Queue>, task: Arc<dyn Queued>) -> Self {
        Dispatch {
            inner,
            task,
            holds_slot: false,
            has_token: false,
        }
    }

    /// Resolves the job as cancelled without running it (and passes on a
    /// host slot it holds).
    pub(crate) fn cancel(self) {
        self.task.cancel();
        self.release();
    }

    fn release(&self) {
        if self.holds_slot
            && let Some(h) = self.task.host()
        {
            self.inner.release_host(h);
        }
    }

    /// Runs on a worker: cancel, park behind a host cap, or run one step
    /// (a job that sleeps between steps has put itself in the timer).
    pub(crate) fn go(mut self) {
        let inner = Arc::clone(&self.inner);
        if inner.cancelling() {
            self.cancel();
            return;
        }
        if self.task.state() != State::Queued {
            // Cancelled, expired, or run inline by a waiter.
            self.release();
            return;
        }
        if inner.caps_hosts()
            && let Some(host) = self.task.host().cloned()
        {
            match inner.admit(&host, self) {
                Admit::Go(back) => self = back,
                Admit::Parked => return, // until a slot of its host frees up
                Admit::Later(job, at) => {
                    inner.throttle(at, job); // until its token is due
                    return;
                }
                Admit::TooLate(job) => {
                    // The wait counts against the job's limit: one that
                    // would outlast it fails now, unsent.
                    let err = job.task.timeout_error(crate::error::Phase::Throttled);
                    job.task.reject(err);
                    return;
                }
                Admit::Refuse(job, retry_in) => {
                    job.task.reject(Error::CircuitOpen {
                        host: host.to_string(),
                        retry_in,
                    });
                    return;
                }
            }
        }
        self.task.run();
        self.release();
    }
}
