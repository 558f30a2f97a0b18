//! What errors tell a user: the right kind and words on every way in, and
//! secrets left out of everything shown while the server's words stay as
//! they came. (A dev certificate's refusal is in `benches/tests/tls.rs`.)

mod common;

use common::*;
use reqpool::{Error, Phase, Pool};
use serde_json::{Value, json};
use std::time::Duration;

/// A server that echoes everything it got: headers, query, body.
fn echo_server(status: u16) -> Server {
    Server::with_handler(move |req, _| {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        Reply::json(
            status,
            json!({"path": req.path, "query": req.query, "headers": req.headers, "body": body}),
        )
        .header(
            "X-Echo-Auth",
            req.headers.get("authorization").map_or("", String::as_str),
        )
    })
}

#[test]
fn a_closures_request_cut_off_by_its_limit_is_a_timeout() {
    let silent = FaultServer::start(Fault::Silent);
    let pool = Pool::builder()
        .workers(2)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    // A secret in the query: the URL named is redacted.
    let url = silent.url("/x?token=SEKRET");
    // With `?` (From<ureq::Error>) and with `map_err(Error::other)`.
    let (u1, u2) = (url.clone(), url.clone());
    let with_q = pool.submit(move |agent| Ok(agent.get(&u1).call().map(drop)?));
    let with_other =
        pool.submit(move |agent| agent.get(&u2).call().map(drop).map_err(Error::other));
    let u3 = url.clone();
    let mut party = pool
        .burst(
            1,
            LIMIT,
            |_| Ok(()),
            move |agent, ()| agent.get(&u3).call().map(drop).map_err(Error::other),
        )
        .unwrap();
    for (what, p) in [
        ("?", with_q),
        ("Error::other", with_other),
        ("burst", party.remove(0)),
    ] {
        let e = bounded(LIMIT, move || p.wait()).unwrap_err();
        assert!(e.is_timeout(), "{what}: {e:?}");
        assert_ne!(e.timeout_phase(), Some(Phase::Queued), "{what}");
        // It names the request it was reading, as the request builder's do.
        let shown = format!("{e} | {e:?}");
        assert!(
            e.to_string().contains("(GET http://127.0.0.1:"),
            "{what}: {e}"
        );
        assert!(
            shown.contains("/x?token=***") && !shown.contains("SEKRET"),
            "{what}: {shown}"
        );
    }
    // A refused connection is a connect failure, not "other".
    let refused = closed_port_url("/x");
    let e = pool
        .submit(move |agent| Ok(agent.get(&refused).call().map(drop)?))
        .wait()
        .unwrap_err();
    assert!(e.is_connect() && !e.maybe_sent(), "{e:?}");
}

#[test]
fn first_success_and_fallback_list_errors_in_submission_order() {
    let pool = Pool::new(3);
    let slow = pool.submit(|_| -> Result<u32, Error> {
        std::thread::sleep(Duration::from_millis(50));
        Err(Error::other("slow one failed"))
    });
    let fast = pool.submit(|_| -> Result<u32, Error> { Err(Error::other("fast one failed")) });
    let all = reqpool::first_success(vec![slow, fast]).unwrap_err();
    let order: Vec<usize> = all.errors.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, [0, 1]);
    assert_eq!(
        all.to_string(),
        "all 2 handles failed: #0: slow one failed; #1: fast one failed"
    );
    // "Nothing there" has a name of its own.
    let tiers: Vec<Box<dyn FnOnce() -> reqpool::Pending<u32>>> = vec![
        Box::new(|| pool.submit(|_| Err(Error::no_match("no store in the district")))),
        Box::new(|| pool.submit(|_| Err(Error::no_match("no store in the province")))),
    ];
    let all = reqpool::fallback(tiers).unwrap_err();
    assert!(all.errors.iter().all(|(_, e)| e.is_no_match()));
    assert!(
        all.to_string()
            .contains("#1: no match: no store in the province"),
        "{all}"
    );
}

