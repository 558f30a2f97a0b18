//! Errors made from a request's raw data, and the request's secrets left
//! out of them: the one place where an error gets its redaction.

use super::{Error, Phase, Secrets, TransportKind, snippet};
use crate::redact::{redact_url, secret_forms, url_secrets};

/// Errors made from a request's raw data: every URL redacted, every
/// secret of the request scrubbed from text that came from elsewhere
/// (ureq's messages); a server's own words (an error status's body and
/// headers) are kept as they came, with the secrets to leave out of them
/// when shown.
impl Error {
    pub(crate) fn timeout(phase: Phase, method: &str, url: &str) -> Error {
        Error::Timeout {
            phase,
            method: method.to_string(),
            url: redact_url(url),
        }
    }

    /// A transport failure of `method url`: the URL redacted, its secrets
    /// scrubbed from `message`.
    pub(crate) fn transport(kind: TransportKind, method: &str, url: &str, message: &str) -> Error {
        Error::Transport {
            kind,
            method: method.to_string(),
            url: redact_url(url),
            message: crate::redact::scrub(message, url),
        }
    }

    pub(crate) fn invalid(url: &str, reason: impl Into<String>) -> Error {
        Error::InvalidRequest {
            url: redact_url(url),
            reason: reason.into(),
        }
        .scrubbed(&url_only(url))
    }

    pub(crate) fn status_error(code: u16, method: &str, url: &str, body: &[u8]) -> Error {
        let json = serde_json::from_slice(body).ok().map(Box::new);
        Error::Status {
            code,
            method: method.to_string(),
            url: redact_url(url),
            body: String::from_utf8_lossy(body).into_owned(),
            json,
            retry_after: None,
            headers: Box::default(),
            secrets: url_only(url),
        }
    }

    /// An error status with its response headers, as the server sent them.
    pub(crate) fn with_headers(mut self, from: &ureq::http::HeaderMap) -> Error {
        if let Error::Status { headers, .. } = &mut self {
            **headers = from.clone();
        }
        self
    }

    pub(crate) fn decode(method: &str, url: &str, message: String, body: &[u8]) -> Error {
        Error::Decode {
            method: method.to_string(),
            url: redact_url(url),
            message,
            snippet: snippet(&String::from_utf8_lossy(body)),
        }
        .scrubbed(&url_only(url))
    }

    /// Leaves the request's `secrets` out of this error: replaced in text
    /// that came from elsewhere (ureq's messages, a snippet of a body) and
    /// in the shown URL (a query value the caller marked secret), and kept
    /// with a status error so that showing it leaves them out.
    pub(crate) fn scrubbed(self, secrets: &Secrets) -> Error {
        if secrets.is_empty() {
            return self;
        }
        let s = |t: String| secrets.scrub(&t);
        let u = |t: String| secrets.scrub_url(&t);
        match self {
            Error::Status {
                code,
                method,
                url,
                body,
                json,
                retry_after,
                headers,
                secrets: own,
            } => Error::Status {
                code,
                method,
                url: u(url),
                body,
                json,
                retry_after,
                headers,
                // Its own (those of the URL that answered: a redirect's
                // target may carry credentials the request did not) and
                // the request's.
                secrets: secrets.union(&own),
            },
            Error::GaveUp { attempts, reason } => Error::GaveUp {
                attempts: attempts.into_iter().map(|e| e.scrubbed(secrets)).collect(),
                reason,
            },
            Error::Transport {
                kind,
                method,
                url,
                message,
            } => Error::Transport {
                kind,
                method,
                url: u(url),
                message: s(message),
            },
            Error::Decode {
                method,
                url,
                message,
                snippet,
            } => Error::Decode {
                method,
                url: u(url),
                message: s(message),
                snippet: s(snippet),
            },
            Error::InvalidRequest { url, reason } => Error::InvalidRequest {
                url: u(url),
                reason: s(reason),
            },
            Error::Timeout { phase, method, url } => Error::Timeout {
                phase,
                method,
                url: u(url),
            },
            Error::TooLarge {
                method,
                url,
                limit,
                status,
            } => Error::TooLarge {
                method,
                url: u(url),
                limit,
                status,
            },
            Error::Redirect {
                code,
                method,
                url,
                location,
            } => Error::Redirect {
                code,
                method,
                url: u(url),
                location: s(location),
            },
            other => other,
        }
    }
}

