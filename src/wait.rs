//! The one wait protocol: how any wait on jobs of a pool — a `Pending`'s,
//! `wait_any`, `first_success`, `fallback`, `Completions` — looks at its
//! jobs, helps them along, gives up on them, and blocks. The rules (the
//! grace past a job's limit, running a queued job inline on a worker of
//! its pool, a job waiting on itself) live here and nowhere else.

use crate::deadline::Deadline;
use crate::error::{Error, Phase};
use crate::task::{Bound, Job, Ran, State};
use crate::worker::on_worker_of;
use std::sync::Arc;
use std::time::Duration;

/// What a wait is for: one handle, the first of several, the next of a
/// completion set.
pub(crate) trait Waiting {
    /// What the wait returns.
    type Out;
    /// A result that is there now, if any (never blocks).
    fn ready(&mut self) -> Option<Self::Out>;
    /// The jobs waited on, each with its index for `gave_up`.
    fn jobs(&self) -> Vec<(usize, Arc<dyn Job>)>;
    /// Job `i` was given up on with `err`; what the wait returns then, or
    /// `None` to go on waiting for the others.
    fn gave_up(&mut self, i: usize, err: Error) -> Option<Self::Out>;
    /// Blocks until a result may be there, or `look` passes.
    fn block(&mut self, look: Deadline) -> Option<Self::Out>;
}

/// The one wait loop: a result, or a job given up on, or `until` (then
/// `None`). On a worker of a job's pool, a job that waits for a worker
/// runs here instead (nested waits cannot deadlock); no look at a job is
/// further apart than its limit plus the grace.
pub(crate) fn wait<W: Waiting>(w: &mut W, until: Deadline) -> Option<W::Out> {
    loop {
        if let Some(r) = w.ready() {
            return Some(r);
        }
        let jobs = w.jobs();
        if let Some((_, j)) = jobs.iter().find(|(_, j)| runnable_here(&**j)) {
            help(&**j, until);
            continue;
        }
        let mut look = until;
        for (i, j) in &jobs {
            if let Some(err) = overdue(&**j)
                && let Some(r) = w.gave_up(*i, err)
            {
                return Some(r);
            }
            look = look.min(next_look(&**j));
        }
        if let Some(r) = w.block(look) {
            return Some(r);
        }
        if until.passed() {
            return None;
        }
    }
}

/// True if the calling thread should run `job` itself: it is a worker of
/// the job's pool and the job waits for a worker (or for its next step).
fn runnable_here(job: &dyn Job) -> bool {
    matches!(job.state(), State::Queued | State::Sleeping) && on_worker_of(job.pool())
}

/// How long a waiter gives a running job past its limit before it stops
/// waiting for it. Requests cannot overrun their limit (the socket is cut
/// off at it); this is for closure jobs blocked on something else.
pub(crate) const GRACE: Duration = Duration::from_millis(250);

/// How often a waiter looks at a job that has not started, to learn its
/// limit once a worker takes it.
const RECHECK: Duration = Duration::from_millis(50);

/// When a waiter on `job` must look at it again.
fn next_look(job: &dyn Job) -> Deadline {
    match job.bound() {
        Bound::Started(limit) => limit.plus(GRACE),
        Bound::Queued(deadline) => deadline.min(Deadline::after(RECHECK)),
    }
}

/// Deals with a job whose time has come, seen by a waiter: a queued job
/// past its deadline resolves with a queue timeout (the result is then in
/// its slot); a job past its limit and the grace is given up on, with
/// the error returned here.
fn overdue(job: &dyn Job) -> Option<Error> {
    if job.runs_here() {
        // A job waiting on its own result would wait for ever.
        return Some(Error::usage(
            "a job waited on its own Pending: its result exists only once it returns",
        ));
    }
    match job.bound() {
        Bound::Queued(deadline) if deadline.passed() => {
            job.expire();
            None
        }
        Bound::Started(limit) if limit.plus(GRACE).passed() => {
            // Named before the cancel: the job's request goes with it.
            let err = job.timeout_error(Phase::Deadline);
            job.cancel();
            Some(err)
        }
        _ => None,
    }
}

/// Runs `job`'s queued or sleeping steps on the calling thread if it is a
/// worker of the job's pool: a worker waiting for a job that needs a
/// worker would otherwise wait for ever. Stops at `until`.
fn help(job: &dyn Job, until: Deadline) {
    if !on_worker_of(job.pool()) {
        return;
    }
    loop {
        match job.state() {
            State::Queued => {
                if job.run() == Ran::No {
                    return;
                }
            }
            State::Sleeping => {
                let Some((when, ticket)) = job.sleep() else {
                    return;
                };
                let stop = until.min(Deadline::at(when));
                std::thread::sleep(stop.left().min(Duration::from_secs(3600)));
                if until.passed() || !job.resume(ticket) {
                    return;
                }
            }
            _ => return,
        }
    }
}
