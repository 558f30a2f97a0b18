//! Text functions that keep secrets out of messages: a URL as messages
//! show it, the secrets of a URL and of a header value in every form a
//! server may echo them, and replacing them in text. The error type uses
//! them (`error::make`); nothing here knows the error.

/// Headers that are secrets whatever the caller says (and whichever
/// setter set them).
pub(crate) const ALWAYS_SECRET: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Words that make a query key secret: a key is secret if one of its
/// words (see [`key_words`]), or two neighbouring words written together
/// (`session` + `id`), is one of these, or one of these with an `s`
/// (`keys`). `key` is one wherever it stands: a name cannot tell an API
/// key from a sort key, so `sort_key` is secret too.
pub(crate) const SECRET_WORDS: [&str; 32] = [
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pwd",
    "sig",
    "signature",
    "credential",
    "authorization",
    "jwt",
    "otp",
    "ssn",
    "cvv",
    "cvc",
    "apikey",
    "authkey",
    "accesskey",
    "secretkey",
    "privatekey",
    "sessionkey",
    "accesstoken",
    "authtoken",
    "refreshtoken",
    "idtoken",
    "sessiontoken",
    "clientsecret",
    "sessionid",
    "sessid",
    "authcode",
];
/// Keys that are secret as a whole (all their words together), not as a
/// word of a longer key: `code` is OAuth's authorization code, while
/// `zip_code` and `country_code` are plain.
pub(crate) const SECRET_KEYS: [&str; 8] = [
    "pin", "pass", "pw", "nonce", "code", "session", "auth", "sid",
];

/// The words of query key `key` (percent-decoded), lowercased: split at
/// every character that is not a letter or a digit (`_`, `-`, `.`, `[`,
/// …), between a letter and a digit, and at camelCase
/// (`sessionId`: `session`, `id`; `APIKey`: `api`, `key`).
pub(crate) fn key_words(key: &str) -> Vec<String> {
    let key = percent_decode(key);
    let mut words = Vec::new();
    for run in key.split(|c: char| !c.is_alphanumeric()) {
        let chars: Vec<char> = run.chars().collect();
        let mut word = String::new();
        for (i, &c) in chars.iter().enumerate() {
            if let Some(&prev) = i.checked_sub(1).and_then(|p| chars.get(p)) {
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
                let split = (prev.is_lowercase() && c.is_uppercase())
                    || (prev.is_uppercase() && c.is_uppercase() && next_lower)
                    || prev.is_alphabetic() != c.is_alphabetic();
                if split && !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            word.extend(c.to_lowercase());
        }
        if !word.is_empty() {
            words.push(word);
        }
    }
    words
}

/// True if the values of query key `key` are secrets by name: one of its
/// words, or two neighbouring words together, is in [`SECRET_WORDS`]
/// (plural or not), or the whole key is one of [`SECRET_KEYS`]. Matched
/// by word, never inside one: `author`, `keyword`, `design`, `zip_code`,
/// `session_count` are plain; `api_key`, `access_token`, `X-Signature`,
/// `sessionId` are secret.
pub(crate) fn secret_key(key: &str) -> bool {
    // Most keys hold no listed word even as letters (`page`, `q`, `id`):
    // they are plain without being split. (A word, two words together, a
    // plural, the whole key: each is a substring of the key's letters and
    // digits, lowercased.)
    let letters: String = percent_decode(key)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if !SECRET_WORDS
        .iter()
        .chain(&SECRET_KEYS)
        .any(|w| letters.contains(w))
    {
        return false;
    }
    let words = key_words(key);
    let listed = |w: &str| {
        SECRET_WORDS.contains(&w)
            || w.strip_suffix('s')
                .is_some_and(|s| SECRET_WORDS.contains(&s))
    };
    words.iter().any(|w| listed(w))
        || words
            .windows(2)
            .any(|p| listed(&format!("{}{}", p[0], p[1])))
        || SECRET_KEYS.contains(&words.concat().as_str())
}

/// A URL as messages show it: no credentials, no fragment, the values of
/// secret-looking query keys (see [`secret_key`]) as `***`, the other
/// values as they are (so a failed item of a batch can be told apart),
/// control characters percent-encoded.
///
/// `https://user:pw@host/p?token=abc&page=2#f` becomes
/// `https://***@host/p?token=***&page=2`. Text that is not a URL (no
/// scheme, `//user:pw@host`, `http//user:pw@host`) gets the same rules as
/// far as they fit: `user:pw@host/x` becomes `***@host/x`.
pub(crate) fn redact_url(url: &str) -> String {
    // A control character (a CR/LF a caller let into a URL) is shown
    // percent-encoded: a message stays one line, and no log line is forged.
    if url.contains(char::is_control) {
        let mut clean = String::with_capacity(url.len() + 8);
        for c in url.chars() {
            if c.is_control() {
                clean.push_str(&format!("%{:02X}", u32::from(c)));
            } else {
                clean.push(c);
            }
        }
        return redact_url(&clean);
    }
    let url = url.split('#').next().unwrap_or("");
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match userinfo_span(base) {
        Some((start, at)) => {
            out.push_str(&base[..start]);
            out.push_str("***");
            out.push_str(&base[at..]);
        }
        None => out.push_str(base),
    }
    if let Some(q) = query {
        out.push('?');
        hide_pairs(&mut out, q, |k, _| secret_key(k));
    }
    out
}

/// `url` with the value of every query pair that `hide(key, value)` picks
/// shown as `***`; the rest of the URL as it is.
pub(crate) fn hide_query_values(url: &str, hide: impl Fn(&str, &str) -> bool) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(base);
    out.push('?');
    hide_pairs(&mut out, query, hide);
    out
}

