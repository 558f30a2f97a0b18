//! Synchronized bursts: prepare N jobs in parallel, release all N requests
//! at the same instant.

use crate::deadline::Deadline;
use crate::error::{Error, panic_message};
use crate::pending::Pending;
use crate::pool::Pool;
use crate::sync::{lock, wait_while};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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
    fn ready(&self, deadline: Deadline) -> Result<(), Error> {
        let mut s = lock(&self.state);
        s.arrived += 1;
        if s.arrived == self.parties {
            self.all_in.notify_all();
        }
        let (mut s, _) = wait_while(&self.all_in, s, deadline, |s| {
            s.broken.is_none() && s.arrived < self.parties
        });
        if let Some(why) = &s.broken {
            return Err(Error::Aborted {
                reason: why.clone(),
            });
        }
        if s.arrived == self.parties {
            return Ok(());
        }
        let why = format!(
            "only {} of {} parties were ready within the burst's timeout",
            s.arrived, self.parties
        );
        s.broken = Some(why.clone());
        self.all_in.notify_all();
        Err(Error::Aborted { reason: why })
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
    /// until every party is prepared, then runs `send` in all of them at
    /// the same instant: a synchronized burst.
    ///
    /// Each party is a job with the pool's limits, like a
    /// [`submit`](Pool::submit) closure: requests `send` makes through the
    /// agent are cut off when the job's time runs out.
    ///
    /// - If a preparation fails or panics, every other party is released
    ///   with [`Error::Aborted`] instead of being left waiting.
    /// - If not every party is ready within `timeout` (for example because
    ///   other jobs hold workers), the burst is aborted the same way.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] at once if `n` is larger than the number of workers
    /// that can run together: the parties could never all be running, so
    /// the burst would deadlock.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let pool = reqpool::Pool::new(4);
    /// let sent = pool.burst(
    ///     4,
    ///     Duration::from_secs(5),
    ///     |party| Ok(party * 10),           // blocking preparation
    ///     |_agent, prepared| Ok((prepared, Instant::now())),
    /// )?;
    /// let times: Vec<Instant> = sent.into_iter().map(|p| p.wait().unwrap().1).collect();
    /// let spread = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    /// assert!(spread < Duration::from_secs(1));
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn burst<P, T, Prep, Send>(
        &self,
        n: usize,
        timeout: Duration,
        prepare: Prep,
        send: Send,
    ) -> Result<Vec<Pending<T>>, Error>
    where
        T: std::marker::Send + 'static,
        Prep: Fn(usize) -> Result<P, Error> + std::marker::Send + Sync + 'static,
        Send: Fn(&ureq::Agent, P) -> Result<T, Error> + std::marker::Send + Sync + 'static,
    {
        let workers = self.workers() - usize::from(self.on_own_worker());
        if n > workers {
            return Err(Error::usage(format!(
                "a burst of {n} needs {n} workers running at once, but only {workers} can; \
                 use a pool with more workers or a smaller burst"
            )));
        }
        let release = Arc::new(Release {
            parties: n,
            state: Mutex::new(State::default()),
            all_in: Condvar::new(),
        });
        let deadline = Deadline::after(timeout);
        let prepare = Arc::new(prepare);
        let send = Arc::new(send);
        Ok((0..n)
            .map(|party| {
                let (release, prepare, send) = (release.clone(), prepare.clone(), send.clone());
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
                    send(agent, prepared)
                })
            })
            .collect())
    }
}
