//! Outbox tests that hold on every store (feature `outbox`): each takes
//! how to open an outbox with given options on a fresh store, so that
//! `outbox.rs` (a SQLite file) and `redis.rs` (a Redis stream) run the
//! same body.

use super::*;
use reqpool::{Outbox, OutboxOptions, Pool, RequestBuilder};

/// Opens an outbox with these options on the test's fresh store.
pub type Open<'a> = &'a dyn Fn(OutboxOptions, &Pool) -> Outbox;

/// A keyed POST: key `order-{i}`, body `{"order": i}`.
pub fn order(pool: &Pool, url: &str, i: usize) -> RequestBuilder {
    pool.post(url)
        .json_body(&serde_json::json!({"order": i}))
        .idempotency_key(&format!("order-{i}"))
}

/// A final status (422) makes a dead letter, listed with its key, its
/// redacted request and its error, and reported to the pool's `on_error`
/// hook; fixed on the server's side, `requeue` delivers it (once: a
/// second `requeue` finds nothing dead).
pub fn a_final_status_is_a_dead_letter_that_can_be_requeued(open: Open<'_>) {
    let status = Arc::new(AtomicUsize::new(422));
    let (server, keys) = keyed_server(status.clone());
    let hooked = Arc::new(AtomicUsize::new(0));
    let h = hooked.clone();
    let pool = Pool::builder()
        .workers(2)
        .on_error(move |e| {
            if e.status() == Some(422) {
                h.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let outbox = open(Outbox::options(), &pool);
    let id = outbox
        .enqueue(order(&pool, &server.url("/orders?page=2"), 1))
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let dead = outbox.dead().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].id, dead[0].key.as_str(), dead[0].attempts),
        (id, "order-1", 1)
    );
    assert!(dead[0].last_error.contains("422"), "{}", dead[0].last_error);
    assert!(
        dead[0].request.starts_with("POST http://127.0.0.1:"),
        "{}",
        dead[0].request
    );
    assert_eq!(hooked.load(Ordering::SeqCst), 1);
    assert_eq!(outbox.stats().unwrap().dead, 1);
    status.store(200, Ordering::SeqCst);
    assert!(outbox.requeue(id).unwrap());
    assert!(!outbox.requeue(id).unwrap());
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(outbox.reply(id).unwrap().map(|r| r.status), Some(200));
    assert_eq!(keys.lock().unwrap().get("order-1"), Some(&2));
    assert_eq!(outbox.stats().unwrap().dead, 0);
}

/// A host that keeps answering 503 is tried again at each delivery, with
/// the same key, until `max_attempts`, then the job is dead with the 503.
pub fn a_host_that_keeps_failing_is_retried_across_deliveries_then_dead(open: Open<'_>) {
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(503)));
    let pool = Pool::new(2);
    let outbox = open(Outbox::options().max_attempts(2), &pool);
    let id = outbox
        .enqueue(order(&pool, &server.url("/orders"), 5))
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let dead = outbox.dead().unwrap();
    assert_eq!((dead[0].id, dead[0].attempts), (id, 2));
    assert!(dead[0].last_error.contains("503"), "{}", dead[0].last_error);
    // Every delivery carried the same key.
    assert_eq!(keys.lock().unwrap().get("order-5"), Some(&2));
}

