//! The wire: the guard on every connection of a pool's agent that makes a
//! request's time limit a true total, and lets a cancel cut a request off.
//!
//! ureq bounds each phase of a request (connect, send, wait for the head,
//! read the body) with its own budget that starts when the phase starts, so
//! a server that answers the head just in time and then trickles the body
//! could hold a worker for twice the limit. Instead, every connection of
//! the pool's agent is wrapped in [`Guarded`], which caps each socket wait
//! at what is left of the limit of the job running on this thread (set by
//! the worker with [`with_limit`]). When it runs out, the read or write in
//! progress fails with a timeout within milliseconds, whatever the server
//! does. Requests a closure job makes through the pool's agent get the same
//! bound, because they run on the same thread.

use crate::deadline::Deadline;
use crate::spill::Spilling;
use crate::sync::lock;
use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, ShutdownHandle, Transport,
};

thread_local! {
    /// The limit of the job running on this thread (None: no limit).
    static LIMIT: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The job running on this thread, as the wire sees it.
    static JOB: RefCell<Option<Arc<dyn InFlight>>> = const { RefCell::new(None) };
    /// This thread opened a connection since `reset_opened`.
    static OPENED: Cell<bool> = const { Cell::new(false) };
    /// This thread began writing a request since `reset_opened`.
    static WROTE: Cell<bool> = const { Cell::new(false) };
    /// The last request a closure job on this thread sent through the
    /// pool's agent (`Some` while a closure runs: see `watch_sent`).
    static SENT: RefCell<Option<Option<(ureq::http::Method, ureq::http::Uri)>>> =
        const { RefCell::new(None) };
}

/// The last request a closure job sent through the pool's agent.
pub(crate) type Sent = Option<(ureq::http::Method, ureq::http::Uri)>;

/// Runs `f` (a closure job) noting each request it sends through the
/// pool's agent; returns what `f` returned and the last request's method
/// and URL, so that an error from ureq, which names none, can (they are
/// written out only then).
pub(crate) fn watch_sent<R>(f: impl FnOnce() -> R) -> (R, Sent) {
    struct Restore(Option<Option<(ureq::http::Method, ureq::http::Uri)>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            SENT.with(|s| *s.borrow_mut() = prev);
        }
    }
    let restore = Restore(SENT.with(|s| s.borrow_mut().replace(None)));
    let r = f();
    let last = SENT.with(|s| s.borrow_mut().take().flatten());
    drop(restore);
    (r, last)
}

/// The middleware of a pool's agents: notes the request about to be sent
/// if a closure job on this thread is watching, and the length of its head
/// for the connection that writes it.
pub(crate) fn note_sent(
    req: ureq::http::Request<ureq::SendBody<'_>>,
    next: ureq::middleware::MiddlewareNext<'_>,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    SENT.with(|s| {
        if let Some(last) = &mut *s.borrow_mut() {
            *last = Some((req.method().clone(), req.uri().clone()));
        }
    });
    // A line longer than a connection's output buffer is written through
    // a buffer the connection lends for it (see `spill`).
    crate::spill::expect_head(req.method().as_str(), req.uri(), req.headers());
    next.handle(req)
}

/// Starts watching whether this thread's next exchange opens a connection
/// and writes to it.
pub(crate) fn reset_opened() {
    OPENED.with(|o| o.set(false));
    WROTE.with(|o| o.set(false));
}

/// True if any byte of a request may have been written since
/// `reset_opened`: a failure before that proves nothing was sent.
pub(crate) fn wrote() -> bool {
    WROTE.with(Cell::get)
}

/// True if a connection was opened (or tried) since `reset_opened`: a
/// failure then did not come from a kept-alive connection the server had
/// closed.
pub(crate) fn opened() -> bool {
    OPENED.with(Cell::get)
}

/// What the wire needs of the job whose I/O it carries.
pub(crate) trait InFlight: Send + Sync {
    /// Tells one job from another on a connection.
    fn id(&self) -> usize;
    /// Remembers `conn` as the connection the job is using now (None: it
    /// is done with it).
    fn using(&self, conn: Option<&Arc<Conn>>);
    /// True once the job is cancelled: its I/O fails at once.
    fn aborted(&self) -> bool;
    /// True for a detached fire: it stops once the request is written.
    fn detached(&self) -> bool;
}

