//! The worst case for a static split: a task list whose heavy tasks all come first.
//!
//! Task `i` of `TASKS` sleeps `HEAVY_MS` if it is among the first `HEAVY_FRACTION` of the list,
//! `LIGHT_MS` otherwise. Tasks sleep (`std::thread::sleep`) rather than compute, so they take
//! wall time but no CPU: 64 ranks on 2 cores still measure the balancing, not the scheduler.
//! The list runs once with [`prun::Communicator::map_range_static`] (one contiguous block per
//! rank: the first ranks get every heavy task) and once with [`prun::Communicator::map_range`]
//! (work stealing). Each makespan is rank 0's (the root's) wall time from a barrier before the
//! map until the map returns there with every result (see [`prun_examples::timed`]); the
//! efficiency is the total planned task time over `ranks x makespan` (1 is perfect balance with
//! no overhead).
//! A sleep lasts a little longer than asked (about 0.1 ms here, 5% of a 2 ms task, and more for
//! longer sleeps): each rank measures that overshoot for both durations first and shortens its
//! sleeps by it, then corrects that figure after each task by half the task's miss, so that
//! tasks last their planned time and the efficiency measures the balancing rather than the
//! timers.
//!
//! Rank 0 prints `tasks ...`, `measured task time ...` (the sum of the tasks' real durations),
//! `balance against measured task time ...` (the efficiencies with that sum in place of the
//! plan's, which leaves out how far the sleeps missed their plan), `cpu time the hypervisor
//! took ...` (on a virtual machine, the time its CPUs were taken for other guests during each
//! map: a sleep then ends late, see [`prun_examples::steal`]), `static makespan S s`,
//! `dynamic makespan S s`, and as its last two lines exactly `static_efficiency E` and
//! `dynamic_efficiency E` (three decimals). The job exits non-zero if a map misses or reorders
//! a task.
//!
//! `prun -n 2 target/release/skew [TASKS] [HEAVY_MS] [LIGHT_MS] [HEAVY_FRACTION]`
//! (defaults 200 20 2 0.25: 1.3 s of tasks, about 1.8 s for both runs at 2 ranks).

use prun_examples::steal::Stolen;
use prun_examples::timed;
use std::cell::Cell;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The task list: its length, the two durations and how many heavy tasks lead it.
#[derive(Clone, Copy)]
struct Plan {
    tasks: usize,
    heavy: usize,
    heavy_time: Duration,
    light_time: Duration,
}

impl Plan {
    /// Planned duration of task `i`.
    fn duration(&self, i: usize) -> Duration {
        if i < self.heavy { self.heavy_time } else { self.light_time }
    }

    /// Sum of every task's planned duration, in seconds.
    fn total(&self) -> f64 {
        (0..self.tasks).map(|i| self.duration(i).as_secs_f64()).sum()
    }
}

/// Argument `n` (1-based) parsed as `T`, or `default` when absent.
fn arg<T: FromStr>(n: usize, name: &str, default: T) -> Result<T, String> {
    match std::env::args().nth(n) {
        None => Ok(default),
        Some(a) => a.parse().map_err(|_| format!("{name} cannot be '{a}'")),
    }
}

fn plan() -> Result<Plan, String> {
    let tasks: usize = arg(1, "TASKS", 200)?;
    let heavy_ms: f64 = arg(2, "HEAVY_MS", 20.0)?;
    let light_ms: f64 = arg(3, "LIGHT_MS", 2.0)?;
    let fraction: f64 = arg(4, "HEAVY_FRACTION", 0.25)?;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(format!("HEAVY_FRACTION must be between 0 and 1, not {fraction}"));
    }
    let ms = |name: &str, v: f64| {
        Duration::try_from_secs_f64(v / 1000.0).map_err(|_| format!("{name} must be a duration, not {v}"))
    };
    Ok(Plan {
        tasks,
        heavy: (tasks as f64 * fraction).round() as usize,
        heavy_time: ms("HEAVY_MS", heavy_ms)?,
        light_time: ms("LIGHT_MS", light_ms)?,
    })
}

/// How much longer than asked `std::thread::sleep` takes on this rank, for each of the plan's
/// two durations: the median overshoot of a few sleeps of that length. Tasks sleep that much
/// less, so that each lasts its planned duration and the efficiency measures the balancing,
/// not the operating system's timers. The overshoot grows with the sleep (on the VM measured,
/// 100 us for 1 ms, 115 for 2 ms and 155 for 20 ms: timer slack and wake-up latency, plus
/// timers running about 0.3% late), so one figure for both left tasks 0.5-1.3% over plan.
fn calibrate(plan: &Plan) -> Overshoot {
    let median = |asked: Duration, samples: usize| {
        let mut over: Vec<Duration> = (0..samples)
            .map(|_| {
                let start = Instant::now();
                std::thread::sleep(asked);
                start.elapsed().saturating_sub(asked)
            })
            .collect();
        over.sort_unstable();
        over[over.len() / 2]
    };
    // about 0.15 s with the default plan
    let (light, heavy) = (median(plan.light_time, 15), median(plan.heavy_time, 5));
    Overshoot { light: Cell::new(light), heavy: Cell::new(heavy), calibrated: (light, heavy) }
}

