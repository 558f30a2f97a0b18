//! The one error type of the crate, in one room: the enum, its helpers,
//! its helpers (here); `Display`, `Debug` and the request's secrets they
//! leave out (`show`);
//! the details it carries (`details`); how it is made from a request's raw
//! data and scrubbed (`make`); how ureq's errors become it (`from_ureq`).

mod details;
mod from_ureq;
mod make;
mod show;

pub(crate) use details::panic_message;
pub use details::{GaveUpReason, Phase, StorageKind, TransportKind};
pub use show::Secrets;
#[cfg(any(feature = "tracing", feature = "metrics"))]
pub(crate) use show::error_type;
pub(crate) use show::snippet;

use std::time::Duration;

/// The statuses retried unless a policy says otherwise.
pub(crate) const RETRY_STATUSES: [u16; 4] = [429, 502, 503, 504];

/// How many bytes of a failed call's body an [`Error::Status`] keeps.
pub(crate) const ERROR_BODY_CAP: usize = 64 * 1024;

/// Everything that can go wrong with a job, as one value.
///
/// Every variant that belongs to an HTTP request names the method and the URL,
/// with the URL already redacted: no `user:password@`, no query values, no
/// fragment. `Display` is one lowercase line without a trailing period that
/// says what happened and to which URL; the cause is inlined, so
/// [`source()`](std::error::Error::source) is not used.
///
/// The enum is `#[non_exhaustive]`: match the variants you handle and keep a
/// `_` arm.
///
/// ```
/// use reqpool::Error;
///
/// fn explain(err: &Error) -> String {
///     match err {
///         Error::Status { code: 422, json: Some(detail), .. } => format!("rejected: {detail}"),
///         Error::Status { code, .. } => format!("server said {code}"),
///         e if e.is_timeout() => "too slow".to_string(),
///         e => e.to_string(),
///     }
/// }
/// # let _ = explain;
/// ```
#[non_exhaustive]
pub enum Error {
    /// The server answered with a status of 400 or more.
    ///
    /// The body is kept (up to 64 KiB) as text, and parsed as JSON when it is
    /// JSON, so a FastAPI `422 {"detail": [...]}` reaches the caller intact.
    Status {
        /// The HTTP status code.
        code: u16,
        /// The request method.
        method: String,
        /// The request URL, redacted.
        url: String,
        /// The response body as text (lossy UTF-8, capped at 64 KiB).
        body: String,
        /// The response body parsed as JSON, when it parses (boxed, to keep
        /// `Error` small).
        json: Option<Box<serde_json::Value>>,
        /// How long the server asked to wait before trying again
        /// (`Retry-After`, in seconds or as a date), if it did.
        retry_after: Option<Duration>,
        /// The response headers (a 401's `WWW-Authenticate`, a request id,
        /// rate-limit counters), as the server sent them, boxed to keep
        /// `Error` small. `Debug` shows `Set-Cookie` values as `***`.
        headers: Box<ureq::http::HeaderMap>,
        /// The request's secrets, which `Display` and `Debug` leave out of
        /// what the server sent (`body`, `json` and `headers` are kept as
        /// they came).
        secrets: Secrets,
    },
    /// A request was tried more than once (see [`Retry`](crate::Retry)) and
    /// failed every time, or a retry was refused. The helpers (`status()`,
    /// `is_timeout()`, …) answer for the last attempt.
    GaveUp {
        /// Every attempt's error, in order; the last one is the final failure.
        attempts: Vec<Error>,
        /// Why there was no further attempt.
        reason: GaveUpReason,
    },
    /// A time limit ran out.
    Timeout {
        /// Which phase ran out of time.
        phase: Phase,
        /// The request method (empty for a closure job).
        method: String,
        /// The request URL, redacted (empty for a closure job).
        url: String,
    },
    /// The connection failed: refused, DNS, TLS, reset, closed early.
    Transport {
        /// What kind of failure it was.
        kind: TransportKind,
        /// The request method.
        method: String,
        /// The request URL, redacted.
        url: String,
        /// What the transport said, with secrets removed.
        message: String,
    },
    /// The reply arrived but could not be decoded as the type asked for.
    Decode {
        /// The request method.
        method: String,
        /// The request URL, redacted.
        url: String,
        /// What the decoder said.
        message: String,
        /// The start of the body, to show what actually came back.
        snippet: String,
    },
    /// The response body was larger than the configured cap.
    TooLarge {
        /// The request method.
        method: String,
        /// The request URL, redacted.
        url: String,
        /// The cap, in decoded bytes.
        limit: u64,
        /// The status the server answered with, when it is known: the
        /// server took the request (an outbox counts the job delivered).
        status: Option<u16>,
    },
    /// The server answered a request that carries a body with a redirect, and
    /// following it was not allowed (it could turn a POST into a GET).
    Redirect {
        /// The redirect status (301, 302, 303, 307, 308).
        code: u16,
        /// The request method.
        method: String,
        /// The request URL, redacted.
        url: String,
        /// The `Location` the server pointed to, redacted.
        location: String,
    },
    /// The request could not be built: bad URL, bad header, a body that does
    /// not serialize. Reported at once, without using a worker.
    InvalidRequest {
        /// The request URL, redacted (may be empty).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The job was cancelled (see [`Pending::cancel`](crate::Pending::cancel)).
    Cancelled,
    /// The job panicked; the message is the panic's payload when it was a string.
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The pool was shut down, or the job was dropped before it could finish.
    Closed,
    /// The pool's bounded queue was full (only from the `try_` submit methods).
    QueueFull,
    /// The circuit of the request's host is open (see
    /// [`Breaker`](crate::Breaker)): the request failed at once, without
    /// connecting.
    CircuitOpen {
        /// The host, as `scheme://host:port` (the port filled in when the
        /// URL left it to the scheme; never a user name or password).
        host: String,
        /// When the circuit lets a probe through again.
        retry_in: Duration,
    },
    /// A synchronized burst was called off: a party failed or panicked
    /// while preparing, or not every party was ready in time.
    Aborted {
        /// Why.
        reason: String,
    },
    /// A configuration or usage mistake: a setting `build()` refuses, an
    /// empty `wait_any`, a burst larger than the pool, a result taken twice.
    Usage {
        /// What is wrong.
        reason: String,
    },
    /// An outbox's store could not be used (feature `outbox`): see
    /// [`StorageKind`]. Nothing was half-written: the failed write is
    /// rolled back whole.
    Storage {
        /// What went wrong.
        kind: StorageKind,
        /// The file and what SQLite said, or the Redis server (its
        /// password hidden) and what it said.
        reason: String,
    },
    /// The server answered, and the answer holds nothing that fits: a
    /// lookup that found nothing, a tier of a [`fallback`](crate::fallback)
    /// with no result. Made by [`Error::no_match`]; a closure or a
    /// [`and_then`](crate::Pending::and_then) returns it so that the caller can tell
    /// "nothing there" from a failure.
    NoMatch {
        /// What was not found.
        what: String,
    },
    /// An error returned by a closure job, for anything the other variants do
    /// not describe.
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// A ureq error from a closure job's own request, classified as the request
/// builder classifies it (a timeout with its phase, a transport failure with
/// its kind), so `?` works on the agent's calls. The URL is not known here:
/// the error names none.
///
/// ```
/// let pool = reqpool::Pool::new(1);
/// let job = pool.submit(|agent| {
///     let mut resp = agent.get("http://127.0.0.1:1/").call()?;
///     Ok(resp.body_mut().read_to_string()?)
/// });
/// assert!(job.wait().unwrap_err().is_connect());
/// ```
impl From<ureq::Error> for Error {
    fn from(e: ureq::Error) -> Error {
        Error::from_ureq(e, "", "")
    }
}

impl Error {
    /// The error of the last attempt, for a request that was retried.
    pub fn last_attempt(&self) -> &Error {
        match self {
            Error::GaveUp { attempts, .. } => attempts.last().map_or(self, Error::last_attempt),
            _ => self,
        }
    }

    /// How many attempts were made (1 unless the request was retried).
    pub fn attempts(&self) -> usize {
        match self {
            Error::GaveUp { attempts, .. } => attempts.len(),
            _ => 1,
        }
    }

    /// False only when the failure proves the request never reached a
    /// server (refused, DNS failure, connect timeout, never started); true
    /// when it may have been sent and processed.
    pub fn maybe_sent(&self) -> bool {
        !matches!(
            self.last_attempt(),
            Error::Transport {
                kind: TransportKind::Refused
                    | TransportKind::Dns
                    | TransportKind::Tls
                    | TransportKind::Proxy,
                ..
            } | Error::Timeout {
                phase: Phase::Queued | Phase::Throttled | Phase::Resolve | Phase::Connect,
                ..
            } | Error::InvalidRequest { .. }
                | Error::Cancelled
                | Error::Closed
                | Error::QueueFull
                | Error::Usage { .. }
                | Error::Storage { .. }
                | Error::Aborted { .. }
                | Error::CircuitOpen { .. }
        )
    }

    /// The HTTP status code, if the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self.last_attempt() {
            Error::Status { code, .. } => Some(*code),
            Error::Redirect { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The error body parsed as JSON, if there was one and it parsed.
    pub fn body_json(&self) -> Option<&serde_json::Value> {
        match self.last_attempt() {
            Error::Status { json, .. } => json.as_deref(),
            _ => None,
        }
    }

    /// A response header of an error status, by name (any case): a 401's
    /// `WWW-Authenticate`, a request id. `None` without an error status or
    /// without that header.
    ///
    /// ```
    /// # fn show(err: &reqpool::Error) {
    /// if let Some(challenge) = err.header("www-authenticate") {
    ///     eprintln!("the server wants: {challenge}");
    /// }
    /// # }
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        match self.last_attempt() {
            Error::Status { headers, .. } => headers.get(name)?.to_str().ok(),
            _ => None,
        }
    }

    /// The error body as text, exactly as the server sent it (lossy UTF-8),
    /// if the server answered with an error status. Unlike `Display` and
    /// `Debug`, it is not redacted: it is the server's.
    pub fn body_text(&self) -> Option<&str> {
        match self.last_attempt() {
            Error::Status { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The redacted URL of the request this error belongs to, if any.
    pub fn url(&self) -> Option<&str> {
        match self.last_attempt() {
            Error::Status { url, .. }
            | Error::Timeout { url, .. }
            | Error::Transport { url, .. }
            | Error::Decode { url, .. }
            | Error::TooLarge { url, .. }
            | Error::Redirect { url, .. }
            | Error::InvalidRequest { url, .. }
                if !url.is_empty() =>
            {
                Some(url)
            }
            _ => None,
        }
    }

    /// True if a time limit ran out (any [`Phase`]).
    pub fn is_timeout(&self) -> bool {
        matches!(self.last_attempt(), Error::Timeout { .. })
    }

    /// The phase that ran out of time, for a timeout.
    pub fn timeout_phase(&self) -> Option<Phase> {
        match self.last_attempt() {
            Error::Timeout { phase, .. } => Some(*phase),
            _ => None,
        }
    }

    /// True if the connection could not be made: refused, DNS failure, or a
    /// connect timeout. The request never reached a server.
    pub fn is_connect(&self) -> bool {
        matches!(
            self.last_attempt(),
            Error::Transport {
                kind: TransportKind::Refused | TransportKind::Dns,
                ..
            } | Error::Timeout {
                phase: Phase::Connect | Phase::Resolve,
                ..
            }
        )
    }

    /// The kind of transport failure, for a transport error.
    pub fn transport_kind(&self) -> Option<TransportKind> {
        match self.last_attempt() {
            Error::Transport { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// True if the reply could not be decoded.
    pub fn is_decode(&self) -> bool {
        matches!(self.last_attempt(), Error::Decode { .. })
    }

    /// True if the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }

    /// True if the request failed at once because its host's circuit is
    /// open (see [`Breaker`](crate::Breaker)).
    pub fn is_circuit_open(&self) -> bool {
        matches!(self.last_attempt(), Error::CircuitOpen { .. })
    }

    /// True if the job panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Error::Panicked { .. })
    }

    /// True for failures that a retry may cure: timeouts of a phase,
    /// transport failures other than TLS and protocol errors, and the
    /// statuses 429, 502, 503 and 504. The same rule [`Retry`](crate::Retry)
    /// follows.
    pub fn is_retryable(&self) -> bool {
        self.retryable_with(&RETRY_STATUSES)
    }

    /// The one answer to "may another attempt cure this?", given the
    /// statuses that count as passing trouble; [`Retry`](crate::Retry)
    /// asks it with its own statuses.
    pub(crate) fn retryable_with(&self, statuses: &[u16]) -> bool {
        match self.last_attempt() {
            Error::Status { code, .. } => statuses.contains(code),
            Error::Timeout { phase, .. } => {
                !matches!(phase, Phase::Deadline | Phase::Queued | Phase::Throttled)
            }
            Error::Transport { kind, .. } => !matches!(
                kind,
                TransportKind::Tls | TransportKind::Protocol | TransportKind::Proxy
            ),
            _ => false,
        }
    }

    /// Wraps any error of a closure job.
    ///
    /// ```
    /// let pool = reqpool::Pool::new(1);
    /// let job = pool.submit(|_agent| {
    ///     "x1".parse::<u32>().map_err(reqpool::Error::other)
    /// });
    /// assert!(matches!(job.wait(), Err(reqpool::Error::Other(_))));
    /// ```
    pub fn other(err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Error {
        Error::Other(err.into())
    }

    /// "Nothing fits": see [`Error::NoMatch`].
    ///
    /// ```
    /// use reqpool::{Error, Pool};
    /// let pool = Pool::new(1);
    /// let tiers: Vec<Box<dyn FnOnce() -> reqpool::Pending<u32>>> = vec![
    ///     Box::new(|| pool.submit(|_| Err(Error::no_match("no store in this district")))),
    ///     Box::new(|| pool.submit(|_| Ok(7))),
    /// ];
    /// assert_eq!(reqpool::fallback(tiers).unwrap(), (1, 7));
    /// assert!(Error::no_match("x").is_no_match());
    /// ```
    pub fn no_match(what: impl Into<String>) -> Error {
        Error::NoMatch { what: what.into() }
    }

    /// True for [`Error::NoMatch`]: the server answered, with nothing that
    /// fits.
    pub fn is_no_match(&self) -> bool {
        matches!(self.last_attempt(), Error::NoMatch { .. })
    }

    /// The kind of an [`Error::Storage`].
    pub fn storage_kind(&self) -> Option<StorageKind> {
        match self {
            Error::Storage { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    #[cfg_attr(not(any(feature = "sqlite", feature = "redis")), allow(dead_code))]
    pub(crate) fn storage(kind: StorageKind, reason: impl Into<String>) -> Error {
        Error::Storage {
            kind,
            reason: reason.into(),
        }
    }

    pub(crate) fn usage(reason: impl Into<String>) -> Error {
        Error::Usage {
            reason: reason.into(),
        }
    }

    /// The server's `Retry-After`, for a status error that carried one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.last_attempt() {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_and_short() {
        let e = Error::status_error(422, "POST", "http://h/p?k=v", br#"{"detail":[1]}"#);
        assert_eq!(
            e.to_string(),
            r#"http status 422 (POST http://h/p?k=v): {"detail":[1]}"#
        );
        assert!(e.body_json().is_some());
        let e = Error::Panicked {
            message: "boom".into(),
        };
        assert_eq!(e.to_string(), "job panicked: boom");
    }

    #[test]
    fn gave_up_answers_for_the_last_attempt() {
        let e = Error::GaveUp {
            attempts: vec![
                Error::status_error(503, "GET", "http://h/", b"busy"),
                Error::status_error(502, "GET", "http://h/", b"bad gateway"),
            ],
            reason: GaveUpReason::AttemptsExhausted,
        };
        assert_eq!(e.status(), Some(502));
        assert_eq!(e.attempts(), 2);
        assert!(e.to_string().starts_with(
            "gave up after 2 attempts (no attempts left); attempt 1: http status 503"
        ));
    }

    #[test]
    fn panic_payloads() {
        let p: Box<dyn std::any::Any + Send> = Box::new("static");
        assert_eq!(panic_message(&*p), "static");
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(&*p), "owned");
        let p: Box<dyn std::any::Any + Send> = Box::new(5u8);
        assert_eq!(panic_message(&*p), "non-string panic payload");
    }
}
