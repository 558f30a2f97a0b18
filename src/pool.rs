//! `Pool`: the workers, the shared agent, and the one way jobs reach them.

use crate::agent::Agents;
use crate::crew::Crew;
use crate::deadline::Deadline;
use crate::error::Error;
use crate::hedge::Latencies;
use crate::hosts::{Admit, Feedback, Hosts, Policies};
use crate::pending::Pending;
use crate::prepare::RequestDefaults;
use crate::stats::{Counters, Stats};
use crate::sync::Gate;
use crate::task::{Ctx, Label, Limits, Outcome, Queued, Step, Task, TaskHooks};
use crate::timer::{Due, Timer};
use crate::wire::Sockets;
use crate::worker::on_worker_of;
use crate::worker::{Dispatch, Queue};
use crossbeam_channel::{Receiver, Sender, bounded};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
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
/// next free worker. The workers are threads that take jobs from one
/// lock-free crossbeam queue, in submission order: the first 32 start
/// with the pool, one more for each job that waits while none is free (up
/// to [`workers`](crate::Builder::workers)), and those above the first 32
/// leave after [`thread_keep_alive`](crate::Builder::thread_keep_alive)
/// without work. `Pool` is a
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

/// A hook that receives the error of every failed fire-and-forget job.
pub(crate) type ErrorHook = Arc<dyn Fn(&Error) + Send + Sync>;

/// The start-up settings `build()` hands to the pool.
pub(crate) struct Settings {
    pub(crate) workers: usize,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) thread_keep_alive: Duration,
    pub(crate) max_queued: Option<usize>,
    pub(crate) drain_timeout: Duration,
    pub(crate) on_error: Option<ErrorHook>,
    pub(crate) hosts: Policies,
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
    /// A detached fire: done once its request is written.
    pub(crate) detached: bool,
}

impl JobSpec {
    /// A job with these limits that names no request and counts against no
    /// host (a closure); a request sets `host`, `label` and `detached` on
    /// top of it.
    pub(crate) fn new(limits: Limits, block: bool) -> JobSpec {
        JobSpec {
            limits,
            host: None,
            block,
            label: None,
            detached: false,
        }
    }
}

/// Shared by the handles and by every queued job.
pub(crate) struct Inner {
    me: Weak<Inner>,
    id: usize,
    /// The worker threads, started as the queue needs them.
    crew: Arc<Crew>,
    thread_name: String,
    workers: usize,
    /// The job queue the workers take from.
    queue: Sender<Dispatch>,
    /// The receiving end, for `shutdown_now` to drain the queue at once.
    queue_rx: Receiver<Dispatch>,
    /// One agent per 512 workers (see `agent::WORKERS_PER_AGENT`).
    agents: Agents,
    /// The sockets of the agents' open connections.
    sockets: Arc<Sockets>,
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
    /// Set when the agent was shut down to interrupt blocked I/O.
    interrupted: AtomicBool,
    hosts: Option<Hosts<Dispatch>>,
    latencies: Latencies,
    /// Shared GET and HEAD requests in flight (`RequestBuilder::shared`).
    flights: crate::flight::Flights,
    timer: OnceLock<Timer>,
    /// Room in the bounded queue: one token per queued job.
    slots: Option<(Sender<()>, Receiver<()>)>,
}

impl TaskHooks for Inner {
    fn id(&self) -> usize {
        self.id
    }

    /// The agent of the worker running on this thread (the first one
    /// elsewhere).
    fn agent(&self) -> &ureq::Agent {
        let seat = crate::worker::seat();
        self.agents.get(seat)
    }

    fn agents(&self) -> Option<&Agents> {
        Some(&self.agents)
    }

    fn hosts(&self) -> Option<&dyn Feedback> {
        self.hosts.as_ref().map(|h| h as &dyn Feedback)
    }

    fn started(&self) {
        // Count the job out of the queue before making room in it, so the
        // queue never looks longer than its bound.
        self.counters.started();
        self.free_slot();
    }

    fn resumed(&self) {
        self.counters.resumed();
    }

    fn slept(&self, task: Arc<dyn Queued>, until: Instant, ticket: u32) {
        self.counters.slept();
        self.later(until, move |inner| {
            if task.resume(ticket) {
                inner.execute(Dispatch::new(Arc::clone(inner) as Arc<dyn Queue>, task));
            }
        });
    }

