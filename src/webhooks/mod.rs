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

mod sign;
mod spec;
mod verify;

pub use sign::Signer;
pub use spec::{RETRY_SCHEDULE, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
pub use verify::{Verifier, VerifyError};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