/// Each of the pool's own verdicts, row by row, on a fresh outbox each
/// (`open` gives a new store per call): a delivery that failed without the
/// server's final word is tried again and never dead unsent; a server
/// that hangs past the pool's timeout is a sent attempt, dead only at
/// `max_attempts`; a `200` too large to read is delivered, its reply cut;
/// a request's own settings are refused, not dropped. Before: 3 of 3 hung
/// jobs dead after 1 attempt, 8 of 10 behind an open circuit, 29 of 40
/// behind a rate limit and 26 of 30 behind a deadline dead, most unsent.
pub fn the_pools_own_verdicts_never_kill_a_job(open: Open<'_>) {
    let status = Arc::new(AtomicUsize::new(200));
    let (server, keys) = keyed_server(status.clone());
    let sent = |key: &str| keys.lock().unwrap().get(key).copied().unwrap_or(0);
    let deliver_all = |outbox: &Outbox, what: &str, n: usize| {
        assert_eq!(outbox.flush_timeout(LIMIT), 0, "{what}");
        let s = outbox.stats().unwrap();
        assert_eq!(
            (s.delivered, s.dead),
            (n as u64, 0),
            "{what}: {:?}",
            outbox.dead()
        );
    };

    // A server that hangs past the pool's timeout: sent, so each counts;
    // dead at max_attempts (2), not after the first.
    let pool = Pool::builder()
        .workers(2)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let outbox = open(Outbox::options().max_attempts(2), &pool);
    outbox
        .enqueue(order(&pool, &server.url("/hang?ms=1000"), 1))
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let dead = outbox.dead().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2, "{dead:?}");
    assert_eq!(sent("order-1"), 2);
    drop(outbox);

    // An open circuit: nothing sent while it is open, every job delivered
    // once it closes, even with one attempt allowed.
    let pool = Pool::builder()
        .workers(2)
        .circuit_breaker(
            reqpool::Breaker::new()
                .failures(1)
                .cool_down(Duration::from_millis(300)),
        )
        .build()
        .unwrap();
    status.store(500, Ordering::SeqCst);
    let _ = pool.get(&server.url("/trip")).send().wait();
    status.store(200, Ordering::SeqCst);
    let shut = pool.get(&server.url("/trip")).send().wait().unwrap_err();
    assert!(shut.is_circuit_open(), "{shut}");
    let outbox = open(Outbox::options().max_attempts(1), &pool);
    for i in 100..110 {
        outbox
            .enqueue(order(&pool, &server.url("/orders"), i))
            .unwrap();
    }
    deliver_all(&outbox, "open circuit", 10);
    assert!((100..110).all(|i| sent(&format!("order-{i}")) == 1));
    drop(outbox);

    // A rate limit with a timeout: jobs that would wait past the limit
    // are not sent, and go later.
    let pool = Pool::builder()
        .workers(4)
        .max_rate_per_host(50, Duration::from_secs(1))
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let outbox = open(Outbox::options().max_attempts(1), &pool);
    for i in 200..230 {
        outbox
            .enqueue(order(&pool, &server.url("/orders"), i))
            .unwrap();
    }
    // A job can die only once its request may have gone out (bytes
    // written) and was cut off at the time limit, after a rate-limit wait
    // that fit in it: never from the wait itself.
    let none_dead_unsent = |outbox: &Outbox, n: u64| {
        assert_eq!(outbox.flush_timeout(LIMIT), 0);
        let s = outbox.stats().unwrap();
        assert_eq!(s.delivered + s.dead, n);
        for d in outbox.dead().unwrap() {
            assert!(d.last_error.contains("at the time limit"), "{d:?}");
            assert!(sent(&d.key) <= 1, "{d:?}");
        }
    };
    none_dead_unsent(&outbox, 30);
    assert!((200..230).all(|i| sent(&format!("order-{i}")) <= 1));
    drop(outbox);

    // A pool deadline that passes in the queue: not sent, goes later.
    let pool = Pool::builder()
        .workers(1)
        .deadline(Duration::from_millis(60))
        .build()
        .unwrap();
    let outbox = open(Outbox::options().max_attempts(1), &pool);
    for i in 300..320 {
        outbox
            .enqueue(order(&pool, &server.url("/orders?ms=5"), i))
            .unwrap();
    }
    none_dead_unsent(&outbox, 20);
    drop(outbox);

    // A 200 whose body is over max_response_bytes: the server took it;
    // delivered, its reply marked cut, sent once.
    let pool = Pool::builder()
        .workers(1)
        .max_response_bytes(100)
        .build()
        .unwrap();
    let outbox = open(Outbox::options().max_attempts(1), &pool);
    let id = outbox
        .enqueue(
            pool.post(&server.url("/orders"))
                .json_body(&serde_json::json!({"pad": "x".repeat(500)}))
                .idempotency_key("big"),
        )
        .unwrap();
    deliver_all(&outbox, "too large", 1);
    let reply = outbox.reply(id).unwrap().expect("delivered");
    assert!(
        reply.cut && reply.body.is_empty() && reply.status == 200,
        "{reply:?}"
    );
    assert_eq!(sent("big"), 1);

    // A request's own settings are refused by name, nothing written.
    let url = server.url("/orders");
    for (req, name) in [
        (pool.post(&url).timeout(Duration::from_secs(1)), "timeout"),
        (pool.post(&url).deadline(Duration::from_secs(1)), "deadline"),
        (pool.post(&url).retry(reqpool::Retry::none()), "retry"),
        (pool.post(&url).follow_redirects(true), "follow_redirects"),
    ] {
        let e = outbox.enqueue(req).unwrap_err();
        assert!(
            matches!(e, reqpool::Error::Usage { .. }) && e.to_string().contains(name),
            "{e}"
        );
    }
    assert_eq!(outbox.stats().unwrap().delivered, 1);
}

