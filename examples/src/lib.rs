//! Example jobs for prun, as binaries: `hello`, `ring`, `collbench`, `primes`, `skew`,
//! `mandelbrot` and `maprate`. Run them with `target/release/prun -n 4 target/release/hello`.
//! This library holds what several of them share.

use std::time::Instant;

pub mod collbench;
pub mod steal;

/// Runs `f` between two barriers; returns its result and this rank's wall time from the first
/// barrier until `f` returned. For a map, the root's time is the makespan: from the start until
/// it holds every result, as Python's `Pool.map` is timed; the second barrier only keeps the
/// next measurement apart (on 16 ranks sharing 2 cores it takes 1 to 2.5 ms, which counting it
/// would charge to the map).
///
/// **Collective** (the barriers).
///
/// # Errors
/// Those of the barriers and of `f`.
pub fn timed<R>(
    world: &prun::World,
    f: impl FnOnce() -> Result<R, prun::Error>,
) -> Result<(R, f64), prun::Error> {
    world.barrier()?;
    let start = Instant::now();
    let r = f()?;
    let seconds = start.elapsed().as_secs_f64();
    world.barrier()?;
    Ok((r, seconds))
}