impl Error {
    /// Hides, in the URL this error shows, the values of the query keys
    /// `keys` marks (any case), or all of them with `all`: for an error
    /// made before the request's secrets were known.
    pub(crate) fn hide_query(self, keys: &[String], all: bool) -> Error {
        if !all && keys.is_empty() {
            return self;
        }
        let hide = |url: String| {
            crate::redact::hide_query_values(&url, |k, _| all || crate::redact::marked_key(k, keys))
        };
        match self {
            Error::InvalidRequest { url, reason } => Error::InvalidRequest {
                url: hide(url),
                reason,
            },
            other => other,
        }
    }
}

/// The secrets a URL alone shows (before the request's own are known).
fn url_only(url: &str) -> Secrets {
    Secrets::new(secret_forms(url_secrets(url, &[], false)))
}

impl Error {
    /// The same error again, for another waiter of the same outcome (a
    /// shared flight's riders, the callers of one commit): every field
    /// copied; an `Other` keeps its message.
    pub(crate) fn again(&self) -> Error {
        match self {
            Error::Status {
                code,
                method,
                url,
                body,
                json,
                retry_after,
                headers,
                secrets,
            } => Error::Status {
                code: *code,
                method: method.clone(),
                url: url.clone(),
                body: body.clone(),
                json: json.clone(),
                retry_after: *retry_after,
                headers: headers.clone(),
                secrets: secrets.clone(),
            },
            Error::GaveUp { attempts, reason } => Error::GaveUp {
                attempts: attempts.iter().map(Error::again).collect(),
                reason: *reason,
            },
            Error::Timeout { phase, method, url } => Error::Timeout {
                phase: *phase,
                method: method.clone(),
                url: url.clone(),
            },
            Error::Transport {
                kind,
                method,
                url,
                message,
            } => Error::Transport {
                kind: *kind,
                method: method.clone(),
                url: url.clone(),
                message: message.clone(),
            },
            Error::Decode {
                method,
                url,
                message,
                snippet,
            } => Error::Decode {
                method: method.clone(),
                url: url.clone(),
                message: message.clone(),
                snippet: snippet.clone(),
            },
            Error::TooLarge {
                method,
                url,
                limit,
                status,
            } => Error::TooLarge {
                method: method.clone(),
                url: url.clone(),
                limit: *limit,
                status: *status,
            },
            Error::Redirect {
                code,
                method,
                url,
                location,
            } => Error::Redirect {
                code: *code,
                method: method.clone(),
                url: url.clone(),
                location: location.clone(),
            },
            Error::InvalidRequest { url, reason } => Error::InvalidRequest {
                url: url.clone(),
                reason: reason.clone(),
            },
            Error::Cancelled => Error::Cancelled,
            Error::Panicked { message } => Error::Panicked {
                message: message.clone(),
            },
            Error::Closed => Error::Closed,
            Error::QueueFull => Error::QueueFull,
            Error::CircuitOpen { host, retry_in } => Error::CircuitOpen {
                host: host.clone(),
                retry_in: *retry_in,
            },
            Error::Aborted { reason } => Error::Aborted {
                reason: reason.clone(),
            },
            Error::Usage { reason } => Error::Usage {
                reason: reason.clone(),
            },
            Error::Storage { kind, reason } => Error::Storage {
                kind: *kind,
                reason: reason.clone(),
            },
            Error::NoMatch { what } => Error::NoMatch { what: what.clone() },
            Error::Other(inner) => Error::other(inner.to_string()),
        }
    }
}
