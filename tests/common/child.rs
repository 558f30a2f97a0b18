//! This test binary run again as a child process (to test what happens at
//! exit, or under `SIGKILL`), and temporary folders.
//!
//! A child's entry point is a test marked `#[ignore]` (so that a normal run
//! does not count it as a test that passed having done nothing); the
//! parent runs it by name with `--include-ignored`.

use super::*;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

/// Runs the test `name` of this binary (ignored or not) again in a child
/// process with `env` set, and waits (at most `LIMIT`) for it to end.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = child_command(name, env);
    bounded(LIMIT, move || cmd.output().unwrap())
}

/// Starts the test `name` of this binary in a child process with `env`
/// set, its output dropped; the caller ends it.
pub fn spawn_child(name: &str, env: &[(&str, &str)]) -> Child {
    let mut cmd = child_command(name, env);
    cmd.stdout(Stdio::null()).spawn().unwrap()
}

fn child_command(name: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        name,
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A fresh folder under the system's temp dir, removed at the end.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "reqpool-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