/// How much longer than asked a sleep of each of the plan's durations takes: as calibrated,
/// then as the tasks find it.
struct Overshoot {
    light: Cell<Duration>,
    heavy: Cell<Duration>,
    /// The calibration's figures (light, heavy), for the report.
    calibrated: (Duration, Duration),
}

/// Runs task `i`: sleeps its planned duration less the sleep's overshoot; returns its index,
/// to check the order, and how long it really took, in microseconds. Each task corrects the
/// overshoot by half of its own miss: with all ranks sleeping and waking at once, a sleep
/// overshoots more than in the calibration (tasks of the default plan at 16 ranks ran 0.2-0.5%
/// over plan with the calibration's figure alone).
fn task(plan: &Plan, over: &Overshoot, i: usize) -> (u64, u64) {
    let start = Instant::now();
    let planned = plan.duration(i);
    let over = if i < plan.heavy { &over.heavy } else { &over.light };
    std::thread::sleep(planned.saturating_sub(over.get()));
    let took = start.elapsed();
    let corrected = over.get().as_secs_f64() + (took.as_secs_f64() - planned.as_secs_f64()) / 2.0;
    over.set(Duration::from_secs_f64(corrected.clamp(0.0, planned.as_secs_f64())));
    (i as u64, took.as_micros() as u64)
}

/// Whether a map returned every task's index once, in order; and the tasks' measured total
/// duration, in seconds.
fn complete(mode: &str, results: Option<Vec<(u64, u64)>>, tasks: usize) -> (bool, f64) {
    let Some(results) = results else {
        eprintln!("skew: {mode}: rank 0 got no results");
        return (false, 0.0);
    };
    let ok = results.len() == tasks && results.iter().enumerate().all(|(i, &(r, _))| r == i as u64);
    if !ok {
        eprintln!("skew: {mode}: {} results, not indices 0..{tasks} in order", results.len());
    }
    (ok, results.iter().map(|&(_, us)| us as f64 * 1e-6).sum())
}

fn run(plan: Plan) -> Result<bool, prun::Error> {
    let world = prun::init()?;
    let over = calibrate(&plan);
    let stolen = Stolen::start();
    let (fixed, t_static) =
        timed(&world, || world.map_range_static(0, plan.tasks, |i| task(&plan, &over, i)))?;
    let (steal_static, stolen) = (stolen.so_far(), Stolen::start());
    let (dynamic, t_dynamic) = timed(&world, || world.map_range(0, plan.tasks, |i| task(&plan, &over, i)))?;
    let steal_dynamic = stolen.so_far();
    if world.rank() != 0 {
        return Ok(true);
    }
    let (ok_static, measured_static) = complete("static", fixed, plan.tasks);
    let (ok_dynamic, measured_dynamic) = complete("dynamic", dynamic, plan.tasks);
    let total = plan.total();
    let ranks = world.size() as f64;
    println!(
        "tasks {} ({} heavy of {} ms, then {} ms) on {} ranks, {total:.3} s of tasks",
        plan.tasks,
        plan.heavy,
        plan.heavy_time.as_secs_f64() * 1e3,
        plan.light_time.as_secs_f64() * 1e3,
        world.size()
    );
    println!(
        "measured task time static {measured_static:.3} s, dynamic {measured_dynamic:.3} s \
         (sleeps shortened by {:.3} and {:.3} ms, rank 0's calibrated overshoots, then corrected task by task)",
        over.calibrated.1.as_secs_f64() * 1e3,
        over.calibrated.0.as_secs_f64() * 1e3
    );
    // the same against the tasks' measured durations: the balancing alone, whatever the timers did
    println!(
        "balance against measured task time: static {:.3}, dynamic {:.3}",
        measured_static / (ranks * t_static),
        measured_dynamic / (ranks * t_dynamic)
    );
    let ms = |d: Option<Duration>| d.map_or("unknown".into(), |d| format!("{} ms", d.as_millis()));
    println!(
        "cpu time the hypervisor took (steal) during the static map {}, the dynamic map {}",
        ms(steal_static),
        ms(steal_dynamic)
    );
    println!("static makespan {t_static:.3} s");
    println!("dynamic makespan {t_dynamic:.3} s");
    println!("static_efficiency {:.3}", total / (ranks * t_static));
    println!("dynamic_efficiency {:.3}", total / (ranks * t_dynamic));
    Ok(ok_static && ok_dynamic)
}

fn main() -> ExitCode {
    let plan = match plan() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skew: {e}; usage: skew [TASKS] [HEAVY_MS] [LIGHT_MS] [HEAVY_FRACTION]");
            return ExitCode::from(2);
        }
    };
    match run(plan) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("skew: {e}");
            ExitCode::FAILURE
        }
    }
}
