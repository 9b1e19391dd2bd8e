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

use crate::activity::Waiting;
use crate::codec;
use crate::communicator::Communicator;
use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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

/// A contiguous range of items: indices `lo..lo + items.len()`.
struct Block<T> {
    lo: usize,
    items: VecDeque<T>,
}

/// The items this rank holds and has not started, as blocks in index order, and how many.
struct Work<T> {
    blocks: VecDeque<Block<T>>,
    len: usize,
}

/// Blocks as they travel in messages: `(first index, items)`.
type Blocks<T> = Vec<(u64, Vec<T>)>;

impl<T> Work<T> {
    fn new(blocks: Blocks<T>) -> Work<T> {
        let mut work = Work { blocks: VecDeque::new(), len: 0 };
        work.add(blocks);
        work
    }

    /// Adds `blocks` after the ones held (empty ones are dropped).
    fn add(&mut self, blocks: Blocks<T>) {
        for (lo, items) in blocks.into_iter().filter(|(_, items)| !items.is_empty()) {
            self.len += items.len();
            self.blocks.push_back(Block { lo: lo as usize, items: items.into() });
        }
    }

    /// How many items are left.
    fn len(&self) -> usize {
        self.len
    }

    /// Takes up to `count` items from the front of the first block: the first one's index and
    /// the items (none when no item is left).
    fn take_front(&mut self, count: usize) -> (usize, Vec<T>) {
        let Some(front) = self.blocks.front_mut() else { return (0, Vec::new()) };
        let count = count.min(front.items.len());
        let first = front.lo;
        front.lo += count;
        let items: Vec<T> = front.items.drain(..count).collect();
        if front.items.is_empty() {
            self.blocks.pop_front();
        }
        self.len -= items.len();
        (first, items)
    }

    /// Gives a thief half of the items not started, or only the first `want` items when that is
    /// fewer. Half is every other block (the first, third, ...) when there are several, so that
    /// both halves still sample the blocks' spread; else the front half (rounded up) of the last
    /// block. The thief gets the front because this rank is busy with the batch it has taken:
    /// even its last unstarted item is better started by an idle thief, and both go on running
    /// the lowest indices first, so a list whose costly items come first ends on cheap ones
    /// everywhere.
    fn steal(&mut self, want: usize) -> Blocks<T> {
        let len = self.len();
        if want < len - len / 2 {
            let mut given = Vec::new();
            let mut left = want;
            while left > 0 {
                let (lo, items) = self.take_front(left);
                left -= items.len();
                given.push((lo as u64, items));
            }
            return given;
        }
        if self.blocks.len() >= 2 {
            let (mut given, mut kept) = (Vec::new(), VecDeque::new());
            for (i, b) in self.blocks.drain(..).enumerate() {
                if i % 2 == 0 {
                    self.len -= b.items.len();
                    given.push((b.lo as u64, Vec::from(b.items)));
                } else {
                    kept.push_back(b);
                }
            }
            self.blocks = kept;
            return given;
        }
        // one block (or none): its front half
        let (lo, items) = self.take_front(len - len / 2);
        if items.is_empty() {
            return Vec::new();
        }
        vec![(lo as u64, items)]
    }

    /// What a thief's request for `want` items gets ([`Work::steal`]); a request `ahead`, from a
    /// rank still busy with its last batch, gets half at most, so never this rank's last item,
    /// which this rank starts sooner than the thief would.
    fn give(&mut self, want: usize, ahead: bool) -> Blocks<T> {
        let want = if ahead { want.min(self.len() / 2) } else { want };
        if want == 0 { Vec::new() } else { self.steal(want) }
    }
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
    /// Results not yet sent, as fragments `(first index, values)`.
    pending: Blocks<R>,
    last_flush: Instant,
    /// How many items not started this rank last told the root it had.
    reported: u64,
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
    /// The victim of the steal request in flight, when it was sent, when this rank may ask
    /// next, and how long it waits after the next refusal.
    asked: Option<usize>,
    asked_at: Instant,
    next_ask: Instant,
    backoff: Duration,
    /// The rank this one last gave work to or got work from (`usize::MAX`: none yet): where
    /// work most likely still is, for the thieves this rank must refuse.
    hint: &'a AtomicUsize,
    /// The thread that opens connections, waiting for this rank's first batch to end, and
    /// its signal to start.
    opener: Option<std::thread::Thread>,
    go: &'a AtomicBool,
    /// Where to ask next, as a refusing victim suggested.
    next_victim: Option<usize>,
    /// Whether the request in flight went where a refusing victim pointed, and whether the next
    /// one goes to the root, which knows best where work is.
    hinted: bool,
    ask_root: bool,
    /// How many items the next request asks for (`u64::MAX`: half), as the root advised.
    want: u64,
    /// Whether the next request asks ahead: sent as this rank starts its last batch, so it takes
    /// only from a rank with work to spare (two items at least), never another's last item.
    ahead: bool,
    /// Whether the request in flight asked ahead.
    asked_ahead: bool,
    /// The ranks a random steal picks from, and that this rank connects to as the map starts
    /// ([`victims_of`]).
    victims: Vec<usize>,
    /// Whether every rank runs on this rank's host (or where they run is not known).
    one_host: bool,
    /// At the root, shared with its steal thread: how many items each rank has not started
    /// ([`serve_steals`]); empty elsewhere.
    loads: &'a Mutex<Vec<u64>>,
}

