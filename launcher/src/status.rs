//! Exit statuses of prun, and how a rank's end is described.
//!
//! | status | meaning |
//! | --- | --- |
//! | 0 | every rank exited with status 0 |
//! | 1..=123 and others | the status of the first rank that failed, or the code passed to `World::abort` |
//! | [`EXIT_FAILURE`] (1) | prun itself failed (cannot create its sockets, cannot start a process), or ranks waited in the same collective call made differently (`calls.rs`) |
//! | [`EXIT_USAGE`] (2) | bad command line, hostfile or placement; nothing was started |
//! | [`EXIT_TIMEOUT`] (124) | `--timeout` expired and the job was ended |
//! | [`EXIT_NOT_EXECUTABLE`] (126) | the program exists but cannot be executed; nothing was started |
//! | [`EXIT_NOT_FOUND`] (127) | the program does not exist; nothing was started |
//! | 128+N | a rank was killed by signal N, or prun received signal N (130 for Ctrl-C, 143 for SIGTERM) |

use nix::sys::signal::Signal;
use std::fmt;

/// prun itself failed.
pub const EXIT_FAILURE: i32 = 1;
/// Bad usage: options, hostfile, placement.
pub const EXIT_USAGE: i32 = 2;
/// `--timeout` expired (as coreutils' `timeout`).
pub const EXIT_TIMEOUT: i32 = 124;
/// The program cannot be executed (as a shell).
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// The program does not exist (as a shell).
pub const EXIT_NOT_FOUND: i32 = 127;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It exited with a status.
    Code(i32),
    /// A signal killed it.
    Signal {
        /// The signal's number.
        signal: i32,
        /// Whether it dumped core.
        core: bool,
    },
}

impl Ended {
    /// Whether this counts as success.
    pub fn success(self) -> bool {
        self == Ended::Code(0)
    }

    /// The status a shell would report for it.
    pub fn shell_status(self) -> i32 {
        match self {
            Ended::Code(c) => c,
            Ended::Signal { signal, .. } => 128 + signal,
        }
    }
}

/// The name of signal `n`, as `SIGSEGV`, or its number.
pub fn signal_name(n: i32) -> String {
    Signal::try_from(n).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {n}"))
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Ended::Code(c) => write!(f, "exited with status {c}"),
            Ended::Signal { signal, core } => {
                write!(f, "was killed by signal {signal} ({})", signal_name(signal))?;
                if core {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_like_a_shell() {
        assert_eq!(Ended::Code(3).to_string(), "exited with status 3");
        assert_eq!(Ended::Code(3).shell_status(), 3);
        let segv = Ended::Signal { signal: 11, core: false };
        assert_eq!(segv.to_string(), "was killed by signal 11 (SIGSEGV)");
        assert_eq!(segv.shell_status(), 139);
        assert!(!segv.success() && Ended::Code(0).success());
    }
}
