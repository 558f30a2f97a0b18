//! A prepared request on its way to the pool: one job whose steps are its
//! attempts, then the decoding of its answer, hedged when asked.

use crate::error::Error;
use crate::hedge::Hedge;
use crate::pending::Pending;
use crate::pool::{JobSpec, Pool};
use crate::prepare::Prepared;
use crate::response::Response;
use crate::send::Attempts;
use crate::task::{Ctx, Step};
use crate::trace::JobSpan;
use std::sync::Arc;
use std::time::Instant;

/// How a prepared request is handed to the pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    hedge: Option<Hedge>,
    block: bool,
    detached: bool,
}

impl Options {
    /// Hedged by `hedge` if the request is idempotent; `block`: wait for
    /// room in a full bounded queue.
    pub(crate) fn new(hedge: Option<Hedge>, block: bool) -> Options {
        Options {
            hedge,
            block,
            detached: false,
        }
    }

    /// A detached fire: done once written, never hedged.
    pub(crate) fn detached(self) -> Options {
        Options {
            hedge: None,
            detached: true,
            ..self
        }
    }
}

/// The one way a request reaches the pool: as a job whose steps are its
/// attempts, hedged when the request is idempotent and a hedge is set.
pub(crate) fn start<T: Send + 'static>(
    pool: &Pool,
    opts: Options,
    req: Arc<Prepared>,
    decode: Decode<T>,
) -> Pending<T> {
    let inner = Arc::clone(pool.inner());
    let hedge = opts.hedge.filter(|_| req.spec.idempotent());
    let host = if inner.caps_hosts() || hedge.is_some() {
        req.host()
    } else {
        None
    };
    let measure = hedge.is_some_and(|h| h.measures());
    let span = JobSpan::new(req.spec.method.as_str(), &req.spec.url);
    let submit = {
        let (inner, req, host) = (Arc::clone(&inner), Arc::clone(&req), host.clone());
        move |block: bool| {
            let job = request_job(
                Arc::clone(&inner),
                Arc::clone(&req),
                host.clone().filter(|_| measure),
                decode,
                span.clone(),
            );
            let spec = JobSpec {
                host: host.clone(),
                label: Some(req.clone()),
                detached: opts.detached,
                ..JobSpec::new(req.limits(), block)
            };
            inner.submit(spec, job)
        }
    };
    let first = submit(opts.block);
    let delay = match (hedge, &host) {
        (Some(h), Some(host)) => h.delay(inner.latencies(), host),
        _ => None,
    };
    match delay {
        Some(delay) => crate::hedge::race(
            first,
            delay,
            |at, f| inner.schedule(at, f),
            move || submit(false),
        ),
        None => first,
    }
}

/// What turns a response into a request's result: a plain function, so
/// a queued request carries no allocation for it.
pub(crate) type Decode<T> = fn(Response, &Prepared) -> Result<T, Error>;

/// The job of one request: its attempts, then `decode`.
fn request_job<T: Send + 'static>(
    inner: Arc<crate::pool::Inner>,
    req: Arc<Prepared>,
    measure: Option<Arc<str>>,
    decode: Decode<T>,
    span: JobSpan,
) -> impl FnMut(&Ctx<'_>) -> Step<T> + Send + 'static {
    let mut attempts = Attempts::default();
    // When the first step started, read only if the latency is measured.
    let mut started: Option<Instant> = None;
    move |ctx: &Ctx<'_>| {
        if measure.is_some() && started.is_none() {
            started = Some(Instant::now());
        }
        span.in_step(|| match req.step(&mut attempts, ctx) {
            Step::Sleep(at) => Step::Sleep(at),
            Step::Done(Ok(resp)) => {
                if let (Some(h), Some(t0)) = (&measure, started) {
                    inner.latencies().record(h, t0.elapsed());
                }
                let status = resp.status;
                let result = decode(resp, &req);
                span.ended(&result, Some(status), attempts.number());
                Step::Done(result)
            }
            Step::Done(Err(e)) => {
                let result = Err(e);
                span.ended::<T>(&result, None, attempts.number());
                Step::Done(result)
            }
        })
    }
}
