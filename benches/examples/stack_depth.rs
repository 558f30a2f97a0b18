//! How much of a worker's stack a request touches, by way in and by
//! protocol: each case runs in a process of its own (glibc hands a new
//! thread the cached stack of one that ended, pages and all) on a pool of
//! one worker thread, then a closure job on that same thread reads the
//! resident size of its own stack mapping from `/proc/self/smaps` (a page
//! once touched stays resident, so this is the deepest the thread ever
//! went, rounded up to a page, with the thread's TLS and descriptor at the
//! top). A second run of each case paints the stack below the jobs'
//! frames first, and gives the deepest byte the case wrote. Linux only.
//!
//! `cargo run --release -p reqpool-benches --example stack_depth`
//! (`--features native-tls` adds the platform's TLS; `STACK=65536` runs
//! every case on workers of that stack size: a case that overflows it
//! aborts the process).

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use reqpool::Pool;
use serde_json::{Value, json};

/// The resident KiB of the mapping that holds this thread's stack.
fn stack_rss_kib() -> Option<usize> {
    let here = 0u8;
    let at = std::hint::black_box(&here) as *const u8 as usize;
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ')
            && let Some((lo, hi)) = range.split_once('-')
            && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            inside = (lo..hi).contains(&at);
            continue;
        }
        if inside && let Some(kib) = line.strip_prefix("Rss:") {
            return kib.trim().trim_end_matches(" kB").trim().parse().ok();
        }
    }
    None
}

/// The top of the mapping that holds this thread's stack.
fn stack_top() -> Option<usize> {
    let here = 0u8;
    let at = std::hint::black_box(&here) as *const u8 as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let (lo, hi) = line.split_once(' ')?.0.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        (lo..hi).contains(&at).then_some(hi)
    })
}

/// The byte painted below a job's frame before the case runs.
const PAINT: u8 = 0xA5;

/// Paints 96 KiB of this thread's stack below this frame; returns where.
#[inline(never)]
fn paint() -> (usize, usize) {
    let mut area = [PAINT; 96 * 1024];
    std::hint::black_box(&mut area);
    (area.as_ptr() as usize, area.len())
}

/// How deep below the top of its stack mapping this thread went since
/// `paint` painted `area`: the lowest byte no longer painted (read
/// through `/proc/self/mem`).
fn deepest(area: (usize, usize)) -> Option<usize> {
    use std::io::{Read, Seek, SeekFrom};
    let mut mem = std::fs::File::open("/proc/self/mem").ok()?;
    mem.seek(SeekFrom::Start(area.0 as u64)).ok()?;
    let mut bytes = vec![0u8; area.1];
    mem.read_exact(&mut bytes).ok()?;
    let lowest = bytes.iter().position(|&b| b != PAINT)?;
    Some(stack_top()? - (area.0 + lowest))
}

