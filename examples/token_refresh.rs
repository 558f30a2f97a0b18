//! A long batch against an API whose OAuth tokens expire mid-batch: the
//! pool asks a token endpoint for `Authorization: Bearer …` per host
//! (`Builder::bearer_from`), and after a 401 asks again and sends the
//! request once more — a POST too — with one refresh for all the requests
//! that got the 401 together. Every request is also signed over its exact
//! body (`Builder::before_attempt`).
//!
//! `cargo run --example token_refresh` (its own local server: tokens live
//! for 150 requests).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Reply, Server};
use reqpool::{Error, Pool};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const ORDERS: usize = 1_000;
const TOKEN_LIFE: usize = 150;

fn main() -> Result<(), Error> {
    // The API: `POST /token` issues a new token and expires the old one;
    // `POST /orders` takes only the current token, and expires it after
    // TOKEN_LIFE orders; every order must carry a signature of its body.
    let current = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let rejected = Arc::new(AtomicUsize::new(0));
    let (c, s, r) = (current.clone(), served.clone(), rejected.clone());
    let server = Server::with_handler(move |req, _| {
        if req.path == "/token" {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            return Reply::json(200, json!({"access_token": format!("tok-{n}")}));
        }
        let valid = format!("Bearer tok-{}", c.load(Ordering::SeqCst));
        let fresh = s.load(Ordering::SeqCst) < TOKEN_LIFE * c.load(Ordering::SeqCst);
        if req.headers.get("authorization") != Some(&valid) || !fresh {
            r.fetch_add(1, Ordering::SeqCst);
            return Reply::json(401, json!({"detail": "token expired"}));
        }
        let sig = format!("len={}", req.body.len());
        if req.headers.get("x-signature") != Some(&sig) {
            return Reply::json(400, json!({"detail": "bad signature"}));
        }
        s.fetch_add(1, Ordering::SeqCst);
        Reply::json(201, json!({"ok": true}))
    });

    let token_url = server.url("/token");
    let fetched = Arc::new(AtomicUsize::new(0));
    let f = fetched.clone();
    let pool = Pool::builder()
        .workers(8)
        // Asked once per host, and again after a 401: a plain call to the
        // token endpoint (a real one would send client credentials).
        .bearer_from(move |host| {
            f.fetch_add(1, Ordering::SeqCst);
            let reply: Value = reqpool::ureq::post(&token_url)
                .send_empty()
                .and_then(|mut r| r.body_mut().read_json())
                .map_err(Error::other)?;
            println!("token for {host}: {}", reply["access_token"]);
            Ok(reply["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string())
        })
        // A signature over each attempt's exact bytes (a real API would
        // want an HMAC with a key: set it with secret_header).
        .before_attempt(|a| {
            let sig = format!("len={}", a.body().len());
            a.secret_header("X-Signature", &sig);
            Ok(())
        })
        .build()?;

    let url = server.url("/orders");
    let orders: Vec<_> = (0..ORDERS)
        .map(|i| {
            pool.post(&url)
                .json_body(&json!({"order": i}))
                .json::<Value>()
        })
        .collect();
    let results = reqpool::wait_all(orders);
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!(
        "{ORDERS} orders: {} accepted, {failed} failed; {} tokens fetched for {} 401s",
        served.load(Ordering::SeqCst),
        fetched.load(Ordering::SeqCst),
        rejected.load(Ordering::SeqCst)
    );
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        return Err(Error::other(format!("an order failed: {e}")));
    }
    Ok(())
}
