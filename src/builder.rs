//! `Builder`: every knob of a `Pool`, with safe defaults.

use crate::error::Error;
use crate::pool::{ErrorHook, Pool, Settings};
use crate::prepare::{PhaseLimits, RequestDefaults};
use crate::retry::{Budget, Retry};
use crate::wire::{AgentSettings, guarded, pool_agent};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Configures and builds a [`Pool`].
///
/// ```
/// use std::time::Duration;
/// let pool = reqpool::Pool::builder()
///     .workers(16)
///     .timeout(Duration::from_secs(10))
///     .connect_timeout(Duration::from_secs(2))
///     .build()?;
/// # Ok::<(), reqpool::Error>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder {
    workers: usize,
    thread_name: String,
    stack_size: Option<usize>,
    timeout: Duration,
    deadline: Option<Duration>,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
    max_response_bytes: u64,
    user_agent: String,
    agent: Option<ureq::Agent>,
    max_queued: Option<usize>,
    drain_timeout: Duration,
    on_error: Option<ErrorHook>,
    retry: Retry,
    retry_budget: Option<(f64, u32)>,
    max_per_host: Option<usize>,
    hedge: Option<crate::hedge::Hedge>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: 8,
            thread_name: "reqpool-worker".to_string(),
            stack_size: None,
            timeout: Duration::from_secs(30),
            deadline: None,
            connect_timeout: Duration::from_secs(10),
            response_timeout: None,
            max_response_bytes: 10 * 1024 * 1024,
            user_agent: concat!("reqpool/", env!("CARGO_PKG_VERSION")).to_string(),
            agent: None,
            max_queued: None,
            drain_timeout: Duration::from_secs(30),
            on_error: None,
            retry: Retry::none(),
            retry_budget: None,
            max_per_host: None,
            hedge: None,
        }
    }
}

impl Builder {
    /// The number of worker threads: how many jobs run at once.
    ///
    /// The work is waiting on the network, not the CPU, so the default does
    /// not follow the number of cores. Zero makes [`build`](Builder::build)
    /// fail. Defaults to 8.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// The name of the worker threads, as shown by debuggers and panics.
    /// Defaults to `"reqpool-worker"`.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// The stack size of each worker thread, in bytes. Small stacks (64 KiB)
    /// let a pool of thousands of workers stay small. Defaults to the
    /// standard library's default (2 MiB).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// The time limit of each job, from the moment a worker starts it to
    /// its end: every attempt, redirect and wait between attempts of a
    /// request, a whole poll job, a closure job. Time in the queue does
    /// not count, so a batch far larger than the workers still succeeds.
    ///
    /// It is a true total: the socket of a request is cut off when it runs
    /// out, whatever the server does (a trickled body included), and
    /// [`Pending::wait`](crate::Pending::wait) stops waiting shortly after
    /// it even for a closure stuck elsewhere. A request can set its own
    /// with [`RequestBuilder::timeout`](crate::RequestBuilder::timeout).
    /// `Duration::MAX` means none. Defaults to 30 seconds.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// A limit for every job from the moment it is submitted, time in the
    /// queue included, on top of the [`timeout`](Builder::timeout): a job
    /// still queued when it passes never starts and resolves at once with
    /// a [`Phase::Queued`](crate::Phase::Queued) timeout that names the
    /// request. For latency-critical callers whose answer is worthless
    /// after a point. A request can set its own with
    /// [`RequestBuilder::deadline`](crate::RequestBuilder::deadline).
    /// Defaults to none.
    pub fn deadline(mut self, limit: Duration) -> Self {
        self.deadline = Some(limit);
        self
    }

    /// The time limit for opening a connection (TCP and TLS), within the
    /// job's [`timeout`](Builder::timeout). Defaults to 10 seconds.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// The time limit for the server to start answering (status and
    /// headers) once the request is sent, within the job's
    /// [`timeout`](Builder::timeout); it fails with
    /// [`Phase::Response`](crate::Phase::Response). Defaults to no limit of
    /// its own (the job's timeout).
    pub fn response_timeout(mut self, limit: Duration) -> Self {
        self.response_timeout = Some(limit);
        self
    }

    /// The largest response body accepted, in decoded bytes; a larger one
    /// fails with [`Error::TooLarge`]. Defaults to 10 MiB.
    pub fn max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The `User-Agent` header sent with every request. Defaults to
    /// `"reqpool/<version>"`.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// Takes the configuration of your own [`ureq::Agent`] (proxy, TLS,
    /// user agent, idle pool size, …) for every request.
    ///
    /// The pool builds its own agent from that configuration, with its own
    /// connection pool and a guard on every connection that enforces each
    /// job's time limit; the agent's connector and resolver are not used.
    /// The pool's time limits, body cap, redirect and error-status rules
    /// still apply to each request (they are set per request, which costs a
    /// little). [`user_agent`](Builder::user_agent) is ignored: the agent's
    /// own setting is used. Make sure its idle pool keeps at least as many
    /// connections per host as there are workers, or connections will be
    /// reopened. Defaults to an agent built by the pool: no proxy from the
    /// environment, an idle pool of `workers` connections per host, and
    /// redirects handled by reqpool rather than by ureq.
    pub fn agent(mut self, agent: ureq::Agent) -> Self {
        self.agent = Some(agent);
        self
    }

