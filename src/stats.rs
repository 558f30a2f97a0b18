//! Counters and latency histograms of a pool, and their snapshot, `Stats`.

use crate::sync::lock;
use crate::task::Outcome;
use hdrhistogram::Histogram;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The live counters, updated by the workers with relaxed atomics, and the
/// two latency histograms (microseconds, 2 significant digits) behind one
/// short lock.
pub(crate) struct Counters {
    workers: usize,
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
    times: Mutex<Times>,
}

struct Times {
    queue: Histogram<u64>,
    run: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour; values above are clamped by `saturating_record`.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Counters {
    pub(crate) fn new(workers: usize) -> Counters {
        Counters {
            workers,
            submitted: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            running: AtomicU64::new(0),
            scheduled: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            fired: AtomicU64::new(0),
            fired_failed: AtomicU64::new(0),
            times: Mutex::new(Times {
                queue: histogram(),
                run: histogram(),
            }),
        }
    }

    pub(crate) fn queued(&self) {
        #[cfg(feature = "metrics")]
        crate::metrics::moved(crate::metrics::Move::Queued);
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// A job left the queue for its first step.
    pub(crate) fn started(&self) {
        #[cfg(feature = "metrics")]
        crate::metrics::moved(crate::metrics::Move::Started);
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.running.fetch_add(1, Ordering::Relaxed);
    }

    /// A job went to wait between two steps.
    pub(crate) fn slept(&self) {
        #[cfg(feature = "metrics")]
        crate::metrics::moved(crate::metrics::Move::Slept);
        self.running.fetch_sub(1, Ordering::Relaxed);
        self.scheduled.fetch_add(1, Ordering::Relaxed);
    }

    /// A job came back from waiting between two steps.
    pub(crate) fn resumed(&self) {
        #[cfg(feature = "metrics")]
        crate::metrics::moved(crate::metrics::Move::Resumed);
        self.scheduled.fetch_sub(1, Ordering::Relaxed);
        self.running.fetch_add(1, Ordering::Relaxed);
    }

    /// A job ended without running (again): cancelled, or expired in the
    /// queue (a failure).
    pub(crate) fn skipped(&self, scheduled: bool, cancelled: bool) {
        #[cfg(feature = "metrics")]
        crate::metrics::moved(crate::metrics::Move::Skipped { scheduled });
        if scheduled {
            self.scheduled.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        if cancelled {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A job ran to its end: queued at `queued_at`, its first step started
    /// at `started`. One short lock for both histograms.
    pub(crate) fn finished(&self, queued_at: Instant, started: Instant, outcome: Outcome) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        let counter = match outcome {
            Outcome::Cancelled => {
                #[cfg(feature = "metrics")]
                crate::metrics::job_ended(Duration::ZERO, Duration::ZERO, "cancelled");
                return; // counted when it was cancelled
            }
            Outcome::Succeeded => &self.succeeded,
            Outcome::Failed => &self.failed,
            Outcome::Panicked => {
                self.panicked.fetch_add(1, Ordering::Relaxed);
                &self.failed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::metrics::job_ended(
            started.saturating_duration_since(queued_at),
            started.elapsed(),
            match outcome {
                Outcome::Succeeded => "ok",
                Outcome::Panicked => "panicked",
                _ => "error",
            },
        );
        let mut t = lock(&self.times);
        t.queue
            .saturating_record(micros(started.saturating_duration_since(queued_at)));
        t.run.saturating_record(micros(started.elapsed()));
    }

    /// A running job was cancelled (its end is counted when its step ends).
    pub(crate) fn cancelled_running(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// A job began (true) or ended (false) waiting for a token of its
    /// host's rate limit.
    pub(crate) fn throttled(&self, waiting: bool) {
        #[cfg(feature = "metrics")]
        crate::metrics::throttled(waiting);
        if waiting {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        } else {
            self.throttled.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn fired(&self) {
        self.fired.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fired_failed(&self) {
        self.fired_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (queue_time, run_time) = {
            let t = lock(&self.times);
            (Latency::of(&t.queue), Latency::of(&t.run))
        };
        Stats {
            workers: self.workers,
            // Filled in by the pool, which knows its threads.
            threads: 0,
            threads_peak: 0,
            submitted: g(&self.submitted),
            queued: g(&self.queued),
            running: g(&self.running),
            scheduled: g(&self.scheduled),
            throttled: g(&self.throttled),
            succeeded: g(&self.succeeded),
            failed: g(&self.failed),
            panicked: g(&self.panicked),
            cancelled: g(&self.cancelled),
            fired: g(&self.fired),
            fired_failed: g(&self.fired_failed),
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
