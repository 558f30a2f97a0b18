//! One exchange on the wire: a request's head and body written through
//! the right agent, its response read whole (decoded, capped), and what
//! the exchange showed for the retry decision.

use crate::attempt::Attempt;
use crate::deadline::Deadline;
use crate::error::{ERROR_BODY_CAP, Error, TransportKind};
use crate::prepare::{Headers, Prepared};
use crate::redact::redact_url;
use crate::response::Response;
use crate::retry::parse_retry_after;
use crate::task::Ctx;
use std::borrow::Cow;
use std::io::Read;
use ureq::http::{self, HeaderValue, Method, Uri};
/// One hop of a request: where it goes and what it carries.
///
/// It borrows from the spec until a redirect changes something, so the
/// common single hop copies neither the URL nor the body.
pub(crate) struct Hop<'a> {
    pub(crate) method: Method,
    pub(crate) url: Cow<'a, str>,
    pub(crate) uri: Uri,
    pub(crate) headers: Cow<'a, Headers>,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) body: Option<&'a [u8]>,
}

/// What the exchanges of one attempt showed, for the retry decision.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// The failure came while reading a response body, after the server
    /// had answered.
    pub(crate) in_body: bool,
    /// Some hop of the attempt was answered (a redirect): whatever failed
    /// after it, the request reached a server.
    pub(crate) answered: bool,
    /// The failing exchange ran on a kept-alive connection that an earlier
    /// request had used (not one opened for it).
    pub(crate) reused: bool,
    /// Values the pool's hooks set that are secrets.
    pub(crate) secrets: Vec<String>,
    /// The host and generation of the `bearer_from` token last sent.
    pub(crate) token: Option<(String, u64)>,
}

/// One request and its response on the wire. The total limit is this
/// thread's (see `wire`), so no phase budget is set here.
///
/// What runs before and after ureq (the head built, the hooks run, the
/// reply read and decoded) is in functions of their own, never inlined:
/// a worker's stack, as touched, is the deepest any request went, and
/// only this frame and `send_once`'s lie under ureq's.
pub(crate) fn exchange(
    ctx: &Ctx<'_>,
    limit: Deadline,
    hop: &Hop<'_>,
    req: &Prepared,
    number: u32,
    seen: &mut Seen,
) -> Result<Response, Error> {
    let (agent, head) = head(ctx, limit, hop, req, number, seen)?;
    crate::wire::reset_opened();
    match send_once(agent, head, hop) {
        Ok(resp) => read_reply(resp, hop, req.max_bytes, seen),
        Err(e) => Err(not_sent(e, hop, seen)),
    }
}

/// The error of an exchange ureq failed (in a frame of its own, as the
/// head's and the reply's).
#[cold]
#[inline(never)]
fn not_sent(e: ureq::Error, hop: &Hop<'_>, seen: &mut Seen) -> Error {
    seen.reused = !crate::wire::opened();
    Error::from_ureq(e, hop.method.as_str(), &hop.url)
}

