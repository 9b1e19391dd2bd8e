//! What a rank is waiting for, for the launcher's hang report (`--timeout`, or SIGUSR1 to prun)
//! and its check that the ranks of a communicator are in the same collective call.

use crate::protocol::CallAt;
use std::fmt;
use std::sync::{Mutex, PoisonError};

/// A blocking call in progress.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waiting {
    /// The operation (`recv`, `allreduce`, `map`, ...).
    pub op: &'static str,
    /// Its root, for rooted collectives.
    pub root: Option<usize>,
    /// Its call number on its communicator, for collectives.
    pub call: Option<u32>,
    /// Its communicator (its point-to-point context), for collectives.
    pub context: Option<u64>,
    /// The length of its buffers, for the zero-copy collectives.
    pub len: Option<usize>,
    /// The rank it waits for, if one.
    pub peer: Option<usize>,
    /// The tag, for point-to-point calls.
    pub tag: Option<u32>,
    /// Whether it waits to send to `peer` (its message not yet taken, or not yet copied) rather
    /// than to receive.
    pub sending: bool,
}

impl Waiting {
    /// A point-to-point call's wait: `op` with `peer` (`None`: any rank) on `tag` (`None`: any),
    /// to send when `sending`, else to receive.
    pub fn point_to_point(op: &'static str, peer: Option<usize>, tag: Option<u32>, sending: bool) -> Waiting {
        Waiting { op, root: None, call: None, context: None, len: None, peer, tag, sending }
    }
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.op)?;
        if let Some(root) = self.root {
            write!(f, "(root {root})")?;
        }
        if let Some(call) = self.call {
            write!(f, " call #{call}")?;
        }
        if let Some(tag) = self.tag {
            write!(f, " tag {tag}")?;
        }
        match (self.sending, self.peer) {
            (true, Some(peer)) => write!(f, ", sending to rank {peer}"),
            (true, None) => f.write_str(", sending"),
            (false, Some(peer)) => write!(f, ", waiting for rank {peer}"),
            (false, None) => f.write_str(", waiting for any rank"),
        }
    }
}

/// The rank's current waits: a send's wait, say, and a receive that runs within it (an exchange),
/// or waits on several threads; the latest one still going is the one reported.
#[derive(Default)]
pub(crate) struct Activity(Mutex<Waits>);

/// The waits going on, each with the number that names it, and the next number.
#[derive(Default)]
struct Waits {
    going: Vec<(u64, Waiting)>,
    next: u64,
}

impl Activity {
    /// Records a wait until the returned guard is dropped.
    pub fn wait(&self, waiting: Waiting) -> Guard<'_> {
        let mut waits = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let id = waits.next;
        waits.next += 1;
        waits.going.push((id, waiting));
        Guard(self, id)
    }

    /// What the rank is doing, in words, and which collective call it waits in, if one.
    pub fn describe(&self) -> (String, Option<CallAt>) {
        match self.0.lock().unwrap_or_else(PoisonError::into_inner).going.last().map(|&(_, w)| w) {
            Some(w) => {
                let call = w.call.zip(w.context).map(|(call, context)| CallAt {
                    context,
                    // as a collective message's tag keeps it
                    call: call & crate::communicator::SEQ_MASK,
                    op: w.op.to_string(),
                    root: w.root.map(|r| r as u64),
                    len: w.len.map(|l| l as u64),
                });
                (w.to_string(), call)
            }
            None => ("running (not in a prun call)".into(), None),
        }
    }
}

/// Ends the wait it records when dropped.
pub(crate) struct Guard<'a>(&'a Activity, u64);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let mut waits = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        waits.going.retain(|&(id, _)| id != self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(op: &'static str, peer: usize, sending: bool) -> Waiting {
        Waiting::point_to_point(op, Some(peer), Some(7), sending)
    }

    /// The latest wait still going is reported: a receive within a send, then the send again
    /// once the receive ends; waits on two threads ending in either order leave no stale one.
    #[test]
    fn the_latest_wait_going_is_reported() {
        let activity = Activity::default();
        let said = |a: &Activity| a.describe().0;
        let send = activity.wait(on("send", 1, true));
        assert_eq!(said(&activity), "send tag 7, sending to rank 1");
        let recv = activity.wait(on("recv", 2, false));
        assert_eq!(said(&activity), "recv tag 7, waiting for rank 2");
        drop(recv);
        assert_eq!(said(&activity), "send tag 7, sending to rank 1");
        let other = activity.wait(on("recv", 3, false));
        drop(send);
        assert_eq!(said(&activity), "recv tag 7, waiting for rank 3");
        drop(other);
        assert_eq!(said(&activity), "running (not in a prun call)");
    }
}
