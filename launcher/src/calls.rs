//! The launcher's check that the ranks of each communicator wait in the same collective call.
//!
//! Every rank of a communicator must make the same collective calls in the same order. When some
//! do not (a broadcast on one rank where the others call a barrier, another root, another
//! length), the runtime sees it in most cases from a message that crosses between ranks that
//! disagree; but where no message crosses (a rank that only receives in its call, from a root
//! that waits in another one for that rank's message), every rank waits for ever. So the
//! launcher asks every rank, now and then, what it waits in ([`CallAt`]), and two ranks in the
//! same call of one communicator made differently are a hang for certain, whatever the timing:
//! the job ends then with an error that names both, instead of at `--timeout`, or never.
//!
//! The asks come [`FIRST_CHECK`] after the ranks have started, then at intervals doubling up to
//! [`MAX_CHECK_EVERY`]: each wakes every rank's control thread once, so a job of minutes sees a
//! handful.

use prun::protocol::CallAt;
use std::time::{Duration, Instant};

/// When the first check comes, after every rank has joined the job.
pub const FIRST_CHECK: Duration = Duration::from_secs(3);
/// Longest time between two checks.
pub const MAX_CHECK_EVERY: Duration = Duration::from_secs(60);

/// When the next check is due.
pub struct Schedule {
    next: Option<Instant>,
    every: Duration,
}

impl Schedule {
    /// No check yet: [`Schedule::start`] starts the clock.
    pub fn new() -> Schedule {
        Schedule { next: None, every: FIRST_CHECK }
    }

    /// The ranks have started: the first check comes [`FIRST_CHECK`] from `now`.
    pub fn start(&mut self, now: Instant) {
        self.next.get_or_insert(now + self.every);
    }

    /// When the next check is due, if one is scheduled.
    pub fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Whether a check is due at `now`; if so, schedules the one after it.
    pub fn due(&mut self, now: Instant) -> bool {
        if self.next.is_none_or(|t| now < t) {
            return false;
        }
        self.every = (self.every * 2).min(MAX_CHECK_EVERY);
        self.next = Some(now + self.every);
        true
    }
}

/// Two ranks (lowest numbers first) that wait in the same call of one communicator made
/// differently, among the `calls` the ranks answered (indexed by rank; `None`: no answer, or
/// not in a collective).
pub fn disagreement(calls: &[Option<CallAt>]) -> Option<(usize, usize)> {
    let waiting: Vec<(usize, &CallAt)> =
        calls.iter().enumerate().filter_map(|(r, c)| c.as_ref().map(|c| (r, c))).collect();
    waiting.iter().enumerate().find_map(|(i, &(a, ca))| {
        waiting[i + 1..].iter().find(|&&(_, cb)| ca.disagrees_with(cb)).map(|&(b, _)| (a, b))
    })
}

/// The call as the error names it: `broadcast_into (root 0, 80-byte buffers) call #3`.
pub fn describe(call: &CallAt) -> String {
    let mut how = Vec::new();
    if let Some(root) = call.root {
        how.push(format!("root {root}"));
    }
    if let Some(len) = call.len {
        how.push(format!("{len}-byte buffers"));
    }
    let how = if how.is_empty() { String::new() } else { format!(" ({})", how.join(", ")) };
    format!("{}{how} call #{}", call.op, call.call)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(context: u64, call: u32, op: &str, root: Option<u64>, len: Option<u64>) -> Option<CallAt> {
        Some(CallAt { context, call, op: op.into(), root, len })
    }

    /// Only the same call of the same communicator, made differently, is a disagreement:
    /// ranks in different calls (one ahead of another) or on different communicators are not.
    #[test]
    fn finds_the_same_call_made_differently() {
        let bcast = at(0, 3, "broadcast_into", Some(0), Some(80));
        assert_eq!(disagreement(&[bcast.clone(), None, bcast.clone()]), None);
        // another call number, another communicator: no conclusion
        assert_eq!(disagreement(&[bcast.clone(), at(0, 4, "barrier", None, None)]), None);
        assert_eq!(disagreement(&[bcast.clone(), at(6, 3, "barrier", None, None)]), None);
        // another operation, root or length in the same call
        assert_eq!(disagreement(&[None, bcast.clone(), None, at(0, 3, "barrier", None, None)]), Some((1, 3)));
        assert_eq!(
            disagreement(&[bcast.clone(), at(0, 3, "broadcast_into", Some(1), Some(80))]),
            Some((0, 1))
        );
        assert_eq!(
            disagreement(&[at(0, 3, "broadcast_into", Some(0), Some(8)), bcast.clone()]),
            Some((0, 1))
        );
        assert_eq!(
            describe(bcast.as_ref().expect("some")),
            "broadcast_into (root 0, 80-byte buffers) call #3"
        );
    }

    /// The first check comes FIRST_CHECK after the start, the next ones twice as far apart
    /// each time, up to MAX_CHECK_EVERY; none before the start.
    #[test]
    fn checks_come_less_and_less_often() {
        let t0 = Instant::now();
        let mut s = Schedule::new();
        assert!(!s.due(t0 + Duration::from_secs(100)), "due before the start");
        s.start(t0);
        assert!(!s.due(t0 + FIRST_CHECK / 2));
        assert!(s.due(t0 + FIRST_CHECK));
        assert_eq!(s.next(), Some(t0 + FIRST_CHECK + FIRST_CHECK * 2));
        let mut now = t0 + FIRST_CHECK;
        for _ in 0..10 {
            now = s.next().expect("scheduled");
            assert!(s.due(now));
        }
        assert_eq!(s.next(), Some(now + MAX_CHECK_EVERY));
    }
}
