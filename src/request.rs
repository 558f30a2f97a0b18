//! `RequestBuilder`: a request put together on the caller's thread, and
//! its terminals (`json`, `send`, `fire`) that hand it to the pool.

use crate::error::Error;
use crate::error::Secrets;
use crate::hedge::Hedge;
use crate::pending::Pending;
use crate::pool::Pool;
use crate::prepare::{Prepared, Raw, Spec};
use crate::redact::{redact_url, secret_forms};
use crate::response::Response;
use crate::retry::Retry;
use crate::submit::{Decode, Options, start};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A request being put together; it runs when [`json`](RequestBuilder::json),
/// [`send`](RequestBuilder::send) or [`fire`](RequestBuilder::fire) hands it
/// to the pool.
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
///     .query("page", 2)
///     .header("Accept", "application/json")
///     .json::<Page>();
/// println!("{} items", page.wait()?.items.len());
/// # Ok::<(), reqpool::Error>(())
/// ```
#[must_use = "a request does nothing until json(), send() or fire() hands it to the pool; fire() if you do not want the answer"]
pub struct RequestBuilder {
    pool: Pool,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    content_type: Option<&'static str>,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    follow_redirects: bool,
    secret_headers: Vec<String>,
    secret_query: Vec<String>,
    retry: Option<Retry>,
    hedge: Option<Hedge>,
    no_block: bool,
    shared: bool,
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
            content_type: None,
            timeout: None,
            deadline: None,
            follow_redirects: false,
            secret_headers: Vec::new(),
            secret_query: Vec::new(),
            retry: None,
            hedge: None,
            no_block: false,
            shared: false,
            error: None,
        }
    }

    /// Adds a header. Repeating a name sends it several times.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a header whose value is a secret (an API key): it is never shown
    /// in errors or logs (not even when a server echoes it back), and never
    /// sent to another host on a redirect. `Authorization`, `Cookie` and
    /// `Proxy-Authorization` are always treated so.
    pub fn secret_header(mut self, name: &str, value: &str) -> Self {
        self.secret_headers.push(name.to_ascii_lowercase());
        self.header(name, value)
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// Adds a query parameter, percent-encoded, to the URL.
    ///
    /// Errors and logs show query values, so a failed item of a batch can
    /// be told apart, except for keys that are secret by name (matched by
    /// whole word: `api_key`, `access_token`, `X-Signature`, `sessionId`
    /// and `sort_key` are secret, `author`, `keyword` and `zip_code` are
    /// not; the README's "Logging and secrets" has the list), keys marked with [`secret_query`](RequestBuilder::secret_query) or
    /// [`Builder::secret_query_keys`](crate::Builder::secret_query_keys),
    /// and all of them with
    /// [`Builder::redact_all_query_values`](crate::Builder::redact_all_query_values).
    pub fn query(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a query parameter whose value is a secret: never shown in an
    /// error or a log line, nor where a server echoes it back.
    ///
    /// ```no_run
    /// let pool = reqpool::Pool::new(2);
    /// let r = pool.get("http://127.0.0.1:8000/geo").query("q", "paris").secret_query("account", "acme-7").send();
    /// ```
    pub fn secret_query(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.secret_query.push(name.to_string());
        self.query(name, value)
    }

    /// Sends `body` serialized as JSON, with `Content-Type: application/json`.
    ///
    /// The body is serialized here, on the calling thread; if that fails, the
    /// request resolves at once with [`Error::InvalidRequest`].
    pub fn json_body(mut self, body: &(impl Serialize + ?Sized)) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.body = Some(bytes);
                self.content_type = Some("application/json");
            }
            Err(e) => self.error = Some(format!("body does not serialize as json: {e}")),
        }
        self
    }

    /// Sends `fields` as a form, `application/x-www-form-urlencoded`.
    ///
    /// ```no_run
    /// let pool = reqpool::Pool::new(2);
    /// let resp = pool
    ///     .post("http://127.0.0.1:8000/login")
    ///     .form(&[("user", "ada"), ("lang", "en")])
    ///     .send();
    /// ```
    pub fn form<K: AsRef<str>, V: fmt::Display>(mut self, fields: &[(K, V)]) -> Self {
        let mut out = String::new();
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            crate::redact::encode_into(&mut out, k.as_ref());
            out.push('=');
            crate::redact::encode_into(&mut out, &v.to_string());
        }
        self.body = Some(out.into_bytes());
        self.content_type = Some("application/x-www-form-urlencoded");
        self
    }

    /// Sends raw bytes as the body (set `Content-Type` with
    /// [`header`](RequestBuilder::header)).
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self.content_type = None;
        self
    }

    /// This request's time limit, instead of the pool's
    /// [`timeout`](crate::Builder::timeout): from the moment a worker
    /// starts it, covering every attempt, redirect and wait between
    /// attempts. Time in the queue does not count (see
    /// [`deadline`](RequestBuilder::deadline) for that).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// A limit from now, time in the queue included, on top of the
    /// [`timeout`](RequestBuilder::timeout): when it passes while the
    /// request still waits for a worker, the request never starts and
    /// resolves with a [`Phase::Queued`](crate::Phase::Queued) timeout.
    /// For callers whose answer is worthless after a point in time.
    pub fn deadline(mut self, limit: Duration) -> Self {
        self.deadline = Some(limit);
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

    /// Shares one flight with identical requests: a GET or HEAD asked
    /// for with `shared()` while an identical one (same method, URL with
    /// its query, and headers) is in flight rides that one instead of
    /// being sent, as Go's `singleflight` does. Every handle gets the
    /// answer (decoded for each by its own `json` or `send`), or the same
    /// error — a timeout or a panic of the request reaches every handle.
    /// Cancelling or dropping a handle, the first one included, leaves the
    /// others served; the request is cut off only when every handle was
    /// cancelled (a dropped handle, like any dropped `Pending`, cancels
    /// nothing). The flight runs with the settings (`timeout`, `retry`)
    /// of the request that started it. A request with a body, another
    /// method, or sent with `fire` is sent on its own.
    ///
    /// ```no_run
    /// let pool = reqpool::Pool::new(8);
    /// // 100 threads asking for the same configuration: one request.
    /// let config = pool.get("http://127.0.0.1:8000/config").shared().json::<serde_json::Value>();
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
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

    /// Hands the request to the pool and decodes the JSON reply as `T`.
    /// Blocks only if a bounded queue is full.
    ///
    /// # Errors
    ///
    /// The `Pending` resolves with [`Error::Status`] for an error status
    /// (400 and up, body kept), [`Error::Decode`] for a reply that is not
    /// JSON of type `T` (with the start of the body), and at once with
    /// [`Error::InvalidRequest`] for a request that cannot be built; see
    /// [`Error`] for the rest.
    pub fn json<T>(self) -> Pending<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.start(|resp, req| {
            serde_json::from_slice::<T>(&resp.body).map_err(|e| {
                // A body in an encoding nobody asked for stays encoded:
                // say so, rather than show binary bytes.
                let message = match resp.header("content-encoding") {
                    Some(enc) if !enc.eq_ignore_ascii_case("identity") => {
                        format!("the body is {enc}-encoded, which is not decoded: {e}")
                    }
                    _ => e.to_string(),
                };
                Error::decode(req.spec.method.as_str(), &req.spec.url, message, &resp.body)
                    .scrubbed(&req.secrets)
            })
        })
    }

    /// Hands the request to the pool; the `Pending` resolves with the whole
    /// response: status, headers and body. Blocks only if a bounded queue
    /// is full.
    ///
    /// # Errors
    ///
    /// As [`json`](RequestBuilder::json), but for decoding: error statuses
    /// (400 and up) still resolve with [`Error::Status`].
    pub fn send(self) -> Pending<Response> {
        self.start(|resp, _| Ok(resp))
    }

    /// Runs the request with nothing to wait on: fire-and-forget with
    /// accounting (see [`Pool::fire`]). The reply's body is read and
    /// dropped; an error status counts as a failure and goes to the
    /// [`on_error`](crate::Builder::on_error) hook and the log. The same
    /// host caps, hedging, retries and limits apply as to
    /// [`send`](RequestBuilder::send). Blocks only if a bounded queue is
    /// full.
    ///
    /// # Errors
    ///
    /// At once, without queueing anything: [`Error::InvalidRequest`] for a
    /// request that cannot be built, [`Error::Closed`] after a shutdown.
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
        self.fire_as(false)
    }

    /// Sends the request without waiting for the reply: the job is done,
    /// and its worker free, as soon as the request (head and body) is
    /// written. Counted, hooked and flushed like [`fire`](RequestBuilder::fire).
    ///
    /// What is known: the request was written to the connection (a failure
    /// to connect or to write is a failure, reported to the
    /// [`on_error`](crate::Builder::on_error) hook and the log, and retried
    /// as the policy allows). What is not known: whether the server read
    /// it to the end, processed it, or what it answered — the connection is
    /// closed without reading the reply, and many servers (most Python and
    /// Node frameworks among them) go on processing a request whose client
    /// left, but some stop. Use it where losing an answer is fine (seed
    /// 002's "send the data and move on"); use `fire` to learn the status.
    /// Never hedged.
    ///
    /// # Errors
    ///
    /// At once, without queueing anything: [`Error::InvalidRequest`] for a
    /// request that cannot be built, [`Error::Closed`] after a shutdown.
    ///
    /// ```no_run
    /// let pool = reqpool::Pool::new(2);
    /// pool.post("http://127.0.0.1:8000/ingest")
    ///     .json_body(&serde_json::json!({"event": "seen"}))
    ///     .fire_detached()?;
    /// pool.flush(); // returns once every body is written
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn fire_detached(self) -> Result<(), Error> {
        self.fire_as(true)
    }

    /// Both fires: checked at once, then counted as fired.
    fn fire_as(self, detached: bool) -> Result<(), Error> {
        let inner = Arc::clone(self.pool.inner());
        if inner.is_closed() {
            return Err(Error::Closed);
        }
        let (pool, opts, prepared) = self.prepare()?;
        let opts = if detached { opts.detached() } else { opts };
        let pending = start(&pool, opts, Arc::clone(&prepared), |_, _| Ok(()));
        // Named only if it fails.
        let label = move || {
            let spec = &prepared.spec;
            format!("{} {}", spec.method, redact_url(&spec.url))
        };
        inner.track_fired(label, pending);
        Ok(())
    }

    /// Like [`json`](RequestBuilder::json), but never blocks (`try_` always
    /// means that here).
    ///
    /// # Errors
    ///
    /// As [`json`](RequestBuilder::json), and with a full bounded queue
    /// ([`Builder::max_queued`](crate::Builder::max_queued)) the `Pending`
    /// resolves at once with [`Error::QueueFull`].
    pub fn try_json<T>(mut self) -> Pending<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.no_block = true;
        self.json()
    }

    /// Like [`send`](RequestBuilder::send), but never blocks.
    ///
    /// # Errors
    ///
    /// As [`send`](RequestBuilder::send), and with a full bounded queue the
    /// `Pending` resolves at once with [`Error::QueueFull`].
    pub fn try_send(mut self) -> Pending<Response> {
        self.no_block = true;
        self.send()
    }

    fn start<T: Send + 'static>(self, decode: Decode<T>) -> Pending<T> {
        let shared = self.shared;
        match self.prepare() {
            Ok((pool, opts, prepared)) if shared && crate::flight::can_share(&prepared.spec) => {
                // A seat on the identical flight in the air, or the first
                // seat of a new one, whose request starts here.
                let inner = pool.inner();
                let seat = inner.flights().board(inner.id(), &prepared);
                if let Some(lead) = seat.lead {
                    let req = Arc::clone(&prepared);
                    let sent: Pending<Response> = start(&pool, opts, req, |r, _| Ok(r));
                    lead.took_off(sent);
                }
                Pending::new(seat.slot, seat.rider).and_then(move |resp| decode(resp, &prepared))
            }
            Ok((pool, opts, prepared)) => start(&pool, opts, prepared, decode),
            Err(e) => Pending::ready(Err(e)),
        }
    }

    /// Validates the request and applies the pool's defaults.
    /// The settings of this request's own that only a direct send
    /// honours, by name: an outbox refuses them rather than drop them.
    #[cfg(any(feature = "sqlite", feature = "redis"))]
    pub(crate) fn own_settings(&self) -> Vec<&'static str> {
        [
            ("timeout", self.timeout.is_some()),
            ("deadline", self.deadline.is_some()),
            ("retry", self.retry.is_some()),
            ("hedge", self.hedge.is_some()),
            ("follow_redirects", self.follow_redirects),
            ("shared", self.shared),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    pub(crate) fn prepare(self) -> Result<(Pool, Options, Arc<Prepared>), Error> {
        let defaults = self.pool.inner().defaults();
        let query = defaults.query.with(&self.secret_query);
        if let Some(reason) = self.error {
            return Err(Error::invalid(&self.url, reason).hide_query(&query.keys, query.all));
        }
        let spec = Spec::new(Raw {
            method: &self.method,
            url: self.url,
            headers: &self.headers,
            query: &self.query,
            body: self.body,
            content_type: self.content_type,
            follow: self.follow_redirects,
            secret: self.secret_headers,
        })
        .map_err(|e| e.hide_query(&query.keys, query.all))?;
        let secrets = Secrets::new(secret_forms(spec.secrets(&query)));
        let prepared = Prepared {
            spec,
            timeout: self.timeout.unwrap_or(defaults.timeout),
            deadline: self.deadline.or(defaults.deadline),
            retry: match self.retry {
                Some(r) => Arc::new(r),
                None => Arc::clone(&defaults.retry),
            },
            budget: defaults.budget.clone(),
            max_bytes: defaults.max_response_bytes,
            secrets,
            query,
            hooks: defaults.hooks.clone(),
            host: std::sync::OnceLock::new(),
        };
        let opts = Options::new(self.hedge.or(defaults.hedge), !self.no_block);
        Ok((self.pool, opts, Arc::new(prepared)))
    }
}

