//! `Pending<T>`: the handle of a job that runs on the pool.

use crate::error::{Error, Phase, panic_message};
use crate::task::{CANCELLED, Control, DONE, Deliver, Finished, QUEUED, RUNNING, Sink, Slot, Then};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError, bounded};
use std::cell::Cell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `wait` gives a worker past a job's deadline to report the exact
/// phase that ran out, before it gives up on the worker.
/// How long `wait` looks for a result before it blocks.
const SPIN: Duration = Duration::from_micros(20);

pub(crate) const DEADLINE_GRACE: Duration = Duration::from_millis(250);

thread_local! {
    /// The id of the pool whose job this thread is running (0: none).
    pub(crate) static WORKER_OF: Cell<usize> = const { Cell::new(0) };
}

/// The result of a job that runs on the pool, to collect later.
///
/// Every submit method returns one at once. The job runs on a worker whether
/// or not anyone waits for it; [`wait`](Pending::wait) blocks until its result
/// is there. Every `Pending` resolves: with the job's result, its error, a
/// panic message, [`Error::Cancelled`], or [`Error::Closed`] — never by
/// blocking for ever.
///
/// Dropping a `Pending` does **not** cancel the job: it still runs and its
/// result is thrown away. Call [`cancel`](Pending::cancel) first to stop a job
/// that has not started.
///
/// ```
/// let pool = reqpool::Pool::new(2);
/// let job = pool.submit(|_agent| Ok(6 * 7));
/// // ... do other work here ...
/// assert_eq!(job.wait()?, 42);
/// # Ok::<(), reqpool::Error>(())
/// ```
#[must_use = "the job runs anyway, but its result is lost unless you wait on the Pending"]
pub struct Pending<T> {
    rx: Receiver<Result<T, Error>>,
    sink: Arc<dyn Sink<T>>,
    ctl: Arc<dyn Control>,
    pool_id: usize,
    deadline: Option<Instant>,
}

