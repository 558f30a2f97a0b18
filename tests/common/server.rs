//! In-process HTTP/1.1 server on 127.0.0.1 with keep-alive (one thread
//! per connection), routed to a handler; the request parser and reply
//! writer the other servers share.

use super::*;

/// One parsed request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }
    /// The request's `Idempotency-Key` ("" without one).
    pub fn key(&self) -> String {
        self.headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default()
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, v: serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: vec![],
            body: serde_json::to_vec(&v).unwrap(),
        }
    }
    pub fn text(status: u16, content_type: &'static str, body: &str) -> Reply {
        Reply {
            status,
            content_type,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

pub type Handler = dyn Fn(&Req, &Shared) -> Reply + Send + Sync;

/// State shared by the server's threads, visible to tests.
#[derive(Default)]
pub struct Shared {
    pub requests: AtomicUsize,
    pub connections: AtomicUsize,
    pub log: Mutex<Vec<(Instant, String, String)>>,
    barrier: Mutex<usize>,
    barrier_cv: Condvar,
}

impl Shared {
    /// Waits until `n` requests have arrived at the barrier (or SERVER_WAIT
    /// passes); true if all came.
    pub fn barrier(&self, n: usize) -> bool {
        let mut count = self.barrier.lock().unwrap();
        *count += 1;
        self.barrier_cv.notify_all();
        let deadline = Instant::now() + SERVER_WAIT;
        while *count < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            count = self
                .barrier_cv
                .wait_timeout(count, deadline - now)
                .unwrap()
                .0;
        }
        true
    }

    /// How many requests hit `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, p)| p == path)
            .count()
    }

    /// Arrival times of requests to `path`.
    pub fn arrivals(&self, path: &str) -> Vec<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, p)| p == path)
            .map(|(t, _, _)| *t)
            .collect()
    }
}

/// A running HTTP server.
pub struct Server {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
}

impl Server {
    /// Starts a server with the default routes.
    pub fn start() -> Server {
        Server::with_handler(default_routes)
    }

    /// Starts a server with a handler of your own.
    pub fn with_handler(
        handler: impl Fn(&Req, &Shared) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Server::bind("127.0.0.1:0", handler)
    }

    /// Starts a server on a given address.
    pub fn bind(
        addr: &str,
        handler: impl Fn(&Req, &Shared) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind(addr).expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let sh = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                sh.connections.fetch_add(1, Ordering::SeqCst);
                let (sh, handler) = (sh.clone(), handler.clone());
                thread::spawn(move || serve_connection(stream, &sh, &*handler));
            }
        });
        Server { addr, shared }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

pub fn serve_connection(stream: TcpStream, shared: &Shared, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(SERVER_WAIT));
    let _ = stream.set_nodelay(true);
    serve(stream, shared, handler, None);
}

/// Serves requests on one connection (plain or TLS) until it closes, or
/// after `max_requests`.
pub fn serve<S: Read + Write>(
    stream: S,
    shared: &Shared,
    handler: &Handler,
    max_requests: Option<usize>,
) -> BufReader<S> {
    let mut reader = BufReader::new(stream);
    let mut served = 0;
    while let Some(req) = read_request(&mut reader) {
        shared.requests.fetch_add(1, Ordering::SeqCst);
        shared
            .log
            .lock()
            .unwrap()
            .push((Instant::now(), req.method.clone(), req.path.clone()));
        let close = req
            .headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let reply = handler(&req, shared);
        served += 1;
        let last = max_requests.is_some_and(|m| served >= m);
        let mut reply = reply;
        if last {
            reply.headers.push(("Connection".into(), "close".into()));
        }
        if write_reply(reader.get_mut(), &reply, req.method == "HEAD").is_err() || close || last {
            break;
        }
    }
    reader
}

/// Reads one request; None at EOF or on garbage.
pub fn read_request(reader: &mut impl BufRead) -> Option<Req> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
    let query = qs
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    Some(Req {
        method,
        path: path.to_string(),
        query,
        headers,
        body,
    })
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

pub fn write_reply(w: &mut impl Write, r: &Reply, head: bool) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head {
        bytes.extend_from_slice(&r.body);
    }
    w.write_all(&bytes)?;
    w.flush()
}
