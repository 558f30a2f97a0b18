//! Retry policy: attempts, backoff with full jitter, `Retry-After`, which
//! failures may be retried, a budget shared by the pool, and the give-up
//! decision as one pure function.

use crate::error::{Error, GaveUpReason, RETRY_STATUSES, TransportKind};
use crate::sync::lock;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When and how often a failed request is tried again.
///
/// Retries are **off** by default ([`Retry::none`], what a pool does unless
/// told otherwise): a retry changes the load on a server, so it is the
/// caller's decision. [`Retry::standard`] is a conservative policy to turn
/// on with [`Builder::retry`](crate::Builder::retry) or per request with
/// [`RequestBuilder::retry`](crate::RequestBuilder::retry):
///
/// - at most 3 attempts;
/// - exponential backoff from 100 ms, capped at 5 s, with full jitter (each
///   wait is random between zero and the exponential value);
/// - retried: timeouts of a phase, transport failures (but TLS and protocol
///   errors), and the statuses 429, 502, 503 and 504; a `Retry-After`
///   header (seconds or HTTP date) replaces the backoff;
/// - every wait counts against the request's time limit: a `Retry-After`
///   longer than what is left ends the call at once;
/// - between attempts the request waits in the pool's timer, not on a
///   worker;
/// - POST and PATCH are retried only when the failure proves the request
///   never reached the server (refused, DNS, connect timeout), when they
///   carry an `Idempotency-Key` header, or with
///   [`non_idempotent(true)`](Retry::non_idempotent).
///
/// Independently of the policy, an idempotent request whose reused
/// keep-alive connection turns out to be closed by the server is sent once
/// more on a fresh connection.
///
/// ```
/// use std::time::Duration;
/// let pool = reqpool::Pool::builder()
///     .retry(reqpool::Retry::standard().max_attempts(4).backoff(Duration::from_millis(50), Duration::from_secs(2)))
///     .build()?;
/// # Ok::<(), reqpool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub(crate) max_attempts: u32,
    base: Duration,
    cap: Duration,
    statuses: Vec<u16>,
    pub(crate) non_idempotent: bool,
}

impl Default for Retry {
    /// [`Retry::none`]: what a pool does unless told otherwise.
    fn default() -> Self {
        Retry::none()
    }
}

impl Retry {
    /// No retries: one attempt (the pool's default).
    pub fn none() -> Retry {
        Retry {
            max_attempts: 1,
            ..Retry::standard()
        }
    }

    /// The conservative policy described above: 3 attempts, backoff from
    /// 100 ms to 5 s with full jitter, on timeouts, transport failures and
    /// 429/502/503/504.
    pub fn standard() -> Retry {
        Retry {
            max_attempts: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            statuses: RETRY_STATUSES.to_vec(),
            non_idempotent: false,
        }
    }

    /// The most attempts in all, the first included (at least 1).
    /// Defaults to 3 in [`Retry::standard`].
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The first backoff and the largest one. Defaults to 100 ms and 5 s.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.base = base;
        self.cap = cap.max(base);
        self
    }

    /// The statuses that are retried. Defaults to 429, 502, 503, 504.
    pub fn statuses(mut self, codes: &[u16]) -> Self {
        self.statuses = codes.to_vec();
        self
    }

    /// Retries POST and PATCH like idempotent methods, even when the
    /// request may have reached the server. Only for endpoints where a
    /// duplicate does no harm; it never makes hedging send a POST twice.
    /// Defaults to false.
    pub fn non_idempotent(mut self, yes: bool) -> Self {
        self.non_idempotent = yes;
        self
    }

    /// The full-jitter backoff before attempt `attempt + 1`.
    pub(crate) fn backoff_after(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling_after(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random() % nanos.saturating_add(1))
    }
}

impl Retry {
    /// The backoff's ceiling before attempt `attempt + 1`: the first
    /// backoff doubled per attempt, at most the largest. The pool draws its
    /// wait below it (full jitter); the outbox waits it whole (its waits
    /// are hours apart at most, and kept in its store).
    pub(crate) fn ceiling_after(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        exp.min(self.cap)
    }

