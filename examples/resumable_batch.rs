//! A batch that survives `kill -9`: a script sends 10,000 keyed POSTs
//! through a durable outbox, is killed (SIGKILL) at a random point by this
//! example, and is simply run again; the totals say what reached the
//! server once, twice, or never.
//! Also the enqueue rate with each durability setting, delivery through
//! the outbox against plain `fire`, and the file's size after a history of
//! delivered jobs (`HISTORY=n`, default 50,000).
//!
//! `cargo run --release --features outbox --example resumable_batch`
//! (`RUNS=20` kills and restarts 20 times; `ONLY=speed` skips the kills
//! and the one-by-one enqueue rates, and prints only `enqueue_all` and
//! delivery against `fire`, `ROUNDS` times, for before/after runs;
//! `ONLY=enqueue_all` only that rate; `ONLY=deliver` fills a file and delivers it, for a profiler,
//! `PERF_FILL=1` to record the filling).

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

/// Jobs a second enqueued by `threads` threads into a fresh file.
/// A fresh outbox file `name` in `dir` that only takes jobs (the enqueues
/// alone, nothing delivered meanwhile).
fn producer(dir: &std::path::Path, name: &str, durability: Durability, pool: &Pool) -> Outbox {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    Outbox::options()
        .durability(durability)
        .deliver(false)
        .open(&path, pool)
        .expect("open")
}

fn enqueue_rate(dir: &std::path::Path, durability: Durability, n: usize, threads: usize) -> f64 {
    let pool = Pool::new(1);
    let outbox = producer(
        dir,
        &format!("rate-{durability:?}-{threads}.db"),
        durability,
        &pool,
    );
    let url = common::closed_port_url("/x");
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (outbox, pool, url) = (&outbox, &pool, &url);
            s.spawn(move || {
                for i in (t..n).step_by(threads) {
                    outbox
                        .enqueue(pool.post(url).json_body(&json!({"i": i})))
                        .expect("enqueue");
                }
            });
        }
    });
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Jobs a second into a producer from one thread with `enqueue_all`
/// (1,000 per commit).
fn enqueue_all_rate(dir: &std::path::Path, durability: Durability, n: usize) -> f64 {
    let pool = Pool::new(1);
    let outbox = producer(
        dir,
        &format!("rate-all-{durability:?}.db"),
        durability,
        &pool,
    );
    let url = common::closed_port_url("/x");
    let t0 = Instant::now();
    let ids = outbox.enqueue_all((0..n).map(|i| pool.post(&url).json_body(&json!({"i": i}))));
    assert!(ids.iter().all(Result::is_ok));
    n as f64 / t0.elapsed().as_secs_f64()
}

/// CPU time of this whole process so far (its server too), from
/// `/proc/self/stat` (Linux; zero elsewhere).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's name (which may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // Clock ticks of 10 ms (USER_HZ is 100 on Linux).
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// Requests a second through plain `fire`, and through an outbox (keys,
/// replies off, retention zero; 16 workers each, same server): enqueue and
/// delivery together, and the delivery alone of a file that a producer
/// (`deliver(false)`) filled; and the file's size (with its WAL) after.
struct Rates {
    fire: f64,
    together: f64,
    delivery: f64,
    bytes: u64,
    /// CPU µs per request of the process (server included): `fire`,
    /// delivery of a filled file.
    fire_cpu: f64,
    delivery_cpu: f64,
}

