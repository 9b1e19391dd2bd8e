//! The watchdog: a small process that ends the job's process groups if prun itself dies.
//!
//! prun starts `prun __watchdog DIR` with a pipe as its stdin and tells it each rank's process
//! group as `+PGID` and each ended one as `-PGID`. If the pipe closes without a final `done`
//! (prun was killed, even with SIGKILL), the watchdog sends SIGTERM to every group still
//! listed, SIGKILL a second later, and removes the job's folder DIR. It lives in its own
//! process group, so a Ctrl-C at the terminal does not reach it.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;

/// The hidden first argument that runs prun as a watchdog.
pub const ARG: &str = "__watchdog";

/// prun's end of the watchdog.
pub struct Watchdog {
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts the watchdog for the job whose folder is `dir`.
    pub fn start(dir: &Path) -> io::Result<Watchdog> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg(ARG)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        // the reaper thread reaps the watchdog when it exits; `Child` is not needed
        Ok(Watchdog { pipe: child.stdin.take() })
    }

    fn say(&mut self, line: &str) {
        if let Some(p) = &mut self.pipe
            && writeln!(p, "{line}").is_err()
        {
            self.pipe = None;
        }
    }

    /// A rank's process group to end if prun dies.
    pub fn watch(&mut self, pgid: i32) {
        self.say(&format!("+{pgid}"));
    }

    /// A process group that is gone.
    pub fn forget(&mut self, pgid: i32) {
        self.say(&format!("-{pgid}"));
    }

    /// The job ended cleanly: the watchdog exits without touching anything.
    pub fn finish(&mut self) {
        self.say("done");
        self.pipe = None;
    }
}

/// The watchdog's own main: returns its exit status.
pub fn run(dir: PathBuf) -> i32 {
    let mut groups = BTreeSet::new();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == "done" {
            return 0;
        }
        let (op, n) = line.split_at(1.min(line.len()));
        if let Ok(pgid) = n.parse::<i32>() {
            match op {
                "+" => groups.insert(pgid),
                "-" => groups.remove(&pgid),
                _ => false,
            };
        }
    }
    // prun is gone without saying done: end whatever of the job is left
    let signal_all = |sig| {
        groups.iter().for_each(|&g| {
            let _ = killpg(Pid::from_raw(g), sig);
        })
    };
    signal_all(Signal::SIGTERM);
    std::thread::sleep(Duration::from_secs(1));
    signal_all(Signal::SIGKILL);
    let _ = std::fs::remove_dir_all(&dir);
    0
}
