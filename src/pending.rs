//! `Pending<T>`: the handle of a job that runs on the pool: wait, cancel,
//! map and chain it. Its waits go through the one wait loop of `wait.rs`,
//! like every helper's.

use crate::deadline::Deadline;
use crate::error::{Error, Phase, panic_message};
use crate::slot::{Sink, Slot, Then};
use crate::task::{Bound, Job, Ran, State};
use crate::wait::Waiting;
use crate::worker::on_worker_of;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long `wait` looks for a result before it blocks.
const SPIN: Duration = Duration::from_micros(20);

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
#[must_use = "the job runs anyway, but its result is lost unless you wait on the Pending; use fire() for fire-and-forget"]
pub struct Pending<T> {
    /// Where the result lands (for a task: the task itself).
    sink: Arc<dyn Sink<T>>,
    /// The job behind it; none for a handle resolved at once.
    job: Option<Arc<dyn Job>>,
}

impl<T: Send + 'static> Pending<T> {
    pub(crate) fn new(sink: Arc<dyn Sink<T>>, job: Arc<dyn Job>) -> Self {
        Pending {
            sink,
            job: Some(job),
        }
    }

    /// A handle that is already resolved (bad input, closed pool).
    pub(crate) fn ready(result: Result<T, Error>) -> Self {
        Pending {
            sink: Arc::new(Slot::ready(result)),
            job: None,
        }
    }

    fn slot(&self) -> &Slot<T> {
        self.sink.slot()
    }

    /// Blocks the current thread until the job has finished, and returns its result.
    ///
    /// - `Ok(value)` if the job succeeded;
    /// - `Err(e)` with the job's error, [`Error::Panicked`] if it panicked,
    ///   [`Error::Cancelled`] if it was cancelled, [`Error::Closed`] if the
    ///   pool dropped it;
    /// - `Err(Error::Timeout { phase: Phase::Queued, .. })` if the job has a
    ///   [`deadline`](crate::RequestBuilder::deadline) and it passed while
    ///   the job waited in the queue: it never starts;
    /// - `Err(Error::Timeout { phase: Phase::Deadline, .. })` if the job
    ///   has not answered within its time limit and a short grace (250 ms):
    ///   `wait` never blocks past a job's limit, whatever the server or the
    ///   closure does.
    ///
    /// # Errors
    ///
    /// The job's own error, or one of the errors listed above.
    ///
    /// # Deadlocks
    ///
    /// Waiting from inside a job on another job of the same pool is safe here:
    /// if that job has not started yet, it runs at once on the waiting thread
    /// instead of waiting for a free worker (which, with every worker
    /// waiting, would never come). Waiting on a job of *another* pool whose
    /// workers all wait on this one can still deadlock; don't build cycles.
    pub fn wait(self) -> Result<T, Error> {
        if let Some(r) = self.spin() {
            return r;
        }
        self.wait_until(Deadline::NEVER)
            .unwrap_or_else(|| Err(self.timeout_error()))
    }

    /// Blocks the current thread for at most `timeout`, waiting for the job.
    ///
    /// - `Some(result)` if the job finished in time, or gave up as
    ///   [`wait`](Pending::wait) describes (the handle is then spent: a
    ///   later wait returns [`Error::Usage`]);
    /// - `None` if it did not: the handle is untouched, wait again later.
    ///
    /// `Duration::MAX` waits as long as [`wait`](Pending::wait) would.
    ///
    /// # Errors
    ///
    /// Inside the `Some`: as [`wait`](Pending::wait), and
    /// [`Error::Usage`] if the result was already taken.
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
        self.wait_until(Deadline::after(timeout))
    }

    /// Blocks the current thread until the job finishes or `deadline` passes;
    /// like [`wait_timeout`](Pending::wait_timeout) with an instant.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Pending::wait_timeout).
    pub fn wait_deadline(&self, deadline: Instant) -> Option<Result<T, Error>> {
        self.wait_until(Deadline::at(deadline))
    }

    /// A wait of this handle: for the result, the job's own limit, or the
    /// caller's `until`, whichever comes first (see `wait.rs`).
    fn wait_until(&self, until: Deadline) -> Option<Result<T, Error>> {
        crate::wait::wait(&mut One(self), until)
    }

    /// Returns the result if the job has finished; never blocks.
    ///
    /// `None` means not yet; the handle stays usable.
    ///
    /// # Errors
    ///
    /// Inside the `Some`: as [`wait_timeout`](Pending::wait_timeout).
    pub fn try_wait(&self) -> Option<Result<T, Error>> {
        self.slot().try_take()
    }

    /// True if the result is there: a wait would not block.
    pub fn is_finished(&self) -> bool {
        self.slot().is_ready()
    }

    /// Cancels the job, wherever it is: queued, waiting between two steps
    /// (a retry's backoff, a poll interval), or running.
    ///
    /// Returns true if it was cancelled: the handle resolves with
    /// [`Error::Cancelled`] at once and the job never runs (again). A
    /// request in flight is cut off: its socket is shut down, so its worker
    /// is free within milliseconds and the connection is never reused. A
    /// closure in flight is cut off the same way in its requests through
    /// the pool's agent; anything else it does runs on to its end (its
    /// result is dropped). Returns false if the job has finished already.
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
        self.job.as_ref().is_some_and(|j| j.cancel())
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
    ///
    /// # Errors
    ///
    /// The new handle resolves with the first job's error, or the step's.
    ///
    /// The step gets a time budget of its own (the job's `timeout`, from
    /// the moment it starts), so a step that makes a request of its own and
    /// waits for it is not cut short by the first job's limit.
    pub fn and_then<U, F>(self, f: F) -> Pending<U>
    where
        U: Send + 'static,
        F: FnOnce(T) -> Result<U, Error> + Send + 'static,
    {
        let slot = Arc::new(Slot::new());
        let relay = slot.clone();
        let Some(first) = self.job() else {
            // Resolved already: the step runs here, now.
            self.on_complete(Box::new(move |r| {
                relay.deliver(r.and_then(|v| guarded(f, v)))
            }));
            return Pending {
                sink: slot,
                job: None,
            };
        };
        let ctl = Arc::new(Relay {
            first,
            own: OnceLock::new(),
        });
        let step = ctl.clone();
        self.on_complete(Box::new(move |r| {
            let out = r.and_then(|v| {
                let _ = step.own.set(Deadline::after(step.first.timeout()));
                guarded(f, v)
            });
            relay.deliver(out);
        }));
        Pending::new(slot, ctl)
    }

    /// Sends the result to `then` instead of this handle, on the thread
    /// that finishes the job (or here, if it has finished already).
    pub(crate) fn on_complete(self, then: Then<T>) {
        self.slot().then(then);
    }

    /// Looks for the result for a few microseconds before `wait` blocks.
    ///
    /// Blocking costs a sleep and a wake-up on each side (tens of
    /// microseconds on a busy machine); a short job is often done sooner,
    /// and then the caller and the worker both stay awake. The spin yields
    /// the CPU between looks, so workers are not starved.
    fn spin(&self) -> Option<Result<T, Error>> {
        if self.job.as_ref().is_some_and(|j| on_worker_of(j.pool())) {
            return None; // help instead
        }
        let start = Instant::now();
        let mut looks = 0u32;
        loop {
            if let Some(r) = self.try_wait() {
                return Some(r);
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

    /// The job behind the handle, if it is not resolved already.
    pub(crate) fn job(&self) -> Option<Arc<dyn Job>> {
        self.job.clone()
    }

    fn timeout_error(&self) -> Error {
        match &self.job {
            Some(j) => j.timeout_error(Phase::Deadline),
            None => Error::timeout(Phase::Deadline, "", ""),
        }
    }

    /// Sends `index` on `tx` when the result lands; true if it is there.
    pub(crate) fn watch(&self, tx: &crossbeam_channel::Sender<usize>, index: usize) -> bool {
        self.slot().watch(tx, index)
    }

    pub(crate) fn unwatch(&self, tx: &crossbeam_channel::Sender<usize>) {
        self.slot().unwatch(tx);
    }
}

/// Runs a continuation's step, a panic in it as its error.
fn guarded<T, U>(f: impl FnOnce(T) -> Result<U, Error>, v: T) -> Result<U, Error> {
    catch_unwind(AssertUnwindSafe(move || f(v))).unwrap_or_else(|p| {
        Err(Error::Panicked {
            message: panic_message(&*p),
        })
    })
}

/// The job of a continuation: the first job's until it finishes, then
/// a budget of its own.
struct Relay {
    first: Arc<dyn Job>,
    own: OnceLock<Deadline>,
}

impl Job for Relay {
    fn state(&self) -> State {
        match self.first.state() {
            State::Done if self.own.get().is_some() => State::Running,
            s => s,
        }
    }
    fn pool(&self) -> usize {
        self.first.pool()
    }
    fn bound(&self) -> Bound {
        match self.own.get() {
            Some(own) => Bound::Started(*own),
            None => match self.first.bound() {
                // Between the first job's end and the step's start.
                Bound::Started(_) if self.first.state() == State::Done => {
                    Bound::Started(Deadline::after(self.first.timeout()))
                }
                b => b,
            },
        }
    }
    fn cancel(&self) -> bool {
        self.first.cancel()
    }
    fn expire(&self) -> bool {
        self.first.expire()
    }
    fn run(&self) -> Ran {
        self.first.run()
    }
    fn resume(&self, ticket: u32) -> bool {
        self.first.resume(ticket)
    }
    fn runs_here(&self) -> bool {
        self.first.runs_here()
    }
    fn sleep(&self) -> Option<(Instant, u32)> {
        self.first.sleep()
    }
    fn timeout(&self) -> Duration {
        self.first.timeout()
    }
    fn timeout_error(&self, phase: Phase) -> Error {
        self.first.timeout_error(phase)
    }
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.job.as_ref().map_or(State::Done, |j| j.state()) {
            State::Queued => "queued",
            State::Running => "running",
            State::Sleeping => "waiting between steps",
            State::Done => "done",
            _ => "cancelled",
        };
        f.debug_struct("Pending")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// One handle as something to wait for.
struct One<'a, T>(&'a Pending<T>);

impl<T: Send + 'static> Waiting for One<'_, T> {
    type Out = Result<T, Error>;

    fn ready(&mut self) -> Option<Self::Out> {
        self.0.try_wait()
    }

    fn jobs(&self) -> Vec<(usize, Arc<dyn Job>)> {
        self.0.job().map(|j| (0, j)).into_iter().collect()
    }

    fn gave_up(&mut self, _: usize, err: Error) -> Option<Self::Out> {
        self.0.slot().spend();
        Some(Err(err))
    }

    fn block(&mut self, look: Deadline) -> Option<Self::Out> {
        self.0.slot().take_by(look)
    }
}
