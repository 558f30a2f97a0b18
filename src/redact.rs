//! Keeping secrets out of every message: URLs without credentials or query
//! values, and foreign text (ureq's messages, a server's body that echoes
//! the request) with the request's secrets replaced.

use crate::error::{Error, Phase, snippet};

/// Removes credentials, query values and the fragment from a URL.
///
/// `https://user:pw@host/p?token=abc&x=1#f` becomes
/// `https://***@host/p?token=***&x=***`. Text that is not a URL (no
/// scheme) gets the same rules as far as they fit: `user:pw@host/x`
/// becomes `***@host/x`.
pub(crate) fn redact_url(url: &str) -> String {
    // A control character (a CR/LF a caller let into a URL) is shown
    // percent-encoded: a message stays one line, and no log line is forged.
    if url.contains(char::is_control) {
        let mut clean = String::with_capacity(url.len() + 8);
        for c in url.chars() {
            if c.is_control() {
                clean.push_str(&format!("%{:02X}", u32::from(c)));
            } else {
                clean.push(c);
            }
        }
        return redact_url(&clean);
    }
    let url = url.split('#').next().unwrap_or("");
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    let (scheme, rest) = match base.find("://") {
        Some(i) => base.split_at(i + 3),
        None => ("", base),
    };
    out.push_str(scheme);
    let auth_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(auth_end);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str("***@");
            out.push_str(&authority[at + 1..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        for (i, pair) in q.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) => {
                    out.push_str(k);
                    out.push_str("=***");
                }
                None => out.push_str(pair),
            }
        }
    }
    out
}

/// The secret parts of a URL: its userinfo (and each part of it) and its
/// query values, as they appear in the URL and percent-decoded.
pub(crate) fn url_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let base = url.split(['?', '#']).next().unwrap_or("");
    let rest = base.find("://").map_or(base, |i| &base[i + 3..]);
    let auth_end = rest.find('/').unwrap_or(rest.len());
    if let Some(at) = rest[..auth_end].rfind('@') {
        let userinfo = &rest[..at];
        for part in std::iter::once(userinfo).chain(userinfo.split(':')) {
            out.push(part.to_string());
            out.push(percent_decode(part));
        }
    }
    if let Some((_, q)) = url.split_once('?') {
        let q = q.split('#').next().unwrap_or("");
        for pair in q.split('&') {
            if let Some((_, v)) = pair.split_once('=') {
                out.push(v.to_string());
                out.push(percent_decode(v));
            }
        }
    }
    out
}

/// The secret parts of a header value: the whole value and, for a scheme
/// such as `Bearer <token>`, the token.
pub(crate) fn header_secrets(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    if let Some((_, token)) = value.split_once(' ') {
        out.push(token.trim().to_string());
    }
    out
}

/// Replaces every secret of `secrets` that appears in `text` with `***`.
/// Secrets shorter than 3 characters are left alone: replacing a `1`
/// everywhere would garble the text without protecting anything.
pub(crate) fn scrub_with(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| s.len() >= 3).collect();
    // Longest first, so a secret that contains another is replaced whole.
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in sorted {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// Replaces every secret part of `url` that appears in `text`.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let out = text.replace(url, &redact_url(url));
    scrub_with(&out, &url_secrets(url))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Errors made from a request's raw data: every URL redacted, every
/// secret of the request scrubbed from text that came from elsewhere.
impl Error {
    pub(crate) fn timeout(phase: Phase, method: &str, url: &str) -> Error {
        Error::Timeout {
            phase,
            method: method.to_string(),
            url: redact_url(url),
        }
    }

    pub(crate) fn invalid(url: &str, reason: impl Into<String>) -> Error {
        Error::InvalidRequest {
            url: redact_url(url),
            reason: reason.into(),
        }
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
        }
        .scrubbed(&url_secrets(url))
    }

    /// An error status with its response headers: `Set-Cookie` values
    /// hidden, and the request's secrets scrubbed when `scrubbed` runs.
    pub(crate) fn with_headers(mut self, from: &ureq::http::HeaderMap) -> Error {
        if let Error::Status { headers, .. } = &mut self {
            let mut kept = from.clone();
            if let ureq::http::header::Entry::Occupied(mut cookies) = kept.entry("set-cookie") {
                for v in cookies.iter_mut() {
                    *v = ureq::http::HeaderValue::from_static("***");
                }
            }
            **headers = kept;
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
        .scrubbed(&url_secrets(url))
    }

    /// Replaces every secret of the request (URL credentials, query
    /// values, secret header values) in the text this error carries from
    /// elsewhere: a server's body that echoes the request, ureq's messages.
    pub(crate) fn scrubbed(self, secrets: &[String]) -> Error {
        if secrets.is_empty() {
            return self;
        }
        let s = |t: String| scrub_with(&t, secrets);
        match self {
            Error::Status {
                code,
                method,
                url,
                body,
                json,
                retry_after,
                mut headers,
            } => {
                let body = s(body);
                for (_, v) in headers.iter_mut() {
                    let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    let clean = s(text.clone());
                    if clean != text {
                        *v = ureq::http::HeaderValue::from_str(&clean)
                            .unwrap_or(ureq::http::HeaderValue::from_static("***"));
                    }
                }
                let json = json.map(|j| {
                    Box::new(
                        serde_json::from_str(&s(j.to_string())).unwrap_or(serde_json::Value::Null),
                    )
                });
                Error::Status {
                    code,
                    method,
                    url,
                    body,
                    json,
                    retry_after,
                    headers,
                }
            }
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
                url,
                message: s(message),
            },
            Error::Decode {
                method,
                url,
                message,
                snippet,
            } => Error::Decode {
                method,
                url,
                message: s(message),
                snippet: s(snippet),
            },
            Error::InvalidRequest { url, reason } => Error::InvalidRequest {
                url,
                reason: s(reason),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::one_line;

    #[test]
    fn redacts_userinfo_query_and_fragment() {
        assert_eq!(
            redact_url("https://user:pw@host:8/p/q?token=abc&x=1&flag#frag"),
            "https://***@host:8/p/q?token=***&x=***&flag"
        );
        assert_eq!(redact_url("http://127.0.0.1:80/a"), "http://127.0.0.1:80/a");
        assert_eq!(redact_url("not a url?k=v"), "not a url?k=***");
        assert_eq!(redact_url("user:hunter2@host/x"), "***@host/x");
    }

    #[test]
    fn scrub_removes_secrets_from_foreign_text() {
        let url = "http://alice:hunter2@h/p?key=s3cret&k2=a%20b%2Fc";
        let text = format!("failed {url} and hunter2 and s3cret and a b/c");
        let out = scrub(&text, url);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("s3cret"), "{out}");
        assert!(!out.contains("a b/c"), "{out}");
        let out = scrub_with("auth was Bearer tok-123", &header_secrets("Bearer tok-123"));
        assert_eq!(out, "auth was ***");
    }

    #[test]
    fn one_line_folds_and_cuts() {
        assert_eq!(
            one_line("<html>\n  <h1>x</h1>\r\n</html>", 100),
            "<html> <h1>x</h1> </html>"
        );
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
