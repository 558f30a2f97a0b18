//! Polling jobs: start a task on the server, then poll its status until it
//! is done — one `Pending` for the whole thing.

use crate::error::{Error, Phase, redact_url};
use crate::pending::Pending;
use crate::pool::Pool;
use crate::request::RequestBuilder;
use serde_json::Value;
use std::fmt;
use std::time::{Duration, Instant};

type StatusUrl = Box<dyn Fn(&Value) -> Option<String> + Send>;

/// A request that starts a background task on the server, and how to poll
/// for its end; made by [`Pool::poll_job`], run by [`PollJob::until`].
///
/// The whole sequence runs on one worker: the start request, then a GET of
/// the status URL every [`every`](PollJob::every) until the predicate says
/// done or [`within`](PollJob::within) runs out. The worker is busy for
/// that long, sleeping between polls.
///
/// ```no_run
/// use std::time::Duration;
/// let pool = reqpool::Pool::new(4);
/// let done = pool
///     .poll_job(pool.post("http://127.0.0.1:8000/tasks").json_body(&serde_json::json!({"n": 5})))
///     .status_url(|reply| Some(format!("/tasks/{}", reply["id"].as_str()?)))
///     .every(Duration::from_millis(200))
///     .within(Duration::from_secs(30))
///     .until(|status| status["state"] == "done");
/// println!("{}", done.wait()?["result"]);
/// # Ok::<(), reqpool::Error>(())
/// ```
#[must_use = "a poll job does nothing until until() hands it to the pool"]
pub struct PollJob {
    pool: Pool,
    start: RequestBuilder,
    every: Duration,
    within: Duration,
    status_url: StatusUrl,
}

impl Pool {
    /// Starts building a polling job whose first request is `start`; see
    /// [`PollJob`].
    pub fn poll_job(&self, start: RequestBuilder) -> PollJob {
        PollJob {
            pool: self.clone(),
            start,
            every: Duration::from_millis(500),
            within: Duration::from_secs(60),
            status_url: Box::new(|reply| reply.get("status_url")?.as_str().map(str::to_string)),
        }
    }
}

impl PollJob {
    /// The pause between two polls. Defaults to 500 ms.
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval;
        self
    }

    /// The total time limit, from now to the end of the last poll; when it
    /// runs out the job fails with a timeout. Defaults to 60 seconds.
    pub fn within(mut self, limit: Duration) -> Self {
        self.within = limit;
        self
    }

    /// How to find the status URL in the start request's JSON reply; it may
    /// be relative to the start URL. Defaults to the reply's `"status_url"`
    /// field.
    pub fn status_url(mut self, f: impl Fn(&Value) -> Option<String> + Send + 'static) -> Self {
        self.status_url = Box::new(f);
        self
    }

    /// Hands the job to the pool: the `Pending` resolves with the status
    /// JSON for which `done` returned true, or with the first error (an
    /// error status of the start or of a poll, a reply without a status URL,
    /// or a timeout when `within` runs out).
    pub fn until(self, done: impl Fn(&Value) -> bool + Send + 'static) -> Pending<Value> {
        let PollJob {
            pool,
            start,
            every,
            within,
            status_url,
        } = self;
        let deadline = Instant::now().checked_add(within);
        let start = match start.prepare() {
            Ok(p) => p,
            Err(e) => return Pending::ready(Err(e)),
        };
        pool.inner().spawn(deadline, true, move |agent| {
            let deadline = deadline.unwrap_or_else(|| Instant::now() + within);
            let step = |p: &crate::request::Prepared| {
                let own = Instant::now().checked_add(p.timeout).unwrap_or(deadline);
                p.run(agent, own.min(deadline))?.json::<Value>()
            };
            let reply = step(&start)?;
            let spec = &start.spec;
            let Some(url) = status_url(&reply) else {
                return Err(Error::decode(
                    spec.method.as_str(),
                    &spec.url,
                    "the reply names no status url".to_string(),
                    reply.to_string().as_bytes(),
                ));
            };
            let poll = start.get(&url)?;
            loop {
                let status = step(&poll)?;
                if done(&status) {
                    return Ok(status);
                }
                if Instant::now() + every >= deadline {
                    return Err(Error::Timeout {
                        phase: Phase::Deadline,
                        method: "GET".to_string(),
                        url: redact_url(&poll.spec.url),
                    });
                }
                std::thread::sleep(every);
            }
        })
    }
}

impl fmt::Debug for PollJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollJob")
            .field("start", &self.start)
            .field("every", &self.every)
            .field("within", &self.within)
            .finish_non_exhaustive()
    }
}
