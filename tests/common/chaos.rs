//! The chaos soak: a seeded fault server and a seeded mix of client
//! operations, with the checks that every handle resolves in time, the
//! stats add up, and nothing leaks. Shared by `tests/soak.rs` (short runs)
//! and `examples/soak.rs` (long runs).
#![allow(dead_code, unreachable_pub)]

use crate::common::{Req, read_request, rss_kib};
use reqpool::{Completions, Error, Pool};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A small seeded generator (splitmix64): the same seed, the same run.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the fault server does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Ok,
    Slow,
    ServerError,
    TooMany,
    Reset,
    Stall,
    Trickle,
    CloseMidBody,
    GzipBomb,
}

impl Act {
    /// About 45 % faults.
    fn pick(rng: &mut Rng) -> Act {
        match rng.below(100) {
            0..=44 => Act::Ok,
            45..=54 => Act::Slow,
            55..=64 => Act::ServerError,
            65..=69 => Act::TooMany,
            70..=77 => Act::Reset,
            78..=82 => Act::Stall,
            83..=87 => Act::Trickle,
            88..=94 => Act::CloseMidBody,
            _ => Act::GzipBomb,
        }
    }

    pub fn is_fault(self) -> bool {
        !matches!(self, Act::Ok | Act::Slow)
    }
}

/// A server that answers each request with a seeded act.
pub struct ChaosServer {
    pub addr: SocketAddr,
    pub acts: Arc<Mutex<[u64; 9]>>,
    /// Connection threads alive now.
    pub live: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
}

impl ChaosServer {
    pub fn start(seed: u64) -> ChaosServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let counter = Arc::new(AtomicU64::new(0));
        let acts = Arc::new(Mutex::new([0u64; 9]));
        let live = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let bomb = Arc::new(gzip_bomb());
        let (a, l, r) = (acts.clone(), live.clone(), requests.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (counter, acts, live, requests, bomb) = (
                    counter.clone(),
                    a.clone(),
                    l.clone(),
                    r.clone(),
                    bomb.clone(),
                );
                live.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    serve(stream, seed, &counter, &acts, &requests, &bomb);
                    live.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        ChaosServer {
            addr,
            acts,
            live,
            requests,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Of the requests served, how many got a fault.
    pub fn faults(&self) -> (u64, u64) {
        let a = self.acts.lock().unwrap();
        let all: u64 = a.iter().sum();
        (a[2..].iter().sum(), all)
    }
}

fn gzip_bomb() -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..4 {
        enc.write_all(&zeros).unwrap();
    }
    enc.finish().unwrap()
}

fn serve(
    stream: TcpStream,
    seed: u64,
    counter: &AtomicU64,
    acts: &Mutex<[u64; 9]>,
    requests: &AtomicUsize,
    bomb: &[u8],
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nodelay(true);
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        requests.fetch_add(1, Ordering::SeqCst);
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let mut rng = Rng::new(seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let act = Act::pick(&mut rng);
        acts.lock().unwrap()[act as usize] += 1;
        if !answer(&mut w, &req, act, &mut rng, bomb) {
            return;
        }
    }
}

/// Answers one request; false to close the connection.
fn answer(w: &mut TcpStream, req: &Req, act: Act, rng: &mut Rng, bomb: &[u8]) -> bool {
    let body = format!("{{\"ok\":true,\"path\":\"{}\"}}", req.path);
    let head = |status: &str, extra: &str, len: usize| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n{extra}\r\n"
        )
    };
    let send = |w: &mut TcpStream, bytes: &[u8]| w.write_all(bytes).and_then(|_| w.flush()).is_ok();
    match act {
        Act::Ok => send(
            w,
            format!("{}{body}", head("200 OK", "", body.len())).as_bytes(),
        ),
        Act::Slow => {
            thread::sleep(Duration::from_millis(20 + rng.below(200)));
            send(
                w,
                format!("{}{body}", head("200 OK", "", body.len())).as_bytes(),
            )
        }
        Act::ServerError => {
            let status = [
                "500 Internal Server Error",
                "502 Bad Gateway",
                "503 Service Unavailable",
            ][rng.below(3) as usize];
            send(
                w,
                format!("{}{body}", head(status, "", body.len())).as_bytes(),
            )
        }
        Act::TooMany => send(
            w,
            format!(
                "{}{body}",
                head("429 Too Many Requests", "Retry-After: 0\r\n", body.len())
            )
            .as_bytes(),
        ),
        Act::Reset => false,
        Act::Stall => {
            thread::sleep(Duration::from_millis(600));
            false
        }
        Act::Trickle => {
            let all = format!("{}{body}", head("200 OK", "", body.len()));
            for b in all.bytes().take(40) {
                if !send(w, &[b]) {
                    return false;
                }
                thread::sleep(Duration::from_millis(15));
            }
            false
        }
        Act::CloseMidBody => {
            let all = format!("{}{body}", head("200 OK", "", body.len()));
            let _ = send(w, &all.as_bytes()[..all.len() - body.len() / 2]);
            false
        }
        Act::GzipBomb => {
            let h = head("200 OK", "Content-Encoding: gzip\r\n", bomb.len());
            send(w, h.as_bytes()) && send(w, bomb)
        }
    }
}

