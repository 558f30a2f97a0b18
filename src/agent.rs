//! The agent a pool builds: from the builder's settings and, if given,
//! the configuration of the caller's agent, with the pool's own rules set
//! on the agent itself and the wire's guard on every connection.

use crate::wire::{Guard, Sockets};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A phase limit for ureq: ureq adds it to an `Instant`, which panics past
/// the end of time, so a limit of more than about a century is no limit.
pub(crate) fn phase_limit(d: Duration) -> Option<Duration> {
    (d < Duration::from_secs(100 * 365 * 86_400)).then_some(d)
}

/// Workers at most per agent. ureq walks an agent's whole idle list under
/// its one lock each time a connection is made or comes back, so one
/// agent for 10,000 workers made that lock the bottleneck (workers queued
/// on it for seconds, and CPU went to the walk). A pool of more workers
/// has one agent (the same configuration) per this many, each worker
/// always using the same one: each lock is shared by at most this many
/// threads, and every connection is kept for reuse.
pub(crate) const WORKERS_PER_AGENT: usize = 512;

/// The settings of the agent a pool builds.
pub(crate) struct AgentSettings<'a> {
    pub(crate) workers: usize,
    /// Set by the caller (else the pool's own, or the caller's agent's).
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Option<Duration>,
    /// TLS settings made on the builder (else the defaults, or the caller's
    /// agent's).
    pub(crate) tls: Option<ureq::tls::TlsConfig>,
    /// The proxy chosen on the builder: `Some(None)` for none.
    pub(crate) proxy: Option<Option<ureq::Proxy>>,
    /// Each connection's read buffer, which also bounds a response head.
    pub(crate) read_buffer: usize,
    /// Each connection's write buffer (a longer head line borrows more).
    pub(crate) write_buffer: usize,
    /// Set by the caller (else the pool's default, or the caller's
    /// agent's).
    pub(crate) max_idle_age: Option<Duration>,
    /// The caller's name lookup (else the system's), run by the pool's
    /// resolver threads.
    pub(crate) lookup: Option<crate::resolve::Lookup>,
}

/// How long a pool's own agent reuses an idle connection: below the 5 s
/// after which Node (and Apache) close one, so a request is never written
/// to a connection the server is closing at that moment.
pub(crate) const MAX_IDLE_AGE: Duration = Duration::from_secs(4);

/// The agent a pool builds for itself, from the builder's settings and, if
/// given, the configuration of the caller's agent (proxy, TLS, user agent,
/// idle pool and buffers are taken from it).
///
/// Whatever the base, the pool's own rules are set on the agent itself, so
/// no request needs a configuration of its own (a request with one would
/// not share the agent's TLS setup and sessions): redirects and error
/// statuses are left to reqpool, the connect and response limits are the
/// pool's, and every connection carries the [`Guard`].
///
/// No `timeout_global`/`timeout_per_call`: with either set, ureq 3.5
/// resolves the host on a new OS thread for every request, which costs
/// about 6x in throughput. The total is enforced by the guard instead.
///
/// One agent per [`WORKERS_PER_AGENT`] workers (at least one), with the
/// idle connections of their share, and the sockets of all their open
/// connections. The agents are made as workers need them (see
/// [`Agents`]).
pub(crate) fn pool_agents(
    s: &AgentSettings<'_>,
    base: Option<&ureq::config::Config>,
) -> (Agents, Arc<Sockets>) {
    let count = s.workers.div_ceil(WORKERS_PER_AGENT).clamp(1, MAX_AGENTS);
    let share = s.workers.div_ceil(count);
    let cfg = config(s, share, base);
    let user_agent = match cfg.user_agent() {
        ureq::config::AutoHeaderValue::Provided(ua) => ua.len(),
        _ => 64,
    };
    let sockets = Arc::new(Sockets::default());
    let chunks = count.div_ceil(AGENTS_PER_CHUNK);
    let agents = Agents {
        cfg,
        user_agent,
        sockets: Arc::clone(&sockets),
        resolve: crate::resolve::Resolve::new(s.lookup.clone()),
        count,
        chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
    };
    (agents, sockets)
}

/// The longest request head (request line and headers) a pool sends:
/// a longer one is `InvalidRequest`, at submit when the caller's URL and
/// headers already pass it, else when the attempt's hooks have added theirs.
/// A line longer than a connection's output buffer is written through a
/// buffer the connection lends for that head (see [`crate::spill`]).
pub(crate) const HEAD_MAX: usize = 128 * 1024;

/// Each connection's output buffer unless the builder says otherwise,
/// which holds a request head's lines (a longer line goes through a
/// buffer lent for it) and a body's pieces.
pub(crate) const WRITE_BUFFER: usize = 8 * 1024;

/// The longest response head a pool's own agent reads (as Python's
/// `http` takes a line), or its read buffer if larger: a head longer than
/// the read buffer spills into a buffer of its own while it is read (see
/// [`crate::spill`]).
pub(crate) const HEAD_READ: usize = 64 * 1024;

/// Agents at most: one per 512 of 33.5 million workers, more threads than
/// any system starts.
const MAX_AGENTS: usize = 1 << 16;

/// Agents made together, on a worker's first need of one of them.
const AGENTS_PER_CHUNK: usize = 1024;

