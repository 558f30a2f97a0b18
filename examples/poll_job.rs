//! A background task on the server: `POST /tasks` answers at once with a
//! task id and a status URL; the task finishes 1.5 s later. One `Pending`
//! covers the start and every poll.
//!
//! `cargo run --example poll_job`

#[path = "../tests/common/mod.rs"]
mod common;

use common::Reply;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TASK_TAKES: Duration = Duration::from_millis(1500);

fn main() {
    let tasks: Mutex<HashMap<String, Instant>> = Mutex::new(HashMap::new());
    let server = common::Server::with_handler(move |req, _| {
        let mut tasks = tasks.lock().unwrap();
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/tasks") => {
                let id = format!("task-{}", tasks.len() + 1);
                tasks.insert(id.clone(), Instant::now());
                Reply::json(202, json!({"id": id, "status_url": format!("/tasks/{id}")}))
            }
            ("GET", path) if path.starts_with("/tasks/") => match tasks.get(&path[7..]) {
                Some(t) if t.elapsed() >= TASK_TAKES => {
                    Reply::json(200, json!({"state": "done", "result": {"rows": 1234}}))
                }
                Some(t) => Reply::json(
                    200,
                    json!({"state": "running", "percent": (t.elapsed().as_millis() * 100 / TASK_TAKES.as_millis()) as u64}),
                ),
                None => Reply::json(404, json!({"detail": "no such task"})),
            },
            _ => Reply::json(404, json!({"detail": "Not Found"})),
        }
    });

    let pool = reqpool::Pool::new(2);
    let start = Instant::now();
    let done = pool
        .post(&server.url("/tasks"))
        .json_body(&json!({"report": "monthly"}))
        .poll()
        .every(Duration::from_millis(250))
        .timeout(Duration::from_secs(10))
        .until(|status| status["state"] == "done");
    println!("task submitted; the main thread is free while it runs");
    match done.wait() {
        Ok(status) => println!(
            "done after {:.2} s and {} status polls: {}",
            start.elapsed().as_secs_f64(),
            server
                .shared
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, m, _)| m == "GET")
                .count(),
            status["result"]
        ),
        Err(e) => println!("failed: {e}"),
    }

    // The same task with a deadline shorter than the task: a timeout error.
    let too_short = pool
        .post(&server.url("/tasks"))
        .json_body(&json!({"report": "yearly"}))
        .poll()
        .every(Duration::from_millis(100))
        .timeout(Duration::from_millis(500))
        .until(|status| status["state"] == "done");
    match too_short.wait() {
        Ok(_) => println!("unexpected: finished within 500 ms"),
        Err(e) => println!("with a 500 ms limit: {e}"),
    }
}
