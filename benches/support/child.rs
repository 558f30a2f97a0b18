//! What the side-by-side benches share: settings from the environment,
//! this bench run again as a child process for one peer, a child's own
//! peak RSS and CPU (from the test kit), medians.

/// The list in `k` (comma-separated), or `default`'s.
pub(crate) fn list<T: std::str::FromStr>(k: &str, default: &str) -> Vec<T> {
    std::env::var(k)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// The value of `k`, or `default` when unset or unreadable.
pub(crate) fn env<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's peak RSS (KiB) and CPU, user and system (s), so far:
/// the test kit's measures.
pub(crate) fn usage() -> (f64, f64) {
    (
        crate::common::peak_rss_kib() as f64,
        crate::common::cpu_seconds(),
    )
}

/// The median of `v` (the upper one of an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs this bench again as a child with `env` set, and returns the
/// numbers of the line it printed as `RESULT a b c …`.
pub(crate) fn run_child(env: &[(&str, String)]) -> Vec<f64> {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("start a peer");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "{env:?}: no result ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line[7..]
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}
