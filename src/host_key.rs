//! The one name a host goes by in per-host state and in what reqpool
//! shows: `scheme://host:port`, the port filled in when the URL leaves it
//! to the scheme, without user info. Caps, rate limits, breakers, adaptive
//! rates, hedging's latencies, `CircuitOpen`, spans and the Redis outbox's
//! shared rate all key on it, so `http://user:pw@h/` and `http://h:80/`
//! are one host and no key carries a password.

use std::fmt;
use std::ops::Range;
use ureq::http::Uri;

/// A host as its per-host state knows it: `scheme://host:port` in one
/// string, made with one allocation (it is made for every request to a
/// pool with host policies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostKey {
    key: String,
    /// Where the host name (lowercase) or IP address (an IPv6 one in
    /// brackets) is in `key`.
    host: Range<usize>,
}

impl HostKey {
    /// The key of a checked URL; `None` without a scheme, a host, or a
    /// port (given or known from the scheme).
    pub(crate) fn of_uri(uri: &Uri) -> Option<HostKey> {
        let scheme = uri.scheme_str()?;
        let host = uri.host().filter(|h| !h.is_empty())?;
        let port = match uri.port_u16() {
            Some(p) => p,
            None if scheme.eq_ignore_ascii_case("http") => 80,
            None if scheme.eq_ignore_ascii_case("https") => 443,
            None => return None,
        };
        // "://", ":" and at most 5 digits.
        let mut key = String::with_capacity(scheme.len() + host.len() + 9);
        key.push_str(scheme);
        key.push_str("://");
        let start = key.len();
        key.push_str(host);
        let end = key.len();
        key.push(':');
        // At most 5 digits, no allocation.
        let mut digits = [0u8; 5];
        let mut n = port;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in &digits[i..] {
            key.push(char::from(d));
        }
        key.make_ascii_lowercase();
        Some(HostKey {
            key,
            host: start..end,
        })
    }

    /// The key of `url`, if it parses as an absolute http(s) URL.
    // Only spans and the Redis outbox start from a URL's text.
    #[cfg_attr(
        not(any(feature = "redis", feature = "tracing", feature = "metrics")),
        allow(dead_code)
    )]
    pub(crate) fn of_url(url: &str) -> Option<HostKey> {
        HostKey::of_uri(&url.parse().ok()?)
    }

    /// The host name or address alone.
    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
    pub(crate) fn host(&self) -> &str {
        &self.key[self.host.clone()]
    }

    /// The port, given or the scheme's (`server.port` of a metric).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn port(&self) -> &str {
        self.key.get(self.host.end + 1..).unwrap_or_default()
    }

    /// The key as a string, without copying it.
    pub(crate) fn into_string(self) -> String {
        self.key
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::HostKey;

    fn key(url: &str) -> Option<String> {
        HostKey::of_url(url).map(|k| k.to_string())
    }

    #[test]
    fn one_key_per_host_without_user_info() {
        let same = [
            "http://h.example/x",
            "http://h.example:80/y?q=1",
            "http://user:pw@h.example/",
            "HTTP://USER@H.Example:80",
        ];
        for url in same {
            assert_eq!(key(url).as_deref(), Some("http://h.example:80"), "{url}");
        }
        assert_eq!(key("https://a:b@h:443/").as_deref(), Some("https://h:443"));
        assert_eq!(key("https://h:8443").as_deref(), Some("https://h:8443"));
        assert_eq!(key("http://[::1]:9/x").as_deref(), Some("http://[::1]:9"));
        assert_ne!(key("http://h:443"), key("https://h:443"));
        assert_eq!(key("not a url"), None);
        assert_eq!(key("ftp://h/x"), None);
        assert_eq!(key("http://h:65535").as_deref(), Some("http://h:65535"));
        assert_eq!(key("http://h:0").as_deref(), Some("http://h:0"));
        let k = HostKey::of_url("HTTPS://u:p@Api.Example:8443/x").unwrap();
        assert_eq!(k.host(), "api.example");
    }
}
