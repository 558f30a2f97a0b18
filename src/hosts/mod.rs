//! Per-host policies, applied when a job is about to start: a circuit
//! breaker (fail at once while a host is down), a token-bucket rate limit
//! that slows down on 429/503 and pauses the host on `Retry-After`, and a
//! cap on requests in flight. A job that must wait waits off the workers:
//! parked behind the cap, or in the timer until its token is due.

mod bucket;
mod concurrency;

use crate::deadline::Deadline;
use crate::sync::lock;
use bucket::Bucket;
pub use concurrency::AdaptiveConcurrency;
use concurrency::Limiter;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When a host's circuit opens and for how long.
///
/// After [`failures`](Breaker::failures) consecutive failures of requests
/// to one host (transport errors, timeouts of a phase, statuses of 500 and
/// up — 503 included, the answer of a host that is down behind a load
/// balancer — and 429 if [`count_429`](Breaker::count_429) says so), the
/// circuit of that host opens: for the
/// [`cool_down`](Breaker::cool_down), every request to it fails at once
/// with an error for which [`Error::is_circuit_open`](crate::Error::is_circuit_open)
/// is true, without connecting. Then one probe goes through (half-open):
/// its success closes the circuit, its failure (or a 429) opens it again.
/// A 429 never counts as a success: it neither resets the count nor closes
/// the circuit. Other hosts are not affected, retries never retry into an
/// open circuit, and each hop of a redirect counts against its own host.
///
/// ```
/// use std::time::Duration;
/// let pool = reqpool::Pool::builder()
///     .circuit_breaker(reqpool::Breaker::new().failures(5).cool_down(Duration::from_secs(10)))
///     .build()?;
/// # Ok::<(), reqpool::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    failures: u32,
    cool_down: Duration,
    count_429: bool,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new()
    }
}

impl Breaker {
    /// Opens after 5 consecutive failures, for 10 seconds.
    pub fn new() -> Breaker {
        Breaker {
            failures: 5,
            cool_down: Duration::from_secs(10),
            count_429: false,
        }
    }

    /// Consecutive failures that open the circuit (at least 1). Defaults
    /// to 5.
    pub fn failures(mut self, n: u32) -> Self {
        self.failures = n.max(1);
        self
    }

    /// How long the circuit stays open before one probe may go through.
    /// `Duration::MAX` keeps it open for as long as the pool lives.
    /// Defaults to 10 seconds.
    pub fn cool_down(mut self, d: Duration) -> Self {
        self.cool_down = d;
        self
    }

    /// Counts a 429 (too many requests) as a failure of the host, like a
    /// 503. Off by default: a 429 says the host is up but wants less, which
    /// the rate limit handles; either way a 429 never counts as a success.
    pub fn count_429(mut self, yes: bool) -> Self {
        self.count_429 = yes;
        self
    }

    /// True if an answer with `status` counts as a failure of its host.
    fn counts(&self, status: u16) -> bool {
        status != 429 || self.count_429
    }
}

/// A rate limit: `requests` per `per`, with at most `burst` saved while
/// the host is idle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    pub(crate) requests: u32,
    pub(crate) per: Duration,
    pub(crate) burst: u32,
}

/// The per-host policies of a pool.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Policies {
    pub(crate) cap: Option<usize>,
    pub(crate) rate: Option<Rate>,
    pub(crate) adaptive: bool,
    pub(crate) breaker: Option<Breaker>,
    pub(crate) concurrency: Option<AdaptiveConcurrency>,
}

impl Policies {
    pub(crate) fn any(&self) -> bool {
        self.cap.is_some()
            || self.rate.is_some()
            || self.adaptive
            || self.breaker.is_some()
            || self.concurrency.is_some()
    }
}

/// What a finished attempt tells about its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// The host answered (an error status below 500 included).
    Answered,
    /// 429 or 503: too much; with the `Retry-After` it asked for (capped
    /// by the caller at what its job could have waited).
    Throttled {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// A transport error, a timeout of a phase, a status of 500 and up.
    Failed,
}

/// What admission says about a job that is about to start.
pub(crate) enum Admit<J> {
    /// Start it now (it holds a slot if the host is capped).
    Go(J),
    /// It waits behind the cap; `release` hands it back later.
    Parked,
    /// Come back at this instant (its token is then reserved).
    Later(J, Instant),
    /// The host's circuit is open: fail it, it may try again after this.
    Refuse(J, Duration),
    /// Its token (or the end of a host pause) would come after the job's
    /// limit: fail it now, unsent. It took no token.
    TooLate(J),
}

