//! A request checked and ready for a worker: the URL, method and headers
//! validated once on the caller's thread, the pool's defaults applied, the
//! secrets to keep out of messages collected.

use crate::attempt::Hooks;
use crate::deadline::Deadline;
use crate::error::Error;
use crate::error::Secrets;
use crate::hedge::Hedge;
use crate::host_key::HostKey;
use crate::redact::{encode_into, header_secrets, secret_forms, url_secrets};
use crate::retry::{Budget, Retry};
use crate::task::{Label, Limits};
use std::sync::Arc;
use std::time::Duration;
use ureq::http::{self, HeaderName, HeaderValue, Method, Uri};

/// Headers that are secrets whatever the caller says.
pub(crate) const ALWAYS_SECRET: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// What every request of a pool starts from; kept by the pool, set by
/// `build()`.
#[derive(Clone)]
pub(crate) struct RequestDefaults {
    pub(crate) timeout: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) max_response_bytes: u64,
    pub(crate) retry: Arc<Retry>,
    pub(crate) budget: Option<Arc<Budget>>,
    pub(crate) hedge: Option<Hedge>,
    pub(crate) query: QuerySecrets,
    /// `before_attempt` and `bearer_from`.
    pub(crate) hooks: Hooks,
}

/// Which query values are secrets, besides those of keys secret by name.
#[derive(Clone, Debug, Default)]
pub(crate) struct QuerySecrets {
    /// Keys the caller marked (any case).
    pub(crate) keys: Arc<[String]>,
    /// Every query value is a secret.
    pub(crate) all: bool,
}

impl QuerySecrets {
    /// These, and `more` keys besides.
    pub(crate) fn with(&self, more: &[String]) -> QuerySecrets {
        if more.is_empty() {
            return self.clone();
        }
        QuerySecrets {
            keys: self.keys.iter().chain(more).cloned().collect(),
            all: self.all,
        }
    }
}

impl RequestDefaults {
    /// The limits of a job submitted now with the pool's defaults.
    pub(crate) fn limits(&self) -> Limits {
        limits(self.timeout, self.deadline)
    }
}

/// The limits of a job submitted now.
pub(crate) fn limits(timeout: Duration, deadline: Option<Duration>) -> Limits {
    Limits {
        timeout,
        deadline: deadline.map_or(Deadline::NEVER, Deadline::after),
    }
}

/// Request headers, in order, as a plain list: small while a request waits
/// in the queue (a `HeaderMap` is built only when it is sent).
#[derive(Clone, Default)]
pub(crate) struct Headers(pub(crate) Vec<(HeaderName, HeaderValue)>);

impl Headers {
    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|(k, _)| k.as_str().eq_ignore_ascii_case(name))
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.0
            .retain(|(k, _)| !k.as_str().eq_ignore_ascii_case(name));
    }
}

/// A validated request: where it goes and what it carries.
pub(crate) struct Spec {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) headers: Headers,
    /// The body's content type, unless the caller set one in `headers`
    /// (kept apart so a plain JSON request allocates no header list).
    pub(crate) content_type: Option<&'static str>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) follow: bool,
    /// Names of headers never sent to another host (lowercase).
    pub(crate) secret: Vec<String>,
}

/// A validated request with its limits and policies, ready for a worker.
pub(crate) struct Prepared {
    pub(crate) spec: Spec,
    pub(crate) timeout: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) retry: Arc<Retry>,
    pub(crate) budget: Option<Arc<Budget>>,
    pub(crate) max_bytes: u64,
    /// Values never shown in a message: URL credentials, secret query
    /// values, secret header values, in every form.
    pub(crate) secrets: Secrets,
    /// Which query values are secrets (for the URLs of a poll job).
    pub(crate) query: QuerySecrets,
    /// The pool's per-attempt hooks.
    pub(crate) hooks: Hooks,
}

impl Label for Prepared {
    fn method(&self) -> &str {
        self.spec.method.as_str()
    }
    fn url(&self) -> &str {
        &self.spec.url
    }
}

/// What a caller asked for, as given to the builder.
pub(crate) struct Raw<'a> {
    pub(crate) method: &'a str,
    pub(crate) url: String,
    pub(crate) headers: &'a [(String, String)],
    pub(crate) query: &'a [(String, String)],
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) follow: bool,
    pub(crate) secret: Vec<String>,
}