/// A server that answers the key `retry-me` with a 503 and
/// `Retry-After: {secs}` the first time, anything else with 200 after
/// `?ms=` ms; it notes when each request of `retry-me` arrived and sends
/// on `tx` at the first.
pub fn retry_after_server(
    secs: u32,
    tx: crossbeam_channel::Sender<()>,
) -> (Server, Arc<std::sync::Mutex<Vec<Instant>>>) {
    let arrivals: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let a = arrivals.clone();
    let server = Server::with_handler(move |req, _| {
        let key = req.key();
        if key == "retry-me" {
            let mut a = a.lock().unwrap();
            a.push(Instant::now());
            if a.len() == 1 {
                let _ = tx.send(());
                return Reply::text(503, "text/plain", "busy")
                    .header("Retry-After", &secs.to_string());
            }
            return Reply::text(200, "text/plain", "ok");
        }
        if let Some(ms) = req.q("ms").and_then(|m| m.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        Reply::text(200, "text/plain", "ok")
    });
    (server, arrivals)
}

/// A retry is due at its time, not after the backlog: one job answered
/// 503 `Retry-After: 1` ahead of 10,000 queued jobs goes again 1-2 s
/// later, while the backlog still runs. Before: it went to the back of
/// the line (52 s behind 10,000 entries on Redis).
pub fn a_retry_goes_at_its_time_not_after_the_backlog(open: Open<'_>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (server, arrivals) = retry_after_server(1, tx);
    let pool = Pool::new(2);
    let outbox = open(Outbox::options(), &pool);
    outbox
        .enqueue(
            pool.post(&server.url("/orders"))
                .idempotency_key("retry-me"),
        )
        .unwrap();
    rx.recv_timeout(LIMIT).expect("the first delivery");
    let url = server.url("/orders?ms=1");
    for i in 0..10_000 {
        outbox.enqueue(order(&pool, &url, i)).unwrap();
    }
    let start = Instant::now();
    while arrivals.lock().unwrap().len() < 2 {
        assert!(start.elapsed() < LIMIT, "the retry never came");
        std::thread::sleep(Duration::from_millis(5));
    }
    let left = outbox.stats().unwrap().pending;
    let a = arrivals.lock().unwrap().clone();
    let gap = a[1] - a[0];
    eprintln!("the retry went {gap:?} after its 503, with {left} jobs still waiting");
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
    assert!(left > 0, "the backlog was done first");
    assert!(gap < Duration::from_millis(2500), "{gap:?}");
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
}

/// A server that echoes the request's headers sends back the token
/// `bearer_from` added and the secret header `before_attempt` added: the
/// reply is kept with both as `***`, and the store's bytes (`stored()`,
/// read after the outbox is dropped) never hold them.
pub fn hook_secrets_echoed_in_a_reply_are_not_kept(open: Open<'_>, stored: &dyn Fn() -> Vec<u8>) {
    let server = Server::start();
    let pool = Pool::builder()
        .bearer_from(|_| Ok("tok-SECRET-7".to_string()))
        .before_attempt(|a| {
            a.secret_header("X-Signature", "sig/SECRET 8");
            Ok(())
        })
        .build()
        .unwrap();
    let outbox = open(Outbox::options(), &pool);
    let id = outbox
        .enqueue(pool.post(&server.url("/headers")).idempotency_key("echo-1"))
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let reply = outbox.reply(id).unwrap().expect("kept");
    let text = String::from_utf8(reply.body).unwrap();
    // The echo is kept, without the secrets.
    assert!(text.contains("Bearer ***"), "{text}");
    assert!(text.contains("echo-1"), "{text}");
    for secret in ["tok-SECRET-7", "sig/SECRET 8", "SECRET"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    drop(outbox);
    let bytes = stored();
    assert!(bytes.windows(6).any(|w| w == b"echo-1"), "nothing stored");
    for secret in [&b"tok-SECRET-7"[..], b"SECRET"] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    }
}

/// `enqueue_all` writes many jobs in few commits, each with its own
/// outcome in the order given: a request that cannot be built and one
/// that carries a secret fail alone, a key already there (or given twice
/// in the batch) is the same job, every other job is delivered once.
pub fn enqueue_all_gives_each_job_its_own_outcome(open: Open<'_>) {
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(4);
    let outbox = open(Outbox::options(), &pool);
    let url = server.url("/orders");
    let before = outbox.enqueue(order(&pool, &url, 0)).unwrap();
    let mut batch: Vec<RequestBuilder> = (0..2_500).map(|i| order(&pool, &url, i)).collect();
    batch.push(pool.post("not a url").idempotency_key("bad"));
    batch.push(
        pool.post(&url)
            .bearer_auth("tok-SECRET")
            .idempotency_key("secret"),
    );
    batch.push(order(&pool, &url, 7));
    let out = outbox.enqueue_all(batch);
    assert_eq!(out.len(), 2_503);
    assert_eq!(
        out[0].as_ref().ok(),
        Some(&before),
        "a known key is its job"
    );
    assert!(out[1..2_500].iter().all(Result::is_ok));
    assert!(
        matches!(out[2_500], Err(reqpool::Error::InvalidRequest { .. })),
        "{:?}",
        out[2_500]
    );
    assert!(
        matches!(out[2_501], Err(reqpool::Error::Usage { .. })),
        "{:?}",
        out[2_501]
    );
    assert_eq!(
        out[2_502].as_ref().ok(),
        out[7].as_ref().ok(),
        "the same key twice"
    );
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let keys = keys.lock().unwrap();
    assert_eq!(keys.len(), 2_500);
    assert!(keys.values().all(|&n| n == 1));
}

/// The poison-job test on any store: a server that counts each key's
/// deliveries and, when the job `poison` arrives, tells the test (which
/// kills the process that sent it) and holds the request.
pub struct Poison {
    pub server: Server,
    pub keys: Arc<Mutex<HashMap<String, usize>>>,
    arrived: crossbeam_channel::Receiver<()>,
}

impl Poison {
    pub fn start() -> Poison {
        let (tx, arrived) = crossbeam_channel::unbounded();
        let (server, keys) = keyed_server_with(Arc::new(AtomicUsize::new(200)), move |key| {
            if key == "poison" {
                let _ = tx.send(());
                // Held until the test kills the process that sent it.
                std::thread::sleep(Duration::from_secs(5));
            }
        });
        Poison {
            server,
            keys,
            arrived,
        }
    }

    /// Enqueues the poison, then 20 ordinary jobs.
    pub fn fill(&self, outbox: &Outbox, pool: &Pool) {
        let url = self.server.url("/orders");
        outbox
            .enqueue(pool.post(&url).idempotency_key("poison"))
            .unwrap();
        for i in 0..20 {
            outbox.enqueue(order(pool, &url, i)).unwrap();
        }
    }

    /// Starts a child with `spawn` again and again, killing each when the
    /// poison arrives, until one ends by itself; returns how many ran.
    pub fn run_until_done(&self, spawn: &dyn Fn() -> std::process::Child) -> usize {
        let mut runs = 0;
        loop {
            assert!(runs < 10, "still not done after {runs} runs");
            runs += 1;
            let mut child = spawn();
            let arrived = self.arrived.clone();
            let killed = bounded(LIMIT, move || {
                loop {
                    if arrived.recv_timeout(Duration::from_millis(20)).is_ok() {
                        child.kill().unwrap();
                        child.wait().unwrap();
                        return true;
                    }
                    if child.try_wait().unwrap().is_some() {
                        return false;
                    }
                }
            });
            if !killed {
                return runs;
            }
        }
    }

    /// The poison is the one dead job, with the reason, sent a number of
    /// times in `sends`; the 20 others were delivered once each.
    pub fn check(&self, outbox: &Outbox, runs: usize, sends: std::ops::RangeInclusive<usize>) {
        assert_eq!(outbox.flush_timeout(LIMIT), 0);
        let dead = outbox.dead().unwrap();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].key, "poison");
        assert!(dead[0].last_error.contains("stopped"), "{dead:?}");
        let keys = self.keys.lock().unwrap();
        let poison = keys.get("poison").copied().unwrap_or(0);
        eprintln!("poison sent {poison} times in {runs} runs");
        assert!(sends.contains(&poison), "{poison} sends, {runs} runs");
        assert!(
            (0..20).all(|i| keys.get(&format!("order-{i}")) == Some(&1)),
            "{keys:?}"
        );
        assert_eq!(outbox.stats().unwrap().delivered, 20);
    }
}

