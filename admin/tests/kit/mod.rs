//! What the admin tests share: a server and an outbox seeded with jobs
//! delivered and dead.

use crate::common::*;
use reqpool::{JobId, Outbox, Pool};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A server whose `/gone` answers `gone` (400 at first: a final status,
/// so the job is dead) and every other path 200.
pub fn server() -> (Server, Arc<AtomicUsize>) {
    let gone = Arc::new(AtomicUsize::new(400));
    let g = Arc::clone(&gone);
    let s = Server::with_handler(move |req, _| match req.path.as_str() {
        "/gone" => Reply::json(
            g.load(Ordering::SeqCst) as u16,
            json!({"detail": "<b>no such hook</b>"}),
        ),
        _ => Reply::json(200, json!({"ok": true})),
    });
    (s, gone)
}

/// Three jobs delivered and two dead, through `outbox`; their ids.
pub fn seed(outbox: &Outbox, pool: &Pool, server: &Server) -> (Vec<JobId>, Vec<JobId>) {
    let ok: Vec<JobId> = (0..3)
        .map(|i| {
            outbox
                .enqueue(pool.post(&server.url("/ok")).json_body(&json!({"i": i})))
                .unwrap()
        })
        .collect();
    let dead: Vec<JobId> = (0..2)
        .map(|i| {
            outbox
                .enqueue(pool.post(&server.url("/gone")).json_body(&json!({"i": i})))
                .unwrap()
        })
        .collect();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(outbox.stats().unwrap().dead, 2);
    (ok, dead)
}
