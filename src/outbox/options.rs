//! An outbox's settings: what a commit survives, replies kept or not, how
//! many deliveries, how long delivered jobs stay, delivering or not.

use super::Outbox;
use crate::error::Error;
use crate::pool::Pool;
use std::path::Path;
use std::time::Duration;

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

/// The settings of an outbox; [`Outbox::open`] takes the defaults.
#[derive(Debug, Clone)]
pub struct OutboxOptions {
    pub(super) durability: Durability,
    pub(super) keep_replies: bool,
    pub(super) max_attempts: u32,
    pub(super) retention: Duration,
    pub(super) deliver: bool,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            durability: Durability::Process,
            keep_replies: true,
            max_attempts: 5,
            retention: Duration::MAX,
            deliver: true,
        }
    }
}

impl OutboxOptions {
    /// The defaults: [`Durability::Process`], replies kept, 5 deliveries
    /// at most.
    pub fn new() -> Self {
        Self::default()
    }

    /// What a commit survives. Defaults to [`Durability::Process`].
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Keeps each reply's status and body (64 KiB at most) for
    /// [`Outbox::reply`]. Off for pure fire-and-forget: a delivered job
    /// then keeps only its key. Defaults to true.
    pub fn keep_replies(mut self, yes: bool) -> Self {
        self.keep_replies = yes;
        self
    }

    /// Deliveries at most before a job that keeps failing with a retryable
    /// error is dead (each delivery also follows the pool's own retry
    /// policy). At least 1; defaults to 5.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// How long a delivered job stays in the file: its key (so a re-run
    /// that enqueues the same key sends nothing) and its reply. After
    /// that it is removed, and the file's space is reused: the file grows
    /// with pending work and this window, not with history. A re-run
    /// after the window sends a removed job's key again (the server's
    /// idempotency window should be longer). `Duration::ZERO` removes a
    /// job as soon as it is delivered; [`Outbox::forget`] removes one
    /// by hand. Defaults to `Duration::MAX` (kept).
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = keep;
        self
    }

    /// Off: this outbox only writes jobs to the file and delivers none
    /// (a script that queues work for a later run, or for a process that
    /// delivers). The file is one process's at a time either way.
    /// Defaults to true.
    pub fn deliver(mut self, yes: bool) -> Self {
        self.deliver = yes;
        self
    }

    /// Blocks while it opens (or creates) the outbox file at `path` with
    /// these settings; see [`Outbox::open`].
    ///
    /// # Errors
    ///
    /// As [`Outbox::open`].
    pub fn open(self, path: impl AsRef<Path>, pool: &Pool) -> Result<Outbox, Error> {
        let store = super::sqlite::Sqlite::open(path.as_ref(), self.durability)?;
        Outbox::start(Box::new(store), pool, self)
    }
}
