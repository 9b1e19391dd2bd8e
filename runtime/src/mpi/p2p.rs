//! Plain-old-data messages (`send_slice`/`recv_into`) as MPI messages, zero-copy when the
//! receiver is waiting, without ever making a sender wait for its receiver's program.
//!
//! A send is one `MPI_Send` on a communicator of its own. A large one returns only once the
//! receiving process matches it, so something there must match it whatever its program does:
//! the receiver thread drains every message that no `recv_into` of that process is waiting
//! for into the mailbox (one copy); a message a `recv_into` waits for is left to it, which
//! receives it in place (no copy). Both paths take messages of one sender and tag in order,
//! under one lock, so a message drained into the mailbox is always older than one still in MPI.

use super::handle::Comm;
use crate::error::{Error, Result};
use crate::mailbox::{Envelope, Mailbox, Pattern};
use mpi::topology::Process;
use mpi::traits::*;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

/// Largest tag of plain-old-data messages sent as MPI messages; every MPI library allows it
/// (`MPI_TAG_UB` is at least 32767). Larger tags go through the engine.
const MAX_NATIVE_TAG: u32 = 32_767;

/// Smallest buffer `recv_into` posts an MPI receive for at once, whether its message has arrived
/// or not: MPI then moves it straight into place (smaller ones are probed, so a length mismatch
/// is an error rather than MPI's truncation).
const POSTED: usize = 4096;

/// Whether a plain-old-data message with `tag` is sent as an MPI message (else through the
/// engine).
pub(crate) fn native_tag(tag: u32) -> bool {
    tag <= MAX_NATIVE_TAG
}

/// Every live communicator's [`P2p`], for the receiver thread to drain.
pub(crate) type Registry = Arc<Mutex<Vec<Weak<P2p>>>>;

/// One communicator's plain-old-data messages.
pub(crate) struct P2p {
    comm: Comm,
    /// World rank of each member, by rank in the communicator.
    group: Arc<[usize]>,
    /// The communicator's point-to-point context in the mailbox.
    context: u64,
    /// `(source, tag)` that `recv_into` calls wait for, with how many wait.
    waiting: Mutex<Vec<((usize, u32), usize)>>,
    /// Held while a message is taken out of MPI, by the receiver thread or by `recv_into`.
    order: Mutex<()>,
    /// How long `recv_into` polls before it starts to nap.
    spin: Duration,
}

impl P2p {
    /// The messages of a communicator on `comm`, registered with the receiver thread; a
    /// `recv_into` polls for `spin` before it naps.
    pub fn new(
        comm: Comm,
        group: Arc<[usize]>,
        context: u64,
        spin: Duration,
        registry: &Registry,
    ) -> Arc<P2p> {
        let p2p =
            Arc::new(P2p { comm, group, context, waiting: Mutex::default(), order: Mutex::new(()), spin });
        let mut live = registry.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&p2p));
        p2p
    }

    /// Sends bytes to rank `dest` (not this one) with `tag` (see [`native_tag`]).
    pub fn send(&self, dest: usize, tag: u32, data: &[u8]) {
        self.comm.get().process_at_rank(dest as i32).send_with_tag(data, tag as i32);
    }

    /// Receives the next message from `src` with `tag` into `buf`, from MPI or, if the receiver
    /// thread drained it, from the mailbox (`pattern`). Polls without pause for the spin time
    /// (as `MPI_Recv` would, but bounded), then with naps growing to a millisecond, so that a
    /// long wait does not burn a core.
    pub fn recv_into(
        &self,
        mailbox: &Mailbox,
        pattern: &Pattern<'_>,
        src: usize,
        tag: u32,
        buf: &mut [u8],
    ) -> Result<usize> {
        let _waiting = Waiting::new(self, (src, tag));
        let mut patience = Patience::new(self.spin);
        let comm = self.comm.get();
        let peer = comm.process_at_rank(src as i32);
        // Once this receive is registered (above) and has looked in the mailbox under the order
        // lock, the receiver thread leaves its source and tag alone: nothing more can land in
        // the mailbox for it, so later polls ask MPI only.
        let mut look_in_mailbox = true;
        loop {
            {
                let order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
                if std::mem::take(&mut look_in_mailbox)
                    && let Some(e) = mailbox.try_recv(pattern)?
                {
                    return fill(buf, &e.data, src, tag);
                }
                if buf.len() >= POSTED {
                    // nothing older is left anywhere and the receiver thread leaves this source
                    // and tag alone while we wait: the next message can only land here (MPI
                    // matches one that has arrived as well; a probe first cost 2-4% at 64 KiB)
                    return self.posted(order, src, tag, buf);
                }
                if let Some(got) = try_recv_into(&peer, src, tag, buf) {
                    return got;
                }
            }
            if let Some(nap) = patience.next()
                && let Some(e) = mailbox.recv_timeout(pattern, nap)?
            {
                return fill(buf, &e.data, src, tag);
            }
        }
    }

    /// Receives the next message from `src` with `tag` into `buf` with a posted receive, so that
    /// MPI can move a large message straight into place; polls as
    /// [`P2p::recv_into`] does. The `order` lock is held until the receive is posted (from then
    /// on MPI matches the message to it, never to a probe). A longer message is MPI's
    /// truncation error, which ends the job; a shorter one is reported.
    fn posted(&self, order: MutexGuard<'_, ()>, src: usize, tag: u32, buf: &mut [u8]) -> Result<usize> {
        let want = buf.len();
        let peer = self.comm.get().process_at_rank(src as i32);
        let len = mpi::request::scope(|scope| {
            let mut request = peer.immediate_receive_into_with_tag(scope, buf, tag as i32);
            drop(order);
            let mut patience = Patience::new(self.spin);
            loop {
                match request.test() {
                    Ok(status) => return status.count(u8::equivalent_datatype()) as usize,
                    Err(pending) => request = pending,
                }
                if let Some(nap) = patience.next() {
                    std::thread::sleep(nap);
                }
            }
        });
        if len == want { Ok(len) } else { Err(mismatch(src, tag, len, want)) }
    }

    /// Moves the first pending message into the mailbox unless a `recv_into` waits for it;
    /// whether there was one to move.
    pub fn drain_one(&self, mailbox: &Mailbox) -> bool {
        let _order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(status) = self.comm.get().any_process().immediate_probe() else { return false };
        let (src, tag) = (status.source_rank(), status.tag());
        let key = (src as usize, tag as u32);
        if self.waiting.lock().unwrap_or_else(PoisonError::into_inner).iter().any(|(k, _)| *k == key) {
            return false;
        }
        let peer = self.comm.get().process_at_rank(src);
        let Some((message, status)) = peer.immediate_matched_probe_with_tag(tag) else { return false };
        let (data, _) = (message, status).matched_receive_vec::<u8>();
        let world = self.group.get(key.0).copied().unwrap_or(usize::MAX);
        mailbox.push(Envelope { src: world, context: self.context, tag: key.1, data });
        true
    }
}