#[test]
fn secrets_are_left_out_of_everything_shown_and_nothing_else_is() {
    let server = echo_server(401);
    let pool = Pool::builder()
        .workers(2)
        .secret_query_keys(&["account"])
        .build()
        .unwrap();
    // A user name like `api` is no secret; its password is, and so is the
    // Basic header ureq makes of them.
    let url = server.url("/orders").replace("http://", "http://api:pa55@");
    let e = pool
        .get(&url)
        .query("pin", 90817)
        .query("phone", "5551234")
        .query("account", "acme-7")
        .secret_query("customer", "cust-99")
        .secret_header("X-Key", "k")
        .send()
        .wait()
        .unwrap_err();
    let shown = format!("{e} | {e:?} | {e:#?}");
    for secret in [
        "pa55",
        "YXBpOnBhNTU=",
        "90817",
        "acme-7",
        "cust-99",
        "\"k\"",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // The failed item can be told apart: other query values are shown.
    assert!(
        e.to_string().contains("phone=5551234"),
        "{}",
        e.url().unwrap()
    );
    assert!(e.url().unwrap().contains("pin=***"), "{}", e.url().unwrap());
    // The server's words are the server's: untouched, `api` included.
    let body = e.body_json().unwrap();
    assert_eq!(body["headers"]["authorization"], "Basic YXBpOnBhNTU=");
    assert_eq!(body["query"]["pin"], "90817");
    assert!(e.body_text().unwrap().contains("user-agent"));
    assert_eq!(e.header("x-echo-auth"), Some("Basic YXBpOnBhNTU="));
    // Every value hidden, on request.
    let strict = Pool::builder()
        .workers(1)
        .redact_all_query_values(true)
        .build()
        .unwrap();
    let e = strict
        .get(&server.url("/orders"))
        .query("phone", "5551234")
        .send()
        .wait()
        .unwrap_err();
    assert!(!format!("{e} {e:?}").contains("5551234"), "{e:?}");
}

#[test]
fn a_url_that_does_not_parse_shows_neither_its_password_nor_a_second_line() {
    let pool = Pool::new(1);
    for url in [
        "//alice:pw-7@host/x",
        "http//alice:pw-7@host/x",
        "alice:pw-7@host/x",
        "http://alice:pw-7@127.0.0.1:99999/x",
        "http://h/x\r\nX-Forged: 1",
    ] {
        let e = pool.get(url).send().wait().unwrap_err();
        let shown = format!("{e} | {e:?}");
        assert!(!shown.contains("pw-7"), "{shown}");
        assert!(!e.to_string().contains(['\r', '\n']), "{e}");
    }
}

#[test]
fn secrets_never_show() {
    let url = format!("{}?token=s3cr3tvalue&page=2", closed_port_url("/p"))
        .replace("http://", "http://alice:hunter2@");
    let pool = Pool::new(1);
    let err = bounded(LIMIT, {
        let url = url.clone();
        move || pool.get_json::<serde_json::Value>(&url).wait()
    })
    .unwrap_err();
    for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("alice"), "{shown}");
        assert!(!shown.contains("s3cr3tvalue"), "{shown}");
        assert!(shown.contains("token=***"), "{shown}");
    }
    // Invalid requests are redacted too.
    let pool = Pool::new(1);
    let err = pool
        .get("http://bob:pw123456@127.0.0.1:1/?key=abcdef")
        .header("bad header", "x")
        .send()
        .wait()
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("pw123456") && !shown.contains("abcdef"),
        "{shown}"
    );
}

#[test]
fn secrets_are_absent_from_every_error_form() {
    let url_secrets = ["hunter2", "s3cretval", "alice"];
    let check = |err: &Error| {
        for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
            for s in url_secrets.iter().chain(&["t0ken-abc", "k3y-xyz"]) {
                assert!(!shown.contains(s), "{s} in {shown}");
            }
        }
    };
    let with_secrets = |base: String| {
        format!("{base}?api_key=s3cretval").replace("http://", "http://alice:hunter2@")
    };
    let server = Server::start();
    let silent = FaultServer::start(Fault::Silent);
    let pool = Pool::builder()
        .timeout(Duration::from_millis(300))
        .retry(fast_retry())
        .build()
        .unwrap();
    let targets = [
        with_secrets(server.url("/status")),         // status error
        with_secrets(server.url("/text")),           // decode error
        with_secrets(common::closed_port_url("/x")), // refused, retried
        with_secrets(silent.url("/x")),              // timeout
        with_secrets("http://[::1".to_string()),     // invalid url
    ];
    for url in targets {
        let err = bounded(LIMIT, {
            let pool = pool.clone();
            move || {
                pool.get(&url)
                    .bearer_auth("t0ken-abc")
                    .secret_header("X-Api-Key", "k3y-xyz")
                    .json::<serde_json::Value>()
                    .wait()
            }
        })
        .unwrap_err();
        check(&err);
    }
}

