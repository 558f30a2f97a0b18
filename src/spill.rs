//! A connection's input that grows for one long response head.
//!
//! ureq parses a response head inside the connection's input buffer, so a
//! head longer than the buffer could not be read, and every open or idle
//! connection keeps its buffer (8 KiB by default). Instead of a larger
//! buffer on every connection, the input of a connection whose buffer is
//! full of a head not yet parsed *spills*: it is copied into a buffer of
//! its own that grows (up to the head limit) while the rest of the head is
//! read, and is given back as soon as everything in it was consumed. A
//! connection pays for a long head only while it reads one, and the
//! request that meets it is read the first time, whatever its method.

use ureq::unversioned::transport::{Buffers, NextTimeout, Transport};

/// A connection's transport and, while it reads past its buffer, the
/// spilled input.
#[derive(Debug)]
pub(crate) struct Spilling {
    inner: Box<dyn Transport>,
    spill: Option<Spill>,
    /// The most unconsumed input a spill holds: one byte over the head
    /// limit, so that ureq's own check of the limit (which runs first)
    /// says what happened.
    cap: usize,
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
    /// `inner`, whose input may spill to `head_limit + 1` bytes.
    pub(crate) fn new(inner: Box<dyn Transport>, head_limit: usize) -> Spilling {
        Spilling {
            inner,
            spill: None,
            cap: head_limit.saturating_add(1),
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

    /// The buffers ureq reads and writes: the transport's own, or this
    /// while input is spilled.
    pub(crate) fn buffers(&mut self) -> &mut dyn Buffers {
        if self.spill.is_some() {
            self
        } else {
            self.inner.buffers()
        }
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

/// Only while input is spilled (see [`Spilling::buffers`]).
impl Buffers for Spilling {
    fn output(&mut self) -> &mut [u8] {
        self.inner.buffers().output()
    }

    fn input(&self) -> &[u8] {
        self.spill
            .as_ref()
            .map_or(&[][..], |s| &s.buf[s.consumed..])
    }

    fn input_append_buf(&mut self) -> &mut [u8] {
        // The transport fills its own buffer; the spill is filled from it.
        &mut []
    }

    fn input_appended(&mut self, _amount: usize) {}

    fn input_consume(&mut self, amount: usize) {
        if let Some(s) = self.spill.as_mut() {
            s.consumed = s.consumed.saturating_add(amount).min(s.buf.len());
            s.progress = amount > 0;
            if s.consumed == s.buf.len() {
                // All of it used: the transport's buffer serves again.
                self.spill = None;
            }
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
