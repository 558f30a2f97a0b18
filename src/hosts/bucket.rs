//! A host's token bucket: a rate that starts with one token, pauses on
//! `Retry-After`, halves on "too many" and climbs back.

use super::{Observed, Rate};
use std::time::{Duration, Instant};

/// A token bucket whose rate can drop and climb back.
pub(super) struct Bucket {
    tokens: f64,
    burst: f64,
    /// Requests per second now.
    rate: f64,
    /// Never above this (infinite for adaptive-only).
    max_rate: f64,
    /// Never below this.
    min_rate: f64,
    adaptive: bool,
    last: Instant,
    /// No request before this (a `Retry-After`, or the first 429 of a host
    /// with no set limit).
    paused_until: Option<Instant>,
    /// When the rate was last halved: the 429s of requests that were in
    /// flight together are one signal, not several.
    last_cut: Option<Instant>,
    /// For a host with no set limit: how much the rate climbs per second
    /// without a 429 (additive increase, by the clock, not per success, so
    /// a fast host is not probed back up in a burst).
    climb: f64,
    /// When the rate last climbed.
    climbed: Instant,
}

impl Bucket {
    pub(super) fn new(r: Rate, adaptive: bool, now: Instant) -> Bucket {
        let per = r.per.as_secs_f64().max(1e-9);
        let rate = f64::from(r.requests.max(1)) / per;
        Bucket {
            // It starts with one token, not a full burst: the first second
            // sends at the rate, as a server that counts per second wants.
            tokens: 1.0,
            burst: f64::from(r.burst.max(1)),
            rate,
            max_rate: rate,
            min_rate: (rate / 64.0).max(0.1),
            adaptive,
            last: now,
            paused_until: None,
            last_cut: None,
            climb: 0.0,
            climbed: now,
        }
    }

