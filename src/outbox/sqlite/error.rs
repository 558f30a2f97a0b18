//! A failure of the outbox file as the crate's typed error, by SQLite's
//! error code.

use crate::error::{Error, StorageKind};

/// `e` as [`Error::Storage`], its kind by SQLite's error code.
pub(super) fn sql(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    let kind = match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => StorageKind::InUse,
        Some(C::NotADatabase) => StorageKind::NotAnOutbox,
        Some(C::ReadOnly) => StorageKind::ReadOnly,
        Some(C::DiskFull) => StorageKind::Full,
        _ => StorageKind::Io,
    };
    Error::storage(kind, e.to_string())
}
