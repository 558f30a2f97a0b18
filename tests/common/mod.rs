//! In-process servers on 127.0.0.1, port 0, for tests, examples and benches.
//!
//! `Server` is a small HTTP/1.1 server with keep-alive (one thread per
//! connection) that routes to a handler; `default_routes` has the endpoints
//! the tests use. `Fault` is a raw `TcpListener` that misbehaves on purpose.
//! Every thread here stops by itself: reads time out after 10 s of silence.
// Each test binary, example and bench uses a different part of it, and
// `pub` here is for those users, not for a public API.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The bound on any wait of a test: a bug fails the test instead of
/// hanging CI.
pub const LIMIT: Duration = Duration::from_secs(30);

/// How long any server-side wait may last before it gives up.
pub const SERVER_WAIT: Duration = Duration::from_secs(10);

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

type Handler = dyn Fn(&Req, &Shared) -> Reply + Send + Sync;

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

fn serve_connection(stream: TcpStream, shared: &Shared, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(SERVER_WAIT));
    let _ = stream.set_nodelay(true);
    serve(stream, shared, handler, None);
}

/// Serves requests on one connection (plain or TLS) until it closes, or
/// after `max_requests`.
fn serve<S: Read + Write>(
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

/// A private CA and a certificate for 127.0.0.1 and `localhost` signed by
/// it, made at test time.
pub struct TestCa {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "reqpool test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            server: server_config(vec![cert.der().clone(), ca.der().clone()], &key),
        }
    }
}

impl TestCa {
    /// What `openssl req -x509` (and `uvicorn --ssl-certfile` users) make:
    /// one self-signed certificate for 127.0.0.1, marked as a CA, used as
    /// the server's own. `ca_pem` is that certificate.
    pub fn self_signed_dev() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            ca_pem: cert.pem(),
            server: server_config(vec![cert.der().clone()], &key),
        }
    }
}

/// A rustls server presenting `chain` with `key`.
fn server_config(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: &rcgen::KeyPair,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            chain,
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    Arc::new(server)
}

/// Handshakes a TLS server saw, by kind.
#[derive(Default)]
pub struct Handshakes {
    pub full: AtomicUsize,
    pub resumed: AtomicUsize,
}

/// An HTTPS server: the same routes and handlers as `Server`, over TLS,
/// closing each connection after `max_requests` (connection recycling).
pub struct TlsServer {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub handshakes: Arc<Handshakes>,
}