impl Pool {
    /// POSTs `body` as JSON to `url` and decodes the JSON reply as `T`.
    ///
    /// Returns at once (blocks only if a bounded queue is full).
    ///
    /// # Errors
    ///
    /// A body that does not serialize or a bad URL resolves the `Pending`
    /// at once with [`Error::InvalidRequest`], without using a worker; an
    /// error status resolves it with [`Error::Status`], which keeps the
    /// server's body; see [`RequestBuilder::json`] for the rest.
    ///
    /// ```no_run
    /// # #[derive(serde::Deserialize)] struct Reply { result: String }
    /// let pool = reqpool::Pool::new(8);
    /// let reply = pool.post_json::<Reply>("http://127.0.0.1:8000/process", &serde_json::json!({"tag": "a"}));
    /// println!("{}", reply.wait()?.result);
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn post_json<T>(&self, url: &str, body: &(impl Serialize + ?Sized)) -> Pending<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.post(url).json_body(body).json()
    }

    /// GETs `url` and decodes the JSON reply as `T`.
    ///
    /// # Errors
    ///
    /// As [`post_json`](Pool::post_json).
    pub fn get_json<T>(&self, url: &str) -> Pending<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.get(url).json()
    }

    /// Starts a request with any method; see [`RequestBuilder`].
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let pool = reqpool::Pool::new(4);
    /// let resp = pool
    ///     .request("PUT", "http://127.0.0.1:8000/items/7")
    ///     .header("X-Trace", "abc")
    ///     .query("dry_run", 1)
    ///     .json_body(&serde_json::json!({"name": "seven"}))
    ///     .timeout(Duration::from_secs(5))
    ///     .send()
    ///     .wait()?;
    /// println!("{} {}", resp.status(), resp.text());
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn request(&self, method: &str, url: &str) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, url)
    }

    /// Starts a GET request.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request("GET", url)
    }

    /// Starts a POST request.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request("POST", url)
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
            .field(
                "query",
                &self.query.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
