//! How an outbox knows its own file: SQLite's `application_id` (a field of
//! the file's header that programs set to say whose file it is) holds
//! [`APPLICATION_ID`], written when reqpool creates the file. A file
//! without the mark is another program's and is left as it was: no
//! pragma written, no journal mode changed, no table made, no checkpoint.
//! Two files without it are taken: an empty one (made an outbox: the mark
//! is its first write, its tables follow), and an outbox written before
//! the mark existed (exactly the format of reqpool until then:
//! `user_version` 1, in WAL, the table `jobs` with its columns and indexes
//! and nothing else; no other program makes that by accident), which is
//! marked at its first open.
//!
//! The header is read first, as bytes: a file that is not SQLite, that
//! another program marked, or that is unmarked and not in WAL (every
//! outbox is) is refused without SQLite opening it. Only an unmarked file
//! in WAL, where the header may be older than the WAL, is looked at
//! through SQLite, reading only.

use super::error::sql;
use crate::error::{Error, StorageKind};
use rusqlite::Connection;
use rusqlite::config::DbConfig;
use std::io::Read;
use std::path::{Path, PathBuf};

/// reqpool's mark: `rqpl` in ASCII.
pub(super) const APPLICATION_ID: i32 = 0x7271_706C;

/// What a file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// reqpool's mark.
    Marked,
    /// No byte yet: a new file.
    Empty,
    /// No mark, in WAL: maybe an outbox of before the mark; SQLite
    /// decides, as the WAL may hold what the header does not say yet.
    Unmarked,
}

/// Reads the header of the file at `path` as bytes (SQLite does not
/// open it).
///
/// # Errors
///
/// [`StorageKind::NotAnOutbox`] for a file that is not SQLite, that
/// another program marked, or that has no mark and is not in WAL; a
/// failure to read it is [`StorageKind::Io`].
pub(super) fn look(path: &Path) -> Result<Found, Error> {
    let io = |e: std::io::Error| {
        Error::storage(
            StorageKind::Io,
            format!("cannot read {}: {e}", path.display()),
        )
    };
    let mut head = Vec::with_capacity(100);
    std::fs::File::open(path)
        .and_then(|f| f.take(100).read_to_end(&mut head))
        .map_err(io)?;
    let wal_bytes = std::fs::metadata(wal(path)).map_or(0, |m| m.len());
    if head.is_empty() {
        // A file whose first transaction is still in its WAL is not new.
        return Ok(if wal_bytes == 0 {
            Found::Empty
        } else {
            Found::Unmarked
        });
    }
    if head.len() < 100 || !head.starts_with(b"SQLite format 3\0") {
        return Err(foreign("not a SQLite database".into()));
    }
    let id = i32::from_be_bytes([head[68], head[69], head[70], head[71]]);
    if id == APPLICATION_ID {
        return Ok(Found::Marked);
    }
    if id != 0 {
        return Err(foreign(format!(
            "a SQLite database of another program (application_id {id:#x})"
        )));
    }
    if head[18] != 2 || head[19] != 2 {
        return Err(no_mark());
    }
    Ok(Found::Unmarked)
}

/// Marks the file open on `db` as an outbox, if `found` says it may be
/// one: an empty file, or an unmarked file in WAL that SQLite shows to be
/// an outbox of before the mark (read only until then).
///
/// # Errors
///
/// [`StorageKind::NotAnOutbox`] for an unmarked file that is not such an
/// outbox (nothing of it changed, its WAL left as it was); a failure to
/// read or write it as its kind says.
pub(super) fn take(db: &Connection, path: &Path, found: Found) -> Result<(), Error> {
    if found == Found::Unmarked {
        // A WAL that is there is another program's: closing must not
        // checkpoint it into its file. (One that this connection makes is
        // empty, and removed by the checkpoint at close.)
        if std::fs::metadata(wal(path)).is_ok_and(|m| m.len() > 0) {
            db.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
                .map_err(sql)?;
        }
        let id: i64 = db
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(sql)?;
        if id == i64::from(APPLICATION_ID) {
            // Marked in the WAL, not yet in the header.
            return Ok(());
        }
        before_the_mark(db)?;
        db.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
            .map_err(sql)?;
    }
    if found != Found::Marked {
        db.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))
            .map_err(sql)?;
    }
    Ok(())
}

/// The file's WAL: its name and `-wal`.
fn wal(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The columns of `jobs` as reqpool 0.1 made them: name, type, NOT NULL,
/// place in the primary key.
const COLUMNS: [(&str, &str, bool, i64); 12] = [
    ("id", "INTEGER", false, 1),
    ("key", "TEXT", true, 0),
    ("method", "TEXT", true, 0),
    ("url", "TEXT", true, 0),
    ("headers", "TEXT", true, 0),
    ("body", "BLOB", false, 0),
    ("state", "INTEGER", true, 0),
    ("attempts", "INTEGER", true, 0),
    ("next_at", "INTEGER", true, 0),
    ("last_error", "TEXT", false, 0),
    ("status", "INTEGER", false, 0),
    ("reply", "BLOB", false, 0),
];

/// Checks, reading only, that an unmarked file in WAL is an outbox of
/// before the mark: `user_version` 1, and its schema exactly the table
/// `jobs` (with its columns), its key's index and `jobs_due`.
fn before_the_mark(db: &Connection) -> Result<(), Error> {
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    if version != 1 {
        return Err(no_mark());
    }
    let mut st = db
        .prepare("SELECT type, name, tbl_name FROM sqlite_master ORDER BY name")
        .map_err(sql)?;
    let objects = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(sql)?;
    let want = [
        ("table", "jobs"),
        ("index", "jobs_due"),
        ("index", "sqlite_autoindex_jobs_1"),
    ];
    let same = objects.len() == want.len()
        && want.iter().all(|(kind, name)| {
            objects
                .iter()
                .any(|(k, n, t)| k == kind && n == name && t == "jobs")
        });
    if !same {
        return Err(no_mark());
    }
    let mut st = db.prepare("PRAGMA table_info(jobs)").map_err(sql)?;
    let columns = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(sql)?;
    let same = columns.len() == COLUMNS.len()
        && columns
            .iter()
            .zip(COLUMNS)
            .all(|((n, t, nn, pk), (wn, wt, wnn, wpk))| {
                n == wn && t.eq_ignore_ascii_case(wt) && *nn == wnn && *pk == wpk
            });
    if !same {
        return Err(no_mark());
    }
    Ok(())
}

fn no_mark() -> Error {
    foreign("a SQLite database without reqpool's mark (application_id): another program's".into())
}

fn foreign(reason: String) -> Error {
    Error::storage(StorageKind::NotAnOutbox, reason)
}
