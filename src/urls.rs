//! A URL as a pool takes it: checked once (an absolute http(s) URL with a
//! host, short enough for the HTTP layer), normalized for the wire with
//! the request's query, and joined with a `Location` or a poll job's
//! status URL.

use crate::error::Error;
use crate::redact::encode_into;
use ureq::http::Uri;

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
    fn encodes_query() {
        let mut s = String::new();
        encode_into(&mut s, "a b&c=d/é");
        assert_eq!(s, "a%20b%26c%3Dd%2F%C3%A9");
    }
}
