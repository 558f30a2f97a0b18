//! Counters of a pool and their snapshot, `Stats`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The live counters, updated by the workers with relaxed atomics.
pub(crate) struct Counters {
    workers: usize,
    submitted: AtomicU64,
    queued: AtomicU64,
    pub(crate) running: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) fired: AtomicU64,
    pub(crate) fired_failed: AtomicU64,
}

impl Counters {
    pub(crate) fn new(workers: usize) -> Counters {
        Counters {
            workers,
            submitted: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            running: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            fired: AtomicU64::new(0),
            fired_failed: AtomicU64::new(0),
        }
    }

    pub(crate) fn queued(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn left_queue(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self, _started: Instant, ok: bool, panicked: bool) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        if ok {
            self.succeeded.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if panicked {
            self.panicked.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            workers: self.workers,
            submitted: g(&self.submitted),
            queued: g(&self.queued),
            running: g(&self.running),
            succeeded: g(&self.succeeded),
            failed: g(&self.failed),
            panicked: g(&self.panicked),
            cancelled: g(&self.cancelled),
            closed: g(&self.closed),
            fired: g(&self.fired),
            fired_failed: g(&self.fired_failed),
        }
    }
}

/// A snapshot of a pool's counters, from [`Pool::stats`](crate::Pool::stats).
///
/// The counters are read one by one without a lock, so a snapshot taken
/// while jobs run may be off by the jobs that moved during the read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Worker threads.
    pub workers: usize,
    /// Jobs ever queued (requests, closures, fired jobs).
    pub submitted: u64,
    /// Jobs waiting for a worker now.
    pub queued: u64,
    /// Jobs running now.
    pub running: u64,
    /// Jobs that finished with `Ok`.
    pub succeeded: u64,
    /// Jobs that finished with an error (panics included).
    pub failed: u64,
    /// Jobs that panicked (also counted in `failed`).
    pub panicked: u64,
    /// Jobs cancelled before they started.
    pub cancelled: u64,
    /// Jobs dropped unrun because the pool was closed.
    pub closed: u64,
    /// Fire-and-forget jobs ever fired.
    pub fired: u64,
    /// Fire-and-forget jobs that failed.
    pub fired_failed: u64,
}
