//! A durable outbox (features `sqlite`, `redis`): requests written to a
//! store before `enqueue` returns, delivered by an ordinary pool with an
//! `Idempotency-Key`, marked done once the server answered, replayed when
//! the store is opened again after a crash, and kept as dead letters when
//! they cannot be delivered.
//!
//! This file is the face: [`Outbox`] and its calls. The seam every store
//! implements is `store.rs`; the machinery over it is `shared.rs` (what
//! the face and the dispatcher share), `deliver.rs` (the dispatcher and
//! the housekeeping), `enqueue.rs` (commits shared by enqueues),
//! `verdict.rs` (what a delivery's end means), `options.rs`, `health.rs`
//! and `lineage.rs`; each store is a folder of its own (`sqlite/`,
//! `redis/`).

mod deliver;
mod enqueue;
mod health;
mod lineage;
#[cfg(feature = "metrics")]
mod metrics;
mod options;
mod pause;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod shards;
mod shared;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
mod verdict;

pub use health::OutboxHealth;
#[cfg(feature = "metrics")]
pub use metrics::{OutboxWatcher, watch_outbox};
pub use options::OutboxOptions;
#[cfg(feature = "sqlite")]
pub use sqlite::Durability;
pub use store::{DeadJob, Delivered, JobId, OutboxStats};

use crate::deadline::Deadline;
use crate::error::Error;
use crate::pool::Pool;
use crate::request::RequestBuilder;
use shared::Shared;
use std::fmt;
#[cfg(feature = "sqlite")]
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use store::{Front, Row, Store, now_ms};

