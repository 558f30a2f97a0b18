//! Synchronized bursts: prepare N jobs in parallel, release all N requests
//! at the same instant.

use crate::error::{Error, Phase, panic_message};
use crate::pending::Pending;
use crate::pool::Pool;
use crate::task::lock;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A barrier that can be broken: by a party that failed, or by time.
struct Release {
    parties: usize,
    state: Mutex<State>,
    all_in: Condvar,
}

#[derive(Default)]
struct State {
    arrived: usize,
    broken: Option<String>,
}

impl Release {
    /// Waits until every party is ready, or the burst is broken.
    fn ready(&self, deadline: Instant) -> Result<(), Error> {
        let mut s = lock(&self.state);
        s.arrived += 1;
        if s.arrived == self.parties {
            self.all_in.notify_all();
        }
        loop {
            if let Some(why) = &s.broken {
                return Err(Error::other(format!("burst aborted: {why}")));
            }
            if s.arrived == self.parties {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                s.broken = Some(format!(
                    "only {} of {} parties were ready before the release timeout",
                    s.arrived, self.parties
                ));
                self.all_in.notify_all();
                return Err(Error::Timeout {
                    phase: Phase::Queued,
                    method: String::new(),
                    url: String::new(),
                });
            }
            s = self
                .all_in
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn break_with(&self, why: String) {
        let mut s = lock(&self.state);
        if s.broken.is_none() {
            s.broken = Some(why);
        }
        self.all_in.notify_all();
    }
}

impl Pool {
    /// Runs `prepare` for parties `0..n` in parallel on the workers, waits
    /// until every party is prepared, then runs `fire` in all of them at the
    /// same instant: a synchronized burst.
    ///
    /// - If `n` is larger than the number of workers, returns
    ///   [`Error::InvalidRequest`] at once: the parties could never all be
    ///   running together, so the burst would deadlock.
    /// - If a preparation fails or panics, every other party is released
    ///   with an error ("burst aborted: …") instead of being left waiting.
    /// - If not every party is ready within `release_within` (for example
    ///   because other jobs hold workers), the burst is broken the same way.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let pool = reqpool::Pool::new(4);
    /// let fired = pool.burst(
    ///     4,
    ///     Duration::from_secs(5),
    ///     |party| Ok(party * 10),           // blocking preparation
    ///     |_agent, prepared| Ok((prepared, Instant::now())),
    /// )?;
    /// let times: Vec<Instant> = fired.into_iter().map(|p| p.wait().unwrap().1).collect();
    /// let spread = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    /// assert!(spread < Duration::from_secs(1));
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn burst<P, T, Prep, Fire>(
        &self,
        n: usize,
        release_within: Duration,
        prepare: Prep,
        fire: Fire,
    ) -> Result<Vec<Pending<T>>, Error>
    where
        T: Send + 'static,
        Prep: Fn(usize) -> Result<P, Error> + Send + Sync + 'static,
        Fire: Fn(&ureq::Agent, P) -> Result<T, Error> + Send + Sync + 'static,
    {
        let workers = self.workers() - usize::from(self.on_own_worker());
        if n > workers {
            return Err(Error::invalid(
                "",
                format!(
                    "a burst of {n} needs {n} workers running at once, but only {workers} can; \
                     use a pool with more workers or a smaller burst"
                ),
            ));
        }
        let release = Arc::new(Release {
            parties: n,
            state: Mutex::new(State::default()),
            all_in: Condvar::new(),
        });
        let deadline = Instant::now() + release_within;
        let prepare = Arc::new(prepare);
        let fire = Arc::new(fire);
        Ok((0..n)
            .map(|party| {
                let (release, prepare, fire) = (release.clone(), prepare.clone(), fire.clone());
                self.submit(move |agent| {
                    let prepared = match catch_unwind(AssertUnwindSafe(|| prepare(party))) {
                        Ok(Ok(p)) => p,
                        Ok(Err(e)) => {
                            release.break_with(format!("party {party} failed to prepare: {e}"));
                            return Err(e);
                        }
                        Err(payload) => {
                            let message = panic_message(&*payload);
                            release.break_with(format!(
                                "party {party} panicked while preparing: {message}"
                            ));
                            return Err(Error::Panicked { message });
                        }
                    };
                    release.ready(deadline)?;
                    fire(agent, prepared)
                })
            })
            .collect())
    }
}
