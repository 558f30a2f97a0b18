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
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
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
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = PathBuf::from(dir).join("redis-server");
        if p.exists() {
            return Some(p);
        }
    }
    let why =
        "redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it)";
    // A CI run that cannot start Redis fails rather than skip.
    assert!(
        !std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
        "CI=true and {why}"
    );
    eprintln!("skipped: {why}");
    None
}
