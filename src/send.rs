//! How a prepared request runs on a worker: attempts (each a step of its
//! job, with the wait before the next one spent in the pool's timer) and
//! redirects, each hop one exchange on the wire (`exchange.rs`).

use crate::attempt::{Attempt, Look};
use crate::deadline::Deadline;
use crate::error::{Error, Phase};
use crate::exchange::{Hop, Seen, exchange};
use crate::host_key::HostKey;
use crate::hosts::Observed;
use crate::prepare::{Headers, Prepared};
use crate::redact::ALWAYS_SECRET;
use crate::redact::{redact_url, url_secrets};
use crate::response::Response;
use crate::retry::{Decision, Facts};
use crate::task::{Ctx, Step};
use crate::trace::AttemptSpan;
use crate::urls::{join_url, parse_url};
use crate::wire::with_limit;
use std::borrow::Cow;
use std::time::Instant;
use ureq::http::{self, Method, Uri};

/// How many redirects a request without a body follows.
const MAX_REDIRECTS: u32 = 5;

/// What a request's attempts have come to so far; kept between steps.
#[derive(Default)]
pub(crate) struct Attempts {
    failed: Vec<Error>,
    fresh_tried: bool,
    /// A 401 to a `bearer_from` token was answered with a new token.
    reauthorized: bool,
    /// The request's own limit, fixed when its first attempt starts.
    limit: Option<Deadline>,
    /// A redirect hop to another host that waits for a token of that
    /// host's rate limit (in the timer); the attempt goes on from it.
    /// (Boxed: rare, and the attempts live inline in every task.)
    next_hop: Option<Box<NextHop>>,
    /// The request slept for its host's rate limit or pause before its
    /// first attempt went out.
    throttled: bool,
}

/// A redirect hop kept while its job waits off the workers.
struct NextHop {
    method: Method,
    url: String,
    uri: Uri,
    headers: Headers,
    content_type: Option<&'static str>,
    /// The request's body goes along (a 307/308).
    body: bool,
    redirects: u32,
}

impl Attempts {
    /// The number of the attempt that runs now (1 for the first try);
    /// once the request is over, how many attempts it made.
    pub(crate) fn number(&self) -> u32 {
        self.failed.len() as u32 + 1
    }
}

impl Prepared {
    /// Runs attempts of this request until one succeeds, the policy gives
    /// up, or it must wait before the next one (then it returns when).
    pub(crate) fn step(&self, st: &mut Attempts, ctx: &Ctx<'_>) -> Step<Response> {
        let limit = *st.limit.get_or_insert_with(|| {
            if let Some(b) = &self.budget {
                b.deposit();
            }
            ctx.limit.min(Deadline::after(self.timeout))
        });
        let key = ctx.hosts.and_then(|_| self.host());
        let host = ctx.hosts.zip(key.as_deref());
        loop {
            if let Some(end) = self.barred(st, host, limit) {
                return end;
            }
            let mut seen = Seen::default();
            let number = st.number();
            let trace = AttemptSpan::new(self.spec.method.as_str(), &self.spec.url, number);
            let result = trace.run(|| {
                with_limit(limit, || {
                    execute(ctx, limit, self, number, &mut seen, &mut st.next_hop)
                })
            });
            let result = match result {
                Exec::Done(r) => r,
                Exec::Wait(at) => {
                    st.throttled = true;
                    return Step::Sleep(at);
                }
            };
            if let Ok(resp) = &result {
                trace.answered(resp.status, resp.body.len());
            }
            let err = match result {
                Ok(mut resp) => {
                    resp.hook_secrets = std::mem::take(&mut seen.secrets);
                    return Step::Done(Ok(resp));
                }
                Err(e) if is_marker(&e, crate::wire::DETACHED) => {
                    // Written; the reply is not awaited.
                    return Step::Done(Ok(Response::detached(&self.spec.method, &self.spec.url)));
                }
                Err(_) if crate::wire::aborted() => return Step::Done(Err(Error::Cancelled)),
                Err(e) => e,
            };
            if let Some(step) = self.failed(st, err, &mut seen, number, limit, &trace) {
                return step;
            }
        }
    }