fn delivery_vs_fire(dir: &std::path::Path, url: &str, n: usize) -> Rates {
    let pool = Pool::new(16);
    let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / n as f64;
    let (t0, c0) = (Instant::now(), cpu());
    for i in 0..n {
        pool.post(url)
            .json_body(&json!({"item": i}))
            .fire()
            .expect("fire");
    }
    assert_eq!(pool.flush(), 0);
    let fire = n as f64 / t0.elapsed().as_secs_f64();
    let fire_cpu = per(cpu().saturating_sub(c0));
    let options = || {
        Outbox::options()
            .keep_replies(false)
            .retention(Duration::ZERO)
    };
    let enqueue = |outbox: &Outbox, run: &str| {
        for i in 0..n {
            let req = pool
                .post(url)
                .json_body(&json!({"item": i}))
                .idempotency_key(&format!("{run}-{i}"));
            outbox.enqueue(req).expect("enqueue");
        }
    };
    let path = dir.join("history.db");
    let _ = std::fs::remove_file(&path);
    let outbox = options().open(&path, &pool).expect("open");
    let t0 = Instant::now();
    enqueue(&outbox, "together");
    assert_eq!(outbox.flush_timeout(Duration::from_secs(600)), 0);
    let together = n as f64 / t0.elapsed().as_secs_f64();
    drop(outbox);
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let wal = path.with_extension("db-wal");
    let bytes = size(&path) + size(&wal);
    // A producer fills the file; a deliverer opens it and sends it all.
    let producer = options().deliver(false).open(&path, &pool).expect("open");
    enqueue(&producer, "replay");
    drop(producer);
    let (t0, c0) = (Instant::now(), cpu());
    let outbox = options().open(&path, &pool).expect("open");
    assert_eq!(outbox.flush_timeout(Duration::from_secs(600)), 0);
    let delivery = n as f64 / t0.elapsed().as_secs_f64();
    let delivery_cpu = per(cpu().saturating_sub(c0));
    Rates {
        fire,
        together,
        delivery,
        bytes,
        fire_cpu,
        delivery_cpu,
    }
}

/// One run of the script killed (SIGKILL) at a random point, then run
/// again on the same file; returns how many items reached the server
/// twice, more than twice, and never.
fn kill_and_rerun(db: &std::path::Path) -> (usize, usize, usize) {
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
    let outbox = run(db, &url);
    let left = outbox.flush_timeout(Duration::ZERO);
    let stats = outbox.stats().expect("stats");
    let seen = seen.lock().unwrap();
    let once = seen.values().filter(|&&n| n == 1).count();
    let twice = seen.values().filter(|&&n| n == 2).count();
    let more = seen.values().filter(|&&n| n > 2).count();
    let lost = JOBS - seen.len();
    drop(seen); // the server's handler takes this lock
    println!(
        "restart delivered the rest in {:.2?}: {} delivered, {} dead, {left} left",
        t1.elapsed(),
        stats.delivered,
        stats.dead
    );
    println!("sent once: {once}, sent twice: {twice}, more: {more}, lost: {lost}");
    (twice, more, lost)
}

/// `enqueue_all` into a file, then delivery of a filled file against
/// `fire` (the ratio is the figure to compare: both in the same round),
/// `rounds` times.
fn speed(dir: &std::path::Path, n: usize, rounds: usize) {
    let server = common::Server::start();
    for round in 1..=rounds {
        let all = enqueue_all_rate(dir, Durability::Process, 100_000);
        let r = delivery_vs_fire(dir, &server.url("/echo"), n);
        println!(
            "round {round}: enqueue_all {all:.0} jobs/s; {n} POSTs: fire {:.0} req/s, together {:.2}x, delivery of a filled file {:.0} req/s ({:.2}x); CPU µs/req (process, server included): fire {:.1}, delivery {:.1} ({:.2}x)",
            r.fire,
            r.together / r.fire,
            r.delivery,
            r.delivery / r.fire,
            r.fire_cpu,
            r.delivery_cpu,
            r.delivery_cpu / r.fire_cpu
        );
    }
}

