//! The connection to Redis, one node or a cluster: made on first use and
//! again after it broke (a restart, a network cut, a master failed over),
//! with the scripts loaded and the consumer group created on every new
//! connection. A call that finds Redis unreachable fails at once with
//! [`StorageKind::Unreachable`]; the next call connects again. A refused
//! login is [`StorageKind::Denied`].
//!
//! On a cluster every key of one outbox shares a hash tag, so one slot:
//! each command, script and pipeline goes to that slot's master (the
//! client follows `MOVED` and `ASK` for single commands); a pipeline that
//! meets `MOVED`, `ASK`, `TRYAGAIN` or `CLUSTERDOWN` (a failover under
//! way) fails, and the next call connects again and reads the slots anew.

use super::scripts::Scripts;
use crate::error::{Error, StorageKind};
use crate::sync::lock;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::{Client, Connection, ConnectionLike, RedisError, RedisResult, Value};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a connection or a reply may take.
const CONNECT: Duration = Duration::from_secs(2);
const REPLY: Duration = Duration::from_secs(10);
/// How many times the cluster client tries one command again (after a
/// `MOVED`, a `TRYAGAIN`, a node it could not reach) before the call
/// fails; the outbox's own calls are tried again after that.
const CLUSTER_RETRIES: u32 = 4;

/// One Redis node, or the nodes of a cluster to start from.
enum Target {
    Node(Client),
    Cluster(ClusterClient),
}

/// A connection to one node, or to a cluster (one per node it reached).
enum Conn {
    Node(Connection),
    Cluster(Box<OneSlot>),
}

/// A cluster connection for commands that all touch one slot: a pipeline
/// goes whole to the master of its first command's slot. (The cluster
/// client refuses plain pipelines because their commands may belong to
/// many nodes; an outbox's keys share one hash tag, so they never do.)
struct OneSlot(ClusterConnection);

impl ConnectionLike for OneSlot {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.0.req_packed_commands(cmd, offset, count)
    }

    fn req_command(&mut self, cmd: &redis::Cmd) -> RedisResult<Value> {
        self.0.req_command(cmd)
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn supports_pipelining(&self) -> bool {
        true
    }

    fn check_connection(&mut self) -> bool {
        self.0.check_connection()
    }

    fn is_open(&self) -> bool {
        self.0.is_open()
    }
}

impl Conn {
    fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Node(c) => c,
            Conn::Cluster(c) => &mut **c,
        }
    }
}

/// One connection to Redis, shared by the outbox's callers.
pub(super) struct Link {
    client: Target,
    /// Where, with the password hidden, for messages.
    shown: String,
    /// The stream and group to create on each new connection.
    stream: String,
    group: String,
    scripts: Scripts,
    conn: Mutex<Option<Conn>>,
    /// A second connection, for reads that wait for new entries
    /// (`XREADGROUP … BLOCK`): made on first use, with neither scripts
    /// nor the group (a missing group is the main connection's to find
    /// and make again), so that a waiting read holds up no other call.
    reader: Mutex<Option<Conn>>,
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
        Link::ready(Target::Node(client), shown, stream, group)
    }

    /// A link to the cluster that `urls` are nodes of (any one that
    /// answers is enough; the client learns the others and the slots from
    /// it), connected at once.
    pub(super) fn open_cluster(urls: &[&str], stream: &str, group: &str) -> Result<Link, Error> {
        let shown = urls
            .iter()
            .map(|u| crate::redact::redact_url(u))
            .collect::<Vec<_>>()
            .join(",");
        let bad = |e: RedisError| {
            let mut text = e.to_string();
            for u in urls {
                text = scrub_text(text, u);
            }
            Error::usage(format!("not Redis cluster node URLs: {shown}: {text}"))
        };
        if urls.is_empty() {
            return Err(Error::usage(
                "an outbox on a Redis cluster needs at least one node URL",
            ));
        }
        let client = ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(CONNECT)
            .response_timeout(REPLY)
            .retries(CLUSTER_RETRIES)
            .build()
            .map_err(bad)?;
        Link::ready(Target::Cluster(client), shown, stream, group)
    }

    /// A link made and connected once (so that a wrong URL or a Redis
    /// that is down fails at once).
    fn ready(client: Target, shown: String, stream: &str, group: &str) -> Result<Link, Error> {
        let link = Link {
            client,
            shown,
            stream: stream.to_owned(),
            group: group.to_owned(),
            scripts: Scripts::new(),
            conn: Mutex::new(None),
            reader: Mutex::new(None),
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
        f: impl FnOnce(&mut dyn ConnectionLike, &Scripts) -> RedisResult<T>,
    ) -> Result<T, Error> {
        let mut slot = lock(&self.conn);
        if slot.is_none() {
            *slot = Some(self.connect().map_err(|e| self.error(&e))?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(Error::storage(StorageKind::Unreachable, "no connection"));
        };
        f(conn.like(), &self.scripts).map_err(|e| {
            if broken(&e) {
                *slot = None;
            }
            self.error(&e)
        })
    }

    /// Runs `f` on the reader, the connection for reads that wait (making
    /// it first if there is none). A failure of the connection drops it,
    /// so the next call connects again.
    pub(super) fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut dyn ConnectionLike) -> RedisResult<T>,
    ) -> Result<T, Error> {
        let mut slot = lock(&self.reader);
        if slot.is_none() {
            *slot = Some(self.plain().map_err(|e| self.error(&e))?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(Error::storage(StorageKind::Unreachable, "no connection"));
        };
        f(conn.like()).map_err(|e| {
            if broken(&e) {
                *slot = None;
            }
            self.error(&e)
        })
    }

    /// A new connection with its timeouts set, and nothing more.
    fn plain(&self) -> RedisResult<Conn> {
        Ok(match &self.client {
            Target::Node(client) => {
                let conn = client.get_connection_with_timeout(CONNECT)?;
                conn.set_read_timeout(Some(REPLY))?;
                conn.set_write_timeout(Some(REPLY))?;
                Conn::Node(conn)
            }
            Target::Cluster(client) => Conn::Cluster(Box::new(OneSlot(client.get_connection()?))),
        })
    }

    /// A new connection, ready: timeouts set, scripts loaded, the group
    /// there (a Redis restarted without its data has neither).
    fn connect(&self) -> RedisResult<Conn> {
        let mut conn = self.plain()?;
        let conn_like = conn.like();
        self.scripts.load(conn_like)?;
        let made: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query(conn_like);
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
        || e.is_cluster_error()
        || matches!(
            e.code(),
            Some("NOGROUP" | "NOSCRIPT" | "LOADING" | "READONLY")
        )
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
    scrub_text(e.to_string(), url)
}

/// `text` with `url`'s password taken out.
fn scrub_text(text: String, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(p) if !p.is_empty() => text.replace(&p, "***"),
        _ => text,
    }
}