    fn skipped(&self, sleeping: bool, cancelled: bool) {
        self.counters.skipped(sleeping, cancelled);
        if !sleeping {
            self.free_slot();
        }
    }

    fn finished(&self, queued_at: Instant, started: Instant, outcome: Outcome) {
        self.counters.finished(queued_at, started, outcome);
    }

    fn cancelled_running(&self) {
        self.counters.cancelled_running();
    }

    fn cancelling(&self) -> bool {
        self.cancel_queued.load(Ordering::Acquire)
    }

    fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Acquire)
    }

    fn delivered(&self) {
        // Counted out only now, after continuations such as the error hook
        // of a fired job have run, so a drain that sees zero has nothing
        // left to do.
        self.outstanding.done();
    }
}

impl Queue for Inner {
    fn cancelling(&self) -> bool {
        Inner::cancelling(self)
    }
    fn caps_hosts(&self) -> bool {
        Inner::caps_hosts(self)
    }
    fn admit(&self, host: &Arc<str>, job: Dispatch) -> Admit<Dispatch> {
        match &self.hosts {
            Some(hosts) => hosts.admit(host, job),
            None => Admit::Go(job),
        }
    }
    fn throttle(&self, at: Instant, job: Dispatch) {
        self.counters.throttled(true);
        self.later(at, move |inner| {
            inner.counters.throttled(false);
            inner.execute(job);
        });
    }
    fn release_host(&self, host: &Arc<str>) {
        let next = self.hosts.as_ref().map(|c| c.release(host));
        next.into_iter().flatten().for_each(|job| self.execute(job));
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

    pub(crate) fn flights(&self) -> &crate::flight::Flights {
        &self.flights
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
        let hooks: Arc<dyn TaskHooks> = self.clone();
        let host = if self.hosts.is_some() {
            spec.host
        } else {
            None
        };
        let task = Task::new(job, spec.limits, hooks, spec.label, host, spec.detached);
        self.counters.queued();
        self.outstanding.add();
        self.execute(Dispatch::new(
            Arc::clone(self) as Arc<dyn Queue>,
            task.clone(),
        ));
        Pending::new(task.clone(), task)
    }

    /// Counts `pending` as a fire-and-forget job: its failure goes to the
    /// error hook and the log, and `flush` waits for it.
    /// `label` names the job in the log, written only if it fails.
    pub(crate) fn track_fired(
        self: &Arc<Self>,
        label: impl FnOnce() -> String + Send + 'static,
        pending: Pending<()>,
    ) {
        self.counters.fired();
        self.fired.add();
        let inner = Arc::clone(self);
        pending.on_complete(Box::new(move |r| {
            if let Err(e) = r {
                let label = label();
                inner.counters.fired_failed();
                log::warn!("reqpool: fire-and-forget job {label} failed: {e}");
                inner.report(&label, &e);
            }
            inner.fired.done();
        }));
    }

    /// Hands `err` (of the job `label`) to the `on_error` hook, if there is
    /// one. A hook that panics is caught and logged: it must not keep the
    /// job from being counted done, or `flush` would wait for ever.
    pub(crate) fn report(&self, label: &str, err: &Error) {
        if let Some(hook) = &self.on_error {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(err)));
            if let Err(p) = run {
                log::error!(
                    "reqpool: the on_error hook panicked on {label}: {}",
                    crate::error::panic_message(&*p)
                );
            }
        }
    }

    /// Runs `f` at `when` on the pool's timer thread.
    pub(crate) fn schedule(&self, when: Instant, f: Due) {
        self.timer
            .get_or_init(|| Timer::start(&self.thread_name))
            .at(when, f);
    }

    /// Hands a job to the workers (starting more, if none is free).
    pub(crate) fn execute(&self, job: Dispatch) {
        // The workers' receiver lives as long as `self`: this cannot fail.
        let _ = self.queue.send(job);
        self.crew.needed();
    }

    /// Runs `f` with the pool at `at`, on the timer thread.
    fn later(&self, at: Instant, f: impl FnOnce(&Arc<Inner>) + Send + 'static) {
        let Some(inner) = self.me.upgrade() else {
            return;
        };
        let again = Arc::clone(&inner);
        inner.schedule(at, Box::new(move || f(&again)));
    }

    pub(crate) fn id(&self) -> usize {
        self.id
    }

    pub(crate) fn fired(&self) -> &Gate {
        &self.fired
    }

    pub(crate) fn outstanding(&self) -> &Gate {
        &self.outstanding
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut stats = self.counters.snapshot();
        (stats.threads, stats.threads_peak) = self.crew.threads();
        stats.host_limits = self.hosts.as_ref().map(Hosts::limits).unwrap_or_default();
        stats
    }

    /// Refuses new jobs from now on; with `cancel`, also cuts off every
    /// request in flight and resolves every job that waits (queued, parked
    /// behind a host cap, or between two steps) as cancelled, at once,
    /// even while every worker is busy.
    pub(crate) fn close(&self, cancel: bool) {
        self.closed.store(true, Ordering::Release);
        if !cancel {
            return;
        }
        self.cancel_queued.store(true, Ordering::Release);
        // Cut off the requests in flight first: by the time a queued or
        // parked job is seen cancelled, no request of the pool can still
        // get its answer through.
        self.interrupt();
        while let Ok(job) = self.queue_rx.try_recv() {
            job.cancel();
        }
        if let Some(hosts) = &self.hosts {
            for job in hosts.take_parked() {
                job.cancel();
            }
        }
        if let Some(timer) = self.timer.get() {
            timer.run_all();
        }
    }

    /// Interrupts requests blocked on the network: their connections are
    /// shut down.
    pub(crate) fn interrupt(&self) {
        self.interrupted.store(true, Ordering::Release);
        self.sockets.shut_all();
        for agent in self.agents.made() {
            agent.clone().shutdown();
        }
    }

    pub(crate) fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// Blocks until nothing is outstanding or the drain timeout passes.
    pub(crate) fn drain(&self) -> usize {
        self.outstanding
            .wait_zero(Deadline::after(self.drain_timeout))
    }
}