impl Spec {
    /// Checks what the caller gave and builds the spec.
    pub(crate) fn new(raw: Raw<'_>) -> Result<Spec, Error> {
        // Parsed once: the `url` crate's form, checked (and cached) as an
        // `http::Uri` too.
        let mut url = normalize_url(&raw.url, raw.query)?;
        let method = parse_method(raw.method, &url)?;
        let mut headers = Headers::default();
        for (k, v) in raw.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| Error::invalid(&url, format!("bad header name {k:?}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| Error::invalid(&url, format!("bad value for header {k:?}")))?;
            headers.0.push((name, value));
        }
        // A head no pool sends is refused now, on the caller's thread.
        let head = method.as_str().len()
            + url.len()
            + headers
                .0
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if head > crate::agent::HEAD_MAX {
            return Err(Error::invalid(
                &url,
                format!(
                    "the request head is about {head} bytes, more than the {} a pool sends \
                     (send big data in a body)",
                    crate::agent::HEAD_MAX
                ),
            ));
        }
        let content_type = raw
            .content_type
            .filter(|_| !headers.contains_key(http::header::CONTENT_TYPE.as_str()));
        // A request may wait in the queue a long time: no spare capacity.
        url.shrink_to_fit();
        let body = raw.body.map(|mut b| {
            b.shrink_to_fit();
            b
        });
        Ok(Spec {
            method,
            url,
            headers,
            content_type,
            body,
            follow: raw.follow,
            secret: raw.secret,
        })
    }

    /// The secret values of this request: URL credentials, the values of
    /// secret query keys, and the values of secret headers.
    pub(crate) fn secrets(&self, query: &QuerySecrets) -> Vec<String> {
        let mut out = url_secrets(&self.url, &query.keys, query.all);
        for (k, v) in &self.headers.0 {
            let name = k.as_str();
            if ALWAYS_SECRET.contains(&name) || self.secret.iter().any(|s| s == name) {
                out.extend(v.to_str().map(header_secrets).unwrap_or_default());
            }
        }
        out
    }

    /// The host the request goes to, by its key (`scheme://host:port`).
    pub(crate) fn host(&self) -> Option<Arc<str>> {
        let uri = self.uri().ok()?;
        HostKey::of_uri(&uri).map(|k| Arc::from(k.into_string()))
    }

    /// The parsed URL. It was checked when the spec was made, and is not
    /// kept (a request waiting in the queue stays small): parsing it
    /// again is a look-up in the thread's cache for a batch to one URL.
    pub(crate) fn uri(&self) -> Result<Uri, Error> {
        parse_url(&self.url)
    }

    /// True if sending it twice does no harm: an idempotent method or an
    /// `Idempotency-Key`. (A retry policy can widen this for retries; never
    /// for hedging.)
    pub(crate) fn idempotent(&self) -> bool {
        self.headers.contains_key("idempotency-key")
            || matches!(
                self.method,
                Method::GET
                    | Method::HEAD
                    | Method::PUT
                    | Method::DELETE
                    | Method::OPTIONS
                    | Method::TRACE
            )
    }
}

impl Prepared {
    /// The limits of this request submitted now.
    pub(crate) fn limits(&self) -> Limits {
        limits(self.timeout, self.deadline)
    }

    /// True if a retry may send it again although it may have been sent.
    pub(crate) fn retry_idempotent(&self) -> bool {
        self.retry.non_idempotent || self.spec.idempotent()
    }

    /// A GET of `url` (relative to this request's URL) with the same limits.
    pub(crate) fn get(&self, url: &str) -> Result<Prepared, Error> {
        let base = self.spec.uri()?;
        let url = join_url(&self.spec.url, url)?;
        let uri = parse_url(&url)?;
        // The same credentials go along, but only to the same host.
        let mut headers = Headers::default();
        if uri.authority() == base.authority() && uri.scheme() == base.scheme() {
            headers = self.spec.headers.clone();
            headers.remove(http::header::CONTENT_TYPE.as_str());
        }
        let spec = Spec {
            method: Method::GET,
            url,
            headers,
            content_type: None,
            body: None,
            follow: false,
            secret: self.spec.secret.clone(),
        };
        let secrets = Secrets::new(secret_forms(
            self.secrets
                .forms()
                .iter()
                .cloned()
                .chain(spec.secrets(&self.query)),
        ));
        Ok(Prepared {
            spec,
            timeout: self.timeout,
            deadline: self.deadline,
            retry: self.retry.clone(),
            budget: self.budget.clone(),
            max_bytes: self.max_bytes,
            secrets,
            query: self.query.clone(),
            hooks: self.hooks.clone(),
        })
    }
}

/// A request as a durable outbox writes it: what goes on the wire, and
/// nothing secret.
#[cfg(any(feature = "sqlite", feature = "redis"))]
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) method: String,
    pub(crate) url: String,
    /// Every header, the content type included.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<Vec<u8>>,
    /// The caller's `Idempotency-Key`, if it set one.
    pub(crate) key: Option<String>,
}

