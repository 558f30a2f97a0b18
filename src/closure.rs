//! Closures as jobs: `Pool::submit` and `try_submit`, for anything the
//! request builder does not cover. A closure is a job of one step.

use crate::error::Error;
use crate::pending::Pending;
use crate::pool::{JobSpec, Pool};
use crate::task::{Ctx, Step};

impl Pool {
    /// Runs `job` on a worker with the pool's shared agent.
    ///
    /// Use it for anything the request builder does not cover. The job
    /// gets the pool's limits: it has the pool's
    /// [`timeout`](crate::Builder::timeout) from its start (and its
    /// [`deadline`](crate::Builder::deadline) from now, if set), every
    /// request it makes through `agent` is cut off when that runs out, and
    /// [`Pending::wait`] gives up on it shortly after. Requests through the
    /// agent follow the pool's connect and response limits, and — unlike
    /// the request builder — return a status of 400 and up as a response,
    /// not an error, and do not follow redirects. A ureq error the closure
    /// returns (with `?` or [`Error::other`]) becomes the same typed error
    /// the request builder gives, naming the last request the closure sent
    /// through `agent` (its URL redacted).
    ///
    /// Blocks only if the pool has a bounded queue and it is full.
    ///
    /// # Errors
    ///
    /// The `Pending` resolves with the closure's own error, with
    /// [`Error::Panicked`] if it panics (the worker lives on), with a
    /// timeout if it outlives its limit, and at once with [`Error::Closed`]
    /// after a shutdown.
    ///
    /// ```
    /// let pool = reqpool::Pool::new(2);
    /// let answer = pool.submit(|_agent| Ok(21 * 2));
    /// assert_eq!(answer.wait()?, 42);
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    ///
    /// The closure must be `Send`:
    ///
    /// ```compile_fail
    /// let pool = reqpool::Pool::new(1);
    /// let rc = std::rc::Rc::new(1);
    /// let job = pool.submit(move |_| Ok(*rc));
    /// ```
    pub fn submit<T, F>(&self, job: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&ureq::Agent) -> Result<T, Error> + Send + 'static,
    {
        self.submit_closure(true, job)
    }

    /// Like [`submit`](Pool::submit), but never blocks (`try_` always means
    /// that here).
    ///
    /// # Errors
    ///
    /// As [`submit`](Pool::submit), and with a full bounded queue the
    /// `Pending` resolves at once with [`Error::QueueFull`].
    pub fn try_submit<T, F>(&self, job: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&ureq::Agent) -> Result<T, Error> + Send + 'static,
    {
        self.submit_closure(false, job)
    }

    pub(crate) fn submit_closure<T, F>(&self, block: bool, job: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&ureq::Agent) -> Result<T, Error> + Send + 'static,
    {
        let inner = self.inner();
        inner.submit(
            JobSpec::new(inner.defaults().limits(), block),
            one_step(job),
        )
    }
}

/// A closure job as a job of one step.
pub(crate) fn one_step<T, F>(job: F) -> impl FnMut(&Ctx<'_>) -> Step<T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(&ureq::Agent) -> Result<T, Error> + Send + 'static,
{
    let mut job = Some(job);
    move |ctx: &Ctx<'_>| match job.take() {
        Some(f) => {
            let (result, last) = crate::wire::watch_sent(|| f(ctx.agent));
            Step::Done(
                result
                    .map_err(|e| classified(e, last.map(|(m, u)| (m.to_string(), u.to_string())))),
            )
        }
        None => Step::Done(Err(Error::Closed)),
    }
}

/// A closure's error as the request builder would have said it: a ureq
/// error wrapped with `Error::other` becomes a timeout with its phase or a
/// transport failure with its kind; one that names no request (ureq's
/// errors do not) names `last`, the last request the closure sent through
/// the pool's agent (its URL redacted).
fn classified(e: Error, last: Option<(String, String)>) -> Error {
    let (method, url) = last.unwrap_or_default();
    match e {
        Error::Other(b) => match b.downcast::<ureq::Error>() {
            Ok(u) => Error::from_ureq(*u, &method, &url),
            Err(b) => Error::Other(b),
        },
        Error::Timeout { phase, url: u, .. } if u.is_empty() && !url.is_empty() => {
            Error::timeout(phase, &method, &url)
        }
        Error::Transport {
            kind,
            url: u,
            message,
            ..
        } if u.is_empty() && !url.is_empty() => Error::transport(kind, &method, &url, &message),
        e => e,
    }
}
