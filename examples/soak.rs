//! The chaos soak at full size: requests against a seeded fault server that
//! answers normally, slowly, with 5xx, with `429 Retry-After`, resets,
//! stalls, trickles, closes mid-body or sends a gzip bomb (about 45 %
//! faults), mixed with cancels, nested waits inside jobs, `first_success`,
//! `Completions`, fire-and-forget and one `shutdown_now` halfway through a
//! round. It checks that every handle resolved, none later than its
//! deadline plus grace, the stats add up, descriptors and threads are back
//! where they started, and the peak RSS of the second half is within 10 %
//! of the first.
//!
//! `cargo run --release --example soak -- [rounds] [per_round] [workers] [seed]`
//! (defaults: 10 rounds of 25,000, 64 workers). A failure prints the seed.

#[path = "../tests/common/chaos.rs"]
mod chaos;
#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = *args.first().unwrap_or(&10) as usize;
    let per_round = *args.get(1).unwrap_or(&25_000) as usize;
    let workers = *args.get(2).unwrap_or(&64) as usize;
    let seed = *args.get(3).unwrap_or(&0x5eed_0003);
    let r = chaos::soak(seed, rounds, per_round, workers);
    let (rss1, rss2) = r.rss_halves_kib;
    let drift = (rss2 as f64 - rss1 as f64) / rss1.max(1) as f64 * 100.0;
    println!(
        "seed {:#x}: {} handles and {} fired in {:.1?}; the server answered {} requests, {} of them with a fault ({:.0} %)",
        r.seed,
        r.handles,
        r.fired,
        r.took,
        r.server_requests,
        r.faults,
        100.0 * r.faults as f64 / r.server_requests.max(1) as f64
    );
    println!(
        "resolved {}, unresolved {}, late beyond {:?}: {} (worst {:?}); descriptors {} -> {}, threads {} -> {}; peak RSS {} KiB then {} KiB ({drift:+.1} %)",
        r.resolved,
        r.unresolved,
        chaos::LATE,
        r.late,
        r.worst_late,
        r.fds.0,
        r.fds.1,
        r.threads.0,
        r.threads.1,
        rss1,
        rss2
    );
    let mut broken = r.broken();
    if drift > 10.0 {
        broken.push(format!("RSS drift {drift:.1} %"));
    }
    if r.threads.1 > r.threads.0 {
        let mut names = std::collections::BTreeMap::<String, usize>::new();
        for t in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            *names.entry(name.trim().to_string()).or_default() += 1;
        }
        eprintln!("threads left: {names:?}");
    }
    if !broken.is_empty() {
        eprintln!("seed {:#x} broke: {broken:#?}", r.seed);
        std::process::exit(1);
    }
}
