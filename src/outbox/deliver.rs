//! How an outbox delivers: the dispatcher thread that claims due jobs
//! from the store and hands them to the pool, what each delivery's end
//! writes back, and the store's housekeeping on a thread of its own
//! beside it. Both threads are supervised: a panic is caught, logged,
//! counted in the outbox's health, and the loop starts again.

use super::shared::Shared;
use super::store::{Answer, Claimed, End, Room, Store, now_ms};
use super::verdict;
use crate::error::Error;
use crate::response::Response;
use crate::sync::lock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the dispatcher lets work gather before it claims it.
const GATHER: Duration = Duration::from_millis(2);

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

/// The dispatcher of one outbox on store `S`.
struct Dispatcher<S: Store> {
    shared: Arc<Shared>,
    store: Arc<S>,
    /// How deliveries ended, not yet written: the dispatcher writes
    /// them in one transaction.
    answers: Mutex<Vec<Answer<S::Receipt>>>,
    /// Bytes of the bodies of jobs handed to the pool and not yet ended.
    bytes: AtomicUsize,
}

/// Starts delivering what `store` holds through the shared pool: the
/// dispatcher thread, which starts the housekeeping thread and, once the
/// outbox closes, stops it, writes the last answers and closes the store.
pub(super) fn start<S: Store>(
    shared: &Arc<Shared>,
    store: &Arc<S>,
) -> Result<JoinHandle<()>, Error> {
    let d = Arc::new(Dispatcher {
        shared: Arc::clone(shared),
        store: Arc::clone(store),
        answers: Mutex::new(Vec::new()),
        bytes: AtomicUsize::new(0),
    });
    std::thread::Builder::new()
        .name("reqpool-outbox".into())
        .spawn(move || run(&d))
        .map_err(|e| Error::usage(format!("could not start the outbox thread: {e}")))
}

/// The dispatcher thread's life: housekeeping started beside it, the
/// loop supervised until the outbox closes, then its last words.
fn run<S: Store>(d: &Arc<Dispatcher<S>>) {
    d.shared.health.running(true);
    let d2 = Arc::clone(d);
    let housekeeper = std::thread::Builder::new()
        .name("reqpool-outbox-tidy".into())
        .spawn(move || supervise(&d2.shared, "housekeeping", || housekeep(&d2)));
    let housekeeper = match housekeeper {
        Ok(t) => Some(t),
        Err(e) => {
            let e = format!("could not start the outbox's housekeeping thread: {e}");
            log::error!("reqpool: {e}");
            d.shared.health.failed(&e);
            None
        }
    };
    supervise(&d.shared, "dispatcher", || dispatch(d));
    // Housekeeping ends before the store is closed: nothing is taken
    // over after this process handed its jobs back.
    if let Some(t) = housekeeper {
        let _ = t.join();
    }
    d.finish_writing();
    d.shared.health.running(false);
}

/// Runs `round` until it returns, which it does when the outbox closes. A
/// panic of it is caught, logged at `error`, counted in
/// [`OutboxHealth`](super::health::OutboxHealth), and `round` starts again after a
/// pause (growing to [`BACKOFF_MAX`]).
fn supervise(shared: &Shared, what: &str, mut round: impl FnMut()) {
    let mut pause = Duration::from_millis(100);
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut round)) {
            Ok(()) => break,
            Err(payload) => {
                let message = crate::error::panic_message(payload.as_ref());
                log::error!(
                    "reqpool: the outbox's {what} panicked, starting again in {pause:?}: {message}"
                );
                shared.health.panicked(what, &message);
                if shared.pause(pause) {
                    break;
                }
                pause = pause.saturating_mul(2).min(BACKOFF_MAX);
            }
        }
    }
}

/// The store's upkeep, every [`Housekeeping::every`](super::store::Housekeeping::every),
/// until the outbox closes.
fn housekeep<S: Store>(d: &Dispatcher<S>) {
    loop {
        if let Err(e) = d.store.tidy() {
            log::error!("reqpool: outbox housekeeping failed: {e}");
            d.shared.health.failed(&e.to_string());
        }
        if d.shared.pause(d.store.every()) {
            return;
        }
    }
}

impl<S: Store> Dispatcher<S> {
    /// Notes how the delivery of a job ended; the dispatcher writes it
    /// with the others of the moment.
    fn finish(&self, job: Claimed<S::Receipt>, result: Result<Response, Error>) {
        let v = verdict::judge(&job, &result, &self.shared.options, now_ms());
        if self.shared.options.pause_on_gone
            && let Err(e) = &result
            && e.last_attempt().status() == Some(410)
            && self.shared.paused.pause(&job.stored.url)
        {
            log::warn!(
                "reqpool: outbox endpoint {} answered 410 Gone: paused until Outbox::resume",
                crate::redact::redact_url(&job.stored.url)
            );
        }
        if let (End::Dead { error }, Err(e)) = (&v.end, &result) {
            let id = job.id;
            log::warn!(
                "reqpool: outbox job {id} is dead after {} attempt(s): {error}",
                v.attempts
            );
            self.shared
                .pool
                .inner()
                .report(&format!("outbox job {id}"), e);
        }
        self.note(job, v);
    }

