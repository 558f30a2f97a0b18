//! The hand-rolled side of comparisons: plain threads sharing one ureq
//! agent, as a user would write without reqpool.

use super::*;

/// GETs `url` `each` times from each of `threads` plain threads sharing
/// `agent`, reading every body; returns when all are done.
pub fn hand_rolled_gets(agent: &ureq::Agent, url: &str, threads: usize, each: usize) {
    let threads: Vec<_> = (0..threads)
        .map(|_| {
            let (agent, url) = (agent.clone(), url.to_string());
            thread::spawn(move || {
                for _ in 0..each {
                    agent
                        .get(&url)
                        .call()
                        .unwrap()
                        .body_mut()
                        .read_to_string()
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// The baseline a pool must match: N std threads sharing one ureq agent,
/// each POSTing `body` to `url` for every job it is given, the parsed
/// replies sent back over a channel. The threads end when it is dropped.
pub struct HandRolled {
    jobs: crossbeam_channel::Sender<()>,
    results: crossbeam_channel::Receiver<serde_json::Value>,
}

impl HandRolled {
    pub fn start(n: usize, agent: &ureq::Agent, url: &str, body: &serde_json::Value) -> HandRolled {
        let (jobs, job_rx) = crossbeam_channel::unbounded::<()>();
        let (res_tx, results) = crossbeam_channel::unbounded();
        for _ in 0..n {
            let (agent, url, body) = (agent.clone(), url.to_string(), body.clone());
            let (job_rx, res_tx) = (job_rx.clone(), res_tx.clone());
            thread::spawn(move || {
                while job_rx.recv().is_ok() {
                    let v: serde_json::Value = agent
                        .post(&url)
                        .send_json(&body)
                        .unwrap()
                        .body_mut()
                        .read_json()
                        .unwrap();
                    if res_tx.send(v).is_err() {
                        return;
                    }
                }
            });
        }
        HandRolled { jobs, results }
    }

    /// Dispatches `n` requests, then collects their replies.
    pub fn run(&self, n: usize) {
        for _ in 0..n {
            self.jobs.send(()).unwrap();
        }
        for _ in 0..n {
            std::hint::black_box(self.results.recv().unwrap());
        }
    }
}
