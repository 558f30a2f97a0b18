//! `RequestBuilder`, `Response`, and how one request runs on a worker.

use crate::error::{ERROR_BODY_CAP, Error, TransportKind, fmt_duration, redact_url};
use crate::hedge::{Hedge, Race};
use crate::pending::Pending;
use crate::pool::Pool;
use crate::retry::{Budget, Retry, parse_retry_after};
use crate::task::{Deliver, Slot};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ureq::http::{self, HeaderMap, HeaderName, HeaderValue, Method, Uri};

/// How many redirects a request without a body follows.
const MAX_REDIRECTS: u32 = 5;

/// Headers that never cross to another host on a redirect.
const CROSS_HOST_STRIPPED: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// A request being put together; it runs when [`json`](RequestBuilder::json)
/// or [`send`](RequestBuilder::send) hands it to the pool.
///
/// Setters never fail on the spot: a bad header or a body that does not
/// serialize is remembered, and the final call resolves its `Pending` at
/// once with [`Error::InvalidRequest`].
///
/// ```no_run
/// # #[derive(serde::Deserialize)] struct Page { items: Vec<u32> }
/// let pool = reqpool::Pool::new(4);
/// let page = pool
///     .get("http://127.0.0.1:8000/items")
///     .query("page", "2")
///     .header("Accept", "application/json")
///     .json::<Page>();
/// println!("{} items", page.wait()?.items.len());
/// # Ok::<(), reqpool::Error>(())
/// ```
#[must_use = "a request does nothing until json() or send() hands it to the pool"]
pub struct RequestBuilder {
    pool: Pool,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    json: bool,
    timeout: Option<Duration>,
    follow_redirects: bool,
    secret_headers: Vec<String>,
    retry: Option<Retry>,
    hedge: Option<Hedge>,
    no_block: bool,
    error: Option<String>,
}

impl RequestBuilder {
    pub(crate) fn new(pool: Pool, method: &str, url: &str) -> Self {
        RequestBuilder {
            pool,
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            query: Vec::new(),
            body: None,
            json: false,
            timeout: None,
            follow_redirects: false,
            secret_headers: Vec::new(),
            retry: None,
            hedge: None,
            no_block: false,
            error: None,
        }
    }

