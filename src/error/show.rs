//! How an error is shown: `Display` (one line), `Debug` (every field), and
//! the request's secrets both leave out of what a server sent.

use super::Error;
use std::fmt;

/// How many characters of a body an error message shows.
const SNIPPET_CHARS: usize = 120;

/// The secrets of the request an error belongs to, in every form a server
/// may echo them (as given, percent-encoded, decoded, JSON-escaped), so
/// that `Display` and `Debug` leave them out of the server's words.
/// Opaque: its `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct Secrets(std::sync::Arc<Vec<String>>);

impl Secrets {
    /// `forms`: already every form of every secret, longest first.
    pub(crate) fn new(forms: Vec<String>) -> Secrets {
        // A thin pointer: an `Error` stays within 128 bytes.
        Secrets(std::sync::Arc::new(forms))
    }

    /// `text` with every secret replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        crate::redact::scrub_with(text, &self.0)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A shown URL with the values of its query that are secrets as `***`
    /// (exact values only: the rest of the URL is left as it is).
    pub(crate) fn scrub_url(&self, url: &str) -> String {
        crate::redact::hide_query_values(url, |_, v| {
            !v.is_empty() && v != "***" && self.0.iter().any(|s| s == v)
        })
    }

    pub(crate) fn forms(&self) -> &[String] {
        &self.0
    }

