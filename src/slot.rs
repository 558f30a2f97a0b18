//! The result slot of one job: a oneshot that lives inside the task's own
//! allocation, filled once by whoever finishes the job and taken once by
//! its `Pending`.
//!
//! A waiter blocks on the slot's condition variable; the one who fills it
//! wakes it only if someone sleeps there, so a result collected by a
//! spinning or late waiter costs no system call. Helpers that wait on many
//! handles at once (`wait_any`) register a watcher: the index of the
//! handle is sent on their channel when its result lands.

use crate::deadline::Deadline;
use crate::error::Error;
use crate::sync::{lock, wait_while};
use crossbeam_channel::Sender;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex};

/// A continuation that receives a result.
pub(crate) type Then<T> = Box<dyn FnOnce(Result<T, Error>) + Send>;

/// What a slot holds.
enum Held<T> {
    /// Nothing yet.
    Empty,
    /// The result, not collected yet (an error boxed: most results are
    /// values, and the slot is as large as what it holds).
    Ready(Result<T, Box<Error>>),
    /// Nothing: the result goes to this continuation when it comes.
    Then(Then<T>),
    /// The result was handed out (or given up on).
    Spent,
}

/// Helpers' channels, each with the index they know this handle by.
type Watchers = Vec<(Sender<usize>, usize)>;

struct Inner<T> {
    held: Held<T>,
    /// Threads blocked on the condition variable.
    sleepers: u32,
    /// Helpers waiting on many handles: (their channel, this handle's
    /// index). Boxed: rare, and a slot lives as long as its handle.
    watchers: Option<Box<Watchers>>,
}

/// The delivery end and the collecting end of one result.
pub(crate) struct Slot<T> {
    inner: Mutex<Inner<T>>,
    filled: Condvar,
}

impl<T: Send> Slot<T> {
    pub(crate) fn new() -> Self {
        Slot {
            inner: Mutex::new(Inner {
                held: Held::Empty,
                sleepers: 0,
                watchers: None,
            }),
            filled: Condvar::new(),
        }
    }

    /// A slot that holds `result` already.
    pub(crate) fn ready(result: Result<T, Error>) -> Self {
        let slot = Slot::new();
        lock(&slot.inner).held = Held::Ready(result.map_err(Box::new));
        slot
    }

    /// Fills the slot, or runs its continuation, once; a later delivery
    /// is dropped (the result was given up on, or delivered already).
    pub(crate) fn deliver(&self, result: Result<T, Error>) {
        let mut inner = lock(&self.inner);
        match std::mem::replace(&mut inner.held, Held::Spent) {
            Held::Empty => {
                inner.held = Held::Ready(result.map_err(Box::new));
                for (tx, index) in inner.watchers.take().into_iter().flat_map(|w| *w) {
                    // Watchers use channels with room for every handle.
                    let _ = tx.try_send(index);
                }
                if inner.sleepers > 0 {
                    self.filled.notify_all();
                }
            }
            Held::Then(f) => {
                drop(inner);
                // A continuation that panics must not take the worker down.
                let _ = catch_unwind(AssertUnwindSafe(move || f(result)));
            }
            held @ (Held::Ready(_) | Held::Spent) => inner.held = held,
        }
    }

    /// Takes the result if it is there. `Some(Err(Usage))` if it was
    /// taken already.
    pub(crate) fn try_take(&self) -> Option<Result<T, Error>> {
        take(&mut lock(&self.inner).held)
    }

    /// Blocks until the result is there or `until` passes; takes it.
    pub(crate) fn take_by(&self, until: Deadline) -> Option<Result<T, Error>> {
        let mut inner = lock(&self.inner);
        if let Some(r) = take(&mut inner.held) {
            return Some(r);
        }
        inner.sleepers += 1;
        let (mut inner, _) = wait_while(&self.filled, inner, until, |i| {
            matches!(i.held, Held::Empty | Held::Then(_))
        });
        inner.sleepers -= 1;
        take(&mut inner.held)
    }

    /// True if a take would not block.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(lock(&self.inner).held, Held::Ready(_) | Held::Spent)
    }

    /// Gives the result up: a later take says it was taken, a later
    /// delivery is dropped.
    pub(crate) fn spend(&self) {
        lock(&self.inner).held = Held::Spent;
    }

    /// Sends the result to `f` instead, on the thread that delivers it,
    /// or runs `f` here at once if it is there already.
    pub(crate) fn then(&self, f: Then<T>) {
        let mut inner = lock(&self.inner);
        match take(&mut inner.held) {
            None => inner.held = Held::Then(f),
            Some(r) => {
                drop(inner);
                f(r);
            }
        }
    }

    /// Sends `index` on `tx` when the result lands. True if it is there
    /// already (nothing is registered then).
    pub(crate) fn watch(&self, tx: &Sender<usize>, index: usize) -> bool {
        let mut inner = lock(&self.inner);
        if !matches!(inner.held, Held::Empty) {
            return true;
        }
        let watchers = inner.watchers.get_or_insert_default();
        if !watchers.iter().any(|(w, _)| w.same_channel(tx)) {
            watchers.push((tx.clone(), index));
        }
        false
    }

    /// Removes the watcher registered with `tx`.
    pub(crate) fn unwatch(&self, tx: &Sender<usize>) {
        let mut inner = lock(&self.inner);
        if let Some(w) = inner.watchers.as_mut() {
            w.retain(|(w, _)| !w.same_channel(tx));
            if w.is_empty() {
                inner.watchers = None;
            }
        }
    }
}

/// Takes a ready result out of `held`.
fn take<T>(held: &mut Held<T>) -> Option<Result<T, Error>> {
    match std::mem::replace(held, Held::Spent) {
        Held::Ready(r) => Some(r.map_err(|e| *e)),
        Held::Spent => Some(Err(Error::usage(
            "the result of this handle was already taken",
        ))),
        other => {
            *held = other;
            None
        }
    }
}

/// The typed face of a job: where its result of type `T` is.
pub(crate) trait Sink<T>: Send + Sync {
    fn slot(&self) -> &Slot<T>;
}

impl<T: Send> Sink<T> for Slot<T> {
    fn slot(&self) -> &Slot<T> {
        self
    }
}
