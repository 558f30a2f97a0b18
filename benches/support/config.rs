//! The one Criterion configuration of the repository's benches: short
//! warm-up and measurement (these machines are shared and noisy; the
//! medians of one run are compared side by side), no plots.

use criterion::Criterion;
use std::time::Duration;

/// `samples`: Criterion's sample size (10 for benches whose iterations
/// are whole batches of requests; its default of 100 otherwise).
pub(crate) fn config(samples: usize) -> Criterion {
    Criterion::default()
        .sample_size(samples)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
}
