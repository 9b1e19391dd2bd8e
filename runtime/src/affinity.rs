//! Binding a rank to one core (`prun --bind-to core`, [`crate::env::BIND`]), as Open MPI's
//! `--bind-to core` and Slurm's `--cpu-bind=cores` do: rank `i` of a host (its local rank) runs
//! only on the `i % n`-th of the `n` cores (or hardware threads) it was allowed to run on, so the
//! ranks of a host spread evenly over them, round robin, and stay there.
//!
//! By default (`PRUN_BIND=auto`, which `prun` sets) only where ranks outnumber CPUs, up to
//! [`AUTO_MAX_PER_CPU`] of them per CPU and a power of two of them ([`auto_binds`]), and only
//! for as long as nothing else loads the host: the launcher unbinds them then
//! (`launcher/src/unbind.rs`, and [`crate::unbind`] here). Where ranks outnumber cores, the
//! kernel leaves ranks that sleep and wake as often as they do in collectives unevenly placed
//! (five on one core and three on the other is common with 8 ranks on 2), and lockstep
//! algorithms then move at the pace of the fuller core: bound, the 8-rank 1 MiB allreduce took
//! 0.78-0.89 of its unbound time on an otherwise idle machine (bench/RESULTS.md, nineteenth
//! session). But a bound rank cannot leave a core that something else keeps busy:
//! with one busy loop running beside the job, the same allreduce took 2.4-2.6 times its unbound
//! time, which is why Open MPI does not bind where ranks outnumber cores, and why the launcher
//! lets go of them as soon as it sees such work.

use crate::log::debug;
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this rank is bound to one core or hardware thread ([`bound`]).
static BOUND: AtomicBool = AtomicBool::new(false);

/// Whether this rank is bound to one core or hardware thread (by [`bind_if_asked`], and not
/// unbound since by [`crate::unbind`]): its threads stay on the CPU they run on now, or, bound to
/// a core of several hardware threads, on that core.
pub(crate) fn bound() -> bool {
    BOUND.load(Ordering::Relaxed)
}

/// Records that this rank is no longer bound ([`bound`]), before its threads are let go.
pub(crate) fn unbound() {
    BOUND.store(false, Ordering::Relaxed);
}

/// Most ranks per CPU that `PRUN_BIND=auto` binds: beyond it binding measured mixed (16 ranks on
/// 2 CPUs, 1 MiB: allreduce 1.09 of Open MPI's time bound against 1.19, ping-pong 1.39 against
/// 1.26; 32 ranks: broadcast 2.04 against 1.44; bench/RESULTS.md, nineteenth session).
pub(crate) const AUTO_MAX_PER_CPU: usize = 4;

/// Whether `PRUN_BIND=auto` binds the ranks of a host running `local_size` of them on `cpus`
/// CPUs: where they are `crowded` (outnumber the CPUs), up to [`AUTO_MAX_PER_CPU`] per CPU, as
/// many on each CPU, and a power of two of them. Binding evens out lockstep collectives whose
/// every rank works alike, which the algorithms do on a power of two of ranks; on others some
/// ranks sit out steps (those beyond a power of two fold into a partner first), and bound round
/// robin the busy ones can share a CPU while another idles: 6 ranks on 2 CPUs, bound against
/// unbound, 16 MiB allreduce 36.5 against 25.4 ms, 1 MiB broadcast 433 against 281 us; 3
/// ranks, barrier 61 against 21 us (bench/RESULTS.md, twentieth session).
pub(crate) fn auto_binds(crowded: bool, local_size: usize, cpus: usize) -> bool {
    crowded
        && local_size <= AUTO_MAX_PER_CPU.saturating_mul(cpus)
        && cpus > 0
        && local_size % cpus == 0
        && local_size.is_power_of_two()
}

/// What a rank is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A core: every hardware thread of it the rank may use.
    Core,
    /// One hardware thread (a logical CPU).
    Hwthread,
}

impl Unit {
    /// Its name, as `PRUN_BIND` spells it.
    fn word(self) -> &'static str {
        match self {
            Unit::Core => "core",
            Unit::Hwthread => "hwthread",
        }
    }
}

