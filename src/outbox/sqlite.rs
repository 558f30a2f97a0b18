//! The outbox's store on a local SQLite file: one table of jobs, a state
//! per job, each call one transaction.

use super::file::{self, DEAD, DELIVERED, IN_FLIGHT, PENDING, sql};
use super::store::{Answer, Claimed, End, Inserted, Row, Store};
use super::verdict::{LONGEST_WAIT, millis};
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
    /// Its WAL, looked at before new jobs are committed.
    wal: Mutex<super::wal::Watch>,
    path: PathBuf,
    /// Jobs at most pending or in flight (0: no limit).
    maxlen: usize,
    /// The file may hold suspects (jobs in flight at two stops): true
    /// until a claim finds none. Stops are counted only at open, so once
    /// none is left none comes back.
    suspects: std::sync::atomic::AtomicBool,
}

impl Sqlite {
    /// Opens (or creates) the file at `path`; see [`file::open`].
    pub(super) fn open(
        path: &Path,
        durability: Durability,
        maxlen: usize,
    ) -> Result<Sqlite, Error> {
        let db = file::open(path, durability)?;
        let mut wal = super::wal::Watch::new(path);
        wal.keep(&db)?;
        Ok(Sqlite {
            db: Mutex::new(db),
            wal: Mutex::new(wal),
            path: path.to_path_buf(),
            maxlen,
            suspects: std::sync::atomic::AtomicBool::new(true),
        })
    }
}

impl Sqlite {
    /// Pending jobs whose time is further ahead than the outbox ever
    /// waits are made due now, and said so: the clock that wrote them was
    /// ahead, or the value was written by hand.
    fn distrust_far_times(&self, db: &Connection) -> Result<(), Error> {
        let now = now_ms();
        let far = now.saturating_add(millis(LONGEST_WAIT).saturating_add(60_000));
        let n = db
            .prepare_cached("UPDATE jobs SET next_at = ?1 WHERE state = ?2 AND next_at > ?3")
            .and_then(|mut st| st.execute(params![now, PENDING, far]))
            .map_err(sql)?;
        if n > 0 {
            log::warn!(
                "reqpool: outbox {}: {n} job(s) were due further ahead than the outbox ever waits \
                 (a clock that was ahead, or a hand-written time); due now",
                self.path.display()
            );
        }
        Ok(())
    }
}

