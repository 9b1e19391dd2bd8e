//! Starting, signalling and reaping ranks on this host.
//!
//! Each rank runs in a process group of its own (so that a terminal's Ctrl-C reaches prun
//! alone, and signals from prun reach the rank *and its children*). A single reaper thread
//! waits for every child and reports which rank ended and how. Remote hosts will be driven by a
//! per-host agent that does the same there.

use crate::output::{Pipe, StreamKind};
use crate::status::Ended;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::Sender;

/// Where a rank's stdout and stderr go.
pub enum OutputTo {
    /// Pipes read by prun.
    Pipes,
    /// Files `rank.R.stdout` and `rank.R.stderr` in this folder.
    Folder(PathBuf),
}

/// How to start one rank.
pub struct RankCommand<'a> {
    /// The rank.
    pub rank: usize,
    /// The resolved program.
    pub program: &'a PathBuf,
    /// `argv[0]`, as the user wrote it.
    pub arg0: &'a OsString,
    /// The arguments.
    pub args: &'a [OsString],
    /// Working directory, if not prun's.
    pub wdir: Option<&'a PathBuf>,
    /// Variables to remove, then to set.
    pub env_remove: &'a [&'a str],
    /// Variables to set.
    pub env: Vec<(OsString, OsString)>,
    /// Whether the rank's stdin is a pipe from prun (else /dev/null).
    pub stdin: bool,
    /// Where its output goes.
    pub output: &'a OutputTo,
}

/// A started rank's pipes.
pub struct StartedRank {
    /// The process id (also its process group id).
    pub pid: i32,
    /// Its stdin, when it reads prun's.
    pub stdin: Option<ChildStdin>,
    /// Its output pipes, when forwarded.
    pub pipes: Vec<Pipe>,
}

/// Starts one rank in its own process group.
pub fn start(c: &RankCommand<'_>) -> io::Result<StartedRank> {
    let mut cmd = Command::new(c.program);
    cmd.arg0(c.arg0).args(c.args).process_group(0);
    for name in c.env_remove {
        cmd.env_remove(name);
    }
    cmd.envs(c.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = c.wdir {
        cmd.current_dir(dir);
    }
    cmd.stdin(if c.stdin { Stdio::piped() } else { Stdio::null() });
    match c.output {
        OutputTo::Pipes => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        OutputTo::Folder(dir) => {
            let open = |kind: &str| File::create(dir.join(format!("rank.{}.{kind}", c.rank)));
            cmd.stdout(open("stdout")?).stderr(open("stderr")?);
        }
    }
    let mut child = cmd.spawn()?;
    let mut pipes = Vec::new();
    if let Some(out) = child.stdout.take() {
        pipes.push(Pipe { rank: c.rank, kind: StreamKind::Stdout, file: File::from(OwnedFd::from(out)) });
    }
    if let Some(err) = child.stderr.take() {
        pipes.push(Pipe { rank: c.rank, kind: StreamKind::Stderr, file: File::from(OwnedFd::from(err)) });
    }
    // the child is reaped by the reaper thread, not through `Child`
    Ok(StartedRank { pid: child.id() as i32, stdin: child.stdin.take(), pipes })
}

/// Sends `signal` to the process group `pgid` (a rank and its children); a group that is
/// already gone is not an error.
pub fn signal_group(pgid: i32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid), signal);
}

/// Starts the thread that reaps every child and reports `wrap(rank, how)` for ranks.
///
/// Start it only after every rank has been spawned: the standard library's `spawn` waits for
/// a child whose `exec` failed, and must not find it already reaped.
pub fn reap<E: Send + 'static>(
    ranks: HashMap<i32, usize>,
    events: Sender<E>,
    wrap: fn(usize, Ended) -> E,
) -> io::Result<()> {
    std::thread::Builder::new().name("prun-reaper".into()).spawn(move || {
        loop {
            let (pid, ended) = match waitpid(Pid::from_raw(-1), None) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Ended::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, core)) => (pid, Ended::Signal { signal: sig as i32, core }),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            };
            if let Some(&rank) = ranks.get(&pid.as_raw())
                && events.send(wrap(rank, ended)).is_err()
            {
                break;
            }
        }
    })?;
    Ok(())
}