/// Runs `case` on a fresh one-worker pool from `builder`, then measures
/// that worker's stack; in the child process for case `n` only (the
/// parent runs a child per case, and another that paints the stack
/// first to find the deepest byte).
fn measure(
    n: &mut usize,
    name: &str,
    builder: reqpool::Builder,
    case: impl FnOnce(&Pool) -> Result<(), reqpool::Error>,
) {
    *n += 1;
    match std::env::var("STACK_DEPTH_CASE") {
        Ok(c) if c == n.to_string() => {}
        Ok(_) => return,
        Err(_) => {
            let me = std::env::current_exe().expect("this program");
            let run = |paint: bool| {
                let out = std::process::Command::new(&me)
                    .env("STACK_DEPTH_CASE", n.to_string())
                    .env("STACK_DEPTH_PAINT", if paint { "1" } else { "" })
                    .output()
                    .expect("a child");
                let text = String::from_utf8_lossy(&out.stdout);
                text.lines()
                    .find_map(|l| l.strip_prefix("RESULT "))
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("? the child ended: {}", out.status))
            };
            let (rss, deep) = (run(false), run(true));
            let (kib, outcome) = rss.split_once(' ').unwrap_or((&rss, ""));
            let deep = deep.split_once(' ').map_or("?", |d| d.0);
            println!("| {name} | {kib} | {deep} | {outcome} |");
            return;
        }
    }
    let mut builder = builder.workers(1);
    if let Ok(s) = std::env::var("STACK") {
        builder = builder.stack_size(s.parse().expect("STACK: bytes"));
    }
    let pool = builder.build().expect("pool");
    let painted = std::env::var("STACK_DEPTH_PAINT").is_ok_and(|p| p == "1");
    let area = match painted {
        true => pool.submit(|_| Ok(paint())).wait().ok(),
        false => None,
    };
    let outcome = case(&pool);
    let got = pool
        .submit(move |_| {
            Ok(match area {
                Some(area) => deepest(area).map(|b| format!("{:.1}", b as f64 / 1024.0)),
                None => stack_rss_kib().map(|k| k.to_string()),
            })
        })
        .wait()
        .ok()
        .flatten()
        .unwrap_or_else(|| "?".to_string());
    let outcome = outcome.map_or_else(|e| format!("failed: {e}"), |()| "ok".to_string());
    println!("RESULT {got} {outcome}");
}

fn main() {
    let server = Server::start();
    let ca = TestCa::new();
    let tls = TlsServer::start(&ca, None, default_routes);
    let long_head = Server::with_handler(|_, _| {
        Reply::json(200, json!({"ok": 1})).header("Set-Cookie", &"c".repeat(60 * 1024))
    });
    let plain = || Pool::builder();
    let trusting = || Pool::builder().tls_root_certs_pem(&ca.ca_pem);
    if std::env::var("STACK_DEPTH_CASE").is_err() {
        println!("| case | stack resident, KiB | deepest byte from the top, KiB | outcome |");
        println!("|---|---:|---:|---|");
        let bare = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(stack_rss_kib)
            .expect("a thread")
            .join()
            .ok()
            .flatten();
        let bare = bare.map_or("?".to_string(), |k| k.to_string());
        println!("| a bare std thread, no pool | {bare} | | ok |");
    }
    let n = &mut 0;
    measure(n, "idle worker (one closure job)", plain(), |_| Ok(()));
    measure(n, "GET, send()", plain(), |p| {
        p.get(&server.url("/json")).send().wait().map(drop)
    });
    measure(n, "POST JSON, json()", plain(), |p| {
        let r = p
            .post(&server.url("/json"))
            .json_body(&json!({"order": 17}));
        r.json::<Value>().wait().map(drop)
    });
    measure(n, "POST JSON, fire() + flush()", plain(), |p| {
        p.post(&server.url("/json"))
            .json_body(&json!({"order": 17}))
            .fire()?;
        p.flush();
        Ok(())
    });
    measure(n, "GET through a submit() closure", plain(), |p| {
        let url = server.url("/json");
        p.submit(move |agent| {
            let mut r = agent.get(&url).call().map_err(reqpool::Error::other)?;
            r.body_mut()
                .read_to_vec()
                .map(drop)
                .map_err(reqpool::Error::other)
        })
        .wait()
    });
    measure(
        n,
        "GET with a 40 KiB cookie (lent write buffer)",
        plain(),
        |p| {
            let cookie = format!("s={}", "c".repeat(40 * 1024));
            let r = p.get(&server.url("/json")).header("Cookie", &cookie);
            r.send().wait().map(drop)
        },
    );
    measure(n, "GET of a 60 KiB response head (spill)", plain(), |p| {
        p.get(&long_head.url("/")).send().wait().map(drop)
    });
    measure(n, "GET over https, rustls (handshake)", trusting(), |p| {
        p.get(&tls.url("/json")).send().wait().map(drop)
    });
    if cfg!(feature = "native-tls") {
        measure(
            n,
            "GET over https, native-tls (handshake)",
            trusting().tls_native(true),
            |p| p.get(&tls.url("/json")).send().wait().map(drop),
        );
    }
}