#[cfg(any(feature = "sqlite", feature = "redis"))]
impl Prepared {
    /// This request as an outbox stores it.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if it carries a secret (URL credentials, a secret
    /// header, a secret query value): secrets never go to disk. What is a
    /// secret here does not depend on `redact_all_query_values`, a setting
    /// of what messages show.
    pub(crate) fn stored(&self) -> Result<Stored, Error> {
        let query = QuerySecrets {
            keys: self.query.keys.clone(),
            all: false,
        };
        if !secret_forms(self.spec.secrets(&query)).is_empty() {
            return Err(Error::usage(
                "the outbox writes no secret to disk, and this request carries one (URL \
                 credentials, an Authorization, Cookie or secret header, or a secret query \
                 value); add it at delivery instead, with Builder::bearer_from or \
                 Builder::before_attempt (Attempt::secret_header), or send the request with \
                 the pool directly",
            ));
        }
        let spec = &self.spec;
        let mut headers: Vec<(String, String)> = spec
            .headers
            .0
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if let Some(ct) = spec.content_type {
            headers.push(("content-type".to_string(), ct.to_string()));
        }
        let key = headers
            .iter()
            .find(|(k, _)| k == "idempotency-key")
            .map(|(_, v)| v.clone());
        Ok(Stored {
            method: spec.method.to_string(),
            url: spec.url.clone(),
            headers,
            body: spec.body.clone(),
            key,
        })
    }
}

/// A method as given, in any case: `post` is `POST`.
fn parse_method(method: &str, url: &str) -> Result<Method, Error> {
    let upper = method.to_ascii_uppercase();
    let known = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT",
    ];
    let m = if known.contains(&upper.as_str()) {
        upper.as_str()
    } else {
        method
    };
    if m.is_empty() {
        return Err(Error::invalid(url, "empty method"));
    }
    Method::from_bytes(m.as_bytes())
        .map_err(|_| Error::invalid(url, format!("bad method {method:?}")))
}

/// Checks that `url` is an absolute http(s) URL with a host.
pub(crate) fn parse_url(url: &str) -> Result<Uri, Error> {
    thread_local! {
        /// The last URL this thread checked: a batch sends many requests to
        /// one URL, and a `Uri` clone is a reference count.
        static LAST: std::cell::RefCell<Option<(String, Uri)>> = const { std::cell::RefCell::new(None) };
    }
    if let Some(uri) = LAST.with(|l| {
        l.borrow()
            .as_ref()
            .filter(|(u, _)| u == url)
            .map(|(_, uri)| uri.clone())
    }) {
        return Ok(uri);
    }
    let uri = check_url(url)?;
    LAST.with(|l| *l.borrow_mut() = Some((url.to_string(), uri.clone())));
    Ok(uri)
}

