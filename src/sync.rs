//! Small synchronization pieces shared by the pool: a lock that ignores
//! poisoning, the one wait-until-deadline loop, and a counting gate.

use crate::deadline::Deadline;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// A mutex lock that ignores poisoning: every critical section here is a
/// plain move of a value, which cannot leave the data half-changed.
pub(crate) fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Blocks on `cv` while `blocked` says so, until `deadline`. Returns the
/// guard and true if `blocked` turned false (false: the deadline passed).
/// The one loop every bounded condition wait of the crate goes through.
pub(crate) fn wait_while<'a, X>(
    cv: &Condvar,
    mut guard: MutexGuard<'a, X>,
    deadline: Deadline,
    mut blocked: impl FnMut(&mut X) -> bool,
) -> (MutexGuard<'a, X>, bool) {
    loop {
        if !blocked(&mut guard) {
            return (guard, true);
        }
        match deadline.instant() {
            None => guard = cv.wait(guard).unwrap_or_else(|e| e.into_inner()),
            Some(_) => {
                let left = deadline.left();
                if left.is_zero() {
                    return (guard, false);
                }
                guard = cv
                    .wait_timeout(guard, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
}

/// A counter that can be waited on until it reaches zero.
pub(crate) struct Gate {
    count: AtomicUsize,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Gate {
    pub(crate) fn new() -> Gate {
        Gate {
            count: AtomicUsize::new(0),
            lock: Mutex::new(()),
            zero: Condvar::new(),
        }
    }

    pub(crate) fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Take the lock so a waiter between its check and its wait
            // cannot miss the wake-up.
            let _g = lock(&self.lock);
            self.zero.notify_all();
        }
    }

    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Blocks until the count is zero or `deadline` passes; returns the count.
    pub(crate) fn wait_zero(&self, deadline: Deadline) -> usize {
        let g = lock(&self.lock);
        let _ = wait_while(&self.zero, g, deadline, |_| self.get() > 0);
        self.get()
    }
}
