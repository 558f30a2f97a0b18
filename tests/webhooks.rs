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