    /// Notes `v` for the dispatcher to write. If answers pile up (8 per
    /// worker: the dispatcher is behind, on a busy machine), the worker
    /// that brings one too many writes them itself: what a crash can send
    /// twice stays the jobs on the wire and fewer than 8 answers per
    /// worker. (At 2 per worker these writes cost a fifth of the
    /// throughput.)
    fn note(&self, job: Claimed<S::Receipt>, v: verdict::Verdict) {
        let s = &self.shared;
        if !matches!(v.end, End::Later { .. }) {
            s.lineage
                .ended(job.stored.key.as_deref().unwrap_or_default());
        }
        let waiting = {
            let mut answers = lock(&self.answers);
            answers.push(Answer {
                receipt: job.receipt,
                attempts: v.attempts,
                tries: v.tries,
                end: v.end,
            });
            answers.len()
        };
        let behind = waiting >= s.pool.workers().saturating_mul(8).max(8);
        if s.closing() || (behind && s.health.store_ok()) {
            // No dispatcher any more, or one that is behind: write now.
            self.write_answers();
        }
        s.answered();
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
    fn write_answers(&self) -> bool {
        let answers = std::mem::take(&mut *lock(&self.answers));
        if answers.is_empty() {
            return true;
        }
        let ok = match self.store.write(&answers) {
            Ok(()) => {
                // A job leaves the count of those in flight only once its
                // answer is written: what a crash can send twice is at
                // most what a claim may hold.
                self.shared.settled(answers.len());
                true
            }
            Err(e) => {
                log::error!(
                    "reqpool: outbox could not record {} answer(s), will try again: {e}",
                    answers.len()
                );
                self.shared.health.failed(&e.to_string());
                let mut kept = lock(&self.answers);
                let newer = std::mem::replace(&mut *kept, answers);
                kept.extend(newer);
                false
            }
        };
        self.shared.wrote();
        ok
    }
}

/// The dispatcher: writes answers as they come (each write takes every
/// answer that came during the last), hands due jobs to the pool at most
/// every `GATHER` (one claim for many enqueues), and sleeps until one of
/// them has work. A store it cannot reach is tried again with a growing
/// pause (to [`BACKOFF_MAX`]) for as long as it takes; answers wait in
/// memory meanwhile. Returns when the outbox closes.
fn dispatch<S: Store>(d: &Arc<Dispatcher<S>>) {
    let s = &d.shared;
    let mut last_claim: Option<Instant> = None;
    let mut idle_until = Instant::now();
    let mut backoff = Duration::ZERO;
    loop {
        let before = s.in_flight();
        // While the store fails, answers that come wake the dispatcher but
        // are written only at the pace of the backoff.
        let wrote = if backoff.is_zero() || last_claim.is_none_or(|t| t.elapsed() >= backoff) {
            d.write_answers()
        } else {
            false
        };
        if s.closing() {
            return;
        }
        // Answers written free room in flight: it is filled at once (a
        // claim of the jobs already due), not after the gathering pause,
        // which is for jobs enqueued one by one.
        let freed = backoff.is_zero() && s.in_flight() < before;
        if freed || last_claim.is_none_or(|t| t.elapsed() >= GATHER.max(backoff)) {
            s.claiming();
            let mut ok = wrote & claim(d);
            last_claim = Some(Instant::now());
            let next = d.store.next_due().unwrap_or_else(|e| {
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
fn claim<S: Store>(d: &Arc<Dispatcher<S>>) -> bool {
    let s = &d.shared;
    // Enough to keep every worker busy between rounds (4 per worker, 512
    // at least: fewer cost half the throughput on a busy machine).
    let workers = s.pool.workers();
    let claimed = s.in_flight();
    let mut room = Room {
        jobs: workers.saturating_mul(4).max(CLAIM).saturating_sub(claimed),
        bytes: BODIES.saturating_sub(d.bytes.load(Ordering::Acquire)),
        free: workers.max(1).saturating_sub(claimed),
    };
    // Bodies held by the pool at most (one job at least, whatever its
    // size, when none is held): memory follows the workers, not the store.
    if room.bytes == 0 && claimed > 0 {
        room.jobs = 0;
        room.free = 0;
    }
    let (due, ok) = match d.store.claim(room) {
        Ok(due) => (due, true),
        Err(e) => {
            log::error!("reqpool: outbox could not claim jobs: {e}");
            s.health.failed(&e.to_string());
            (Vec::new(), false)
        }
    };
    s.handed(due.len());
    for job in due {
        deliver(d, job);
    }
    ok
}

/// Hands one job to the pool; its end is recorded by `finish`. A job
/// whose consumers stopped `max_attempts` times while it was in flight
/// (it may be what kills them) is dead without being sent again.
fn deliver<S: Store>(d: &Arc<Dispatcher<S>>, mut job: Claimed<S::Receipt>) {
    let s = &d.shared;
    if job.stops > 0 && job.attempts >= s.options.retry.max_attempts {
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
        d.note(job, v);
        return;
    }
    if s.paused.is_paused(&job.stored.url) {
        // Not sent, not counted: it waits for its endpoint's resume.
        let v = verdict::Verdict {
            attempts: job.attempts,
            tries: job.tries,
            end: End::Later {
                at: now_ms().saturating_add(super::store::millis(super::pause::LOOK_AGAIN)),
                error: Some("its endpoint is paused (it answered 410 Gone): Outbox::resume".into()),
                throttled: None,
            },
        };
        d.note(job, v);
        return;
    }
    let stored = &mut job.stored;
    let size = stored.body.as_ref().map_or(0, Vec::len);
    d.bytes.fetch_add(size, Ordering::AcqRel);
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
    let d2 = Arc::clone(d);
    let (id, attempt) = (job.id, job.tries.saturating_add(1));
    let key = job.stored.key.clone().unwrap_or_default();
    s.lineage.deliver(id, &key, attempt, move || {
        req.send().on_complete(Box::new(move |r| {
            d2.bytes.fetch_sub(size, Ordering::AcqRel);
            d2.finish(job, r);
        }));
    });
}
