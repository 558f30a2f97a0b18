//! Waiting on many handles at once: all, any, first success, completion
//! order, and an ordered map with a bounded window.

use crate::deadline::Deadline;
use crate::error::Error;
use crate::pending::Pending;
use crate::pool::Pool;
use crate::sync::lock;
use crate::task::Job;
use crate::wait::{Waiting, wait};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Blocks the current thread until every handle has finished; returns the
/// results in the order the handles were given, every error kept.
///
/// The handles are all taken from `pending` before the first wait, so a
/// lazy iterator that submits as it goes submits everything at once.
///
/// # Errors
///
/// None of its own: each handle's error is in its place in the result.
///
/// ```
/// let pool = reqpool::Pool::new(4);
/// let jobs = (1..=3).map(|i| pool.submit(move |_| if i == 2 { Err(reqpool::Error::other("two")) } else { Ok(i) }));
/// let results = reqpool::wait_all(jobs);
/// assert_eq!(results[0].as_ref().unwrap(), &1);
/// assert!(results[1].is_err());
/// assert_eq!(results[2].as_ref().unwrap(), &3);
/// ```
pub fn wait_all<T: Send + 'static>(
    pending: impl IntoIterator<Item = Pending<T>>,
) -> Vec<Result<T, Error>> {
    let all: Vec<Pending<T>> = pending.into_iter().collect();
    all.into_iter().map(Pending::wait).collect()
}

/// The first handle to finish, from [`wait_any`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Any<T> {
    /// Its position in the list given to `wait_any`.
    pub index: usize,
    /// Its result.
    pub result: Result<T, Error>,
    /// The other handles, in their order, without the finished one.
    pub rest: Vec<Pending<T>>,
}

/// Blocks the current thread until one of the handles has finished; returns
/// its position, its result, and the other handles.
///
/// Each result is delivered once: the finished handle is not in `rest`.
/// A handle past its time limit counts as finished, with its timeout.
///
/// # Errors
///
/// [`Error::Usage`] for an empty list (not a panic).
/// No polling: each handle signals one shared channel when its result lands.
///
/// ```
/// let pool = reqpool::Pool::new(2);
/// let (tx, rx) = crossbeam_channel::bounded::<()>(0);
/// let slow = pool.submit(move |_| { rx.recv().ok(); Ok("slow") });
/// let fast = pool.submit(|_| Ok("fast"));
/// let first = reqpool::wait_any(vec![slow, fast])?;
/// assert_eq!((first.index, first.result?), (1, "fast"));
/// tx.send(()).unwrap();
/// assert_eq!(reqpool::wait_all(first.rest)[0].as_ref().unwrap(), &"slow");
/// # Ok::<(), reqpool::Error>(())
/// ```
pub fn wait_any<T: Send + 'static>(pending: Vec<Pending<T>>) -> Result<Any<T>, Error> {
    if pending.is_empty() {
        return Err(Error::usage("wait_any needs at least one handle"));
    }
    let (i, result) = wait(&mut AnyOf(&pending), Deadline::NEVER)
        .ok_or_else(|| Error::usage("wait_any ended without a result"))?;
    Ok(pick(pending, i, result))
}

/// The first of several handles to finish, as something to wait for.
struct AnyOf<'a, T>(&'a [Pending<T>]);

impl<T: Send + 'static> Waiting for AnyOf<'_, T> {
    type Out = (usize, Result<T, Error>);

    fn ready(&mut self) -> Option<Self::Out> {
        // Finished ones first, without registering on any.
        let i = self.0.iter().position(Pending::is_finished)?;
        Some((i, self.0[i].try_wait()?))
    }

    fn jobs(&self) -> Vec<(usize, Arc<dyn Job>)> {
        let jobs = self.0.iter().enumerate();
        jobs.filter_map(|(i, p)| Some((i, p.job()?))).collect()
    }

    fn gave_up(&mut self, i: usize, err: Error) -> Option<Self::Out> {
        Some((i, Err(err)))
    }

    fn block(&mut self, look: Deadline) -> Option<Self::Out> {
        let i = first_landed(self.0, look)?;
        Some((i, self.0[i].try_wait()?))
    }
}

