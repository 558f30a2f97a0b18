//! What the end of one delivery means for its job: delivered (the
//! server's answer, even one too large to read), dead (the server's final
//! word, a request that cannot be built, too many attempts or too old),
//! or tried again later — and when, and whether the attempt counts. The
//! pool's own verdicts made before anything reached a server (an open
//! circuit, a wait past the pool's limit, a refused connection, a pool
//! shut down) are never a reason for a job to die.

use super::options::OutboxOptions;
use super::store::{Claimed, End, LONGEST_WAIT, millis};
use crate::error::{Error, Phase, TransportKind};
use crate::response::Response;
use std::time::Duration;

/// How much of a reply body is kept for [`Outbox::reply`](crate::Outbox::reply).
const REPLY_CAP: usize = 64 * 1024;

/// The wait after a delivery the pool did not try (shut down, no room in
/// time), and the pause a 429 that names none asks of every consumer.
const SECOND: Duration = Duration::from_secs(1);

/// How one delivery ended, for its job.
pub(super) struct Verdict {
    /// `max_attempts`'s count after this delivery.
    pub(super) attempts: u32,
    /// Deliveries tried so far, this one included.
    pub(super) tries: u32,
    pub(super) end: End,
}

/// The verdict on `job`'s delivery that ended with `result`, at `now`
/// (ms since the epoch).
pub(super) fn judge<R>(
    job: &Claimed<R>,
    result: &Result<Response, Error>,
    options: &OutboxOptions,
    now: i64,
) -> Verdict {
    let tries = job.tries.saturating_add(1);
    let e = match result {
        Ok(resp) => {
            let (status, body) = if options.keep_replies {
                let mut body = resp.body_to_keep().into_owned();
                body.truncate(REPLY_CAP);
                (Some(i64::from(resp.status())), Some(body))
            } else {
                (None, None)
            };
            return Verdict {
                attempts: job.attempts.saturating_add(1),
                tries,
                end: End::Delivered {
                    status,
                    body,
                    cut: false,
                },
            };
        }
        Err(e) => e,
    };
    if let Error::TooLarge {
        status: Some(code), ..
    } = e.last_attempt()
    {
        // The server took it and answered; only its body was too large to
        // read. Sending it again would repeat it.
        return Verdict {
            attempts: job.attempts.saturating_add(1),
            tries,
            end: End::Delivered {
                status: options.keep_replies.then_some(i64::from(*code)),
                body: options.keep_replies.then(Vec::new),
                cut: true,
            },
        };
    }
    let sent = was_sent(e);
    let attempts = job.attempts.saturating_add(u32::from(sent));
    let text = e.to_string();
    let dead = |error: String| Verdict {
        attempts,
        tries,
        end: End::Dead { error },
    };
    if final_error(e, options) {
        return dead(text);
    }
    if let Some(limit) = options.max_age {
        let age = now.saturating_sub(job.created);
        if job.created > 0 && u128::try_from(age).unwrap_or(0) > limit.as_millis() {
            return dead(format!(
                "older than the outbox's max_age ({limit:?}); its last delivery: {text}"
            ));
        }
    }
    if sent && attempts >= options.retry.max_attempts {
        return dead(text);
    }
    let last = e.last_attempt();
    let wait = match last {
        // The host's circuit reopens then: not before.
        Error::CircuitOpen { retry_in, .. } => *retry_in,
        // Not tried (the pool was shut down, or the job cancelled): a
        // second rather than spin on a pool that takes nothing.
        Error::Cancelled | Error::Closed => SECOND,
        // The pool had no room in time (its queue, its host's rate): a
        // second, not a growing wait: nothing is wrong with the host.
        Error::Timeout {
            phase: Phase::Queued | Phase::Throttled,
            ..
        } => SECOND,
        // The policy's backoff, whole (no jitter), or the server's word.
        _ => options
            .retry
            .ceiling_after(tries)
            .max(e.retry_after().unwrap_or_default()),
    }
    .min(LONGEST_WAIT);
    let throttled = match e.status() {
        Some(429) => Some(e.retry_after().unwrap_or(SECOND)),
        Some(503) => e.retry_after(),
        _ => None,
    };
    Verdict {
        attempts,
        tries,
        end: End::Later {
            at: now.saturating_add(millis(wait)),
            error: (!matches!(last, Error::Cancelled | Error::Closed)).then_some(text),
            throttled,
        },
    }
}

/// Whether any attempt of the delivery may have reached a server.
fn was_sent(e: &Error) -> bool {
    match e {
        Error::GaveUp { attempts, .. } => attempts.iter().any(was_sent),
        e => e.maybe_sent(),
    }
}

/// A failure that another delivery cannot cure: the server's final word
/// (a status the retry policy does not retry: by default any 4xx but 408,
/// 425 and 429, and a redirect the request may not follow), an answer
/// that cannot be read (a response head over the limit, a body that does
/// not decode: the server took the request, and sending it again would
/// repeat it for the same unreadable answer), or a stored request that
/// cannot be built.
fn final_error(e: &Error, options: &OutboxOptions) -> bool {
    options.retry.final_status(e)
        || matches!(
            e.last_attempt(),
            Error::InvalidRequest { .. }
                | Error::Usage { .. }
                | Error::Transport {
                    kind: TransportKind::Protocol,
                    ..
                }
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_its_cap_and_never_overflows() {
        let retry = OutboxOptions::default().retry;
        let waits: Vec<u64> = [0, 1, 2, 3, 9, 10, u32::MAX]
            .into_iter()
            .map(|t| retry.ceiling_after(t).as_secs())
            .collect();
        assert_eq!(waits, [1, 1, 2, 4, 256, 256, 256]);
    }

    /// The default policy's final statuses are the outbox's rule of
    /// before it took them from `Retry`: any 4xx but 408, 425 and 429, and
    /// a redirect not followed; 5xx go again.
    #[test]
    fn the_default_final_statuses_are_the_outbox_rule() {
        let options = OutboxOptions::default();
        for code in 300..600u16 {
            let e = Error::status_error(code, "POST", "http://127.0.0.1:1/", b"");
            let before = match code {
                400..500 => !matches!(code, 408 | 425 | 429),
                _ => (300..400).contains(&code),
            };
            assert_eq!(final_error(&e, &options), before, "{code}");
        }
    }
}
