//! One job's shared state: who runs it, who cancels it, where its result goes.
//!
//! A task is in one of four states. Exactly one party wins the move out of
//! `QUEUED`: the worker that picks it up, a waiter on a worker thread that runs
//! it inline (so a job waiting on a queued job cannot deadlock the pool), or a
//! cancel. The winner is the only one who ever delivers a result, so every
//! result is delivered exactly once.

use crate::error::{Error, panic_message};
use crossbeam_channel::Sender;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

pub(crate) const QUEUED: u8 = 0;
pub(crate) const RUNNING: u8 = 1;
pub(crate) const DONE: u8 = 2;
pub(crate) const CANCELLED: u8 = 3;

/// Where a finished job's result goes.
pub(crate) enum Deliver<T> {
    /// Into the `Pending`'s own channel (the common case).
    Channel(Sender<Result<T, Error>>),
    /// Into a continuation (`Pending::map`, completion sets), run on the
    /// thread that finishes the job.
    Then(Box<dyn FnOnce(Result<T, Error>) + Send>),
    /// Already delivered.
    Spent,
}

/// The type-erased face of a task, held by its `Pending`.
pub(crate) trait Control: Send + Sync {
    fn state(&self) -> u8;
    /// Moves a queued task to cancelled and resolves it. False if it had
    /// already started or finished.
    fn cancel(&self) -> bool;
    /// Runs a queued task on the calling thread (a worker, or a waiter that
    /// runs it inline). False if it had already started, finished or been
    /// cancelled.
    fn run(&self) -> bool;
}

/// The typed face: where a result of type `T` goes.
pub(crate) trait Sink<T>: Send + Sync {
    /// Replaces where the result goes, if it has not been delivered yet.
    /// Gives the continuation back if it is too late.
    fn set_then(&self, f: Then<T>) -> Result<(), Then<T>>;
}

/// A continuation that receives a result.
pub(crate) type Then<T> = Box<dyn FnOnce(Result<T, Error>) + Send>;

/// The delivery end of one result.
pub(crate) struct Slot<T>(Mutex<Deliver<T>>);

impl<T: Send> Slot<T> {
    pub(crate) fn new(deliver: Deliver<T>) -> Self {
        Slot(Mutex::new(deliver))
    }

    pub(crate) fn deliver(&self, result: Result<T, Error>) {
        // The lock is held while sending so that `set_then` never sees a
        // half-delivered result. A bounded(1) send of the only message never
        // blocks; a continuation runs outside of the lock.
        let mut slot = lock(&self.0);
        match std::mem::replace(&mut *slot, Deliver::Spent) {
            Deliver::Channel(tx) => {
                // The receiver may be gone (the `Pending` was dropped): fine.
                let _ = tx.send(result);
            }
            Deliver::Then(f) => {
                drop(slot);
                // A continuation that panics must not take the worker down.
                let _ = catch_unwind(AssertUnwindSafe(move || f(result)));
            }
            Deliver::Spent => {}
        }
    }
}

impl<T: Send> Sink<T> for Slot<T> {
    fn set_then(&self, f: Then<T>) -> Result<(), Then<T>> {
        let mut slot = lock(&self.0);
        match &*slot {
            Deliver::Channel(_) | Deliver::Then(_) => {
                *slot = Deliver::Then(f);
                Ok(())
            }
            Deliver::Spent => Err(f),
        }
    }
}

/// The control of a result that exists without a job (resolved at once, or
/// relayed from another task).
pub(crate) struct Finished;

impl Control for Finished {
    fn state(&self) -> u8 {
        DONE
    }
    fn cancel(&self) -> bool {
        false
    }
    fn run(&self) -> bool {
        false
    }
}

/// A job of type `F` producing `T`, with its delivery.
pub(crate) struct Task<T, F> {
    state: AtomicU8,
    queued_at: std::time::Instant,
    job: Mutex<Option<F>>,
    slot: Slot<T>,
    hooks: Hooks,
}

/// What the pool wants to know when a task starts and ends.
pub(crate) type Hooks = Option<std::sync::Arc<dyn TaskHooks>>;

/// Accounting callbacks from the pool.
pub(crate) trait TaskHooks: Send + Sync {
    /// The task left the queue without running: it was cancelled.
    fn skipped(&self);
    /// The task is about to run; returns the start time, passed to
    /// `finished`.
    fn started(&self) -> std::time::Instant;
    /// The task's result has been delivered (continuations included).
    fn delivered(&self);
    /// The task ran: it was queued at `queued_at` and started at `started`.
    fn finished(
        &self,
        queued_at: std::time::Instant,
        started: std::time::Instant,
        ok: bool,
        panicked: bool,
    );
}

impl<T, F> Task<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    pub(crate) fn new(job: F, deliver: Deliver<T>, hooks: Hooks) -> Self {
        Task {
            state: AtomicU8::new(QUEUED),
            queued_at: std::time::Instant::now(),
            job: Mutex::new(Some(job)),
            slot: Slot::new(deliver),
            hooks,
        }
    }

    fn execute(&self) {
        let job = lock(&self.job).take();
        let Some(job) = job else { return };
        let started = self.hooks.as_ref().map(|h| h.started());
        let (result, panicked) = match catch_unwind(AssertUnwindSafe(job)) {
            Ok(r) => (r, false),
            Err(payload) => (
                Err(Error::Panicked {
                    message: panic_message(&*payload),
                }),
                true,
            ),
        };
        if let (Some(h), Some(t)) = (&self.hooks, started) {
            h.finished(self.queued_at, t, result.is_ok(), panicked);
        }
        self.state.store(DONE, Ordering::Release);
        self.slot.deliver(result);
        if let Some(h) = &self.hooks {
            h.delivered();
        }
    }
}

impl<T, F> Sink<T> for Task<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    fn set_then(&self, f: Then<T>) -> Result<(), Then<T>> {
        self.slot.set_then(f)
    }
}

impl<T, F> Control for Task<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    fn cancel(&self) -> bool {
        if self
            .state
            .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            drop(lock(&self.job).take());
            if let Some(h) = &self.hooks {
                h.skipped();
            }
            self.slot.deliver(Err(Error::Cancelled));
            if let Some(h) = &self.hooks {
                h.delivered();
            }
            true
        } else {
            false
        }
    }

    fn run(&self) -> bool {
        if self
            .state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.execute();
            true
        } else {
            false
        }
    }
}

/// A mutex lock that ignores poisoning: every critical section here is a
/// plain move of a value, which cannot leave the data half-changed.
pub(crate) fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
