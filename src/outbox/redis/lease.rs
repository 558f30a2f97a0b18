//! What a consumer holds: entries read in (jobs, or dead letters for
//! what reqpool did not write), their lease kept while it holds them, and
//! the entries of consumers that stopped taken over.

use super::record::{Fields, Record, entries, string};
use super::{Held, Redis, TAKE_OVER};
use crate::error::Error;
use crate::outbox::store::{LONGEST_WAIT, millis, now_ms};
use crate::sync::lock;
use redis::Value;
use std::collections::HashMap;

/// What Redis says of an entry taken over; see `Redis::taken`.
#[derive(Clone, Copy, Default)]
struct Taken {
    stops: u32,
    proven: u32,
    /// Due (this machine's ms), attempts, tries: a job put off.
    later: Option<(i64, u32, u32)>,
}

impl Redis {
    /// Moves an entry that is not one of reqpool's jobs to the dead
    /// letters, with `reason` and its own fields.
    fn bury(&self, entry: &str, fields: &Fields, reason: &str) -> Result<(), Error> {
        log::warn!(
            "reqpool: outbox entry {entry} of stream {} is dead: {reason}",
            self.stream
        );
        let mut args: Fields = fields
            .iter()
            .filter(|(k, _)| k != "error")
            .cloned()
            .collect();
        args.push(("error".into(), reason.as_bytes().to_vec()));
        args.push(("entry".into(), entry.as_bytes().to_vec()));
        self.link.with(|c, s| {
            let mut inv = s.moved.key(&self.stream);
            inv.key(self.dead_stream())
                .arg(&self.setup.group)
                .arg(entry)
                .arg("")
                .arg(0);
            for (k, v) in &args {
                inv.arg(k).arg(v.as_slice());
            }
            inv.invoke::<i64>(c).map(drop)
        })
    }

    /// Sorts read entries: jobs into `waiting`, the rest to the dead
    /// letters.
    pub(super) fn take_in(
        &self,
        held: &mut Held,
        read: Vec<(String, Fields)>,
    ) -> Result<(), Error> {
        // Entries taken over may be ones this consumer holds already.
        let waiting: std::collections::HashSet<String> =
            held.waiting.iter().map(|(e, _)| e.clone()).collect();
        for (entry, mut fields) in read {
            if held.flight.contains_key(&entry) || waiting.contains(&entry) {
                continue;
            }
            if fields.is_empty() {
                // Deleted meanwhile: acknowledge it and move on.
                self.link.with(|c, _| {
                    redis::cmd("XACK")
                        .arg(&self.stream)
                        .arg(&self.setup.group)
                        .arg(&entry)
                        .query::<i64>(c)
                        .map(drop)
                })?;
                continue;
            }
            match Record::parse(&mut fields) {
                Ok(mut record) => {
                    let size = record.stored.body.as_ref().map_or(0, Vec::len);
                    // Up at once with a large body, down slowly.
                    held.entry_bytes = size.max(held.entry_bytes - held.entry_bytes / 8);
                    let far = now_ms().saturating_add(millis(LONGEST_WAIT).saturating_add(60_000));
                    if record.due > far {
                        log::warn!(
                            "reqpool: outbox entry {entry} of stream {} was due further ahead than the \
                             outbox ever waits (a clock that was ahead, or a hand-written time); due now",
                            self.stream
                        );
                        record.due = now_ms();
                    }
                    held.waiting.push((entry, record));
                }
                Err(reason) => self.bury(&entry, &fields, &reason)?,
            }
        }
        Ok(())
    }

    /// Resets the idle time of every entry this consumer holds, so that
    /// no other consumer takes it over while it runs or waits.
    pub(super) fn extend(&self) -> Result<(), Error> {
        let ids: Vec<String> = {
            let held = lock(&self.held);
            held.flight
                .keys()
                .cloned()
                .chain(held.waiting.iter().map(|(e, _)| e.clone()))
                .collect()
        };
        for chunk in ids.chunks(2_000) {
            self.link.with(|c, s| {
                let mut inv = s.extend.key(&self.stream);
                inv.arg(&self.setup.group).arg(&self.setup.consumer);
                for id in chunk {
                    inv.arg(id);
                }
                inv.invoke::<i64>(c).map(drop)
            })?;
        }
        Ok(())
    }

