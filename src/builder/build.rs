//! Building a pool from a `Builder`: the settings checked, the agent
//! made, the workers started.

use super::{Builder, MAX_RATE_PERIOD};
use crate::agent::{AgentSettings, pool_agents};
use crate::error::Error;
use crate::hosts::Policies;
use crate::pool::{Pool, Settings};
use crate::prepare::{QuerySecrets, RequestDefaults};
use crate::retry::Budget;
use std::sync::Arc;

impl Builder {
    /// Starts the workers and returns the pool.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if `workers` or `max_queued` is zero, the stack
    /// size is below 16 KiB, the period of
    /// [`max_rate_per_host`](Builder::max_rate_per_host) is zero or longer
    /// than a year, or the OS refuses to start the worker threads (too
    /// many, or a stack too large); no thread is left behind then.
    pub fn build(self) -> Result<Pool, Error> {
        if let Some(r) = self.max_rate
            && (r.per.is_zero() || r.per > MAX_RATE_PERIOD)
        {
            return Err(Error::usage(format!(
                "max_rate_per_host: the period must be more than zero and at most a year (366 days), not {:?}",
                r.per
            )));
        }
        if self.workers == 0 {
            return Err(Error::usage("a pool needs at least one worker"));
        }
        if self.stack_size.is_some_and(|s| s < 16 * 1024) {
            return Err(Error::usage("worker stack size must be at least 16 KiB"));
        }
        if self.read_buffer < 1024 {
            return Err(Error::usage("read buffer must be at least 1 KiB"));
        }
        // ureq refuses (panics on) a buffer past 100 MB on first use.
        if self.read_buffer > 64 * 1024 * 1024 {
            return Err(Error::usage("read buffer must be at most 64 MiB"));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.write_buffer) {
            return Err(Error::usage(
                "write buffer must be at least 1 KiB and at most 64 MiB",
            ));
        }
        if self.max_queued == Some(0) {
            return Err(Error::usage("max_queued must be at least 1"));
        }
        let tls = self.tls.build()?;
        let proxy = match (&self.proxy, self.proxy_env) {
            (Some(Some(url)), _) => Some(Some(ureq::Proxy::new(url).map_err(|_| {
                Error::usage(format!(
                    "not a proxy url: {}",
                    crate::redact::redact_url(url)
                ))
            })?)),
            (_, true) => Some(ureq::Proxy::try_from_env()),
            _ => None,
        };
        let base = self.agent.as_ref().map(|a| a.config());
        if let Some(c) = base {
            warn_conflicts(c, &self);
        }
        let (agents, sockets) = pool_agents(
            &AgentSettings {
                workers: self.workers,
                user_agent: self.user_agent.as_deref(),
                connect_timeout: self.connect_timeout,
                response_timeout: self.response_timeout,
                tls,
                proxy,
                read_buffer: self.read_buffer,
                write_buffer: self.write_buffer,
                max_idle_age: self.max_idle_age,
                lookup: self.lookup.clone(),
            },
            base,
        );
        let defaults = RequestDefaults {
            timeout: self.timeout,
            deadline: self.deadline,
            max_response_bytes: self.max_response_bytes,
            retry: Arc::new(self.retry),
            budget: self
                .retry_budget
                .map(|(ratio, burst)| Arc::new(Budget::new(ratio, burst))),
            hedge: self.hedge,
            query: QuerySecrets {
                keys: self.secret_query_keys.into(),
                all: self.redact_all_query,
            },
            hooks: self.hooks,
        };
        let settings = Settings {
            workers: self.workers,
            thread_name: self.thread_name,
            stack_size: self.stack_size,
            thread_keep_alive: self.thread_keep_alive,
            max_queued: self.max_queued,
            drain_timeout: self.drain_timeout,
            on_error: self.on_error,
            hosts: Policies {
                cap: self.max_per_host,
                rate: self.max_rate,
                adaptive: self.adaptive.unwrap_or(self.max_rate.is_some()),
                breaker: self.breaker,
                concurrency: self.concurrency,
            },
        };
        let pool = Pool::start(settings, agents, sockets, defaults)?;
        crate::lifecycle::drain_at_exit(pool.inner());
        Ok(pool)
    }
}

/// The ways to a pool that go through the builder (here, so that the pool
/// does not depend on the layer above it).
impl Pool {
    /// A pool of `workers` threads with the default settings (see
    /// [`Builder`](crate::Builder)).
    ///
    /// Dropping its last handle blocks until queued work is done (see
    /// [`Pool`]); make one pool per program.
    ///
    /// # Panics
    ///
    /// Panics if `workers` is zero; use [`Pool::builder`] to get an error
    /// instead.
    pub fn new(workers: usize) -> Pool {
        match Pool::builder().workers(workers).build() {
            Ok(p) => p,
            Err(e) => panic!("reqpool::Pool::new({workers}): {e}"),
        }
    }

    /// A builder for every setting of a pool.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Logs what the caller's agent and the builder both set, and which wins.
fn warn_conflicts(c: &ureq::config::Config, b: &Builder) {
    let t = c.timeouts();
    if t.global.is_some() || t.per_call.is_some() {
        log::warn!(
            "reqpool: the agent given to Builder::agent sets timeout_global or timeout_per_call; \
             the pool does not use them (in ureq 3.5 they resolve the host on a new thread for \
             every request); its own limits bound every request"
        );
    }
    if b.user_agent.is_some()
        && matches!(c.user_agent(), ureq::config::AutoHeaderValue::Provided(_))
    {
        log::warn!(
            "reqpool: Builder::user_agent overrides the user agent of the agent given to Builder::agent"
        );
    }
    if c.max_idle_connections_per_host() < b.workers.min(crate::agent::WORKERS_PER_AGENT) {
        log::warn!(
            "reqpool: the agent given to Builder::agent keeps {} idle connections per host for {} \
             workers: connections to a busy host will be reopened",
            c.max_idle_connections_per_host(),
            b.workers
        );
    }
    if b.proxy.is_some() && c.proxy().is_some() {
        log::warn!(
            "reqpool: Builder::proxy overrides the proxy of the agent given to Builder::agent"
        );
    }
}
