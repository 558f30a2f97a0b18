//! `Pool`: the workers, the shared agent, and the one way jobs reach them.

use crate::builder::ErrorHook;
use crate::deadline::Deadline;
use crate::error::Error;
use crate::hedge::Latencies;
use crate::hosts::HostCaps;
use crate::pending::Pending;
use crate::prepare::RequestDefaults;
use crate::request::RequestBuilder;
use crate::stats::{Counters, Stats};
use crate::sync::{Gate, lock};
use crate::task::{Control, Ctx, Deliver, Label, Limits, Step, Task, TaskHooks};
use crate::timer::{Due, Timer};
use crate::worker::{Dispatch, on_worker_of, worker_loop};
use crossbeam_channel::{Receiver, Sender, bounded};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

static NEXT_POOL_ID: AtomicUsize = AtomicUsize::new(1);

/// A fixed set of worker threads sharing one [`ureq::Agent`].
///
/// **Dropping the last handle blocks** until every queued and
/// fire-and-forget job has finished (at most the
/// [drain timeout](crate::Builder::drain_timeout), 30 s by default), so work
/// queued at the end of `main` is not lost; pools still alive when the
/// process exits (held in a `static`, or by their own jobs) are drained the
/// same way at exit. Make one pool per program and pass clones around,
/// rather than a pool per call.
///
/// Every submit method returns a [`Pending`] at once; the job runs on the
/// next free worker. The workers are `threadpool` threads that take jobs
/// from one lock-free crossbeam queue, in submission order. `Pool` is a
/// cheap handle: clones share the same workers, agent and keep-alive
/// connections, and it is `Send + Sync`.
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

/// The start-up settings `build()` hands to the pool.
pub(crate) struct Settings {
    pub(crate) workers: usize,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) max_queued: Option<usize>,
    pub(crate) drain_timeout: Duration,
    pub(crate) on_error: Option<ErrorHook>,
    pub(crate) max_per_host: Option<usize>,
}

/// What one submission asks of the pipeline.
pub(crate) struct JobSpec {
    pub(crate) limits: Limits,
    /// The host the job counts against (for a per-host cap).
    pub(crate) host: Option<Arc<str>>,
    /// Block for room in a bounded queue (false: fail with `QueueFull`).
    pub(crate) block: bool,
    /// The request the job runs, for errors raised outside of it.
    pub(crate) label: Option<Arc<dyn Label>>,
}

/// Shared by the handles and by every queued job.
pub(crate) struct Inner {
    me: Weak<Inner>,
    id: usize,
    /// Hosts the worker threads; kept only to own them.
    _threads: threadpool::ThreadPool,
    thread_name: String,
    workers: usize,
    /// The job queue the workers take from.
    queue: Sender<Dispatch>,
    /// The receiving end, for `shutdown_now` to drain the queue at once.
    queue_rx: Receiver<Dispatch>,
    agent: ureq::Agent,
    defaults: RequestDefaults,
    drain_timeout: Duration,
    on_error: Option<ErrorHook>,
    counters: Counters,
    /// Jobs queued, running or sleeping; the drain waits for zero.
    outstanding: Gate,
    /// Fire-and-forget jobs not finished; `flush` waits for zero.
    fired: Gate,
    /// Set by shutdown: new jobs resolve as closed.
    closed: AtomicBool,
    /// Set by `shutdown_now`: queued jobs resolve as cancelled.
    cancel_queued: AtomicBool,
    hosts: Option<HostCaps>,
    latencies: Latencies,
    timer: OnceLock<Timer>,
    /// Room in the bounded queue: one token per queued job.
    slots: Option<(Sender<()>, Receiver<()>)>,
}

impl TaskHooks for Inner {
    fn id(&self) -> usize {
        self.id
    }

    fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    fn started(&self, queued_at: Instant) {
        // Count the job out of the queue before making room in it, so the
        // queue never looks longer than its bound.
        self.counters.started(queued_at);
        self.free_slot();
    }

    fn resumed(&self) {
        self.counters.resumed();
    }

    fn slept(&self, task: Arc<dyn Control>, until: Instant, ticket: u32) {
        self.counters.slept();
        let Some(inner) = self.me.upgrade() else {
            return;
        };
        let again = Arc::clone(&inner);
        inner.schedule(
            until,
            Box::new(move || {
                if task.resume(ticket) {
                    again.execute(Dispatch::new(Arc::clone(&again), task));
                }
            }),
        );
    }

    fn skipped(&self, sleeping: bool, cancelled: bool) {
        self.counters.skipped(sleeping, cancelled);
        if !sleeping {
            self.free_slot();
        }
    }

