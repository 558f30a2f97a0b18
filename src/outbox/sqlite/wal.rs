//! The outbox file's WAL watched: SQLite keeps writing to the WAL it
//! opened even when the file is deleted or replaced under it (by hand, by
//! a cleaning job), and what it holds is then lost with the process,
//! although every `enqueue` returned `Ok`. Before each commit of new jobs
//! and at each housekeeping round the WAL is looked at (one `stat`); one
//! that is gone or another file is written back into the database (a
//! checkpoint from the WAL still open) and made again, and this is said
//! at `error`. Nothing acknowledged is lost.

use super::error::sql;
use crate::error::Error;
use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// Which file a WAL is: its device and inode (on Unix; elsewhere only
/// whether it is there).
type Identity = (u64, u64);

/// The WAL of one open outbox file, as last seen.
pub(super) struct Watch {
    path: PathBuf,
    seen: Option<Identity>,
}

impl Watch {
    /// The WAL of the database file at `db`, not seen yet.
    pub(super) fn new(db: &Path) -> Watch {
        let mut name = db.as_os_str().to_owned();
        name.push("-wal");
        Watch {
            path: PathBuf::from(name),
            seen: None,
        }
    }

    /// Checks that the WAL `conn` writes to is still the file at its
    /// path; if it was deleted or replaced, writes it back into the
    /// database and makes a new one.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the WAL cannot be written back or made again.
    pub(super) fn keep(&mut self, conn: &Connection) -> Result<(), Error> {
        let now = identity(&self.path);
        match (self.seen, now) {
            (Some(seen), Some(now)) if seen == now => return Ok(()),
            (None, _) => {
                self.seen = now;
                return Ok(());
            }
            _ => {}
        }
        log::error!(
            "reqpool: outbox file {}: its WAL was deleted or replaced while in use; what it held is written back to the file, and a new WAL made",
            self.path.display()
        );
        // The checkpoint reads the WAL still open, whatever its path now
        // holds; leaving WAL mode and coming back makes a new one there.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(sql)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
            .map_err(sql)?;
        let back: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("delete") || !back.eq_ignore_ascii_case("wal") {
            return Err(Error::storage(
                crate::error::StorageKind::Io,
                format!("could not make the WAL again ({mode}, {back})"),
            ));
        }
        // The new WAL comes with the next write: seen then.
        self.seen = None;
        Ok(())
    }
}

#[cfg(unix)]
fn identity(path: &Path) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path) -> Option<Identity> {
    path.exists().then_some((0, 0))
}
