//! An in-process [`PointToPoint`] with one thread per rank, for testing algorithms.

use crate::p2p::PointToPoint;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// A message in flight: source, tag, payload.
type Envelope = (usize, u32, Vec<u8>);

/// One rank's incoming messages.
#[derive(Default)]
struct Inbox {
    queue: Mutex<VecDeque<Envelope>>,
    arrived: Condvar,
}

/// A group of ranks living in one process; each rank is a thread.
pub struct ThreadGroup;

impl ThreadGroup {
    /// Runs `body` on `size` threads, each with its own [`ThreadRank`], and waits for all.
    ///
    /// A panic on any thread is propagated once all threads have ended.
    pub fn run<F>(size: usize, body: F)
    where
        F: Fn(ThreadRank) + Sync,
    {
        let inboxes: Arc<Vec<Inbox>> = Arc::new((0..size).map(|_| Inbox::default()).collect());
        std::thread::scope(|s| {
            for rank in 0..size {
                let p = ThreadRank { rank, inboxes: Arc::clone(&inboxes) };
                let body = &body;
                s.spawn(move || body(p));
            }
        });
    }
}

/// One rank of a [`ThreadGroup`].
pub struct ThreadRank {
    rank: usize,
    inboxes: Arc<Vec<Inbox>>,
}

/// Errors of the thread transport: only a rank number out of range.
#[derive(Debug, PartialEq, Eq)]
pub struct NoSuchRank(pub usize);

impl PointToPoint for ThreadRank {
    type Error = NoSuchRank;

    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.inboxes.len()
    }

    fn send(&self, dest: usize, tag: u32, data: &[u8]) -> Result<(), NoSuchRank> {
        let inbox = self.inboxes.get(dest).ok_or(NoSuchRank(dest))?;
        inbox.queue.lock().unwrap_or_else(PoisonError::into_inner).push_back((self.rank, tag, data.to_vec()));
        inbox.arrived.notify_all();
        Ok(())
    }

    fn recv(&self, src: usize, tag: u32) -> Result<Vec<u8>, NoSuchRank> {
        if src >= self.size() {
            return Err(NoSuchRank(src));
        }
        let inbox = &self.inboxes[self.rank];
        let mut queue = inbox.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(i) = queue.iter().position(|(s, t, _)| *s == src && *t == tag) {
                // `position` just found index `i`, so `remove` returns Some.
                if let Some((_, _, data)) = queue.remove(i) {
                    return Ok(data);
                }
            }
            queue = inbox.arrived.wait(queue).unwrap_or_else(PoisonError::into_inner);
        }
    }
}
