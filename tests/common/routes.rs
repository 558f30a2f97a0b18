//! The endpoints most tests use (`default_routes`), and servers built on
//! them.

use super::*;

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

/// A server that records the `Idempotency-Key` of every request to
/// it, waits `?ms=N` if asked, and answers with `status` and a JSON of
/// the key and the request's body.
pub fn keyed_server(status: Arc<AtomicUsize>) -> (Server, Arc<Mutex<HashMap<String, usize>>>) {
    keyed_server_with(status, |_| {})
}

/// [`keyed_server`], calling `arrived` with each request's key once it
/// is recorded (before any answer).
pub fn keyed_server_with(
    status: Arc<AtomicUsize>,
    arrived: impl Fn(&str) + Send + Sync + 'static,
) -> (Server, Arc<Mutex<HashMap<String, usize>>>) {
    let keys: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let k = keys.clone();
    let server = Server::with_handler(move |req, _| {
        let key = req.key();
        *k.lock().unwrap().entry(key.clone()).or_default() += 1;
        arrived(&key);
        if let Some(ms) = req.q("ms").and_then(|m| m.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let code = status.load(Ordering::SeqCst) as u16;
        Reply::json(code, serde_json::json!({"key": key, "body": req.json()}))
    });
    (server, keys)
}

/// A server whose `/hang` reports each arrival on the returned channel,
/// then answers only after 20 s; other paths are `default_routes`.
pub fn hanging_server() -> (Server, crossbeam_channel::Receiver<()>) {
    let (tx, rx) = crossbeam_channel::bounded(64);
    let server = Server::with_handler(move |req, shared| {
        if req.path == "/hang" {
            let _ = tx.send(());
            std::thread::sleep(Duration::from_secs(20));
        }
        default_routes(req, shared)
    });
    (server, rx)
}

/// A server whose `/hold` requests wait until released, counting how many
/// are inside at once.
pub struct Holding {
    pub server: Server,
    /// Set to true and notify to let every held request answer.
    pub gate: Arc<(Mutex<bool>, Condvar)>,
    pub max_inside: Arc<AtomicUsize>,
}

pub fn holding() -> Holding {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let (g, i, m) = (gate.clone(), inside.clone(), max_inside.clone());
    let server = Server::with_handler(move |_, _: &Shared| {
        let now = i.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        let (lock, cv) = &*g;
        let open = cv
            .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(10), |open| !*open)
            .unwrap();
        drop(open);
        i.fetch_sub(1, Ordering::SeqCst);
        Reply::json(200, serde_json::json!({"held": true}))
    });
    Holding {
        server,
        gate,
        max_inside,
    }
}

/// A server that allows `n` requests in any sliding second and answers
/// 429 above that (with `Retry-After: 1` if `retry_after`); counts the
/// requests it got and the 429s it gave.
pub fn window_limited_server(
    n: usize,
    retry_after: bool,
) -> (Server, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (sent, throttled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let window: Arc<Mutex<std::collections::VecDeque<Instant>>> = Arc::default();
    let (s, t) = (sent.clone(), throttled.clone());
    let server = Server::with_handler(move |_, _| {
        s.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        let mut w = window.lock().unwrap();
        while w
            .front()
            .is_some_and(|t| now - *t >= Duration::from_secs(1))
        {
            w.pop_front();
        }
        if w.len() >= n {
            t.fetch_add(1, Ordering::SeqCst);
            let reply = Reply::json(429, serde_json::json!({"detail": "rate limited"}));
            return if retry_after {
                reply.header("Retry-After", "1")
            } else {
                reply
            };
        }
        w.push_back(now);
        Reply::json(200, serde_json::json!({"ok": true}))
    });
    (server, sent, throttled)
}