/// A pool's agents, made when a worker first needs its own: worker
/// number (seat) `n` uses agent `n / 512`, so a pool's first 512 workers
/// share the first agent and `workers(u32::MAX)` costs a few kilobytes
/// until its threads exist.
pub(crate) struct Agents {
    cfg: ureq::config::Config,
    /// The length of the user agent the agents send.
    user_agent: usize,
    sockets: Arc<Sockets>,
    /// Name resolution under the job's limit, shared by the agents.
    resolve: crate::resolve::Resolve,
    count: usize,
    chunks: Box<[OnceLock<Chunk>]>,
}

/// [`AGENTS_PER_CHUNK`] agents, each made on first use.
type Chunk = Box<[OnceLock<ureq::Agent>]>;

impl Agents {
    /// The agent of worker `seat` (the first for any other thread), made
    /// now if it was not yet.
    pub(crate) fn get(&self, seat: usize) -> &ureq::Agent {
        let i = (seat / WORKERS_PER_AGENT) % self.count;
        let chunk = self.chunks[i / AGENTS_PER_CHUNK].get_or_init(|| {
            let first = i / AGENTS_PER_CHUNK * AGENTS_PER_CHUNK;
            let len = AGENTS_PER_CHUNK.min(self.count - first);
            (0..len).map(|_| OnceLock::new()).collect()
        });
        chunk[i % AGENTS_PER_CHUNK].get_or_init(|| {
            guarded(
                self.cfg.clone(),
                Arc::clone(&self.sockets),
                &self.resolve,
                self.user_agent,
            )
        })
    }

    /// The agent for a request whose head, as reqpool counts it, is
    /// `head` bytes: `own` (the worker's) whatever its output buffer (a
    /// long line is written through a lent buffer); `None` past
    /// [`HEAD_MAX`].
    pub(crate) fn for_request<'a>(
        &'a self,
        own: &'a ureq::Agent,
        head: usize,
    ) -> Option<&'a ureq::Agent> {
        (head <= HEAD_MAX).then_some(own)
    }

    /// The agents made so far.
    pub(crate) fn made(&self) -> impl Iterator<Item = &ureq::Agent> {
        self.chunks
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|c| c.iter().filter_map(OnceLock::get))
    }
}

/// The configuration of each of a pool's agents, for `share` workers.
fn config(
    s: &AgentSettings<'_>,
    share: usize,
    base: Option<&ureq::config::Config>,
) -> ureq::config::Config {
    let b = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        // A closure's failed request is named in its error.
        .middleware(crate::wire::note_sent)
        .timeout_connect(phase_limit(s.connect_timeout))
        .timeout_recv_response(s.response_timeout.and_then(phase_limit));
    let b = match base {
        None => b
            .proxy(s.proxy.clone().flatten())
            .user_agent(s.user_agent.unwrap_or(DEFAULT_USER_AGENT))
            // Exactly what is decoded: gzip and br by ureq, deflate here.
            .accept_encoding("gzip, deflate, br")
            .tls_config(s.tls.clone().unwrap_or_default())
            .max_idle_connections(share.max(10))
            .max_idle_connections_per_host(share.max(3))
            .max_idle_age(s.max_idle_age.unwrap_or(MAX_IDLE_AGE))
            // ureq's 128 KiB buffers per connection (zero-filled on first
            // use: all of it counts) are far more than a request or a
            // response head needs; bodies of any size stream through
            // smaller ones. 8 KiB to write (a longer head line is written
            // through a buffer lent for it) and 4 KiB to read (a longer
            // head spills; both in `spill.rs`) keep a pool of thousands
            // small.
            .output_buffer_size(s.write_buffer)
            .input_buffer_size(s.read_buffer)
            // A longer head spills past the buffer while it is read.
            .max_response_header_size(HEAD_READ.max(s.read_buffer)),
        Some(c) => b
            .proxy(s.proxy.clone().unwrap_or_else(|| c.proxy().cloned()))
            // An explicit `Builder::user_agent` wins over the agent's.
            .user_agent(match s.user_agent {
                Some(ua) => ureq::config::AutoHeaderValue::from(ua),
                None => c.user_agent().clone(),
            })
            .accept(c.accept().clone())
            .accept_encoding(c.accept_encoding().clone())
            .tls_config(s.tls.clone().unwrap_or_else(|| c.tls_config().clone()))
            .https_only(c.https_only())
            .ip_family(c.ip_family())
            .no_delay(c.no_delay())
            .max_response_header_size(c.max_response_header_size())
            .input_buffer_size(c.input_buffer_size())
            .output_buffer_size(c.output_buffer_size())
            .max_idle_connections(c.max_idle_connections())
            .max_idle_connections_per_host(c.max_idle_connections_per_host())
            .max_idle_age(s.max_idle_age.unwrap_or(c.max_idle_age()))
            .allow_non_standard_methods(c.allow_non_standard_methods())
            .timeout_per_read(c.timeout_per_read())
            .timeout_per_write(c.timeout_per_write()),
    };
    b.build()
}

/// The `User-Agent` of a pool's own agent.
pub(crate) const DEFAULT_USER_AGENT: &str = concat!("reqpool/", env!("CARGO_PKG_VERSION"));

/// An agent with `cfg` and the guard on its connections, whose sockets go
/// to `sockets`, that sends a user agent of `user_agent` bytes.
fn guarded(
    cfg: ureq::config::Config,
    sockets: Arc<Sockets>,
    resolve: &crate::resolve::Resolve,
    user_agent: usize,
) -> ureq::Agent {
    let head_limit = cfg.max_response_header_size();
    let guard = Guard::new(sockets, head_limit, HEAD_MAX, user_agent);
    ureq::Agent::with_parts(cfg, guard, resolve.clone())
}
