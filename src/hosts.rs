//! The per-host cap: at most N requests in flight to one host, without
//! holding a worker while a job waits for its host.
//!
//! A job whose host is at its cap is parked (off the workers) and handed
//! the slot of the next request to that host that finishes; jobs for other
//! hosts keep flowing meanwhile.

use crate::pending::WORKER_OF;
use crate::pool::Inner;
use crate::task::{Control, QUEUED, lock};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// One queued job on its way to a worker.
pub(crate) struct Dispatch {
    pub(crate) inner: Arc<Inner>,
    pub(crate) task: Arc<dyn Control>,
    /// The host this job counts against, if the pool caps hosts.
    pub(crate) host: Option<Arc<str>>,
    /// The job was handed a host slot while parked.
    holds_slot: bool,
}

impl Dispatch {
    pub(crate) fn new(inner: Arc<Inner>, task: Arc<dyn Control>, host: Option<Arc<str>>) -> Self {
        Dispatch {
            inner,
            task,
            host,
            holds_slot: false,
        }
    }

    /// Resolves the job as cancelled without running it (and passes on a
    /// host slot it holds).
    pub(crate) fn cancel(self) {
        self.task.cancel();
        if self.holds_slot
            && let (Some(h), Some(caps)) = (&self.host, &self.inner.hosts)
        {
            caps.release(h);
        }
    }

    /// Runs on a worker: cancel, park, or run the job.
    pub(crate) fn go(self) {
        let inner = Arc::clone(&self.inner);
        WORKER_OF.with(|w| w.set(inner.id));
        if inner.cancel_queued.load(Ordering::Acquire) {
            self.cancel();
            return;
        }
        let (Some(host), Some(caps)) = (self.host.clone(), inner.hosts.as_ref()) else {
            self.task.run();
            return;
        };
        let task = Arc::clone(&self.task);
        if task.state() != QUEUED {
            // Cancelled, or run inline by a waiter: nothing to run here.
            if self.holds_slot {
                caps.release(&host);
            }
            return;
        }
        if !self.holds_slot && !caps.acquire_or_park(&host, self) {
            return; // parked until a slot frees up
        }
        task.run();
        caps.release(&host);
    }
}

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

    /// Takes a slot for `host` (true), or parks the job (false).
    fn acquire_or_park(&self, host: &Arc<str>, job: Dispatch) -> bool {
        let mut hosts = lock(&self.hosts);
        let h = hosts.entry(Arc::clone(host)).or_default();
        if h.in_flight < self.cap {
            h.in_flight += 1;
            true
        } else {
            h.parked.push_back(job);
            false
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

    /// Gives a finished job's slot to the next parked one, or frees it.
    fn release(&self, host: &Arc<str>) {
        let next = {
            let mut hosts = lock(&self.hosts);
            let Some(h) = hosts.get_mut(host) else { return };
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
        };
        if let Some(next) = next {
            let inner = Arc::clone(&next.inner);
            inner.execute(next);
        }
    }
}
