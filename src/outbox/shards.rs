//! One outbox over many stores of one kind (`OutboxOptions::shards`):
//! each job placed on one of them by its order key (or, without one, its
//! idempotency key), so that a key's jobs, their order and their
//! duplicates stay on one; every consumer reads every shard, the first
//! one asked turning each round; the public calls answer across them.
//! A job's id names its shard: the shard's own id times the number of
//! shards, plus the shard.

use super::store::{
    Admin, Answer, Claimed, DeadJob, Delivered, Delivery, Housekeeping, Inserted, JobId,
    OutboxStats, Room, Row,
};
use crate::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The stores, and the shard the next claim asks first.
pub(super) struct Shards<S> {
    shards: Vec<S>,
    next: AtomicUsize,
}

impl<S> Shards<S> {
    /// At least one store.
    pub(super) fn new(shards: Vec<S>) -> Result<Self, Error> {
        if shards.is_empty() || i64::try_from(shards.len()).is_err() {
            return Err(Error::usage("an outbox needs at least one shard"));
        }
        Ok(Shards {
            shards,
            next: AtomicUsize::new(0),
        })
    }

    fn n(&self) -> i64 {
        i64::try_from(self.shards.len()).unwrap_or(1)
    }

    /// The id a shard's own id `id` has outside.
    fn outer(&self, shard: usize, id: i64) -> i64 {
        id.saturating_mul(self.n())
            .saturating_add(i64::try_from(shard).unwrap_or(0))
    }

    /// The shard and its own id of an outside id.
    fn inner(&self, id: JobId) -> (usize, JobId) {
        let shard = usize::try_from(id.0.rem_euclid(self.n())).unwrap_or(0);
        (shard, JobId(id.0.div_euclid(self.n())))
    }
}

/// The shard of a row: by its order key, else its idempotency key (FNV-1a:
/// the same on every machine and every run).
fn place(row: &Row, n: usize) -> usize {
    let key = row.order.as_deref().unwrap_or(&row.key);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h % u64::try_from(n).unwrap_or(1)).unwrap_or(0)
}

