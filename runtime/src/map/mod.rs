//! The dynamic map: a load-balanced parallel map across the ranks of a communicator, by
//! decentralised work stealing over index ranges.
//!
//! The items are cut into up to [`DEAL_ROUNDS`] contiguous blocks per rank (one item at least
//! each), dealt round-robin like cards: rank `r` starts with blocks `r`, `r + size`,
//! `r + 2 size`, ... So every rank starts with a sample of the whole list, and a list whose costs
//! follow its order (heavy items first, a triangular loop, rows of an image) starts out nearly
//! balanced; one contiguous block per rank would leave the ranks that got the cheap end idle
//! while the costly items wait in a few queues (on `skew`'s heavy-first list at 16 ranks that
//! caps the efficiency at 0.956 however well the ranks steal afterwards).
//!
//! A rank runs items from the front of its first block in batches sized from the measured cost per
//! item (about [`BATCH_TIME`] each), while a thread of its own answers steal requests at once, even
//! in the middle of a long item. A rank that runs dry asks a peer chosen at random (among at most
//! [`MAX_VICTIMS`] near it) for work (one request in flight); the victim gives away half of what it
//! has not started (every other block, or the front half of its last block), items' data included
//! when the items live at the root. A refused request makes the thief wait, doubling the wait up to
//! [`MAX_BACKOFF`] while still answering others, and points it at the rank the refuser last dealt
//! work with (followed once in a row), else at the root. The root's steal thread keeps a count of
//! every rank's unstarted items (the deal, then each rank's reports when it gets work, sees its
//! count halve or small, or has just given to a thief) and passes a thief's request on to the most
//! loaded rank, which answers the thief, for a fair share of what is left, so that the many ranks
//! that run dry together at the end of a map each get a little at once; while no rank has any, it
//! holds the thief's request until one does, the map ends or [`HOLD_LIMIT`] passes. The root
//! itself, when dry, asks the rank its counts show the most work at. An idle rank blocks, it never
//! spins.
//!
//! A rank starting the last batch of its work asks for one more item at once when that batch
//! should take [`AHEAD_MIN`] or more, so that the steal's round trip hides behind the batch
//! rather than leaving the rank idle after it: on one host it asks the root, which passes the
//! request on to a rank with two items or more not started (a request ahead never takes a rank's
//! last item, which that rank will start sooner than the thief); over several hosts, a random
//! rank of its own. When the root finds no work to spare, the rank's request once it runs dry
//! goes to the root and waits there. At the end of a list of costly items, the ranks then get
//! the last items one at a time as they need them, rather than many running dry together and
//! hunting for the few left (`skew` at 16 ranks: 0.981 against 0.966).
//!
//! Results travel to the root as `(first index, values)` fragments; the root counts them and,
//! once it holds every item's result, tells every rank to stop, down a binomial tree (each rank
//! passes the word on). With stealing turned off the same machinery is the static split: one
//! contiguous block per rank.

mod run;
mod steal;
mod work;

use crate::codec;
use crate::communicator::Communicator;
use crate::error::{Error, Result};
use run::Run;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use steal::{open_connections, serve_steals, victims_of};
use work::Work;

/// Target duration of one batch: short enough that a victim answers a thief quickly, long
/// enough that per-batch costs vanish next to the items' own.
pub const BATCH_TIME: Duration = Duration::from_micros(50);
/// Most blocks per rank in the dynamic map's first deal (blocks hold one item at least). More
/// blocks sample the list more finely, so costs that follow the list's order start out better
/// balanced, at the price of one more result fragment per block (fragments travel together).
pub const DEAL_ROUNDS: usize = 64;
/// Most ranks one rank steals from at random, and so connects to as a map starts: with 64 ranks on
/// 2 cores, every rank connecting to every other (4032 handshakes) took the cores from the map
/// (skew with 1600 tasks: 0.36-0.51 efficiency, against 0.74-0.82 connecting to none ahead),
/// while at 16 and 32 ranks connecting to all ahead won (0.908 against 0.859, 0.886 against
/// 0.828). The root's directions still reach every rank.
pub const MAX_VICTIMS: usize = 16;
/// Longest the root holds a thief's request while it counts no work anywhere, before it refuses
/// it (a safety net: counts can lag a rank's work by a batch, or more for a rank whose own batches
/// are long).
const HOLD_LIMIT: Duration = Duration::from_millis(10);
/// A rank starting its last batch asks for more work at once when the batch should last this
/// long at least (from the measured cost per item), hiding the steal's round trip behind it.
const AHEAD_MIN: Duration = Duration::from_micros(300);
/// Wait after a first refused steal request.
const MIN_BACKOFF: Duration = Duration::from_micros(20);
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
/// How many items a rank has not started, told to the root's steal thread.
const LOAD: u32 = 7;
/// A thief's request passed on by the root to the rank it picked: `(thief, how many)`; that
/// rank answers the thief as it would its own request.
const FORWARD: u32 = 8;

