//! Traces that cross the queue (feature `tracing`): the span that was
//! current where a job was enqueued is kept while the job waits in this
//! process, and each delivery runs inside a `reqpool.outbox.delivery`
//! span that is its child, with the job's id. A job delivered by another
//! process (a Redis consumer, the next run of a script) starts a root
//! delivery span with the same `reqpool.job_id`; a `traceparent` header
//! the request carried is stored with it and sent on every delivery, so
//! a server's trace joins the enqueuer's. Without the feature, empty.

#[cfg(feature = "tracing")]
use crate::sync::lock;
#[cfg(feature = "tracing")]
use std::collections::HashMap;

/// Spans kept at most (a producer that enqueues far ahead of delivery
/// does not grow without bound: later jobs' deliveries are roots).
#[cfg(feature = "tracing")]
const KEPT: usize = 100_000;

/// The enqueuing span of each job waiting in this process.
#[derive(Default)]
pub(super) struct Lineage {
    #[cfg(feature = "tracing")]
    spans: std::sync::Mutex<HashMap<String, tracing::Span>>,
}

impl Lineage {
    /// Keeps the current span as the parent of the job of `key` (before
    /// it is written: the dispatcher may take it at once).
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(super) fn enqueued(&self, key: &str) {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::Span::current();
            let mut spans = lock(&self.spans);
            if !span.is_none() && spans.len() < KEPT {
                spans.insert(key.to_owned(), span);
            }
        }
    }

    /// Runs `send` (the delivery of job `id` of `key`, attempt
    /// `attempt`) inside its delivery span.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(super) fn deliver<R>(
        &self,
        id: i64,
        key: &str,
        attempt: u32,
        send: impl FnOnce() -> R,
    ) -> R {
        #[cfg(feature = "tracing")]
        {
            let parent = lock(&self.spans).get(key).cloned();
            let span = match parent {
                Some(p) => tracing::info_span!(
                    parent: &p,
                    "reqpool.outbox.delivery",
                    reqpool.job_id = id,
                    reqpool.attempt = attempt
                ),
                None => tracing::info_span!(
                    parent: None,
                    "reqpool.outbox.delivery",
                    reqpool.job_id = id,
                    reqpool.attempt = attempt
                ),
            };
            span.in_scope(send)
        }
        #[cfg(not(feature = "tracing"))]
        send()
    }

    /// The job of `key` ended (delivered or dead, or its enqueue
    /// failed): its span is let go.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(super) fn ended(&self, key: &str) {
        #[cfg(feature = "tracing")]
        lock(&self.spans).remove(key);
    }
}
