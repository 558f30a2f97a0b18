//! An outbox's settings: what a commit survives, replies kept or not, how
//! many deliveries, how long delivered jobs stay, delivering or not, how
//! many jobs may wait; and for a Redis stream its group, its consumer's
//! name and lease, and the rate shared by every consumer.

#[cfg(feature = "redis")]
use super::redis::{Redis, Setup};
#[cfg(feature = "sqlite")]
use super::sqlite::{Durability, Sqlite};
#[cfg(feature = "redis")]
use crate::error::Error;
use crate::retry::Retry;
use std::time::Duration;

/// The settings of an outbox; `Outbox::open` (feature `sqlite`) and
/// `Outbox::redis` (feature `redis`) take the defaults.
#[derive(Debug, Clone)]
pub struct OutboxOptions {
    #[cfg(feature = "sqlite")]
    durability: Durability,
    pub(super) keep_replies: bool,
    /// When a failed delivery is tried again: attempts, backoff, the
    /// statuses that are not final.
    pub(super) retry: Retry,
    pub(super) max_age: Option<Duration>,
    pub(super) retention: Duration,
    /// `retention` was set: a Redis outbox keeps it rather than its own
    /// default.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    retention_set: bool,
    pub(super) deliver: bool,
    pub(super) max_queued: usize,
    pub(super) pause_on_gone: bool,
    #[cfg(feature = "redis")]
    pub(super) redis: RedisOptions,
}

/// The settings only a Redis stream has.
#[cfg(feature = "redis")]
#[derive(Debug, Clone)]
pub(super) struct RedisOptions {
    group: String,
    consumer: Option<String>,
    lease: Duration,
    rate: Option<(u32, Duration)>,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            #[cfg(feature = "sqlite")]
            durability: Durability::Process,
            keep_replies: true,
            retry: Self::default_retry(),
            max_age: None,
            retention: Duration::MAX,
            retention_set: false,
            deliver: true,
            max_queued: 0,
            pause_on_gone: false,
            #[cfg(feature = "redis")]
            redis: RedisOptions {
                group: "reqpool".into(),
                consumer: None,
                lease: Duration::from_secs(30),
                rate: None,
            },
        }
    }
}

impl OutboxOptions {
    /// How long a Redis outbox keeps a delivered job's key and reply
    /// unless [`retention`](OutboxOptions::retention) says otherwise: 24
    /// hours.
    pub const REDIS_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

    /// The defaults: `Durability::Process` (a file), replies kept, 5 deliveries
    /// at most.
    pub fn new() -> Self {
        Self::default()
    }

    /// What a commit of the file survives (feature `sqlite`). Defaults to
    /// [`Durability::Process`].
    #[cfg(feature = "sqlite")]
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// A `410 Gone` pauses its endpoint (the job's URL), as the Standard
    /// Webhooks spec asks: the job is dead (a 410 is final) and the
    /// other jobs to that URL are not sent: they wait, pending, listed by
    /// [`Outbox::paused`](crate::Outbox::paused), until
    /// [`Outbox::resume`](crate::Outbox::resume) (then they go within 2
    /// s; requeue the dead one if it should go too). The pause is this
    /// process's: a restarted one, or another consumer of a Redis stream,
    /// pauses the endpoint at its own next `410`. Defaults to false (a
    /// 410 kills its job only).
    pub fn pause_on_gone(mut self, yes: bool) -> Self {
        self.pause_on_gone = yes;
        self
    }

    /// Keeps each reply's status and body (64 KiB at most) for
    /// [`Outbox::reply`](crate::Outbox::reply). Off for pure fire-and-forget: a delivered job
    /// then keeps only its key. Defaults to true.
    pub fn keep_replies(mut self, yes: bool) -> Self {
        self.keep_replies = yes;
        self
    }

