//! What the face and the dispatcher share, whatever the store: the pool
//! and the settings, the count of jobs in flight, the wake-ups of the
//! dispatcher (work, answers, closing) and of the flushers (answers
//! written), the dispatcher's health and the enqueuers' spans.

use super::health::Health;
use super::lineage::Lineage;
use super::options::OutboxOptions;
use super::pause::Paused;
use crate::deadline::Deadline;
use crate::pool::Pool;
use crate::sync::{lock, wait_while};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The state of one outbox that is not its store's.
pub(super) struct Shared {
    /// The pool that delivers.
    pub(super) pool: Pool,
    pub(super) options: OutboxOptions,
    /// The dispatcher's heartbeat and last error.
    pub(super) health: Health,
    /// The spans jobs were enqueued in.
    pub(super) lineage: Lineage,
    /// Endpoints a `410 Gone` paused.
    pub(super) paused: Paused,
    /// Jobs handed to the pool whose answers are not written yet.
    claimed: AtomicUsize,
    /// Wakes the dispatcher (a new job, a delivery done, closing) and
    /// the housekeeper (closing).
    signal: Mutex<Signal>,
    cond: Condvar,
    /// Wakes the flushers when answers were written.
    written: Condvar,
}

/// What the dispatcher waits for.
#[derive(Debug, Default)]
struct Signal {
    /// The outbox is being dropped.
    closing: bool,
    /// Jobs were enqueued or re-queued since the last claim.
    work: bool,
    /// Deliveries ended since the last write.
    answered: bool,
    /// Writes of answers so far (the flushers look again after each).
    writes: u64,
}

impl Shared {
    pub(super) fn new(pool: &Pool, options: OutboxOptions) -> Shared {
        Shared {
            pool: pool.clone(),
            options,
            health: Health::default(),
            lineage: Lineage::default(),
            paused: Paused::default(),
            claimed: AtomicUsize::new(0),
            signal: Mutex::new(Signal::default()),
            cond: Condvar::new(),
            written: Condvar::new(),
        }
    }

    /// Jobs handed to the pool whose answers are not written yet.
    pub(super) fn in_flight(&self) -> usize {
        self.claimed.load(Ordering::Acquire)
    }

    /// `n` more jobs handed to the pool.
    pub(super) fn handed(&self, n: usize) {
        self.claimed.fetch_add(n, Ordering::AcqRel);
    }

    /// The answers of `n` jobs written: they leave the count in flight,
    /// and the next claim comes after the gathering pause, not after an
    /// idle wait.
    pub(super) fn settled(&self, n: usize) {
        self.claimed.fetch_sub(n, Ordering::AcqRel);
        lock(&self.signal).work = true;
    }

    /// Tells the dispatcher there is work to claim (after its gathering
    /// pause).
    pub(super) fn more_work(&self) {
        // Only the first since the last claim wakes it: the rest wait for
        // the same claim anyway.
        let was = std::mem::replace(&mut lock(&self.signal).work, true);
        if !was {
            self.cond.notify_all();
        }
    }

    /// The dispatcher claims now: work that comes from here on wakes it
    /// again.
    pub(super) fn claiming(&self) {
        lock(&self.signal).work = false;
    }

    /// Tells the dispatcher there are answers to write (at once).
    pub(super) fn answered(&self) {
        let was = std::mem::replace(&mut lock(&self.signal).answered, true);
        if !was {
            self.cond.notify_all();
        }
    }

    /// A write of answers ended (written or not): the flushers look again.
    pub(super) fn wrote(&self) {
        lock(&self.signal).writes += 1;
        self.written.notify_all();
    }

    /// Writes of answers so far.
    pub(super) fn writes(&self) -> u64 {
        lock(&self.signal).writes
    }

    /// Blocks a flusher until a write of answers after the `seen`th, or
    /// `until`.
    pub(super) fn wait_written(&self, seen: u64, until: Deadline) {
        let guard = lock(&self.signal);
        let _ = wait_while(&self.written, guard, until, |s| s.writes == seen);
    }

    /// Blocks the dispatcher until answers come, work comes and
    /// `next_claim` passes, `idle_until` passes, or the outbox closes.
    pub(super) fn wait_for_work(&self, next_claim: Instant, idle_until: Instant) {
        let mut g = lock(&self.signal);
        loop {
            // Work that comes meanwhile moves the end up to the next claim:
            // the wait starts again with it.
            let work = g.work;
            let until = Deadline::at(if work { next_claim } else { idle_until });
            g = wait_while(&self.cond, g, until, |s| {
                !s.closing && !s.answered && s.work == work
            })
            .0;
            if g.closing || g.answered || g.work == work {
                break;
            }
        }
        g.answered = false;
    }

    /// Sleeps `d`, or until the outbox closes: true if it closes.
    pub(super) fn pause(&self, d: Duration) -> bool {
        let g = lock(&self.signal);
        wait_while(&self.cond, g, Deadline::after(d), |s| !s.closing)
            .0
            .closing
    }

    /// True once the outbox is being dropped.
    pub(super) fn closing(&self) -> bool {
        lock(&self.signal).closing
    }

    /// The outbox is being dropped: the dispatcher and the housekeeper
    /// stop.
    pub(super) fn close(&self) {
        lock(&self.signal).closing = true;
        self.cond.notify_all();
    }
}
