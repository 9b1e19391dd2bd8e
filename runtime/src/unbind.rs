//! A rank bound by default (`PRUN_BIND=auto`, [`crate::affinity`]) lets go of its core when
//! the launcher sees other work load the host (`launcher/src/unbind.rs`): the launcher creates
//! [`crate::env::UNBIND_FLAG`] in the job's socket folder on the host, and a thread of the rank,
//! asleep on an `inotify` watch of that folder until then, puts every thread of the rank back
//! on the CPUs the rank was allowed before it bound itself.

use crate::log::debug;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use rustix::thread::{CpuSet, Pid, sched_setaffinity};
use std::path::Path;

/// Starts the thread that unbinds this rank, putting its threads back on `allowed`, once the
/// launcher asks through `socket_dir`; `report` is the line to print to stderr then, if any.
/// A watch that cannot be set up leaves the rank bound, with a debug message.
pub(crate) fn watch(allowed: CpuSet, socket_dir: &Path, report: Option<String>) {
    let flag = socket_dir.join(crate::env::UNBIND_FLAG);
    let watch = Inotify::init(InitFlags::IN_CLOEXEC).and_then(|i| {
        i.add_watch(socket_dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO).map(|_| i)
    });
    let inotify = match watch {
        Ok(i) => i,
        Err(e) => return debug!("cannot watch {} ({e}): the rank stays bound", socket_dir.display()),
    };
    let started = std::thread::Builder::new()
        .name("prun-unbind".into())
        .spawn(move || wait_then_unbind(&inotify, &flag, &allowed, report));
    if let Err(e) = started {
        debug!("cannot start the thread that would unbind the rank ({e}): it stays bound");
    }
}

/// Sleeps until `flag` exists (it may already), then unbinds every thread of this process.
fn wait_then_unbind(inotify: &Inotify, flag: &Path, allowed: &CpuSet, report: Option<String>) {
    let name = flag.file_name();
    // the watch was set before this check, so a flag created since is an event below
    while !flag.exists() {
        match inotify.read_events() {
            Ok(events) if events.iter().any(|e| e.name.as_deref() == name) => break,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            // the socket folder went away: the job is ending
            Err(_) => return,
        }
    }
    // twice: a thread started while the first pass ran may have inherited its maker's core
    for _ in 0..2 {
        for tid in threads() {
            if let Err(e) = sched_setaffinity(Some(tid), allowed) {
                debug!("cannot unbind thread {tid:?}: {e}");
            }
        }
    }
    if let Some(line) = report {
        eprintln!("{line}");
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
