//! CPU time the hypervisor took from this machine (Linux's "steal" time), to tell a slow
//! measurement from a disturbed one.
//!
//! On a virtual machine the host may run other guests on this guest's virtual CPUs; the guest's
//! kernel counts the time its CPUs were ready but not running as steal. A sleep that should last
//! 2 ms can then last 5, and a benchmark of sleeping tasks loses a few percent of efficiency that
//! no scheduler could have saved. The benchmarks print it beside their figures.

use std::time::Duration;

/// Clock ticks per second of `/proc/stat` (`USER_HZ`, fixed at 100 in Linux's interface).
const TICKS_PER_SECOND: u64 = 100;

/// Steal time of every CPU of the machine since it booted, from the first line of
/// `/proc/stat`; `None` where there is no such file or it has no steal column (not Linux, or a
/// kernel before 2.6.11).
#[must_use]
pub fn machine_steal() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse(&stat)
}

/// The steal field (the eighth number) of the `cpu` line of `/proc/stat`'s text.
fn parse(stat: &str) -> Option<Duration> {
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let ticks: u64 = line.split_whitespace().nth(8)?.parse().ok()?;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// Steal time over a stretch of time: started by [`Stolen::start`], read by [`Stolen::so_far`].
#[derive(Clone, Copy, Debug)]
pub struct Stolen(Option<Duration>);

impl Stolen {
    /// Starts counting from now.
    #[must_use]
    pub fn start() -> Stolen {
        Stolen(machine_steal())
    }

    /// Steal time since [`Stolen::start`], over all CPUs; `None` where it cannot be read.
    #[must_use]
    pub fn so_far(&self) -> Option<Duration> {
        Some(machine_steal()?.saturating_sub(self.0?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steal_column_of_the_cpu_line() {
        let stat = "cpu  4009450 0 1293972 3299355 22369 0 4848 81773 0 0\n\
                    cpu0 1976498 0 636054 1693341 6659 0 956 40807 0 0\n";
        assert_eq!(parse(stat), Some(Duration::from_millis(817_730)));
        assert_eq!(parse("cpu  1 2 3 4\n"), None, "a kernel without the column");
        assert_eq!(parse("intr 5\n"), None);
    }
}