    /// Adds a header. Repeating a name sends it several times.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a header whose value is a secret (an API key): it is never shown
    /// in errors or logs, and never sent to another host on a redirect.
    /// `Authorization`, `Cookie` and `Proxy-Authorization` are always
    /// treated so.
    pub fn secret_header(mut self, name: &str, value: &str) -> Self {
        self.secret_headers.push(name.to_ascii_lowercase());
        self.header(name, value)
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// Adds a query parameter, percent-encoded, to the URL.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends `body` serialized as JSON, with `Content-Type: application/json`.
    ///
    /// The body is serialized here, on the calling thread; if that fails, the
    /// request resolves at once with [`Error::InvalidRequest`].
    pub fn json_body(mut self, body: &(impl Serialize + ?Sized)) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.body = Some(bytes);
                self.json = true;
            }
            Err(e) => self.error = Some(format!("body does not serialize as json: {e}")),
        }
        self
    }

    /// Sends raw bytes as the body (set `Content-Type` with
    /// [`header`](RequestBuilder::header)).
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self.json = false;
        self
    }

    /// The total time limit of this request, queue time included, instead
    /// of the pool's [`timeout`](crate::Builder::timeout).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The retry policy of this request instead of the pool's; see
    /// [`Retry`].
    pub fn retry(mut self, policy: Retry) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Hedges this request (if it is idempotent) instead of following the
    /// pool's setting; see [`Hedge`].
    pub fn hedge(mut self, hedge: Hedge) -> Self {
        self.hedge = Some(hedge);
        self
    }

    /// Adds an `Idempotency-Key` header: the server can recognise a repeat,
    /// so a POST or PATCH with it may be retried like a GET (with the same
    /// key on every attempt).
    pub fn idempotency_key(self, key: &str) -> Self {
        self.header("Idempotency-Key", key)
    }

    /// Follows redirects even though the request has a body.
    ///
    /// By default a request with a body that is answered with a redirect
    /// fails with [`Error::Redirect`]: following a 301/302 would silently turn
    /// a POST into a GET. When following, 307 and 308 repeat the method and
    /// body, 303 becomes a GET, and 301/302 keep the method. Requests without
    /// a body always follow up to 5 redirects. Secret headers never cross to
    /// another host.
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.follow_redirects = follow;
        self
    }

    /// Runs the request and decodes the JSON reply as `T`.
    ///
    /// Error statuses (400 and up) resolve with [`Error::Status`]; a reply
    /// that is not valid JSON for `T` with [`Error::Decode`], which shows the
    /// start of the body.
    pub fn json<T>(self) -> Pending<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.dispatch(|resp, spec| {
            serde_json::from_slice::<T>(&resp.body).map_err(|e| {
                Error::decode(spec.method.as_str(), &spec.url, e.to_string(), &resp.body)
            })
        })
    }

    /// Runs the request and returns the whole response: status, headers and
    /// body. Error statuses (400 and up) still resolve with
    /// [`Error::Status`].
    pub fn send(self) -> Pending<Response> {
        self.dispatch(|resp, _| Ok(resp))
    }

    /// Runs the request with nothing to wait on: fire-and-forget with
    /// accounting (see [`Pool::fire`]). The reply's body is read and
    /// dropped; an error status counts as a failure and goes to the
    /// [`on_error`](crate::Builder::on_error) hook and the log.
    ///
    /// Returns an error at once if the request is invalid or the pool is
    /// shut down. Blocks only if a bounded queue is full.
    ///
    /// ```no_run
    /// let pool = reqpool::Pool::new(4);
    /// pool.post("http://127.0.0.1:8000/webhook")
    ///     .json_body(&serde_json::json!({"event": "done"}))
    ///     .fire()?;
    /// // ... the end of main: dropping the pool waits for it.
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn fire(self) -> Result<(), Error> {
        let label = format!("{} {}", self.method, redact_url(&self.url));
        let inner = self.pool.inner().clone();
        let prepared = self.prepare()?;
        let timeout = prepared.timeout;
        let deadline = Instant::now().checked_add(timeout);
        inner.fire(label, deadline, move |agent| {
            let deadline = deadline.unwrap_or_else(|| Instant::now() + timeout);
            prepared.run(agent, deadline).map(drop)
        })
    }

    /// Like [`json`](RequestBuilder::json), but never blocks: with a full
    /// bounded queue ([`Builder::max_queued`](crate::Builder::max_queued))
    /// the `Pending` resolves at once with [`Error::QueueFull`].
    pub fn try_json<T>(mut self) -> Pending<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.no_block = true;
        self.json()
    }

    /// Like [`send`](RequestBuilder::send), but never blocks on a full
    /// bounded queue: the `Pending` resolves at once with
    /// [`Error::QueueFull`].
    pub fn try_send(mut self) -> Pending<Response> {
        self.no_block = true;
        self.send()
    }

    fn dispatch<T, D>(self, decode: D) -> Pending<T>
    where
        T: Send + 'static,
        D: Fn(Response, &Spec) -> Result<T, Error> + Send + Sync + 'static,
    {
        let inner = self.pool.inner().clone();
        let hedge = self.hedge.or(inner.cfg.hedge);
        let block = !self.no_block;
        let prepared = match self.prepare() {
            Ok(p) => Arc::new(p),
            Err(e) => return Pending::ready(Err(e)),
        };
        let timeout = prepared.timeout;
        let deadline = Instant::now().checked_add(timeout);
        // The host matters only to a per-host cap and to hedging: don't
        // allocate it for every request otherwise.
        let host = if inner.hosts.is_some() || hedge.is_some() {
            prepared.host()
        } else {
            None
        };
        let idempotent = idempotent_request(&prepared.spec, &prepared.retry);
        let measure = hedge.is_some_and(|h| h.measures());
        let decode = Arc::new(decode);
        // The job, as often as it is needed (twice when hedged).
        let make_job = {
            let (inner, host) = (Arc::clone(&inner), host.clone());
            move || {
                let (inner, host) = (Arc::clone(&inner), host.clone());
                let (prepared, decode) = (Arc::clone(&prepared), Arc::clone(&decode));
                move |agent: &ureq::Agent| {
                    let deadline = deadline.unwrap_or_else(|| Instant::now() + timeout);
                    let started = Instant::now();
                    let resp = prepared.run(agent, deadline);
                    if measure
                        && resp.is_ok()
                        && let Some(h) = &host
                    {
                        inner.latencies.record(h, started.elapsed());
                    }
                    decode(resp?, &prepared.spec)
                }
            }
        };
        let hedge = match hedge {
            Some(h) if idempotent => h,
            _ => return inner.spawn_for(host, deadline, block, make_job()),
        };
        // Hedged: both copies race into one slot; the first success wins.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let slot = Arc::new(Slot::new(Deliver::Channel(tx)));
        let race = Race::new(Arc::clone(&slot));
        let first = inner.spawn_for(host.clone(), deadline, block, make_job());
        let ctl = first.control();
        let r = Arc::clone(&race);
        first.on_complete(Box::new(move |res| r.offer(res)));
        let second_inner = Arc::clone(&inner);
        let first_ctl = Arc::clone(&ctl);
        let second_host = host.clone();
        crate::hedge::schedule(
            &inner,
            hedge,
            host.as_deref().unwrap_or(""),
            Box::new(move || {
                if first_ctl.state() != crate::task::RUNNING || !race.second() {
                    return;
                }
                let second = second_inner.spawn_for(second_host, deadline, false, make_job());
                second.on_complete(Box::new(move |res| race.offer(res)));
            }),
        );
        Pending::new(rx, slot, ctl, inner.id, deadline)
    }

    /// Validates the request for running on a worker later.
    pub(crate) fn prepare(mut self) -> Result<Prepared, Error> {
        let cfg = &self.pool.inner().cfg;
        let limits = Limits {
            connect: cfg.connect_timeout,
            response: cfg.response_timeout,
            max_bytes: cfg.max_response_bytes,
        };
        let timeout = self.timeout.unwrap_or(cfg.timeout);
        let retry = match self.retry.take() {
            Some(r) => Arc::new(r),
            None => Arc::clone(&cfg.retry),
        };
        let budget = cfg.budget.clone();
        Ok(Prepared {
            spec: self.into_spec()?,
            limits,
            timeout,
            retry,
            budget,
        })
    }

    fn into_spec(self) -> Result<Spec, Error> {
        if let Some(reason) = self.error {
            return Err(Error::invalid(&self.url, reason));
        }
        let mut url = self.url;
        if !self.query.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            for (i, (k, v)) in self.query.iter().enumerate() {
                if i > 0 {
                    url.push('&');
                }
                encode_into(&mut url, k);
                url.push('=');
                encode_into(&mut url, v);
            }
        }
        let uri = parse_url(&url)?;
        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|_| Error::invalid(&url, format!("bad method {:?}", self.method)))?;
        let mut headers = Headers::default();
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| Error::invalid(&url, format!("bad header name {k:?}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| Error::invalid(&url, format!("bad value for header {k:?}")))?;
            headers.0.push((name, value));
        }
        if self.json && !headers.contains_key(http::header::CONTENT_TYPE.as_str()) {
            headers.0.push((
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ));
        }
        Ok(Spec {
            method,
            url,
            uri,
            headers,
            body: self.body,
            follow: self.follow_redirects,
            secret: self.secret_headers,
        })
    }
}