/// A rank with at most this many items not started reports every change of the count (more,
/// only when it halves): at the end of a map of costly items the root must know which rank
/// still holds the last few (one left unreported waited 2 ms behind its holder's item while
/// thieves were sent elsewhere).
const REPORT_EVERY_BELOW: u64 = 4;

/// Whether ranks steal from each other (the dynamic map) or keep their first block (static).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Balance {
    Dynamic,
    Static,
}

/// Blocks as they travel in messages: `(first index, items)`.
type Blocks<T> = Vec<(u64, Vec<T>)>;

/// Why an item failed: its index, the rank and the message, as sent to every rank.
type Failure = (u64, u64, String);

impl Communicator {
    /// Applies `f` to every item of the root's `items` across all ranks, balancing the load by
    /// work stealing; the root gets the results in input order, other ranks `None`.
    ///
    /// **Collective.** The root passes `Some(items)`, the others `None`. Each rank starts with
    /// up to 64 contiguous blocks of the items spread over the list (dealt round-robin)
    /// and steals half of a busy rank's remaining items when it runs dry, so uneven item costs
    /// need no chunk size to tune. Items travel only to the rank
    /// that runs them. `f` runs on every rank; a panic in `f` ends the map on every rank with
    /// [`Error::MapFailed`] naming the item and the rank. Items own their data (`T: 'static`):
    /// the thread that hands them to thieves may end a moment after the call returns.
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
        T: Serialize + DeserializeOwned + Send + 'static,
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
        T: Serialize + DeserializeOwned + Send + 'static,
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
        T: Serialize + DeserializeOwned + Send + 'static,
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
        T: Serialize + DeserializeOwned + Send + 'static,
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

    /// The other members on this rank's host, when some members run elsewhere (else none: a
    /// random steal then picks among all).
    fn near_ranks(&self) -> Vec<usize> {
        let engine = self.shared_engine();
        let others = (0..self.size()).filter(|&r| r != self.rank());
        let here: Vec<Option<bool>> =
            others.clone().map(|r| self.world_rank_of(r).ok().and_then(|w| engine.same_host(w))).collect();
        if here.iter().all(|h| *h == Some(true)) || here.iter().any(Option::is_none) {
            return Vec::new();
        }
        others.zip(here).filter(|(_, h)| *h == Some(true)).map(|(r, _)| r).collect()
    }

