//! The worker threads: a pool starts a floor of them (32, or its size if
//! smaller) and adds one for each job that waits while no thread is free,
//! up to its size, so that `Pool::new(10_000)` is ready at once and a
//! pool that never gets busy never pays for its idle threads. A thread
//! above the floor that has had nothing to do for the keep-alive time
//! (`Builder::thread_keep_alive`) leaves.

use crate::sync::lock;
use crate::worker::{Dispatch, become_worker_of};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Threads started with the pool and never let go (or all of them, if
/// fewer).
const FLOOR: usize = 32;

/// The threads of one pool and how many wait for a job.
pub(crate) struct Crew {
    id: usize,
    /// The pool's size: threads at most.
    max: usize,
    /// Threads that stay however idle.
    floor: usize,
    /// How long a thread above the floor waits for a job before it leaves.
    keep_alive: Duration,
    name: String,
    stack: usize,
    /// Threads alive now.
    alive: AtomicUsize,
    /// The most threads alive at once.
    peak: AtomicUsize,
    /// Threads waiting for a job, or started and not waiting yet: a job
    /// that waits with one of these needs no new thread.
    idle: AtomicUsize,
    /// The OS refused a thread: no more are asked for.
    refused: AtomicBool,
    /// Worker numbers (seats) free for the next thread, and the next new
    /// one; its lock is held while threads are started.
    seats: Mutex<Seats>,
    queue: Receiver<Dispatch>,
}

/// A seat picks the worker's agent (one per 512 seats): a thread that
/// leaves gives its seat to the next one, so seats stay below the peak.
#[derive(Default)]
struct Seats {
    free: Vec<usize>,
    next: usize,
}

impl Crew {
    /// A crew for pool `id` of `max` threads taking jobs from `queue`,
    /// with its floor started.
    ///
    /// # Errors
    ///
    /// The OS's words if it refuses one of the first threads (those
    /// started end when the queue's sender is dropped).
    pub(crate) fn start(
        id: usize,
        max: usize,
        name: &str,
        stack: usize,
        keep_alive: Duration,
        queue: Receiver<Dispatch>,
    ) -> Result<Arc<Crew>, String> {
        let floor = max.min(FLOOR);
        let crew = Arc::new(Crew {
            id,
            max,
            floor,
            keep_alive,
            name: name.to_owned(),
            stack,
            alive: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
            seats: Mutex::new(Seats::default()),
            queue,
        });
        let mut seats = lock(&crew.seats);
        for _ in 0..floor {
            crew.spawn(&mut seats)?;
        }
        drop(seats);
        Ok(crew)
    }

    /// Threads alive now, and the most alive at once.
    pub(crate) fn threads(&self) -> (usize, usize) {
        (
            self.alive.load(Ordering::SeqCst),
            self.peak.load(Ordering::SeqCst),
        )
    }

    /// Starts one thread, counted idle from now.
    fn spawn(self: &Arc<Self>, seats: &mut Seats) -> Result<(), String> {
        let seat = seats.free.pop().unwrap_or_else(|| {
            seats.next += 1;
            seats.next - 1
        });
        let alive = self.alive.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(alive, Ordering::SeqCst);
        self.idle.fetch_add(1, Ordering::SeqCst);
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(self.name.clone())
            .stack_size(self.stack)
            .spawn(move || me.work(seat));
        if let Err(e) = spawned {
            self.alive.fetch_sub(1, Ordering::SeqCst);
            self.idle.fetch_sub(1, Ordering::SeqCst);
            seats.free.push(seat);
            return Err(e.to_string());
        }
        Ok(())
    }

    /// Starts a thread for each job that waits with no thread free to take
    /// it (never more: no doubling past what waits), up to the pool's
    /// size: called after a job was queued, by a worker that just took
    /// one, and by a thread that leaves while jobs wait (between them, no
    /// job is left waiting while the pool has room for a thread).
    pub(crate) fn needed(self: &Arc<Self>) {
        // Orders the caller's queueing (or leaving) before the counts read
        // here: of a submitter and a thread that leaves at once, at least
        // one sees the other.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.refused.load(Ordering::Relaxed)
            || self.alive.load(Ordering::SeqCst) >= self.max
            || self.queue.len() <= self.idle.load(Ordering::SeqCst)
        {
            return;
        }
        let mut seats = lock(&self.seats);
        let alive = self.alive.load(Ordering::SeqCst);
        let more = self
            .queue
            .len()
            .saturating_sub(self.idle.load(Ordering::SeqCst))
            .min(self.max.saturating_sub(alive));
        for _ in 0..more {
            if let Err(e) = self.spawn(&mut seats) {
                self.refused.store(true, Ordering::Relaxed);
                log::warn!(
                    "reqpool: the OS refused more worker threads ({} of {} running): {e}",
                    self.alive.load(Ordering::SeqCst),
                    self.max
                );
                return;
            }
        }
    }

    /// What each worker thread runs: jobs from the queue until the pool
    /// is gone, or until it has waited the keep-alive time for one while
    /// more than the floor are alive. Nothing escapes it by unwinding (a
    /// job's panic is caught in the task), so the pool never loses a
    /// worker.
    fn work(self: &Arc<Self>, seat: usize) {
        become_worker_of(self.id, seat);
        loop {
            // Counted idle (by `spawn`, or after the last job).
            match self.queue.recv_timeout(self.keep_alive) {
                Ok(job) => {
                    self.idle.fetch_sub(1, Ordering::SeqCst);
                    self.needed();
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || job.go()));
                    self.idle.fetch_add(1, Ordering::SeqCst);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.idle.fetch_sub(1, Ordering::SeqCst);
                    self.alive.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    let floor = self.floor;
                    let leaves = self
                        .alive
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| {
                            (a > floor).then(|| a - 1)
                        })
                        .is_ok();
                    if leaves {
                        self.idle.fetch_sub(1, Ordering::SeqCst);
                        lock(&self.seats).free.push(seat);
                        // A job queued while this thread decided to leave
                        // may have counted on it: it gets a thread.
                        self.needed();
                        return;
                    }
                }
            }
        }
    }
}
