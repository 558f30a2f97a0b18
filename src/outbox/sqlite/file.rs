//! The outbox's file: opened (created owner-only), checked (an outbox of
//! this version or older, not another program's database, not in use
//! elsewhere), brought to the current schema, and its jobs in flight when
//! the last process died handed back to the queue.

use super::error::sql;
use crate::error::{Error, StorageKind};
use rusqlite::{Connection, params};
use std::path::Path;

/// The schema this version writes; a file with a newer one is refused,
/// an older one is brought to it. 2: `created`, `tries` and `stops`;
/// bodies in a table of their own.
const SCHEMA: i64 = 3;

/// Pages of WAL between two checkpoints (of 4 KiB: about 40 MiB).
const CHECKPOINT: i64 = 10_000;

/// A job's states in the file.
pub(super) const PENDING: i64 = 0;
pub(super) const IN_FLIGHT: i64 = 1;
pub(super) const DELIVERED: i64 = 2;
pub(super) const DEAD: i64 = 3;

/// What survives what: each commit of the outbox file is flushed as far as
/// this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// A job is in the file once `enqueue` returns, and survives a killed
    /// process (WAL with `synchronous=NORMAL`). The default.
    #[default]
    Process,
    /// As `Process`, and also survives a power loss: an fsync per commit
    /// (`synchronous=FULL`), much slower.
    PowerLoss,
}

/// Opens the outbox file at `path`, with `durability`. Jobs that were in
/// flight when the last process died count a stop each and go again after
/// the jobs already due.
pub(super) fn open(path: &Path, durability: Durability) -> Result<Connection, Error> {
    create_private(path)?;
    let found = super::mark::look(path)?;
    let db = Connection::open(path).map_err(sql)?;
    // A file in use fails at once, instead of after rusqlite's 5 s wait.
    db.busy_timeout(std::time::Duration::ZERO).map_err(sql)?;
    let sync = match durability {
        Durability::Process => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    // Exclusive: a second process gets "database is locked" at once
    // instead of delivering the same jobs.
    db.execute_batch("PRAGMA locking_mode=EXCLUSIVE;")
        .map_err(sql)?;
    // A file without reqpool's mark is left as it was (an empty one gets
    // the mark: its first write).
    super::mark::take(&db, path, found)?;
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    if version > SCHEMA {
        return Err(Error::storage(
            StorageKind::NewerVersion,
            format!("schema {version}, newer than this version's {SCHEMA}"),
        ));
    }
    // Only now, the file known to be an outbox (marked), the writes that
    // make it ready.
    db.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync};"
    ))
    .map_err(sql)?;
    // Every statement the outbox runs stays prepared (rusqlite keeps 16).
    db.set_prepared_statement_cache_capacity(64);
    // The WAL is written back into the file (a checkpoint: two fsyncs,
    // even with synchronous=NORMAL) every CHECKPOINT pages instead of
    // SQLite's 1,000 (4 MiB): at 1,000 the checkpoints took most of an
    // `enqueue_all` and held up delivery. What a commit survives does not
    // change; the WAL grows to about 40 MiB while the file is open, and
    // is written back and removed when it closes.
    db.execute_batch(&format!("PRAGMA wal_autocheckpoint={CHECKPOINT};"))
        .map_err(sql)?;
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS jobs (
             id INTEGER PRIMARY KEY,
             key TEXT NOT NULL UNIQUE,
             method TEXT NOT NULL,
             url TEXT NOT NULL,
             headers TEXT NOT NULL,
             body BLOB,
             state INTEGER NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0,
             next_at INTEGER NOT NULL DEFAULT 0,
             last_error TEXT,
             status INTEGER,
             reply BLOB,
             created INTEGER NOT NULL DEFAULT 0,
             tries INTEGER NOT NULL DEFAULT 0,
             stops INTEGER NOT NULL DEFAULT 0,
             order_key TEXT
         );
         CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, next_at);
         CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
         CREATE TRIGGER IF NOT EXISTS bodies_go AFTER DELETE ON jobs
             BEGIN DELETE FROM bodies WHERE id = OLD.id; END;
         CREATE TABLE IF NOT EXISTS job_ids (last INTEGER NOT NULL);
         INSERT INTO job_ids (rowid, last) VALUES (1, 0) ON CONFLICT DO NOTHING;
         CREATE TRIGGER IF NOT EXISTS job_ids_kept AFTER DELETE ON jobs
             WHEN OLD.id > (SELECT last FROM job_ids)
             BEGIN UPDATE job_ids SET last = OLD.id; END;",
    )
    .map_err(sql)?;
    // Partial indexes: the retries and the suspects due, found without
    // walking a backlog of fresh jobs.
    let indexes =
        "CREATE INDEX IF NOT EXISTS jobs_retry ON jobs(next_at) WHERE state = 0 AND tries > 0;
         CREATE INDEX IF NOT EXISTS jobs_suspect ON jobs(next_at) WHERE state = 0 AND stops > 1;
         CREATE INDEX IF NOT EXISTS jobs_order ON jobs(order_key, id) WHERE order_key IS NOT NULL AND state IN (0, 1);";
    if version == 1 {
        db.execute_batch(
            "BEGIN;
             ALTER TABLE jobs ADD COLUMN created INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE jobs ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE jobs ADD COLUMN stops INTEGER NOT NULL DEFAULT 0;
             COMMIT;",
        )
        .map_err(sql)?;
    }
    if version == 1 || version == 2 {
        db.execute_batch("ALTER TABLE jobs ADD COLUMN order_key TEXT;")
            .map_err(sql)?;
    }
    db.execute_batch(indexes).map_err(sql)?;
    db.execute_batch(&format!("PRAGMA user_version = {SCHEMA};"))
        .map_err(sql)?;
    // What was in flight when the last process died goes again, after
    // what is due already. A job in flight at two stops goes alone from
    // then on (see `Sqlite::claim`); a stop with only one job in flight is
    // that job's own, and counts as its attempt, so a job that kills its
    // process ends at `max_attempts` (after at most `max_attempts + 2`
    // sends), and the jobs that were only beside it never lose one.
    let flying: i64 = db
        .query_row(
            "SELECT count(*) FROM jobs WHERE state = ?1",
            [IN_FLIGHT],
            |r| r.get(0),
        )
        .map_err(sql)?;
    db.execute(
        "UPDATE jobs SET state = ?1, stops = stops + 1, attempts = attempts + ?4, next_at = max(next_at, ?3)
         WHERE state = ?2",
        params![PENDING, IN_FLIGHT, crate::outbox::store::now_ms(), i64::from(flying == 1)],
    )
    .map_err(sql)?;
    Ok(db)
}

/// Creates the file readable and writable by its owner only, if it does
/// not exist (SQLite gives its journal files the same permissions).
fn create_private(path: &Path) -> Result<(), Error> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map(drop).map_err(|e| {
        let kind = match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                StorageKind::ReadOnly
            }
            std::io::ErrorKind::StorageFull => StorageKind::Full,
            _ => StorageKind::Io,
        };
        Error::storage(kind, format!("cannot create {}: {e}", path.display()))
    })
}