/// The request's head (the hooks' headers included) and the agent that
/// sends it.
#[inline(never)]
fn head<'a>(
    ctx: &Ctx<'a>,
    limit: Deadline,
    hop: &Hop<'_>,
    req: &Prepared,
    number: u32,
    seen: &mut Seen,
) -> Result<(&'a ureq::Agent, http::Request<()>), Error> {
    let method = hop.method.as_str();
    let url: &str = &hop.url;
    let mut builder = http::Request::builder()
        .method(hop.method.clone())
        .uri(hop.uri.clone());
    if let Some(h) = builder.headers_mut() {
        h.reserve(hop.headers.0.len() + 1);
        for (k, v) in &hop.headers.0 {
            h.append(k.clone(), v.clone());
        }
        if let Some(ct) = hop.content_type {
            h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        if !req.hooks.is_empty() {
            let body = hop.body.unwrap_or_default();
            let attempt = Attempt::new(method, url, body, number);
            let host = hop.uri.host().unwrap_or_default();
            let applied = req.hooks.apply(attempt, host, h, limit)?;
            seen.secrets.extend(applied.secrets);
            seen.token = applied.token;
        }
    }
    // A head past what a pool sends (the hooks' headers included) is
    // refused; a long line in it (a long URL, token or cookie) is written
    // through a buffer the connection lends for it (see `spill`).
    let len = builder
        .headers_ref()
        .map_or(0, |h| head_len(method, &hop.uri, h));
    let agent = match ctx.agents {
        Some(agents) => agents.for_request(ctx.agent, len).ok_or_else(|| {
            Error::invalid(
                url,
                format!(
                    "the request head is about {len} bytes, more than the {} a pool sends",
                    crate::agent::HEAD_MAX
                ),
            )
        })?,
        None => ctx.agent,
    };
    let head = builder
        .body(())
        .map_err(|e| Error::invalid(url, e.to_string()))?;
    Ok((agent, head))
}

/// The response read whole: decoded, capped at `max_bytes` (a status
/// error's body at [`ERROR_BODY_CAP`]).
#[inline(never)]
fn read_reply(
    mut resp: http::Response<ureq::Body>,
    hop: &Hop<'_>,
    max_bytes: u64,
    seen: &mut Seen,
) -> Result<Response, Error> {
    let method = hop.method.as_str();
    let url: &str = &hop.url;
    let status = resp.status().as_u16();
    let cap = if status >= 400 {
        ERROR_BODY_CAP as u64
    } else {
        max_bytes
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
        seen.in_body = true;
        return Err(io_error(e, method, url));
    }
    let (mut parts, _) = resp.into_parts();
    if parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"deflate"))
    {
        // ureq decodes gzip and br; deflate is ours.
        body = inflate(&body, cap).map_err(|e| Error::Transport {
            kind: TransportKind::Protocol,
            method: method.to_string(),
            url: redact_url(url),
            message: format!("the deflate body does not decompress: {e}"),
        })?;
        parts.headers.remove(http::header::CONTENT_ENCODING);
        parts.headers.remove(http::header::CONTENT_LENGTH);
    }
    if status >= 400 {
        body.truncate(ERROR_BODY_CAP);
        let mut err = Error::status_error(status, method, url, &body);
        err = err.with_headers(&parts.headers);
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
            status: Some(status),
        });
    }
    Ok(Response {
        status,
        headers: parts.headers,
        body,
        url: url.to_string(),
        method: method.to_string(),
        hook_secrets: Vec::new(),
    })
}

/// Sends `head` (with the hop's body) through `agent` once. A GET (or
/// HEAD, DELETE, …) without a body goes without body headers; a POST, PUT
/// or PATCH without one says `Content-Length: 0` (RFC 9110 §8.6), never an
/// empty chunked body.
fn send_once(
    agent: &ureq::Agent,
    head: http::Request<()>,
    hop: &Hop<'_>,
) -> Result<http::Response<ureq::Body>, ureq::Error> {
    let needs_length = matches!(hop.method, Method::POST | Method::PUT | Method::PATCH);
    // The head becomes the request (no copy of its headers).
    match hop.body {
        Some(body) => agent.run(head.map(|()| body)),
        None if needs_length => agent.run(head.map(|()| &[][..])),
        None => agent.run(head),
    }
}

/// The length of a request's head as reqpool writes it (request line and
/// headers), and of what ureq derives from the URL's authority (`Host`,
/// Basic credentials from user info).
pub(crate) fn head_len(method: &str, uri: &Uri, headers: &http::HeaderMap) -> usize {
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let fields: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    method.len() + target + 12 + fields + 2 + authority * 2 + 32
}

/// Decodes a `Content-Encoding: deflate` body, at most `cap + 1` bytes of
/// it (the caller tells "too large" from the length). RFC 9110's deflate is
/// zlib-wrapped; some servers send the bare stream, which is taken too.
fn inflate(raw: &[u8], cap: u64) -> std::io::Result<Vec<u8>> {
    use flate2::read::{DeflateDecoder, ZlibDecoder};
    let zlib =
        raw.len() >= 2 && raw[0] & 0x0f == 8 && u16::from_be_bytes([raw[0], raw[1]]) % 31 == 0;
    let mut out = Vec::new();
    if zlib {
        ZlibDecoder::new(raw)
            .take(cap.saturating_add(1))
            .read_to_end(&mut out)?;
    } else {
        DeflateDecoder::new(raw)
            .take(cap.saturating_add(1))
            .read_to_end(&mut out)?;
    }
    Ok(out)
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
