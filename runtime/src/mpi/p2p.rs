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
use mpi::traits::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

/// Largest tag of plain-old-data messages sent as MPI messages; every MPI library allows it
/// (`MPI_TAG_UB` is at least 32767). Larger tags go through the engine.
const MAX_NATIVE_TAG: u32 = 32_767;

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
    waiting: Mutex<HashMap<(usize, u32), usize>>,
    /// Held while a message is taken out of MPI, by the receiver thread or by `recv_into`.
    order: Mutex<()>,
}

impl P2p {
    /// The messages of a communicator on `comm`, registered with the receiver thread.
    pub fn new(comm: Comm, group: Arc<[usize]>, context: u64, registry: &Registry) -> Arc<P2p> {
        let p2p = Arc::new(P2p { comm, group, context, waiting: Mutex::default(), order: Mutex::new(()) });
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
    /// thread drained it, from the mailbox (`pattern`). Polls at first at once, then with naps
    /// growing to a millisecond, so that a long wait does not burn a core as `MPI_Recv` would.
    pub fn recv_into(
        &self,
        mailbox: &Mailbox,
        pattern: &Pattern<'_>,
        src: usize,
        tag: u32,
        buf: &mut [u8],
    ) -> Result<usize> {
        let _waiting = Waiting::new(self, (src, tag));
        let mut polls = 0u32;
        loop {
            {
                let _order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(e) = mailbox.try_recv(pattern)? {
                    return fill(buf, &e.data, src, tag);
                }
                if let Some(got) = self.try_recv_into(src, tag, buf) {
                    return got;
                }
            }
            let nap = Duration::from_micros(u64::from(polls.saturating_sub(200)).min(1000));
            if let Some(e) = mailbox.recv_timeout(pattern, nap)? {
                return fill(buf, &e.data, src, tag);
            }
            polls = polls.saturating_add(1);
        }
    }

    /// Receives the next message from `src` with `tag` into `buf` if MPI has one; a message of
    /// another length is consumed and reported.
    fn try_recv_into(&self, src: usize, tag: u32, buf: &mut [u8]) -> Option<Result<usize>> {
        let peer = self.comm.get().process_at_rank(src as i32);
        let (message, status) = peer.immediate_matched_probe_with_tag(tag as i32)?;
        let len = status.count(u8::equivalent_datatype()) as usize;
        if len == buf.len() {
            message.matched_receive_into(buf);
            return Some(Ok(len));
        }
        let _ = (message, status).matched_receive_vec::<u8>();
        Some(Err(mismatch(src, tag, len, buf.len())))
    }

    /// Moves the first pending message into the mailbox unless a `recv_into` waits for it;
    /// whether there was one to move.
    pub fn drain_one(&self, mailbox: &Mailbox) -> bool {
        let _order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(status) = self.comm.get().any_process().immediate_probe() else { return false };
        let (src, tag) = (status.source_rank(), status.tag());
        let key = (src as usize, tag as u32);
        if self.waiting.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&key) {
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

/// Marks `(source, tag)` as waited for while it lives.
struct Waiting<'a> {
    p2p: &'a P2p,
    key: (usize, u32),
}

impl<'a> Waiting<'a> {
    fn new(p2p: &'a P2p, key: (usize, u32)) -> Waiting<'a> {
        *p2p.waiting.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_insert(0) += 1;
        Waiting { p2p, key }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waiting = self.p2p.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = waiting.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                waiting.remove(&self.key);
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
