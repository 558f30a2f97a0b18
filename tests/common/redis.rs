//! A real `redis-server` for the tests and examples of feature `redis`:
//! started on a free port of 127.0.0.1 in a temporary folder, ended when
//! dropped. Debian's package (`apt-get install redis-server`; `.ci/run`
//! installs it). Without it, `RedisServer::start` fails the test under
//! `CI=true` (a CI run must not pass having tested nothing); elsewhere it
//! says why and returns `None`, and the test is skipped (it prints that).

use super::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running `redis-server` of this test.
pub struct RedisServer {
    pub port: u16,
    pub dir: TempDir,
    child: Option<Child>,
    aof: bool,
}

impl RedisServer {
    /// A fresh server with no persistence, or `None` (and why, on
    /// stderr) if `redis-server` is not installed; under `CI=true` a
    /// missing `redis-server` fails the test instead.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(false)
    }

    /// A fresh server that writes every change to an append-only file
    /// (`appendfsync always`), so that a restart keeps the data.
    pub fn start_with(aof: bool) -> Option<RedisServer> {
        redis_binary()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = RedisServer {
            port,
            dir: TempDir::new("redis"),
            child: None,
            aof,
        };
        s.run();
        Some(s)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Ends the server at once (`SIGKILL`: no save at exit).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and folder (with its data if it
    /// keeps an append-only file).
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// Starts it again after [`kill`](RedisServer::kill), on the same
    /// port and folder.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.run();
    }

    fn run(&mut self) {
        let mut cmd = Command::new(redis_binary().unwrap());
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir.0)
            .args(["--save", "", "--rdbcompression", "no", "--daemonize", "no"])
            .args(["--protected-mode", "no", "--loglevel", "warning"]);
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        self.child = Some(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Ready when it answers PING (bounded: a server that never comes
        // up fails the test).
        let start = Instant::now();
        loop {
            if self.ping() {
                return;
            }
            assert!(start.elapsed() < LIMIT, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        ping(self.port)
    }

    /// Every byte the server holds, as its snapshot file (written now,
    /// uncompressed): to look for what must not be there.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(SERVER_WAIT)).unwrap();
        s.write_all(b"SAVE\r\n").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"+OK\r\n");
        std::fs::read(self.dir.file("dump.rdb")).unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-server`, if installed.
fn redis_binary() -> Option<PathBuf> {
    binary("redis-server", "redis-server")
}

/// `redis-cli`, if installed (Debian's `redis-tools`, which
/// `redis-server` depends on).
fn cli_binary() -> Option<PathBuf> {
    binary("redis-cli", "redis-tools")
}

/// The program `name` (of Debian's `package`), if installed; a CI run
/// that cannot find it fails rather than skip.
fn binary(name: &str, package: &str) -> Option<PathBuf> {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    let why =
        format!("{name} is not installed (Debian: apt-get install {package}; .ci/run installs it)");
    assert!(
        !std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
        "CI=true and {why}"
    );
    eprintln!("skipped: {why}");
    None
}

/// A real Redis Cluster of this test: three masters and a replica each,
/// every node a `redis-server` on free ports of 127.0.0.1 (its client
/// port and its cluster bus port) in a temporary folder, made one cluster
/// by `redis-cli --cluster create`; ended when dropped. `None` (and why)
/// without Debian's `redis-server` and `redis-cli`; under `CI=true` their
/// absence fails the test.
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
    _dir: TempDir,
}

struct ClusterNode {
    port: u16,
    bus: u16,
    home: PathBuf,
    child: Option<Child>,
}

impl ClusterNode {
    /// Starts its `redis-server` (again: with the cluster's view it kept
    /// in its folder, so it rejoins as what the cluster says it is now).
    fn spawn(&mut self) {
        let child = Command::new(redis_binary().unwrap())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &self.bus.to_string(),
            ])
            .args(["--cluster-config-file", "nodes.conf"])
            // A master is failed over after 1 s without an answer.
            .args(["--cluster-node-timeout", "1000"])
            .arg("--dir")
            .arg(&self.home)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while !ping(self.port) {
            assert!(
                start.elapsed() < LIMIT,
                "redis-server {} did not come up",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl RedisCluster {
    pub fn start() -> Option<RedisCluster> {
        redis_binary()?;
        let cli = cli_binary()?;
        let dir = TempDir::new("redis-cluster");
        // Client and bus ports, all taken at once so that none repeats.
        let listeners: Vec<TcpListener> = (0..12)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(listeners);
        let mut nodes = Vec::new();
        for i in 0..6 {
            let home = dir.file(&format!("node-{}", ports[i]));
            std::fs::create_dir_all(&home).unwrap();
            let mut node = ClusterNode {
                port: ports[i],
                bus: ports[6 + i],
                home,
                child: None,
            };
            node.spawn();
            nodes.push(node);
        }
        let cluster = RedisCluster { nodes, _dir: dir };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let made = bounded(LIMIT, move || {
            Command::new(cli)
                .args(["--cluster", "create"])
                .args(&addrs)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
                .unwrap()
        });
        assert!(
            made.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&made.stdout)
        );
        cluster.wait_until_whole(LIMIT);
        Some(cluster)
    }

    /// Every node's URL (those killed too: a client must cope).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
    }

    /// The port of the master that holds `key`'s slot now, as the nodes
    /// that run say.
    pub fn master_of(&self, key: &str) -> u16 {
        master_port_via(&self.running_ports(), key).expect("the slot has a master")
    }

    /// Ends the node on `port` at once (`SIGKILL`: no goodbye to the
    /// cluster).
    pub fn kill(&mut self, port: u16) {
        let n = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the node on `port` again after [`kill`](RedisCluster::kill):
    /// it rejoins the cluster, as a replica of the master that took its
    /// place.
    pub fn start_again(&mut self, port: u16) {
        let n = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        assert!(n.child.is_none(), "still running");
        n.spawn();
    }

    /// Waits (at most `limit`) until every node that runs says the
    /// cluster is whole (`cluster_state:ok`, every slot served) and
    /// every master that runs has a replica in sync, or every replica is
    /// in sync with its master.
    pub fn wait_until_whole(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let whole = self.running_ports().into_iter().all(|port| {
                let info = ask(port, &["CLUSTER", "INFO"]).unwrap_or_default();
                let repl = ask(port, &["INFO", "replication"]).unwrap_or_default();
                info.contains("cluster_state:ok")
                    && (repl.contains("master_link_status:up")
                        || (repl.contains("role:master") && !repl.contains("connected_slaves:0")))
            });
            if whole {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "the cluster did not become whole within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most `limit`) until `key`'s slot has a master other
    /// than the one on `old` (a replica took over) and the cluster says
    /// it is whole again.
    pub fn wait_for_failover(&self, key: &str, old: u16, limit: Duration) -> u16 {
        let start = Instant::now();
        loop {
            let now = master_port_via(&self.running_ports(), key);
            if let Some(p) = now.filter(|&p| p != old) {
                let info = ask(p, &["CLUSTER", "INFO"]).unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    return p;
                }
            }
            assert!(
                start.elapsed() < limit,
                "no replica took over from {old} within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn running_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }
}

/// `key`'s master as the first node of `ports` that answers says.
fn master_port_via(ports: &[u16], key: &str) -> Option<u16> {
    for &p in ports {
        let Some(slot) = ask(p, &["CLUSTER", "KEYSLOT", key]).and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        let Some(nodes) = ask(p, &["CLUSTER", "NODES"]) else {
            continue;
        };
        // `<id> <ip:port@bus> <flags> <master> ... <slots>`: a master
        // that is not failed, serving a range with the slot.
        for line in nodes.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|r| {
                let mut it = r.split('-').map(|x| x.parse::<i64>().ok());
                match (it.next().flatten(), it.next().flatten()) {
                    (Some(a), Some(b)) => (a..=b).contains(&slot),
                    (Some(a), None) => a == slot,
                    _ => false,
                }
            });
            if serves {
                let port = f[1].split(['@', ':']).nth(1)?.parse().ok()?;
                return Some(port);
            }
        }
    }
    None
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// One command to the server on `port`, its reply (a bulk string, a
/// simple string or an integer) as text; `None` if it does not answer
/// (within 2 s) or answers an error. (Raw RESP: the kit is compiled
/// where the `redis` crate is not a dependency.)
fn ask(port: u16, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).ok()?;
    let mut r = BufReader::new(s);
    let mut head = String::new();
    r.read_line(&mut head).ok()?;
    let head = head.trim_end();
    match head.as_bytes().first()? {
        b'+' | b':' => Some(head[1..].to_owned()),
        b'$' => {
            let len: usize = head[1..].parse().ok()?;
            let mut body = vec![0u8; len + 2];
            r.read_exact(&mut body).ok()?;
            body.truncate(len);
            String::from_utf8(body).ok()
        }
        _ => None,
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
