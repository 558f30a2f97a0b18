//! What an outbox keeps its jobs in: the interface the dispatcher, the
//! group commit and the public calls use, whatever the store (a SQLite
//! file, a Redis stream).

use super::{DeadJob, Delivered, JobId, OutboxStats};
use crate::error::Error;
use crate::prepare::Stored;
use std::time::Duration;

/// A job as `enqueue` writes it.
pub(super) struct Row {
    pub(super) key: String,
    pub(super) method: String,
    pub(super) url: String,
    /// The headers as JSON: `[["name", "value"], …]`.
    pub(super) headers: String,
    pub(super) body: Option<Vec<u8>>,
    /// When it was enqueued (ms since the epoch), for
    /// [`max_age`](super::OutboxOptions::max_age).
    pub(super) created: i64,
}

/// One row's fate in [`Store::insert`]: its id and whether it is new, or
/// why it was not taken.
pub(super) type Inserted = Result<(i64, bool), Error>;

/// A job handed out for delivery.
pub(super) struct Claimed {
    pub(super) id: i64,
    /// Deliveries before this one that reached (or may have reached) a
    /// server, and deliveries whose consumer stopped: what
    /// `max_attempts` counts.
    pub(super) attempts: u32,
    /// Every delivery before this one, sent or not: what the backoff
    /// grows with.
    pub(super) tries: u32,
    /// How many of them ended with their consumer stopped (a crash, a
    /// kill, a lease that ran out).
    pub(super) stops: u32,
    /// When it was enqueued (ms since the epoch; 0 if not known).
    pub(super) created: i64,
    pub(super) stored: Stored,
    /// The store's own handle on this delivery (a stream entry's id);
    /// empty when the store needs none.
    pub(super) entry: String,
}

/// How one delivery ended, to be written.
pub(super) struct Answer {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(super) id: i64,
    /// [`Claimed::attempts`] after this delivery.
    pub(super) attempts: u32,
    /// [`Claimed::tries`] after this delivery.
    pub(super) tries: u32,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) entry: String,
    pub(super) end: End,
}

/// The end of one delivery.
pub(super) enum End {
    /// Answered: the reply, if kept (`cut` when its body was over the
    /// pool's `max_response_bytes` and is not kept); `forget` when
    /// nothing of the job is to stay (no reply kept and no retention).
    Delivered {
        status: Option<i64>,
        body: Option<Vec<u8>>,
        cut: bool,
        #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
        forget: bool,
    },
    /// To be tried again at `at` (ms since the epoch), with the error of
    /// this delivery (`None`: it was not tried). `throttled` is the
    /// host's own word on when to come back (a 429 or 503 with
    /// `Retry-After`), which a shared store passes to every consumer.
    Later {
        at: i64,
        #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
        error: Option<String>,
        #[cfg_attr(not(feature = "redis"), allow(dead_code))]
        throttled: Option<Duration>,
    },
    /// Given up.
    Dead { error: String },
}

/// An outbox's store. Each call is one transaction (or one atomic script)
/// of the store; errors are [`Error::Storage`].
pub(super) trait Store: Send + Sync {
    /// Writes `rows`: per row its id and whether it is new (a known key
    /// returns the existing job), or why that row was not taken (a full
    /// store: [`Error::QueueFull`]). An error of the whole call kept
    /// nothing.
    fn insert(&self, rows: &[&Row]) -> Result<Vec<Inserted>, Error>;
    /// Marks at most `room` due jobs as in flight and returns them, with
    /// about `bytes` of bodies at most (one job at least, whatever its
    /// size).
    fn claim(&self, room: usize, bytes: usize) -> Result<Vec<Claimed>, Error>;
    /// Writes how deliveries ended. On an error nothing of it is kept,
    /// and the caller writes the same answers again later.
    fn write(&self, answers: &[Answer]) -> Result<(), Error>;
    /// When to look for due jobs next (ms since the epoch): the next
    /// retry's time, or a poll for a store that others write too; `None`
    /// when nothing waits.
    fn next_due(&self) -> Result<Option<i64>, Error>;
    /// Since when (ms since the epoch) the job due longest has been due,
    /// as far as this process can see; `None` if none is due.
    fn oldest_due(&self) -> Result<Option<i64>, Error>;
    /// Jobs this process knew of that the store lost.
    fn lost(&self) -> u64 {
        0
    }
    /// Jobs neither delivered nor dead.
    fn unfinished(&self) -> Result<usize, Error>;
    /// Housekeeping, every [`tidy_every`](Store::tidy_every): removing
    /// delivered jobs past `retention`, keeping leases, taking over the
    /// work of consumers that died.
    fn tidy(&self, retention: Duration) -> Result<(), Error>;
    /// True when a claim takes tokens of a rate (a rate shared in the
    /// store): then jobs are claimed only for free workers.
    fn paced(&self) -> bool {
        false
    }
    /// How often [`tidy`](Store::tidy) runs.
    fn tidy_every(&self) -> Duration;
    fn stats(&self) -> Result<OutboxStats, Error>;
    fn dead(&self) -> Result<Vec<DeadJob>, Error>;
    fn requeue(&self, id: JobId) -> Result<bool, Error>;
    fn forget(&self, id: JobId) -> Result<bool, Error>;
    fn reply(&self, id: JobId) -> Result<Option<Delivered>, Error>;
    /// The dispatcher stops: hands back what this process holds and has
    /// not started, so that others take it at once rather than after a
    /// lease.
    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
    /// Where it is, for `Debug` (no secrets).
    fn describe(&self) -> String;
}
