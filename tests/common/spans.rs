//! A `tracing` subscriber that keeps every span — its name, parent (by the
//! thread's entered spans), fields, and when it opened and closed — for
//! tests that check the spans and for the example that prints them as a
//! tree. Installed as the global default: jobs run on other threads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One span as the recorder saw it.
#[derive(Debug, Clone)]
pub struct SpanRec {
    pub name: String,
    pub parent: Option<u64>,
    pub fields: BTreeMap<String, String>,
    pub opened: Instant,
    pub closed: Option<Instant>,
    refs: usize,
    meta: &'static Metadata<'static>,
}

/// Keeps every span of the process.
#[derive(Debug, Default)]
pub struct Recorder {
    next: AtomicU64,
    spans: Mutex<BTreeMap<u64, SpanRec>>,
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

impl Recorder {
    /// The process's recorder, installed as the global default the first
    /// time.
    pub fn installed() -> &'static Recorder {
        static R: OnceLock<&'static Recorder> = OnceLock::new();
        R.get_or_init(|| {
            let r: &'static Recorder = Box::leak(Box::default());
            tracing::subscriber::set_global_default(r).expect("the only subscriber");
            r
        })
    }

    /// Every span so far, by id.
    pub fn spans(&self) -> BTreeMap<u64, SpanRec> {
        self.spans.lock().unwrap().clone()
    }

    /// Prints span `id` and what is under it, one line each, indented.
    pub fn print_tree(&self, id: u64, keys: &[&str]) {
        let spans = self.spans();
        print_span(&spans, id, keys, 0);
    }
}

fn print_span(spans: &BTreeMap<u64, SpanRec>, id: u64, keys: &[&str], depth: usize) {
    let s = &spans[&id];
    let took = s.closed.map_or("open".to_string(), |c| {
        format!("{:.0?}", c.duration_since(s.opened))
    });
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
    for (child, _) in spans.iter().filter(|(_, c)| c.parent == Some(id)) {
        print_span(spans, *child, keys, depth + 1);
    }
}

impl Subscriber for &'static Recorder {
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
        let span = SpanRec {
            name: attrs.metadata().name().to_string(),
            parent,
            fields,
            opened: Instant::now(),
            closed: None,
            refs: 1,
            meta: attrs.metadata(),
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
    fn current_span(&self) -> tracing_core::span::Current {
        let id = ENTERED.with(|e| e.borrow().last().copied());
        let spans = self.spans.lock().unwrap();
        match id.and_then(|id| Some((id, spans.get(&id)?))) {
            Some((id, s)) => tracing_core::span::Current::new(Id::from_u64(id), s.meta),
            None => tracing_core::span::Current::none(),
        }
    }
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
        s.refs = s.refs.saturating_sub(1);
        if s.refs == 0 {
            s.closed = Some(Instant::now());
        }
        s.refs == 0
    }
}