/// Blocks until one of `pending` has its result or `look` passes; the
/// index of one that has it. Each handle sends its index on one shared
/// channel when its result lands, so a wake-up costs nothing per handle.
fn first_landed<T: Send + 'static>(pending: &[Pending<T>], look: Deadline) -> Option<usize> {
    let (tx, rx) = bounded(pending.len());
    let mut landed = None;
    for (i, p) in pending.iter().enumerate() {
        if p.watch(&tx, i) {
            landed = Some(i);
            break;
        }
    }
    if landed.is_none() {
        landed = match look.instant() {
            Some(d) => rx.recv_deadline(d).ok(),
            None => rx.recv().ok(),
        };
    }
    for p in pending {
        p.unwatch(&tx);
    }
    landed
}

/// Takes handle `index` out of `pending`, with its result.
fn pick<T: Send + 'static>(
    mut pending: Vec<Pending<T>>,
    index: usize,
    result: Result<T, Error>,
) -> Any<T> {
    drop(pending.remove(index));
    Any {
        index,
        result,
        rest: pending,
    }
}

/// Every error of a [`first_success`] or [`fallback`] where nothing succeeded.
#[derive(Debug)]
#[non_exhaustive]
pub struct AllFailed {
    /// Each failure with the position of the handle (or tier) it came from,
    /// in submission order (not the order they failed in).
    pub errors: Vec<(usize, Error)>,
    /// "handles" or "tiers".
    what: &'static str,
}

impl fmt::Display for AllFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.is_empty() {
            return f.write_str("nothing to try: no handles were given");
        }
        write!(f, "all {} {} failed", self.errors.len(), self.what)?;
        for (n, (i, e)) in self.errors.iter().enumerate() {
            let sep = if n == 0 { ": " } else { "; " };
            write!(f, "{sep}#{i}: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AllFailed {}

/// Blocks the current thread until the first handle succeeds; returns its
/// position and value, and cancels the others, requests in flight
/// included (their sockets are shut down, their workers freed).
///
/// Unlike Java's `anyOf`, a failure does not end the wait.
///
/// # Errors
///
/// When none succeeds, [`AllFailed`] with every error and the position of
/// the handle it came from.
///
/// ```
/// use reqpool::Error;
/// let pool = reqpool::Pool::new(3);
/// let tiers = vec![
///     pool.submit(|_| Err::<&str, _>(Error::other("exact: no match"))),
///     pool.submit(|_| Err(Error::other("province: no match"))),
///     pool.submit(|_| Ok("nationwide: 1 match")),
/// ];
/// let (index, value) = reqpool::first_success(tiers).unwrap();
/// assert_eq!((index, value), (2, "nationwide: 1 match"));
/// ```
pub fn first_success<T: Send + 'static>(pending: Vec<Pending<T>>) -> Result<(usize, T), AllFailed> {
    let jobs: Vec<Arc<dyn Job>> = pending.iter().filter_map(Pending::job).collect();
    let mut set = Completions::new();
    for (i, p) in pending.into_iter().enumerate() {
        set.push(i, p);
    }
    let mut errors = Vec::new();
    for (i, result) in set {
        match result {
            Ok(v) => {
                for j in &jobs {
                    j.cancel();
                }
                return Ok((i, v));
            }
            Err(e) => errors.push((i, e)),
        }
    }
    errors.sort_by_key(|(i, _)| *i);
    Err(AllFailed {
        errors,
        what: "handles",
    })
}

/// Blocks the current thread while it tries `tiers` one after another, and
/// returns the first success: a fallback chain such as "exact match, then
/// same province, then nationwide". A tier starts only after the one before
/// it failed, so no request is wasted.
///
/// # Errors
///
/// When all fail, [`AllFailed`] with every error and the position of its
/// tier.
///
/// ```
/// use reqpool::Error;
/// let pool = reqpool::Pool::new(2);
/// let tiers: Vec<Box<dyn FnOnce() -> reqpool::Pending<u32>>> = vec![
///     Box::new(|| pool.submit(|_| Err(Error::other("exact: none")))),
///     Box::new(|| pool.submit(|_| Ok(7))),
/// ];
/// assert_eq!(reqpool::fallback(tiers).unwrap(), (1, 7));
/// ```
pub fn fallback<T, F>(tiers: impl IntoIterator<Item = F>) -> Result<(usize, T), AllFailed>
where
    T: Send + 'static,
    F: FnOnce() -> Pending<T>,
{
    let mut errors = Vec::new();
    for (i, tier) in tiers.into_iter().enumerate() {
        match tier().wait() {
            Ok(v) => return Ok((i, v)),
            Err(e) => errors.push((i, e)),
        }
    }
    Err(AllFailed {
        errors,
        what: "tiers",
    })
}

/// Progress of a set of jobs: how many there are and how they stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Progress {
    /// Jobs added so far.
    pub total: usize,
    /// Jobs whose result has been handed out (succeeded or failed).
    pub done: usize,
    /// Of `done`, how many failed.
    pub failed: usize,
    /// Jobs not handed out yet (queued, running, or finished and waiting to
    /// be taken).
    pub in_flight: usize,
}