/// True if sending `spec` twice does no harm: an idempotent method, an
/// `Idempotency-Key`, or the caller said so.
fn idempotent_request(spec: &Spec, retry: &Retry) -> bool {
    retry.non_idempotent
        || spec.headers.contains_key("idempotency-key")
        || matches!(
            spec.method,
            Method::GET
                | Method::HEAD
                | Method::PUT
                | Method::DELETE
                | Method::OPTIONS
                | Method::TRACE
        )
}

/// Checks that `url` is an absolute http(s) URL with a host.
fn parse_url(url: &str) -> Result<Uri, Error> {
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
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::invalid(url, format!("not a valid url: {e}")))?;
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

fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => {
                out.push('%');
                out.push_str(&format!("{b:02X}"));
            }
        }
    }
}

/// Request headers, in order, as a plain list: small while a request waits
/// in the queue (a `HeaderMap` is built only when it is sent).
#[derive(Clone, Default)]
pub(crate) struct Headers(Vec<(HeaderName, HeaderValue)>);

impl Headers {
    fn contains_key(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|(k, _)| k.as_str().eq_ignore_ascii_case(name))
    }

    fn remove(&mut self, name: &str) {
        self.0
            .retain(|(k, _)| !k.as_str().eq_ignore_ascii_case(name));
    }
}

