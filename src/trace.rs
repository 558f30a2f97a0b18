//! `tracing` spans (feature `tracing`): one per job, from its submission
//! (its queue wait, its outcome), and one per attempt inside it, with the
//! field names of OpenTelemetry's HTTP client conventions. The span that
//! was current where the job was submitted is the job span's parent,
//! although the job runs on a worker. Without the feature these are
//! empty types the compiler removes. With feature `metrics` the same
//! points (an attempt answered or failed, a retry, a job's end) are
//! recorded by `crate::metrics` too.

use crate::error::Error;
#[cfg(feature = "tracing")]
use std::time::Instant;

/// The span of one job.
#[derive(Clone, Debug)]
pub(crate) struct JobSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(feature = "tracing")]
    submitted: Instant,
    /// What was recorded: a hedged request's copies share the span.
    #[cfg(feature = "tracing")]
    marks: std::sync::Arc<Marks>,
    #[cfg(feature = "metrics")]
    target: crate::metrics::Target,
}

/// What a job span has recorded so far.
#[cfg(feature = "tracing")]
#[derive(Debug, Default)]
struct Marks {
    /// The queue wait (by the first step of the first copy to start).
    started: std::sync::atomic::AtomicBool,
    /// An outcome (the loser's cancel must not overwrite the winner's).
    ended: std::sync::atomic::AtomicBool,
}

/// The span of one attempt, while it is entered.
pub(crate) struct AttemptSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(feature = "metrics")]
    metrics: (crate::metrics::Target, std::time::Instant),
}

impl JobSpan {
    /// A job of `method url` (the URL redacted), submitted now, as a
    /// child of the caller's current span.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn new(method: &str, url: &str) -> JobSpan {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::info_span!(
                "reqpool.job",
                otel.name = %method,
                http.request.method = %method,
                url.full = %crate::redact::redact_url(url),
                server.address = %host(url),
                reqpool.queue_wait_ms = tracing::field::Empty,
                reqpool.attempts = tracing::field::Empty,
                reqpool.outcome = tracing::field::Empty,
                http.response.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            );
            JobSpan {
                span,
                submitted: Instant::now(),
                marks: Default::default(),
                #[cfg(feature = "metrics")]
                target: crate::metrics::Target::of(method, url),
            }
        }
        #[cfg(not(feature = "tracing"))]
        JobSpan {
            #[cfg(feature = "metrics")]
            target: crate::metrics::Target::of(method, url),
        }
    }

    /// Runs one step of the job inside its span; the first step of all
    /// records how long the job waited for a worker.
    pub(crate) fn in_step<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "tracing")]
        {
            use std::sync::atomic::Ordering;
            if !self.marks.started.swap(true, Ordering::AcqRel) {
                let waited = self.submitted.elapsed().as_secs_f64() * 1000.0;
                self.span.record("reqpool.queue_wait_ms", waited);
            }
            self.span.in_scope(f)
        }
        #[cfg(not(feature = "tracing"))]
        f()
    }

    /// The job ended with `result` after `attempts` attempts.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn ended<T>(&self, result: &Result<T, Error>, status: Option<u16>, attempts: u32) {
        #[cfg(feature = "metrics")]
        if !matches!(result, Err(Error::Cancelled)) {
            let err = result.as_ref().err().map(Error::last_attempt);
            let status = status.or_else(|| err.and_then(Error::status));
            crate::metrics::request_ended(&self.target, result.is_ok(), status, err);
        }
        #[cfg(feature = "tracing")]
        {
            use std::sync::atomic::Ordering;
            let cancelled = matches!(result, Err(Error::Cancelled));
            if self.marks.ended.swap(true, Ordering::AcqRel) && cancelled {
                return; // a hedge's loser, stopped: the winner's stands
            }
            self.span.record("reqpool.attempts", attempts);
            match result {
                Ok(_) => {
                    self.span.record("reqpool.outcome", "ok");
                    if let Some(code) = status {
                        self.span.record("http.response.status_code", code);
                    }
                }
                Err(e) => {
                    self.span.record("reqpool.outcome", "error");
                    if let Some(code) = e.last_attempt().status() {
                        self.span.record("http.response.status_code", code);
                    }
                    self.span
                        .record("error.type", crate::error::error_type(e.last_attempt()));
                }
            }
        }
    }
}

impl AttemptSpan {
    /// Attempt `number` (1 for the first try) of `method url`, a child of
    /// the job's span.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn new(method: &str, url: &str, number: u32) -> AttemptSpan {
        #[cfg(feature = "metrics")]
        let metrics = (
            crate::metrics::Target::of(method, url),
            std::time::Instant::now(),
        );
        #[cfg(feature = "tracing")]
        {
            let span = tracing::info_span!(
                "reqpool.attempt",
                otel.name = %method,
                http.request.method = %method,
                url.full = %crate::redact::redact_url(url),
                server.address = %host(url),
                http.request.resend_count = number.saturating_sub(1),
                http.response.status_code = tracing::field::Empty,
                http.response.body.size = tracing::field::Empty,
                error.type = tracing::field::Empty,
                reqpool.retry = tracing::field::Empty,
            );
            AttemptSpan {
                span,
                #[cfg(feature = "metrics")]
                metrics,
            }
        }
        #[cfg(not(feature = "tracing"))]
        AttemptSpan {
            #[cfg(feature = "metrics")]
            metrics,
        }
    }

    /// Runs the attempt inside its span.
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "tracing")]
        {
            self.span.in_scope(f)
        }
        #[cfg(not(feature = "tracing"))]
        f()
    }

    /// The server answered `code` with a body of `bytes`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn answered(&self, code: u16, bytes: usize) {
        #[cfg(feature = "metrics")]
        crate::metrics::attempt_ended(&self.metrics.0, self.metrics.1, Some(code), None);
        #[cfg(feature = "tracing")]
        {
            self.span.record("http.response.status_code", code);
            self.span.record("http.response.body.size", bytes as u64);
        }
    }

    /// The attempt failed with `err`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn failed(&self, err: &Error) {
        #[cfg(feature = "metrics")]
        crate::metrics::attempt_ended(&self.metrics.0, self.metrics.1, err.status(), Some(err));
        #[cfg(feature = "tracing")]
        {
            if let Some(code) = err.status() {
                self.span.record("http.response.status_code", code);
            }
            self.span
                .record("error.type", crate::error::error_type(err));
        }
    }

    /// Another attempt follows, for `why`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn retried(&self, why: &str) {
        #[cfg(feature = "metrics")]
        crate::metrics::retried(&self.metrics.0);
        #[cfg(feature = "tracing")]
        self.span.record("reqpool.retry", why);
    }

    /// Another attempt follows after `wait` (a backoff or `Retry-After`).
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn retried_after(&self, wait: std::time::Duration) {
        #[cfg(feature = "tracing")]
        self.retried(&format!("after {wait:?}"));
        #[cfg(all(feature = "metrics", not(feature = "tracing")))]
        crate::metrics::retried(&self.metrics.0);
    }
}

/// The host of `url` (`server.address`): the host of its key, the one
/// per-host state uses (see `host_key`).
#[cfg(feature = "tracing")]
fn host(url: &str) -> String {
    crate::host_key::HostKey::of_url(url)
        .map(|k| k.host().to_owned())
        .unwrap_or_default()
}
