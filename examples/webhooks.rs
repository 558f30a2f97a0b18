//! Standard Webhooks through the outbox: 1,000 events enqueued into an
//! outbox file and delivered by a pool whose `before_attempt` hook is the
//! `webhooks::Signer`, to a local receiver that checks every request
//! with the `webhooks::Verifier` and answers 401 to any it refuses.
//!
//! `cargo run --release --features webhooks,sqlite --example webhooks`
//! (`EVENTS=n` for another count, `DB=path` to keep the outbox file).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Reply, Server, TempDir};
use reqpool::webhooks::{Signer, Verifier};
use reqpool::{Error, Outbox, Pool};
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The receiver's and the sender's secret (a real one is random, kept
/// out of the code).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Seen {
    verified: usize,
    refused: usize,
    ids: HashSet<String>,
}

fn main() -> Result<(), Error> {
    let events: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let verifier = Verifier::new(SECRET)?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = Arc::clone(&seen);
    let server = Server::with_handler(move |req, _| {
        let h = |k: &str| req.headers.get(k).map(String::as_str).unwrap_or("");
        let ok = verifier
            .verify(
                h("webhook-id"),
                h("webhook-timestamp"),
                h("webhook-signature"),
                &req.body,
            )
            .is_ok();
        let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            s.verified += 1;
            s.ids.insert(h("webhook-id").to_string());
            Reply::json(204, json!({}))
        } else {
            s.refused += 1;
            Reply::json(401, json!({"detail": "bad signature"}))
        }
    });

    let pool = Pool::builder()
        .workers(8)
        .before_attempt(Signer::new(SECRET)?.hook())
        .build()?;
    let dir = TempDir::new("webhooks-example");
    let db =
        std::env::var_os("DB").map_or_else(|| dir.file("webhooks.db"), std::path::PathBuf::from);
    let outbox = Outbox::open(db, &pool)?;
    let url = server.url("/webhooks");
    let started = Instant::now();
    let jobs: Vec<_> = (0..events)
        .map(|n| {
            pool.post(&url)
                .json_body(&json!({"type": "invoice.paid", "data": {"invoice": n}}))
                .idempotency_key(&format!("msg_{n:06}"))
        })
        .collect();
    for r in outbox.enqueue_all(jobs) {
        r?;
    }
    let enqueued = started.elapsed();
    let left = outbox.flush_timeout(Duration::from_secs(120));
    let total = started.elapsed();
    let stats = outbox.stats()?;
    let s = seen.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "{events} webhooks: enqueued in {:.1} ms, all delivered in {:.1} ms ({:.0}/s); \
         receiver verified {} ({} distinct ids), refused {}; outbox: {} delivered, {} dead, {left} left",
        enqueued.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        events as f64 / total.as_secs_f64(),
        s.verified,
        s.ids.len(),
        s.refused,
        stats.delivered,
        stats.dead,
    );
    if s.refused > 0 || s.ids.len() != events || left != 0 {
        return Err(Error::other("not every webhook was delivered and verified"));
    }
    Ok(())
}
