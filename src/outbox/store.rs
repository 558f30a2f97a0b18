//! The seam between the outbox and its stores: the three traits a store
//! implements ([`Delivery`] for the dispatcher, [`Admin`] for the public
//! calls, [`Housekeeping`] on its own timer), the types every store shares
//! (the public [`JobId`], [`OutboxStats`], [`DeadJob`], [`Delivered`]; a
//! job as written, claimed and answered), and the clock. A store knows
//! nothing of the pool, the options or the face; the machinery knows a
//! store only through these traits.

use crate::error::Error;
use crate::prepare::Stored;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The id of a job in an outbox's store; stable across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {}", self.0)
    }
}

/// How many jobs of an outbox are where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OutboxStats {
    /// Waiting for their (next) delivery.
    pub pending: u64,
    /// Handed to the pool, not answered yet.
    pub in_flight: u64,
    /// Answered by the server, and still in the store (see
    /// [`OutboxOptions::retention`](crate::OutboxOptions::retention) and
    /// [`Outbox::forget`](crate::Outbox::forget)).
    pub delivered: u64,
    /// Given up on: see [`Outbox::dead`](crate::Outbox::dead).
    pub dead: u64,
}

/// A job the outbox gave up on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadJob {
    /// Its id.
    pub id: JobId,
    /// Its idempotency key.
    pub key: String,
    /// The request, as `METHOD url` with the URL redacted.
    pub request: String,
    /// The error of its last delivery.
    pub last_error: String,
    /// How many deliveries were tried.
    pub attempts: u32,
}

impl DeadJob {
    /// A dead job as a store lists it; the URL is redacted here.
    pub(super) fn new(
        id: JobId,
        key: String,
        method: &str,
        url: &str,
        last_error: String,
        attempts: u32,
    ) -> Self {
        DeadJob {
            id,
            key,
            request: format!("{method} {}", crate::redact::redact_url(url)),
            last_error,
            attempts,
        }
    }
}

/// A server's answer to a delivered job, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivered {
    /// The HTTP status.
    pub status: u16,
    /// The body (at most 64 KiB of it).
    pub body: Vec<u8>,
    /// True when the server's body was over the pool's
    /// [`max_response_bytes`](crate::Builder::max_response_bytes): the
    /// job counts as delivered (the server took it; sending it again
    /// would repeat it) and `body` is empty.
    pub cut: bool,
}

impl Delivered {
    /// A reply as a store keeps it; `None` for a status out of range.
    pub(super) fn new(status: i64, body: Option<Vec<u8>>, cut: bool) -> Option<Self> {
        Some(Delivered {
            status: u16::try_from(status).ok()?,
            body: body.unwrap_or_default(),
            cut,
        })
    }
}

/// The clock every store and the dispatcher write times with: ms since
/// the epoch.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A duration in ms, saturating.
pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The longest wait the outbox gives a job between two deliveries (the
/// cap of its backoff, and the most of a `Retry-After` it honours). A
/// store that finds a time further ahead than this does not trust it (a
/// clock that was ahead, a hand-written value): the job is due at once.
pub(super) const LONGEST_WAIT: Duration = Duration::from_secs(3600);

/// A job as `enqueue` writes it.
pub(super) struct Row {
    pub(super) key: String,
    pub(super) method: String,
    pub(super) url: String,
    /// The headers as JSON: `[["name", "value"], …]`.
    pub(super) headers: String,
    pub(super) body: Option<Vec<u8>>,
    /// When it was enqueued (ms since the epoch), for
    /// [`max_age`](crate::OutboxOptions::max_age).
    pub(super) created: i64,
}

/// One row's fate in [`Delivery::insert`]: its id and whether it is new,
/// or why it was not taken.
pub(super) type Inserted = Result<(i64, bool), Error>;

/// How much a claim may hand out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Room {
    /// Jobs at most.
    pub(super) jobs: usize,
    /// Bytes of bodies at most (but one job at least, whatever its size).
    pub(super) bytes: usize,
    /// Workers of the pool free to send now: the most a store that
    /// hands out tokens of a shared rate with each job claims, so that a
    /// job holds its token only while a worker can send it.
    pub(super) free: usize,
}

/// A job handed out for delivery; `R` is the store's own handle on it
/// (its [`Delivery::Receipt`]).
pub(super) struct Claimed<R> {
    pub(super) id: i64,
    /// Deliveries before this one that reached (or may have reached) a
    /// server, and deliveries whose consumer stopped: what
    /// `max_attempts` counts.
    pub(super) attempts: u32,
    /// Every delivery before this one, sent or not: what the backoff
    /// grows with.
    pub(super) tries: u32,
    /// How many of them ended with their consumer stopped (a crash, a
    /// kill, a lease that ran out).
    pub(super) stops: u32,
    /// When it was enqueued (ms since the epoch; 0 if not known).
    pub(super) created: i64,
    pub(super) stored: Stored,
    pub(super) receipt: R,
}

