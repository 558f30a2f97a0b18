//! How ureq's errors become ours: which transport failure, which phase
//! ran out, which TLS check failed (and what to do about it), with the
//! URL's secrets removed from whatever ureq printed.

use super::{Error, Phase, TransportKind};
use crate::redact::{redact_url, scrub};

/// How ureq's errors become ours: which transport failure, which phase ran
/// out, with the URL's secrets removed from whatever ureq printed.
impl Error {
    /// Converts an error of ureq for the request `method url`, removing the
    /// URL's secrets from whatever ureq printed.
    pub(crate) fn from_ureq(err: ureq::Error, method: &str, url: &str) -> Error {
        use ureq::Error as U;
        let method_s = method.to_string();
        let red = redact_url(url);
        let transport = |kind: TransportKind, message: String| {
            let message = if kind == TransportKind::Tls {
                format!("{}: {message}", tls_check(&message))
            } else {
                message
            };
            Error::Transport {
                kind,
                method: method_s.clone(),
                url: red.clone(),
                message: scrub(&message, url),
            }
        };
        match err {
            U::Timeout(t) => Error::Timeout {
                phase: phase_of(t),
                method: method.to_string(),
                url: red,
            },
            U::StatusCode(code) => Error::status_error(code, method, url, b""),
            U::BodyExceedsLimit(limit) => Error::TooLarge {
                method: method.to_string(),
                url: red,
                limit,
                status: None,
            },
            U::HostNotFound => transport(TransportKind::Dns, "host not found".into()),
            U::ConnectionFailed => transport(TransportKind::Refused, "connection failed".into()),
            U::Io(io) => {
                let kind = io_kind(&io);
                transport(kind, io.to_string())
            }
            U::Tls(m) => transport(TransportKind::Tls, m.to_string()),
            U::Rustls(e) => transport(TransportKind::Tls, e.to_string()),
            U::TlsRequired => transport(TransportKind::Tls, "the connection needs tls".into()),
            U::ConnectProxyFailed(m) => transport(TransportKind::Proxy, m),
            U::InvalidProxyUrl => Error::InvalidRequest {
                url: red,
                reason: "invalid proxy url".into(),
            },
            U::RequireHttpsOnly(m) => Error::InvalidRequest {
                url: red,
                reason: scrub(&format!("the agent allows https only: {m}"), url),
            },
            U::Protocol(p) => transport(TransportKind::Protocol, p.to_string()),
            // The same bytes fail the same way again: not worth a retry.
            U::LargeResponseHeader(size, max) => transport(
                TransportKind::Protocol,
                format!("response header of {size} bytes is larger than the {max} allowed"),
            ),
            U::Decompress(encoding, e) => transport(
                TransportKind::Protocol,
                format!("the {encoding} body does not decompress: {e}"),
            ),
            U::BadUri(m) => Error::InvalidRequest {
                url: red,
                reason: scrub(&format!("bad uri: {m}"), url),
            },
            U::Http(e) => Error::InvalidRequest {
                url: red,
                reason: scrub(&e.to_string(), url),
            },
            U::Json(e) => Error::Decode {
                method: method_s,
                url: red,
                message: e.to_string(),
                snippet: String::new(),
            },
            U::TooManyRedirects | U::RedirectFailed => Error::Redirect {
                code: 0,
                method: method_s,
                url: red,
                location: String::new(),
            },
            other => {
                let text = other.to_string();
                let kind = if looks_like_tls(&text) {
                    TransportKind::Tls
                } else {
                    TransportKind::Other
                };
                transport(kind, text)
            }
        }
    }
}

fn phase_of(t: ureq::Timeout) -> Phase {
    use ureq::Timeout as T;
    match t {
        T::Resolve => Phase::Resolve,
        T::Connect => Phase::Connect,
        T::SendRequest => Phase::SendRequest,
        T::SendBody | T::PerWrite => Phase::SendBody,
        T::RecvResponse => Phase::Response,
        T::RecvBody | T::PerRead => Phase::Body,
        _ => Phase::Deadline,
    }
}

