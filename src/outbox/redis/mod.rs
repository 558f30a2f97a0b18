//! The outbox's store on a Redis stream (feature `redis`), shared by every
//! process that opens it: `enqueue` adds an entry, each consumer reads
//! entries as a member of one consumer group, acknowledges one only after
//! the server answered, keeps a lease on what it holds, and takes over
//! the entries of a consumer whose lease ran out. A job put off goes back
//! to the stream with its next time; a job given up on moves to the dead
//! letters, `<stream>:dead`.
//!
//! Keys, for a stream named `calls`: `calls` (the jobs), `calls:dead`,
//! `calls:seq` (job ids), `calls:key:<key>` (a key's job),
//! `calls:done:<id>` (a delivered job's reply), `calls:delivered` (a
//! count), and per host `calls:rate:<host>`, `calls:pause:<host>`,
//! `calls:slow:<host>` (the shared rate).

mod answers;
mod lease;
mod link;
mod record;
mod scripts;

use super::store::{Answer, Claimed, End, Inserted, Row, Store};
use super::{DeadJob, Delivered, JobId, OutboxStats, now_ms};
use crate::error::Error;
use crate::sync::lock;
use link::Link;
use record::{Fields, Record, entries, field, read_reply, string};
use redis::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a consumer looks for entries that others added.
const POLL: Duration = Duration::from_millis(20);
/// Entries taken over from stopped consumers at most per look.
const TAKE_OVER: usize = 1_000;

/// How a Redis store is set up (from [`OutboxOptions`](super::OutboxOptions)).
pub(super) struct Setup {
    pub(super) group: String,
    pub(super) consumer: String,
    pub(super) lease: Duration,
    /// The shared rate: one request per this interval, per host.
    pub(super) interval: Option<Duration>,
    /// Entries at most in the stream (0: no limit).
    pub(super) maxlen: usize,
    /// Jobs this consumer holds at most (running and waiting): the rest
    /// stay in the stream for the others, and a consumer that dies leaves
    /// no more than this for its lease.
    pub(super) prefetch: usize,
    pub(super) retention: Duration,
}

/// A stream, its group, and what this consumer holds of it.
pub(super) struct Redis {
    link: Link,
    stream: String,
    setup: Setup,
    held: Mutex<Held>,
}

/// What this consumer has read and not yet answered.
#[derive(Default)]
struct Held {
    /// Handed to the pool, by entry id.
    flight: HashMap<String, Record>,
    /// Read, and not due yet (a later try, or no token of its host's rate
    /// yet).
    waiting: Vec<(String, Record)>,
    /// Hosts whose shared rate gives no token before this time (ms).
    blocked: HashMap<String, i64>,
    last_extend: Option<Instant>,
}

impl Redis {
    /// Connects to `url` (failing at once if Redis cannot be reached) and
    /// makes the stream and its group if they are not there.
    pub(super) fn open(url: &str, stream: &str, setup: Setup) -> Result<Redis, Error> {
        let link = Link::open(url, stream, &setup.group)?;
        Ok(Redis {
            link,
            stream: stream.to_owned(),
            setup,
            held: Mutex::new(Held::default()),
        })
    }

    fn key(&self, what: &str, of: &str) -> String {
        format!("{}:{what}:{of}", self.stream)
    }