    /// True when `e` has a status this policy does not retry: the server's
    /// final word. The one status rule of the pool's retries
    /// ([`Error::retryable_with`]) and of the outbox's deliveries, which
    /// make a job with such a status dead at once.
    #[cfg_attr(not(any(feature = "sqlite", feature = "redis")), allow(dead_code))]
    pub(crate) fn final_status(&self, e: &Error) -> bool {
        e.status().is_some() && !e.retryable_with(&self.statuses)
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Once more, at once, on a fresh connection.
    Fresh,
    /// Again after this wait (if the budget allows).
    After(Duration),
    /// Stop here.
    GiveUp(GaveUpReason),
}

/// The facts about one failed attempt that the decision needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub(crate) err: &'a Error,
    /// Attempts made so far, this one included (the one on a fresh
    /// connection counts).
    pub(crate) attempt: u32,
    pub(crate) idempotent: bool,
    /// The failure came while reading a response body.
    pub(crate) in_body: bool,
    /// A hop of this attempt was answered before it failed (a redirect
    /// followed): the request reached a server, whatever the failure says.
    pub(crate) answered: bool,
    /// The failure came on a kept-alive connection an earlier request had
    /// used, not on one opened for this request.
    pub(crate) reused: bool,
    /// The one attempt on a fresh connection was made already.
    pub(crate) fresh_tried: bool,
    /// What is left of the request's limit now.
    pub(crate) left: Duration,
}

impl Retry {
    /// Decides what follows a failed attempt: a pure function of the
    /// policy and the facts (the backoff is random within its ceiling).
    pub(crate) fn decide(&self, f: &Facts<'_>) -> Decision {
        // A kept-alive connection the server had already closed: the
        // request never got there, so an idempotent one goes again on a
        // fresh connection, whatever the policy (as every HTTP client does).
        if f.idempotent
            && f.reused
            && !f.fresh_tried
            && !f.in_body
            && !f.answered
            && f.err.transport_kind() == Some(TransportKind::Reset)
        {
            return Decision::Fresh;
        }
        let fresh_only = f.fresh_tried && self.max_attempts == 1;
        if !f.err.retryable_with(&self.statuses) {
            return Decision::GiveUp(if fresh_only {
                GaveUpReason::FreshConnectionFailed
            } else {
                GaveUpReason::NotRetryable
            });
        }
        if !f.idempotent && (f.answered || f.err.maybe_sent()) {
            return Decision::GiveUp(GaveUpReason::MaybeSent);
        }
        if f.attempt >= self.max_attempts {
            return Decision::GiveUp(if fresh_only {
                GaveUpReason::FreshConnectionFailed
            } else {
                GaveUpReason::AttemptsExhausted
            });
        }
        let retry_after = f.err.retry_after();
        let wait = retry_after.unwrap_or_else(|| self.backoff_after(f.attempt));
        if wait >= f.left {
            return Decision::GiveUp(GaveUpReason::BeyondDeadline {
                wait,
                left: f.left,
                retry_after: retry_after.is_some(),
            });
        }
        Decision::After(wait)
    }
}

/// A random number for jitter: std's per-process random hasher keys, mixed
/// with the time, are plenty for spreading retries.
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A token bucket shared by a pool, so a failing server is not hammered:
/// each first attempt adds `ratio` tokens (up to `burst`), each retry takes
/// one, and there is no retry without a token.
#[derive(Debug)]
pub(crate) struct Budget {
    ratio: f64,
    burst: f64,
    tokens: Mutex<f64>,
}

impl Budget {
    pub(crate) fn new(ratio: f64, burst: u32) -> Budget {
        Budget {
            ratio: ratio.max(0.0),
            burst: f64::from(burst),
            tokens: Mutex::new(f64::from(burst)),
        }
    }

    pub(crate) fn deposit(&self) {
        let mut t = lock(&self.tokens);
        *t = (*t + self.ratio).min(self.burst);
    }

