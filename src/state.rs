//! A task's life as one atomic word: the state in the low byte, the number
//! of sleeps (a ticket) above it. Every move out of queued, running or
//! sleeping is one compare-and-swap, so exactly one party wins it: the
//! worker, a waiter that runs the job inline, the timer that wakes it, a
//! cancel, a shutdown, or a waiter that expires it. Model-checked with
//! `loom` (`RUSTFLAGS="--cfg loom" cargo test --release --lib state`).

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) const QUEUED: u8 = 0;
pub(crate) const RUNNING: u8 = 1;
pub(crate) const DONE: u8 = 2;
pub(crate) const CANCELLED: u8 = 3;
pub(crate) const SLEEPING: u8 = 4;

fn pack(ticket: u32, state: u8) -> u32 {
    (ticket << 8) | u32::from(state)
}

fn state_of(word: u32) -> u8 {
    (word & 0xff) as u8
}

/// The state of one task.
#[derive(Debug)]
pub(crate) struct TaskState(AtomicU32);

/// A step in progress: the word it started from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Running(u32);

impl TaskState {
    pub(crate) fn new() -> TaskState {
        TaskState(AtomicU32::new(pack(0, QUEUED)))
    }

    pub(crate) fn get(&self) -> u8 {
        state_of(self.0.load(Ordering::Acquire))
    }

    fn swap_from(&self, from: u32, to: u32) -> bool {
        self.0
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Queued → `to` (running, or done for an expiry or a refusal).
    pub(crate) fn take_queued(&self, to: u8) -> Option<Running> {
        let word = self.0.load(Ordering::Acquire);
        (state_of(word) == QUEUED && self.swap_from(word, pack(word >> 8, to)))
            .then_some(Running(word))
    }

    /// Queued or sleeping → cancelled. Returns what it was.
    pub(crate) fn cancel_waiting(&self) -> Option<u8> {
        let mut word = self.0.load(Ordering::Acquire);
        loop {
            let s = state_of(word);
            if s != QUEUED && s != SLEEPING {
                return None;
            }
            match self.0.compare_exchange(
                word,
                pack(word >> 8, CANCELLED),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(s),
                Err(w) => word = w,
            }
        }
    }

    /// Running → cancelled (a cancel in flight).
    pub(crate) fn cancel_running(&self) -> bool {
        let word = self.0.load(Ordering::Acquire);
        state_of(word) == RUNNING && self.swap_from(word, pack(word >> 8, CANCELLED))
    }

    /// Running → done, unless a cancel in flight won.
    pub(crate) fn finish(&self) -> bool {
        let word = self.0.load(Ordering::Acquire);
        state_of(word) == RUNNING && self.swap_from(word, pack(word >> 8, DONE))
    }

    /// Running (the step that started at `r`) → sleeping with a new
    /// ticket, unless a cancel in flight won.
    pub(crate) fn sleep(&self, r: Running) -> Option<u32> {
        let ticket = (r.0 >> 8).wrapping_add(1) & 0x00ff_ffff;
        self.swap_from(pack(r.0 >> 8, RUNNING), pack(ticket, SLEEPING))
            .then_some(ticket)
    }

    /// Sleeping with `ticket` → queued (the timer or a waiter wakes it).
    pub(crate) fn resume(&self, ticket: u32) -> bool {
        self.swap_from(pack(ticket, SLEEPING), pack(ticket, QUEUED))
    }

    /// The ticket of a sleeping task.
    pub(crate) fn sleeping(&self) -> Option<u32> {
        let word = self.0.load(Ordering::Acquire);
        (state_of(word) == SLEEPING).then_some(word >> 8)
    }
}

#[cfg(all(test, loom))]
mod model {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicU8, AtomicUsize};
    use loom::thread;

    /// Who delivered, and how often: the property is exactly once.
    #[derive(Default)]
    struct Delivery {
        count: AtomicUsize,
        what: AtomicU8,
    }

    impl Delivery {
        fn deliver(&self, what: u8) {
            self.count.fetch_add(1, Ordering::SeqCst);
            self.what.store(what, Ordering::SeqCst);
        }
    }

    /// A worker's life of the task: a first step that sleeps (a retry),
    /// then the timer's wake-up and a last step that delivers.
    fn worker(st: &TaskState, d: &Delivery) {
        let Some(r) = st.take_queued(RUNNING) else {
            return;
        };
        let Some(ticket) = st.sleep(r) else { return }; // cancelled in flight
        if st.resume(ticket) && st.take_queued(RUNNING).is_some() && st.finish() {
            d.deliver(DONE);
        }
    }

    /// A cancel, or `shutdown_now`: waiting, or in flight.
    fn cancel(st: &TaskState, d: &Delivery) {
        if st.cancel_waiting().is_some() || st.cancel_running() {
            d.deliver(CANCELLED);
        }
    }

    /// A waiter on a worker thread that runs the job inline, waking it
    /// from its sleep if it must.
    fn inline(st: &TaskState, d: &Delivery) {
        if let Some(ticket) = st.sleeping()
            && !st.resume(ticket)
        {
            return;
        }
        if st.take_queued(RUNNING).is_some() && st.finish() {
            d.deliver(DONE);
        }
    }

    /// The worker against `other` on another thread.
    fn check(other: fn(&TaskState, &Delivery)) {
        loom::model(move || {
            let st = Arc::new(TaskState::new());
            let d = Arc::new(Delivery::default());
            let (st2, d2) = (st.clone(), d.clone());
            let t = thread::spawn(move || other(&st2, &d2));
            worker(&st, &d);
            t.join().unwrap();
            // Whoever won, the result was delivered exactly once (so its
            // waiter wakes), and the state agrees with what was delivered.
            assert_eq!(d.count.load(Ordering::SeqCst), 1);
            assert_eq!(d.what.load(Ordering::SeqCst), st.get());
        });
    }

    #[test]
    fn run_against_cancel() {
        check(cancel);
    }

    #[test]
    fn run_against_inline_run() {
        check(inline);
    }

    #[test]
    fn run_against_cancel_and_inline_run() {
        // Three parties: the worker, a waiter running it inline, a cancel.
        // Every interleaving with up to 3 preemptions (unbounded, three
        // threads take hours).
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let st = Arc::new(TaskState::new());
            let d = Arc::new(Delivery::default());
            let (st2, d2) = (st.clone(), d.clone());
            let (st3, d3) = (st.clone(), d.clone());
            let a = thread::spawn(move || cancel(&st2, &d2));
            let b = thread::spawn(move || inline(&st3, &d3));
            worker(&st, &d);
            a.join().unwrap();
            b.join().unwrap();
            assert_eq!(d.count.load(Ordering::SeqCst), 1);
            assert_eq!(d.what.load(Ordering::SeqCst), st.get());
        });
    }

    #[test]
    fn cancel_against_shutdown() {
        // Two cancels (a caller's and `shutdown_now`) and the worker.
        loom::model(|| {
            let st = Arc::new(TaskState::new());
            let d = Arc::new(Delivery::default());
            let (st2, d2) = (st.clone(), d.clone());
            let t = thread::spawn(move || cancel(&st2, &d2));
            cancel(&st, &d);
            t.join().unwrap();
            worker(&st, &d);
            assert_eq!(d.count.load(Ordering::SeqCst), 1);
            assert_eq!(st.get(), CANCELLED);
        });
    }
}