/// One connection's socket, and which job used it last; what a cancel
/// shuts down.
#[derive(Default)]
pub(crate) struct Conn {
    socket: Mutex<Option<Weak<dyn ShutdownHandle>>>,
    /// The job that used it last (read on every I/O: an atomic, no lock).
    owner: std::sync::atomic::AtomicUsize,
}

impl Conn {
    /// Shuts the socket down if job `id` is still the one using it: its
    /// read or write in progress fails at once, and the connection is
    /// never reused.
    pub(crate) fn abort_for(&self, id: usize) {
        let socket = lock(&self.socket);
        if self.owner.load(std::sync::atomic::Ordering::Acquire) == id
            && let Some(socket) = socket.as_ref().and_then(Weak::upgrade)
        {
            socket.shutdown();
        }
    }

    /// Job `id` is done with it (if it still is the user).
    pub(crate) fn disown(&self, id: usize) {
        let _ = self.owner.compare_exchange(
            id,
            0,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        );
    }

    /// Marks job `id` as the user; true if it was another one before.
    fn own(&self, id: usize) -> bool {
        self.owner.swap(id, std::sync::atomic::Ordering::AcqRel) != id
    }
}

/// Runs `f` as the job `job` on this thread: its connections can be shut
/// down by a cancel. Puts the previous job back after (a job run inline
/// inside another).
pub(crate) fn with_job<R>(job: Arc<dyn InFlight>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<dyn InFlight>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            JOB.with(|j| *j.borrow_mut() = prev);
        }
    }
    let _restore = Restore(JOB.with(|j| j.borrow_mut().replace(job)));
    f()
}

/// The job on this thread is done with its connection (the exchange is
/// over; the connection may go to another job now).
pub(crate) fn release_conn() {
    JOB.with(|j| {
        if let Some(job) = &*j.borrow() {
            job.using(None);
        }
    });
}

/// True if job `id` runs on this thread (inline runs included).
pub(crate) fn running_here(id: usize) -> bool {
    JOB.with(|j| j.borrow().as_ref().is_some_and(|job| job.id() == id))
}

/// True if the job on this thread has been cancelled.
pub(crate) fn aborted() -> bool {
    JOB.with(|j| j.borrow().as_ref().is_some_and(|job| job.aborted()))
}

/// Marks `conn` as used by this thread's job; fails if the job is
/// cancelled, or is detached and about to wait for the reply.
fn watch(conn: &Arc<Conn>, awaiting_reply: bool) -> Result<(), ureq::Error> {
    JOB.with(|j| {
        let Some(job) = &*j.borrow() else {
            return Ok(());
        };
        if job.aborted() {
            return Err(io_error(CANCELLED));
        }
        // Only a change of hands needs the job to learn of the connection.
        if conn.own(job.id()) {
            job.using(Some(conn));
        }
        if awaiting_reply && job.detached() {
            return Err(io_error(DETACHED));
        }
        Ok(())
    })
}

/// The message of the error that ends a cancelled job's I/O.
pub(crate) const CANCELLED: &str = "reqpool: cancelled";
/// The message of the error that ends a detached fire once it is written.
pub(crate) const DETACHED: &str = "reqpool: request written, reply not awaited";

/// Not `Interrupted`: readers retry those (`read_to_end` would spin).
fn io_error(what: &'static str) -> ureq::Error {
    ureq::Error::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        what,
    ))
}

/// The limit of the job running on this thread, if any.
pub(crate) fn limit() -> Option<Instant> {
    LIMIT.with(Cell::get)
}

/// Runs `f` with `limit` as this thread's limit for network waits, and
/// puts the previous one back after (a job run inline inside another).
pub(crate) fn with_limit<R>(limit: Deadline, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            LIMIT.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(LIMIT.with(|l| l.replace(limit.instant())));
    f()
}

/// Caps `t` at what is left of this thread's limit. Running out is
/// reported as the phase it happened in, as ureq's own budgets are.
///
/// The cap is rounded down to a coarse step (at most an eighth of what is
/// left), so that the I/O calls of one request, and the requests after it
/// on the same connection, mostly ask for the same socket timeout: ureq
/// sets a socket's timeout only when it changes, and a `setsockopt` per
/// read and write would cost more than the rest of the guard. Returns the
/// timeout and true if the cap, not `t`, bounds it.
fn capped(t: NextTimeout) -> (NextTimeout, bool) {
    capped_at(t, Instant::now)
}

