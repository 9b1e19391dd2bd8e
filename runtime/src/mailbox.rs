//! Received messages waiting to be matched, and what is known of each peer.
//!
//! Messages are pushed here as they arrive; user calls match them by source, context and tag in
//! arrival order (so messages of one sender and tag keep their order). A receive waiting for one
//! source reads that source's connection itself when nobody else does
//! ([`crate::incoming`]), woken by its socket or by any change here; any other blocked receive
//! sleeps on a condition variable and is woken by every arrival and every change in a peer's
//! state. So waiting never burns a core.
//!
//! A receive that knows where the payload goes ([`Mailbox::recv_placed`]) posts its buffer while
//! it waits. Whoever reads the header of a large message for a posted receive does not read the
//! payload itself: it hands the connection over ([`Mailbox::hand_over`]), the receive reads the
//! payload from the socket straight into its buffer and puts the connection back. So the payload
//! is copied once on each side (into the kernel and out of it, at the same time on two cores),
//! with no buffer allocated and no second copy in between.

use crate::error::{Error, Result};
use crate::incoming::{Conn, Incoming};
use crate::transport::Stream;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// A received message.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub src: usize,
    pub context: u64,
    pub tag: u32,
    pub data: Vec<u8>,
}

/// Which messages a receive accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pattern<'a> {
    /// `None`: any source.
    pub src: Option<usize>,
    /// For any source: the ranks that may send on this context (`None`: every rank).
    pub group: Option<&'a [usize]>,
    pub context: u64,
    /// `None`: any tag.
    pub tag: Option<u32>,
}

impl Pattern<'_> {
    fn matches(&self, e: &Envelope) -> bool {
        self.matches_message(e.src, e.context, e.tag)
    }

    fn matches_message(&self, src: usize, context: u64, tag: u32) -> bool {
        context == self.context
            && self.src.is_none_or(|s| s == src)
            && self.group.is_none_or(|g| g.contains(&src))
            && self.tag.is_none_or(|t| t == tag)
    }
}

/// Receives posted by [`Mailbox::complete_each`]; dropped before they are all received (the
/// call failed), it takes the others back (a message already handed over to one is read into
/// a vector and queued).
pub(crate) struct Posted<'m> {
    mailbox: &'m Mailbox,
    ids: Vec<u64>,
}

impl Drop for Posted<'_> {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let mut s = self.mailbox.lock();
        let mut handed = Vec::new();
        s.posts.retain_mut(|p| {
            let ours = self.ids.contains(&p.id);
            if let Some(h) = p.handed.take().filter(|_| ours) {
                handed.push((p.src, p.context, p.tag, p.len, h));
            }
            !ours
        });
        drop(s);
        for (src, context, tag, len, h) in handed {
            let Ok(len) = usize::try_from(len) else { continue };
            let mut data = vec![0; len];
            let read = self.mailbox.read_handoff(src, h, Target { body: &mut data, tail: &mut [] });
            if read.is_ok() {
                self.mailbox.push(Envelope { src, context, tag, data });
            }
        }
    }
}

/// What is known of one peer.
#[derive(Default, Debug)]
struct Peer {
    /// Set when the launcher reported the peer's process ended, with how.
    exited: Option<String>,
    /// Authenticated incoming connections from it that are still open.
    open: u32,
    /// Incoming connections claiming to be from it, still in their handshake.
    handshaking: u32,
    /// Set when a message it lent could not be read out of its memory for want of the
    /// permission (see [`unreadable`]), which closed the connection it came on.
    unreadable: Option<String>,
}

impl Peer {
    /// Nothing more can arrive from this peer.
    fn gone(&self) -> bool {
        self.exited.is_some() && self.open == 0 && self.handshaking == 0
    }
}

/// A connection handed by its reader to a posted receive, in the middle of a payload.
pub(crate) struct Handoff {
    /// The connection, its next bytes the rest of the payload.
    pub stream: Box<dyn Stream>,
    /// The payload's first bytes, which the reader had read before the receive came.
    pub prefix: Vec<u8>,
    /// Where the connection goes back ([`Incoming::release`]) once the payload is read.
    pub conn: Arc<Conn>,
    /// The pipe the rest of the payload comes through, when it was lent rather than written
    /// ([`crate::lend`]).
    pub lent: Option<crate::lend::Lent>,
}

/// A lent message left unread until a receive is posted for it ([`Mailbox::defer`]).
struct Deferred {
    src: usize,
    context: u64,
    tag: u32,
    len: u64,
    handoff: Handoff,
}

impl Deferred {
    /// A stand-in for the message with only its last bytes (a collective's signature), which
    /// came in its frame, for a receive's objections.
    fn stub(&self) -> Envelope {
        let tail = self.handoff.lent.as_ref().map_or(&[][..], crate::lend::tail).to_vec();
        Envelope { src: self.src, context: self.context, tag: self.tag, data: tail }
    }
}

/// A receive waiting with a buffer for one exact source, context, tag and length.
struct Post {
    id: u64,
    src: usize,
    context: u64,
    tag: u32,
    len: u64,
    /// Set by a reader that hands over its connection.
    handed: Option<Handoff>,
}

/// Where a posted receive puts a message: its first bytes in `body`, the rest in `tail`.
pub(crate) struct Target<'b> {
    pub body: &'b mut [u8],
    pub tail: &'b mut [u8],
}

/// What [`Mailbox::recv_placed`] got.
#[derive(Debug)]
pub(crate) enum Placed {
    /// The payload is in the target.
    InPlace,
    /// A message that was already queued (or did not fit the target): the caller copies it.
    Queued(Envelope),
}

struct State {
    queue: VecDeque<Envelope>,
    peers: Vec<Peer>,
    launcher_lost: bool,
    posts: Vec<Post>,
    next_post: u64,
    /// Contexts nobody will receive on again (the last [`RETIRED`]), whose late messages are
    /// dropped on arrival rather than queued for ever.
    retired: VecDeque<u64>,
    /// What wakes each receive that waits on a connection it reads itself, at every change
    /// that concerns it.
    wakers: Vec<Reader>,
    /// Lent messages waiting, unread, for a receive to be posted for them.
    deferred: Vec<Deferred>,
}

/// A receive waiting on a connection it reads itself: what wakes it, and what it waits for.
struct Reader {
    waker: Arc<EventFd>,
    src: usize,
    context: u64,
}

impl Reader {
    /// Whether a message from `src` on `context` can change the outcome of this wait: one on
    /// its context may object to it (a rank that chose another algorithm for the same call),
    /// and one from its source left unread must be read before anything later from there.
    /// Messages of other sources on other contexts cannot, and waking it for them cost the
    /// ranks of a ping-pong a trip through the scheduler for every message of the ranks
    /// waiting meanwhile in the next barrier.
    fn concerned(&self, src: usize, context: u64) -> bool {
        self.src == src || self.context == context
    }
}

/// Most messages receives posted together ([`Mailbox::complete_each`]) may still wait for when
/// they read every source's connection themselves; waiting for more, they read the first
/// source's only and leave the others to the progress thread. Every wake-up claims and puts back
/// each of those connections (two `epoll_ctl` calls each), so that claiming all of 63 made the
/// root of a 64 KiB gather of 64 ranks on 2 cores 1.22 times slower (1493 against 1227 us).
const CLAIM_EACH_MAX: usize = 8;

/// How many retired contexts a mailbox remembers.
const RETIRED: usize = 64;

/// The mailbox of one rank.
pub(crate) struct Mailbox {
    rank: usize,
    state: Mutex<State>,
    changed: Condvar,
    /// Threads asleep on `changed` (counted under the lock before they sleep), so that a change
    /// nobody sleeps on wakes nobody, without a system call.
    sleepers: AtomicUsize,
    /// Receives waiting for the progress thread's delivery (polling the mailbox or asleep on
    /// `changed`): while there are any, a connection parked is armed at once.
    relying: AtomicUsize,
    /// Counts every change, so that a receiver can watch for one without the lock.
    generation: AtomicU64,
    /// How long a receiver polls `generation` before sleeping on the condition variable.
    spin: Duration,
    /// How a wait for a large message polls before sleeping: a receive posted for
    /// [`crate::env::LARGE_WAIT_MIN`] bytes or more, reading its source's connection itself, and
    /// a lent message's wait for its receiver's answer ([`crate::env::large_waits`]).
    large: Polling,
    /// Whether a receive parks the connection it read ([`Incoming::park`]) rather than put it
    /// back armed: where each rank has a core of its own.
    parks: bool,
    /// Receives blocked right now, and what to call when one starts to block (set by a
    /// transport whose deliveries come from polling, to poll eagerly while someone waits).
    waiters: AtomicUsize,
    waker: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// The connections messages arrive on (none on MPI, or in a world of one).
    incoming: OnceLock<Incoming>,
}

