//! Outbox tests that hold on every store (feature `outbox`): each takes
//! how to open an outbox with given options on a fresh store, so that
//! `outbox.rs` (a SQLite file) and `redis.rs` (a Redis stream) run the
//! same body.

use super::*;
use reqpool::{Outbox, OutboxOptions, Pool, RequestBuilder};

/// Opens an outbox with these options on the test's fresh store.
pub type Open<'a> = &'a dyn Fn(OutboxOptions, &Pool) -> Outbox;

/// A keyed POST: key `order-{i}`, body `{"order": i}`.
pub fn order(pool: &Pool, url: &str, i: usize) -> RequestBuilder {
    pool.post(url)
        .json_body(&serde_json::json!({"order": i}))
        .idempotency_key(&format!("order-{i}"))
}

/// A final status (422) makes a dead letter, listed with its key, its
/// redacted request and its error, and reported to the pool's `on_error`
/// hook; fixed on the server's side, `requeue` delivers it (once: a
/// second `requeue` finds nothing dead).
pub fn a_final_status_is_a_dead_letter_that_can_be_requeued(open: Open<'_>) {
    let status = Arc::new(AtomicUsize::new(422));
    let (server, keys) = keyed_server(status.clone());
    let hooked = Arc::new(AtomicUsize::new(0));
    let h = hooked.clone();
    let pool = Pool::builder()
        .workers(2)
        .on_error(move |e| {
            if e.status() == Some(422) {
                h.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let outbox = open(Outbox::options(), &pool);
    let id = outbox
        .enqueue(order(&pool, &server.url("/orders?page=2"), 1))
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let dead = outbox.dead().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].id, dead[0].key.as_str(), dead[0].attempts),
        (id, "order-1", 1)
    );
    assert!(dead[0].last_error.contains("422"), "{}", dead[0].last_error);
    assert!(
        dead[0].request.starts_with("POST http://127.0.0.1:"),
        "{}",
        dead[0].request
    );
    assert_eq!(hooked.load(Ordering::SeqCst), 1);
    assert_eq!(outbox.stats().unwrap().dead, 1);
    status.store(200, Ordering::SeqCst);
    assert!(outbox.requeue(id).unwrap());
    assert!(!outbox.requeue(id).unwrap());
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(outbox.reply(id).unwrap().map(|r| r.status), Some(200));
    assert_eq!(keys.lock().unwrap().get("order-1"), Some(&2));
    assert_eq!(outbox.stats().unwrap().dead, 0);
}

/// A host that keeps answering 503 is tried again at each delivery, with
/// the same key, until `max_attempts`, then the job is dead with the 503.
pub fn a_host_that_keeps_failing_is_retried_across_deliveries_then_dead(open: Open<'_>) {
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(503)));
    let pool = Pool::new(2);
    let outbox = open(Outbox::options().max_attempts(2), &pool);
    let id = outbox
        .enqueue(order(&pool, &server.url("/orders"), 5))
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let dead = outbox.dead().unwrap();
    assert_eq!((dead[0].id, dead[0].attempts), (id, 2));
    assert!(dead[0].last_error.contains("503"), "{}", dead[0].last_error);
    // Every delivery carried the same key.
    assert_eq!(keys.lock().unwrap().get("order-5"), Some(&2));
}

/// A server that echoes the request's headers sends back the token
/// `bearer_from` added and the secret header `before_attempt` added: the
/// reply is kept with both as `***`, and the store's bytes (`stored()`,
/// read after the outbox is dropped) never hold them.
pub fn hook_secrets_echoed_in_a_reply_are_not_kept(open: Open<'_>, stored: &dyn Fn() -> Vec<u8>) {
    let server = Server::start();
    let pool = Pool::builder()
        .bearer_from(|_| Ok("tok-SECRET-7".to_string()))
        .before_attempt(|a| {
            a.secret_header("X-Signature", "sig/SECRET 8");
            Ok(())
        })
        .build()
        .unwrap();
    let outbox = open(Outbox::options(), &pool);
    let id = outbox
        .enqueue(pool.post(&server.url("/headers")).idempotency_key("echo-1"))
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let reply = outbox.reply(id).unwrap().expect("kept");
    let text = String::from_utf8(reply.body).unwrap();
    // The echo is kept, without the secrets.
    assert!(text.contains("Bearer ***"), "{text}");
    assert!(text.contains("echo-1"), "{text}");
    for secret in ["tok-SECRET-7", "sig/SECRET 8", "SECRET"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    drop(outbox);
    let bytes = stored();
    assert!(bytes.windows(6).any(|w| w == b"echo-1"), "nothing stored");
    for secret in [&b"tok-SECRET-7"[..], b"SECRET"] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    }
}