/// A job's standing with admission, kept on the job between tries.
pub(crate) trait Admitted {
    fn has_token(&self) -> bool;
    fn set_token(&mut self);
    fn holds_slot(&self) -> bool;
    fn set_slot(&mut self);
    /// The job has run before (a retry): the breaker is the step's to
    /// check, so the step can say why it gave up.
    fn started(&self) -> bool;
    /// Starts the job's clock if it has not started (a wait for a token
    /// counts against its limit) and returns its limit (None: none).
    fn start_clock(&self) -> Option<Instant>;
}

/// Everything known about one host.
struct Host<J> {
    in_flight: usize,
    parked: VecDeque<J>,
    bucket: Option<Bucket>,
    circuit: Circuit,
    consecutive: u32,
    /// Attempts that ended in the current second (for a first adaptive
    /// rate): the second's start and the count.
    recent: (Instant, u32),
    /// The adaptive limit on requests in flight, if on.
    limiter: Option<Limiter>,
}

impl<J> Host<J> {
    fn new(p: &Policies, now: Instant) -> Host<J> {
        Host {
            in_flight: 0,
            parked: VecDeque::new(),
            bucket: p.rate.map(|r| Bucket::new(r, p.adaptive, now)),
            circuit: Circuit::Closed,
            consecutive: 0,
            recent: (now, 0),
            limiter: p.concurrency.map(|c| Limiter::new(c, now)),
        }
    }

    /// The most requests in flight now: the set cap, the adaptive limit,
    /// the lower of both.
    fn cap(&self, p: &Policies) -> Option<usize> {
        let adaptive = self.limiter.as_ref().map(Limiter::limit);
        match (p.cap, adaptive) {
            (Some(c), Some(a)) => Some(c.min(a)),
            (c, a) => c.or(a),
        }
    }