/// A `Retry-After` the server gave is kept across a kill: the child that
/// `spawn` starts (given the server's URL) enqueues the job `retry-me`
/// and delivers it; it is killed 300 ms after the 503 with
/// `Retry-After: 2`, and the outbox `reopen` gives (the next process, or
/// a consumer that takes the job over) sends it no sooner than 2 s after
/// the 503.
pub fn a_retry_after_survives_a_kill(
    spawn: &dyn Fn(&str) -> std::process::Child,
    reopen: &dyn Fn(&Pool) -> Outbox,
) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (server, arrivals) = retry_after_server(2, tx);
    let mut child = spawn(&server.url("/orders"));
    rx.recv_timeout(LIMIT).expect("the first delivery");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let pool = Pool::new(1);
    let outbox = reopen(&pool);
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let a = arrivals.lock().unwrap().clone();
    assert_eq!(a.len(), 2);
    let gap = a[1] - a[0];
    eprintln!("sent again {gap:?} after the 503");
    assert!(gap >= Duration::from_secs(2), "{gap:?}");
    assert!(gap < Duration::from_millis(3500), "{gap:?}");
}

/// The order-key test: 1,000 jobs over 10 order keys (job `i` is the
/// `i / 10`-th of key `k{i % 10}`).
pub const ORDERED: usize = 1_000;
pub const ORDER_KEYS: usize = 10;