/// What one soak run found.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub seed: u64,
    pub rounds: usize,
    pub handles: u64,
    pub fired: u64,
    pub resolved: u64,
    pub late: u64,
    pub worst_late: Duration,
    pub unresolved: u64,
    pub server_requests: u64,
    pub faults: u64,
    pub stats_mismatch: Vec<String>,
    pub fds: (usize, usize),
    pub threads: (usize, usize),
    pub rss_halves_kib: (u64, u64),
    pub took: Duration,
}

impl Report {
    /// Everything a soak must hold, as one list of broken promises.
    pub fn broken(&self) -> Vec<String> {
        let mut out = self.stats_mismatch.clone();
        if self.unresolved > 0 {
            out.push(format!("{} handles unresolved", self.unresolved));
        }
        if self.late > 0 {
            out.push(format!(
                "{} handles late, worst by {:?}",
                self.late, self.worst_late
            ));
        }
        if self.fds.1 > self.fds.0 {
            out.push(format!("descriptors {} -> {}", self.fds.0, self.fds.1));
        }
        if self.threads.1 > self.threads.0 {
            out.push(format!("threads {} -> {}", self.threads.0, self.threads.1));
        }
        out
    }
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// How late a handle may resolve past its deadline: the waiter's grace
/// (250 ms) and room for a loaded 2-core machine.
pub const LATE: Duration = Duration::from_millis(250 + 750);

/// Runs `rounds` rounds of `per_round` operations against a fresh chaos
/// server, one pool per round; one round (the middle one) is shut down
/// with `shutdown_now` halfway through.
pub fn soak(seed: u64, rounds: usize, per_round: usize, workers: usize) -> Report {
    let t0 = Instant::now();
    let server = ChaosServer::start(seed);
    let mut report = Report {
        seed,
        rounds,
        ..Report::default()
    };
    // Warm up what the process keeps for good (ureq's statics, the exit
    // hook), then count descriptors and threads.
    {
        let p = Pool::new(1);
        let _ = p.get(&server.url("/warm")).send().wait();
    }
    settle(&server);
    let fds0 = count_dir("/proc/self/fd");
    let threads0 = count_dir("/proc/self/task");
    let mut rss = (0u64, 0u64);
    let mut rng = Rng::new(seed);
    for round in 0..rounds {
        let deadline = Duration::from_millis(2000);
        let pool = Pool::builder()
            .workers(workers)
            .timeout(Duration::from_millis(400))
            .deadline(deadline)
            .max_response_bytes(1 << 20)
            .retry(
                reqpool::Retry::standard()
                    .backoff(Duration::from_millis(1), Duration::from_millis(20)),
            )
            .drain_timeout(Duration::from_secs(10))
            // The producer waits for room: the queue never holds more than
            // the workers can start before the deadline.
            .max_queued(workers * 8)
            .build()
            .unwrap();
        // A collector takes each handle as it resolves, on its own thread,
        // so a producer blocked on a full queue does not delay the check.
        let (handles_tx, handles_rx) =
            crossbeam_channel::unbounded::<(Instant, reqpool::Pending<()>)>();
        let collector = thread::spawn(move || collect(handles_rx, deadline));
        let mut count = 0u64;
        let shutdown_at = (round == rounds / 2).then_some(per_round / 2);
        let mut fired = 0u64;
        for i in 0..per_round {
            if Some(i) == shutdown_at {
                let p = pool.clone();
                thread::spawn(move || p.shutdown_now());
            }
            let url = server.url(&format!("/r{}", rng.below(1000)));
            let now = Instant::now();
            let mut pick = rng.below(100);
            if let Some(only) = std::env::var("SOAK_ONLY")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            {
                pick = only;
            }
            let handle = match pick {
                0..=59 => Some(pool.get_json::<serde_json::Value>(&url).map(drop)),
                60..=69 => {
                    if pool
                        .post(&url)
                        .json_body(&serde_json::json!({"i": i}))
                        .fire()
                        .is_ok()
                    {
                        fired += 1;
                    }
                    None
                }
                70..=77 => {
                    let p = pool.get(&url).send().map(drop);
                    if rng.below(2) == 0 {
                        p.cancel();
                    }
                    Some(p)
                }
                78..=85 => {
                    let (p, u) = (pool.clone(), url.clone());
                    Some(pool.submit(move |_| p.get_json::<serde_json::Value>(&u).wait().map(drop)))
                }
                86..=92 => {
                    let tiers = (0..3)
                        .map(|_| pool.get_json::<serde_json::Value>(&url))
                        .collect();
                    Some(pool.submit(move |_| {
                        reqpool::first_success(tiers)
                            .map(drop)
                            .map_err(Error::other)
                    }))
                }
                _ => {
                    let mut inner = Completions::new();
                    for k in 0..3 {
                        inner.push(k, pool.get_json::<serde_json::Value>(&url));
                    }
                    Some(pool.submit(move |_| {
                        inner.for_each(drop);
                        Ok(())
                    }))
                }
            };
            if let Some(h) = handle {
                count += 1;
                let _ = handles_tx.send((now, h));
            }
        }
        drop(handles_tx);
        report.fired += fired;
        report.handles += count;
        let c = collector.join().unwrap();
        report.resolved += c.resolved;
        report.late += c.late;
        report.worst_late = report.worst_late.max(c.worst_late);
        report.unresolved += c.unresolved;
        // Every handle is resolved; let the jobs given up on (closures
        // still running past their limit) end too, then count.
        let closing = pool.shutdown_timeout(Duration::from_secs(20));
        if closing.abandoned > 0 {
            report.stats_mismatch.push(format!(
                "round {round}: {} jobs did not end",
                closing.abandoned
            ));
        }
        let s = pool.stats();
        let ended = s.succeeded + s.failed + s.cancelled;
        if s.submitted != ended || s.queued + s.running + s.scheduled + s.throttled != 0 {
            report.stats_mismatch.push(format!("round {round}: {s:?}"));
        }
        if s.fired != fired {
            report
                .stats_mismatch
                .push(format!("round {round}: fired {fired}, counted {}", s.fired));
        }
        drop(pool);
        let r = rss_kib();
        if round < rounds / 2 {
            rss.0 = rss.0.max(r);
        } else {
            rss.1 = rss.1.max(r);
        }
    }
    settle(&server);
    report.fds = (fds0, count_dir("/proc/self/fd"));
    report.threads = (threads0, count_dir("/proc/self/task"));
    report.rss_halves_kib = rss;
    let (faults, all) = server.faults();
    report.faults = faults;
    report.server_requests = all;
    report.took = t0.elapsed();
    report
}

/// What the collector saw.
#[derive(Default)]
struct Collected {
    resolved: u64,
    late: u64,
    worst_late: Duration,
    unresolved: u64,
}

/// Takes handles as the producer makes them and checks each against its
/// deadline when it resolves; stops when the producer is done and every
/// handle is out (or long after the last deadline).
fn collect(
    handles: crossbeam_channel::Receiver<(Instant, reqpool::Pending<()>)>,
    deadline: Duration,
) -> Collected {
    let mut set = Completions::new();
    let mut out = Collected::default();
    let mut open = true;
    let mut last_submit = Instant::now();
    loop {
        loop {
            match handles.try_recv() {
                Ok((at, h)) => {
                    last_submit = at;
                    set.push(at, h);
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if !open && set.progress().in_flight == 0 {
            break;
        }
        if !open && Instant::now() > last_submit + deadline + Duration::from_secs(20) {
            out.unresolved = set.progress().in_flight as u64;
            break;
        }
        if let Some((at, _result)) = set.next_timeout(Duration::from_millis(2)) {
            out.resolved += 1;
            let late = Instant::now().saturating_duration_since(at + deadline);
            if late > LATE {
                out.late += 1;
                out.worst_late = out.worst_late.max(late);
            }
        } else if set.progress().in_flight == 0 && open {
            // Nothing to wait on yet: wait for the producer.
            if let Ok((at, h)) = handles.recv_timeout(Duration::from_millis(50)) {
                last_submit = at;
                set.push(at, h);
            }
        }
    }
    out
}

/// Waits (bounded) until the server's connection threads and the pools'
/// threads are gone.
fn settle(server: &ChaosServer) {
    let stop = Instant::now() + Duration::from_secs(10);
    while server.live.load(Ordering::SeqCst) > 0 && Instant::now() < stop {
        thread::sleep(Duration::from_millis(10));
    }
    // Worker, timer and connection threads end on their own once their
    // pool is gone; give them a moment.
    let mut last = count_dir("/proc/self/task");
    while Instant::now() < stop {
        thread::sleep(Duration::from_millis(50));
        let now = count_dir("/proc/self/task");
        if now == last {
            break;
        }
        last = now;
    }
}
