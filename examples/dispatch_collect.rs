//! The main job: dispatch a slow POST, do local work meanwhile, collect the
//! answer later — serial first, then pooled, with a timeline.
//!
//! ```sh
//! cargo run --example dispatch_collect                 # starts its own server
//! cargo run --example dispatch_collect -- --url URL    # a real /process endpoint
//! ```
//!
//! The local server's `POST /process` validates the payload as the seed's
//! pydantic model does (`tag: str`, `items: List[Dict[str, Any]]`; 422 with
//! a FastAPI-style `detail` list otherwise) and answers after 3 s. A server
//! that rejects the payload ends the program with its `detail` and a
//! non-zero exit.

#[path = "../tests/common/mod.rs"]
mod common;

use serde::{Deserialize, Serialize};
use std::thread;
use std::time::{Duration, Instant};

const SERVER_DELAY: Duration = Duration::from_secs(3);
const LOCAL_WORK: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct Payload {
    tag: String,
    items: Vec<Item>,
}

#[derive(Serialize)]
struct Item {
    id: u32,
    name: String,
}

#[derive(Deserialize, Debug)]
struct Reply {
    result: String,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = match args.iter().position(|a| a == "--url") {
        Some(i) => match args.get(i + 1) {
            Some(u) => u.clone(),
            None => {
                eprintln!("usage: dispatch_collect [--url URL]");
                std::process::exit(2);
            }
        },
        None => {
            let server = common::Server::with_handler(|req, _| match req.path.as_str() {
                "/process" => common::process(req, SERVER_DELAY),
                _ => common::Reply::json(404, serde_json::json!({"detail": "Not Found"})),
            });
            let url = server.url("/process");
            std::mem::forget(server); // serve until the program ends
            url
        }
    };
    println!("endpoint: {url}");
    println!("scenario: one POST (the server takes ~3 s) + 2 s of local work\n");

    let pool = reqpool::Pool::new(4);
    let payload = Payload {
        tag: "seed-000".into(),
        items: (1..=3)
            .map(|id| Item {
                id,
                name: format!("item-{id}"),
            })
            .collect(),
    };

    // Serial: call, wait for the answer, then do the local work.
    let start = Instant::now();
    let t = |label: &str| println!("  {:>6.3} s  {label}", start.elapsed().as_secs_f64());
    println!("serial:");
    t("POST sent, waiting");
    let reply = pool.post_json::<Reply>(&url, &payload).wait();
    t(&format!("answer: {}", show(&reply)));
    exit_if_failed(&reply);
    t("local work starts");
    thread::sleep(LOCAL_WORK);
    t("local work done");
    let serial = start.elapsed();

    // Pooled: dispatch, do the local work while the request runs, collect.
    let start = Instant::now();
    let t = |label: &str| println!("  {:>6.3} s  {label}", start.elapsed().as_secs_f64());
    println!("\npooled:");
    let pending = pool.post_json::<Reply>(&url, &payload);
    t("POST dispatched; local work starts");
    thread::sleep(LOCAL_WORK);
    t("local work done; collecting");
    let reply = pending.wait();
    t(&format!("answer: {}", show(&reply)));
    exit_if_failed(&reply);
    let pooled = start.elapsed();

    println!(
        "\ntotals: serial {:.3} s, pooled {:.3} s (saved {:.3} s)",
        serial.as_secs_f64(),
        pooled.as_secs_f64(),
        serial.as_secs_f64() - pooled.as_secs_f64()
    );

    // A payload the server rejects: the caller gets the server's explanation.
    println!("\na rejected payload ({{\"tag\": 42}}):");
    match pool
        .post_json::<Reply>(&url, &serde_json::json!({"tag": 42}))
        .wait()
    {
        Ok(r) => println!("  unexpectedly accepted: {r:?}"),
        Err(e) => print_error(&e),
    }
}

fn print_error(e: &reqpool::Error) {
    println!("  error: {e}");
    if let Some(detail) = e.body_json().and_then(|b| b.get("detail")) {
        for d in detail.as_array().into_iter().flatten() {
            println!("  detail: {} at {}", d["msg"], d["loc"]);
        }
    }
}

/// A failed call is not a result to time: say why and stop.
fn exit_if_failed(r: &Result<Reply, reqpool::Error>) {
    if let Err(e) = r {
        eprintln!("\nthe endpoint did not accept the seed payload:");
        print_error(e);
        std::process::exit(1);
    }
}

fn show(r: &Result<Reply, reqpool::Error>) -> String {
    match r {
        Ok(r) => r.result.clone(),
        Err(e) => format!("error: {e}"),
    }
}
