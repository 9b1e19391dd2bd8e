//! One rank's part of a map: running batches, asking for work, sending results and, at the
//! root, collecting them.

use super::steal::{direct, random_victim};
use super::work::Work;
use super::{
    AHEAD_MIN, BATCH_TIME, Balance, Blocks, DONE, FAIL, FLUSH_EVERY, FORWARD, Failure, GIVE, INIT, LOAD,
    MAX_BACKOFF, MIN_BACKOFF, PROGRESS_EVERY, REPORT_EVERY_BELOW, RESULTS, STEAL, Start, Stop, block, dealt,
    lock, rounds, send_to,
};
use crate::activity::Waiting;
use crate::codec;
use crate::communicator::Communicator;
use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One run of a map on one rank.
pub(super) struct Run<'a, T, R, F> {
    pub(super) comm: &'a Communicator,
    pub(super) context: u64,
    pub(super) root: usize,
    pub(super) balance: Balance,
    pub(super) f: F,
    /// This rank's items not yet started; the steal thread takes from its back.
    pub(super) work: &'a Mutex<Work<T>>,
    /// Context of steal requests (the steal thread's).
    pub(super) steals: u64,
    /// Results not yet sent, as fragments `(first index, values)`.
    pub(super) pending: Blocks<R>,
    pub(super) last_flush: Instant,
    /// How many items not started this rank last told the root it had.
    pub(super) reported: u64,
    /// At the root: every fragment received, and how many results they hold.
    pub(super) fragments: Vec<(usize, Vec<R>)>,
    pub(super) collected: usize,
    /// Measured cost of one item, in seconds (moving average).
    pub(super) cost: f64,
    pub(super) batch: usize,
    pub(super) rng: u64,
    /// The map's call number, items in all, and when progress was last reported.
    pub(super) seq: u32,
    pub(super) total: usize,
    pub(super) last_report: Instant,
    /// The victim of the steal request in flight, when it was sent, when this rank may ask
    /// next, and how long it waits after the next refusal.
    pub(super) asked: Option<usize>,
    pub(super) asked_at: Instant,
    pub(super) next_ask: Instant,
    pub(super) backoff: Duration,
    /// The rank this one last gave work to or got work from (`usize::MAX`: none yet): where
    /// work most likely still is, for the thieves this rank must refuse.
    pub(super) hint: &'a AtomicUsize,
    /// Where to ask next, as a refusing victim suggested.
    pub(super) next_victim: Option<usize>,
    /// Whether the request in flight went where a refusing victim pointed, and whether the next
    /// one goes to the root, which knows best where work is.
    pub(super) hinted: bool,
    pub(super) ask_root: bool,
    /// How many items the next request asks for (`u64::MAX`: half), as the root advised.
    pub(super) want: u64,
    /// Whether the next request asks ahead: sent as this rank starts its last batch, so it takes
    /// only from a rank with work to spare (two items at least), never another's last item.
    pub(super) ahead: bool,
    /// Whether the request in flight asked ahead.
    pub(super) asked_ahead: bool,
    /// The ranks a random steal picks from, and that this rank connects to as the map starts
    /// ([`victims_of`](super::steal::victims_of)).
    pub(super) victims: Vec<usize>,
    /// Whether every rank runs on this rank's host (or where they run is not known).
    pub(super) one_host: bool,
    /// At the root, shared with its steal thread: how many items each rank has not started
    /// ([`serve_steals`](super::steal::serve_steals)); empty elsewhere.
    pub(super) loads: &'a Mutex<Vec<u64>>,
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

    /// Deals every rank its first blocks (one per rank for the static split, [`DEAL_ROUNDS`](super::DEAL_ROUNDS)
    /// dealt round-robin for the dynamic map); returns the number of items.
    pub(super) fn distribute(&mut self, start: Start<T>) -> Result<usize> {
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
    /// `start_opener` starts the thread that opens connections ahead (the first call counts).
    pub(super) fn work_loop(
        &mut self,
        total: usize,
        start_opener: &mut dyn FnMut(),
    ) -> std::result::Result<(), Stop> {
        let size = self.comm.size();
        loop {
            while self.run_batch()? {
                start_opener();
                self.handle(Duration::ZERO)?;
                if self.last_flush.elapsed() >= FLUSH_EVERY {
                    self.flush()?;
                }
            }
            start_opener();
            if !self.pending.is_empty() {
                // just ran dry: the count first, since the root may end the map and exit as soon
                // as it has the results (a count sent after them failed when the results, lent,
                // were read and the root gone before the count went out)
                self.report_load(true)?;
                self.flush()?;
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
    /// The root picks its victim by the counts it keeps, as it does for other thieves; any other
    /// rank asks where [`Run::victim`] says, for as many items as `want` (and `ahead`) say.
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

    /// Where the next request goes: where a refusing rank pointed, else the root when asked
    /// to, else a random one of this rank's victims.
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
                let waiting = Waiting {
                    op: "map",
                    root: Some(self.root),
                    call: Some(self.seq),
                    context: Some(self.comm.base_context()),
                    len: None,
                    peer: None,
                    tag: None,
                    sending: false,
                };
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
