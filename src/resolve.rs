//! Name resolution under the job's limit: `getaddrinfo` (or the caller's
//! own lookup) runs on a small pool of resolver threads shared by a pool's
//! agents, and the request waits for it at most what is left of its limit,
//! off the socket guard's reach (there is no socket yet). Answers are kept
//! for a short time.

use crate::sync::lock;
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// A lookup of `host` and `port`: the addresses to try, in order.
pub(crate) type Lookup = Arc<dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>> + Send + Sync>;

/// Threads that run lookups; a lookup that hangs holds one of them, never
/// a worker.
const THREADS: usize = 4;
/// How long an answer is kept (the system resolver gives no TTL; this is
/// shorter than most records').
const TTL: Duration = Duration::from_secs(30);

type Job = (String, u16, Sender<std::io::Result<Vec<SocketAddr>>>);

/// Answers by host and port, with when they came.
type Cache = HashMap<(String, u16), (Instant, Vec<SocketAddr>)>;

/// The resolver of a pool's agents.
#[derive(Clone)]
pub(crate) struct Resolve(Arc<Inner>);

struct Inner {
    lookup: Lookup,
    queue: OnceLock<Sender<Job>>,
    cache: Mutex<Cache>,
}

impl fmt::Debug for Resolve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolve").finish_non_exhaustive()
    }
}

impl Resolve {
    /// With the caller's lookup, or the system's.
    pub(crate) fn new(lookup: Option<Lookup>) -> Resolve {
        let lookup = lookup.unwrap_or_else(|| {
            Arc::new(|host: &str, port: u16| Ok((host, port).to_socket_addrs()?.collect()))
        });
        Resolve(Arc::new(Inner {
            lookup,
            queue: OnceLock::new(),
            cache: Mutex::new(HashMap::new()),
        }))
    }

    /// The lookup threads' queue, started on first use. A lookup that
    /// panics is an error for its request; the thread goes on.
    fn queue(&self) -> &Sender<Job> {
        self.0.queue.get_or_init(|| {
            let (tx, rx): (Sender<Job>, Receiver<Job>) = unbounded();
            for i in 0..THREADS {
                let (rx, lookup) = (rx.clone(), Arc::clone(&self.0.lookup));
                let spawned = std::thread::Builder::new()
                    .name(format!("reqpool-resolve-{i}"))
                    .spawn(move || {
                        for (host, port, reply) in rx {
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                lookup(&host, port)
                            }))
                            .unwrap_or_else(|_| {
                                Err(std::io::Error::other("the name lookup panicked"))
                            });
                            let _ = reply.send(r);
                        }
                    });
                if let Err(e) = spawned {
                    log::error!("reqpool: could not start a resolver thread: {e}");
                }
            }
            tx
        })
    }

    /// Resolves `host:port`, waiting at most until `until`.
    fn lookup(
        &self,
        host: &str,
        port: u16,
        until: Option<Instant>,
    ) -> Result<Vec<SocketAddr>, ureq::Error> {
        let key = (host.to_string(), port);
        if let Some((at, addrs)) = lock(&self.0.cache).get(&key)
            && at.elapsed() < TTL
        {
            return Ok(addrs.clone());
        }
        let (tx, rx) = bounded(1);
        if self.queue().send((key.0.clone(), port, tx)).is_err() {
            return Err(ureq::Error::HostNotFound);
        }
        let got = match until {
            Some(t) => rx
                .recv_deadline(t)
                .map_err(|_| ureq::Error::Timeout(ureq::Timeout::Resolve))?,
            None => rx.recv().map_err(|_| ureq::Error::HostNotFound)?,
        };
        let addrs = got.map_err(ureq::Error::Io)?;
        if addrs.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        lock(&self.0.cache).insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

impl Resolver for Resolve {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let authority = uri.authority().ok_or(ureq::Error::HostNotFound)?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let default = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let port = authority.port_u16().unwrap_or(default);
        let mut out = self.empty();
        if let Ok(ip) = host.parse::<IpAddr>() {
            out.push(SocketAddr::new(ip, port));
            return Ok(out);
        }
        // At most what is left of the job's limit on this thread (the
        // pool sets no resolve budget of ureq's).
        let until = crate::wire::limit();
        let addrs = self.lookup(host, port, until)?;
        for addr in config.ip_family().keep_wanted(addrs.into_iter()) {
            if out.try_push(addr).is_err() {
                break;
            }
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}