impl Communicator {
    /// Applies `f` to every item of the root's `items` across all ranks, balancing the load by
    /// work stealing; the root gets the results in input order, other ranks `None`.
    ///
    /// **Collective.** The root passes `Some(items)`, the others `None`. Each rank starts with
    /// up to 64 contiguous blocks of the items spread over the list (dealt round-robin)
    /// and steals half of a busy rank's remaining items when it runs dry, so uneven item costs
    /// need no chunk size to tune. Items travel only to the rank
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
        T: Serialize + DeserializeOwned + Send,
        R: Serialize + DeserializeOwned,
        F: FnMut(usize, T) -> std::result::Result<R, String>,
    {
        let mut call = self.begin("map");
        let seq = call.seq;
        let context = self.derived_context(seq, b"map");
        let steals = self.derived_context(seq, b"map steals");
        let work = Mutex::new(Work::new(Vec::new()));
        let (go, over) = (AtomicBool::new(false), AtomicBool::new(false));
        let hint = AtomicUsize::new(usize::MAX);
        let loads = Mutex::new(Vec::new());
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
            opener: None,
            go: &go,
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
        let outcome = std::thread::scope(|s| {
            let server =
                stealing.then(|| s.spawn(|| serve_steals(self, root, &loads, steals, context, &work, &hint)));
            // the root hears from and directs every rank; the others steal from their victims
            let peers: Vec<usize> = if self.rank() == root {
                (1..self.size()).map(|k| (root + k) % self.size()).collect()
            } else {
                run.victims.iter().copied().chain((!run.victims.contains(&root)).then_some(root)).collect()
            };
            let (go, over) = (&go, &over);
            let opener =
                stealing.then(|| s.spawn(move || open_connections(self, &peers, go, over)).thread().clone());
            run.opener = opener.clone();
            let outcome = run.work_loop(total);
            if matches!(outcome, Err(Stop::Done)) {
                // pass the root's word on down the tree at once: other ranks wait for it
                for child in done_children(self.rank(), root, self.size()) {
                    let _ = send_to(self, child, context, DONE, &());
                }
            }
            over.store(true, Ordering::Relaxed);
            if let Some(opener) = opener {
                opener.unpark();
            }
            if let Some(server) = server {
                // a request from this rank to itself stops the steal thread; at the root before
                // the other ranks hear DONE, so that their wake-ups do not delay this one
                let _ = send_to(self, self.rank(), steals, STEAL, &());
                let _ = server.join();
            }
            match outcome {
                Ok(()) if self.rank() == root => done_children(root, root, self.size())
                    .into_iter()
                    .try_for_each(|r| send_to(self, r, context, DONE, &()))
                    .map_err(Stop::from),
                other => other,
            }
        });
        drop(call);
        // late steal requests, counts and replies of this map must not pile up in the mailbox
        let mailbox = self.shared_engine().mailbox();
        mailbox.retire(context);
        mailbox.retire(steals);
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
    comm.shared_engine().send(dest, context, kind, frame)
}

/// Once `go` (this rank's first batch has ended), opens this rank's connections to `peers` (its
/// victims and the root; at the root, every rank) until `over`: the thieves that run dry
/// together at the end of a map then find their victims a message away, instead of a
/// connection and a handshake away on a crowded machine (which took 1 to 2 ms per steal with 16
/// ranks on 2 cores). Waiting for the first batch keeps the handshakes from delaying the ranks'
/// first items. Connections stay open for later maps and messages; one that fails is left to the
/// send that needs it, which reports it.
fn open_connections(comm: &Communicator, peers: &[usize], go: &AtomicBool, over: &AtomicBool) {
    while !go.load(Ordering::Acquire) && !over.load(Ordering::Relaxed) {
        std::thread::park();
    }
    for &peer in peers {
        if over.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(dest) = comm.world_rank_of(peer) {
            let _ = comm.shared_engine().open(dest);
        }
    }
}

/// The steal thread: answers every steal request at once with half of the items this rank has not
/// started ([`Work::steal`]), a thief's own or one the root passed on ([`FORWARD`]), until this
/// rank asks it to stop. A victim that gives tells the root how many it has left. A refused thief
/// is pointed at the rank this one last dealt work with; the root, rather than refuse, passes the
/// request on to the rank with the most work by the counts the ranks report ([`direct`],
/// [`forward`]), and when no rank has any, the thief's request waits here until a count rises above
/// zero, the map ends or [`HOLD_LIMIT`] passes, so that the idle ranks of a map's last moments
/// sleep rather than ask each other round in circles.
fn serve_steals<T: Serialize + Send>(
    comm: &Communicator,
    root: usize,
    loads: &Mutex<Vec<u64>>,
    steals: u64,
    replies: u64,
    work: &Mutex<Work<T>>,
    hint: &AtomicUsize,
) {
    // `loads`, at the root only: how many items each rank has not started, as dealt, reported
    // or directed; `waiting`: the thieves the root could not yet point anywhere
    let at_root = !lock(loads).is_empty();
    let mut waiting: Vec<(usize, u64)> = Vec::new();
    let me = comm.rank();
    loop {
        let Ok(pattern) = comm.pattern_on(steals, None, None) else { return };
        let request = if waiting.is_empty() {
            comm.shared_engine().recv(&pattern).map(Some)
        } else {
            comm.shared_engine().mailbox().recv_timeout(&pattern, HOLD_LIMIT)
        };
        let request = match request {
            Ok(Some(request)) => request,
            Ok(None) => {
                // held too long: the counts may have missed some work, so let the waiting
                // thieves look for themselves (they come back here when they find none)
                for (waiter, _) in waiting.drain(..) {
                    let _ = send_to(comm, waiter, replies, GIVE, &(Blocks::<T>::new(), u64::MAX, u64::MAX));
                }
                continue;
            }
            Err(_) => return,
        };
        let thief = comm.member_of(request.src);
        if request.tag == LOAD {
            let mut loads = lock(loads);
            if let (Some(load), Ok(n)) = (loads.get_mut(thief), codec::decode(&request.data, thief, LOAD)) {
                *load = n;
            }
            // pass the waiting thieves on to the work that appeared, as long as there is some
            while let Some(&(waiter, asked)) = waiting.last() {
                let (victim, want) = direct(&mut loads, waiter, asked, false);
                if victim == u64::MAX {
                    break;
                }
                waiting.pop();
                forward::<T>(comm, steals, replies, waiter, victim, want, false);
            }
            continue;
        }
        let (thief, want, ahead) = if request.tag == FORWARD {
            match codec::decode::<(u64, u64, bool)>(&request.data, thief, FORWARD) {
                Ok((t, want, ahead)) if (t as usize) < comm.size() && t as usize != me => {
                    (t as usize, want, ahead)
                }
                _ => continue,
            }
        } else if thief == me {
            return;
        } else {
            let (want, ahead) =
                codec::decode::<(u64, bool)>(&request.data, thief, STEAL).unwrap_or((u64::MAX, false));
            (thief, want, ahead)
        };
        let (given, left) = {
            let mut work = lock(work);
            let given = work.give(usize::try_from(want).unwrap_or(usize::MAX), ahead);
            let left = work.len() as u64;
            if !given.is_empty() && !at_root {
                // the root hears what is left here (holding the lock: see `report_load`)
                let _ = send_to(comm, root, steals, LOAD, &left);
            }
            (given, left)
        };
        // a thief that has gone has left the map: its items were not given to anyone else, but
        // the map is over once any rank has left it (only the root's DONE lets ranks go)
        if !given.is_empty() {
            // having given, remember the thief as the rank that holds half of what this had
            hint.store(thief, Ordering::Relaxed);
            if at_root {
                lock(loads)[me] = left;
            }
            let _ = send_to(comm, thief, replies, GIVE, &(given, u64::MAX, u64::MAX));
            continue;
        }
        if !at_root {
            // with nothing to give, point the thief at the rank this one last dealt with
            let _ =
                send_to(comm, thief, replies, GIVE, &(given, hint.load(Ordering::Relaxed) as u64, u64::MAX));
            continue;
        }
        // a thief has nothing left (it asks only when dry), nor has the root, which just gave
        // nothing (left at the deal's count, it sent thieves back to itself)
        let (victim, want) = {
            let mut loads = lock(loads);
            loads[thief] = 0;
            loads[me] = 0;
            direct(&mut loads, thief, want, ahead)
        };
        if victim == u64::MAX {
            if ahead {
                // the thief is still busy: it asks again when it runs dry
                let _ = send_to(comm, thief, replies, GIVE, &(given, u64::MAX, u64::MAX));
            } else {
                waiting.push((thief, want));
            }
            continue;
        }
        forward::<T>(comm, steals, replies, thief, victim, want, ahead);
    }
}

/// At the root: passes `thief`'s request for `want` items on to `victim` (a rank number from
/// [`direct`]), which answers the thief itself: one message less than pointing the thief there
/// (with 16 ranks on 2 cores, each hop of a map's last moments took 0.1 to 1 ms). Should that
/// fail, points the thief there instead.
fn forward<T: Serialize>(
    comm: &Communicator,
    steals: u64,
    replies: u64,
    thief: usize,
    victim: u64,
    want: u64,
    ahead: bool,
) {
    let passed = usize::try_from(victim)
        .is_ok_and(|v| send_to(comm, v, steals, FORWARD, &(thief as u64, want, ahead)).is_ok());
    if !passed {
        let _ = send_to(comm, thief, replies, GIVE, &(Blocks::<T>::new(), victim, want));
    }
}

/// The ranks rank `rank` of `size` steals from at random: those of `near` (the other ranks on
/// its host, empty when all are on it or where ranks run is not known) or else every other rank,
/// and of those the [`MAX_VICTIMS`] nearest around the ring of ranks, by distance and then
/// number (so that of every pair of ranks, each is among the other's or neither is). A refused thief then follows where the refuser points and asks the root, which knows
/// the counts of every rank, so work elsewhere is still found; the first try stays on the host,
/// where a steal costs a Unix socket's round trip rather than a network's (Cilk-style clusters
/// steal locally first for the same reason).
fn victims_of(rank: usize, size: usize, near: Vec<usize>) -> Vec<usize> {
    let mut victims = if near.is_empty() { (0..size).filter(|&r| r != rank).collect() } else { near };
    let distance = |r: usize| ((r + size - rank) % size).min((rank + size - r) % size);
    victims.sort_by_key(|&r| (distance(r), r));
    victims.truncate(MAX_VICTIMS);
    victims
}

/// A victim for a random steal from the random number `r`, among `victims` (not empty).
fn random_victim(r: u64, victims: &[usize]) -> usize {
    victims[(r % victims.len() as u64) as usize]
}

/// The root's pick for a refused thief: the rank with the most items not started, as the ranks
/// last reported (`u64::MAX`, none, when every count is zero), and how many items to ask it for:
/// a fair share of all the items left (half of the victim's at most), so that when many ranks
/// are idle at the end of a map each gets a little at once, instead of the first taking half and
/// the others queueing behind it. The victim's count drops as if the thief had taken them, so the
/// next thieves go elsewhere or take the rest; the thief's stays at zero until it reports what it
/// got (counting it there at once would send other thieves to a rank that may be refused).
/// Ranks report when they get work, before each batch when their count has halved or is small,
/// and after giving to a thief, so the counts lag by one batch at most.
fn direct(loads: &mut [u64], thief: usize, asked: u64, ahead: bool) -> (u64, u64) {
    let most = loads.iter().enumerate().filter(|&(r, _)| r != thief).max_by_key(|&(_, &n)| n);
    let Some((victim, &n)) = most else { return (u64::MAX, u64::MAX) };
    // a request ahead takes half at most, and nothing from a rank's last item
    let most_given = if ahead { n / 2 } else { n - n / 2 };
    if most_given == 0 {
        return (u64::MAX, u64::MAX);
    }
    let left: u64 = loads.iter().sum();
    let want = left.div_ceil(loads.len() as u64).clamp(1, most_given).min(asked.max(1));
    loads[victim] = n - want;
    (victim as u64, want)
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

    fn set_work(&mut self, blocks: Blocks<T>) {
        *lock(self.work) = Work::new(blocks);
    }

    fn add_work(&mut self, blocks: Blocks<T>) {
        lock(self.work).add(blocks);
    }

    /// Deals every rank its first blocks (one per rank for the static split, [`DEAL_ROUNDS`]
    /// dealt round-robin for the dynamic map); returns the number of items.
    fn distribute(&mut self, start: Start<T>) -> Result<usize> {
        let (rank, size) = (self.comm.rank(), self.comm.size());
        match start {
            Start::Range(n, make) => {
                let blocks = dealt(n, size, rank, self.balance)
                    .map(|(lo, hi)| (lo as u64, std::iter::repeat_with(make).take(hi - lo).collect()))
                    .collect();
                self.set_work(blocks);
                Ok(n)
            }
            Start::Items(Some(items)) => {
                let n = items.len();
                let count = size * rounds(self.balance, n, size);
                let mut items = items;
                // cut the blocks from the back, then send each rank its own (the root keeps its)
                let mut hands: Vec<Blocks<T>> = (0..size).map(|_| Vec::new()).collect();
                for b in (0..count).rev() {
                    let (lo, _) = block(n, count, b);
                    hands[b % size].push((lo as u64, items.split_off(lo)));
                }
                for (r, mut blocks) in hands.into_iter().enumerate() {
                    blocks.reverse();
                    if r == rank {
                        self.set_work(blocks);
                    } else {
                        self.send(r, INIT, &(n as u64, blocks))?;
                    }
                }
                Ok(n)
            }
            Start::Items(None) => {
                let pattern = self.comm.pattern_on(self.context, Some(self.root), Some(INIT))?;
                let e = self.comm.shared_engine().recv(&pattern)?;
                let (n, blocks): (u64, Blocks<T>) = codec::decode(&e.data, self.root, INIT)?;
                self.set_work(blocks);
                Ok(n as usize)
            }
        }
    }

    /// Runs items and answers peers until the root says every result is in.
    fn work_loop(&mut self, total: usize) -> std::result::Result<(), Stop> {
        let size = self.comm.size();
        loop {
            while self.run_batch()? {
                self.start_opener();
                self.handle(Duration::ZERO)?;
                if self.last_flush.elapsed() >= FLUSH_EVERY {
                    self.flush()?;
                }
            }
            self.start_opener();
            if !self.pending.is_empty() {
                // just ran dry
                self.flush()?;
                self.report_load(true)?;
            }
            if self.comm.rank() == self.root && self.collected == total {
                // every result is in: the caller stops the steal thread, then sends DONE
                return Ok(());
            }
            self.ask();
            let wait = if self.asked.is_some() || self.balance == Balance::Static || size == 1 {
                Duration::from_secs(1)
            } else {
                self.next_ask.saturating_duration_since(Instant::now()).max(Duration::from_micros(1))
            };
            self.handle(wait)?;
        }
    }

    /// Asks a peer for work: one request at a time, not before the wait after a refusal ends.
    fn ask(&mut self) {
        let stealing = self.balance == Balance::Dynamic && self.comm.size() > 1;
        if !stealing || self.asked.is_some() || Instant::now() < self.next_ask {
            return;
        }
        let me = self.comm.rank();
        let want = std::mem::replace(&mut self.want, u64::MAX);
        let ahead = std::mem::take(&mut self.ahead);
        if me == self.root {
            // the root asks the rank its counts show the most work at, as it directs others
            let (victim, want) = {
                let mut loads = lock(self.loads);
                loads[me] = 0;
                direct(&mut loads, me, want, ahead)
            };
            let passed = usize::try_from(victim).is_ok_and(|v| {
                send_to(self.comm, v, self.steals, FORWARD, &(me as u64, want, ahead)).is_ok()
            });
            if passed {
                self.asked_at = Instant::now();
                self.asked = usize::try_from(victim).ok();
            } else {
                // no work anywhere by the counts (or the rank has gone: DONE is on its way)
                self.refused();
            }
            return;
        }
        let victim = self.victim();
        // a victim can only have left after the root's DONE, which is then on its way here: a
        // failed request counts as a refusal
        self.asked_ahead = ahead;
        if send_to(self.comm, victim, self.steals, STEAL, &(want, ahead)).is_ok() {
            self.asked_at = Instant::now();
            self.asked = Some(victim);
        } else {
            self.refused();
        }
    }

    /// Waits before asking again, twice as long as last time (up to [`MAX_BACKOFF`]).
    fn refused(&mut self) {
        self.next_ask = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Tells the root's steal thread how many items this rank has not started, when `changed`
    /// (it got work or ran dry), when the count has halved since last told, or at every change
    /// once it is [`REPORT_EVERY_BELOW`] or less, so a rank tells it a few dozen times in a map at
    /// most (dynamic map only).
    fn report_load(&mut self, changed: bool) -> Result<()> {
        if self.balance != Balance::Dynamic || self.comm.size() == 1 {
            return Ok(());
        }
        // sent holding the lock, as the steal thread sends its count after giving, so that the
        // root hears the two in the order they were true
        let work = lock(self.work);
        let load = work.len() as u64;
        if load == self.reported || !changed && load > self.reported / 2 && load > REPORT_EVERY_BELOW {
            return Ok(());
        }
        self.reported = load;
        send_to(self.comm, self.root, self.steals, LOAD, &load)
    }

    /// Lets the thread that opens connections start (once).
    fn start_opener(&mut self) {
        if let Some(opener) = self.opener.take() {
            self.go.store(true, Ordering::Release);
            opener.unpark();
        }
    }

    fn victim(&mut self) -> usize {
        self.hinted = false;
        if let Some(v) = self.next_victim.take().filter(|&v| v != self.comm.rank()) {
            self.hinted = true;
            return v;
        }
        if std::mem::take(&mut self.ask_root) && self.root != self.comm.rank() {
            return self.root;
        }
        // xorshift64*: a different, cheap sequence on every rank
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        // `victims` is empty only on one rank, which never steals
        if self.victims.is_empty() {
            return self.root;
        }
        random_victim(self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D), &self.victims)
    }

    /// Runs one batch of items from the front of this rank's range, sized to take about
    /// [`BATCH_TIME`]; false when no item was left.
    fn run_batch(&mut self) -> std::result::Result<bool, Stop> {
        let (first, items, last) = {
            let mut work = lock(self.work);
            let (first, items) = work.take_front(self.batch);
            (first, items, work.len() == 0)
        };
        if items.is_empty() {
            return Ok(false);
        }
        // before the batch runs: the items left are what thieves can still get
        self.report_load(false)?;
        let count = items.len();
        let long = self.cost * count as f64 >= AHEAD_MIN.as_secs_f64();
        if last && long && self.asked.is_none() && self.next_victim.is_none() {
            // the last batch of this rank's work: ask for one more item now, so that it is here
            // when the batch ends; on one host the root, which knows where work is (the detour
            // hidden behind the batch), else a random rank of this host
            self.ask_root = self.one_host;
            self.want = 1;
            self.ahead = true;
            self.ask();
        }
        let follows =
            matches!(self.pending.last(), Some((lo, values)) if *lo as usize + values.len() == first);
        if !follows {
            self.pending.push((first as u64, Vec::with_capacity(count)));
        }
        let f = &mut self.f;
        // just pushed when it was not there
        let Some((_, values)) = self.pending.last_mut() else { return Ok(false) };
        let start = Instant::now();
        let mut index = first;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            for item in items {
                match f(index, item) {
                    Ok(r) => values.push(r),
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
        let fragments = std::mem::take(&mut self.pending);
        if self.comm.rank() == self.root {
            self.keep(fragments);
            Ok(())
        } else {
            self.send(self.root, RESULTS, &fragments)
        }
    }

    /// At the root: keeps result fragments and counts them.
    fn keep(&mut self, fragments: Blocks<R>) {
        for (lo, values) in fragments {
            self.collected += values.len();
            self.fragments.push((lo as usize, values));
        }
        self.report_progress();
    }

    /// Handles the messages that arrive within `wait`.
    fn handle(&mut self, wait: Duration) -> std::result::Result<(), Stop> {
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
            let Some(e) = message else { return Ok(()) };
            // after the first message, take what else is there without waiting
            wait = Duration::ZERO;
            let src = self.comm.member_of(e.src);
            match e.tag {
                GIVE => {
                    let (blocks, hint, want): (Blocks<T>, u64, u64) = codec::decode(&e.data, src, GIVE)?;
                    let got: usize = blocks.iter().map(|(_, items)| items.len()).sum();
                    let hint = usize::try_from(hint).ok().filter(|&h| h < self.comm.size());
                    // the rank asked, and the one that answered (another, when the root passed
                    // the request on)
                    let asked = self.asked.take().unwrap_or(src);
                    if let Some(t) = self.comm.tracer() {
                        let args =
                            format!("\"map\":{},\"victim\":{asked},\"from\":{src},\"got\":{got}", self.seq);
                        t.record("steal", "map", self.asked_at, Instant::now(), &args);
                    }
                    if got > 0 {
                        self.hint.store(src, Ordering::Relaxed);
                        self.backoff = MIN_BACKOFF;
                        self.add_work(blocks);
                        self.report_load(true)?;
                        continue;
                    }
                    if std::mem::take(&mut self.asked_ahead) && self.one_host {
                        // no work to spare anywhere by the root's counts: when this rank runs
                        // dry, it waits at the root for work to appear rather than ask round
                        self.ask_root = true;
                        continue;
                    }
                    if src == self.root && hint.is_some() {
                        // the root counts work there: ask at once, for as much as it said
                        self.next_victim = hint;
                        self.want = want;
                        self.next_ask = Instant::now();
                        continue;
                    }
                    if !self.hinted && hint.is_some() {
                        // try where the refusing rank points, rather than at random; but only
                        // once in a row: two ranks that dealt with each other point at each other
                        self.next_victim = hint;
                        self.want = want;
                    } else if src != self.root {
                        // then ask the root, which knows roughly who has work
                        self.ask_root = true;
                    }
                    self.refused();
                }
                RESULTS => {
                    let fragments: Blocks<R> = codec::decode(&e.data, src, RESULTS)?;
                    self.keep(fragments);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn work(blocks: &[(u64, std::ops::Range<u32>)]) -> Work<u32> {
        Work::new(blocks.iter().map(|(lo, r)| (*lo, r.clone().collect())).collect())
    }

    fn left(w: &Work<u32>) -> Vec<(usize, Vec<u32>)> {
        w.blocks.iter().map(|b| (b.lo, b.items.iter().copied().collect())).collect()
    }

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

    #[test]
    fn batches_come_from_the_front_across_blocks() {
        let mut w = work(&[(0, 0..3), (10, 10..12)]);
        assert_eq!(w.len(), 5);
        assert_eq!(w.take_front(2), (0, vec![0, 1]));
        assert_eq!(w.len(), 3);
        assert_eq!(w.take_front(5), (2, vec![2]));
        assert_eq!(w.take_front(5), (10, vec![10, 11]));
        assert_eq!(w.take_front(5), (0, vec![]));
        assert!(w.blocks.is_empty());
    }

    #[test]
    fn thieves_get_every_other_block_then_the_front_half_of_the_last() {
        let mut w = work(&[(0, 0..2), (10, 10..12), (20, 20..22)]);
        let given = w.steal(usize::MAX);
        assert_eq!(given, vec![(0, vec![0, 1]), (20, vec![20, 21])]);
        assert_eq!(left(&w), vec![(10, vec![10, 11])]);
        assert_eq!(w.len(), 2);
        let mut w = work(&[(5, 5..10)]);
        assert_eq!(w.steal(usize::MAX), vec![(5, vec![5, 6, 7])]);
        assert_eq!(left(&w), vec![(8, vec![8, 9])]);
        assert_eq!(w.steal(usize::MAX), vec![(8, vec![8])]);
        assert_eq!(w.steal(usize::MAX), vec![(9, vec![9])]);
        assert!(w.blocks.is_empty());
        assert_eq!(w.steal(usize::MAX), vec![]);
        // empty blocks are dropped on arrival
        assert!(work(&[(3, 3..3)]).blocks.is_empty());
    }

    #[test]
    fn a_thief_can_ask_for_fewer_than_half() {
        let mut w = work(&[(0, 0..2), (10, 10..20)]);
        assert_eq!(w.steal(3), vec![(0, vec![0, 1]), (10, vec![10])]);
        assert_eq!(w.steal(1), vec![(11, vec![11])]);
        assert_eq!(left(&w), vec![(12, (12..20).collect())]);
        assert_eq!(w.len(), 8);
        // asking for half or more gets half
        assert_eq!(w.steal(5), vec![(12, vec![12, 13, 14, 15])]);
        assert_eq!(w.steal(0), vec![]);
        assert_eq!(left(&w), vec![(16, vec![16, 17, 18, 19])]);
        w.add(vec![(30, vec![30]), (40, vec![])]);
        assert_eq!((w.len(), w.blocks.len()), (5, 2));
    }

    #[test]
    fn random_steals_stay_on_the_host_when_it_has_other_ranks() {
        let mut seen = [0usize; 8];
        let (host, all) = (victims_of(1, 8, vec![0, 2, 3]), victims_of(1, 8, Vec::new()));
        for r in 0..4000u64 {
            let r = r.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let v = random_victim(r, &host);
            assert!([0, 2, 3].contains(&v), "rank 1 stole from {v}, off its host");
            seen[v] += 1;
            let any = random_victim(r, &all);
            assert!(any != 1 && any < 8, "{any}");
            seen[any] += 1;
        }
        // every rank of the host, and with no host ranks every other rank, gets picked
        assert!(seen.iter().enumerate().all(|(v, &n)| (v == 1) == (n == 0)), "{seen:?}");
    }

    /// Up to [`MAX_VICTIMS`] + 1 ranks, every other rank is a victim; beyond, the nearest around
    /// the ring, and of every pair of ranks each is among the other's victims or neither is.
    #[test]
    fn victims_are_the_nearest_around_the_ring_and_mutual() {
        for size in [2, 5, MAX_VICTIMS + 1, MAX_VICTIMS + 2, 33, 64] {
            let all: Vec<Vec<usize>> = (0..size).map(|r| victims_of(r, size, Vec::new())).collect();
            for (r, v) in all.iter().enumerate() {
                assert_eq!(v.len(), (size - 1).min(MAX_VICTIMS), "size {size} rank {r}");
                assert!(!v.contains(&r), "size {size}: rank {r} steals from itself");
                for &p in v {
                    assert!(all[p].contains(&r), "size {size}: {r} steals from {p}, not {p} from {r}");
                }
            }
        }
        let v = victims_of(0, 64, Vec::new());
        assert_eq!(&v[..4], [1, 63, 2, 62]);
        assert!(v.iter().all(|&p| p <= 8 || p >= 56), "{v:?}");
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

    #[test]
    fn the_root_directs_thieves_to_a_fair_share_of_the_most_loaded() {
        // 16 items left over 4 ranks: each should end with about 4
        let mut loads = vec![0, 12, 4, 0];
        assert_eq!(direct(&mut loads, 0, u64::MAX, false), (1, 4));
        assert_eq!(loads, vec![0, 8, 4, 0]);
        // the thieves' counts wait for their own reports
        loads[0] = 4;
        assert_eq!(direct(&mut loads, 3, u64::MAX, false), (1, 4));
        assert_eq!(loads, vec![4, 4, 4, 0]);
        // one item left: its holder keeps running it, a thief may take it
        let mut loads = vec![0, 1, 0];
        assert_eq!(direct(&mut loads, 2, u64::MAX, false), (1, 1));
        assert_eq!(loads, vec![0, 0, 0]);
        // nothing anywhere (or only the thief's own): no hint
        assert_eq!(direct(&mut [0, 0, 0], 1, u64::MAX, false), (u64::MAX, u64::MAX));
        assert_eq!(direct(&mut [0, 5], 1, u64::MAX, false), (u64::MAX, u64::MAX));
        // a thief asking ahead for one item takes it from a rank with two at least
        let mut loads = vec![0, 1, 3, 0];
        assert_eq!(direct(&mut loads, 0, 1, true), (2, 1));
        assert_eq!(loads, vec![0, 1, 2, 0]);
        assert_eq!(direct(&mut loads, 3, 1, true), (2, 1));
        assert_eq!(direct(&mut loads, 0, 1, true), (u64::MAX, u64::MAX));
        assert_eq!(loads, vec![0, 1, 1, 0]);
    }

    /// A request ahead never takes a victim's last item, and at most half of the rest.
    #[test]
    fn a_thief_asking_ahead_leaves_the_victim_its_next_item() {
        let mut w = work(&[(0, 0..1)]);
        assert_eq!(w.give(1, true), vec![]);
        assert_eq!(w.give(1, false), vec![(0, vec![0])]);
        let mut w = work(&[(0, 0..3)]);
        assert_eq!(w.give(u64::MAX as usize, true), vec![(0, vec![0])]);
        assert_eq!(w.give(1, true), vec![(1, vec![1])]);
        assert_eq!(w.give(1, true), vec![]);
        assert_eq!(left(&w), vec![(2, vec![2])]);
    }
}