/// How one delivery ended, to be written: the claim's receipt, the
/// counts after it, its end.
pub(super) struct Answer<R> {
    pub(super) receipt: R,
    /// [`Claimed::attempts`] after this delivery.
    pub(super) attempts: u32,
    /// [`Claimed::tries`] after this delivery.
    pub(super) tries: u32,
    pub(super) end: End,
}

/// The end of one delivery: facts about it, which each store keeps as it
/// can.
pub(super) enum End {
    /// Answered: the reply if replies are kept (`status` is `None` when
    /// they are not), `cut` when its body was over the pool's
    /// `max_response_bytes` and is not kept.
    Delivered {
        status: Option<i64>,
        body: Option<Vec<u8>>,
        cut: bool,
    },
    /// To be tried again at `at` (ms since the epoch), with the error of
    /// this delivery (`None`: it was not tried). `throttled` is the host's
    /// own word on when to come back (a 429 or 503 with `Retry-After`),
    /// which a store that shares a rate among consumers passes on.
    Later {
        at: i64,
        // The file keeps it as the job's last error; Redis keeps only a
        // dead job's.
        #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
        error: Option<String>,
        // Only a store with a shared rate (Redis) has a use for it.
        #[cfg_attr(not(feature = "redis"), allow(dead_code))]
        throttled: Option<Duration>,
    },
    /// Given up.
    Dead { error: String },
}

/// What the dispatcher asks of a store: five calls, each one transaction
/// (or one atomic script) of the store; errors are [`Error::Storage`].
pub(super) trait Delivery: Send + Sync + 'static {
    /// The store's own handle on one delivery, handed out with a claimed
    /// job and given back with its answer (a row's id, a stream entry's
    /// id).
    type Receipt: Send + 'static;

    /// Writes `rows`: per row its id and whether it is new (a known key
    /// returns the existing job), or why that row was not taken (a full
    /// store: [`Error::QueueFull`]). An error of the whole call kept
    /// nothing.
    fn insert(&self, rows: &[&Row]) -> Result<Vec<Inserted>, Error>;
    /// Marks due jobs as in flight, as many as `room` allows, and returns
    /// them.
    fn claim(&self, room: Room) -> Result<Vec<Claimed<Self::Receipt>>, Error>;
    /// Writes how deliveries ended. On an error nothing of it is kept,
    /// and the caller writes the same answers again later.
    fn write(&self, answers: &[Answer<Self::Receipt>]) -> Result<(), Error>;
    /// When to look for due jobs next (ms since the epoch): the next
    /// retry's time, or a poll for a store that others write too; `None`
    /// when nothing waits.
    fn next_due(&self) -> Result<Option<i64>, Error>;
    /// The dispatcher stops: hands back what this process holds and has
    /// not started, so that others take it at once rather than after a
    /// lease.
    fn close(&self) -> Result<(), Error>;
}

/// What the public calls ask of a store, besides new jobs.
pub(super) trait Admin: Send + Sync {
    /// Jobs neither delivered nor dead.
    fn unfinished(&self) -> Result<usize, Error>;
    /// How many jobs are where.
    fn stats(&self) -> Result<OutboxStats, Error>;
    /// The dead jobs, oldest first.
    fn dead(&self) -> Result<Vec<DeadJob>, Error>;
    /// A dead job back to pending, its counts reset; false if it is not
    /// dead.
    fn requeue(&self, id: JobId) -> Result<bool, Error>;
    /// A delivered or dead job removed; false if it is neither.
    fn forget(&self, id: JobId) -> Result<bool, Error>;
    /// The kept answer to a delivered job.
    fn reply(&self, id: JobId) -> Result<Option<Delivered>, Error>;
    /// Since when (ms since the epoch) the job due longest has been due,
    /// as far as this process can see; `None` if none is due.
    fn oldest_due(&self) -> Result<Option<i64>, Error>;
    /// Jobs this process knew of that the store lost.
    fn lost(&self) -> u64 {
        0
    }
}

/// A store's own upkeep, run on a timer of its own beside the dispatcher
/// (removing delivered jobs past the retention, keeping leases, taking
/// over the work of consumers that died).
pub(super) trait Housekeeping: Send + Sync {
    /// How often [`tidy`](Housekeeping::tidy) runs.
    fn every(&self) -> Duration;
    /// One round of upkeep.
    fn tidy(&self) -> Result<(), Error>;
}

/// A whole store: the three traits, and a `Debug` that says where it is
/// (no secrets).
pub(super) trait Store: Delivery + Admin + Housekeeping + fmt::Debug {}

impl<S: Delivery + Admin + Housekeeping + fmt::Debug> Store for S {}

/// A store as the face holds it, whatever its receipt: new jobs and the
/// administration calls.
pub(super) trait Front: Admin + fmt::Debug {
    /// [`Delivery::insert`].
    fn insert(&self, rows: &[&Row]) -> Result<Vec<Inserted>, Error>;
}

impl<S: Store> Front for S {
    fn insert(&self, rows: &[&Row]) -> Result<Vec<Inserted>, Error> {
        Delivery::insert(self, rows)
    }
}