    fn finished(&self, started: Instant, ok: bool, panicked: bool) {
        self.counters.finished(started, ok, panicked);
    }

    fn delivered(&self) {
        // Counted out only now, after continuations such as the error hook
        // of a fired job have run, so a drain that sees zero has nothing
        // left to do.
        self.outstanding.done();
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

    pub(crate) fn cancelling(&self) -> bool {
        self.cancel_queued.load(Ordering::Acquire)
    }

    pub(crate) fn defaults(&self) -> &RequestDefaults {
        &self.defaults
    }

    pub(crate) fn latencies(&self) -> &Latencies {
        &self.latencies
    }

    /// True if the pool caps requests per host (so a job needs its host).
    pub(crate) fn caps_hosts(&self) -> bool {
        self.hosts.is_some()
    }

    /// The one way in: queues `job` on the workers. Every request path,
    /// closure, poll job, burst party and fired job comes through here, so
    /// the queue bound, host caps, limits and stats apply to all of them.
    pub(crate) fn submit<T, F>(self: &Arc<Self>, spec: JobSpec, job: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnMut(&Ctx<'_>) -> Step<T> + Send + 'static,
    {
        if self.is_closed() {
            return Pending::ready(Err(Error::Closed));
        }
        if let Some((tx, _)) = &self.slots {
            // A worker never blocks on its own pool's queue: that could
            // leave every worker waiting for room only workers can make.
            let on_worker = on_worker_of(self.id);
            if spec.block && !on_worker {
                // The receiver lives in `self`, so this cannot disconnect.
                let _ = tx.send(());
            } else if tx.try_send(()).is_err() && !on_worker {
                return Pending::ready(Err(Error::QueueFull));
            }
        }
        let (tx, rx) = bounded(1);
        let hooks: Arc<dyn TaskHooks> = self.clone();
        let host = if self.hosts.is_some() {
            spec.host
        } else {
            None
        };
        let task = Task::new(
            job,
            Deliver::Channel(tx),
            spec.limits,
            hooks,
            spec.label,
            host,
        );
        self.counters.queued();
        self.outstanding.add();
        self.execute(Dispatch::new(Arc::clone(self), task.clone()));
        Pending::new(rx, task.clone(), task)
    }

    /// Counts `pending` as a fire-and-forget job: its failure goes to the
    /// error hook and the log, and `flush` waits for it.
    pub(crate) fn track_fired(self: &Arc<Self>, label: String, pending: Pending<()>) {
        self.counters.fired();
        self.fired.add();
        let inner = Arc::clone(self);
        pending.on_complete(Box::new(move |r| {
            if let Err(e) = r {
                inner.counters.fired_failed();
                log::warn!("reqpool: fire-and-forget job {label} failed: {e}");
                if let Some(hook) = &inner.on_error {
                    hook(&e);
                }
            }
            inner.fired.done();
        }));
    }

    /// Runs `f` at `when` on the pool's timer thread.
    pub(crate) fn schedule(&self, when: Instant, f: Due) {
        self.timer
            .get_or_init(|| Timer::start(&self.thread_name))
            .at(when, f);
    }

    /// Hands a job to the workers.
    pub(crate) fn execute(&self, job: Dispatch) {
        // The workers' receiver lives as long as `self`: this cannot fail.
        let _ = self.queue.send(job);
    }

    /// Takes a slot for `host` and gives the job back, or parks it.
    pub(crate) fn acquire_host(&self, host: &Arc<str>, job: Dispatch) -> Option<Dispatch> {
        match &self.hosts {
            Some(caps) => caps.acquire_or_park(host, job),
            None => Some(job),
        }
    }

    /// Passes a finished job's host slot on to a parked job, or frees it.
    pub(crate) fn release_host(&self, host: &Arc<str>) {
        if let Some(next) = self.hosts.as_ref().and_then(|c| c.release(host)) {
            self.execute(next);
        }
    }

    /// Blocks until nothing is outstanding or the drain timeout passes.
    fn drain(&self) -> usize {
        self.outstanding
            .wait_zero(Deadline::after(self.drain_timeout))
    }
}

/// Pools alive now, drained when the process exits.
static LIVE: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

/// Registers `inner` to be drained at process exit (the hook is installed
/// once, with the first pool).
fn drain_at_exit(inner: &Arc<Inner>) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        if !shutdown_hooks::add_shutdown_hook(exit_hook) {
            log::warn!("reqpool: could not install the exit hook; call flush() before exit");
        }
    });
    let mut live = lock(&LIVE);
    live.retain(|w| w.strong_count() > 0);
    live.push(Arc::downgrade(inner));
}