    fn run_map<T, R, F>(&self, root: usize, start: Start<T>, balance: Balance, f: F) -> Result<Option<Vec<R>>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned,
        F: FnMut(usize, T) -> std::result::Result<R, String>,
    {
        let mut call = self.begin("map");
        let seq = call.seq;
        let context = self.derived_context(seq, b"map");
        let steals = self.derived_context(seq, b"map steals");
        // shared with the steal thread, which may outlive this call by a moment
        let work = Arc::new(Mutex::new(Work::new(Vec::new())));
        let over = Arc::new(AtomicBool::new(false));
        let hint = Arc::new(AtomicUsize::new(usize::MAX));
        let loads = Arc::new(Mutex::new(Vec::new()));
        let near = self.near_ranks();
        let mut run = Run {
            comm: self,
            context,
            root,
            balance,
            f,
            work: &work,
            steals,
            pending: Vec::new(),
            last_flush: Instant::now(),
            reported: 0,
            fragments: Vec::new(),
            collected: 0,
            cost: 0.0,
            batch: 1,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (self.world_rank() as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
            seq,
            total: 0,
            last_report: Instant::now(),
            asked: None,
            asked_at: Instant::now(),
            next_ask: Instant::now(),
            backoff: MIN_BACKOFF,
            hint: &hint,
            next_victim: None,
            hinted: false,
            ask_root: false,
            want: u64::MAX,
            ahead: false,
            asked_ahead: false,
            one_host: near.is_empty(),
            victims: victims_of(self.rank(), self.size(), near),
            loads: &loads,
        };
        let total = run.distribute(start)?;
        run.total = total;
        run.reported = lock(&work).len() as u64;
        // the root's steal thread starts from the deal's counts
        if self.rank() == root {
            *lock(&loads) = (0..self.size())
                .map(|r| dealt(total, self.size(), r, balance).map(|(lo, hi)| (hi - lo) as u64).sum())
                .collect();
        }
        let kind = if balance == Balance::Dynamic { "dynamic" } else { "static" };
        call.args = format!("\"map\":{seq},\"total\":{total},\"balance\":\"{kind}\"");
        let stealing = balance == Balance::Dynamic && self.size() > 1;
        // the helper tasks of earlier maps that have ended since
        self.helpers().reap();
        // set at the root once it holds every result: its steal thread, when stopped, tells
        // the ranks the map is over, so the root returns without waiting for those sends
        let finished = Arc::new(AtomicBool::new(false));
        let server = if stealing {
            let (comm, loads, work, hint, finished) = (
                self.helper_handle(),
                Arc::clone(&loads),
                Arc::clone(&work),
                Arc::clone(&hint),
                Arc::clone(&finished),
            );
            let spawned = self.helpers().run(move || {
                serve_steals(&comm, root, &loads, steals, context, &work, &hint);
                if finished.load(Ordering::Acquire) {
                    // a rank that cannot be told has gone, which ends the job
                    for child in done_children(root, root, comm.size()) {
                        let _ = send_to(&comm, child, context, DONE, &());
                    }
                }
                // late steal requests and counts of this map must not pile up in the mailbox
                comm.shared_engine().mailbox().retire(steals);
            });
            Some(spawned.map_err(|e| Error::io("map: starting the steal thread", e))?)
        } else {
            None
        };
        // the root hears from and directs every rank; the others steal from their victims
        let mut peers: Vec<usize> = if self.rank() == root {
            (1..self.size()).map(|k| (root + k) % self.size()).collect()
        } else {
            run.victims.iter().copied().chain((!run.victims.contains(&root)).then_some(root)).collect()
        };
        // spawned after the rank's first batch, not with the steal thread: where ranks share
        // cores, every rank's start waits for the CPU the ranks before it take to start
        let mut opener = None;
        let mut start_opener = || {
            if stealing && opener.is_none() {
                let (comm, peers, over) =
                    (self.helper_handle(), std::mem::take(&mut peers), Arc::clone(&over));
                // without it, the connections open as the steals need them
                opener = self.helpers().run(move || open_connections(&comm, &peers, &over)).ok();
            }
        };
        let outcome = run.work_loop(total, &mut start_opener);
        over.store(true, Ordering::Relaxed);
        if matches!(outcome, Err(Stop::Done)) {
            // pass the root's word on down the tree at once: other ranks wait for it
            for child in done_children(self.rank(), root, self.size()) {
                let _ = send_to(self, child, context, DONE, &());
            }
        }
        let at_root_done = matches!(outcome, Ok(())) && self.rank() == root;
        // a request from this rank to itself stops the steal thread, which is waited for when
        // the communicator is dropped, not on the way out (one that cannot be told runs until
        // the process ends); at the root it then tells the ranks the map is over (one wake-up
        // in the root's time rather than one per send)
        let stopped = server.is_some_and(|server| {
            finished.store(at_root_done, Ordering::Release);
            let told = send_to(self, self.rank(), steals, STEAL, &()).is_ok();
            if told {
                self.helpers().stopping(server);
            }
            told
        });
        let outcome = match outcome {
            Ok(()) if at_root_done && !stopped => done_children(root, root, self.size())
                .into_iter()
                .try_for_each(|r| send_to(self, r, context, DONE, &()))
                .map_err(Stop::from),
            other => other,
        };
        if let Some(opener) = opener {
            self.helpers().stopping(opener);
        }
        drop(call);
        // late replies of this map must not pile up in the mailbox (the steal thread retires its own)
        self.shared_engine().mailbox().retire(context);
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

/// The ranks that `rank` (of `size`) passes the root's DONE on to: its children in a binomial
/// tree rooted at `root`, the largest subtree first, so that the root sends `log2(size)`
/// messages before it returns rather than `size - 1` (at 16 ranks on 2 cores fifteen sends took
/// 0.1 to 0.4 ms, counted in the root's time).
fn done_children(rank: usize, root: usize, size: usize) -> Vec<usize> {
    let v = (rank + size - root) % size;
    let mut children: Vec<usize> = std::iter::successors(Some(1usize), |b| b.checked_mul(2))
        .take_while(|&b| b < size)
        .filter(|&b| b > v && v + b < size)
        .map(|b| (v + b + root) % size)
        .collect();
    children.reverse();
    children
}

/// How a map's items start out.
pub(crate) enum Start<T> {
    /// At the root (`Some` there, `None` elsewhere).
    Items(Option<Vec<T>>),
    /// Indices `0..n`, known to every rank; each item is `make()` (a `()`).
    Range(usize, fn() -> T),
}

/// Bounds of block `r` of `n` items cut into `count` blocks.
fn block(n: usize, count: usize, r: usize) -> (usize, usize) {
    (n * r / count, n * (r + 1) / count)
}

/// Bounds of the blocks rank `rank` of `size` starts with, in index order: blocks `rank`,
/// `rank + size`, ... of `n` items cut into `size` times [`rounds`] blocks.
fn dealt(n: usize, size: usize, rank: usize, balance: Balance) -> impl Iterator<Item = (usize, usize)> {
    let count = size * rounds(balance, n, size);
    (rank..count).step_by(size).map(move |b| block(n, count, b))
}

/// How many blocks `balance` cuts `n` items into per rank of `size`.
fn rounds(balance: Balance, n: usize, size: usize) -> usize {
    match balance {
        Balance::Dynamic => (n / size).clamp(1, DEAL_ROUNDS),
        Balance::Static => 1,
    }
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

/// Locks `m`; a panic elsewhere while holding it leaves data that is still consistent here (work
/// and counts are changed in single steps), so a poisoned lock is taken as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
    comm.shared_engine().send(dest, context, kind, frame, crate::engine::Lending::Waits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_dealt_once_and_costly_ends_are_spread() {
        for size in 1..=17 {
            for n in [0, 1, 5, 16, 17, 200, 1000, 12_345] {
                let mut seen = vec![0u8; n];
                for rank in 0..size {
                    let mut last = 0;
                    for (lo, hi) in dealt(n, size, rank, Balance::Dynamic) {
                        assert!(lo >= last && lo <= hi, "n {n} size {size} rank {rank}: {lo}..{hi}");
                        last = hi;
                        seen[lo..hi].iter_mut().for_each(|s| *s += 1);
                    }
                }
                assert!(seen.iter().all(|&s| s == 1), "n {n} size {size}: {seen:?}");
            }
        }
        // skew's list at 16 ranks: the 50 costly items first of 200 go 3 or 4 to every rank
        for rank in 0..16 {
            let costly: usize =
                dealt(200, 16, rank, Balance::Dynamic).map(|(lo, hi)| hi.min(50) - lo.min(50)).sum();
            assert!((3..=4).contains(&costly), "rank {rank} got {costly} of the first 50");
        }
        // the static split is one contiguous block per rank
        let blocks: Vec<_> = dealt(200, 16, 3, Balance::Static).collect();
        assert_eq!(blocks, vec![(37, 50)]);
    }

    /// DONE reaches every rank once, down a tree whose root sends `ceil(log2(size))` messages.
    #[test]
    fn done_reaches_every_rank_once_down_a_tree() {
        for size in 1..=17 {
            for root in 0..size {
                let mut heard = vec![0; size];
                heard[root] = 1;
                let mut told = vec![root];
                while let Some(r) = told.pop() {
                    for c in done_children(r, root, size) {
                        heard[c] += 1;
                        told.push(c);
                    }
                }
                assert!(heard.iter().all(|&h| h == 1), "size {size} root {root}: {heard:?}");
                let sends = done_children(root, root, size).len();
                assert_eq!(sends, size.next_power_of_two().trailing_zeros() as usize, "size {size}");
            }
        }
        assert_eq!(done_children(0, 0, 16), [8, 4, 2, 1]);
        assert_eq!(done_children(3, 2, 5), [0], "rank 3 is 1 from root 2; its child 3 is rank 0");
    }
}
