//! How jobs are added: one enqueue script per job, pipelined, each with
//! its own answer, and (on a cluster) a wait for the replicas.

use super::{REPLICA_WAIT, Redis, link, record};
use crate::error::Error;
use crate::outbox::store::{Inserted, Row, millis};
use redis::Value;

impl Redis {
    /// One script per job, pipelined: each job is added whole or not at
    /// all (a script that Redis refuses at `maxmemory` writes nothing),
    /// and each gets its own script's answer, so a refused job never
    /// takes the others of the commit with it, nor is queued under an
    /// `Err`. An error of the whole call (the connection lost) may have
    /// added some of them.
    pub(super) fn insert_rows(&self, rows: &[&Row]) -> Result<Vec<Inserted>, Error> {
        let hash = self.link.scripts().enqueue.get_hash().to_owned();
        let replicas = self.setup.replicas;
        let (replies, copies) = self.link.with(|c, _| {
            let mut p = redis::pipe();
            p.ignore_errors();
            for r in rows {
                p.cmd("EVALSHA")
                    .arg(&hash)
                    .arg(3)
                    .arg(&self.stream)
                    .arg(format!("{}:seq", self.stream))
                    .arg(self.key("key", &r.key))
                    .arg(self.setup.max_queued)
                    .arg(r.order.as_deref().unwrap_or_default())
                    .arg(record::META)
                    .arg(record::row_meta(r));
                if let Some(b) = &r.body {
                    p.arg("body").arg(b.as_slice());
                }
            }
            if replicas > 0 {
                // On the same connection (the same master): returns once
                // that many replicas hold every write above.
                p.cmd("WAIT").arg(replicas).arg(millis(REPLICA_WAIT));
            }
            let mut replies: Vec<redis::RedisResult<Value>> = p.query(c)?;
            let copies = if replicas > 0 {
                match replies.pop() {
                    Some(Ok(Value::Int(n))) => usize::try_from(n).unwrap_or(0),
                    Some(Err(e)) => return Err(e),
                    _ => 0,
                }
            } else {
                0
            };
            // Every script refused for a reason that needs a new
            // connection (Redis restarted without them): the call fails,
            // so that the next connects again; nothing was added.
            match replies.first() {
                Some(Err(e)) if link::broken(e) && replies.iter().all(Result::is_err) => {
                    Err(e.clone())
                }
                _ => Ok((replies, copies)),
            }
        })?;
        let short = copies < replicas;
        Ok(replies
            .into_iter()
            .map(|reply| match reply.and_then(|v| Ok(redis::from_redis_value::<(i64, i64)>(v)?)) {
                Ok((id, _)) if id < 0 => Err(Error::QueueFull),
                Ok(_) if short => Err(Error::storage(
                    crate::error::StorageKind::Unreachable,
                    format!(
                        "redis at {}: the job reached {copies} of the {replicas} replica(s) it waits for \
                         within {REPLICA_WAIT:?} (it may be there: enqueue it again with its key)",
                        self.link.shown()
                    ),
                )),
                Ok((id, new)) => Ok((id, new == 1)),
                Err(e) => Err(self.link.error(&e)),
            })
            .collect())
    }
}
