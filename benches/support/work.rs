//! The work the throughput benches share (`peers`, `ladder`): the POST's
//! JSON body, the hand-rolled pool's agent, and the two peers every
//! comparison starts from: the hand-rolled pool and reqpool's `post_json`.

/// The small JSON body every POST carries.
pub(crate) fn body() -> serde_json::Value {
    serde_json::json!({"tag": "bench", "items": [{"id": 1}]})
}

/// A plain ureq agent keeping a connection per worker, as a user would
/// make it.
pub(crate) fn plain_agent(workers: usize) -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_idle_connections_per_host(workers)
        .build()
        .into()
}

/// `n` POSTs through `workers` std threads sharing `agent`, jobs in and
/// replies out over channels (the code a user would write).
pub(crate) fn hand_rolled(agent: &ureq::Agent, url: &str, n: usize, workers: usize) {
    crate::common::HandRolled::start(workers, agent, url, &body()).run(n);
}

/// `n` POSTs through `pool`: every one dispatched with `post_json`, then
/// every handle waited on.
pub(crate) fn reqpool_json(pool: &reqpool::Pool, url: &str, n: usize) {
    let body = body();
    let all: Vec<_> = (0..n)
        .map(|_| pool.post_json::<serde_json::Value>(url, &body))
        .collect();
    for p in all {
        std::hint::black_box(p.wait().unwrap());
    }
}
