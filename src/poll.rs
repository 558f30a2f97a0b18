//! Polling jobs: start a task on the server, then poll its status until it
//! is done — one `Pending` for the whole thing.

use crate::error::{Error, Phase};
use crate::pending::Pending;
use crate::pool::JobSpec;
use crate::prepare::Prepared;
use crate::request::RequestBuilder;
use crate::send::Attempts;
use crate::task::{Ctx, Label, Limits, Step};
use crate::trace::JobSpan;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

type StatusUrl = Box<dyn Fn(&Value) -> Option<String> + Send>;

/// A request that starts a background task on the server, and how to poll
/// for its end; made by [`RequestBuilder::poll`], run by [`PollJob::until`].
///
/// The start request runs on a worker, then a GET of the status URL every
/// [`every`](PollJob::every) until the predicate says done or the
/// [`timeout`](PollJob::timeout) runs out. Between two polls the job waits
/// in the pool's timer, not on a worker, so a few workers can follow many
/// poll jobs. Each request of it follows the pool's host caps, retry
/// policy (or the start request's own) and limits.
///
/// ```no_run
/// use std::time::Duration;
/// let pool = reqpool::Pool::new(4);
/// let done = pool
///     .post("http://127.0.0.1:8000/tasks")
///     .json_body(&serde_json::json!({"n": 5}))
///     .poll()
///     .status_url(|reply| Some(format!("/tasks/{}", reply["id"].as_str()?)))
///     .every(Duration::from_millis(200))
///     .timeout(Duration::from_secs(30))
///     .until(|status| status["state"] == "done");
/// println!("{}", done.wait()?["result"]);
/// # Ok::<(), reqpool::Error>(())
/// ```
#[must_use = "a poll job does nothing until until() hands it to the pool"]
pub struct PollJob {
    start: RequestBuilder,
    every: Duration,
    timeout: Duration,
    status_url: StatusUrl,
}

impl RequestBuilder {
    /// Makes this request the start of a polling job: it starts a task on
    /// the server, whose status URL is then polled until done; see
    /// [`PollJob`].
    pub fn poll(self) -> PollJob {
        PollJob {
            start: self,
            every: Duration::from_millis(500),
            timeout: Duration::from_secs(60),
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

    /// The time limit of the whole job, from the moment a worker starts it
    /// to the end of the last poll; when it runs out the job fails with a
    /// timeout. The start request's own deadline, if it has one, still
    /// applies. Defaults to 60 seconds.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
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
    /// JSON for which `done` returned true. Blocks only if a bounded queue
    /// is full.
    ///
    /// # Errors
    ///
    /// The `Pending` resolves with the first error: an error status of the
    /// start or of a poll, a reply without a status URL ([`Error::Decode`]),
    /// or a timeout when the job's time runs out.
    pub fn until(self, done: impl Fn(&Value) -> bool + Send + 'static) -> Pending<Value> {
        let PollJob {
            start,
            every,
            timeout,
            status_url,
        } = self;
        let (pool, start) = match start.prepare() {
            Ok((pool, _, p)) => (pool, p),
            Err(e) => return Pending::ready(Err(e)),
        };
        let inner = pool.inner();
        let limits = Limits {
            timeout,
            deadline: start.limits().deadline,
        };
        let spec = JobSpec {
            host: inner.caps_hosts().then(|| start.host()).flatten(),
            label: Some(start.clone() as Arc<dyn Label>),
            ..JobSpec::new(limits, true)
        };
        let mut stage = Stage::Start(Attempts::default());
        let span = JobSpan::new(start.spec.method.as_str(), &start.spec.url);
        inner.submit(spec, move |ctx: &Ctx<'_>| {
            span.in_step(|| {
                let step = poll_step(&mut stage, &start, every, &status_url, &done, ctx);
                if let Step::Done(result) = &step {
                    let (Stage::Start(st) | Stage::Poll(_, st)) = &stage;
                    span.ended(result, None, st.number());
                }
                step
            })
        })
    }
}

/// One step of a poll job: its start request, or one poll.
fn poll_step(
    stage: &mut Stage,
    start: &Prepared,
    every: Duration,
    status_url: &dyn Fn(&Value) -> Option<String>,
    done: &dyn Fn(&Value) -> bool,
    ctx: &Ctx<'_>,
) -> Step<Value> {
    match stage {
        Stage::Start(st) => {
            let reply = match json_step(start, st, ctx) {
                Ok(v) => v,
                Err(step) => return step,
            };
            let Some(url) = status_url(&reply) else {
                return Step::Done(Err(Error::decode(
                    start.spec.method.as_str(),
                    &start.spec.url,
                    "the reply names no status url".to_string(),
                    reply.to_string().as_bytes(),
                )));
            };
            match start.get(&url) {
                Ok(poll) => *stage = Stage::Poll(Arc::new(poll), Attempts::default()),
                Err(e) => return Step::Done(Err(e)),
            }
            // The first poll is a request of its own: back
            // through the queue, so the host's policies see it.
            Step::Sleep(Instant::now())
        }
        Stage::Poll(poll, st) => {
            let status = match json_step(poll, st, ctx) {
                Ok(v) => v,
                Err(step) => return step,
            };
            if done(&status) {
                return Step::Done(Ok(status));
            }
            let next = Instant::now().checked_add(every);
            match next {
                Some(t) if ctx.limit.instant().is_none_or(|l| t < l) => {
                    *st = Attempts::default();
                    Step::Sleep(t)
                }
                _ => Step::Done(Err(Error::timeout(Phase::Deadline, "GET", &poll.spec.url))),
            }
        }
    }
}

/// One request of a poll job, to its JSON reply; or the step the job
/// returns instead (a wait between attempts, or the failure).
fn json_step(req: &Prepared, st: &mut Attempts, ctx: &Ctx<'_>) -> Result<Value, Step<Value>> {
    match req.step(st, ctx) {
        Step::Sleep(t) => Err(Step::Sleep(t)),
        Step::Done(r) => r
            .and_then(|resp| resp.json::<Value>())
            .map_err(|e| Step::Done(Err(e))),
    }
}

/// Where a poll job stands.
enum Stage {
    Start(Attempts),
    Poll(Arc<Prepared>, Attempts),
}

impl fmt::Debug for PollJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollJob")
            .field("start", &self.start)
            .field("every", &self.every)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
