//! The sender's side: a signature per secret on each attempt.

use super::spec::{Keys, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, check_id, mac};
use crate::attempt::Attempt;
use crate::error::Error;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;
use std::time::{SystemTime, UNIX_EPOCH};

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
            .each()
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
