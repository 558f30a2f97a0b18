//! Standard Webhooks (feature `webhooks`): the `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` headers of the spec at
//! standardwebhooks.com, signed with HMAC-SHA256 over
//! `{id}.{timestamp}.{body}` with `whsec_` secrets.
//!
//! - [`Signer`] signs each attempt of a request, from the pool's
//!   [`before_attempt`](crate::Builder::before_attempt) hook: the id is
//!   the request's `Idempotency-Key` (through an `Outbox`
//!   every job has one, the same on every delivery), the timestamp is the
//!   attempt's own, so a delivery retried hours later is not refused as a
//!   replay.
//! - [`Verifier`] is the receiver's side: it checks the headers of a
//!   request against one or more secrets, in constant time, and refuses a
//!   timestamp more than five minutes (by default) from its clock.
//! - [`RETRY_SCHEDULE`] is the spec's example schedule of 10 tries over
//!   about three days.
//!
//! ```
//! use reqpool::webhooks::{Signer, Verifier};
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! let signer = Signer::new(secret)?;
//! let pool = reqpool::Pool::builder()
//!     .before_attempt(signer.clone().hook())
//!     .build()?;
//! // A request needs an Idempotency-Key, its webhook-id (an outbox's
//! // jobs always have one):
//! let _req = pool
//!     .post("http://127.0.0.1:9/hooks")
//!     .idempotency_key("msg_p5jXN8AQM9LWM0D4loKWxJek")
//!     .body(r#"{"test": 2432232314}"#);
//!
//! // The receiver's side.
//! let sig = signer.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#)?;
//! assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//! let verifier = Verifier::new(secret)?;
//! let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1614265330);
//! verifier.verify_at("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", &sig, br#"{"test": 2432232314}"#, at)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::attempt::Attempt;
use crate::error::Error;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
const KEY_BYTES: (usize, usize) = (24, 64);

/// How far a verifier lets a timestamp be from its clock, by default.
const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Decoded secrets, each as a keyed HMAC ready to clone; never shown.
#[derive(Clone)]
struct Keys(Vec<Hmac<Sha256>>);

impl Keys {
    fn one(secret: &str) -> Result<Keys, Error> {
        Ok(Keys(vec![decode(secret)?]))
    }

    fn push(&mut self, secret: &str) -> Result<(), Error> {
        self.0.push(decode(secret)?);
        Ok(())
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} secret(s) ***", self.0.len())
    }
}

