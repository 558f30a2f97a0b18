//! The worker threads: a pool starts a few and adds more as its queue
//! needs them, up to its size, so that `Pool::new(10_000)` is ready at
//! once and a pool that never gets busy never pays for its idle threads.
//! A thread, once started, stays until the pool is gone.

use crate::sync::lock;
use crate::worker::{Dispatch, become_worker_of};
use crossbeam_channel::Receiver;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Threads started with the pool (or all of them, if fewer).
const START: usize = 32;

/// The threads of one pool and how many wait for a job.
pub(crate) struct Crew {
    id: usize,
    /// The pool's size: threads at most.
    max: usize,
    threads: Mutex<threadpool::ThreadPool>,
    /// Threads started so far.
    started: AtomicUsize,
    /// Threads waiting for a job (or just taking one).
    idle: AtomicUsize,
    /// The OS refused a thread: no more are asked for.
    refused: AtomicBool,
    queue: Receiver<Dispatch>,
}

impl Crew {
    /// A crew for pool `id` of `max` threads taking jobs from `queue`,
    /// with its first threads started.
    ///
    /// # Errors
    ///
    /// The OS's words if it refuses the first threads.
    pub(crate) fn start(
        id: usize,
        max: usize,
        name: &str,
        stack: usize,
        queue: Receiver<Dispatch>,
    ) -> Result<Arc<Crew>, String> {
        let first = max.min(START);
        let tb = threadpool::Builder::new()
            .num_threads(first)
            .thread_name(name.to_owned())
            .thread_stack_size(stack);
        // threadpool panics when a spawn fails. Its threads started so far
        // wait on its queue, whose sender the unwinding drops: they end.
        let tp = std::panic::catch_unwind(move || tb.build())
            .map_err(|p| crate::error::panic_message(&*p))?;
        let crew = Arc::new(Crew {
            id,
            max,
            threads: Mutex::new(tp),
            started: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
            queue,
        });
        crew.add(&lock(&crew.threads), first);
        Ok(crew)
    }

    /// Runs `n` more worker loops on the thread pool's threads.
    fn add(self: &Arc<Self>, tp: &threadpool::ThreadPool, n: usize) {
        let first = self.started.load(Ordering::SeqCst);
        for seat in first..first + n {
            let me = Arc::clone(self);
            tp.execute(move || me.work(seat));
        }
        self.started.fetch_add(n, Ordering::SeqCst);
    }

    /// Starts more threads if jobs wait and no thread is free to take
    /// them: called after a job was queued, and by a worker that just took
    /// one (between the two, no job is left waiting while the pool has
    /// room for a thread).
    pub(crate) fn needed(self: &Arc<Self>) {
        if self.started.load(Ordering::SeqCst) >= self.max || self.refused.load(Ordering::Relaxed) {
            return;
        }
        let waiting = self.queue.len();
        if waiting <= self.idle.load(Ordering::SeqCst) {
            return;
        }
        let mut tp = lock(&self.threads);
        let started = self.started.load(Ordering::SeqCst);
        let waiting = self.queue.len();
        let idle = self.idle.load(Ordering::SeqCst);
        if waiting <= idle || started >= self.max {
            return;
        }
        // At least what waits, and doubling: a burst of 10,000 jobs
        // starts its threads in a few steps.
        let more = (waiting - idle).max(started).min(self.max - started);
        let grown = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tp.set_num_threads(started + more);
        }));
        if let Err(p) = grown {
            self.refused.store(true, Ordering::Relaxed);
            log::warn!(
                "reqpool: the OS refused more worker threads ({started} of {} running): {}",
                self.max,
                crate::error::panic_message(&*p)
            );
            return;
        }
        self.add(&tp, more);
    }

    /// What each worker thread runs: jobs from the queue until the pool
    /// is gone. Nothing escapes it by unwinding (a job's panic is caught
    /// in the task), so the pool never loses a worker.
    fn work(self: &Arc<Self>, seat: usize) {
        become_worker_of(self.id, seat);
        loop {
            self.idle.fetch_add(1, Ordering::SeqCst);
            let job = self.queue.recv();
            self.idle.fetch_sub(1, Ordering::SeqCst);
            let Ok(job) = job else { return };
            self.needed();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || job.go()));
        }
    }
}