/// Binds the calling thread, and with it every thread it starts afterwards, as
/// [`crate::env::BIND`] asks for a host running `local_size` ranks, to its share of the CPUs it
/// may run on, by `local_rank`; call it before the rank starts its threads. Bound by default
/// (`auto`), it also starts the watch that unbinds the rank when the launcher asks through
/// `socket_dir` ([`crate::unbind`]). Binding is an optimisation: where it cannot be done, the
/// rank runs unbound, with a debug message. Where [`crate::env::REPORT_BINDINGS`] asks, prints
/// one line to stderr saying where rank `rank` may run (and another if it is unbound later).
pub(crate) fn bind_if_asked(rank: usize, local_rank: usize, local_size: usize, socket_dir: &Path) {
    let asked = crate::env::bind(local_size);
    let (unit, auto) = (asked.map(|(unit, _)| unit), asked.is_some_and(|(_, auto)| auto));
    let bound = unit.map(|unit| bind(unit, local_rank));
    BOUND.store(matches!(bound, Some(Ok(_))), Ordering::Relaxed);
    match (unit, &bound) {
        (Some(unit), Some(Ok((cpus, _)))) => debug!("bound to CPUs {cpus:?} ({unit:?})"),
        (Some(unit), Some(Err(why))) => debug!("not bound to a {unit:?}: {why}"),
        _ => {}
    }
    let report = crate::env::report_bindings().then(|| {
        let host = std::env::var(crate::env::HOST)
            .ok()
            .or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()))
            .unwrap_or_default();
        format!("prun: rank {rank} on {host}")
    });
    if let Some(who) = &report {
        let allowed =
            || sched_getaffinity(None).map_or_else(|e| format!("? ({e})"), |set| format_list(&cpus_of(&set)));
        let what = match (unit, &bound) {
            (Some(unit), Some(Ok((cpus, _)))) if auto => format!(
                "bound to CPUs {} (a {}, until other work loads the host)",
                format_list(cpus),
                unit.word()
            ),
            (Some(unit), Some(Ok((cpus, _)))) => {
                format!("bound to CPUs {} (a {})", format_list(cpus), unit.word())
            }
            (_, Some(Err(why))) => format!("not bound ({why}); may run on CPUs {}", allowed()),
            _ => format!("not bound; may run on CPUs {}", allowed()),
        };
        eprintln!("{who}: {what}");
    }
    if let (true, Some(Ok((_, allowed)))) = (auto, bound) {
        let line = report.map(|who| {
            format!(
                "{who}: unbound (other work loads the host); may run on CPUs {}",
                format_list(&cpus_of(&allowed))
            )
        });
        crate::unbind::watch(allowed, socket_dir, line);
    }
}

/// Binds the calling thread to the `local_rank % n`-th of the `n` units of the CPUs it may run
/// on; returns the CPUs, and those it was allowed before.
fn bind(unit: Unit, local_rank: usize) -> Result<(Vec<usize>, CpuSet), String> {
    let allowed = sched_getaffinity(None).map_err(|e| format!("cannot read the CPUs allowed: {e}"))?;
    let cpus = cpus_of(&allowed);
    let units = units(&cpus, unit, &siblings);
    let chosen = units.get(local_rank % units.len().max(1)).ok_or("no CPU is allowed")?;
    let mut set = CpuSet::new();
    chosen.iter().for_each(|&c| set.set(c));
    sched_setaffinity(None, &set).map_err(|e| format!("cannot bind to CPUs {chosen:?}: {e}"))?;
    Ok((chosen.clone(), allowed))
}

/// The CPUs in `set`, ascending.
fn cpus_of(set: &CpuSet) -> Vec<usize> {
    (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect()
}

/// The units the allowed `cpus` (ascending) fall into, in the order of their first CPU: a CPU
/// each for hardware threads; for cores, the allowed CPUs of each core, as `siblings` (the
/// kernel's topology) gives them, a CPU alone where it does not.
fn units(cpus: &[usize], unit: Unit, siblings: &dyn Fn(usize) -> Option<Vec<usize>>) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for &cpu in cpus {
        if out.iter().any(|u| u.contains(&cpu)) {
            continue;
        }
        let mut core = match unit {
            Unit::Hwthread => vec![cpu],
            Unit::Core => {
                siblings(cpu).unwrap_or_default().into_iter().filter(|s| cpus.contains(s)).collect()
            }
        };
        if !core.contains(&cpu) {
            core = vec![cpu];
        }
        core.sort_unstable();
        core.dedup();
        out.push(core);
    }
    out
}

