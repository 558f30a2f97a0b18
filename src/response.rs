//! `Response`: a whole HTTP response, read into memory.

use crate::error::Error;
use crate::redact::redact_url;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::fmt;
use ureq::http::HeaderMap;

/// A whole HTTP response: status, headers and body, read into memory.
#[derive(Clone)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    /// Not redacted: only ever shown through `redact_url`.
    pub(crate) url: String,
    pub(crate) method: String,
    /// Values the pool's hooks added to the request that got this
    /// response (a `bearer_from` token, `Attempt::secret_header` values):
    /// left out of what an outbox keeps. Never shown.
    pub(crate) hook_secrets: Vec<String>,
}

impl Response {
    /// The stand-in for the reply of a detached fire, never shown.
    pub(crate) fn detached(method: &ureq::http::Method, url: &str) -> Response {
        Response {
            status: 0,
            headers: HeaderMap::new(),
            body: Vec::new(),
            url: url.to_string(),
            method: method.to_string(),
            hook_secrets: Vec::new(),
        }
    }

    /// The body as an outbox keeps it: what the pool's hooks added to
    /// the request (a `bearer_from` token, a secret header), if the
    /// server echoed it, replaced with `***` in every form a secret is
    /// looked for in messages.
    #[cfg(any(feature = "sqlite", feature = "redis"))]
    pub(crate) fn body_to_keep(&self) -> Cow<'_, [u8]> {
        if self.hook_secrets.is_empty() {
            return Cow::Borrowed(&self.body);
        }
        let forms = crate::redact::secret_forms(self.hook_secrets.iter().cloned());
        Cow::Owned(crate::redact::scrub_bytes(&self.body, &forms))
    }

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
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] with the start of the body if it is not JSON of
    /// type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::decode(&self.method, &self.url, e.to_string(), &self.body))
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
