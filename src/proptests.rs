//! Property tests: for generated URLs, query strings, header values and
//! server bodies that carry secrets, no secret appears in any `Display`,
//! `Debug` or `{:#?}` of an error; URL checking, joining of redirect
//! locations, `Retry-After` parsing and header validation never panic.
//! 10,000 cases a property (`PROPTEST_CASES` overrides).

use crate::error::{Error, TransportKind};
use crate::prepare::{Raw, Spec, join_url, parse_url};
use crate::redact::{redact_url, url_secrets};
use crate::retry::parse_retry_after;
use proptest::prelude::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10_000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A secret: a recognisable prefix and random characters, some of which
/// need percent-encoding in a URL.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 /&=+%._~-]{6,24}".prop_map(|s| format!("Zq{s}"))
}

/// Every way the secrets of a request can reach an error.
fn errors(url: &str, echo: &str, secrets: &[String]) -> Vec<Error> {
    let transport = Error::Transport {
        kind: TransportKind::Other,
        method: "GET".into(),
        url: redact_url(url),
        message: format!("server closed: {echo}"),
    };
    vec![
        Error::status_error(401, "GET", url, echo.as_bytes()).scrubbed(secrets),
        Error::status_error(
            422,
            "POST",
            url,
            format!("{{\"detail\":\"{echo}\"}}").as_bytes(),
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
        Error::invalid(url, "not a valid url"),
        Error::timeout(crate::error::Phase::Deadline, "GET", url),
        Error::GaveUp {
            attempts: vec![Error::status_error(503, "GET", url, echo.as_bytes())],
            reason: crate::error::GaveUpReason::AttemptsExhausted,
        }
        .scrubbed(secrets),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_secret_in_any_output(
        user in "[a-z]{3,8}",
        pw in secret(),
        key in secret(),
        header in secret(),
        noise in ".{0,40}",
    ) {
        let mut q = String::new();
        crate::prepare::encode_into(&mut q, &key);
        let mut p = String::new();
        crate::prepare::encode_into(&mut p, &pw);
        let url = format!("http://{user}:{p}@h.example:8/p?api_key={q}&x=1");
        let spec = Spec::new(Raw {
            method: "get",
            url: url.clone(),
            headers: &[("X-Api-Key".to_string(), header.clone())],
            query: &[],
            body: None,
            content_type: None,
            follow: false,
            secret: vec!["x-api-key".to_string()],
        });
        // Every secret as the server would echo it: raw, encoded, decoded.
        let echo = format!("{noise} user {user}:{pw} key {key} enc {q} pw {p} hdr {header} url {url}");
        let mut secrets = url_secrets(&url);
        if let Ok(spec) = &spec {
            secrets.extend(spec.secrets());
        } else {
            secrets.extend(crate::redact::header_secrets(&header));
        }
        for e in errors(&url, &echo, &secrets) {
            let shown = format!("{e} | {e:?} | {e:#?}");
            for s in [&pw, &key, &header] {
                prop_assert!(!shown.contains(s.as_str()), "{s:?} in {shown}");
            }
        }
    }

    #[test]
    fn url_checks_never_panic(url in ".{0,80}") {
        let _ = parse_url(&url);
        if let Ok(normal) = crate::prepare::normalize_url(&url) {
            prop_assert!(parse_url(&normal).is_ok(), "{normal:?}");
        }
        let shown = redact_url(&url);
        if let Some((_, q)) = url.split_once('?') {
            for pair in q.split('#').next().unwrap_or("").split('&') {
                if let Some((_, v)) = pair.split_once('=')
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