/// The CPUs that share a core with `cpu` (itself included), from sysfs.
fn siblings(cpu: usize) -> Option<Vec<usize>> {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
    parse_list(std::fs::read_to_string(path).ok()?.trim())
}

/// A CPU list as the kernel writes them: `0-3,8,10-11`.
fn parse_list(text: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (usize, usize) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
        if hi < lo || hi - lo >= CpuSet::MAX_CPU {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

/// `cpus` (ascending) as the kernel writes CPU lists: `0-3,8,10-11`.
fn format_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if j == i { cpus[i].to_string() } else { format!("{}-{}", cpus[i], cpus[j]) });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `auto` binds only where ranks outnumber CPUs, at most four of them per CPU, as many on
    /// each, and a power of two of them.
    #[test]
    fn auto_binds_crowded_hosts_evenly_up_to_four_ranks_per_cpu() {
        assert!(!auto_binds(false, 2, 2), "a rank per CPU is left to the kernel");
        assert!(auto_binds(true, 4, 2) && auto_binds(true, 8, 2) && auto_binds(true, 16, 4));
        assert!(!auto_binds(true, 16, 2) && !auto_binds(true, 64, 2), "beyond four per CPU");
        assert!(!auto_binds(true, 3, 2) && !auto_binds(true, 6, 2), "not a power of two");
        assert!(!auto_binds(true, 8, 3) && !auto_binds(true, 4, 0), "not evenly spread");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_list("0-3,8,10-11"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_list("5"), Some(vec![5]));
        assert_eq!(parse_list(""), Some(vec![]));
        assert_eq!(parse_list("3-1"), None);
        assert_eq!(parse_list("x"), None);
        assert_eq!(parse_list("0-99999999999"), None);
        for list in ["0-3,8,10-11", "5", "", "0,2,4"] {
            assert_eq!(format_list(&parse_list(list).expect("list")), list);
        }
    }

    /// Cores group their allowed hardware threads; a CPU whose topology is unknown, or whose
    /// siblings are not allowed, stands alone; hardware threads are a unit each.
    #[test]
    fn units_by_core_and_by_hwthread() {
        // 4 cores of 2 threads: core k holds CPUs k and k + 4
        let smt = |c: usize| Some(vec![c % 4, c % 4 + 4]);
        let all: Vec<usize> = (0..8).collect();
        assert_eq!(units(&all, Unit::Core, &smt), [vec![0, 4], vec![1, 5], vec![2, 6], vec![3, 7]]);
        assert_eq!(units(&all, Unit::Hwthread, &smt).len(), 8);
        // a cpuset holding CPUs 1, 2 and 5: core 1 has both its threads, core 2 one
        assert_eq!(units(&[1, 2, 5], Unit::Core, &smt), [vec![1, 5], vec![2]]);
        assert_eq!(units(&[0, 1], Unit::Core, &|_| None), [vec![0], vec![1]]);
        assert_eq!(units(&[0, 1], Unit::Core, &|_| Some(vec![7])), [vec![0], vec![1]]);
    }

    /// Binding a thread of the test's own to a rank's share, then reading it back: the share
    /// of local rank `i` is the `i % n`-th allowed CPU; the other threads are untouched.
    #[test]
    fn binds_the_calling_thread_round_robin() {
        let before = sched_getaffinity(None).expect("affinity");
        let cpus = cpus_of(&before);
        for local_rank in [0, 1, cpus.len() + 1] {
            let got = std::thread::spawn(move || {
                let (chosen, allowed) = bind(Unit::Hwthread, local_rank).expect("bind");
                (chosen, cpus_of(&sched_getaffinity(None).expect("affinity")), cpus_of(&allowed))
            })
            .join()
            .expect("thread");
            assert_eq!(got.0, [cpus[local_rank % cpus.len()]]);
            assert_eq!(got.1, got.0);
            assert_eq!(got.2, cpus, "what the thread was allowed before");
        }
        assert_eq!(cpus_of(&sched_getaffinity(None).expect("affinity")), cpus);
    }
}
