//! The workers: the loop each one runs, which pool a thread belongs to,
//! and what happens to one job on its way through a worker.

use crate::pool::Inner;
use crate::task::{Control, QUEUED};
use crossbeam_channel::Receiver;
use std::sync::Arc;

/// What each worker thread runs: jobs from the queue until the pool is
/// gone. Nothing escapes it by unwinding (a job's panic is caught in the
/// task), so the pool never loses a worker.
pub(crate) fn worker_loop(id: usize, rx: Receiver<Dispatch>) {
    crate::task::become_worker_of(id);
    while let Ok(job) = rx.recv() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || job.go()));
    }
}

/// One queued job on its way to a worker.
pub(crate) struct Dispatch {
    pub(crate) inner: Arc<Inner>,
    pub(crate) task: Arc<dyn Control>,
    /// The job was handed a host slot while parked.
    pub(crate) holds_slot: bool,
}

impl Dispatch {
    pub(crate) fn new(inner: Arc<Inner>, task: Arc<dyn Control>) -> Self {
        Dispatch {
            inner,
            task,
            holds_slot: false,
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
        if self.task.state() != QUEUED {
            // Cancelled, expired, or run inline by a waiter.
            self.release();
            return;
        }
        if inner.caps_hosts()
            && !self.holds_slot
            && let Some(host) = self.task.host().cloned()
        {
            match inner.acquire_host(&host, self) {
                Some(back) => self = back,
                None => return, // parked until a slot frees up
            }
            self.holds_slot = true;
        }
        self.task.run();
        self.release();
    }
}
