//! Standard Webhooks (feature `webhooks`): a pool whose `before_attempt`
//! is the signer, against a real receiver that checks every request with
//! the `Verifier`, on every way in, on a retry, and through an outbox.
//! `cargo test --features webhooks,sqlite --test webhooks`.
#![cfg(feature = "webhooks")]

mod common;

use common::*;
use reqpool::webhooks::{Signer, Verifier};
use reqpool::{Error, Pool};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A second secret: the new one of a rotation.
const NEW_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Verified ids and how often each came, and the refusals.
#[derive(Default)]
struct Seen {
    ids: HashMap<String, usize>,
    refused: Vec<String>,
}

/// A receiver that answers 200 to a webhook `verifier` accepts and 401
/// (with why) to any other; `first` answers the first request instead.
fn receiver(verifier: Verifier, first: Option<u16>) -> (Server, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = Arc::clone(&seen);
    let server = Server::with_handler(move |req, _| {
        let h = |k: &str| req.headers.get(k).map(String::as_str).unwrap_or("");
        let verdict = verifier.verify(
            h("webhook-id"),
            h("webhook-timestamp"),
            h("webhook-signature"),
            &req.body,
        );
        let mut seen = s.lock().unwrap();
        match verdict {
            Ok(()) => {
                *seen.ids.entry(h("webhook-id").to_string()).or_default() += 1;
                let verified: usize = seen.ids.values().sum();
                if let (Some(code), 1) = (first, verified) {
                    return Reply::json(code, json!({}));
                }
                Reply::json(200, json!({"ok": true}))
            }
            Err(e) => {
                seen.refused.push(e.to_string());
                Reply::json(401, json!({"detail": e.to_string()}))
            }
        }
    });
    (server, seen)
}

fn signing_pool(signer: Signer) -> (Pool, crossbeam_channel::Receiver<Error>) {
    pool_with(Pool::builder().workers(2).before_attempt(signer.hook()))
}

#[test]
fn every_way_through_the_request_builder_is_signed_and_verifies() {
    let (server, seen) = receiver(Verifier::new(SECRET).unwrap(), None);
    let (pool, errors) = signing_pool(Signer::new(SECRET).unwrap());
    for (n, path) in PATHS.into_iter().enumerate() {
        let id = format!("msg_{n}");
        let call = Call::new("POST", &server.url("/hooks"), true).key(&id);
        let got = bounded(LIMIT, through(&pool, &errors, path, &call));
        // Closures use the agent directly: no hook, and the receiver
        // refuses them (with a 401 their closure may not treat as an
        // error).
        let hooked = !matches!(path, Path::Burst | Path::Submit);
        if hooked {
            got.unwrap_or_else(|e| panic!("{path:?}: {e}"));
        }
        // A detached fire is done once written: wait for the handler.
        let s = Arc::clone(&seen);
        let want = id.clone();
        let verified = bounded(LIMIT, move || {
            loop {
                // Path n is the receiver's request n + 1.
                let s = s.lock().unwrap();
                if s.ids.values().sum::<usize>() + s.refused.len() > n {
                    return s.ids.contains_key(&want);
                }
                drop(s);
                std::thread::yield_now();
            }
        });
        assert_eq!(verified, hooked, "{path:?}");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.ids.len(), 5, "{:?}", seen.ids);
    assert_eq!(seen.refused.len(), 2, "{:?}", seen.refused);
}

