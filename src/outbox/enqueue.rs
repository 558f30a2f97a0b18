//! Group commit: enqueues from many threads share commits. The first
//! enqueue to find no commit running writes its row and every row that
//! queued behind it meanwhile, in one transaction, then hands each caller
//! its id; the others wait for theirs. One thread alone commits each row
//! at once, as before.

use super::shared::Shared;
use super::store::{Front, Inserted, JobId, Row, now_ms};
use crate::error::Error;
use crate::request::RequestBuilder;
use crate::sync::lock;
use crossbeam_channel::{Sender, bounded};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

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
                        let _ = tx.send(Err(err.again()));
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

/// `request` as the store keeps it, checked; its span kept for its
/// deliveries (when this process delivers).
pub(super) fn row(
    shared: &Shared,
    delivering: bool,
    request: RequestBuilder,
) -> Result<Row, Error> {
    let own = request.own_settings();
    if !own.is_empty() {
        return Err(Error::usage(format!(
            "the outbox does not keep a request's own {}: each delivery follows the settings \
             of the pool that delivers it (set them on its Builder)",
            own.join(", ")
        )));
    }
    let (_, _, prepared) = request.prepare()?;
    let stored = prepared.stored()?;
    let key = stored.key.clone().unwrap_or_else(new_key);
    let headers =
        serde_json::to_string(&stored.headers).map_err(|e| Error::usage(e.to_string()))?;
    if delivering {
        shared.lineage.enqueued(&key);
    }
    Ok(Row {
        key,
        method: stored.method,
        url: stored.url,
        headers,
        body: stored.body,
        created: now_ms(),
        order: None,
    })
}

/// The job of `key` as the store took it (or not): its id, work for
/// the dispatcher if it is new.
pub(super) fn inserted(shared: &Shared, key: &str, inserted: Inserted) -> Result<JobId, Error> {
    match inserted {
        Ok((id, new)) => {
            if new {
                shared.more_work();
            } else {
                // A known key: the job is the one enqueued before.
                shared.lineage.ended(key);
            }
            Ok(JobId(id))
        }
        Err(e) => {
            shared.lineage.ended(key);
            Err(e)
        }
    }
}

/// A fresh idempotency key: 128 random bits, hex.
fn new_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::from("reqpool-");
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}
