//! Endpoints paused by a `410 Gone` (with
//! [`OutboxOptions::pause_on_gone`](super::OutboxOptions::pause_on_gone)):
//! the server said it wants no more of them. A job to a paused endpoint
//! is not sent: it waits, pending, until the endpoint is resumed. Kept in
//! this process's memory: a restarted process learns it again from the
//! next `410`.

use crate::sync::lock;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a job to a paused endpoint is looked at again: after a
/// resume, its jobs go within this.
pub(super) const LOOK_AGAIN: Duration = Duration::from_secs(2);

/// The paused endpoints, by their URL as stored.
#[derive(Debug, Default)]
pub(super) struct Paused {
    urls: Mutex<BTreeSet<String>>,
    /// Any paused: a delivery then looks the set up (none: no lock).
    any: AtomicBool,
}

impl Paused {
    /// Pauses `url`; true if it was not paused.
    pub(super) fn pause(&self, url: &str) -> bool {
        let mut urls = lock(&self.urls);
        self.any.store(true, Ordering::Release);
        urls.insert(url.to_string())
    }

    pub(super) fn is_paused(&self, url: &str) -> bool {
        self.any.load(Ordering::Acquire) && lock(&self.urls).contains(url)
    }

    /// Resumes `url`; true if it was paused.
    pub(super) fn resume(&self, url: &str) -> bool {
        let mut urls = lock(&self.urls);
        let was = urls.remove(url);
        self.any.store(!urls.is_empty(), Ordering::Release);
        was
    }

    /// The paused endpoints, their URLs redacted.
    pub(super) fn list(&self) -> Vec<String> {
        lock(&self.urls)
            .iter()
            .map(|u| crate::redact::redact_url(u))
            .collect()
    }
}
