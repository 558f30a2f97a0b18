//! Hedged requests: if an idempotent request has not answered after a
//! delay, send a second copy on another worker and take the first answer.

use crate::error::Error;
use crate::pending::Pending;
use crate::slot::Slot;
use crate::sync::lock;
use crate::task::{Job, State};
use crate::timer::Due;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When to send the second copy of a hedged request.
///
/// Hedging is off by default, and only ever used for idempotent requests
/// (GET, HEAD, PUT, DELETE, OPTIONS, or any request with an
/// `Idempotency-Key`): a POST is never sent twice by it, whatever the retry
/// policy says. It applies to requests ended by `json`, `send` and `fire`;
/// the steps of a poll job and closure jobs are not hedged. The second copy is
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

    pub(crate) fn delay(&self, latencies: &Latencies, host: &str) -> Option<Duration> {
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

/// The two copies of a hedged request racing to one result.
struct Race<T> {
    slot: Arc<Slot<T>>,
    done: AtomicBool,
    running: AtomicUsize,
    /// Both copies, so the winner's success cancels the loser in flight.
    copies: Mutex<Vec<Arc<dyn Job>>>,
}

impl<T: Send + 'static> Race<T> {
    fn new(slot: Arc<Slot<T>>) -> Arc<Race<T>> {
        Arc::new(Race {
            slot,
            done: AtomicBool::new(false),
            running: AtomicUsize::new(1),
            copies: Mutex::new(Vec::new()),
        })
    }

    /// A copy finished: the first success wins; an error only counts when
    /// no other copy is still running.
    fn offer(&self, result: Result<T, Error>) {
        let last = self.running.fetch_sub(1, Ordering::AcqRel) == 1;
        if (result.is_ok() || last) && !self.done.swap(true, Ordering::AcqRel) {
            self.slot.deliver(result);
            // The other copy's answer is not needed: stop it.
            for copy in lock(&self.copies).drain(..) {
                copy.cancel();
            }
        }
    }

    /// Registers the second copy; false if the race is already decided.
    fn second(&self) -> bool {
        if self.done.load(Ordering::Acquire) {
            return false;
        }
        self.running.fetch_add(1, Ordering::AcqRel);
        true
    }
}

/// Races `first` against a second copy started by `second` once `delay`
/// has passed with `first` still running (not queued, not between two
/// attempts); the first success wins, an error only when both failed.
/// `schedule` is the pool's timer.
pub(crate) fn race<T: Send + 'static>(
    first: Pending<T>,
    delay: Duration,
    schedule: impl FnOnce(Instant, Due),
    second: impl FnOnce() -> Pending<T> + Send + 'static,
) -> Pending<T> {
    let Some(at) = Instant::now().checked_add(delay) else {
        return first; // never: no second copy
    };
    let Some(ctl) = first.job() else {
        return first; // resolved already: nothing to race
    };
    let slot = Arc::new(Slot::new());
    let race = Race::new(Arc::clone(&slot));
    lock(&race.copies).push(Arc::clone(&ctl));
    let r = Arc::clone(&race);
    first.on_complete(Box::new(move |res| r.offer(res)));
    let first_ctl = Arc::clone(&ctl);
    schedule(
        at,
        Box::new(move || {
            if first_ctl.state() != State::Running || !race.second() {
                return;
            }
            let copy = second();
            lock(&race.copies).extend(copy.job());
            copy.on_complete(Box::new(move |res| race.offer(res)));
        }),
    );
    Pending::new(slot, ctl)
}
