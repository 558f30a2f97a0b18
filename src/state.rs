//! A task's life as one atomic word: the state in the low byte, the number
//! of sleeps (a ticket) above it. Every move out of queued, running or
//! sleeping is one compare-and-swap, so exactly one party wins it: the
//! worker, a waiter that runs the job inline, the timer that wakes it, a
//! cancel, a shutdown, or a waiter that expires it. Model-checked with
//! `loom` (`RUSTFLAGS="--cfg loom" cargo test -p reqpool --release --lib state`).

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, Ordering};

/// Where a task is in its life. The atomic word that holds it is this
/// module's own business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// Waiting for a worker (or for the timer to hand it back).
    Queued = 0,
    /// A step of it runs now.
    Running = 1,
    /// Over, its result delivered.
    Done = 2,
    /// Cancelled (its result is `Cancelled`).
    Cancelled = 3,
    /// Between two steps, in the timer.
    Sleeping = 4,
}

fn pack(ticket: u32, state: State) -> u32 {
    (ticket << 8) | state as u32
}

fn state_of(word: u32) -> State {
    match word & 0xff {
        0 => State::Queued,
        1 => State::Running,
        2 => State::Done,
        3 => State::Cancelled,
        _ => State::Sleeping,
    }
}

/// The state of one task.
#[derive(Debug)]
pub(crate) struct TaskState(AtomicU32);

/// A step in progress: the word it started from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Running(u32);

impl TaskState {
    pub(crate) fn new() -> TaskState {
        TaskState(AtomicU32::new(pack(0, State::Queued)))
    }

    pub(crate) fn get(&self) -> State {
        state_of(self.0.load(Ordering::Acquire))
    }

    fn swap_from(&self, from: u32, to: u32) -> bool {
        self.0
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Queued → `to` (running, or done for an expiry or a refusal).
    pub(crate) fn take_queued(&self, to: State) -> Option<Running> {
        let word = self.0.load(Ordering::Acquire);
        (state_of(word) == State::Queued && self.swap_from(word, pack(word >> 8, to)))
            .then_some(Running(word))
    }

    /// Queued or sleeping → cancelled. Returns what it was.
    pub(crate) fn cancel_waiting(&self) -> Option<State> {
        let mut word = self.0.load(Ordering::Acquire);
        loop {
            let s = state_of(word);
            if s != State::Queued && s != State::Sleeping {
                return None;
            }
            match self.0.compare_exchange(
                word,
                pack(word >> 8, State::Cancelled),
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
        state_of(word) == State::Running && self.swap_from(word, pack(word >> 8, State::Cancelled))
    }

    /// Running → done, unless a cancel in flight won.
    pub(crate) fn finish(&self) -> bool {
        let word = self.0.load(Ordering::Acquire);
        state_of(word) == State::Running && self.swap_from(word, pack(word >> 8, State::Done))
    }

    /// Running (the step that started at `r`) → sleeping with a new
    /// ticket, unless a cancel in flight won.
    pub(crate) fn sleep(&self, r: Running) -> Option<u32> {
        let ticket = (r.0 >> 8).wrapping_add(1) & 0x00ff_ffff;
        self.swap_from(
            pack(r.0 >> 8, State::Running),
            pack(ticket, State::Sleeping),
        )
        .then_some(ticket)
    }

    /// Sleeping with `ticket` → queued (the timer or a waiter wakes it).
    pub(crate) fn resume(&self, ticket: u32) -> bool {
        self.swap_from(pack(ticket, State::Sleeping), pack(ticket, State::Queued))
    }

    /// The ticket of a sleeping task.
    pub(crate) fn sleeping(&self) -> Option<u32> {
        let word = self.0.load(Ordering::Acquire);
        (state_of(word) == State::Sleeping).then_some(word >> 8)
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
        let Some(r) = st.take_queued(State::Running) else {
            return;
        };
        let Some(ticket) = st.sleep(r) else { return }; // cancelled in flight
        if st.resume(ticket) && st.take_queued(State::Running).is_some() && st.finish() {
            d.deliver(State::Done as u8);
        }
    }

    /// A cancel, or `shutdown_now`: waiting, or in flight.
    fn cancel(st: &TaskState, d: &Delivery) {
        if st.cancel_waiting().is_some() || st.cancel_running() {
            d.deliver(State::Cancelled as u8);
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
        if st.take_queued(State::Running).is_some() && st.finish() {
            d.deliver(State::Done as u8);
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
            assert_eq!(d.what.load(Ordering::SeqCst), st.get() as u8);
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
            assert_eq!(d.what.load(Ordering::SeqCst), st.get() as u8);
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
            assert_eq!(st.get(), State::Cancelled);
        });
    }
}
