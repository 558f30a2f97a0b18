//! `Builder`: every knob of a `Pool`, with safe defaults.

use crate::error::Error;
use crate::pool::{Config, Pool};
use crate::retry::Retry;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A hook that receives the error of every failed fire-and-forget job.
pub(crate) type ErrorHook = Arc<dyn Fn(&Error) + Send + Sync>;

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
    pub(crate) workers: usize,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) max_response_bytes: u64,
    pub(crate) user_agent: String,
    pub(crate) agent: Option<ureq::Agent>,
    pub(crate) max_queued: Option<usize>,
    pub(crate) drain_timeout: Duration,
    pub(crate) on_error: Option<ErrorHook>,
    pub(crate) retry: Retry,
    pub(crate) retry_budget: Option<(f64, u32)>,
    pub(crate) max_per_host: Option<usize>,
    pub(crate) hedge: Option<crate::hedge::Hedge>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: 8,
            thread_name: "reqpool-worker".to_string(),
            stack_size: None,
            timeout: Duration::from_secs(30),
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

    /// The total time limit of each request, from submission to the last byte
    /// of the response: time in the queue counts.
    ///
    /// Each phase (connect, send, wait for the response, read the body) gets
    /// what is left of it, and [`Pending::wait`](crate::Pending::wait) stops
    /// waiting shortly after it even if a worker is still stuck, so no call
    /// can hang. A request can set its own with
    /// [`RequestBuilder::timeout`](crate::RequestBuilder::timeout).
    /// Defaults to 30 seconds.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// The time limit for opening a connection (TCP and TLS), within the
    /// total [`timeout`](Builder::timeout). Defaults to 10 seconds.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// The time limit for the server to start answering (status and
    /// headers) once the request is sent, within the total
    /// [`timeout`](Builder::timeout); it fails with
    /// [`Phase::Response`](crate::Phase::Response). Defaults to the total
    /// timeout.
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

    /// Uses your own [`ureq::Agent`] (proxy, TLS, cookies, …) for every
    /// request; it is cloned into the workers and shares one connection pool.
    ///
    /// The pool's time limits and body cap still apply to each request. Make
    /// sure its idle pool keeps at least as many connections per host as
    /// there are workers, or connections will be reopened. Defaults to an
    /// agent built by the pool: no proxy from the environment, per-phase
    /// time limits, an idle pool of `workers` connections per host, and
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
    /// hosts keep flowing. Closure jobs are not counted. Defaults to no cap.
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
    /// Fails with [`Error::InvalidRequest`] if `workers` is zero or the
    /// stack size is below 16 KiB.
    pub fn build(self) -> Result<Pool, Error> {
        if self.workers == 0 {
            return Err(Error::invalid("", "a pool needs at least one worker"));
        }
        if self.stack_size.is_some_and(|s| s < 16 * 1024) {
            return Err(Error::invalid(
                "",
                "worker stack size must be at least 16 KiB",
            ));
        }
        if self.max_queued == Some(0) {
            return Err(Error::invalid("", "max_queued must be at least 1"));
        }
        let agent = match self.agent.clone() {
            Some(a) => {
                let t = a.config().timeouts();
                if t.global.is_some() || t.per_call.is_some() {
                    log::warn!(
                        "reqpool: the agent given to Builder::agent sets timeout_global or \
                         timeout_per_call; ureq 3.5 then resolves the host on a new thread for \
                         every request (about 6x less throughput). The pool's own per-phase \
                         limits and total timeout already bound every request."
                    );
                }
                a
            }
            None => default_agent(self.workers, &self.user_agent),
        };
        Ok(Pool::start(Config::from_builder(self), agent))
    }
}

/// The agent a pool builds for itself.
///
/// No `timeout_global`/`timeout_per_call`: with either set, ureq 3.5
/// resolves the host on a new OS thread for every request, which costs
/// about 6x in throughput. Time limits are set per phase, per request.
fn default_agent(workers: usize, user_agent: &str) -> ureq::Agent {
    let cfg = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(user_agent)
        .max_idle_connections(workers.max(10))
        .max_idle_connections_per_host(workers.max(3))
        // ureq's 128 KiB send buffer per connection is far more than a
        // request line, headers and a JSON body need before they are
        // flushed; 16 KiB keeps a pool of many workers small.
        .output_buffer_size(16 * 1024)
        .build();
    ureq::Agent::new_with_config(cfg)
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("thread_name", &self.thread_name)
            .field("stack_size", &self.stack_size)
            .field("timeout", &self.timeout)
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
