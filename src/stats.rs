//! Counters and latency histograms of a pool, and their snapshot, `Stats`.
//!
//! Every thread counts in a shard of its own (threads are spread over a
//! few shards, each on a cache line of its own), and keeps a few latencies
//! there before it adds them to the histograms under their lock, so the
//! workers do not contend for one counter or one lock on every job.
//! Reading the stats adds the shards up and flushes their latencies.

use crate::sync::lock;
use crate::task::Outcome;
use hdrhistogram::Histogram;
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Latencies a shard keeps before it adds them to the histograms.
const BATCH: usize = 32;

/// The most shards a pool has.
const MAX_SHARDS: usize = 16;

/// Numbers given to threads as they first count, to pick their shard.
static THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's number (`usize::MAX`: none yet).
    static THREAD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's number, given on first use.
fn thread_number() -> usize {
    THREAD.with(|t| {
        if t.get() == usize::MAX {
            t.set(THREADS.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

/// The live counters, updated with relaxed atomics in the calling
/// thread's shard, and the two latency histograms (microseconds, 2
/// significant digits) behind one lock taken once per `BATCH` jobs.
pub(crate) struct Counters {
    workers: usize,
    shards: Box<[Shard]>,
    times: Mutex<Times>,
}

/// One group of threads' counts. The gauges (`queued`, `running`, …) go
/// up in one shard and down in another: each shard's count wraps, and only
/// their sum means anything.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    submitted: AtomicU64,
    queued: AtomicU64,
    running: AtomicU64,
    scheduled: AtomicU64,
    throttled: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    fired: AtomicU64,
    fired_failed: AtomicU64,
    samples: Mutex<Samples>,
}

/// Latencies (µs) not yet in the histograms.
struct Samples {
    len: usize,
    queue: [u32; BATCH],
    run: [u32; BATCH],
}

impl Default for Samples {
    fn default() -> Samples {
        Samples {
            len: 0,
            queue: [0; BATCH],
            run: [0; BATCH],
        }
    }
}

impl Samples {
    /// Adds the samples kept to `t`, and forgets them.
    fn flush(&mut self, t: &mut Times) {
        let n = self.len.min(BATCH);
        for (&q, &r) in self.queue[..n].iter().zip(&self.run[..n]) {
            t.queue.saturating_record(u64::from(q));
            t.run.saturating_record(u64::from(r));
        }
        self.len = 0;
    }
}

struct Times {
    queue: Histogram<u64>,
    run: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour; values above are clamped by `saturating_record`.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

/// `d` in microseconds, at least 1 (the histograms' lowest value), at most
/// `u32::MAX` (71 minutes; the histograms clamp at one hour anyway).
fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX).max(1)
}

/// The sum of one counter over the shards; a gauge read while it moves
/// may add up below zero for a moment, which reads as 0.
fn total(shards: &[Shard], counter: fn(&Shard) -> &AtomicU64) -> u64 {
    let sum = shards.iter().fold(0u64, |sum, s| {
        sum.wrapping_add(counter(s).load(Ordering::Relaxed))
    });
    u64::try_from(sum as i64).unwrap_or(0)
}

fn up(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Wraps below zero: the sum over the shards does not.
fn down(a: &AtomicU64) {
    a.fetch_sub(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn new(workers: usize) -> Counters {
        let shards = workers
            .saturating_add(1)
            .min(MAX_SHARDS)
            .next_power_of_two();
        Counters {
            workers,
            shards: (0..shards).map(|_| Shard::default()).collect(),
            times: Mutex::new(Times {
                queue: histogram(),
                run: histogram(),
            }),
        }
    }

    /// The calling thread's shard.
    fn mine(&self) -> &Shard {
        // The length is a power of two.
        &self.shards[thread_number() & (self.shards.len() - 1)]
    }

    pub(crate) fn queued(&self) {
        #[cfg(feature = "metrics")]
        crate::metrics::moved(crate::metrics::Move::Queued);
        let s = self.mine();
        up(&s.submitted);
        up(&s.queued);
    }

    /// A job left the queue for its first step.
    pub(crate) fn started(&self) {
        #[cfg(feature = "metrics")]
        crate::metrics::moved(crate::metrics::Move::Started);
        let s = self.mine();
        down(&s.queued);
        up(&s.running);
    }

    /// A job went to wait between two steps.
    pub(crate) fn slept(&self) {
        #[cfg(feature = "metrics")]
        crate::metrics::moved(crate::metrics::Move::Slept);
        let s = self.mine();
        down(&s.running);
        up(&s.scheduled);
    }

    /// A job came back from waiting between two steps.
    pub(crate) fn resumed(&self) {
        #[cfg(feature = "metrics")]
        crate::metrics::moved(crate::metrics::Move::Resumed);
        let s = self.mine();
        down(&s.scheduled);
        up(&s.running);
    }

    /// A job ended without running (again): cancelled, or expired in the
    /// queue (a failure).
    pub(crate) fn skipped(&self, scheduled: bool, cancelled: bool) {
        #[cfg(feature = "metrics")]
        crate::metrics::moved(crate::metrics::Move::Skipped { scheduled });
        let s = self.mine();
        down(if scheduled { &s.scheduled } else { &s.queued });
        up(if cancelled { &s.cancelled } else { &s.failed });
    }

    /// A job ran to its end: queued at `queued_at`, its first step started
    /// at `started`. Its latencies wait in the thread's shard for a batch.
    pub(crate) fn finished(&self, queued_at: Instant, started: Instant, outcome: Outcome) {
        let s = self.mine();
        down(&s.running);
        let counter = match outcome {
            Outcome::Cancelled => {
                #[cfg(feature = "metrics")]
                crate::metrics::job_ended(Duration::ZERO, Duration::ZERO, "cancelled");
                return; // counted when it was cancelled
            }
            Outcome::Succeeded => &s.succeeded,
            Outcome::Failed => &s.failed,
            Outcome::Panicked => {
                up(&s.panicked);
                &s.failed
            }
        };
        up(counter);
        let (queue, run) = (
            started.saturating_duration_since(queued_at),
            started.elapsed(),
        );
        #[cfg(feature = "metrics")]
        crate::metrics::job_ended(
            queue,
            run,
            match outcome {
                Outcome::Succeeded => "ok",
                Outcome::Panicked => "panicked",
                _ => "error",
            },
        );
        let mut samples = lock(&s.samples);
        let i = samples.len.min(BATCH - 1);
        samples.queue[i] = micros(queue);
        samples.run[i] = micros(run);
        samples.len = i + 1;
        if samples.len == BATCH {
            samples.flush(&mut lock(&self.times));
        }
    }

    /// A running job was cancelled (its end is counted when its step ends).
    pub(crate) fn cancelled_running(&self) {
        up(&self.mine().cancelled);
    }

    /// A job began (true) or ended (false) waiting for a token of its
    /// host's rate limit.
    pub(crate) fn throttled(&self, waiting: bool) {
        #[cfg(feature = "metrics")]
        crate::metrics::throttled(waiting);
        let s = self.mine();
        if waiting {
            up(&s.throttled);
        } else {
            down(&s.throttled);
        }
    }

    pub(crate) fn fired(&self) {
        up(&self.mine().fired);
    }

    pub(crate) fn fired_failed(&self) {
        up(&self.mine().fired_failed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let (queue_time, run_time) = {
            for s in self.shards.iter() {
                let mut samples = lock(&s.samples);
                samples.flush(&mut lock(&self.times));
            }
            let t = lock(&self.times);
            (Latency::of(&t.queue), Latency::of(&t.run))
        };
        let g = |c: fn(&Shard) -> &AtomicU64| total(&self.shards, c);
        Stats {
            workers: self.workers,
            // Filled in by the pool, which knows its threads.
            threads: 0,
            threads_peak: 0,
            submitted: g(|s| &s.submitted),
            queued: g(|s| &s.queued),
            running: g(|s| &s.running),
            scheduled: g(|s| &s.scheduled),
            throttled: g(|s| &s.throttled),
            succeeded: g(|s| &s.succeeded),
            failed: g(|s| &s.failed),
            panicked: g(|s| &s.panicked),
            cancelled: g(|s| &s.cancelled),
            fired: g(|s| &s.fired),
            fired_failed: g(|s| &s.fired_failed),
            host_limits: Vec::new(),
            queue_time,
            run_time,
        }
    }
}

/// A snapshot of a pool's counters and latencies, from
/// [`Pool::stats`](crate::Pool::stats).
///
/// The counters are read one by one without a lock, so a snapshot taken
/// while jobs run may be off by the jobs that moved during the read. Jobs
/// that ran add up: `succeeded + failed` of them finished, and every job
/// submitted is in exactly one of `queued`, `running`, `scheduled`,
/// `succeeded`, `failed` or `cancelled` (a submit to a closed pool
/// is refused at once and never counted).
///
/// ```
/// let pool = reqpool::Pool::new(2);
/// let jobs: Vec<_> = (0..10).map(|i| pool.submit(move |_| Ok(i))).collect();
/// reqpool::wait_all(jobs);
/// let s = pool.stats();
/// assert_eq!((s.submitted, s.succeeded), (10, 10));
/// println!("queued p99 {:?}, running p99 {:?}", s.queue_time.p99, s.run_time.p99);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Worker threads at most (the pool's size).
    pub workers: usize,
    /// Worker threads alive now: the first 32 (or all, if fewer) and those
    /// started for jobs that waited, until they have been idle for
    /// [`thread_keep_alive`](crate::Builder::thread_keep_alive).
    pub threads: usize,
    /// The most worker threads alive at once.
    pub threads_peak: usize,
    /// Jobs ever queued (requests, closures, fired jobs).
    pub submitted: u64,
    /// Jobs waiting for a worker now.
    pub queued: u64,
    /// Jobs running now.
    pub running: u64,
    /// Jobs waiting between two steps now, off the workers: a retry's
    /// backoff or `Retry-After`, a poll interval.
    pub scheduled: u64,
    /// Jobs waiting for a token of their host's rate limit now, off the
    /// workers (also counted in `queued`, or in `scheduled` for a retry).
    pub throttled: u64,
    /// Jobs that finished with `Ok`.
    pub succeeded: u64,
    /// Jobs that finished with an error (panics included).
    pub failed: u64,
    /// Jobs that panicked (also counted in `failed`).
    pub panicked: u64,
    /// Jobs cancelled before they started (or between two steps).
    pub cancelled: u64,
    /// Fire-and-forget jobs ever fired (also counted above).
    pub fired: u64,
    /// Fire-and-forget jobs that failed.
    pub fired_failed: u64,
    /// Each host's limit on requests in flight now, with
    /// [`adaptive_concurrency`](crate::Builder::adaptive_concurrency)
    /// (`scheme://host:port`, sorted); empty without.
    pub host_limits: Vec<(String, usize)>,
    /// How long jobs waited in the queue for a worker.
    pub queue_time: Latency,
    /// How long jobs took from their first start to their end: for
    /// requests, every attempt and the waits between them.
    pub run_time: Latency,
}

/// Latency percentiles over every job the pool has run, at 1% precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Latency {
    /// How many jobs were measured.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let at = |q: f64| Duration::from_micros(h.value_at_quantile(q));
        Latency {
            count: h.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: Duration::from_micros(h.max()),
        }
    }
}
