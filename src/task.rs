//! One job's shared state: who runs it, who cancels it, where its result goes.
//!
//! A job is a series of steps: each run on a worker either finishes it or
//! says when it wants to run again (a retry's backoff, a poll interval).
//! Between steps it waits off the workers, in the pool's timer.
//!
//! A task is queued, running, sleeping (between steps), done or cancelled.
//! Exactly one party wins each move out of queued or sleeping: the worker
//! that picks it up, a waiter on a worker thread that runs it inline (so a
//! job waiting on a queued job cannot deadlock the pool), the timer that
//! wakes it, a cancel, or a waiter that expires it at its deadline. Only the
//! party that finishes it delivers a result, so every result is delivered
//! exactly once.

use crate::deadline::Deadline;
use crate::error::{Error, Phase, panic_message};
use crate::slot::{Sink, Slot};
use crate::sync::lock;
use crate::wire::{Conn, InFlight, with_job, with_limit};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

pub(crate) use crate::state::State;
use crate::state::TaskState;

/// What one step of a job comes to.
pub(crate) enum Step<T> {
    /// The job is over.
    Done(Result<T, Error>),
    /// Run the next step at this instant, off the workers until then.
    Sleep(Instant),
}

/// What a job's step gets: the agent and the job's limit.
pub(crate) struct Ctx<'a> {
    pub(crate) agent: &'a ureq::Agent,
    /// All of the pool's agents (one per 512 workers), when it made them.
    pub(crate) agents: Option<&'a crate::agent::Agents>,
    pub(crate) limit: Deadline,
    /// The pool's per-host policies, if it has any.
    pub(crate) hosts: Option<&'a dyn crate::hosts::Feedback>,
}

/// What running a task asks of the one who ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ran {
    /// It was not queued: someone else has it, or it is over.
    No,
    /// It ran one step; the result is delivered, or it runs again later.
    Step,
    /// It wants to run again at `until`: hand it back with `resume(ticket)`.
    Sleep { until: Instant, ticket: u32 },
}

/// A job's time limits, as given at submission.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// From the first start on a worker, covering every step.
    pub(crate) timeout: Duration,
    /// From submission, queue included.
    pub(crate) deadline: Deadline,
}

/// How far a waiter may wait for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// The job has started: this is its limit.
    Started(Deadline),
    /// Not started yet: only its submission deadline bounds it (its
    /// `timeout` starts when a worker takes it).
    Queued(Deadline),
}

/// Names the request a task runs, for errors raised outside of it.
pub(crate) trait Label: Send + Sync {
    fn method(&self) -> &str;
    /// The raw URL; redacted by the error constructors.
    fn url(&self) -> &str;
}

/// A job as its waiters see it: a `Pending`, the wait loop, a hedge.
pub(crate) trait Job: Send + Sync {
    fn state(&self) -> State;
    /// The pool the job belongs to.
    fn pool(&self) -> usize;
    /// How far a waiter may wait.
    fn bound(&self) -> Bound;
    /// Moves a queued or sleeping job to cancelled and resolves it (or
    /// cuts off the step that runs).
    fn cancel(&self) -> bool;
    /// Resolves a job that has not started by its submission deadline
    /// with a queue timeout. False if it has started or is over.
    fn expire(&self) -> bool;
    /// Runs one step of a queued job on the calling thread.
    fn run(&self) -> Ran;
    /// Hands a sleeping job back to the queue state, if `ticket` is still
    /// its current sleep. The caller then queues it (or runs it).
    fn resume(&self, ticket: u32) -> bool;
    /// True if a step of this job is running on the calling thread (a
    /// wait on it from here would wait on itself).
    fn runs_here(&self) -> bool;
    /// The current sleep of a sleeping job: when, and its ticket.
    fn sleep(&self) -> Option<(Instant, u32)>;
    /// The job's own `timeout` (a continuation gets as much).
    fn timeout(&self) -> Duration;
    /// A timeout error naming the job's request.
    fn timeout_error(&self, phase: Phase) -> Error;
}

/// A job as the pool's queue sees it on its way to a worker: besides
/// what a waiter does, it can be refused, and it counts against a host.
pub(crate) trait Queued: Job {
    /// Resolves a queued job with `err` without running it (a host whose
    /// circuit is open). False if it was not queued.
    fn reject(&self, err: Error) -> bool;
    /// Starts the job's clock if it has not started (a wait for its
    /// host's rate limit counts against its `timeout`); returns its limit.
    fn start_clock(&self) -> Deadline;
    /// True once a step of the job has run (it left the queue).
    fn begun(&self) -> bool;
    /// The host the job counts against, for a per-host cap.
    fn host(&self) -> Option<&Arc<str>>;
}