/// `ONLY=deliver`: `n` keyed POSTs into a fresh file by a producer,
/// then the file delivered; a profiler's control FIFO (`PERF_CTL`, for
/// `perf record --control fifo:PATH -D -1`) is told to record the
/// delivery alone.
fn deliver_only(dir: &std::path::Path, n: usize) {
    let server = common::Server::start();
    let url = server.url("/echo");
    let pool = Pool::new(16);
    let options = || {
        Outbox::options()
            .keep_replies(false)
            .retention(Duration::ZERO)
    };
    let path = dir.join("deliver.db");
    // `PERF_FILL=1`: the profiler records the filling instead.
    let fill = std::env::var_os("PERF_FILL").is_some();
    let perf = |what: &str, now: bool| {
        if let Ok(fifo) = std::env::var("PERF_CTL")
            && now
        {
            std::fs::write(fifo, format!("{what}\n")).expect("perf's control FIFO");
        }
    };
    let producer = options().deliver(false).open(&path, &pool).expect("open");
    perf("enable", fill);
    let t0 = Instant::now();
    let ids = producer.enqueue_all((0..n).map(|i| {
        pool.post(&url)
            .json_body(&json!({"item": i}))
            .idempotency_key(&format!("fill-{i}"))
    }));
    let took = t0.elapsed();
    perf("disable", fill);
    assert!(ids.iter().all(Result::is_ok));
    drop(producer);
    println!(
        "{n} POSTs into a file with enqueue_all: {:.0} jobs/s",
        n as f64 / took.as_secs_f64()
    );
    perf("enable", !fill);
    let t0 = Instant::now();
    let outbox = options().open(&path, &pool).expect("open");
    let left = outbox.flush_timeout(Duration::from_secs(600));
    let took = t0.elapsed();
    perf("disable", !fill);
    println!(
        "{n} POSTs, 16 workers: delivery of a filled file {:.0} req/s ({left} left)",
        n as f64 / took.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--child" {
        run(std::path::Path::new(&args[2]), &args[3]);
        return;
    }
    let dir = std::env::temp_dir().join(format!("reqpool-resumable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let only = std::env::var("ONLY").unwrap_or_default();
    if only == "deliver" {
        deliver_only(&dir, env("HISTORY", 50_000));
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    if only == "enqueue_all" {
        for round in 1..=env("ROUNDS", 1) {
            let all = enqueue_all_rate(&dir, Durability::Process, env("HISTORY", 100_000));
            println!("round {round}: enqueue_all {all:.0} jobs/s");
        }
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    if only == "speed" {
        speed(&dir, env("HISTORY", 50_000), env("ROUNDS", 1));
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (mut twice_all, mut lost_all, mut more_all) = (0, 0, 0);
    for run_no in 0..runs {
        let db = dir.join(format!("batch-{run_no}.db"));
        let (twice, more, lost) = kill_and_rerun(&db);
        twice_all += twice;
        more_all += more;
        lost_all += lost;
    }
    if runs > 1 {
        println!(
            "{runs} runs killed at random points: lost {lost_all}, sent twice {twice_all}, more than twice {more_all}"
        );
    }
    let server = common::Server::start();

    let rate = enqueue_rate(&dir, Durability::Process, 20_000, 1);
    let rate_fsync = enqueue_rate(&dir, Durability::PowerLoss, 2_000, 1);
    println!(
        "enqueue from one thread: {rate:.0} jobs/s (Durability::Process), {rate_fsync:.0} jobs/s (Durability::PowerLoss, an fsync per commit)"
    );
    let rate = enqueue_rate(&dir, Durability::Process, 20_000, 8);
    let rate_fsync = enqueue_rate(&dir, Durability::PowerLoss, 8_000, 8);
    println!(
        "enqueue from 8 threads (commits shared): {rate:.0} jobs/s (Durability::Process), {rate_fsync:.0} jobs/s (Durability::PowerLoss)"
    );
    let rate = enqueue_all_rate(&dir, Durability::Process, 100_000);
    let rate_fsync = enqueue_all_rate(&dir, Durability::PowerLoss, 20_000);
    println!(
        "enqueue_all from one thread: {rate:.0} jobs/s (Durability::Process), {rate_fsync:.0} jobs/s (Durability::PowerLoss)"
    );
    let n: usize = std::env::var("HISTORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let r = delivery_vs_fire(&dir, &server.url("/echo"), n);
    println!(
        "{n} POSTs, 16 workers: fire {:.0} req/s; outbox, enqueue and delivery together {:.0} req/s ({:.2}x), delivery of a filled file {:.0} req/s ({:.2}x); file after {n} delivered jobs (replies off, retention 0): {} KiB",
        r.fire,
        r.together,
        r.together / r.fire,
        r.delivery,
        r.delivery / r.fire,
        r.bytes / 1024
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(lost_all, 0, "jobs were lost");
}