/// A validated request, owned by the job.
pub(crate) struct Spec {
    pub(crate) method: Method,
    pub(crate) url: String,
    uri: Uri,
    headers: Headers,
    body: Option<Vec<u8>>,
    follow: bool,
    secret: Vec<String>,
}

#[derive(Clone, Copy)]
struct Limits {
    connect: Duration,
    response: Option<Duration>,
    max_bytes: u64,
}

/// A validated request with the pool's limits, ready to run on a worker.
pub(crate) struct Prepared {
    pub(crate) spec: Spec,
    limits: Limits,
    /// The request's own total time limit.
    pub(crate) timeout: Duration,
    pub(crate) retry: Arc<Retry>,
    budget: Option<Arc<Budget>>,
}

impl Prepared {
    /// Runs the request on `agent` within `deadline`, retrying as its
    /// policy allows.
    pub(crate) fn run(&self, agent: &ureq::Agent, deadline: Instant) -> Result<Response, Error> {
        let spec = &self.spec;
        let idempotent = idempotent_request(spec, &self.retry);
        if let Some(b) = &self.budget {
            b.deposit();
        }
        let mut failed: Vec<Error> = Vec::new();
        let mut fresh_connection_tried = false;
        loop {
            let mut in_body = false;
            let err = match execute(agent, spec, &self.limits, deadline, &mut in_body) {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            // A keep-alive connection the server closed just as we reused
            // it: an idempotent request goes once more on a fresh one,
            // whatever the policy says.
            if idempotent
                && !fresh_connection_tried
                && !in_body
                && err.transport_kind() == Some(TransportKind::Reset)
            {
                fresh_connection_tried = true;
                failed.push(err);
                continue;
            }
            let attempt = failed.len() as u32 + 1;
            // One attempt and nothing to explain: the plain error. Else the
            // whole story: every attempt and why there was no other.
            let retries_on = self.retry.max_attempts > 1;
            let give_up = |failed: Vec<Error>, err: Error, reason: String| {
                if failed.is_empty() && (reason.is_empty() || !retries_on) {
                    return Err(err);
                }
                let reason = if reason.is_empty() {
                    "the first attempt was closed before any response; the one more attempt on a fresh connection failed too".to_string()
                } else {
                    reason
                };
                let mut attempts = failed;
                attempts.push(err);
                Err(Error::GaveUp { attempts, reason })
            };
            if !self.retry.covers(&err) {
                let reason = if failed.is_empty() {
                    ""
                } else {
                    "not retryable"
                };
                return give_up(failed, err, reason.to_string());
            }
            if !idempotent && err.maybe_sent() {
                return give_up(
                    failed,
                    err,
                    format!(
                        "{} may have reached the server and is not idempotent",
                        spec.method
                    ),
                );
            }
            if attempt >= self.retry.max_attempts {
                let reason = if retries_on {
                    format!("{attempt} attempts made")
                } else {
                    String::new()
                };
                return give_up(failed, err, reason);
            }
            // Only a policy with attempts left gets here.
            let retry_after = err.retry_after();
            let wait = retry_after.unwrap_or_else(|| self.retry.backoff_after(attempt));
            let left = deadline.saturating_duration_since(Instant::now());
            if wait >= left {
                let what = if retry_after.is_some() {
                    "retry-after"
                } else {
                    "backoff"
                };
                return give_up(
                    failed,
                    err,
                    format!(
                        "{what} of {} is beyond the deadline ({} left)",
                        fmt_duration(wait),
                        fmt_duration(left)
                    ),
                );
            }
            if let Some(b) = &self.budget
                && !b.try_spend()
            {
                return give_up(failed, err, "retry budget exhausted".to_string());
            }
            failed.push(err);
            std::thread::sleep(wait);
        }
    }

    /// The host the request goes to, as `host:port`.
    pub(crate) fn host(&self) -> Option<Arc<str>> {
        self.spec.uri.authority().map(|a| Arc::from(a.as_str()))
    }

    /// A GET of `url` (relative to this request's URL) with the same limits.
    pub(crate) fn get(&self, url: &str) -> Result<Prepared, Error> {
        let url = join_url(&self.spec.uri, url);
        let uri = parse_url(&url)?;
        // The same credentials go along, but only to the same host.
        let mut headers = Headers::default();
        if uri.authority() == self.spec.uri.authority() && uri.scheme() == self.spec.uri.scheme() {
            headers = self.spec.headers.clone();
            headers.remove(http::header::CONTENT_TYPE.as_str());
        }
        Ok(Prepared {
            spec: Spec {
                method: Method::GET,
                url,
                uri,
                headers,
                body: None,
                follow: false,
                secret: Vec::new(),
            },
            limits: self.limits,
            timeout: self.timeout,
            retry: self.retry.clone(),
            budget: self.budget.clone(),
        })
    }
}

/// One hop of a request: where it goes and what it carries.
///
/// It borrows from the spec until a redirect changes something, so the
/// common single hop copies neither the URL nor the body.
struct Hop<'a> {
    method: Method,
    url: Cow<'a, str>,
    uri: Uri,
    headers: Cow<'a, Headers>,
    body: Option<&'a [u8]>,
}

