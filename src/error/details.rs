//! The details an [`Error`](crate::Error) carries: which phase ran out of
//! time, what kind of transport failure it was, why a retried request gave
//! up.

use std::fmt;
use std::time::Duration;

/// The phase of a request in which a time limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// The deadline passed while the job waited in the queue for a worker.
    Queued,
    /// Resolving the host name.
    Resolve,
    /// Opening the connection (TCP, TLS).
    Connect,
    /// Sending the request line and headers.
    SendRequest,
    /// Sending the request body.
    SendBody,
    /// Waiting for the response status and headers.
    Response,
    /// Receiving the response body.
    Body,
    /// The request would have had to wait for its host's rate limit or a
    /// host pause (`Retry-After`) past its time limit, or its limit ran out
    /// while it waited: it was not sent.
    Throttled,
    /// The job's time limit ran out (its `timeout` from the start, or its
    /// `deadline`) while it ran, or a waiter stopped waiting for it.
    Deadline,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "waiting in the queue",
            Phase::Resolve => "resolving the host",
            Phase::Connect => "connecting",
            Phase::SendRequest => "sending the request",
            Phase::SendBody => "sending the body",
            Phase::Response => "waiting for the response",
            Phase::Body => "reading the body",
            Phase::Throttled => "waiting for the host's rate limit",
            Phase::Deadline => "at the time limit",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of transport failure an [`Error::Transport`](crate::Error::Transport) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// Nothing listens there: the request never reached a server.
    Refused,
    /// The host name did not resolve: the request never left.
    Dns,
    /// The TLS handshake or certificate check failed; nothing of the request
    /// was sent. The message says which check.
    Tls,
    /// The connection was reset or closed before the response was complete;
    /// the request may have reached the server.
    Reset,
    /// The server broke the HTTP protocol.
    Protocol,
    /// The proxy refused to connect to the server (a failed `CONNECT`).
    Proxy,
    /// Any other I/O failure.
    Other,
}

impl TransportKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TransportKind::Refused => "connection refused",
            TransportKind::Dns => "host not found",
            TransportKind::Tls => "tls failure",
            TransportKind::Reset => "connection closed early",
            TransportKind::Protocol => "protocol error",
            TransportKind::Proxy => "proxy refused",
            TransportKind::Other => "transport error",
        }
    }
}

/// `connection refused`, `host not found`, `tls failure`, … (as in the
/// error's message).
impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an outbox's store (its SQLite file, or its Redis server) could not
/// be used: what an [`Error::Storage`](crate::Error::Storage) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageKind {
    /// The file is not an outbox: not a SQLite database, or one without
    /// reqpool's mark (its `application_id`), which another program made.
    /// Nothing of such a file is changed.
    NotAnOutbox,
    /// The file was written by a newer version of reqpool.
    NewerVersion,
    /// Another process has the file open.
    InUse,
    /// The file or its folder cannot be written.
    ReadOnly,
    /// The disk (or a quota) is full, or Redis is at its `maxmemory`:
    /// nothing of the write was kept.
    Full,
    /// Any other failure to read or write it (Redis: an error reply).
    Io,
    /// The Redis server cannot be reached (down, a network cut, a
    /// timeout). The next call connects again.
    Unreachable,
    /// The Redis server refused this client: a wrong password or user
    /// (`WRONGPASS`), none where one is required (`NOAUTH`), or a user
    /// without the right (`NOPERM`). Trying again fails the same way
    /// until the settings change.
    Denied,
}

/// `not an outbox`, `in use by another process`, `full`, …
impl fmt::Display for StorageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageKind::NotAnOutbox => "not an outbox",
            StorageKind::NewerVersion => "written by a newer version",
            StorageKind::InUse => "in use by another process",
            StorageKind::ReadOnly => "read-only",
            StorageKind::Full => "full",
            StorageKind::Io => "i/o failure",
            StorageKind::Unreachable => "unreachable",
            StorageKind::Denied => "access denied",
        })
    }
}

/// Why a request that failed was not tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GaveUpReason {
    /// The last failure is not one a retry can cure (an error status not
    /// in the policy, a decode error, a TLS failure, …).
    NotRetryable,
    /// The request is not idempotent and may have reached the server.
    MaybeSent,
    /// The policy's attempts are used up.
    AttemptsExhausted,
    /// The wait before the next attempt (backoff or `Retry-After`) would
    /// end after the request's time limit.
    BeyondDeadline {
        /// The wait asked for.
        wait: Duration,
        /// What was left of the limit.
        left: Duration,
        /// The server asked for it with `Retry-After`.
        retry_after: bool,
    },
    /// The pool's retry budget has no token left.
    BudgetExhausted,
    /// The host's circuit opened (see [`Breaker`](crate::Breaker)): no
    /// retry goes into it.
    CircuitOpen,
    /// A reused keep-alive connection was closed before any response, and
    /// the one more attempt on a fresh connection failed too.
    FreshConnectionFailed,
}

impl fmt::Display for GaveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GaveUpReason::NotRetryable => f.write_str("not retryable"),
            GaveUpReason::MaybeSent => {
                f.write_str("may have reached the server and is not idempotent")
            }
            GaveUpReason::AttemptsExhausted => f.write_str("no attempts left"),
            GaveUpReason::BeyondDeadline {
                wait,
                left,
                retry_after,
            } => write!(
                f,
                "{} of {} is beyond the time limit ({} left)",
                if *retry_after { "retry-after" } else { "backoff" },
                fmt_duration(*wait),
                fmt_duration(*left)
            ),
            GaveUpReason::BudgetExhausted => f.write_str("retry budget exhausted"),
            GaveUpReason::CircuitOpen => f.write_str("the host's circuit is open"),
            GaveUpReason::FreshConnectionFailed => f.write_str(
                "the reused connection was closed before any response, and the attempt on a fresh one failed too",
            ),
        }
    }
}

/// Extracts the message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Formats a duration for messages: `1.5s`, `250ms`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}