#[test]
fn no_secret_in_any_output_even_when_the_server_echoes_it() {
    // The server puts everything it got into its error body.
    let server = Server::with_handler(|req, _| {
        let all = format!("{req:?}");
        let code = if req.path == "/ok" { 200 } else { 401 };
        Reply::text(code, "text/plain", &format!("invalid api_key: {all}"))
    });
    let secrets = [
        "sk-QUERY-123",
        "hdr-SECRET-456",
        "tok-BEARER-789",
        "pw-USER-000",
    ];
    let pool = Pool::builder()
        .retry(
            reqpool::Retry::standard()
                .statuses(&[401])
                .backoff(Duration::from_millis(1), Duration::from_millis(2)),
        )
        .build()
        .unwrap();
    let base = server.url("/");
    let with_user = base.replace("http://", "http://alice:pw-USER-000@");
    for path in ["fail", "ok"] {
        let req = pool
            .get(&format!("{with_user}{path}"))
            .query("api_key", "sk-QUERY-123")
            .secret_header("X-Api-Key", "hdr-SECRET-456")
            .bearer_auth("tok-BEARER-789");
        let err = bounded(LIMIT, move || req.json::<Value>().wait()).unwrap_err();
        let shown = format!("{err} {err:?} {err:#?}");
        for s in secrets {
            assert!(!shown.contains(s), "{path}: {s} in {shown}");
        }
        // The server's own words are its own: kept as it sent them.
        if let Some(body) = err.body_text() {
            assert!(body.contains("invalid api_key: Req"), "{body}");
            assert!(body.contains("sk-QUERY-123"), "{body}");
        }
    }
    // A URL that does not parse.
    let err = pool
        .get("alice:pw-USER-000@127.0.0.1/x")
        .send()
        .wait()
        .unwrap_err();
    let shown = format!("{err} {err:?} {err:#?}");
    assert!(!shown.contains("pw-USER-000"), "{shown}");
}

/// Every byte but RFC 3986's unreserved ones percent-encoded, as a URL's
/// user name or password must be written.
fn userinfo_encoded(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes a percent-encoded user name or password stands for.
fn userinfo_bytes(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(200),
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// A user name and password over the whole byte range (written
    /// percent-encoded in the URL, so `/`, `#`, `@`, `%` and `:` are in
    /// it): the Basic credentials ureq derives, echoed by a server as it
    /// got them, base64-decoded, percent-decoded and re-encoded the way a
    /// decoding client would, are in no `Display` or `Debug`.
    #[test]
    fn url_credentials_of_any_bytes_never_show(
        user in proptest::collection::vec(proptest::num::u8::ANY, 0..12),
        pass in proptest::collection::vec(proptest::num::u8::ANY, 1..24),
    ) {
        static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
        static POOL: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();
        let server = SERVER.get_or_init(|| Server::with_handler(|req, _| {
            let auth = req.headers.get("authorization").cloned().unwrap_or_default();
            let creds = auth.strip_prefix("Basic ").unwrap_or("");
            let plain = {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(creds).unwrap_or_default()
            };
            let plain = String::from_utf8_lossy(&plain).into_owned();
            let (u, p) = plain.rsplit_once(':').unwrap_or((&plain, ""));
            let mut decoded = userinfo_bytes(u);
            decoded.push(b':');
            decoded.extend(userinfo_bytes(p));
            let body = json!({
                "auth": auth,
                "plain": plain,
                "password": String::from_utf8_lossy(&userinfo_bytes(p)),
                "decoded_basic": b64(&decoded),
            });
            Reply::json(401, body).header("X-Echo-Auth", &auth)
        }));
        let pool = POOL.get_or_init(|| Pool::new(2));
        // A prefix that none of reqpool's own words holds, so a leak is
        // never mistaken for them.
        let mut pass_bytes = b"Zq".to_vec();
        pass_bytes.extend(&pass);
        let (user_enc, pass_enc) = (userinfo_encoded(&user), userinfo_encoded(&pass_bytes));
        let url = format!("http://{user_enc}:{pass_enc}@{}/x", server.addr);
        let err = bounded(LIMIT, {
            let req = pool.get(&url);
            move || req.send().wait()
        })
        .unwrap_err();
        proptest::prop_assert_eq!(err.status(), Some(401), "{}", err);
        let shown = format!("{err} | {err:?} | {err:#?}");
        let mut decoded = user.clone();
        decoded.push(b':');
        decoded.extend(&pass_bytes);
        let forms = [
            pass_enc.clone(),
            b64(format!("{user_enc}:{pass_enc}").as_bytes()),
            format!("{user_enc}:{pass_enc}"),
            b64(&decoded),
        ];
        for form in &forms {
            proptest::prop_assert!(!shown.contains(form.as_str()), "{:?} in {}", form, shown);
        }
        let lossy = String::from_utf8_lossy(&pass_bytes);
        let json = serde_json::to_string(&lossy).unwrap();
        proptest::prop_assert!(!shown.contains(&json[1..json.len() - 1]), "{} in {}", json, shown);
        // The server's words are kept as it sent them.
        let body = err.body_text().unwrap_or_default();
        proptest::prop_assert!(body.contains(&forms[1]), "{}", body);
    }
}
