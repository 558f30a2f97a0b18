//! The per-attempt hooks of a pool: `Builder::before_attempt` (sign or
//! decorate each attempt from its exact bytes) and `Builder::bearer_from`
//! (a token per host, asked again after a 401). Both run on the worker,
//! just before an attempt's request is written: the first try, a retry, a
//! redirect hop, a hedged copy.

use crate::error::Error;
use crate::redact::redact_url;
use crate::sync::lock;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
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

    /// Sets a header on this attempt (replacing one of the same name). A
    /// name or value that is not a valid header fails the attempt with
    /// [`Error::InvalidRequest`].
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.set.push((name.to_string(), value.to_string(), false));
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

/// A host's token and its generation (1 for the first), once asked for;
/// its lock is held while the source is asked, so one caller asks.
type HostToken = Arc<Mutex<Option<(u64, String)>>>;

/// Tokens per host from a `bearer_from` source.
pub(crate) struct Tokens {
    source: TokenSource,
    hosts: Mutex<HashMap<String, HostToken>>,
}

impl Tokens {
    pub(crate) fn new(source: TokenSource) -> Tokens {
        Tokens {
            source,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn entry(&self, host: &str) -> HostToken {
        let mut hosts = lock(&self.hosts);
        Arc::clone(hosts.entry(host.to_string()).or_default())
    }

    /// The token for `host` and its generation, asking the source the
    /// first time (requests to a host that start together ask once).
    fn get(&self, host: &str) -> Result<(u64, String), Error> {
        let entry = self.entry(host);
        let mut current = lock(&entry);
        if let Some(t) = &*current {
            return Ok(t.clone());
        }
        let token = (1, (self.source)(host)?);
        *current = Some(token.clone());
        Ok(token)
    }

    /// A new token for `host` after a 401 to the token of `generation`:
    /// the source is asked once, however many requests got the 401 with
    /// that token; the others take the new one.
    pub(crate) fn refresh(&self, host: &str, generation: u64) -> Result<(), Error> {
        let entry = self.entry(host);
        let mut current = lock(&entry);
        if current.as_ref().is_some_and(|(g, _)| *g > generation) {
            return Ok(());
        }
        let token = (self.source)(host)?;
        *current = Some((generation + 1, token));
        Ok(())
    }
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
    ) -> Result<Applied, Error> {
        let mut applied = Applied::default();
        if let Some(tokens) = &self.tokens
            && !headers.contains_key(header::AUTHORIZATION)
        {
            let (generation, token) = tokens.get(host)?;
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
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