/// Receives the next message from `src` (`peer`) with `tag` into `buf` if MPI has one; a
/// message of another length is consumed and reported.
fn try_recv_into(peer: &Process<'_>, src: usize, tag: u32, buf: &mut [u8]) -> Option<Result<usize>> {
    let (message, status) = peer.immediate_matched_probe_with_tag(tag as i32)?;
    let len = status.count(u8::equivalent_datatype()) as usize;
    if len == buf.len() {
        message.matched_receive_into(buf);
        return Some(Ok(len));
    }
    let _ = (message, status).matched_receive_vec::<u8>();
    Some(Err(mismatch(src, tag, len, buf.len())))
}

/// How a receive polls: without pause for its spin time, then with naps 10 us longer each time,
/// up to a millisecond.
struct Patience {
    /// When the clock was first read (at the first [`CLOCK_EVERY`] polls, not before: most
    /// receives are done by then).
    start: Option<Instant>,
    spin: Duration,
    naps: u64,
    /// Polls since the clock was last read: reading it costs as much as a poll, so it is read
    /// every [`CLOCK_EVERY`] polls only.
    polls: u32,
}

/// Polls between two readings of the clock while spinning.
const CLOCK_EVERY: u32 = 32;

impl Patience {
    fn new(spin: Duration) -> Patience {
        Patience { start: None, spin, naps: 0, polls: 0 }
    }

    /// `None` while still spinning (poll again at once), else how long to nap first.
    fn next(&mut self) -> Option<Duration> {
        self.polls += 1;
        let mut spinning = || self.start.get_or_insert_with(Instant::now).elapsed() < self.spin;
        if self.naps == 0 && (self.polls % CLOCK_EVERY != 0 || spinning()) {
            std::hint::spin_loop();
            return None;
        }
        self.naps += 1;
        Some(Duration::from_micros((self.naps * 10).min(1000)))
    }
}

/// Marks `(source, tag)` as waited for while it lives.
struct Waiting<'a> {
    p2p: &'a P2p,
    key: (usize, u32),
}

impl<'a> Waiting<'a> {
    fn new(p2p: &'a P2p, key: (usize, u32)) -> Waiting<'a> {
        let mut waiting = p2p.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        match waiting.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => waiting.push((key, 1)),
        }
        drop(waiting);
        Waiting { p2p, key }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waiting = self.p2p.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = waiting.iter().position(|(k, _)| *k == self.key) {
            waiting[i].1 -= 1;
            if waiting[i].1 == 0 {
                waiting.swap_remove(i);
            }
        }
    }
}

fn mismatch(src: usize, tag: u32, len: usize, want: usize) -> Error {
    Error::Malformed(format!("message from rank {src} (tag {tag}) has {len} bytes, the buffer {want}"))
}

fn fill(buf: &mut [u8], data: &[u8], src: usize, tag: u32) -> Result<usize> {
    if data.len() != buf.len() {
        return Err(mismatch(src, tag, data.len(), buf.len()));
    }
    buf.copy_from_slice(data);
    Ok(data.len())
}