    /// When a failed delivery is tried again, by the same policy type as
    /// the pool's retries ([`Builder::retry`](crate::Builder::retry)),
    /// read the outbox's way: each delivery is one attempt, and its
    /// [`max_attempts`](Retry::max_attempts) counts deliveries as
    /// [`OutboxOptions::max_attempts`] says; the wait before delivery
    /// `n + 1` is the [`backoff`](Retry::backoff) doubled `n - 1` times up
    /// to its cap, without jitter, or the server's `Retry-After` if longer
    /// (up to 1 h); a status not among its
    /// [`statuses`](Retry::statuses) is the server's final word, and the
    /// job is dead at once; `non_idempotent` does not apply (every
    /// delivery carries its key).
    ///
    /// Defaults to 5 deliveries, from 1 s doubling to 256 s, and 408, 425,
    /// 429 and every 5xx tried again (any other 4xx and a redirect the
    /// request may not follow are final).
    pub fn retry(mut self, policy: Retry) -> Self {
        self.retry = policy;
        self
    }

    /// The outbox's default policy; see [`retry`](OutboxOptions::retry).
    fn default_retry() -> Retry {
        let statuses: Vec<u16> = [408, 425, 429].into_iter().chain(500..600).collect();
        Retry::standard()
            .max_attempts(5)
            .backoff(Duration::from_secs(1), Duration::from_secs(256))
            .statuses(&statuses)
    }

