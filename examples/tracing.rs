//! One slow batch item as a span tree: each job's span sits under the
//! caller's span although it ran on a worker, with its time in the queue
//! apart from its attempts, and each retry an attempt span of its own.
//! A tiny subscriber here prints the tree; a real program would export the
//! same spans to Jaeger or any OpenTelemetry backend
//! (`tracing-opentelemetry`), whose HTTP client field names they use.
//!
//! `cargo run --features tracing --example tracing`

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Reply, Server};
use reqpool::{Pool, Retry};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A span as the printer keeps it.
struct Span {
    name: String,
    parent: Option<u64>,
    fields: BTreeMap<String, String>,
    opened: Instant,
    closed: Option<Instant>,
    refs: usize,
}

/// Keeps every span (parents by the thread's entered spans), prints a tree.
#[derive(Default)]
struct Printer {
    next: AtomicU64,
    spans: Mutex<BTreeMap<u64, Span>>,
}

thread_local! {
    static ENTERED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Subscriber for &'static Printer {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let parent = match attrs.parent() {
            Some(p) => Some(p.into_u64()),
            None if attrs.is_contextual() => ENTERED.with(|e| e.borrow().last().copied()),
            None => None,
        };
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let span = Span {
            name: attrs.metadata().name().to_string(),
            parent,
            fields,
            opened: Instant::now(),
            closed: None,
            refs: 1,
        };
        self.spans.lock().unwrap().insert(id, span);
        Id::from_u64(id)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        if let Some(s) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut s.fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, id: &Id) {
        ENTERED.with(|e| e.borrow_mut().push(id.into_u64()));
    }
    fn exit(&self, id: &Id) {
        ENTERED.with(|e| {
            let mut e = e.borrow_mut();
            if let Some(i) = e.iter().rposition(|&x| x == id.into_u64()) {
                e.remove(i);
            }
        });
    }
    fn clone_span(&self, id: &Id) -> Id {
        if let Some(s) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            s.refs += 1;
        }
        id.clone()
    }
    fn try_close(&self, id: Id) -> bool {
        let mut spans = self.spans.lock().unwrap();
        let Some(s) = spans.get_mut(&id.into_u64()) else {
            return false;
        };
        s.refs -= 1;
        if s.refs == 0 {
            s.closed = Some(Instant::now());
        }
        s.refs == 0
    }
}

impl Printer {
    fn print(&self, id: u64, depth: usize) {
        let spans = self.spans.lock().unwrap();
        let s = &spans[&id];
        let took = s.closed.map_or("open".to_string(), |c| {
            format!("{:.0?}", c.duration_since(s.opened))
        });
        let keys = [
            "http.request.method",
            "url.full",
            "reqpool.queue_wait_ms",
            "reqpool.attempts",
            "http.request.resend_count",
            "http.response.status_code",
            "error.type",
            "reqpool.retry",
            "reqpool.outcome",
        ];
        let fields: Vec<String> = keys
            .iter()
            .filter_map(|k| Some(format!("{k}={}", s.fields.get(*k)?)))
            .collect();
        println!(
            "{}{} [{took}] {}",
            "  ".repeat(depth),
            s.name,
            fields.join(" ")
        );
        let children: Vec<u64> = spans
            .iter()
            .filter(|(_, c)| c.parent == Some(id))
            .map(|(cid, _)| *cid)
            .collect();
        drop(spans);
        for c in children {
            self.print(c, depth + 1);
        }
    }
}

fn main() {
    let printer: &'static Printer = Box::leak(Box::default());
    tracing::subscriber::set_global_default(printer).expect("the only subscriber");

    // A scoring API: 150 ms a call; item 3 is answered 503 once.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let server = Server::with_handler(move |req, _| {
        let first_of_3 = req.q("item") == Some("3") && c.fetch_add(1, Ordering::SeqCst) == 0;
        std::thread::sleep(Duration::from_millis(150));
        if first_of_3 {
            Reply::json(503, json!({"detail": "busy"}))
        } else {
            Reply::json(200, json!({"score": 0.9}))
        }
    });
    let pool = Pool::builder()
        .workers(2)
        .retry(Retry::standard().backoff(Duration::from_millis(50), Duration::from_millis(50)))
        .build()
        .expect("a pool");

    let batch = tracing::info_span!("nightly_batch", items = 5);
    let batch_id = batch.id().expect("a span").into_u64();
    batch.in_scope(|| {
        let jobs: Vec<_> = (1..=5)
            .map(|i| {
                pool.post(&server.url("/score"))
                    .query("item", i)
                    .json_body(&json!({"item": i}))
                    .idempotency_key(&format!("score-{i}")) // a POST may be retried
                    .json::<Value>()
            })
            .collect();
        for r in reqpool::wait_all(jobs) {
            r.expect("scored");
        }
    });
    drop(batch);
    drop(pool);
    printer.print(batch_id, 0);
}