impl<S: Delivery> Delivery for Shards<S>
where
    S::Receipt: Clone,
{
    type Receipt = (usize, S::Receipt);

    fn insert(&self, rows: &[&Row]) -> Result<Vec<Inserted>, Error> {
        let n = self.shards.len();
        let mut out: Vec<Option<Inserted>> = rows.iter().map(|_| None).collect();
        let mut failed = None;
        for (s, shard) in self.shards.iter().enumerate() {
            let (at, mine): (Vec<usize>, Vec<&Row>) = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| place(r, n) == s)
                .map(|(i, r)| (i, *r))
                .unzip();
            if mine.is_empty() {
                continue;
            }
            match shard.insert(&mine) {
                Ok(each) => {
                    for (i, r) in at.into_iter().zip(each) {
                        out[i] = Some(r.map(|(id, new)| (self.outer(s, id), new)));
                    }
                }
                // The rows of the other shards are written all the same.
                Err(e) => {
                    for i in at {
                        out[i] = Some(Err(e.again()));
                    }
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) if out.iter().all(|r| matches!(r, Some(Err(_)))) => Err(e),
            _ => Ok(out
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(Error::usage("a row went to no shard"))))
                .collect()),
        }
    }

    /// Every shard in turn, the first one asked turning with each claim,
    /// each with the room the ones before it left.
    fn claim(&self, room: Room) -> Result<Vec<Claimed<Self::Receipt>>, Error> {
        let n = self.shards.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut out = Vec::new();
        let mut left = room;
        let mut failed = None;
        for k in 0..n {
            if left.jobs == 0 {
                break;
            }
            let s = (first + k) % n;
            match self.shards[s].claim(left) {
                Ok(got) => {
                    let bytes: usize = got
                        .iter()
                        .map(|c| c.stored.body.as_ref().map_or(0, Vec::len))
                        .sum();
                    left.jobs = left.jobs.saturating_sub(got.len());
                    left.free = left.free.saturating_sub(got.len());
                    left.bytes = left.bytes.saturating_sub(bytes);
                    out.extend(got.into_iter().map(|c| Claimed {
                        id: self.outer(s, c.id),
                        attempts: c.attempts,
                        tries: c.tries,
                        stops: c.stops,
                        created: c.created,
                        stored: c.stored,
                        receipt: (s, c.receipt),
                    }));
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) if out.is_empty() => Err(e),
            Some(e) => {
                log::error!("reqpool: outbox could not read a shard: {e}");
                Ok(out)
            }
            None => Ok(out),
        }
    }

    fn write(&self, answers: &[Answer<Self::Receipt>]) -> Result<(), Error> {
        let mut result = Ok(());
        for (s, shard) in self.shards.iter().enumerate() {
            let mine: Vec<Answer<S::Receipt>> = answers
                .iter()
                .filter(|a| a.receipt.0 == s)
                .map(|a| Answer {
                    receipt: a.receipt.1.clone(),
                    attempts: a.attempts,
                    tries: a.tries,
                    end: a.end.clone(),
                })
                .collect();
            if !mine.is_empty()
                && let Err(e) = shard.write(&mine)
            {
                result = result.and(Err(e));
            }
        }
        result
    }

    fn next_due(&self) -> Result<Option<i64>, Error> {
        let mut first: Option<i64> = None;
        for s in &self.shards {
            if let Some(t) = s.next_due()? {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
        }
        Ok(first)
    }

    fn close(&self) -> Result<(), Error> {
        let mut result = Ok(());
        for s in &self.shards {
            result = result.and(s.close());
        }
        result
    }
}

impl<S: Admin> Admin for Shards<S> {
    fn unfinished(&self) -> Result<usize, Error> {
        let mut n = 0usize;
        for s in &self.shards {
            n = n.saturating_add(s.unfinished()?);
        }
        Ok(n)
    }

    fn stats(&self) -> Result<OutboxStats, Error> {
        let mut t = OutboxStats::default();
        for s in &self.shards {
            let one = s.stats()?;
            t.pending = t.pending.saturating_add(one.pending);
            t.in_flight = t.in_flight.saturating_add(one.in_flight);
            t.delivered = t.delivered.saturating_add(one.delivered);
            t.dead = t.dead.saturating_add(one.dead);
        }
        Ok(t)
    }

    fn dead(&self) -> Result<Vec<DeadJob>, Error> {
        let mut out = Vec::new();
        for (i, s) in self.shards.iter().enumerate() {
            out.extend(s.dead()?.into_iter().map(|mut d| {
                d.id = JobId(self.outer(i, d.id.0));
                d
            }));
        }
        Ok(out)
    }

    fn requeue(&self, id: JobId) -> Result<bool, Error> {
        let (s, id) = self.inner(id);
        self.shards[s].requeue(id)
    }

    fn forget(&self, id: JobId) -> Result<bool, Error> {
        let (s, id) = self.inner(id);
        self.shards[s].forget(id)
    }

    fn reply(&self, id: JobId) -> Result<Option<Delivered>, Error> {
        let (s, id) = self.inner(id);
        self.shards[s].reply(id)
    }

    fn oldest_due(&self) -> Result<Option<i64>, Error> {
        let mut first: Option<i64> = None;
        for s in &self.shards {
            if let Some(t) = s.oldest_due()? {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
        }
        Ok(first)
    }

    fn lost(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |n, s| n.saturating_add(s.lost()))
    }
}

impl<S: Housekeeping> Housekeeping for Shards<S> {
    fn every(&self) -> Duration {
        self.shards
            .iter()
            .map(Housekeeping::every)
            .min()
            .unwrap_or(Duration::from_millis(500))
    }

    fn tidy(&self) -> Result<(), Error> {
        let mut result = Ok(());
        for s in &self.shards {
            result = result.and(s.tidy());
        }
        result
    }
}

impl<S: fmt::Debug> fmt::Debug for Shards<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} shards: ", self.shards.len())?;
        f.debug_list().entries(&self.shards).finish()
    }
}
