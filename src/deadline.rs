//! `Deadline`: one instant that may be "never", with saturating arithmetic.
//!
//! Every time limit of the crate becomes one of these once, where it starts
//! (submission for a `deadline`, the first start on a worker for a
//! `timeout`), and everything that waits reads it from there: the queue
//! check, each attempt, the socket (see `wire`), retries, poll steps,
//! hedge and burst timers, and every wait form of a `Pending`.
//! `Duration::MAX` anywhere is legal: an instant past the end of time is
//! simply "never".

use std::time::{Duration, Instant};

/// An instant, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// No limit.
    pub(crate) const NEVER: Deadline = Deadline(None);

    /// `limit` after `start`; never if that is past what `Instant` holds.
    pub(crate) fn from(start: Instant, limit: Duration) -> Deadline {
        Deadline(start.checked_add(limit))
    }

    /// `limit` from now.
    pub(crate) fn after(limit: Duration) -> Deadline {
        Deadline::from(Instant::now(), limit)
    }

    /// At `t`.
    pub(crate) fn at(t: Instant) -> Deadline {
        Deadline(Some(t))
    }

    /// The earlier of the two.
    pub(crate) fn min(self, other: Deadline) -> Deadline {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Deadline(Some(a.min(b))),
            (a, b) => Deadline(a.or(b)),
        }
    }

    /// This deadline moved later by `d` (never, if it overflows).
    pub(crate) fn plus(self, d: Duration) -> Deadline {
        Deadline(self.0.and_then(|t| t.checked_add(d)))
    }

    /// The instant, if there is one.
    pub(crate) fn instant(self) -> Option<Instant> {
        self.0
    }

    /// True if there is no limit.
    pub(crate) fn is_never(self) -> bool {
        self.0.is_none()
    }

    /// What is left from now: zero once passed, `Duration::MAX` if never.
    pub(crate) fn left(self) -> Duration {
        self.0.map_or(Duration::MAX, |t| {
            t.saturating_duration_since(Instant::now())
        })
    }

    /// True once the instant has come.
    pub(crate) fn passed(self) -> bool {
        self.0.is_some_and(|t| Instant::now() >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_and_orders() {
        let far = Deadline::after(Duration::MAX);
        assert!(far.is_never());
        assert_eq!(far.left(), Duration::MAX);
        assert!(!far.passed());
        let soon = Deadline::after(Duration::from_millis(10));
        assert_eq!(far.min(soon), soon);
        assert_eq!(soon.min(far), soon);
        assert!(soon.plus(Duration::MAX).is_never());
        let past = Deadline::after(Duration::ZERO);
        assert!(past.passed());
        assert_eq!(past.left(), Duration::ZERO);
    }
}
