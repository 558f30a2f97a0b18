//! The chaos soak, short: a few thousand operations against a seeded fault
//! server in plain `cargo test`; a longer one is `#[ignore]`d (and the full
//! run is `cargo run --release --example soak`).

#[path = "common/chaos.rs"]
mod chaos;
mod common;

fn run(seed: u64, rounds: usize, per_round: usize) {
    let report = chaos::soak(seed, rounds, per_round, 16);
    println!("{report:#?}");
    let broken = report.broken();
    assert!(broken.is_empty(), "seed {seed}: {broken:#?}");
    assert!(report.handles > 0 && report.server_requests > 0);
}

#[test]
fn soak_short() {
    let seed = std::env::var("REQPOOL_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001);
    run(seed, 4, 750);
}

#[test]
#[ignore = "about a minute: cargo test --test soak -- --ignored"]
fn soak_long() {
    run(0x5eed_0002, 10, 3000);
}