/// A `whsec_` secret (the prefix may be left out, as the spec's libraries
/// allow) to its keyed HMAC. The error never shows the secret.
fn decode(secret: &str) -> Result<Hmac<Sha256>, Error> {
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

fn mac(key: &Hmac<Sha256>, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
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
fn check_id(id: &str) -> Result<(), String> {
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

/// Signs webhooks by the Standard Webhooks spec: `v1,` and the base64 of
/// HMAC-SHA256 over `{id}.{timestamp}.{body}`, once per secret, so that a
/// receiver that still knows only the old secret of a rotation accepts
/// the message too.
///
/// Its `Debug` shows how many secrets it holds, never them.
#[derive(Clone, Debug)]
pub struct Signer {
    keys: Keys,
}

impl Signer {
    /// A signer with one secret, `whsec_` and the base64 of 24 to 64
    /// random bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if the secret is not base64 or its key is shorter
    /// than 24 bytes or longer than 64; the message never shows it.
    pub fn new(secret: &str) -> Result<Signer, Error> {
        Ok(Signer {
            keys: Keys::one(secret)?,
        })
    }

    /// Also signs with `secret`: during a rotation, the new secret and
    /// the old one, each message carrying both signatures.
    ///
    /// # Errors
    ///
    /// As [`new`](Signer::new).
    pub fn and(mut self, secret: &str) -> Result<Signer, Error> {
        self.keys.push(secret)?;
        Ok(self)
    }

    /// The `webhook-signature` value for a message: `v1,<base64>` per
    /// secret, space-separated. `timestamp` is in seconds since the Unix
    /// epoch.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if the id is empty, holds a `.` (the spec forbids
    /// it) or is not printable ASCII.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> Result<String, Error> {
        check_id(id).map_err(Error::usage)?;
        let ts = timestamp.to_string();
        let sigs: Vec<String> = self
            .keys
            .0
            .iter()
            .map(|k| {
                format!(
                    "v1,{}",
                    STANDARD.encode(mac(k, id, &ts, body).finalize().into_bytes())
                )
            })
            .collect();
        Ok(sigs.join(" "))
    }

    /// Signs one attempt: sets `webhook-id` (the request's
    /// `Idempotency-Key`), `webhook-timestamp` (now) and
    /// `webhook-signature` over the attempt's exact body. For a hook of
    /// your own that does more; [`hook`](Signer::hook) is this alone.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] (the attempt fails, unsent) if the
    /// request has no `Idempotency-Key`, or one the spec does not accept
    /// as an id (with a `.`, a space, non-ASCII).
    pub fn sign_attempt(&self, a: &mut Attempt<'_>) -> Result<(), Error> {
        let id = match a.idempotency_key() {
            Some(k) => k.to_string(),
            None => {
                return Err(Error::invalid(
                    a.url(),
                    "a webhook needs an Idempotency-Key, sent as its webhook-id (an outbox's jobs have one)",
                ));
            }
        };
        check_id(&id)
            .map_err(|why| Error::invalid(a.url(), format!("the Idempotency-Key is {why}")))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sig = self.sign(&id, now, a.body())?;
        a.header(WEBHOOK_ID, &id);
        a.header(WEBHOOK_TIMESTAMP, &now.to_string());
        // A secret header: a receiver that echoes it back (a refusal that
        // quotes what it got) does not get it into an error or a log.
        a.secret_header(WEBHOOK_SIGNATURE, &sig);
        Ok(())
    }

    /// The signer as a [`before_attempt`](crate::Builder::before_attempt)
    /// hook: every attempt of every request made through the request
    /// builder (`json`, `send`, `fire`, `fire_detached`, poll jobs, the
    /// outbox) is signed, with its own timestamp, just before it is
    /// written.
    pub fn hook(self) -> impl Fn(&mut Attempt<'_>) -> Result<(), Error> + Send + Sync + 'static {
        move |a| self.sign_attempt(a)
    }
}

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
    /// As [`Signer::new`].
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
    /// As [`Signer::new`].
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
                .get_or_insert_with(|| self.keys.0.iter().map(|k| mac(k, id, ts, body)).collect());
            for m in macs.iter() {
                if m.clone().verify_slice(&bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's published vector (its libraries' tests).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_specs_test_vector() {
        assert_eq!(
            Signer::new(SECRET).unwrap().sign(ID, TS, BODY).unwrap(),
            SIG
        );
        // The prefix may be left out.
        let bare = SECRET.trim_start_matches("whsec_");
        assert_eq!(Signer::new(bare).unwrap().sign(ID, TS, BODY).unwrap(), SIG);
        Verifier::new(SECRET)
            .unwrap()
            .verify_at(ID, &TS.to_string(), SIG, BODY, at(TS))
            .unwrap();
    }

    #[test]
    fn a_rotation_signs_with_both_and_either_verifies() {
        let other = format!("whsec_{}", STANDARD.encode([7u8; 32]));
        let sig = Signer::new(&other)
            .unwrap()
            .and(SECRET)
            .unwrap()
            .sign(ID, TS, BODY)
            .unwrap();
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], SIG);
        for secret in [SECRET, other.as_str()] {
            Verifier::new(secret)
                .unwrap()
                .verify_at(ID, &TS.to_string(), &sig, BODY, at(TS))
                .unwrap();
        }
        // A verifier that knows both accepts a message signed with one.
        Verifier::new(&other)
            .unwrap()
            .and(SECRET)
            .unwrap()
            .verify_at(ID, &TS.to_string(), SIG, BODY, at(TS))
            .unwrap();
    }

    #[test]
    fn what_a_verifier_refuses() {
        let v = Verifier::new(SECRET).unwrap();
        let ts = TS.to_string();
        let bad = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        // id, timestamp, signature, body, clock, refusal.
        type Case<'a> = (&'a str, &'a str, &'a str, &'a [u8], SystemTime, VerifyError);
        let cases: [Case<'_>; 9] = [
            (ID, &ts, bad, BODY, at(TS), VerifyError::NoMatch),
            (
                ID,
                &ts,
                SIG,
                b"{\"test\": 2432232315}",
                at(TS),
                VerifyError::NoMatch,
            ),
            ("msg_other", &ts, SIG, BODY, at(TS), VerifyError::NoMatch),
            (ID, &ts, "", BODY, at(TS), VerifyError::NoMatch),
            (
                ID,
                &ts,
                "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                BODY,
                at(TS),
                VerifyError::NoMatch,
            ),
            (
                ID,
                &ts,
                "v1,not base64!",
                BODY,
                at(TS),
                VerifyError::NoMatch,
            ),
            (ID, "16142x", SIG, BODY, at(TS), VerifyError::BadTimestamp),
            ("a.b", &ts, SIG, BODY, at(TS), VerifyError::BadId),
            (
                ID,
                &ts,
                SIG,
                BODY,
                at(TS + 301),
                VerifyError::Expired { age_secs: 301 },
            ),
        ];
        for (id, ts, sig, body, now, want) in cases {
            assert_eq!(
                v.verify_at(id, ts, sig, body, now),
                Err(want.clone()),
                "{id} {ts} {sig}"
            );
        }
        assert_eq!(
            v.verify_at(ID, &ts, SIG, BODY, at(TS - 301)),
            Err(VerifyError::Expired { age_secs: -301 })
        );
        // Within the tolerance, either way; among other signatures.
        let many = format!("{bad} v2,{bad} {SIG}");
        v.verify_at(ID, &ts, &many, BODY, at(TS + 300)).unwrap();
        v.verify_at(ID, &ts, &many, BODY, at(TS - 300)).unwrap();
        v.clone()
            .tolerance(Duration::from_secs(3600))
            .verify_at(ID, &ts, SIG, BODY, at(TS + 3000))
            .unwrap();
    }

    #[test]
    fn bad_secrets_and_ids_are_usage_errors_that_show_no_secret() {
        let short = format!("whsec_{}", STANDARD.encode([1u8; 16]));
        let long = format!("whsec_{}", STANDARD.encode([1u8; 65]));
        for s in ["whsec_not*base64", short.as_str(), long.as_str(), ""] {
            let e = Signer::new(s).unwrap_err();
            assert!(matches!(e, Error::Usage { .. }), "{e}");
            if !s.is_empty() {
                assert!(
                    !e.to_string().contains(s.trim_start_matches("whsec_")),
                    "{e}"
                );
            }
            assert!(Verifier::new(s).is_err());
        }
        let signer = Signer::new(SECRET).unwrap();
        for id in ["", "a.b", "a b", "é"] {
            assert!(
                matches!(signer.sign(id, TS, BODY), Err(Error::Usage { .. })),
                "{id:?}"
            );
        }
        let shown = format!("{signer:?} {:?}", Verifier::new(SECRET).unwrap());
        assert!(!shown.contains("MfKQ9r8"), "{shown}");
    }

    #[test]
    fn the_schedule_spans_the_specs_three_days() {
        let total: Duration = RETRY_SCHEDULE.iter().sum();
        assert_eq!(total, Duration::from_secs(75 * 3600 + 35 * 60 + 5));
    }
}
