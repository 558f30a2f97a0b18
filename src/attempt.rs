//! The per-attempt hooks of a pool: `Builder::before_attempt` (sign or
//! decorate each attempt from its exact bytes) and `Builder::bearer_from`
//! (a token per host, asked again after a 401). Both run on the worker,
//! just before an attempt's request is written: the first try, a retry, a
//! redirect hop, a hedged copy.

use crate::deadline::Deadline;
use crate::error::{Error, Phase};
use crate::redact::redact_url;
use crate::sync::lock;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use ureq::http::{HeaderMap, HeaderName, HeaderValue, header};

/// The hook of [`Builder::before_attempt`](crate::Builder::before_attempt).
pub(crate) type BeforeAttempt = Arc<dyn Fn(&mut Attempt<'_>) -> Result<(), Error> + Send + Sync>;

/// The source of [`Builder::bearer_from`](crate::Builder::bearer_from).
pub(crate) type TokenSource = Box<dyn Fn(&str) -> Result<String, Error> + Send + Sync>;

/// One attempt of a request, as the
/// [`before_attempt`](crate::Builder::before_attempt) hook sees it: what
/// is about to be sent, and the headers the hook adds to it.
///
/// ```
/// use reqpool::{Attempt, Error};
/// let pool = reqpool::Pool::builder()
///     .before_attempt(|a: &mut Attempt<'_>| {
///         // A signature over this attempt's exact bytes (a real one
///         // would be an HMAC with a key; this is a checksum).
///         let sum: u32 = a.body().iter().map(|&b| u32::from(b)).sum();
///         let sig = format!("{}:{}:{sum}", a.method(), a.number());
///         a.secret_header("X-Signature", &sig);
///         a.header("X-Attempt", &a.number().to_string());
///         Ok::<(), Error>(())
///     })
///     .build()?;
/// # Ok::<(), reqpool::Error>(())
/// ```
pub struct Attempt<'a> {
    method: &'a str,
    url: &'a str,
    body: &'a [u8],
    number: u32,
    /// The request's `Idempotency-Key`, filled in just before the hook runs.
    key: Option<String>,
    /// Name, value, secret.
    set: Vec<(String, String, bool)>,
}

impl<'a> Attempt<'a> {
    pub(crate) fn new(method: &'a str, url: &'a str, body: &'a [u8], number: u32) -> Self {
        Attempt {
            method,
            url,
            body,
            number,
            key: None,
            set: Vec::new(),
        }
    }

    /// The method, as sent (`GET`, `POST`, …; a 303 redirect hop is a `GET`).
    pub fn method(&self) -> &str {
        self.method
    }

    /// The URL of this attempt (a redirect hop's own), with its query.
    pub fn url(&self) -> &str {
        self.url
    }

    /// The body, exactly as it goes on the wire (empty if none).
    pub fn body(&self) -> &[u8] {
        self.body
    }

    /// Which attempt of the request this is: 1 for the first try, 2 for
    /// the first retry, and so on. A redirect hop has the number of the
    /// attempt it belongs to; a hedged copy counts its own.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The request's `Idempotency-Key`, if it has one: the caller's
    /// ([`RequestBuilder::idempotency_key`](crate::RequestBuilder::idempotency_key)),
    /// or, through an outbox, the job's own (the caller's or one it
    /// generated). The same on every attempt and every delivery of the
    /// job, so a hook can name the message by it (the Standard Webhooks
    /// signer of feature `webhooks` sends it as `webhook-id`).
    pub fn idempotency_key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Sets a header on this attempt (replacing one of the same name). A
    /// name or value that is not a valid header fails the attempt with
    /// [`Error::InvalidRequest`]. `Authorization`, `Cookie` and
    /// `Proxy-Authorization` are secrets whichever setter is used, as on
    /// the request builder.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        let secret = crate::redact::ALWAYS_SECRET
            .iter()
            .any(|s| s.eq_ignore_ascii_case(name.trim()));
        self.set.push((name.to_string(), value.to_string(), secret));
        self
    }

    /// Like [`header`](Attempt::header), for a value that is a secret: it
    /// is left out of every error, log line and `Debug`, in every form a
    /// server may echo it back in.
    pub fn secret_header(&mut self, name: &str, value: &str) -> &mut Self {
        self.set.push((name.to_string(), value.to_string(), true));
        self
    }
}

