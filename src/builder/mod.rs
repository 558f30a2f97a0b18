//! `Builder`: every knob of a `Pool`, with safe defaults.

mod build;
mod hosts;

use crate::attempt::Hooks;
use crate::error::Error;
use crate::hosts::{Breaker, Rate};
use crate::pool::ErrorHook;
use crate::retry::Retry;
use crate::tls::Tls;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The longest period `max_rate_per_host` takes.
const MAX_RATE_PERIOD: Duration = Duration::from_secs(366 * 86_400);

/// Configures and builds a [`Pool`](crate::Pool).
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
    thread_keep_alive: Duration,
    read_buffer: usize,
    write_buffer: usize,
    max_idle_age: Option<Duration>,
    lookup: Option<crate::resolve::Lookup>,
    timeout: Duration,
    deadline: Option<Duration>,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
    max_response_bytes: u64,
    user_agent: Option<String>,
    agent: Option<ureq::Agent>,
    tls: Tls,
    proxy: Option<Option<String>>,
    proxy_env: bool,
    max_queued: Option<usize>,
    drain_timeout: Duration,
    on_error: Option<ErrorHook>,
    retry: Retry,
    retry_budget: Option<(f64, u32)>,
    max_per_host: Option<usize>,
    max_rate: Option<Rate>,
    rate_burst: u32,
    adaptive: Option<bool>,
    breaker: Option<Breaker>,
    concurrency: Option<crate::hosts::AdaptiveConcurrency>,
    hedge: Option<crate::hedge::Hedge>,
    secret_query_keys: Vec<String>,
    redact_all_query: bool,
    hooks: Hooks,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: 8,
            thread_name: "reqpool-worker".to_string(),
            stack_size: None,
            thread_keep_alive: Duration::from_secs(10),
            read_buffer: 4 * 1024,
            write_buffer: crate::agent::WRITE_BUFFER,
            max_idle_age: None,
            lookup: None,
            timeout: Duration::from_secs(30),
            deadline: None,
            connect_timeout: Duration::from_secs(10),
            response_timeout: None,
            max_response_bytes: 10 * 1024 * 1024,
            user_agent: None,
            agent: None,
            tls: Tls::default(),
            proxy: None,
            proxy_env: false,
            max_queued: None,
            drain_timeout: Duration::from_secs(30),
            on_error: None,
            retry: Retry::none(),
            retry_budget: None,
            max_per_host: None,
            max_rate: None,
            rate_burst: 1,
            adaptive: None,
            breaker: None,
            concurrency: None,
            hedge: None,
            secret_query_keys: Vec::new(),
            redact_all_query: false,
            hooks: Hooks::default(),
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

    /// The stack size of each worker thread, in bytes: address space
    /// reserved per worker, of which only what a job touches takes memory
    /// (36 KiB for a request, 52 KiB with a TLS handshake). Defaults to
    /// 512 KiB (the standard library's default is 2 MiB): room for deep
    /// closures, and 5 GiB of address space rather than 20 for 10,000
    /// workers. Raise it for jobs that recurse deeply. At least 16 KiB
    /// (else `build()` fails).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// How long a worker thread waits for a job before it leaves, when
    /// more than the pool's first 32 threads are alive (those stay). A
    /// pool starts threads only for jobs that wait with no thread free,
    /// up to [`workers`](Builder::workers), and gives back the ones a
    /// burst needed once it is over; [`Pool::stats`](crate::Pool::stats)
    /// shows the threads alive and the most at once. `Duration::MAX`
    /// keeps every thread for as long as the pool lives. Defaults to 10
    /// seconds (as tokio's blocking pool).
    pub fn thread_keep_alive(mut self, idle: Duration) -> Self {
        self.thread_keep_alive = idle;
        self
    }

    /// The read buffer of each connection, in bytes. Bodies of any size
    /// stream through it. A response head (status line and headers) of up
    /// to 64 KiB, or this size if larger, is read whatever the request: a
    /// head longer than the buffer is copied into a buffer of its own that
    /// grows while the head is read and is freed once it was used, so only
    /// a connection reading a long head pays for it. A longer head fails
    /// with an [`Error::Transport`](crate::Error::Transport) of kind
    /// [`Protocol`](crate::TransportKind::Protocol) that says so. The
    /// pool's own agent only (an agent given to [`agent`](Builder::agent)
    /// keeps its buffers, and reads heads up to its
    /// `max_response_header_size`). Defaults to 4 KiB: with the 8 KiB
    /// write buffer, 12 KiB per open connection (ureq's defaults are
    /// 128 KiB each); 256 KiB downloads measured no more CPU than with
    /// 8 KiB. At least 1 KiB and at most 64 MiB (else `build()`
    /// fails).
    pub fn read_buffer(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes;
        self
    }

    /// The write buffer of each connection, in bytes: a request's head is
    /// written through it a few lines at a time, and its body a piece of
    /// this size at a time. A request head of up to 128 KiB is sent
    /// whatever this size: a line longer than the buffer (a long URL,
    /// token or cookie) is written through a buffer lent for that head,
    /// freed once it is sent, so only a request with such a line pays for
    /// it. The pool's own agent only (an agent given to
    /// [`agent`](Builder::agent) keeps its buffers). Defaults to 8 KiB. At
    /// least 1 KiB and at most 64 MiB (else `build()` fails).
    pub fn write_buffer(mut self, bytes: usize) -> Self {
        self.write_buffer = bytes;
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
    /// `"reqpool/<version>"` (or, with [`agent`](Builder::agent), that
    /// agent's).
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = Some(ua.into());
        self
    }

    /// Trusts the certificates in `pem` (every certificate of a bundle) as
    /// roots, besides the public roots (Mozilla's, as webpki ships them):
    /// for a private CA. Can be called several times.
    ///
    /// ```
    /// # let ca_pem = b"";
    /// let pool = reqpool::Pool::builder().tls_root_certs_pem(ca_pem).build();
    /// // An empty or broken bundle is refused by build():
    /// assert!(matches!(pool, Err(reqpool::Error::Usage { .. })));
    /// ```
    pub fn tls_root_certs_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.tls.add_roots_pem(pem.as_ref(), "PEM bytes");
        self
    }

    /// Like [`tls_root_certs_pem`](Builder::tls_root_certs_pem), from a
    /// file (read here).
    pub fn tls_root_certs_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.tls.add_roots_file(path.as_ref());
        self
    }

    /// Trusts only the roots given with
    /// [`tls_root_certs_pem`](Builder::tls_root_certs_pem) or
    /// [`tls_root_certs_file`](Builder::tls_root_certs_file), not the
    /// public ones. Defaults to false.
    pub fn tls_only_given_roots(mut self, yes: bool) -> Self {
        self.tls.only_given = yes;
        self
    }

    /// Uses the operating system's trust store (and its revocation checks)
    /// instead of the bundled public roots. Needs the crate feature
    /// `platform-verifier`; without it [`build`](Builder::build) fails.
    pub fn tls_platform_roots(mut self, yes: bool) -> Self {
        self.tls.platform = yes;
        self
    }

    /// Presents a client certificate (mutual TLS): `chain_pem` holds the
    /// certificate and its chain, `key_pem` the private key.
    pub fn tls_client_cert(
        mut self,
        chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Self {
        self.tls
            .set_client_cert(chain_pem.as_ref(), key_pem.as_ref());
        self
    }

    /// Uses the platform's TLS library (OpenSSL, Schannel, Security
    /// framework) instead of rustls. Needs the crate feature `native-tls`;
    /// without it [`build`](Builder::build) fails.
    pub fn tls_native(mut self, yes: bool) -> Self {
        self.tls.native = yes;
        self
    }

    /// Sends every request through the proxy at `url`
    /// (`http://user:pw@host:port`; `https://` and, with ureq's
    /// `socks-proxy` feature, `socks5://` too). An invalid URL makes
    /// [`build`](Builder::build) fail. Defaults to no proxy.
    pub fn proxy(mut self, url: &str) -> Self {
        self.proxy = Some(Some(url.to_string()));
        self
    }

    /// Uses the proxy named by the environment (`ALL_PROXY`,
    /// `HTTPS_PROXY`, `HTTP_PROXY`, in either case, with `NO_PROXY`), if
    /// any. Off by default: a library should not send a program's requests
    /// elsewhere because of a variable it did not know about.
    pub fn proxy_from_env(mut self, yes: bool) -> Self {
        self.proxy_env = yes;
        self
    }

    /// Takes the configuration of your own [`ureq::Agent`] (proxy, TLS,
    /// user agent, idle pool size, …) for every request.
    ///
    /// The pool builds its own agent from that configuration, with its own
    /// connection pool and a guard on every connection that enforces each
    /// job's time limit. Taken from your agent: proxy, TLS settings, user
    /// agent, `Accept` headers, `https_only`, IP family, buffers, idle pool
    /// size and age, per-read/write limits. Kept from the pool: redirects
    /// and error statuses (handled by reqpool), the connect and response
    /// limits and the total. Not used: its connector, resolver, middleware
    /// and cookie jar. [`tls_root_certs_pem`](Builder::tls_root_certs_pem)
    /// and the other TLS settings, [`proxy`](Builder::proxy) and
    /// [`user_agent`](Builder::user_agent) override the agent's.
    /// [`build`](Builder::build) logs a warning for each conflict (a user
    /// agent set on both, an idle pool smaller than the workers, global or
    /// per-call timeouts). Defaults to an agent built by the pool: no proxy from the
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
    /// [`Pool::fire`](crate::Pool::fire)); it runs on the worker. Failures are also logged at
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

    /// Query keys (any case) whose values are secrets for every request of
    /// the pool, besides those secret by name (see
    /// [`RequestBuilder::query`](crate::RequestBuilder::query)): never shown
    /// in errors or logs, nor where a server echoes them. Defaults to none.
    ///
    /// ```
    /// let pool = reqpool::Pool::builder().secret_query_keys(&["account", "email"]).build()?;
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn secret_query_keys(mut self, keys: &[&str]) -> Self {
        self.secret_query_keys
            .extend(keys.iter().map(|k| k.to_string()));
        self
    }

    /// Treats every query value as a secret, as reqpool did before 0.1's
    /// redaction rules: errors then show `?id=***` for every key, and a
    /// failed item of a batch cannot be told apart by its URL. Defaults to
    /// false.
    pub fn redact_all_query_values(mut self, yes: bool) -> Self {
        self.redact_all_query = yes;
        self
    }

    /// Calls `hook` on the worker just before each attempt of a request
    /// made through the request builder (`json`, `send`, `fire`, poll
    /// jobs, the outbox): the first try, each retry, each redirect hop,
    /// each hedged copy. It sees the attempt's method, URL, exact body and
    /// number, and may set headers on it: a signature over the bytes and
    /// the time (AWS SigV4, an HMAC), or a `traceparent`. Values set with
    /// [`Attempt::secret_header`](crate::Attempt::secret_header) are
    /// redacted like [`RequestBuilder::secret_header`](crate::RequestBuilder::secret_header).
    /// An `Err` fails that attempt with that error (retried as the policy
    /// says). Closures given to [`Pool::submit`](crate::Pool::submit) use
    /// the agent directly and are not hooked.
    ///
    /// ```
    /// let pool = reqpool::Pool::builder()
    ///     .before_attempt(|a| {
    ///         a.header("X-Attempt", &a.number().to_string());
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn before_attempt(
        mut self,
        f: impl Fn(&mut crate::attempt::Attempt<'_>) -> Result<(), Error> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.before = Some(std::sync::Arc::new(f));
        self
    }

    /// Supplies `Authorization: Bearer …` for every request (made through
    /// the request builder) that has no `Authorization` of its own: `f`
    /// gets the request's host and returns its token, asked once per host
    /// and kept. After a `401` the token is asked for again and the
    /// request is sent once more with the new one, whatever the retry
    /// policy — a POST too: a 401 means it was not processed. Requests
    /// that got a 401 with the same token share one new token (no
    /// stampede on the token endpoint). Tokens are redacted like
    /// [`bearer_auth`](crate::RequestBuilder::bearer_auth), which wins
    /// over `f`. An `Err` from `f` fails the attempt with it.
    ///
    /// `f` runs on a thread of its own, never on a worker and never under
    /// a lock shared by hosts: while it runs, the requests that wait for
    /// that host's token wait off the workers (in the pool's timer), each
    /// until its own time limit (then it fails with
    /// [`Error::Timeout`](crate::Error::Timeout), unsent), and a source
    /// that hangs for one host delays no other host. (A redirect hop to
    /// another host waits for that host's token on its worker, within the
    /// request's limit.) A token that is not a valid header value (a
    /// trailing newline, CR/LF, non-ASCII) fails its request with
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) and is not
    /// kept: the next request asks again. Through an `Outbox` (feature
    /// `outbox`) the token is added at delivery, so it never reaches the
    /// file.
    ///
    /// ```
    /// let pool = reqpool::Pool::builder()
    ///     .bearer_from(|host| Ok(format!("token-for-{host}")))
    ///     .build()?;
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn bearer_from(
        mut self,
        f: impl Fn(&str) -> Result<String, Error> + Send + Sync + 'static,
    ) -> Self {
        let tokens = crate::attempt::Tokens::new(Box::new(f));
        self.hooks.tokens = Some(std::sync::Arc::new(tokens));
        self
    }

    /// Hedges every idempotent request: see [`Hedge`](crate::Hedge).
    /// Defaults to no hedging.
    pub fn hedge(mut self, hedge: crate::hedge::Hedge) -> Self {
        self.hedge = Some(hedge);
        self
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("thread_name", &self.thread_name)
            .field("stack_size", &self.stack_size)
            .field("thread_keep_alive", &self.thread_keep_alive)
            .field("read_buffer", &self.read_buffer)
            .field("write_buffer", &self.write_buffer)
            .field("max_idle_age", &self.max_idle_age)
            .field("resolver", &self.lookup.is_some())
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("user_agent", &self.user_agent)
            .field("own_agent", &self.agent.is_some())
            .field("tls", &self.tls)
            .field(
                "proxy",
                &self
                    .proxy
                    .as_ref()
                    .map(|p| p.as_deref().map(crate::redact::redact_url)),
            )
            .field("proxy_from_env", &self.proxy_env)
            .field("max_queued", &self.max_queued)
            .field("drain_timeout", &self.drain_timeout)
            .field("on_error", &self.on_error.is_some())
            .field("retry", &self.retry)
            .field("retry_budget", &self.retry_budget)
            .field("max_per_host", &self.max_per_host)
            .field("max_rate_per_host", &self.max_rate)
            .field("adaptive_rate", &self.adaptive)
            .field("adaptive_concurrency", &self.concurrency)
            .field("circuit_breaker", &self.breaker)
            .field("hedge", &self.hedge)
            .field("hooks", &self.hooks)
            .finish()
    }
}