/// As [`capped`], with the clock read by `now` (only if there is a limit).
fn capped_at(t: NextTimeout, now: impl FnOnce() -> Instant) -> (NextTimeout, bool) {
    let Some(limit) = LIMIT.with(Cell::get) else {
        return (t, false);
    };
    let left = coarse(limit.saturating_duration_since(now()));
    if left < *t.after {
        let t = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::Exact(left),
            ..t
        };
        (t, true)
    } else {
        (t, false)
    }
}

/// `left` rounded down to a multiple of a power-of-two number of
/// milliseconds no larger than an eighth of it (exact under 64 ms).
fn coarse(left: Duration) -> Duration {
    let ms = left.as_millis().min(u128::from(u64::MAX)) as u64;
    if ms < 64 {
        return left;
    }
    let step = 1u64 << (ms / 8).ilog2();
    Duration::from_millis(ms / step * step)
}

/// True if this thread's limit has passed at `now`.
fn limit_passed(now: Instant) -> bool {
    LIMIT.with(Cell::get).is_some_and(|l| now >= l)
}

/// `t` less `passed`.
fn less(t: NextTimeout, passed: Duration) -> NextTimeout {
    use ureq::unversioned::transport::time::Duration as UDuration;
    match t.after {
        UDuration::Exact(d) => NextTimeout {
            after: UDuration::Exact(d.saturating_sub(passed)),
            ..t
        },
        _ => t,
    }
}

/// The sockets of an agent's open connections, to shut them down at once
/// (`shutdown_timeout` running out). Kept here rather than registered with
/// ureq's agent, which walks its whole list under its pool lock each time
/// any connection is made or comes back: with 10,000 connections open
/// that walk was the busiest code of the process. Here a dead entry is
/// dropped once the list has doubled since the last sweep.
#[derive(Debug, Default)]
pub(crate) struct Sockets {
    list: Mutex<SocketList>,
}

#[derive(Default)]
struct SocketList {
    sockets: Vec<Weak<dyn ShutdownHandle>>,
    /// Entries after the last sweep.
    swept: usize,
    /// Shut down: no new connection.
    closed: bool,
}

impl std::fmt::Debug for SocketList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketList")
            .field("sockets", &self.sockets.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl Sockets {
    /// Keeps a new connection's socket; refused once shut down.
    fn add(&self, socket: Weak<dyn ShutdownHandle>) -> Result<(), ureq::Error> {
        let mut l = lock(&self.list);
        if l.closed {
            let e = std::io::Error::new(std::io::ErrorKind::NotConnected, "the pool shut down");
            return Err(e.into());
        }
        l.sockets.push(socket);
        if l.sockets.len() >= 2 * l.swept.max(64) {
            l.sockets.retain(|w| w.strong_count() > 0);
            l.swept = l.sockets.len();
        }
        Ok(())
    }

    /// Shuts every open connection down (a read or write blocked on one
    /// fails at once) and refuses new ones.
    pub(crate) fn shut_all(&self) {
        let sockets = {
            let mut l = lock(&self.list);
            l.closed = true;
            std::mem::take(&mut l.sockets)
        };
        for socket in sockets.iter().filter_map(Weak::upgrade) {
            socket.shutdown();
        }
    }
}

/// The pool's connector: ureq's default chain (proxy, TCP, TLS), with every
/// connection it opens wrapped in [`Guarded`] and the connect itself capped.
#[derive(Debug)]
pub(crate) struct Guard {
    inner: DefaultConnector,
    sockets: Arc<Sockets>,
    /// The longest response head its connections read.
    head_limit: usize,
    /// The longest request head its connections write, and the length of
    /// the user agent they send.
    out_limit: usize,
    user_agent: usize,
}

impl Guard {
    /// A guard whose connections' sockets are kept in `sockets`, and
    /// whose connections read response heads of up to `head_limit` bytes
    /// and write request heads of up to `out_limit` (with a user agent of
    /// `user_agent` bytes) past their buffers, through [`Spilling`].
    pub(crate) fn new(
        sockets: Arc<Sockets>,
        head_limit: usize,
        out_limit: usize,
        user_agent: usize,
    ) -> Guard {
        Guard {
            inner: DefaultConnector::default(),
            sockets,
            head_limit,
            out_limit,
            user_agent,
        }
    }
}

impl Guard {
    /// `details` with the connect capped by this thread's limit, and the
    /// socket of the new connection kept for a cancel (in `conn`) and with
    /// the pool's others for `shutdown_timeout`. On the heap, made in a
    /// frame of its own: the copy (its addresses take half a KiB) is not
    /// on the stack while ureq's connectors, 8 KiB deep, run.
    #[inline(never)]
    fn capped<'a>(
        &self,
        details: &ConnectionDetails<'a>,
        conn: &Arc<Conn>,
    ) -> Box<ConnectionDetails<'a>> {
        let remember = Arc::clone(conn);
        let sockets = Arc::clone(&self.sockets);
        Box::new(ConnectionDetails {
            uri: details.uri,
            addrs: details.addrs.clone(),
            config: details.config,
            request_level: details.request_level,
            resolver: details.resolver,
            now: details.now,
            timeout: capped(details.timeout).0,
            current_time: details.current_time.clone(),
            run_connector: details.run_connector.clone(),
            register_shutdown: Arc::new(move |socket: Weak<dyn ShutdownHandle>| {
                *lock(&remember.socket) = Some(socket.clone());
                sockets.add(socket)
            }),
        })
    }
}