impl fmt::Debug for Attempt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: Vec<(&str, &str)> = self
            .set
            .iter()
            .map(|(k, v, secret)| (k.as_str(), if *secret { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("Attempt")
            .field("method", &self.method)
            .field("url", &redact_url(self.url))
            .field("number", &self.number)
            .field("body_len", &self.body.len())
            .field("headers", &set)
            .finish()
    }
}

/// How often a request waiting on its worker for its host's token looks
/// whether it was cancelled.
const CANCEL_CHECK: Duration = Duration::from_millis(20);

/// How long a request waiting off the workers for its host's token sleeps
/// before it looks again: half the time the ask has taken so far, within
/// these bounds (a fast source costs a millisecond, a slow one 50 ms of
/// lateness at most).
const LOOK_AGAIN: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(50));

/// Tokens per host from a `bearer_from` source.
///
/// The source runs on a thread of its own, never on a worker and never
/// under a lock held across hosts: a source that hangs for one host delays
/// no other host. A request whose host has no token yet, or is getting a
/// new one, waits for it off the workers (in the timer; see
/// [`Tokens::park`]) until its own limit, and requests to a host that need
/// a token together share one ask. Only a token that makes a valid header
/// value is kept; a failed ask's error goes to one request, and the next
/// one asks again.
pub(crate) struct Tokens {
    source: TokenSource,
    hosts: Mutex<HashMap<String, HostToken>>,
}

/// A host's token: the generation of the last one kept (1 for the first),
/// and where it stands.
#[derive(Default)]
struct HostToken {
    generation: u64,
    state: TokenState,
}

#[derive(Default)]
enum TokenState {
    /// Never asked for, or the last failed ask was told.
    #[default]
    None,
    /// The source is being asked.
    Asking(Arc<Ask>),
    Kept(String),
    /// The last ask failed: its error goes to the next request that looks.
    Failed(Arc<Ask>),
}

/// One ask of the source for one host.
struct Ask {
    started: Instant,
    outcome: Mutex<Outcome>,
    done: Condvar,
}

enum Outcome {
    Pending,
    Token(u64, String),
    /// The token is not a valid header value (it was not kept).
    BadToken,
    /// The source failed or panicked; its error goes to one request.
    Failed(Option<Error>),
}

/// What a request found when it looked for its host's token.
pub(crate) enum Look {
    /// A token is kept: the attempt goes on (and takes it).
    Ready,
    /// Not yet: look again at this instant (within the request's limit).
    Later(Instant),
}

/// What a request found under the hosts' lock.
enum Found {
    Token(u64, String),
    /// An ask under way; `true` if this request made it (and starts it).
    Wait(Arc<Ask>, bool),
    Failed(Arc<Ask>),
}