fn check_url(url: &str) -> Result<Uri, Error> {
    /// The longest URI the HTTP layer takes.
    const MAX_URI: usize = u16::MAX as usize - 1;
    if url.len() > MAX_URI {
        return Err(Error::invalid(
            url,
            format!(
                "url is {} bytes, longer than the {MAX_URI} the http layer takes (send big data in a body)",
                url.len()
            ),
        ));
    }
    // The parser's own message can quote the URL: it is not shown.
    let uri: Uri = url
        .parse()
        .map_err(|_| Error::invalid(url, "not a valid url"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(s) => return Err(Error::invalid(url, format!("unsupported scheme {s:?}"))),
        None => {
            return Err(Error::invalid(
                url,
                "url has no scheme (http:// or https://)",
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(Error::invalid(url, "url has no host"));
    }
    Ok(uri)
}

/// Resolves a `Location` (or a poll job's status URL) against the URL it
/// came from, by RFC 3986 §5.2: relative paths, query-only and empty
/// references, dot segments, scheme-relative `//host/x`, and a `://` inside
/// a query all land where a browser would send them. The fragment is
/// dropped (it is never sent).
///
/// # Errors
///
/// [`Error::InvalidRequest`] naming the location (redacted) when it does not
/// resolve to an http(s) URL.
pub(crate) fn join_url(base: &str, location: &str) -> Result<String, Error> {
    let bad = |why: String| Error::invalid(location, format!("redirect location {why}"));
    let base = url::Url::parse(base).map_err(|e| bad(format!("has no base: {e}")))?;
    let mut next = base
        .join(location.trim())
        .map_err(|e| bad(format!("does not resolve: {e}")))?;
    next.set_fragment(None);
    let next = String::from(next);
    check_url(&next).map_err(|e| match e {
        Error::InvalidRequest { reason, .. } => bad(format!("is refused: {reason}")),
        e => e,
    })?;
    Ok(next)
}

/// A caller's URL as it goes on the wire: parsed by the WHATWG rules
/// (through the `url` crate), so a non-ASCII path or a space is
/// percent-encoded instead of sent raw or refused, a port out of range is
/// refused here, and the fragment (never sent) is dropped; with `query`
/// appended to its query string. Checked as an `http::Uri` as well.
///
/// # Errors
///
/// [`Error::InvalidRequest`] with what is wrong, at once.
pub(crate) fn normalize_url(raw: &str, query: &[(String, String)]) -> Result<String, Error> {
    thread_local! {
        /// The last URL without extra query this thread normalized: a
        /// batch goes to one URL.
        static LAST: std::cell::RefCell<(String, String)> = const {
            std::cell::RefCell::new((String::new(), String::new()))
        };
    }
    if query.is_empty()
        && let Some(hit) = LAST.with(|l| {
            let l = l.borrow();
            (!l.0.is_empty() && l.0 == raw).then(|| l.1.clone())
        })
    {
        return Ok(hit);
    }
    if let Some(c) = raw.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(
            raw,
            format!("url holds a control character ({:?})", c),
        ));
    }
    let lower = raw.trim_start().to_ascii_lowercase();
    let after_scheme = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    if after_scheme.is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
        return Err(Error::invalid(raw, "url has no host"));
    }
    let mut parsed = url::Url::parse(raw).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => {
            Error::invalid(raw, "url has no scheme (http:// or https://)")
        }
        e => Error::invalid(raw, format!("not a valid url: {e}")),
    })?;
    parsed.set_fragment(None);
    if !query.is_empty() {
        // Each name and value percent-encoded, after the URL's own query.
        let mut q = parsed.query().unwrap_or("").to_string();
        for (k, v) in query {
            if !q.is_empty() {
                q.push('&');
            }
            encode_into(&mut q, k);
            q.push('=');
            encode_into(&mut q, v);
        }
        parsed.set_query(Some(&q));
    }
    let out = String::from(parsed);
    parse_url(&out)?;
    if query.is_empty() {
        LAST.with(|l| *l.borrow_mut() = (raw.to_string(), out.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_locations_by_rfc_3986() {
        let base = "http://h:1/dir/page?x=1#frag";
        let cases = [
            ("http://o/z", "http://o/z"),
            ("/z", "http://h:1/z"),
            ("z", "http://h:1/dir/z"),
            ("//o:2/z", "http://o:2/z"),
            ("?page=2", "http://h:1/dir/page?page=2"),
            ("", "http://h:1/dir/page?x=1"),
            ("../x", "http://h:1/x"),
            ("./a/../b", "http://h:1/dir/b"),
            ("#top", "http://h:1/dir/page?x=1"),
            (
                "/next?return=https://example.com/x",
                "http://h:1/next?return=https://example.com/x",
            ),
            ("/caf\u{e9} x", "http://h:1/caf%C3%A9%20x"),
        ];
        for (loc, want) in cases {
            assert_eq!(join_url(base, loc).unwrap(), want, "{loc:?}");
        }
        assert!(join_url(base, "ftp://o/z").is_err());
        assert!(join_url(base, "http://o:99999/z").is_err());
    }

    #[test]
    fn urls_go_out_percent_encoded() {
        assert_eq!(
            normalize_url("http://h:1/caf\u{e9} x?q=\u{e9}#f", &[]).unwrap(),
            "http://h:1/caf%C3%A9%20x?q=%C3%A9"
        );
        let e = normalize_url("http://127.0.0.1:99999/", &[]).unwrap_err();
        assert!(matches!(e, Error::InvalidRequest { .. }), "{e}");
        assert!(normalize_url("http://h/a\r\nX: y", &[]).is_err());
        let long = format!("http://h/?q={}", "a".repeat(70_000));
        let e = normalize_url(&long, &[]).unwrap_err().to_string();
        assert!(e.contains("longer than"), "{e}");
        let q = normalize_url("http://h/p?a=1#f", &[("b".into(), "x y".into())]).unwrap();
        assert_eq!(q, "http://h/p?a=1&b=x%20y");
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(parse_url("127.0.0.1:80/x").is_err());
        assert!(parse_url("ftp://h/x").is_err());
        assert!(parse_url("http:///x").is_err());
        assert!(normalize_url("http:///x", &[]).is_err());
        assert!(normalize_url("//alice:pw@host/x", &[]).is_err());
        assert!(parse_url("not a url").is_err());
        assert!(parse_url("http://127.0.0.1:1/x").is_ok());
        let e = parse_url("user:hunter2@host/x").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn methods_in_any_case() {
        assert_eq!(parse_method("post", "http://h/").unwrap(), Method::POST);
        assert_eq!(parse_method("Get", "http://h/").unwrap(), Method::GET);
        assert!(parse_method("", "http://h/").is_err());
        assert!(parse_method("BAD METHOD", "http://h/").is_err());
    }

    #[test]
    fn encodes_query() {
        let mut s = String::new();
        encode_into(&mut s, "a b&c=d/é");
        assert_eq!(s, "a%20b%26c%3Dd%2F%C3%A9");
    }
}
