//! Whether an outbox delivers, seen from outside: the dispatcher's
//! heartbeat (its last round with the store), its last error, the panics
//! it survived, and the jobs its store lost; what
//! [`Outbox::health`](crate::Outbox::health) reports.

use crate::sync::lock;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How an outbox's delivery is doing: for a service's health check, which
/// should alert when [`delivering`](OutboxHealth::delivering) is false or
/// [`since_progress`](OutboxHealth::since_progress) grows.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # fn main() -> Result<(), reqpool::Error> {
/// use std::time::Duration;
/// let pool = reqpool::Pool::new(4);
/// let outbox = reqpool::Outbox::open("calls.db", &pool)?;
/// let h = outbox.health();
/// let stuck = h.since_progress.is_none_or(|t| t > Duration::from_secs(30));
/// if !h.delivering || stuck {
///     eprintln!("outbox: not delivering; last error: {:?}", h.last_error);
/// }
/// # Ok(()) }
/// # #[cfg(not(feature = "sqlite"))]
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OutboxHealth {
    /// True while this process's dispatcher runs: false for an outbox
    /// opened with [`deliver(false)`](crate::OutboxOptions::deliver), and
    /// after it stopped (the outbox is being dropped).
    pub delivering: bool,
    /// The last failure of the store (or a panic of the dispatcher or of
    /// the housekeeping), as
    /// its error says it (no secrets), if there was one.
    pub last_error: Option<String>,
    /// How long ago [`last_error`](OutboxHealth::last_error) happened.
    pub last_error_age: Option<Duration>,
    /// How long ago the dispatcher last finished a round with the store
    /// without an error (claiming, writing answers, housekeeping): grows
    /// while the store is down. `None` before its first round.
    pub since_progress: Option<Duration>,
    /// How long the job due longest has been waiting for its delivery, as
    /// far as this process can see; `None` when nothing is due (or the
    /// store could not be asked).
    pub oldest_due: Option<Duration>,
    /// Store calls of the dispatcher that failed, since the outbox opened.
    pub store_errors: u64,
    /// Panics of the dispatcher and of the housekeeping it recovered
    /// from (each logged at `error` and followed by a pause).
    pub panics: u64,
    /// Jobs this process knew of that its store lost (a Redis restarted
    /// without its data, entries deleted while held): each loss is also
    /// logged at `error`.
    pub lost: u64,
}

/// The dispatcher's side of [`OutboxHealth`].
#[derive(Debug, Default)]
pub(super) struct Health {
    state: Mutex<State>,
    /// The last round with the store went through (no error since).
    ok: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    running: bool,
    last_error: Option<(String, Instant)>,
    progress: Option<Instant>,
    store_errors: u64,
    panics: u64,
}

impl Health {
    pub(super) fn running(&self, yes: bool) {
        lock(&self.state).running = yes;
    }

    /// A round with the store went through.
    pub(super) fn progress(&self) {
        lock(&self.state).progress = Some(Instant::now());
        self.ok.store(true, std::sync::atomic::Ordering::Release);
    }

    /// True if the store's last round went through: it may be written to
    /// from another thread without waiting on a store that is down.
    pub(super) fn store_ok(&self) -> bool {
        self.ok.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A store call failed with `error`.
    pub(super) fn failed(&self, error: &str) {
        self.ok.store(false, std::sync::atomic::Ordering::Release);
        let mut s = lock(&self.state);
        s.store_errors = s.store_errors.saturating_add(1);
        s.last_error = Some((error.to_owned(), Instant::now()));
    }

    /// The outbox's `what` (its dispatcher, its housekeeping) panicked
    /// with `message`.
    pub(super) fn panicked(&self, what: &str, message: &str) {
        let mut s = lock(&self.state);
        s.panics = s.panics.saturating_add(1);
        s.last_error = Some((
            format!("the outbox's {what} panicked: {message}"),
            Instant::now(),
        ));
    }

    /// What this says, with what only the caller knows.
    pub(super) fn report(&self, oldest_due: Option<Duration>, lost: u64) -> OutboxHealth {
        let s = lock(&self.state);
        OutboxHealth {
            delivering: s.running,
            last_error: s.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_age: s.last_error.as_ref().map(|(_, t)| t.elapsed()),
            since_progress: s.progress.map(|t| t.elapsed()),
            oldest_due,
            store_errors: s.store_errors,
            panics: s.panics,
            lost,
        }
    }
}