    /// These and `other`'s (both already in every form), longest first.
    pub(crate) fn union(&self, other: &Secrets) -> Secrets {
        if other.is_empty() || std::sync::Arc::ptr_eq(&self.0, &other.0) {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut all: Vec<String> = self.0.to_vec();
        for s in other.0.iter() {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Secrets::new(all)
    }

    /// These and `more` (raw values, in every form).
    pub(crate) fn with(&self, more: &[String]) -> Secrets {
        if more.is_empty() {
            return self.clone();
        }
        let all = self.0.iter().chain(more).cloned();
        Secrets::new(crate::redact::secret_forms(all))
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

/// The start of a text, on one line, for a message: at most `max`
/// characters, line breaks and runs of white space folded to one space.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut s = String::new();
    let mut n = 0;
    let mut cut = false;
    for word in text.split_whitespace() {
        if n > 0 {
            if n >= max {
                cut = true;
                break;
            }
            s.push(' ');
            n += 1;
        }
        for c in word.chars() {
            if n >= max {
                cut = true;
                break;
            }
            s.push(c);
            n += 1;
        }
        if cut {
            break;
        }
    }
    if cut {
        s.push('…');
    }
    s
}

pub(crate) fn snippet(text: &str) -> String {
    one_line(text, SNIPPET_CHARS)
}

/// The most of a URL a message shows: a longer one (a 60 KiB query) is
/// cut, and the message says how long it was. `Debug` keeps it whole.
const URL_SHOWN: usize = 1024;

fn with_url(f: &mut fmt::Formatter<'_>, method: &str, url: &str) -> fmt::Result {
    let url = shown_url(url);
    match (method.is_empty(), url.is_empty()) {
        (_, true) => Ok(()),
        (true, false) => write!(f, " ({url})"),
        (false, false) => write!(f, " ({method} {url})"),
    }
}

/// `url` (already redacted) as a message shows it: whole, or its first
/// [`URL_SHOWN`] bytes (at a character boundary) and its length.
fn shown_url(url: &str) -> std::borrow::Cow<'_, str> {
    if url.len() <= URL_SHOWN {
        return url.into();
    }
    let end = (0..=URL_SHOWN)
        .rev()
        .find(|&i| url.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… [a url of {} bytes]", &url[..end], url.len()).into()
}

/// Like a derived `Debug`, but the server's words in a `Status` (body, JSON,
/// header values) are shown with the request's secrets replaced, and
/// `Set-Cookie` values hidden. Every other field holds no secret: URLs are
/// redacted and foreign text scrubbed when the error is made.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
            } => {
                let shown: Vec<(String, String)> = headers
                    .iter()
                    .map(|(k, v)| {
                        let v = if k == ureq::http::header::SET_COOKIE {
                            "***".to_string()
                        } else {
                            secrets.scrub(&String::from_utf8_lossy(v.as_bytes()))
                        };
                        (k.as_str().to_string(), v)
                    })
                    .collect();
                f.debug_struct("Status")
                    .field("code", code)
                    .field("method", method)
                    .field("url", url)
                    .field("body", &secrets.scrub(body))
                    .field(
                        "json",
                        &json.as_ref().map(|j| secrets.scrub(&j.to_string())),
                    )
                    .field("retry_after", retry_after)
                    .field("headers", &shown)
                    .field("secrets", secrets)
                    .finish()
            }
            Error::GaveUp { attempts, reason } => f
                .debug_struct("GaveUp")
                .field("attempts", attempts)
                .field("reason", reason)
                .finish(),
            Error::Timeout { phase, method, url } => f
                .debug_struct("Timeout")
                .field("phase", phase)
                .field("method", method)
                .field("url", url)
                .finish(),
            Error::Transport {
                kind,
                method,
                url,
                message,
            } => f
                .debug_struct("Transport")
                .field("kind", kind)
                .field("method", method)
                .field("url", url)
                .field("message", message)
                .finish(),
            Error::Decode {
                method,
                url,
                message,
                snippet,
            } => f
                .debug_struct("Decode")
                .field("method", method)
                .field("url", url)
                .field("message", message)
                .field("snippet", snippet)
                .finish(),
            Error::TooLarge {
                method,
                url,
                limit,
                status,
            } => f
                .debug_struct("TooLarge")
                .field("method", method)
                .field("url", url)
                .field("limit", limit)
                .field("status", status)
                .finish(),
            Error::Redirect {
                code,
                method,
                url,
                location,
            } => f
                .debug_struct("Redirect")
                .field("code", code)
                .field("method", method)
                .field("url", url)
                .field("location", location)
                .finish(),
            Error::InvalidRequest { url, reason } => f
                .debug_struct("InvalidRequest")
                .field("url", url)
                .field("reason", reason)
                .finish(),
            Error::Cancelled => f.write_str("Cancelled"),
            Error::Panicked { message } => f
                .debug_struct("Panicked")
                .field("message", message)
                .finish(),
            Error::Closed => f.write_str("Closed"),
            Error::QueueFull => f.write_str("QueueFull"),
            Error::CircuitOpen { host, retry_in } => f
                .debug_struct("CircuitOpen")
                .field("host", host)
                .field("retry_in", retry_in)
                .finish(),
            Error::Aborted { reason } => f.debug_struct("Aborted").field("reason", reason).finish(),
            Error::Usage { reason } => f.debug_struct("Usage").field("reason", reason).finish(),
            Error::Storage { kind, reason } => f
                .debug_struct("Storage")
                .field("kind", kind)
                .field("reason", reason)
                .finish(),
            Error::NoMatch { what } => f.debug_struct("NoMatch").field("what", what).finish(),
            Error::Other(e) => f.debug_tuple("Other").field(e).finish(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::GaveUp { attempts, reason } => {
                write!(f, "gave up after {} attempt", attempts.len())?;
                if attempts.len() != 1 {
                    f.write_str("s")?;
                }
                write!(f, " ({reason})")?;
                for (i, e) in attempts.iter().enumerate() {
                    write!(f, "; attempt {}: {e}", i + 1)?;
                }
                Ok(())
            }
            Error::Status {
                code,
                method,
                url,
                body,
                secrets,
                ..
            } => {
                write!(f, "http status {code}")?;
                with_url(f, method, url)?;
                let body = secrets.scrub(body.trim());
                if !body.is_empty() {
                    write!(f, ": {}", snippet(&body))?;
                }
                Ok(())
            }
            Error::Timeout { phase, method, url } => {
                write!(f, "timed out {phase}")?;
                with_url(f, method, url)
            }
            Error::Transport {
                kind,
                method,
                url,
                message,
            } => {
                write!(f, "{}", kind.as_str())?;
                with_url(f, method, url)?;
                write!(f, ": {}", one_line(message, 300))
            }
            Error::Decode {
                method,
                url,
                message,
                snippet,
            } => {
                write!(f, "could not decode the response")?;
                with_url(f, method, url)?;
                write!(f, ": {message}")?;
                if !snippet.is_empty() {
                    write!(f, "; body starts with {snippet:?}")?;
                }
                Ok(())
            }
            Error::TooLarge {
                method, url, limit, ..
            } => {
                write!(f, "response body larger than {limit} bytes")?;
                with_url(f, method, url)
            }
            Error::Redirect {
                code,
                method,
                url,
                location,
            } => {
                write!(f, "redirect {code} not followed")?;
                with_url(f, method, url)?;
                if !location.is_empty() {
                    write!(f, " to {location}")?;
                }
                Ok(())
            }
            Error::InvalidRequest { url, reason } => {
                write!(f, "invalid request")?;
                with_url(f, "", url)?;
                write!(f, ": {}", one_line(reason, 300))
            }
            Error::Cancelled => f.write_str("job was cancelled"),
            Error::Panicked { message } => write!(f, "job panicked: {message}"),
            Error::Closed => f.write_str("pool is shut down; the job did not run"),
            Error::QueueFull => f.write_str("pool queue is full"),
            Error::Usage { reason } => write!(f, "usage error: {reason}"),
            Error::Storage { kind, reason } => write!(f, "outbox store {kind}: {reason}"),
            Error::Aborted { reason } => write!(f, "burst aborted: {reason}"),
            Error::CircuitOpen { host, retry_in } => write!(
                f,
                "circuit open for {host}: failing fast, next try in {}",
                super::details::fmt_duration(*retry_in)
            ),
            Error::NoMatch { what } => write!(f, "no match: {what}"),
            Error::Other(e) => write!(f, "{e}"),
        }
    }
}

