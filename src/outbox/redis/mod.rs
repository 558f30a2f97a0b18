//! The outbox's store on a Redis stream (feature `redis`), shared by every
//! process that opens it: `enqueue` adds an entry, each consumer reads
//! entries as a member of one consumer group, acknowledges one only after
//! the server answered, keeps a lease on what it holds, and takes over
//! the entries of a consumer whose lease ran out. A job put off goes back
//! to the stream with its next time; a job given up on moves to the dead
//! letters, `<stream>:dead`.
//!
//! Keys, for an outbox named `calls`, all under the hash tag `{calls}` so
//! that on a Redis Cluster they share one slot (each script's keys, each
//! pipeline's commands go to one master): `{calls}` (the stream of jobs),
//! `{calls}:dead`, `{calls}:seq` (job ids), `{calls}:key:<key>` (a key's
//! job), `{calls}:done:<id>` (a delivered job's reply),
//! `{calls}:delivered` (a count), `{calls}:later`, `{calls}:proven`,
//! `{calls}:alone:<consumer>`, per order key `{calls}:order:<key>` (its
//! line of job ids) with `{calls}:park:<id>` (a job waiting its turn)
//! and `{calls}:parked` (a count), and per host `{calls}:rate:<host>`,
//! `{calls}:pause:<host>`, `{calls}:slow:<host>` (the shared rate).

mod admin;
mod answers;
mod insert;
mod lease;
mod link;
mod reading;
mod record;
mod scripts;

use super::store::{Answer, Claimed, Delivery, End, Housekeeping, Inserted, Room, Row, now_ms};
use crate::error::Error;
use crate::sync::lock;
use link::Link;
use record::{Record, read_reply};
use redis::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a busy consumer looks for entries that others added (one
/// with nothing in flight waits for them instead: [`BLOCK`]).
const POLL: Duration = Duration::from_millis(20);
/// How long an idle consumer's read waits for new entries at most: how
/// late, at worst, it sees that its outbox closes.
const BLOCK: Duration = Duration::from_millis(100);
/// Entries taken over from stopped consumers at most per look.
const TAKE_OVER: usize = 1_000;
/// How long an enqueue waits for the replicas it must reach.
const REPLICA_WAIT: Duration = Duration::from_secs(2);

/// How a Redis store is set up (from [`OutboxOptions`](crate::OutboxOptions)).
pub(super) struct Setup {
    pub(super) group: String,
    pub(super) consumer: String,
    pub(super) lease: Duration,
    /// The shared rate: one request per this interval, per host.
    pub(super) interval: Option<Duration>,
    /// Entries at most in the stream (0: no limit).
    pub(super) max_queued: usize,
    /// Jobs this consumer holds at most (running and waiting): the rest
    /// stay in the stream for the others, and a consumer that dies leaves
    /// no more than this for its lease.
    pub(super) prefetch: usize,
    pub(super) retention: Duration,
    /// Replicas that must hold a job before its enqueue returns (`WAIT`).
    pub(super) replicas: usize,
    /// What the keys of the shared rate begin with: the outbox's hash
    /// tag, `{name}`, the same for all its shards.
    pub(super) shared: String,
}

/// A stream, its group, and what this consumer holds of it.
pub(super) struct Redis {
    link: Link,
    stream: String,
    setup: Setup,
    held: Mutex<Held>,
    /// Jobs this consumer knew of that Redis lost, and the number of
    /// vanished groups already counted in it.
    lost: std::sync::atomic::AtomicU64,
    vanished_seen: std::sync::atomic::AtomicU64,
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
    /// About how many bytes an entry read lately held (its body).
    entry_bytes: usize,
    last_extend: Option<Instant>,
    /// The last claim waited for new entries and none came: the next
    /// may wait again at once.
    idle: bool,
}

/// Where the store is: one Redis server, or nodes of a Redis Cluster.
#[derive(Clone, Copy)]
pub(super) enum Nodes<'a> {
    One(&'a str),
    Cluster(&'a [&'a str]),
}

/// The stream's key for an outbox `name`: the name as its hash tag, which
/// every other key of the outbox begins with.
pub(super) fn stream_key(name: &str) -> Result<String, Error> {
    if name.contains(['{', '}']) {
        return Err(Error::usage(format!(
            "an outbox name on Redis may not contain `{{` or `}}` (it becomes the keys' hash tag): {name:?}"
        )));
    }
    Ok(format!("{{{name}}}"))
}

