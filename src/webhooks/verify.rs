//! The receiver's side: the signatures against each secret in constant
//! time, and the timestamp against the clock.

use super::spec::{Keys, TOLERANCE, check_id, mac};
use crate::error::Error;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a webhook was refused by [`Verifier::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The id is empty, holds a `.`, or is not printable ASCII.
    BadId,
    /// The timestamp is not a whole number of seconds.
    BadTimestamp,
    /// The timestamp is further from the verifier's clock than its
    /// tolerance: a replay, or a clock far off.
    Expired {
        /// How far, in seconds (negative: in the future).
        age_secs: i64,
    },
    /// No signature of the header matches any secret (or it holds no `v1`
    /// signature at all).
    NoMatch,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::BadId => write!(
                f,
                "webhook-id is empty, holds a '.' or is not printable ascii"
            ),
            VerifyError::BadTimestamp => write!(f, "webhook-timestamp is not a number of seconds"),
            VerifyError::Expired { age_secs } => {
                write!(
                    f,
                    "webhook-timestamp is {age_secs} s from now, outside the tolerance"
                )
            }
            VerifyError::NoMatch => write!(f, "no webhook-signature matches"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks webhooks on the receiver's side: the signature over
/// `{id}.{timestamp}.{body}` against each secret (in constant time), and
/// the timestamp against the clock (five minutes either way, by default).
///
/// Its `Debug` shows how many secrets it holds, never them.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Keys,
    tolerance: Duration,
}

impl Verifier {
    /// A verifier with one secret.
    ///
    /// # Errors
    ///
    /// As [`Signer::new`](super::Signer::new).
    pub fn new(secret: &str) -> Result<Verifier, Error> {
        Ok(Verifier {
            keys: Keys::one(secret)?,
            tolerance: TOLERANCE,
        })
    }

    /// Also accepts signatures made with `secret` (a rotation).
    ///
    /// # Errors
    ///
    /// As [`Signer::new`](super::Signer::new).
    pub fn and(mut self, secret: &str) -> Result<Verifier, Error> {
        self.keys.push(secret)?;
        Ok(self)
    }

    /// How far the timestamp may be from the clock, either way. Defaults
    /// to 5 minutes.
    pub fn tolerance(mut self, limit: Duration) -> Self {
        self.tolerance = limit;
        self
    }

    /// Checks a webhook's three headers and its raw body (the bytes as
    /// received: a body parsed and written again may not match).
    ///
    /// # Errors
    ///
    /// A [`VerifyError`] naming the first check that failed.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        self.verify_at(id, timestamp, signature, body, SystemTime::now())
    }

    /// [`verify`](Verifier::verify) with the clock at `now`.
    ///
    /// # Errors
    ///
    /// As [`verify`](Verifier::verify).
    pub fn verify_at(
        &self,
        id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        check_id(id).map_err(|_| VerifyError::BadId)?;
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        let now = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
        };
        let age = now.saturating_sub(ts);
        let limit = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if age.unsigned_abs() > limit.unsigned_abs() {
            return Err(VerifyError::Expired { age_secs: age });
        }
        let ts = timestamp.trim();
        // The body is hashed once per secret, however many signatures the
        // header holds (a header of thousands would otherwise hash a large
        // body thousands of times); each signature is then checked against
        // a copy of that state.
        let mut macs: Option<Vec<Hmac<Sha256>>> = None;
        for sig in signature.split(' ') {
            let Some(b64) = sig.strip_prefix("v1,") else {
                continue;
            };
            let Ok(bytes) = STANDARD.decode(b64) else {
                continue;
            };
            let macs = macs
                .get_or_insert_with(|| self.keys.each().map(|k| mac(k, id, ts, body)).collect());
            for m in macs.iter() {
                if m.clone().verify_slice(&bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(VerifyError::NoMatch)
    }
}
