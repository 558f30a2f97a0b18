//! Every way a request reaches a pool, as one table: a rule that applies
//! to requests is tested over `PATHS`, not once per path.

use super::*;
use crossbeam_channel::Receiver;
use reqpool::{Error, Pending, Pool, Retry};
use serde_json::{Value, json};

/// Every way a request reaches the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Json,
    Send,
    Fire,
    FireDetached,
    Poll,
    Burst,
    Submit,
}

pub const PATHS: [Path; 7] = [
    Path::Json,
    Path::Send,
    Path::Fire,
    Path::FireDetached,
    Path::Poll,
    Path::Burst,
    Path::Submit,
];

/// A request to make through a path.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub url: String,
    /// A small JSON body (`{"order": 17}`), or none.
    pub body: bool,
    /// A poll job's own time limit (the pool's if `None`).
    pub timeout: Option<Duration>,
    /// An `Idempotency-Key` for the paths through the request builder.
    pub key: Option<String>,
    /// Headers of the caller's, on every path.
    pub headers: Vec<(String, String)>,
}

impl Call {
    pub fn new(method: &str, url: &str, body: bool) -> Call {
        Call {
            method: method.to_string(),
            url: url.to_string(),
            body,
            timeout: None,
            key: None,
            headers: Vec::new(),
        }
    }

    pub fn get(url: &str) -> Call {
        Call::new("GET", url, false)
    }

    pub fn timeout(mut self, limit: Duration) -> Call {
        self.timeout = Some(limit);
        self
    }

    pub fn key(mut self, key: &str) -> Call {
        self.key = Some(key.to_string());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// The standard retries (3 attempts), without the long waits.
pub fn fast_retry() -> Retry {
    Retry::standard().backoff(Duration::from_millis(1), Duration::from_millis(5))
}

/// A pool whose fired jobs report their errors on the returned channel.
pub fn pool_with(b: reqpool::Builder) -> (Pool, Receiver<Error>) {
    let (tx, rx) = crossbeam_channel::bounded(256);
    let pool = b
        .on_error(move |e| {
            let _ = tx.try_send(clone_error(e));
        })
        .build()
        .unwrap();
    (pool, rx)
}

/// Enough of an error to assert on, from a hook that only borrows it.
pub fn clone_error(e: &Error) -> Error {
    match e.last_attempt() {
        Error::Timeout { phase, .. } => Error::Timeout {
            phase: *phase,
            method: String::new(),
            url: String::new(),
        },
        Error::CircuitOpen { host, retry_in } => Error::CircuitOpen {
            host: host.clone(),
            retry_in: *retry_in,
        },
        other => Error::other(other.to_string()),
    }
}

/// A request's outcome, once known: call it to block until then.
pub type Outcome = Box<dyn FnOnce() -> Result<(), Error> + Send>;

/// Starts `call` through `path`. The outcome of a fire is the error its
/// hook reported by the time a flush returns; of the others, their
/// `Pending`'s.
pub fn through(pool: &Pool, errors: &Receiver<Error>, path: Path, call: &Call) -> Outcome {
    let req = || {
        let mut r = pool.request(&call.method, &call.url);
        if let Some(k) = &call.key {
            r = r.idempotency_key(k);
        }
        for (k, v) in &call.headers {
            r = r.header(k, v);
        }
        if call.body {
            r.json_body(&json!({"order": 17}))
        } else {
            r
        }
    };
    let outcome = |p: Pending<()>| -> Outcome { Box::new(move || p.wait()) };
    match path {
        Path::Json => outcome(req().json::<Value>().map(drop)),
        Path::Send => outcome(req().send().map(drop)),
        Path::Fire | Path::FireDetached => {
            while errors.try_recv().is_ok() {}
            let fired = if path == Path::Fire {
                req().fire()
            } else {
                req().fire_detached()
            };
            let (pool, errors) = (pool.clone(), errors.clone());
            Box::new(move || {
                fired?;
                let left = pool.flush();
                if left > 0 {
                    return Err(Error::other(format!("{left} left after a flush")));
                }
                errors.try_recv().map_or(Ok(()), Err)
            })
        }
        Path::Poll => {
            let mut poll = req().poll();
            if let Some(t) = call.timeout {
                poll = poll.timeout(t);
            }
            let job = poll
                .status_url(|_| Some(".".to_string()))
                .every(Duration::from_millis(5))
                .until(|_| true);
            outcome(job.map(drop))
        }
        Path::Burst | Path::Submit => {
            let c = call.clone();
            let job = move |agent: &reqpool::ureq::Agent| -> Result<(), Error> {
                let r = match (c.method.as_str(), c.body) {
                    ("POST", body) => {
                        let mut r = agent.post(&c.url);
                        for (k, v) in &c.headers {
                            r = r.header(k, v);
                        }
                        if body {
                            r.send_json(json!({"order": 17}))
                        } else {
                            r.send_empty()
                        }
                    }
                    _ => {
                        let mut r = agent.get(&c.url);
                        for (k, v) in &c.headers {
                            r = r.header(k, v);
                        }
                        r.call()
                    }
                };
                let mut resp = r.map_err(Error::other)?;
                // Read to the end: a trickling body holds the job.
                resp.body_mut()
                    .read_to_vec()
                    .map(drop)
                    .map_err(Error::other)
            };
            if path == Path::Submit {
                outcome(pool.submit(job))
            } else {
                let mut parties = pool
                    .burst(1, LIMIT, |_| Ok(()), move |agent, ()| job(agent))
                    .unwrap();
                outcome(parties.remove(0))
            }
        }
    }
}

/// Sends `method url` (a JSON body if `body`) through `path` and blocks
/// (at most `LIMIT`) until its outcome is known.
pub fn send_through(
    pool: &Pool,
    errors: &Receiver<Error>,
    path: Path,
    method: &str,
    url: &str,
    body: bool,
) -> Result<(), Error> {
    let wait = through(pool, errors, path, &Call::new(method, url, body));
    bounded(LIMIT, wait)
}

/// The hits on `path`, once there are at least `want` (or the server's
/// wait has passed): a detached fire is done once written, before the
/// server has read it.
pub fn hits_when(server: &Server, path: &str, want: usize) -> usize {
    let stop = Instant::now() + SERVER_WAIT;
    loop {
        let n = server.shared.hits(path);
        if n >= want || Instant::now() > stop {
            return n;
        }
        std::thread::yield_now();
    }
}
