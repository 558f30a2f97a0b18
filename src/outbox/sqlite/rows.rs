//! The statements that write and read the rows of jobs: new jobs
//! inserted (each all or nothing), due jobs claimed (a suspect
//! alone), and answers written, each call one transaction.

use super::error::sql;
use super::file::{DEAD, DELIVERED, IN_FLIGHT, PENDING};
use crate::error::Error;
use crate::outbox::store::{Answer, Claimed, End, Row, now_ms};
use crate::prepare::Stored;
use rusqlite::{CachedStatement, Connection, params};

/// Marks at most `room` due jobs in flight, of `bytes` of bodies at most
/// (but one job at least), and returns them: a suspect alone if
/// `suspects`, else the retries due, then the jobs in the order they
/// came. A claim does not rewrite a body: bodies live in their own table.
pub(super) fn claim_in(
    db: &Connection,
    now: i64,
    room: usize,
    bytes: usize,
    suspects: bool,
) -> Result<Vec<Claimed<i64>>, Error> {
    // (States written out, not bound: a partial index is used only
    // for a condition SQLite can see when it prepares the statement.
    // And named: SQLite's planner, which knows nothing of the partial
    // index's few rows, would rather walk every pending job in
    // `jobs_due`, a claim as slow as the backlog is long.)
    // A job with an order key goes only as the first of its key not
    // over (pending or in flight): not beside the one in flight, nor
    // before one that waits for its retry.
    let picks: &[&str] = if suspects {
        &[
            "SELECT id FROM jobs INDEXED BY jobs_suspect WHERE state = 0 AND stops > 1 AND next_at <= ?2 AND ?1 = 0 AND (order_key IS NULL OR id = (SELECT min(o.id) FROM jobs o WHERE o.order_key = jobs.order_key AND o.state IN (0, 1))) ORDER BY next_at, id LIMIT min(1, ?3)",
        ]
    } else {
        &[
            "SELECT id FROM jobs INDEXED BY jobs_retry WHERE state = 0 AND tries > 0 AND next_at <= ?2 AND ?1 = 0 AND (order_key IS NULL OR id = (SELECT min(o.id) FROM jobs o WHERE o.order_key = jobs.order_key AND o.state IN (0, 1))) ORDER BY next_at, id LIMIT ?3",
            "SELECT id FROM jobs WHERE state = ?1 AND next_at <= ?2 AND (order_key IS NULL OR id = (SELECT min(o.id) FROM jobs o WHERE o.order_key = jobs.order_key AND o.state IN (0, 1))) ORDER BY next_at, id LIMIT ?3",
        ]
    };
    let mut ids: Vec<i64> = Vec::new();
    // A retry due is found by both picks: taken once.
    let mut taken = std::collections::HashSet::new();
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
            if !taken.insert(id) {
                continue;
            }
            total = total.saturating_add(len);
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // One statement marks them in flight and reads them back.
    let list = serde_json::to_string(&ids).unwrap_or_default();
    let mut st = db
        .prepare_cached(
            "UPDATE jobs SET state = ?1 WHERE id IN (SELECT value FROM json_each(?2))
             RETURNING id, key, method, url, headers,
                       coalesce(body, (SELECT b.body FROM bodies b WHERE b.id = jobs.id)),
                       attempts, tries, stops, created",
        )
        .map_err(sql)?;
    let mut out: Vec<Claimed<i64>> = st
        .query_map(params![IN_FLIGHT, list], claimed)
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    // In the order they were picked.
    let place: std::collections::HashMap<i64, usize> =
        ids.iter().enumerate().map(|(n, &id)| (id, n)).collect();
    out.sort_unstable_by_key(|c| place.get(&c.id).copied());
    Ok(out)
}

// The claim's SQL writes the pending state out as 0, in flight as 1.
const _: () = assert!(PENDING == 0 && IN_FLIGHT == 1);

/// Bodies up to this size stay in the job's row.
const INLINE_BODY: usize = 4 * 1024;

/// A job as a claim returns it.
fn claimed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Claimed<i64>> {
    let headers: String = r.get(4)?;
    let id = r.get(0)?;
    Ok(Claimed {
        id,
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
        receipt: id,
    })
}