/// Appends `query` to `out`, each value that `hide` picks as `***`.
fn hide_pairs(out: &mut String, query: &str, hide: impl Fn(&str, &str) -> bool) {
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, v)) if hide(k, v) => {
                out.push_str(k);
                out.push_str("=***");
            }
            _ => out.push_str(pair),
        }
    }
}

/// True if query key `key` (as it appears in a URL) is one of `marked`, in
/// any case.
pub(crate) fn marked_key(key: &str, marked: &[String]) -> bool {
    let k = percent_decode(key);
    marked.iter().any(|m| m.eq_ignore_ascii_case(&k))
}

/// Where the userinfo of `base` (a URL without query and fragment) starts
/// and where its `@` is, if it has one. In a URL, the last `@` of the
/// authority (after the first `//`, up to the next `/` or `\\`), as the
/// `url` crate and ureq read it, so an `@` later in the path
/// (`//u:pw@h/a@b`) does not hide the password; in other text, the last `@`
/// after the last `//` before it (or the start), with no `/` in between.
fn userinfo_span(base: &str) -> Option<(usize, usize)> {
    if !base.contains('@') {
        return None;
    }
    if let Some(i) = base.find("//") {
        let start = i + 2;
        let end = base[start..]
            .find(['/', '\\'])
            .map_or(base.len(), |e| start + e);
        if let Some(at) = base[start..end].rfind('@') {
            return Some((start, start + at));
        }
    }
    let at = base.rfind('@')?;
    let start = base[..at].rfind("//").map_or(0, |i| i + 2);
    (!base[start..at].contains('/')).then_some((start, at))
}

/// The secrets of a URL: the password of its userinfo (the user name when
/// there is no password: an API key given as the user), the Basic
/// credentials ureq derives from it, and the values of query keys that
/// are secret by name, that `secret_keys` marks, or all of them with
/// `all_query`.
pub(crate) fn url_secrets(url: &str, secret_keys: &[String], all_query: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !url.contains('@') && !url.contains('?') {
        return out; // no user info, no query: the common URL
    }
    let base = url.split(['?', '#']).next().unwrap_or("");
    if let Some((start, at)) = userinfo_span(base) {
        let userinfo = &base[start..at];
        let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let secret = if pass.is_empty() { user } else { pass };
        out.push(secret.to_string());
        out.push(percent_decode(secret));
        out.push(userinfo_decode(secret));
        // The Basic credentials, in both forms a client makes of them:
        // `user:password` as written in the URL (ureq sends that, the
        // percent escapes kept), and percent-decoded byte for byte (`+`
        // is a plus here, and the bytes need not be UTF-8).
        let plain = format!("{user}:{pass}");
        let mut decoded = userinfo_bytes(user);
        decoded.push(b':');
        decoded.extend(userinfo_bytes(pass));
        out.push(base64_encode(plain.as_bytes()));
        out.push(base64_encode(&decoded));
        out.push(String::from_utf8_lossy(&decoded).into_owned());
        if !pass.is_empty() {
            out.push(userinfo.to_string());
        }
    }
    if let Some((_, q)) = url.split_once('?') {
        let q = q.split('#').next().unwrap_or("");
        for pair in q.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                if all_query || marked_key(k, secret_keys) || secret_key(k) {
                    out.push(v.to_string());
                    out.push(percent_decode(v));
                }
            }
        }
    }
    out
}

