//! A rank bound by default (`PRUN_BIND=auto`, [`crate::affinity`]) lets go of its core when
//! the launcher sees other work load the host (`launcher/src/unbind.rs`).
//!
//! The launcher creates [`crate::env::UNBIND_FLAG`] in the job's socket folder on the host, then
//! opens and closes the named pipe [`crate::env::UNBIND_FIFO`] there for writing. Each such rank
//! has a thread asleep in `poll` on that pipe's reading end, which the writer's coming and going
//! wakes (`POLLHUP`); it then puts every thread of the rank back on the CPUs the rank was allowed
//! before it bound itself. A rank that opens the pipe after that finds the flag instead. (An
//! `inotify` watch of the folder was the first way: closing it as the rank exits waits for the
//! kernel's grace period, which made every 8-rank job end 10-14 ms later.)

use crate::log::debug;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;
use rustix::thread::{CpuSet, Pid, sched_setaffinity};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// Starts the thread that unbinds this rank, putting its threads back on `allowed`, once the
/// launcher asks through `socket_dir`; `report` is the line to print to stderr then, if any.
/// A watch that cannot be set up leaves the rank bound, with a debug message.
pub(crate) fn watch(allowed: CpuSet, socket_dir: &Path, report: Option<String>) {
    let fifo = socket_dir.join(crate::env::UNBIND_FIFO);
    // every rank of the host makes it; the first one does
    match nix::unistd::mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return debug!("cannot make {} ({e}): the rank stays bound", fifo.display()),
    }
    // not blocking: no writer is there yet
    let reader = match open(&fifo, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => return debug!("cannot open {} ({e}): the rank stays bound", fifo.display()),
    };
    let flag = socket_dir.join(crate::env::UNBIND_FLAG);
    let started = std::thread::Builder::new()
        .name("prun-unbind".into())
        .spawn(move || wait_then_unbind(&reader, &flag, &allowed, report));
    if let Err(e) = started {
        debug!("cannot start the thread that would unbind the rank ({e}): it stays bound");
    }
}

/// Sleeps until the launcher's writer has come and gone on `reader` (or `flag` exists
/// already), then unbinds every thread of this process.
fn wait_then_unbind(reader: &OwnedFd, flag: &Path, allowed: &CpuSet, report: Option<String>) {
    // the pipe was opened before this check, so a writer after it is an event below
    while !flag.exists() {
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_)
                if fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLIN)) =>
            {
                break;
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return debug!("the watch for unbinding failed ({e}): the rank stays bound"),
        }
    }
    crate::affinity::unbound();
    // said first: once its threads are unbound, the rank may run on to its end at once
    if let Some(line) = report {
        eprintln!("{line}");
    }
    // twice: a thread started while the first pass ran may have inherited its maker's core
    for _ in 0..2 {
        for tid in threads() {
            if let Err(e) = sched_setaffinity(Some(tid), allowed) {
                debug!("cannot unbind thread {tid:?}: {e}");
            }
        }
    }
}

/// This process's threads.
fn threads() -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter_map(Pid::from_raw)
        .collect()
}