impl TlsServer {
    pub fn start(
        ca: &TestCa,
        max_requests: Option<usize>,
        handler: impl Fn(&Req, &Shared) -> Reply + Send + Sync + 'static,
    ) -> TlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let handshakes = Arc::new(Handshakes::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let config = ca.server.clone();
        let (sh, hs) = (shared.clone(), handshakes.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                sh.connections.fetch_add(1, Ordering::SeqCst);
                let (sh, hs, handler, config) =
                    (sh.clone(), hs.clone(), handler.clone(), config.clone());
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(SERVER_WAIT));
                    let _ = stream.set_nodelay(true);
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let tls = rustls::StreamOwned::new(conn, stream);
                    let mut reader = serve(tls, &sh, &*handler, max_requests);
                    let tls = reader.get_mut();
                    match tls.conn.handshake_kind() {
                        Some(rustls::HandshakeKind::Resumed) => {
                            hs.resumed.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(_) => {
                            hs.full.fetch_add(1, Ordering::SeqCst);
                        }
                        None => {}
                    }
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        TlsServer {
            addr,
            shared,
            handshakes,
        }
    }

    /// `https://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{}", self.addr, path)
    }
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

fn reason(status: u16) -> &'static str {
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

fn write_reply(w: &mut impl Write, r: &Reply, head: bool) -> std::io::Result<()> {
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

/// The routes the tests use.
///
/// - `POST /echo`: 200 with the request's JSON body.
/// - `/json`: 200 `{"status":"completed","count":1}`.
/// - `/delay?ms=N`: that reply after N ms.
/// - `/status?code=N`: status N with a small JSON body.
/// - `/422`: FastAPI-style validation error.
/// - `/html500`: 500 with an HTML page.
/// - `/text`: 200 with a body that is not JSON.
/// - `/barrier?n=N`: answers only when N requests have arrived (or 504
///   after 10 s).
/// - `/headers`: 200 with the request headers as JSON.
/// - `/process`: the demo endpoint (see `process`).
pub fn default_routes(req: &Req, shared: &Shared) -> Reply {
    let ok = || Reply::json(200, serde_json::json!({"status": "completed", "count": 1}));
    match req.path.as_str() {
        "/echo" => Reply {
            status: 200,
            content_type: "application/json",
            headers: vec![],
            body: req.body.clone(),
        },
        "/json" => ok(),
        "/delay" => {
            let ms: u64 = req.q("ms").and_then(|v| v.parse().ok()).unwrap_or(0);
            thread::sleep(Duration::from_millis(ms));
            ok()
        }
        "/status" => {
            let code: u16 = req.q("code").and_then(|v| v.parse().ok()).unwrap_or(500);
            Reply::json(code, serde_json::json!({"error": format!("status {code}")}))
        }
        "/422" => Reply::json(
            422,
            serde_json::json!({"detail": [{"loc": ["body", "items"], "msg": "field required", "type": "value_error.missing"}]}),
        ),
        "/html500" => Reply::text(
            500,
            "text/html",
            "<html><body><h1>Internal Server Error</h1></body></html>",
        ),
        "/text" => Reply::text(200, "text/plain", "hello, this is not json"),
        "/barrier" => {
            let n: usize = req.q("n").and_then(|v| v.parse().ok()).unwrap_or(2);
            if shared.barrier(n) {
                ok()
            } else {
                Reply::json(504, serde_json::json!({"error": "barrier timed out"}))
            }
        }
        "/headers" => {
            let map: serde_json::Map<String, serde_json::Value> = req
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            Reply::json(200, serde_json::Value::Object(map))
        }
        "/process" => process(
            req,
            Duration::from_millis(req.q("ms").and_then(|v| v.parse().ok()).unwrap_or(0)),
        ),
        _ => Reply::json(404, serde_json::json!({"detail": "Not Found"})),
    }
}

/// The seed scenario's endpoint: validates `{"tag": str, "items": [..]}`
/// (422 with a FastAPI-style `detail` list otherwise), then answers after
/// `delay`.
pub fn process(req: &Req, delay: Duration) -> Reply {
    let Some(v) = req.json() else {
        return Reply::json(
            422,
            serde_json::json!({"detail": [{"loc": ["body"], "msg": "body is not valid JSON", "type": "json_invalid"}]}),
        );
    };
    let mut detail = vec![];
    if !v.get("tag").is_some_and(|t| t.is_string()) {
        detail.push(serde_json::json!({"loc": ["body", "tag"], "msg": "field required (string)", "type": "missing"}));
    }
    match v.get("items").and_then(|t| t.as_array()) {
        None => detail.push(serde_json::json!({"loc": ["body", "items"], "msg": "Field required (a list of objects)", "type": "missing"})),
        Some(items) => {
            // As pydantic checks `List[Dict[str, Any]]`: every item an object.
            for (i, item) in items.iter().enumerate() {
                if !item.is_object() {
                    detail.push(serde_json::json!({"loc": ["body", "items", i], "msg": "Input should be a valid dictionary", "type": "dict_type"}));
                }
            }
        }
    }
    if !detail.is_empty() {
        return Reply::json(422, serde_json::json!({ "detail": detail }));
    }
    thread::sleep(delay);
    let n = v["items"].as_array().map_or(0, Vec::len);
    Reply::json(
        200,
        serde_json::json!({"tag": v["tag"], "result": format!("processed {n} items"), "count": n}),
    )
}

/// How a fault server misbehaves on each connection.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Accepts, reads the request, never answers (holds the socket 10 s).
    Silent,
    /// Sends the status line and headers, half the body, then closes.
    CloseMidBody,
    /// Closes the connection without reading or answering (RST).
    Reset,
    /// Sends the response one byte every `ms` milliseconds.
    Trickle(u64),
    /// Sends the head after `head_ms`, then a 200-byte body one byte every
    /// `ms` milliseconds: each of ureq's phases alone is short.
    SlowBody { head_ms: u64, ms: u64 },
}

/// A raw TCP server that misbehaves. Counts connections.
pub struct FaultServer {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl FaultServer {
    pub fn start(fault: Fault) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let conns = connections.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || misbehave(stream, fault));
            }
        });
        FaultServer { addr, connections }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

fn misbehave(mut stream: TcpStream, fault: Fault) {
    let _ = stream.set_read_timeout(Some(SERVER_WAIT));
    let body = br#"{"status":"completed","count":1}"#;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    match fault {
        Fault::Reset => {
            // Linger 0 would need unsafe or a crate; closing at once without
            // reading the request makes the kernel send RST.
            drop(stream);
        }
        Fault::Silent => {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let _ = read_request(&mut reader);
            let mut buf = [0u8; 1];
            // Hold the connection until the client gives up (EOF) or 10 s.
            let _ = stream.read(&mut buf);
        }
        Fault::CloseMidBody => {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let _ = read_request(&mut reader);
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[..body.len() / 2]);
            let _ = stream.flush();
        }
        Fault::SlowBody { head_ms, ms } => {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let _ = read_request(&mut reader);
            let body = [b' '; 200];
            thread::sleep(Duration::from_millis(head_ms));
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let stop = Instant::now() + SERVER_WAIT;
            for b in body {
                if Instant::now() > stop || stream.write_all(&[b]).is_err() {
                    return;
                }
                let _ = stream.flush();
                thread::sleep(Duration::from_millis(ms));
            }
        }
        Fault::Trickle(ms) => {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let _ = read_request(&mut reader);
            let all = [head.as_bytes(), body].concat();
            let stop = Instant::now() + SERVER_WAIT;
            for b in all {
                if Instant::now() > stop || stream.write_all(&[b]).is_err() {
                    return;
                }
                let _ = stream.flush();
                thread::sleep(Duration::from_millis(ms));
            }
        }
    }
}

