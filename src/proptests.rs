//! Property tests: for generated URLs, query strings, header values and
//! server bodies that carry secrets, no secret appears in any `Display`,
//! `Debug` or `{:#?}` of an error; URL checking, joining of redirect
//! locations, `Retry-After` parsing and header validation never panic.
//! 10,000 cases a property, 2,500 for the redaction one (`PROPTEST_CASES`
//! overrides).

use crate::error::{Error, Secrets, TransportKind};
use crate::prepare::{QuerySecrets, Raw, Spec};
use crate::redact::{redact_url, secret_forms, url_secrets};
use crate::retry::parse_retry_after;
use crate::urls::{join_url, parse_url};
use proptest::prelude::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn config() -> ProptestConfig {
    config_with(10_000)
}

/// `cases` unless `PROPTEST_CASES` says otherwise.
fn config_with(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A secret: either ASCII with a recognisable prefix and characters that
/// need percent-encoding, or 1 to 40 CJK characters (up to 120 bytes of
/// UTF-8: nothing of reqpool's own words can contain one, so even a
/// one-character secret can be looked for).
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9 /&=+%._~\"\\-]{1,64}".prop_map(|s| format!("Zq{s}")),
        "[\u{4e00}-\u{9fff}]{1,40}",
    ]
}

fn encoded(s: &str) -> String {
    let mut out = String::new();
    crate::redact::encode_into(&mut out, s);
    out
}

/// JSON as Python's `json.dumps` writes it: non-ASCII as `\uXXXX`.
fn json_ascii(s: &str) -> String {
    let mut out = String::new();
    for c in serde_json::to_string(s).unwrap().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every way the secrets of a request can reach an error, with the server
/// echoing `echo` in its body, a JSON body and its headers.
fn errors(url: &str, echo: &str, secrets: &Secrets) -> Vec<Error> {
    let transport = Error::Transport {
        kind: TransportKind::Other,
        method: "GET".into(),
        url: redact_url(url),
        message: format!("server closed: {echo}"),
    };
    let mut headers = ureq::http::HeaderMap::new();
    if let Ok(v) = ureq::http::HeaderValue::from_str(&echo.replace(['\r', '\n'], " ")) {
        headers.insert("x-echo", v);
    }
    vec![
        Error::status_error(401, "GET", url, echo.as_bytes())
            .with_headers(&headers)
            .scrubbed(secrets),
        Error::status_error(
            422,
            "POST",
            url,
            format!("{{\"detail\":{}}}", serde_json::to_string(echo).unwrap()).as_bytes(),
        )
        .scrubbed(secrets),
        Error::decode(
            "GET",
            url,
            format!("expected value: {echo}"),
            echo.as_bytes(),
        )
        .scrubbed(secrets),
        transport.scrubbed(secrets),
        Error::invalid(url, "not a valid url").scrubbed(secrets),
        Error::timeout(crate::error::Phase::Deadline, "GET", url).scrubbed(secrets),
        Error::GaveUp {
            attempts: vec![Error::status_error(503, "GET", url, echo.as_bytes())],
            reason: crate::error::GaveUpReason::AttemptsExhausted,
        }
        .scrubbed(secrets),
    ]
}

proptest! {
    // Each case formats seven errors three ways over a body of a few
    // hundred bytes: 2,500 cases keep `cargo test` under a minute.
    #![proptest_config(config_with(2_500))]

    /// A caller's secrets — URL password, the Basic credentials made of
    /// it, a secret-by-name query value, a marked query value, a secret
    /// header — echoed by a server raw, percent-encoded, base64'd and
    /// JSON-escaped (both ways), appear in no `Display`, `Debug` or
    /// `{:#?}`, in any form; and the server's own words are kept.
    #[test]
    fn no_secret_in_any_output(
        user in "[a-z]{3,8}",
        pw in secret(),
        key in secret(),
        marked in secret(),
        header in secret(),
        noise in "[a-z ]{0,40}",
    ) {
        let url = format!(
            "http://{user}:{}@h.example:8/p?api_key={}&account={}&x=1",
            encoded(&pw),
            encoded(&key),
            encoded(&marked)
        );
        let header_ok = ureq::http::HeaderValue::from_str(&header).is_ok();
        let headers = if header_ok {
            vec![("X-Api-Key".to_string(), header.clone())]
        } else {
            Vec::new()
        };
        let spec = Spec::new(Raw {
            method: "get",
            url: url.clone(),
            headers: &headers,
            query: &[],
            body: None,
            content_type: None,
            follow: false,
            secret: vec!["x-api-key".to_string()],
        });
        let query = QuerySecrets::default().with(&["ACCOUNT".to_string()]);
        let mut raw = url_secrets(&url, &query.keys, false);
        if let Ok(spec) = &spec {
            raw.extend(spec.secrets(&query));
        }
        raw.extend(crate::redact::header_secrets(&header));
        let secrets = Secrets::new(secret_forms(raw));
        let basic = b64(&format!("{user}:{pw}"));
        let mut echo = format!("{noise} basic {basic} url {url}");
        for s in [&pw, &key, &marked, &header] {
            echo.push_str(&format!(
                " raw {s} enc {} json {} ascii {}",
                encoded(s),
                serde_json::to_string(s).unwrap(),
                json_ascii(s)
            ));
        }
        for e in errors(&url, &echo, &secrets) {
            let shown = format!("{e} | {e:?} | {e:#?}");
            for s in [&pw, &key, &marked, &header] {
                for form in [s.clone(), encoded(s), json_ascii(s)] {
                    prop_assert!(!shown.contains(form.as_str()), "{form:?} in {shown}");
                }
            }
            prop_assert!(!shown.contains(&basic), "{basic} in {shown}");
            // The server's words are the server's: kept as sent.
            if let Some(body) = e.body_text() {
                prop_assert!(body.contains(&noise));
                prop_assert!(body.contains(&basic) || body.contains("detail"));
            }
        }
    }

}

/// Plain words: none is a secret word, and no two of them written
/// together make one.
const PLAIN_WORDS: [&str; 20] = [
    "author",
    "keyword",
    "zip",
    "code",
    "country",
    "design",
    "sort",
    "page",
    "limit",
    "count",
    "session",
    "post",
    "user",
    "name",
    "order",
    "filter",
    "monkey",
    "signal",
    "passenger",
    "tokenizer",
];

/// `words` written as a query key in one of the usual styles: snake,
/// kebab, dotted, camelCase, PascalCase, SCREAMING_SNAKE, Train-Case.
fn styled(words: &[String], style: usize) -> String {
    let cap = |w: &str| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
            .unwrap_or_default()
    };
    match style % 7 {
        0 => words.join("_"),
        1 => words.join("-"),
        2 => words.join("."),
        3 => words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w.clone() } else { cap(w) })
            .collect(),
        4 => words.iter().map(|w| cap(w)).collect(),
        5 => words.join("_").to_ascii_uppercase(),
        _ => words.iter().map(|w| cap(w)).collect::<Vec<_>>().join("-"),
    }
}

