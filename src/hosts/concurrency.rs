//! A host's adaptive limit on requests in flight: additive increase,
//! multiplicative decrease, one decision per window of one round trip
//! (after Vector's adaptive request concurrency and Netflix's
//! concurrency-limits).

use super::Observed;
use std::time::{Duration, Instant};

/// How [`Builder::adaptive_concurrency`](crate::Builder::adaptive_concurrency)
/// finds each host's limit on requests in flight.
///
/// Per host, time is cut in windows of one round trip (the mean time of
/// an attempt so far). At the end of a window the limit
///
/// - drops to nine tenths (at least by one, never below 1) if the host
///   pushed back in it — a 429, a 503, a timeout or a refused connection —
///   or its attempts took well longer than the host's baseline (more than
///   the baseline's mean plus 2.5 deviations, and at least a tenth more):
///   once per window, however many answers said so;
/// - grows by one if the limit was reached in the window and the attempts
///   took no longer than the baseline;
/// - stays as it is otherwise.
///
/// The time counted is that of each attempt (connect, send, answer), not
/// of the queue or of a backoff; attempts that got no answer count as
/// push-back, not as time. [`Stats::host_limits`](crate::Stats::host_limits)
/// shows each host's limit now.
///
/// ```
/// use reqpool::AdaptiveConcurrency;
/// let pool = reqpool::Pool::builder()
///     .workers(64)
///     .adaptive_concurrency(AdaptiveConcurrency::new().initial(4).ceiling(50))
///     .build()?;
/// # Ok::<(), reqpool::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConcurrency {
    initial: usize,
    ceiling: usize,
}

impl Default for AdaptiveConcurrency {
    fn default() -> Self {
        AdaptiveConcurrency::new()
    }
}

impl AdaptiveConcurrency {
    /// Starts each host at 1 request in flight, and never lets it above
    /// 200 (Vector's defaults).
    pub fn new() -> AdaptiveConcurrency {
        AdaptiveConcurrency {
            initial: 1,
            ceiling: 200,
        }
    }

    /// The limit a host starts with (at least 1). Defaults to 1.
    pub fn initial(mut self, n: usize) -> Self {
        self.initial = n.max(1);
        self
    }

    /// The most a host's limit reaches (at least 1). Defaults to 200; the
    /// pool's workers bound what is in flight anyway.
    pub fn ceiling(mut self, n: usize) -> Self {
        self.ceiling = n.max(1);
        self
    }
}

/// How much a window's mean must exceed the baseline's to count as
/// "well above": this many deviations...
const DEVIATIONS: f64 = 2.5;
/// ...and at least this share of the baseline (a steady host has almost
/// no deviation).
const TOLERANCE: f64 = 0.1;
/// How much a window at the baseline moves it...
const ALPHA: f64 = 0.1;
/// ...and a window above it (so a host whose latency rose for good is
/// learnt, slowly, while a limit too high does not make its own latency
/// the new normal).
const ALPHA_ABOVE: f64 = 0.01;
/// A window at most this share above the baseline's mean is "at the
/// baseline".
const AT: f64 = 0.03;
/// A window lasts this share of the baseline's round trip: answers of
/// requests sent together land in one window, not astride two.
const WINDOW: f64 = 0.8;
/// The shortest window.
const MIN_WINDOW: Duration = Duration::from_millis(1);

/// One host's limit and what its current window saw.
#[derive(Debug)]
pub(super) struct Limiter {
    limit: usize,
    ceiling: usize,
    window_start: Instant,
    /// The limit was reached in this window.
    reached: bool,
    /// The host pushed back in this window.
    pressure: bool,
    /// Seconds of the attempts answered in this window, and how many.
    sum: f64,
    n: u32,
    /// The baseline: moving mean and variance of window means (seconds).
    baseline: Option<(f64, f64)>,
    /// When the limit was last cut: push-back from an attempt sent before
    /// it is part of the signal that cut it.
    last_cut: Option<Instant>,
}