/// Runs `spec` on `agent`, following redirects as the spec allows.
///
/// `in_body` is set when a failure came while reading a response body,
/// after the server had answered.
fn execute(
    agent: &ureq::Agent,
    spec: &Spec,
    limits: &Limits,
    deadline: Instant,
    in_body: &mut bool,
) -> Result<Response, Error> {
    let mut hop = Hop {
        method: spec.method.clone(),
        url: Cow::Borrowed(&spec.url),
        uri: spec.uri.clone(),
        headers: Cow::Borrowed(&spec.headers),
        body: spec.body.as_deref(),
    };
    let mut redirects = 0;
    loop {
        let resp = exchange(agent, &hop, limits, deadline, in_body)?;
        let code = resp.status;
        let location = match resp.header("location") {
            Some(l) if matches!(code, 301 | 302 | 303 | 307 | 308) => l.to_string(),
            _ => return Ok(resp),
        };
        if hop.body.is_some() && !spec.follow {
            return Err(Error::Redirect {
                code,
                method: hop.method.to_string(),
                url: redact_url(&hop.url),
                location: redact_url(&location),
            });
        }
        if redirects >= MAX_REDIRECTS {
            return Err(Error::Redirect {
                code,
                method: hop.method.to_string(),
                url: redact_url(&hop.url),
                location: format!(
                    "{} (more than {MAX_REDIRECTS} redirects)",
                    redact_url(&location)
                ),
            });
        }
        redirects += 1;
        let next = join_url(&hop.uri, &location);
        let next_uri = parse_url(&next)?;
        if next_uri.authority() != hop.uri.authority() || next_uri.scheme() != hop.uri.scheme() {
            for name in CROSS_HOST_STRIPPED
                .iter()
                .copied()
                .chain(spec.secret.iter().map(String::as_str))
            {
                hop.headers.to_mut().remove(name);
            }
        }
        if code == 303 && hop.method != Method::HEAD {
            hop.method = Method::GET;
            hop.body = None;
            hop.headers
                .to_mut()
                .remove(http::header::CONTENT_TYPE.as_str());
        }
        hop.url = Cow::Owned(next);
        hop.uri = next_uri;
    }
}

/// Resolves a `Location` against the URL it came from.
fn join_url(base: &Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = base.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{scheme}://{authority}{dir}{location}")
}

