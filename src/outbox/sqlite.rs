//! The outbox's store on a local SQLite file: one table of jobs, a state
//! per job, each call one transaction.

use super::file::{self, DEAD, DELIVERED, IN_FLIGHT, PENDING, sql};
use super::store::{Answer, Claimed, End, Inserted, Row, Store};
use super::{DeadJob, Delivered, Durability, JobId, OutboxStats, now_ms};
use crate::error::Error;
use crate::prepare::Stored;
use crate::sync::lock;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// An outbox file, open in this process only.
pub(super) struct Sqlite {
    db: Mutex<Connection>,
    path: PathBuf,
    /// Jobs at most pending or in flight (0: no limit).
    maxlen: usize,
}

impl Sqlite {
    /// Opens (or creates) the file at `path`; see [`file::open`].
    pub(super) fn open(
        path: &Path,
        durability: Durability,
        maxlen: usize,
    ) -> Result<Sqlite, Error> {
        Ok(Sqlite {
            db: Mutex::new(file::open(path, durability)?),
            path: path.to_path_buf(),
            maxlen,
        })
    }
}

impl Store for Sqlite {
    /// One transaction: each new key inserted, each known key its
    /// existing job (nothing sent again).
    fn insert(&self, rows: &[&Row]) -> Result<Vec<Inserted>, Error> {
        let mut db = lock(&self.db);
        let tx = db.transaction().map_err(sql)?;
        let mut room = if self.maxlen == 0 {
            usize::MAX
        } else {
            let n: i64 = tx
                .prepare_cached("SELECT count(*) FROM jobs WHERE state IN (?1, ?2)")
                .and_then(|mut st| st.query_row(params![PENDING, IN_FLIGHT], |r| r.get(0)))
                .map_err(sql)?;
            self.maxlen
                .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX))
        };
        // Due from now: jobs go out in the order they came, a retry at
        // its time among them.
        let now = now_ms();
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            if room == 0 {
                // Full: a known key still gets its job.
                let known = tx
                    .prepare_cached("SELECT id FROM jobs WHERE key = ?1")
                    .and_then(|mut st| st.query_row([&r.key], |row| row.get(0)).optional())
                    .map_err(sql)?;
                ids.push(known.map(|id| (id, false)).ok_or(Error::QueueFull));
                continue;
            }
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO jobs (key, method, url, headers, body, state, next_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(key) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![r.key, r.method, r.url, r.headers, r.body, PENDING, now])
                })
                .map_err(sql)?;
            let id = if inserted == 1 {
                tx.last_insert_rowid()
            } else {
                tx.prepare_cached("SELECT id FROM jobs WHERE key = ?1")
                    .and_then(|mut st| st.query_row([&r.key], |row| row.get(0)))
                    .map_err(sql)?
            };
            if inserted == 1 {
                room -= 1;
            }
            ids.push(Ok((id, inserted == 1)));
        }
        tx.commit().map_err(sql)?;
        Ok(ids)
    }

    /// Marks the jobs due now as in flight in one statement.
    fn claim(&self, room: usize) -> Result<Vec<Claimed>, Error> {
        if room == 0 {
            return Ok(Vec::new());
        }
        let db = lock(&self.db);
        let mut st = db
            .prepare_cached(
                "UPDATE jobs SET state = ?1 WHERE id IN (
                     SELECT id FROM jobs WHERE state = ?2 AND next_at <= ?3 ORDER BY next_at, id LIMIT ?4)
                 RETURNING id, key, method, url, headers, body, attempts",
            )
            .map_err(sql)?;
        let rows = st
            .query_map(
                params![
                    IN_FLIGHT,
                    PENDING,
                    now_ms(),
                    i64::try_from(room).unwrap_or(i64::MAX)
                ],
                |r| {
                    let headers: String = r.get(4)?;
                    Ok(Claimed {
                        id: r.get(0)?,
                        attempts: r.get(6)?,
                        stored: Stored {
                            key: Some(r.get(1)?),
                            method: r.get(2)?,
                            url: r.get(3)?,
                            headers: serde_json::from_str(&headers).unwrap_or_default(),
                            body: r.get(5)?,
                        },
                        entry: String::new(),
                    })
                },
            )
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// One transaction for many answers. A delivered job keeps its key
    /// (and its reply) with the time of delivery in `next_at`, for the
    /// retention.
    fn write(&self, answers: &[Answer]) -> Result<(), Error> {
        write(&mut lock(&self.db), answers).map_err(sql)
    }

    fn next_due(&self) -> Result<Option<i64>, Error> {
        lock(&self.db)
            .query_row(
                "SELECT min(next_at) FROM jobs WHERE state = ?1",
                [PENDING],
                |r| r.get(0),
            )
            .map_err(sql)
    }

    /// The smallest time of a due pending job: its enqueue or its retry.
    fn oldest_due(&self) -> Result<Option<i64>, Error> {
        lock(&self.db)
            .prepare_cached("SELECT min(next_at) FROM jobs WHERE state = ?1 AND next_at <= ?2")
            .and_then(|mut st| st.query_row(params![PENDING, now_ms()], |r| r.get(0)))
            .map_err(sql)
    }

    /// Jobs pending or in flight (an indexed count).
    fn unfinished(&self) -> Result<usize, Error> {
        lock(&self.db)
            .prepare_cached("SELECT count(*) FROM jobs WHERE state IN (?1, ?2)")
            .and_then(|mut st| st.query_row(params![PENDING, IN_FLIGHT], |r| r.get::<_, i64>(0)))
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(sql)
    }

    /// Removes delivered jobs older than `retention`.
    fn tidy(&self, retention: Duration) -> Result<(), Error> {
        if retention == Duration::MAX {
            return Ok(());
        }
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(keep_ms);
        lock(&self.db)
            .prepare_cached("DELETE FROM jobs WHERE state = ?1 AND next_at < ?2")
            .and_then(|mut st| st.execute(params![DELIVERED, before]))
            .map(drop)
            .map_err(sql)
    }

    fn tidy_every(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn stats(&self) -> Result<OutboxStats, Error> {
        let db = lock(&self.db);
        let mut st = db
            .prepare_cached("SELECT state, count(*) FROM jobs GROUP BY state")
            .map_err(sql)?;
        let mut out = OutboxStats::default();
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(sql)?;
        for row in rows {
            let (state, n) = row.map_err(sql)?;
            let n = u64::try_from(n).unwrap_or(0);
            match state {
                PENDING => out.pending = n,
                IN_FLIGHT => out.in_flight = n,
                DELIVERED => out.delivered = n,
                _ => out.dead = n,
            }
        }
        Ok(out)
    }

    fn dead(&self) -> Result<Vec<DeadJob>, Error> {
        let db = lock(&self.db);
        let mut st = db
            .prepare("SELECT id, key, method, url, coalesce(last_error, ''), attempts FROM jobs WHERE state = ?1 ORDER BY id")
            .map_err(sql)?;
        let rows = st
            .query_map([DEAD], |r| {
                Ok(DeadJob::new(
                    JobId(r.get(0)?),
                    r.get(1)?,
                    &r.get::<_, String>(2)?,
                    &r.get::<_, String>(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    fn requeue(&self, id: JobId) -> Result<bool, Error> {
        lock(&self.db)
            .execute(
                "UPDATE jobs SET state = ?1, attempts = 0, next_at = 0 WHERE id = ?2 AND state = ?3",
                params![PENDING, id.0, DEAD],
            )
            .map(|n| n == 1)
            .map_err(sql)
    }

    fn forget(&self, id: JobId) -> Result<bool, Error> {
        lock(&self.db)
            .execute(
                "DELETE FROM jobs WHERE id = ?1 AND state IN (?2, ?3)",
                params![id.0, DELIVERED, DEAD],
            )
            .map(|n| n == 1)
            .map_err(sql)
    }

    fn reply(&self, id: JobId) -> Result<Option<Delivered>, Error> {
        let db = lock(&self.db);
        let row: Option<(Option<i64>, Option<Vec<u8>>)> = db
            .query_row(
                "SELECT status, reply FROM jobs WHERE id = ?1 AND state = ?2",
                params![id.0, DELIVERED],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql)?;
        Ok(row.and_then(|(status, body)| Delivered::new(status?, body)))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// One transaction for many answers; a delivered job with no reply kept
/// and no retention (`forget`) goes at once.
fn write(db: &mut Connection, answers: &[Answer]) -> Result<(), rusqlite::Error> {
    let tx = db.transaction()?;
    let gone: Vec<i64> = answers
        .iter()
        .filter(|a| matches!(a.end, End::Delivered { forget: true, .. }))
        .map(|a| a.id)
        .collect();
    if !gone.is_empty() {
        // In one statement.
        let ids = serde_json::to_string(&gone).unwrap_or_default();
        tx.prepare_cached("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?1))")?
            .execute([ids])?;
    }
    for a in answers {
        let (id, attempts) = (a.id, a.attempts);
        match &a.end {
            End::Delivered { forget: true, .. } => {}
            End::Delivered { status, body, .. } => {
                // The request itself is no longer needed; the key stays,
                // so the same job is never sent again.
                tx.prepare_cached(
                    "UPDATE jobs SET state = ?1, status = ?2, reply = ?3, body = NULL, headers = '[]', attempts = ?4, next_at = ?5 WHERE id = ?6",
                )?
                .execute(params![DELIVERED, status, body, attempts, now_ms(), id])?;
            }
            End::Later {
                at, error: None, ..
            } => {
                tx.prepare_cached("UPDATE jobs SET state = ?1, next_at = ?2 WHERE id = ?3")?
                    .execute(params![PENDING, at, id])?;
            }
            End::Later {
                at,
                error: Some(text),
                ..
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