/// The options of every consumer of the order-key test: retries soon
/// (the test's 503s), a short lease (the killed consumer's jobs go on).
pub fn ordered_options() -> OutboxOptions {
    Outbox::options().retry(
        reqpool::Retry::standard()
            .max_attempts(20)
            .backoff(Duration::from_millis(20), Duration::from_millis(100))
            .statuses(&[503]),
    )
}

/// Enqueues the order-key test's jobs, in order, each under its key, then
/// says so with the file `done`.
pub fn enqueue_ordered_jobs(outbox: &Outbox, pool: &Pool, url: &str, done: &std::path::Path) {
    for i in 0..ORDERED {
        let (key, seq) = (i % ORDER_KEYS, i / ORDER_KEYS);
        outbox
            .enqueue_ordered(
                &format!("k{key}"),
                pool.post(url)
                    .json_body(&serde_json::json!({"key": key, "seq": seq}))
                    .idempotency_key(&format!("job-{i}")),
            )
            .unwrap();
    }
    std::fs::write(done, "").unwrap();
}

/// What the order-key test's server saw.
#[derive(Default)]
struct OrderSeen {
    /// Per key: the next job it may start (every one before it answered
    /// 200), and the jobs that arrived out of turn.
    next: HashMap<usize, usize>,
    violations: Vec<String>,
    /// Per key: the jobs in the handler now (a job sent again while its
    /// killed sender's request is still there is one job); the most jobs
    /// of one key at once.
    running: HashMap<usize, Vec<usize>>,
    most_of_one_key: usize,
    /// Keys with a request in the handler at once, at most.
    most_keys: usize,
    /// Deliveries per job, and its 503s given.
    arrivals: HashMap<(usize, usize), usize>,
    distinct: usize,
}