    fn dead_stream(&self) -> String {
        format!("{}:dead", self.stream)
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
                .key(self.key("rate", &host))
                .key(self.key("pause", &host))
                .key(self.key("slow", &host))
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

    /// The dead letters: entry id and fields, oldest first.
    fn dead_entries(&self) -> Result<Vec<(String, Fields)>, Error> {
        let v: Value = self.link.with(|c, _| {
            redis::cmd("XRANGE")
                .arg(self.dead_stream())
                .arg("-")
                .arg("+")
                .query(c)
        })?;
        Ok(entries(&v))
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

impl Store for Redis {
    /// One script per job, pipelined: each job is added whole or not at
    /// all (a script that Redis refuses at `maxmemory` writes nothing),
    /// and each gets its own script's answer, so a refused job never
    /// takes the others of the commit with it, nor is queued under an
    /// `Err`. An error of the whole call (the connection lost) may have
    /// added some of them.
    fn insert(&self, rows: &[&Row]) -> Result<Vec<Inserted>, Error> {
        let hash = self.link.scripts().enqueue.get_hash().to_owned();
        let replies: Vec<redis::RedisResult<(i64, i64)>> = self.link.with(|c, _| {
            let mut p = redis::pipe();
            p.ignore_errors();
            for r in rows {
                p.cmd("EVALSHA")
                    .arg(&hash)
                    .arg(3)
                    .arg(&self.stream)
                    .arg(format!("{}:seq", self.stream))
                    .arg(self.key("key", &r.key))
                    .arg(self.setup.maxlen)
                    .arg("key")
                    .arg(&r.key)
                    .arg("method")
                    .arg(&r.method)
                    .arg("url")
                    .arg(&r.url)
                    .arg("headers")
                    .arg(&r.headers)
                    .arg("attempts")
                    .arg(0)
                    .arg("due")
                    .arg(0);
                if let Some(b) = &r.body {
                    p.arg("body").arg(b.as_slice());
                }
            }
            let replies: Vec<redis::RedisResult<(i64, i64)>> = p.query(c)?;
            // Every script refused for a reason that needs a new
            // connection (Redis restarted without them): the call fails,
            // so that the next connects again; nothing was added.
            match replies.first() {
                Some(Err(e)) if link::broken(e) && replies.iter().all(Result::is_err) => {
                    Err(e.clone())
                }
                _ => Ok(replies),
            }
        })?;
        Ok(replies
            .into_iter()
            .map(|reply| match reply {
                Ok((id, _)) if id < 0 => Err(Error::QueueFull),
                Ok((id, new)) => Ok((id, new == 1)),
                Err(e) => Err(self.link.error(&e)),
            })
            .collect())
    }

    /// New entries of the stream (as many as the room that jobs read
    /// before leave), then the due jobs, as the shared rate allows.
    fn claim(&self, room: usize) -> Result<Vec<Claimed>, Error> {
        let mut held = lock(&self.held);
        let holding = held.waiting.len() + held.flight.len();
        let want = room
            .saturating_sub(held.waiting.len())
            .min(self.setup.prefetch.saturating_sub(holding));
        let mut failed = None;
        if want > 0 {
            let read = self.link.with(|c, _| {
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(&self.setup.group)
                    .arg(&self.setup.consumer)
                    .arg("COUNT")
                    .arg(want)
                    .arg("STREAMS")
                    .arg(&self.stream)
                    .arg(">")
                    .query::<Value>(c)
            });
            failed = read
                .and_then(|v| self.take_in(&mut held, read_reply(&v)))
                .err();
        }
        let now = now_ms();
        let mut out = Vec::new();
        for (entry, record) in std::mem::take(&mut held.waiting) {
            let ready = failed.is_none() && out.len() < room && record.due <= now;
            let ready = ready
                && self.token(&mut held, &record, now).unwrap_or_else(|e| {
                    failed = Some(e);
                    false
                });
            if ready {
                held.flight.insert(entry.clone(), record.clone());
                out.push(Claimed {
                    id: record.id,
                    attempts: record.attempts,
                    stored: record.stored,
                    entry,
                });
            } else {
                held.waiting.push((entry, record));
            }
        }
        match failed {
            // What was claimed is delivered all the same.
            Some(e) if out.is_empty() => Err(e),
            Some(e) => {
                log::error!("reqpool: outbox could not read stream {}: {e}", self.stream);
                Ok(out)
            }
            None => Ok(out),
        }
    }

    fn write(&self, answers: &[Answer]) -> Result<(), Error> {
        let mut p = redis::pipe();
        {
            let held = lock(&self.held);
            let mut done = Vec::new();
            for a in answers {
                // A job this consumer does not hold was answered already.
                let Some(r) = held.flight.get(&a.entry) else {
                    continue;
                };
                if matches!(a.end, End::Delivered { .. }) {
                    done.push((a, r));
                } else {
                    self.answer(&mut p, a, r);
                }
            }
            for chunk in done.chunks(500) {
                self.delivered(&mut p, chunk);
            }
        }
        self.link.with(|c, _| p.query::<Value>(c).map(drop))?;
        let mut held = lock(&self.held);
        for a in answers {
            held.flight.remove(&a.entry);
        }
        Ok(())
    }

    /// The next waiting job's time, and at most [`POLL`] from now: other
    /// processes add entries without telling this one.
    fn next_due(&self) -> Result<Option<i64>, Error> {
        let held = lock(&self.held);
        let poll = now_ms() + i64::try_from(POLL.as_millis()).unwrap_or(20);
        let first = held
            .waiting
            .iter()
            .map(|(_, r)| {
                let blocked = held.blocked.get(&host(&r.stored.url)).copied().unwrap_or(0);
                r.due.max(blocked)
            })
            .min();
        Ok(Some(first.map_or(poll, |f| f.min(poll))))
    }

    /// Entries in the stream: every job not yet answered, of every
    /// consumer.
    fn unfinished(&self) -> Result<usize, Error> {
        let n: u64 = self
            .link
            .with(|c, _| redis::cmd("XLEN").arg(&self.stream).query(c))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Keeps this consumer's lease (every third of it) and takes over
    /// what stopped consumers left. Delivered jobs expire by themselves.
    fn tidy(&self, _retention: Duration) -> Result<(), Error> {
        let due = {
            let mut held = lock(&self.held);
            let due = held
                .last_extend
                .is_none_or(|t| t.elapsed() >= self.setup.lease / 3);
            if due {
                held.last_extend = Some(Instant::now());
            }
            due
        };
        if due {
            self.extend()?;
        }
        self.take_over()
    }

    fn tidy_every(&self) -> Duration {
        (self.setup.lease / 4).clamp(Duration::from_millis(50), Duration::from_millis(500))
    }

    fn stats(&self) -> Result<OutboxStats, Error> {
        let (len, pending, delivered, dead): (u64, Value, Option<u64>, u64) =
            self.link.with(|c, _| {
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
                    .query(c)
            })?;
        let in_flight = match &pending {
            Value::Array(p) => p.first().and_then(string).and_then(|n| n.parse().ok()),
            _ => None,
        }
        .unwrap_or(0u64);
        Ok(OutboxStats {
            pending: len.saturating_sub(in_flight),
            in_flight,
            delivered: delivered.unwrap_or(0),
            dead,
        })
    }

    fn dead(&self) -> Result<Vec<DeadJob>, Error> {
        Ok(self
            .dead_entries()?
            .into_iter()
            .map(|(entry, f)| {
                let text = |name: &str| {
                    field(&f, name)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                };
                let num = |name: &str| text(name).parse().ok();
                let mut url = text("url");
                let mut method = text("method");
                if field(&f, "job").is_none() {
                    // Not one of reqpool's: shown by where it was.
                    method = "entry".into();
                    url = format!("{} of {}", text("entry").max(entry), self.stream);
                }
                DeadJob::new(
                    JobId(num("job").unwrap_or(0)),
                    text("key"),
                    &method,
                    &url,
                    text("error"),
                    num("attempts")
                        .and_then(|n: i64| u32::try_from(n).ok())
                        .unwrap_or(0),
                )
            })
            .collect())
    }

    fn requeue(&self, id: JobId) -> Result<bool, Error> {
        let Some((entry, fields)) = self.dead_entry(id)? else {
            return Ok(false);
        };
        let Ok(mut record) = Record::parse(&fields) else {
            return Ok(false);
        };
        record.attempts = 0;
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
        let Some((entry, fields)) = self.dead_entry(id)? else {
            return Ok(false);
        };
        let key = field(&fields, "key")
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
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
        let (status, body): (Option<i64>, Option<Vec<u8>>) = self.link.with(|c, _| {
            redis::cmd("HMGET")
                .arg(self.key("done", &id.0.to_string()))
                .arg("status")
                .arg("body")
                .query(c)
        })?;
        Ok(status.and_then(|s| Delivered::new(s, body)))
    }

    /// Jobs read and not started go back to the stream as new entries,
    /// for any consumer to take now.
    fn close(&self) -> Result<(), Error> {
        let waiting = std::mem::take(&mut lock(&self.held).waiting);
        if waiting.is_empty() {
            return Ok(());
        }
        let hash = self.link.scripts().moved.get_hash().to_owned();
        let mut p = redis::pipe();
        for (entry, record) in &waiting {
            p.cmd("EVALSHA")
                .arg(&hash)
                .arg(2)
                .arg(&self.stream)
                .arg(&self.stream)
                .arg(&self.setup.group)
                .arg(entry);
            for (k, v) in record.fields(true) {
                p.arg(k).arg(v);
            }
        }
        self.link.with(|c, _| p.query::<Value>(c).map(drop))
    }

    fn describe(&self) -> String {
        format!("redis {} stream {}", self.link.shown(), self.stream)
    }
}

/// This process's name in its group: the host's name and the process id
/// (and a number from the second outbox of a process on).
pub(super) fn default_consumer() -> String {
    static OPENED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    match n {
        0 => format!("{host}-{}", std::process::id()),
        n => format!("{host}-{}-{}", std::process::id(), n + 1),
    }
}

/// A URL's `host:port`, the unit of the shared rate.
fn host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_default()
}