impl Tokens {
    pub(crate) fn new(source: TokenSource) -> Tokens {
        Tokens {
            source,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Looks at `host`'s token without waiting: ready, or when to look
    /// again (an ask is started if there is none), or the error of the
    /// host's last failed ask for this request. `limit` bounds the time
    /// to look again.
    pub(crate) fn park(
        self: &Arc<Self>,
        host: &str,
        limit: Deadline,
        at: &Attempt<'_>,
    ) -> Result<Look, Error> {
        match self.find(host, None) {
            Found::Token(..) => Ok(Look::Ready),
            Found::Failed(ask) => match self.told(host, &ask, at) {
                Some(e) => Err(e),
                None => self.park(host, limit, at),
            },
            Found::Wait(ask, new) => {
                if new {
                    self.start(host, &ask);
                }
                if !matches!(*lock(&ask.outcome), Outcome::Pending) {
                    // Answered already (a fast source): look now.
                    return self.park(host, limit, at);
                }
                let wait = (ask.started.elapsed() / 2).clamp(LOOK_AGAIN.0, LOOK_AGAIN.1);
                let again = Instant::now() + wait;
                Ok(Look::Later(limit.instant().map_or(again, |l| l.min(again))))
            }
        }
    }

    /// The token for `host` and its generation, asking the source when
    /// there is none and no ask under way. Waits on this thread, at most
    /// until `limit` (a redirect hop's host; a request's first host waits
    /// off the workers with [`park`](Tokens::park) first).
    fn get(
        self: &Arc<Self>,
        host: &str,
        limit: Deadline,
        at: &Attempt<'_>,
    ) -> Result<(u64, String), Error> {
        loop {
            let failed = match self.find(host, None) {
                Found::Token(g, t) => return Ok((g, t)),
                Found::Failed(ask) => ask,
                Found::Wait(ask, new) => {
                    if new {
                        self.start(host, &ask);
                    }
                    match ask.wait(limit, at)? {
                        Some(token) => return Ok(token),
                        None => ask,
                    }
                }
            };
            if let Some(e) = self.told(host, &failed, at) {
                return Err(e);
            }
        }
    }

    /// After a 401 to the token of `generation`: starts an ask for a new
    /// one unless one is under way or newer (however many requests got the
    /// 401 with that token, the source is asked once). Does not wait: the
    /// next attempt looks for the new token as the first did.
    pub(crate) fn refresh(self: &Arc<Self>, host: &str, generation: u64) {
        if let Found::Wait(ask, true) = self.find(host, Some(generation)) {
            self.start(host, &ask);
        }
    }

    /// Where `host`'s token stands, under the hosts' lock; an ask is made
    /// (not started) if there is none, or if the kept token is not newer
    /// than `stale`.
    fn find(&self, host: &str, stale: Option<u64>) -> Found {
        let mut hosts = lock(&self.hosts);
        let entry = hosts.entry(host.to_string()).or_default();
        match &entry.state {
            TokenState::Kept(t) if stale.is_none_or(|g| entry.generation > g) => {
                Found::Token(entry.generation, t.clone())
            }
            TokenState::Asking(ask) => Found::Wait(Arc::clone(ask), false),
            TokenState::Failed(ask) if stale.is_none() => Found::Failed(Arc::clone(ask)),
            _ => {
                let ask = Arc::new(Ask {
                    started: Instant::now(),
                    outcome: Mutex::new(Outcome::Pending),
                    done: Condvar::new(),
                });
                entry.state = TokenState::Asking(Arc::clone(&ask));
                Found::Wait(ask, true)
            }
        }
    }

    /// The error of `ask`, which failed, for this request (`None` if
    /// another request took it: ask again); the host's next request asks
    /// again.
    fn told(&self, host: &str, ask: &Arc<Ask>, at: &Attempt<'_>) -> Option<Error> {
        {
            let mut hosts = lock(&self.hosts);
            if let Some(entry) = hosts.get_mut(host)
                && matches!(&entry.state, TokenState::Failed(a) if Arc::ptr_eq(a, ask))
            {
                entry.state = TokenState::None;
            }
        }
        match &mut *lock(&ask.outcome) {
            Outcome::Failed(e) => e.take(),
            _ => Some(Error::invalid(
                at.url,
                "the token from bearer_from is not a valid header value (it was not kept)",
            )),
        }
    }

    /// Runs `ask` of the source for `host` on a thread of its own (on this
    /// one if no thread can be started).
    fn start(self: &Arc<Self>, host: &str, ask: &Arc<Ask>) {
        let (tokens, name, asked) = (Arc::clone(self), host.to_string(), Arc::clone(ask));
        let spawned = std::thread::Builder::new()
            .name("reqpool-token".into())
            .spawn(move || tokens.answer(&name, &asked));
        if let Err(e) = spawned {
            log::warn!("reqpool: no thread for a bearer_from source, asking on the worker: {e}");
            self.answer(host, ask);
        }
    }

    /// Asks the source for `host` and records the answer; a token is kept
    /// only if it makes a valid header value.
    fn answer(&self, host: &str, ask: &Arc<Ask>) {
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.source)(host)))
            .unwrap_or_else(|payload| {
                Err(Error::Panicked {
                    message: crate::error::panic_message(&*payload),
                })
            });
        let mut hosts = lock(&self.hosts);
        let entry = hosts.entry(host.to_string()).or_default();
        let current = matches!(&entry.state, TokenState::Asking(a) if Arc::ptr_eq(a, ask));
        let outcome = match got {
            Ok(token) if bearer(&token).is_some() => {
                entry.generation += 1;
                if current {
                    entry.state = TokenState::Kept(token.clone());
                }
                Outcome::Token(entry.generation, token)
            }
            Ok(_) => Outcome::BadToken,
            Err(e) => Outcome::Failed(Some(e)),
        };
        if current && !matches!(outcome, Outcome::Token(..)) {
            entry.state = TokenState::Failed(Arc::clone(ask));
        }
        // Recorded before the hosts' lock is let go: whoever finds the
        // host's state changed finds the outcome too.
        *lock(&ask.outcome) = outcome;
        drop(hosts);
        ask.done.notify_all();
    }
}