#[test]
fn a_request_without_a_key_or_with_a_dotted_one_fails_unsent() {
    let (server, seen) = receiver(Verifier::new(SECRET).unwrap(), None);
    let (pool, _errors) = signing_pool(Signer::new(SECRET).unwrap());
    let url = server.url("/hooks");
    let unkeyed = pool.post(&url).body("{}").send();
    let dotted = pool.post(&url).idempotency_key("a.b").body("{}").send();
    for p in [unkeyed, dotted] {
        let e = bounded(LIMIT, move || p.wait()).unwrap_err();
        assert!(matches!(e, Error::InvalidRequest { .. }), "{e}");
        assert!(e.to_string().contains("Idempotency-Key"), "{e}");
    }
    assert_eq!(
        server
            .shared
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert!(seen.lock().unwrap().ids.is_empty());
}

#[test]
fn a_retry_is_signed_again_under_the_same_id() {
    let (server, seen) = receiver(Verifier::new(SECRET).unwrap(), Some(503));
    let pool = Pool::builder()
        .retry(fast_retry())
        .before_attempt(Signer::new(SECRET).unwrap().hook())
        .build()
        .unwrap();
    let p = pool
        .post(&server.url("/hooks"))
        .idempotency_key("msg_retry")
        .body("{}")
        .send();
    bounded(LIMIT, move || p.wait()).unwrap();
    assert_eq!(seen.lock().unwrap().ids.get("msg_retry"), Some(&2));
}

#[test]
fn during_a_rotation_a_receiver_with_either_secret_accepts() {
    let signer = Signer::new(NEW_SECRET).unwrap().and(SECRET).unwrap();
    for secret in [SECRET, NEW_SECRET] {
        let (server, seen) = receiver(Verifier::new(secret).unwrap(), None);
        let (pool, _errors) = signing_pool(signer.clone());
        let p = pool
            .post(&server.url("/hooks"))
            .idempotency_key("msg_rotated")
            .body("{}")
            .send();
        bounded(LIMIT, move || p.wait()).unwrap();
        assert_eq!(seen.lock().unwrap().ids.len(), 1);
    }
    // A receiver that knows neither refuses it.
    let other = "whsec_".to_string() + &"A".repeat(32);
    let (server, seen) = receiver(Verifier::new(&other).unwrap(), None);
    let (pool, _errors) = signing_pool(signer);
    let p = pool
        .post(&server.url("/hooks"))
        .idempotency_key("msg_rotated")
        .body("{}")
        .send();
    let e = bounded(LIMIT, move || p.wait()).unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert_eq!(
        seen.lock().unwrap().refused,
        ["no webhook-signature matches"]
    );
}

/// Through an outbox, each job's key (its own, or one it generated) is
/// its webhook-id on every delivery, and the signature never reaches the
/// file.
#[cfg(feature = "sqlite")]
#[test]
fn an_outboxs_jobs_are_signed_at_delivery_with_their_key_as_id() {
    let dir = TempDir::new("webhooks");
    let (server, seen) = receiver(Verifier::new(SECRET).unwrap(), None);
    let (pool, _errors) = signing_pool(Signer::new(SECRET).unwrap());
    let db = dir.file("hooks.db");
    let outbox = reqpool::Outbox::open(&db, &pool).unwrap();
    let url = server.url("/hooks");
    for n in 0..20 {
        let req = pool.post(&url).json_body(&json!({"n": n}));
        // Half with the caller's key, half with one the outbox makes.
        let req = if n % 2 == 0 {
            req.idempotency_key(&format!("msg_{n}"))
        } else {
            req
        };
        outbox.enqueue(req).unwrap();
    }
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.ids.len(), 20, "{:?}", seen.refused);
    assert!(seen.refused.is_empty(), "{:?}", seen.refused);
    assert!(seen.ids.contains_key("msg_4"));
    drop(outbox);
    let file = std::fs::read(&db).unwrap();
    let text = String::from_utf8_lossy(&file);
    assert!(
        !text.contains("webhook-signature"),
        "a signature was stored"
    );
}

// ---------------------------------------------------------------------
// Attacks: secrets that are not secrets, a flood of signatures over a
// large body, forged, duplicated, stale and future timestamps, odd
// separators, and a receiver that echoes the signature back.

