//! How an outbox delivers: the dispatcher thread that claims due jobs
//! from the store and hands them to the pool, and what each delivery's
//! end writes back.

use super::store::{Answer, Claimed, End};
use super::{GATHER, Shared, now_ms, verdict};
use crate::error::Error;
use crate::response::Response;
use crate::sync::lock;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Jobs in flight at most (or 4 per worker, if more).
const CLAIM: usize = 512;

/// Bytes of request bodies handed to the pool at most (but one job).
const BODIES: usize = 16 << 20;

/// How long the dispatcher waits, at least and at most, after a store it
/// cannot reach.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How long the dispatcher sleeps at most when nothing is due.
const IDLE: Duration = Duration::from_secs(1);

impl Shared {
    /// Notes how the delivery of a job ended; the dispatcher writes it
    /// with the others of the moment.
    fn finish(&self, job: &Claimed, result: Result<Response, Error>) {
        let v = verdict::judge(job, &result, &self.options, now_ms());
        if let (End::Dead { error }, Err(e)) = (&v.end, &result) {
            let id = job.id;
            log::warn!(
                "reqpool: outbox job {id} is dead after {} attempt(s): {error}",
                v.attempts
            );
            self.pool.inner().report(&format!("outbox job {id}"), e);
        }
        self.note(job, v);
    }

    /// Notes `v` for the dispatcher to write. If answers pile up (8 per
    /// worker: the dispatcher is behind, on a busy machine), the worker
    /// that brings one too many writes them itself: what a crash can send
    /// twice stays the jobs on the wire and fewer than 8 answers per
    /// worker. (At 2 per worker these writes cost a fifth of the
    /// throughput.)
    fn note(&self, job: &Claimed, v: verdict::Verdict) {
        if !matches!(v.end, End::Later { .. }) {
            self.lineage
                .ended(job.stored.key.as_deref().unwrap_or_default());
        }
        let waiting = {
            let mut answers = lock(&self.answers);
            answers.push(Answer {
                id: job.id,
                attempts: v.attempts,
                tries: v.tries,
                entry: job.entry.clone(),
                end: v.end,
            });
            answers.len()
        };
        let behind = waiting >= self.pool.workers().saturating_mul(8).max(8);
        if self.closing() || (behind && self.health.store_ok()) {
            // No dispatcher any more, or one that is behind: write now.
            self.write_answers();
        }
        self.answered();
    }

    /// The dispatcher's last words: the answers noted so far written, and
    /// what the store holds for this process handed back.
    fn finish_writing(&self) {
        self.write_answers();
        if let Err(e) = self.store.close() {
            log::error!("reqpool: outbox could not hand back its waiting jobs: {e}");
        }
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
                // A job leaves the count of those in flight only once its
                // answer is written: what a crash can send twice is at
                // most what a claim may hold.
                self.claimed.fetch_sub(answers.len(), Ordering::AcqRel);
                lock(&self.signal).work = true;
                true
            }
            Err(e) => {
                log::error!(
                    "reqpool: outbox could not record {} answer(s), will try again: {e}",
                    answers.len()
                );
                self.health.failed(&e.to_string());
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

/// The dispatcher, supervised: a panic of its loop is caught, logged at
/// `error`, counted in [`OutboxHealth`](super::OutboxHealth), and the loop
/// starts again after a pause (growing to [`BACKOFF_MAX`]); it ends only
/// when the outbox closes.
pub(super) fn supervise(s: &Arc<Shared>) {
    let mut pause = Duration::from_millis(100);
    s.health.running(true);
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(s))) {
            Ok(()) => break,
            Err(payload) => {
                let message = crate::error::panic_message(payload.as_ref());
                log::error!(
                    "reqpool: the outbox's dispatcher panicked, starting again in {pause:?}: {message}"
                );
                s.health.panicked(&message);
                if s.pause(pause) {
                    break;
                }
                pause = pause.saturating_mul(2).min(BACKOFF_MAX);
            }
        }
    }
    s.finish_writing();
    s.health.running(false);
}