    /// The end of the request before its next attempt: a retry into an
    /// open circuit, or its limit passed. Never inlined (see `failed`).
    #[inline(never)]
    fn barred(
        &self,
        st: &mut Attempts,
        host: Option<(&dyn crate::hosts::Feedback, &str)>,
        limit: Deadline,
    ) -> Option<Step<Response>> {
        // A retry never goes into an open circuit.
        if !st.failed.is_empty()
            && let Some((hosts, name)) = host
            && let Some(retry_in) = hosts.open_for(name)
        {
            let err = Error::CircuitOpen {
                host: name.to_string(),
                retry_in,
            };
            let reason = crate::error::GaveUpReason::CircuitOpen;
            return Some(Step::Done(Err(self.give_up(st, err, Some(reason)))));
        }
        if limit.passed() {
            // Nothing sent yet, after a wait for the host's rate: the
            // request never left (an outbox tries it again later).
            let unsent = st.throttled && st.failed.is_empty() && st.next_hop.is_none();
            let phase = if unsent {
                Phase::Throttled
            } else {
                Phase::Deadline
            };
            let err = Error::timeout(phase, self.spec.method.as_str(), &self.spec.url);
            return Some(Step::Done(Err(self.give_up(st, err, None))));
        }
        None
    }

    /// After attempt `number` failed with `err` (not yet scrubbed of the
    /// attempt's secrets): a new token and the
    /// request again (`None`), or the policy's decision (a retry now is
    /// `None` too). Never inlined: `step`'s frame lies under ureq's on
    /// every request, a failure's locals need not.
    #[inline(never)]
    fn failed(
        &self,
        st: &mut Attempts,
        err: Error,
        seen: &mut Seen,
        number: u32,
        limit: Deadline,
        trace: &AttemptSpan,
    ) -> Option<Step<Response>> {
        let err = unsent_timeout(err.scrubbed(&self.secrets.with(&seen.secrets)), seen);
        trace.failed(&err);
        // A 401 to a token from `bearer_from`: a new token, and the
        // request once more, whatever the policy (it was not processed).
        if err.status() == Some(401)
            && !st.reauthorized
            && let Some((host, generation)) = seen.token.take()
            && let Some(tokens) = &self.hooks.tokens
        {
            st.reauthorized = true;
            trace.retried("401 with a bearer_from token: a new token");
            st.failed.push(err);
            // The next attempt waits for the new token off the workers.
            tokens.refresh(&host, generation);
            return None;
        }
        let facts = Facts {
            err: &err,
            attempt: number,
            idempotent: self.retry_idempotent(),
            in_body: seen.in_body,
            answered: seen.answered,
            reused: seen.reused,
            fresh_tried: st.fresh_tried,
            left: limit.left(),
        };
        match self.retry.decide(&facts) {
            Decision::Fresh => {
                trace.retried("a kept-alive connection failed: a fresh one");
                st.fresh_tried = true;
                st.failed.push(err);
            }
            Decision::After(wait) => {
                if let Some(b) = &self.budget
                    && !b.try_spend()
                {
                    let reason = crate::error::GaveUpReason::BudgetExhausted;
                    return Some(Step::Done(Err(self.give_up(st, err, Some(reason)))));
                }
                trace.retried_after(wait);
                st.failed.push(err);
                return Some(Step::Sleep(Instant::now() + wait));
            }
            Decision::GiveUp(reason) => {
                return Some(Step::Done(Err(self.give_up(st, err, Some(reason)))));
            }
        }
        None
    }

    /// The error a request ends with: the plain error after one attempt
    /// with nothing to explain, else every attempt and why there was no
    /// other.
    fn give_up(
        &self,
        st: &mut Attempts,
        err: Error,
        reason: Option<crate::error::GaveUpReason>,
    ) -> Error {
        use crate::error::GaveUpReason as R;
        let retries_on = self.retry.max_attempts > 1;
        let plain = match reason {
            None => st.failed.is_empty(),
            Some(R::NotRetryable) => st.failed.is_empty(),
            Some(R::AttemptsExhausted | R::MaybeSent | R::BeyondDeadline { .. }) => {
                st.failed.is_empty() && !retries_on
            }
            Some(_) => false,
        };
        if plain {
            return err;
        }
        let mut attempts = std::mem::take(&mut st.failed);
        attempts.push(err);
        Error::GaveUp {
            attempts,
            reason: reason.unwrap_or(R::AttemptsExhausted),
        }
    }
}

/// A time limit that ran out before any byte of the request was written
/// is the connecting phase's: nothing was sent (ureq names it after its
/// global budget, which says nothing of that).
fn unsent_timeout(err: Error, seen: &Seen) -> Error {
    match err {
        Error::Timeout {
            phase: Phase::Deadline,
            method,
            url,
        } if !seen.answered && !crate::wire::wrote() => Error::Timeout {
            phase: Phase::Connect,
            method,
            url,
        },
        e => e,
    }
}

