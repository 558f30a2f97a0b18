//! Group commit: enqueues from many threads share commits. The first
//! enqueue to find no commit running writes its row and every row that
//! queued behind it meanwhile, in one transaction, then hands each caller
//! its id; the others wait for theirs. One thread alone commits each row
//! at once, as before.

use super::store::{Front, Row};
use crate::error::Error;
use crate::sync::lock;
use crossbeam_channel::{Sender, bounded};
use std::sync::Mutex;

/// Where a row's id (and whether it is new) goes once committed.
type Reply = Sender<Result<(i64, bool), Error>>;

/// The rows of one outbox waiting for a shared commit.
#[derive(Default)]
pub(super) struct Commits {
    queue: Mutex<Queue>,
}

/// Rows waiting for a commit, and whether one runs.
#[derive(Default)]
struct Queue {
    rows: Vec<(Row, Reply)>,
    committing: bool,
}

impl Commits {
    /// Writes `row` to `store` (with the rows of other threads that come
    /// meanwhile) and returns its id, and whether it is new. Blocks for
    /// the commit.
    pub(super) fn insert(&self, store: &dyn Front, row: Row) -> Result<(i64, bool), Error> {
        let (tx, rx) = bounded(1);
        let lead = {
            let mut q = lock(&self.queue);
            q.rows.push((row, tx));
            !std::mem::replace(&mut q.committing, true)
        };
        if lead {
            self.commit(store);
        }
        rx.recv()
            .unwrap_or_else(|_| Err(Error::usage("the outbox's commit was lost")))
    }

    /// Commits the waiting rows, batch after batch, until none is left.
    fn commit(&self, store: &dyn Front) {
        let _leading = Leading(self);
        loop {
            let batch = {
                let mut q = lock(&self.queue);
                if q.rows.is_empty() {
                    q.committing = false;
                    return;
                }
                std::mem::take(&mut q.rows)
            };
            let rows: Vec<&Row> = batch.iter().map(|(r, _)| r).collect();
            match store.insert(&rows) {
                Ok(ids) => {
                    for ((_, tx), id) in batch.iter().zip(ids) {
                        let _ = tx.send(id);
                    }
                }
                Err(err) => {
                    // Nothing of the batch was kept: each caller gets the error.
                    for (_, tx) in &batch {
                        let _ = tx.send(Err(copy(&err)));
                    }
                }
            }
        }
    }
}

/// Hands the commit on if its leader unwinds: no enqueue waits for a
/// commit that will not come.
struct Leading<'a>(&'a Commits);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = lock(&self.0.queue);
            q.committing = false;
            for (_, tx) in q.rows.drain(..) {
                let _ = tx.send(Err(Error::usage("the outbox's commit panicked")));
            }
        }
    }
}

/// The same storage error again, for another caller of the batch.
pub(super) fn copy(e: &Error) -> Error {
    match e {
        Error::Storage { kind, reason } => Error::storage(*kind, reason.clone()),
        Error::QueueFull => Error::QueueFull,
        e => Error::usage(e.to_string()),
    }
}
