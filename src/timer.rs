//! The pool's timer: one thread that runs closures at given instants. It
//! holds everything that waits for time (a retry's backoff, `Retry-After`,
//! a poll interval, a hedge delay), so no worker sleeps on behalf of a job.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// A closure to run at a given time.
pub(crate) type Due = Box<dyn FnOnce() + Send>;

enum Msg {
    At(Instant, Due),
    /// Run everything now (a shutdown that cancels what waits).
    All,
}

/// One thread per pool (started on first use); it ends when the pool is
/// gone and nothing is left to run.
pub(crate) struct Timer(Sender<Msg>);

impl Timer {
    pub(crate) fn start(name: &str) -> Timer {
        let (tx, rx) = unbounded();
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-timer"))
            .spawn(move || timer_loop(rx));
        if let Err(e) = spawned {
            // Without a thread, due closures run at once instead: a job
            // retries without its backoff rather than never.
            log::warn!("reqpool: no timer thread, waits between steps are skipped: {e}");
        }
        Timer(tx)
    }

    /// Runs `f` at `when` on the timer thread (at once if the thread is gone).
    pub(crate) fn at(&self, when: Instant, f: Due) {
        if let Err(e) = self.0.send(Msg::At(when, f))
            && let Msg::At(_, f) = e.into_inner()
        {
            f();
        }
    }

    /// Runs every closure waiting in the timer now.
    pub(crate) fn run_all(&self) {
        let _ = self.0.send(Msg::All);
    }
}

/// Runs `f`; a panic is caught (the timer goes on for every other job)
/// and logged at `error`.
fn run(f: Due) {
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        log::error!(
            "reqpool: a step run by the pool's timer panicked (the timer goes on): {}",
            crate::error::panic_message(p.as_ref())
        );
    }
}

fn timer_loop(rx: Receiver<Msg>) {
    let mut seq = 0u64;
    let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut jobs: HashMap<u64, Due> = HashMap::new();
    loop {
        let next = heap.peek().map(|Reverse((t, _))| *t);
        let got = match next {
            Some(t) => rx.recv_deadline(t),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let mut all = false;
        match got {
            Ok(Msg::At(when, f)) => {
                seq += 1;
                heap.push(Reverse((when, seq)));
                jobs.insert(seq, f);
            }
            Ok(Msg::All) => all = true,
            Err(RecvTimeoutError::Disconnected) if heap.is_empty() => return,
            Err(_) => {}
        }
        let now = Instant::now();
        while let Some(Reverse((t, id))) = heap.peek().copied() {
            if t > now && !all {
                break;
            }
            heap.pop();
            if let Some(f) = jobs.remove(&id) {
                run(f);
            }
        }
    }
}