/// A worker's stack unless the builder says otherwise (see
/// [`Builder::stack_size`](crate::Builder::stack_size)).
const DEFAULT_STACK: usize = 512 * 1024;

impl Pool {
    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if the OS refuses a thread (too many, or a stack
    /// too large); the threads already started then end.
    pub(crate) fn start(
        s: Settings,
        agents: Agents,
        sockets: Arc<Sockets>,
        defaults: RequestDefaults,
    ) -> Result<Pool, Error> {
        let id = NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed);
        let (queue, queue_rx) = crossbeam_channel::unbounded::<Dispatch>();
        let stack = s.stack_size.unwrap_or(DEFAULT_STACK);
        let crew = Crew::start(
            id,
            s.workers,
            &s.thread_name,
            stack,
            s.thread_keep_alive,
            queue_rx.clone(),
        )
        .map_err(|why| {
            Error::usage(format!(
                "could not start {} worker threads: {why}",
                s.workers
            ))
        })?;
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            id,
            crew,
            thread_name: s.thread_name,
            workers: s.workers,
            queue,
            queue_rx,
            agents,
            sockets,
            defaults,
            drain_timeout: s.drain_timeout,
            on_error: s.on_error,
            counters: Counters::new(s.workers),
            outstanding: Gate::new(),
            fired: Gate::new(),
            closed: AtomicBool::new(false),
            cancel_queued: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
            hosts: s.hosts.any().then(|| Hosts::new(s.hosts)),
            latencies: Latencies::default(),
            flights: crate::flight::Flights::default(),
            timer: OnceLock::new(),
            slots: s.max_queued.map(bounded),
        });
        Ok(Pool {
            handle: Arc::new(Handle { inner }),
        })
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    /// A snapshot of the pool's counters and latencies; cheap enough to call
    /// every second from a progress loop.
    pub fn stats(&self) -> Stats {
        self.inner().stats()
    }

    /// The shared agent, for requests made outside the pool. Requests made
    /// through it on a thread that is not running a job of the pool have no
    /// total limit (only the pool's connect and response limits). A pool of
    /// more than 512 workers has one agent of the same configuration per
    /// 512, each with its own connections (so that no lock is shared by
    /// thousands of threads); this is the first.
    pub fn agent(&self) -> &ureq::Agent {
        self.inner().agents.get(0)
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.inner().workers
    }

    pub(crate) fn on_own_worker(&self) -> bool {
        on_worker_of(self.inner().id)
    }
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
                inner.drain_timeout()
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
