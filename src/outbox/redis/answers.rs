//! How answers are written: the delivered ones acknowledged together, a
//! job put off back in the stream with its time, a job given up on moved
//! to the dead letters, and a host's 429 shared with every consumer.

use super::record::Record;
use super::{Redis, host};
use crate::outbox::store::{Answer, End, now_ms};
use redis::Pipeline;
use std::time::Duration;

impl Redis {
    /// One call that acknowledges every delivered job of `done`, and
    /// keeps its reply and key for the retention.
    pub(super) fn delivered(&self, p: &mut Pipeline, done: &[(&Answer<String>, &Record)]) {
        if done.is_empty() {
            return;
        }
        let keep = match self.setup.retention {
            Duration::MAX => -1,
            d if d.is_zero() => 0,
            d => i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1),
        };
        p.cmd("EVALSHA")
            .arg(self.link.scripts().done.get_hash())
            .arg(2 + 2 * done.len())
            .arg(&self.stream)
            .arg(format!("{}:delivered", self.stream));
        for (_, r) in done {
            let key = r.stored.key.as_deref().unwrap_or_default();
            p.arg(self.key("done", &r.id.to_string()))
                .arg(self.key("key", key));
        }
        p.arg(&self.setup.group).arg(keep);
        for (a, r) in done {
            let End::Delivered {
                status, body, cut, ..
            } = &a.end
            else {
                continue;
            };
            p.arg(&a.receipt)
                .arg(r.stored.key.as_deref().unwrap_or_default())
                .arg(if status.is_some() { "1" } else { "0" })
                .arg(status.unwrap_or(0))
                .arg(body.as_deref().unwrap_or_default())
                .arg(if *cut { "1" } else { "0" });
        }
    }

    /// The pipeline that writes one answer that moves its job on.
    pub(super) fn answer(&self, p: &mut Pipeline, a: &Answer<String>, record: &Record) {
        let scripts_hash = |p: &mut Pipeline, hash: &str, keys: &[String]| {
            p.cmd("EVALSHA").arg(hash).arg(keys.len()).arg(keys);
        };
        let s = self.link.scripts();
        match &a.end {
            // Written together by `delivered`.
            End::Delivered { .. } => {}
            End::Later { at, throttled, .. } => {
                // The job stays this consumer's (its entry pending, its
                // lease kept) and goes again at its time; the time, on
                // Redis's clock, and its counts are kept in Redis for
                // whoever takes it over. (The error is the file's
                // `last_error`; here the dead letter keeps the last one.)
                let wait = at.saturating_sub(now_ms()).max(0);
                scripts_hash(p, s.later.get_hash(), &[self.later()]);
                p.arg(&a.receipt)
                    .arg(wait)
                    .arg(a.attempts)
                    .arg(a.tries)
                    .ignore();
                if let Some(wait) = throttled {
                    // Every consumer of the host pauses, and then goes at
                    // half its rate for a while.
                    let host = host(&record.stored.url);
                    let ms = u64::try_from(wait.as_millis())
                        .unwrap_or(u64::MAX)
                        .clamp(1, 1 << 40);
                    p.cmd("SET")
                        .arg(self.key("pause", &host))
                        .arg(1)
                        .arg("PX")
                        .arg(ms)
                        .ignore();
                    p.cmd("SET")
                        .arg(self.key("slow", &host))
                        .arg(1)
                        .arg("PX")
                        .arg(ms.saturating_add(10_000))
                        .ignore();
                }
            }
            End::Dead { error } => {
                let mut dead = record.clone();
                dead.attempts = a.attempts;
                dead.tries = a.tries;
                let mut fields = dead.fields(true);
                fields.push(("error".into(), error.clone().into_bytes()));
                scripts_hash(
                    p,
                    s.moved.get_hash(),
                    &[self.stream.clone(), self.dead_stream()],
                );
                p.arg(&self.setup.group).arg(&a.receipt);
                for (k, v) in &fields {
                    p.arg(k).arg(v.as_slice());
                }
            }
        }
    }
}
