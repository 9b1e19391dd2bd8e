//! The engine's messages over MPI point-to-point: what the built-in backend sends over sockets
//! goes here as MPI messages on a communicator of its own, and a receiver thread delivers them
//! into the same [`Mailbox`], so typed messages, typed collectives and the dynamic map work
//! unchanged on MPI.

use super::handle::Comm;
use super::p2p::Registry;
use crate::error::{Error, Result};
use crate::log::debug;
use crate::mailbox::{Envelope, Mailbox};
use crate::wire::{HEADER_LEN, Header, KIND_DATA};
use mpi::traits::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// The one MPI tag of the engine's messages, on the engine's own communicator.
const TAG: i32 = 1;

/// Polls of the receiver that only yield before it starts to sleep.
const YIELDING_POLLS: u32 = 64;

/// Longest sleep between polls of an idle receiver while a receive waits in the mailbox.
const MAX_NAP: Duration = Duration::from_millis(1);

/// Longest sleep between polls of an idle receiver while no receive waits: the program is busy
/// elsewhere, often inside MPI itself, where every poll of this thread competes with its calls
/// (polling at most every millisecond there cost 5 to 10% at 64 KiB to 1 MiB, against 50 ms). A
/// receive that starts to wait wakes the thread at once.
const DEEP_NAP: Duration = Duration::from_millis(20);

/// Sends engine frames over MPI and delivers the received ones into the mailbox.
pub(crate) struct Transport {
    comm: Arc<Comm>,
    /// The communicators whose plain-old-data messages the receiver drains.
    registry: Registry,
    stop: Arc<AtomicBool>,
    receiver: Option<JoinHandle<()>>,
}

impl Transport {
    /// Starts the receiver thread on `comm`, which no one else uses.
    pub fn start(comm: Comm, mailbox: Arc<Mailbox>) -> Result<Transport> {
        let comm = Arc::new(comm);
        let stop = Arc::new(AtomicBool::new(false));
        let registry = Registry::default();
        let receiver = {
            let (comm, stop, registry) = (Arc::clone(&comm), Arc::clone(&stop), Arc::clone(&registry));
            let mailbox = Arc::clone(&mailbox);
            std::thread::Builder::new()
                .name("prun-mpi-recv".into())
                .spawn(move || receive(&comm, &registry, &mailbox, &stop))
                .map_err(|e| Error::io("starting the MPI receiver thread", e))?
        };
        let thread = receiver.thread().clone();
        mailbox.set_waker(Box::new(move || thread.unpark()));
        Ok(Transport { comm, registry, stop, receiver: Some(receiver) })
    }

    /// Where communicators register their plain-old-data messages for the receiver to drain.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sends a frame (a [`Header`] with room for it at the front, then the payload) to `dest`.
    /// Returns once MPI has the frame; a large one waits until the peer's receiver takes it,
    /// which it does whatever its program is doing.
    pub fn send(&self, dest: usize, context: u64, tag: u32, frame: &mut [u8]) {
        let len = (frame.len() - HEADER_LEN) as u64;
        frame[..HEADER_LEN].copy_from_slice(&Header { kind: KIND_DATA, tag, context, len }.encode());
        self.comm.get().process_at_rank(dest as i32).send_with_tag(frame, TAG);
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(receiver) = self.receiver.take() {
            receiver.thread().unpark();
            let _ = receiver.join();
        }
    }
}

/// Takes every message that arrives on `comm` into the mailbox until `stop`, and every
/// registered communicator's plain-old-data message that no receive waits for. MPI cannot
/// block without spinning, so an idle receiver polls: yielding at first, then sleeping ever
/// longer, up to [`MAX_NAP`] while a receive waits in the mailbox and [`DEEP_NAP`] otherwise, so
/// that an idle rank costs next to nothing.
fn receive(comm: &Comm, registry: &Registry, mailbox: &Mailbox, stop: &AtomicBool) {
    let mut idle = 0u32;
    let mut live = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let mut took = false;
        if let Some((message, status)) = comm.get().any_process().immediate_matched_probe_with_tag(TAG) {
            let src = status.source_rank() as usize;
            let (data, _) = (message, status).matched_receive_vec::<u8>();
            deliver(mailbox, src, data);
            took = true;
        }
        // the communicators alive now, held only while they are drained
        live.extend(registry.lock().unwrap_or_else(PoisonError::into_inner).iter().filter_map(Weak::upgrade));
        for p2p in live.drain(..) {
            took |= p2p.drain_one(mailbox);
        }
        match took {
            true => idle = 0,
            false => {
                idle = idle.saturating_add(1);
                if idle <= YIELDING_POLLS {
                    std::thread::yield_now();
                } else {
                    let nap = Duration::from_micros(u64::from(idle - YIELDING_POLLS) * 10);
                    let longest = if mailbox.has_waiters() { MAX_NAP } else { DEEP_NAP };
                    // a receive that starts to wait unparks this thread
                    std::thread::park_timeout(nap.min(longest));
                }
            }
        }
    }
}

fn deliver(mailbox: &Mailbox, src: usize, mut data: Vec<u8>) {
    let header = data.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).map(Header::decode);
    match header {
        Some(Ok(h)) if h.kind == KIND_DATA && h.len == (data.len() - HEADER_LEN) as u64 => {
            data.drain(..HEADER_LEN);
            mailbox.push(Envelope { src, context: h.context, tag: h.tag, data });
        }
        _ => debug!("dropped a malformed {}-byte MPI message from rank {src}", data.len()),
    }
}