impl Redis {
    /// Connects to `nodes` (failing at once if Redis cannot be reached)
    /// and makes the stream of outbox `name` and its group if they are
    /// not there.
    pub(super) fn open(nodes: Nodes<'_>, name: &str, setup: Setup) -> Result<Redis, Error> {
        let stream = stream_key(name)?;
        let link = match nodes {
            Nodes::One(url) => Link::open(url, &stream, &setup.group)?,
            Nodes::Cluster(urls) => Link::open_cluster(urls, &stream, &setup.group)?,
        };
        Ok(Redis {
            link,
            stream,
            setup,
            held: Mutex::new(Held::default()),
            lost: std::sync::atomic::AtomicU64::new(0),
            vanished_seen: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Counts the jobs a vanished group took with it: everything this
    /// consumer held then. They are dropped: their entries are gone, and
    /// their answers could not be written.
    fn count_vanished(&self) {
        self.count_vanished_in(&mut lock(&self.held));
    }

    /// [`count_vanished`](Redis::count_vanished), holding `held`.
    fn count_vanished_in(&self, held: &mut Held) {
        use std::sync::atomic::Ordering;
        let now = self.link.vanished();
        if self.vanished_seen.swap(now, Ordering::AcqRel) == now {
            return;
        }
        let n = held.flight.len() + held.waiting.len();
        held.waiting.clear();
        self.lost.fetch_add(n as u64, Ordering::AcqRel);
        log::error!(
            "reqpool: outbox stream {}: {n} job(s) this consumer held were lost with it",
            self.stream
        );
    }

    /// Notes `n` jobs lost (deleted while held), already logged.
    pub(super) fn add_lost(&self, n: usize) {
        self.lost
            .fetch_add(n as u64, std::sync::atomic::Ordering::AcqRel);
    }

    fn key(&self, what: &str, of: &str) -> String {
        format!("{}:{what}:{of}", self.stream)
    }

    /// A key of the shared rate: one for all the shards of an outbox
    /// (under the outbox's own hash tag, `{name}`).
    fn shared_key(&self, what: &str, of: &str) -> String {
        format!("{}:{what}:{of}", self.setup.shared)
    }

    /// The jobs put off: `due attempts tries` by entry (see
    /// `scripts::LATER`).
    fn later(&self) -> String {
        format!("{}:later", self.stream)
    }

    /// The proven stops of entries taken over (a hash by entry).
    fn proven(&self) -> String {
        format!("{}:proven", self.stream)
    }

    /// What this consumer delivers alone now (an entry id), for whoever
    /// takes its entries over if it stops.
    fn alone(&self) -> String {
        format!("{}:alone:{}", self.stream, self.setup.consumer)
    }

    /// How many jobs wait for their order key's turn (see
    /// `scripts::ENQUEUE`).
    fn parked(&self) -> String {
        format!("{}:parked", self.stream)
    }

    fn dead_stream(&self) -> String {
        format!("{}:dead", self.stream)
    }
}

impl Delivery for Redis {
    type Receipt = String;

    /// See `insert.rs`: one script per job, pipelined.
    fn insert(&self, rows: &[&Row]) -> Result<Vec<Inserted>, Error> {
        self.insert_rows(rows)
    }

    /// New entries of the stream (as many as the room that jobs read
    /// before leave), then the due jobs, as the shared rate allows. A job
    /// taken over from a stopped consumer goes alone (see
    /// `Sqlite::claim`). A consumer with nothing in flight nor waiting
    /// that finds nothing new waits for new entries on its second
    /// connection, at most [`BLOCK`] (one stream per outbox only: see
    /// [`Redis::waits`]).
    fn claim(&self, room: Room) -> Result<Vec<Claimed<String>>, Error> {
        // With a shared rate, each job claimed takes a token: jobs are
        // claimed only for free workers (no burst of queued jobs after a
        // stall).
        let bytes = room.bytes;
        let room = if self.setup.interval.is_some() {
            room.jobs.min(room.free)
        } else {
            room.jobs
        };
        let mut held = lock(&self.held);
        held.idle = false;
        let want = self.want(&held, room, bytes);
        let mut failed = None;
        let mut read = 0;
        if want > 0 {
            let got = self
                .link
                .with(|c, _| self.read(want, None).query::<Value>(c));
            (read, failed) = self.take_read(&mut held, got);
        }
        let mut out = self.hand_out(&mut held, room, bytes, &mut failed);
        // Nothing in flight, nothing waiting, nothing new: wait for new
        // entries. (Not with jobs waiting for their time or a token: Redis
        // ends a read's wait only on its own clock's tick, up to 100 ms
        // late, so those wake the dispatcher as before.)
        if out.is_empty()
            && failed.is_none()
            && read == 0
            && held.flight.is_empty()
            && held.waiting.is_empty()
        {
            let want = self.want(&held, room, bytes);
            if self.waits() && want > 0 {
                // Nothing to do: wait for new entries without the lock, so
                // that housekeeping goes on meanwhile.
                drop(held);
                let got = self
                    .link
                    .with_reader(|c| self.read(want, Some(BLOCK)).query::<Value>(c));
                held = lock(&self.held);
                (read, failed) = self.take_read(&mut held, got);
                out = self.hand_out(&mut held, room, bytes, &mut failed);
                // Nothing came: the next claim may wait again at once.
                held.idle = failed.is_none() && read == 0 && out.is_empty();
            }
        }
        drop(held);
        if let Some(c) = out.first()
            && c.stops > 0
        {
            // Said before it goes: if this consumer stops now, the one
            // that takes over knows which job was going.
            let ms = u64::try_from(self.setup.lease.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_mul(10)
                .clamp(1, 1 << 45);
            if let Err(e) = self.link.with(|conn, _| {
                redis::cmd("SET")
                    .arg(self.alone())
                    .arg(&c.receipt)
                    .arg("PX")
                    .arg(ms)
                    .query::<()>(conn)
            }) {
                failed.get_or_insert(e);
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

    /// The answers in one pipeline; with it, a read of as many new
    /// entries as the answers leave room for (see [`Redis::read_ahead`]),
    /// so that a busy consumer's next claim needs no round trip of its
    /// own.
    fn write(&self, answers: &[Answer<String>]) -> Result<(), Error> {
        let mut p = redis::pipe();
        let ahead = {
            let held = lock(&self.held);
            let mut done = Vec::new();
            let mut leaving = 0usize;
            for a in answers {
                // A job this consumer does not hold was answered already.
                let Some(r) = held.flight.get(&a.receipt) else {
                    continue;
                };
                if !matches!(a.end, End::Later { .. }) {
                    leaving += 1;
                }
                if matches!(a.end, End::Delivered { .. }) {
                    done.push((a, r));
                } else {
                    self.answer(&mut p, a, r);
                }
                if r.stops > 0 {
                    // Its proven stops are in its attempts from now on.
                    p.cmd("HDEL").arg(self.proven()).arg(&a.receipt).ignore();
                }
                if r.tries > 0 && !matches!(a.end, End::Later { .. }) {
                    p.cmd("HDEL").arg(self.later()).arg(&a.receipt).ignore();
                }
            }
            for chunk in done.chunks(500) {
                self.delivered(&mut p, chunk);
            }
            let ahead = self.read_ahead(&held, leaving);
            if ahead > 0 {
                p.add_command(self.read(ahead, None));
            }
            ahead
        };
        let wrote = self.link.with(|c, _| p.query::<Vec<Value>>(c));
        let mut held = lock(&self.held);
        self.count_vanished_in(&mut held);
        let mut replies = wrote?;
        for a in answers {
            let Some(mut r) = held.flight.remove(&a.receipt) else {
                continue;
            };
            if let End::Later { at, .. } = a.end {
                // Kept, to go again at its time (retries first).
                r.due = at;
                r.attempts = a.attempts;
                r.tries = a.tries;
                held.waiting.insert(0, (a.receipt.clone(), r));
            }
        }
        if ahead > 0
            && let Some(read) = replies.pop()
        {
            self.take_in(&mut held, read_reply(read))?;
        }
        Ok(())
    }

    /// The next waiting job's time, and at most [`POLL`] from now: other
    /// processes add entries without telling this one. Now, after a
    /// claim that waited for new entries in vain: the next claim waits
    /// again.
    fn next_due(&self) -> Result<Option<i64>, Error> {
        let held = lock(&self.held);
        let now = now_ms();
        if held.idle {
            return Ok(Some(now));
        }
        let poll = now + i64::try_from(POLL.as_millis()).unwrap_or(20);
        let first = self.first_due(&held);
        Ok(Some(first.map_or(poll, |f| f.min(poll))))
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
                .arg(entry)
                // Back in the stream, still the head of its key's line.
                .arg("")
                .arg(record.id);
            for (k, v) in record.fields(true) {
                p.arg(k).arg(v);
            }
            if record.tries > 0 {
                p.cmd("HDEL").arg(self.later()).arg(entry).ignore();
            }
        }
        self.link.with(|c, _| p.query::<Value>(c).map(drop))
    }
}

impl Housekeeping for Redis {
    fn every(&self) -> Duration {
        (self.setup.lease / 4).clamp(Duration::from_millis(50), Duration::from_millis(500))
    }

    /// Keeps this consumer's lease (every third of it) and takes over
    /// what stopped consumers left. Delivered jobs expire by themselves.
    fn tidy(&self) -> Result<(), Error> {
        self.count_vanished();
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
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis {} stream {}", self.link.shown(), self.stream)
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

/// A URL's host key (`scheme://host:port`, no user info), the unit of the
/// shared rate.
fn host(url: &str) -> String {
    crate::host_key::HostKey::of_url(url)
        .map(crate::host_key::HostKey::into_string)
        .unwrap_or_default()
}
