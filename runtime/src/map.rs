//! The dynamic map: a load-balanced parallel map across the ranks of a communicator, by
//! decentralised work stealing over index ranges.
//!
//! Every rank starts with its own contiguous block of the items. It runs items from the front
//! of its range in batches sized from the measured cost per item (about [`BATCH_TIME`] each),
//! while a thread of its own answers steal requests at once, even in the middle of a long item. A
//! rank that runs dry asks a peer chosen at random for work (one request in flight); the victim
//! gives away the back half (rounded up) of what it has not started, items' data included when the items live
//! at the root. A refused request
//! makes the thief wait, doubling the wait up to [`MAX_BACKOFF`] while still answering others; an
//! idle rank blocks, it never spins. Results travel to the root as `(first index, values)`
//! fragments; the root counts them and, once it holds every item's result, tells every rank to
//! stop. With stealing turned off the same machinery is the static block split.

use crate::activity::Waiting;
use crate::codec;
use crate::communicator::Communicator;
use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Target duration of one batch: short enough that a victim answers a thief quickly, long
/// enough that per-batch costs vanish next to the items' own.
pub const BATCH_TIME: Duration = Duration::from_micros(50);
/// Longest wait between two steal attempts of an idle rank.
pub const MAX_BACKOFF: Duration = Duration::from_millis(1);
/// The root reports a map's progress to the launcher at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// Results are sent to the root at least this often while a rank works.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Kinds of the map's messages (their tags, on a context of the map's own).
const INIT: u32 = 1;
const STEAL: u32 = 2;
const GIVE: u32 = 3;
const RESULTS: u32 = 4;
const DONE: u32 = 5;
const FAIL: u32 = 6;

/// Whether ranks steal from each other (the dynamic map) or keep their first block (static).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Balance {
    Dynamic,
    Static,
}

/// A contiguous range of items this rank holds: indices `lo..lo + items.len()`.
struct Work<T> {
    lo: usize,
    items: VecDeque<T>,
}

/// Why an item failed: its index, the rank and the message, as sent to every rank.
type Failure = (u64, u64, String);

/// One run of a map on one rank.
struct Run<'a, T, R, F> {
    comm: &'a Communicator,
    context: u64,
    root: usize,
    balance: Balance,
    f: F,
    /// This rank's items not yet started; the steal thread takes from its back.
    work: &'a Mutex<Work<T>>,
    /// Context of steal requests (the steal thread's).
    steals: u64,
    /// Results not yet sent: indices `pending_lo..pending_lo + pending.len()`.
    pending_lo: usize,
    pending: Vec<R>,
    last_flush: Instant,
    /// At the root: every fragment received, and how many results they hold.
    fragments: Vec<(usize, Vec<R>)>,
    collected: usize,
    /// Measured cost of one item, in seconds (moving average).
    cost: f64,
    batch: usize,
    rng: u64,
    /// The map's call number, items in all, and when progress was last reported.
    seq: u32,
    total: usize,
    last_report: Instant,
    /// When the steal request in flight was sent.
    asked_at: Instant,
    /// The rank this one last got work from (`usize::MAX`: none yet), for refused thieves.
    hint: &'a AtomicUsize,
    /// Where to ask next, as a refusing victim suggested.
    next_victim: Option<usize>,
}