fn io_kind(io: &std::io::Error) -> TransportKind {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused => TransportKind::Refused,
        K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe => {
            TransportKind::Reset
        }
        K::NotFound => TransportKind::Dns,
        _ => {
            // ureq reports a failed lookup as a bare io error.
            let text = io.to_string();
            if text.contains("failed to lookup address") || text.contains("Name or service") {
                TransportKind::Dns
            } else if looks_like_tls(&text) {
                TransportKind::Tls
            } else if text.contains("closed") || text.contains("EOF") || text.contains("reset") {
                TransportKind::Reset
            } else {
                TransportKind::Other
            }
        }
    }
}

/// rustls errors reach us inside I/O errors; their messages tell them apart.
/// Which check of a TLS connection failed, from what rustls (or the
/// platform's library) said.
fn tls_check(text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    if t.contains("causedasendentity") {
        "certificate not trusted: the server's certificate is a CA certificate used as \
         its own, as `openssl req -x509` makes by default; sign the server's certificate \
         with that CA instead (mkcert, or openssl with basicConstraints=CA:FALSE), or \
         use Builder::tls_native(true) (feature native-tls), which accepts it as curl does"
    } else if t.contains("unknownissuer")
        || t.contains("unknown issuer")
        || t.contains("unable to get local issuer")
        || t.contains("self-signed")
        || t.contains("self signed")
    {
        "certificate not trusted (unknown issuer): add the CA that signed it with \
         Builder::tls_root_certs_pem"
    } else if t.contains("badsignature") || t.contains("bad signature") {
        "certificate not trusted (bad signature)"
    } else if t.contains("expired") || t.contains("notvalidyet") {
        "certificate expired or not yet valid: check the server's certificate dates \
         and this machine's clock"
    } else if t.contains("notvalidforname")
        || t.contains("hostname mismatch")
        || t.contains("not valid for name")
    {
        "certificate is for another name"
    } else if t.contains("revoked") {
        "certificate revoked"
    } else if t.contains("corrupt message")
        || t.contains("invalidcontenttype")
        || t.contains("wrong version number")
        || t.contains("invalid content type")
    {
        "the server does not speak tls"
    } else if t.contains("certificate") {
        "certificate rejected"
    } else {
        "tls handshake failed"
    }
}

fn looks_like_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "tls",
        "certificate",
        "handshake",
        "corrupt message",
        "fatal alert",
        "peer is incompatible",
        "peer misbehaved",
    ]
    .iter()
    .any(|m| t.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_ureq_errors() {
        let url = "http://u:pw12345@h.invalid/p?key=secretv";
        let dns = Error::from_ureq(
            ureq::Error::Io(std::io::Error::other(
                "failed to lookup address information: Name or service not known",
            )),
            "GET",
            url,
        );
        assert_eq!(dns.transport_kind(), Some(TransportKind::Dns));
        assert!(dns.is_connect() && !dns.maybe_sent());
        assert_eq!(
            Error::from_ureq(ureq::Error::HostNotFound, "GET", url).transport_kind(),
            Some(TransportKind::Dns)
        );
        let reset = Error::from_ureq(
            ureq::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
            "POST",
            url,
        );
        assert_eq!(reset.transport_kind(), Some(TransportKind::Reset));
        assert!(reset.maybe_sent());
        let bad = Error::from_ureq(ureq::Error::BadUri(url.to_string()), "GET", url);
        let shown = format!("{bad} {bad:?}");
        assert!(
            !shown.contains("pw12345") && !shown.contains("secretv"),
            "{shown}"
        );
        let t = Error::from_ureq(ureq::Error::Timeout(ureq::Timeout::Connect), "POST", url);
        assert!(t.is_connect() && !t.maybe_sent());
    }
}
