//! A connection's buffers that grow for one long head, in either
//! direction.
//!
//! ureq parses a response head inside the connection's input buffer, so a
//! head longer than the buffer could not be read, and every open or idle
//! connection keeps its buffer (4 KiB by default). Instead of a larger
//! buffer on every connection, the input of a connection whose buffer is
//! full of a head not yet parsed *spills*: it is copied into a buffer of
//! its own that grows (up to the head limit) while the rest of the head is
//! read, and is given back as soon as everything in it was consumed. A
//! connection pays for a long head only while it reads one, and the
//! request that meets it is read the first time, whatever its method.
//!
//! On the way out, ureq writes a request head line by line into the
//! connection's output buffer (8 KiB), several lines a write, but a line
//! longer than the buffer (a long URL, token or cookie) cannot be written
//! at all. The pool's agents note each request's longest line as it
//! leaves (their middleware calls [`expect_head`]); a connection asked for
//! its output buffer while that line does not fit lends ureq a buffer of
//! the head's size instead, and writes it out through its own buffer, a
//! piece at a time. That buffer lives for one write.

use std::cell::Cell;
use ureq::unversioned::transport::{Buffers, NextTimeout, Transport};

thread_local! {
    /// The request this thread is about to write: its longest line and
    /// its whole head, as [`expect_head`] counts them.
    static HEAD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// What ureq may add to a request head beyond what [`expect_head`] sees
/// (`Accept`, `Accept-Encoding`, body headers), besides the user agent.
const SLACK: usize = 1024;

/// Notes the head of the request this thread sends next through a pool's
/// agent: the longest line and the whole head as ureq will write them,
/// with what ureq derives from the URL's authority (`Host`, Basic
/// credentials from user info) and a request line in absolute form (as
/// for a proxy). Called by the agents' middleware for every request.
pub(crate) fn expect_head(method: &str, uri: &ureq::http::Uri, headers: &ureq::http::HeaderMap) {
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let target = uri.scheme_str().map_or(0, str::len)
        + 3
        + authority
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = method.len() + target + 12;
    let host = authority + 8;
    // Base64 of the user info, at most the authority: 4 bytes per 3.
    let basic = authority.div_ceil(3) * 4 + 23;
    let (mut longest, mut total) = (line.max(host).max(basic), line + host + basic + 2);
    for (k, v) in headers {
        let len = k.as_str().len() + v.len() + 4;
        longest = longest.max(len);
        total = total.saturating_add(len);
    }
    HEAD.with(|h| h.set((longest, total)));
}

/// A connection's transport and, while it reads past its buffer, the
/// spilled input; for one write, the long head lent to ureq.
#[derive(Debug)]
pub(crate) struct Spilling {
    inner: Box<dyn Transport>,
    spill: Option<Spill>,
    /// The most unconsumed input a spill holds: one byte over the head
    /// limit, so that ureq's own check of the limit (which runs first)
    /// says what happened.
    cap: usize,
    /// A request head written here instead of the transport's output
    /// buffer, until it is sent.
    out: Option<Vec<u8>>,
    /// The user agent's line and what else ureq adds to a head (see
    /// [`SLACK`]).
    added: usize,
    /// The largest head lent to ureq: past it, ureq fails the request.
    out_cap: usize,
    /// The size of the transport's output buffer (0 until known).
    out_len: usize,
}

/// Input copied out of the transport's buffer.
#[derive(Debug)]
struct Spill {
    buf: Vec<u8>,
    consumed: usize,
    /// The last consume took something (see [`Buffers::can_use_input`]).
    progress: bool,
}

impl Spilling {
    /// `inner`, whose input may spill to `head_limit + 1` bytes, and which
    /// writes request heads of up to `out_limit` bytes (as reqpool counts
    /// them) with a user agent of `user_agent` bytes.
    pub(crate) fn new(
        inner: Box<dyn Transport>,
        head_limit: usize,
        out_limit: usize,
        user_agent: usize,
    ) -> Spilling {
        let added = user_agent.saturating_add(14 + SLACK);
        Spilling {
            inner,
            spill: None,
            cap: head_limit.saturating_add(1),
            out: None,
            added,
            out_cap: out_limit.saturating_add(added),
            out_len: 0,
        }
    }

    /// The transport underneath.
    pub(crate) fn inner(&mut self) -> &mut dyn Transport {
        &mut *self.inner
    }

    /// Whether the transport underneath speaks TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }

    /// The buffers ureq reads and writes: the transport's own, or these
    /// while input is spilled or a long request head may be written (no
    /// input held, and the head this thread sends has a line longer than
    /// the output buffer).
    pub(crate) fn buffers(&mut self) -> &mut dyn Buffers {
        if self.spill.is_some() {
            return self;
        }
        if self.long_head() && self.inner.buffers().input().is_empty() {
            return self;
        }
        self.out = None;
        self.inner.buffers()
    }

    /// True if the head this thread writes next has a line longer than
    /// the transport's output buffer holds (with what ureq adds).
    fn long_head(&mut self) -> bool {
        // Either line may be the longest: the caller's or the user agent.
        let longest = HEAD.with(Cell::get).0.max(self.added - SLACK);
        if self.out_len == 0 {
            // ureq's buffers keep the size they were made with.
            self.out_len = self.inner.buffers().output().len();
        }
        longest.saturating_add(64) > self.out_len
    }

    /// True if ureq wrote a long head into a buffer lent by this
    /// connection: [`Spilling::transmit_lent`] sends it.
    pub(crate) fn lent(&self) -> bool {
        self.out.is_some()
    }

    /// Sends the first `amount` bytes of the lent head through the
    /// transport's own output buffer, a piece at a time, each write
    /// bounded by `timeout()`; the lent buffer is freed.
    pub(crate) fn transmit_lent(
        &mut self,
        amount: usize,
        timeout: impl Fn() -> NextTimeout,
    ) -> Result<(), ureq::Error> {
        let out = self.out.take().unwrap_or_default();
        let mut rest = out.get(..amount).unwrap_or(&out);
        while !rest.is_empty() {
            let buf = self.inner.buffers().output();
            let n = buf.len().min(rest.len());
            if n == 0 {
                return Err(ureq::Error::Io(std::io::Error::other(
                    "reqpool: a connection without an output buffer",
                )));
            }
            buf[..n].copy_from_slice(&rest[..n]);
            self.inner.transmit_output(n, timeout())?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Waits for input as the transport does, spilling first if its buffer
    /// is full of input ureq could not use.
    pub(crate) fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        if self.spill.is_none() {
            let b = self.inner.buffers();
            let held = b.input().len();
            if !b.input_append_buf().is_empty() || held >= self.cap {
                return self.inner.await_input(timeout);
            }
            let mut buf = Vec::with_capacity(held.saturating_mul(2).min(self.cap));
            buf.extend_from_slice(b.input());
            b.input_consume(held);
            self.spill = Some(Spill {
                buf,
                consumed: 0,
                progress: false,
            });
        }
        let Some(s) = self.spill.as_mut() else {
            return self.inner.await_input(timeout);
        };
        if s.consumed > 0 {
            s.buf.drain(..s.consumed);
            s.consumed = 0;
        }
        if s.buf.len() >= self.cap {
            // Nothing more is read: ureq sees no progress past its limit.
            return Ok(false);
        }
        let progress = self.inner.await_input(timeout)?;
        let b = self.inner.buffers();
        let got = b.input().len();
        s.buf.extend_from_slice(b.input());
        b.input_consume(got);
        Ok(progress)
    }
}

/// Only while input is spilled, or a long head may be written with no
/// input held (see [`Spilling::buffers`]).
impl Buffers for Spilling {
    fn output(&mut self) -> &mut [u8] {
        if self.spill.is_some() || !self.long_head() {
            return self.inner.buffers().output();
        }
        let (longest, total) = HEAD.with(Cell::get);
        let size = total
            .saturating_add(self.added)
            .max(longest.saturating_add(self.added))
            .min(self.out_cap);
        let out = self.out.get_or_insert_with(Vec::new);
        out.resize(size, 0);
        out
    }

    fn input(&self) -> &[u8] {
        // None held unless spilled (else these are not the buffers in use).
        self.spill
            .as_ref()
            .map_or(&[][..], |s| &s.buf[s.consumed..])
    }

    fn input_append_buf(&mut self) -> &mut [u8] {
        // The transport fills its own buffer; a spill is filled from it.
        &mut []
    }

    fn input_appended(&mut self, _amount: usize) {}

    fn input_consume(&mut self, amount: usize) {
        let Some(s) = self.spill.as_mut() else {
            return self.inner.buffers().input_consume(amount);
        };
        s.consumed = s.consumed.saturating_add(amount).min(s.buf.len());
        s.progress = amount > 0;
        if s.consumed == s.buf.len() {
            // All of it used: the transport's buffer serves again.
            self.spill = None;
        }
    }

    fn tmp_and_output(&mut self) -> (&mut [u8], &mut [u8]) {
        self.inner.buffers().tmp_and_output()
    }

    fn can_use_input(&self) -> bool {
        self.spill
            .as_ref()
            .is_some_and(|s| s.progress && s.consumed < s.buf.len())
    }
}
