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
    /// The tag, for point-to-point receives.
    pub tag: Option<u32>,
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
        match self.peer {
            Some(peer) => write!(f, ", waiting for rank {peer}"),
            None => f.write_str(", waiting for any rank"),
        }
    }
}

/// The rank's current wait, if any.
#[derive(Default)]
pub(crate) struct Activity(Mutex<Option<Waiting>>);

impl Activity {
    /// Records a wait until the returned guard is dropped.
    pub fn wait(&self, waiting: Waiting) -> Guard<'_> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(waiting);
        Guard(self)
    }

    /// What the rank is doing, in words, and which collective call it waits in, if one.
    pub fn describe(&self) -> (String, Option<CallAt>) {
        match *self.0.lock().unwrap_or_else(PoisonError::into_inner) {
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

/// Clears the wait it records when dropped.
pub(crate) struct Guard<'a>(&'a Activity);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