    /// True if nothing about this host needs remembering.
    fn idle(&self) -> bool {
        self.in_flight == 0
            && self.parked.is_empty()
            && self.bucket.is_none()
            && self.circuit == Circuit::Closed
            && self.consecutive == 0
            // What the adaptive limit learnt is kept.
            && self.limiter.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    Closed,
    Open {
        /// Never, for a cool-down of `Duration::MAX`.
        until: Deadline,
    },
    /// One probe is out; the rest fail fast until it is back.
    Probing,
}

/// The per-host state of a pool, behind one lock.
pub(crate) struct Hosts<J> {
    policies: Policies,
    map: Mutex<HashMap<Arc<str>, Host<J>>>,
}

impl<J: Admitted> Hosts<J> {
    pub(crate) fn new(policies: Policies) -> Hosts<J> {
        Hosts {
            policies: Policies {
                cap: policies.cap.map(|c| c.max(1)),
                ..policies
            },
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Decides whether `job` for `host` starts now: the breaker first
    /// (a job that has not started yet fails fast while the circuit is
    /// open), then the rate (a token, or the time it is due), then the
    /// cap.
    pub(crate) fn admit(&self, host: &Arc<str>, mut job: J) -> Admit<J> {
        let now = Instant::now();
        let p = &self.policies;
        let mut map = lock(&self.map);
        let h = map
            .entry(Arc::clone(host))
            .or_insert_with(|| Host::new(p, now));
        if let Some(b) = &p.breaker
            && !job.started()
            && !job.holds_slot()
        {
            match h.circuit {
                Circuit::Open { until } if !until.passed() => {
                    return Admit::Refuse(job, until.left());
                }
                Circuit::Open { .. } => h.circuit = Circuit::Probing,
                Circuit::Probing => {
                    return Admit::Refuse(job, b.cool_down.min(Duration::from_secs(1)));
                }
                Circuit::Closed => {}
            }
        }
        if !job.has_token()
            && let Some(bucket) = &mut h.bucket
        {
            if let Some(due) = bucket.reserve(now) {
                if job.start_clock().is_some_and(|limit| due > limit) {
                    bucket.refund();
                    return Admit::TooLate(job);
                }
                job.set_token();
                return Admit::Later(job, due);
            }
            job.set_token();
        }
        if let Some(cap) = h.cap(p)
            && !job.holds_slot()
        {
            let parked = h.in_flight >= cap;
            if !parked {
                h.in_flight += 1;
            }
            if let Some(l) = &mut h.limiter {
                l.note_in_flight(h.in_flight + usize::from(parked) + h.parked.len());
            }
            if parked {
                h.parked.push_back(job);
                return Admit::Parked;
            }
            job.set_slot();
        }
        Admit::Go(job)
    }

    /// How long the circuit of `host` stays open, if it is open.
    pub(crate) fn open_for(&self, host: &str) -> Option<Duration> {
        let map = lock(&self.map);
        match map.get(host)?.circuit {
            Circuit::Open { until } if !until.passed() => Some(until.left()),
            _ => None,
        }
    }

    /// Learns from a finished attempt to `host`, sent at `sent`, that was
    /// `answered` (or got no answer).
    pub(crate) fn observe(&self, host: &str, o: Observed, sent: Instant, answered: bool) {
        let now = Instant::now();
        let p = &self.policies;
        let mut map = lock(&self.map);
        // A host seen only as a redirect's target has no entry yet: its
        // failures are its own.
        let h = match map.get_mut(host) {
            Some(h) => h,
            None if matches!(o, Observed::Answered) => return,
            None => map
                .entry(Arc::from(host))
                .or_insert_with(|| Host::new(p, now)),
        };
        // The requests that went through in the current second, for a
        // first adaptive rate.
        if now.saturating_duration_since(h.recent.0) >= Duration::from_secs(1) {
            h.recent = (now, 0);
        }
        if o == Observed::Answered {
            h.recent.1 += 1;
        }
        if let Some(b) = &p.breaker {
            let open = Circuit::Open {
                until: Deadline::from(now, b.cool_down),
            };
            // A 429 not counted as a failure still leaves the count as it
            // is, and a probe that got one has not shown the host healthy.
            let failed = match o {
                Observed::Answered => {
                    h.consecutive = 0;
                    h.circuit = Circuit::Closed;
                    false
                }
                Observed::Failed => true,
                Observed::Throttled { status, .. } => b.counts(status),
            };
            if failed {
                h.consecutive = h.consecutive.saturating_add(1);
            }
            let counted_out = failed && h.consecutive >= b.failures;
            if o != Observed::Answered && (h.circuit == Circuit::Probing || counted_out) {
                h.circuit = open;
            }
            #[cfg(feature = "metrics")]
            crate::metrics::breaker(
                host,
                matches!(h.circuit, Circuit::Open { .. }),
                h.circuit == Circuit::Probing,
            );
        }
        if p.adaptive && h.bucket.is_none() && matches!(o, Observed::Throttled { .. }) {
            h.bucket = Some(Bucket::adaptive_from(f64::from(h.recent.1), now));
        }
        if let Some(bucket) = &mut h.bucket {
            bucket.observe(o, now);
        }
        if let Some(l) = &mut h.limiter {
            l.observe(o, sent, answered, now);
        }
    }

    /// Each host's adaptive limit on requests in flight now.
    pub(crate) fn limits(&self) -> Vec<(String, usize)> {
        let map = lock(&self.map);
        let mut limits: Vec<_> = map
            .iter()
            .filter_map(|(k, h)| Some((k.to_string(), h.limiter.as_ref()?.limit())))
            .collect();
        limits.sort();
        limits
    }

    /// Removes every parked job (for `shutdown_now`).
    pub(crate) fn take_parked(&self) -> Vec<J> {
        let mut map = lock(&self.map);
        map.values_mut().flat_map(|h| h.parked.drain(..)).collect()
    }

    /// Frees a finished job's slot, and hands the slots free now (one,
    /// or more if the adaptive limit grew, none if it shrank) to parked
    /// jobs, which the caller then queues (they hold their slots).
    pub(crate) fn release(&self, host: &Arc<str>) -> Vec<J> {
        let mut map = lock(&self.map);
        let Some(h) = map.get_mut(host) else {
            return Vec::new();
        };
        h.in_flight = h.in_flight.saturating_sub(1);
        let cap = h.cap(&self.policies).unwrap_or(usize::MAX);
        let mut next = Vec::new();
        while h.in_flight < cap
            && let Some(mut job) = h.parked.pop_front()
        {
            job.set_slot();
            h.in_flight += 1;
            next.push(job);
        }
        // Requests in flight and waiting: was the limit reached?
        if let Some(l) = &mut h.limiter {
            l.note_in_flight(h.in_flight + h.parked.len());
        }
        if h.idle() {
            map.remove(host);
        }
        next
    }
}

/// What a running request reports to its host's policies, and asks them.
pub(crate) trait Feedback: Send + Sync {
    /// Learns from a finished attempt to `host`, sent at `sent`, that was
    /// `answered` (or got no answer).
    fn observe(&self, host: &str, o: Observed, sent: Instant, answered: bool);
    /// How long the circuit of `host` stays open, if it is open.
    fn open_for(&self, host: &str) -> Option<Duration>;
    /// Takes a token of `host`'s rate limit for a redirect hop: None if it
    /// may go now, else when its token is due.
    fn reserve(&self, host: &str) -> Option<Instant>;
    /// Gives back a token taken by `reserve` that will not be used.
    fn refund(&self, host: &str);
}

impl<J: Admitted + Send> Feedback for Hosts<J> {
    fn observe(&self, host: &str, o: Observed, sent: Instant, answered: bool) {
        Hosts::observe(self, host, o, sent, answered);
    }
    fn open_for(&self, host: &str) -> Option<Duration> {
        Hosts::open_for(self, host)
    }
    fn reserve(&self, host: &str) -> Option<Instant> {
        let now = Instant::now();
        let mut map = lock(&self.map);
        if self.policies.rate.is_none() && !map.contains_key(host) {
            return None; // no limit, and nothing learnt about it yet
        }
        let h = map
            .entry(Arc::from(host))
            .or_insert_with(|| Host::new(&self.policies, now));
        h.bucket.as_mut()?.reserve(now)
    }
    fn refund(&self, host: &str) {
        if let Some(b) = lock(&self.map)
            .get_mut(host)
            .and_then(|h| h.bucket.as_mut())
        {
            b.refund();
        }
    }
}

impl<J> fmt::Debug for Hosts<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hosts")
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct J {
        token: bool,
        slot: bool,
        started: bool,
    }

    impl Admitted for J {
        fn has_token(&self) -> bool {
            self.token
        }
        fn set_token(&mut self) {
            self.token = true;
        }
        fn holds_slot(&self) -> bool {
            self.slot
        }
        fn set_slot(&mut self) {
            self.slot = true;
        }
        fn started(&self) -> bool {
            self.started
        }
        fn start_clock(&self) -> Option<Instant> {
            None
        }
    }

    #[test]
    fn a_bucket_starts_at_its_rate_and_spaces_requests() {
        let hosts = Hosts::<J>::new(Policies {
            rate: Some(Rate {
                requests: 2,
                per: Duration::from_secs(1),
                burst: 1,
            }),
            ..Policies::default()
        });
        let h: Arc<str> = Arc::from("h:1");
        assert!(matches!(hosts.admit(&h, J::default()), Admit::Go(_)));
        let Admit::Later(j, due) = hosts.admit(&h, J::default()) else {
            panic!("a second request at once must wait for its token");
        };
        let wait = due - Instant::now();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Back at its time, it holds its token and goes.
        assert!(matches!(hosts.admit(&h, j), Admit::Go(_)));
    }

    #[test]
    fn the_circuit_opens_refuses_and_lets_one_probe_through() {
        let hosts = Hosts::<J>::new(Policies {
            breaker: Some(Breaker::new().failures(2).cool_down(Duration::ZERO)),
            ..Policies::default()
        });
        let h: Arc<str> = Arc::from("h:1");
        let _ = hosts.admit(&h, J::default());
        hosts.observe("h:1", Observed::Failed, Instant::now(), false);
        hosts.observe("h:1", Observed::Failed, Instant::now(), false);
        // Cool-down of zero: the next one is the probe, the one after it
        // fails fast until the probe is back.
        assert!(matches!(hosts.admit(&h, J::default()), Admit::Go(_)));
        assert!(matches!(hosts.admit(&h, J::default()), Admit::Refuse(..)));
        hosts.observe("h:1", Observed::Answered, Instant::now(), true);
        assert!(matches!(hosts.admit(&h, J::default()), Admit::Go(_)));
    }
}
