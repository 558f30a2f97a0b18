//! The outbox's store on a local SQLite file (feature `sqlite`): one
//! table of jobs, a state per job, each call one transaction. The file is
//! opened, checked and brought to its schema in `file.rs`, known by its
//! mark in `mark.rs`, its WAL watched in `wal.rs`; the statements on rows
//! are in `rows.rs`.

mod error;
mod file;
mod mark;
mod rows;
mod wal;

pub use file::Durability;

use super::store::{
    Admin, Answer, Claimed, DeadJob, Delivered, Delivery, Housekeeping, Inserted, JobId,
    LONGEST_WAIT, OutboxStats, Room, Row, millis, now_ms,
};
use crate::error::Error;
use crate::sync::lock;
use error::sql;
use file::{DEAD, DELIVERED, IN_FLIGHT, PENDING};
use rusqlite::{Connection, OptionalExtension, params};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// An outbox file, open in this process only.
pub(super) struct Sqlite {
    db: Mutex<Connection>,
    /// Its WAL, looked at before new jobs are committed.
    wal: Mutex<wal::Watch>,
    path: PathBuf,
    /// Jobs at most pending or in flight (0: no limit).
    max_queued: usize,
    /// How long a delivered job stays (`Duration::MAX`: kept; zero: a
    /// job with no reply kept goes at once).
    retention: Duration,
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
        max_queued: usize,
        retention: Duration,
    ) -> Result<Sqlite, Error> {
        let db = file::open(path, durability)?;
        let mut wal = wal::Watch::new(path);
        wal.keep(&db)?;
        Ok(Sqlite {
            db: Mutex::new(db),
            wal: Mutex::new(wal),
            path: path.to_path_buf(),
            max_queued,
            retention,
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

/// A delivered job's status, reply, and mark of a reply cut off.
type StoredReply = (Option<i64>, Option<Vec<u8>>, Option<String>);

impl Delivery for Sqlite {
    type Receipt = i64;

    /// One transaction: each new key inserted, each known key its
    /// existing job (nothing sent again), each row all or nothing
    /// (one that fails is that row's error, and the others are written).
    fn insert(&self, rows: &[&Row]) -> Result<Vec<Inserted>, Error> {
        let mut db = lock(&self.db);
        lock(&self.wal).keep(&db)?;
        let tx = db.transaction().map_err(sql)?;
        let mut room = if self.max_queued == 0 {
            usize::MAX
        } else {
            let n: i64 = tx
                .prepare_cached("SELECT count(*) FROM jobs WHERE state IN (?1, ?2)")
                .and_then(|mut st| st.query_row(params![PENDING, IN_FLIGHT], |r| r.get(0)))
                .map_err(sql)?;
            self.max_queued
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
        let mut ins = rows::insert_statement(&tx).map_err(sql)?;
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
            match rows::insert_row(&tx, &mut ins, r, last + 1, now) {
                Ok((id, new)) => {
                    if new {
                        room -= 1;
                        last = id;
                    }
                    ids.push(Ok((id, new)));
                }
                // This row alone: the others of the commit are kept.
                Err(rows::Fate::Row(e)) => ids.push(Err(sql(e))),
                // SQLite ended the transaction (a full disk, an I/O
                // error): nothing of it is kept.
                Err(rows::Fate::All(e)) => return Err(sql(e)),
            }
        }
        drop(ins);
        tx.commit().map_err(sql)?;
        Ok(ids)
    }

    /// Marks the jobs due now as in flight, in one transaction.
    ///
    /// A job that was in flight at two stops of its process (`stops > 1`)
    /// may be what stops it: it goes alone, with nothing else of this
    /// outbox in flight (new claims wait until the ones in flight end), so
    /// that its next stop is its own (see [`file::open`]).
    fn claim(&self, room: Room) -> Result<Vec<Claimed<i64>>, Error> {
        let Room {
            jobs: room, bytes, ..
        } = room;
        if room == 0 {
            return Ok(Vec::new());
        }
        let mut db = lock(&self.db);
        // One transaction: one commit per claim.
        let db = db.transaction().map_err(sql)?;
        let now = now_ms();
        use std::sync::atomic::Ordering::{Acquire, Release};
        if !self.suspects.load(Acquire) {
            let out = rows::claim_in(&db, now, room, bytes, false)?;
            db.commit().map_err(sql)?;
            return Ok(out);
        }
        let (flying, suspect_flying, suspect_due): (i64, i64, i64) = db
            .prepare_cached(
                "SELECT (SELECT count(*) FROM jobs WHERE state = ?1),
                        (SELECT count(*) FROM jobs WHERE state = ?1 AND stops > 1),
                        EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_suspect WHERE state = 0 AND stops > 1 AND next_at <= ?2 AND ?3 = 0)",
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
                    "SELECT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_suspect WHERE state = 0 AND stops > 1)",
                    [],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            if left == 0 {
                self.suspects.store(false, Release);
            }
        }
        let out = rows::claim_in(&db, now, room, bytes, suspect_due == 1)?;
        db.commit().map_err(sql)?;
        Ok(out)
    }

    /// One transaction for many answers. A delivered job keeps its key
    /// (and its reply) with the time of delivery in `next_at`, for the
    /// retention.
    fn write(&self, answers: &[Answer<i64>]) -> Result<(), Error> {
        rows::write(&mut lock(&self.db), answers, self.retention.is_zero()).map_err(sql)
    }

    fn next_due(&self) -> Result<Option<i64>, Error> {
        lock(&self.db)
            .prepare_cached("SELECT min(next_at) FROM jobs WHERE state = ?1")
            .and_then(|mut st| st.query_row([PENDING], |r| r.get(0)))
            .map_err(sql)
    }

    /// Nothing to hand back: the file is this process's alone, and what
    /// it claimed is found in flight by the next open.
    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

impl Admin for Sqlite {
    /// Jobs pending or in flight (an indexed count).
    fn unfinished(&self) -> Result<usize, Error> {
        lock(&self.db)
            .prepare_cached("SELECT count(*) FROM jobs WHERE state IN (?1, ?2)")
            .and_then(|mut st| st.query_row(params![PENDING, IN_FLIGHT], |r| r.get::<_, i64>(0)))
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(sql)
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

    /// The smallest time of a due pending job: its enqueue or its retry.
    fn oldest_due(&self) -> Result<Option<i64>, Error> {
        lock(&self.db)
            .prepare_cached("SELECT min(next_at) FROM jobs WHERE state = ?1 AND next_at <= ?2")
            .and_then(|mut st| st.query_row(params![PENDING, now_ms()], |r| r.get(0)))
            .map_err(sql)
    }
}

impl Housekeeping for Sqlite {
    fn every(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// Keeps the WAL (see [`super::wal`]), makes due now the jobs whose
    /// time is too far ahead to trust, and removes delivered jobs older
    /// than the retention.
    fn tidy(&self) -> Result<(), Error> {
        let retention = self.retention;
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
}

impl fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path.display().to_string())
    }
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
        let store =
            Sqlite::open(&dir.join("calls.db"), Durability::Process, 0, Duration::MAX).unwrap();
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
            order: None,
        };
        // A body over the limit (the two statements of a large body,
        // in a savepoint), and a key over it with a small body (one
        // statement, undone by SQLite alone).
        let long_key = "k".repeat(100 * 1024);
        let rows = [
            row("a", 10),
            row("big", 100 * 1024),
            row("c", 10),
            row("a", 10),
            row(&long_key, 10),
            row("d", 10),
        ];
        let out = store.insert(&rows.iter().collect::<Vec<_>>()).unwrap();
        assert!(matches!(out[0], Ok((_, true))), "{:?}", out[0]);
        for n in [1, 4] {
            assert!(
                matches!(&out[n], Err(Error::Storage { reason, .. }) if reason.contains("too big")),
                "{:?}",
                out[n]
            );
        }
        assert!(matches!(out[2], Ok((_, true))), "{:?}", out[2]);
        assert!(matches!(out[5], Ok((_, true))), "{:?}", out[5]);
        // A known key of the same commit still finds its job.
        let first = out[0].as_ref().map(|(id, _)| *id).unwrap();
        assert_eq!(out[3].as_ref().ok(), Some(&(first, false)));
        assert_eq!(store.unfinished().unwrap(), 3);
        let claimed: Vec<String> = store
            .claim(Room {
                jobs: 10,
                bytes: usize::MAX,
                free: 10,
            })
            .unwrap()
            .into_iter()
            .filter_map(|c| c.stored.key)
            .collect();
        assert_eq!(claimed, ["a", "c", "d"]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