impl Communicator {
    /// Applies `f` to every item of the root's `items` across all ranks, balancing the load by
    /// work stealing; the root gets the results in input order, other ranks `None`.
    ///
    /// **Collective.** The root passes `Some(items)`, the others `None`. Each rank starts with
    /// a contiguous block of the items and steals half of a busy rank's remaining range when it
    /// runs dry, so uneven item costs need no chunk size to tune. Items travel only to the rank
    /// that runs them. `f` runs on every rank; a panic in `f` ends the map on every rank with
    /// [`Error::MapFailed`] naming the item and the rank.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let items = (world.rank() == 0).then(|| vec![3u64, 1, 4, 1, 5]);
    /// let squares = world.map(0, items, |x| x * x)?;
    /// if world.rank() == 0 {
    ///     assert_eq!(squares, Some(vec![9, 1, 16, 1, 25]));
    /// }
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::MapFailed`], [`Error::InvalidArgument`] when the root passes `None`,
    /// [`Error::PeerLost`] when a rank ends during the map.
    pub fn map<T, R, F>(&self, root: usize, items: Option<Vec<T>>, f: F) -> Result<Option<Vec<R>>>
    where
        T: Serialize + DeserializeOwned + Send,
        R: Serialize + DeserializeOwned,
        F: Fn(T) -> R,
    {
        self.try_map(root, items, |x| Ok::<R, std::convert::Infallible>(f(x)))
    }

    /// As [`Communicator::map`], for a fallible `f`: an `Err` from any item ends the map on every
    /// rank with [`Error::MapFailed`] naming the item's index, the rank and the error.
    ///
    /// **Collective.**
    ///
    /// # Errors
    /// As [`Communicator::map`].
    pub fn try_map<T, R, E, F>(&self, root: usize, items: Option<Vec<T>>, f: F) -> Result<Option<Vec<R>>>
    where
        T: Serialize + DeserializeOwned + Send,
        R: Serialize + DeserializeOwned,
        E: std::fmt::Display,
        F: Fn(T) -> std::result::Result<R, E>,
    {
        self.run_map(root, self.root_items(root, items)?, Balance::Dynamic, move |_, x: T| {
            f(x).map_err(|e| e.to_string())
        })
    }

    /// As [`Communicator::map`], and every rank gets the results.
    ///
    /// **Collective.**
    ///
    /// # Errors
    /// As [`Communicator::map`].
    pub fn map_all<T, R, F>(&self, root: usize, items: Option<Vec<T>>, f: F) -> Result<Vec<R>>
    where
        T: Serialize + DeserializeOwned + Send,
        R: Serialize + DeserializeOwned,
        F: Fn(T) -> R,
    {
        let results = self.map(root, items, f)?;
        self.broadcast(root, results)
    }

    /// Applies `f` to every index of `0..n` across all ranks, balancing the load by work
    /// stealing; the root gets the results in index order, other ranks `None`.
    ///
    /// **Collective.** Every rank passes the same `n`; items are computed from their index, so
    /// no item data moves at all. Otherwise as [`Communicator::map`].
    ///
    /// ```
    /// let world = prun::init()?;
    /// let cubes = world.map_range(0, 1000, |i| (i as u64).pow(3))?;
    /// if let Some(cubes) = cubes {
    ///     assert_eq!(cubes[10], 1000);
    /// }
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Communicator::map`].
    pub fn map_range<R, F>(&self, root: usize, n: usize, f: F) -> Result<Option<Vec<R>>>
    where
        R: Serialize + DeserializeOwned,
        F: Fn(usize) -> R,
    {
        self.try_map_range(root, n, |i| Ok::<R, std::convert::Infallible>(f(i)))
    }

    /// As [`Communicator::map_range`], for a fallible `f`. **Collective.**
    ///
    /// # Errors
    /// As [`Communicator::try_map`].
    pub fn try_map_range<R, E, F>(&self, root: usize, n: usize, f: F) -> Result<Option<Vec<R>>>
    where
        R: Serialize + DeserializeOwned,
        E: std::fmt::Display,
        F: Fn(usize) -> std::result::Result<R, E>,
    {
        self.check_root(root)?;
        self.run_map(root, Start::Range(n, || ()), Balance::Dynamic, move |i, ()| {
            f(i).map_err(|e| e.to_string())
        })
    }

    /// As [`Communicator::map_range`], and every rank gets the results. **Collective.**
    ///
    /// # Errors
    /// As [`Communicator::map`].
    pub fn map_range_all<R, F>(&self, n: usize, f: F) -> Result<Vec<R>>
    where
        R: Serialize + DeserializeOwned,
        F: Fn(usize) -> R,
    {
        let results = self.map_range(0, n, f)?;
        self.broadcast(0, results)
    }

    /// The static counterpart of [`Communicator::map`]: each rank runs one contiguous block of
    /// the items (as IPython Parallel's DirectView), nothing is rebalanced. For comparison.
    ///
    /// **Collective.**
    ///
    /// # Errors
    /// As [`Communicator::map`].
    pub fn map_static<T, R, F>(&self, root: usize, items: Option<Vec<T>>, f: F) -> Result<Option<Vec<R>>>
    where
        T: Serialize + DeserializeOwned + Send,
        R: Serialize + DeserializeOwned,
        F: Fn(T) -> R,
    {
        self.run_map(root, self.root_items(root, items)?, Balance::Static, move |_, x: T| Ok(f(x)))
    }

    /// The static counterpart of [`Communicator::map_range`]: one contiguous block per rank.
    ///
    /// **Collective.**
    ///
    /// # Errors
    /// As [`Communicator::map`].
    pub fn map_range_static<R, F>(&self, root: usize, n: usize, f: F) -> Result<Option<Vec<R>>>
    where
        R: Serialize + DeserializeOwned,
        F: Fn(usize) -> R,
    {
        self.check_root(root)?;
        self.run_map(root, Start::Range(n, || ()), Balance::Static, move |i, ()| Ok(f(i)))
    }

    /// Checks the root and its items: the root must pass `Some`, what others pass is ignored.
    fn root_items<T>(&self, root: usize, items: Option<Vec<T>>) -> Result<Start<T>> {
        self.check_root(root)?;
        if self.rank() != root {
            return Ok(Start::Items(None));
        }
        let items =
            items.ok_or_else(|| Error::InvalidArgument("the root of map must pass Some(items)".into()))?;
        Ok(Start::Items(Some(items)))
    }

    fn run_map<T, R, F>(&self, root: usize, start: Start<T>, balance: Balance, f: F) -> Result<Option<Vec<R>>>
    where
        T: Serialize + DeserializeOwned + Send,
        R: Serialize + DeserializeOwned,
        F: FnMut(usize, T) -> std::result::Result<R, String>,
    {
        let mut call = self.begin("map");
        let seq = call.seq;
        let context = self.derived_context(seq, b"map");
        let steals = self.derived_context(seq, b"map steals");
        let work = Mutex::new(Work { lo: 0, items: VecDeque::new() });
        let hint = AtomicUsize::new(usize::MAX);
        let mut run = Run {
            comm: self,
            context,
            root,
            balance,
            f,
            work: &work,
            steals,
            pending_lo: 0,
            pending: Vec::new(),
            last_flush: Instant::now(),
            fragments: Vec::new(),
            collected: 0,
            cost: 0.0,
            batch: 1,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (self.world_rank() as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
            seq,
            total: 0,
            last_report: Instant::now(),
            asked_at: Instant::now(),
            hint: &hint,
            next_victim: None,
        };
        let total = run.distribute(start)?;
        run.total = total;
        let kind = if balance == Balance::Dynamic { "dynamic" } else { "static" };
        call.args = format!("\"map\":{seq},\"total\":{total},\"balance\":\"{kind}\"");
        let stealing = balance == Balance::Dynamic && self.size() > 1;
        let outcome = std::thread::scope(|s| {
            let server = stealing.then(|| s.spawn(|| serve_steals(self, steals, context, &work, &hint)));
            let outcome = run.work_loop(total);
            if let Some(server) = server {
                // a request from this rank to itself stops the steal thread
                let _ = send_to(self, self.rank(), steals, STEAL, &());
                let _ = server.join();
            }
            outcome
        });
        drop(call);
        if let Some(t) = self.tracer() {
            t.flush();
        }
        match outcome {
            Ok(()) | Err(Stop::Done) => {}
            Err(Stop::Failed(e)) => return Err(e),
        }
        if self.rank() != root {
            return Ok(None);
        }
        let mut fragments = std::mem::take(&mut run.fragments);
        fragments.sort_unstable_by_key(|(lo, _)| *lo);
        let mut out = Vec::with_capacity(run.collected);
        for (lo, values) in fragments {
            if lo != out.len() {
                return Err(Error::Malformed(format!(
                    "map: results from {lo} do not follow item {}",
                    out.len()
                )));
            }
            out.extend(values);
        }
        Ok(Some(out))
    }
}

/// How a map's items start out.
pub(crate) enum Start<T> {
    /// At the root (`Some` there, `None` elsewhere).
    Items(Option<Vec<T>>),
    /// Indices `0..n`, known to every rank; each item is `make()` (a `()`).
    Range(usize, fn() -> T),
}

/// Bounds of block `r` of `n` items over `size` ranks.
fn block(n: usize, size: usize, r: usize) -> (usize, usize) {
    (n * r / size, n * (r + 1) / size)
}

/// How a rank's part of a map ended early.
enum Stop {
    /// The root said every result is in.
    Done,
    /// An item failed somewhere, or a peer was lost.
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

fn lock<T>(work: &Mutex<Work<T>>) -> MutexGuard<'_, Work<T>> {
    work.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sends a map message of `kind` to `dest` (a rank of `comm`) on `context`.
fn send_to<M: Serialize + ?Sized>(
    comm: &Communicator,
    dest: usize,
    context: u64,
    kind: u32,
    message: &M,
) -> Result<()> {
    let frame = codec::encode_into(message, vec![0; crate::wire::HEADER_LEN])?;
    let dest = comm.world_rank_of(dest)?;
    comm.shared_engine().send(dest, context, kind, frame)
}

/// The steal thread: answers every steal request at once with the back half (rounded up) of the
/// items this rank has not started (nothing when none is left), until this rank asks it to stop.
fn serve_steals<T: Serialize + Send>(
    comm: &Communicator,
    steals: u64,
    replies: u64,
    work: &Mutex<Work<T>>,
    hint: &AtomicUsize,
) {
    loop {
        let Ok(pattern) = comm.pattern_on(steals, None, Some(STEAL)) else { return };
        let Ok(request) = comm.shared_engine().recv(&pattern) else { return };
        let thief = comm.member_of(request.src);
        if thief == comm.rank() {
            return;
        }
        let (lo, given): (usize, Vec<T>) = {
            let mut w = lock(work);
            // the thief takes the front half (rounded up) and this rank goes on from the middle:
            // both keep running the lowest indices first, so a list whose costly items come first
            // ends on cheap ones everywhere; this rank is busy with the batch it has taken, so
            // even its last unstarted item is better started by an idle thief
            let give = w.items.len() - w.items.len() / 2;
            let lo = w.lo;
            w.lo += give;
            (lo, w.items.drain(..give).collect())
        };
        // a thief that has gone has left the map: its items were not given to anyone else, but
        // the map is over once any rank has left it (only the root's DONE lets ranks go)
        // with nothing to give, point the thief at the rank this one last got work from
        let hint = if given.is_empty() { hint.load(Ordering::Relaxed) as u64 } else { u64::MAX };
        let _ = send_to(comm, thief, replies, GIVE, &(lo as u64, given, hint));
    }
}

impl<T, R, F> Run<'_, T, R, F>
where
    T: Serialize + DeserializeOwned + Send,
    R: Serialize + DeserializeOwned,
    F: FnMut(usize, T) -> std::result::Result<R, String>,
{
    fn send<M: Serialize + ?Sized>(&self, dest: usize, kind: u32, message: &M) -> Result<()> {
        send_to(self.comm, dest, self.context, kind, message)
    }

    fn set_work(&mut self, lo: usize, items: VecDeque<T>) {
        *lock(self.work) = Work { lo, items };
    }

    /// Hands every rank its first block; returns the number of items.
    fn distribute(&mut self, start: Start<T>) -> Result<usize> {
        let (rank, size) = (self.comm.rank(), self.comm.size());
        match start {
            Start::Range(n, make) => {
                let (lo, hi) = block(n, size, rank);
                self.set_work(lo, std::iter::repeat_with(make).take(hi - lo).collect());
                Ok(n)
            }
            Start::Items(Some(items)) => {
                let n = items.len();
                let mut items = VecDeque::from(items);
                // the root keeps its own block and sends the others theirs, from the back
                for r in (0..size).rev() {
                    let (lo, _) = block(n, size, r);
                    let tail: Vec<T> = items.split_off(lo).into();
                    if r == rank {
                        self.set_work(lo, tail.into());
                    } else {
                        self.send(r, INIT, &(lo as u64, n as u64, tail))?;
                    }
                }
                Ok(n)
            }
            Start::Items(None) => {
                let pattern = self.comm.pattern_on(self.context, Some(self.root), Some(INIT))?;
                let e = self.comm.shared_engine().recv(&pattern)?;
                let (lo, n, items): (u64, u64, Vec<T>) = codec::decode(&e.data, self.root, INIT)?;
                self.set_work(lo as usize, items.into());
                Ok(n as usize)
            }
        }
    }

    /// Runs items and answers peers until the root says every result is in.
    fn work_loop(&mut self, total: usize) -> std::result::Result<(), Stop> {
        let size = self.comm.size();
        let mut backoff = Duration::from_micros(20);
        let mut asked: Option<usize> = None;
        let mut next_ask = Instant::now();
        loop {
            while self.run_batch()? {
                self.handle(Duration::ZERO, &mut asked)?;
                if self.last_flush.elapsed() >= FLUSH_EVERY {
                    self.flush()?;
                }
            }
            self.flush()?;
            if self.comm.rank() == self.root && self.collected == total {
                for r in (0..size).filter(|&r| r != self.root) {
                    self.send(r, DONE, &())?;
                }
                return Ok(());
            }
            // out of work: ask a random peer, one request at a time, backing off on refusals
            if self.balance == Balance::Dynamic && size > 1 && asked.is_none() && Instant::now() >= next_ask {
                let victim = self.victim();
                // a victim can only have left after the root's DONE, which is then on its way
                // here: a failed request counts as a refusal
                if send_to(self.comm, victim, self.steals, STEAL, &()).is_ok() {
                    self.asked_at = Instant::now();
                    asked = Some(victim);
                } else {
                    next_ask = Instant::now() + backoff;
                }
            }
            let wait = if asked.is_some() || self.balance == Balance::Static || size == 1 {
                Duration::from_secs(1)
            } else {
                next_ask.saturating_duration_since(Instant::now()).max(Duration::from_micros(1))
            };
            match self.handle(wait, &mut asked)? {
                Some(true) => backoff = Duration::from_micros(20),
                Some(false) => {
                    next_ask = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                None => {}
            }
        }
    }

    fn victim(&mut self) -> usize {
        if let Some(v) = self.next_victim.take().filter(|&v| v != self.comm.rank()) {
            return v;
        }
        // xorshift64*: a different, cheap sequence on every rank
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let others = self.comm.size() - 1;
        let pick = (r % others as u64) as usize;
        if pick >= self.comm.rank() { pick + 1 } else { pick }
    }

    /// Runs one batch of items from the front of this rank's range, sized to take about
    /// [`BATCH_TIME`]; false when no item was left.
    fn run_batch(&mut self) -> std::result::Result<bool, Stop> {
        let (first, items): (usize, Vec<T>) = {
            let mut w = lock(self.work);
            let count = self.batch.min(w.items.len());
            let first = w.lo;
            w.lo += count;
            (first, w.items.drain(..count).collect())
        };
        if items.is_empty() {
            return Ok(false);
        }
        if !self.pending.is_empty() && first != self.pending_lo + self.pending.len() {
            self.flush()?;
        }
        if self.pending.is_empty() {
            self.pending_lo = first;
        }
        let count = items.len();
        let start = Instant::now();
        let mut index = first;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            for item in items {
                match (self.f)(index, item) {
                    Ok(r) => self.pending.push(r),
                    Err(e) => return Err(e),
                }
                index += 1;
            }
            Ok(())
        }));
        let message = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(panic) => Some(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the closure panicked".into()),
            ),
        };
        if let Some(message) = message {
            return Err(self.fail(index, message));
        }
        let end = Instant::now();
        if let Some(t) = self.comm.tracer() {
            let args =
                format!("\"map\":{},\"first\":{first},\"count\":{count},\"total\":{}", self.seq, self.total);
            t.record("batch", "map", start, end, &args);
        }
        // size the next batch from the measured cost per item
        let per_item = end.saturating_duration_since(start).as_secs_f64() / count as f64;
        self.cost = if self.cost == 0.0 { per_item } else { 0.7 * self.cost + 0.3 * per_item };
        let ideal = (BATCH_TIME.as_secs_f64() / self.cost.max(1e-9)) as usize;
        self.batch = ideal.clamp(1, (self.batch * 4).max(1)).min(1 << 20);
        Ok(true)
    }

    /// Tells every rank that item `index` failed here, and returns the error.
    fn fail(&mut self, index: usize, message: String) -> Stop {
        let rank = self.comm.rank();
        let failure: Failure = (index as u64, rank as u64, message.clone());
        for r in (0..self.comm.size()).filter(|&r| r != rank) {
            let _ = self.send(r, FAIL, &failure);
        }
        Stop::Failed(Error::MapFailed { index, rank, message })
    }

    /// Sends (or, at the root, keeps) the results computed since the last flush.
    fn flush(&mut self) -> Result<()> {
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return Ok(());
        }
        let values = std::mem::take(&mut self.pending);
        let lo = self.pending_lo;
        if self.comm.rank() == self.root {
            self.collected += values.len();
            self.fragments.push((lo, values));
            self.report_progress();
            Ok(())
        } else {
            self.send(self.root, RESULTS, &(lo as u64, values))
        }
    }

    /// Handles the messages that arrive within `wait`; returns whether a steal request of ours
    /// was answered with work (`Some(true)`) or refused (`Some(false)`).
    fn handle(
        &mut self,
        wait: Duration,
        asked: &mut Option<usize>,
    ) -> std::result::Result<Option<bool>, Stop> {
        let mut answer = None;
        let mut wait = wait;
        loop {
            let pattern = self.comm.pattern_on(self.context, None, None)?;
            let mailbox = self.comm.shared_engine().mailbox();
            let message = if wait.is_zero() {
                mailbox.try_recv(&pattern)?
            } else {
                let waiting =
                    Waiting { op: "map", root: Some(self.root), call: Some(self.seq), peer: None, tag: None };
                let _wait = self.comm.activity().wait(waiting);
                mailbox.recv_timeout(&pattern, wait)?
            };
            let Some(e) = message else { return Ok(answer) };
            // after the first message, take what else is there without waiting
            wait = Duration::ZERO;
            let src = self.comm.member_of(e.src);
            match e.tag {
                GIVE => {
                    let (lo, items, hint): (u64, Vec<T>, u64) = codec::decode(&e.data, src, GIVE)?;
                    if items.is_empty() {
                        // try where the refusing rank last found work, rather than at random
                        self.next_victim = usize::try_from(hint).ok().filter(|&h| h < self.comm.size());
                    } else {
                        self.hint.store(src, Ordering::Relaxed);
                    }
                    *asked = None;
                    if let Some(t) = self.comm.tracer() {
                        let args = format!("\"map\":{},\"victim\":{src},\"got\":{}", self.seq, items.len());
                        t.record("steal", "map", self.asked_at, Instant::now(), &args);
                    }
                    answer = Some(!items.is_empty());
                    if !items.is_empty() {
                        self.flush()?;
                        self.set_work(lo as usize, items.into());
                    }
                }
                RESULTS => {
                    let (lo, values): (u64, Vec<R>) = codec::decode(&e.data, src, RESULTS)?;
                    self.collected += values.len();
                    self.fragments.push((lo as usize, values));
                    self.report_progress();
                }
                DONE => return Err(Stop::Done),
                FAIL => {
                    let (index, rank, message): Failure = codec::decode(&e.data, src, FAIL)?;
                    return Err(Stop::Failed(Error::MapFailed {
                        index: index as usize,
                        rank: rank as usize,
                        message,
                    }));
                }
                other => return Err(Stop::Failed(Error::Malformed(format!("map: message of kind {other}")))),
            }
        }
    }

    /// Tells the launcher how far the map is, a few times a second at most (root only).
    fn report_progress(&mut self) {
        let done = self.collected == self.total;
        if !done && self.last_report.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last_report = Instant::now();
        if let Some(control) = self.comm.control() {
            let _ = control.progress(self.seq, self.collected as u64, self.total as u64);
        }
    }
}
