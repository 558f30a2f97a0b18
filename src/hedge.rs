//! Hedged requests: if an idempotent request has not answered after a
//! delay, send a second copy on another worker and take the first answer.

use crate::error::Error;
use crate::pool::Inner;
use crate::task::{Slot, lock};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use hdrhistogram::Histogram;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When to send the second copy of a hedged request.
///
/// Hedging is off by default, and only ever used for idempotent requests
/// (GET, HEAD, PUT, DELETE, OPTIONS, or any request with an
/// `Idempotency-Key`): a POST is never sent twice by it. The second copy is
/// sent only if the first is running (not queued) when the delay is up; the
/// first answer that succeeds wins and the other is discarded. Both count
/// against the request's deadline.
///
/// ```
/// use std::time::Duration;
/// let pool = reqpool::Pool::builder()
///     .hedge(reqpool::Hedge::percentile(0.95))   // or Hedge::after(Duration::from_millis(200))
///     .build()?;
/// # Ok::<(), reqpool::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hedge {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    After(Duration),
    Percentile(f64),
}

/// Hosts need this many measured requests before a percentile is trusted.
const MIN_SAMPLES: u64 = 20;

impl Hedge {
    /// Send the second copy after a fixed delay.
    pub fn after(delay: Duration) -> Hedge {
        Hedge {
            kind: Kind::After(delay),
        }
    }

    /// Send the second copy after the `q` quantile (0.95 for p95) of the
    /// latencies the pool has measured for that host. Until 20 requests to
    /// the host have been measured, requests to it are not hedged.
    pub fn percentile(q: f64) -> Hedge {
        Hedge {
            kind: Kind::Percentile(q.clamp(0.0, 1.0)),
        }
    }

    pub(crate) fn measures(&self) -> bool {
        matches!(self.kind, Kind::Percentile(_))
    }

    fn delay(&self, latencies: &Latencies, host: &str) -> Option<Duration> {
        match self.kind {
            Kind::After(d) => Some(d),
            Kind::Percentile(q) => latencies.quantile(host, q),
        }
    }
}

/// Request latencies per host, for percentile hedging.
#[derive(Default)]
pub(crate) struct Latencies(Mutex<HashMap<Arc<str>, Histogram<u64>>>);

impl Latencies {
    pub(crate) fn record(&self, host: &Arc<str>, took: Duration) {
        let mut map = lock(&self.0);
        let h = map.entry(Arc::clone(host)).or_insert_with(|| {
            Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
        });
        h.saturating_record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1));
    }

    fn quantile(&self, host: &str, q: f64) -> Option<Duration> {
        let map = lock(&self.0);
        let h = map.get(host)?;
        (h.len() >= MIN_SAMPLES).then(|| Duration::from_micros(h.value_at_quantile(q)))
    }
}

type Timed = (Instant, Box<dyn FnOnce() + Send>);

/// One thread per pool (started on first use) that runs closures at a given
/// instant; it ends when the pool is gone.
pub(crate) struct Timer(Sender<Timed>);

impl Timer {
    pub(crate) fn start() -> Timer {
        let (tx, rx) = unbounded();
        let spawned = std::thread::Builder::new()
            .name("reqpool-timer".into())
            .spawn(move || timer_loop(rx));
        if let Err(e) = spawned {
            log::warn!("reqpool: no timer thread, hedging disabled: {e}");
        }
        Timer(tx)
    }

    pub(crate) fn at(&self, when: Instant, f: Box<dyn FnOnce() + Send>) {
        let _ = self.0.send((when, f));
    }
}

fn timer_loop(rx: Receiver<Timed>) {
    let mut seq = 0u64;
    let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut jobs: HashMap<u64, Box<dyn FnOnce() + Send>> = HashMap::new();
    loop {
        let next = heap.peek().map(|Reverse((t, _))| *t);
        let got = match next {
            Some(t) => rx.recv_deadline(t),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok((when, f)) => {
                seq += 1;
                heap.push(Reverse((when, seq)));
                jobs.insert(seq, f);
            }
            Err(RecvTimeoutError::Disconnected) if heap.is_empty() => return,
            Err(_) => {}
        }
        let now = Instant::now();
        while let Some(Reverse((t, id))) = heap.peek().copied() {
            if t > now {
                break;
            }
            heap.pop();
            if let Some(f) = jobs.remove(&id) {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            }
        }
    }
}

/// The two copies of a hedged request racing to one result.
pub(crate) struct Race<T> {
    slot: Arc<Slot<T>>,
    done: AtomicBool,
    running: AtomicUsize,
}

impl<T: Send + 'static> Race<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>) -> Arc<Race<T>> {
        Arc::new(Race {
            slot,
            done: AtomicBool::new(false),
            running: AtomicUsize::new(1),
        })
    }

    /// A copy finished: the first success wins; an error only counts when
    /// no other copy is still running.
    pub(crate) fn offer(&self, result: Result<T, Error>) {
        let last = self.running.fetch_sub(1, Ordering::AcqRel) == 1;
        if (result.is_ok() || last) && !self.done.swap(true, Ordering::AcqRel) {
            self.slot.deliver(result);
        }
    }

    /// Registers the second copy; false if the race is already decided.
    pub(crate) fn second(&self) -> bool {
        if self.done.load(Ordering::Acquire) {
            return false;
        }
        self.running.fetch_add(1, Ordering::AcqRel);
        true
    }
}

/// Schedules the second copy of a request `delay` after now, if `hedge`
/// gives a delay for `host`.
pub(crate) fn schedule(
    inner: &Arc<Inner>,
    hedge: Hedge,
    host: &str,
    start_second: Box<dyn FnOnce() + Send>,
) {
    if let Some(delay) = hedge.delay(&inner.latencies, host) {
        inner.timer().at(Instant::now() + delay, start_second);
    }
}
