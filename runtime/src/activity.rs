//! What a rank is waiting for, for the launcher's hang report (`--timeout`, or SIGUSR1 to prun).

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

    /// What the rank is doing, in words.
    pub fn describe(&self) -> String {
        match *self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(w) => w.to_string(),
            None => "running (not in a prun call)".into(),
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
