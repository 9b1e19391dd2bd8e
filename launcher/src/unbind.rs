//! Letting go of ranks bound by default (`PRUN_BIND=auto`) once other work loads the host.
//!
//! Where a host runs more of the job's ranks than it has CPUs (a power of two of them, up to
//! four per CPU), each rank binds itself to a core by default (`runtime/src/affinity.rs`): the
//! kernel leaves ranks that sleep and wake as often as they do in collectives unevenly spread,
//! and bound they run lockstep collectives 10-20% faster on an otherwise idle host. But a bound
//! rank cannot leave a core that something else keeps busy (one busy loop beside an 8-rank
//! allreduce made it 2.5 times slower bound than unbound). So the launcher, and each per-host
//! agent, watches the host's CPU time: every [`WINDOW`], the CPU time the whole host used less
//! what the job's ranks and the launcher itself used. Once that other work averages
//! [`FOREIGN_MIN`] of one CPU over the last [`WINDOWS`] windows (a second), it creates
//! [`prun::env::UNBIND_FLAG`] in the job's socket folder and wakes the ranks waiting on a named
//! pipe there (`runtime/src/unbind.rs`); each puts every thread of its own back on the CPUs it
//! was allowed before it bound itself. Ranks are not bound again.

use std::ffi::OsString;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// How often the host's CPU time is sampled.
pub const WINDOW: Duration = Duration::from_millis(250);

/// Share of one CPU that other work must use, on average over the last [`WINDOWS`] windows, for
/// the ranks to be let go. Measured on 2 CPUs with 8 bound ranks, in clock ticks of 25 per CPU
/// and window: -3 to +7 alone (the counts rounded to ticks, and the kernel's own threads), 13
/// to 18 beside one busy loop.
pub const FOREIGN_MIN: f64 = 0.3;

/// Windows looked at together (a second's worth: a short burst, such as a program starting,
/// does not count).
pub const WINDOWS: usize = 4;

/// Starts a thread that watches the host while any of `pids` (the ranks started here) runs,
/// and tells the ranks to unbind through `socket_dir` once other work loads the host's CPUs.
/// Does nothing unless the ranks were told to bind themselves by default (`bind` is
/// `PRUN_BIND`'s value for them). A thread that cannot be started leaves the ranks bound, with
/// a message.
pub fn watch(pids: Vec<i32>, socket_dir: &Path, bind: Option<&str>) {
    if bind.map(str::trim) != Some("auto") || pids.is_empty() {
        return;
    }
    let dir = socket_dir.to_path_buf();
    let started = std::thread::Builder::new().name("prun-unbind".into()).spawn(move || run(&pids, &dir));
    if let Err(e) = started {
        eprintln!("prun: warning: cannot watch the host's load ({e}); ranks stay bound to cores");
    }
}

/// `PRUN_BIND` as the ranks started with `env` (on top of this process's environment) see it.
pub fn bind_of(env: &[(OsString, OsString)]) -> Option<String> {
    let name = prun::env::BIND;
    match env.iter().rev().find(|(k, _)| k == name) {
        Some((_, v)) => v.to_str().map(str::to_owned),
        None => std::env::var(name).ok(),
    }
}

/// The watch loop: returns when the ranks are gone or were told to unbind.
fn run(pids: &[i32], socket_dir: &Path) {
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    // ticks of one CPU in the windows looked at together
    let span = tick as f64 * WINDOW.as_secs_f64() * WINDOWS as f64;
    let mut before = sample(pids);
    let mut recent = std::collections::VecDeque::with_capacity(WINDOWS);
    loop {
        std::thread::sleep(WINDOW);
        let now = sample(pids);
        if now.job.is_empty() {
            return;
        }
        if recent.len() == WINDOWS {
            recent.pop_front();
        }
        recent.push_back(foreign(&before, &now));
        if recent.len() == WINDOWS && recent.iter().sum::<f64>() >= FOREIGN_MIN * span {
            return tell(socket_dir);
        }
        before = now;
    }
}