/// The dispatcher: writes answers as they come (each write takes every
/// answer that came during the last), hands due jobs to the pool at most
/// every `GATHER` (one claim for many enqueues), and sleeps until one of
/// them has work. A store it cannot reach is tried again with a growing
/// pause (to [`BACKOFF_MAX`]) for as long as it takes; answers wait in
/// memory meanwhile. Returns when the outbox closes.
fn dispatch(s: &Arc<Shared>) {
    let mut last_tidy: Option<Instant> = None;
    let mut last_claim: Option<Instant> = None;
    let mut idle_until = Instant::now();
    let mut backoff = Duration::ZERO;
    loop {
        let before = s.claimed.load(Ordering::Acquire);
        // While the store fails, answers that come wake the dispatcher but
        // are written only at the pace of the backoff.
        let wrote = if backoff.is_zero() || last_claim.is_none_or(|t| t.elapsed() >= backoff) {
            s.write_answers()
        } else {
            false
        };
        if s.closing() {
            return;
        }
        // Answers written free room in flight: it is filled at once (a
        // claim of the jobs already due), not after the gathering pause,
        // which is for jobs enqueued one by one.
        let freed = backoff.is_zero() && s.claimed.load(Ordering::Acquire) < before;
        if freed || last_claim.is_none_or(|t| t.elapsed() >= GATHER.max(backoff)) {
            let mut ok = wrote;
            if last_tidy.is_none_or(|t| t.elapsed() >= s.store.tidy_every()) {
                last_tidy = Some(Instant::now());
                if let Err(e) = s.store.tidy(s.options.retention) {
                    log::error!("reqpool: outbox housekeeping failed: {e}");
                    s.health.failed(&e.to_string());
                    ok = false;
                }
            }
            lock(&s.signal).work = false;
            ok &= claim(s);
            last_claim = Some(Instant::now());
            let next = s.store.next_due().unwrap_or_else(|e| {
                s.health.failed(&e.to_string());
                ok = false;
                None
            });
            let wait = match next {
                Some(at) => {
                    Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0))
                }
                None => IDLE,
            };
            backoff = if ok {
                s.health.progress();
                Duration::ZERO
            } else {
                backoff.saturating_mul(2).max(BACKOFF_MIN).min(BACKOFF_MAX)
            };
            idle_until = later(idle_wait(wait, backoff));
        }
        let next_claim = last_claim.map_or_else(Instant::now, |t| {
            t.checked_add(GATHER.max(backoff)).unwrap_or(t)
        });
        s.wait_for_work(next_claim.max(Instant::now()), idle_until);
    }
}

/// How long the dispatcher sleeps when nothing wakes it: until the next
/// job is due, at least the gathering pause and the store's backoff, and
/// at most [`IDLE`] (or the backoff, if longer). Never panics, whatever
/// the inputs (`Duration::clamp` would, with a backoff above the cap).
fn idle_wait(until_due: Duration, backoff: Duration) -> Duration {
    let floor = GATHER.max(backoff);
    until_due.max(floor).min(IDLE.max(floor))
}

/// `now + d`, or far ahead if that cannot be represented.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(3600))
}

/// Hands due jobs to the pool: enough to keep every worker busy until the
/// next round, not the whole store. False if the store failed.
fn claim(s: &Arc<Shared>) -> bool {
    // Enough to keep every worker busy between rounds (4 per worker, 512
    // at least: fewer cost half the throughput on a busy machine); with a
    // rate shared by every consumer one per worker, so that a job holds
    // its token only while a worker is free to send it (no burst of queued
    // jobs after a stall).
    let limit = if s.store.paced() {
        s.pool.workers().max(1)
    } else {
        s.pool.workers().saturating_mul(4).max(CLAIM)
    };
    let claimed = s.claimed.load(Ordering::Acquire);
    let mut room = limit.saturating_sub(claimed);
    // Bodies held by the pool at most (one job at least, whatever its
    // size, when none is held): memory follows the workers, not the store.
    let bytes = BODIES.saturating_sub(s.bytes.load(Ordering::Acquire));
    if bytes == 0 && claimed > 0 {
        room = 0;
    }
    let (due, ok) = match s.store.claim(room, bytes) {
        Ok(due) => (due, true),
        Err(e) => {
            log::error!("reqpool: outbox could not claim jobs: {e}");
            s.health.failed(&e.to_string());
            (Vec::new(), false)
        }
    };
    s.claimed.fetch_add(due.len(), Ordering::AcqRel);
    for job in due {
        deliver(s, job);
    }
    ok
}

/// Hands one job to the pool; its end is recorded by `finish`. A job
/// whose consumers stopped `max_attempts` times while it was in flight
/// (it may be what kills them) is dead without being sent again.
fn deliver(s: &Arc<Shared>, mut job: Claimed) {
    if job.stops > 0 && job.attempts >= s.options.max_attempts {
        let error = format!(
            "its consumer stopped {} time(s) while delivering it (a crash, a kill, a lease that ran out)",
            job.stops
        );
        log::error!("reqpool: outbox job {} is dead: {error}", job.id);
        let v = verdict::Verdict {
            attempts: job.attempts,
            tries: job.tries,
            end: End::Dead { error },
        };
        s.note(&job, v);
        return;
    }
    let stored = &mut job.stored;
    let size = stored.body.as_ref().map_or(0, Vec::len);
    s.bytes.fetch_add(size, Ordering::AcqRel);
    // One attempt per delivery: every wait between attempts is the
    // outbox's, kept in its store.
    let mut req = s
        .pool
        .request(&stored.method, &stored.url)
        .retry(crate::retry::Retry::none());
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
    let s2 = Arc::clone(s);
    let (id, attempt) = (job.id, job.tries.saturating_add(1));
    let key = job.stored.key.clone().unwrap_or_default();
    s.lineage.deliver(id, &key, attempt, move || {
        req.send().on_complete(Box::new(move |r| {
            s2.bytes.fetch_sub(size, Ordering::AcqRel);
            s2.finish(&job, r);
        }));
    });
}