/// `error.type`: the status code of an error status, else a short class
/// of the failure (low cardinality, as the conventions ask).
#[cfg(any(feature = "tracing", feature = "metrics"))]
pub(crate) fn error_type(e: &Error) -> String {
    use super::TransportKind as K;
    match e {
        Error::Status { code, .. } => code.to_string(),
        Error::Timeout { .. } => "timeout".into(),
        Error::Transport { kind, .. } => match kind {
            K::Refused => "connection_refused",
            K::Dns => "dns",
            K::Tls => "tls",
            K::Reset => "connection_reset",
            K::Protocol => "protocol",
            K::Proxy => "proxy",
            _ => "transport",
        }
        .into(),
        Error::Decode { .. } => "decode".into(),
        Error::TooLarge { .. } => "too_large".into(),
        Error::Redirect { .. } => "redirect".into(),
        Error::InvalidRequest { .. } => "invalid_request".into(),
        Error::Cancelled => "cancelled".into(),
        Error::CircuitOpen { .. } => "circuit_open".into(),
        _ => "_OTHER".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::{one_line, shown_url};

    #[test]
    fn one_line_folds_and_cuts() {
        assert_eq!(
            one_line("<html>\n  <h1>x</h1>\r\n</html>", 100),
            "<html> <h1>x</h1> </html>"
        );
        assert_eq!(one_line("abcdef", 3), "abc…");
    }

    #[test]
    fn long_urls_are_cut_in_messages() {
        let short = "http://h/x?q=1";
        assert_eq!(shown_url(short), short);
        let long = format!("http://h/{}", "é".repeat(30_000));
        let shown = shown_url(&long);
        assert!(shown.len() < 1100, "{}", shown.len());
        assert!(shown.starts_with("http://h/é"));
        assert!(shown.ends_with(&format!("[a url of {} bytes]", long.len())));
    }
}
