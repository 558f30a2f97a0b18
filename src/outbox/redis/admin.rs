//! What the public calls ask of a Redis store: counts, dead letters,
//! requeue and forget, kept replies, the oldest due job, jobs lost.

use super::Redis;
use super::record::{Fields, Record, entries, field, string};
use crate::error::Error;
use crate::outbox::store::{Admin, DeadJob, Delivered, JobId, OutboxStats, now_ms};
use crate::sync::lock;
use redis::Value;

impl Redis {
    /// The dead letters: entry id and fields, oldest first.
    fn dead_entries(&self) -> Result<Vec<(String, Fields)>, Error> {
        let v: Value = self.link.with(|c, _| {
            redis::cmd("XRANGE")
                .arg(self.dead_stream())
                .arg("-")
                .arg("+")
                .query(c)
        })?;
        Ok(entries(v))
    }

    /// The dead letter of job `id`.
    fn dead_entry(&self, id: JobId) -> Result<Option<(String, Fields)>, Error> {
        let want = id.0.to_string();
        Ok(self
            .dead_entries()?
            .into_iter()
            .find(|(_, f)| field(f, "job") == Some(want.as_bytes())))
    }
}

impl Admin for Redis {
    /// Entries in the stream: every job not yet answered, of every
    /// consumer.
    fn unfinished(&self) -> Result<usize, Error> {
        let (n, parked): (u64, Option<u64>) = self.link.with(|c, _| {
            redis::pipe()
                .cmd("XLEN")
                .arg(&self.stream)
                .cmd("GET")
                .arg(self.parked())
                .query(c)
        })?;
        Ok(usize::try_from(n.saturating_add(parked.unwrap_or(0))).unwrap_or(usize::MAX))
    }

    fn stats(&self) -> Result<OutboxStats, Error> {
        type Counts = (u64, Value, Option<u64>, u64, u64, Option<u64>);
        let (len, pending, delivered, dead, later, parked): Counts = self.link.with(|c, _| {
            redis::pipe()
                .cmd("XLEN")
                .arg(&self.stream)
                .cmd("XPENDING")
                .arg(&self.stream)
                .arg(&self.setup.group)
                .cmd("GET")
                .arg(format!("{}:delivered", self.stream))
                .cmd("XLEN")
                .arg(self.dead_stream())
                .cmd("HLEN")
                .arg(self.later())
                .cmd("GET")
                .arg(self.parked())
                .query(c)
        })?;
        let in_flight = match &pending {
            Value::Array(p) => p.first().and_then(string).and_then(|n| n.parse().ok()),
            _ => None,
        }
        .unwrap_or(0u64);
        // A job put off stays its consumer's entry; it is pending.
        let in_flight = in_flight.saturating_sub(later);
        Ok(OutboxStats {
            // Jobs waiting for their order key's turn are pending too.
            pending: len
                .saturating_sub(in_flight)
                .saturating_add(parked.unwrap_or(0)),
            in_flight,
            delivered: delivered.unwrap_or(0),
            dead,
        })
    }

    fn dead(&self) -> Result<Vec<DeadJob>, Error> {
        Ok(self
            .dead_entries()?
            .into_iter()
            .map(|(entry, mut f)| {
                let text = |f: &Fields, name: &str| {
                    field(f, name)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                };
                let error = text(&f, "error");
                if let Ok(r) = Record::parse(&mut f) {
                    return DeadJob::new(
                        JobId(r.id),
                        r.stored.key.unwrap_or_default(),
                        &r.stored.method,
                        &r.stored.url,
                        error,
                        r.attempts,
                    );
                }
                // Not one of reqpool's: its fields as they are.
                let num = |name: &str| text(&f, name).parse().ok();
                let mut url = text(&f, "url");
                let mut method = text(&f, "method");
                if field(&f, "job").is_none() {
                    // Shown by where it was.
                    method = "entry".into();
                    url = format!("{} of {}", text(&f, "entry").max(entry), self.stream);
                }
                DeadJob::new(
                    JobId(num("job").unwrap_or(0)),
                    text(&f, "key"),
                    &method,
                    &url,
                    error,
                    num("attempts")
                        .and_then(|n: i64| u32::try_from(n).ok())
                        .unwrap_or(0),
                )
            })
            .collect())
    }

