//! Helper threads: work a call runs beside its own thread (a map's steal thread and connection
//! opener), on threads parked between calls, and waited for later rather than on the call's
//! way out.
//!
//! A map's root returns once it holds every result; joining its steal thread there put a wake-up
//! of that thread, its exit and a wake-up of the root on the root's path (with 16 ranks on 2
//! cores, 80 to 490 us of an 82 ms map). The work is told to stop instead and handed over here
//! ([`Helpers::stopping`]); tasks that have ended are dropped as later maps start, and every
//! task handed over is waited for when a communicator is dropped, so that a job's last trace
//! lines and messages are out before the process exits.
//!
//! A thread that ends its task parks until the next one, rather than exiting: starting a thread
//! (its stack, its signal stack, its first run) took 20-40 us of a core at every map's start,
//! where ranks sharing cores wait for each other to start (16 ranks on 2 cores: `skew` 0.985
//! against 0.9835 with the steal thread started after the first batch instead, 40 alternating
//! runs). A parked thread costs one wake-up.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Work for a helper thread.
type Job = Box<dyn FnOnce() + Send>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The helper threads of one process: those parked, and the tasks told to stop.
#[derive(Default)]
pub(crate) struct Helpers {
    parked: Arc<Mutex<Vec<Arc<Slot>>>>,
    stopped: Mutex<Vec<Task>>,
}

/// Where a parked thread waits for its next job.
struct Slot {
    job: Mutex<Option<Job>>,
    given: Condvar,
}

/// One job run on a helper thread, to wait for.
pub(crate) struct Task {
    done: Arc<(Mutex<bool>, Condvar)>,
}

impl Task {
    fn is_finished(&self) -> bool {
        *lock(&self.done.0)
    }

    fn wait(&self) {
        let mut done = lock(&self.done.0);
        while !*done {
            done = self.done.1.wait(done).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Marks a task done when its job returns or panics.
struct Finish(Arc<(Mutex<bool>, Condvar)>);

impl Drop for Finish {
    fn drop(&mut self) {
        *lock(&self.0.0) = true;
        self.0.1.notify_all();
    }
}

impl Helpers {
    /// Runs `job` on a parked helper thread, or on a new one when none is parked. A job that
    /// panics ends its task all the same (its message goes to stderr).
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> std::io::Result<Task> {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let finish = Finish(Arc::clone(&done));
        let job: Job = Box::new(move || {
            let _finish = finish;
            // the job's captures are dropped before the task counts as done
            let _ = catch_unwind(AssertUnwindSafe(job));
        });
        if let Some(slot) = lock(&self.parked).pop() {
            *lock(&slot.job) = Some(job);
            slot.given.notify_one();
            return Ok(Task { done });
        }
        let slot = Arc::new(Slot { job: Mutex::new(Some(job)), given: Condvar::new() });
        let parked = Arc::clone(&self.parked);
        std::thread::Builder::new().name("prun-helper".into()).spawn(move || serve(&slot, &parked))?;
        Ok(Task { done })
    }

    /// Takes a task that was told to stop, to wait for it later.
    pub fn stopping(&self, task: Task) {
        lock(&self.stopped).push(task);
    }

    /// Forgets the tasks that have ended (without waiting for the others).
    pub fn reap(&self) {
        lock(&self.stopped).retain(|t| !t.is_finished());
    }

    /// Waits for every task that was told to stop (never called from a helper thread).
    pub fn join_all(&self) {
        let stopped = std::mem::take(&mut *lock(&self.stopped));
        for task in stopped {
            task.wait();
        }
    }
}

/// A helper thread: runs the job in `slot`, parks, and runs the next one given to it, for as
/// long as the process lives.
fn serve(slot: &Arc<Slot>, parked: &Mutex<Vec<Arc<Slot>>>) {
    loop {
        let job = {
            let mut job = lock(&slot.job);
            loop {
                match job.take() {
                    Some(j) => break j,
                    None => job = slot.given.wait(job).unwrap_or_else(PoisonError::into_inner),
                }
            }
        };
        job();
        lock(parked).push(Arc::clone(slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn reaping_keeps_running_tasks_and_joining_waits_for_them() {
        let helpers = Helpers::default();
        let (go, wait) = mpsc::channel::<()>();
        let (said, heard) = mpsc::channel::<u32>();
        let said2 = said.clone();
        let first = helpers.run(move || {
            let _ = wait.recv();
            let _ = said.send(1);
        });
        helpers.stopping(first.expect("a helper thread"));
        let second = helpers.run(move || {
            let _ = said2.send(2);
        });
        helpers.stopping(second.expect("a helper thread"));
        assert_eq!(heard.recv().ok(), Some(2), "the second task ran while the first waited");
        while lock(&helpers.stopped).iter().filter(|t| t.is_finished()).count() < 1 {
            std::thread::yield_now();
        }
        helpers.reap();
        assert_eq!(lock(&helpers.stopped).len(), 1, "reaping dropped a task still running");
        go.send(()).expect("the first task waits");
        helpers.join_all();
        assert_eq!(heard.try_recv().ok(), Some(1), "join_all returned before the task ended");
        assert!(lock(&helpers.stopped).is_empty());
    }

    #[test]
    fn a_parked_thread_runs_the_next_task_and_a_panic_ends_only_its_task() {
        let helpers = Helpers::default();
        let name = || std::thread::current().id();
        let (tx, rx) = mpsc::channel();
        let first = helpers.run({
            let tx = tx.clone();
            move || {
                let _ = tx.send(name());
                panic!("a helper's job panicked (expected by this test)");
            }
        });
        first.expect("a helper thread").wait();
        // the thread parks after its job: wait for it to be back
        while lock(&helpers.parked).is_empty() {
            std::thread::yield_now();
        }
        let second = helpers.run(move || {
            let _ = tx.send(name());
        });
        second.expect("a helper thread").wait();
        let (a, b) = (rx.recv().ok(), rx.recv().ok());
        assert!(a.is_some() && a == b, "the second task ran on another thread: {a:?} {b:?}");
    }
}
