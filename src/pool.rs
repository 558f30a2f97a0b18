//! `Pool`: the workers, the shared agent, and the way jobs reach them.

use crate::builder::{Builder, ErrorHook};
use crate::error::Error;
use crate::hosts::{Dispatch, HostCaps};
use crate::pending::{Pending, WORKER_OF};
use crate::request::RequestBuilder;
use crate::stats::{Counters, Stats};
use crate::task::{Deliver, Task, TaskHooks};
use crossbeam_channel::{Receiver, Sender, bounded};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

static NEXT_POOL_ID: AtomicUsize = AtomicUsize::new(1);

/// A fixed set of worker threads sharing one [`ureq::Agent`].
///
/// Every submit method returns a [`Pending`] at once; the job runs on the
/// next free worker. The workers are `threadpool` threads that take jobs
/// from one lock-free crossbeam queue, in submission order. `Pool` is a
/// cheap handle: clones share the same workers, agent and keep-alive
/// connections, and it is `Send + Sync`, so it can be passed to other
/// threads.
///
/// # Dropping
///
/// When the last handle is dropped, the pool waits for every queued and
/// fire-and-forget job to finish, for at most the
/// [drain timeout](Builder::drain_timeout), so work queued at the end of
/// `main` is not lost. What is still unfinished then is logged and keeps
/// running in the background; every `Pending` still resolves.
///
/// ```
/// let pool = reqpool::Pool::new(4);
/// let jobs: Vec<_> = (0..8).map(|i| pool.submit(move |_agent| Ok(i * i))).collect();
/// let squares: Vec<i32> = jobs.into_iter().map(|j| j.wait().unwrap()).collect();
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49]);
/// ```
#[derive(Clone)]
pub struct Pool {
    handle: Arc<Handle>,
}

/// Owned by the `Pool` handles only; dropping the last one drains.
struct Handle {
    inner: Arc<Inner>,
}

/// The settings that requests read on the worker.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) max_response_bytes: u64,
    pub(crate) max_queued: Option<usize>,
    pub(crate) drain_timeout: Duration,
    pub(crate) on_error: Option<ErrorHook>,
    pub(crate) retry: Arc<crate::retry::Retry>,
    pub(crate) budget: Option<Arc<crate::retry::Budget>>,
    pub(crate) max_per_host: Option<usize>,
    pub(crate) hedge: Option<crate::hedge::Hedge>,
}

impl Config {
    pub(crate) fn from_builder(b: Builder) -> Config {
        Config {
            workers: b.workers,
            thread_name: b.thread_name,
            stack_size: b.stack_size,
            timeout: b.timeout,
            connect_timeout: b.connect_timeout,
            response_timeout: b.response_timeout,
            max_response_bytes: b.max_response_bytes,
            max_queued: b.max_queued,
            drain_timeout: b.drain_timeout,
            on_error: b.on_error,
            retry: Arc::new(b.retry),
            max_per_host: b.max_per_host,
            hedge: b.hedge,
            budget: b
                .retry_budget
                .map(|(ratio, burst)| Arc::new(crate::retry::Budget::new(ratio, burst))),
        }
    }
}

/// Shared by the handles and by every queued job.
pub(crate) struct Inner {
    pub(crate) id: usize,
    /// Hosts the worker threads; each runs `worker_loop` for the pool's
    /// life. Kept only to own them.
    _threads: threadpool::ThreadPool,
    /// The job queue the workers take from: lock-free, unlike threadpool's
    /// own queue (one mutex all workers contend for on every job).
    queue: Sender<Dispatch>,
    /// The receiving end, for `shutdown_now` to drain the queue at once.
    queue_rx: Receiver<Dispatch>,
    pub(crate) agent: ureq::Agent,
    pub(crate) cfg: Config,
    pub(crate) counters: Counters,
    /// Jobs queued or running; the drain waits for it to reach zero.
    pub(crate) outstanding: Gate,
    /// Fire-and-forget jobs not finished; `flush` waits for zero.
    pub(crate) fired: Gate,
    /// Set by shutdown: new jobs resolve as closed.
    closed: AtomicBool,
    /// Set by `shutdown_now`: queued jobs resolve as cancelled.
    pub(crate) cancel_queued: AtomicBool,
    /// The per-host cap, if set.
    pub(crate) hosts: Option<HostCaps>,
    /// Latencies per host, for percentile hedging.
    pub(crate) latencies: crate::hedge::Latencies,
    timer: std::sync::OnceLock<crate::hedge::Timer>,
    /// Room in the bounded queue: one token per queued job.
    slots: Option<(Sender<()>, Receiver<()>)>,
}