proptest! {
    #![proptest_config(config())]

    /// A key is secret by whole words: plain words in any style stay
    /// plain, whatever they contain (`author`, `keyword`); one secret
    /// word among them, anywhere, in any style, makes the key secret;
    /// and the style never changes the answer.
    #[test]
    fn query_keys_are_secret_by_whole_word_in_any_style(
        plain in prop::collection::vec(prop::sample::select(PLAIN_WORDS.to_vec()), 2..5),
        secret in prop::sample::select(crate::redact::SECRET_WORDS.to_vec()),
        at in 0usize..5,
        style in 0usize..7,
        other in 0usize..7,
    ) {
        use crate::redact::secret_key;
        let plain: Vec<String> = plain.into_iter().map(String::from).collect();
        let key = styled(&plain, style);
        prop_assert!(!secret_key(&key), "{key} is plain");
        let mut with = plain.clone();
        with.insert(at.min(plain.len()), secret.to_string());
        let key = styled(&with, style);
        prop_assert!(secret_key(&key), "{key} is secret");
        prop_assert_eq!(secret_key(&key), secret_key(&styled(&with, other)));
    }

    /// Any key: no panic, and the same answer percent-encoded.
    #[test]
    fn query_key_rule_never_panics(key in "[^%+]{0,30}") {
        prop_assert_eq!(crate::redact::secret_key(&key), crate::redact::secret_key(&encoded(&key)));
    }

    #[test]
    fn url_checks_never_panic(url in ".{0,80}") {
        let _ = parse_url(&url);
        if let Ok(normal) = crate::urls::normalize_url(&url, &[]) {
            prop_assert!(parse_url(&normal).is_ok(), "{normal:?}");
        }
        let shown = redact_url(&url);
        if let Some((_, q)) = url.split_once('?') {
            for pair in q.split('#').next().unwrap_or("").split('&') {
                if let Some((k, v)) = pair.split_once('=')
                    && crate::redact::secret_key(k)
                    && v.len() >= 3 && !v.contains(['&', '?', '*'])
                {
                    let shown_query = shown.split_once('?').map_or("", |(_, q)| q);
                    prop_assert!(!shown_query.contains(&format!("={v}")), "{v:?} in {shown}");
                }
            }
        }
    }

    #[test]
    fn joining_redirect_locations_never_panics(
        base in prop::sample::select(vec!["http://h:1/a/b?x=1", "https://h/", "http://127.0.0.1:8/x"]),
        location in ".{0,80}",
    ) {
        if let Ok(joined) = join_url(base, &location) {
            prop_assert!(parse_url(&joined).is_ok(), "{joined:?}");
        }
    }

    #[test]
    fn retry_after_parsing_never_panics(value in ".{0,40}", now in 0u64..4_000_000_000) {
        let now = UNIX_EPOCH + Duration::from_secs(now);
        if let Some(d) = parse_retry_after(&value, now) {
            prop_assert!(d <= Duration::from_secs(u64::MAX));
        }
        let _ = parse_retry_after(&format!("Sun, 06 Nov 1994 {value} GMT"), SystemTime::now());
    }

    #[test]
    fn header_validation_never_panics(
        name in ".{0,20}",
        value in ".{0,40}",
        method in ".{0,10}",
        query in ".{0,20}",
    ) {
        let _ = Spec::new(Raw {
            method: &method,
            url: "http://h:1/p".to_string(),
            headers: &[(name, value)],
            query: &[(query.clone(), query)],
            body: None,
            content_type: Some("application/json"),
            follow: false,
            secret: Vec::new(),
        });
    }
}
