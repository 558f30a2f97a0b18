//! The per-host cap: at most N requests in flight to one host, without
//! holding a worker while a job waits for its host.
//!
//! A job whose host is at its cap is parked (off the workers) and handed
//! the slot of the next request to that host that finishes; jobs for other
//! hosts keep flowing meanwhile.

use crate::sync::lock;
use crate::worker::Dispatch;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Requests in flight per host, and the jobs parked behind them.
pub(crate) struct HostCaps {
    cap: usize,
    hosts: Mutex<HashMap<Arc<str>, Host>>,
}

#[derive(Default)]
struct Host {
    in_flight: usize,
    parked: VecDeque<Dispatch>,
}

impl HostCaps {
    pub(crate) fn new(cap: usize) -> HostCaps {
        HostCaps {
            cap: cap.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a slot for `host` and gives the job back, or parks it.
    pub(crate) fn acquire_or_park(&self, host: &Arc<str>, job: Dispatch) -> Option<Dispatch> {
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
    pub(crate) fn take_parked(&self) -> Vec<Dispatch> {
        let mut hosts = lock(&self.hosts);
        hosts
            .values_mut()
            .flat_map(|h| h.parked.drain(..))
            .collect()
    }

    /// Frees a finished job's slot, or hands it to the next parked job,
    /// which the caller then queues.
    pub(crate) fn release(&self, host: &Arc<str>) -> Option<Dispatch> {
        let mut hosts = lock(&self.hosts);
        let h = hosts.get_mut(host)?;
        match h.parked.pop_front() {
            Some(mut next) => {
                next.holds_slot = true; // the slot moves over as it is
                Some(next)
            }
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
