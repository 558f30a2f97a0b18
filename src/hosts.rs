//! The per-host cap: at most N requests in flight to one host, without
//! holding a worker while a job waits for its host.
//!
//! A job whose host is at its cap is parked (off the workers) and handed
//! the slot of the next request to that host that finishes; jobs for other
//! hosts keep flowing meanwhile.

use crate::sync::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Requests in flight per host, and the jobs parked behind them.
pub(crate) struct HostCaps<J> {
    cap: usize,
    hosts: Mutex<HashMap<Arc<str>, Host<J>>>,
}

struct Host<J> {
    in_flight: usize,
    parked: VecDeque<J>,
}

impl<J> Default for Host<J> {
    fn default() -> Self {
        Host {
            in_flight: 0,
            parked: VecDeque::new(),
        }
    }
}

impl<J> HostCaps<J> {
    pub(crate) fn new(cap: usize) -> HostCaps<J> {
        HostCaps {
            cap: cap.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a slot for `host` and gives the job back, or parks it.
    pub(crate) fn acquire_or_park(&self, host: &Arc<str>, job: J) -> Option<J> {
        let mut hosts = lock(&self.hosts);
        let h = hosts.entry(Arc::clone(host)).or_default();
        if h.in_flight < self.cap {
            h.in_flight += 1;
            Some(job)
        } else {
            h.parked.push_back(job);
            None
        }
    }

    /// Removes every parked job (for `shutdown_now`).
    pub(crate) fn take_parked(&self) -> Vec<J> {
        let mut hosts = lock(&self.hosts);
        hosts
            .values_mut()
            .flat_map(|h| h.parked.drain(..))
            .collect()
    }

    /// Frees a finished job's slot, or hands it to the next parked job,
    /// which the caller then queues (it holds the slot as it is).
    pub(crate) fn release(&self, host: &Arc<str>) -> Option<J> {
        let mut hosts = lock(&self.hosts);
        let h = hosts.get_mut(host)?;
        match h.parked.pop_front() {
            Some(next) => Some(next),
            None => {
                h.in_flight -= 1;
                if h.in_flight == 0 {
                    hosts.remove(host);
                }
                None
            }
        }
    }
}
