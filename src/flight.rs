//! Shared flights: identical GET or HEAD requests asked for with
//! `RequestBuilder::shared` while one of them is in flight ride that one
//! (Go's `singleflight`). Every handle gets the answer, or the same error;
//! a handle that is cancelled or dropped leaves the others served, and
//! the request is cut off only when no handle is left.

use crate::deadline::Deadline;
use crate::error::{Error, Phase};
use crate::pending::Pending;
use crate::prepare::{Prepared, Spec};
use crate::response::Response;
use crate::slot::Slot;
use crate::sync::lock;
use crate::task::{Bound, Job, Ran, State};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use ureq::http::Method;

/// The flights of one pool, by what makes two requests the same.
#[derive(Default)]
pub(crate) struct Flights {
    map: Arc<Mutex<HashMap<String, Arc<Flight>>>>,
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys hold the requests' headers, secrets included.
        f.debug_struct("Flights")
            .field("in_flight", &lock(&self.map).len())
            .finish()
    }
}

/// One request in flight and the handles riding it.
struct Flight {
    pool: usize,
    /// The request, once it is handed to the pool.
    job: OnceLock<Arc<dyn Job>>,
    riders: Mutex<Riders>,
}

#[derive(Default)]
struct Riders {
    slots: Vec<Arc<Slot<Response>>>,
    /// The request has ended and its result went out.
    landed: bool,
}

/// True if `spec` may share a flight: a GET or HEAD without a body.
pub(crate) fn can_share(spec: &Spec) -> bool {
    matches!(spec.method, Method::GET | Method::HEAD) && spec.body.is_none()
}

/// What makes two requests the same: method, URL (query included) and
/// every header, in order of name (a different token or `Accept` is a
/// different request). Kept in memory only, never shown.
fn key(spec: &Spec) -> String {
    let mut headers: Vec<_> = spec
        .headers
        .0
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    headers.sort();
    let mut key = format!("{} {}\n", spec.method, spec.url);
    for (k, v) in headers {
        key.push_str(k);
        key.push(':');
        key.push_str(&String::from_utf8_lossy(v));
        key.push('\n');
    }
    key
}

/// A seat taken on a flight: the handle's slot and its job, and for the
/// first seat of a new flight, the request to start.
pub(crate) struct Boarding {
    pub(crate) slot: Arc<Slot<Response>>,
    pub(crate) rider: Arc<dyn Job>,
    /// Set for the seat that opened the flight: start its request and
    /// hand it over with [`Lead::took_off`].
    pub(crate) lead: Option<Lead>,
}

/// The seat that opened a flight, until its request is started.
pub(crate) struct Lead {
    map: Arc<Mutex<HashMap<String, Arc<Flight>>>>,
    key: String,
    flight: Arc<Flight>,
}

impl Flights {
    /// Takes a seat for `req` (a request of pool `pool`) on the identical
    /// flight in the air, or opens a new one.
    pub(crate) fn board(&self, pool: usize, req: &Prepared) -> Boarding {
        let key = key(&req.spec);
        let slot = Arc::new(Slot::new());
        let (flight, lead) = {
            let mut map = lock(&self.map);
            match map.get(&key) {
                Some(f) => {
                    lock(&f.riders).slots.push(Arc::clone(&slot));
                    (Arc::clone(f), false)
                }
                None => {
                    let f = Arc::new(Flight {
                        pool,
                        job: OnceLock::new(),
                        riders: Mutex::new(Riders {
                            slots: vec![Arc::clone(&slot)],
                            landed: false,
                        }),
                    });
                    map.insert(key.clone(), Arc::clone(&f));
                    (f, true)
                }
            }
        };
        let lead = lead.then(|| Lead {
            map: Arc::clone(&self.map),
            key,
            flight: Arc::clone(&flight),
        });
        let rider = Arc::new(Rider {
            flight,
            slot: Arc::clone(&slot),
            timeout: req.timeout,
            method: req.spec.method.to_string(),
            url: req.spec.url.clone(),
        });
        Boarding { slot, rider, lead }
    }
}

impl Lead {
    /// The flight's request was handed to the pool as `sent`: every seat
    /// gets its end.
    pub(crate) fn took_off(self, sent: Pending<Response>) {
        if let Some(job) = sent.job() {
            let _ = self.flight.job.set(job);
        }
        let Lead { map, key, flight } = self;
        sent.on_complete(Box::new(move |result| land(&map, &key, &flight, result)));
    }
}

/// The request ended: no one joins it from now on, and every rider left
/// gets its result.
fn land(
    map: &Mutex<HashMap<String, Arc<Flight>>>,
    key: &str,
    flight: &Arc<Flight>,
    result: Result<Response, Error>,
) {
    {
        let mut map = lock(map);
        if map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            map.remove(key);
        }
    }
    let slots = {
        let mut riders = lock(&flight.riders);
        riders.landed = true;
        std::mem::take(&mut riders.slots)
    };
    for slot in slots {
        slot.deliver(match &result {
            Ok(resp) => Ok(resp.clone()),
            Err(e) => Err(e.again()),
        });
    }
}

/// One handle's seat on a flight: it waits on the flight's request, and
/// its cancel gives up its seat only.
struct Rider {
    flight: Arc<Flight>,
    slot: Arc<Slot<Response>>,
    timeout: Duration,
    method: String,
    url: String,
}

impl Rider {
    fn job(&self) -> Option<&Arc<dyn Job>> {
        self.flight.job.get()
    }
}

impl Job for Rider {
    fn state(&self) -> State {
        if self.slot.is_ready() {
            return State::Done;
        }
        self.job().map_or(State::Queued, |j| match j.state() {
            // Landed, and this seat's result on its way.
            State::Done | State::Cancelled => State::Running,
            s => s,
        })
    }
    fn pool(&self) -> usize {
        self.flight.pool
    }
    fn bound(&self) -> Bound {
        self.job()
            .map_or(Bound::Queued(Deadline::NEVER), |j| j.bound())
    }
    /// Gives up this seat: its handle resolves as cancelled; the request
    /// is cut off only if no seat is left.
    fn cancel(&self) -> bool {
        let last = {
            let mut riders = lock(&self.flight.riders);
            if riders.landed {
                return false;
            }
            riders.slots.retain(|s| !Arc::ptr_eq(s, &self.slot));
            riders.slots.is_empty()
        };
        self.slot.deliver(Err(Error::Cancelled));
        if last && let Some(job) = self.job() {
            job.cancel();
        }
        true
    }
    fn expire(&self) -> bool {
        false
    }
    fn run(&self) -> Ran {
        self.job().map_or(Ran::No, |j| j.run())
    }
    fn resume(&self, ticket: u32) -> bool {
        self.job().is_some_and(|j| j.resume(ticket))
    }
    fn runs_here(&self) -> bool {
        self.job().is_some_and(|j| j.runs_here())
    }
    fn sleep(&self) -> Option<(Instant, u32)> {
        self.job().and_then(|j| j.sleep())
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn timeout_error(&self, phase: Phase) -> Error {
        Error::timeout(phase, &self.method, &self.url)
    }
}
