//! How an outbox delivers: the dispatcher thread that claims due jobs and
//! hands them to the pool, and what each delivery's end writes back.

use super::{DEAD, DELIVERED, GATHER, IN_FLIGHT, PENDING, REPLY_CAP, Shared, now_ms};
use crate::error::Error;
use crate::prepare::Stored;
use crate::response::Response;
use crate::sync::lock;
use rusqlite::params;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Jobs handed to the pool at most at once (or 4 per worker, if more).
const CLAIM: usize = 512;

/// How often delivered jobs past their retention are removed.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// How one delivery ended, to be written.
pub(super) struct Answer {
    id: i64,
    attempts: u32,
    end: End,
}

enum End {
    /// Answered: the reply, if kept.
    Delivered {
        status: Option<i64>,
        body: Option<Vec<u8>>,
    },
    /// To be tried again at `at` (ms since the epoch).
    Later { at: i64, error: Option<String> },
    /// Given up.
    Dead { error: String },
}

impl Shared {
    /// Notes how the delivery of job `id` ended; the dispatcher writes it
    /// with the others of the moment in one transaction.
    fn finish(&self, id: i64, attempts: u32, result: Result<Response, Error>) {
        let end = match result {
            Ok(resp) => {
                let (status, body) = if self.options.keep_replies {
                    let mut body = resp.body().to_vec();
                    body.truncate(REPLY_CAP);
                    (Some(i64::from(resp.status())), Some(body))
                } else {
                    (None, None)
                };
                End::Delivered { status, body }
            }
            // Not tried (the pool was shut down, or the job cancelled): it
            // waits a second rather than spin on a pool that takes nothing.
            Err(Error::Cancelled | Error::Closed) => End::Later {
                at: now_ms().saturating_add(1_000),
                error: None,
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
                    End::Later {
                        at: now_ms().saturating_add(wait),
                        error: Some(text),
                    }
                }
            }
        };
        lock(&self.answers).push(Answer { id, attempts, end });
        self.claimed.fetch_sub(1, Ordering::AcqRel);
        if self.closing() {
            // No dispatcher any more: write it now.
            self.write_answers();
        }
        self.answered();
    }

    /// Writes the answers noted so far, in one transaction.
    pub(super) fn write_answers(&self) {
        let answers = std::mem::take(&mut *lock(&self.answers));
        if answers.is_empty() {
            return;
        }
        let mut db = lock(&self.db);
        if let Err(e) = write(&mut db, &answers, self.options.retention.is_zero()) {
            log::error!(
                "reqpool: outbox could not record {} answer(s): {e}",
                answers.len()
            );
        }
        drop(db);
        lock(&self.signal).writes += 1;
        self.written.notify_all();
    }
}

/// One transaction for many answers. A delivered job keeps its key (and
/// its reply) with the time of delivery in `next_at`, for the retention;
/// with no retention it goes at once.
fn write(
    db: &mut rusqlite::Connection,
    answers: &[Answer],
    forget: bool,
) -> Result<(), rusqlite::Error> {
    let tx = db.transaction()?;
    if forget {
        // The delivered ones go in one statement.
        let gone: Vec<i64> = answers
            .iter()
            .filter(|a| matches!(a.end, End::Delivered { .. }))
            .map(|a| a.id)
            .collect();
        if !gone.is_empty() {
            let ids = serde_json::to_string(&gone).unwrap_or_default();
            tx.prepare_cached("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?1))")?
                .execute([ids])?;
        }
    }
    for a in answers {
        let (id, attempts) = (a.id, a.attempts);
        match &a.end {
            End::Delivered { .. } if forget => {}
            End::Delivered { status, body } => {
                // The request itself is no longer needed; the key stays,
                // so the same job is never sent again.
                tx.prepare_cached(
                    "UPDATE jobs SET state = ?1, status = ?2, reply = ?3, body = NULL, headers = '[]', attempts = ?4, next_at = ?5 WHERE id = ?6",
                )?
                .execute(params![DELIVERED, status, body, attempts, now_ms(), id])?;
            }
            End::Later { at, error: None } => {
                tx.prepare_cached("UPDATE jobs SET state = ?1, next_at = ?2 WHERE id = ?3")?
                    .execute(params![PENDING, at, id])?;
            }
            End::Later {
                at,
                error: Some(text),
            } => {
                tx.prepare_cached(
                    "UPDATE jobs SET state = ?1, last_error = ?2, attempts = ?3, next_at = ?4 WHERE id = ?5",
                )?
                .execute(params![PENDING, text, attempts, at, id])?;
            }
            End::Dead { error } => {
                tx.prepare_cached(
                    "UPDATE jobs SET state = ?1, last_error = ?2, attempts = ?3 WHERE id = ?4",
                )?
                .execute(params![DEAD, error, attempts, id])?;
            }
        }
    }
    tx.commit()
}