/// Runs at process exit (after `main` returns, or `std::process::exit`):
/// waits for the work of every pool still alive, as Python's executor
/// joins its workers at interpreter exit.
extern "C" fn exit_hook() {
    let live: Vec<Arc<Inner>> = lock(&LIVE).iter().filter_map(Weak::upgrade).collect();
    for inner in live {
        if on_worker_of(inner.id) {
            continue;
        }
        let left = inner.drain();
        if left > 0 {
            log::warn!(
                "reqpool: process exits with {left} job(s) unfinished after the drain timeout"
            );
        }
    }
}

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
    pub fn builder() -> crate::Builder {
        crate::Builder::default()
    }

    pub(crate) fn start(s: Settings, agent: ureq::Agent, defaults: RequestDefaults) -> Pool {
        let id = NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed);
        let mut tb = threadpool::Builder::new()
            .num_threads(s.workers)
            .thread_name(s.thread_name.clone());
        if let Some(size) = s.stack_size {
            tb = tb.thread_stack_size(size);
        }
        let tp = tb.build();
        let (queue, queue_rx) = crossbeam_channel::unbounded::<Dispatch>();
        for _ in 0..s.workers {
            let rx = queue_rx.clone();
            tp.execute(move || worker_loop(id, rx));
        }
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            id,
            _threads: tp,
            thread_name: s.thread_name,
            workers: s.workers,
            queue,
            queue_rx,
            agent,
            defaults,
            drain_timeout: s.drain_timeout,
            on_error: s.on_error,
            counters: Counters::new(s.workers),
            outstanding: Gate::new(),
            fired: Gate::new(),
            closed: AtomicBool::new(false),
            cancel_queued: AtomicBool::new(false),
            hosts: s.max_per_host.map(HostCaps::new),
            latencies: Latencies::default(),
            timer: OnceLock::new(),
            slots: s.max_queued.map(bounded),
        });
        drain_at_exit(&inner);
        Pool {
            handle: Arc::new(Handle { inner }),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    /// Runs `job` on a worker with the pool's shared agent.
    ///
    /// Use it for anything the request builder does not cover. The job
    /// gets the pool's limits: it has the pool's
    /// [`timeout`](crate::Builder::timeout) from its start (and its
    /// [`deadline`](crate::Builder::deadline) from now, if set), every
    /// request it makes through `agent` is cut off when that runs out, and
    /// [`Pending::wait`] gives up on it shortly after. Requests through the
    /// agent follow the pool's connect and response limits, and — unlike
    /// the request builder — return a status of 400 and up as a response,
    /// not an error, and do not follow redirects.
    ///
    /// A panic in the job resolves the `Pending` with
    /// [`Error::Panicked`]; the worker lives on. Blocks only if the pool
    /// has a bounded queue and it is full.
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
        self.submit_closure(true, job)
    }

    /// Like [`submit`](Pool::submit), but never blocks: with a full bounded
    /// queue the `Pending` resolves at once with [`Error::QueueFull`].
    pub fn try_submit<T, F>(&self, job: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&ureq::Agent) -> Result<T, Error> + Send + 'static,
    {
        self.submit_closure(false, job)
    }

    pub(crate) fn submit_closure<T, F>(&self, block: bool, job: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&ureq::Agent) -> Result<T, Error> + Send + 'static,
    {
        let inner = self.inner();
        let spec = JobSpec {
            limits: inner.defaults.limits(),
            host: None,
            block,
            label: None,
        };
        inner.submit(spec, one_step(job))
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
    ///     .query("dry_run", 1)
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
    /// goes to the [`on_error`](crate::Builder::on_error) hook and is logged
    /// at `warn`. [`flush`](Pool::flush) waits for every fired job, and
    /// dropping the last `Pool` handle does too (bounded by the drain
    /// timeout), so a fired job is never silently lost. The job has the
    /// same limits as a [`submit`](Pool::submit) closure. Blocks only if a
    /// bounded queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after a shutdown.
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
        let inner = self.inner();
        if inner.is_closed() {
            return Err(Error::Closed);
        }
        let pending = self.submit_closure(true, job);
        inner.track_fired("(closure)".to_string(), pending);
        Ok(())
    }

    /// Blocks the current thread until every fire-and-forget job has finished.
    ///
    /// Returns how many are still unfinished (always 0 here; see
    /// [`flush_timeout`](Pool::flush_timeout)). Called from inside a job of
    /// this pool it does not wait (that would wait on itself) and returns the
    /// count at once.
    pub fn flush(&self) -> usize {
        self.flush_until(Deadline::NEVER)
    }

    /// Blocks the current thread until every fire-and-forget job has
    /// finished or `limit` has passed; returns how many are still unfinished.
    pub fn flush_timeout(&self, limit: Duration) -> usize {
        self.flush_until(Deadline::after(limit))
    }

    fn flush_until(&self, deadline: Deadline) -> usize {
        let fired = &self.inner().fired;
        if self.on_own_worker() {
            return fired.get();
        }
        fired.wait_zero(deadline)
    }

    /// A snapshot of the pool's counters and latencies; cheap enough to call
    /// every second from a progress loop.
    pub fn stats(&self) -> Stats {
        self.inner().counters.snapshot()
    }

    /// The shared agent, for requests made outside the pool. Requests made
    /// through it on a thread that is not running a job of the pool have no
    /// total limit (only the pool's connect and response limits).
    pub fn agent(&self) -> &ureq::Agent {
        &self.inner().agent
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.inner().workers
    }

    pub(crate) fn on_own_worker(&self) -> bool {
        on_worker_of(self.inner().id)
    }

    /// Stops taking new jobs, then blocks the current thread until the
    /// queued and running ones have finished.
    ///
    /// After it, every submit resolves at once with [`Error::Closed`] (and
    /// `fire` returns it). Jobs keep their own time limits, so this ends.
    /// Called from inside a job of this pool it does not wait for the queue
    /// (that would wait on itself); it only closes the pool.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown_until(Deadline::NEVER, false)
    }

    /// Like [`shutdown`](Pool::shutdown), but blocks at most `limit` for
    /// the jobs. When it runs out, the shared agent is shut down, which
    /// interrupts requests blocked on the network (they fail with a
    /// transport error); what is still unfinished a second later is
    /// counted as abandoned.
    pub fn shutdown_timeout(&self, limit: Duration) -> Shutdown {
        self.shutdown_until(Deadline::after(limit), false)
    }

    /// Stops taking new jobs, resolves every queued job (and every job
    /// waiting between two steps, such as a retry's backoff) as cancelled
    /// at once, and blocks until the running ones finish (they keep their
    /// time limits).
    pub fn shutdown_now(&self) -> Shutdown {
        self.shutdown_until(Deadline::NEVER, true)
    }

    fn shutdown_until(&self, deadline: Deadline, cancel: bool) -> Shutdown {
        let inner = self.inner();
        inner.closed.store(true, Ordering::Release);
        let before = inner.counters.snapshot();
        if cancel {
            inner.cancel_queued.store(true, Ordering::Release);
            // Take the queued jobs off the queue here and cancel them at
            // once, even while every worker is busy; the same for jobs
            // parked behind a per-host cap and jobs waiting in the timer.
            while let Ok(job) = inner.queue_rx.try_recv() {
                job.cancel();
            }
            if let Some(hosts) = &inner.hosts {
                for job in hosts.take_parked() {
                    job.cancel();
                }
            }
            if let Some(timer) = inner.timer.get() {
                timer.run_all();
            }
        }
        let own = self.on_own_worker();
        let mut left = if own {
            inner.outstanding.get()
        } else {
            inner.outstanding.wait_zero(deadline)
        };
        if left > 0 && !deadline.is_never() && !own {
            // Interrupt requests blocked on I/O, then give them a moment to
            // report it.
            inner.agent.clone().shutdown();
            left = inner
                .outstanding
                .wait_zero(Deadline::after(Duration::from_secs(1)));
        }
        let after = inner.counters.snapshot();
        Shutdown {
            finished: (after.succeeded + after.failed) - (before.succeeded + before.failed),
            cancelled: after.cancelled - before.cancelled,
            abandoned: left as u64,
        }
    }
}

/// A closure job as a job of one step.
pub(crate) fn one_step<T, F>(job: F) -> impl FnMut(&Ctx<'_>) -> Step<T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(&ureq::Agent) -> Result<T, Error> + Send + 'static,
{
    let mut job = Some(job);
    move |ctx: &Ctx<'_>| match job.take() {
        Some(f) => Step::Done(f(ctx.agent)),
        None => Step::Done(Err(Error::Closed)),
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

impl Drop for Handle {
    fn drop(&mut self) {
        let inner = &self.inner;
        if on_worker_of(inner.id) {
            // The last handle dropped inside one of our own jobs: waiting here
            // would wait on ourselves. The queued jobs still run.
            return;
        }
        let left = inner.drain();
        if left > 0 {
            log::warn!(
                "reqpool: pool dropped with {left} job(s) unfinished after the drain timeout of {:?}; they keep running in the background",
                inner.drain_timeout
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
            .field("scheduled", &s.scheduled)
            .field("succeeded", &s.succeeded)
            .field("failed", &s.failed)
            .finish_non_exhaustive()
    }
}