    /// For each of `read`, what Redis says of it beyond its fields: how
    /// many consumers held it and stopped (its delivery count, one per
    /// read or take-over, less this take-over; renewing a lease does not
    /// count), how many of those stops were proven (it went alone), and
    /// the time and counts of a job put off (its time moved from Redis's
    /// clock to this machine's).
    fn taken(&self, read: &[(String, Fields)]) -> Result<HashMap<String, Taken>, Error> {
        if read.is_empty() {
            return Ok(HashMap::new());
        }
        let mut replies: Vec<Value> = self.link.with(|c, _| {
            let mut p = redis::pipe();
            for (entry, _) in read {
                p.cmd("XPENDING")
                    .arg(&self.stream)
                    .arg(&self.setup.group)
                    .arg(entry)
                    .arg(entry)
                    .arg(1);
                p.cmd("HGET").arg(self.proven()).arg(entry);
                p.cmd("HGET").arg(self.later()).arg(entry);
            }
            p.cmd("TIME");
            p.query(c)
        })?;
        let number = |v: &Value| match v {
            Value::Int(n) => Some(*n),
            other => string(other)?.parse::<i64>().ok(),
        };
        // Redis's clock less this machine's, in ms.
        let skew = match replies.pop() {
            Some(Value::Array(t)) => {
                let s = t.first().and_then(number).unwrap_or(0);
                let us = t.get(1).and_then(number).unwrap_or(0);
                s.saturating_mul(1000).saturating_add(us / 1000) - now_ms()
            }
            _ => 0,
        };
        Ok(read
            .iter()
            .zip(replies.chunks(3))
            .filter_map(|((entry, _), part)| {
                let Value::Array(rows) = part.first()? else {
                    return None;
                };
                let Some(Value::Array(row)) = rows.first() else {
                    return None;
                };
                let n = number(row.get(3)?)?;
                let proven = part.get(1).and_then(number).unwrap_or(0);
                let later = part.get(2).and_then(string).and_then(|s| {
                    let mut it = s.split(' ').map(|x| x.parse::<i64>().ok());
                    let (due, attempts, tries) = (it.next()??, it.next()??, it.next()??);
                    let count = |x: i64| u32::try_from(x.max(0)).unwrap_or(u32::MAX);
                    Some((due.saturating_sub(skew), count(attempts), count(tries)))
                });
                Some((
                    entry.clone(),
                    Taken {
                        stops: u32::try_from(n.saturating_sub(1)).unwrap_or(0).max(1),
                        proven: u32::try_from(proven.max(0)).unwrap_or(u32::MAX),
                        later,
                    },
                ))
            })
            .collect())
    }

    /// Takes over the entries that consumers which stopped (their lease
    /// ran out) left unanswered.
    pub(super) fn take_over(&self) -> Result<(), Error> {
        let idle = u64::try_from(self.setup.lease.as_millis())
            .unwrap_or(u64::MAX)
            .min(1 << 50);
        // Which of the entries to take were being delivered alone when
        // their consumer stopped: proven stops, counted as attempts.
        self.link.with(|c, s| {
            s.prove
                .key(&self.stream)
                .key(self.proven())
                .arg(&self.setup.group)
                .arg(idle)
                .arg(TAKE_OVER)
                .arg(&self.stream)
                .invoke::<i64>(c)
                .map(drop)
        })?;
        let mut cursor = "0-0".to_owned();
        let mut taken = 0;
        loop {
            let reply: Value = self.link.with(|c, _| {
                redis::cmd("XAUTOCLAIM")
                    .arg(&self.stream)
                    .arg(&self.setup.group)
                    .arg(&self.setup.consumer)
                    .arg(idle)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(100)
                    .query(c)
            })?;
            let Value::Array(parts) = reply else { break };
            let mut parts = parts.into_iter();
            let next = parts.next().as_ref().and_then(string).unwrap_or_default();
            let read = parts.next().map(entries).unwrap_or_default();
            // Redis 7 lists the entries deleted while pending: jobs lost.
            if let Some(Value::Array(gone)) = parts.next()
                && !gone.is_empty()
            {
                log::error!(
                    "reqpool: outbox stream {}: {} entries were deleted while a consumer held them; their jobs are lost",
                    self.stream,
                    gone.len()
                );
                self.add_lost(gone.len());
            }
            taken += read.len();
            if !read.is_empty() {
                log::info!(
                    "reqpool: outbox took over {} entries of stream {} from a stopped consumer",
                    read.len(),
                    self.stream
                );
            }
            let taken_state = self.taken(&read)?;
            let mut held = lock(&self.held);
            let before = held.waiting.len();
            self.take_in(&mut held, read)?;
            // Each consumer that held an entry and stopped is a stop of
            // its job, which then goes alone; a stop while it went alone
            // is proven, and counts as an attempt: a job that kills its
            // consumers ends at max_attempts.
            for (entry, record) in held.waiting.iter_mut().skip(before) {
                let t = taken_state.get(entry).copied().unwrap_or_default();
                if let Some((due, attempts, tries)) = t.later {
                    record.due = due;
                    record.attempts = attempts;
                    record.tries = tries;
                }
                record.stops = record.stops.saturating_add(t.stops.max(1));
                record.attempts = record.attempts.saturating_add(t.proven);
            }
            drop(held);
            cursor = next;
            if cursor.is_empty() || cursor == "0-0" || taken >= TAKE_OVER {
                break;
            }
        }
        Ok(())
    }
}
