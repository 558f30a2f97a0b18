//! The outbox's metrics: a supervised thread that reads an outbox's
//! public `stats()` and `health()` at a fixed period and records them.

use super::Outbox;
use crate::sync::lock;
use metrics::{Label, counter, gauge};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Starts a thread that records `outbox`'s counts every `every` (and once
/// at once), labelled `reqpool.outbox = name` (a name that is a URL is
/// shown redacted: no password, no secret query value): see the
/// [`metrics` module](crate::metrics) for the names. The thread is supervised: a
/// panic in a round is caught, logged at `error`, counted
/// ([`OutboxWatcher::restarts`]) and the next round goes on; a read the
/// store refuses is logged at `warn` and counted in
/// `reqpool.outbox.watch.failures`.
///
/// ```no_run
/// # fn main() -> Result<(), reqpool::Error> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// let pool = reqpool::Pool::new(4);
/// let outbox = Arc::new(reqpool::Outbox::open("calls.db", &pool)?);
/// let watcher = reqpool::watch_outbox(Arc::clone(&outbox), "calls", Duration::from_secs(5))?;
/// assert!(watcher.is_running());
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::Usage`](crate::error::Error::Usage) if `every` is zero;
/// [`Error::Other`](crate::error::Error::Other) if the thread cannot be started.
pub fn watch_outbox(
    outbox: Arc<Outbox>,
    name: &str,
    every: Duration,
) -> Result<OutboxWatcher, crate::error::Error> {
    if every.is_zero() {
        return Err(crate::error::Error::usage(
            "watch_outbox needs a period above zero",
        ));
    }
    describe();
    let shared = Arc::new(Shared::default());
    shared.running.store(true, Ordering::Release);
    // The name goes in every label and log line: a store URL given as
    // the name shows no password or secret query value.
    let (s, name) = (Arc::clone(&shared), crate::redact::redact_url(name));
    let thread = std::thread::Builder::new()
        .name("reqpool-outbox-metrics".into())
        .spawn(move || {
            run(&outbox, &name, every, &s);
            s.running.store(false, Ordering::Release);
        })
        .map_err(crate::error::Error::other)?;
    Ok(OutboxWatcher {
        shared,
        thread: Some(thread),
    })
}

#[derive(Default)]
struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    running: AtomicBool,
    restarts: AtomicU64,
}

fn run(outbox: &Outbox, name: &str, every: Duration, s: &Shared) {
    loop {
        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| record(outbox, name)));
        if round.is_err() {
            s.restarts.fetch_add(1, Ordering::Relaxed);
            log::error!("reqpool: the metrics watcher of outbox {name} panicked; it goes on");
        }
        let stop = lock(&s.stop);
        let (stop, _) = s
            .wake
            .wait_timeout_while(stop, every, |stop| !*stop)
            .unwrap_or_else(|e| e.into_inner());
        if *stop {
            return;
        }
    }
}

fn record(outbox: &Outbox, name: &str) {
    let label = || Label::new("reqpool.outbox", name.to_string());
    match outbox.stats() {
        Ok(st) => {
            for (state, n) in [
                ("pending", st.pending),
                ("in_flight", st.in_flight),
                ("dead", st.dead),
            ] {
                gauge!(
                    "reqpool.outbox.jobs",
                    vec![label(), Label::new("state", state)]
                )
                .set(n as f64);
            }
            counter!("reqpool.outbox.delivered", vec![label()]).absolute(st.delivered);
        }
        Err(e) => {
            log::warn!("reqpool: the metrics watcher could not read outbox {name}: {e}");
            counter!("reqpool.outbox.watch.failures", vec![label()]).increment(1);
        }
    }
    gauge!("reqpool.outbox.paused", vec![label()]).set(outbox.paused().len() as f64);
    let h = outbox.health();
    let oldest = h.oldest_due.map_or(0.0, |d| d.as_secs_f64());
    gauge!("reqpool.outbox.oldest_due.age", vec![label()]).set(oldest);
    gauge!("reqpool.outbox.delivering", vec![label()]).set(if h.delivering { 1.0 } else { 0.0 });
    counter!("reqpool.outbox.store_errors", vec![label()]).absolute(h.store_errors);
    counter!("reqpool.outbox.panics", vec![label()]).absolute(h.panics);
    counter!("reqpool.outbox.lost", vec![label()]).absolute(h.lost);
}

/// Describes the outbox's metrics to the installed recorder.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_gauge!(
        "reqpool.outbox.jobs",
        "Outbox jobs by state: pending, in_flight, dead"
    );
    describe_counter!(
        "reqpool.outbox.delivered",
        "Outbox jobs delivered (kept in the store)"
    );
    describe_gauge!(
        "reqpool.outbox.oldest_due.age",
        Unit::Seconds,
        "How long the job due longest has waited"
    );
    describe_gauge!("reqpool.outbox.delivering", "1 while this process delivers");
    describe_gauge!(
        "reqpool.outbox.paused",
        "Endpoints a 410 Gone paused in this process"
    );
    describe_counter!(
        "reqpool.outbox.store_errors",
        "Store calls of the dispatcher that failed"
    );
    describe_counter!("reqpool.outbox.panics", "Dispatcher panics recovered from");
    describe_counter!("reqpool.outbox.lost", "Jobs the store lost");
    describe_counter!(
        "reqpool.outbox.watch.failures",
        "Reads the metrics watcher could not make"
    );
}

/// The thread of [`watch_outbox`]; dropping it stops the thread.
pub struct OutboxWatcher {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OutboxWatcher {
    /// True while the thread runs (false once it was stopped).
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Rounds that panicked and were recovered from.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }
}

impl Drop for OutboxWatcher {
    /// Blocks until the thread has ended its current round (a read of
    /// the store under way is waited for).
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for OutboxWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWatcher")
            .field("running", &self.is_running())
            .field("restarts", &self.restarts())
            .finish()
    }
}