/// A server that records the `Idempotency-Key` of every request to
/// it, waits `?ms=N` if asked, and answers with `status` and a JSON of
/// the key and the request's body.
pub fn keyed_server(status: Arc<AtomicUsize>) -> (Server, Arc<Mutex<HashMap<String, usize>>>) {
    let keys: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let k = keys.clone();
    let server = Server::with_handler(move |req, _| {
        let key = req
            .headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default();
        *k.lock().unwrap().entry(key.clone()).or_default() += 1;
        if let Some(ms) = req.q("ms").and_then(|m| m.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let code = status.load(Ordering::SeqCst) as u16;
        Reply::json(code, serde_json::json!({"key": key, "body": req.json()}))
    });
    (server, keys)
}

/// A port on 127.0.0.1 where nothing listens: port 1 (tcpmux, never in
/// use here), checked; a freed ephemeral port could be taken again by
/// another test's server in the meantime.
pub fn closed_port_url(path: &str) -> String {
    let port1 = "127.0.0.1:1".parse().unwrap();
    if TcpStream::connect_timeout(&port1, Duration::from_secs(1)).is_err() {
        return format!("http://127.0.0.1:1{path}");
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}{path}")
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit`
/// (the thread is left behind; the test process ends anyway).
pub fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not finish within {limit:?}: probably a hang")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the checked code panicked"),
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) of `t`, rounded up to
/// the next second.
pub fn http_date(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The peak resident set size of this process (VmHWM), in KiB; 0 off Linux.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// The resident set size of this process now (VmRSS), in KiB; 0 off Linux.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A plain ureq agent that trusts `ca` through `provider`, keeps `idle`
/// idle connections per host and uses no proxy: the hand-rolled side of
/// the TLS comparisons.
pub fn tls_agent(ca: &TestCa, provider: ureq::tls::TlsProvider, idle: usize) -> ureq::Agent {
    let cert = ureq::tls::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap();
    ureq::Agent::config_builder()
        .proxy(None)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(provider)
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
                .build(),
        )
        .max_idle_connections_per_host(idle)
        .build()
        .into()
}

/// GETs `url` `each` times from each of `threads` plain threads sharing
/// `agent`, reading every body; returns when all are done.
pub fn hand_rolled_gets(agent: &ureq::Agent, url: &str, threads: usize, each: usize) {
    let threads: Vec<_> = (0..threads)
        .map(|_| {
            let (agent, url) = (agent.clone(), url.to_string());
            thread::spawn(move || {
                for _ in 0..each {
                    agent
                        .get(&url)
                        .call()
                        .unwrap()
                        .body_mut()
                        .read_to_string()
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// The baseline a pool must match: N std threads sharing one ureq agent,
/// each POSTing `body` to `url` for every job it is given, the parsed
/// replies sent back over a channel. The threads end when it is dropped.
pub struct HandRolled {
    jobs: crossbeam_channel::Sender<()>,
    results: crossbeam_channel::Receiver<serde_json::Value>,
}

impl HandRolled {
    pub fn start(n: usize, agent: &ureq::Agent, url: &str, body: &serde_json::Value) -> HandRolled {
        let (jobs, job_rx) = crossbeam_channel::unbounded::<()>();
        let (res_tx, results) = crossbeam_channel::unbounded();
        for _ in 0..n {
            let (agent, url, body) = (agent.clone(), url.to_string(), body.clone());
            let (job_rx, res_tx) = (job_rx.clone(), res_tx.clone());
            thread::spawn(move || {
                while job_rx.recv().is_ok() {
                    let v: serde_json::Value = agent
                        .post(&url)
                        .send_json(&body)
                        .unwrap()
                        .body_mut()
                        .read_json()
                        .unwrap();
                    if res_tx.send(v).is_err() {
                        return;
                    }
                }
            });
        }
        HandRolled { jobs, results }
    }

    /// Dispatches `n` requests, then collects their replies.
    pub fn run(&self, n: usize) {
        for _ in 0..n {
            self.jobs.send(()).unwrap();
        }
        for _ in 0..n {
            std::hint::black_box(self.results.recv().unwrap());
        }
    }
}