/// Results in the order the jobs finish, each with the tag it was added
/// with: Python's `as_completed`, for a set that can grow while you iterate.
///
/// Every job's result goes into one shared channel as it finishes, so
/// [`next`](Iterator::next) blocks on one receive, never polls. With a
/// [timeout](Completions::timeout), iteration ends when it passes; the
/// jobs left stay counted in [`progress`](Completions::progress) and can be
/// cancelled with [`cancel_rest`](Completions::cancel_rest).
///
/// ```
/// let pool = reqpool::Pool::new(4);
/// let mut set = reqpool::Completions::new();
/// for n in [3u64, 1, 2] {
///     set.push(n, pool.submit(move |_| Ok(n * 10)));
/// }
/// let mut sum = 0;
/// while let Some((tag, result)) = set.next() {
///     sum += result?;
///     if tag == 1 {
///         set.push(100, pool.submit(|_| Ok(1000))); // grow while iterating
///     }
/// }
/// assert_eq!(sum, 1060);
/// assert_eq!(set.progress().done, 4);
/// # Ok::<(), reqpool::Error>(())
/// ```
pub struct Completions<K, T> {
    tx: Sender<(K, Result<T, Error>)>,
    rx: Receiver<(K, Result<T, Error>)>,
    /// The jobs not handed out yet, with their tags until then.
    waiting: Vec<Entry<K>>,
    deadline: Deadline,
    progress: Progress,
}

/// A job of a set: its control, and its tag until its result (or the
/// give-up at its limit) takes it — whichever comes first, once.
struct Entry<K> {
    job: Option<Arc<dyn Job>>,
    tag: Arc<Mutex<Option<K>>>,
}

/// The next job of a set to finish, as something to wait for; `None` when
/// nothing is left.
struct Next<'a, K, T>(&'a mut Completions<K, T>);

impl<K: Send + 'static, T: Send + 'static> Waiting for Next<'_, K, T> {
    type Out = Option<(K, Result<T, Error>)>;

    fn ready(&mut self) -> Option<Self::Out> {
        let set = &mut *self.0;
        if set.progress.in_flight == 0 {
            return Some(None);
        }
        if let Ok(got) = set.rx.try_recv() {
            return Some(Some(set.count(got)));
        }
        set.waiting.retain(|e| lock(&e.tag).is_some());
        None
    }

    fn jobs(&self) -> Vec<(usize, Arc<dyn Job>)> {
        let waiting = self.0.waiting.iter().enumerate();
        waiting
            .filter_map(|(i, e)| Some((i, e.job.clone()?)))
            .collect()
    }

    fn gave_up(&mut self, i: usize, err: Error) -> Option<Self::Out> {
        // Its result may have taken the tag first: then it is in the
        // channel, and comes out of the next `ready`.
        let tag = lock(&self.0.waiting.get(i)?.tag).take()?;
        Some(Some(self.0.count((tag, Err(err)))))
    }

    fn block(&mut self, look: Deadline) -> Option<Self::Out> {
        let got = match look.instant() {
            Some(t) => self.0.rx.recv_deadline(t).ok()?,
            None => self.0.rx.recv().ok()?,
        };
        Some(Some(self.0.count(got)))
    }
}

impl<K: Send + 'static, T: Send + 'static> Default for Completions<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Send + 'static, T: Send + 'static> Completions<K, T> {
    /// An empty set.
    pub fn new() -> Self {
        let (tx, rx) = unbounded();
        Completions {
            tx,
            rx,
            waiting: Vec::new(),
            deadline: Deadline::NEVER,
            progress: Progress::default(),
        }
    }

