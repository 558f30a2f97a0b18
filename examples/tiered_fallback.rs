//! Tiered fallback (exact match, then same province, then nationwide): the
//! first success wins; when every tier fails, the caller sees every error.
//!
//! `cargo run --example tiered_fallback`

#[path = "../tests/common/mod.rs"]
mod common;

use common::Reply;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};

static NATIONWIDE_DOWN: AtomicBool = AtomicBool::new(false);

fn main() {
    let server = common::Server::with_handler(|req, _| match req.path.as_str() {
        "/exact" => Reply::json(404, json!({"detail": "no exact match"})),
        "/province" => Reply::json(503, json!({"detail": "province index is rebuilding"})),
        "/nationwide" if NATIONWIDE_DOWN.load(Ordering::SeqCst) => {
            Reply::text(500, "text/html", "<h1>Internal Server Error</h1>")
        }
        "/nationwide" => Reply::json(200, json!({"phone": "138****0000", "tier": "nationwide"})),
        _ => Reply::json(404, json!({"detail": "Not Found"})),
    });
    let pool = reqpool::Pool::new(3);
    let tiers = ["/exact", "/province", "/nationwide"];
    let names = ["exact", "province", "nationwide"];

    for round in ["three tiers, the last one answers", "every tier fails"] {
        println!("== {round}");
        // In parallel: all tiers at once, the first success wins and the
        // tiers that have not started are cancelled.
        let handles = tiers
            .iter()
            .map(|p| pool.get_json::<serde_json::Value>(&server.url(p)))
            .collect();
        report(
            "first_success (parallel)",
            &names,
            reqpool::first_success(handles),
        );
        // In order: a tier runs only after the one before it failed.
        let lazy = tiers.iter().map(|p| {
            let (pool, url) = (pool.clone(), server.url(p));
            move || pool.get_json::<serde_json::Value>(&url)
        });
        report("fallback (in order)", &names, reqpool::fallback(lazy));
        NATIONWIDE_DOWN.store(true, Ordering::SeqCst);
        println!();
    }
}

fn report(how: &str, names: &[&str], r: Result<(usize, serde_json::Value), reqpool::AllFailed>) {
    match r {
        Ok((i, v)) => println!("{how}: tier {} answered {v}", names[i]),
        Err(all) => {
            println!("{how}: all {} tiers failed", all.errors.len());
            for (i, e) in &all.errors {
                println!("  {:<10} {e}", names[*i]);
            }
        }
    }
}
