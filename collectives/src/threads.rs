//! An in-process [`PointToPoint`] with one thread per rank, for testing algorithms.

use crate::p2p::PointToPoint;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// A message in flight: source, tag, payload.
type Envelope = (usize, u32, Vec<u8>);

/// One rank's incoming messages.
#[derive(Default)]
struct Inbox {
    queue: Mutex<VecDeque<Envelope>>,
    arrived: Condvar,
}

/// State shared by the ranks of one group.
struct Shared {
    /// Incoming messages, by rank.
    inboxes: Vec<Inbox>,
    /// Whether each rank's [`ThreadRank`] has been dropped (its thread returned or panicked).
    gone: Vec<AtomicBool>,
}

/// A group of ranks living in one process; each rank is a thread.
pub struct ThreadGroup;

impl ThreadGroup {
    /// Runs `body` on `size` threads, each with its own [`ThreadRank`], and waits for all.
    ///
    /// A panic on any thread is propagated once all threads have ended. When a rank's
    /// [`ThreadRank`] is dropped (its body returned or panicked), receives from it that no
    /// queued message satisfies fail with [`ThreadError::Gone`] instead of blocking forever.
    pub fn run<F>(size: usize, body: F)
    where
        F: Fn(ThreadRank) + Sync,
    {
        let shared = Arc::new(Shared {
            inboxes: (0..size).map(|_| Inbox::default()).collect(),
            gone: (0..size).map(|_| AtomicBool::new(false)).collect(),
        });
        std::thread::scope(|s| {
            for rank in 0..size {
                let p = ThreadRank { rank, shared: Arc::clone(&shared) };
                let body = &body;
                s.spawn(move || body(p));
            }
        });
    }
}

/// One rank of a [`ThreadGroup`].
pub struct ThreadRank {
    rank: usize,
    shared: Arc<Shared>,
}

/// Errors of the thread transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadError {
    /// A rank number out of range.
    NoSuchRank(usize),
    /// A malformed message from a peer, or arguments violating a collective's documented shape.
    Malformed(String),
    /// A receive from this rank cannot complete: its thread has ended without sending it.
    Gone(usize),
}

impl fmt::Display for ThreadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThreadError::NoSuchRank(rank) => write!(f, "no rank {rank} in this group"),
            ThreadError::Malformed(what) => write!(f, "malformed message: {what}"),
            ThreadError::Gone(rank) => write!(f, "rank {rank} has ended"),
        }
    }
}

impl std::error::Error for ThreadError {}

impl PointToPoint for ThreadRank {
    type Error = ThreadError;

    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.inboxes.len()
    }

    /// Messages to a higher rank count as lent, to a lower one as written (every message is
    /// queued alike): a hint on which algorithms may choose what to send, so that in tests both
    /// of their ways run, and the two ranks of a pair take different ones.
    fn lends(&self, peer: usize, len: usize) -> bool {
        let _ = len;
        peer > self.rank
    }

    fn send(&self, dest: usize, tag: u32, data: &[u8]) -> Result<(), ThreadError> {
        let inbox = self.shared.inboxes.get(dest).ok_or(ThreadError::NoSuchRank(dest))?;
        inbox.queue.lock().unwrap_or_else(PoisonError::into_inner).push_back((self.rank, tag, data.to_vec()));
        inbox.arrived.notify_all();
        Ok(())
    }

    fn recv(&self, src: usize, tag: u32) -> Result<Vec<u8>, ThreadError> {
        let gone = self.shared.gone.get(src).ok_or(ThreadError::NoSuchRank(src))?;
        let inbox = self.shared.inboxes.get(self.rank).ok_or(ThreadError::NoSuchRank(self.rank))?;
        let mut queue = inbox.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(i) = queue.iter().position(|(s, t, _)| *s == src && *t == tag) {
                // `position` just found index `i`, so `remove` returns Some.
                if let Some((_, _, data)) = queue.remove(i) {
                    return Ok(data);
                }
            }
            // Checked under the inbox lock, which `drop` takes before notifying: no lost wakeup.
            if gone.load(Ordering::SeqCst) {
                return Err(ThreadError::Gone(src));
            }
            queue = inbox.arrived.wait(queue).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn malformed(&self, what: String) -> ThreadError {
        ThreadError::Malformed(what)
    }
}

impl Drop for ThreadRank {
    fn drop(&mut self) {
        if let Some(gone) = self.shared.gone.get(self.rank) {
            gone.store(true, Ordering::SeqCst);
        }
        for inbox in &self.shared.inboxes {
            // Taking the lock orders this after any receiver's check of `gone`.
            drop(inbox.queue.lock().unwrap_or_else(PoisonError::into_inner));
            inbox.arrived.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receive from a rank that has ended without sending fails instead of hanging, while
    /// messages it sent before ending are still delivered.
    #[test]
    fn receive_from_ended_rank() {
        ThreadGroup::run(2, |p| {
            if p.rank() == 1 {
                p.send(0, 7, b"hi").expect("send");
            } else {
                assert_eq!(p.recv(1, 7), Ok(b"hi".to_vec()));
                assert_eq!(p.recv(1, 7), Err(ThreadError::Gone(1)));
                assert_eq!(p.recv(2, 7), Err(ThreadError::NoSuchRank(2)));
                assert_eq!(p.send(2, 7, b""), Err(ThreadError::NoSuchRank(2)));
            }
        });
    }
}