    fn requeue(&self, id: JobId) -> Result<bool, Error> {
        let Some((entry, mut fields)) = self.dead_entry(id)? else {
            return Ok(false);
        };
        let Ok(mut record) = Record::parse(&mut fields) else {
            return Ok(false);
        };
        record.attempts = 0;
        record.tries = 0;
        record.stops = 0;
        record.due = 0;
        let back: i64 = self.link.with(|c, s| {
            let mut inv = s.requeue.key(self.dead_stream());
            inv.key(&self.stream).arg(&entry);
            for (k, v) in record.fields(true) {
                inv.arg(k).arg(v);
            }
            inv.invoke(c)
        })?;
        Ok(back == 1)
    }

    fn forget(&self, id: JobId) -> Result<bool, Error> {
        let done = self.key("done", &id.0.to_string());
        let key: Option<String> = self
            .link
            .with(|c, _| redis::cmd("HGET").arg(&done).arg("key").query(c))?;
        if let Some(key) = key {
            let n: (i64, i64) = self.link.with(|c, _| {
                redis::pipe()
                    .cmd("DEL")
                    .arg(&done)
                    .cmd("DEL")
                    .arg(self.key("key", &key))
                    .query(c)
            })?;
            return Ok(n.0 == 1);
        }
        let Some((entry, mut fields)) = self.dead_entry(id)? else {
            return Ok(false);
        };
        let key = match Record::parse(&mut fields) {
            Ok(r) => r.stored.key.unwrap_or_default(),
            Err(_) => field(&fields, "key")
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
        };
        let n: (i64, i64) = self.link.with(|c, _| {
            redis::pipe()
                .cmd("XDEL")
                .arg(self.dead_stream())
                .arg(&entry)
                .cmd("DEL")
                .arg(self.key("key", &key))
                .query(c)
        })?;
        Ok(n.0 == 1)
    }

    fn reply(&self, id: JobId) -> Result<Option<Delivered>, Error> {
        let (status, body, cut): (Option<i64>, Option<Vec<u8>>, Option<String>) =
            self.link.with(|c, _| {
                redis::cmd("HMGET")
                    .arg(self.key("done", &id.0.to_string()))
                    .arg("status")
                    .arg("body")
                    .arg("cut")
                    .query(c)
            })?;
        Ok(status.and_then(|s| Delivered::new(s, body, cut.is_some())))
    }

    /// The oldest of: the jobs this consumer holds that are due, and the
    /// first entry of the stream no consumer of the group has read (its
    /// id is its time, on Redis's clock).
    fn oldest_due(&self) -> Result<Option<i64>, Error> {
        let now = now_ms();
        let held = lock(&self.held)
            .waiting
            .iter()
            .map(|(_, r)| r.due)
            .filter(|&d| d <= now)
            .min();
        let groups: Value = self
            .link
            .with(|c, _| redis::cmd("XINFO").arg("GROUPS").arg(&self.stream).query(c))?;
        let last = super::record::group_field(&groups, &self.setup.group, "last-delivered-id")
            .unwrap_or_else(|| "0-0".into());
        let next: Value = self.link.with(|c, _| {
            redis::cmd("XRANGE")
                .arg(&self.stream)
                .arg(format!("({last}"))
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query(c)
        })?;
        let unread = entries(next)
            .first()
            .and_then(|(id, _)| id.split('-').next()?.parse::<i64>().ok());
        Ok(match (held, unread) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    fn lost(&self) -> u64 {
        self.lost.load(std::sync::atomic::Ordering::Acquire)
    }
}