    pub(crate) fn try_spend(&self) -> bool {
        let mut t = lock(&self.tokens);
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (any of
/// the three forms RFC 9110 allows, by the `httpdate` crate). A date in
/// the past means now.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("Sun, 32 Nov 1994 08:00:00 GMT", now),
            None
        );
        // The obsolete forms RFC 9110 still asks recipients to accept.
        for old in ["Sunday, 06-Nov-94 08:50:07 GMT", "Sun Nov  6 08:50:07 1994"] {
            assert_eq!(
                parse_retry_after(old, now),
                Some(Duration::from_secs(30)),
                "{old}"
            );
        }
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let r = Retry::standard().backoff(Duration::from_millis(100), Duration::from_millis(400));
        for attempt in 1..10 {
            let ceiling =
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_millis(400));
            assert!(r.backoff_after(attempt) <= ceiling);
        }
        let distinct: std::collections::HashSet<_> = (0..20).map(|_| r.backoff_after(3)).collect();
        assert!(distinct.len() > 1, "no jitter");
        // Saturating at every size: no overflow, no division by zero.
        for (base, cap) in [
            (Duration::MAX, Duration::MAX),
            (Duration::ZERO, Duration::MAX),
            (Duration::from_nanos(1), Duration::MAX),
            (Duration::ZERO, Duration::ZERO),
        ] {
            let r = Retry::standard().backoff(base, cap);
            for attempt in [0, 1, 2, 33, 64, u32::MAX] {
                assert!(r.backoff_after(attempt) <= cap);
            }
        }
    }

    #[test]
    fn decides_from_the_facts_alone() {
        use crate::error::{GaveUpReason as R, Phase};
        let policy = Retry::standard();
        let status = |code| Error::status_error(code, "GET", "http://h/", b"");
        fn facts(err: &Error) -> Facts<'_> {
            Facts {
                err,
                attempt: 1,
                idempotent: true,
                in_body: false,
                answered: false,
                reused: true,
                fresh_tried: false,
                left: Duration::from_secs(60),
            }
        }
        let e503 = status(503);
        assert!(matches!(policy.decide(&facts(&e503)), Decision::After(_)));
        let e404 = status(404);
        assert_eq!(
            policy.decide(&facts(&e404)),
            Decision::GiveUp(R::NotRetryable)
        );
        assert_eq!(
            policy.decide(&Facts {
                attempt: 3,
                ..facts(&e503)
            }),
            Decision::GiveUp(R::AttemptsExhausted)
        );
        assert_eq!(
            policy.decide(&Facts {
                idempotent: false,
                ..facts(&e503)
            }),
            Decision::GiveUp(R::MaybeSent)
        );
        assert!(matches!(
            policy.decide(&Facts {
                left: Duration::ZERO,
                ..facts(&e503)
            }),
            Decision::GiveUp(R::BeyondDeadline { .. })
        ));
        let reset = Error::Transport {
            kind: TransportKind::Reset,
            method: "GET".into(),
            url: "http://h/".into(),
            message: String::new(),
        };
        assert_eq!(policy.decide(&facts(&reset)), Decision::Fresh);
        assert_eq!(
            Retry::none().decide(&Facts {
                fresh_tried: true,
                attempt: 2,
                ..facts(&reset)
            }),
            Decision::GiveUp(R::FreshConnectionFailed)
        );
        let refused = Error::Transport {
            kind: TransportKind::Refused,
            method: "POST".into(),
            url: "http://h/".into(),
            message: String::new(),
        };
        // A POST that never left may be retried.
        assert!(matches!(
            policy.decide(&Facts {
                idempotent: false,
                ..facts(&refused)
            }),
            Decision::After(_)
        ));
        // ... but not once a redirect of it was answered: the first server
        // has it.
        assert_eq!(
            policy.decide(&Facts {
                idempotent: false,
                answered: true,
                ..facts(&refused)
            }),
            Decision::GiveUp(R::MaybeSent)
        );
        // A fresh connection closed before any response is an ordinary
        // failure: no extra attempt outside the policy.
        assert_eq!(
            Retry::none().decide(&Facts {
                reused: false,
                ..facts(&reset)
            }),
            Decision::GiveUp(R::AttemptsExhausted)
        );
        let deadline = Error::timeout(Phase::Deadline, "GET", "http://h/");
        assert_eq!(
            policy.decide(&facts(&deadline)),
            Decision::GiveUp(R::NotRetryable)
        );
    }

    #[test]
    fn budget_runs_out_and_refills() {
        let b = Budget::new(0.5, 2);
        assert!(b.try_spend() && b.try_spend());
        assert!(!b.try_spend());
        b.deposit();
        b.deposit();
        assert!(b.try_spend());
        assert!(!b.try_spend());
    }
}