impl<T: Send + 'static> Pending<T> {
    pub(crate) fn new(
        rx: Receiver<Result<T, Error>>,
        sink: Arc<dyn Sink<T>>,
        ctl: Arc<dyn Control>,
        pool_id: usize,
        deadline: Option<Instant>,
    ) -> Self {
        Pending {
            rx,
            sink,
            ctl,
            pool_id,
            deadline,
        }
    }

    /// A handle that is already resolved (bad input, closed pool).
    pub(crate) fn ready(result: Result<T, Error>) -> Self {
        let (tx, rx) = bounded(1);
        let slot = Arc::new(Slot::new(Deliver::Channel(tx)));
        slot.deliver(result);
        Pending::new(rx, slot, Arc::new(Finished), 0, None)
    }

    /// Blocks the current thread until the job has finished, and returns its result.
    ///
    /// - `Ok(value)` if the job succeeded;
    /// - `Err(e)` with the job's error, [`Error::Panicked`] if it panicked,
    ///   [`Error::Cancelled`] if it was cancelled, [`Error::Closed`] if the
    ///   pool dropped it;
    /// - `Err(Error::Timeout { phase: Phase::Deadline, .. })` if the job has a
    ///   deadline (every HTTP request does) and the worker has not answered
    ///   shortly after it: `wait` never blocks past a request's time limit,
    ///   whatever the server does.
    ///
    /// # Deadlocks
    ///
    /// Waiting from inside a job on another job of the same pool is safe here:
    /// if that job has not started yet, it runs at once on the waiting thread
    /// instead of waiting for a free worker (which, with every worker
    /// waiting, would never come). Waiting on a job of *another* pool whose
    /// workers all wait on this one can still deadlock; don't build cycles.
    pub fn wait(self) -> Result<T, Error> {
        if self.pool_id != 0
            && WORKER_OF.with(|w| w.get()) == self.pool_id
            && self.ctl.state() == QUEUED
        {
            self.ctl.run();
        }
        if let Some(r) = self.spin() {
            return r;
        }
        match self.deadline {
            Some(deadline) => match self.rx.recv_deadline(deadline + DEADLINE_GRACE) {
                Ok(r) => r,
                Err(RecvTimeoutError::Disconnected) => Err(self.gone()),
                Err(RecvTimeoutError::Timeout) => {
                    self.ctl.cancel();
                    Err(Error::Timeout {
                        phase: Phase::Deadline,
                        method: String::new(),
                        url: String::new(),
                    })
                }
            },
            None => self.rx.recv().unwrap_or_else(|_| Err(self.gone())),
        }
    }

    /// Blocks the current thread for at most `timeout`, waiting for the job.
    ///
    /// - `Some(result)` if the job finished in time (the handle is then spent:
    ///   a later wait returns `Err(Error::Closed)`);
    /// - `None` if it did not: the handle is untouched, wait again later.
    ///
    /// If `Instant::now() + timeout` overflows, this waits without a limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = reqpool::Pool::new(1);
    /// let (tx, rx) = crossbeam_channel::bounded::<()>(0);
    /// let job = pool.submit(move |_| { rx.recv().ok(); Ok("done") });
    /// assert!(job.wait_timeout(Duration::from_millis(10)).is_none());
    /// tx.send(()).unwrap();
    /// assert_eq!(job.wait()?, "done");
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<T, Error>> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_deadline(deadline),
            None => Some(self.rx.recv().unwrap_or_else(|_| Err(self.gone()))),
        }
    }

    /// Blocks the current thread until the job finishes or `deadline` passes;
    /// like [`wait_timeout`](Pending::wait_timeout) with an instant.
    pub fn wait_deadline(&self, deadline: Instant) -> Option<Result<T, Error>> {
        match self.rx.recv_deadline(deadline) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Err(self.gone())),
        }
    }

    /// Returns the result if the job has finished; never blocks.
    ///
    /// `None` means not yet; the handle stays usable.
    pub fn try_wait(&self) -> Option<Result<T, Error>> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(self.gone())),
        }
    }

    /// True if the result is there: a wait would not block.
    pub fn is_finished(&self) -> bool {
        !self.rx.is_empty()
    }

    /// Cancels the job if it has not started yet.
    ///
    /// Returns true if it was cancelled: it will never run, and the handle
    /// resolves with [`Error::Cancelled`]. Returns false if it already runs or
    /// has finished; then it goes on and the handle gets its result.
    ///
    /// ```
    /// let pool = reqpool::Pool::new(1);
    /// let (tx, rx) = crossbeam_channel::bounded::<()>(0);
    /// let busy = pool.submit(move |_| { rx.recv().ok(); Ok(()) });
    /// let queued = pool.submit(|_| Ok("never runs"));
    /// assert!(queued.cancel());
    /// assert!(queued.wait().unwrap_err().is_cancelled());
    /// tx.send(()).unwrap();
    /// busy.wait()?;
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        self.ctl.cancel()
    }

    /// Transforms the result with `f` on the worker, as soon as the job
    /// finishes, without waiting here.
    ///
    /// If the job had already finished, `f` runs right here instead. A panic
    /// in `f` resolves the new handle with [`Error::Panicked`]. Cancelling the
    /// new handle cancels the original job.
    ///
    /// ```
    /// let pool = reqpool::Pool::new(1);
    /// let len = pool.submit(|_| Ok(String::from("hello"))).map(|s| s.len());
    /// assert_eq!(len.wait()?, 5);
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn map<U, F>(self, f: F) -> Pending<U>
    where
        U: Send + 'static,
        F: FnOnce(T) -> U + Send + 'static,
    {
        self.and_then(move |v| Ok(f(v)))
    }

    /// Like [`map`](Pending::map), for a step that can fail.
    pub fn and_then<U, F>(self, f: F) -> Pending<U>
    where
        U: Send + 'static,
        F: FnOnce(T) -> Result<U, Error> + Send + 'static,
    {
        let (tx, rx) = bounded(1);
        let slot = Arc::new(Slot::new(Deliver::Channel(tx)));
        let relay = slot.clone();
        let ctl = self.ctl.clone();
        let (pool_id, deadline) = (self.pool_id, self.deadline);
        self.on_complete(Box::new(move |r| {
            let out = match r {
                Ok(v) => catch_unwind(AssertUnwindSafe(move || f(v))).unwrap_or_else(|p| {
                    Err(Error::Panicked {
                        message: panic_message(&*p),
                    })
                }),
                Err(e) => Err(e),
            };
            relay.deliver(out);
        }));
        Pending::new(rx, slot, ctl, pool_id, deadline)
    }

    /// Sends the result to `then` instead of this handle's channel, on the
    /// thread that finishes the job (or here, if it has finished already).
    pub(crate) fn on_complete(self, then: Then<T>) {
        if let Err(then) = self.sink.set_then(then) {
            let r = self.rx.try_recv().unwrap_or_else(|_| Err(Error::Closed));
            then(r);
        }
    }

    /// Looks for the result for a few microseconds before `wait` blocks.
    ///
    /// Blocking costs a sleep and a wake-up on each side (tens of
    /// microseconds on a busy machine); a short job is often done sooner,
    /// and then the caller and the worker both stay awake. The spin yields
    /// the CPU between looks, so workers are not starved.
    fn spin(&self) -> Option<Result<T, Error>> {
        let start = Instant::now();
        let mut looks = 0u32;
        loop {
            match self.rx.try_recv() {
                Ok(r) => return Some(r),
                Err(TryRecvError::Disconnected) => return Some(Err(self.gone())),
                Err(TryRecvError::Empty) => {}
            }
            looks += 1;
            if looks < 64 {
                std::hint::spin_loop();
            } else if start.elapsed() > SPIN {
                return None;
            } else {
                std::thread::yield_now();
            }
        }
    }

    pub(crate) fn control(&self) -> Arc<dyn Control> {
        self.ctl.clone()
    }

    pub(crate) fn receiver(&self) -> &Receiver<Result<T, Error>> {
        &self.rx
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn gone(&self) -> Error {
        if self.ctl.state() == CANCELLED {
            Error::Cancelled
        } else {
            Error::Closed
        }
    }
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.ctl.state() {
            QUEUED => "queued",
            RUNNING => "running",
            DONE => "done",
            _ => "cancelled",
        };
        f.debug_struct("Pending")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
