//! How an outbox delivers: the dispatcher thread that claims due jobs and
//! hands them to the pool, and what each delivery's end writes back.

use super::{DEAD, DELIVERED, GATHER, IN_FLIGHT, PENDING, REPLY_CAP, Shared, now_ms};
use crate::error::Error;
use crate::prepare::Stored;
use crate::response::Response;
use crate::sync::lock;
use rusqlite::params;
use std::sync::Arc;
use std::time::Duration;

impl Shared {
    /// Records how the delivery of job `id` ended.
    fn finish(&self, id: i64, attempts: u32, result: Result<Response, Error>) {
        let db = lock(&self.db);
        let r = match result {
            Ok(resp) => {
                let (status, body) = if self.options.keep_replies {
                    let mut body = resp.body().to_vec();
                    body.truncate(REPLY_CAP);
                    (Some(i64::from(resp.status())), Some(body))
                } else {
                    (None, None)
                };
                // The request itself is no longer needed; the key stays,
                // so the same job is never sent again.
                db.execute(
                    "UPDATE jobs SET state = ?1, status = ?2, reply = ?3, body = NULL, headers = '[]', attempts = ?4 WHERE id = ?5",
                    params![DELIVERED, status, body, attempts, id],
                )
            }
            // Not tried (the pool was shut down, or the job cancelled): it
            // waits a second rather than spin on a pool that takes nothing.
            Err(Error::Cancelled | Error::Closed) => db.execute(
                "UPDATE jobs SET state = ?1, next_at = ?2 WHERE id = ?3",
                params![PENDING, now_ms().saturating_add(1_000), id],
            ),
            Err(e) => {
                let text = e.to_string();
                if final_error(&e) || attempts >= self.options.max_attempts {
                    log::warn!(
                        "reqpool: outbox job {id} is dead after {attempts} attempt(s): {text}"
                    );
                    self.pool.inner().report(&format!("outbox job {id}"), &e);
                    db.execute(
                        "UPDATE jobs SET state = ?1, last_error = ?2, attempts = ?3 WHERE id = ?4",
                        params![DEAD, text, attempts, id],
                    )
                } else {
                    let wait = 1_000i64.saturating_mul(1 << attempts.min(8));
                    db.execute(
                        "UPDATE jobs SET state = ?1, last_error = ?2, attempts = ?3, next_at = ?4 WHERE id = ?5",
                        params![PENDING, text, attempts, now_ms().saturating_add(wait), id],
                    )
                }
            }
        };
        drop(db);
        if let Err(e) = r {
            log::error!("reqpool: outbox could not record job {id}: {e}");
        }
        self.wake();
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

/// The dispatcher: hands due jobs to the pool, and sleeps until the next
/// one is due or something changes.
pub(super) fn dispatch(s: &Arc<Shared>) {
    while !s.closing() {
        // Let the enqueues and answers of the next moment gather: one
        // claim for many jobs instead of a write per wake-up.
        std::thread::sleep(GATHER);
        let due = claim_due(s).unwrap_or_else(|e| {
            log::error!("reqpool: outbox could not read its file: {e}");
            Vec::new()
        });
        for (id, attempts, stored) in due {
            deliver(s, id, attempts + 1, stored);
        }
        let next = next_due(s).unwrap_or(None);
        let wait = match next {
            Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
            None => Duration::from_secs(1),
        }
        .min(Duration::from_secs(1));
        let guard = lock(&s.signal);
        if !*guard {
            let _ = s
                .cond
                .wait_timeout(guard, wait.max(Duration::from_millis(1)));
        }
    }
}

/// Marks the jobs due now as in flight and returns them.
fn claim_due(s: &Shared) -> Result<Vec<(i64, u32, Stored)>, rusqlite::Error> {
    let mut db = lock(&s.db);
    let tx = db.transaction()?;
    let mut out = Vec::new();
    {
        let mut st = tx.prepare_cached(
            "SELECT id, key, method, url, headers, body, attempts FROM jobs WHERE state = ?1 AND next_at <= ?2 ORDER BY next_at, id LIMIT 512",
        )?;
        let rows = st.query_map(params![PENDING, now_ms()], |r| {
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
        })?;
        for row in rows {
            out.push(row?);
        }
    }
    for (id, _, _) in &out {
        tx.execute(
            "UPDATE jobs SET state = ?1 WHERE id = ?2",
            params![IN_FLIGHT, id],
        )?;
    }
    tx.commit()?;
    Ok(out)
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
