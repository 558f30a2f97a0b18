//! The spec's parts both sides use: the header names, the secrets (`whsec_`
//! and base64, 24 to 64 bytes, never shown), the signed text
//! `{id}.{timestamp}.{body}` and what an id may hold.

use crate::error::Error;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use std::time::Duration;

/// The header that names the message: the same on every attempt.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The header with the attempt's time, in seconds since the Unix epoch.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The header with the signatures, space-separated, each `v1,<base64>`.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The spec's example retry schedule: the wait before each of its 10
/// tries (the first at once), 75 h 35 min 5 s from the first to the last.
///
/// It does not fit a [`Retry`](crate::Retry), which the pool and the
/// outbox (`OutboxOptions::retry`) both take: a backoff that doubles to a
/// cap, and an outbox waits at most an hour between deliveries, where
/// this schedule waits up to 24 h. This constant is the schedule for the
/// code that will take a list of steps.
pub const RETRY_SCHEDULE: [Duration; 10] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(20 * 3600),
    Duration::from_secs(24 * 3600),
];

/// The spec's bounds on a symmetric secret: at least 24 bytes (192 bits),
/// at most 64 (512 bits).
pub(super) const KEY_BYTES: (usize, usize) = (24, 64);

/// How far a verifier lets a timestamp be from its clock, by default.
pub(super) const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Decoded secrets, each as a keyed HMAC ready to clone; never shown.
#[derive(Clone)]
pub(super) struct Keys(Vec<Hmac<Sha256>>);

impl Keys {
    pub(super) fn one(secret: &str) -> Result<Keys, Error> {
        Ok(Keys(vec![decode(secret)?]))
    }

    pub(super) fn push(&mut self, secret: &str) -> Result<(), Error> {
        self.0.push(decode(secret)?);
        Ok(())
    }

    /// Each secret's keyed HMAC, in the order given.
    pub(super) fn each(&self) -> impl Iterator<Item = &Hmac<Sha256>> {
        self.0.iter()
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} secret(s) ***", self.0.len())
    }
}

/// A `whsec_` secret (the prefix may be left out, as the spec's libraries
/// allow) to its keyed HMAC. The error never shows the secret.
pub(super) fn decode(secret: &str) -> Result<Hmac<Sha256>, Error> {
    let b64 = secret
        .trim()
        .strip_prefix("whsec_")
        .unwrap_or(secret.trim());
    let key = STANDARD.decode(b64).map_err(|_| {
        Error::usage("a webhook secret must be whsec_ followed by base64 (the secret is not shown)")
    })?;
    if key.len() < KEY_BYTES.0 || key.len() > KEY_BYTES.1 {
        return Err(Error::usage(format!(
            "a webhook secret must hold {} to {} bytes, this one holds {}",
            KEY_BYTES.0,
            KEY_BYTES.1,
            key.len()
        )));
    }
    // HMAC takes a key of any length: this cannot fail, but says so if it did.
    <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
        .map_err(|_| Error::usage("the webhook secret's key was refused by HMAC"))
}

pub(super) fn mac(key: &Hmac<Sha256>, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m = key.clone();
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// An id the spec accepts: not empty, no `.` (it would make
/// `{id}.{timestamp}.{body}` ambiguous), printable ASCII (a header value).
pub(super) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("an empty webhook id".into());
    }
    if id.contains('.') {
        return Err("a webhook id with a '.' (the spec forbids it: it would make the signed text ambiguous)".into());
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a webhook id with a space, a control or a non-ASCII character".into());
    }
    Ok(())
}
