//! The connection to Redis: made on first use and again after it broke
//! (a restart, a network cut), with the scripts loaded and the consumer
//! group created on every new connection. A call that finds Redis
//! unreachable fails at once with [`StorageKind::Unreachable`]; the next
//! call connects again. A refused login is [`StorageKind::Denied`].

use super::scripts::Scripts;
use crate::error::{Error, StorageKind};
use crate::sync::lock;
use redis::{Client, Connection, RedisError, RedisResult};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a connection or a reply may take.
const CONNECT: Duration = Duration::from_secs(2);
const REPLY: Duration = Duration::from_secs(10);

/// One connection to Redis, shared by the outbox's callers.
pub(super) struct Link {
    client: Client,
    /// Where, with the password hidden, for messages.
    shown: String,
    /// The stream and group to create on each new connection.
    stream: String,
    group: String,
    scripts: Scripts,
    conn: Mutex<Option<Connection>>,
    /// Connections made so far, and how many of them found the group
    /// missing after the first (a Redis restarted without its data, the
    /// stream deleted): each time, what this consumer held is lost.
    made: AtomicU64,
    vanished: AtomicU64,
}

impl Link {
    /// A link to `url` (connected at once, so a wrong URL or a Redis that
    /// is down fails here).
    pub(super) fn open(url: &str, stream: &str, group: &str) -> Result<Link, Error> {
        let shown = crate::redact::redact_url(url);
        let client = Client::open(url)
            .map_err(|e| Error::usage(format!("not a Redis URL: {shown}: {}", scrub(&e, url))))?;
        let link = Link {
            client,
            shown,
            stream: stream.to_owned(),
            group: group.to_owned(),
            scripts: Scripts::new(),
            conn: Mutex::new(None),
            made: AtomicU64::new(0),
            vanished: AtomicU64::new(0),
        };
        link.with(|_, _| Ok(()))?;
        Ok(link)
    }

    /// How many times the stream's group was found gone and made again.
    pub(super) fn vanished(&self) -> u64 {
        self.vanished.load(Ordering::Acquire)
    }

    /// The scripts, to run by hash in a pipeline.
    pub(super) fn scripts(&self) -> &Scripts {
        &self.scripts
    }

    /// Where, for `Debug` and messages: the URL without its password.
    pub(super) fn shown(&self) -> &str {
        &self.shown
    }

    /// Runs `f` on the connection (making it first if there is none). A
    /// failure of the connection drops it, so the next call connects
    /// again.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection, &Scripts) -> RedisResult<T>,
    ) -> Result<T, Error> {
        let mut slot = lock(&self.conn);
        if slot.is_none() {
            *slot = Some(self.connect().map_err(|e| self.error(&e))?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(Error::storage(StorageKind::Unreachable, "no connection"));
        };
        f(conn, &self.scripts).map_err(|e| {
            if broken(&e) {
                *slot = None;
            }
            self.error(&e)
        })
    }

    /// A new connection, ready: timeouts set, scripts loaded, the group
    /// there (a Redis restarted without its data has neither).
    fn connect(&self) -> RedisResult<Connection> {
        let mut conn = self.client.get_connection_with_timeout(CONNECT)?;
        conn.set_read_timeout(Some(REPLY))?;
        conn.set_write_timeout(Some(REPLY))?;
        self.scripts.load(&mut conn)?;
        let made: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query(&mut conn);
        match made {
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e),
            Ok(()) if self.made.load(Ordering::Acquire) > 0 => {
                log::error!(
                    "reqpool: outbox stream {} or its group {} was gone at {} (a Redis restarted \
                     without its data?): made again; the jobs it held are lost, new jobs get new ids",
                    self.stream,
                    self.group,
                    self.shown
                );
                self.vanished.fetch_add(1, Ordering::AcqRel);
            }
            Ok(()) => {}
        }
        self.made.fetch_add(1, Ordering::AcqRel);
        Ok(conn)
    }

    /// A Redis error as the outbox's: a refused login or right is
    /// `Denied`, a broken connection `Unreachable`, Redis at `maxmemory`
    /// (`OOM`) `Full`, any other error reply `Io`.
    pub(super) fn error(&self, e: &RedisError) -> Error {
        let kind = if denied(e) {
            StorageKind::Denied
        } else if broken(e) {
            StorageKind::Unreachable
        } else if e.code() == Some("OOM") {
            StorageKind::Full
        } else {
            StorageKind::Io
        };
        Error::storage(kind, format!("redis at {}: {}", self.shown, e))
    }
}

/// A failure after which the connection is not to be used again: it
/// broke, timed out, or Redis lost the group or the scripts (restarted
/// without its data).
pub(super) fn broken(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(e.code(), Some("NOGROUP" | "NOSCRIPT" | "LOADING"))
}

/// Redis refused this client: its login (a wrong password or user, none
/// given where one is needed) or a right its user lacks.
fn denied(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// The error's words with the URL's password taken out, in case the
/// client repeats the URL.
fn scrub(e: &RedisError, url: &str) -> String {
    let text = e.to_string();
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(p) if !p.is_empty() => text.replace(&p, "***"),
        _ => text,
    }
}