impl Connector<()> for Guard {
    type Out = Guarded;

    fn connect(
        &self,
        details: &ConnectionDetails<'_>,
        chained: Option<()>,
    ) -> Result<Option<Guarded>, ureq::Error> {
        OPENED.with(|o| o.set(true));
        let conn = Arc::new(Conn::default());
        watch(&conn, false)?;
        let capped = self.capped(details, &conn);
        let inner = self.inner.connect(&capped, chained)?;
        Ok(inner.map(|inner| Guarded {
            io: Spilling::new(inner, self.head_limit, self.out_limit, self.user_agent),
            conn,
        }))
    }
}

/// A connection whose every wait is capped by the limit of the job using it.
#[derive(Debug)]
pub(crate) struct Guarded {
    io: Spilling,
    conn: Arc<Conn>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

impl Transport for Guarded {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.io.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        watch(&self.conn, false)?;
        WROTE.with(|w| w.set(true));
        // Not retried: a write that timed out may have written part of the
        // output. The coarse cap ends it early by at most an eighth of
        // what was left, and only for a server that stops reading.
        if self.io.lent() {
            // A long head, written out a piece at a time.
            let start = Instant::now();
            return self
                .io
                .transmit_lent(amount, || capped(less(timeout, start.elapsed())).0);
        }
        self.io.inner().transmit_output(amount, capped(timeout).0)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        watch(&self.conn, true)?;
        // One clock read per wait, shared by the cap and what is left.
        let start = Instant::now();
        let mut now = start;
        loop {
            let (t, ours) = capped_at(less(timeout, now.saturating_duration_since(start)), || now);
            match self.io.await_input(t) {
                // The coarse cap ran out before the limit did: nothing was
                // read, wait for the rest.
                Err(ureq::Error::Timeout(_)) if ours && !limit_passed(Instant::now()) => {
                    watch(&self.conn, true)?;
                    now = Instant::now();
                }
                r => return r,
            }
        }
    }

    fn is_open(&mut self) -> bool {
        self.io.inner().is_open()
    }

    fn is_tls(&self) -> bool {
        self.io.is_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::coarse;
    use std::time::Duration;

    #[test]
    fn coarse_caps_never_exceed_what_is_left_and_hold_still() {
        for ms in [0u64, 1, 63, 64, 100, 999, 1_000, 2_047, 30_000, 86_400_000] {
            let left = Duration::from_millis(ms);
            let c = coarse(left);
            assert!(c <= left, "{ms} ms: {c:?}");
            assert!(
                c >= left - left / 8,
                "{ms} ms: {c:?} is more than an eighth short"
            );
        }
        // The calls of one request see the same cap, so the socket's
        // timeout is not set again for each.
        let a = coarse(Duration::from_millis(30_000));
        let b = coarse(Duration::from_millis(29_990));
        assert_eq!(a, b);
        assert_eq!(coarse(Duration::MAX), coarse(Duration::MAX));
    }
}