/// A counter that can be waited on until it reaches zero.
pub(crate) struct Gate {
    count: AtomicUsize,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            count: AtomicUsize::new(0),
            lock: Mutex::new(()),
            zero: Condvar::new(),
        }
    }

    pub(crate) fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Take the lock so a waiter between its check and its wait
            // cannot miss the wake-up.
            let _g = crate::task::lock(&self.lock);
            self.zero.notify_all();
        }
    }

    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Blocks until the count is zero or `deadline` passes; returns the count.
    pub(crate) fn wait_zero(&self, deadline: Option<Instant>) -> usize {
        let mut g = crate::task::lock(&self.lock);
        loop {
            let n = self.get();
            if n == 0 {
                return 0;
            }
            match deadline {
                None => g = self.zero.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return n;
                    }
                    g = self
                        .zero
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

impl TaskHooks for Inner {
    fn skipped(&self) {
        self.counters.left_queue();
        self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        self.free_slot();
    }

    fn delivered(&self) {
        // Counted out only now, after continuations such as the error hook
        // of a fired job have run, so a drain that sees zero has nothing
        // left to do.
        self.outstanding.done();
    }

    fn started(&self) -> Instant {
        // Count the job out of the queue before making room in it, so the
        // queue never looks longer than its bound.
        let now = self.counters.started();
        self.free_slot();
        now
    }

    fn finished(&self, queued_at: Instant, started: Instant, ok: bool, panicked: bool) {
        self.counters.finished(queued_at, started, ok, panicked);
    }
}

impl Inner {
    fn free_slot(&self) {
        if let Some((_, rx)) = &self.slots {
            let _ = rx.try_recv();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues `job` on the workers. `block` says what to do when the bounded
    /// queue is full: wait for room, or resolve with `QueueFull`.
    pub(crate) fn spawn<T, F>(
        self: &Arc<Self>,
        deadline: Option<Instant>,
        block: bool,
        job: F,
    ) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&ureq::Agent) -> Result<T, Error> + Send + 'static,
    {
        self.spawn_for(None, deadline, block, job)
    }

    /// Like `spawn`, for a request to `host` (counted against the per-host
    /// cap, if the pool has one).
    pub(crate) fn spawn_for<T, F>(
        self: &Arc<Self>,
        host: Option<Arc<str>>,
        deadline: Option<Instant>,
        block: bool,
        job: F,
    ) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&ureq::Agent) -> Result<T, Error> + Send + 'static,
    {
        if self.is_closed() {
            return Pending::ready(Err(Error::Closed));
        }
        if let Some((tx, _)) = &self.slots {
            // A worker never blocks on its own pool's queue: that could
            // leave every worker waiting for room only workers can make.
            let on_worker = WORKER_OF.with(|w| w.get()) == self.id;
            if block && !on_worker {
                // The receiver lives in `self`, so this cannot disconnect.
                let _ = tx.send(());
            } else if tx.try_send(()).is_err() && !on_worker {
                return Pending::ready(Err(Error::QueueFull));
            }
        }
        let (tx, rx) = bounded(1);
        let inner = Arc::clone(self);
        let run = move || {
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                return Err(Error::Timeout {
                    phase: crate::Phase::Queued,
                    method: String::new(),
                    url: String::new(),
                });
            }
            job(&inner.agent)
        };
        let hooks: Arc<dyn TaskHooks> = self.clone();
        let task = Arc::new(Task::new(run, Deliver::Channel(tx), Some(hooks)));
        self.counters.queued();
        self.outstanding.add();
        let host = if self.hosts.is_some() { host } else { None };
        self.execute(Dispatch::new(Arc::clone(self), task.clone(), host));
        Pending::new(rx, task.clone(), task, self.id, deadline)
    }

    /// The pool's timer thread, started on first use.
    pub(crate) fn timer(&self) -> &crate::hedge::Timer {
        self.timer.get_or_init(crate::hedge::Timer::start)
    }

    /// Hands a job to the workers.
    pub(crate) fn execute(&self, job: Dispatch) {
        // The workers' receiver lives as long as `self`: this cannot fail.
        let _ = self.queue.send(job);
    }

    /// Queues a job whose result nobody waits for, with accounting.
    pub(crate) fn fire<F>(
        self: &Arc<Self>,
        label: String,
        deadline: Option<Instant>,
        job: F,
    ) -> Result<(), Error>
    where
        F: FnOnce(&ureq::Agent) -> Result<(), Error> + Send + 'static,
    {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.counters.fired.fetch_add(1, Ordering::Relaxed);
        self.fired.add();
        let pending = self.spawn(deadline, true, job);
        let inner = Arc::clone(self);
        pending.on_complete(Box::new(move |r| {
            if let Err(e) = r {
                inner.counters.fired_failed.fetch_add(1, Ordering::Relaxed);
                log::warn!("reqpool: fire-and-forget job {label} failed: {e}");
                if let Some(hook) = &inner.cfg.on_error {
                    hook(&e);
                }
            }
            inner.fired.done();
        }));
        Ok(())
    }
}

impl Pool {
    /// A pool of `workers` threads with the default settings (see
    /// [`Builder`]).
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

    pub(crate) fn start(cfg: Config, agent: ureq::Agent) -> Pool {
        let mut tb = threadpool::Builder::new()
            .num_threads(cfg.workers)
            .thread_name(cfg.thread_name.clone());
        if let Some(s) = cfg.stack_size {
            tb = tb.thread_stack_size(s);
        }
        let slots = cfg.max_queued.map(bounded);
        let tp = tb.build();
        let (queue, queue_rx) = crossbeam_channel::unbounded::<Dispatch>();
        for _ in 0..cfg.workers {
            let rx = queue_rx.clone();
            tp.execute(move || worker_loop(rx));
        }
        let hosts = cfg.max_per_host.map(HostCaps::new);
        let inner = Arc::new(Inner {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            _threads: tp,
            queue,
            queue_rx: queue_rx.clone(),
            agent,
            counters: Counters::new(cfg.workers),
            cfg,
            outstanding: Gate::new(),
            fired: Gate::new(),
            closed: AtomicBool::new(false),
            cancel_queued: AtomicBool::new(false),
            hosts,
            latencies: Default::default(),
            timer: std::sync::OnceLock::new(),
            slots,
        });
        Pool {
            handle: Arc::new(Handle { inner }),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    /// Runs `job` on a worker with the pool's shared agent.
    ///
    /// Use it for anything the request builder does not cover. A panic in
    /// the job resolves the `Pending` with [`Error::Panicked`]; the worker
    /// lives on. Blocks only if the pool has a bounded queue and it is full.
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
        self.inner().spawn(None, true, job)
    }

    /// Like [`submit`](Pool::submit), but never blocks: with a full bounded
    /// queue the `Pending` resolves at once with [`Error::QueueFull`].
    pub fn try_submit<T, F>(&self, job: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&ureq::Agent) -> Result<T, Error> + Send + 'static,
    {
        self.inner().spawn(None, false, job)
    }

    /// POSTs `body` as JSON to `url` and decodes the JSON reply as `T`.
    ///
    /// Returns at once. A body that does not serialize or a bad URL resolves
    /// the `Pending` at once with [`Error::InvalidRequest`], without using a
    /// worker. An error status resolves it with [`Error::Status`], which
    /// keeps the server's body.
    ///
    /// ```no_run
    /// # #[derive(serde::Deserialize)] struct Reply { result: String }
    /// let pool = reqpool::Pool::new(8);
    /// let reply = pool.post_json::<Reply>("http://127.0.0.1:8000/process", &serde_json::json!({"tag": "a"}));
    /// println!("{}", reply.wait()?.result);
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn post_json<T>(&self, url: &str, body: &(impl Serialize + ?Sized)) -> Pending<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.post(url).json_body(body).json()
    }

    /// GETs `url` and decodes the JSON reply as `T`.
    pub fn get_json<T>(&self, url: &str) -> Pending<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.get(url).json()
    }

    /// Starts a request with any method; see [`RequestBuilder`].
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let pool = reqpool::Pool::new(4);
    /// let resp = pool
    ///     .request("PUT", "http://127.0.0.1:8000/items/7")
    ///     .header("X-Trace", "abc")
    ///     .query("dry_run", "1")
    ///     .json_body(&serde_json::json!({"name": "seven"}))
    ///     .timeout(Duration::from_secs(5))
    ///     .send()
    ///     .wait()?;
    /// println!("{} {}", resp.status(), resp.text());
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn request(&self, method: &str, url: &str) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, url)
    }

    /// Starts a GET request.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request("GET", url)
    }

    /// Starts a POST request.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request("POST", url)
    }

    /// Runs `job` on a worker with nothing to wait on: fire-and-forget.
    ///
    /// The pool counts fired and failed jobs ([`Pool::stats`]); a failure
    /// goes to the [`on_error`](Builder::on_error) hook and is logged at
    /// `warn`. [`flush`](Pool::flush) waits for every fired job, and dropping
    /// the last `Pool` handle does too (bounded by the drain timeout), so a
    /// fired job is never silently lost. Fails with [`Error::Closed`] after
    /// a shutdown. Blocks only if a bounded queue is full.
    ///
    /// ```
    /// let pool = reqpool::Pool::new(2);
    /// pool.fire(|_agent| Ok(()))?;
    /// assert_eq!(pool.flush(), 0);
    /// assert_eq!(pool.stats().fired, 1);
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn fire<F>(&self, job: F) -> Result<(), Error>
    where
        F: FnOnce(&ureq::Agent) -> Result<(), Error> + Send + 'static,
    {
        self.inner().fire("(closure)".to_string(), None, job)
    }

    /// Blocks the current thread until every fire-and-forget job has finished.
    ///
    /// Returns how many are still unfinished (always 0 here; see
    /// [`flush_timeout`](Pool::flush_timeout)). Called from inside a job of
    /// this pool it does not wait (that would wait on itself) and returns the
    /// count at once.
    pub fn flush(&self) -> usize {
        if self.on_own_worker() {
            return self.inner().fired.get();
        }
        self.inner().fired.wait_zero(None)
    }

    /// Blocks the current thread until every fire-and-forget job has
    /// finished or `limit` has passed; returns how many are still unfinished.
    pub fn flush_timeout(&self, limit: Duration) -> usize {
        if self.on_own_worker() {
            return self.inner().fired.get();
        }
        self.inner()
            .fired
            .wait_zero(Instant::now().checked_add(limit))
    }

    /// A snapshot of the pool's counters and latencies; cheap enough to call
    /// every second from a progress loop.
    pub fn stats(&self) -> Stats {
        self.inner().counters.snapshot()
    }

    /// The shared agent, for requests made outside the pool.
    pub fn agent(&self) -> &ureq::Agent {
        &self.inner().agent
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.inner().cfg.workers
    }

    pub(crate) fn on_own_worker(&self) -> bool {
        WORKER_OF.with(|w| w.get()) == self.inner().id
    }

    /// Stops taking new jobs, then blocks the current thread until the
    /// queued and running ones have finished.
    ///
    /// After it, every submit resolves at once with [`Error::Closed`] (and
    /// `fire` returns it). Jobs keep their own time limits, so this ends.
    /// Called from inside a job of this pool it does not wait for the queue
    /// (that would wait on itself); it only closes the pool.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown_within(None, false)
    }

    /// Like [`shutdown`](Pool::shutdown), but waits at most `limit` for
    /// the jobs. When it runs out, the shared agent is shut down, which
    /// interrupts requests blocked on the network (they fail with a
    /// transport error; this also affects clones of an agent you passed to
    /// [`Builder::agent`]); what is still unfinished a second later is
    /// counted as abandoned.
    pub fn shutdown_timeout(&self, limit: Duration) -> Shutdown {
        self.shutdown_within(Instant::now().checked_add(limit), false)
    }

    /// Stops taking new jobs, resolves every queued job as cancelled at
    /// once, and blocks until the running ones finish (they keep their time
    /// limits).
    pub fn shutdown_now(&self) -> Shutdown {
        self.shutdown_within(None, true)
    }

    fn shutdown_within(&self, deadline: Option<Instant>, cancel: bool) -> Shutdown {
        let inner = self.inner();
        inner.closed.store(true, Ordering::Release);
        let before = inner.counters.snapshot();
        if cancel {
            inner.cancel_queued.store(true, Ordering::Release);
            // Take the queued jobs off the queue here and cancel them at
            // once, even while every worker is busy; the same for jobs
            // parked behind a per-host cap.
            while let Ok(job) = inner.queue_rx.try_recv() {
                job.cancel();
            }
            if let Some(hosts) = &inner.hosts {
                for job in hosts.take_parked() {
                    job.cancel();
                }
            }
        }
        let mut left = if self.on_own_worker() {
            inner.outstanding.get()
        } else {
            inner.outstanding.wait_zero(deadline)
        };
        if left > 0 && deadline.is_some() && !self.on_own_worker() {
            // Interrupt requests blocked on I/O, then give them a moment to
            // report it.
            inner.agent.clone().shutdown();
            left = inner
                .outstanding
                .wait_zero(Instant::now().checked_add(Duration::from_secs(1)));
        }
        let after = inner.counters.snapshot();
        Shutdown {
            finished: (after.succeeded + after.failed) - (before.succeeded + before.failed),
            cancelled: after.cancelled - before.cancelled,
            abandoned: left as u64,
        }
    }
}