/// Marks at most `room` due jobs in flight, of `bytes` of bodies at most
/// (but one job at least), and returns them: a suspect alone if
/// `suspects`, else the retries due, then the jobs in the order they
/// came. A claim does not rewrite a body: bodies live in their own table.
fn claim_in(
    db: &Connection,
    now: i64,
    room: usize,
    bytes: usize,
    suspects: bool,
) -> Result<Vec<Claimed>, Error> {
    // (States written out, not bound: a partial index is used only
    // for a condition SQLite can see when it prepares the statement.)
    let picks: &[&str] = if suspects {
        &[
            "SELECT id FROM jobs WHERE state = 0 AND stops > 1 AND next_at <= ?2 AND ?1 = 0 ORDER BY next_at, id LIMIT min(1, ?3)",
        ]
    } else {
        &[
            "SELECT id FROM jobs WHERE state = 0 AND tries > 0 AND next_at <= ?2 AND ?1 = 0 ORDER BY next_at, id LIMIT ?3",
            "SELECT id FROM jobs WHERE state = ?1 AND next_at <= ?2 ORDER BY next_at, id LIMIT ?3",
        ]
    };
    let mut ids: Vec<i64> = Vec::new();
    let mut total = 0usize;
    'picks: for pick in picks {
        let left = room.saturating_sub(ids.len());
        if left == 0 {
            break;
        }
        let mut st = db
            .prepare_cached(&format!(
                "SELECT j.id, coalesce(length(j.body), 0) + coalesce((SELECT length(b.body) FROM bodies b WHERE b.id = j.id), 0)
                 FROM jobs j WHERE j.id IN ({pick}) ORDER BY j.next_at, j.id"
            ))
            .map_err(sql)?;
        let rows = st
            .query_map(
                params![PENDING, now, i64::try_from(left).unwrap_or(i64::MAX)],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .map_err(sql)?;
        for row in rows {
            let (id, len) = row.map_err(sql)?;
            let len = usize::try_from(len).unwrap_or(0);
            if !ids.is_empty() && total.saturating_add(len) > bytes {
                break 'picks;
            }
            if ids.contains(&id) {
                continue;
            }
            total = total.saturating_add(len);
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = serde_json::to_string(&ids).unwrap_or_default();
    db.prepare_cached("UPDATE jobs SET state = ?1 WHERE id IN (SELECT value FROM json_each(?2))")
        .and_then(|mut st| st.execute(params![IN_FLIGHT, list]))
        .map_err(sql)?;
    let mut st = db
        .prepare_cached(
            "SELECT j.id, j.key, j.method, j.url, j.headers, coalesce(j.body, b.body), j.attempts, j.tries, j.stops, j.created
             FROM jobs j LEFT JOIN bodies b ON b.id = j.id
             WHERE j.id IN (SELECT value FROM json_each(?1))",
        )
        .map_err(sql)?;
    let mut out: Vec<Claimed> = st
        .query_map([list], claimed)
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    // In the order they were picked.
    out.sort_by_key(|c| ids.iter().position(|&i| i == c.id));
    Ok(out)
}

// The claim's SQL writes the pending state out as 0.
const _: () = assert!(PENDING == 0);

/// Bodies up to this size stay in the job's row.
const INLINE_BODY: usize = 4 * 1024;

/// A job as a claim returns it.
fn claimed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Claimed> {
    let headers: String = r.get(4)?;
    Ok(Claimed {
        id: r.get(0)?,
        attempts: count(r.get(6)?),
        tries: count(r.get(7)?),
        stops: count(r.get(8)?),
        created: r.get(9)?,
        stored: Stored {
            key: Some(r.get(1)?),
            method: r.get(2)?,
            url: r.get(3)?,
            headers: serde_json::from_str(&headers).unwrap_or_default(),
            body: r.get(5)?,
        },
        entry: String::new(),
    })
}

/// A delivered job's status, reply, and mark of a reply cut off.
type StoredReply = (Option<i64>, Option<Vec<u8>>, Option<String>);

/// A stored count as a `u32`: negative is 0, too large is `u32::MAX`.
fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

impl Store for Sqlite {
    /// One transaction: each new key inserted, each known key its
    /// existing job (nothing sent again), each row in its own savepoint
    /// (one that fails is that row's error, and the others are written).
    fn insert(&self, rows: &[&Row]) -> Result<Vec<Inserted>, Error> {
        let mut db = lock(&self.db);
        lock(&self.wal).keep(&db)?;
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
        // The last id ever given: the highest of the table's, or of the
        // removed rows' (`job_ids`, kept by a trigger on every delete).
        let mut last: i64 = tx
            .prepare_cached(
                "SELECT max(coalesce((SELECT max(id) FROM jobs), 0), coalesce((SELECT max(last) FROM job_ids), 0))",
            )
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(sql)?;
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
            match insert_row(&tx, r, last + 1, now) {
                Ok((id, new)) => {
                    if new {
                        room -= 1;
                        last = id;
                    }
                    ids.push(Ok((id, new)));
                }
                // This row alone: the others of the commit are kept.
                Err(Fate::Row(e)) => ids.push(Err(sql(e))),
                // SQLite ended the transaction (a full disk, an I/O
                // error): nothing of it is kept.
                Err(Fate::All(e)) => return Err(sql(e)),
            }
        }
        tx.commit().map_err(sql)?;
        Ok(ids)
    }

    /// Marks the jobs due now as in flight, in one transaction.
    ///
    /// A job that was in flight at two stops of its process (`stops > 1`)
    /// may be what stops it: it goes alone, with nothing else of this
    /// outbox in flight (new claims wait until the ones in flight end), so
    /// that its next stop is its own (see [`file::open`]).
    fn claim(&self, room: usize, bytes: usize) -> Result<Vec<Claimed>, Error> {
        if room == 0 {
            return Ok(Vec::new());
        }
        let mut db = lock(&self.db);
        // One transaction: one commit per claim.
        let db = db.transaction().map_err(sql)?;
        let now = now_ms();
        use std::sync::atomic::Ordering::{Acquire, Release};
        if !self.suspects.load(Acquire) {
            let out = claim_in(&db, now, room, bytes, false)?;
            db.commit().map_err(sql)?;
            return Ok(out);
        }
        let (flying, suspect_flying, suspect_due): (i64, i64, i64) = db
            .prepare_cached(
                "SELECT (SELECT count(*) FROM jobs WHERE state = ?1),
                        (SELECT count(*) FROM jobs WHERE state = ?1 AND stops > 1),
                        EXISTS (SELECT 1 FROM jobs WHERE state = 0 AND stops > 1 AND next_at <= ?2 AND ?3 = 0)",
            )
            .and_then(|mut st| {
                st.query_row(params![IN_FLIGHT, now, PENDING], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
            .map_err(sql)?;
        if suspect_flying > 0 || (suspect_due == 1 && flying > 0) {
            return Ok(Vec::new());
        }
        if suspect_flying == 0 && suspect_due == 0 {
            let left: i64 = db
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 0 AND stops > 1)",
                    [],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            if left == 0 {
                self.suspects.store(false, Release);
            }
        }
        let out = claim_in(&db, now, room, bytes, suspect_due == 1)?;
        db.commit().map_err(sql)?;
        Ok(out)
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

    /// Keeps the WAL (see [`super::wal`]), makes due now the jobs whose
    /// time is too far ahead to trust, and removes delivered jobs older
    /// than `retention`.
    fn tidy(&self, retention: Duration) -> Result<(), Error> {
        let db = lock(&self.db);
        lock(&self.wal).keep(&db)?;
        self.distrust_far_times(&db)?;
        if retention == Duration::MAX {
            return Ok(());
        }
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(keep_ms);
        db.prepare_cached("DELETE FROM jobs WHERE state = ?1 AND next_at < ?2")
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
                "UPDATE jobs SET state = ?1, attempts = 0, tries = 0, stops = 0, next_at = 0 WHERE id = ?2 AND state = ?3",
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
        let row: Option<StoredReply> = db
            .query_row(
                "SELECT status, reply, last_error FROM jobs WHERE id = ?1 AND state = ?2",
                params![id.0, DELIVERED],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql)?;
        // A delivered job's last_error is set only for a reply cut off.
        Ok(row.and_then(|(status, body, cut)| Delivered::new(status?, body, cut.is_some())))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// How a row's insert failed.
enum Fate {
    /// The row was undone; the transaction goes on.
    Row(rusqlite::Error),
    /// The transaction is gone or in doubt: the whole call fails.
    All(rusqlite::Error),
}

/// Inserts one row in its own savepoint, within the commit's
/// transaction: a row that cannot be written (a body over SQLite's
/// length limit, bad bytes) is undone alone, and the commit's other rows
/// stay. A new job gets `id`, past every id given before (SQLite's own
/// choice, the highest id plus one, gives again the ids of removed jobs).
/// Its id and whether it is new (a known key returns its job).
fn insert_row(
    tx: &rusqlite::Transaction<'_>,
    r: &Row,
    id: i64,
    now: i64,
) -> Result<(i64, bool), Fate> {
    tx.prepare_cached("SAVEPOINT enqueue_row")
        .and_then(|mut st| st.execute([]))
        .map_err(Fate::All)?;
    // A small body stays in the job's row (one table written per commit;
    // rewriting it with the row costs little), a large one goes to a
    // table of its own.
    let (small, large) = match &r.body {
        Some(b) if b.len() > INLINE_BODY => (None, Some(b)),
        b => (b.as_ref(), None),
    };
    let written = (|| {
        let inserted = tx
            .prepare_cached(
                "INSERT INTO jobs (id, key, method, url, headers, body, state, next_at, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(key) DO NOTHING",
            )?
            .execute(params![id, r.key, r.method, r.url, r.headers, small, PENDING, now, r.created])?;
        if inserted == 1
            && let Some(body) = large
        {
            // In a table of its own: claims and answers, which change
            // the job's row, never rewrite it.
            tx.prepare_cached("INSERT INTO bodies (id, body) VALUES (?1, ?2)")?
                .execute(params![id, body])?;
        }
        let id = if inserted == 1 {
            id
        } else {
            tx.prepare_cached("SELECT id FROM jobs WHERE key = ?1")?
                .query_row([&r.key], |row| row.get(0))?
        };
        Ok((id, inserted == 1))
    })();
    match written {
        Ok(v) => tx
            .prepare_cached("RELEASE enqueue_row")
            .and_then(|mut st| st.execute([]))
            .map(|_| v)
            .map_err(Fate::All),
        Err(e) if tx.is_autocommit() => Err(Fate::All(e)),
        Err(e) => {
            tx.execute_batch("ROLLBACK TO enqueue_row; RELEASE enqueue_row")
                .map_err(Fate::All)?;
            Err(Fate::Row(e))
        }
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
        let (id, attempts, tries) = (a.id, a.attempts, a.tries);
        match &a.end {
            End::Delivered { forget: true, .. } => {}
            End::Delivered {
                status, body, cut, ..
            } => {
                // The request itself is no longer needed; the key stays,
                // so the same job is never sent again. last_error marks a
                // reply cut off.
                let cut = cut.then_some("the reply was over the pool's max_response_bytes");
                tx.prepare_cached(
                    "UPDATE jobs SET state = ?1, status = ?2, reply = ?3, body = NULL, headers = '[]', attempts = ?4, tries = ?5, next_at = ?6, last_error = ?7 WHERE id = ?8",
                )?
                .execute(params![DELIVERED, status, body, attempts, tries, now_ms(), cut, id])?;
                tx.prepare_cached("DELETE FROM bodies WHERE id = ?1")?
                    .execute([id])?;
            }
            End::Later { at, error, .. } => {
                tx.prepare_cached(
                    "UPDATE jobs SET state = ?1, last_error = coalesce(?2, last_error), attempts = ?3, tries = ?4, next_at = ?5 WHERE id = ?6",
                )?
                .execute(params![PENDING, error, attempts, tries, at, id])?;
            }
            End::Dead { error } => {
                tx.prepare_cached(
                    "UPDATE jobs SET state = ?1, last_error = ?2, attempts = ?3, tries = ?4 WHERE id = ?5",
                )?
                .execute(params![DEAD, error, attempts, tries, id])?;
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group commit whose middle row is over SQLite's length limit
    /// (lowered here from its 1 GB to 64 KiB, the same refusal): that row
    /// fails alone, and the rows before and after it are written.
    #[test]
    fn a_row_that_cannot_be_written_fails_alone() {
        let dir =
            std::env::temp_dir().join(format!("reqpool-row-{}-{}", std::process::id(), now_ms()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Sqlite::open(&dir.join("calls.db"), Durability::Process, 0).unwrap();
        lock(&store.db)
            .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, 64 * 1024)
            .unwrap();
        let row = |key: &str, bytes: usize| Row {
            key: key.into(),
            method: "POST".into(),
            url: "http://127.0.0.1:1/".into(),
            headers: "[]".into(),
            body: Some(vec![b'x'; bytes]),
            created: now_ms(),
        };
        let rows = [
            row("a", 10),
            row("big", 100 * 1024),
            row("c", 10),
            row("a", 10),
        ];
        let out = store.insert(&rows.iter().collect::<Vec<_>>()).unwrap();
        assert!(matches!(out[0], Ok((_, true))), "{:?}", out[0]);
        assert!(
            matches!(&out[1], Err(Error::Storage { reason, .. }) if reason.contains("too big")),
            "{:?}",
            out[1]
        );
        assert!(matches!(out[2], Ok((_, true))), "{:?}", out[2]);
        // A known key of the same commit still finds its job.
        let first = out[0].as_ref().map(|(id, _)| *id).unwrap();
        assert_eq!(out[3].as_ref().ok(), Some(&(first, false)));
        assert_eq!(store.unfinished().unwrap(), 2);
        let claimed: Vec<String> = store
            .claim(10, usize::MAX)
            .unwrap()
            .into_iter()
            .filter_map(|c| c.stored.key)
            .collect();
        assert_eq!(claimed, ["a", "c"]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