    /// A bucket for a host with no set limit that said "too many" for the
    /// first time, after `ok` requests went through in the last second: it
    /// starts a little below that (what the host accepts), after a pause of
    /// a second in which the host's own window empties, and climbs by a
    /// twentieth of its start each second without a 429.
    pub(super) fn adaptive_from(ok: f64, now: Instant) -> Bucket {
        let rate = (ok * 0.9).max(1.0);
        Bucket {
            tokens: 1.0,
            // Evenly spaced: a burst after an idle moment could overrun
            // a host that counts in a sliding window.
            burst: 1.0,
            rate,
            max_rate: f64::INFINITY,
            min_rate: 0.1,
            adaptive: true,
            last: now,
            // A pause of a second, in which the host's own window empties.
            paused_until: now.checked_add(Duration::from_secs(1)),
            last_cut: Some(now),
            climb: (rate / 20.0).max(0.5),
            climbed: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // No token is earned during a pause: saved up, they would all
        // leave at its end, together with the requests that waited it out.
        let from = match self.paused_until {
            Some(p) if p > self.last => p.min(now),
            _ => self.last,
        };
        let dt = now.saturating_duration_since(from).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes a token (possibly into debt); returns when it is due. No
    /// token is earned during a pause: the requests that waited it out
    /// leave at the rate after it, one token's worth at its end, not all
    /// at once.
    pub(super) fn reserve(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        self.tokens -= 1.0;
        let from = self.paused_until.filter(|p| *p > now).unwrap_or(now);
        if self.tokens >= 0.0 {
            return (from > now).then_some(from);
        }
        // A rate of a year's period still fits; ten years is "never".
        let wait = Duration::from_secs_f64((-self.tokens / self.rate).min(3.2e8));
        Some(from.checked_add(wait).unwrap_or(from))
    }

    /// Pauses the host until `until` (a later pause wins).
    fn pause(&mut self, until: Instant, now: Instant) {
        self.refill(now);
        // What was saved before the pause is not spent at its end either.
        self.tokens = self.tokens.min(1.0);
        self.paused_until = Some(until).max(self.paused_until);
    }

    /// Gives back the token of a job that will not wait for it.
    pub(super) fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    pub(super) fn observe(&mut self, o: Observed, now: Instant) {
        match o {
            Observed::Throttled {
                retry_after: after, ..
            } => {
                let recent_cut = self
                    .last_cut
                    .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
                if self.adaptive && !recent_cut {
                    self.last_cut = Some(now);
                    self.refill(now);
                    self.rate = (self.rate / 2.0).max(self.min_rate);
                    self.burst = self.burst.min(self.rate.max(1.0));
                    self.tokens = self.tokens.min(0.0);
                }
                if let Some(until) = after.and_then(|a| now.checked_add(a.min(MAX_HOST_PAUSE))) {
                    self.pause(until, now);
                }
            }
            Observed::Answered if self.adaptive && self.rate < self.max_rate => {
                self.refill(now);
                // Additive increase: with a set limit, a twentieth of it a
                // success, so the host is probed back up over a few dozen
                // requests; without one, `climb` per second since the last
                // climb, so the unknown limit is approached slowly.
                let step = if self.max_rate.is_finite() {
                    self.max_rate / 20.0
                } else {
                    let since = now.saturating_duration_since(self.climbed).as_secs_f64();
                    self.climb * since.min(1.0)
                };
                self.climbed = now;
                self.rate = (self.rate + step).min(self.max_rate);
            }
            _ => {}
        }
    }
}

/// The longest one `Retry-After` pauses a whole host (a job that cannot
/// wait that long fails at once with a
/// [`Phase::Throttled`](crate::Phase::Throttled) timeout instead).
pub(super) const MAX_HOST_PAUSE: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_429_without_retry_after_pauses_then_spaces_the_queue() {
        let now = Instant::now();
        let mut b = Bucket::adaptive_from(20.0, now);
        assert_eq!(b.rate, 18.0);
        let first = b.reserve(now).unwrap();
        assert_eq!(first, now + Duration::from_secs(1), "after the pause");
        let second = b.reserve(now).unwrap();
        assert!(
            second >= first + Duration::from_millis(50),
            "one at a time after the pause, not all at its end"
        );
        // The climb is by the clock: a burst of successes adds nothing.
        for _ in 0..100 {
            b.observe(Observed::Answered, now);
        }
        assert_eq!(b.rate, 18.0);
        b.observe(Observed::Answered, now + Duration::from_secs(1));
        assert!((b.rate - 18.9).abs() < 1e-9, "{}", b.rate);
    }

    #[test]
    fn a_pause_saves_no_tokens_for_its_end() {
        // A host that saves up 20 tokens, paused for a second by a
        // `Retry-After`: the requests that waited it out leave at the
        // rate after it, not 20 at its end.
        let now = Instant::now();
        let mut b = Bucket::new(
            Rate {
                requests: 20,
                per: Duration::from_secs(1),
                burst: 20,
            },
            false,
            now,
        );
        b.observe(
            Observed::Throttled {
                status: 429,
                retry_after: Some(Duration::from_secs(1)),
            },
            now,
        );
        let end = now + Duration::from_secs(1);
        let later = end + Duration::from_millis(10);
        assert_eq!(b.reserve(later), None, "one token at its end");
        let due = b.reserve(later).expect("the next one waits for its token");
        assert!(
            due >= later + Duration::from_millis(30),
            "{:?}",
            due - later
        );
        // A learnt rate never saves up a burst: after an idle minute, the
        // second request still waits its turn.
        let mut b = Bucket::adaptive_from(20.0, now);
        let idle = now + Duration::from_secs(60);
        assert_eq!(b.reserve(idle), None);
        assert!(b.reserve(idle).is_some());
    }

    #[test]
    fn throttling_halves_the_rate_and_success_climbs_back() {
        let now = Instant::now();
        let mut b = Bucket::new(
            Rate {
                requests: 20,
                per: Duration::from_secs(1),
                burst: 1,
            },
            true,
            now,
        );
        b.observe(
            Observed::Throttled {
                status: 429,
                retry_after: None,
            },
            now,
        );
        assert_eq!(b.rate, 10.0);
        for _ in 0..100 {
            b.observe(Observed::Answered, now);
        }
        assert_eq!(b.rate, 20.0, "never above the set rate");
        b.observe(
            Observed::Throttled {
                status: 503,
                retry_after: Some(Duration::from_secs(2)),
            },
            now,
        );
        assert!(
            b.reserve(now)
                .is_some_and(|d| d >= now + Duration::from_secs(2))
        );
    }
}