/// How a task that ran came to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Failed,
    Panicked,
    /// Cancelled while it ran (already counted as cancelled).
    Cancelled,
}

/// Accounting callbacks from the pool, and what a task needs of it.
pub(crate) trait TaskHooks: Send + Sync {
    fn id(&self) -> usize;
    fn agent(&self) -> &ureq::Agent;
    fn agents(&self) -> Option<&crate::agent::Agents>;
    fn hosts(&self) -> Option<&dyn crate::hosts::Feedback>;
    /// The task left the queue for its first step.
    fn started(&self);
    /// A sleeping task ran its next step.
    fn resumed(&self);
    /// A task went to sleep between steps: run it again at `until` (if
    /// `ticket` is still its sleep then).
    fn slept(&self, task: Arc<dyn Queued>, until: Instant, ticket: u32);
    /// The task was cancelled (`sleeping`: between steps) or expired in
    /// the queue, without running (again).
    fn skipped(&self, sleeping: bool, cancelled: bool);
    /// The task ran to its end, its first step having started at `started`.
    fn finished(&self, queued_at: Instant, started: Instant, outcome: Outcome);
    /// The task was cancelled while it ran (it is counted out of the
    /// running when its step ends, with `Outcome::Cancelled`).
    fn cancelled_running(&self);
    /// True once a `shutdown_now` began: a job that fails now was cut off.
    fn cancelling(&self) -> bool;
    /// True once `shutdown_timeout` shut the agent down: a transport
    /// failure now was the pool's doing.
    fn interrupted(&self) -> bool;
    /// The task's result has been delivered (continuations included).
    fn delivered(&self);
}

/// A job of type `F` producing `T`, with its delivery.
pub(crate) struct Task<T, F> {
    me: Weak<Task<T, F>>,
    host: Option<Arc<str>>,
    /// The state in the low byte, the number of sleeps above it.
    state: TaskState,
    queued_at: Instant,
    limits: Limits,
    /// When the job's clock started (its first step, or the first wait
    /// for its host's rate limit): its limit is the deadline and the
    /// timeout from then, whichever comes first.
    started: OnceLock<Instant>,
    /// A step of it has run (it left the queue).
    begun: std::sync::atomic::AtomicBool,
    /// The job between its steps, and where its step is now.
    work: Mutex<Work<F>>,
    slot: Slot<T>,
    hooks: Arc<dyn TaskHooks>,
    /// A detached fire: done once its request is written.
    detached: bool,
}

/// The parts of a task that change while it runs, under one lock.
struct Work<F> {
    /// The job, while no step of it runs (taken out for a step). Boxed:
    /// it goes when the job is over, while the task stays as long as its
    /// handle does.
    job: Option<Box<F>>,
    /// When a sleeping job runs next.
    wake: Option<Instant>,
    /// The connection the running step uses now, for a cancel in flight.
    conn: Option<Weak<Conn>>,
    /// What names the request in errors raised outside of it (for a
    /// request: the request itself, body included, so it goes when the
    /// job is over, not when its handle does).
    label: Option<Arc<dyn Label>>,
}