/// Removes delivered jobs older than `keep`.
fn purge(s: &Shared, keep: Duration) -> Result<usize, rusqlite::Error> {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let before = now_ms().saturating_sub(keep_ms);
    lock(&s.db)
        .prepare_cached("DELETE FROM jobs WHERE state = ?1 AND next_at < ?2")?
        .execute(params![DELIVERED, before])
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
/// them has work.
pub(super) fn dispatch(s: &Arc<Shared>) {
    let mut last_purge = Instant::now();
    let mut last_claim: Option<Instant> = None;
    let mut idle_until = Instant::now();
    loop {
        s.write_answers();
        if s.closing() {
            break;
        }
        if last_claim.is_none_or(|t| t.elapsed() >= GATHER) {
            if s.options.retention != Duration::MAX && last_purge.elapsed() >= PURGE_EVERY {
                last_purge = Instant::now();
                if let Err(e) = purge(s, s.options.retention) {
                    log::error!("reqpool: outbox could not remove old jobs: {e}");
                }
            }
            lock(&s.signal).work = false;
            claim(s);
            last_claim = Some(Instant::now());
            let next = next_due(s).unwrap_or(None);
            let wait = match next {
                Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
                None => Duration::from_secs(1),
            };
            idle_until = Instant::now() + wait.clamp(GATHER, Duration::from_secs(1));
        }
        let next_claim = last_claim.map_or_else(Instant::now, |t| t + GATHER);
        s.wait_for_work(next_claim.max(Instant::now()), idle_until);
    }
    s.write_answers();
}

/// Hands due jobs to the pool: enough to keep every worker busy until the
/// next round, not the whole file.
fn claim(s: &Arc<Shared>) {
    let limit = (4 * s.pool.workers()).max(CLAIM);
    let room = limit.saturating_sub(s.claimed.load(Ordering::Acquire));
    let due = claim_due(s, room).unwrap_or_else(|e| {
        log::error!("reqpool: outbox could not read its file: {e}");
        Vec::new()
    });
    s.claimed.fetch_add(due.len(), Ordering::AcqRel);
    for (id, attempts, stored) in due {
        deliver(s, id, attempts + 1, stored);
    }
}

/// Marks the jobs due now as in flight (at most `room`) and returns them,
/// in one statement.
fn claim_due(s: &Shared, room: usize) -> Result<Vec<(i64, u32, Stored)>, rusqlite::Error> {
    if room == 0 {
        return Ok(Vec::new());
    }
    let db = lock(&s.db);
    let mut st = db.prepare_cached(
        "UPDATE jobs SET state = ?1 WHERE id IN (
             SELECT id FROM jobs WHERE state = ?2 AND next_at <= ?3 ORDER BY next_at, id LIMIT ?4)
         RETURNING id, key, method, url, headers, body, attempts",
    )?;
    let rows = st.query_map(
        params![
            IN_FLIGHT,
            PENDING,
            now_ms(),
            i64::try_from(room).unwrap_or(i64::MAX)
        ],
        |r| {
            let headers: String = r.get(4)?;
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, u32>(6)?,
                Stored {
                    key: Some(r.get(1)?),
                    method: r.get(2)?,
                    url: r.get(3)?,
                    headers: serde_json::from_str(&headers).unwrap_or_default(),
                    body: r.get(5)?,
                },
            ))
        },
    )?;
    rows.collect()
}

fn next_due(s: &Shared) -> Result<Option<i64>, rusqlite::Error> {
    lock(&s.db).query_row(
        "SELECT min(next_at) FROM jobs WHERE state = ?1",
        [PENDING],
        |r| r.get(0),
    )
}

/// Hands one job to the pool; its end is recorded by `finish`.
fn deliver(s: &Arc<Shared>, id: i64, attempts: u32, stored: Stored) {
    let mut req = s.pool.request(&stored.method, &stored.url);
    for (k, v) in &stored.headers {
        if !k.eq_ignore_ascii_case("idempotency-key") {
            req = req.header(k, v);
        }
    }
    if let Some(key) = &stored.key {
        req = req.idempotency_key(key);
    }
    if let Some(body) = stored.body {
        // Its content type is among the stored headers.
        req = req.body(body);
    }
    let s2 = Arc::clone(s);
    req.send()
        .on_complete(Box::new(move |r| s2.finish(id, attempts, r)));
}