    /// Ends iteration `limit` from now (a time limit for the whole set).
    /// `Duration::MAX` means no limit.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.deadline = Deadline::after(limit);
        self
    }

    /// Adds a job with its tag; its result comes out of `next` when it
    /// finishes.
    pub fn push(&mut self, tag: K, pending: Pending<T>) {
        self.progress.total += 1;
        self.progress.in_flight += 1;
        let tag = Arc::new(Mutex::new(Some(tag)));
        self.waiting.push(Entry {
            job: pending.job(),
            tag: Arc::clone(&tag),
        });
        let tx = self.tx.clone();
        pending.on_complete(Box::new(move |r| {
            if let Some(tag) = lock(&tag).take() {
                let _ = tx.send((tag, r));
            }
        }));
    }

    /// Blocks the current thread until the next job finishes, or `until`.
    fn next_until(&mut self, until: Deadline) -> Option<(K, Result<T, Error>)> {
        wait(&mut Next(self), until).flatten()
    }

    fn count(&mut self, (tag, result): (K, Result<T, Error>)) -> (K, Result<T, Error>) {
        self.progress.in_flight -= 1;
        self.progress.done += 1;
        if result.is_err() {
            self.progress.failed += 1;
        }
        (tag, result)
    }

    /// Blocks the current thread like [`next`](Iterator::next), but at
    /// most `limit`; `None` if nothing finished in time (check
    /// [`progress`](Completions::progress) to tell the cases apart).
    ///
    /// # Errors
    ///
    /// Each job's own error comes out with its tag.
    pub fn next_timeout(&mut self, limit: Duration) -> Option<(K, Result<T, Error>)> {
        let until = self.deadline.min(Deadline::after(limit));
        self.next_until(until)
    }

    /// How the set stands; never blocks.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Cancels every job of the set that has not finished (see
    /// [`Pending::cancel`]: a request in flight is cut off); returns how
    /// many were cancelled. Their results (`Cancelled`) still come out of
    /// `next`.
    pub fn cancel_rest(&self) -> usize {
        let jobs = self.waiting.iter().filter_map(|e| e.job.as_ref());
        jobs.filter(|j| j.cancel()).count()
    }
}

impl<K: Send + 'static, T: Send + 'static> Iterator for Completions<K, T> {
    type Item = (K, Result<T, Error>);

    /// Blocks the current thread until the next job finishes; `None` when
    /// every job added so far has been handed out, or the set's time limit
    /// passed. A job that outlives its own limit comes out as a timeout.
    fn next(&mut self) -> Option<Self::Item> {
        let until = self.deadline;
        self.next_until(until)
    }
}

impl<K, T> fmt::Debug for Completions<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completions")
            .field("progress", &self.progress)
            .field("deadline", &self.deadline.instant())
            .finish_non_exhaustive()
    }
}

/// Results of [`Pool::map_ordered`], in input order.
pub struct MapOrdered<'p, I, F, T> {
    pool: &'p Pool,
    items: I,
    f: F,
    window: usize,
    in_flight: VecDeque<Pending<T>>,
}

impl<I, F, T> Iterator for MapOrdered<'_, I, F, T>
where
    I: Iterator,
    F: FnMut(&Pool, I::Item) -> Pending<T>,
    T: Send + 'static,
{
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.in_flight.len() < self.window {
            match self.items.next() {
                Some(item) => {
                    let p = (self.f)(self.pool, item);
                    self.in_flight.push_back(p);
                }
                None => break,
            }
        }
        self.in_flight.pop_front().map(Pending::wait)
    }
}

impl<I, F, T> fmt::Debug for MapOrdered<'_, I, F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapOrdered")
            .field("window", &self.window)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Runs `f` for every item through the pool and yields the results in
    /// input order, with at most `window` jobs in flight or queued. Each
    /// `next` blocks the current thread until the next result in order is
    /// there; each result is that job's `Result`.
    ///
    /// The input is pulled lazily: an iterator of a million items is never
    /// read into memory at once. `f` gets the pool and an item and returns
    /// the job's handle (a request or a closure). Each `next` blocks the
    /// current thread until the next result in order is there.
    ///
    /// ```
    /// let pool = reqpool::Pool::new(4);
    /// let squares: Vec<u64> = pool
    ///     .map_ordered(1..=5u64, 8, |pool, n| pool.submit(move |_| Ok(n * n)))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(squares, [1, 4, 9, 16, 25]);
    /// # Ok::<(), reqpool::Error>(())
    /// ```
    pub fn map_ordered<I, F, T>(
        &self,
        items: I,
        window: usize,
        f: F,
    ) -> MapOrdered<'_, I::IntoIter, F, T>
    where
        I: IntoIterator,
        F: FnMut(&Pool, I::Item) -> Pending<T>,
        T: Send + 'static,
    {
        MapOrdered {
            pool: self,
            items: items.into_iter(),
            f,
            window: window.max(1),
            in_flight: VecDeque::new(),
        }
    }
}
