//! A batch that survives `kill -9`: a script sends 10,000 keyed POSTs
//! through a durable outbox, is killed (SIGKILL) at a random point by this
//! example, and is simply run again; the totals say what reached the
//! server once, twice, or never.
//! Also the enqueue rate with each durability setting.
//!
//! `cargo run --release --features outbox --example resumable_batch`

#[path = "../tests/common/mod.rs"]
mod common;

use reqpool::{Durability, Outbox, Pool};
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const JOBS: usize = 10_000;

/// The script itself: open the outbox, enqueue the whole batch with one
/// key per item (a re-run skips the keys already in the file), deliver.
fn run(db: &std::path::Path, url: &str) -> Outbox {
    let pool = Pool::new(16);
    let outbox = Outbox::open(db, &pool).expect("open the outbox");
    for i in 0..JOBS {
        outbox
            .enqueue(
                pool.post(url)
                    .json_body(&json!({"item": i}))
                    .idempotency_key(&format!("item-{i}")),
            )
            .expect("enqueue");
    }
    outbox.flush_timeout(Duration::from_secs(600));
    outbox
}

/// Jobs a second enqueued from one thread into a fresh file.
fn enqueue_rate(dir: &std::path::Path, durability: Durability, n: usize) -> f64 {
    let pool = Pool::new(1);
    let path = dir.join(format!("rate-{durability:?}.db"));
    let _ = std::fs::remove_file(&path);
    let outbox = Outbox::options()
        .durability(durability)
        .open(&path, &pool)
        .expect("open");
    // Nothing listens: the jobs stay pending (and are not delivered).
    let url = common::closed_port_url("/x");
    let t0 = Instant::now();
    for i in 0..n {
        outbox
            .enqueue(pool.post(&url).json_body(&json!({"i": i})))
            .expect("enqueue");
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--child" {
        run(std::path::Path::new(&args[2]), &args[3]);
        return;
    }
    let dir = std::env::temp_dir().join(format!("reqpool-resumable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("batch.db");

    let (server, seen) = common::keyed_server(Arc::new(AtomicUsize::new(200)));
    let url = server.url("/items?ms=2");

    // Kill somewhere between 10 % and 90 % of the batch.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize);
    let kill_at = JOBS / 10 + nanos % (JOBS * 8 / 10);
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--child", db.to_str().expect("utf-8 path"), &url])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let t0 = Instant::now();
    while seen.lock().unwrap().len() < kill_at {
        if t0.elapsed() > Duration::from_secs(300) {
            panic!(
                "the child delivered {} in 300 s",
                seen.lock().unwrap().len()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let at_kill = seen.lock().unwrap().len();
    println!("child killed (SIGKILL) after {at_kill} of {JOBS} items reached the server");

    // The re-run: the same script on the same file. Jobs left pending or
    // in flight go out again, with their keys; items the killed run never
    // enqueued are enqueued now; items already in the file are skipped.
    let t1 = Instant::now();
    let outbox = run(&db, &url);
    let left = outbox.flush_timeout(Duration::ZERO);
    let stats = outbox.stats().expect("stats");
    let seen = seen.lock().unwrap();
    let once = seen.values().filter(|&&n| n == 1).count();
    let twice = seen.values().filter(|&&n| n == 2).count();
    let more = seen.values().filter(|&&n| n > 2).count();
    let lost = JOBS - seen.len();
    println!(
        "restart delivered the rest in {:.2?}: {} delivered, {} dead, {left} left",
        t1.elapsed(),
        stats.delivered,
        stats.dead
    );
    println!("sent once: {once}, sent twice: {twice}, more: {more}, lost: {lost}");
    drop(outbox);

    let rate = enqueue_rate(&dir, Durability::Process, 20_000);
    let rate_fsync = enqueue_rate(&dir, Durability::PowerLoss, 2_000);
    println!(
        "enqueue from one thread: {rate:.0} jobs/s (Durability::Process), {rate_fsync:.0} jobs/s (Durability::PowerLoss, an fsync per commit)"
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(lost, 0, "jobs were lost");
}
