//! Nothing to use: this package holds the part of reqpool's tests and
//! benches that needs heavy dev-dependencies (criterion, rcgen, rustls,
//! indicatif), so that the crate's own examples build without them. Run it
//! with the rest: `cargo test` at the workspace root.
