//! How an outbox delivers: the dispatcher thread that claims due jobs
//! from the store and hands them to the pool, and what each delivery's
//! end writes back.

use super::store::{Answer, Claimed, End};
use super::{GATHER, REPLY_CAP, Shared, now_ms};
use crate::error::Error;
use crate::response::Response;
use crate::sync::lock;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Jobs handed to the pool at most at once (or 4 per worker, if more).
const CLAIM: usize = 512;

/// How long the dispatcher waits, at most, after a store it cannot reach.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Shared {
    /// Notes how the delivery of a job ended; the dispatcher writes it
    /// with the others of the moment.
    fn finish(&self, job: &Claimed, attempts: u32, result: Result<Response, Error>) {
        let id = job.id;
        let end = match result {
            Ok(resp) => {
                let (status, body) = if self.options.keep_replies {
                    let mut body = resp.body_to_keep().into_owned();
                    body.truncate(REPLY_CAP);
                    (Some(i64::from(resp.status())), Some(body))
                } else {
                    (None, None)
                };
                End::Delivered {
                    status,
                    body,
                    forget: !self.options.keep_replies && self.options.retention.is_zero(),
                }
            }
            // Not tried (the pool was shut down, or the job cancelled): it
            // waits a second rather than spin on a pool that takes nothing.
            Err(Error::Cancelled | Error::Closed) => End::Later {
                at: now_ms().saturating_add(1_000),
                error: None,
                throttled: None,
            },
            Err(e) => {
                let text = e.to_string();
                if final_error(&e) || attempts >= self.options.max_attempts {
                    log::warn!(
                        "reqpool: outbox job {id} is dead after {attempts} attempt(s): {text}"
                    );
                    self.pool.inner().report(&format!("outbox job {id}"), &e);
                    End::Dead { error: text }
                } else {
                    let wait = 1_000i64.saturating_mul(1 << attempts.min(8));
                    let throttled = match e.status() {
                        Some(429) => Some(e.retry_after().unwrap_or(Duration::from_secs(1))),
                        Some(503) => e.retry_after(),
                        _ => None,
                    };
                    End::Later {
                        at: now_ms().saturating_add(wait),
                        error: Some(text),
                        throttled,
                    }
                }
            }
        };
        lock(&self.answers).push(Answer {
            id,
            attempts,
            entry: job.entry.clone(),
            end,
        });
        self.claimed.fetch_sub(1, Ordering::AcqRel);
        if self.closing() {
            // No dispatcher any more: write it now.
            self.write_answers();
        }
        self.answered();
    }

    /// Writes the answers noted so far, in one transaction of the store.
    /// If the store cannot take them they are kept, and written again
    /// with the next ones: nothing is dropped. True if written.
    pub(super) fn write_answers(&self) -> bool {
        let answers = std::mem::take(&mut *lock(&self.answers));
        if answers.is_empty() {
            return true;
        }
        let ok = match self.store.write(&answers) {
            // Room for more: the next claim comes after the gathering
            // pause, not after an idle wait.
            Ok(()) => {
                lock(&self.signal).work = true;
                true
            }
            Err(e) => {
                log::error!(
                    "reqpool: outbox could not record {} answer(s), will try again: {e}",
                    answers.len()
                );
                let mut kept = lock(&self.answers);
                let newer = std::mem::replace(&mut *kept, answers);
                kept.extend(newer);
                false
            }
        };
        lock(&self.signal).writes += 1;
        self.written.notify_all();
        ok
    }
}

/// A failure that another delivery cannot cure: a final status (4xx but
/// 408, 425, 429), a request that cannot be built or followed.
fn final_error(e: &Error) -> bool {
    match e.status() {
        Some(code) if (400..500).contains(&code) => !matches!(code, 408 | 425 | 429),
        Some(_) => false,
        None => !e.is_retryable(),
    }
}

/// The dispatcher: writes answers as they come (each write takes every
/// answer that came during the last), hands due jobs to the pool at most
/// every `GATHER` (one claim for many enqueues), and sleeps until one of
/// them has work. A store it cannot reach is tried again with a growing
/// pause (to [`BACKOFF_MAX`]); answers wait in memory meanwhile.
pub(super) fn dispatch(s: &Arc<Shared>) {
    let mut last_tidy: Option<Instant> = None;
    let mut last_claim: Option<Instant> = None;
    let mut idle_until = Instant::now();
    let mut backoff = Duration::ZERO;
    loop {
        let wrote = s.write_answers();
        if s.closing() {
            break;
        }
        if last_claim.is_none_or(|t| t.elapsed() >= GATHER.max(backoff)) {
            let mut ok = wrote;
            if last_tidy.is_none_or(|t| t.elapsed() >= s.store.tidy_every()) {
                last_tidy = Some(Instant::now());
                if let Err(e) = s.store.tidy(s.options.retention) {
                    log::error!("reqpool: outbox housekeeping failed: {e}");
                    ok = false;
                }
            }
            lock(&s.signal).work = false;
            ok &= claim(s);
            last_claim = Some(Instant::now());
            let next = s.store.next_due().unwrap_or_else(|_| {
                ok = false;
                None
            });
            let wait = match next {
                Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
                None => Duration::from_secs(1),
            };
            backoff = if ok {
                Duration::ZERO
            } else {
                (backoff * 2).clamp(Duration::from_millis(50), BACKOFF_MAX)
            };
            idle_until = Instant::now() + wait.clamp(GATHER.max(backoff), Duration::from_secs(1));
        }
        let next_claim = last_claim.map_or_else(Instant::now, |t| t + GATHER.max(backoff));
        s.wait_for_work(next_claim.max(Instant::now()), idle_until);
    }
    s.write_answers();
    if let Err(e) = s.store.close() {
        log::error!("reqpool: outbox could not hand back its waiting jobs: {e}");
    }
}

/// Hands due jobs to the pool: enough to keep every worker busy until the
/// next round, not the whole store. False if the store failed.
fn claim(s: &Arc<Shared>) -> bool {
    let limit = (4 * s.pool.workers()).max(CLAIM);
    let room = limit.saturating_sub(s.claimed.load(Ordering::Acquire));
    let (due, ok) = match s.store.claim(room) {
        Ok(due) => (due, true),
        Err(e) => {
            log::error!("reqpool: outbox could not claim jobs: {e}");
            (Vec::new(), false)
        }
    };
    s.claimed.fetch_add(due.len(), Ordering::AcqRel);
    for job in due {
        deliver(s, job);
    }
    ok
}

/// Hands one job to the pool; its end is recorded by `finish`.
fn deliver(s: &Arc<Shared>, mut job: Claimed) {
    let stored = &mut job.stored;
    let mut req = s.pool.request(&stored.method, &stored.url);
    for (k, v) in &stored.headers {
        if !k.eq_ignore_ascii_case("idempotency-key") {
            req = req.header(k, v);
        }
    }
    if let Some(key) = &stored.key {
        req = req.idempotency_key(key);
    }
    if let Some(body) = stored.body.take() {
        // Its content type is among the stored headers.
        req = req.body(body);
    }
    let attempts = job.attempts + 1;
    let s2 = Arc::clone(s);
    req.send()
        .on_complete(Box::new(move |r| s2.finish(&job, attempts, r)));
}
