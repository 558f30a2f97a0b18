//! What a consumer holds: entries read in (jobs, or dead letters for
//! what reqpool did not write), their lease kept while it holds them, and
//! the entries of consumers that stopped taken over.

use super::record::{Fields, Record, entries, string};
use super::{Held, Redis, TAKE_OVER};
use crate::error::Error;
use crate::sync::lock;
use redis::Value;

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
                .arg(entry);
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
        for (entry, fields) in read {
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
            match Record::parse(&fields) {
                Ok(record) => held.waiting.push((entry, record)),
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

    /// Takes over the entries that consumers which stopped (their lease
    /// ran out) left unanswered.
    pub(super) fn take_over(&self) -> Result<(), Error> {
        let idle = u64::try_from(self.setup.lease.as_millis())
            .unwrap_or(u64::MAX)
            .min(1 << 50);
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
            let read = parts.get(1).map(entries).unwrap_or_default();
            taken += read.len();
            if !read.is_empty() {
                log::info!(
                    "reqpool: outbox took over {} entries of stream {} from a stopped consumer",
                    read.len(),
                    self.stream
                );
            }
            let mut held = lock(&self.held);
            self.take_in(&mut held, read)?;
            drop(held);
            cursor = parts.first().and_then(string).unwrap_or_default();
            if cursor.is_empty() || cursor == "0-0" || taken >= TAKE_OVER {
                break;
            }
        }
        Ok(())
    }
}