/// How one run of a request's attempt ends.
enum Exec {
    Done(Result<Response, Error>),
    /// A redirect to another host waits for that host's rate limit until
    /// then (the hop is kept in the attempts).
    Wait(Instant),
}

/// Runs the request once, following redirects as it allows, from the hop
/// kept in `next_hop` if there is one. Every hop is reported to *its own*
/// host's policies; a hop to another host fails without connecting when
/// that host's circuit is open, and takes a token of its rate limit
/// (waiting for it off the workers, or failing unsent when it would come
/// after the limit).
fn execute(
    ctx: &Ctx<'_>,
    limit: Deadline,
    req: &Prepared,
    number: u32,
    seen: &mut Seen,
    next_hop: &mut Option<Box<NextHop>>,
) -> Exec {
    let spec = &req.spec;
    let start = match spec.uri() {
        Ok(uri) => uri,
        Err(e) => return Exec::Done(Err(e)),
    };
    // The first host: a hop elsewhere goes through that host's policies
    // (a pool without any needs no key).
    let first = ctx.hosts.and_then(|_| req.host());
    let (mut hop, mut redirects, mut has_token) = match next_hop.take().map(|n| *n) {
        Some(n) => {
            // It was answered before it waited: the first server has it.
            seen.answered = true;
            seen.secrets
                .extend(url_secrets(&n.url, &req.query.keys, req.query.all));
            let hop = Hop {
                method: n.method,
                url: Cow::Owned(n.url),
                uri: n.uri,
                headers: Cow::Owned(n.headers),
                content_type: n.content_type,
                body: if n.body { spec.body.as_deref() } else { None },
            };
            (hop, n.redirects, true)
        }
        None => {
            let hop = Hop {
                method: spec.method.clone(),
                url: Cow::Borrowed(&spec.url),
                uri: start,
                headers: Cow::Borrowed(&spec.headers),
                content_type: spec.content_type,
                body: spec.body.as_deref(),
            };
            (hop, 0, false)
        }
    };
    loop {
        // The first hop's key is the request's own, made once.
        let key = match ctx.hosts {
            None => None,
            Some(_) if redirects == 0 && !has_token => first.clone(),
            Some(_) => HostKey::of_uri(&hop.uri).map(|k| std::sync::Arc::from(k.into_string())),
        };
        let crossed = first != key;
        let host = ctx.hosts.zip(key.as_deref());
        if redirects > 0
            && crossed
            && let Some((hosts, name)) = host
        {
            if let Some(retry_in) = hosts.open_for(name) {
                return Exec::Done(Err(Error::CircuitOpen {
                    host: name.to_string(),
                    retry_in,
                }));
            }
            if !has_token && let Some(due) = hosts.reserve(name) {
                if limit.instant().is_some_and(|l| due > l) {
                    hosts.refund(name);
                    return Exec::Done(Err(Error::timeout(
                        Phase::Throttled,
                        hop.method.as_str(),
                        &hop.url,
                    )));
                }
                let kept = hop.body.is_some();
                *next_hop = Some(Box::new(NextHop {
                    method: hop.method,
                    url: hop.url.into_owned(),
                    uri: hop.uri,
                    headers: hop.headers.into_owned(),
                    content_type: hop.content_type,
                    body: kept,
                    redirects,
                }));
                return Exec::Wait(due);
            }
        }
        // The first host's `bearer_from` token: while its source is asked
        // (on a thread of its own), the request waits in the timer, not on
        // a worker, and gives back the rate-limit token it was admitted
        // with (it is admitted again when it wakes).
        if redirects == 0
            && let Some(tokens) = &req.hooks.tokens
            && !hop
                .headers
                .contains_key(http::header::AUTHORIZATION.as_str())
        {
            let at = Attempt::new(hop.method.as_str(), &hop.url, &[], number);
            match tokens.park(hop.uri.host().unwrap_or_default(), limit, &at) {
                Ok(Look::Ready) => {}
                Ok(Look::Later(when)) => {
                    if let Some((hosts, name)) = host {
                        hosts.refund(name);
                    }
                    return Exec::Wait(when);
                }
                Err(e) => return Exec::Done(Err(e)),
            }
        }
        has_token = false;
        let done = |r| Exec::Done(r);
        let sent = Instant::now();
        let resp = exchange(ctx, limit, &hop, req, number, seen);
        // The exchange is over: the connection may go to another job.
        crate::wire::release_conn();
        if let Some((hosts, name)) = host
            && !crate::wire::aborted()
        {
            let answered = matches!(&resp, Ok(_) | Err(Error::Status { .. }));
            hosts.observe(name, observed(&resp, limit.left()), sent, answered);
        }
        let resp = match resp {
            Ok(resp) => resp,
            Err(e) => return done(Err(e)),
        };
        let code = resp.status;
        if !matches!(code, 301 | 302 | 303 | 307 | 308) {
            return done(Ok(resp));
        }
        if let Some(end) = follow(&mut hop, &resp, &mut redirects, req, seen) {
            return end;
        }
    }
}