impl Limiter {
    pub(super) fn new(cfg: AdaptiveConcurrency, now: Instant) -> Limiter {
        Limiter {
            limit: cfg.initial.min(cfg.ceiling),
            ceiling: cfg.ceiling,
            window_start: now,
            reached: false,
            pressure: false,
            sum: 0.0,
            n: 0,
            baseline: None,
            last_cut: None,
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// The host has `in_flight` requests with this one admitted (or one
    /// was parked): notes whether the limit was reached.
    pub(super) fn note_in_flight(&mut self, in_flight: usize) {
        if in_flight >= self.limit {
            self.reached = true;
        }
    }

    /// Learns from a finished attempt sent at `sent`, `answered` or not.
    pub(super) fn observe(&mut self, o: Observed, sent: Instant, answered: bool, now: Instant) {
        // A window that has lasted its round trip is decided on what it
        // saw; this attempt counts in the next one.
        self.end_window(now);
        let pushed_back =
            matches!(o, Observed::Throttled { .. }) || (o == Observed::Failed && !answered);
        if pushed_back {
            // An attempt in flight when the limit was cut is part of the
            // signal that cut it: a burst of 429s is one cut.
            if self.last_cut.is_none_or(|cut| sent > cut) {
                self.pressure = true;
            }
        } else if answered {
            self.sum += now.saturating_duration_since(sent).as_secs_f64();
            self.n += 1;
        }
    }

    /// Ends the window if it has lasted one round trip: one decision.
    fn end_window(&mut self, now: Instant) {
        let current = (self.n > 0).then(|| self.sum / f64::from(self.n));
        let rtt = self.baseline.map(|b| b.0).or(current).unwrap_or(0.0);
        let len = Duration::from_secs_f64((WINDOW * rtt).clamp(0.0, 60.0)).max(MIN_WINDOW);
        if now.saturating_duration_since(self.window_start) < len {
            return;
        }
        let well_above = match (current, self.baseline) {
            (Some(c), Some((mean, var))) => {
                c > mean + (DEVIATIONS * var.sqrt()).max(TOLERANCE * mean)
            }
            _ => false,
        };
        let at_baseline = match (current, self.baseline) {
            (Some(c), Some((mean, _))) => c <= mean * (1.0 + AT),
            (Some(_), None) => true,
            _ => false,
        };
        let at_baseline = at_baseline && !well_above;
        if self.pressure || well_above {
            let cut = (self.limit as f64 * 0.9) as usize;
            self.limit = cut.min(self.limit.saturating_sub(1)).max(1);
            self.last_cut = Some(now);
        } else if self.reached && at_baseline {
            self.limit = (self.limit + 1).min(self.ceiling);
        }
        // The baseline learns from windows at it, and from any window at
        // the floor, where the latency is the host's own; from a window
        // above it, only a little (else the limit creeps up with the
        // latency it causes).
        if let Some(c) = current {
            self.baseline = Some(match self.baseline {
                None => (c, 0.0),
                Some((mean, var)) if at_baseline || self.limit == 1 => {
                    let d = c - mean;
                    (mean + ALPHA * d, (1.0 - ALPHA) * (var + ALPHA * d * d))
                }
                // Its deviation is not the host's noise: the mean only.
                Some((mean, var)) => (mean + ALPHA_ABOVE * (c - mean), var),
            });
        }
        self.window_start = now;
        self.reached = false;
        self.pressure = false;
        self.sum = 0.0;
        self.n = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn answered(l: &mut Limiter, ms: u32, now: Instant) {
        l.observe(Observed::Answered, now - MS * ms, true, now);
    }

    #[test]
    fn it_climbs_by_one_per_window_at_the_baseline_and_cuts_once_per_burst() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut l = Limiter::new(AdaptiveConcurrency::new(), t0);
        for w in 1..=10u32 {
            l.note_in_flight(l.limit());
            answered(&mut l, 100, t0 + MS * (100 * w));
        }
        assert_eq!(l.limit(), 10, "one a window");
        // 50 429s of requests sent together, over two windows: one cut.
        let throttled = Observed::Throttled {
            status: 429,
            retry_after: None,
        };
        let sent = t0 + MS * 1050;
        let before = l.limit();
        for i in 0..50 {
            l.observe(throttled, sent, true, t0 + MS * (1100 + 4 * i));
        }
        answered(&mut l, 100, t0 + MS * 1400);
        assert_eq!(l.limit(), before * 9 / 10, "{before} cut once");
        answered(&mut l, 100, t0 + MS * 1500);
        assert_eq!(l.limit(), before * 9 / 10, "not reached: no climb");
        // Well above the baseline: a cut.
        answered(&mut l, 300, t0 + MS * 1600);
        answered(&mut l, 100, t0 + MS * 1700);
        assert_eq!(l.limit(), before * 9 / 10 - 1);
        // Never below 1.
        for w in 0..50u32 {
            let now = t0 + MS * (1800 + 100 * w);
            l.observe(Observed::Failed, now - MS, false, now);
        }
        assert_eq!(l.limit(), 1);
    }

    #[test]
    fn failed_attempts_do_not_inflate_the_baseline() {
        // Five attempts that got no answer after 30 s each (timeouts):
        // push-back, not time; the baseline stays the server's 100 ms.
        let t0 = Instant::now() + Duration::from_secs(60);
        let mut l = Limiter::new(AdaptiveConcurrency::new(), t0);
        for w in 1..=5u32 {
            answered(&mut l, 100, t0 + MS * (100 * w));
        }
        for w in 6..=10u32 {
            let now = t0 + MS * (100 * w);
            l.observe(Observed::Failed, now - Duration::from_secs(30), false, now);
        }
        answered(&mut l, 100, t0 + MS * 1100);
        let (mean, _) = l.baseline.expect("a baseline");
        assert!(mean <= 0.3, "observed {mean} s, the server's 0.1 s");
        assert!((mean - 0.1).abs() < 0.01, "{mean}");
    }
}