    /// Bounds the queue of jobs waiting for a worker. When it is full,
    /// submitting blocks until there is room (the `try_` methods return
    /// [`Error::QueueFull`] instead), so memory stays flat when a producer
    /// outruns the workers. Defaults to unbounded.
    pub fn max_queued(mut self, n: usize) -> Self {
        self.max_queued = Some(n);
        self
    }

    /// How long dropping the last `Pool` handle waits for queued and
    /// fire-and-forget jobs to finish. What is still unfinished then is
    /// counted and logged, and keeps running in the background. Defaults to
    /// 30 seconds.
    pub fn drain_timeout(mut self, limit: Duration) -> Self {
        self.drain_timeout = limit;
        self
    }

    /// A hook that sees the error of every failed fire-and-forget job (see
    /// [`Pool::fire`]); it runs on the worker. Failures are also logged at
    /// `warn` through the `log` facade. Defaults to no hook.
    pub fn on_error(mut self, hook: impl Fn(&Error) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(hook));
        self
    }

    /// The retry policy of every request (a request can set its own with
    /// [`RequestBuilder::retry`](crate::RequestBuilder::retry)). Retries
    /// are off unless set. Defaults to [`Retry::none`].
    pub fn retry(mut self, policy: Retry) -> Self {
        self.retry = policy;
        self
    }

    /// Limits retries across the whole pool, so a failing server is not
    /// hammered: a token bucket that starts with `burst` tokens, gains
    /// `ratio` tokens for every first attempt (up to `burst`), and pays one
    /// token per retry; with no token left, a request fails instead of
    /// retrying. `ratio = 0.1` allows retries for about 10% of the traffic.
    /// Defaults to no budget.
    pub fn retry_budget(mut self, ratio: f64, burst: u32) -> Self {
        self.retry_budget = Some((ratio, burst));
        self
    }

    /// At most `n` requests in flight to one host (`host:port`), so a slow
    /// host cannot take every worker. A request whose host is at the cap
    /// waits off the workers (it does not hold one), and requests to other
    /// hosts keep flowing. Every request counts, however it was sent
    /// (`json`, `send`, `fire`, a poll job); closure jobs are not counted
    /// (the pool cannot know where they go). Defaults to no cap.
    pub fn max_per_host(mut self, n: usize) -> Self {
        self.max_per_host = Some(n.max(1));
        self
    }

    /// Hedges every idempotent request: see [`Hedge`](crate::Hedge).
    /// Defaults to no hedging.
    pub fn hedge(mut self, hedge: crate::hedge::Hedge) -> Self {
        self.hedge = Some(hedge);
        self
    }

    /// Starts the workers and returns the pool.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if `workers` or `max_queued` is zero, or the stack
    /// size is below 16 KiB.
    pub fn build(self) -> Result<Pool, Error> {
        if self.workers == 0 {
            return Err(Error::usage("a pool needs at least one worker"));
        }
        if self.stack_size.is_some_and(|s| s < 16 * 1024) {
            return Err(Error::usage("worker stack size must be at least 16 KiB"));
        }
        if self.max_queued == Some(0) {
            return Err(Error::usage("max_queued must be at least 1"));
        }
        let (agent, per_request) = match &self.agent {
            Some(a) => {
                let cfg = a.config();
                let t = cfg.timeouts();
                if t.global.is_some() || t.per_call.is_some() {
                    log::warn!(
                        "reqpool: the agent given to Builder::agent sets timeout_global or \
                         timeout_per_call; ureq 3.5 then resolves the host on a new thread for \
                         every request (about 6x less throughput). The pool's own limits \
                         already bound every request."
                    );
                }
                let phases = PhaseLimits {
                    connect: self.connect_timeout,
                    response: self.response_timeout,
                };
                (guarded(cfg.clone()), Some(phases))
            }
            None => (
                pool_agent(&AgentSettings {
                    workers: self.workers,
                    user_agent: &self.user_agent,
                    connect_timeout: self.connect_timeout,
                    response_timeout: self.response_timeout,
                }),
                None,
            ),
        };
        let defaults = RequestDefaults {
            timeout: self.timeout,
            deadline: self.deadline,
            max_response_bytes: self.max_response_bytes,
            retry: Arc::new(self.retry),
            budget: self
                .retry_budget
                .map(|(ratio, burst)| Arc::new(Budget::new(ratio, burst))),
            hedge: self.hedge,
            per_request,
        };
        let settings = Settings {
            workers: self.workers,
            thread_name: self.thread_name,
            stack_size: self.stack_size,
            max_queued: self.max_queued,
            drain_timeout: self.drain_timeout,
            on_error: self.on_error,
            max_per_host: self.max_per_host,
        };
        let pool = Pool::start(settings, agent, defaults);
        crate::lifecycle::drain_at_exit(pool.inner());
        Ok(pool)
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("thread_name", &self.thread_name)
            .field("stack_size", &self.stack_size)
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("user_agent", &self.user_agent)
            .field("own_agent", &self.agent.is_some())
            .field("max_queued", &self.max_queued)
            .field("drain_timeout", &self.drain_timeout)
            .field("on_error", &self.on_error.is_some())
            .field("retry", &self.retry)
            .field("retry_budget", &self.retry_budget)
            .field("max_per_host", &self.max_per_host)
            .field("hedge", &self.hedge)
            .finish()
    }
}