impl Ask {
    /// Waits for the answer on this thread until `limit`: the token, or
    /// `None` if the ask failed (its error is for [`Tokens::told`]).
    fn wait(&self, limit: Deadline, at: &Attempt<'_>) -> Result<Option<(u64, String)>, Error> {
        let mut outcome = lock(&self.outcome);
        loop {
            match &*outcome {
                Outcome::Pending => {}
                Outcome::Token(g, t) => return Ok(Some((*g, t.clone()))),
                Outcome::BadToken | Outcome::Failed(_) => return Ok(None),
            }
            if crate::wire::aborted() {
                return Err(Error::Cancelled);
            }
            let left = limit.left();
            if left.is_zero() {
                return Err(Error::timeout(Phase::Deadline, at.method, at.url));
            }
            outcome = self
                .done
                .wait_timeout(outcome, left.min(CANCEL_CHECK))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// The `Authorization` value of a bearer token, if it makes a valid one:
/// visible ASCII (no CR, LF or other control character, nothing that ureq
/// would refuse to send as text).
fn bearer(token: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .ok()
        .filter(|v| v.to_str().is_ok())
}

/// A pool's per-attempt hooks.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) before: Option<BeforeAttempt>,
    pub(crate) tokens: Option<Arc<Tokens>>,
}

/// What the hooks did to one exchange.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Values they set that are secrets (a token, a secret header).
    pub(crate) secrets: Vec<String>,
    /// The host and generation of the token sent, if one was.
    pub(crate) token: Option<(String, u64)>,
}

impl Hooks {
    pub(crate) fn is_empty(&self) -> bool {
        self.before.is_none() && self.tokens.is_none()
    }

    /// Runs the hooks for one exchange: a token for `host` unless the
    /// request has its own `Authorization`, then `before_attempt`, whose
    /// headers go on `headers`.
    pub(crate) fn apply(
        &self,
        attempt: Attempt<'_>,
        host: &str,
        headers: &mut HeaderMap,
        limit: Deadline,
    ) -> Result<Applied, Error> {
        let mut applied = Applied::default();
        if let Some(tokens) = &self.tokens
            && !headers.contains_key(header::AUTHORIZATION)
        {
            let (generation, token) = tokens.get(host, limit, &attempt)?;
            let value = bearer(&token).ok_or_else(|| {
                Error::invalid(
                    attempt.url,
                    "the token from bearer_from is not a valid header value",
                )
            })?;
            headers.insert(header::AUTHORIZATION, value);
            applied.secrets.push(token);
            applied.token = Some((host.to_string(), generation));
        }
        let Some(before) = &self.before else {
            return Ok(applied);
        };
        let mut attempt = attempt;
        attempt.key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        before(&mut attempt)?;
        for (name, value, secret) in attempt.set {
            let bad =
                |what: &str| Error::invalid(attempt.url, format!("before_attempt set {what}"));
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(&format!("an invalid header name {name:?}")))?;
            let mut v =
                HeaderValue::from_str(&value).map_err(|_| bad("an invalid header value"))?;
            if secret {
                v.set_sensitive(true);
                applied.secrets.push(value);
            }
            headers.insert(n, v);
        }
        Ok(applied)
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("before_attempt", &self.before.is_some())
            .field("bearer_from", &self.tokens.is_some())
            .finish()
    }
}