/// What a shutdown did with the jobs that were queued or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Shutdown {
    /// Jobs that ran to completion (successfully or not) during the shutdown.
    pub finished: u64,
    /// Queued jobs that were cancelled and never ran.
    pub cancelled: u64,
    /// Jobs still unfinished when the shutdown stopped waiting.
    pub abandoned: u64,
}

/// What each worker thread runs: jobs from the queue until the pool is
/// gone. Nothing escapes it by unwinding (a job's panic is caught in the
/// task), so the pool never loses a worker.
fn worker_loop(rx: Receiver<Dispatch>) {
    while let Ok(job) = rx.recv() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || job.go()));
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let inner = &self.inner;
        if WORKER_OF.with(|w| w.get()) == inner.id {
            // The last handle dropped inside one of our own jobs: waiting here
            // would wait on ourselves. The queued jobs still run.
            return;
        }
        let left = inner
            .outstanding
            .wait_zero(Instant::now().checked_add(inner.cfg.drain_timeout));
        if left > 0 {
            log::warn!(
                "reqpool: pool dropped with {left} job(s) unfinished after the drain timeout of {:?}; they keep running in the background",
                inner.cfg.drain_timeout
            );
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats();
        f.debug_struct("Pool")
            .field("workers", &s.workers)
            .field("queued", &s.queued)
            .field("running", &s.running)
            .field("succeeded", &s.succeeded)
            .field("failed", &s.failed)
            .finish_non_exhaustive()
    }
}