#[test]
fn secrets_that_are_not_whsec_base64_are_refused_without_being_shown() {
    let cases = [
        "",
        "   ",
        "whsec_",
        "whsec_ ",
        "whsec_!!!!not-base64!!!!not-base64!!!!",
        "whsec_TWZLUTlyOEdLWXFyVHdqVVBEOElMUFpJbzJMYUxh\nU3c=",
        "whsec-MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "sk_live_0123456789abcdefghijklmnopqrstuvwxyz",
        // URL-safe base64 of 32 bytes ('-' and '_'): not the spec's alphabet.
        "whsec_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_",
    ];
    for s in cases {
        let e = Signer::new(s).unwrap_err();
        assert!(matches!(e, Error::Usage { .. }), "{s:?}: {e}");
        let shown = format!("{e} {e:?}");
        let body = s.trim().trim_start_matches("whsec_").trim();
        if body.len() >= 4 {
            assert!(!shown.contains(body), "{s:?} shown: {shown}");
        }
        let e = Verifier::new(s).unwrap_err();
        let shown = format!("{e} {e:?}");
        if body.len() >= 4 {
            assert!(!shown.contains(body), "{s:?} shown: {shown}");
        }
    }
}

#[test]
fn a_flood_of_signatures_over_a_large_body_is_checked_once_per_secret() {
    // 2,000 well-formed signatures that do not match and the good one
    // last, over a 4 MiB body: the body's MAC must be computed once per
    // secret, not once per signature (that would be 8 GiB of SHA-256).
    let signer = Signer::new(SECRET).unwrap();
    let body = vec![b'x'; 4 * 1024 * 1024];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = signer.sign("msg_1", now, &body).unwrap();
    let bad = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    let mut header = vec![bad; 2_000].join(" ");
    header.push(' ');
    header.push_str(&good);
    let verifier = Verifier::new(SECRET).unwrap();
    let (ok, refused) = bounded(LIMIT, move || {
        let ok = verifier.verify("msg_1", &now.to_string(), &header, &body);
        let no_good = header.rsplit_once(' ').unwrap().0.to_string();
        let refused = verifier.verify("msg_1", &now.to_string(), &no_good, &body);
        (ok, refused)
    });
    assert_eq!(ok, Ok(()));
    assert_eq!(refused, Err(reqpool::webhooks::VerifyError::NoMatch));
}

#[test]
fn forged_duplicated_stale_and_future_timestamps_and_odd_separators() {
    use reqpool::webhooks::VerifyError;
    let signer = Signer::new(SECRET).unwrap();
    let verifier = Verifier::new(SECRET).unwrap();
    let t0: u64 = 1_800_000_000;
    let at = |s: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
    let body = br#"{"a":1}"#;
    let sig = signer.sign("msg_1", t0, body).unwrap();
    let ts = t0.to_string();
    // Timestamps: a forged one (the signature was over t0), forms that
    // parse to t0 but are not what was signed, two values, huge ones.
    let forged = (t0 + 1).to_string();
    let plus = format!("+{t0}");
    let zero = format!("0{t0}");
    let two = format!("{t0}, {t0}");
    let cases: [(&str, Result<(), VerifyError>); 9] = [
        (&forged, Err(VerifyError::NoMatch)),
        (&plus, Err(VerifyError::NoMatch)),
        (&zero, Err(VerifyError::NoMatch)),
        (&two, Err(VerifyError::BadTimestamp)),
        ("", Err(VerifyError::BadTimestamp)),
        ("99999999999999999999999", Err(VerifyError::BadTimestamp)),
        (
            "9223372036854775807",
            Err(VerifyError::Expired {
                age_secs: t0 as i64 - i64::MAX,
            }),
        ),
        (
            "-9223372036854775808",
            Err(VerifyError::Expired { age_secs: i64::MAX }),
        ),
        (&ts, Ok(())),
    ];
    for (t, want) in cases {
        assert_eq!(
            verifier.verify_at("msg_1", t, &sig, body, at(t0)),
            want,
            "{t:?}"
        );
    }
    // Stale and future by one second past the tolerance, the clock before
    // the epoch, a tolerance of Duration::MAX.
    assert_eq!(
        verifier.verify_at("msg_1", &ts, &sig, body, at(t0 + 301)),
        Err(VerifyError::Expired { age_secs: 301 })
    );
    assert_eq!(
        verifier.verify_at("msg_1", &ts, &sig, body, at(t0 - 301)),
        Err(VerifyError::Expired { age_secs: -301 })
    );
    let before_epoch = std::time::UNIX_EPOCH - std::time::Duration::from_secs(5);
    assert!(matches!(
        verifier.verify_at("msg_1", &ts, &sig, body, before_epoch),
        Err(VerifyError::Expired { .. })
    ));
    verifier
        .clone()
        .tolerance(std::time::Duration::MAX)
        .verify_at(
            "msg_1",
            "0",
            &signer.sign("msg_1", 0, body).unwrap(),
            body,
            at(t0),
        )
        .unwrap();
    // Signature headers: duplicated, extra spaces, a comma list, a tab.
    let bare = sig.trim_start_matches("v1,");
    let ok = [
        format!("{sig} {sig}"),
        format!("  {sig}  "),
        format!("v1,AAAA {sig}"),
        format!("v2,{bare} v1a,{bare} {sig}"),
    ];
    for s in &ok {
        assert_eq!(
            verifier.verify_at("msg_1", &ts, s, body, at(t0)),
            Ok(()),
            "{s:?}"
        );
    }
    let refused = [
        format!("v1,{bare},{bare}"),
        format!("v1, {bare}"),
        format!("V1,{bare}"),
        format!("v1,{}", &bare[..bare.len() - 1]),
        bare.to_string(),
    ];
    for s in &refused {
        assert_eq!(
            verifier.verify_at("msg_1", &ts, s, body, at(t0)),
            Err(VerifyError::NoMatch),
            "{s:?}"
        );
    }
}

