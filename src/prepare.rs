//! A request checked and ready for a worker: the URL, method and headers
//! validated once on the caller's thread, the pool's defaults applied, the
//! secrets to keep out of messages collected.

use crate::attempt::Hooks;
use crate::deadline::Deadline;
use crate::error::Error;
use crate::error::Secrets;
use crate::hedge::Hedge;
use crate::host_key::HostKey;
use crate::redact::{ALWAYS_SECRET, header_secrets, secret_forms, url_secrets};
use crate::retry::{Budget, Retry};
use crate::task::{Label, Limits};
use crate::urls::{join_url, normalize_url, parse_url};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use ureq::http::{self, HeaderName, HeaderValue, Method, Uri};

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
    /// The host key of the URL, made once when first asked for (by host
    /// policies, hedging or spans) and carried with the request.
    pub(crate) host: OnceLock<Option<Arc<str>>>,
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
    /// The host the request goes to, by its key (`scheme://host:port`):
    /// made the first time it is asked for, then carried.
    pub(crate) fn host(&self) -> Option<Arc<str>> {
        self.host.get_or_init(|| self.spec.host()).clone()
    }

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
            host: OnceLock::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_in_any_case() {
        assert_eq!(parse_method("post", "http://h/").unwrap(), Method::POST);
        assert_eq!(parse_method("Get", "http://h/").unwrap(), Method::GET);
        assert!(parse_method("", "http://h/").is_err());
        assert!(parse_method("BAD METHOD", "http://h/").is_err());
    }
}