/// Requests that outlive the process: written to a store (a local SQLite
/// file, or a Redis stream) before [`enqueue`](Outbox::enqueue) returns,
/// delivered by a pool, marked done once the server answered, and
/// replayed when the store is opened again.
///
/// Every job carries an `Idempotency-Key` (the caller's, or one generated
/// and stored with it), sent on every delivery: a job in flight when the
/// process died is sent again after the restart, and the key lets the
/// server recognise the repeat. `enqueue` with a key already in the store
/// returns the existing job and sends nothing, so a re-run script passes
/// the same keys and only the missing items go out.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # fn main() -> Result<(), reqpool::Error> {
/// use std::time::Duration;
/// let pool = reqpool::Pool::new(16);
/// let outbox = reqpool::Outbox::open("calls.db", &pool)?; // replays what a previous run left
/// let id = outbox.enqueue(
///     pool.post("http://127.0.0.1:8000/orders")
///         .json_body(&serde_json::json!({"id": 17}))
///         .idempotency_key("order-17"),
/// )?; // in the file when it returns
/// assert_eq!(outbox.flush_timeout(Duration::from_secs(60)), 0);
/// let reply = outbox.reply(id)?.expect("delivered");
/// println!("{} {}", reply.status, String::from_utf8_lossy(&reply.body));
/// # Ok(()) }
/// # #[cfg(not(feature = "sqlite"))]
/// # fn main() {}
/// ```
///
/// What is stored: method, URL, headers and body. Secrets are not: a
/// request with URL credentials, a secret header (`Authorization`,
/// `Cookie`, `secret_header`) or a secret query value is refused with
/// [`Error::Usage`] (add such values at delivery with
/// [`Builder::bearer_from`](crate::Builder::bearer_from) or
/// [`Builder::before_attempt`](crate::Builder::before_attempt)). A file
/// is created readable by its owner only. A job
/// given up on (a final status, or `max_attempts` deliveries) is logged at
/// `warn` and handed to the pool's [`on_error`](crate::Builder::on_error)
/// hook.
/// A file is one process's at a time: a second `open` of a file in use
/// fails.
///
/// The same outbox on a Redis stream (`Outbox::redis`, feature `redis`)
/// is shared by many processes on many machines: each enqueues, each with
/// a pool delivers, and a stopped consumer's jobs are taken over by the
/// others.
pub struct Outbox {
    shared: Arc<Shared>,
    store: Arc<dyn Front>,
    commits: enqueue::Commits,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("store", &self.store)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Blocks while it opens (or creates) the outbox file at `path`, with
    /// the default [`OutboxOptions`], and starts delivering through `pool`
    /// what the file holds: jobs left pending, and jobs that were in flight
    /// when a previous process died (they are sent again, with their key).
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the file is not an outbox (not empty, and
    /// without reqpool's mark: it is left as it was), was written by a
    /// newer version, cannot be created or written (a read-only folder, a
    /// full disk), or is open in another process: its
    /// [`StorageKind`](crate::StorageKind) says which.
    #[cfg(feature = "sqlite")]
    pub fn open(path: impl AsRef<Path>, pool: &Pool) -> Result<Outbox, Error> {
        OutboxOptions::default().open(path, pool)
    }

    /// Blocks while it connects to the Redis server at `url` (feature
    /// `redis`) and opens the outbox on its stream `name`, with the
    /// default [`OutboxOptions`]: the same outbox as `Outbox::open` (a file),
    /// shared by every process that opens the same stream, on any
    /// machine. Each one can `enqueue`; each one with a pool delivers, as
    /// a consumer of the group `reqpool`, and acknowledges a job only
    /// once the server answered. The jobs of a consumer that stopped are
    /// taken over by the others when its lease (30 s) runs out.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), reqpool::Error> {
    /// use std::time::Duration;
    /// let pool = reqpool::Pool::new(16);
    /// let outbox = reqpool::Outbox::options()
    ///     .lease(Duration::from_secs(10))
    ///     .shared_rate_per_host(100, Duration::from_secs(1)) // for all consumers together
    ///     .redis("redis://127.0.0.1:6379/", "calls", &pool)?;
    /// outbox.enqueue(pool.post("http://127.0.0.1:8000/orders").idempotency_key("order-17"))?;
    /// assert_eq!(outbox.flush_timeout(Duration::from_secs(60)), 0); // every consumer's work
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for a URL that is not a Redis URL or an empty
    /// name; [`Error::Storage`] with [`StorageKind::Unreachable`](crate::StorageKind::Unreachable)
    /// if the server cannot be reached, [`StorageKind::Denied`](crate::StorageKind::Denied)
    /// if it refuses the login (a wrong password, none given where one is
    /// needed), and [`StorageKind::Io`](crate::StorageKind::Io) for any
    /// other refusal (a key of that name that is not a stream).
    #[cfg(feature = "redis")]
    pub fn redis(url: &str, name: &str, pool: &Pool) -> Result<Outbox, Error> {
        OutboxOptions::default().redis(url, name, pool)
    }

    /// The settings of an outbox, to open it with.
    pub fn options() -> OutboxOptions {
        OutboxOptions::default()
    }

    /// Starts an outbox on `store`: delivering through `pool` unless the
    /// options say not to.
    fn start<S: Store>(store: S, pool: &Pool, options: OutboxOptions) -> Result<Outbox, Error> {
        let store = Arc::new(store);
        let shared = Arc::new(Shared::new(pool, options));
        let thread = if shared.options.deliver {
            Some(deliver::start(&shared, &store)?)
        } else {
            None
        };
        Ok(Outbox {
            shared,
            store,
            commits: enqueue::Commits::default(),
            thread,
        })
    }

    /// Writes `request` to the store and returns its id once it is there
    /// (on a file: durable as `Durability` says); the pool delivers it in the
    /// background with its `Idempotency-Key`. Blocks for the commit.
    ///
    /// A key already in the store returns that job's id and sends nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for a request that cannot be built,
    /// [`Error::Usage`] for one that carries a secret, or a setting of
    /// its own that the outbox does not keep (`timeout`, `deadline`,
    /// `retry`, `hedge`, `follow_redirects`: the delivering pool's
    /// settings apply, so set them on its [`Builder`](crate::Builder));
    /// nothing is written. [`Error::QueueFull`] when [`OutboxOptions::max_queued`] jobs
    /// wait already, [`Error::Storage`] when the store cannot be written.
    pub fn enqueue(&self, request: RequestBuilder) -> Result<JobId, Error> {
        let row = enqueue::row(&self.shared, self.thread.is_some(), request)?;
        let key = row.key.clone();
        let inserted = self.commits.insert(&*self.store, row);
        enqueue::inserted(&self.shared, &key, inserted)
    }

    /// [`enqueue`](Outbox::enqueue) in the order of `order_key`: the jobs
    /// of one order key (a customer, an account, a document) go one at a
    /// time, in the order they were enqueued, whichever consumer delivers
    /// them. The next job of a key goes only once the one before it is
    /// over: delivered, or dead (given up on). A job tried again later
    /// (a 503, a `Retry-After`, a consumer that stopped) holds its key's
    /// later jobs until it is over; jobs of other keys, and jobs without
    /// one, go meanwhile. A dead letter requeued goes again: on a file
    /// as its key's first unfinished job (before the key's later jobs
    /// still waiting), on Redis outside its key's order.
    ///
    /// Blocks for the commit, as `enqueue`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), reqpool::Error> {
    /// let pool = reqpool::Pool::new(8);
    /// let outbox = reqpool::Outbox::open("calls.db", &pool)?;
    /// for (n, event) in ["created", "paid", "shipped"].into_iter().enumerate() {
    ///     outbox.enqueue_ordered(
    ///         "customer-42", // created, then paid, then shipped
    ///         pool.post("http://127.0.0.1:8000/hooks")
    ///             .json_body(&serde_json::json!({ "event": event }))
    ///             .idempotency_key(&format!("customer-42-{n}")),
    ///     )?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Outbox::enqueue); [`Error::Usage`] also for an
    /// empty order key or one over 1,024 bytes.
    pub fn enqueue_ordered(
        &self,
        order_key: &str,
        request: RequestBuilder,
    ) -> Result<JobId, Error> {
        if order_key.is_empty() || order_key.len() > 1024 {
            return Err(Error::usage(format!(
                "an order key must be 1 to 1,024 bytes long (this one is {})",
                order_key.len()
            )));
        }
        let mut row = enqueue::row(&self.shared, self.thread.is_some(), request)?;
        row.order = Some(order_key.to_owned());
        let key = row.key.clone();
        let inserted = self.commits.insert(&*self.store, row);
        enqueue::inserted(&self.shared, &key, inserted)
    }

    /// Blocks while it writes `requests` to the store, many in one commit
    /// (one transaction of the file, one pipeline of Redis, per 1,000),
    /// and returns each one's id, or why that one was not taken, in the
    /// order given: the same outcome as [`enqueue`](Outbox::enqueue) for
    /// each, at a fraction of the cost of one commit per job.
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # fn main() -> Result<(), reqpool::Error> {
    /// let pool = reqpool::Pool::new(8);
    /// let outbox = reqpool::Outbox::open("calls.db", &pool)?;
    /// let ids = outbox.enqueue_all((0..10_000).map(|i| {
    ///     pool.post("http://127.0.0.1:8000/orders")
    ///         .json_body(&serde_json::json!({ "id": i }))
    ///         .idempotency_key(&format!("order-{i}"))
    /// }));
    /// assert!(ids.iter().all(Result::is_ok));
    /// # Ok(()) }
    /// # #[cfg(not(feature = "sqlite"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// Per job, as [`enqueue`](Outbox::enqueue): a job that cannot be
    /// built or carries a secret fails alone, before anything is written;
    /// a job the store refuses fails alone; a commit the store cannot
    /// take fails each job of it with that error.
    pub fn enqueue_all(
        &self,
        requests: impl IntoIterator<Item = RequestBuilder>,
    ) -> Vec<Result<JobId, Error>> {
        let mut out: Vec<Option<Result<JobId, Error>>> = Vec::new();
        let mut rows: Vec<(usize, Row)> = Vec::new();
        for request in requests {
            match enqueue::row(&self.shared, self.thread.is_some(), request) {
                Ok(row) => {
                    rows.push((out.len(), row));
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        for chunk in rows.chunks(1_000) {
            let refs: Vec<&Row> = chunk.iter().map(|(_, r)| r).collect();
            let results = match self.store.insert(&refs) {
                Ok(each) => each,
                Err(e) => chunk.iter().map(|_| Err(e.again())).collect(),
            };
            for ((slot, row), result) in chunk.iter().zip(results) {
                out[*slot] = Some(enqueue::inserted(&self.shared, &row.key, result));
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::usage("the outbox's commit was lost"))))
            .collect()
    }

    /// Blocks until every job is delivered or dead, or `limit` passes;
    /// returns how many are neither (pending, in flight, or waiting for a
    /// later attempt). While the store cannot be read (a Redis that is
    /// down) it waits until `limit` and returns `usize::MAX`: "not known
    /// to be done"; [`health`](Outbox::health) says why.
    pub fn flush_timeout(&self, limit: Duration) -> usize {
        let stop = Deadline::after(limit);
        loop {
            let seen = self.shared.writes();
            // Jobs of this process in flight are unfinished in the store
            // too: it is asked only when there are none, or at the end.
            let busy = self.shared.in_flight() > 0;
            if !busy || stop.passed() {
                let left = self.unfinished().unwrap_or(usize::MAX);
                if left == 0 || stop.passed() {
                    return left;
                }
            }
            // Until the next write of answers (or a while, for retries
            // that come due).
            let look = stop.min(Deadline::after(Duration::from_millis(100)));
            self.shared.wait_written(seen, look);
        }
    }

    /// Blocks while it asks the store for the oldest due job (bounded by
    /// the store's own time limits: a Redis connection within 2 s, a reply
    /// within 10 s), and returns whether delivery runs, its last error and
    /// its last progress, and the age of the oldest due job: what a health
    /// check looks at. Never fails: while the store is down it says so in
    /// [`last_error`](OutboxHealth::last_error) and a growing
    /// [`since_progress`](OutboxHealth::since_progress).
    pub fn health(&self) -> OutboxHealth {
        let oldest = self.store.oldest_due().ok().flatten().map(|since| {
            Duration::from_millis(u64::try_from(now_ms().saturating_sub(since)).unwrap_or(0))
        });
        self.shared.health.report(oldest, self.store.lost())
    }

    /// Jobs pending or in flight.
    fn unfinished(&self) -> Result<usize, Error> {
        self.store.unfinished()
    }

    /// How many jobs are pending, in flight, delivered and dead.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the store cannot be read.
    pub fn stats(&self) -> Result<OutboxStats, Error> {
        self.store.stats()
    }

    /// The jobs given up on, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the store cannot be read.
    pub fn dead(&self) -> Result<Vec<DeadJob>, Error> {
        self.store.dead()
    }

    /// Puts a dead job back to pending, with its attempts reset; false if
    /// `id` is not dead.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the store cannot be written.
    pub fn requeue(&self, id: JobId) -> Result<bool, Error> {
        let back = self.store.requeue(id)?;
        self.shared.more_work();
        Ok(back)
    }

    /// Removes a delivered or dead job from the store: its key, its reply,
    /// its last error. Pending and in-flight jobs stay. True if it was
    /// removed. Blocks for the commit.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the store cannot be written.
    pub fn forget(&self, id: JobId) -> Result<bool, Error> {
        self.store.forget(id)
    }

    /// The endpoints (URLs, redacted) a `410 Gone` paused in this
    /// process, with
    /// [`OutboxOptions::pause_on_gone`](crate::OutboxOptions::pause_on_gone):
    /// their jobs wait, pending, until [`resume`](Outbox::resume).
    pub fn paused(&self) -> Vec<String> {
        self.shared.paused.list()
    }

    /// Sends the jobs to `url` again (within 2 s); true if it was paused.
    /// The job that got the `410` stays dead: requeue it if it should go
    /// too.
    pub fn resume(&self, url: &str) -> bool {
        self.shared.paused.resume(url)
    }

    /// The server's answer to job `id`, if it was delivered and replies
    /// are kept.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the store cannot be read.
    pub fn reply(&self, id: JobId) -> Result<Option<Delivered>, Error> {
        self.store.reply(id)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.shared.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // With nothing in flight, the pool's last finished jobs are only
        // dropping their hold on the store: wait for that (briefly), so
        // that the store is closed when `drop` returns and the next open
        // of the same file finds it free.
        let stop = Deadline::after(Duration::from_secs(1));
        while self.shared.in_flight() == 0 && Arc::strong_count(&self.store) > 1 && !stop.passed() {
            std::thread::yield_now();
        }
    }
}

impl OutboxOptions {
    /// Blocks while it connects to the Redis server at `url` and opens
    /// the outbox on its stream `name` with these settings; see
    /// [`Outbox::redis`].
    ///
    /// # Errors
    ///
    /// As [`Outbox::redis`].
    #[cfg(feature = "redis")]
    pub fn redis(mut self, url: &str, name: &str, pool: &Pool) -> Result<Outbox, Error> {
        let stores = self.redis_store(redis::Nodes::One(url), name, pool.workers())?;
        self.start_redis(stores, pool)
    }

    /// An outbox on one Redis store, or on its shards.
    #[cfg(feature = "redis")]
    fn start_redis(self, mut stores: Vec<redis::Redis>, pool: &Pool) -> Result<Outbox, Error> {
        match stores.pop() {
            Some(one) if stores.is_empty() => Outbox::start(one, pool, self),
            Some(last) => {
                stores.push(last);
                Outbox::start(shards::Shards::new(stores)?, pool, self)
            }
            None => Err(Error::usage("an outbox needs at least one shard")),
        }
    }

    /// Blocks while it connects to the Redis Cluster that `nodes` belong
    /// to (any one that answers is enough: the client learns the others
    /// and the slots from it) and opens the outbox `name` on it with these
    /// settings: the same outbox as [`Outbox::redis`], on one slot of the
    /// cluster (every key of the outbox carries the hash tag `{name}`).
    /// When a master fails and its replica takes over, calls fail with
    /// [`StorageKind::Unreachable`](crate::StorageKind::Unreachable)
    /// until the cluster has a master for the slot again (a few seconds:
    /// the cluster's `cluster-node-timeout` and its election); the
    /// consumers go on by themselves, and an `enqueue` that failed may be
    /// called again with the same key. What a failover may lose: writes
    /// the old master acknowledged and had not yet sent to its replica
    /// (Redis replicates asynchronously; `WAIT`-less, as every Redis
    /// Cluster client), so a job enqueued or acknowledged in that instant
    /// may be lost or delivered again (with its key).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), reqpool::Error> {
    /// use std::time::Duration;
    /// let pool = reqpool::Pool::new(16);
    /// let nodes = ["redis://127.0.0.1:7000/", "redis://127.0.0.1:7001/"];
    /// let outbox = reqpool::Outbox::options().redis_cluster(&nodes, "calls", &pool)?;
    /// outbox.enqueue(pool.post("http://127.0.0.1:8000/orders").idempotency_key("order-17"))?;
    /// assert_eq!(outbox.flush_timeout(Duration::from_secs(60)), 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Outbox::redis`]; [`Error::Usage`] also for no node at all.
    #[cfg(feature = "redis")]
    pub fn redis_cluster(
        mut self,
        nodes: &[&str],
        name: &str,
        pool: &Pool,
    ) -> Result<Outbox, Error> {
        let stores = self.redis_store(redis::Nodes::Cluster(nodes), name, pool.workers())?;
        self.start_redis(stores, pool)
    }

    /// Blocks while it opens (or creates) the outbox file at `path` with
    /// these settings; see [`Outbox::open`].
    ///
    /// # Errors
    ///
    /// As [`Outbox::open`].
    #[cfg(feature = "sqlite")]
    pub fn open(self, path: impl AsRef<Path>, pool: &Pool) -> Result<Outbox, Error> {
        let store = self.file_store(path.as_ref())?;
        Outbox::start(store, pool, self)
    }
}