/// A stored count as a `u32`: negative is 0, too large is `u32::MAX`.
pub(super) fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// How a row's insert failed.
pub(super) enum Fate {
    /// The row was undone; the transaction goes on.
    Row(rusqlite::Error),
    /// The transaction is gone or in doubt: the whole call fails.
    All(rusqlite::Error),
}

/// Inserts one row within the commit's transaction, all or nothing: a
/// row that cannot be written (a body over SQLite's length limit, bad
/// bytes) is undone alone, and the commit's other rows stay. A row with
/// a small body is one statement, which SQLite undoes by itself when it
/// fails; one with a large body is two (the job, its body), in a
/// savepoint of their own. A new job gets `id`, past every id given
/// before (SQLite's own choice, the highest id plus one, gives again the
/// ids of removed jobs). Its id and whether it is new (a known key
/// returns its job).
pub(super) fn insert_row(
    tx: &rusqlite::Transaction<'_>,
    ins: &mut CachedStatement<'_>,
    r: &Row,
    id: i64,
    now: i64,
) -> Result<(i64, bool), Fate> {
    // A small body stays in the job's row (one table written per commit;
    // rewriting it with the row costs little), a large one goes to a
    // table of its own.
    let large = match &r.body {
        Some(b) if b.len() > INLINE_BODY => b,
        small => {
            return insert_job(tx, ins, r, id, now, small.as_deref()).map_err(|e| fate(tx, e));
        }
    };
    tx.prepare_cached("SAVEPOINT enqueue_row")
        .and_then(|mut st| st.execute([]))
        .map_err(Fate::All)?;
    let written = insert_job(tx, ins, r, id, now, None).and_then(|(id, new)| {
        if new {
            // In a table of its own: claims and answers, which change
            // the job's row, never rewrite it.
            tx.prepare_cached("INSERT INTO bodies (id, body) VALUES (?1, ?2)")?
                .execute(params![id, large])?;
        }
        Ok((id, new))
    });
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

/// The statement that inserts a job, prepared once for a commit's rows
/// (for [`insert_row`]).
pub(super) fn insert_statement<'c>(
    tx: &'c rusqlite::Transaction<'_>,
) -> rusqlite::Result<CachedStatement<'c>> {
    tx.prepare_cached(
        "INSERT INTO jobs (id, key, method, url, headers, body, state, next_at, created, order_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(key) DO NOTHING",
    )
}

/// A failed statement's fate: the row's alone, unless SQLite ended the
/// transaction (a full disk, an I/O error).
fn fate(tx: &rusqlite::Transaction<'_>, e: rusqlite::Error) -> Fate {
    if tx.is_autocommit() {
        Fate::All(e)
    } else {
        Fate::Row(e)
    }
}

/// The job's row (with `body`, the small one), or the id of the job of
/// its key: one statement that writes, then one that reads.
fn insert_job(
    tx: &rusqlite::Transaction<'_>,
    ins: &mut CachedStatement<'_>,
    r: &Row,
    id: i64,
    now: i64,
    body: Option<&[u8]>,
) -> rusqlite::Result<(i64, bool)> {
    let inserted = ins.execute(params![
        id, r.key, r.method, r.url, r.headers, body, PENDING, now, r.created, r.order
    ])?;
    if inserted == 1 {
        return Ok((id, true));
    }
    let known = tx
        .prepare_cached("SELECT id FROM jobs WHERE key = ?1")?
        .query_row([&r.key], |row| row.get(0))?;
    Ok((known, false))
}

/// One transaction for many answers; with `forget` (no retention) a
/// delivered job with no reply kept goes at once.
pub(super) fn write(
    db: &mut Connection,
    answers: &[Answer<i64>],
    forget: bool,
) -> Result<(), rusqlite::Error> {
    let tx = db.transaction()?;
    let gone = |a: &Answer<i64>| forget && matches!(a.end, End::Delivered { status: None, .. });
    let gone_ids: Vec<i64> = answers
        .iter()
        .filter(|a| gone(a))
        .map(|a| a.receipt)
        .collect();
    if !gone_ids.is_empty() {
        // In one statement.
        let ids = serde_json::to_string(&gone_ids).unwrap_or_default();
        tx.prepare_cached("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?1))")?
            .execute([ids])?;
    }
    for a in answers {
        let (id, attempts, tries) = (a.receipt, a.attempts, a.tries);
        match &a.end {
            _ if gone(a) => {}
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
