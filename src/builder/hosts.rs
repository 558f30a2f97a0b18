//! The per-host settings of a `Builder`: a cap on requests in flight, a
//! rate limit that adapts to 429s, a circuit breaker, and how long an idle
//! connection to a host may be reused.

use super::Builder;
use crate::hosts::{AdaptiveConcurrency, Breaker, Rate};
use std::time::Duration;

impl Builder {
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

    /// At most `requests` requests to one host (`host:port`) per `per`: a
    /// token bucket per host that starts with one token (so the first
    /// requests go at the rate) and saves up to
    /// [`max_rate_burst`](Builder::max_rate_burst) (1 by default) while the
    /// host is idle, so that any window of `per` holds at most `requests`
    /// of them, also after an idle minute or a stall. A request
    /// without a token waits off the workers (in the pool's timer) and
    /// starts when its token is due; other hosts are not slowed. The wait
    /// counts against a request's [`timeout`](Builder::timeout) (its clock
    /// starts when it first waits for a token) and its
    /// [`deadline`](Builder::deadline): a request whose token would come
    /// after its limit fails at once with a
    /// [`Phase::Throttled`](crate::Phase::Throttled) timeout, unsent. Every
    /// attempt takes a token; closure jobs are not counted. `per` must be
    /// more than zero and at most a year ([`build`](Builder::build) says
    /// [`Error::Usage`](crate::Error::Usage) otherwise): a period of `Duration::MAX` is not a
    /// rate.
    /// [`Stats::throttled`](crate::Stats::throttled) counts the requests
    /// waiting for one. Turns on [`adaptive_rate`](Builder::adaptive_rate)
    /// unless told otherwise. Defaults to no limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = reqpool::Pool::builder()
    ///     .max_rate_per_host(20, Duration::from_secs(1))
    ///     .build()?;
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn max_rate_per_host(mut self, requests: u32, per: Duration) -> Self {
        self.max_rate = Some(Rate {
            requests: requests.max(1),
            per,
            burst: self.rate_burst,
        });
        self
    }

    /// How many requests a host's rate saves up while the host is idle, to
    /// go at once: any window of the rate's `per` then holds at most
    /// `requests + n - 1`. At least 1 (no burst: the rate, evenly);
    /// defaults to 1. Applies to
    /// [`max_rate_per_host`](Builder::max_rate_per_host), set before or
    /// after it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = reqpool::Pool::builder()
    ///     .max_rate_per_host(100, Duration::from_secs(1))
    ///     .max_rate_burst(10) // at most 109 in any second
    ///     .build()?;
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn max_rate_burst(mut self, n: u32) -> Self {
        self.rate_burst = n.max(1);
        if let Some(r) = &mut self.max_rate {
            r.burst = self.rate_burst;
        }
        self
    }

    /// Slows down for a host that answers 429 or 503: its rate halves
    /// (down to 1/64 of the limit) and climbs back by a twentieth of the
    /// limit with each success, never above
    /// [`max_rate_per_host`](Builder::max_rate_per_host). Without a set
    /// limit, the first 429 or 503 of a host starts its rate at nine
    /// tenths of what went through in the last second, after a pause of a
    /// second, and it climbs by a twentieth of that start per second
    /// without a 429 (halving again on the next one, at most once a
    /// second). A `Retry-After` from one request
    /// pauses the whole host, not just that request, for at most what was
    /// left of that request's limit and never more than 10 minutes (a
    /// `Retry-After` of a year pauses nobody for a year); a request that
    /// cannot wait out a pause fails at once with a
    /// [`Phase::Throttled`](crate::Phase::Throttled) timeout, unsent.
    /// Defaults to on with a rate limit, off without.
    pub fn adaptive_rate(mut self, yes: bool) -> Self {
        self.adaptive = Some(yes);
        self
    }

    /// A circuit breaker per host: see [`Breaker`](crate::Breaker).
    /// Defaults to none.
    pub fn circuit_breaker(mut self, breaker: Breaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// How long a kept-alive connection may lie idle and still be reused.
    /// An older one is closed and the request opens a new one: a server
    /// closes idle connections after its own timeout (Node's default is
    /// 5 s, Apache's 5 s, an AWS load balancer's 60 s, nginx's 75 s), and
    /// a request written just as it does is lost on the way. Defaults to
    /// 4 seconds, below the shortest of those (ureq's own default is 15);
    /// an [`agent`](Builder::agent) given to the pool keeps its own
    /// unless this is set.
    ///
    /// ```
    /// use std::time::Duration;
    /// // Behind a load balancer that keeps idle connections 60 s.
    /// let pool = reqpool::Pool::builder().max_idle_age(Duration::from_secs(50)).build()?;
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn max_idle_age(mut self, idle: Duration) -> Self {
        self.max_idle_age = Some(idle);
        self
    }

    /// Finds each host's limit on requests in flight by its latency and
    /// push-back (429, 503, timeouts), instead of a guessed
    /// [`max_per_host`](Builder::max_per_host): see
    /// [`AdaptiveConcurrency`]. A request beyond its host's limit waits off
    /// the workers, as behind a cap; with both set, the lower one holds.
    /// Closure jobs are not counted. Defaults to off.
    pub fn adaptive_concurrency(mut self, how: AdaptiveConcurrency) -> Self {
        self.concurrency = Some(how);
        self
    }

    /// Resolves host names with `lookup` instead of the system's
    /// resolver (`getaddrinfo`): a DNS-over-HTTPS client, a fixed table as
    /// curl's `--resolve`. Either way a lookup runs on the pool's four
    /// resolver threads, never a worker, and a request waits for it at most
    /// what is left of its limit (then it fails with a
    /// [`Phase::Resolve`](crate::Phase::Resolve) timeout, and the lookup
    /// goes on on its thread); an answer is kept 30 seconds. An IP address
    /// in the URL is not looked up.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// let pool = reqpool::Pool::builder()
    ///     .resolver(|host, port| match host {
    ///         "api.internal" => Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]),
    ///         _ => Err(std::io::Error::other("unknown host")),
    ///     })
    ///     .build()?;
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn resolver(
        mut self,
        lookup: impl Fn(&str, u16) -> std::io::Result<Vec<std::net::SocketAddr>> + Send + Sync + 'static,
    ) -> Self {
        self.lookup = Some(std::sync::Arc::new(lookup));
        self
    }
}
