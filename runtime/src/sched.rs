//! The scheduling policy of a rank's threads: Linux's `SCHED_BATCH` where ranks share cores.
//!
//! Under the default policy a thread woken by a message may preempt the thread that sent it, on
//! the sender's core: where ranks outnumber cores, every message then costs the sender a switch
//! away and back, and a rank that sends to several others in a row (a broadcast's root, a
//! scatter) is interrupted once for each. `SCHED_BATCH` is the default policy, nice values and
//! all, without that preemption (the woken thread waits for the next tick or for the sender to
//! block, which it soon does): made for CPU-bound work that is not interactive, which is what
//! an oversubscribed job is. Measured with 8 ranks on 2 cores (collbench, five alternating runs
//! against the default policy, medians): broadcast 8 B 9.8 against 43 us, scatter 8 B 12.8
//! against 44, ping-pong 8 B 20 against 36, barrier 90 against 116; 1 MiB rows 0.69-1.00 of
//! their time (ping-pong 109 against 145 us, allreduce 2.03 against 2.15 ms), 16 MiB 0.80-1.05.

use crate::log::debug;
use thread_priority::{
    NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy, set_thread_priority_and_policy,
    thread_native_id,
};

/// Puts the calling thread under `SCHED_BATCH`, and with it every thread it starts afterwards,
/// when [`crate::env::sched_batch`] says so for a host running `local_size` ranks. The thread
/// keeps its nice value. A system that refuses the policy (or a nice value the library cannot
/// keep) leaves the thread as it was, with a debug message: the policy is an optimisation.
pub(crate) fn batch_if_crowded(local_size: usize) {
    if crate::env::sched_batch(local_size)
        && let Err(why) = set_batch()
    {
        debug!("the rank's threads keep their scheduling policy: {why}");
    }
}

/// Sets `SCHED_BATCH` on the calling thread, keeping its nice value.
fn set_batch() -> Result<(), String> {
    // on Linux the call takes a nice value along with a normal policy (and sets it): the one of
    // its priorities that maps to this thread's own, so that the nice value stays as it is
    let nice =
        rustix::process::getpriority_process(None).map_err(|e| format!("cannot read the nice value: {e}"))?;
    let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
    let same = (0..=99u8)
        .filter_map(|p| ThreadPriority::try_from(p).ok())
        .find(|p| p.to_posix(policy).is_ok_and(|n| n == nice))
        .ok_or_else(|| format!("no priority keeps the nice value {nice}"))?;
    set_thread_priority_and_policy(thread_native_id(), same, policy).map_err(|e| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread put under `SCHED_BATCH` keeps its nice value, and threads it starts inherit
    /// the policy; the thread is one of the test's own, so the others are untouched.
    #[test]
    fn batch_keeps_the_nice_value_and_is_inherited() {
        std::thread::spawn(|| {
            let before = rustix::process::getpriority_process(None).expect("nice");
            set_batch().expect("SCHED_BATCH");
            let policy = thread_priority::thread_schedule_policy().expect("policy");
            assert_eq!(policy, ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch));
            assert_eq!(rustix::process::getpriority_process(None).expect("nice"), before);
            let child = std::thread::spawn(thread_priority::thread_schedule_policy).join().expect("join");
            assert_eq!(child.expect("policy"), policy);
        })
        .join()
        .expect("the thread");
    }
}