/// Tells the ranks of the host to unbind: creates [`prun::env::UNBIND_FLAG`], then opens and
/// closes their named pipe for writing, which wakes those that wait on it (a rank that opens
/// it later finds the flag). A pipe nobody reads (no rank bound itself) cannot be opened, and
/// needs no waking.
fn tell(socket_dir: &Path) {
    let flag = socket_dir.join(prun::env::UNBIND_FLAG);
    if let Err(e) = std::fs::File::create(&flag) {
        eprintln!(
            "prun: warning: cannot tell the ranks to unbind ({}: {e}); they stay bound",
            flag.display()
        );
        return;
    }
    let fifo = socket_dir.join(prun::env::UNBIND_FIFO);
    // opened and closed at once: the readers see the writer come and go
    let _ =
        std::fs::OpenOptions::new().write(true).custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits()).open(fifo);
}

/// Clock ticks the host's CPUs were busy, and those each process of the job used (its ranks on
/// this host that still run, and this process), at one time.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    busy: u64,
    job: Vec<(i32, u64)>,
}

fn sample(pids: &[i32]) -> Sample {
    let ticks =
        |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| process_ticks(&s));
    let busy = std::fs::read_to_string("/proc/stat").ok().and_then(|s| host_busy(&s)).unwrap_or(0);
    let mut job: Vec<(i32, u64)> =
        pids.iter().filter_map(|&pid| ticks(&pid.to_string()).map(|t| (pid, t))).collect();
    if !job.is_empty() {
        job.push((0, ticks("self").unwrap_or(0)));
    }
    Sample { busy, job }
}

/// Ticks of other work between two samples: what the host used less what the job's processes
/// that ran through both used (a rank that ended meanwhile counts for nothing; rounded to
/// ticks, the result may come out negative).
fn foreign(before: &Sample, now: &Sample) -> f64 {
    let busy = now.busy.saturating_sub(before.busy) as f64;
    let job: u64 = now
        .job
        .iter()
        .filter_map(|&(pid, t)| before.job.iter().find(|(p, _)| *p == pid).map(|&(_, b)| t.saturating_sub(b)))
        .sum();
    busy - job as f64
}

/// The ticks every CPU of the host spent busy, from `/proc/stat`'s first line (`cpu` then
/// user, nice, system, idle, iowait, irq, softirq, steal, ...): all but idle, iowait and the
/// time the hypervisor took (steal).
fn host_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next() != Some("cpu") {
        return None;
    }
    let v: Vec<u64> = fields.take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let [user, nice, system, _idle, _iowait, irq, softirq, _steal] = v[..] else { return None };
    Some(user + nice + system + irq + softirq)
}

/// User and system ticks of a process (all its threads), from its `/proc/PID/stat`: fields 14
/// and 15, counted after the command name in parentheses (which may hold spaces).
fn process_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_stat() {
        let stat = "cpu  100 5 40 900 7 3 2 11 0 0\ncpu0 50 2 20 450 3 1 1 5 0 0\n";
        assert_eq!(host_busy(stat), Some(100 + 5 + 40 + 3 + 2));
        assert_eq!(host_busy("cpu0 1 2 3\n"), None);
        assert_eq!(host_busy("cpu 1 2 x 4 5 6 7 8\n"), None);
        assert_eq!(host_busy(""), None);
    }

    #[test]
    fn reads_a_process_stat_whatever_its_name() {
        let stat = "42 (a (strange) name) S 1 42 42 0 -1 4194560 100 0 0 0 17 4 0 0 20 0 3 0 9 0 0";
        assert_eq!(process_ticks(stat), Some(21));
        assert_eq!(process_ticks("42 (x) S 1"), None);
    }

    /// Other work is what the host used beyond the job's processes that ran through both
    /// samples; rounding may make it negative.
    #[test]
    fn other_work_is_the_rest() {
        let before = Sample { busy: 1000, job: vec![(7, 300), (8, 400), (0, 10)] };
        let now = Sample { busy: 1050, job: vec![(7, 320), (8, 425), (0, 11)] };
        assert_eq!(foreign(&before, &now), 4.0);
        let now = Sample { busy: 1046, job: vec![(7, 320), (8, 427), (0, 11)] };
        assert_eq!(foreign(&before, &now), -2.0);
        // rank 8 ended: its ticks leave the job's sum without counting as other work
        let now = Sample { busy: 1030, job: vec![(7, 320), (0, 11)] };
        assert_eq!(foreign(&before, &now), 9.0);
    }
}