/// One request and its response, bounded by `deadline`.
fn exchange(
    agent: &ureq::Agent,
    hop: &Hop<'_>,
    limits: &Limits,
    deadline: Instant,
    in_body: &mut bool,
) -> Result<Response, Error> {
    let method = hop.method.as_str();
    let url: &str = &hop.url;
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Timeout {
            phase: crate::Phase::Queued,
            method: method.to_string(),
            url: redact_url(url),
        });
    }
    let mut builder = http::Request::builder()
        .method(hop.method.clone())
        .uri(hop.uri.clone());
    if let Some(h) = builder.headers_mut() {
        h.reserve(hop.headers.0.len());
        for (k, v) in &hop.headers.0 {
            h.append(k.clone(), v.clone());
        }
    }
    let req = builder
        .body(hop.body.unwrap_or_default())
        .map_err(|e| Error::invalid(url, e.to_string()))?;
    // Per-phase limits, each at most what is left of the deadline. Not
    // `timeout_global`: with it, ureq resolves the host on a new thread for
    // every request (see the crate docs, "Time limits").
    let phase = Some(left);
    let req = agent
        .configure_request(req)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(left.min(limits.connect)))
        .timeout_send_request(phase)
        .timeout_send_body(phase)
        .timeout_recv_response(Some(limits.response.map_or(left, |r| r.min(left))))
        .timeout_recv_body(phase)
        .build();
    let mut resp = agent
        .run(req)
        .map_err(|e| Error::from_ureq(e, method, url))?;
    let status = resp.status().as_u16();
    let cap = if status >= 400 {
        ERROR_BODY_CAP as u64
    } else {
        limits.max_bytes
    };
    let mut body = Vec::with_capacity(
        resp.body()
            .content_length()
            .unwrap_or(0)
            .min(cap.saturating_add(1))
            .min(64 * 1024) as usize,
    );
    // The cap counts decoded bytes: ureq's own limit counts them before
    // decompression, so a small gzip body could grow without bound.
    let reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    if let Err(e) = reader.take(cap.saturating_add(1)).read_to_end(&mut body) {
        *in_body = true;
        return Err(io_error(e, method, url));
    }
    let (parts, _) = resp.into_parts();
    if status >= 400 {
        body.truncate(ERROR_BODY_CAP);
        let mut err = Error::status_error(status, method, url, &body);
        if let Error::Status { retry_after, .. } = &mut err {
            *retry_after = parts
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        }
        return Err(err);
    }
    if body.len() as u64 > cap {
        return Err(Error::TooLarge {
            method: method.to_string(),
            url: redact_url(url),
            limit: cap,
        });
    }
    Ok(Response {
        status,
        headers: parts.headers,
        body,
        url: url.to_string(),
    })
}

/// Turns an I/O error from reading a body back into our error.
fn io_error(e: std::io::Error, method: &str, url: &str) -> Error {
    let kind = e.kind();
    match e.into_inner().map(|inner| inner.downcast::<ureq::Error>()) {
        Some(Ok(ureq_err)) => Error::from_ureq(*ureq_err, method, url),
        Some(Err(other)) => Error::from_ureq(
            ureq::Error::Io(std::io::Error::new(kind, other.to_string())),
            method,
            url,
        ),
        None => Error::from_ureq(ureq::Error::Io(kind.into()), method, url),
    }
}

/// A whole HTTP response: status, headers and body, read into memory.
pub struct Response {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    /// Not redacted: only ever shown through `redact_url`.
    url: String,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (case-insensitive), if it is there
    /// and is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body bytes (decoded if the server compressed them).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body bytes, owned.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Decodes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::decode("", &self.url, e.to_string(), &self.body))
    }

    /// The URL that answered (after redirects), redacted.
    pub fn url(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may carry secrets (Set-Cookie): show names only.
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("url", &redact_url(&self.url))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .field("url", &redact_url(&self.url))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_locations() {
        let base: Uri = "http://h:1/a/b?x=1".parse().unwrap();
        assert_eq!(join_url(&base, "http://o/z"), "http://o/z");
        assert_eq!(join_url(&base, "/z"), "http://h:1/z");
        assert_eq!(join_url(&base, "z"), "http://h:1/a/z");
        assert_eq!(join_url(&base, "//o:2/z"), "http://o:2/z");
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(parse_url("127.0.0.1:80/x").is_err());
        assert!(parse_url("ftp://h/x").is_err());
        assert!(parse_url("http:///x").is_err());
        assert!(parse_url("not a url").is_err());
        assert!(parse_url("http://127.0.0.1:1/x").is_ok());
    }

    #[test]
    fn encodes_query() {
        let mut s = String::new();
        encode_into(&mut s, "a b&c=d/é");
        assert_eq!(s, "a%20b%26c%3Dd%2F%C3%A9");
    }
}