    /// Deliveries at most before a job that keeps failing is dead (the
    /// [`retry`](OutboxOptions::retry) policy's `max_attempts`). What
    /// counts: each delivery that reached (or may have reached) a server
    /// and failed, and each delivery whose consumer stopped (crashed,
    /// killed, its lease ran out) — a job that kills its consumer is dead
    /// after `n` such stops, with that reason. What does not count: the
    /// pool's own verdicts before anything was sent (an open circuit, a
    /// rate-limit or queue wait past the pool's limit, a refused
    /// connection, a shut-down pool); such a job is tried again on the
    /// outbox's schedule for as long as it takes, or until
    /// [`max_age`](OutboxOptions::max_age). Each delivery is one attempt:
    /// the pool's own retry policy does not run inside it, so that every
    /// wait between attempts (a `Retry-After` included) is the outbox's,
    /// kept in the store across a crash. At least 1; defaults to 5.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.retry = self.retry.max_attempts(n);
        self
    }

    /// How long a job may wait for its delivery at most, from its
    /// enqueue: a delivery that fails after that makes it dead (with the
    /// reason), whether it was sent or not. `None`, the default, sets no
    /// limit.
    pub fn max_age(mut self, limit: Option<Duration>) -> Self {
        self.max_age = limit;
        self
    }

    /// How long a delivered job stays in the store: its key (so a re-run
    /// that enqueues the same key sends nothing) and its reply. After
    /// that it is removed, and its space is reused: the store grows
    /// with pending work and this window, not with history. A re-run
    /// after the window sends a removed job's key again (the server's
    /// idempotency window should be longer). `Duration::ZERO` removes a
    /// job as soon as it is delivered; [`Outbox::forget`](crate::Outbox::forget) removes one
    /// by hand; `Duration::MAX` keeps it.
    ///
    /// Defaults to `Duration::MAX` (kept) on a file: the file is one
    /// program's own, a delivered job keeps only its key (and its reply,
    /// at most 64 KiB), and a script re-run after any pause must find its
    /// keys so as not to send them again. Defaults to
    /// [`REDIS_RETENTION`](OutboxOptions::REDIS_RETENTION) (24 hours) on
    /// Redis: a shared server's memory, which every job's key and reply
    /// would fill for ever, is bounded by a day of jobs, the usual
    /// idempotency window of an API.
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = keep;
        self.retention_set = true;
        self
    }

    /// Off: this outbox only writes jobs to the store and delivers none
    /// (a script that queues work for a later run, or for a process that
    /// delivers). A file is one process's at a time either way.
    /// Defaults to true.
    pub fn deliver(mut self, yes: bool) -> Self {
        self.deliver = yes;
        self
    }

    /// Jobs at most waiting or in flight in the store: an `enqueue`
    /// beyond fails with [`Error::QueueFull`](crate::Error::QueueFull) and
    /// writes nothing (a known key still returns its job), as a pool's
    /// own [`Builder::max_queued`](crate::Builder::max_queued) bounds its
    /// queue in memory. 0, the default, sets no limit. On Redis the bound
    /// is the stream's length, shared by every producer.
    pub fn max_queued(mut self, n: usize) -> Self {
        self.max_queued = n;
        self
    }

    /// Redis: the consumer group this outbox reads the stream in.
    /// Processes of one group share the work: each job goes to one of
    /// them. Defaults to `reqpool`.
    #[cfg(feature = "redis")]
    pub fn group(mut self, name: &str) -> Self {
        self.redis.group = name.to_owned();
        self
    }

    /// Redis: this process's name in its group. Defaults to the host's
    /// name and the process id (`web-3-4711`). Two live processes must not
    /// share a name.
    #[cfg(feature = "redis")]
    pub fn consumer(mut self, name: &str) -> Self {
        self.redis.consumer = Some(name.to_owned());
        self
    }

    /// Redis: how long the jobs a consumer took stay its own without a
    /// sign of life. A live consumer renews the lease of every job it
    /// holds (running, or waiting for a later try) every third of it;
    /// once a consumer stops (killed, cut off), the others take its jobs
    /// over when the lease ran out, and deliver them again with their
    /// key. Between 100 ms and one year; defaults to 30 s.
    #[cfg(feature = "redis")]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.redis.lease = lease.clamp(
            Duration::from_millis(100),
            Duration::from_secs(365 * 24 * 3600),
        );
        self
    }

    /// Redis: at most `n` deliveries per `per` to each host, shared by
    /// every consumer of the stream (a rate kept in Redis, on
    /// Redis's clock), so that many machines together stay under one
    /// API's quota. A 429 (or a 503 with `Retry-After`) pauses the host
    /// for every consumer for as long as it asked (1 s for a 429 that
    /// says nothing), then halves its rate for 10 s. Each delivery (one
    /// attempt) takes one token, and a consumer takes tokens only for
    /// workers free to send at once: in any sliding window of `per` at
    /// most `n` and one interval's burst go out, also after a stall. The
    /// pool's own [`Builder::max_rate_per_host`](crate::Builder::max_rate_per_host)
    /// applies on top, per process. Checked by
    /// [`redis`](OutboxOptions::redis): `n` and `per` must not be zero.
    #[cfg(feature = "redis")]
    pub fn shared_rate_per_host(mut self, n: u32, per: Duration) -> Self {
        self.redis.rate = Some((n, per));
        self
    }

    /// The Redis store these settings make (its own default retention
    /// if none was set), for a pool of `workers`.
    #[cfg(feature = "redis")]
    pub(super) fn redis_store(
        &mut self,
        url: &str,
        name: &str,
        workers: usize,
    ) -> Result<Redis, Error> {
        if !self.retention_set {
            self.retention = Self::REDIS_RETENTION;
        }
        let r = &self.redis;
        if name.is_empty() || r.group.is_empty() || r.consumer.as_deref() == Some("") {
            return Err(Error::usage(
                "an outbox on Redis needs a stream name, a group name and a consumer name that are not empty",
            ));
        }
        let interval = match r.rate {
            None => None,
            Some((0, _)) => return Err(Error::usage("shared_rate_per_host: n must be at least 1")),
            Some((_, per)) if per.is_zero() => {
                return Err(Error::usage("shared_rate_per_host: per must not be zero"));
            }
            Some((n, per)) => Some((per / n).max(Duration::from_micros(1))),
        };
        let setup = Setup {
            group: r.group.clone(),
            consumer: r
                .consumer
                .clone()
                .unwrap_or_else(super::redis::default_consumer),
            lease: r.lease,
            interval,
            max_queued: self.max_queued,
            prefetch: (8 * workers).max(64),
            retention: self.retention,
        };
        Redis::open(url, name, setup)
    }

    /// The file store these settings make.
    #[cfg(feature = "sqlite")]
    pub(super) fn file_store(&self, path: &std::path::Path) -> Result<Sqlite, crate::error::Error> {
        Sqlite::open(path, self.durability, self.max_queued, self.retention)
    }
}