thread_local! {
    /// What wakes this thread while it waits on a connection it reads itself (`None` if the
    /// system would not make one: such a thread waits on the condition variable instead).
    static WAKER: Option<Arc<EventFd>> =
        EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC).ok().map(Arc::new);
}

/// A connection taken out of the progress thread's reach, with its source.
type Held = (usize, Arc<Conn>, Box<dyn Stream>);

thread_local! {
    /// A connection this thread took out of the progress thread's reach before a receive on
    /// it ([`Mailbox::hold`]).
    static HELD: std::cell::RefCell<Option<Held>> = const { std::cell::RefCell::new(None) };
}

/// How long a wait polls before it sleeps, and whether it yields its core between polls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Polling {
    /// Polling time; zero sleeps at once.
    pub time: Duration,
    /// Whether each poll that finds nothing gives the core to another thread that can run
    /// (`sched_yield`), rather than keeping it for the next poll.
    pub yields: bool,
}

impl Polling {
    /// Polls for `time` without yielding (where the waiting thread has a core of its own).
    pub fn spin(time: Duration) -> Polling {
        Polling { time, yields: false }
    }
}

/// How a blocked receive polls before its first sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spin {
    /// Only the connection it reads itself, for the mailbox's spin time.
    Connection,
    /// That connection, or else the mailbox, for the mailbox's spin time (short messages).
    Mailbox,
    /// Only the connection it reads itself, as the mailbox's large waits do.
    Large,
}

/// What objects to a queued message while a receive waits (see [`Mailbox::recv_checked`]).
type Objection<'f> = dyn Fn(&Envelope) -> Option<Error> + 'f;

/// Counts a receive that waits for the progress thread ([`Mailbox::relying`]) for as long as
/// it lives.
struct Relying<'m>(&'m Mailbox);

impl<'m> Relying<'m> {
    fn new(mailbox: &'m Mailbox) -> Relying<'m> {
        mailbox.relying.fetch_add(1, Ordering::SeqCst);
        Relying(mailbox)
    }
}

impl Drop for Relying<'_> {
    fn drop(&mut self) {
        self.0.relying.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a blocked receive for as long as it lives.
struct Waiting<'m>(&'m Mailbox);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::Release);
    }
}

impl Mailbox {
    /// A mailbox for `rank` of `size` on a host running `local_size` of the job's ranks, whose
    /// receivers poll as the environment says ([`crate::env::spin`] for every wait,
    /// [`crate::env::large_waits`] for waits for large messages where ranks share cores).
    pub fn for_host(rank: usize, size: usize, local_size: usize) -> Result<Mailbox> {
        let mut mailbox = Mailbox::new(rank, size, crate::env::spin(local_size)?);
        if let Some(large) = crate::env::large_waits(local_size)? {
            mailbox.large = large;
        }
        // where ranks share cores a receive sleeps at once and gaps between a rank's receives
        // are long: parked connections would wait for the timer, then wake the progress thread
        // anyway (8 ranks on 2 cores, alternating runs: barrier 87 against 63 us, allreduce of 8
        // bytes 92 against 71, 1 MiB ping-pong 100 against 70)
        mailbox.parks = !crate::env::crowded(local_size);
        Ok(mailbox)
    }