/// Per-key order on any store: the child that `spawn` starts (given the
/// server's URL and a file to write once it enqueued everything) enqueues
/// the 1,000 jobs with [`enqueue_ordered_jobs`] and delivers them with
/// [`ordered_options`]; it is killed (`SIGKILL`) after 300 of them. With
/// `beside`, a second consumer (`reopen`) delivers beside it from the
/// start (a store many processes share); otherwise it opens after the
/// kill. The server answers a job's first delivery with a 503 one time in
/// seven. At the server: a job of a key first arrives only after the one
/// before it was answered 200, no two jobs of a key are in the handler at
/// once, and at least 5 keys are.
pub fn per_key_order_holds_across_503s_and_a_kill(
    spawn: &dyn Fn(&str, &std::path::Path) -> std::process::Child,
    reopen: &dyn Fn(&Pool) -> Outbox,
    beside: bool,
) {
    let seen: Arc<Mutex<OrderSeen>> = Arc::default();
    let s = seen.clone();
    let server = Server::with_handler(move |req, _| {
        let body = req.json().unwrap_or_default();
        let key = body["key"].as_u64().unwrap_or(0) as usize;
        let seq = body["seq"].as_u64().unwrap_or(0) as usize;
        let first = {
            let mut s = s.lock().unwrap();
            let n = s.arrivals.entry((key, seq)).or_default();
            *n += 1;
            let first = *n == 1;
            if first {
                s.distinct += 1;
                let next = s.next.get(&key).copied().unwrap_or(0);
                if seq != next {
                    s.violations.push(format!(
                        "key {key}: job {seq} arrived while {next} was not done"
                    ));
                }
            }
            s.running.entry(key).or_default().push(seq);
            let mut jobs = s.running[&key].clone();
            jobs.sort_unstable();
            jobs.dedup();
            s.most_of_one_key = s.most_of_one_key.max(jobs.len());
            let keys = s.running.values().filter(|v| !v.is_empty()).count();
            s.most_keys = s.most_keys.max(keys);
            first
        };
        // In the handler a little while, so that keys overlap.
        std::thread::sleep(Duration::from_millis(5));
        let mut s = s.lock().unwrap();
        let running = s.running.get_mut(&key).unwrap();
        if let Some(at) = running.iter().position(|&j| j == seq) {
            running.remove(at);
        }
        if first && (key * 13 + seq * 5) % 7 == 3 {
            return Reply::json(503, serde_json::json!({"later": true}));
        }
        let next = s.next.entry(key).or_default();
        if *next == seq {
            *next += 1;
        }
        Reply::json(200, serde_json::json!({"ok": true}))
    });
    let dir = TempDir::new("ordered");
    let enqueued = dir.file("enqueued");
    let url = server.url("/hooks");
    let mut child = spawn(&url, &enqueued);
    let pool = Pool::new(16);
    let mut survivor = beside.then(|| reopen(&pool));
    let t0 = Instant::now();
    while !(enqueued.exists() && seen.lock().unwrap().distinct >= 300) {
        assert!(
            t0.elapsed() < LIMIT,
            "the child did not get to 300 jobs: {} delivered, enqueued: {}",
            seen.lock().unwrap().distinct,
            enqueued.exists()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = seen.lock().unwrap().distinct;
    let outbox = survivor.take().unwrap_or_else(|| reopen(&pool));
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let s = seen.lock().unwrap();
    let twice = s.arrivals.values().filter(|&&n| n > 1).count();
    eprintln!(
        "order: {ORDERED} jobs over {ORDER_KEYS} keys in {:?}, killed at {at_kill}; \
         violations {}, most of one key at once {}, most keys at once {}, jobs sent more than once (503s included) {twice}",
        t0.elapsed(),
        s.violations.len(),
        s.most_of_one_key,
        s.most_keys
    );
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert_eq!(s.distinct, ORDERED, "lost jobs");
    assert!(
        (0..ORDER_KEYS).all(|k| s.next.get(&k) == Some(&(ORDERED / ORDER_KEYS))),
        "every job of every key done in turn"
    );
    assert_eq!(s.most_of_one_key, 1, "two jobs of one key at once");
    assert!(s.most_keys >= 5, "only {} keys at once", s.most_keys);
    let st = outbox.stats().unwrap();
    assert_eq!((st.pending, st.in_flight, st.dead), (0, 0, 0), "{st:?}");
}

/// With `pause_on_gone`, a `410 Gone` kills its job and pauses its
/// endpoint: the other jobs to that URL are not sent (they wait, pending)
/// while jobs to other URLs go; `resume` sends them. Without it a 410
/// kills its job only.
pub fn a_410_pauses_its_endpoint_until_resumed(open: Open<'_>) {
    let gone = Arc::new(AtomicUsize::new(1));
    let g = gone.clone();
    let server = Server::with_handler(move |req, _| {
        if req.path == "/gone" && g.load(Ordering::SeqCst) == 1 {
            Reply::json(410, serde_json::json!({}))
        } else {
            Reply::json(200, serde_json::json!({}))
        }
    });
    let (gone_url, other_url) = (server.url("/gone"), server.url("/other"));
    let pool = Pool::new(2);
    let outbox = open(Outbox::options().pause_on_gone(true), &pool);
    let first = outbox.enqueue(order(&pool, &gone_url, 0)).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(outbox.dead().unwrap()[0].id, first);
    assert_eq!(outbox.paused(), vec![gone_url.clone()]);
    for i in 1..=5 {
        outbox.enqueue(order(&pool, &gone_url, i)).unwrap();
    }
    for i in 6..=8 {
        outbox.enqueue(order(&pool, &other_url, i)).unwrap();
    }
    assert_eq!(hits_when(&server, "/other", 3), 3);
    // The paused ones stay: a short flush leaves them (and sends none).
    assert_eq!(outbox.flush_timeout(Duration::from_millis(300)), 5);
    assert_eq!(server.shared.hits("/gone"), 1);
    let s = outbox.stats().unwrap();
    assert_eq!((s.pending + s.in_flight, s.dead), (5, 1));
    // Resumed (the endpoint wants them again): they go; the dead one stays.
    gone.store(0, Ordering::SeqCst);
    assert!(outbox.resume(&gone_url));
    assert!(!outbox.resume(&gone_url));
    assert!(outbox.paused().is_empty());
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(server.shared.hits("/gone"), 6);
    assert_eq!(outbox.stats().unwrap().dead, 1);
    drop(outbox);

    // Without the option a 410 kills its job only.
    gone.store(1, Ordering::SeqCst);
    let outbox = open(Outbox::options(), &pool);
    outbox.enqueue(order(&pool, &gone_url, 100)).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert!(outbox.paused().is_empty());
    outbox.enqueue(order(&pool, &gone_url, 101)).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(server.shared.hits("/gone"), 8);
}