/// The secrets of a secret header's value: the whole value; for a scheme
/// such as `Bearer <token>`, the token; for `Basic`, the credentials it
/// encodes and their password.
pub(crate) fn header_secrets(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    if let Some((scheme, token)) = value.split_once(' ') {
        let token = token.trim();
        out.push(token.to_string());
        if scheme.eq_ignore_ascii_case("basic")
            && let Some(plain) = base64_decode(token)
        {
            if let Some((_, pass)) = plain.split_once(':') {
                out.push(pass.to_string());
            }
            out.push(plain);
        }
    }
    out
}

/// Every form in which a secret may come back from a server: as given,
/// percent-encoded, percent-decoded, and escaped in JSON. Empty ones are
/// dropped; the longest come first, so a secret that contains another is
/// replaced whole.
pub(crate) fn secret_forms(secrets: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in secrets {
        if s.is_empty() {
            continue;
        }
        let mut encoded = String::new();
        encode_into(&mut encoded, &s);
        let json = serde_json::to_string(&s).unwrap_or_default();
        let json = json
            .strip_prefix('"')
            .and_then(|j| j.strip_suffix('"'))
            .unwrap_or("")
            .to_string();
        // As Python's `json.dumps` writes it: non-ASCII as `\uXXXX`.
        let mut ascii = String::with_capacity(json.len());
        for c in json.chars() {
            if c.is_ascii() {
                ascii.push(c);
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    ascii.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
        let decoded = percent_decode(&s);
        for form in [s, encoded, json, ascii, decoded] {
            if !form.is_empty() && !out.contains(&form) {
                out.push(form);
            }
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// Replaces every secret of `secrets` that appears in `text` with `***`,
/// whatever its length: the caller said it is a secret.
pub(crate) fn scrub_with(text: &str, secrets: &[String]) -> String {
    let mut out: Option<String> = None;
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let cur = out.as_deref().unwrap_or(text);
        if cur.contains(s.as_str()) {
            out = Some(cur.replace(s.as_str(), "***"));
        }
    }
    out.unwrap_or_else(|| text.to_string())
}

/// [`scrub_with`] for bytes that may not be text (a reply body): text is
/// scrubbed as text; other bytes have each secret's bytes replaced.
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub(crate) fn scrub_bytes(bytes: &[u8], secrets: &[String]) -> Vec<u8> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return scrub_with(text, secrets).into_bytes();
    }
    let mut out = bytes.to_vec();
    for s in secrets
        .iter()
        .map(String::as_bytes)
        .filter(|s| !s.is_empty())
    {
        let mut next = Vec::with_capacity(out.len());
        let mut rest = out.as_slice();
        while let Some(at) = rest.windows(s.len()).position(|w| w == s) {
            next.extend_from_slice(&rest[..at]);
            next.extend_from_slice(b"***");
            rest = &rest[at + s.len()..];
        }
        next.extend_from_slice(rest);
        out = next;
    }
    out
}

/// Replaces every secret part of `url` that appears in `text` (ureq's
/// own messages, which may quote the URL).
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let out = text.replace(url, &redact_url(url));
    scrub_with(&out, &secret_forms(url_secrets(url, &[], false)))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Percent-encodes `s` for a query or a form: everything but RFC 3986's
/// unreserved characters (`A-Z a-z 0-9 - _ . ~`).
pub(crate) fn encode_into(out: &mut String, s: &str) {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const QUERY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    out.extend(utf8_percent_encode(s, QUERY));
}

/// The bytes of a URL's user name or password: percent-decoded, `+` kept.
fn userinfo_bytes(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

/// A URL's user name or password percent-decoded (`+` kept), as text.
fn userinfo_decode(s: &str) -> String {
    String::from_utf8_lossy(&userinfo_bytes(s)).into_owned()
}

/// Percent-decodes `s` as a query or form value (`+` is a space); broken
/// escapes are left as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_query_and_fragment() {
        assert_eq!(
            redact_url("https://user:pw@host:8/p/q?token=abc&x=1&flag#frag"),
            "https://***@host:8/p/q?token=***&x=1&flag"
        );
        assert_eq!(redact_url("http://127.0.0.1:80/a"), "http://127.0.0.1:80/a");
        assert_eq!(redact_url("not a url?k=v"), "not a url?k=v");
        assert_eq!(redact_url("not a url?api_key=v"), "not a url?api_key=***");
        assert_eq!(
            redact_url("//alice:pw@host/x?pin=42"),
            "//***@host/x?pin=***"
        );
        assert_eq!(redact_url("http//alice:pw@host/x"), "http//***@host/x");
        assert_eq!(
            redact_url("https://h/users/bob@example.com"),
            "https://h/users/bob@example.com"
        );
        assert_eq!(redact_url("user:hunter2@host/x"), "***@host/x");
        // The userinfo ends at the authority's last `@`, whatever the path.
        assert_eq!(
            redact_url("http://bob:pw@h/next@x?a@b"),
            "http://***@h/next@x?a@b"
        );
    }

    #[test]
    fn scrub_removes_secrets_from_foreign_text() {
        let url = "http://alice:hunter2@h/p?key=s3cret&token2=a%20b%2Fc&page=2";
        let text = format!("failed {url} and hunter2 and s3cret and a b/c, user alice, page 2");
        let out = scrub(&text, url);
        // A user name with a password, and an ordinary value, are not
        // secrets: the text keeps them.
        assert!(out.contains("user alice, page 2"), "{out}");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("s3cret"), "{out}");
        assert!(!out.contains("a b/c"), "{out}");
        let out = scrub_with("auth was Bearer tok-123", &header_secrets("Bearer tok-123"));
        assert_eq!(out, "auth was ***");
    }

    #[test]
    fn secrets_of_any_length_are_scrubbed_in_every_form() {
        for len in [1usize, 2, 4096] {
            let secret: String = (0..len)
                .map(|i| char::from(b'!' + (i * 7 % 90) as u8))
                .collect();
            let secrets = crate::error::Secrets::new(secret_forms(vec![secret.clone()]));
            let mut enc = String::new();
            encode_into(&mut enc, &secret);
            let json = serde_json::to_string(&secret).unwrap();
            let text = format!("raw[{secret}] enc[{enc}] json{json}");
            let out = secrets.scrub(&text);
            assert_eq!(out, "raw[***] enc[***] json\"***\"", "{len}");
        }
    }

    #[test]
    fn query_keys_are_secret_by_whole_word() {
        assert_eq!(key_words("sessionId"), ["session", "id"]);
        assert_eq!(key_words("X-APIKey.v2"), ["x", "api", "key", "v", "2"]);
        assert_eq!(key_words("user%5Bapi_key%5D"), ["user", "api", "key"]);
        for k in [
            "api_key",
            "apiKey",
            "APIKEY",
            "x-api-key",
            "key",
            "access_token",
            "X-Signature",
            "sessionId",
            "session_id",
            "SESSIONID",
            "client_secret",
            "password",
            "Passwords",
            "token2",
            "pin",
            "code",
            "auth",
            "sig",
            "X-Amz-Credential",
            "user[api_key]",
            "sort_key",
            "authCode",
        ] {
            assert!(secret_key(k), "{k} is secret");
        }
        for k in [
            "author",
            "keyword",
            "zip_code",
            "design",
            "country_code",
            "session_count",
            "postcode",
            "page",
            "monkey",
            "signal",
            "passenger",
            "pinned",
            "codec",
            "authority",
            "tokenizer",
            "sessions",
            "",
            "_",
            "é",
        ] {
            assert!(!secret_key(k), "{k} is plain");
        }
    }

    #[cfg(any(feature = "sqlite", feature = "redis"))]
    #[test]
    fn bytes_are_scrubbed_as_text_or_as_bytes() {
        let secrets = secret_forms(vec!["tok/1".to_string()]);
        assert_eq!(
            scrub_bytes(b"a tok/1 b tok%2F1", &secrets),
            b"a *** b ***".to_vec()
        );
        assert_eq!(
            scrub_bytes(b"\xff tok/1 \xfe", &secrets),
            b"\xff *** \xfe".to_vec()
        );
    }

    #[test]
    fn percent_decoding_leaves_broken_escapes() {
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a%20b+c"), "a b c");
    }
}