    /// A mailbox for `rank` of `size`; receivers poll for `spin` before sleeping (zero when
    /// the host runs more ranks than it has cores, where polling would steal a peer's core),
    /// those of large messages too.
    pub fn new(rank: usize, size: usize, spin: Duration) -> Mailbox {
        Mailbox {
            rank,
            generation: AtomicU64::new(0),
            spin,
            large: Polling::spin(spin),
            parks: true,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                peers: (0..size).map(|_| Peer::default()).collect(),
                launcher_lost: false,
                posts: Vec::new(),
                next_post: 0,
                retired: VecDeque::new(),
                wakers: Vec::new(),
                deferred: Vec::new(),
            }),
            changed: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            relying: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            waker: OnceLock::new(),
            incoming: OnceLock::new(),
        }
    }

    /// Sets the connections messages arrive on (once; later calls are ignored).
    pub fn attach(&self, incoming: Incoming) {
        let _ = self.incoming.set(incoming);
    }

    /// The connections messages arrive on, once attached.
    pub fn incoming(&self) -> Option<&Incoming> {
        self.incoming.get()
    }

    /// Sets what to call whenever a receive starts to block (once; later calls are ignored).
    #[cfg(feature = "mpi")]
    pub fn set_waker(&self, waker: Box<dyn Fn() + Send + Sync>) {
        let _ = self.waker.set(waker);
    }

    /// Whether some receive is blocked, waiting for a message.
    #[cfg(feature = "mpi")]
    pub fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Acquire) > 0
    }

    /// Marks a receive as blocked until the returned guard is dropped, and calls the waker.
    fn waiting(&self) -> Waiting<'_> {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        if let Some(wake) = self.waker.get() {
            wake();
        }
        Waiting(self)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.lock();
        f(&mut s);
        self.notify(s, None);
    }

    /// Tells every waiting receive that the state just changed under `s`, and unlocks it; a
    /// change that is a message (from `src` on `context`: `about`) wakes only the receives
    /// reading a connection themselves that it concerns.
    fn notify(&self, s: MutexGuard<'_, State>, about: Option<(usize, u64)>) {
        Self::changed(&s, about);
        drop(s);
        self.generation.fetch_add(1, Ordering::Release);
        // a sleeper counted itself under the lock before sleeping, so before the change made
        // under it: none counted means none to wake, and the wake's system call is saved
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.changed.notify_all();
        }
    }

    /// Wakes the receives that read a connection themselves (the condition variable's sleepers
    /// are the caller's to notify).
    fn changed(s: &State, about: Option<(usize, u64)>) {
        if s.wakers.is_empty() {
            return;
        }
        // not this thread's own: it is not waiting while it changes something
        let own = WAKER.with(|w| w.as_ref().map(Arc::as_ptr));
        let concerned = |r: &&Reader| about.is_none_or(|(src, context)| r.concerned(src, context));
        for r in s.wakers.iter().filter(|r| Some(Arc::as_ptr(&r.waker)) != own).filter(concerned) {
            // a full counter already wakes its thread
            let _ = r.waker.write(1);
        }
    }

    /// Takes the connection from `src` out of the progress thread's reach, for this thread's
    /// next receive from `src` to read itself; so a message that comes before that receive
    /// starts waits for it rather than going to the progress thread (an exchange step announces
    /// its own message first). [`Mailbox::unhold`] puts it back if no receive took it.
    pub(crate) fn hold(&self, src: usize) {
        let Some(incoming) = self.incoming.get() else { return };
        self.unhold();
        if let Some((conn, stream)) = incoming.claim(src) {
            HELD.with(|h| *h.borrow_mut() = Some((src, conn, stream)));
        }
    }

    /// Puts back a connection [`Mailbox::hold`] took, if no receive took it.
    pub(crate) fn unhold(&self) {
        let held = HELD.with(|h| h.borrow_mut().take());
        if let (Some((_, conn, stream)), Some(incoming)) = (held, self.incoming.get()) {
            incoming.release(self, &conn, stream, true);
        }
    }

    /// Puts back a connection a receive read: parked ([`Incoming::park`]) where ranks have a
    /// core each, else armed; closed when the read failed (`ok` false).
    fn put_back(&self, incoming: &Incoming, conn: &Conn, stream: Box<dyn Stream>, ok: bool) {
        if self.parks {
            incoming.park(self, conn, stream, ok);
        } else {
            incoming.release(self, conn, stream, ok);
        }
    }

    /// Whether some receive waits for the progress thread's delivery, so that nothing is to
    /// stay parked ([`Incoming::park`]).
    pub(crate) fn relies_on_progress(&self) -> bool {
        self.relying.load(Ordering::SeqCst) > 0
    }

    /// Arms the incoming connections receives parked ([`Incoming::park`]), for a wait that
    /// relies on the progress thread.
    fn arm_parked(&self) {
        if let Some(incoming) = self.incoming.get() {
            incoming.arm_parked(self);
        }
    }

    /// How a wait for a large message polls before it sleeps ([`Mailbox::for_host`]).
    pub(crate) fn large_polling(&self) -> Polling {
        self.large
    }

    /// Polls briefly for a change after `seen`; true if one happened.
    fn spin_for_change(&self, seen: u64) -> bool {
        if self.spin.is_zero() {
            return false;
        }
        let start = Instant::now();
        while start.elapsed() < self.spin {
            if self.generation.load(Ordering::Acquire) != seen {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// A message arrived.
    pub fn push(&self, e: Envelope) {
        let mut s = self.lock();
        if s.retired.contains(&e.context) {
            return;
        }
        let about = (e.src, e.context);
        s.queue.push_back(e);
        self.notify(s, Some(about));
    }

    /// Drops the messages queued on `context` and every later one: the caller will never
    /// receive on it again (a finished map's context, where a thief's last request or count can
    /// arrive after the map ended). Only the last [`RETIRED`] contexts are remembered.
    pub fn retire(&self, context: u64) {
        let mut s = self.lock();
        s.queue.retain(|e| e.context != context);
        if s.retired.len() == RETIRED {
            s.retired.pop_front();
        }
        s.retired.push_back(context);
        // their senders wait for them to be read
        let (unread, kept) = std::mem::take(&mut s.deferred).into_iter().partition(|d| d.context == context);
        s.deferred = kept;
        drop(s);
        for d in unread {
            self.materialize(d);
        }
    }

    /// Leaves a lent message (from `src`, on `context` with `tag`, `len` bytes) unread until a
    /// receive is posted for it, its sender waiting meanwhile ([`crate::lend::rendezvous`]);
    /// hands it over at once to a receive posted for it already. A message on a retired context
    /// is read and dropped.
    pub fn defer(&self, src: usize, context: u64, tag: u32, len: u64, handoff: Handoff) {
        let mut s = self.lock();
        if s.retired.contains(&context) {
            drop(s);
            return self.materialize(Deferred { src, context, tag, len, handoff });
        }
        match Self::post_for(&s, src, context, tag, len) {
            Some(i) => s.posts[i].handed = Some(handoff),
            None => s.deferred.push(Deferred { src, context, tag, len, handoff }),
        }
        self.notify(s, Some((src, context)));
    }

    /// The handoff of the first message left unread from `src` on `context` with `tag`, if it
    /// is `len` bytes long (one of another length is for [`Mailbox::materialize`]).
    fn take_deferred(s: &mut State, src: usize, context: u64, tag: u32, len: u64) -> Option<Handoff> {
        let i = s.deferred.iter().position(|d| d.src == src && d.context == context && d.tag == tag)?;
        (s.deferred[i].len == len).then(|| s.deferred.remove(i).handoff)
    }

    /// Reads a message left unread into a vector and queues it (for a receive that was not
    /// posted for it: one of another length, or one that takes any message).
    fn materialize(&self, d: Deferred) {
        let Deferred { src, context, tag, len, handoff } = d;
        let Ok(len) = usize::try_from(len) else { return };
        let mut data = vec![0; len];
        if self.read_handoff(src, handoff, Target { body: &mut data, tail: &mut [] }).is_ok() {
            self.push(Envelope { src, context, tag, data });
        }
    }

    /// Reads into the queue the first message left unread from a source `pat` waits for, on
    /// any context: one `pat` matches, or one before it (its sender sends nothing more until
    /// that one is read: a receive for a later message of that source would wait for ever);
    /// false if none.
    fn materialize_for<'s>(
        &'s self,
        mut s: MutexGuard<'s, State>,
        pat: &Pattern<'_>,
    ) -> (MutexGuard<'s, State>, bool) {
        let from_source = |d: &Deferred| match pat.src {
            Some(src) => src == d.src,
            None => pat.group.is_none_or(|g| g.contains(&d.src)),
        };
        let Some(i) = s.deferred.iter().position(from_source) else { return (s, false) };
        let d = s.deferred.remove(i);
        drop(s);
        self.materialize(d);
        (self.lock(), true)
    }

    /// A connection claiming to come from `src` started its handshake.
    pub fn handshake_started(&self, src: usize) {
        self.update(|s| s.peers[src].handshaking += 1);
    }

    /// The handshake of a connection from `src` ended, accepted or not.
    pub fn handshake_ended(&self, src: usize, accepted: bool) {
        self.update(|s| {
            let p = &mut s.peers[src];
            p.handshaking -= 1;
            if accepted {
                p.open += 1;
            }
        });
    }

    /// An accepted connection from `src` closed.
    pub fn connection_closed(&self, src: usize) {
        self.update(|s| s.peers[src].open -= 1);
    }

    /// A message from `src` could not be read out of its memory, for want of the permission
    /// (`why`), and its connection closed: receives from `src` fail with that.
    pub fn unreadable(&self, src: usize, why: String) {
        self.update(|s| {
            if let Some(p) = s.peers.get_mut(src) {
                p.unreadable.get_or_insert(why);
            }
        });
    }

    /// The launcher reported that `rank` ended.
    pub fn peer_exited(&self, rank: usize, how: String) {
        self.update(|s| {
            if let Some(p) = s.peers.get_mut(rank) {
                p.exited.get_or_insert(how);
            }
        });
    }

    /// The connection to the launcher is gone.
    pub fn launcher_lost(&self) {
        self.update(|s| s.launcher_lost = true);
    }

    /// How `rank` ended, if the launcher reported it.
    pub fn exited(&self, rank: usize) -> Option<String> {
        self.lock().peers.get(rank).and_then(|p| p.exited.clone())
    }

    /// Why no message matching `pat` can ever arrive, if that is so.
    fn hopeless(&self, s: &State, pat: &Pattern<'_>) -> Option<Error> {
        match pat.src {
            Some(src) if src == self.rank => None,
            Some(src) => {
                let p = &s.peers[src];
                if let Some(why) = &p.unreadable {
                    Some(unreadable(src, io::Error::new(io::ErrorKind::PermissionDenied, why.clone())))
                } else if p.gone() {
                    Some(Error::PeerLost { rank: src, reason: p.exited.clone().unwrap_or_default() })
                } else if s.launcher_lost && p.open == 0 {
                    Some(Error::LauncherLost)
                } else {
                    None
                }
            }
            None => {
                let others_gone = s.peers.iter().enumerate().all(|(r, p)| r == self.rank || p.gone());
                // a rank alone in its group could still send to itself from another thread,
                // so a group of one never fails here
                (others_gone && s.peers.len() > 1 && pat.group.is_none_or(|g| g.len() > 1))
                    .then_some(Error::AllPeersGone)
            }
        }
    }

    fn take(s: &mut State, pat: &Pattern<'_>) -> Option<Envelope> {
        let i = s.queue.iter().position(|e| pat.matches(e))?;
        s.queue.remove(i)
    }

    /// Blocks until a message matching `pat` arrives, or it never can.
    pub fn recv(&self, pat: &Pattern<'_>) -> Result<Envelope> {
        // poll briefly before sleeping: a reply often comes within microseconds, and sleeping on
        // the condition variable costs a wake-up more
        self.wait_for(self.lock(), pat, Spin::Mailbox, None, None, |s| Self::take(s, pat)).1
    }

    /// As [`Mailbox::recv`], but fails as soon as a queued message from the same source on the
    /// same context makes `bad` return an error (a peer in another collective call, say),
    /// instead of waiting for a message that will never come.
    pub fn recv_checked(
        &self,
        pat: &Pattern<'_>,
        bad: impl Fn(&Envelope) -> Option<Error>,
    ) -> Result<Envelope> {
        self.wait_for(self.lock(), pat, Spin::Connection, Some(&bad), None, |s| Self::take(s, pat)).1
    }

    /// Waits, holding `s` between checks, until `ready` yields a value; fails when `bad` (if
    /// given) objects to a queued message on `pat`'s context (from any source), or when nothing
    /// matching `pat` can arrive any more. Counts as a blocked receive from its first miss on.
    /// Waiting for one source, it reads that source's connection itself whenever nobody else
    /// does (polling it first as `spin` says); otherwise, with [`Spin::Mailbox`], it polls the
    /// mailbox briefly before its first sleep. No sleep lasts
    /// past `deadline`: `ready` then decides what a late receive yields. Returns the lock with
    /// the outcome.
    fn wait_for<'s, T>(
        &'s self,
        s: MutexGuard<'s, State>,
        pat: &Pattern<'_>,
        spin: Spin,
        bad: Option<&Objection<'_>>,
        deadline: Option<Instant>,
        ready: impl FnMut(&mut State) -> Option<T>,
    ) -> (MutexGuard<'s, State>, Result<T>) {
        self.wait_claiming(s, (pat, &[]), spin, bad, deadline, ready)
    }

    /// [`Mailbox::wait_for`], reading itself the connections of `also`'s sources too, as well
    /// as that of `pat`'s one source, whenever nobody else reads them: for a receive that waits
    /// for several messages at once, so that their senders wake its thread rather than the
    /// progress thread, which would then wake it.
    fn wait_claiming<'s, T>(
        &'s self,
        s: MutexGuard<'s, State>,
        (pat, also): (&Pattern<'_>, &[usize]),
        spin: Spin,
        bad: Option<&Objection<'_>>,
        deadline: Option<Instant>,
        ready: impl FnMut(&mut State) -> Option<T>,
    ) -> (MutexGuard<'s, State>, Result<T>) {
        let mut registered = None;
        let (mut s, outcome) = self.wait_loop(s, (pat, also), (spin, deadline), bad, ready, &mut registered);
        if let Some(waker) = registered {
            s.wakers.retain(|r| !Arc::ptr_eq(&r.waker, &waker));
        }
        (s, outcome)
    }

    /// [`Mailbox::wait_for`]'s loop; a waker it adds to the state is left in `registered`.
    fn wait_loop<'s, T>(
        &'s self,
        mut s: MutexGuard<'s, State>,
        (pat, also): (&Pattern<'_>, &[usize]),
        (spin, deadline): (Spin, Option<Instant>),
        bad: Option<&Objection<'_>>,
        mut ready: impl FnMut(&mut State) -> Option<T>,
        registered: &mut Option<Arc<EventFd>>,
    ) -> (MutexGuard<'s, State>, Result<T>) {
        let mut spun = spin != Spin::Mailbox;
        let mut claim_spun = false;
        // false once a claimed connection's `poll` failed (see `Claim::wait`)
        let mut claims = true;
        let mut _waiting = None;
        // counted from its first wait for the progress thread to its end
        let mut relying = None;
        loop {
            if let Some(value) = ready(&mut s) {
                return (s, Ok(value));
            }
            _waiting.get_or_insert_with(|| self.waiting());
            // any source: a rank that chose another algorithm for the same call may be sending
            // to this one while the peer it waits for never will
            let related = |e: &&Envelope| e.context == pat.context;
            if let Some(err) = bad.and_then(|bad| s.queue.iter().filter(related).find_map(bad)) {
                return (s, Err(err));
            }
            let stubs = || s.deferred.iter().filter(|d| d.context == pat.context).map(Deferred::stub);
            if let Some(err) = bad.and_then(|bad| stubs().find_map(|e| bad(&e))) {
                return (s, Err(err));
            }
            // a message left unread that this receive matches but did not take (it is of
            // another length, or not posted for): into the queue, where `ready` finds it
            let (s2, read) = self.materialize_for(s, pat);
            s = s2;
            if read {
                continue;
            }
            if let Some(err) = self.hopeless(&s, pat) {
                return (s, Err(err));
            }
            // reading the connection itself beats polling for the progress thread's delivery
            // (2 ranks on 2 cores, 8-byte ping-pong: 22 us against 47 with 50 us of polling);
            // polling that connection a while before the first sleep, for any length, saves
            // a wake-up (2 ranks on 2 cores, 64 KiB: ping-pong 20-23 us against 53-81, bcast
            // 21-30 against 54-63, allreduce 65-96 against 128-145; 1 MiB within the noise)
            if claims && let Some(claim) = self.claim(&mut s, pat, also, registered) {
                drop(s);
                // a large message's every wait polls (its frame, then the rest of it, may come
                // in several reads); others only the first
                let polling = match spin {
                    Spin::Large => self.large,
                    _ if claim_spun => Polling::default(),
                    Spin::Connection | Spin::Mailbox => Polling::spin(self.spin),
                };
                claims = claim.wait(self, polling, deadline);
                claim_spun = true;
                s = self.lock();
                continue;
            }
            // from here on this receive waits for the progress thread: it must see every
            // connection, those parked while it waits too
            relying.get_or_insert_with(|| Relying::new(self));
            self.arm_parked();
            if !spun {
                spun = true;
                let seen = self.generation.load(Ordering::Acquire);
                drop(s);
                self.spin_for_change(seen);
                s = self.lock();
                continue;
            }
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            s = match deadline {
                None => self.changed.wait(s).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    self.changed.wait_timeout(s, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Takes the connection of the one source `pat` waits for, and those of `also`'s sources
    /// (on `pat`'s context), where nobody reads them, with this thread's waker added to the
    /// state (and left in `registered`) so that every change wakes it; `None` when it took
    /// none. Called with the lock held, after the checks a change could make come out
    /// otherwise.
    fn claim(
        &self,
        s: &mut State,
        pat: &Pattern<'_>,
        also: &[usize],
        registered: &mut Option<Arc<EventFd>>,
    ) -> Option<Claim<'_>> {
        let src = pat.src.filter(|&src| src != self.rank)?;
        let incoming = self.incoming.get()?;
        let waker = match registered {
            Some(w) => Arc::clone(w),
            None => {
                // a message on `pat`'s context concerns it whatever its source, `also`'s too
                let w = WAKER.with(Clone::clone)?;
                s.wakers.push(Reader { waker: Arc::clone(&w), src, context: pat.context });
                registered.insert(w).clone()
            }
        };
        let others = also.iter().copied().filter(|&a| a != src && a != self.rank);
        let conns: Vec<_> = std::iter::once(src)
            .chain(others)
            .filter_map(|from| {
                let held = HELD.with(|h| {
                    let mut h = h.borrow_mut();
                    h.take_if(|(held, _, _)| *held == from).map(|(_, conn, stream)| (conn, stream))
                });
                held.or_else(|| incoming.claim(from))
            })
            .collect();
        (!conns.is_empty()).then_some(Claim { incoming, conns, waker })
    }

    /// Waits up to `timeout` for a message matching `pat`; `Ok(None)` when none came.
    pub fn recv_timeout(&self, pat: &Pattern<'_>, timeout: Duration) -> Result<Option<Envelope>> {
        let deadline = Instant::now() + timeout;
        let ready = |s: &mut State| {
            Self::take(s, pat).map(Some).or_else(|| (Instant::now() >= deadline).then_some(None))
        };
        self.wait_for(self.lock(), pat, Spin::Connection, None, Some(deadline), ready).1
    }

    /// Offers the payload of a message (from `src`, on `context` with `tag`, `len` bytes) to a
    /// receive posted for exactly that message, lending it the connection. Gives the handoff
    /// back when no such receive waits, or when an earlier message it would match is queued.
    pub fn hand_over(
        &self,
        src: usize,
        context: u64,
        tag: u32,
        len: u64,
        handoff: Handoff,
    ) -> std::result::Result<(), Handoff> {
        let mut s = self.lock();
        match Self::post_for(&s, src, context, tag, len) {
            Some(i) => {
                s.posts[i].handed = Some(handoff);
                self.notify(s, Some((src, context)));
                Ok(())
            }
            None => Err(handoff),
        }
    }

    /// The receive posted for exactly this message (from `src`, on `context` with `tag`, `len`
    /// bytes) that no connection was handed to yet, unless an earlier message it would match
    /// is queued (that one comes first).
    fn post_for(s: &State, src: usize, context: u64, tag: u32, len: u64) -> Option<usize> {
        if s.queue.iter().any(|e| e.src == src && e.context == context && e.tag == tag) {
            return None;
        }
        s.posts.iter().position(|p| {
            p.handed.is_none() && p.src == src && p.context == context && p.tag == tag && p.len == len
        })
    }

    /// Receives the first message matching `pat`, which names one source and one tag, into
    /// `target` when it is exactly as long as the target; an earlier queued message, or one of
    /// another length, comes back as [`Placed::Queued`]. Fails as [`Mailbox::recv_checked`]
    /// does when `bad` objects to a queued message.
    pub fn recv_placed(
        &self,
        pat: &Pattern<'_>,
        target: Target<'_>,
        bad: impl Fn(&Envelope) -> Option<Error>,
    ) -> Result<Placed> {
        // without a deadline the wait ends only with a message or an error
        self.recv_placed_by(pat, target, bad, None)?
            .ok_or_else(|| Error::Malformed("a receive without a deadline gave up".into()))
    }

    /// As [`Mailbox::recv_placed`], but gives up waiting at `deadline` (`Ok(None)`) unless the
    /// message has begun to arrive by then; it is then queued when it comes.
    pub fn recv_placed_by(
        &self,
        pat: &Pattern<'_>,
        target: Target<'_>,
        bad: impl Fn(&Envelope) -> Option<Error>,
        deadline: Option<Instant>,
    ) -> Result<Option<Placed>> {
        let (Some(src), Some(tag)) = (pat.src, pat.tag) else {
            return self.recv_checked(pat, bad).map(|e| Some(Placed::Queued(e)));
        };
        let mut s = self.lock();
        let id = s.next_post;
        s.next_post += 1;
        let len = (target.body.len() + target.tail.len()) as u64;
        s.posts.push(Post { id, src, context: pat.context, tag, len, handed: None });
        // a connection handed over to this post, or else an earlier message queued for it
        let ready = |s: &mut State| {
            let handed = s.posts.iter_mut().find(|p| p.id == id).and_then(|p| p.handed.take());
            let got = handed
                .map(|h| Some(Err(h)))
                .or_else(|| Self::take(s, pat).map(|e| Some(Ok(e))))
                .or_else(|| Self::take_deferred(s, src, pat.context, tag, len).map(|h| Some(Err(h))));
            got.or_else(|| deadline.is_some_and(|d| Instant::now() >= d).then_some(None))
        };
        // no polling of the mailbox for a large message: the progress thread may be reading it,
        // and polling would hold the core it needs (2 ranks on 2 cores, 1 MiB ping-pong with a
        // reader thread per connection: 120-175 us without polling, 225-265 with 50 us); a
        // receive that reads its source's connection itself still polls that
        let spin = if len < crate::incoming::HANDOFF_MIN {
            Spin::Mailbox
        } else if len >= crate::env::LARGE_WAIT_MIN {
            Spin::Large
        } else {
            Spin::Connection
        };
        let (mut s, outcome) = self.wait_for(s, pat, spin, Some(&bad), deadline, ready);
        s.posts.retain(|p| p.id != id);
        drop(s);
        match outcome? {
            None => Ok(None),
            Some(Ok(e)) => Ok(Some(Placed::Queued(e))),
            Some(Err(handoff)) => self.read_handoff(src, handoff, target).map(|()| Some(Placed::InPlace)),
        }
    }

    /// Reads the payload of a message from `src` handed over to a posted receive into
    /// `target`, then gives the connection back.
    fn read_handoff(&self, src: usize, handoff: Handoff, target: Target<'_>) -> Result<()> {
        let Handoff { mut stream, prefix, conn, mut lent } = handoff;
        let read = match &mut lent {
            Some(lent) => {
                crate::lend::receive(&mut *stream, self.large, lent, &prefix, &mut [target.body, target.tail])
            }
            None => fill(target, &prefix, &mut *stream),
        };
        if let Some(incoming) = self.incoming.get() {
            self.put_back(incoming, &conn, stream, read.is_ok());
        }
        read.map_err(|e| match self.exited(src) {
            Some(reason) => Error::PeerLost { rank: src, reason },
            None if e.kind() == io::ErrorKind::PermissionDenied => unreadable(src, e),
            None => Error::PeerLost { rank: src, reason: format!("its connection failed mid-message ({e})") },
        })
    }

    /// Posts a receive for each of `posts`' messages (`src`, `context`, `tag`, `len`), for
    /// [`Mailbox::complete_each`].
    fn post_each(&self, posts: &[(usize, u64, u32, u64)]) -> Posted<'_> {
        let mut s = self.lock();
        let mut ids = Vec::with_capacity(posts.len());
        for &(src, context, tag, len) in posts {
            let id = s.next_post;
            s.next_post += 1;
            s.posts.push(Post { id, src, context, tag, len, handed: None });
            ids.push(id);
        }
        Posted { mailbox: self, ids }
    }

    /// Receives the messages of `posts` (`src`, `context`, `tag`, `len`), each into its target
    /// of `targets` (in the order of the posts), in whatever order they come, with a receive
    /// posted for each meanwhile so that a large one is read straight into place; returns what
    /// each got, as [`Mailbox::recv_placed`]. Fails as [`Mailbox::recv_checked`] does; the
    /// messages not received by then stay for later receives.
    ///
    /// For a rank that sends to several ranks, then receives from them: the receives are posted
    /// here, once its sends are out, not before them. Posted earlier, a large message written
    /// to this rank would be handed to this thread while it is still writing its own to that
    /// sender (or to a rank that waits for that sender): each thread then waits for a receive
    /// that never begins (8 ranks sharing cores, 16 MiB blocks written to the sockets: every
    /// rank hung). Before this call, such a message is read into a vector; a lent one that may
    /// wait unread ([`crate::lend::rendezvous`]) waits, and is read in place here.
    pub fn complete_each(
        &self,
        posts: &[(usize, u64, u32, u64)],
        mut targets: Vec<Option<Target<'_>>>,
        bad: impl Fn(&Envelope) -> Option<Error>,
    ) -> Result<Vec<Placed>> {
        let pats: Vec<Pattern<'_>> = posts
            .iter()
            .map(|&(src, context, tag, _)| Pattern { src: Some(src), group: None, context, tag: Some(tag) })
            .collect();
        let mut posted = self.post_each(posts);
        let mut out: Vec<Option<Placed>> = (0..pats.len()).map(|_| None).collect();
        let mut s = self.lock();
        loop {
            let left: Vec<usize> = (0..pats.len()).filter(|&i| out[i].is_none()).collect();
            let Some(&first) = left.first() else { break };
            let ids = &posted.ids;
            // a connection handed over to one of the posts, or else an earlier message queued
            // for one
            let ready = |s: &mut State| {
                left.iter().find_map(|&i| {
                    let post = s.posts.iter_mut().find(|p| p.id == ids[i]);
                    let (handed, len) = post.map_or((None, 0), |p| (p.handed.take(), p.len));
                    let pat = &pats[i];
                    let deferred = |s: &mut State| {
                        let (src, tag) = (pat.src?, pat.tag?);
                        Self::take_deferred(s, src, pat.context, tag, len)
                    };
                    handed
                        .map(|h| (i, Err(h)))
                        .or_else(|| Self::take(s, pat).map(|e| (i, Ok(e))))
                        .or_else(|| deferred(s).map(|h| (i, Err(h))))
                })
            };
            // every source left, read by this thread while nobody else reads it, once few are
            let sources: Vec<usize> = if left.len() <= CLAIM_EACH_MAX {
                left.iter().filter_map(|&i| pats[i].src).collect()
            } else {
                Vec::new()
            };
            let (s2, outcome) =
                self.wait_claiming(s, (&pats[first], &sources), Spin::Connection, Some(&bad), None, ready);
            s = s2;
            let (i, got) = outcome?;
            s.posts.retain(|p| p.id != ids[i]);
            drop(s);
            out[i] = Some(match got {
                Ok(e) => Placed::Queued(e),
                Err(handoff) => {
                    let target =
                        targets[i].take().ok_or_else(|| Error::Malformed("a receive posted twice".into()))?;
                    self.read_handoff(pats[i].src.unwrap_or(self.rank), handoff, target)?;
                    Placed::InPlace
                }
            });
            s = self.lock();
        }
        drop(s);
        posted.ids.clear();
        Ok(out.into_iter().flatten().collect())
    }

    /// Takes a message matching `pat` if one has arrived.
    pub fn try_recv(&self, pat: &Pattern<'_>) -> Result<Option<Envelope>> {
        self.arm_parked();
        let mut s = self.lock();
        if let Some(e) = Self::take(&mut s, pat) {
            return Ok(Some(e));
        }
        let (s2, read) = self.materialize_for(s, pat);
        s = s2;
        if let Some(e) = read.then(|| Self::take(&mut s, pat)).flatten() {
            return Ok(Some(e));
        }
        self.hopeless(&s, pat).map_or(Ok(None), Err)
    }

    /// Source, tag and length of the first message matching `pat`, without taking it.
    pub fn probe(&self, pat: &Pattern<'_>) -> Result<Option<(usize, u32, usize)>> {
        self.arm_parked();
        let s = self.lock();
        if let Some(e) = s.queue.iter().find(|e| pat.matches(e)) {
            return Ok(Some((e.src, e.tag, e.data.len())));
        }
        if let Some(d) = s.deferred.iter().find(|d| pat.matches_message(d.src, d.context, d.tag)) {
            return Ok(Some((d.src, d.tag, usize::try_from(d.len).unwrap_or(usize::MAX))));
        }
        self.hopeless(&s, pat).map_or(Ok(None), Err)
    }
}

/// The connections a receive took to read itself, and what wakes it when anything else
/// changes.
struct Claim<'m> {
    incoming: &'m Incoming,
    conns: Vec<(Arc<Conn>, Box<dyn Stream>)>,
    waker: Arc<EventFd>,
}

impl Claim<'_> {
    /// Waits until a connection has something to read, then reads and delivers one frame from
    /// each that has; or until the mailbox changes, or `deadline` passes. Puts the connections
    /// back either way. Polls as `polling` says before sleeping.
    ///
    /// The waker is emptied only when it woke the wait: a count left from before is at worst
    /// one needless round of the caller's checks, never a missed change, since every change
    /// is written under the lock the caller made its checks under.
    ///
    /// Returns false if `poll` failed other than by a signal (more descriptors than the
    /// process's limit, or out of memory): the caller then waits for the progress thread,
    /// whose `epoll` needs no more, rather than claim again and spin.
    fn wait(self, mailbox: &Mailbox, polling: Polling, deadline: Option<Instant>) -> bool {
        let Claim { incoming, conns, waker } = self;
        let streams = conns.iter().map(|(_, stream)| stream.as_fd());
        let mut fds: Vec<PollFd<'_>> =
            streams.chain([waker.as_fd()]).map(|fd| PollFd::new(fd, PollFlags::POLLIN)).collect();
        let polled = poll_then_sleep(&mut fds, polling, deadline);
        // which are ready, the waker last
        let ready: Vec<bool> =
            fds.iter().map(|fd| polled.is_ok() && fd.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready.last() == Some(&true) {
            let _ = waker.read();
        }
        for ((conn, stream), readable) in conns.into_iter().zip(ready) {
            if readable {
                incoming.read_one(mailbox, &conn, stream, mailbox.parks);
            } else {
                mailbox.put_back(incoming, &conn, stream, true);
            }
        }
        polled.is_ok() || polled == Err(nix::errno::Errno::EINTR)
    }
}

/// Polls `fds` as `polling` says, then sleeps until one is ready or `deadline` passes; returns
/// as `poll` does.
pub(crate) fn poll_then_sleep(
    fds: &mut [PollFd<'_>],
    polling: Polling,
    deadline: Option<Instant>,
) -> nix::Result<nix::libc::c_int> {
    let start = Instant::now();
    while start.elapsed() < polling.time {
        match nix::poll::poll(fds, PollTimeout::ZERO) {
            Ok(0) if polling.yields => std::thread::yield_now(),
            Ok(0) => std::hint::spin_loop(),
            other => return other,
        }
    }
    // in whole milliseconds, rounded up (rounded down, the last one would be polled busily);
    // a deadline beyond poll's range (about 24 days) waits as long as poll can
    let timeout = deadline.map_or(PollTimeout::NONE, |d| {
        let left = d.saturating_duration_since(Instant::now()).as_micros().div_ceil(1000);
        PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
    });
    nix::poll::poll(fds, timeout)
}

/// Fills `target` with `prefix`, then with what follows on `stream`.
fn fill(target: Target<'_>, prefix: &[u8], stream: &mut dyn Stream) -> std::io::Result<()> {
    if prefix.len() > target.body.len() + target.tail.len() {
        return Err(std::io::Error::other("a payload longer than its receive"));
    }
    // both split points are within their slices: checked just above
    let in_body = prefix.len().min(target.body.len());
    let (body_done, body_rest) = target.body.split_at_mut(in_body);
    let (tail_done, tail_rest) = target.tail.split_at_mut(prefix.len() - in_body);
    body_done.copy_from_slice(&prefix[..in_body]);
    tail_done.copy_from_slice(&prefix[in_body..]);
    stream.read_exact(body_rest)?;
    stream.read_exact(tail_rest)
}

/// The error of a receive from `src` whose message could not be read out of `src`'s memory
/// for want of the permission (`cause`, which says why and what to do).
fn unreadable(src: usize, cause: io::Error) -> Error {
    Error::io(format!("receiving a large message from rank {src}, which is alive"), cause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn env(src: usize, tag: u32, byte: u8) -> Envelope {
        Envelope { src, context: 0, tag, data: vec![byte] }
    }

    #[test]
    fn matches_by_source_and_tag_in_order() {
        let m = Mailbox::new(0, 3, Duration::ZERO);
        m.push(env(1, 5, 1));
        m.push(env(2, 5, 2));
        m.push(env(1, 6, 3));
        m.push(env(1, 5, 4));
        let pat = |src, tag| Pattern { src, group: None, context: 0, tag };
        assert_eq!(m.recv(&pat(Some(1), Some(6))).expect("m").data, [3]);
        assert_eq!(m.recv(&pat(Some(1), Some(5))).expect("m").data, [1]);
        assert_eq!(m.recv(&pat(None, Some(5))).expect("m").data, [2]);
        assert_eq!(m.probe(&pat(None, None)).expect("p"), Some((1, 5, 1)));
        assert!(m.try_recv(&pat(Some(2), None)).expect("t").is_none());
        assert!(m.try_recv(&Pattern { src: None, group: None, context: 1, tag: None }).expect("t").is_none());
    }

    #[test]
    fn a_retired_context_drops_its_messages() {
        let m = Mailbox::new(0, 2, Duration::ZERO);
        let on = |context, byte| Envelope { src: 1, context, tag: 0, data: vec![byte] };
        m.push(on(7, 1));
        m.push(on(8, 2));
        m.retire(7);
        m.push(on(7, 3));
        let pat = |context| Pattern { src: None, group: None, context, tag: None };
        assert!(m.try_recv(&pat(7)).expect("t").is_none());
        assert_eq!(m.try_recv(&pat(8)).expect("t").map(|e| e.data), Some(vec![2]));
        // only the last RETIRED contexts are remembered
        for c in 100..100 + RETIRED as u64 {
            m.retire(c);
        }
        m.push(on(7, 4));
        assert_eq!(m.try_recv(&pat(7)).expect("t").map(|e| e.data), Some(vec![4]));
    }

    /// A receive asleep on the condition variable (no connection to read itself, no polling)
    /// is woken by a message that comes later: the sleeper counted itself before sleeping, so
    /// the push does not skip the wake-up. (A skipped one would leave the receive asleep for
    /// good: the test gives up after 30 s, a hang's bound, not a speed.)
    #[test]
    fn a_sleeping_receive_wakes_for_a_later_message() {
        let m = Arc::new(Mailbox::new(0, 3, Duration::ZERO));
        for round in 0..50u8 {
            let (tx, rx) = std::sync::mpsc::channel();
            let m2 = Arc::clone(&m);
            std::thread::spawn(move || {
                let pat = Pattern { src: None, group: None, context: 0, tag: Some(7) };
                let _ = tx.send(m2.recv(&pat).map(|e| e.data).ok());
            });
            // every other round the receive is blocked (and mostly asleep) before the message
            // comes
            while round % 2 == 0 && m.waiters.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            m.push(env(1 + usize::from(round % 2), 7, round));
            let got = rx.recv_timeout(Duration::from_secs(30));
            assert_eq!(got, Ok(Some(vec![round])), "round {round}: the receive was not woken");
        }
        assert_eq!(m.sleepers.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_dead_peer_fails_a_blocked_receive_after_its_messages() {
        let m = Arc::new(Mailbox::new(0, 2, Duration::from_micros(50)));
        m.handshake_started(1);
        m.handshake_ended(1, true);
        let m2 = Arc::clone(&m);
        let waiter = std::thread::spawn(move || {
            let pat = Pattern { src: Some(1), group: None, context: 0, tag: None };
            (m2.recv(&pat).map(|e| e.data), m2.recv(&pat).map(|e| e.data))
        });
        m.peer_exited(1, "exited with status 0".into());
        m.push(env(1, 0, 9));
        m.connection_closed(1);
        let (first, second) = waiter.join().expect("thread");
        assert_eq!(first.expect("first"), [9]);
        assert!(matches!(second, Err(Error::PeerLost { rank: 1, .. })), "{second:?}");
        let any = m.recv(&Pattern { src: None, group: None, context: 0, tag: None });
        assert!(matches!(any, Err(Error::AllPeersGone)), "{any:?}");
    }

    /// A mailbox with one open connection from rank 1, taken as its reader would take it.
    fn reading_from_one() -> (Arc<Mailbox>, std::os::unix::net::UnixStream, Arc<Conn>, Box<dyn Stream>) {
        use std::os::unix::net::UnixStream;
        let m = Arc::new(Mailbox::new(0, 2, Duration::ZERO));
        m.attach(Incoming::new(1 << 30).expect("epoll"));
        m.handshake_started(1);
        m.handshake_ended(1, true);
        let (writer, reader) = UnixStream::pair().expect("pair");
        let incoming = m.incoming().expect("attached");
        incoming.add_pair_end(1, reader).expect("add");
        let (conn, stream) = incoming.claim(1).expect("idle");
        (m, writer, conn, stream)
    }

    /// A large message's payload goes straight into a posted receive's buffer, prefix first,
    /// and the connection is put back for the next reader; without such a receive, or to one of
    /// another length or tag, it is refused.
    #[test]
    fn hand_over_reads_into_a_posted_receive() {
        use std::io::Write;
        let (m, mut writer, conn, reader) = reading_from_one();
        let lend = |prefix: Vec<u8>, stream: Box<dyn Stream>| Handoff {
            stream,
            prefix,
            conn: Arc::clone(&conn),
            lent: None,
        };

        // nobody waits: the handoff comes back
        let refused = m.hand_over(1, 0, 5, 10, lend(Vec::new(), reader)).expect_err("no receive");
        let reader = refused.stream;

        let m2 = Arc::clone(&m);
        let waiter = std::thread::spawn(move || {
            let (mut body, mut tail) = ([0u8; 7], [0u8; 3]);
            let pat = Pattern { src: Some(1), group: None, context: 0, tag: Some(5) };
            let placed = m2.recv_placed(&pat, Target { body: &mut body, tail: &mut tail }, |_| None);
            (placed.map(|p| matches!(p, Placed::InPlace)), body, tail)
        });
        // the receive posts itself; wrong lengths and tags are refused meanwhile
        let mut reader = reader;
        loop {
            reader = match m.hand_over(1, 0, 5, 10, lend(b"abcd".to_vec(), reader)) {
                Ok(()) => break,
                Err(h) => h.stream,
            };
            reader = m.hand_over(1, 0, 5, 11, lend(Vec::new(), reader)).expect_err("length").stream;
            reader = m.hand_over(1, 0, 6, 10, lend(Vec::new(), reader)).expect_err("tag").stream;
            std::thread::yield_now();
        }
        writer.write_all(b"efghij").expect("write");
        let (placed, body, tail) = waiter.join().expect("waiter");
        assert!(placed.expect("received"), "not in place");
        assert_eq!((&body, &tail), (b"abcdefg", b"hij"));
        assert!(m.incoming().expect("attached").claim(1).is_some(), "the connection was not put back");
    }

    /// A connection that ends in the middle of a payload fails the receive reading it (with
    /// the peer named), and is closed rather than put back.
    #[test]
    fn a_connection_ending_mid_payload_fails_the_posted_receive() {
        use std::io::Write;
        let (m, mut writer, conn, mut reader) = reading_from_one();
        let m2 = Arc::clone(&m);
        let waiter = std::thread::spawn(move || {
            let mut body = [0u8; 100];
            let pat = Pattern { src: Some(1), group: None, context: 7, tag: Some(2) };
            m2.recv_placed(&pat, Target { body: &mut body, tail: &mut [] }, |_| None)
        });
        loop {
            let handoff = Handoff { stream: reader, prefix: Vec::new(), conn: Arc::clone(&conn), lent: None };
            reader = match m.hand_over(1, 7, 2, 100, handoff) {
                Ok(()) => break,
                Err(h) => h.stream,
            };
            std::thread::yield_now();
        }
        writer.write_all(&[1; 40]).expect("write");
        drop(writer);
        let got = waiter.join().expect("waiter");
        assert!(matches!(got, Err(Error::PeerLost { rank: 1, .. })), "{got:?}");
        assert!(m.incoming().expect("attached").claim(1).is_none(), "a failed connection was put back");
    }

    /// Rank 0's mailbox in a world of 3, with no progress thread, and the writing ends of
    /// its connections from ranks 1 and 2.
    fn rank_0_of_3() -> (Arc<Mailbox>, Vec<std::os::unix::net::UnixStream>) {
        let m = Arc::new(Mailbox::new(0, 3, Duration::ZERO));
        m.attach(Incoming::new(1 << 30).expect("epoll"));
        let mut writers = Vec::new();
        for src in 1..3 {
            m.handshake_started(src);
            m.handshake_ended(src, true);
            let (writer, reader) = std::os::unix::net::UnixStream::pair().expect("pair");
            m.incoming().expect("attached").add_pair_end(src, reader).expect("add");
            writers.push(writer);
        }
        (m, writers)
    }

    /// Receives posted together take their messages in the order they come: a large one
    /// straight into place (its connection handed over), one queued before the posts as it
    /// was; a large one written before the receives begin is read into a vector, so that its
    /// writer does not wait for them.
    #[test]
    fn posted_receives_take_messages_as_they_come() {
        use std::io::Write;
        let (m, mut writers) = rank_0_of_3();
        crate::incoming::start(Arc::clone(&m)).expect("progress thread");
        let frame = |tag: u32, payload: &[u8]| {
            let mut out = Vec::new();
            crate::wire::write_parts(&mut out, crate::wire::KIND_DATA, 0, tag, &[payload]).expect("frame");
            out
        };
        let pat = |src: usize, tag: u32| Pattern { src: Some(src), group: None, context: 0, tag: Some(tag) };
        let len = crate::incoming::HANDOFF_MIN as usize + 1000;
        let big: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        // rank 2's short message comes before anything is posted
        writers[1].write_all(&frame(7, b"abc")).expect("write");
        while m.probe(&pat(2, 7)).expect("probe").is_none() {
            std::thread::yield_now();
        }
        let posts = [(1, 0, 7, len as u64), (2, 0, 7, 3)];
        let mut writer = writers.remove(0);
        let sent = big.clone();
        let m2 = Arc::clone(&m);
        let late = std::thread::spawn(move || {
            // once the receive is posted (or after ten seconds)
            let start = std::time::Instant::now();
            while !m2.lock().posts.iter().any(|p| p.src == 1) && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            writer.write_all(&frame(7, &sent)).expect("write");
            writer
        });
        let (mut into, mut short) = (vec![0u8; len], [0u8; 3]);
        let targets = vec![
            Some(Target { body: &mut into, tail: &mut [] }),
            Some(Target { body: &mut short, tail: &mut [] }),
        ];
        let placed = m.complete_each(&posts, targets, |_| None).expect("received");
        assert!(matches!(placed[0], Placed::InPlace), "the large message was not read into place");
        assert!(matches!(&placed[1], Placed::Queued(e) if e.data == b"abc"), "{:?}", placed[1]);
        assert!(into == big, "the large message arrived damaged");

        // a message far longer than the socket holds, written before its receive is posted:
        // the write ends without it (its sender may be one that waits for this rank's own
        // writes to end before this rank receives), the message read into a vector (but for
        // what the socket still held when the receive came, which that reads into place)
        let mut writer = late.join().expect("writer");
        let huge: Vec<u8> = (0..8 << 20).map(|i| (i % 253) as u8).collect();
        let (done, written) = std::sync::mpsc::channel();
        let sent = huge.clone();
        std::thread::spawn(move || done.send(writer.write_all(&frame(8, &sent)).is_ok()));
        let ended = written.recv_timeout(Duration::from_secs(60));
        assert_eq!(ended, Ok(true), "the write waited for a receive that had not begun");
        let mut target = vec![0u8; huge.len()];
        let targets = vec![Some(Target { body: &mut target, tail: &mut [] })];
        let placed = m.complete_each(&[(1, 0, 8, huge.len() as u64)], targets, |_| None);
        let whole = match placed.expect("received").remove(0) {
            Placed::Queued(e) => e.data == huge,
            Placed::InPlace => target == huge,
        };
        assert!(whole, "the message arrived damaged");
    }

    /// Receives posted together read every source's connection themselves: with no progress
    /// thread, the message of the source posted second comes in while the first's has not
    /// been sent yet.
    #[test]
    fn posted_receives_read_every_source_themselves() {
        use std::io::Write;
        let (m, mut writers) = rank_0_of_3();
        let frame = |tag: u32, payload: &[u8]| {
            let mut out = Vec::new();
            crate::wire::write_parts(&mut out, crate::wire::KIND_DATA, 0, tag, &[payload]).expect("frame");
            out
        };
        let m2 = Arc::clone(&m);
        let sender = std::thread::spawn(move || {
            // rank 1 sends once rank 2's message is in (queued, or taken by its receive), or
            // after ten seconds; rank 2 once the receives are posted
            let start = std::time::Instant::now();
            let until = |done: &dyn Fn(&State) -> bool| loop {
                if done(&m2.lock()) {
                    break true;
                }
                if start.elapsed() > Duration::from_secs(10) {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            let posted = until(&|s| s.posts.iter().any(|p| p.src == 2));
            writers[1].write_all(&frame(5, b"two")).expect("write");
            let seen = posted
                && until(&|s| s.queue.iter().any(|e| e.src == 2) || !s.posts.iter().any(|p| p.src == 2));
            writers[0].write_all(&frame(5, b"on")).expect("write");
            seen
        });
        let (mut one, mut two) = ([0u8; 2], [0u8; 3]);
        let targets = vec![
            Some(Target { body: &mut one, tail: &mut [] }),
            Some(Target { body: &mut two, tail: &mut [] }),
        ];
        let placed = m.complete_each(&[(1, 0, 5, 2), (2, 0, 5, 3)], targets, |_| None).expect("received");
        assert!(sender.join().expect("sender"), "rank 2's message waited for rank 1's");
        assert!(matches!(&placed[0], Placed::Queued(e) if e.data == b"on"), "{:?}", placed[0]);
        assert!(matches!(&placed[1], Placed::Queued(e) if e.data == b"two"), "{:?}", placed[1]);
    }

    /// A receive waiting for one source reads that source's connection itself, and still sees
    /// a message from another source that objects to its wait.
    #[test]
    fn a_receive_reads_its_source_itself_and_hears_the_others() {
        use std::io::Write;
        let m = Arc::new(Mailbox::new(0, 3, Duration::ZERO));
        m.attach(Incoming::new(1 << 30).expect("epoll"));
        for src in [1, 2] {
            m.handshake_started(src);
            m.handshake_ended(src, true);
        }
        let (mut writer, reader) = std::os::unix::net::UnixStream::pair().expect("pair");
        m.incoming().expect("attached").add_pair_end(1, reader).expect("add");
        // no progress thread runs: only the receive itself can read the connection
        let m2 = Arc::clone(&m);
        let first = std::thread::spawn(move || {
            m2.recv(&Pattern { src: Some(1), group: None, context: 3, tag: Some(4) }).map(|e| e.data)
        });
        let frame = |tag: u32, payload: &[u8]| {
            let mut out = Vec::new();
            crate::wire::write_parts(&mut out, crate::wire::KIND_DATA, 3, tag, &[payload]).expect("frame");
            out
        };
        // another tag first: queued on the way to the one wanted
        writer.write_all(&frame(9, b"other")).expect("write");
        writer.write_all(&frame(4, b"mine")).expect("write");
        assert_eq!(first.join().expect("thread").expect("received"), b"mine");
        assert_eq!(
            m.try_recv(&Pattern { src: Some(1), group: None, context: 3, tag: Some(9) })
                .expect("t")
                .map(|e| e.data),
            Some(b"other".to_vec())
        );

        // rank 2's message, pushed while the receive waits on rank 1's socket, wakes it
        let m2 = Arc::clone(&m);
        let second = std::thread::spawn(move || {
            let pat = Pattern { src: Some(1), group: None, context: 3, tag: Some(4) };
            m2.recv_checked(&pat, |e| (e.src == 2).then_some(Error::AllPeersGone))
        });
        // once its waker is in the state, the receive has made its checks and waits on the
        // socket: only the waker can tell it of rank 2's message
        while m.lock().wakers.is_empty() {
            std::thread::yield_now();
        }
        m.push(Envelope { src: 2, context: 3, tag: 4, data: vec![1] });
        let got = second.join().expect("thread");
        assert!(matches!(got, Err(Error::AllPeersGone)), "{got:?}");
        assert!(m.incoming().expect("attached").claim(1).is_some(), "the connection was not put back");
    }

    /// A message wakes the receives reading a connection themselves that it concerns (from
    /// their source, or on their context, where it may object to their wait), not the others;
    /// any other change wakes them all.
    #[test]
    fn a_message_wakes_only_the_receives_it_concerns() {
        let m = Mailbox::new(0, 4, Duration::ZERO);
        let fd = || Arc::new(EventFd::from_flags(EfdFlags::EFD_NONBLOCK).expect("eventfd"));
        // waiting for rank 1 on context 2, and for rank 2 on context 4
        let (a, b) = (fd(), fd());
        {
            let mut s = m.lock();
            s.wakers.push(Reader { waker: Arc::clone(&a), src: 1, context: 2 });
            s.wakers.push(Reader { waker: Arc::clone(&b), src: 2, context: 4 });
        }
        // a nonblocking counter reads as an error when nothing woke it
        let woken = |w: &EventFd| w.read().is_ok();
        m.push(Envelope { src: 3, context: 6, tag: 0, data: vec![] });
        assert!(!woken(&a) && !woken(&b), "a message of another source and context woke a receive");
        m.push(Envelope { src: 1, context: 6, tag: 0, data: vec![] });
        assert!(woken(&a) && !woken(&b), "a message from rank 1 must wake only its receive");
        m.push(Envelope { src: 3, context: 4, tag: 0, data: vec![] });
        assert!(!woken(&a) && woken(&b), "a message on context 4 must wake only its receive");
        m.peer_exited(3, "killed".into());
        assert!(woken(&a) && woken(&b), "a peer's end must wake every receive");
    }

    /// A receive with a deadline, waiting on its source's socket or on the queue, gives up
    /// then with its target untouched; the message that comes afterwards waits for the next
    /// receive, whole.
    #[test]
    fn a_receive_past_its_deadline_gives_up_and_leaves_the_message() {
        use std::io::Write;
        let (m, mut writer, conn, reader) = reading_from_one();
        let pat = Pattern { src: Some(1), group: None, context: 0, tag: Some(5) };
        let mut body = [0u8; 4];
        let mut held = Some(reader);
        // with the connection held elsewhere (the receive waits on the queue), then idle (the
        // receive reads it itself)
        for _ in 0..2 {
            // on a thread, so that a receive that ignores its deadline fails the test (after
            // 10 s) rather than hang it
            let deadline = Instant::now() + Duration::from_millis(20);
            let (done, outcome) = std::sync::mpsc::channel();
            let m2 = Arc::clone(&m);
            std::thread::spawn(move || {
                let mut body = [0u8; 4];
                let target = Target { body: &mut body, tail: &mut [] };
                let late = m2.recv_placed_by(&pat, target, |_| None, Some(deadline)).map(|p| p.is_none());
                let _ = done.send((late, body, Instant::now()));
            });
            let (late, untouched, ended) =
                outcome.recv_timeout(Duration::from_secs(10)).expect("gave up in time");
            assert!(late.expect("no error"), "a receive with nothing to receive did not give up");
            assert!(ended >= deadline, "gave up early");
            assert_eq!(untouched, [0; 4]);
            if let Some(reader) = held.take() {
                m.incoming().expect("attached").release(&m, &conn, reader, true);
            }
        }
        let mut frame = Vec::new();
        crate::wire::write_parts(&mut frame, crate::wire::KIND_DATA, 0, 5, &[b"late"]).expect("frame");
        writer.write_all(&frame).expect("write");
        let target = Target { body: &mut body, tail: &mut [] };
        let got = m.recv_placed_by(&pat, target, |_| None, None).expect("received");
        match got {
            Some(Placed::Queued(e)) => assert_eq!(e.data, b"late"),
            Some(Placed::InPlace) => assert_eq!(&body, b"late"),
            None => panic!("a receive without a deadline gave up"),
        }
    }
}