impl<T, F> Task<T, F>
where
    T: Send + 'static,
    F: FnMut(&Ctx<'_>) -> Step<T> + Send + 'static,
{
    pub(crate) fn new(
        job: F,
        limits: Limits,
        hooks: Arc<dyn TaskHooks>,
        label: Option<Arc<dyn Label>>,
        host: Option<Arc<str>>,
        detached: bool,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Task {
            me: me.clone(),
            host,
            state: TaskState::new(),
            queued_at: Instant::now(),
            limits,
            started: OnceLock::new(),
            begun: std::sync::atomic::AtomicBool::new(false),
            work: Mutex::new(Work {
                job: Some(Box::new(job)),
                wake: None,
                conn: None,
                label,
            }),
            slot: Slot::new(),
            hooks,
            detached,
        })
    }

    /// Ends a task that ran: delivers its result, unless it was cancelled
    /// while it ran (the canceller delivered then).
    /// The job is over: its closure, its request and its connection go
    /// now (dropped outside the lock); the handle keeps only the result.
    fn over(&self) {
        let parts = {
            let mut w = lock(&self.work);
            (w.job.take(), w.label.take(), w.conn.take())
        };
        drop(parts);
    }

    fn finish(&self, result: Result<T, Error>, started: Instant, panicked: bool) {
        self.over();
        if !self.state.finish() {
            self.hooks
                .finished(self.queued_at, started, Outcome::Cancelled);
            self.hooks.delivered();
            return;
        }
        // A job cut off by `shutdown_now` was cancelled, whatever its I/O
        // said about it.
        let cut_off = result.is_err() && self.hooks.cancelling();
        let outcome = match (&result, panicked) {
            _ if cut_off => {
                self.hooks.cancelled_running();
                Outcome::Cancelled
            }
            (_, true) => Outcome::Panicked,
            (Ok(_), _) => Outcome::Succeeded,
            (Err(_), _) => Outcome::Failed,
        };
        let result = match result {
            _ if cut_off => Err(Error::Cancelled),
            // The pool shut its connections down: say so, not "reset".
            Err(Error::Transport {
                kind, method, url, ..
            }) if self.hooks.interrupted() => Err(Error::Transport {
                kind,
                method,
                url,
                message: "cut off by shutdown_timeout: the pool shut its connections down"
                    .to_string(),
            }),
            r => r,
        };
        self.hooks.finished(self.queued_at, started, outcome);
        self.slot.deliver(result);
        self.hooks.delivered();
    }

    /// When the job's clock started, and its limit; started now if it
    /// has not.
    fn clock(&self) -> (Instant, Deadline) {
        let started = *self.started.get_or_init(Instant::now);
        (started, self.limit_from(started))
    }

    /// The job's limit, had its clock started at `started`.
    fn limit_from(&self, started: Instant) -> Deadline {
        self.limits
            .deadline
            .min(Deadline::from(started, self.limits.timeout))
    }

    fn has_begun(&self) -> bool {
        self.begun.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Cancels a task whose step runs now: resolves it as cancelled at
    /// once and shuts the socket of its request in flight down, so the
    /// worker is free within milliseconds. The step's own end is counted
    /// when it comes.
    fn cancel_running(&self) -> bool {
        if !self.state.cancel_running() {
            return false;
        }
        let conn = lock(&self.work).conn.take().and_then(|w| w.upgrade());
        if let Some(conn) = conn {
            conn.abort_for(InFlight::id(self));
        }
        self.hooks.cancelled_running();
        self.slot.deliver(Err(Error::Cancelled));
        true
    }
}

impl<T, F> InFlight for Task<T, F>
where
    T: Send + 'static,
    F: FnMut(&Ctx<'_>) -> Step<T> + Send + 'static,
{
    fn id(&self) -> usize {
        self as *const Self as *const () as usize
    }

    fn using(&self, conn: Option<&Arc<Conn>>) {
        let mut work = lock(&self.work);
        match conn {
            Some(c) => work.conn = Some(Arc::downgrade(c)),
            None => {
                let current = work.conn.take();
                drop(work);
                if let Some(c) = current.and_then(|w| w.upgrade()) {
                    c.disown(InFlight::id(self));
                }
            }
        }
    }

    fn aborted(&self) -> bool {
        self.state.get() == State::Cancelled
    }

    fn detached(&self) -> bool {
        self.detached
    }
}

impl<T, F> Sink<T> for Task<T, F>
where
    T: Send + 'static,
    F: FnMut(&Ctx<'_>) -> Step<T> + Send + 'static,
{
    fn slot(&self) -> &Slot<T> {
        &self.slot
    }
}

impl<T, F> Job for Task<T, F>
where
    T: Send + 'static,
    F: FnMut(&Ctx<'_>) -> Step<T> + Send + 'static,
{
    fn state(&self) -> State {
        self.state.get()
    }

    fn pool(&self) -> usize {
        self.hooks.id()
    }

    fn bound(&self) -> Bound {
        match self.started.get() {
            Some(started) => Bound::Started(self.limit_from(*started)),
            None => Bound::Queued(self.limits.deadline),
        }
    }

    fn cancel(&self) -> bool {
        if self.state.cancel_waiting().is_none() {
            return self.cancel_running();
        }
        self.over();
        // Started before: it is counted among the scheduled, not the queued.
        self.hooks.skipped(self.has_begun(), true);
        self.slot.deliver(Err(Error::Cancelled));
        self.hooks.delivered();
        true
    }

    fn expire(&self) -> bool {
        if self.has_begun() || !self.limits.deadline.passed() {
            return false;
        }
        if self.state.take_queued(State::Done).is_none() {
            return false;
        }
        // Named before the job is over: its request goes with it.
        let err = self.timeout_error(Phase::Queued);
        self.over();
        self.hooks.skipped(false, false);
        self.slot.deliver(Err(err));
        self.hooks.delivered();
        true
    }

    fn run(&self) -> Ran {
        let Some(running) = self.state.take_queued(State::Running) else {
            return Ran::No;
        };
        let first = !self.begun.swap(true, std::sync::atomic::Ordering::AcqRel);
        let (started, limit) = self.clock();
        if first {
            self.hooks.started();
        } else {
            self.hooks.resumed();
        }
        let Some(mut job) = lock(&self.work).job.take() else {
            return Ran::No;
        };
        if first && self.limits.deadline.passed() {
            // It waited in the queue past its deadline: it never starts.
            self.finish(Err(self.timeout_error(Phase::Queued)), started, false);
            return Ran::Step;
        }
        let ctx = Ctx {
            agent: self.hooks.agent(),
            agents: self.hooks.agents(),
            limit,
            hosts: self.hooks.hosts(),
        };
        let me: Option<Arc<dyn InFlight>> = self.me.upgrade().map(|m| m as Arc<dyn InFlight>);
        let step = catch_unwind(AssertUnwindSafe(|| {
            with_limit(limit, || match me {
                Some(me) => with_job(me, || job(&ctx)),
                None => job(&ctx),
            })
        }));
        match step {
            Ok(Step::Sleep(until)) => {
                {
                    let mut work = lock(&self.work);
                    work.job = Some(job);
                    work.wake = Some(until);
                    work.conn = None;
                }
                // Not a plain store: a cancel in flight may have won.
                let Some(ticket) = self.state.sleep(running) else {
                    self.over();
                    self.hooks
                        .finished(self.queued_at, started, Outcome::Cancelled);
                    self.hooks.delivered();
                    return Ran::Step;
                };
                if let Some(me) = self.me.upgrade() {
                    self.hooks.slept(me, until, ticket);
                }
                Ran::Sleep { until, ticket }
            }
            Ok(Step::Done(result)) => {
                drop(job);
                self.finish(result, started, false);
                Ran::Step
            }
            Err(payload) => {
                drop(job);
                let message = panic_message(&*payload);
                self.finish(Err(Error::Panicked { message }), started, true);
                Ran::Step
            }
        }
    }

    fn resume(&self, ticket: u32) -> bool {
        self.state.resume(ticket)
    }

    fn runs_here(&self) -> bool {
        crate::wire::running_here(InFlight::id(self))
    }

    fn timeout(&self) -> Duration {
        self.limits.timeout
    }

    fn timeout_error(&self, phase: Phase) -> Error {
        match lock(&self.work).label.clone() {
            Some(l) => Error::timeout(phase, l.method(), l.url()),
            None => Error::timeout(phase, "", ""),
        }
    }

    fn sleep(&self) -> Option<(Instant, u32)> {
        let ticket = self.state.sleeping()?;
        let until = lock(&self.work).wake?;
        Some((until, ticket))
    }
}

impl<T, F> Queued for Task<T, F>
where
    T: Send + 'static,
    F: FnMut(&Ctx<'_>) -> Step<T> + Send + 'static,
{
    fn reject(&self, err: Error) -> bool {
        if self.state.take_queued(State::Done).is_none() {
            return false;
        }
        self.over();
        self.hooks.skipped(false, false);
        self.slot.deliver(Err(err));
        self.hooks.delivered();
        true
    }

    fn start_clock(&self) -> Deadline {
        self.clock().1
    }

    fn begun(&self) -> bool {
        self.has_begun()
    }

    fn host(&self) -> Option<&Arc<str>> {
        self.host.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::{Ctx, Step, Task};

    /// What a finished handle keeps while nobody waits on it: the task
    /// (its job is boxed and gone), behind an `Arc`'s two counts. The
    /// ladder bench measures the same on the heap (248 bytes).
    #[test]
    fn a_finished_closure_handle_keeps_at_most_256_bytes() {
        type Job = fn(&Ctx<'_>) -> Step<u64>;
        let kept = std::mem::size_of::<Task<u64, Job>>() + 2 * std::mem::size_of::<usize>();
        assert!(kept <= 256, "a task of a u64 keeps {kept} bytes");
    }
}