/// Follows the redirect `resp` of `hop`: `hop` becomes the next hop, or
/// the request ends (what is returned). Never inlined: `execute`'s frame
/// lies under ureq's on every request, a redirect's locals need not.
#[inline(never)]
fn follow(
    hop: &mut Hop<'_>,
    resp: &Response,
    redirects: &mut u32,
    req: &Prepared,
    seen: &mut Seen,
) -> Option<Exec> {
    let spec = &req.spec;
    let code = resp.status;
    seen.answered = true;
    let redirect = |location: String| Error::Redirect {
        code,
        method: hop.method.to_string(),
        url: redact_url(&hop.url),
        location,
    };
    let Some(location) = resp.header("location").map(str::to_string) else {
        return Some(Exec::Done(Err(redirect("(no location header)".into()))));
    };
    // The server's URL follows the caller's rule: its password and
    // secret query values are left out of every error from here on
    // (the `Location` shown, what the next hop's server echoes).
    seen.secrets
        .extend(url_secrets(&location, &req.query.keys, req.query.all));
    if hop.body.is_some() && !spec.follow {
        return Some(Exec::Done(Err(redirect(redact_url(&location)))));
    }
    if *redirects >= MAX_REDIRECTS {
        return Some(Exec::Done(Err(redirect(format!(
            "{} (more than {MAX_REDIRECTS} redirects)",
            redact_url(&location)
        )))));
    }
    *redirects += 1;
    let next = match join_url(&hop.url, &location).and_then(|n| Ok((parse_url(&n)?, n))) {
        Ok(next) => next,
        Err(Error::InvalidRequest { reason, .. }) => {
            return Some(Exec::Done(Err(redirect(format!(
                "{} ({reason})",
                redact_url(&location)
            )))));
        }
        Err(e) => return Some(Exec::Done(Err(e))),
    };
    let (next_uri, next) = next;
    seen.secrets
        .extend(url_secrets(&next, &req.query.keys, req.query.all));
    if next_uri.authority() != hop.uri.authority() || next_uri.scheme() != hop.uri.scheme() {
        for name in ALWAYS_SECRET
            .iter()
            .copied()
            .chain(spec.secret.iter().map(String::as_str))
        {
            hop.headers.to_mut().remove(name);
        }
    }
    // RFC 9110 §15.4: 303 is a GET (HEAD stays HEAD); the others
    // repeat the method, and the body with it.
    if code == 303 && hop.method != Method::HEAD {
        hop.method = Method::GET;
        hop.body = None;
        hop.content_type = None;
        hop.headers
            .to_mut()
            .remove(http::header::CONTENT_TYPE.as_str());
    }
    hop.url = Cow::Owned(next);
    hop.uri = next_uri;
    None
}

/// What an attempt's result tells about its host. A `Retry-After` is
/// capped at `left`, what remains of the job's limit: one answer cannot
/// pause a host for longer than the request that got it could wait.
fn observed(result: &Result<Response, Error>, left: std::time::Duration) -> Observed {
    match result {
        Ok(_) => Observed::Answered,
        Err(e) => match e {
            Error::Status {
                code: code @ (429 | 503),
                retry_after,
                ..
            } => Observed::Throttled {
                status: *code,
                retry_after: retry_after.map(|r| r.min(left)),
            },
            Error::Status { code, .. } if *code >= 500 => Observed::Failed,
            Error::Transport { message, .. }
                if message.contains(crate::wire::DETACHED)
                    || message.contains(crate::wire::CANCELLED) =>
            {
                Observed::Answered
            }
            Error::Transport { .. } | Error::Timeout { .. } => Observed::Failed,
            _ => Observed::Answered,
        },
    }
}

/// True if `err` is the wire's own error with message `marker`.
fn is_marker(err: &Error, marker: &str) -> bool {
    matches!(err, Error::Transport { message, .. } if message.contains(marker))
}
