//! A pool's life after its jobs are queued: fire-and-forget accounting and
//! `flush`, the shutdowns, and the drain at process exit.

use crate::deadline::Deadline;
use crate::error::Error;
use crate::pool::{Inner, Pool};
use crate::sync::lock;
use crate::worker::on_worker_of;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Pools alive now, drained when the process exits.
static LIVE: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

/// Registers `inner` to be drained at process exit (the hook is installed
/// once, with the first pool).
pub(crate) fn drain_at_exit(inner: &Arc<Inner>) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        if !shutdown_hooks::add_shutdown_hook(exit_hook) {
            log::warn!("reqpool: could not install the exit hook; call flush() before exit");
        }
    });
    let mut live = lock(&LIVE);
    live.retain(|w| w.strong_count() > 0);
    live.push(Arc::downgrade(inner));
}

/// Runs at process exit (after `main` returns, or `std::process::exit`):
/// waits for the work of every pool still alive, as Python's executor
/// joins its workers at interpreter exit.
extern "C" fn exit_hook() {
    let live: Vec<Arc<Inner>> = lock(&LIVE).iter().filter_map(Weak::upgrade).collect();
    for inner in live {
        if on_worker_of(inner.id()) {
            continue;
        }
        let left = inner.drain();
        if left > 0 {
            log::warn!(
                "reqpool: process exits with {left} job(s) unfinished after the drain timeout"
            );
        }
    }
}

impl Pool {
    /// Runs `job` on a worker with nothing to wait on: fire-and-forget.
    ///
    /// The pool counts fired and failed jobs ([`Pool::stats`]); a failure
    /// goes to the [`on_error`](crate::Builder::on_error) hook and is logged
    /// at `warn`. [`flush`](Pool::flush) waits for every fired job, and
    /// dropping the last `Pool` handle does too (bounded by the drain
    /// timeout), so a fired job is never silently lost. The job has the
    /// same limits as a [`submit`](Pool::submit) closure. Blocks only if a
    /// bounded queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after a shutdown.
    ///
    /// ```
    /// let pool = reqpool::Pool::new(2);
    /// pool.fire(|_agent| Ok(()))?;
    /// assert_eq!(pool.flush(), 0);
    /// assert_eq!(pool.stats().fired, 1);
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn fire<F>(&self, job: F) -> Result<(), Error>
    where
        F: FnOnce(&ureq::Agent) -> Result<(), Error> + Send + 'static,
    {
        let inner = self.inner();
        if inner.is_closed() {
            return Err(Error::Closed);
        }
        let pending = self.submit_closure(true, job);
        inner.track_fired(|| "(closure)".to_string(), pending);
        Ok(())
    }

    /// Blocks the current thread until every fire-and-forget job has finished.
    ///
    /// Returns how many are still unfinished (always 0 here; see
    /// [`flush_timeout`](Pool::flush_timeout)). Called from inside a job of
    /// this pool it does not wait (that would wait on itself) and returns the
    /// count at once.
    pub fn flush(&self) -> usize {
        self.flush_until(Deadline::NEVER)
    }

    /// Blocks the current thread until every fire-and-forget job has
    /// finished or `limit` has passed; returns how many are still unfinished.
    pub fn flush_timeout(&self, limit: Duration) -> usize {
        self.flush_until(Deadline::after(limit))
    }

    fn flush_until(&self, deadline: Deadline) -> usize {
        let fired = self.inner().fired();
        if self.on_own_worker() {
            return fired.get();
        }
        fired.wait_zero(deadline)
    }

    /// Blocks the current thread until the queued and running jobs have
    /// finished, after closing the pool to new ones.
    ///
    /// After it, every submit resolves at once with [`Error::Closed`] (and
    /// `fire` returns it). Jobs keep their own time limits, so this ends.
    /// Called from inside a job of this pool it does not wait for the queue
    /// (that would wait on itself); it only closes the pool.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown_until(Deadline::NEVER, false)
    }

    /// Blocks the current thread like [`shutdown`](Pool::shutdown), but at
    /// most `limit` for the jobs. When it runs out, the shared agent is shut down, which
    /// interrupts requests blocked on the network (they fail with a
    /// transport error); what is still unfinished a second later is
    /// counted as abandoned.
    pub fn shutdown_timeout(&self, limit: Duration) -> Shutdown {
        self.shutdown_until(Deadline::after(limit), false)
    }

    /// Blocks the current thread until the running jobs finish, after
    /// closing the pool and resolving every queued job (and every job
    /// waiting between two steps, such as a retry's backoff) as cancelled
    /// at once, and cutting off every request in flight (its socket is shut
    /// down; its handle resolves as cancelled). A closure blocked on
    /// something other than the pool's agent runs on to its end.
    pub fn shutdown_now(&self) -> Shutdown {
        self.shutdown_until(Deadline::NEVER, true)
    }

    fn shutdown_until(&self, deadline: Deadline, cancel: bool) -> Shutdown {
        let inner = self.inner();
        let before = inner.stats();
        // With `cancel`, this also cuts off the requests in flight: their
        // sockets are shut down, and a job that fails now resolves as
        // cancelled.
        inner.close(cancel);
        let own = self.on_own_worker();
        let mut left = if own {
            inner.outstanding().get()
        } else {
            inner.outstanding().wait_zero(deadline)
        };
        if left > 0 && !deadline.is_never() && !own {
            // Interrupt requests blocked on I/O, then give them a moment to
            // report it.
            inner.interrupt();
            left = inner
                .outstanding()
                .wait_zero(Deadline::after(Duration::from_secs(1)));
        }
        let after = inner.stats();
        Shutdown {
            finished: (after.succeeded + after.failed) - (before.succeeded + before.failed),
            cancelled: after.cancelled - before.cancelled,
            abandoned: left as u64,
        }
    }
}

/// What a shutdown did with the jobs that were queued or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Shutdown {
    /// Jobs that ran to completion (successfully or not) during the shutdown.
    pub finished: u64,
    /// Queued jobs that were cancelled and never ran.
    pub cancelled: u64,
    /// Jobs still unfinished when the shutdown stopped waiting.
    pub abandoned: u64,
}
