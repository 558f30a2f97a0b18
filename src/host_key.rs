//! The one name a host goes by in per-host state and in what reqpool
//! shows: `scheme://host:port`, the port filled in when the URL leaves it
//! to the scheme, without user info. Caps, rate limits, breakers, adaptive
//! rates, hedging's latencies, `CircuitOpen`, spans and the Redis outbox's
//! shared rate all key on it, so `http://user:pw@h/` and `http://h:80/`
//! are one host and no key carries a password.

use std::fmt;
use ureq::http::Uri;

/// A host as its per-host state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostKey {
    /// `http` or `https` (lowercase).
    pub(crate) scheme: String,
    /// The host name (lowercase) or IP address (an IPv6 one in brackets).
    pub(crate) host: String,
    /// The port, the scheme's default when the URL has none.
    pub(crate) port: u16,
}

impl HostKey {
    /// The key of a checked URL; `None` without a scheme, a host, or a
    /// port (given or known from the scheme).
    pub(crate) fn of_uri(uri: &Uri) -> Option<HostKey> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let host = uri.host().filter(|h| !h.is_empty())?.to_ascii_lowercase();
        let port = match uri.port_u16() {
            Some(p) => p,
            None => match scheme.as_str() {
                "http" => 80,
                "https" => 443,
                _ => return None,
            },
        };
        Some(HostKey { scheme, host, port })
    }

    /// The key of `url`, if it parses as an absolute http(s) URL.
    // Only spans and the Redis outbox start from a URL's text.
    #[cfg_attr(not(any(feature = "redis", feature = "tracing")), allow(dead_code))]
    pub(crate) fn of_url(url: &str) -> Option<HostKey> {
        HostKey::of_uri(&url.parse().ok()?)
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
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
    }
}