#[test]
fn a_receiver_that_echoes_the_signature_does_not_get_it_into_the_error() {
    // A receiver that refuses every webhook and echoes its headers back,
    // in the body and in a header of its answer.
    let sent = Arc::new(Mutex::new(String::new()));
    let s = Arc::clone(&sent);
    let server = Server::with_handler(move |req, _| {
        let sig = req
            .headers
            .get("webhook-signature")
            .cloned()
            .unwrap_or_default();
        *s.lock().unwrap() = sig.clone();
        Reply::json(
            401,
            json!({"error": "bad signature", "got": sig, "headers": req.headers}),
        )
        .header("X-Got-Signature", &sig)
    });
    let (pool, _errors) = signing_pool(Signer::new(SECRET).unwrap());
    let url = server.url("/hooks");
    let e = {
        let p = pool
            .post(&url)
            .idempotency_key("msg_echo")
            .body("{}")
            .send();
        bounded(LIMIT, move || p.wait()).unwrap_err()
    };
    let sig = sent.lock().unwrap().clone();
    let mac = sig.trim_start_matches("v1,");
    assert!(mac.len() > 20, "{sig:?}");
    for shown in [e.to_string(), format!("{e:?}"), format!("{e:#?}")] {
        assert!(!shown.contains(mac), "the signature is shown: {shown}");
    }
}

#[test]
fn a_refused_attempt_names_its_url_without_secrets() {
    // No Idempotency-Key, and one with a space: the attempt fails unsent,
    // its error names the URL with the password and the token hidden.
    let (server, _) = receiver(Verifier::new(SECRET).unwrap(), None);
    let (pool, _errors) = signing_pool(Signer::new(SECRET).unwrap());
    let base = server.url("/hooks");
    let hostport = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    let url = format!("http://ann:pw-SECRET-1@{hostport}/hooks?token=tok-SECRET-2");
    let unkeyed = pool.post(&url).body("{}").send();
    let spaced = pool.post(&url).idempotency_key("a b").body("{}").send();
    for p in [unkeyed, spaced] {
        let e = bounded(LIMIT, move || p.wait()).unwrap_err();
        for shown in [e.to_string(), format!("{e:?}")] {
            assert!(!shown.contains("SECRET"), "{shown}");
        }
    }
}
