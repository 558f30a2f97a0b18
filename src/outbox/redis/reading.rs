//! What a consumer reads, and when: how many new entries a claim or a
//! write of answers reads (within the prefetch and the bytes), whether
//! an idle consumer waits for new ones, which waiting jobs go now (the
//! shared rate's tokens, a taken-over job alone), and the first waiting
//! job's time.

use super::record::{Record, read_reply};
use super::{Held, Redis, host};
use crate::error::Error;
use crate::outbox::store::{Claimed, now_ms};
use redis::Value;
use std::time::Duration;

/// Bytes of bodies a write of answers reads ahead at most (by the size
/// of the entries seen so far).
const READ_AHEAD_BYTES: usize = 4 << 20;

impl Redis {
    /// Whether this consumer waits for new entries when it has nothing
    /// to do: when its stream is its outbox's only one (its key is the
    /// outbox's own hash tag). A consumer of many shards looks at each in
    /// turn every [`POLL`](super::POLL) instead: a wait on one would leave the others
    /// unread.
    pub(super) fn waits(&self) -> bool {
        self.stream == self.setup.shared
    }

    /// How many new entries a claim may read: what the room that jobs
    /// read before leave, within the prefetch, and as many as the bytes
    /// allow by the size of those seen so far (one at least when nothing
    /// is held).
    pub(super) fn want(&self, held: &Held, room: usize, bytes: usize) -> usize {
        let holding = held.waiting.len() + held.flight.len();
        let by_size = bytes / held.entry_bytes.max(1);
        room.saturating_sub(held.waiting.len())
            .min(self.setup.prefetch.saturating_sub(holding))
            .min(by_size.max(usize::from(holding == 0)))
    }

    /// How many new entries a write of answers reads with them, when
    /// `leaving` jobs leave what this consumer holds: the room they leave
    /// in the prefetch, as many as [`READ_AHEAD_BYTES`] hold by the size
    /// of the entries seen so far. None with a shared rate (jobs are read
    /// only for free workers), nor for an idle consumer (its claim waits
    /// for them).
    pub(super) fn read_ahead(&self, held: &Held, leaving: usize) -> usize {
        if leaving == 0 || self.setup.interval.is_some() {
            return 0;
        }
        let holding = (held.waiting.len() + held.flight.len()).saturating_sub(leaving);
        if holding == 0 {
            return 0;
        }
        self.setup
            .prefetch
            .saturating_sub(holding)
            .min(READ_AHEAD_BYTES / held.entry_bytes.max(1))
    }

    /// A read's entries taken in (see `take_in`): how many it brought,
    /// and its error if it failed.
    pub(super) fn take_read(
        &self,
        held: &mut Held,
        got: Result<Value, Error>,
    ) -> (usize, Option<Error>) {
        self.count_vanished_in(held);
        let mut read = 0;
        let failed = got
            .and_then(|v| {
                let entries = read_reply(v);
                read = entries.len();
                self.take_in(held, entries)
            })
            .err();
        (read, failed)
    }

    /// `XREADGROUP` of up to `count` new entries, waiting up to `block`
    /// for one if given.
    pub(super) fn read(&self, count: usize, block: Option<Duration>) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.setup.group)
            .arg(&self.setup.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(b) = block {
            cmd.arg("BLOCK")
                .arg(u64::try_from(b.as_millis()).unwrap_or(1).max(1));
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(">");
        cmd
    }

    /// The time of the first waiting job (its own, or its host's shared
    /// rate's), if one waits.
    pub(super) fn first_due(&self, held: &Held) -> Option<i64> {
        held.waiting
            .iter()
            .map(|(_, r)| {
                let blocked = held.blocked.get(&host(&r.stored.url)).copied().unwrap_or(0);
                r.due.max(blocked)
            })
            .min()
    }

    /// Hands out the due waiting jobs that the room takes, moving them in
    /// flight. A job taken over from a consumer that stopped may be what
    /// stopped it: it goes alone, once what is in flight has ended.
    pub(super) fn hand_out(
        &self,
        held: &mut Held,
        room: usize,
        bytes: usize,
        failed: &mut Option<Error>,
    ) -> Vec<Claimed<String>> {
        let now = now_ms();
        let mut out = Vec::new();
        let suspect_due = held
            .waiting
            .iter()
            .any(|(_, r)| r.stops > 0 && r.due <= now);
        let suspect_flying = held.flight.values().any(|r| r.stops > 0);
        let alone = suspect_due && held.flight.is_empty();
        let room = if suspect_flying || (suspect_due && !alone) {
            0
        } else if alone {
            1
        } else {
            room
        };
        let mut handed = 0usize;
        for (entry, record) in std::mem::take(&mut held.waiting) {
            let size = record.stored.body.as_ref().map_or(0, Vec::len);
            let ready = failed.is_none()
                && out.len() < room
                && (out.is_empty() || handed.saturating_add(size) <= bytes)
                && record.due <= now
                && (record.stops > 0) == alone;
            let ready = ready
                && self.token(held, &record, now).unwrap_or_else(|e| {
                    *failed = Some(e);
                    false
                });
            if ready {
                handed = handed.saturating_add(size);
                held.flight.insert(entry.clone(), record.clone());
                out.push(Claimed {
                    id: record.id,
                    attempts: record.attempts,
                    tries: record.tries,
                    stops: record.stops,
                    created: record.created,
                    stored: record.stored,
                    receipt: entry,
                });
            } else {
                held.waiting.push((entry, record));
            }
        }
        out
    }

    /// Whether `record`'s host has a token of the shared rate now; asks
    /// Redis at most once per host and round once it said no.
    fn token(&self, held: &mut Held, record: &Record, now: i64) -> Result<bool, Error> {
        let Some(interval) = self.setup.interval else {
            return Ok(true);
        };
        let host = host(&record.stored.url);
        if held.blocked.get(&host).is_some_and(|&t| t > now) {
            return Ok(false);
        }
        let us = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let (got, wait): (i64, i64) = self.link.with(|c, s| {
            s.take
                .key(self.shared_key("rate", &host))
                .key(self.shared_key("pause", &host))
                .key(self.shared_key("slow", &host))
                .arg(us)
                .invoke(c)
        })?;
        if got == 1 {
            held.blocked.remove(&host);
            return Ok(true);
        }
        held.blocked.insert(host, now + (wait + 999) / 1000);
        Ok(false)
    }
}
